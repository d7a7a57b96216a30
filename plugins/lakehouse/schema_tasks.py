"""TaskFlow tasks of a schema copy (``include/<pipeline>/pipeline.yaml`` with ``kind: schema_copy``).

The tables are found in the source's catalog when a run starts, never when the DAG is parsed, so
the DAG file stays the same when the source gains a table. Heavy imports stay inside the tasks.
"""

from __future__ import annotations

import logging

from airflow.sdk import get_current_context, task

from lakehouse.tasks import lake_asset, windows_of_run

log = logging.getLogger(__name__)


def gold_asset(pipeline: str):
    """One Asset for all of a schema's gold tables: which tables exist is known only at run time.
    Each event lists the tables and their Delta versions."""
    return lake_asset("gold", pipeline, "tables")


def _not_retried(exc: Exception):
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(f"{exc} (not retried: a retry would read the same source)")


@task
def discover_tables(pipeline: str, source: dict) -> list[dict]:
    """The tables to copy, from the source's catalog: columns, types, primary key, and whether a
    change column makes the copy incremental. Lake tables whose source table is gone are
    reported (and kept, not refreshed)."""
    from lakehouse import schema_copy

    try:
        found = schema_copy.discover(source["conn_id"], source)
    except schema_copy.SchemaCopyError as exc:
        raise _not_retried(exc) from exc
    for spec in found["tables"]:
        how = f"incremental by {spec['change_column']}" if spec["mode"] == "incremental" else "in full"
        reason = f" ({spec['reason']})" if spec.get("reason") else ""
        log.info(
            "%s -> %s: %s columns, copied %s%s",
            spec["source_table"],
            spec["table"],
            len(spec["columns"]),
            how,
            reason,
        )
    gone = schema_copy.dropped_tables(pipeline, found)
    if gone:
        log.warning(
            "%s table(s) of the lake are no longer in the source: %s. Their lake tables are kept "
            "as they are and no longer refreshed.",
            len(gone),
            ", ".join(gone),
        )
    return found["tables"]


@task(map_index_template="{{ table_name }}")
def copy_table(
    pipeline: str,
    source: dict,
    grid: dict,
    spec: dict,
    *,
    params=None,
    run_id=None,
    data_interval_start=None,
    data_interval_end=None,
) -> dict:
    """Copy one table (mapped per discovered table) to bronze: in full, or the run's window of an
    incremental table (all rows before the window's end on its first load)."""
    from lakehouse import schema_copy

    get_current_context()["table_name"] = spec["source_table"]
    windows = windows_of_run(grid, params, data_interval_start, data_interval_end)
    try:
        return schema_copy.copy_table(pipeline, spec, source, windows, run_id)
    except schema_copy.SchemaCopyError as exc:
        raise _not_retried(exc) from exc


@task
def report_gold(pipeline: str, *, run_id=None, outlet_events=None) -> dict:
    """Show the run's row counts, and attach every gold table's version to the gold Asset's event
    (the serving DAG runs on it)."""
    from lakehouse.reporting import format_table, rows_for_run, table_version
    from lakehouse.serving import gold_tables
    from lakehouse.storage import layer_uri

    counts = rows_for_run(pipeline, "_audit", run_id)
    if counts:
        log.info(
            "Row counts of run %s:\n%s",
            run_id,
            format_table(counts, ["job", "layer", "table", "metric", "value"]),
        )
    tables = {table: table_version("gold", pipeline, table) for table in gold_tables(pipeline)}
    outlet_events[gold_asset(pipeline)].extra = {
        "run_id": run_id,
        "location": f"{layer_uri('gold')}/{pipeline}",
        "tables": tables,
    }
    return {
        "tables": tables,
        "row_counts": {f"{r['layer']}.{r['table']}.{r['metric']}": r["value"] for r in counts},
    }
