"""Failure emails through the smtp provider's SmtpNotifier, received by a real SMTP server."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from conftest import run_dag
from smtp_inbox import html_body

from lakehouse.devserver import FileServer
from lakehouse.sample_data import write_netflix_sample

pytest_plugins = ["smtp_inbox"]  # the inbox fixture: a real SMTP server


@pytest.mark.e2e
def test_a_task_failing_for_good_sends_one_email_after_its_last_try(
    airflow_db, lake, tmp_path, monkeypatch, inbox
):
    """A server error (5xx) may pass: the fetch is retried, and only its last try alerts."""
    source = tmp_path / "source"
    write_netflix_sample(source, titles=20, seed=1)
    with FileServer(source) as server:
        server.faults["netflix_directors.csv"] = 503
        monkeypatch.setenv("AIRFLOW_CONN_NETFLIX_HTTP", server.connection_uri())
        result = run_dag("netflix", logical_date=dt.datetime(2026, 11, 22, tzinfo=dt.UTC))

    assert result.state == "failed"
    assert result.tasks["fetch_http_file[4]"] == "failed"
    assert len(inbox.messages) == 1, [m["Subject"] for m in inbox.messages]
    message = inbox.messages[0]
    assert message["Subject"] == f"[Airflow] netflix.fetch_http_file failed ({result.run_id})"
    assert set(message["X-Rcpt"].split(",")) == {"data-oncall@example.com", "lead@example.com"}
    body = html_body(message)
    assert "netflix_directors.csv: HTTP 503" in body
    assert result.run_id in body
    assert "2026-11-22" in body
    assert "<td>Try</td><td>2</td>" in body  # the second and last try, not the first
    assert "[4]" in body  # the map index of the failed file
    assert "/log" in body or "log" in body.lower()


@pytest.mark.parametrize("status", [404, 403, 410])
def test_a_client_error_is_not_retried_and_sends_one_email(
    airflow_db, lake, tmp_path, monkeypatch, inbox, status
):
    """A 4xx (other than 408/429) will be the same on a retry: the fetch fails at once, one email."""
    source = tmp_path / "source"
    write_netflix_sample(source, titles=20, seed=1)
    with FileServer(source) as server:
        server.faults["netflix_directors.csv"] = status
        monkeypatch.setenv("AIRFLOW_CONN_NETFLIX_HTTP", server.connection_uri())
        result = run_dag("netflix", logical_date=dt.datetime(2026, 11, 22, tzinfo=dt.UTC))

    assert result.state == "failed"
    assert result.tasks["fetch_http_file[4]"] == "failed"
    assert len(inbox.messages) == 1, [m["Subject"] for m in inbox.messages]
    body = html_body(inbox.messages[0])
    assert f"netflix_directors.csv: HTTP {status}" in body
    assert "not retried" in body
    assert "<td>Try</td><td>1</td>" in body  # the first and only try
    assert not (lake / "raw" / "netflix" / "directors").exists()


def test_spotify_ingestion_failing_sends_one_email_per_failed_table(
    airflow_db, lake, tmp_path, monkeypatch, inbox
):
    """The source database lost a table: that table's task fails for real, the others succeed."""
    import sqlalchemy as sa

    from lakehouse.spotify_source import create_schema

    path = tmp_path / "source.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    create_schema(engine)
    with engine.begin() as conn:
        conn.execute(sa.text('DROP TABLE "DimArtist"'))
    engine.dispose()
    monkeypatch.setenv("AIRFLOW_CONN_SPOTIFY_SQL", json.dumps({"conn_type": "sqlite", "host": str(path)}))

    result = run_dag("spotify_ingest", logical_date=dt.datetime(2025, 9, 8, tzinfo=dt.UTC))

    assert result.state == "failed"
    assert result.tasks["extract_sql_table[1]"] == "failed"  # artists, the second table of the metadata
    assert result.tasks["check_params"] == "success"
    assert (
        sorted(
            state
            for key, state in result.tasks.items()
            if key.startswith("extract_sql_table") and key != "extract_sql_table[1]"
        )
        == ["skipped"] * 4
    )  # the empty tables: nothing to copy
    assert len(inbox.messages) == 1, [m["Subject"] for m in inbox.messages]
    message = inbox.messages[0]
    assert message["Subject"] == f"[Airflow] spotify_ingest.extract_sql_table failed ({result.run_id})"
    body = html_body(message)
    assert "no such table: DimArtist" in body
    assert "<td>Try</td><td>2</td>" in body
    assert "2025-09-08" in body
    assert "[artists]" in body or "[1]" in body
