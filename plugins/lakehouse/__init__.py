"""Shared Airflow-side code for the lakehouse DAGs: settings, metadata, ingestion, compute.

Nothing here imports pyspark or pandas at module level, so DAG files stay fast to parse.
"""
