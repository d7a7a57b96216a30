"""AdventureWorks' copy of one large table to bronze: throughput, and peak memory as the table grows.

A table of ``BENCH_COPY_SIZES`` rows (default ``200k,2M``; an integer key, a numeric(19,4) amount, a
timestamp, text and a small blob) in a SQLite file is copied by ``schema_copy.copy_table`` in a fresh
interpreter per measurement, which reports its peak resident memory; the same interpreter with the
same imports and an empty table is the baseline. The copy reads in chunks of ``chunk_rows`` and
writes one parquet part per chunk, so its memory should follow the chunk, not the table: the
figure to watch is the ratio of the largest table's peak over the smallest's (goal: about 1), and
how the peak moves with ``chunk_rows`` at the largest size.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHUNKS = (10_000, 50_000)  # the metadata's default is 50,000
TABLE = "OrderLine"

COPY_SCRIPT = """
import datetime as dt, json, resource, sys, time
sys.path.insert(0, {plugins!r}); sys.path.insert(0, {root!r})
import pyarrow, pyarrow.parquet  # imported by the copy: in the baseline too
from lakehouse import schema_copy
from lakehouse.sql_ingest import Window
source = {{"conn_id": "bench_source", "schema": None, "include": ["*"], "exclude": [],
          "change_columns": [], "incremental": {{}}, "timezone": "UTC", "chunk_rows": {chunk}}}
tables = schema_copy.discover("bench_source", source)["tables"]
spec = next(s for s in tables if s["source_table"] == {table!r})
window = Window(dt.datetime(2025, 1, 1, tzinfo=dt.UTC), dt.datetime(2025, 1, 2, tzinfo=dt.UTC))
started = time.perf_counter()
if {copy}:
    summary = schema_copy.copy_table("benchcopy", spec, source, [window], "bench")
else:
    summary = {{"rows": 0, "parts": 0}}
seconds = time.perf_counter() - started
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
summary = {{"rows": summary["rows"], "parts": summary["parts"], "seconds": seconds, "peak_mb": peak_mb}}
print(json.dumps(summary))
"""


def parse_size(text: str) -> int:
    text = text.strip().lower()
    factor = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * factor)


def make_source(path: Path, rows: int) -> None:
    """One table of ``rows`` rows, generated inside SQLite (a recursive CTE: no Python per row)."""
    import sqlite3

    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute(
            f'CREATE TABLE "{TABLE}" ("OrderLineID" INTEGER PRIMARY KEY, "Amount" NUMERIC(19,4) NOT NULL, '
            '"ModifiedDate" DATETIME NOT NULL, "Note" VARCHAR(60), "Tag" BLOB)'
        )
        conn.execute(
            f'INSERT INTO "{TABLE}" WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n '
            f"WHERE i < {rows}) SELECT i, (i % 100000) / 10000.0, "
            "datetime('2024-12-01', '+' || (i % 86400) || ' seconds'), 'line ' || i || ' of an order', "
            "randomblob(8) FROM n"
        )


def measure(work: Path, source: Path, chunk: int, copy: bool) -> dict:
    lake = work / f"lake-{chunk}-{copy}"
    env = {
        **os.environ,
        "LAKE_ROOT": str(lake),
        "AIRFLOW_CONN_BENCH_SOURCE": json.dumps({"conn_type": "sqlite", "host": str(source)}),
    }
    script = COPY_SCRIPT.format(
        plugins=str(ROOT / "plugins"), root=str(ROOT), chunk=chunk, table=TABLE, copy=copy
    )
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the copy failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_schema_copy(work: Path) -> None:
    sizes = [parse_size(s) for s in os.environ.get("BENCH_COPY_SIZES", "200k,2M").split(",") if s.strip()]
    print("\n== AdventureWorks copy of one table to bronze (SQLite source, chunked parquet parts) ==")
    header = ("rows", 10), ("chunk_rows", 10), ("parts", 6), ("seconds", 8), ("rows/s", 9), ("peak MB", 8)
    print(" ".join(f"{name:>{width}}" for name, width in header) + f" {'over base':>9}")
    peaks: dict[tuple[int, int], float] = {}
    for rows in sizes:
        source = work / f"copy-source-{rows}.db"
        started = time.perf_counter()
        make_source(source, rows)
        print(f"(generated {rows:,} rows in {time.perf_counter() - started:.0f} s)")
        base = measure(work, source, CHUNKS[-1], copy=False)
        for chunk in CHUNKS:
            result = measure(work, source, chunk, copy=True)
            assert result["rows"] == rows, result
            over = result["peak_mb"] - base["peak_mb"]
            peaks[(rows, chunk)] = over
            print(
                f"{rows:>10,} {chunk:>10,} {result['parts']:>6} {result['seconds']:>8.1f} "
                f"{rows / result['seconds']:>9,.0f} {result['peak_mb']:>8.0f} {over:>9.0f}"
            )
        source.unlink()
    if len(sizes) > 1:
        small, large = min(sizes), max(sizes)
        for chunk in CHUNKS:
            ratio = peaks[(large, chunk)] / max(peaks[(small, chunk)], 1.0)
            print(
                f"chunk_rows {chunk:,}: memory over the baseline at {large:,} rows / at {small:,} rows = "
                f"{ratio:.2f} (the table is {large / small:.0f}x larger; goal: about 1)"
            )


if __name__ == "__main__":
    import tempfile

    bench_schema_copy(Path(tempfile.mkdtemp(prefix="lakehouse-bench-copy-")))
