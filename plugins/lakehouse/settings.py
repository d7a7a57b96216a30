"""The runtime, chosen by configuration (environment variables), never by copies of DAGs.

Each setting is read when asked for, so tests and deployments can change it without code.
The README's "Configuration" table lists them all with their defaults.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("raw", "bronze", "silver", "gold")


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, "").strip() or default


def lake_root() -> str:
    return _env("LAKE_ROOT", str(REPO_ROOT / ".lake"))


def lake_conn_id() -> str | None:
    return _env("LAKE_CONN_ID") or None


def spark_lake_root() -> str:
    return _env("SPARK_LAKE_ROOT", lake_root())


def include_dir() -> Path:
    return Path(_env("LAKEHOUSE_INCLUDE_DIR", str(REPO_ROOT / "include")))


def spark_jobs_dir() -> Path:
    return Path(_env("SPARK_JOBS_DIR", str(REPO_ROOT / "spark_jobs")))


def compute() -> str:
    value = _env("LAKEHOUSE_COMPUTE", "local").lower()
    if value not in ("local", "databricks"):
        raise ValueError(f"LAKEHOUSE_COMPUTE must be 'local' or 'databricks', not {value!r}")
    return value


def spark_conn_id() -> str:
    return _env("SPARK_CONN_ID", "spark_local")


def spark_python() -> str:
    """The Python that local Spark's driver and workers run: this environment's, by default."""
    return _env("SPARK_PYTHON", sys.executable)


SPARK_SUBMIT_DEFAULTS = {
    "spark.ui.enabled": "false",
    "spark.log.level": "WARN",
    "spark.sql.shuffle.partitions": "4",
    "spark.sql.session.timeZone": "UTC",
    "spark.driver.memory": "2g",
}


def spark_submit_conf() -> dict[str, str]:
    """Local spark-submit's ``--conf``: the defaults, updated by ``SPARK_SUBMIT_CONF`` (a JSON
    object of Spark settings, e.g. ``{"spark.driver.memory": "8g"}`` for bigger data)."""
    raw = _env("SPARK_SUBMIT_CONF", "{}")
    try:
        extra = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"SPARK_SUBMIT_CONF is not valid JSON: {exc}") from exc
    if not isinstance(extra, dict) or not all(
        isinstance(k, str) and k.startswith("spark.") and isinstance(v, str | int | float)
        for k, v in extra.items()
    ):
        raise ValueError(f"SPARK_SUBMIT_CONF must map spark.* settings to values, not {raw!r}")
    return {**SPARK_SUBMIT_DEFAULTS, **{k: str(v) for k, v in extra.items()}}


def databricks_conn_id() -> str:
    return _env("DATABRICKS_CONN_ID", "databricks_default")


def databricks_jobs_root() -> str:
    root = _env("DATABRICKS_JOBS_ROOT")
    if not root:
        raise ValueError(
            "LAKEHOUSE_COMPUTE=databricks needs DATABRICKS_JOBS_ROOT (where spark_jobs/ is deployed)"
        )
    return root.rstrip("/")


def databricks_cluster() -> dict:
    """``existing_cluster_id`` or ``new_cluster`` for DatabricksSubmitRunOperator."""
    cluster_id = _env("DATABRICKS_CLUSTER_ID")
    if cluster_id:
        return {"existing_cluster_id": cluster_id}
    spec = _env("DATABRICKS_NEW_CLUSTER")
    if spec:
        try:
            return {"new_cluster": json.loads(spec)}
        except ValueError as exc:
            raise ValueError(f"DATABRICKS_NEW_CLUSTER is not valid JSON: {exc}") from exc
    raise ValueError("LAKEHOUSE_COMPUTE=databricks needs DATABRICKS_CLUSTER_ID or DATABRICKS_NEW_CLUSTER")


def databricks_poll_seconds() -> int:
    return int(_env("DATABRICKS_POLL_SECONDS", "30"))


def alert_emails() -> list[str]:
    return [address.strip() for address in _env("ALERT_EMAILS").split(",") if address.strip()]


def retries() -> int:
    return int(_env("LAKEHOUSE_RETRIES", "2"))


def retry_delay_seconds() -> int:
    return int(_env("LAKEHOUSE_RETRY_DELAY_SECONDS", "300"))


def delta_storage_options() -> dict[str, str] | None:
    """Options for delta-rs when the Airflow side reads lake tables (reports)."""
    return json.loads(_env("DELTA_STORAGE_OPTIONS", "{}")) or None
