"""Bronze for file sources: each source's raw files not yet in bronze, appended with lineage.

The bronze table is its own checkpoint. Every row keeps the raw file it came from
(``_source_file``), so the files still to ingest are the raw folder's files whose names no bronze
row carries. They are read as one batch with the declared columns, counted, and appended in one
Delta commit: a run that dies before the commit leaves no trace and the next run reads the same
files; a run that dies after it finds them ingested. This is Auto Loader's contract
(``cloudFiles`` on Databricks fits the same job), kept with plain DataFrame reads so that it runs
the same on Spark Connect: no streaming ``foreachBatch`` function on the server, no driver state.
Rows that do not fit the declared columns are kept in ``_rescued_data`` rather than dropped.

Every source's new files are read and checked (``spark_jobs.common.delivery``: a file that does
not parse, too many rescued rows, an empty file not allowed) before any is appended, so bad input
writes nothing. A file with no rows (a header-only CSV), where its source declares
``allow_empty: true``, has no row to carry its name: it is recorded in ``bronze/<pipeline>/_files``
(table, file, path, rows, run_id, ingested_at; one row per such file, added once), after the
appends. A crash between the two commits leaves the empty file pending, and the next run reads it
again as zero rows and records it: every file is ingested exactly once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from spark_jobs.common import delivery
from spark_jobs.common.errors import BadInputError
from spark_jobs.common.files import RESCUED, listing

log = logging.getLogger(__name__)

SOURCE_FILE, INGESTED_AT = "_source_file", "_ingested_at"
FILES_TABLE = "_files"  # files ingested with no rows (see the module's docstring)
CSV_DEFAULTS = {
    "header": "true",
    "multiLine": "true",
    "escape": '"',
    "encoding": "UTF-8",
    # check the header against the declared columns instead of trusting column positions
    "enforceSchema": "false",
    "mode": "PERMISSIVE",
    "columnNameOfCorruptRecord": RESCUED,
}


class SourceFileError(BadInputError):
    """A source file could not be ingested; the message names the table and the file."""


@dataclass
class IngestResult:
    files: list[str] = field(default_factory=list)
    rows: int = 0
    rescued: int = 0
    empty_files: list[str] = field(default_factory=list)
    batch: object | None = None  # the rows to append (a materialised DataFrame), until appended

    @property
    def written(self) -> bool:
        return bool(self.files)


def _file_name(column):
    from pyspark.sql import functions as F

    return F.element_at(F.split(column, "/"), -1)


def pending_files(job, table: str, source_dir: str) -> list[str]:
    """Paths of the raw files of ``table`` that no bronze row names yet, oldest first."""
    from pyspark.sql import functions as F

    files = listing(job.spark, source_dir)
    if files is None:
        return []
    files = files.select("path", _file_name(F.col("path")).alias("name"))
    target = job.uri("bronze", table)
    if job.engine.exists(target):
        done = job.engine.read(target).select(_file_name(F.col(SOURCE_FILE)).alias("name")).distinct()
        files = files.join(done, "name", "left_anti")
    empty = job.uri("bronze", FILES_TABLE)
    if job.engine.exists(empty):
        done = (
            job.engine.read(empty).filter(F.col("table") == F.lit(table)).select(F.col("file").alias("name"))
        )
        files = files.join(done, "name", "left_anti")
    return sorted(row["path"] for row in files.collect())


def empty_files(job, table: str) -> list[str]:
    """Names of the files of ``table`` ingested with no rows, oldest first."""
    from pyspark.sql import functions as F

    uri = job.uri("bronze", FILES_TABLE)
    if not job.engine.exists(uri):
        return []
    found = job.engine.read(uri).filter(F.col("table") == F.lit(table)).select("file").collect()
    return sorted(row["file"] for row in found)


def read_new_files(job, table: str, source_dir: str, columns: list[str], source: dict) -> IngestResult:
    """Read and check the raw files of ``table`` not yet ingested; nothing is written."""
    from pyspark.sql import functions as F

    result = IngestResult(files=pending_files(job, table, source_dir))
    if not result.files:
        return result
    schema = ", ".join([*(f"`{c}` STRING" for c in columns), f"{RESCUED} STRING"])
    try:
        batch = (
            job.spark.read.format("csv")
            .schema(schema)
            .options(**{**CSV_DEFAULTS, **source.get("options", {})})
            .load(result.files)
            .withColumn(SOURCE_FILE, F.col("_metadata.file_path"))
            .withColumn(INGESTED_AT, F.current_timestamp())
            .localCheckpoint(eager=True)
        )
    except Exception as exc:
        raise SourceFileError(
            f"bronze.{table}: cannot ingest {_names(result.files)}: {_first_cause(exc)}"
        ) from exc
    checked = delivery.check(
        job.spark,
        batch.withColumn(delivery.FILE_COLUMN, F.col(SOURCE_FILE)),
        table=f"bronze.{table}",
        files=result.files,
        spec=source,
    )
    result.rows, result.rescued, result.empty_files = checked.rows, checked.rescued, checked.empty_files
    result.batch = batch if checked.rows else None
    return result


def append_new_files(job, table: str, result: IngestResult) -> None:
    """Append a checked batch in one commit (a batch of empty files only appends nothing)."""
    if result.batch is not None:
        job.engine.append(
            result.batch, job.uri("bronze", table), metadata={"run_id": job.run_id, "job": job.name}
        )
    log.info(
        "bronze.%s: %s rows (%s rescued) from %s", table, result.rows, result.rescued, _names(result.files)
    )


def record_empty_files(job, results: dict[str, IngestResult]) -> None:
    """Add the ingested files with no rows to ``bronze/<pipeline>/_files`` in one commit."""
    import datetime as dt

    from pyspark.sql import types as T

    now = dt.datetime.now(dt.UTC)
    rows = [
        (table, path.rsplit("/", 1)[-1], path, 0, job.run_id, now)
        for table, result in results.items()
        for path in result.empty_files
    ]
    if not rows:
        return
    schema = T.StructType(
        [
            T.StructField("table", T.StringType(), False),
            T.StructField("file", T.StringType(), False),
            T.StructField("path", T.StringType(), False),
            T.StructField("rows", T.LongType(), False),
            T.StructField("run_id", T.StringType(), False),
            T.StructField("ingested_at", T.TimestampType(), False),
        ]
    )
    uri = job.uri("bronze", FILES_TABLE)
    new = job.spark.createDataFrame(rows, schema)
    if job.engine.exists(uri):
        new = new.join(job.engine.read(uri).select("table", "file"), ["table", "file"], "left_anti")
    new = new.localCheckpoint(eager=True)
    if new.count():
        job.engine.append(new, uri, metadata={"run_id": job.run_id, "job": job.name})
    for table, result in results.items():
        for path in result.empty_files:
            log.warning("bronze.%s: %s has no rows (allowed): recorded as ingested", table, path)


def _names(paths: list[str]) -> str:
    return ", ".join(path.rsplit("/", 1)[-1] for path in paths)


def _first_cause(exc: Exception) -> str:
    """The most specific line of a Spark error: what a user needs, without the stack."""
    text = str(exc).split("\n\nJVM stacktrace:", 1)[0]
    for marker in ("CSV header does not conform", "FAILED_READ_FILE", "Malformed"):
        at = text.find(marker)
        if at >= 0:
            return " ".join(text[at : at + 600].split())
    return " ".join(text[:600].split())


def ingest_sources(job) -> None:
    """Ingest each source in ``config['files']`` from ``raw/<pipeline>/<table>/``: every source's
    new files read and checked side by side, then appended side by side."""
    sources = [s for s in job.config["files"] if job.wants(s["table"])]
    results = dict(
        zip([s["table"] for s in sources], job.for_each(sources, lambda s: read_source(job, s)), strict=True)
    )
    job.for_each(
        [t for t, r in results.items() if r.batch is not None], lambda t: append_new_files(job, t, results[t])
    )
    record_empty_files(job, results)
    for source in sources:
        table, result = source["table"], results[source["table"]]
        if result.written:
            job.count("bronze", table, "files_ingested", len(result.files))
            job.count("bronze", table, "rows_ingested", result.rows)
            job.count("bronze", table, "rows_rescued", result.rescued)
            if result.empty_files:
                job.count("bronze", table, "empty_files", len(result.empty_files))
    job.write_audit()


def read_source(job, source: dict) -> IngestResult:
    table = source["table"]
    source_dir = job.lake.uri("raw", job.pipeline, table)
    result = read_new_files(job, table, source_dir, source["columns"], source)
    if result.written:
        return result
    if not job.engine.exists(job.uri("bronze", table)) and not empty_files(job, table):
        if source.get("required", True):
            raise SourceFileError(f"bronze.{table}: no file has landed in {source_dir}")
        log.warning("bronze.%s: optional source has no files in %s; skipped", table, source_dir)
    else:
        log.info("bronze.%s: no new files", table)
    return result
