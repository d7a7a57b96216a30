"""Catch-up and ``airflow backfill create`` for Formula 1, run by a real scheduler."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from airflow_server import BIN, AirflowServer
from deltalake import DeltaTable
from test_formula1_e2e import expected_counts, expected_driver_standings

from lakehouse.reporting import read_rows
from lakehouse.sample_data import write_formula1_drops

pytestmark = pytest.mark.e2e
WEEKS = ["2021-03-21", "2021-03-28", "2021-04-04", "2021-04-11", "2021-04-18"]


def finished(runs: list[dict], since: dt.datetime | None = None) -> list[dict]:
    """Runs that have ended (after ``since``, when given)."""
    return [
        r
        for r in runs
        if r["state"] in ("success", "failed")
        and r["end_date"]
        and (since is None or dt.datetime.fromisoformat(r["end_date"]) > since)
    ]


def silver_versions(lake) -> dict[str, int]:
    return {
        p.parent.name: DeltaTable(str(p.parent)).version()
        for p in (lake / "silver" / "formula1").glob("*/_delta_log")
    }


def test_catchup_then_backfill_give_the_drop_by_drop_tables(tmp_path):
    lake = tmp_path / "lake"
    raw = lake / "raw" / "formula1"
    drops = write_formula1_drops(raw)
    server = AirflowServer(
        tmp_path / "airflow",
        {
            "LAKE_ROOT": str(lake),
            "LAKEHOUSE_RETRIES": "0",
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        },
    )
    server.start()
    try:
        server.wait_for_dag("formula1")
        server.unpause("formula1")  # catchup=True: a run per week of the schedule
        runs = server.wait_for_runs("formula1", lambda runs: len(finished(runs)) >= len(WEEKS), timeout=1200)
        states = {r["logical_date"][:10]: r["state"] for r in runs}
        assert states == dict.fromkeys(WEEKS, "success"), server.log_tail()

        expected = expected_counts(drops, raw)
        actual = {name: DeltaTable(str(lake / "silver" / "formula1" / name)).count() for name in expected}
        assert actual == expected
        standings = read_rows(str(lake / "gold" / "formula1" / "driver_standings"))
        assert sorted(
            (r["driver_name"], r["total_points"], r["wins"], r["rank"])
            for r in standings
            if r["race_year"] == 2021
        ) == expected_driver_standings(drops, 2021, raw)

        # A backfill that reprocesses two completed weeks (one with a drop, one without) changes nothing.
        before = silver_versions(lake)
        gold_before = DeltaTable(str(lake / "gold" / "formula1" / "race_results")).version()
        created = dt.datetime.now(dt.UTC)
        server.cli(
            *("backfill", "create", "--dag-id", "formula1"),
            *("--from-date", "2021-03-28", "--to-date", "2021-04-04", "--reprocess-behavior", "completed"),
        )
        # The backfill clears those completed runs and runs them again, under the same run ids.
        runs = server.wait_for_runs(
            "formula1", lambda runs: len(finished(runs, since=created)) >= 2, timeout=900
        )
        again = finished(runs, since=created)
        assert sorted(r["logical_date"][:10] for r in again) == ["2021-03-28", "2021-04-04"]
        assert {r["state"] for r in again} == {"success"}
        assert len(runs) == len(WEEKS)
        assert silver_versions(lake) == before
        assert DeltaTable(str(lake / "gold" / "formula1" / "race_results")).version() == gold_before
    finally:
        server.stop()
