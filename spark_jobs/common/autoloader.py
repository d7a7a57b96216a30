"""Incremental file ingestion in the style of Databricks Auto Loader, with open-source Spark.

A Structured Streaming file source with ``trigger(availableNow=True)`` reads only the files its
checkpoint has not seen, then stops. Each micro-batch is appended with a Delta application
transaction keyed by the checkpoint, so a batch replayed after a crash is not written twice.
Rows that do not fit the declared columns land in ``_rescued_data`` rather than being dropped.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

RESCUED = "_rescued_data"
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
    files: set[str] = field(default_factory=set)
    rows: int = 0
    rescued: int = 0
    batches_written: int = 0


def _local_path(uri: str) -> str:
    return uri[len("file:") :] if uri.startswith("file:") else uri


def source_exists(uri: str) -> bool:
    """Local folders are checked; remote ones are assumed to exist (Spark will say if not)."""
    if "://" in uri and not uri.startswith("file:"):
        return True
    return os.path.isdir(_local_path(uri))


def ingest_new_files(job, table: str, source_dir: str, columns: list[str], options: dict) -> IngestResult:
    """Append the rows of files in ``source_dir`` not yet ingested to ``bronze.<table>``."""
    from pyspark.errors import StreamingQueryException
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    target = job.uri("bronze", table)
    checkpoint = job.uri("bronze", "_checkpoints") + f"/{table}"
    app_id = "autoloader-" + hashlib.sha256(checkpoint.encode()).hexdigest()[:16]
    schema = T.StructType(
        [T.StructField(c, T.StringType()) for c in columns] + [T.StructField(RESCUED, T.StringType())]
    )
    stream = (
        job.spark.readStream.format("csv")
        .schema(schema)
        .options(**{**CSV_DEFAULTS, **options})
        .load(source_dir)
        .withColumn("_source_file", F.col("_metadata.file_path"))
        .withColumn("_ingested_at", F.current_timestamp())
    )
    result = IngestResult()

    def write_batch(batch, batch_id: int) -> None:
        batch = batch.cache()
        stats = batch.agg(
            F.count(F.lit(1)).alias("rows"),
            F.count(RESCUED).alias("rescued"),
            F.collect_set("_source_file").alias("files"),
        ).first()
        if stats["rows"] == 0:
            batch.unpersist()
            return
        written = job.engine.append(
            batch,
            target,
            txn=(app_id, batch_id),
            metadata={"run_id": job.run_id, "job": job.name, "batch_id": batch_id},
        )
        batch.unpersist()
        log.info(
            "bronze.%s batch %s: %s rows (%s rescued) from %s%s",
            table,
            batch_id,
            stats["rows"],
            stats["rescued"],
            sorted(stats["files"]),
            "" if written else " already committed, skipped",
        )
        result.files.update(stats["files"])
        result.rows += stats["rows"]
        result.rescued += stats["rescued"]
        result.batches_written += int(written)

    query = (
        stream.writeStream.foreachBatch(write_batch)
        .option("checkpointLocation", checkpoint)
        .trigger(availableNow=True)
        .start()
    )
    try:
        query.awaitTermination()
    except StreamingQueryException as exc:
        raise SourceFileError(
            f"bronze.{table}: cannot ingest from {source_dir}: {_first_cause(exc)}"
        ) from exc
    return result


def _first_cause(exc: Exception) -> str:
    """The most specific line of a JVM error: what a user needs, without the stack."""
    text = str(exc)
    for marker in ("CSV header does not conform", "FAILED_READ_FILE", "Malformed"):
        at = text.find(marker)
        if at >= 0:
            return " ".join(text[at : at + 600].split())
    return " ".join(text[:600].split())
