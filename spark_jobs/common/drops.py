"""Reading one source of a file drop (a file or a folder of files) with a declared schema.

Rows that do not fit the schema (malformed JSON, a CSV line with too many or too few fields) are
kept in ``_rescued_data`` instead of failing the read or vanishing, so they can be counted.
"""

from __future__ import annotations

from spark_jobs.common.delivery import FILE_COLUMN
from spark_jobs.common.errors import BadInputError
from spark_jobs.common.files import RESCUED


class MissingSourceError(BadInputError):
    """A required file of a drop is not there."""


def read_source(spark, uri: str, spec: dict):
    """The source as delivered: all declared columns, ``_rescued_data`` and the file of each row
    (``_file_path``), materialised."""
    from pyspark.sql import functions as F

    # a DDL string: Spark parses it on the server (no local JVM on Spark Connect)
    schema = f"{spec['schema'].strip().rstrip(',')}, {RESCUED} STRING"
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
    # Spark needs the rows materialised to query the corrupt-record column
    return df.withColumn(FILE_COLUMN, F.col("_metadata.file_path")).localCheckpoint(eager=True)
