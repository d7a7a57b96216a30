"""TaskFlow tasks shared by the pipelines' DAGs. Heavy imports stay inside the tasks."""

from __future__ import annotations

import logging

from airflow.sdk import Asset, PokeReturnValue, get_current_context, task

from lakehouse.storage import layer_uri, table_uri

log = logging.getLogger(__name__)


def lake_asset(layer: str, pipeline: str, table: str) -> Asset:
    """The Asset of a lake table.

    Its URI is logical (``lake://<layer>/<pipeline>/<table>``), so the Asset, and the DAGs that
    depend on it, stay the same when LAKE_ROOT moves the lake; each event says where it is.
    """
    return Asset(
        name=f"{pipeline}.{layer}.{table}", uri=f"lake://{layer}/{pipeline}/{table}", group="lakehouse"
    )


@task(map_index_template="{{ source_file }}")
def fetch_http_file(pipeline: str, conn_id: str, source: dict) -> dict:
    """Copy one HTTP file to the raw layer if it changed since it last landed (mapped per file).

    A failure a retry cannot fix (a 4xx, a malformed or undecodable file) fails the task at once.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from lakehouse.http_ingest import SourceError, fetch_to_raw

    get_current_context()["source_file"] = source["path"]
    try:
        return fetch_to_raw(pipeline, source, conn_id)
    except SourceError as exc:
        if exc.retryable:
            raise
        raise AirflowFailException(f"{exc} (not retried: a retry cannot fix this)") from exc


@task(map_index_template="{{ table_name }}")
def extract_sql_table(
    pipeline: str,
    source: dict,
    grid: dict,
    spec: dict,
    *,
    params=None,
    run_id=None,
    data_interval_start=None,
    data_interval_end=None,
    outlet_events=None,
) -> dict:
    """Copy one table's rows of the run's window(s) to bronze (mapped per table).

    No rows: nothing is written and the task is skipped, so the table's gap shows in the grid.
    """

    from airflow.sdk.exceptions import AirflowSkipException

    from lakehouse.sql_ingest import extract_table

    get_current_context()["table_name"] = spec["table"]
    windows = windows_of_run(grid, params, data_interval_start, data_interval_end)
    summary = extract_table(pipeline, spec, source, windows, run_id)
    if not summary["windows"]:
        raise AirflowSkipException(
            f"{spec['table']}: no rows with {spec['change_column']} in "
            f"[{windows[0].start:%Y-%m-%d %H:%M}, {windows[-1].end:%Y-%m-%d %H:%M}): nothing written, "
            "downstream work for this table skipped"
        )
    outlet_events[lake_asset("bronze", pipeline, "tables")].extra = {
        "table": spec["table"],
        "run_id": run_id,
        "rows": summary["rows"],
        "windows": summary["windows"],
    }
    return summary


def windows_of_run(grid: dict, params, data_interval_start, data_interval_end):
    """The windows the run's params and data interval ask for, checked as a whole; a bad
    parameter fails the task without a retry (a retry would read the same params)."""
    import datetime as dt

    from airflow.sdk.exceptions import AirflowFailException

    from lakehouse.sql_ingest import ParamError, run_windows

    origin = dt.datetime.combine(dt.date.fromisoformat(grid["start_date"]), dt.time(), tzinfo=dt.UTC)
    lookback = params.get("lookback_windows")
    try:
        return run_windows(
            interval_start=data_interval_start,
            interval_end=data_interval_end,
            origin=origin,
            step=dt.timedelta(**grid["interval"]),
            from_date=params.get("from_date"),
            to_date=params.get("to_date"),
            lookback_windows=grid["lookback_windows"] if lookback is None else lookback,
            max_windows=grid.get("max_windows"),
        )
    except ParamError as exc:
        raise AirflowFailException(f"{exc} (not retried: fix the run's parameters)") from exc


@task
def check_params(grid: dict, *, params=None, data_interval_start=None, data_interval_end=None) -> dict:
    """Check the run's parameters as a whole before any other task starts: both dates or
    neither, ``to_date`` after ``from_date``, at most the metadata's ``max_windows`` windows.

    Each param's own schema is checked when the run is created; this checks them together (Airflow
    validates each Param alone). A refusal fails this task without a retry, and the tasks after it
    never start.
    """
    windows = windows_of_run(grid, params, data_interval_start, data_interval_end)
    summary = {
        "windows": len(windows),
        "from": windows[0].start.isoformat(),
        "to": windows[-1].end.isoformat(),
    }
    log.info("the run extracts %s window(s), %s to %s", summary["windows"], summary["from"], summary["to"])
    return summary


@task.sensor(poke_interval=15, timeout=600, mode="reschedule")
def raw_file_landed(pipeline: str, table: str) -> PokeReturnValue:
    """Validation before transforms start: at least one complete raw file of ``table`` exists."""
    from lakehouse.http_ingest import landed_files

    files = landed_files(pipeline, table)
    log.info("%s raw files of %s.%s in %s", len(files), pipeline, table, layer_uri("raw"))
    return PokeReturnValue(is_done=bool(files), xcom_value=files[-1] if files else None)


@task.sensor(mode="reschedule")
def raw_drop_landed(pipeline: str, wait_minutes: int, *, ds=None, data_interval_end=None) -> PokeReturnValue:
    """Wait for the run's drop folder ``raw/<pipeline>/<ds>/``; skip the run if none comes.

    A run whose drop is older than the wait (a catch-up or backfill run of a week without a drop)
    is skipped at once instead of waiting for a folder that will never arrive.
    """
    import datetime as dt

    from airflow.sdk.exceptions import AirflowSkipException

    from lakehouse.storage import lake_path

    folder = lake_path("raw", pipeline, dt.date.fromisoformat(ds).isoformat())
    if folder.exists() and any(True for _ in folder.iterdir()):
        log.info("drop %s has landed: %s", ds, folder)
        return PokeReturnValue(is_done=True, xcom_value=str(folder))
    age = dt.datetime.now(dt.UTC) - data_interval_end
    if age > dt.timedelta(minutes=wait_minutes):
        raise AirflowSkipException(f"no drop for {ds} in {folder}, and it is {age} past due: skipped")
    log.info("waiting for drop %s in %s", ds, folder)
    return PokeReturnValue(is_done=False)


@task
def report_run(pipeline: str, gold_tables: list[str], *, run_id=None, outlet_events=None) -> dict:
    """Show the run's row counts and expectation results, and attach them to the gold Assets.

    Each gold Asset event carries the table's version in the pipeline's newest release (what
    readers see together), or its current version before the first release.
    """
    from lakehouse.reporting import format_table, released, rows_for_run, table_version

    counts = rows_for_run(pipeline, "_audit", run_id)
    quality = rows_for_run(pipeline, "_quality", run_id)
    if counts:
        log.info(
            "Row counts of run %s:\n%s",
            run_id,
            format_table(counts, ["job", "layer", "table", "metric", "value"]),
        )
    if quality:
        columns = [
            "table",
            "rule",
            "action",
            "status",
            "rows_total",
            "rows_passed",
            "rows_failing",
            "rows_dropped",
        ]
        log.info("Expectations of run %s:\n%s", run_id, format_table(quality, columns))
    else:
        log.info("No gold table was rebuilt in run %s: its inputs were unchanged", run_id)
    release = released(pipeline)
    if release:
        log.info("Gold release %s (run %s): %s", release["release"], release["run_id"], release["tables"])
    versions = release["tables"] if release else {}
    for table in gold_tables:
        version = versions.get(table)
        outlet_events[lake_asset("gold", pipeline, table)].extra = {
            "run_id": run_id,
            "location": table_uri("gold", pipeline, table),
            "delta_version": version if version is not None else table_version("gold", pipeline, table),
            "release": release["release"] if release and version is not None else None,
            "expectations": [
                {k: r[k] for k in ("rule", "action", "status", "rows_passed", "rows_failing", "rows_dropped")}
                for r in quality
                if r["table"] == table
            ],
        }
    return {
        "row_counts": {f"{r['layer']}.{r['table']}.{r['metric']}": r["value"] for r in counts},
        "expectations": {
            f"{r['table']}.{r['rule']}": {k: r[k] for k in ("status", "rows_failing", "rows_dropped")}
            for r in quality
        },
    }
