"""SQL table to bronze parquet by change-column window: ADF's incremental copy, done right.

A run copies, per table, the rows whose change column lies in ``[start, end)`` (half-open, so a
row on a boundary belongs to exactly one window) and lands each window of the grid as

    bronze/<pipeline>/<table>/<WID>.parquet               (WID: window start, %Y%m%dT%H%M%S)
    bronze/<pipeline>/_windows/<table>/<WID>.json          (rows, sha256, max change, run)
    bronze/<pipeline>/_watermarks/<table>.json             (for operators: the last landed change)

Paths are deterministic, so re-extracting a window replaces exactly its own file; the same rows
give the same bytes, and an unchanged file is not rewritten. The parquet file is renamed into
place before its manifest is written, and the watermark is computed from manifests only, so it
never points past data that has not landed. Identifiers are quoted by the source's dialect and
window bounds are bound parameters.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import io
import itertools
import json
import logging
import re
import uuid
from dataclasses import dataclass

from lakehouse.metadata import NAME
from lakehouse.storage import lake_path

log = logging.getLogger(__name__)
WID_FORMAT = "%Y%m%dT%H%M%S"
DATE_PARAM = re.compile(r"^\d{4}-\d{2}-\d{2}$")
FETCH_ROWS = 50_000
SQLITE_TIMESTAMP = "%(year)04d-%(month)02d-%(day)02d %(hour)02d:%(minute)02d:%(second)02d"


class ExtractError(RuntimeError):
    """Rows of a source table could not be copied as declared."""


class ParamError(ValueError):
    """A run parameter is not valid."""


@dataclass(frozen=True)
class Window:
    start: dt.datetime
    end: dt.datetime

    @property
    def wid(self) -> str:
        return self.start.strftime(WID_FORMAT)


def parse_date_param(name: str, value) -> dt.datetime | None:
    """A ``YYYY-MM-DD`` run parameter as midnight UTC; None when not given."""
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not DATE_PARAM.match(value):
        raise ParamError(f"parameter {name}: {value!r} is not a date in the form YYYY-MM-DD")
    try:
        day = dt.date.fromisoformat(value)
    except ValueError as exc:
        raise ParamError(f"parameter {name}: {value!r} is not a valid date ({exc})") from None
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def grid_windows(
    start: dt.datetime,
    end: dt.datetime,
    origin: dt.datetime,
    step: dt.timedelta,
    max_windows: int | None = None,
    what: str = "the range",
) -> list[Window]:
    """The windows of the grid ``origin + k * step`` that cover ``[start, end)``; at most
    ``max_windows`` of them (counted before any is built)."""
    if end <= start:
        raise ParamError(f"the range {start.isoformat()} .. {end.isoformat()} is empty: end must be later")
    first = origin + ((start - origin) // step) * step
    count = -((first - end) // step)  # ceil((end - first) / step)
    if max_windows is not None and count > max_windows:
        raise ParamError(
            f"{what} {start.date().isoformat()} .. {end.date().isoformat()} covers {count} windows, "
            f"more than schedule.max_windows {max_windows} allows in one run: split it into several "
            "runs (or a backfill)"
        )
    windows, cursor = [], first
    while cursor < end:
        windows.append(Window(cursor, cursor + step))
        cursor += step
    return windows


def run_windows(
    *,
    interval_start: dt.datetime,
    interval_end: dt.datetime,
    origin: dt.datetime,
    step: dt.timedelta,
    from_date=None,
    to_date=None,
    lookback_windows=0,
    max_windows: int | None = None,
) -> list[Window]:
    """What a run extracts: its data interval plus ``lookback_windows`` earlier ones, or the
    ``from_date``/``to_date`` range (a manual re-extraction), always on the schedule's grid.

    The parameters are checked together, each refusal naming the parameter: both dates or
    neither, ``to_date`` after ``from_date``, and no more than ``max_windows`` windows.
    """
    if not isinstance(lookback_windows, int) or isinstance(lookback_windows, bool) or lookback_windows < 0:
        raise ParamError(f"parameter lookback_windows: {lookback_windows!r} must be a whole number >= 0")
    interval_start, interval_end = _plain(interval_start), _plain(interval_end)
    start, end = parse_date_param("from_date", from_date), parse_date_param("to_date", to_date)
    if (start is None) != (end is None):
        given, missing = ("from_date", "to_date") if end is None else ("to_date", "from_date")
        raise ParamError(
            f"parameter {missing}: missing; {given} was given, and from_date and to_date "
            "must be given together (both, or neither for the run's own interval)"
        )
    if start is not None:
        if end <= start:
            raise ParamError(
                f"parameter to_date: {to_date} must be after from_date {from_date}: the range "
                "from_date (inclusive) .. to_date (exclusive) is empty"
            )
        what = "parameters from_date .. to_date:"
    else:
        if lookback_windows + 1 > (max_windows or lookback_windows + 1):
            raise ParamError(
                f"parameter lookback_windows: {lookback_windows} reads {lookback_windows + 1} windows, "
                f"more than schedule.max_windows {max_windows} allows in one run"
            )
        if interval_end <= interval_start:
            # A run without a real interval: the last complete window before it.
            interval_start = interval_end - step
        start, end = interval_start - lookback_windows * step, interval_end
        what = "the run's interval with its lookback,"
    return grid_windows(start, end, origin, step, max_windows, what)


def _plain(moment: dt.datetime) -> dt.datetime:
    """A standard-library UTC datetime (Airflow passes pendulum ones, whose arithmetic differs)."""
    return dt.datetime.fromtimestamp(moment.timestamp(), dt.UTC)


# -- the query ---------------------------------------------------------------------------------
def build_query(engine, spec: dict, schema: str | None, lower, upper):
    """``SELECT <columns> FROM <table> WHERE change >= :lower AND change < :upper ORDER BY change, keys``.

    Every identifier is quoted by the engine's dialect; the bounds are bound parameters.
    """
    import sqlalchemy as sa
    from sqlalchemy.sql.elements import quoted_name

    columns = list(spec["columns"])
    table = sa.table(
        quoted_name(spec["source_table"], quote=True),
        *(sa.column(quoted_name(c, quote=True)) for c in columns),
        schema=quoted_name(schema, quote=True) if schema else None,
    )
    change = table.c[spec["change_column"]]
    bound_type = _bound_type(engine, spec["columns"][spec["change_column"]])
    return (
        sa.select(*(table.c[c] for c in columns))
        .where(change >= sa.bindparam("lower", lower, type_=bound_type))
        .where(change < sa.bindparam("upper", upper, type_=bound_type))
        .order_by(change, *(table.c[k] for k in spec["keys"]))
    )


def _bound_type(engine, column_type: str):
    import sqlalchemy as sa

    if column_type == "date":
        return sa.Date()
    if engine.dialect.name == "sqlite":
        # SQLite keeps timestamps as text; bind them as the same text (no microseconds), so a row
        # exactly on a window boundary compares equal and falls in the later window.
        from sqlalchemy.dialects.sqlite import DATETIME

        return DATETIME(storage_format=SQLITE_TIMESTAMP)
    return sa.DateTime()


def _bounds(column_type: str, windows: list[Window]):
    lower, upper = windows[0].start, windows[-1].end
    if column_type == "date":  # a date d lies in [start, end) when d >= ceil(start) and d < ceil(end)
        return _ceil_date(lower), _ceil_date(upper)
    return lower.replace(tzinfo=None), upper.replace(tzinfo=None)  # source timestamps are UTC, naive


def _ceil_date(moment: dt.datetime) -> dt.date:
    day = moment.date()
    return day if moment.time() == dt.time() else day + dt.timedelta(days=1)


# -- values to Arrow ---------------------------------------------------------------------------
def arrow_schema(spec: dict):
    import pyarrow as pa

    types = {"int": pa.int32(), "bigint": pa.int64(), "string": pa.string(), "date": pa.date32()}
    types["timestamp"] = pa.timestamp("us")
    return pa.schema([pa.field(name, types[kind]) for name, kind in spec["columns"].items()])


def _convert(kind: str, value):
    if value is None:
        return None
    if kind in ("int", "bigint"):
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError(f"not an integer: {value!r}")
        return int(value)
    if kind == "string":
        return str(value)
    if kind == "date":
        if isinstance(value, dt.datetime):
            return value.date()
        return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
    if kind == "timestamp":
        if not isinstance(value, dt.datetime):
            value = dt.datetime.fromisoformat(str(value))
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value
    raise ValueError(f"unknown column type {kind!r}")


def to_columns(spec: dict, rows: list, columns: dict[str, list]) -> None:
    """Append converted ``rows`` to ``columns``; a bad value fails naming table, column and key."""
    names = list(spec["columns"])
    kinds = [spec["columns"][n] for n in names]
    for row in rows:
        for name, kind, value in zip(names, kinds, row, strict=True):
            try:
                columns[name].append(_convert(kind, value))
            except (TypeError, ValueError) as exc:
                key = {k: row[names.index(k)] for k in spec["keys"]}
                raise ExtractError(
                    f"{spec['source_table']}.{name} of row {key}: {exc} (declared {kind}); nothing landed"
                ) from None


def window_of(value, windows: list[Window]) -> int:
    """Index of the window holding a change value (a datetime, or a date as its midnight)."""
    if not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time())
    value = value.replace(tzinfo=dt.UTC)
    step = windows[0].end - windows[0].start
    return int((value - windows[0].start) // step)


def parquet_bytes(table) -> bytes:
    """The same rows always give the same bytes (no timestamps are written into the file)."""
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(table, sink, compression="snappy")
    return sink.getvalue()


# -- landing -------------------------------------------------------------------------------------
def manifest_path(pipeline: str, table: str, wid: str):
    return lake_path("bronze", pipeline, "_windows", table, f"{wid}.json")


def watermark_path(pipeline: str, table: str):
    return lake_path("bronze", pipeline, "_watermarks", f"{table}.json")


def read_json(path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def land_window(pipeline: str, spec: dict, window: Window, data: bytes, rows: int, max_change, run_id: str):
    """Put one window's file in place (unless identical), then its manifest; returns the manifest."""
    table, wid = spec["table"], window.wid
    sha = hashlib.sha256(data).hexdigest()
    manifest_file = manifest_path(pipeline, table, wid)
    previous = read_json(manifest_file)
    folder = lake_path("bronze", pipeline, table)
    final = folder / f"{wid}.parquet"
    if previous and previous["sha256"] == sha and final.exists():
        log.info("%s window %s: %s rows, unchanged since run %s", table, wid, rows, previous["run_id"])
        return {**previous, "status": "unchanged"}
    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(final, data)
    manifest = {
        "table": table,
        "source_table": spec["source_table"],
        "window": wid,
        "window_start": window.start.isoformat(),
        "window_end": window.end.isoformat(),
        "file": final.name,
        "rows": rows,
        "sha256": sha,
        "change_column": spec["change_column"],
        "max_change": max_change.isoformat(),
        "run_id": run_id,
        "extracted_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    manifest_file.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(manifest_file, json.dumps(manifest, indent=2).encode())
    replaced = f" (replaced {previous['rows']} rows of run {previous['run_id']})" if previous else ""
    log.info("%s window %s: landed %s rows as %s%s", table, wid, rows, final, replaced)
    return {**manifest, "status": "landed"}


def landed_manifests(pipeline: str, table: str) -> list[dict]:
    folder = lake_path("bronze", pipeline, "_windows", table)
    return [
        json.loads(p.read_text())
        for p in folder.iterdir()
        if p.name.endswith(".json") and not p.name.startswith(".")
    ]


def refresh_watermark(pipeline: str, spec: dict) -> dict | None:
    """Recompute the table's watermark from the manifests of landed windows.

    Computed from what has landed only, so it never leads. Concurrent runs (catch-up, backfill)
    each write it; a writer that finds, after writing, windows it did not count writes again,
    so the last writer's record counts every window landed before it finished.
    """
    for _ in range(5):
        manifests = landed_manifests(pipeline, spec["table"])
        if not manifests:
            return None
        newest = max(manifests, key=lambda m: (m["max_change"], m["window"]))
        record = {
            "table": spec["table"],
            "source_table": spec["source_table"],
            "change_column": spec["change_column"],
            "last_change_value": newest["max_change"],
            "last_window": newest["window"],
            "last_window_end": max(m["window_end"] for m in manifests),
            "run_id": newest["run_id"],
            "windows_landed": len(manifests),
            "updated_at": dt.datetime.now(dt.UTC).isoformat(),
        }
        path = watermark_path(pipeline, spec["table"])
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, json.dumps(record, indent=2).encode())
        if _fingerprint(landed_manifests(pipeline, spec["table"])) == _fingerprint(manifests):
            break
    return record


def _fingerprint(manifests: list[dict]) -> set[tuple[str, str]]:
    return {(m["window"], m["sha256"]) for m in manifests}


def write_atomically(path, data: bytes) -> None:
    """Write under a hidden name unique to this writer, then rename: readers (Spark, a concurrent
    run listing manifests) see the old file or the new one, never half of one."""
    staging = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    staging.write_bytes(data)
    staging.rename(path)


def extract_table(pipeline: str, spec: dict, source: dict, windows: list[Window], run_id: str) -> dict:
    """Copy one table's rows in ``windows`` to bronze; returns a summary of what landed."""
    import pyarrow as pa
    from airflow.sdk import BaseHook

    for name in (pipeline, spec["table"]):
        if not NAME.match(name):
            raise ExtractError(f"invalid lake name {name!r}")
    hook = BaseHook.get_connection(source["conn_id"]).get_hook()
    engine = hook.get_sqlalchemy_engine()
    kind = spec["columns"][spec["change_column"]]
    lower, upper = _bounds(kind, windows)
    query = build_query(engine, spec, source.get("schema"), lower, upper)
    log.info(
        "%s: %s in [%s, %s) from %s (%s windows)",
        spec["table"],
        spec["change_column"],
        lower,
        upper,
        spec["source_table"],
        len(windows),
    )
    columns: dict[str, list] = {name: [] for name in spec["columns"]}
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=FETCH_ROWS).execute(query)
        for batch in result.partitions(FETCH_ROWS):
            to_columns(spec, batch, columns)
    schema = arrow_schema(spec)
    data = pa.table([pa.array(columns[f.name], type=f.type) for f in schema], schema=schema)
    changes = columns[spec["change_column"]]
    index = [window_of(value, windows) for value in changes]
    if any(a > b for a, b in itertools.pairwise(index)):
        raise ExtractError(f"{spec['source_table']}: rows did not come in {spec['change_column']} order")
    summary = {"table": spec["table"], "rows": data.num_rows, "windows": [], "empty_windows": []}
    for i, window in enumerate(windows):
        # Rows come ordered by the change column, so each window's rows are one slice.
        first, last = bisect.bisect_left(index, i), bisect.bisect_right(index, i)
        if first == last:
            summary["empty_windows"].append(window.wid)
            continue
        part = data.slice(first, last - first)
        manifest = land_window(
            pipeline, spec, window, parquet_bytes(part), part.num_rows, max(changes[first:last]), run_id
        )
        summary["windows"].append({k: manifest[k] for k in ("window", "rows", "sha256", "status")})
    if summary["windows"]:
        summary["watermark"] = refresh_watermark(pipeline, spec)
    return summary
