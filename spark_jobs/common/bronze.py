"""Bronze for file sources: each source's raw files not yet in bronze, appended with lineage.

The bronze table is its own checkpoint. Every row keeps the raw file it came from
(``_source_file``), so the files still to ingest are the raw folder's files whose names no bronze
row carries. They are read as one batch with the declared columns, counted, and appended in one
Delta commit: a run that dies before the commit leaves no trace and the next run reads the same
files; a run that dies after it finds them ingested. This is Auto Loader's contract
(``cloudFiles`` on Databricks fits the same job), kept with plain DataFrame reads so that it runs
the same on Spark Connect: no streaming ``foreachBatch`` function on the server, no driver state.
Rows that do not fit the declared columns are kept in ``_rescued_data`` rather than dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from spark_jobs.common.files import RESCUED, listing

log = logging.getLogger(__name__)

SOURCE_FILE, INGESTED_AT = "_source_file", "_ingested_at"
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


class SourceFileError(RuntimeError):
    """A source file could not be ingested; the message names the table and the file."""


@dataclass
class IngestResult:
    files: list[str] = field(default_factory=list)
    rows: int = 0
    rescued: int = 0

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
    return sorted(row["path"] for row in files.collect())


def ingest_new_files(job, table: str, source_dir: str, columns: list[str], options: dict) -> IngestResult:
    """Append the rows of the raw files of ``table`` not yet in bronze, in one commit."""
    from pyspark.sql import functions as F

    result = IngestResult(files=pending_files(job, table, source_dir))
    if not result.files:
        return result
    schema = ", ".join([*(f"`{c}` STRING" for c in columns), f"{RESCUED} STRING"])
    try:
        batch = (
            job.spark.read.format("csv")
            .schema(schema)
            .options(**{**CSV_DEFAULTS, **options})
            .load(result.files)
            .withColumn(SOURCE_FILE, F.col("_metadata.file_path"))
            .withColumn(INGESTED_AT, F.current_timestamp())
            .localCheckpoint(eager=True)
        )
    except Exception as exc:
        raise SourceFileError(
            f"bronze.{table}: cannot ingest {_names(result.files)}: {_first_cause(exc)}"
        ) from exc
    stats = batch.agg(F.count(F.lit(1)).alias("rows"), F.count(RESCUED).alias("rescued")).first()
    result.rows, result.rescued = int(stats["rows"]), int(stats["rescued"])
    job.engine.append(batch, job.uri("bronze", table), metadata={"run_id": job.run_id, "job": job.name})
    log.info(
        "bronze.%s: %s rows (%s rescued) from %s", table, result.rows, result.rescued, _names(result.files)
    )
    return result


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
    """Ingest each source in ``config['files']`` from ``raw/<pipeline>/<table>/``, side by side."""
    job.for_each([s for s in job.config["files"] if job.wants(s["table"])], lambda s: ingest_source(job, s))
    job.write_audit()


def ingest_source(job, source: dict) -> None:
    table = source["table"]
    source_dir = job.lake.uri("raw", job.pipeline, table)
    result = ingest_new_files(job, table, source_dir, source["columns"], source.get("options", {}))
    if result.written:
        job.count("bronze", table, "files_ingested", len(result.files))
        job.count("bronze", table, "rows_ingested", result.rows)
        job.count("bronze", table, "rows_rescued", result.rescued)
    elif not job.engine.exists(job.uri("bronze", table)):
        if source.get("required", True):
            raise SourceFileError(f"bronze.{table}: no file has landed in {source_dir}")
        log.warning("bronze.%s: optional source has no files in %s; skipped", table, source_dir)
    else:
        log.info("bronze.%s: no new files", table)
