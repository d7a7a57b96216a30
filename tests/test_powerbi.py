"""The Power BI refresh step: the Azure provider's ``PowerBIDatasetRefreshOperator`` (always
deferred; ``dag.test()`` runs its trigger inline) against a local fake of the Power BI REST API and
the Entra token endpoint (``tests/fake_powerbi.py``), reached through the connection's proxy with a
test CA. Nothing of the provider, Kiota, httpx or azure-identity is patched.
"""

from __future__ import annotations

import datetime as dt

import pytest
from dag_serialization import serialize
from fake_powerbi import LOGIN, SCOPE, FakePowerBI

from lakehouse import serving

DATASET = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
DAY = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)


@pytest.fixture
def powerbi(tmp_path, monkeypatch):
    with FakePowerBI(tmp_path / "powerbi") as fake:
        for name, value in fake.env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("AIRFLOW_CONN_POWERBI_DEFAULT", fake.connection())
        monkeypatch.setenv("POWERBI_DATASET_ID", DATASET)
        monkeypatch.setenv("POWERBI_GROUP_ID", fake.group)
        monkeypatch.setenv("POWERBI_CHECK_INTERVAL", "1")
        monkeypatch.setenv("POWERBI_TIMEOUT", "120")
        yield fake


def run_refresh_dag(dag_id: str):
    from airflow.sdk import DAG

    with DAG(dag_id, schedule=None, start_date=DAY, catchup=False) as dag:
        serving.powerbi_refresh_task("adventureworks", retries=0)
    serialize(dag)
    run = dag.test(logical_date=DAY)
    return run, {ti.task_id: ti for ti in run.get_task_instances()}, dag


def refresh_path(fake: FakePowerBI) -> str:
    return f"/v1.0/myorg/groups/{fake.group}/datasets/{DATASET}/refreshes"


def test_refresh_completes(airflow_db, powerbi):
    powerbi.dataset(DATASET, outcome="Completed", polls=2)
    run, tis, _ = run_refresh_dag("powerbi_refresh_ok")
    assert str(run.state) == "success"
    assert str(tis["refresh_powerbi"].state) == "success"

    (post,) = powerbi.calls("POST", "/refreshes")
    assert post.path == refresh_path(powerbi)
    assert post.authorized
    (request_id,) = powerbi.refreshes
    assert powerbi.refreshes[request_id].status == "Completed"
    polls = powerbi.calls("GET", "/refreshes")
    assert len(polls) >= 3  # Unknown twice (In Progress), then Completed
    assert all(p.path == refresh_path(powerbi) and p.authorized for p in polls)
    assert not powerbi.calls("DELETE")
    tokens = powerbi.calls("POST", "/oauth2/v2.0/token", host=LOGIN)
    assert tokens
    assert tokens[0].body["scope"] == SCOPE
    assert tokens[0].body["client_id"] == "powerbi-sp"
    assert tokens[0].body["client_secret"] == "<redacted>"  # checked by the fake, hidden in its record
    assert not powerbi.refused


def test_failed_refresh_fails_the_task_with_power_bi_s_error(airflow_db, powerbi, capfd):
    error = {"error": {"code": "ModelRefresh_ShortMessage_ProcessingError", "pbi.error": "column x missing"}}
    powerbi.dataset(DATASET, outcome="Failed", polls=1, error=error)
    run, tis, _ = run_refresh_dag("powerbi_refresh_failed")
    assert str(run.state) == "failed"
    ti = tis["refresh_powerbi"]
    assert str(ti.state) == "failed"
    (request_id,) = powerbi.refreshes
    assert powerbi.refreshes[request_id].status == "Failed"
    assert len(powerbi.calls("POST", "/refreshes")) == 1  # no retry: one refresh asked for
    # the task fails with Power BI's error (dag.test() writes the task's log to stdout)
    log = capfd.readouterr().out
    assert f"The dataset refresh {request_id} has Failed. Error: " in log, log[-3000:]
    assert "ModelRefresh_ShortMessage_ProcessingError" in log


def test_unknown_dataset_fails_with_not_found(airflow_db, powerbi):
    # the fake knows no dataset: Power BI answers 404 to the refresh request
    _, tis, _ = run_refresh_dag("powerbi_refresh_unknown")
    assert str(tis["refresh_powerbi"].state) == "failed"
    (post,) = powerbi.calls("POST", "/refreshes")
    assert post.authorized
    assert not powerbi.refreshes


def test_no_dataset_configured_skips_saying_which_setting(airflow_db, monkeypatch):
    monkeypatch.delenv("POWERBI_DATASET_ID", raising=False)
    monkeypatch.setenv("POWERBI_GROUP_ID", "11111111-2222-3333-4444-555555555555")
    run, tis, dag = run_refresh_dag("powerbi_refresh_unconfigured")
    assert str(tis["refresh_powerbi"].state) == "skipped"
    assert str(run.state) == "success"
    # the reason, as the skip says it (the callable of the task that ran)
    from airflow.sdk.exceptions import AirflowSkipException

    with pytest.raises(AirflowSkipException, match="Power BI refresh skipped: POWERBI_DATASET_ID not set"):
        dag.task_dict["refresh_powerbi"].python_callable()


def test_settings_are_checked():
    from airflow.providers.microsoft.azure.operators.powerbi import PowerBIDatasetRefreshOperator

    env = {"POWERBI_DATASET_ID": DATASET, "POWERBI_GROUP_ID": "not-a-guid'; drop"}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        with pytest.raises(ValueError, match="POWERBI_GROUP_ID="):
            serving.powerbi_settings()
        mp.setenv("POWERBI_GROUP_ID", "11111111-2222-3333-4444-555555555555")
        mp.setenv("POWERBI_CHECK_INTERVAL", "0")
        with pytest.raises(ValueError, match="POWERBI_CHECK_INTERVAL"):
            serving.powerbi_settings()
        mp.setenv("POWERBI_CHECK_INTERVAL", "30")
        mp.setenv("POWERBI_CONN_ID", "pbi_prod")
        from airflow.sdk import DAG

        with DAG("powerbi_settings", schedule=None, start_date=DAY):
            op = serving.powerbi_refresh_task()
        assert isinstance(op, PowerBIDatasetRefreshOperator)
        assert (op.dataset_id, op.group_id, op.conn_id, op.check_interval) == (
            DATASET,
            "11111111-2222-3333-4444-555555555555",
            "pbi_prod",
            30,
        )
