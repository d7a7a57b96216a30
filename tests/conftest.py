"""Shared fixtures: an isolated Airflow home, a Spark Connect session, a lake per test, DAG runs.

Airflow reads its configuration when first imported, so the environment is set here, before
any test module imports it. The Spark Connect server (with Delta Lake) is started once per test
run, before the pytest-xdist workers, which inherit its address (``SPARK_REMOTE`` and the
``spark_connect_default`` connection); ``SPARK_REMOTE`` set beforehand means "use that server".
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cpu_share
import pytest
from azurite import azurite  # noqa: F401
from prereq import missing

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
    "SPARK_CONN_ID",
    # the Makefile's defaults for `make demo`/`make airflow` (the demo's SQLite source)
    "AIRFLOW_CONN_ADVENTUREWORKS_SQL",
    "ADVENTUREWORKS_SOURCE_SCHEMA",
    "ADVENTUREWORKS_SOURCE_QUEUE",
    "WAREHOUSE_KIND",
    "WAREHOUSE_CONN_ID",
    "POWERBI_DATASET_ID",
    "POWERBI_GROUP_ID",
):
    os.environ.pop(name, None)

_SERVICES: list = []  # what pytest_configure started, stopped by pytest_unconfigure
_SESSION_START = {"wall": 0.0, "busy": 0.0}  # when pytest_configure began, for the CPU summary
_SAMPLER: list[cpu_share.Sampler] = []  # the CPU of the Spark server this run started, over time


def pytest_configure(config):
    """Start the run's services once for all workers (in the controller): a private PostgreSQL
    server (``LAKEHOUSE_TEST_PG``), a private MariaDB server (``LAKEHOUSE_TEST_MARIADB``) and the
    Spark Connect server (``SPARK_REMOTE``). Any of them set beforehand means "use that one"."""
    if hasattr(config, "workerinput"):  # an xdist worker: the controller started them
        return
    _SESSION_START.update(wall=time.monotonic(), busy=_machine_busy_seconds())
    if not os.environ.get("LAKEHOUSE_TEST_PG"):
        from lakehouse import pgserver

        try:
            postgres = pgserver.start_postgres(Path(tempfile.mkdtemp(prefix="postgres-test-")))
        except pgserver.PostgresUnavailableError:
            if os.environ.get("CI") == "true":
                raise  # CI must have installed it (`make prereqs`); its tests would only skip
            postgres = None  # the PostgreSQL tests skip, naming the server they could not reach
        if postgres is not None:
            _SERVICES.append(postgres)
            os.environ["LAKEHOUSE_TEST_PG"] = postgres.address
    if not os.environ.get("LAKEHOUSE_TEST_MARIADB"):
        pytest.register_assert_rewrite("mariadb")  # test modules load it as a plugin (its fixture)
        import mariadb

        try:
            server = mariadb.start_mariadb(Path(tempfile.mkdtemp(prefix="mariadb-test-")))
        except mariadb.MariaDBUnavailableError:
            if os.environ.get("CI") == "true":
                raise  # CI must have installed it (`make prereqs`); its tests would only skip
            server = None  # the MariaDB tests skip, naming what is missing
        if server is not None:
            _SERVICES.append(server)
            os.environ["LAKEHOUSE_TEST_MARIADB"] = server.address
    if not os.environ.get("SPARK_REMOTE"):
        from lakehouse import spark_server
        from lakehouse.ports import free_port

        folder = Path(tempfile.mkdtemp(prefix="spark-connect-test-"))
        server = spark_server.start(free_port(), folder=folder, conf=_test_server_conf())
        _SERVICES.append(server)
        os.environ["SPARK_REMOTE"] = server.url
        log = folder / "cpu-share"
        log.mkdir()
        os.environ[cpu_share.LOG_ENV] = str(log)  # the workers inherit it
        _SAMPLER.append(cpu_share.Sampler(server.pid, log))
    url = os.environ["SPARK_REMOTE"]
    host, _, port = url.removeprefix("sc://").partition(":")
    os.environ["AIRFLOW_CONN_SPARK_CONNECT_DEFAULT"] = json.dumps(
        {"conn_type": "spark_connect", "host": f"sc://{host}", "port": int(port.split("/")[0])}
    )


# Seconds the longest test files took in a full run (CI=true make test, two workers). pytest-xdist
# hands out whole files (--dist loadfile) in collection order (the Makefile's --no-loadscope-reorder;
# by default it would order files by their number of tests, which put these few-test files last):
# the longest go first, so that the workers end together instead of one running a five-minute file
# alone at the end. Only the order depends on these figures: a stale one costs time, not results.
LONGEST_FILES = {
    "test_spotify_jobs.py": 300,
    "test_spotify_e2e.py": 290,
    "test_azure_lake_e2e.py": 275,
    "test_formula1_e2e.py": 235,
    "test_adventureworks_jobs.py": 220,
    "test_formula1_scheduler.py": 200,
    "test_spotify_scheduler.py": 210,
    "test_netflix_e2e.py": 195,
    "test_adventureworks_e2e.py": 165,
    "test_compute_switch.py": 150,
    "test_bad_input_airflow.py": 150,
    "test_bad_input_files.py": 120,
    "test_adf.py": 100,
    "test_secrets_in_logs.py": 75,
}


def pytest_collection_modifyitems(config, items):
    """The longest files first (a stable sort: each file's tests, and the other files, keep their
    order)."""
    items.sort(key=lambda item: -LONGEST_FILES.get(item.path.name, 0))


def _machine_busy_seconds() -> float:
    """CPU time all cores spent busy since boot (Linux /proc/stat: all but idle and iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Where the run's CPU went: the Spark Connect server's share shows what a saving can reach."""
    if hasattr(config, "workerinput") or not _SESSION_START["wall"]:
        return
    wall = time.monotonic() - _SESSION_START["wall"]
    busy = _machine_busy_seconds() - _SESSION_START["busy"]
    line = f"CPU: {busy:.0f} s busy on {os.cpu_count()} cores in {wall:.0f} s"
    server_cpu = cpu_share.cpu_seconds(_SAMPLER[0].pid) if _SAMPLER else None
    if server_cpu is not None:
        line += f"; the Spark Connect server {server_cpu:.0f} s ({100 * server_cpu / max(busy, 1):.0f}%)"
    terminalreporter.write_line(line)
    if _SAMPLER:
        shares = sorted(_SAMPLER[0].by_file().items(), key=lambda item: -item[1])
        terminalreporter.write_line(
            "Spark server CPU by test file (each second split among the tests running): "
            + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in shares[:15])
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Log when each test ran, module fixtures' setup included, for the CPU split by file."""
    start = time.time()
    yield
    cpu_share.log_interval(item.nodeid, start, time.time())


def pytest_unconfigure(config):
    while _SERVICES:
        _SERVICES.pop().stop()


def _test_server_conf() -> dict[str, str]:
    from lakehouse import spark_server

    # Two test workers share it for the whole run, and a server's heap holds every table's Delta
    # snapshot it has read: at 3g, G1's concurrent marking ran all along (46 s of its threads' CPU
    # in the first ten minutes of a run). The heap grows only as far as it is used.
    return {**spark_server.server_conf(), "spark.driver.memory": "6g"}


def shared_data(name: str) -> Path:
    """A folder of ../shared/data; without it a skip naming what is missing, a failure under CI=true
    (CI has the shared data: a run that lost it would quietly leave out every real-data test)."""
    path = SHARED_DATA / name
    if not path.is_dir():
        missing(f"real source data not found at {path} (the shared data folder beside the repository)")
    return path


@pytest.fixture(scope="session")
def airflow_db():
    """An initialised SQLite metadata database in the session's Airflow home."""
    subprocess.run(
        [str(BIN / "airflow"), "db", "migrate"], check=True, capture_output=True, env=os.environ.copy()
    )
    return _AIRFLOW_HOME


@pytest.fixture(scope="module")
def spark():
    """A Spark Connect session on the test run's server (the one every job in the tests uses).

    One per test module, taken with ``getOrCreate()``: a Spark task run in this process (``dag.test()``
    runs tasks in-process) stops the session it used, and the provider's ``PySparkOperator`` takes
    the process's session too, so a module after such a run gets a new one. Not stopped here: the
    next module's may be the same session.
    """
    from pyspark.sql import SparkSession

    session = SparkSession.builder.remote(os.environ["SPARK_REMOTE"]).getOrCreate()
    session.conf.set("spark.sql.session.timeZone", "UTC")
    return session


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
