"""Medallion transforms that run on local Spark or Databricks. Never imports Airflow."""
