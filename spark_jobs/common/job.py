"""What every job needs: its arguments, a Spark session, a Delta engine, and bookkeeping.

A job is called as ``run.py <pipeline>.<job> --lake-root ROOT --run-id ID --config JSON``. The
config is the pipeline's metadata (from ``include/`` on the Airflow side), passed whole so this
package needs nothing but its arguments, on a laptop or on Databricks.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from spark_jobs.common.delta import DeltaEngine
from spark_jobs.common.lake import Lake, check_name
from spark_jobs.common.session import get_spark

log = logging.getLogger("spark_jobs")
_RUN_ID = re.compile(r"^[A-Za-z0-9_.:+\-]{1,250}$")

AUDIT_TABLE = "_audit"
SESSION_SECONDS = 0.0  # how long this process took to get its SparkSession (for benchmarks)
QUALITY_TABLE = "_quality"
# Silver tables keep Delta's change data feed, so gold can read what changed since it last built.
SILVER_PROPERTIES = {"delta.enableChangeDataFeed": "true"}
# Independent tables of one job are built side by side: Spark runs their queries at once, and the
# time each query spends being planned on the driver overlaps. SPARK_JOB_THREADS=1: one by one.
DEFAULT_THREADS = 4


class InputMissingError(RuntimeError):
    """A table this job reads does not exist yet."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run one medallion job")
    parser.add_argument("--lake-root", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--config", required=True, help="the pipeline's metadata as JSON")
    parser.add_argument("--tables", default="", help="comma-separated subset of tables")
    parser.add_argument("--file-date", default=None, help="the drop a run processes, YYYY-MM-DD")
    args = parser.parse_args(argv)
    if args.file_date is not None:
        try:
            args.file_date = dt.date.fromisoformat(args.file_date).isoformat()
        except ValueError:
            parser.error(f"--file-date {args.file_date!r} is not a date (YYYY-MM-DD)")
    if not _RUN_ID.match(args.run_id):
        parser.error(f"--run-id {args.run_id!r} has characters outside [A-Za-z0-9_.:+-]")
    try:
        args.config = json.loads(args.config)
    except ValueError as exc:
        parser.error(f"--config is not valid JSON: {exc}")
    args.tables = [check_name("table", t) for t in args.tables.split(",") if t]
    return args


def settings_hash(settings: Any) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Job:
    """One run of one job of one pipeline."""

    name: str
    pipeline: str
    run_id: str
    lake: Lake
    engine: DeltaEngine
    config: dict
    tables: list[str] = field(default_factory=list)
    file_date: str | None = None
    audit_rows: list[tuple] = field(default_factory=list)

    @property
    def spark(self):
        return self.engine.spark

    def uri(self, layer: str, table: str) -> str:
        return self.lake.uri(layer, self.pipeline, table)

    def wants(self, table: str) -> bool:
        return not self.tables or table in self.tables

    def for_each(self, items: Iterable, work: Callable[[Any], Any]) -> list:
        """``work(item)`` for every item, several at once; results in the items' order.

        Every item runs to its end even when another fails; then the first failure is raised
        (the others are logged), so one bad table never leaves a sibling half-done.
        """
        items = list(items)
        threads = min(len(items), int(os.environ.get("SPARK_JOB_THREADS") or DEFAULT_THREADS))
        if threads <= 1:
            return [work(item) for item in items]
        with ThreadPoolExecutor(threads, thread_name_prefix=f"{self.name}-") as pool:
            futures = [pool.submit(work, item) for item in items]
        failures = [f.exception() for f in futures if f.exception() is not None]
        for extra in failures[1:]:
            log.error("%s: also failed: %s", self.name, extra)
        if failures:
            raise failures[0]
        return [f.result() for f in futures]

    def side_by_side(self, *steps: Callable[[], Any]) -> list:
        """Run independent ``steps`` (no step reads what another writes) at once, as ``for_each``."""
        return self.for_each(steps, lambda step: step())

    @staticmethod
    def stamp(versions: dict, settings: Any = None) -> dict:
        """What a target's commit records of how it was built: its inputs' versions and a hash
        of the settings. Equal stamps mean building again would give the same table."""
        return {"inputs": versions, "settings": settings_hash(settings)}

    def count(self, layer: str, table: str, metric: str, value: int) -> None:
        """Record one row count for the audit table (written once, at the end of the job)."""
        log.info("%s %s.%s %s=%s", self.name, layer, table, metric, value)
        self.audit_rows.append((layer, table, metric, int(value)))

    def stale(self, layer: str, table: str, inputs: dict[str, str], settings: Any = None) -> dict | None:
        """The stamp to write if ``layer.table`` is out of date with its inputs, else None.

        A stamp holds the input tables' current versions and a hash of ``settings``. It is
        stored in the target's commit metadata, so an unchanged target is not rewritten.
        """
        versions = {name: self.engine.version(uri) for name, uri in inputs.items()}
        missing = sorted(name for name, version in versions.items() if version is None)
        if missing:
            raise InputMissingError(f"{layer}.{table}: input table(s) not found: {', '.join(missing)}")
        stamp = self.stamp(versions, settings)
        target = self.uri(layer, table)
        if self.engine.exists(target) and self.engine.last_metadata(target).get("stamp") == stamp:
            log.info("%s.%s is up to date with %s: skipped", layer, table, versions)
            return None
        return stamp

    def read_inputs(self, inputs: dict[str, str], stamp: dict) -> dict[str, Any]:
        """Each input as a DataFrame at the version its stamp recorded."""
        return {name: self.engine.read(uri, version=stamp["inputs"][name]) for name, uri in inputs.items()}

    def replace(self, layer: str, table: str, df, stamp: dict, *, materialized: bool = False) -> int:
        """Overwrite ``layer.table`` with ``df``, recording ``stamp``; returns the rows written.

        ``df`` is computed once (its count and its write read the same rows); ``materialized``:
        it already is, over a checkpoint the caller made."""
        if not materialized:
            df = df.localCheckpoint(eager=True)
        rows = df.count()
        metadata = {"stamp": stamp, "run_id": self.run_id, "job": self.name}
        properties = SILVER_PROPERTIES if layer == "silver" else None
        self.engine.overwrite(df, self.uri(layer, table), metadata=metadata, properties=properties)
        self.count(layer, table, "rows_written", rows)
        return rows

    def refresh(
        self,
        layer: str,
        table: str,
        inputs: dict[str, str],
        build: Callable[[dict[str, Any]], Any],
        *,
        settings: Any = None,
    ) -> int | None:
        """Rebuild ``layer.table`` with ``build(inputs as DataFrames)`` unless it is up to date."""
        stamp = self.stale(layer, table, inputs, settings)
        if stamp is None:
            return None
        return self.replace(layer, table, build(self.read_inputs(inputs, stamp)), stamp)

    def write_audit(self) -> None:
        """Upsert this run's row counts into ``gold/<pipeline>/_audit`` (idempotent per run)."""
        if not self.audit_rows:
            return
        from pyspark.sql import types as T

        schema = T.StructType(
            [
                T.StructField("run_id", T.StringType(), False),
                T.StructField("job", T.StringType(), False),
                T.StructField("layer", T.StringType(), False),
                T.StructField("table", T.StringType(), False),
                T.StructField("metric", T.StringType(), False),
                T.StructField("value", T.LongType(), False),
                T.StructField("recorded_at", T.TimestampType(), False),
            ]
        )
        now = dt.datetime.now(dt.UTC)
        rows = [(self.run_id, self.name, *row, now) for row in self.audit_rows]
        df = self.spark.createDataFrame(rows, schema)
        self.engine.merge(df, self.uri("gold", AUDIT_TABLE), ["run_id", "job", "layer", "table", "metric"])


def start(job_name: str, argv: list[str]) -> Job:
    args = parse_args(argv)
    pipeline, _, name = job_name.partition(".")
    global SESSION_SECONDS
    started = time.monotonic()
    spark = get_spark(f"{pipeline}.{name}")
    SESSION_SECONDS = time.monotonic() - started
    # The jobs' timestamps are UTC whatever the cluster's default (bronze stores them zone-less).
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    log.info("job %s run %s: lake %s", job_name, args.run_id, args.lake_root)
    return Job(
        name=name,
        pipeline=check_name("pipeline", pipeline),
        run_id=args.run_id,
        lake=Lake(args.lake_root),
        engine=DeltaEngine(spark),
        config=args.config,
        tables=args.tables,
        file_date=args.file_date,
    )
