"""Task defaults shared by every pipeline's DAG."""

from __future__ import annotations

import datetime as dt

from lakehouse import settings
from lakehouse.alerts import failure_alert


def default_args(meta: dict) -> dict:
    """Owner from the pipeline's metadata, retries from settings, and the failure alert."""
    return {
        "owner": meta["owner"],
        "retries": settings.retries(),
        "retry_delay": dt.timedelta(seconds=settings.retry_delay_seconds()),
        "on_failure_callback": failure_alert(),
    }
