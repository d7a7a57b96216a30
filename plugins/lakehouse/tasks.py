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
    """Copy one HTTP file to the raw layer if it changed since it last landed (mapped per file)."""
    from lakehouse.http_ingest import fetch_to_raw

    get_current_context()["source_file"] = source["path"]
    return fetch_to_raw(pipeline, source, conn_id)


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
    import datetime as dt

    from airflow.sdk.exceptions import AirflowSkipException

    from lakehouse.sql_ingest import extract_table, run_windows

    get_current_context()["table_name"] = spec["table"]
    origin = dt.datetime.combine(dt.date.fromisoformat(grid["start_date"]), dt.time(), tzinfo=dt.UTC)
    lookback = params.get("lookback_windows")
    windows = run_windows(
        interval_start=data_interval_start,
        interval_end=data_interval_end,
        origin=origin,
        step=dt.timedelta(**grid["interval"]),
        from_date=params.get("from_date"),
        to_date=params.get("to_date"),
        lookback_windows=grid["lookback_windows"] if lookback is None else lookback,
    )
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
    """Show the run's row counts and expectation results, and attach them to the gold Assets."""
    from lakehouse.reporting import format_table, rows_for_run, table_version

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
    for table in gold_tables:
        outlet_events[lake_asset("gold", pipeline, table)].extra = {
            "run_id": run_id,
            "location": table_uri("gold", pipeline, table),
            "delta_version": table_version("gold", pipeline, table),
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
