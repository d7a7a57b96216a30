"""ADF beside Airflow: the Netflix DAG with its raw files landed by an existing Data Factory pipeline.

The provider's operator, hook and trigger and the Azure SDK run unchanged against a local fake of
Data Factory's management and token endpoints (``tests/fake_adf.py``), reached as the SDK reaches
Azure: HTTPS through a proxy, with a test CA trusted by configuration. Real Airflow runs
(``dag.test()``), a real SMTP server for the failure alerts, and for the one end-to-end run the
session's Spark Connect server with Delta tables.
"""

from __future__ import annotations

import copy
import datetime as dt
import html
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import references
from conftest import ROOT, load_dag, run_dag
from dag_serialization import serialize
from fake_adf import FakeDataFactory
from lakecheck import csv_rows, raw_files, rows

from lakehouse.sample_data import write_netflix_sample

# the inbox fixture: a real SMTP server, one retry without delay; reference_lakes: shared local runs
pytest_plugins = ["smtp_inbox", "references"]

SUNDAY = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)
FILES = {
    "titles": "netflix_titles.csv",
    "cast": "netflix_cast.csv",
    "category": "netflix_category.csv",
    "countries": "netflix_countries.csv",
    "directors": "netflix_directors.csv",
}
PIPELINE_NAME = "pl_copy_netflix_raw"
LINEAGE = ("_source_file", "_ingested_at")


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture
def adf(tmp_path, monkeypatch):
    """The fake factory, with the Azure SDK pointed at it and the Netflix DAG switched to ADF."""
    with FakeDataFactory(tmp_path / "adf") as fake:
        for name, value in fake.env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("AIRFLOW_CONN_AZURE_DATA_FACTORY_DEFAULT", fake.connection())
        monkeypatch.setenv("NETFLIX_LANDING", "adf")
        monkeypatch.setenv("ADF_POLL_SECONDS", "1")
        yield fake


def copy_activity(source: Path, lake: Path):
    """What the ADF copy pipeline does on success: the five files, as plain files, into the
    folder its ``sink_folder`` parameter names (relative to the raw container)."""

    def land(run: dict) -> None:
        folder = lake / "raw" / run["parameters"]["sink_folder"]
        folder.mkdir(parents=True, exist_ok=True)
        for name in FILES.values():
            shutil.copyfile(source / name, folder / name)

    return land


def run_path(fake: FakeDataFactory) -> str:
    return (
        f"/subscriptions/{fake.subscription}/resourceGroups/{fake.resource_group}"
        f"/providers/Microsoft.DataFactory/factories/{fake.factory}/"
    )


def gold(lake: Path) -> dict[str, list[dict]]:
    return {table: rows(lake, f"gold.{table}", drop=LINEAGE) for table in FILES}


# -- 1. end to end: ADF lands, bronze/silver/gold run on it, same gold as the HTTP path -----------
@pytest.mark.e2e
def test_adf_landing_then_bronze_silver_gold_give_the_http_path_s_gold(
    airflow_db, adf, tmp_path, monkeypatch, reference_lakes
):
    monkeypatch.setenv("LAKEHOUSE_RETRIES", "0")
    source = tmp_path / "source"
    write_netflix_sample(source, titles=40, seed=11)

    # The HTTP path on the same files, into its own lake: the reference (a session-wide one,
    # shared with test_compute_switch's local run: same files, day and settings).
    http_lake, http_source, reference = references.netflix_http(
        reference_lakes, titles=40, seed=11, day=SUNDAY, retries=0
    )
    assert references.same_files(source, http_source)
    assert reference.state == "success", reference.tasks
    # the HTTP path never calls ADF: it fetched every file and has no ADF task
    assert {reference.tasks[f"fetch_http_file[{i}]"] for i in range(5)} == {"success"}
    assert not [task for task in reference.tasks if "adf" in task]

    adf_lake = tmp_path / "adf-lake"
    monkeypatch.setenv("LAKE_ROOT", str(adf_lake))
    monkeypatch.setenv("NETFLIX_LANDING", "adf")
    monkeypatch.delenv("AIRFLOW_CONN_NETFLIX_HTTP", raising=False)
    adf.pipeline(PIPELINE_NAME, polls=2, on_success=copy_activity(source, adf_lake))
    result = run_dag("netflix", logical_date=SUNDAY)
    assert result.state == "success", result.tasks
    assert result.tasks["adf_landing"] == "success"
    assert "fetch_http_file[0]" not in result.tasks
    assert {result.tasks[f"accept_landed_file[{i}]"] for i in range(5)} == {"success"}

    # exactly one run was started, of the declared pipeline, with the run's rendered parameters
    prefix = run_path(adf)
    created = adf.calls("POST", "/createRun")
    assert [(c.path, c.query, c.body) for c in created] == [
        (
            f"{prefix}pipelines/{PIPELINE_NAME}/createRun",
            {"api-version": "2018-06-01"},
            {"landing_date": "2026-11-22", "sink_folder": "netflix/_adf/2026-11-22"},
        )
    ]
    (run_id,) = adf.runs
    polls = adf.calls("GET", f"/pipelineruns/{run_id}")
    assert len(polls) >= 3  # InProgress twice, then Succeeded
    assert not adf.calls("POST", "/cancel")
    token = adf.calls("POST", "/oauth2/v2.0/token", host="login.microsoftonline.com")
    assert token
    assert token[0].body["client_id"] == "airflow-sp"
    assert token[0].body["client_secret"] == "<redacted>"  # the fake checked it, the record hides it

    # each file was accepted into raw as a fetch would land it, with its ADF run recorded
    for table, name in FILES.items():
        (landed,) = raw_files(adf_lake, table)
        assert Path(landed).read_bytes() == (source / name).read_bytes()
        record = json.loads((adf_lake / "raw" / "netflix" / "_sources" / f"{table}.json").read_text())
        assert record["adf_run_id"] == run_id
        assert record["status"] == "landed"
        assert record["source"].endswith(f"netflix/_adf/2026-11-22/{name}")

    # bronze, silver and gold ran on them: gold is the HTTP path's, row for row
    adf_gold, http_gold = gold(adf_lake), gold(http_lake)
    assert all(adf_gold[t] for t in FILES)
    assert adf_gold == http_gold
    titles = csv_rows(source / "netflix_titles.csv")
    assert len(adf_gold["titles"]) == len([r for r in titles if r["show_id"].strip() and r["title"]])


# -- 2. failures: ADF's message and the link, cancelled runs, killed tasks ----------------------
def _failure_body(inbox) -> str:
    """The one failure alert's text (one: the task was not retried, or after its last try)."""
    assert len(inbox.messages) == 1, [m["Subject"] for m in inbox.messages]
    return html.unescape(inbox.bodies()[0])


def run_deferred(dag_file: Path, dag_id: str) -> dict:
    """``dag.test()`` of a DAG with deferrable waits, in a fresh interpreter (see adf_child.py)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT / "tests")]),
        "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "true",
    }
    child = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "adf_child.py"), str(dag_file), dag_id, SUNDAY.isoformat()],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,  # a safety net for a hung child, not a measurement
    )
    results = [line for line in child.stdout.splitlines() if line.startswith("RESULT ")]
    assert results, f"exit {child.returncode}: {child.stderr[-3000:]}"
    result = json.loads(results[-1].removeprefix("RESULT "))
    assert result["deferrable"]["adf_landing"] is True
    return result


def test_a_failed_adf_run_fails_the_task_with_adf_s_message_and_the_link_deferred(
    airflow_db, lake, adf, inbox
):
    """Deferrable (the trigger polls): the failed run is retried once as a new ADF run, then fails
    the task with ADF's own message, the run id and the monitor link; nothing downstream runs."""
    message = (
        "Operation on target Copy netflix files failed: ErrorCode=UserErrorSourceBlobNotExists,"
        "'The required Blob is missing. ContainerName: source, path: netflix_titles.csv.'"
    )
    adf.pipeline(PIPELINE_NAME, polls=1, outcome="Failed", message=message)
    run = run_deferred(ROOT / "dags" / "netflix.py", "netflix")

    assert run["state"] == "failed"
    assert run["tasks"]["adf_landing"] == "failed"
    accepts = {state for task, state in run["tasks"].items() if task.startswith("accept_landed_file")}
    assert accepts == {"upstream_failed"}, run["tasks"]
    assert run["tasks"]["bronze"] == "upstream_failed"
    assert len(adf.calls("POST", "/createRun")) == 2  # one retry, a new run
    last = list(adf.runs)[-1]
    body = _failure_body(inbox)
    assert f"ADF pipeline {PIPELINE_NAME} run {last} (factory adf-lakehouse) ended Failed" in body
    assert "UserErrorSourceBlobNotExists" in body
    link = (
        f"https://adf.azure.com/en-us/monitoring/pipelineruns/{last}?factory=/subscriptions/"
        f"{adf.subscription}/resourceGroups/rg-lakehouse/providers/Microsoft.DataFactory/factories/adf-lakehouse"
    )
    assert link in body
    assert adf.client_secret not in body
    # the UI's "Monitor Pipeline Run" button is the provider's extra link, built from this XCom
    dag = load_dag("netflix")
    assert "Monitor Pipeline Run" in {type(x).name for x in dag.get_task("adf_landing").operator_extra_links}
    assert xcom(run["run_id"], "adf_landing", "run_id") == last
    assert not (lake / "raw" / "netflix").exists()


def xcom(run_id: str, task_id: str, key: str):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        value = session.scalar(
            select(XComModel.value).where(
                XComModel.dag_id == "netflix",
                XComModel.run_id == run_id,
                XComModel.task_id == task_id,
                XComModel.key == key,
            )
        )
    return value


def test_a_cancelled_adf_run_fails_the_task_without_retry(airflow_db, lake, adf, inbox):
    adf.pipeline(PIPELINE_NAME, polls=1, outcome="Cancelled", message="Pipeline run was cancelled by user x")
    dag = load_dag("netflix")
    assert dag.get_task("adf_landing").deferrable is False
    run = dag.test(logical_date=SUNDAY)

    assert str(run.state) == "failed"
    (run_id,) = adf.runs  # not retried
    body = _failure_body(inbox)
    assert (
        f"run {run_id} (factory adf-lakehouse) ended Cancelled: Pipeline run was cancelled by user x" in body
    )
    assert "not retried: the run was cancelled" in body
    assert f"monitoring/pipelineruns/{run_id}?factory=" in body


def test_killing_the_task_cancels_the_adf_run(airflow_db, lake, adf, inbox):
    """SIGTERM to the task's process (a task marked failed or cleared while it waits): the task
    runner calls ``on_kill``, which cancels the ADF run and waits until ADF says it is cancelled."""
    sent = []

    def kill_on_second_poll(run: dict) -> None:
        handler = signal.getsignal(signal.SIGTERM)
        if len(adf.calls("GET", "/pipelineruns/" + run["runId"])) >= 2 and not sent:
            assert getattr(handler, "__name__", "") == "_on_term", handler  # the task runner's
            sent.append(run["runId"])
            os.kill(os.getpid(), signal.SIGTERM)

    adf.pipeline(PIPELINE_NAME, outcome="InProgress", on_poll=kill_on_second_poll)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        run = load_dag("netflix").test(logical_date=SUNDAY)
    finally:
        signal.signal(signal.SIGTERM, previous)

    assert str(run.state) == "failed"
    (run_id,) = adf.runs
    assert sent == [run_id]
    cancels = adf.calls("POST", "/cancel")
    assert [c.path for c in cancels] == [f"{run_path(adf)}pipelineruns/{run_id}/cancel"]
    assert adf.runs[run_id].status == "Cancelled"
    assert "ended Cancelled" in _failure_body(inbox)


# -- 3. parameters and metadata are checked before anything reaches ADF ---------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("../../secrets", "holds a '..' path part"),
        ("2026-11-22'; DROP TABLE x; --\n", "control character"),
        ("@pipeline().parameters.x", "starts with '@'"),
    ],
)
def test_a_hostile_rendered_parameter_never_reaches_adf(airflow_db, lake, adf, inbox, value, reason):
    from airflow.sdk import DAG

    from lakehouse.adf import landing_operator
    from lakehouse.defaults import default_args
    from lakehouse.metadata import load_pipeline

    meta = copy.deepcopy(load_pipeline("netflix"))
    meta["landing"]["adf"]["parameters"]["landing_date"] = "{{ dag_run.conf.get('day', ds) }}"
    adf.pipeline(PIPELINE_NAME)
    with DAG(
        "adftest_params", schedule=None, start_date=SUNDAY, default_args=default_args({"owner": "tests"})
    ) as dag:
        landing_operator(meta)
    serialize(dag)
    run = dag.test(logical_date=SUNDAY, run_conf={"day": value})

    assert str(run.state) == "failed"
    assert adf.requests == []  # not even a token was asked for
    body = _failure_body(inbox)  # one alert: not retried
    assert f"ADF pipeline {PIPELINE_NAME} parameter 'landing_date'" in body
    assert reason in body
    assert "Nothing was sent to ADF" in body


def test_landing_metadata_is_checked_when_it_loads(monkeypatch):
    from lakehouse.metadata import MetadataError, landing_kind, load_pipeline, validate

    good = copy.deepcopy(load_pipeline("netflix"))
    assert good["landing"]["kind"] == "http"
    monkeypatch.delenv("NETFLIX_LANDING", raising=False)
    assert landing_kind(good) == "http"
    monkeypatch.setenv("NETFLIX_LANDING", "adf")
    assert landing_kind(good) == "adf"
    monkeypatch.setenv("NETFLIX_LANDING", "ftp")
    with pytest.raises(MetadataError, match=r"NETFLIX_LANDING: must be one of \('http', 'adf'\), not 'ftp'"):
        landing_kind(good)
    monkeypatch.setenv("NETFLIX_LANDING", "adf")
    with pytest.raises(MetadataError, match=r"declares no landing\.adf block"):
        landing_kind({**good, "landing": {"kind": "http"}})

    cases = [
        ("pipeline_name", "pl copy; rm", "invalid pipeline_name"),
        ("factory", "-adf", "invalid factory name"),
        ("resource_group", "rg/../other", "invalid resource_group"),
        (
            "folder",
            "netflix/{{ ds }}",
            "must be a folder under raw/<pipeline>/ whose first part starts with '_'",
        ),
        ("folder", "_adf/../../gold", "no '..'"),
        ("parameters", {"bad-name": "x"}, "invalid ADF parameter name 'bad-name'"),
        ("parameters", {"files": ["a", "b"]}, "parameter 'files' must be a non-empty string"),
        ("deferrable", "yes", "deferrable must be true or false"),
        ("timeout_minutes", 0, "timeout_minutes must be a whole number from 1 to 10080"),
        ("check_interval", 5, "unknown setting(s) ['check_interval']"),
    ]
    for key, value, message in cases:
        meta = copy.deepcopy(good)
        meta["landing"]["adf"][key] = value
        with pytest.raises(MetadataError, match=r"pipeline\.yaml landing\.adf: .*") as caught:
            validate(meta, "include/netflix/pipeline.yaml")
        assert message in str(caught.value), (key, value, caught.value)
    meta = copy.deepcopy(good)
    meta["landing"]["kind"] = "sftp"
    with pytest.raises(MetadataError, match="kind must be one of"):
        validate(meta, "pipeline.yaml")


# -- 4. accepting what ADF landed ------------------------------------------------------------------
def test_accepting_landed_files_checks_them_and_lands_each_content_once(lake, tmp_path):
    from lakehouse.adf import accept_file
    from lakehouse.http_ingest import SourceError
    from lakehouse.metadata import load_pipeline

    sources = {s["table"]: s for s in load_pipeline("netflix")["files"]}
    folder = lake / "raw" / "netflix" / "_adf" / "2026-11-22"
    write_netflix_sample(folder, titles=10, seed=2)
    landing = {"run_id": "run-1", "pipeline_name": PIPELINE_NAME, "folder": "_adf/2026-11-22"}

    first = accept_file("netflix", sources["cast"], landing)
    assert first["status"] == "landed"
    (landed,) = raw_files(lake, "cast")
    assert Path(landed).name.endswith(f"__{first['sha256'][:16]}.csv")
    assert Path(landed).read_bytes() == (folder / "netflix_cast.csv").read_bytes()
    again = accept_file("netflix", sources["cast"], {**landing, "run_id": "run-2"})
    assert again["status"] == "unchanged"  # a second ADF run of the same files lands nothing new
    assert raw_files(lake, "cast") == [landed]

    (folder / "netflix_directors.csv").unlink()
    missing = r"netflix_directors\.csv: ADF run run-1 of pl_copy_netflix_raw succeeded but left no such file"
    with pytest.raises(SourceError, match=missing):
        accept_file("netflix", sources["directors"], landing)
    (folder / "netflix_countries.csv").write_text("land,show_id\nX,1\n", encoding="utf-8")
    bad_header = r"netflix_countries\.csv \(landed by ADF run run-1 .*\): header does not match"
    with pytest.raises(SourceError, match=bad_header):
        accept_file("netflix", sources["countries"], landing)
    assert raw_files(lake, "directors") == []
    assert raw_files(lake, "countries") == []


# -- 5. the operator's other paths, in small DAGs (no Spark) --------------------------------------
def landing_dag(dag_id: str, make_landing):
    from airflow.sdk import DAG

    from lakehouse.adf import accept_landed_file
    from lakehouse.defaults import default_args
    from lakehouse.metadata import load_pipeline

    meta = load_pipeline("netflix")
    with DAG(dag_id, schedule=None, start_date=SUNDAY, default_args=default_args({"owner": "tests"})) as dag:
        landing = make_landing(meta)
        accept_landed_file.partial(pipeline="netflix", landing=landing.output).expand(source=meta["files"])
    serialize(dag)
    return dag


LANDING_DAG = """
import datetime as dt

from airflow.sdk import DAG

from lakehouse.adf import accept_landed_file, landing_operator
from lakehouse.defaults import default_args
from lakehouse.metadata import load_pipeline

meta = load_pipeline("netflix")
with DAG(
    "adftest_deferred",
    schedule=None,
    start_date=dt.datetime(2026, 11, 22, tzinfo=dt.UTC),
    default_args=default_args({"owner": "tests"}),
):
    landing = landing_operator(meta)
    accept_landed_file.partial(pipeline="netflix", landing=landing.output).expand(source=meta["files"])
"""


def test_a_deferred_wait_hands_the_landed_folder_to_the_accept_tasks(airflow_db, lake, adf, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_RETRIES", "0")
    source = lake.parent / "source"
    write_netflix_sample(source, titles=5, seed=1)
    adf.pipeline(PIPELINE_NAME, polls=2, on_success=copy_activity(source, lake))
    dag_file = lake.parent / "adftest_deferred.py"
    dag_file.write_text(LANDING_DAG)
    run = run_deferred(dag_file, "adftest_deferred")

    assert run["state"] == "success", run["tasks"]
    (run_id,) = adf.runs
    assert len(adf.calls("GET", f"/pipelineruns/{run_id}")) >= 3
    for table, name in FILES.items():
        (landed,) = raw_files(lake, table)
        assert Path(landed).read_bytes() == (source / name).read_bytes()
        record = json.loads((lake / "raw" / "netflix" / "_sources" / f"{table}.json").read_text())
        assert record["adf_run_id"] == run_id


def test_a_run_that_outlives_the_timeout_is_cancelled_and_fails_the_task(airflow_db, lake, adf, inbox):
    from lakehouse.adf import landing_operator

    adf.pipeline(PIPELINE_NAME, outcome="InProgress")
    dag = landing_dag("adftest_timeout", lambda meta: landing_operator(meta, retries=0, timeout=2))
    run = dag.test(logical_date=SUNDAY)

    assert str(run.state) == "failed"
    (run_id,) = adf.runs
    assert [c.path for c in adf.calls("POST", "/cancel")] == [f"{run_path(adf)}pipelineruns/{run_id}/cancel"]
    body = _failure_body(inbox)
    assert f"run {run_id} (factory adf-lakehouse) did not end in time" in body
    assert "it was InProgress and is being cancelled" in body
