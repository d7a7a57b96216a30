"""The daily (or hourly) window grid of the SQL pipelines' DAGs, from their metadata's ``schedule``:
the timetable, the grid their window tasks cut runs into, and the ``lookback_windows`` param."""

from __future__ import annotations

import datetime as dt


def utc_midnight(day: dt.date | None) -> dt.datetime | None:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC) if day else None


def window_schedule(schedule: dict) -> dict:
    """DAG arguments: one run per window (``DeltaDataIntervalTimetable``, so each run has a real
    interval), from ``start_date`` (to ``end_date``), with catch-up."""
    from airflow.timetables.interval import DeltaDataIntervalTimetable

    return {
        "schedule": DeltaDataIntervalTimetable(dt.timedelta(**schedule["interval"])),
        "start_date": utc_midnight(schedule["start_date"]),
        "end_date": utc_midnight(schedule.get("end_date")),
        "catchup": True,
    }


def window_grid(schedule: dict) -> dict:
    """What the window tasks (``check_params``, the copies) need of the schedule, as JSON."""
    return {
        "start_date": schedule["start_date"].isoformat(),
        "interval": schedule["interval"],
        "lookback_windows": schedule.get("lookback_windows", 0),
        "max_windows": schedule["max_windows"],
    }


def lookback_param(schedule: dict, description: str):
    """The ``lookback_windows`` trigger param: 0 .. max_windows - 1, the metadata's as default."""
    from airflow.sdk import Param

    return Param(
        schedule.get("lookback_windows", 0),
        type="integer",
        minimum=0,
        maximum=schedule["max_windows"] - 1,
        title="Lookback windows",
        description=description,
    )
