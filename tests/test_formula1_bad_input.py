"""Bad Formula 1 drops, through the processed job itself (spark-submit, local Spark, Delta)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, shared_data
from deltalake import DeltaTable

from lakehouse.metadata import load_pipeline
from lakehouse.reporting import read_rows

DAY = "2021-03-28"


def run_job(lake: Path, tables: list[str] | None = None) -> subprocess.CompletedProcess:
    config = json.dumps(load_pipeline("formula1"), default=str)
    # as Databricks runs it: the entry point as a script, here a client of the test run's server
    command = [
        sys.executable,
        str(ROOT / "spark_jobs" / "run.py"),
        "formula1.silver",
        "--lake-root",
        str(lake),
        "--run-id",
        "manual__bad_input",
        "--file-date",
        DAY,
        "--config",
        config,
    ]
    if tables:
        command += ["--tables", ",".join(tables)]
    return subprocess.run(command, capture_output=True, text=True, check=False)


@pytest.fixture
def drop(lake) -> Path:
    folder = lake / "raw" / "formula1" / DAY
    shutil.copytree(shared_data("formula1") / DAY, folder)
    return folder


def audit(lake: Path) -> dict:
    rows = read_rows(str(lake / "gold" / "formula1" / "_audit"))
    return {(r["table"], r["metric"]): r["value"] for r in rows}


def test_a_missing_required_file_fails_naming_it_and_writes_nothing(lake, drop):
    (drop / "pit_stops.json").unlink()
    done = run_job(lake)
    assert done.returncode != 0
    assert f"drop {DAY} is missing required file(s): pit_stops.json" in done.stderr + done.stdout
    assert not (lake / "silver").exists()  # not even the tables whose files were there


def test_a_zero_byte_required_file_fails_naming_it_and_writes_nothing(lake, drop):
    # Spark's file sources do not list a 0-byte file: to the job it is a missing file, named
    (drop / "pit_stops.json").write_bytes(b"")
    done = run_job(lake)
    assert done.returncode != 0
    assert "pit_stops.json" in done.stderr + done.stdout
    assert "MissingSourceError" in done.stderr  # a BadInputError: not retried
    assert not (lake / "silver").exists()


def test_malformed_rows_are_rescued_and_counted_not_merged(lake, drop):
    lines = (drop / "results.json").read_text().splitlines()
    lines[4] = lines[4][: len(lines[4]) // 2]  # a JSON line cut in half
    (drop / "results.json").write_text("\n".join(lines) + "\n")
    extra = drop / "lap_times" / "lap_times_split_9.csv"
    extra.write_text('1052,1,99,1,"1:40.000",100000,EXTRA\n1052,1,100,1,"1:41.000",101000,EXTRA\n')
    done = run_job(lake, tables=["results", "lap_times"])  # within the default tolerance (10 rows)
    assert done.returncode == 0, done.stderr[-3000:]
    counts = audit(lake)
    assert counts[("lap_times", "rows_read")] == 1026 + 2  # rows, not fields
    assert counts[("results", "rows_read")] == len(lines)
    assert counts[("results", "rows_rescued")] == 1
    assert DeltaTable(str(lake / "silver" / "formula1" / "results")).count() == len(lines) - 1
    assert counts[("lap_times", "rows_rescued")] == 2
    laps = read_rows(str(lake / "silver" / "formula1" / "lap_times"))
    assert not [r for r in laps if r["lap"] in (99, 100) and r["race_id"] == 1052 and r["driver_id"] == 1]
    assert counts[("lap_times", "rows_inserted")] == len(laps)
