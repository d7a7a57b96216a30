"""Gold tables guarded by expectations; all checked before any is written."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from spark_jobs.common.expectations import Expectation, ExpectationFailedError, checked_rows, failures
from spark_jobs.common.job import QUALITY_TABLE
from spark_jobs.common.release import release

log = logging.getLogger(__name__)


def publish(job, tables: list[dict], transforms: dict | None = None) -> None:
    """Rebuild each gold table whose silver input changed, enforcing its expectations.

    ``tables`` items: ``{"table", "from", "expectations": [{"name", "rule", "action"}]}``.
    ``transforms`` optionally maps a gold table to a function applied before the checks.
    Every stale table is computed and checked first: if a ``fail`` rule is broken, its counts
    are recorded in ``gold/<pipeline>/_quality`` and the job stops with no gold table written.
    When every table is written, their versions become one release (``spark_jobs.common.release``).
    """
    transforms = transforms or {}

    def build(spec: dict):
        table = spec["table"]
        expectations = [Expectation.from_config(table, e) for e in spec.get("expectations", [])]
        inputs = {"silver": job.uri("silver", spec["from"])}
        stamp = job.stale("gold", table, inputs, settings=spec)
        if stamp is None:
            return None
        df = job.read_inputs(inputs, stamp)["silver"]
        if table in transforms:
            df = transforms[table](df)
        kept, outcomes, dropped = checked_rows(df, table, expectations)
        return table, kept, stamp, outcomes, dropped

    built = job.for_each([spec for spec in tables if job.wants(spec["table"])], build)
    pending = [item for item in built if item is not None]

    outcomes = [o for _, _, _, table_outcomes, _ in pending for o in table_outcomes]

    def write(item) -> None:
        table, kept, stamp, _, dropped = item
        job.replace("gold", table, kept, stamp, materialized=True)
        job.count("gold", table, "rows_dropped", dropped)

    write_checked(job, outcomes, pending, write)
    finish(job, [spec["table"] for spec in tables])


def write_checked(job, outcomes, items: list, write: Callable[[Any], None]) -> None:
    """Record the expectations' ``outcomes`` in ``_quality``; when a ``fail`` rule is broken,
    stop with none of ``items`` written, else ``write`` each. The quality rows and the tables
    are written side by side: none reads another."""
    broken = failures(outcomes)
    if broken:
        record_quality(job, outcomes)
        raise ExpectationFailedError("; ".join(broken) + " (no gold table was written)")
    job.side_by_side(partial(record_quality, job, outcomes), *(partial(write, item) for item in items))


def finish(job, tables: list[str]) -> None:
    """After every gold table of the run is written: one release commit makes them the versions
    readers see, and the run's audit rows; side by side, since neither reads the other."""
    job.side_by_side(partial(release, job, tables), job.write_audit)


def record_quality(job, outcomes) -> None:
    """Upsert one row per (run, table, rule) into ``gold/<pipeline>/_quality``."""
    if not outcomes:
        return
    from pyspark.sql import types as T

    now = dt.datetime.now(dt.UTC)
    schema = T.StructType(
        [
            T.StructField("run_id", T.StringType(), False),
            T.StructField("table", T.StringType(), False),
            T.StructField("rule", T.StringType(), False),
            T.StructField("expression", T.StringType(), False),
            T.StructField("action", T.StringType(), False),
            T.StructField("status", T.StringType(), False),
            T.StructField("rows_total", T.LongType(), False),
            T.StructField("rows_passed", T.LongType(), False),
            T.StructField("rows_failing", T.LongType(), False),
            T.StructField("rows_dropped", T.LongType(), False),
            T.StructField("recorded_at", T.TimestampType(), False),
        ]
    )
    rows = [
        (
            job.run_id,
            o.table,
            o.name,
            o.rule,
            o.action,
            o.status,
            o.rows_total,
            o.rows_passed,
            o.rows_failing,
            o.rows_dropped,
            now,
        )
        for o in outcomes
    ]
    for o in outcomes:
        log.info(
            "quality %s.%s [%s] %s: %s of %s rows failing",
            o.table,
            o.name,
            o.action,
            o.status,
            o.rows_failing,
            o.rows_total,
        )
    job.engine.merge(
        job.spark.createDataFrame(rows, schema), job.uri("gold", QUALITY_TABLE), ["run_id", "table", "rule"]
    )
