"""Rows set aside with the reason, instead of being guessed at: ``<layer>/<pipeline>/_quarantine``.

One Delta table per pipeline and layer, one row per quarantined input row:

| column | type | meaning |
|---|---|---|
| table | string | the table the row was meant for |
| key | string | its key, as JSON (``{"result_id":1}``) |
| reason | string | why it was set aside (e.g. ``conflicting duplicate key``) |
| row | string | the whole row as JSON, columns sorted |
| source | string | the delivery it came from (e.g. the drop's date) |
| run_id | string | the run that set it aside |
| quarantined_at | timestamp | when |

A row already quarantined from the same delivery (same table, source, key and row) is not added
again, so a re-run leaves the table as one run did. Written in one commit before the tables the
run then writes.
"""

from __future__ import annotations

import datetime as dt

QUARANTINE_TABLE = "_quarantine"
IDENTITY = ["table", "source", "key", "row"]


def rows(conflicting, table: str, reason: str, source: str, run_id: str):
    """``conflicting`` (a frame with ``_key``) as quarantine rows."""
    from pyspark.sql import functions as F

    columns = sorted(c for c in conflicting.columns if c != "_key")
    return conflicting.select(
        F.lit(table).alias("table"),
        F.col("_key").alias("key"),
        F.lit(reason).alias("reason"),
        F.to_json(F.struct(*[F.col(c) for c in columns])).alias("row"),
        F.lit(source).alias("source"),
        F.lit(run_id).alias("run_id"),
        F.lit(dt.datetime.now(dt.UTC)).cast("timestamp").alias("quarantined_at"),
    )


def write(job, layer: str, frames: list) -> int:
    """Append the frames' rows not yet in the quarantine table, in one commit; the rows added."""
    if not frames:
        return 0
    uri = job.uri(layer, QUARANTINE_TABLE)
    new = frames[0]
    for frame in frames[1:]:
        new = new.unionByName(frame)
    if job.engine.exists(uri):
        new = new.join(job.engine.read(uri).select(*IDENTITY), IDENTITY, "left_anti")
    new = new.localCheckpoint(eager=True)
    added = new.count()
    if added:
        job.engine.append(new, uri, metadata={"run_id": job.run_id, "job": job.name})
    return added
