"""A real SMTP server on 127.0.0.1 (aiosmtpd), set up as Airflow's ``smtp_default``, for the tests
of failure emails: the ``inbox`` fixture yields what it receives. Tasks get two tries (one retry,
no delay), so a test sees whether a failure was retried."""

from __future__ import annotations

import email
import json

import pytest

from lakehouse.ports import free_port

aiosmtpd = pytest.importorskip("aiosmtpd.controller", reason="aiosmtpd is needed for a local SMTP server")


class Inbox:
    def __init__(self):
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        message = email.message_from_bytes(envelope.original_content or envelope.content)
        message["X-Rcpt"] = ",".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 OK"

    def bodies(self) -> list[str]:
        """Each message's HTML text."""
        return [html_body(message) for message in self.messages]


def html_body(message) -> str:
    """A message's HTML text (the notifier's alert)."""
    parts = message.walk() if message.is_multipart() else [message]
    return "".join(p.get_payload(decode=True).decode() for p in parts if p.get_content_type() == "text/html")


@pytest.fixture
def inbox(monkeypatch):
    """A real SMTP server on 127.0.0.1, set up as Airflow's smtp_default; yields what it receives."""
    received = Inbox()
    port = free_port()
    controller = aiosmtpd.Controller(received, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMTP_DEFAULT",
        json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": port,
                "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "airflow@localhost"},
            }
        ),
    )
    monkeypatch.setenv("ALERT_EMAILS", "data-oncall@example.com, lead@example.com")
    monkeypatch.setenv("LAKEHOUSE_RETRIES", "1")
    monkeypatch.setenv("LAKEHOUSE_RETRY_DELAY_SECONDS", "0")
    try:
        yield received
    finally:
        controller.stop()
