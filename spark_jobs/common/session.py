"""The job's SparkSession: Databricks' own, a Spark Connect server's, or one handed in by the caller.

Jobs use only the Spark Connect API (DataFrames and SQL; nothing of the classic JVM gateway, see
tests/test_dag_integrity.py's check), so the same code runs on Databricks serverless,
standard-access and classic clusters, and locally against a Spark Connect server (``SPARK_REMOTE=sc://host:port``).
"""

from __future__ import annotations

import os

_BOUND = None


def bind(spark) -> None:
    """Use ``spark`` for the jobs run in this process (the Airflow task hands in its session)."""
    global _BOUND
    _BOUND = spark


def get_spark(app_name: str):
    """The bound session, else the active one, else ``SparkSession.builder.getOrCreate()``: on
    Databricks that is the cluster's or serverless session; elsewhere ``SPARK_REMOTE`` makes it
    a Spark Connect client."""
    if _BOUND is not None:
        return _BOUND
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if not on_databricks() and not os.environ.get("SPARK_REMOTE"):
        raise RuntimeError(
            "no Spark to run on: set SPARK_REMOTE=sc://<host>:<port> to a Spark Connect server with "
            "Delta Lake (`python -m lakehouse.spark_server start` runs one), or run on Databricks"
        )
    return SparkSession.builder.appName(app_name).getOrCreate()


def on_databricks() -> bool:
    return "DATABRICKS_RUNTIME_VERSION" in os.environ
