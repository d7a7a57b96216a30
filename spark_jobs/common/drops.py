"""Reading one source of a file drop (a file or a folder of files) with a declared schema.

Rows that do not fit the schema (malformed JSON, a CSV line with too many or too few fields) are
kept in ``_rescued_data`` instead of failing the read or vanishing, so they can be counted.
"""

from __future__ import annotations

from spark_jobs.common.autoloader import RESCUED


class MissingSourceError(RuntimeError):
    """A required file of a drop is not there."""


def _hadoop_path(spark, uri: str):
    jvm = spark._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    return path, path.getFileSystem(spark._jsc.hadoopConfiguration())


def exists(spark, uri: str) -> bool:
    """Whether a file or folder exists, through Spark's own filesystem (local, abfss, dbfs)."""
    path, fs = _hadoop_path(spark, uri)
    return bool(fs.exists(path))


def fingerprint(spark, uri: str) -> list[list]:
    """(name, size, modification time) of every file under ``uri``: changes when a drop does."""
    path, fs = _hadoop_path(spark, uri)
    files = fs.listFiles(path, True)
    found = []
    while files.hasNext():
        status = files.next()
        found.append([status.getPath().getName(), int(status.getLen()), int(status.getModificationTime())])
    return sorted(found)


def read_source(spark, uri: str, spec: dict):
    """The source as delivered, all declared columns plus ``_rescued_data``."""
    from pyspark.sql import types as T

    schema = T._parse_datatype_string(spec["schema"])
    schema = T.StructType([*schema.fields, T.StructField(RESCUED, T.StringType())])
    reader = (
        spark.read.schema(schema)
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", RESCUED)
        .option("recursiveFileLookup", "true")
    )
    if spec["format"] == "csv":
        header = bool(spec.get("header", True))
        reader = reader.option("header", header).option("enforceSchema", not header).option("escape", '"')
        df = reader.csv(uri)
    elif spec["format"] == "json":
        df = reader.option("multiLine", bool(spec.get("multiline", False))).json(uri)
    else:
        raise ValueError(f"{spec['table']}: unsupported format {spec['format']!r}")
    return df.cache()  # Spark needs the rows materialised to query the corrupt-record column
