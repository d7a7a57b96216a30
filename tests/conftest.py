"""Shared fixtures: an isolated Airflow home, a local Spark session, a lake per test, DAG runs.

Airflow reads its configuration when first imported, so the environment is set here, before
any test module imports it.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from azurite import azurite  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
BIN = Path(sys.executable).parent

_AIRFLOW_HOME = tempfile.mkdtemp(prefix="airflow-test-")
os.environ.update(
    {
        "AIRFLOW_HOME": _AIRFLOW_HOME,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW_CONN_SPARK_LOCAL": '{"conn_type": "spark", "host": "local[2]"}',
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
    }
)
for name in (
    "LAKE_ROOT",
    "LAKE_CONN_ID",
    "SPARK_LAKE_ROOT",
    "LAKEHOUSE_COMPUTE",
    "ALERT_EMAILS",
    "DELTA_ENGINE",
):
    os.environ.pop(name, None)


def shared_data(name: str) -> Path:
    """A folder of ../shared/data, or a skip naming what is missing."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real source data not found at {path} (the shared data folder beside the repository)")
    return path


@pytest.fixture(scope="session")
def airflow_db():
    """An initialised SQLite metadata database in the session's Airflow home."""
    subprocess.run(
        [str(BIN / "airflow"), "db", "migrate"], check=True, capture_output=True, env=os.environ.copy()
    )
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def spark():
    from spark_jobs.common.session import get_spark

    session = get_spark("tests")
    yield session
    session.stop()


@pytest.fixture
def lake(tmp_path, monkeypatch) -> Path:
    """An empty lake for this test; DAGs parsed afterwards write there."""
    root = tmp_path / "lake"
    root.mkdir()
    monkeypatch.setenv("LAKE_ROOT", str(root))
    return root


def load_dag(dag_id: str):
    """Parse the DAG folder now, so settings from the current environment apply."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[dag_id]


@dataclass
class RunResult:
    run_id: str
    state: str
    tasks: dict[str, str]  # task_id, or task_id[map_index], -> state


def run_dag(dag_id: str, *, logical_date: dt.datetime, conf: dict | None = None) -> RunResult:
    """Run a whole DAG with ``dag.test()``.

    Running it again with the same logical date clears that run's tasks and runs them again,
    as a user's "Clear" in the UI does.
    """
    dag = load_dag(dag_id)
    run = dag.test(logical_date=logical_date, run_conf=conf or {})
    return _result(run)


def clear_and_rerun(dag_id: str, *, logical_date: dt.datetime) -> RunResult:
    """Clear every task of the existing run at ``logical_date`` and run it again, same run id.

    This is what "Clear" on a run in the UI does. ``dag.test()`` would otherwise delete the run
    and create a new one, so its run-creation helper is swapped for one that reuses the
    cleared run (``dag.test()`` itself clears the run's task instances first).
    """
    from unittest import mock

    from airflow.models.dagrun import DagRun
    from airflow.utils.state import DagRunState
    from sqlalchemy import select

    def reuse_cleared_run(*, dag, logical_date, session, **_):
        run = session.scalar(
            select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.logical_date == logical_date)
        )
        assert run is not None, f"no run of {dag.dag_id} at {logical_date} to clear"
        run.state = DagRunState.RUNNING
        session.commit()
        run.dag = dag
        return run

    dag = load_dag(dag_id)
    with mock.patch("airflow.models.dagrun.get_or_create_dagrun", reuse_cleared_run):
        run = dag.test(logical_date=logical_date)
    return _result(run)


def _result(run) -> RunResult:
    tasks = {}
    for ti in run.get_task_instances():
        key = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
        tasks[key] = str(ti.state)
    return RunResult(run_id=run.run_id, state=str(run.state), tasks=tasks)
