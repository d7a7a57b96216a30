"""The AdventureWorks DAGs' shape by configuration, without running them: the tasks that read the
source go to the configured worker queue (and only they), the source schema can differ per
environment, and bad settings fail the DAG import naming the setting."""

from __future__ import annotations

import pytest
from conftest import ROOT, load_dag

SOURCE_TASKS = {"discover_tables", "copy_table"}


def _bag_errors() -> dict:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags" / "adventureworks.py")).import_errors


def test_source_tasks_run_on_the_source_queue_only(airflow_db, monkeypatch):
    from airflow.configuration import conf

    default = conf.get("operators", "default_queue")
    dag = load_dag("adventureworks_copy")
    assert {t.task_id: t.queue for t in dag.tasks} == dict.fromkeys((t.task_id for t in dag.tasks), default)

    monkeypatch.setenv("ADVENTUREWORKS_SOURCE_QUEUE", "onprem-sql")
    dag = load_dag("adventureworks_copy")
    queues = {t.task_id: t.queue for t in dag.tasks}
    assert {t for t, q in queues.items() if q == "onprem-sql"} == SOURCE_TASKS
    assert all(q == default for t, q in queues.items() if t not in SOURCE_TASKS)
    assert all(t.queue == default for t in load_dag("adventureworks_serve").tasks)


@pytest.mark.parametrize("queue", ["on prem", "a;b", "x" * 65])
def test_a_bad_queue_name_fails_the_import_naming_the_setting(airflow_db, monkeypatch, queue):
    monkeypatch.setenv("ADVENTUREWORKS_SOURCE_QUEUE", queue)
    errors = _bag_errors()
    assert errors
    assert "ADVENTUREWORKS_SOURCE_QUEUE" in next(iter(errors.values()))


def test_the_source_schema_is_the_environment_s(airflow_db, monkeypatch):
    def source_of(dag):
        return dag.get_task("discover_tables").op_args[1]

    assert source_of(load_dag("adventureworks_copy"))["schema"] == "saleslt"  # the metadata's
    monkeypatch.setenv("ADVENTUREWORKS_SOURCE_SCHEMA", "main")
    source = source_of(load_dag("adventureworks_copy"))
    assert source["schema"] == "main"
    assert source["conn_id"] == "adventureworks_sql"


def test_the_serving_dag_runs_on_the_gold_asset(airflow_db):
    copy, serve = load_dag("adventureworks_copy"), load_dag("adventureworks_serve")
    gold = [a.uri for a in copy.get_task("report_gold").outlets]
    assert gold == ["lake://gold/adventureworks/tables"]
    assert [a.uri for a in serve.timetable.asset_condition.objects] == gold
