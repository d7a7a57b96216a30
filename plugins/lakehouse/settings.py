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
    """The Spark Connect server local jobs run on: a ``spark_connect`` connection."""
    return _env("SPARK_CONN_ID", "spark_connect_default")


def spark_jars_dir() -> Path:
    """JVM packages for a local Spark Connect server (``make venv`` fetches them there)."""
    return Path(_env("SPARK_JARS_DIR", str(Path(sys.prefix) / "spark-jars")))


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
