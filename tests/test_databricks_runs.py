"""A Spark task on Databricks as Airflow runs it, against the local Jobs API stand-in
(``tests/fake_databricks.py``): exact requests, idempotency tokens, a failed run's error and page,
a retried task after a worker crash, a killed task, and one job cluster per DAG run.

The runs execute small test jobs (``spark_jobs/lhtest/*.py`` in a deployed copy of ``spark_jobs/``:
no Spark work, so these tests take seconds); the Netflix DAG on Databricks with real Spark work is
in ``tests/test_compute_switch.py``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from conftest import ROOT
from dag_serialization import serialize
from fake_databricks import FakeDatabricks

from lakehouse import databricks

pytest_plugins = ["smtp_inbox"]  # the inbox fixture: a real SMTP server for the failure alert

WORKSPACE_FILES = "/Workspace/Users/ci@example.com/.bundle/lakehouse/dev/files"
JOBS_ROOT = f"{WORKSPACE_FILES}/spark_jobs"
DAY = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)

TEST_JOBS = {
    "ok": """
        def main(argv):
            config = json.loads(argv[argv.index("--config") + 1])
            with open(config["marker"], "a") as f:
                f.write(argv[argv.index("--run-id") + 1] + "\\n")
    """,
    "fail": """
        def main(argv):
            raise ValueError("table orders: 3 rows have no order_id")
    """,
    "bad": """
        def main(argv):
            from spark_jobs.common.errors import EmptyDeliveryError

            raise EmptyDeliveryError("table orders: orders_2026-11-22.csv has no rows")
    """,
    "flaky": """
        def main(argv):
            config = json.loads(argv[argv.index("--config") + 1])
            marker = Path(config["marker"])
            tries = marker.read_text().count("x") if marker.exists() else 0
            marker.write_text("x" * (tries + 1))
            if tries == 0:
                raise RuntimeError("first run fails")
    """,
    "slow": """
        def main(argv):
            config = json.loads(argv[argv.index("--config") + 1])
            Path(config["marker"]).write_text(str(os.getpid()))
            time.sleep(float(config.get("seconds", 60)))
            with open(config["marker"] + ".done", "a") as f:
                f.write("done\\n")
    """,
}


@pytest.fixture
def deployed(tmp_path) -> Path:
    """A deployed bundle's ``files`` folder: a copy of ``spark_jobs/`` plus the test jobs."""
    files = tmp_path / "files"
    shutil.copytree(ROOT / "spark_jobs", files / "spark_jobs", ignore=shutil.ignore_patterns("__pycache__"))
    package = files / "spark_jobs" / "lhtest"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, body in TEST_JOBS.items():
        head = "import json, os, time\nfrom pathlib import Path\n"
        (package / f"{name}.py").write_text(head + textwrap.dedent(body))
    return files


@pytest.fixture
def api(deployed, monkeypatch):
    with FakeDatabricks(workspace={WORKSPACE_FILES: deployed}) as fake:
        monkeypatch.setenv("LAKEHOUSE_COMPUTE", "databricks")
        monkeypatch.setenv("DATABRICKS_JOBS_ROOT", JOBS_ROOT)
        monkeypatch.setenv("DATABRICKS_POLL_SECONDS", "1")
        monkeypatch.setenv("AIRFLOW_CONN_DATABRICKS_DEFAULT", fake.connection())
        for name in ("DATABRICKS_CLUSTER_ID", "DATABRICKS_JOB_CLUSTER", "DATABRICKS_DEFERRABLE"):
            monkeypatch.delenv(name, raising=False)
        yield fake


def one_job_dag(dag_id: str, job: str, config: dict, **task_kwargs):
    from airflow.sdk import DAG

    from lakehouse.compute import spark_job
    from lakehouse.defaults import default_args

    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        default_args=default_args({"owner": "tests"}),
    ) as dag:
        spark_job("job", "lhtest", job, config, **task_kwargs)
    serialize(dag)
    return dag


def tries(dag_id: str, run_id: str) -> dict[str, int]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
        ).all()
        return {ti.task_id: ti.try_number for ti in rows}


def run_page_link(dag_id: str, run_id: str, task_id: str = "job") -> str | None:
    """The task's extra link "See Databricks Job Run" as the API server resolves it for the UI:
    the serialized DAG's operator and the task instance from the metadata DB."""
    from airflow.models.dagbag import DBDagBag
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        dag_run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
        ti = session.scalar(
            select(TaskInstance).where(
                TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id, TaskInstance.task_id == task_id
            )
        )
        dag = DBDagBag().get_dag_for_run(dag_run, session=session)
        task = dag.get_task(task_id)
        assert "See Databricks Job Run" in task.extra_links
        return task.get_extra_links(ti, "See Databricks Job Run")


def latest_run_id(dag_id: str) -> str:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        runs = session.scalars(select(DagRun).where(DagRun.dag_id == dag_id)).all()
        return max(runs, key=lambda r: r.id).run_id


def clear(dag_id: str, run_id: str) -> None:
    """Clear the run's task instances with Airflow's own ``clear_task_instances``: what Clear in
    the UI (the REST API's clearTaskInstances) and ``airflow tasks clear`` call."""
    from airflow.models.taskinstance import TaskInstance, clear_task_instances
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        tis = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
        ).all()
        assert tis
        clear_task_instances(tis, session)


def token_for(dag_id: str, run_id: str, attempt: int, generation: int = 0) -> str:
    return databricks.idempotency_token(dag_id, run_id, "job", -1, generation, attempt)


@pytest.mark.parametrize("deferrable", [False, True], ids=["polling", "deferrable"])
def test_a_run_is_submitted_exactly_and_its_page_linked(
    airflow_db, lake, api, monkeypatch, tmp_path, deferrable
):
    monkeypatch.setenv("DATABRICKS_DEFERRABLE", str(deferrable).lower())
    marker = tmp_path / "ran.txt"
    dag_id = f"dbxtest_ok_{deferrable}".lower()
    dag = one_job_dag(dag_id, "ok", {"marker": str(marker)})
    assert dag.get_task("job").deferrable is deferrable
    run = dag.test(logical_date=DAY)

    assert str(run.state) == "success"
    assert marker.read_text() == run.run_id + "\n"  # the job ran once, with the run's id
    (submit,) = api.calls("runs/submit")
    assert submit.auth == "Bearer dapi-test-token"
    parameters = [
        "lhtest.ok",
        "--lake-root",
        str(lake),
        "--run-id",
        run.run_id,
        "--config",
        json.dumps({"marker": str(marker)}, separators=(",", ":")),
    ]
    assert submit.body == {
        "tasks": [
            {
                "task_key": "job",
                "spark_python_task": {"python_file": f"{JOBS_ROOT}/run.py", "parameters": parameters},
                "environment_key": "lakehouse",
            }
        ],
        "environments": [{"environment_key": "lakehouse", "spec": {"environment_version": "4"}}],
        "run_name": f"{dag_id}.job {run.run_id}",
        "idempotency_token": token_for(dag_id, run.run_id, 0),
    }
    assert len(submit.body["idempotency_token"]) <= 64
    (run_id,) = api.runs
    assert run_page_link(dag.dag_id, run.run_id) == api.page(run_id)
    assert not api.calls("runs/cancel")


@pytest.mark.parametrize("deferrable", [False, True], ids=["polling", "deferrable"])
def test_a_failed_run_fails_the_task_with_the_jobs_error_and_the_run_page(
    airflow_db, lake, api, monkeypatch, inbox, deferrable
):
    monkeypatch.setenv("DATABRICKS_DEFERRABLE", str(deferrable).lower())
    monkeypatch.setenv("LAKEHOUSE_RETRIES", "0")
    dag = one_job_dag(f"dbxtest_fail_{deferrable}".lower(), "fail", {}, tables=["orders"])
    run = dag.test(logical_date=DAY)

    assert str(run.state) == "failed"
    (run_id,) = api.runs
    assert api.runs[run_id].result_state == "FAILED"
    assert len(inbox.messages) == 1
    body = inbox.bodies()[0]
    assert f"Spark job lhtest.fail (tables orders): Databricks run {run_id} ended FAILED" in body
    assert "ValueError: table orders: 3 rows have no order_id" in body
    assert f"Run page: {api.page(run_id)}" in body
    assert run_page_link(dag.dag_id, run.run_id) == api.page(run_id)


def test_bad_input_on_databricks_fails_the_task_without_retry(airflow_db, lake, api, monkeypatch, inbox):
    """The run's error names the job's exception class; a BadInputError subclass (read from the
    jobs' source) fails the task at once, as it does on local compute."""
    assert {"BadInputError", "EmptyDeliveryError", "ExpectationFailedError"} <= databricks.bad_input_classes()
    monkeypatch.setenv("LAKEHOUSE_RETRIES", "2")
    dag = one_job_dag("dbxtest_bad", "bad", {}, tables=["orders"])
    run = dag.test(logical_date=DAY)

    assert str(run.state) == "failed"
    assert tries("dbxtest_bad", run.run_id) == {"job": 1}  # not retried
    assert len(api.runs) == 1
    assert len(inbox.messages) == 1
    body = inbox.bodies()[0]
    assert "EmptyDeliveryError: table orders: orders_2026-11-22.csv has no rows" in body
    assert "(bad input, not retried)" in body


def test_a_retry_after_a_failed_run_starts_a_new_run_with_the_next_token(
    airflow_db, lake, api, monkeypatch, tmp_path
):
    monkeypatch.setenv("LAKEHOUSE_RETRIES", "1")
    monkeypatch.setenv("LAKEHOUSE_RETRY_DELAY_SECONDS", "0")
    marker = tmp_path / "flaky.txt"
    dag = one_job_dag("dbxtest_flaky", "flaky", {"marker": str(marker)})
    run = dag.test(logical_date=DAY)

    assert str(run.state) == "success"
    assert tries("dbxtest_flaky", run.run_id) == {"job": 2}
    tokens = [s["idempotency_token"] for s in api.submissions]
    first, second = token_for("dbxtest_flaky", run.run_id, 0), token_for("dbxtest_flaky", run.run_id, 1)
    # try 1 starts run A, which fails; try 2 asks again with A's token, gets A (failed), then B
    assert tokens == [first, first, second]
    assert [(r.result_state) for r in api.runs.values()] == ["FAILED", "SUCCESS"]
    assert marker.read_text() == "xx"  # the job ran twice: once failed, once succeeded


DAG_FILE = """
import datetime as dt
from airflow.sdk import DAG
from lakehouse.compute import spark_job
from lakehouse.defaults import default_args

with DAG(dag_id="dbxtest_crash", schedule=None, start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
         default_args=default_args({"owner": "tests"})):
    spark_job("job", "lhtest", "slow", {"marker": MARKER, "seconds": 6})
"""


def test_a_task_retried_after_its_worker_died_reconnects_to_its_run(airflow_db, lake, api, tmp_path):
    """The worker running the task is killed (SIGKILL: no on_kill, the run goes on); the task's
    next try submits with the same token and gets the same run back: the job runs once."""
    dags = tmp_path / "dags"
    dags.mkdir()
    marker = tmp_path / "slow.txt"
    (dags / "crash.py").write_text(DAG_FILE.replace("MARKER", repr(str(marker))))
    env = {**os.environ, "AIRFLOW__CORE__DAGS_FOLDER": str(dags), "LAKEHOUSE_RETRIES": "0"}
    airflow = str(Path(sys.executable).parent / "airflow")
    command = [airflow, "dags", "test", "dbxtest_crash", DAY.isoformat()]

    worker = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (api.runs and marker.exists()) and worker.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    failed = worker.stderr.read()[-3000:] if worker.poll() is not None else "no run started"
    assert api.runs, failed
    assert marker.exists(), failed
    worker.kill()  # the worker dies: nothing cancels the run
    worker.wait()
    (run,) = api.runs.values()
    assert run.life_cycle_state == "RUNNING"

    dag_run_id = latest_run_id("dbxtest_crash")
    assert run.body["run_name"] == f"dbxtest_crash.job {dag_run_id}"
    # the task instance of the same DAG run runs again in another process, as a retry would
    again = subprocess.run(
        [airflow, "tasks", "test", "dbxtest_crash", "job", dag_run_id],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(api.runs) == 1  # no second run
    tokens = {s["idempotency_token"] for s in api.submissions}
    assert len(api.submissions) == 2
    assert len(tokens) == 1
    assert run.result_state == "SUCCESS"
    assert Path(str(marker) + ".done").read_text() == "done\n"  # the job ran to its end, once
    assert not api.calls("runs/cancel")


def test_a_killed_task_cancels_its_run_and_the_run_stops(airflow_db, lake, api, tmp_path):
    """SIGTERM to the task's process (what Airflow sends a task marked failed or cleared while it
    runs): the task runner calls ``on_kill``, which cancels the Databricks run."""
    marker = tmp_path / "slow.txt"
    dag = one_job_dag("dbxtest_killed", "slow", {"marker": str(marker), "seconds": 120}, retries=0)

    def kill_when_running():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            runs = list(api.runs.values())
            if runs and runs[0].life_cycle_state == "RUNNING" and marker.exists():
                break
            time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.getsignal(signal.SIGTERM)
    threading.Thread(target=kill_when_running, daemon=True).start()
    try:
        run = dag.test(logical_date=DAY)
    finally:
        signal.signal(signal.SIGTERM, previous)

    assert str(run.state) == "failed"
    (run_id,) = api.runs
    (cancel,) = api.calls("runs/cancel")
    assert cancel.body == {"run_id": run_id}
    process = api.runs[run_id].process
    assert process.wait(timeout=30) is not None  # the job's process was stopped
    assert api.runs[run_id].result_state == "CANCELED"
    assert not Path(str(marker) + ".done").exists()


BRANCH_DAG_CONFIG = {"marker": "MARKER"}


def test_job_cluster_mode_shares_one_cluster_per_dag_run_and_deletes_it(
    airflow_db, lake, api, monkeypatch, tmp_path
):
    from airflow.sdk import DAG, task

    from lakehouse.compute import spark_job
    from lakehouse.defaults import default_args

    spec = {"spark_version": "16.4.x-scala2.12", "node_type_id": "Standard_D4ds_v5", "num_workers": 2}
    monkeypatch.setenv("DATABRICKS_JOB_CLUSTER", json.dumps(spec))
    marker = tmp_path / "ran.txt"
    config = {"marker": str(marker)}
    with DAG(
        dag_id="dbxtest_cluster",
        schedule=None,
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        default_args=default_args({"owner": "tests"}),
    ) as dag:
        first = spark_job("first", "lhtest", "ok", config)
        taken = spark_job("taken", "lhtest", "ok", config)
        skipped = spark_job("skipped", "lhtest", "ok", config)
        last = spark_job("last", "lhtest", "ok", config, trigger_rule="none_failed")

        @task.branch
        def choose():
            return "taken"

        branch = choose()
        first >> branch >> [taken, skipped] >> last
    serialize(dag)
    assert dag.get_task("databricks_cluster").is_setup
    assert dag.get_task("databricks_cluster_delete").is_teardown
    run = dag.test(logical_date=DAY)

    assert str(run.state) == "success"
    assert tries("dbxtest_cluster", run.run_id)["skipped"] == 0  # never started
    (create,) = api.calls("clusters/create")
    (cluster_id,) = api.clusters
    assert create.body == {
        "autotermination_minutes": 60,
        **spec,
        "cluster_name": databricks.cluster_name("dbxtest_cluster", run.run_id, 0),
        "custom_tags": {"lakehouse_dag": "dbxtest_cluster"},
    }
    computes = [s["tasks"][0] for s in api.submissions]
    assert [c["task_key"] for c in computes] == ["first", "taken", "last"]
    assert all(c["existing_cluster_id"] == cluster_id for c in computes)
    assert all("environments" not in s for s in api.submissions)
    assert marker.read_text().count("\n") == 3
    (delete,) = api.calls("clusters/delete")
    assert delete.body == {"cluster_id": cluster_id}
    assert api.clusters[cluster_id]["state"] == "TERMINATED"


def test_clearing_a_succeeded_task_runs_its_job_again(airflow_db, lake, api, tmp_path):
    """Clear is a request to run again: a new clear generation, a new token, a new run (while a
    retry within one clear gets the run it started back, as the tests above show)."""
    dags = tmp_path / "dags"
    dags.mkdir()
    marker = tmp_path / "ran.txt"
    source = DAG_FILE.replace("dbxtest_crash", "dbxtest_clear").replace('"slow"', '"ok"')
    (dags / "clear.py").write_text(source.replace("MARKER", repr(str(marker))))
    env = {**os.environ, "AIRFLOW__CORE__DAGS_FOLDER": str(dags), "LAKEHOUSE_RETRIES": "0"}
    airflow = str(Path(sys.executable).parent / "airflow")

    def cli(*args: str) -> None:
        done = subprocess.run([airflow, *args], env=env, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr[-3000:]

    cli("dags", "test", "dbxtest_clear", DAY.isoformat())
    run_id = latest_run_id("dbxtest_clear")
    clear("dbxtest_clear", run_id)
    cli("tasks", "test", "dbxtest_clear", "job", run_id)

    tokens = [s["idempotency_token"] for s in api.submissions]
    assert tokens == [
        token_for("dbxtest_clear", run_id, 0),
        token_for("dbxtest_clear", run_id, 0, generation=1),
    ]
    assert len(api.runs) == 2
    assert marker.read_text() == f"{run_id}\n{run_id}\n"  # the job ran again
