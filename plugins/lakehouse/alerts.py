"""Failure alerts: one email per failed task, through the smtp provider's ``SmtpNotifier``.

Airflow calls ``on_failure_callback`` only when a task fails for good, so retries send nothing
until the last try fails. Recipients come from ``ALERT_EMAILS``; without them, failures are
logged and no mail is attempted.
"""

from __future__ import annotations

import logging
import os

from lakehouse import settings

log = logging.getLogger(__name__)

SUBJECT = "[Airflow] {{ dag.dag_id }}.{{ ti.task_id }} failed ({{ run_id }})"
BODY = """
<h3>Task failed: {{ dag.dag_id }}.{{ ti.task_id }}</h3>
<table>
<tr><td>DAG</td><td>{{ dag.dag_id }}</td></tr>
<tr><td>Task</td><td>{{ ti.task_id }}
  {%- if ti.map_index is not none and ti.map_index >= 0 %} [{{ ti.map_index }}]{% endif %}</td></tr>
<tr><td>Run</td><td>{{ run_id }}</td></tr>
<tr><td>Logical date</td><td>{{ logical_date }}</td></tr>
<tr><td>Try</td><td>{{ ti.try_number }}</td></tr>
<tr><td>Error</td><td><pre>{{ exception | e }}</pre></td></tr>
</table>
<p><a href="{{ ti.log_url }}">Task log</a></p>
"""


def _log_failure(context) -> None:
    ti = context.get("ti")
    log.error(
        "task %s of run %s failed (%s); set ALERT_EMAILS to be emailed",
        getattr(ti, "task_id", "?"),
        context.get("run_id"),
        context.get("exception"),
    )


def failure_alert():
    """The callback for ``default_args['on_failure_callback']``."""
    recipients = settings.alert_emails()
    if not recipients:
        return _log_failure
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    return SmtpNotifier(
        to=recipients,
        from_email=os.environ.get("ALERT_FROM", "airflow@localhost"),
        smtp_conn_id=os.environ.get("SMTP_CONN_ID", "smtp_default"),
        subject=SUBJECT,
        html_content=BODY,
    )
