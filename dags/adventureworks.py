"""
### AdventureWorks: every table of an operational SQL schema, copied, conformed and served

The "on-premises SQL Server -> Data Factory -> ADLS -> Databricks -> Synapse -> Power BI" project on
Airflow, as two DAGs joined by an Asset. Configured by a connection and a schema name alone
(`include/adventureworks/pipeline.yaml`): no per-table code or metadata.

**adventureworks_copy** (daily, `catchup=True`; backfill with `airflow backfill create`):
`discover_tables` reads the tables, columns, types and primary keys from the source's catalog when
the run starts (a table added to the source is copied by the next run; a dropped one is reported
and its lake tables kept); `copy_table` (mapped, one per table) lands it in bronze as parquet parts
of `chunk_rows` rows: in full, or, for a table with a primary key and a change column such as
`ModifiedDate`, the rows changed in the run's half-open interval `[start, end)` (all rows before
its end on the table's first run). Silver merges them into Delta by primary key (timestamps as UTC
instants, ingestion columns added), gold renames columns to snake_case. The tasks that read the
source run on `ADVENTUREWORKS_SOURCE_QUEUE` when set: a worker inside the source's network.
Param `lookback_windows`: also re-read that many earlier windows, for changes that arrived late.

**adventureworks_serve** (when gold changed): publishes each gold table to the SQL warehouse
(PostgreSQL locally, replaced atomically; Synapse serverless views or Unity Catalog tables on Azure:
`WAREHOUSE_KIND`), then refreshes the Power BI dataset (`POWERBI_DATASET_ID`).
"""

from __future__ import annotations

from airflow.sdk import DAG

from lakehouse import settings
from lakehouse.compute import spark_job
from lakehouse.defaults import default_args
from lakehouse.metadata import load_pipeline
from lakehouse.schema_tasks import copy_table, discover_tables, gold_asset, report_gold
from lakehouse.serving import powerbi_refresh_task, serving_task
from lakehouse.tasks import check_params
from lakehouse.windowing import lookback_param, utc_midnight, window_grid, window_schedule

META = load_pipeline("adventureworks")
PIPELINE = META["pipeline"]
SOURCE = {**META["source"], "schema": settings.source_schema(PIPELINE, META["source"].get("schema"))}
SCHEDULE = META["schedule"]
GOLD = gold_asset(PIPELINE)
# The tasks that read the source, routed to a worker in its network when a queue is configured.
ON_SOURCE = {"queue": queue} if (queue := settings.source_queue(PIPELINE, SOURCE.get("queue"))) else {}


with DAG(
    dag_id=f"{PIPELINE}_copy",
    description="Copy every table of the source schema to bronze, then silver and gold Delta",
    doc_md=__doc__,
    **window_schedule(SCHEDULE),
    max_active_runs=1,
    tags=META["tags"],
    default_args=default_args(META),
    params={
        "lookback_windows": lookback_param(
            SCHEDULE, "Incremental tables: also re-read this many earlier windows, for late changes."
        ),
    },
):
    grid = window_grid(SCHEDULE)
    checked = check_params(grid)
    tables = discover_tables.override(**ON_SOURCE)(PIPELINE, SOURCE)
    copied = (
        copy_table.override(**ON_SOURCE)
        .partial(pipeline=PIPELINE, source=SOURCE, grid=grid)
        .expand(spec=tables)
    )
    silver = spark_job("silver", PIPELINE, "silver", META)
    gold = spark_job("gold", PIPELINE, "gold", META)
    report = report_gold.override(outlets=[GOLD])(PIPELINE)
    checked >> tables
    copied >> silver >> gold >> report


with DAG(
    dag_id=f"{PIPELINE}_serve",
    description="Publish the gold tables to the SQL warehouse, then refresh Power BI",
    doc_md=__doc__,
    schedule=[GOLD],
    start_date=utc_midnight(SCHEDULE["start_date"]),
    max_active_runs=1,
    tags=META["tags"],
    default_args=default_args(META),
):
    published = serving_task(PIPELINE, META["serving"])
    refreshed = powerbi_refresh_task(PIPELINE)
    published >> refreshed
