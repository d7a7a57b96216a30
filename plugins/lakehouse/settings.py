"""The runtime, chosen by configuration (environment variables), never by copies of DAGs.

Each setting is read when asked for, so tests and deployments can change it without code.
The README's "Configuration" table lists them all with their defaults.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("raw", "bronze", "silver", "gold")


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, "").strip() or default


def _lake_module():
    """``spark_jobs.common.lake`` (no Airflow in it), importable wherever ``spark_jobs/`` is, as
    ``compute.run_spark_job`` does: DAG parsing needs it before any task runs."""
    root = str(spark_jobs_dir().parent)
    if root not in sys.path:
        sys.path.append(root)
    from spark_jobs.common import lake as module

    return module


def lake():
    """``LAKE_ROOT`` parsed (``spark_jobs.common.lake.parse_lake_root``): a wrong form fails here,
    when a DAG file is parsed, with a message saying what to write. An Azure lake needs
    ``LAKE_CONN_ID``, the Airflow connection that holds its account and credentials."""
    root = _lake_module().parse_lake_root(_env("LAKE_ROOT", str(REPO_ROOT / ".lake")), "LAKE_ROOT")
    if root.is_azure and not lake_conn_id():
        raise ValueError(
            f"LAKE_ROOT={str(root)!r} is on Azure storage and needs LAKE_CONN_ID: the Airflow connection "
            "(type wasb or adls) holding the storage account and its credentials"
        )
    return root


def lake_root() -> str:
    """The lake setting, checked, as written (a local folder or an ``abfs(s)://`` URI)."""
    return str(lake())


def lake_conn_id() -> str | None:
    return _env("LAKE_CONN_ID") or None


def spark_lake_root() -> str:
    """The lake as the Spark jobs' ``--lake-root``: ``SPARK_LAKE_ROOT``, else ``LAKE_ROOT``.

    Both are checked here (DAG parse). Locally the task completes an Azure root at run time from
    ``LAKE_CONN_ID`` (the account, and the emulator's endpoint); Databricks gets it as it is, so
    there it must name the account.
    """
    root = lake()
    override = _env("SPARK_LAKE_ROOT")
    if override:
        root = _lake_module().parse_lake_root(override, "SPARK_LAKE_ROOT")
    if root.is_azure and not root.account and compute() == "databricks":
        raise ValueError(
            f"{'SPARK_LAKE_ROOT' if override else 'LAKE_ROOT'}={str(root)!r} names no storage account, "
            "which Databricks needs: set SPARK_LAKE_ROOT=abfss://<container or {layer}>@<account>"
            ".dfs.core.windows.net[/prefix]"
        )
    return str(root)


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


def alert_emails() -> list[str]:
    return [address.strip() for address in _env("ALERT_EMAILS").split(",") if address.strip()]


def retries() -> int:
    return int(_env("LAKEHOUSE_RETRIES", "2"))


def retry_delay_seconds() -> int:
    return int(_env("LAKEHOUSE_RETRY_DELAY_SECONDS", "300"))


def delta_storage_options() -> dict[str, str] | None:
    """Options for delta-rs when the Airflow side reads lake tables (reports).

    On an Azure lake the account and credentials come from the ``LAKE_CONN_ID`` connection
    (``lakehouse.storage.delta_storage_options``); ``DELTA_STORAGE_OPTIONS`` (JSON) adds or overrides
    options, e.g. timeouts, and is the only source for a local lake.
    """
    try:
        extra = json.loads(_env("DELTA_STORAGE_OPTIONS", "{}"))
    except ValueError as exc:
        raise ValueError(f"DELTA_STORAGE_OPTIONS is not valid JSON: {exc}") from exc
    if not isinstance(extra, dict):
        raise ValueError("DELTA_STORAGE_OPTIONS must be a JSON object of delta-rs storage options")
    options: dict[str, str] = {}
    if lake().is_azure:
        from lakehouse.storage import delta_storage_options as from_connection

        options = from_connection()
    return {**options, **{str(k): str(v) for k, v in extra.items()}} or None


QUEUE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def source_queue(pipeline: str, configured: str | None = None) -> str | None:
    """The worker queue of the tasks that read a pipeline's source: ``<PIPELINE>_SOURCE_QUEUE``,
    else the metadata's ``source.queue``, else None (the default queue).

    A queue served by a worker inside the source's network is Airflow's counterpart of Data
    Factory's self-hosted integration runtime (CeleryExecutor or EdgeExecutor; README)."""
    setting = f"{pipeline.upper()}_SOURCE_QUEUE"
    value = _env(setting) or configured
    if value is not None and not QUEUE.match(value):
        raise ValueError(f"{setting}={value!r}: a queue name is letters, digits, '_', '.', '-' (at most 64)")
    return value


def source_schema(pipeline: str, configured: str | None) -> str | None:
    """The source schema a schema copy reads: ``<PIPELINE>_SOURCE_SCHEMA``, else the metadata's
    ``source.schema`` (the same schema can have another name in another environment: ``main`` in
    the demo's SQLite file). Checked against the source's catalog when a run starts."""
    return _env(f"{pipeline.upper()}_SOURCE_SCHEMA") or configured
