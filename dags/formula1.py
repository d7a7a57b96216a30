"""
### Formula 1: full and incremental file drops, Delta MERGE, presentation by race year

The original Databricks project (Ergast data) rebuilt on Airflow. Sources, schemas, keys and
which files a drop must hold: `include/formula1/pipeline.yaml`.

Each weekly run processes one drop folder, `raw/formula1/<ds>/`:

1. **drop_landed**: waits for the folder (reschedule mode, so no worker slot is held); a run whose
   drop never came is skipped.
2. **processed** (silver): every source found is read with its declared schema (rows that do not
   fit are rescued and counted), renamed to snake_case, given `file_date` and `ingestion_date`.
   Circuits, races, constructors and drivers are replaced (unless a newer drop already was);
   results, pit stops, lap times and qualifying are MERGEd on their keys, partitioned by race_id,
   a newer drop winning over a late older one. A missing required file fails the run, naming it,
   before anything is written; a missing optional one is reported.
3. **presentation** (gold): race_results, driver_standings, constructor_standings and
   calculated_race_results, recomputed for the race years the drop's results touch only.

Re-running a drop changes nothing; catch-up and `airflow backfill create` over the drop dates give
the same tables as running the drops one by one.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG
from airflow.timetables.trigger import CronTriggerTimetable

from lakehouse.compute import spark_job
from lakehouse.defaults import default_args
from lakehouse.metadata import load_pipeline
from lakehouse.tasks import lake_asset, raw_drop_landed, report_run

META = load_pipeline("formula1")
PIPELINE = META["pipeline"]
SCHEDULE = META["schedule"]
DROP = META["drop"]
FILE_DATE = ["--file-date", "{{ ds }}"]


def _utc(day: dt.date | None) -> dt.datetime | None:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC) if day else None


with DAG(
    dag_id=PIPELINE,
    description=META["description"],
    doc_md=__doc__,
    schedule=CronTriggerTimetable(SCHEDULE["cron"], timezone="UTC"),
    start_date=_utc(SCHEDULE["start_date"]),
    end_date=_utc(SCHEDULE.get("end_date")),
    catchup=True,
    max_active_runs=1,
    tags=META["tags"],
    default_args=default_args(META),
):
    landed = raw_drop_landed.override(
        task_id="drop_landed",
        timeout=DROP["wait_minutes"] * 60,
        poke_interval=DROP["poke_interval_seconds"],
        soft_fail=True,
    )(PIPELINE, DROP["wait_minutes"])
    processed = spark_job("processed", PIPELINE, "silver", META, extra_args=FILE_DATE)
    presentation = spark_job("presentation", PIPELINE, "gold", META, extra_args=FILE_DATE)
    report = report_run.override(outlets=[lake_asset("gold", PIPELINE, t) for t in META["presentation"]])(
        PIPELINE, META["presentation"]
    )
    landed >> processed >> presentation >> report
