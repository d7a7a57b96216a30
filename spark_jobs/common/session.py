"""One SparkSession per job: whatever spark-submit or Databricks configured, or local[2]."""

from __future__ import annotations

import os


def get_spark(app_name: str, *, with_delta_jars: bool = False):
    """Return the active session, or build a small local one.

    ``with_delta_jars`` adds the Delta extensions through ``configure_spark_with_delta_pip``,
    which downloads the jars from Maven on first use (not possible on machines without internet).
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = (
        SparkSession.builder.appName(app_name)
        .master(os.environ.get("SPARK_MASTER", "local[2]"))
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", os.environ.get("SPARK_SHUFFLE_PARTITIONS", "4"))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
    )
    if with_delta_jars:
        from delta import configure_spark_with_delta_pip

        builder = builder.config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension").config(
            "spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog"
        )
        builder = configure_spark_with_delta_pip(builder)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("SPARK_LOG_LEVEL", "WARN"))
    return spark


def on_databricks() -> bool:
    return "DATABRICKS_RUNTIME_VERSION" in os.environ
