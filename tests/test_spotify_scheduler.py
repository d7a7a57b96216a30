"""Spotify catch-up and ``airflow backfill create``, run by a real scheduler (LocalExecutor).

Three scheduled daily runs of ``spotify_ingest`` (catch-up) and the ``spotify_transform`` runs
their bronze Asset events trigger build gold; then the lake is emptied and a backfill of the same
three days, with reprocessing, rebuilds it: the gold tables must be the same.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections import Counter

import pytest
import yaml
from airflow_server import BIN, ROOT, AirflowServer
from conftest import shared_data

from lakehouse.reporting import read_rows
from lakehouse.spotify_source import load_script

pytestmark = pytest.mark.e2e
pytest_plugins = ["sourcedb"]
DAYS = ["2025-10-03", "2025-10-04", "2025-10-05"]  # catch-up and backfill of more than one day
GOLD = ["dim_user", "dim_artist", "dim_track", "dim_date", "fact_stream", "stream_facts"]


def gold_content(lake) -> dict[str, Counter]:
    return {
        t: Counter(tuple(sorted(r.items())) for r in read_rows(str(lake / "gold" / "spotify" / t)))
        for t in GOLD
    }


def finished(runs: list[dict]) -> list[dict]:
    return [r for r in runs if r["state"] in ("success", "failed")]


def transforms_settled(server, after: dt.datetime):
    """True once a transform run that started after ``after`` (the last ingest run's start: its
    Asset events come at its tasks' ends, before the run itself ends) finished, none is waiting."""
    runs = server.runs("spotify_transform")
    if any(r["state"] in ("queued", "running") for r in runs):
        return False
    return any(
        r["state"] in ("success", "failed") and dt.datetime.fromisoformat(r["start_date"]) >= after
        for r in runs
    )


def wait_for_transforms(server, after: dt.datetime, timeout: float = 900) -> list[dict]:
    import time

    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        if transforms_settled(server, after):
            runs = server.runs("spotify_transform")
            if runs == seen:  # settled twice, scheduler loops apart: no event left unconsumed
                return runs
            seen = runs
        else:
            seen = None
        time.sleep(4)  # the scheduler loops every ~2 s (SCHEDULER_HEARTBEAT_SEC)
    raise RuntimeError(f"spotify_transform did not settle: {server.runs('spotify_transform')}")


def days_include(tmp_path):
    """The metadata with a schedule of exactly ``DAYS`` (start and end date)."""
    include = tmp_path / "include"
    shutil.copytree(ROOT / "include", include)
    path = include / "spotify" / "pipeline.yaml"
    meta = yaml.safe_load(path.read_text())
    meta["schedule"]["start_date"] = dt.date.fromisoformat(DAYS[0])
    meta["schedule"]["end_date"] = dt.date.fromisoformat(DAYS[-1])
    path.write_text(yaml.safe_dump(meta, sort_keys=False))
    return include


def test_a_backfill_of_the_days_gives_the_gold_of_their_scheduled_runs(tmp_path, postgres_source):
    load_script(postgres_source.engine(), shared_data("spotify") / "spotify_initial_load.sql")
    lake = tmp_path / "lake"
    server = AirflowServer(
        tmp_path / "airflow",
        {
            "LAKE_ROOT": str(lake),
            "LAKEHOUSE_INCLUDE_DIR": str(days_include(tmp_path)),
            "LAKEHOUSE_RETRIES": "0",
            "AIRFLOW_CONN_SPOTIFY_SQL": postgres_source.conn,
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        },
    )
    server.start()
    try:
        server.wait_for_dag("spotify_transform")
        server.unpause("spotify_transform")
        server.unpause("spotify_ingest")  # catchup=True: one run per day
        runs = server.wait_for_runs(
            "spotify_ingest", lambda runs: len(finished(runs)) >= len(DAYS), timeout=600
        )
        assert {r["logical_date"][:10]: r["state"] for r in runs} == dict.fromkeys(DAYS, "success")
        assert all(r["run_id"].startswith("scheduled__") for r in runs), runs
        last_ingest = max(dt.datetime.fromisoformat(r["start_date"]) for r in runs)
        transforms = wait_for_transforms(server, after=last_ingest)
        assert {r["state"] for r in transforms} == {"success"}, server.log_tail()
        assert all(r["run_id"].startswith("asset_triggered__") for r in transforms), transforms
        scheduled = gold_content(lake)
        assert sum(scheduled["fact_stream"].values()) > 0

        # The same days again, from an empty lake, by a backfill that reprocesses them.
        for layer in ("bronze", "silver", "gold"):
            shutil.rmtree(lake / layer)
        created = dt.datetime.now(dt.UTC)
        server.cli(
            *("backfill", "create", "--dag-id", "spotify_ingest"),
            *("--from-date", DAYS[0], "--to-date", DAYS[-1], "--reprocess-behavior", "completed"),
        )
        runs = server.wait_for_runs(
            "spotify_ingest",
            lambda runs: (
                sum(1 for r in finished(runs) if dt.datetime.fromisoformat(r["end_date"]) > created)
                >= len(DAYS)
            ),
            timeout=600,
        )
        assert {r["state"] for r in runs} == {"success"}
        assert len(runs) == len(DAYS)  # the same runs, cleared and run again
        last_ingest = max(dt.datetime.fromisoformat(r["start_date"]) for r in runs)
        transforms = wait_for_transforms(server, after=last_ingest)
        assert {r["state"] for r in transforms} == {"success"}, server.log_tail()
        assert gold_content(lake) == scheduled
    finally:
        server.stop()
