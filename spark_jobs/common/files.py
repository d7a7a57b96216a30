"""Files in the lake as Spark sees them, through DataFrame reads only.

Listing goes through the ``binaryFile`` source with its ``content`` column left out (so no file is
read), which works wherever Spark reads files: a local folder behind a Spark Connect server,
``abfss://`` on Databricks serverless or a classic cluster. Hidden files (``.name``, ``_name``),
such as the raw layer's half-written ``.<name>.tmp``, are not listed, as Spark never reads them.
"""

from __future__ import annotations

from dataclasses import dataclass

RESCUED = "_rescued_data"  # the column that keeps text a declared schema could not read
# Spark's "no such path" errors when a read is planned.
_NO_PATH = frozenset({"PATH_NOT_FOUND", "UNABLE_TO_INFER_SCHEMA"})


@dataclass(frozen=True, order=True)
class FileInfo:
    path: str  # as Spark names it, e.g. file:/lake/raw/... or abfss://raw@acct.dfs.core.windows.net/...
    size: int
    modified_ms: int

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]


def listing(spark, uri: str, *, glob: str | None = None, recursive: bool = True):
    """A DataFrame of the files under ``uri`` (a folder or one file): ``path``, ``length`` and
    ``modified_ms`` (milliseconds since the epoch); None when nothing is there."""
    from pyspark.errors import AnalysisException

    from spark_jobs.common.delta import condition

    reader = spark.read.format("binaryFile").option("recursiveFileLookup", str(recursive).lower())
    if glob:
        reader = reader.option("pathGlobFilter", glob)
    try:
        df = reader.load(uri).selectExpr("path", "length", "unix_millis(modificationTime) AS modified_ms")
        df.columns  # noqa: B018 - plans the read, which fails here when the path does not exist
    except AnalysisException as exc:
        if condition(exc) in _NO_PATH:
            return None
        raise
    return df


def list_files(spark, uri: str, *, glob: str | None = None, recursive: bool = True) -> list[FileInfo]:
    """The files under ``uri``, sorted by path; none when it does not exist."""
    df = listing(spark, uri, glob=glob, recursive=recursive)
    if df is None:
        return []
    return sorted(FileInfo(r["path"], int(r["length"]), int(r["modified_ms"])) for r in df.collect())
