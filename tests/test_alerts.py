"""Failure emails through the smtp provider's SmtpNotifier, received by a real SMTP server."""

from __future__ import annotations

import datetime as dt
import email
import json
import socket

import pytest
from conftest import run_dag

from lakehouse.devserver import FileServer
from lakehouse.sample_data import write_netflix_sample

aiosmtpd = pytest.importorskip("aiosmtpd.controller", reason="aiosmtpd is needed for a local SMTP server")


class Inbox:
    def __init__(self):
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        message = email.message_from_bytes(envelope.original_content or envelope.content)
        message["X-Rcpt"] = ",".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _body(message) -> str:
    parts = message.walk() if message.is_multipart() else [message]
    return "".join(
        part.get_payload(decode=True).decode() for part in parts if part.get_content_type() == "text/html"
    )


@pytest.mark.e2e
def test_a_task_failing_for_good_sends_one_email_after_its_last_try(airflow_db, lake, tmp_path, monkeypatch):
    inbox = Inbox()
    port = _free_port()
    controller = aiosmtpd.Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    source = tmp_path / "source"
    write_netflix_sample(source, titles=20, seed=1)
    try:
        with FileServer(source) as server:
            server.faults["netflix_directors.csv"] = 404
            monkeypatch.setenv("AIRFLOW_CONN_NETFLIX_HTTP", server.connection_uri())
            monkeypatch.setenv(
                "AIRFLOW_CONN_SMTP_DEFAULT",
                json.dumps(
                    {
                        "conn_type": "smtp",
                        "host": "127.0.0.1",
                        "port": port,
                        "extra": {
                            "disable_tls": True,
                            "disable_ssl": True,
                            "from_email": "airflow@localhost",
                        },
                    }
                ),
            )
            monkeypatch.setenv("ALERT_EMAILS", "data-oncall@example.com, lead@example.com")
            monkeypatch.setenv("LAKEHOUSE_RETRIES", "1")
            monkeypatch.setenv("LAKEHOUSE_RETRY_DELAY_SECONDS", "0")
            result = run_dag("netflix", logical_date=dt.datetime(2026, 11, 22, tzinfo=dt.UTC))
    finally:
        controller.stop()

    assert result.state == "failed"
    assert result.tasks["fetch_http_file[4]"] == "failed"
    assert len(inbox.messages) == 1, [m["Subject"] for m in inbox.messages]
    message = inbox.messages[0]
    assert message["Subject"] == f"[Airflow] netflix.fetch_http_file failed ({result.run_id})"
    assert set(message["X-Rcpt"].split(",")) == {"data-oncall@example.com", "lead@example.com"}
    body = _body(message)
    assert "netflix_directors.csv: HTTP 404" in body
    assert result.run_id in body
    assert "2026-11-22" in body
    assert "<td>Try</td><td>2</td>" in body  # the second and last try, not the first
    assert "[4]" in body  # the map index of the failed file
    assert "/log" in body or "log" in body.lower()
