"""Spotify silver: the bronze windows not applied yet, cleaned, deduplicated and merged by key.

Bronze holds one parquet file and one manifest per table and extracted window
(``bronze/spotify/<table>/<WID>.parquet``, ``bronze/spotify/_windows/<table>/<WID>.json``). A
window is pending until its (table, window, sha256) is recorded in
``silver/spotify/_applied_windows``: a re-extraction with other rows has another sha256 and is
applied again, an identical one is not. The merge only lets a strictly newer row (by change column,
then ``_row_hash``) replace one, so the order windows are applied in does not matter.
"""

from __future__ import annotations

import logging
import re

from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_jobs.common.files import list_files
from spark_jobs.common.job import SILVER_PROPERTIES, Job, start
from spark_jobs.spotify import transforms as tf

log = logging.getLogger(__name__)

APPLIED = "_applied_windows"
_WINDOW_ID = re.compile(r"^\d{8}T\d{6}$")


class BronzeWindowError(RuntimeError):
    """A bronze window's manifest and file do not agree; the message names the window."""


def manifests(job: Job, table: str) -> list[dict]:
    """The manifests of ``table``'s windows, checked: window id, file name and table match."""
    files = list_files(job.spark, f"{bronze_folder(job)}/_windows/{table}", glob="*.json", recursive=False)
    if not files:
        return []
    schema = "table string, window string, file string, rows long, sha256 string"
    rows = (
        job.spark.read.schema(schema)
        .option("multiLine", "true")
        .option("mode", "FAILFAST")
        .json([f.path for f in files])
        .withColumn("_manifest", F.col("_metadata.file_name"))
        .collect()
    )
    found = []
    for row in rows:
        m = row.asDict()
        where = f"bronze manifest {table}/{m['_manifest']}"
        if m["table"] != table or not _WINDOW_ID.match(m["window"] or ""):
            raise BronzeWindowError(f"{where}: table {m['table']!r}, window {m['window']!r} do not fit")
        if m["_manifest"] != f"{m['window']}.json" or m["file"] != f"{m['window']}.parquet":
            raise BronzeWindowError(f"{where}: file {m['file']!r} is not <window>.parquet")
        if not m["sha256"] or m["rows"] is None:
            raise BronzeWindowError(f"{where}: sha256 and rows are required")
        found.append(m)
    return sorted(found, key=lambda m: m["window"])


def bronze_folder(job: Job) -> str:
    return f"{job.lake.layer_uri('bronze')}/{job.pipeline}"


def applied_windows(job: Job) -> dict[str, set[tuple[str, str]]]:
    """Per table, (window, sha256) of the windows already merged into silver."""
    uri = job.uri("silver", APPLIED)
    if not job.engine.exists(uri):
        return {}
    found: dict[str, set[tuple[str, str]]] = {}
    for r in job.engine.read(uri).select("table", "window", "sha256").collect():
        found.setdefault(r["table"], set()).add((r["window"], r["sha256"]))
    return found


def read_windows(job: Job, spec: dict, windows: list[dict]):
    """The rows of the pending windows with ``_window``; fails if a file disagrees with its manifest."""
    table = spec["table"]
    folder = f"{bronze_folder(job)}/{table}"
    paths = [f"{folder}/{m['file']}" for m in windows]
    found = {f.name for f in job.spark.read.option("mergeSchema", "true").parquet(*paths).schema.fields}
    if found != set(spec["columns"]):
        raise BronzeWindowError(
            f"bronze {table}: columns {sorted(found)} in windows {[m['window'] for m in windows]} "
            f"are not the declared {sorted(spec['columns'])}"
        )
    by_file = F.create_map(*[F.lit(x) for m in windows for x in (m["file"], m["window"])])
    df = (
        job.spark.read.schema(tf.bronze_schema(spec["columns"]))
        .parquet(*paths)
        .withColumn(tf.WINDOW, by_file[F.col("_metadata.file_name")])
    )
    counts = {r[tf.WINDOW]: r["count"] for r in df.groupBy(tf.WINDOW).count().collect()}
    wrong = [
        f"{m['window']} has {counts.get(m['window'], 0)} rows, its manifest says {m['rows']}"
        for m in windows
        if counts.get(m["window"], 0) != m["rows"]
    ]
    if wrong:
        raise BronzeWindowError(f"bronze {table}: " + "; ".join(wrong))
    return df


def silver_rows(df, spec: dict, rules: dict):
    """Bronze rows to silver rows: clean-up, ``_row_hash``, rows without a key set aside, deduplicated.

    Returns (rows, rows without a key). SCD2 tables also need the change time, which is part of
    their silver key.
    """
    table, change = spec["table"], spec["change_column"]
    business = [*spec["columns"], *tf.derived_columns(table, rules)]
    df = tf.with_row_hash(tf.clean(df, table, rules), business)
    key = tf.silver_key(spec)
    has_key = F.lit(True)
    for column in key:
        has_key = has_key & F.col(column).isNotNull()
    rows = tf.deduplicate(df.filter(has_key), key, change).select(*business, tf.WINDOW, tf.ROW_HASH)
    return rows, df.filter(~has_key)


def apply_table(job: Job, spec: dict, applied: dict[str, set]) -> list[dict]:
    """Merge ``spec``'s pending bronze windows into its silver table; returns those windows."""
    table, uri = spec["table"], job.uri("silver", spec["table"])
    rules = job.config.get("silver") or {}
    # Records of applied windows count only while the table they went into exists.
    done = applied.get(table, set()) if job.engine.exists(uri) else set()
    pending = [m for m in manifests(job, table) if (m["window"], m["sha256"]) not in done]
    job.count("silver", table, "windows_pending", len(pending))
    if not pending:
        log.info("silver.%s: no new bronze windows: skipped", table)
        if not job.engine.exists(uri):
            # Extraction lands no empty windows: a table without rows yet is still there for gold.
            empty = job.spark.createDataFrame([], tf.bronze_schema(spec["columns"]))
            rows, _ = silver_rows(empty.withColumn(tf.WINDOW, F.lit(None).cast("string")), spec, rules)
            job.engine.overwrite(
                rows,
                uri,
                metadata={"run_id": job.run_id, "job": job.name, "windows": []},
                properties=SILVER_PROPERTIES,
            )
            log.info("silver.%s: no bronze window yet: created empty", table)
        return []
    bronze = read_windows(job, spec, pending).localCheckpoint(eager=True)
    rows, keyless = silver_rows(bronze, spec, rules)
    rows = rows.localCheckpoint(eager=True)
    rows_read, rows_keyless, rows_kept = bronze.count(), keyless.count(), rows.count()
    if rows_keyless:
        log.warning("silver.%s: %s row(s) without %s set aside", table, rows_keyless, tf.silver_key(spec))
    job.count("silver", table, "rows_read", rows_read)
    job.count("silver", table, "rows_without_key", rows_keyless)
    job.count("silver", table, "duplicates_removed", rows_read - rows_keyless - rows_kept)
    windows = [m["window"] for m in pending]
    metadata = {"run_id": job.run_id, "job": job.name, "windows": windows}
    if rows_kept or not job.engine.exists(uri):
        result = job.engine.merge(
            rows,
            uri,
            tf.silver_key(spec),
            metadata=metadata,
            order_by=[spec["change_column"], tf.ROW_HASH],
            properties=SILVER_PROPERTIES,
        )
    else:
        result = {"inserted": 0, "updated": 0}
    job.count("silver", table, "rows_inserted", result["inserted"])
    job.count("silver", table, "rows_updated", result["updated"])
    return pending


def record_windows(job: Job, windows: dict[str, list[dict]]) -> None:
    """Upsert (table, window) -> sha256 into ``_applied_windows``, after the rows are merged: one
    commit for every table's windows of this run, none when no window was applied."""
    if not any(windows.values()):
        return
    schema = T.StructType(
        [
            T.StructField("table", T.StringType(), False),
            T.StructField("window", T.StringType(), False),
            T.StructField("sha256", T.StringType(), False),
            T.StructField("rows", T.LongType(), False),
            T.StructField("applied_run_id", T.StringType(), False),
        ]
    )
    rows = [
        (table, m["window"], m["sha256"], int(m["rows"]), job.run_id)
        for table, applied in sorted(windows.items())
        for m in applied
    ]
    job.engine.merge(
        job.spark.createDataFrame(rows, schema),
        job.uri("silver", APPLIED),
        ["table", "window"],
        metadata={
            "run_id": job.run_id,
            "job": job.name,
            "tables": sorted(t for t, w in windows.items() if w),
        },
    )


def main(argv: list[str]) -> None:
    """Every table's pending windows merged side by side, then recorded in one commit: a table
    that fails leaves its windows pending (and the others recorded) for the next run."""
    job = start("spotify.silver", argv)
    applied = applied_windows(job)
    specs = [spec for spec in job.config["tables"] if job.wants(spec["table"])]

    def attempt(spec: dict):
        try:
            return apply_table(job, spec, applied), None
        except Exception as exc:  # recorded below once the others are done
            return [], exc

    outcomes = job.for_each(specs, attempt)
    record_windows(job, {spec["table"]: merged for spec, (merged, _) in zip(specs, outcomes, strict=True)})
    failures = [exc for _, exc in outcomes if exc is not None]
    if failures:
        raise failures[0]
    job.write_audit()
