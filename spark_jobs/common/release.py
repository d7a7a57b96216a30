"""Gold releases: the versions of a pipeline's gold tables that readers see together.

A gold job writes its tables one commit each, so between the first and the last write (or after
a run that failed part-way) the tables are from different runs. After every gold table of a run
is written, the job appends one row, in one commit, to the Delta table
``gold/<pipeline>/_releases``:

| column | type | meaning |
|---|---|---|
| release | bigint | 1, 2, 3, ...: the newest release has the greatest number |
| run_id | string | the run that completed it |
| job | string | the gold job (``gold``) |
| released_at | timestamp (UTC) | when it was written |
| tables | map<string, bigint> | every gold table of the pipeline that exists -> its Delta version |

A reader takes the row with the greatest ``release`` and reads each table ``versionAsOf`` its
version there: all tables as one run left them, never one new and another old. A run that fails
part-way writes no release, so readers keep the previous one. A release is only written when the
tables' versions differ from the newest release's: a run that changed nothing, or a re-run,
writes nothing; a re-run of a run that wrote its tables but died before its release writes it.
Bookkeeping tables (``_audit``, ``_quality``, ``_releases``) are not in ``tables``.
"""

from __future__ import annotations

import datetime as dt
import logging

log = logging.getLogger(__name__)
RELEASES_TABLE = "_releases"


def latest(job) -> dict | None:
    """The newest release as ``{"release", "run_id", "tables"}``, or None."""
    uri = job.uri("gold", RELEASES_TABLE)
    if not job.engine.exists(uri):
        return None
    row = (
        job.engine.read(uri).orderBy("release", ascending=False).select("release", "run_id", "tables").first()
    )
    if row is None:
        return None
    return {"release": int(row["release"]), "run_id": row["run_id"], "tables": dict(row["tables"] or {})}


def release(job, tables: list[str]) -> dict | None:
    """Record the current versions of ``tables`` (those that exist) as a release, unless the newest
    release already holds exactly them; returns the row written, or None."""
    from pyspark.sql import types as T

    names = sorted(set(tables))
    # one small query per table: asked side by side
    found = job.for_each(names, lambda table: job.engine.version(job.uri("gold", table)))
    versions = {table: version for table, version in zip(names, found, strict=True) if version is not None}
    if not versions:
        return None
    previous = latest(job)
    if previous is not None and previous["tables"] == versions:
        log.info("gold release %s already holds %s: no new release", previous["release"], versions)
        return None
    number = 1 if previous is None else previous["release"] + 1
    row = (number, job.run_id, job.name, dt.datetime.now(dt.UTC), versions)
    schema = T.StructType(
        [
            T.StructField("release", T.LongType(), False),
            T.StructField("run_id", T.StringType(), False),
            T.StructField("job", T.StringType(), False),
            T.StructField("released_at", T.TimestampType(), False),
            T.StructField("tables", T.MapType(T.StringType(), T.LongType()), False),
        ]
    )
    job.engine.append(
        job.spark.createDataFrame([row], schema),
        job.uri("gold", RELEASES_TABLE),
        metadata={"run_id": job.run_id, "job": job.name, "release": number},
    )
    log.info("gold release %s (run %s): %s", number, job.run_id, versions)
    return {"release": number, "run_id": job.run_id, "tables": versions}
