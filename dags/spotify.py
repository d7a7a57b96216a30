"""
### Spotify: incremental SQL ingestion, silver clean-up, an SCD2 star schema

The original Azure project (ADF incremental copy + Databricks Auto CDC) rebuilt on Airflow, as two
DAGs joined by an Asset. Tables, keys, change columns and types: `include/spotify/pipeline.yaml`.

**spotify_ingest** (daily, `catchup=True`; backfill with `airflow backfill create`): per table
(mapped), the rows whose change column lies in the run's data interval `[start, end)` land in
`bronze/spotify/<table>/<window>.parquet`, one file per window, replaced by a re-run. A window
with no rows writes nothing and its table's task is *skipped*. Params:

* `from_date`/`to_date`: re-extract that range instead (the original's backfill override);
* `lookback_windows`: also re-read that many earlier windows, for changes that arrive late.

Each param's schema is checked when the run is created; the first task, `check_params`, checks
them together before any table is read (both dates or neither, `to_date` after `from_date`, at
most `schedule.max_windows` windows) and fails without a retry, naming the parameter. Airflow 3.3
validates each Param on its own only (a JSON schema per Param, no DAG-level rule), so a
cross-field rule cannot refuse the trigger itself.

**spotify_transform** (runs when bronze changed): silver merges only new or changed bronze windows
(user names upper-cased, track names without '-', a duration bucket, one row per key and change);
gold rebuilds the SCD2 dimensions (users, tracks, artists), the date dimension (type 1) and
upserts `fact_stream` on stream_id, each fact pointing at the dimension versions valid at its
stream time; `stream_facts` joins them (a Jinja2 SQL template in `include/spotify/sql/`).
"""

from __future__ import annotations

from airflow.sdk import DAG, Param

from lakehouse.compute import spark_job
from lakehouse.defaults import default_args
from lakehouse.metadata import load_pipeline
from lakehouse.sql_templates import with_rendered_views
from lakehouse.tasks import check_params, extract_sql_table, lake_asset, report_run
from lakehouse.windowing import lookback_param, utc_midnight, window_grid, window_schedule

META = load_pipeline("spotify")
PIPELINE = META["pipeline"]
SCHEDULE = META["schedule"]
BRONZE = lake_asset("bronze", PIPELINE, "tables")
GOLD_TABLES = [spec["gold"]["table"] for spec in META["tables"]] + [v["table"] for v in META["views"]]
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"


with DAG(
    dag_id=f"{PIPELINE}_ingest",
    description="Copy each source table's changed rows, window by window, to bronze",
    doc_md=__doc__,
    **window_schedule(SCHEDULE),
    tags=META["tags"],
    default_args=default_args(META),
    params={
        "from_date": Param(
            None,
            type=["null", "string"],
            format="date",
            pattern=DATE_PATTERN,
            title="From date",
            description="Re-extract from this date (inclusive, YYYY-MM-DD) instead of the run's interval. "
            "Give to_date too.",
        ),
        "to_date": Param(
            None,
            type=["null", "string"],
            format="date",
            pattern=DATE_PATTERN,
            title="To date",
            description="Re-extract up to this date (exclusive, YYYY-MM-DD).",
        ),
        "lookback_windows": lookback_param(
            SCHEDULE, "Also re-read this many earlier windows, for changes that arrived late."
        ),
    },
):
    grid = window_grid(SCHEDULE)
    checked = check_params(grid)
    extracted = (
        extract_sql_table.override(outlets=[BRONZE])
        .partial(pipeline=PIPELINE, source=META["source"], grid=grid)
        .expand(spec=META["tables"])
    )
    checked >> extracted


with DAG(
    dag_id=f"{PIPELINE}_transform",
    description="Bronze windows to silver, then the gold star schema with SCD2 dimensions",
    doc_md=__doc__,
    schedule=[BRONZE],
    start_date=utc_midnight(SCHEDULE["start_date"]),
    max_active_runs=1,
    tags=META["tags"],
    default_args=default_args(META),
):
    config = with_rendered_views(META)
    silver = spark_job("silver", PIPELINE, "silver", config)
    gold = spark_job("gold", PIPELINE, "gold", config)
    report = report_run.override(outlets=[lake_asset("gold", PIPELINE, t) for t in GOLD_TABLES])(
        PIPELINE, GOLD_TABLES
    )
    silver >> gold >> report
