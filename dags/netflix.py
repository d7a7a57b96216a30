"""
### Netflix titles: HTTP files to gold Delta tables

The original Azure Data Factory + Databricks project, rebuilt on Airflow. Which files, columns,
tables and expectations: `include/netflix/pipeline.yaml`. Where it runs (local folder and Spark,
or ADLS Gen2 and Databricks): environment settings, see `plugins/lakehouse/settings.py`.

1. **raw**: one mapped task per file fetches it over HTTP (connection `netflix_http`) and lands
   it only if it changed; a sensor then checks that the titles file has landed. Or, with
   `NETFLIX_LANDING=adf` (or `landing.kind: adf` in the metadata), an existing Azure Data Factory
   copy pipeline lands the files (`adf_landing`, connection `azure_data_factory_default`) and one
   mapped task per file checks what it landed and accepts it into raw the same way.
2. **bronze**: new raw files only (Auto Loader style, checkpointed), with lineage columns and
   a `_rescued_data` column for rows that do not fit.
3. **silver**: the four lookup tables, and titles with the original transforms. Titles run on
   ISO weekday 7 (Sunday) only, as in the original, unless the param `force_silver_titles` is set.
4. **gold**: tables behind warn/drop/fail expectations; results in `gold/netflix/_quality`, in the
   `report` task's log and on the gold Assets' events.
"""

from __future__ import annotations

import datetime as dt

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Param, task

from lakehouse.compute import spark_job
from lakehouse.defaults import default_args
from lakehouse.metadata import landing_kind, load_pipeline
from lakehouse.tasks import fetch_http_file, lake_asset, raw_file_landed, report_run

META = load_pipeline("netflix")
PIPELINE = META["pipeline"]
SILVER = META["silver"]
GOLD_TABLES = [spec["table"] for spec in META["gold"]]
LANDING = landing_kind(META)  # http (fetch tasks) or adf (an existing ADF copy pipeline)
# What the Spark jobs get: not how files arrive (its templates are the ADF task's, and a job's
# arguments are rendered too)
JOBS_META = {key: value for key, value in META.items() if key != "landing"}

with DAG(
    dag_id=PIPELINE,
    description=META["description"],
    doc_md=__doc__,
    schedule="@daily",
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    tags=META["tags"],
    default_args=default_args(META),
    params={
        "force_silver_titles": Param(
            False,
            type="boolean",
            title="Force silver titles",
            description=f"Rebuild silver titles even if today is not ISO weekday {SILVER['titles_weekday']}.",
        )
    },
):
    if LANDING == "adf":
        from lakehouse.adf import accept_landed_file, landing_operator

        adf_landing = landing_operator(META)
        fetched = accept_landed_file.partial(pipeline=PIPELINE, landing=adf_landing.output).expand(
            source=META["files"]
        )
    else:
        fetched = fetch_http_file.partial(pipeline=PIPELINE, conn_id=META["source"]["conn_id"]).expand(
            source=META["files"]
        )
    landed = raw_file_landed.override(task_id="titles_landed")(PIPELINE, SILVER["titles"])

    bronze = spark_job("bronze", PIPELINE, "bronze", JOBS_META)
    silver_lookups = spark_job("silver_lookups", PIPELINE, "silver", JOBS_META, tables=SILVER["lookups"])
    silver_titles = spark_job("silver_titles", PIPELINE, "silver", JOBS_META, tables=[SILVER["titles"]])
    titles_not_due = EmptyOperator(task_id="titles_not_due", doc_md="Silver titles waits for its weekday.")

    @task.branch
    def titles_due(params=None, logical_date=None, dag_run=None) -> str:
        """Run silver titles on its weekday, or whenever the run forces it."""
        day = (logical_date or dag_run.run_after).isoweekday()
        due = params["force_silver_titles"] or day == SILVER["titles_weekday"]
        return "silver_titles" if due else "titles_not_due"

    gold = spark_job("gold", PIPELINE, "gold", JOBS_META, trigger_rule="none_failed")
    report = report_run.override(outlets=[lake_asset("gold", PIPELINE, t) for t in GOLD_TABLES])(
        PIPELINE, GOLD_TABLES
    )

    due = titles_due()
    fetched >> landed >> bronze >> [silver_lookups, due]
    due >> [silver_titles, titles_not_due]
    [silver_lookups, silver_titles, titles_not_due] >> gold >> report
