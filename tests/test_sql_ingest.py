"""SQL to bronze by change-column window: windows, parameters, quoting, landing and watermarks.

The landing cases run against a real SQLite database through the sqlite provider's hook.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from lakehouse.sql_ingest import (
    ExtractError,
    ParamError,
    build_query,
    extract_table,
    grid_windows,
    run_windows,
)

UTC = dt.UTC
DAY = dt.timedelta(days=1)
ORIGIN = dt.datetime(2025, 9, 7, tzinfo=UTC)
SPEC = {
    "table": "users",
    "source_table": "DimUser",
    "keys": ["user_id"],
    "change_column": "updated_at",
    "columns": {"user_id": "int", "user_name": "string", "start_date": "date", "updated_at": "timestamp"},
}


def day(d: int) -> dt.datetime:
    return ORIGIN + (d - 7) * DAY if d >= 7 else ORIGIN


def test_a_scheduled_run_extracts_its_interval_and_its_lookback():
    windows = run_windows(
        interval_start=day(10), interval_end=day(11), origin=ORIGIN, step=DAY, lookback_windows=2
    )
    assert [w.wid for w in windows] == ["20250908T000000", "20250909T000000", "20250910T000000"]
    assert windows[-1].end == day(11)


def test_from_and_to_dates_cut_the_range_into_the_schedule_grid():
    windows = run_windows(
        interval_start=day(20),
        interval_end=day(21),
        origin=ORIGIN,
        step=DAY,
        from_date="2025-09-08",
        to_date="2025-09-10",
    )
    assert [(w.start.day, w.end.day) for w in windows] == [(8, 9), (9, 10)]


def test_a_run_without_a_real_interval_takes_the_last_complete_window():
    windows = run_windows(interval_start=day(12), interval_end=day(12), origin=ORIGIN, step=DAY)
    assert [(w.start, w.end) for w in windows] == [(day(11), day(12))]


def test_windows_are_aligned_to_the_grid_whatever_the_range():
    windows = grid_windows(
        dt.datetime(2025, 9, 8, 5, tzinfo=UTC), dt.datetime(2025, 9, 9, 1, tzinfo=UTC), ORIGIN, DAY
    )
    assert [w.wid for w in windows] == ["20250908T000000", "20250909T000000"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"from_date": "2024-01-01'; DROP TABLE x; --", "to_date": "2024-02-01"}, "parameter from_date"),
        ({"from_date": "2024-01-01", "to_date": "2024-02-30"}, "parameter to_date"),
        ({"from_date": "2024-01-01"}, "from_date and to_date must be given together"),
        ({"from_date": "2024-01-01"}, "^parameter to_date: missing"),
        ({"to_date": "2024-01-01"}, "^parameter from_date: missing"),
        ({"from_date": "2024-02-01", "to_date": "2024-01-01"}, "is empty"),
        ({"from_date": "2024-02-01", "to_date": "2024-01-01"}, "^parameter to_date: .* after from_date"),
        ({"from_date": "2024-02-01", "to_date": "2024-02-01"}, "^parameter to_date: .* after from_date"),
        ({"from_date": "0001-01-01", "to_date": "9999-12-31", "max_windows": 366}, "max_windows 366"),
        ({"lookback_windows": 366, "max_windows": 366}, "^parameter lookback_windows: .*max_windows"),
        ({"lookback_windows": -1}, "parameter lookback_windows"),
        ({"lookback_windows": "3"}, "parameter lookback_windows"),
    ],
)
def test_bad_parameters_get_an_error_naming_them(params, message):
    with pytest.raises(ParamError, match=message):
        run_windows(interval_start=day(10), interval_end=day(11), origin=ORIGIN, step=DAY, **params)


@pytest.mark.parametrize(
    ("dialect", "expected"),
    [
        ("postgresql", 'SELECT "dbo"."DimUser"."user_id", '),
        ("mssql", "SELECT [dbo].[DimUser].[user_id], "),
        ("sqlite", 'SELECT "dbo"."DimUser"."user_id", '),
    ],
)
def test_identifiers_are_quoted_by_the_dialect_and_bounds_are_bound(dialect, expected):
    from sqlalchemy.dialects import mssql, postgresql, sqlite

    dialects = {"postgresql": postgresql.dialect(), "mssql": mssql.dialect(), "sqlite": sqlite.dialect()}
    engine = type("E", (), {"dialect": dialects[dialect]})()
    query = build_query(engine, SPEC, "dbo", dt.datetime(2025, 9, 7), dt.datetime(2025, 9, 8))
    sql = str(query.compile(dialect=dialects[dialect]))
    assert sql.startswith(expected)
    assert "2025" not in sql  # the window's bounds are parameters, not text
    compiled = query.compile(dialect=dialects[dialect])
    assert set(compiled.params) == {"lower", "upper"}


def test_the_production_dialect_gets_its_own_quoting_through_the_mssql_hook(monkeypatch):
    """Azure SQL Database: the connection's hook (MsSqlHook, pymssql) builds the engine; no server
    is needed to compile the query."""
    from airflow.sdk import BaseHook

    conn = {"conn_type": "mssql", "host": "srv.database.windows.net", "login": "u", "password": "p"}
    monkeypatch.setenv("AIRFLOW_CONN_AZURE_SQL", json.dumps({**conn, "schema": "spotify", "port": 1433}))
    engine = BaseHook.get_connection("azure_sql").get_hook().get_sqlalchemy_engine()
    assert engine.url.drivername == "mssql+pymssql"
    sql = str(
        build_query(engine, SPEC, "dbo", dt.datetime(2025, 9, 7), dt.datetime(2025, 9, 8)).compile(engine)
    )
    assert "FROM [dbo].[DimUser]" in sql
    assert "[dbo].[DimUser].[updated_at] >= %(lower)s" in sql


# -- landing, against a real SQLite database ----------------------------------------------------
@pytest.fixture
def source(tmp_path, monkeypatch, lake, airflow_db):
    path = tmp_path / "source.db"
    with sqlite3.connect(path) as db:
        db.execute(
            'CREATE TABLE "DimUser" (user_id INT PRIMARY KEY, user_name VARCHAR(50), start_date DATE, '
            "updated_at TIMESTAMP)"
        )
        db.executemany(
            'INSERT INTO "DimUser" VALUES (?, ?, ?, ?)',
            [
                (1, "Ann", "2024-01-01", "2025-09-07 00:00:00"),  # on the first window's start
                (2, "Bob", None, "2025-09-07 23:59:59"),
                (3, "Cid", "2024-03-03", "2025-09-08 00:00:00"),  # on the boundary: second window
                (4, "Dee", "2024-04-04", "2025-09-08 12:00:00"),
                (5, "Eve", "2024-05-05", "2025-09-10 08:00:00"),
            ],
        )
    monkeypatch.setenv("AIRFLOW_CONN_TEST_SOURCE", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    return {"conn_id": "test_source", "schema": None, "path": path}


def _windows(first: int, last: int):
    return grid_windows(day(first), day(last), ORIGIN, DAY)


def test_each_window_lands_as_one_parquet_file_with_a_manifest_and_a_watermark(source, lake):
    summary = extract_table("spotify", SPEC, source, _windows(7, 10), "run_1")

    assert summary["rows"] == 4
    assert summary["empty_windows"] == ["20250909T000000"]
    folder = lake / "bronze" / "spotify" / "users"
    assert sorted(p.name for p in folder.iterdir()) == ["20250907T000000.parquet", "20250908T000000.parquet"]
    first = pq.read_table(folder / "20250907T000000.parquet").to_pylist()
    assert [r["user_id"] for r in first] == [1, 2]
    assert first[0]["start_date"] == dt.date(2024, 1, 1)
    assert first[1]["updated_at"] == dt.datetime(2025, 9, 7, 23, 59, 59)
    second = pq.read_table(folder / "20250908T000000.parquet").to_pylist()
    assert [r["user_id"] for r in second] == [3, 4]  # the row on the boundary is in the later window

    manifest = json.loads((lake / "bronze/spotify/_windows/users/20250908T000000.json").read_text())
    assert manifest["rows"] == 2
    assert manifest["run_id"] == "run_1"
    watermark = json.loads((lake / "bronze/spotify/_watermarks/users.json").read_text())
    assert watermark["last_change_value"] == "2025-09-08T12:00:00"
    assert watermark["run_id"] == "run_1"


def test_a_rerun_replaces_exactly_its_windows_and_unchanged_rows_rewrite_nothing(source, lake):
    extract_table("spotify", SPEC, source, _windows(7, 9), "run_1")
    folder = lake / "bronze" / "spotify" / "users"
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}

    again = extract_table("spotify", SPEC, source, _windows(7, 9), "run_2")
    assert [w["status"] for w in again["windows"]] == ["unchanged", "unchanged"]
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()} == before

    with sqlite3.connect(source["path"]) as db:  # a late change, back-dated into the first window
        db.execute("UPDATE \"DimUser\" SET user_name = 'Bobby' WHERE user_id = 2")
    third = extract_table("spotify", SPEC, source, _windows(7, 9), "run_3")
    assert [w["status"] for w in third["windows"]] == ["landed", "unchanged"]
    rows = pq.read_table(folder / "20250907T000000.parquet").to_pylist()
    assert [r["user_name"] for r in rows] == ["Ann", "Bobby"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(before)  # no extra file, no temp file


def test_the_watermark_never_moves_back_when_an_older_window_is_re_read(source, lake):
    extract_table("spotify", SPEC, source, _windows(7, 11), "run_1")
    extract_table("spotify", SPEC, source, _windows(7, 8), "run_2")
    watermark = json.loads((lake / "bronze/spotify/_watermarks/users.json").read_text())
    assert watermark["last_change_value"] == "2025-09-10T08:00:00"
    assert watermark["run_id"] == "run_1"


def test_a_window_without_rows_writes_nothing(source, lake):
    summary = extract_table("spotify", SPEC, source, _windows(11, 12), "run_1")
    assert summary["windows"] == []
    assert summary["rows"] == 0
    assert not (lake / "bronze").exists() or not any((lake / "bronze").rglob("*.parquet"))


def test_a_value_that_does_not_fit_its_declared_type_fails_naming_table_column_and_row(source, lake):
    with sqlite3.connect(source["path"]) as db:
        db.execute("UPDATE \"DimUser\" SET start_date = 'soon' WHERE user_id = 4")
    with pytest.raises(ExtractError, match=r"DimUser\.start_date of row \{'user_id': 4\}"):
        extract_table("spotify", SPEC, source, _windows(7, 10), "run_1")
    assert not any(lake.rglob("*.parquet"))  # nothing half-written
    assert not (lake / "bronze/spotify/_watermarks/users.json").exists()


def test_a_missing_source_table_fails_naming_it(source, lake):
    spec = {**SPEC, "source_table": "NoSuchTable"}
    with pytest.raises(sa.exc.OperationalError, match="NoSuchTable"):
        extract_table("spotify", spec, source, _windows(7, 8), "run_1")


def test_concurrent_runs_of_one_table_land_every_window_and_a_true_watermark(source, lake):
    """Catch-up and backfill run days in parallel: each writes its own window, and all of them
    rewrite the table's watermark."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=4) as pool:
        summaries = list(
            pool.map(
                lambda d: extract_table("spotify", SPEC, source, _windows(d, d + 1), f"run_{d}"),
                range(7, 11),
            )
        )
    assert [s["rows"] for s in summaries] == [2, 2, 0, 1]
    folder = lake / "bronze" / "spotify"
    assert sorted(p.name for p in (folder / "users").iterdir()) == [
        "20250907T000000.parquet",
        "20250908T000000.parquet",
        "20250910T000000.parquet",
    ]
    assert not list(folder.rglob(".*"))  # no temporary file left behind
    watermark = json.loads((folder / "_watermarks" / "users.json").read_text())
    assert watermark["last_change_value"] == "2025-09-10T08:00:00"
    assert watermark["windows_landed"] == 3
