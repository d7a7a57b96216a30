"""A Spark job as an Airflow task: local spark-submit or a Databricks run, by configuration.

Both run the same file, ``spark_jobs/run.py``, with the same arguments, so a DAG does not change
when ``LAKEHOUSE_COMPUTE`` moves it from a laptop to Databricks.
"""

from __future__ import annotations

import json

from lakehouse import settings


def job_arguments(
    pipeline: str,
    job: str,
    config: dict,
    tables: list[str] | None = None,
    extra_args: list[str] | None = None,
) -> list[str]:
    args = [
        f"{pipeline}.{job}",
        "--lake-root",
        settings.spark_lake_root(),
        "--run-id",
        "{{ run_id }}",
        "--config",
        json.dumps(config, sort_keys=True, separators=(",", ":"), default=str),
    ]
    if tables:
        args += ["--tables", ",".join(tables)]
    return args + list(extra_args or [])


def spark_job(
    task_id: str,
    pipeline: str,
    job: str,
    config: dict,
    *,
    tables: list[str] | None = None,
    extra_args: list[str] | None = None,
    **kwargs,
):
    """An operator running ``spark_jobs/<pipeline>/<job>.py`` on the configured compute.

    ``extra_args`` are appended to the job's arguments and may be templated (``{{ ds }}``).
    """
    args = job_arguments(pipeline, job, config, tables, extra_args)
    doc = f"Spark job `{pipeline}.{job}`" + (f" for tables {', '.join(tables)}" if tables else "")
    kwargs.setdefault("doc_md", doc)
    if settings.compute() == "databricks":
        from airflow.providers.databricks.operators.databricks import DatabricksSubmitRunOperator

        return DatabricksSubmitRunOperator(
            task_id=task_id,
            databricks_conn_id=settings.databricks_conn_id(),
            run_name=f"{pipeline}.{job}",
            spark_python_task={
                "python_file": f"{settings.databricks_jobs_root()}/run.py",
                "parameters": args,
            },
            polling_period_seconds=settings.databricks_poll_seconds(),
            **settings.databricks_cluster(),
            **kwargs,
        )
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    python = settings.spark_python()
    return SparkSubmitOperator(
        task_id=task_id,
        conn_id=settings.spark_conn_id(),
        application=str(settings.spark_jobs_dir() / "run.py"),
        application_args=args,
        name=f"{pipeline}.{job}",
        conf=settings.spark_submit_conf(),
        env_vars={"PYSPARK_PYTHON": python, "PYSPARK_DRIVER_PYTHON": python},
        **kwargs,
    )
