"""One setting moves the Spark jobs from the local Spark Connect server to Databricks; the DAG is the same."""

from __future__ import annotations

import datetime as dt

import pytest
from conftest import ROOT, load_dag, run_dag
from fake_databricks import FakeDatabricks
from lakecheck import count, csv_rows

from lakehouse.devserver import FileServer
from lakehouse.sample_data import write_netflix_sample

SPARK_TASKS = ("bronze", "silver_lookups", "silver_titles", "gold")


def _databricks_env(monkeypatch, jobs_root: str) -> None:
    monkeypatch.setenv("LAKEHOUSE_COMPUTE", "databricks")
    monkeypatch.setenv("DATABRICKS_JOBS_ROOT", jobs_root)
    monkeypatch.setenv("DATABRICKS_CLUSTER_ID", "0101-000000-lakehouse")


def test_databricks_tasks_run_the_same_file_with_the_same_arguments(airflow_db, lake, monkeypatch):
    local = load_dag("netflix")
    _databricks_env(monkeypatch, "/Workspace/Shared/lakehouse/spark_jobs")
    remote = load_dag("netflix")
    for task_id in SPARK_TASKS:
        local_task, remote_task = local.get_task(task_id), remote.get_task(task_id)
        assert type(local_task).__name__ == "SparkConnectJobOperator"
        assert type(remote_task).__name__ == "DatabricksSubmitRunOperator"
        assert local_task.conn_id == "spark_connect_default"
        python_task = remote_task.spark_python_task
        assert python_task["python_file"] == "/Workspace/Shared/lakehouse/spark_jobs/run.py"
        assert python_task["parameters"] == local_task.op_kwargs["argv"]
        assert remote_task.existing_cluster_id == "0101-000000-lakehouse"
    assert [t.task_id for t in local.tasks] == [t.task_id for t in remote.tasks]


def test_local_server_settings_can_be_extended_by_configuration(monkeypatch):
    from lakehouse import spark_server

    default = spark_server.server_conf()
    assert default["spark.driver.memory"] == "2g"
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
    ("missing", "message"),
    [("DATABRICKS_JOBS_ROOT", "DATABRICKS_JOBS_ROOT"), ("DATABRICKS_CLUSTER_ID", "DATABRICKS_CLUSTER_ID")],
)
def test_incomplete_databricks_settings_fail_the_import_with_the_setting_named(
    airflow_db, monkeypatch, missing, message
):
    from airflow.dag_processing.dagbag import DagBag

    _databricks_env(monkeypatch, "/Workspace/x")
    monkeypatch.delenv(missing)
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    errors = "".join(bag.import_errors.values())
    assert message in errors


@pytest.mark.e2e
def test_netflix_dag_runs_through_the_databricks_operator(airflow_db, lake, tmp_path, monkeypatch):
    source = tmp_path / "source"
    write_netflix_sample(source, titles=40, seed=11)
    with FakeDatabricks() as api, FileServer(source) as server:
        _databricks_env(monkeypatch, str(ROOT / "spark_jobs"))
        monkeypatch.setenv("DATABRICKS_POLL_SECONDS", "1")
        monkeypatch.setenv("AIRFLOW_CONN_DATABRICKS_DEFAULT", api.connection())
        monkeypatch.setenv("AIRFLOW_CONN_NETFLIX_HTTP", server.connection_uri())
        result = run_dag("netflix", logical_date=dt.datetime(2026, 11, 22, tzinfo=dt.UTC))
    assert result.state == "success", result.tasks
    names = [s["run_name"] for s in api.submissions]
    assert names[0] == "netflix.bronze"
    assert names[-1] == "netflix.gold"
    assert names[1:-1] == ["netflix.silver", "netflix.silver"]
    for submission in api.submissions:
        parameters = submission["spark_python_task"]["parameters"]
        assert parameters[parameters.index("--run-id") + 1] == result.run_id  # templated per run
        assert submission["existing_cluster_id"] == "0101-000000-lakehouse"
    assert set(api.auth_headers) == {"Bearer dapi-test-token"}
    titles = csv_rows(source / "netflix_titles.csv")
    assert count(lake, "gold.titles") == sum(1 for r in titles if r["show_id"] and r["title"])
