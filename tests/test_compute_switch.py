"""One setting moves the Spark jobs from the local Spark Connect server to Databricks; the DAG is the same."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import references
from conftest import ROOT, load_dag, run_dag
from fake_databricks import FakeDatabricks
from lakecheck import count, csv_rows, rows

from lakehouse import databricks
from lakehouse.devserver import FileServer
from lakehouse.sample_data import write_netflix_sample

pytest_plugins = ["references"]  # the reference_lakes fixture: local runs shared across tests

SPARK_TASKS = ("bronze", "silver_lookups", "silver_titles", "gold")
WORKSPACE_FILES = "/Workspace/Users/ci@example.com/.bundle/lakehouse/dev/files"
JOBS_ROOT = f"{WORKSPACE_FILES}/spark_jobs"
SERVERLESS = [{"environment_key": "lakehouse", "spec": {"environment_version": "4"}}]


def _databricks_env(monkeypatch, jobs_root: str = JOBS_ROOT, **settings: str) -> None:
    monkeypatch.setenv("LAKEHOUSE_COMPUTE", "databricks")
    monkeypatch.setenv("DATABRICKS_JOBS_ROOT", jobs_root)
    for name in ("DATABRICKS_CLUSTER_ID", "DATABRICKS_JOB_CLUSTER", "DATABRICKS_NEW_CLUSTER"):
        monkeypatch.delenv(name, raising=False)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)


def _submitted(task) -> dict:
    (submitted,) = task.tasks
    return submitted


def test_databricks_tasks_run_the_same_file_with_the_same_arguments_on_serverless(
    airflow_db, lake, monkeypatch
):
    local = load_dag("netflix")
    _databricks_env(monkeypatch)
    remote = load_dag("netflix")
    for task_id in SPARK_TASKS:
        local_task, remote_task = local.get_task(task_id), remote.get_task(task_id)
        assert type(local_task).__name__ == "SparkConnectJobOperator"
        assert type(remote_task).__name__ == "DatabricksSparkJobOperator"
        assert local_task.conn_id == "spark_connect_default"
        assert _submitted(remote_task) == {
            "task_key": task_id,
            "spark_python_task": {
                "python_file": f"{JOBS_ROOT}/run.py",
                "parameters": local_task.op_kwargs["argv"],
            },
            "environment_key": "lakehouse",
        }
        assert remote_task.environments == SERVERLESS
        assert remote_task.existing_cluster_id is None
        assert remote_task.new_cluster is None
        assert not remote_task.durable  # reconnection is by idempotency token (lakehouse.databricks)
    assert [t.task_id for t in local.tasks] == [t.task_id for t in remote.tasks]


def test_an_existing_cluster_is_used_by_id(airflow_db, lake, monkeypatch):
    _databricks_env(monkeypatch, DATABRICKS_CLUSTER_ID="0101-000000-lakehouse")
    remote = load_dag("netflix")
    for task_id in SPARK_TASKS:
        task = remote.get_task(task_id)
        assert _submitted(task)["existing_cluster_id"] == "0101-000000-lakehouse"
        assert "environment_key" not in _submitted(task)
        assert task.environments is None


def test_job_cluster_mode_adds_one_cluster_setup_and_teardown_per_dag(airflow_db, lake, monkeypatch):
    local = load_dag("netflix")
    spec = {"spark_version": "16.4.x-scala2.12", "node_type_id": "Standard_D4ds_v5", "num_workers": 2}
    _databricks_env(monkeypatch, DATABRICKS_JOB_CLUSTER=json.dumps(spec))
    remote = load_dag("netflix")
    setup, teardown = remote.get_task("databricks_cluster"), remote.get_task("databricks_cluster_delete")
    assert setup.is_setup
    assert teardown.is_teardown
    assert setup.cluster == spec
    for task in (setup, teardown):  # as every task of the DAG: documented, retried, alerting
        assert task.doc_md
        assert task.on_failure_callback
        assert task.retries == remote.get_task("bronze").retries
    assert [t.task_id for t in remote.tasks if t.task_id not in (setup.task_id, teardown.task_id)] == [
        t.task_id for t in local.tasks
    ]
    pulled = "{{ ti.xcom_pull(task_ids='databricks_cluster') }}"
    for task_id in SPARK_TASKS:
        assert _submitted(remote.get_task(task_id))["existing_cluster_id"] == pulled
        assert task_id in teardown.upstream_task_ids
    # gold (trigger rule none_failed) gets the cluster through its upstream Spark tasks: Airflow
    # allows only all_success tasks directly after a setup
    assert setup.downstream_task_ids == {
        "bronze",
        "silver_lookups",
        "silver_titles",
        "databricks_cluster_delete",
    }
    assert remote.get_task("gold").trigger_rule == "none_failed"


def test_local_server_settings_can_be_extended_by_configuration(monkeypatch):
    from lakehouse import spark_server

    default = spark_server.server_conf()
    assert default["spark.driver.memory"] == "4g"
    assert default["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    monkeypatch.setenv("SPARK_SERVER_CONF", '{"spark.driver.memory": "6g", "spark.executor.cores": 2}')
    conf = spark_server.server_conf()
    assert conf == {**default, "spark.driver.memory": "6g", "spark.executor.cores": "2"}
    command = spark_server.command(15999, conf)
    assert "spark.driver.memory=6g" in command
    assert "spark.connect.grpc.binding.port=15999" in command
    jars = command[command.index("--jars") + 1].split(",")
    assert any("delta-spark_4.2_2.13-" in jar for jar in jars)
    assert any("hadoop-azure-" in jar for jar in jars)


@pytest.mark.parametrize("value", ["{not json", '["spark.driver.memory"]', '{"driver.memory": "6g"}'])
def test_bad_server_settings_are_refused_naming_the_variable(monkeypatch, value):
    from lakehouse import spark_server

    monkeypatch.setenv("SPARK_SERVER_CONF", value)
    with pytest.raises(ValueError, match="SPARK_SERVER_CONF"):
        spark_server.server_conf()


@pytest.mark.parametrize(
    ("settings", "unset", "message"),
    [
        ({}, "DATABRICKS_JOBS_ROOT", "needs DATABRICKS_JOBS_ROOT"),
        (
            {"DATABRICKS_JOBS_ROOT": "Workspace/x"},
            None,
            "DATABRICKS_JOBS_ROOT must be an absolute workspace path",
        ),
        (
            {"DATABRICKS_JOBS_ROOT": "/Workspace/../x"},
            None,
            "DATABRICKS_JOBS_ROOT must be an absolute workspace path",
        ),
        (
            {"DATABRICKS_NEW_CLUSTER": '{"num_workers": 1}'},
            None,
            "DATABRICKS_NEW_CLUSTER (a new cluster for every",
        ),
        ({"DATABRICKS_JOB_CLUSTER": "{not json"}, None, "DATABRICKS_JOB_CLUSTER is not valid JSON"),
        (
            {"DATABRICKS_JOB_CLUSTER": '{"cluster_name": "x"}'},
            None,
            "DATABRICKS_JOB_CLUSTER must not set 'cluster_name'",
        ),
        (
            {"DATABRICKS_JOB_CLUSTER": '{"num_workers": 1}', "DATABRICKS_CLUSTER_ID": "0101-000000-x"},
            None,
            "set DATABRICKS_CLUSTER_ID or DATABRICKS_JOB_CLUSTER, not both",
        ),
        ({"DATABRICKS_CLUSTER_ID": "0101 x; rm"}, None, "DATABRICKS_CLUSTER_ID is not a cluster id"),
        (
            {"DATABRICKS_SERVERLESS_ENVIRONMENT": "[]"},
            None,
            "DATABRICKS_SERVERLESS_ENVIRONMENT must be a non-empty",
        ),
        ({"DATABRICKS_POLL_SECONDS": "0"}, None, "DATABRICKS_POLL_SECONDS must be a whole number"),
        ({"DATABRICKS_DEFERRABLE": "maybe"}, None, "DATABRICKS_DEFERRABLE must be true or false"),
    ],
)
def test_bad_databricks_settings_fail_the_import_with_the_setting_named(
    airflow_db, monkeypatch, settings, unset, message
):
    from airflow.dag_processing.dagbag import DagBag

    _databricks_env(monkeypatch, **settings)
    if unset:
        monkeypatch.delenv(unset)
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    errors = "".join(bag.import_errors.values())
    assert message in errors


GOLD_TABLES = ("titles", "cast", "category", "countries", "directors")
LINEAGE = ("_source_file", "_ingested_at")  # where and when a row was read: differs between two lakes


@pytest.mark.e2e
def test_netflix_dag_on_databricks_serverless_builds_the_gold_a_local_run_builds(
    airflow_db, lake, tmp_path, monkeypatch, reference_lakes
):
    """The same DAG, local then on the Jobs API stand-in (serverless, deferrable): every Spark task
    one exact request, the deployed run.py run for real on the Spark Connect server, same gold."""
    source = tmp_path / "source"
    write_netflix_sample(source, titles=40, seed=11)
    day = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)  # a Sunday: silver titles is due
    # the local run: shared with test_adf's HTTP path (the same files, day and settings)
    local_lake, local_source, local = references.netflix_http(
        reference_lakes, titles=40, seed=11, day=day, retries=0
    )
    assert references.same_files(source, local_source)
    assert local.state == "success", local.tasks
    assert local.tasks["silver_titles"] == "success"
    remote_lake = tmp_path / "remote_lake"
    remote_lake.mkdir()
    with FakeDatabricks(workspace={WORKSPACE_FILES: ROOT}) as api, FileServer(source) as server:
        monkeypatch.setenv("AIRFLOW_CONN_NETFLIX_HTTP", server.connection_uri())
        monkeypatch.setenv("LAKEHOUSE_RETRIES", "0")  # a failure shows at once
        monkeypatch.setenv("LAKE_ROOT", str(remote_lake))
        argv = {t: load_dag("netflix").get_task(t).op_kwargs["argv"] for t in SPARK_TASKS}
        _databricks_env(monkeypatch, DATABRICKS_DEFERRABLE="true", DATABRICKS_POLL_SECONDS="1")
        monkeypatch.setenv("AIRFLOW_CONN_DATABRICKS_DEFAULT", api.connection())
        result = run_dag("netflix", logical_date=day)
    assert result.state == "success", result.tasks

    submitted = {s["tasks"][0]["task_key"]: s for s in api.submissions}
    assert len(api.submissions) == len(SPARK_TASKS) == len(submitted) == len(api.runs)
    for task_id in SPARK_TASKS:
        parameters = [a.replace("{{ run_id }}", result.run_id) for a in argv[task_id]]
        assert submitted[task_id] == {
            "tasks": [
                {
                    "task_key": task_id,
                    "spark_python_task": {"python_file": f"{JOBS_ROOT}/run.py", "parameters": parameters},
                    "environment_key": "lakehouse",
                }
            ],
            "environments": SERVERLESS,
            "run_name": f"netflix.{task_id} {result.run_id}",
            "idempotency_token": databricks.idempotency_token("netflix", result.run_id, task_id, -1, 0, 0),
        }
    assert {r.result_state for r in api.runs.values()} == {"SUCCESS"}
    assert set(api.auth_headers) == {"Bearer dapi-test-token"}
    titles = csv_rows(source / "netflix_titles.csv")
    assert count(remote_lake, "gold.titles") == sum(1 for r in titles if r["show_id"] and r["title"])
    for table in GOLD_TABLES:
        assert rows(remote_lake, f"gold.{table}", drop=LINEAGE) == rows(
            local_lake, f"gold.{table}", drop=LINEAGE
        ), table
