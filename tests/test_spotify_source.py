"""The Spotify source database: the original T-SQL scripts and generated data, on a real PostgreSQL
server and on SQLite files."""

from __future__ import annotations

import datetime as dt
import time

import pytest
import sqlalchemy as sa
from conftest import shared_data

from lakehouse import spotify_source
from lakehouse.spotify_source import (
    CHANGES,
    ScriptError,
    apply_changes,
    create_schema,
    generate,
    load_script,
    parse_tsql,
    translate_tsql,
)

pytest_plugins = ["sourcedb"]  # postgres_source, sqlite_source
README_COUNTS = {"DimUser": 500, "DimArtist": 500, "DimTrack": 500, "DimDate": 365, "FactStream": 1000}
KEYS = {"DimUser": "user_id", "DimArtist": "artist_id", "DimTrack": "track_id", "FactStream": "stream_id"}
CHANGE_COLUMNS = {
    "DimUser": "updated_at",
    "DimArtist": "updated_at",
    "DimTrack": "updated_at",
    "DimDate": "date",
    "FactStream": "stream_timestamp",
}
SHARED_SECOND = "2025-10-07 19:49:56"  # the initial load's latest stream_timestamp
START = dt.date(2025, 9, 7)


@pytest.fixture(params=["postgres", "sqlite"])
def source_db(request):
    """The same test on a fresh PostgreSQL database and on a fresh SQLite file."""
    return request.getfixturevalue(f"{request.param}_source")


def _scripts():
    folder = shared_data("spotify")
    return folder / "spotify_initial_load.sql", folder / "spotify_incremental_load.sql"


def _plain(value):
    """A value read back as the scripts write it: PostgreSQL returns dates, SQLite text."""
    return value if value is None or isinstance(value, int | str) else str(value)


def _rows(engine, table: str) -> dict:
    with engine.connect() as conn:
        result = conn.execute(sa.text(f'SELECT * FROM "{table}"'))
        return {row[0]: tuple(_plain(v) for v in row) for row in result}


def _script_rows(path, table: str) -> list[tuple]:
    return [
        row for s in parse_tsql(path.read_text()) if s.kind == "insert" and s.table == table for row in s.rows
    ]


def _count(engine, sql: str, **params) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar_one()


# -- translation --------------------------------------------------------------------------------
def test_translation_of_a_small_script():
    script = """-- a comment; with a semicolon
    DROP TABLE IF EXISTS DimX;
    /* a block comment
       over two lines; */
    CREATE TABLE DimX (
      x_id BIGINT PRIMARY KEY,
      name NVARCHAR(100) NOT NULL,  -- trailing comment
      note NVARCHAR(MAX),
      changed DATETIME
    );
    INSERT INTO DimX (x_id, name, note, changed) VALUES (1, N'Cote d''Ivoire; -- not a comment', NULL,
      '2025-09-07 00:00:01'), (2, 'b', 'c', NULL)
    """
    for dialect in ("postgresql", "sqlite"):
        assert translate_tsql(script, dialect) == [
            'DROP TABLE IF EXISTS "DimX"',
            'CREATE TABLE "DimX" (\n  "x_id" BIGINT PRIMARY KEY,\n  "name" VARCHAR(100) NOT NULL,\n'
            '  "note" TEXT,\n  "changed" TIMESTAMP\n)',
            'INSERT INTO "DimX" ("x_id", "name", "note", "changed") VALUES '
            "(1, 'Cote d''Ivoire; -- not a comment', NULL, '2025-09-07 00:00:01'), (2, 'b', 'c', NULL)",
        ]
    with pytest.raises(ScriptError, match="dialect 'mssql' is not supported"):
        translate_tsql(script, "mssql")


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("EXEC sp_rename 'DimUser', 'Users'", r"unsupported statement .*: EXEC sp_rename 'DimUser', 'Users'"),
        ("GO", "unsupported statement.*: GO"),
        (
            "CREATE TABLE DimX (price MONEY)",
            r"unsupported column type MONEY: CREATE TABLE DimX \(price MONEY\)",
        ),
        ("CREATE TABLE DimX (id INT IDENTITY(1,1))", "unsupported column constraint 'IDENTITY"),
        ("CREATE TABLE [dbo].[DimX] (id INT)", r"unsupported table name '\[dbo\]\.\[DimX\]'"),
        ("INSERT INTO DimX (id) SELECT 1", r"unsupported statement.*: INSERT INTO DimX \(id\) SELECT 1"),
        ("INSERT INTO DimX (id) VALUES (GETDATE())", r"unsupported value at 'GETDATE\(\)\)'"),
        ("INSERT INTO DimX (a, b) VALUES (1)", "1 values for 2 columns"),
        ('INSERT INTO "Dim X" (id) VALUES (1)', "unsupported statement"),
    ],
)
def test_translation_rejects_what_it_does_not_know(statement, message):
    script = f"DROP TABLE IF EXISTS DimX;\n-- next\n{statement};\n"
    with pytest.raises(ScriptError, match=f"^line 3: {message}"):
        translate_tsql(script, "postgresql")


def test_translation_of_the_real_scripts():
    initial, incremental = _scripts()
    for dialect in ("postgresql", "sqlite"):
        statements = translate_tsql(initial.read_text(), dialect)
        assert len(statements) == 5 + 5 + sum(README_COUNTS.values())
        ddl = "\n".join(s for s in statements if not s.startswith("INSERT"))
        assert 'CREATE TABLE "DimUser" (' in ddl
        assert '"updated_at" TIMESTAMP' in ddl
        assert '"stream_id" BIGINT PRIMARY KEY' in ddl
        assert "DATETIME" not in ddl
        assert not any("--" in s for s in statements)
        assert len(translate_tsql(incremental.read_text(), dialect)) == 70 + 50 + 50 + 300
    # the translated text runs as it is (load_script binds the values instead)
    engine = sa.create_engine("sqlite://")
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)
        assert {
            t: conn.exec_driver_sql(f'SELECT COUNT(*) FROM "{t}"').scalar() for t in README_COUNTS
        } == README_COUNTS


# -- the real scripts ---------------------------------------------------------------------------
def test_real_scripts_initial_then_incremental_as_updates(source_db):
    initial, incremental = _scripts()
    engine = source_db.engine()

    assert load_script(engine, initial) == README_COUNTS
    inspector = sa.inspect(engine)
    assert set(inspector.get_table_names()) == set(README_COUNTS)  # names keep their case
    for table, column in CHANGE_COLUMNS.items():
        assert [column] in [ix["column_names"] for ix in inspector.get_indexes(table)], table
    assert (
        _count(engine, 'SELECT COUNT(*) FROM "FactStream" WHERE "stream_timestamp" = :t', t=SHARED_SECOND)
        == 10
    )
    assert _rows(engine, "DimUser")[1] == (
        1,
        "Carlos Berry",
        "Switzerland",
        "Premium",
        "2023-10-17",
        None,
        "2025-09-23 19:49:55",
    )
    before = {table: _rows(engine, table) for table in KEYS}

    assert load_script(engine, incremental, as_updates=True) == {t: README_COUNTS[t] for t in KEYS}

    for table in KEYS:
        latest = {row[0]: row for row in _script_rows(incremental, table)}  # the last row per id wins
        after = _rows(engine, table)
        assert {k: after[k] for k in latest} == latest, table
        assert {k: v for k, v in after.items() if k not in latest} == {
            k: v for k, v in before[table].items() if k not in latest
        }
    # DimUser 44 is in the script twice: a stranger first, then the initial user with a new subscription
    assert [row[1] for row in _script_rows(incremental, "DimUser") if row[0] == 44] == [
        "Anthony Robinson",
        "Michael Wood",
    ]
    assert before["DimUser"][44][1:4] == ("Michael Wood", "Israel", "Family")
    assert _rows(engine, "DimUser")[44] == (
        44,
        "Michael Wood",
        "Israel",
        "Premium",
        "2024-05-05",
        None,
        SHARED_SECOND,
    )
    # 10 initial streams and 21 changed ones share the initial maximum second; none is later
    assert sum(row[-1] == SHARED_SECOND for row in _script_rows(incremental, "FactStream")) == 21
    assert (
        _count(engine, 'SELECT COUNT(*) FROM "FactStream" WHERE "stream_timestamp" = :t', t=SHARED_SECOND)
        == 31
    )
    assert _plain(_count(engine, 'SELECT MAX("stream_timestamp") FROM "FactStream"')) == SHARED_SECOND


def test_incremental_script_as_inserts_fails_on_the_existing_keys(source_db):
    initial, incremental = _scripts()
    engine = source_db.engine()
    load_script(engine, initial)
    before = _rows(engine, "DimUser")
    with pytest.raises(sa.exc.IntegrityError):
        load_script(engine, incremental)
    assert _rows(engine, "DimUser") == before  # one transaction: nothing of it stayed


def test_a_script_is_one_transaction(source_db, tmp_path):
    """A failing statement undoes the whole script, its DDL included (SQLite too)."""
    initial, _ = _scripts()
    engine = source_db.engine()
    load_script(engine, initial)
    broken = tmp_path / "broken.sql"
    broken.write_text(
        "DROP TABLE IF EXISTS DimUser;\nCREATE TABLE DimUser (user_id INT PRIMARY KEY);\n"
        "INSERT INTO DimUser (user_id) VALUES (1);\nINSERT INTO DimUser (no_such_column) VALUES (2);\n"
    )
    with pytest.raises(sa.exc.DBAPIError):
        load_script(engine, broken)
    assert _count(engine, 'SELECT COUNT(*) FROM "DimUser"') == 500
    assert len(sa.inspect(engine).get_columns("DimUser")) == 7


def test_airflow_connections_reach_the_database(source_db, monkeypatch):
    """The fixture's connection JSON works with the provider hooks (their URI and their DB-API)."""
    initial, _ = _scripts()
    monkeypatch.setenv("AIRFLOW_CONN_SPOTIFY_SQL", source_db.conn)
    if source_db.url.startswith("sqlite"):
        from airflow.providers.sqlite.hooks.sqlite import SqliteHook

        hook = SqliteHook(sqlite_conn_id="spotify_sql")
    else:
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        hook = PostgresHook(postgres_conn_id="spotify_sql")
    engine = hook.get_sqlalchemy_engine()
    try:
        assert load_script(engine, initial)["FactStream"] == 1000
    finally:
        engine.dispose()
    assert hook.get_records('SELECT COUNT(*) FROM "DimUser"') == [(500,)]


# -- generated data -----------------------------------------------------------------------------
def _generate(engine, **overrides):
    settings = {
        "start": START,
        "days": 3,
        "users": 200,
        "artists": 40,
        "tracks": 300,
        "streams_per_day": 1500,
    }
    return generate(engine, **settings | {"change_fraction": 0.05, "seed": 1} | overrides)


def test_generate(source_db, tmp_path):
    engine = source_db.engine()
    counts = _generate(engine)
    assert counts == {"DimUser": 200, "DimArtist": 40, "DimTrack": 300, "DimDate": 3, "FactStream": 4500}
    for table, rows in counts.items():
        assert _count(engine, f'SELECT COUNT(*) FROM "{table}"') == rows
    with engine.connect() as conn:
        dates = conn.execute(sa.text('SELECT "date_key", "date", "weekday" FROM "DimDate" ORDER BY 1')).all()
        streams = conn.execute(sa.text('SELECT * FROM "FactStream" ORDER BY "stream_id"')).all()
    assert [(key, _plain(day), weekday) for key, day, weekday in dates] == [
        (20250907, "2025-09-07", "Sunday"),
        (20250908, "2025-09-08", "Monday"),
        (20250909, "2025-09-09", "Tuesday"),
    ]
    stamps = [_plain(row[-1]) for row in streams]
    assert [row[0] for row in streams] == list(range(1, 4501))
    assert stamps == sorted(stamps)  # stream ids increase with time
    assert stamps[0] >= "2025-09-07 00:00:00"
    assert stamps[-1] < "2025-09-10 00:00:00"
    assert {row[3] for row in streams} == {20250907, 20250908, 20250909}
    assert all(int(stamp[:10].replace("-", "")) == row[3] for stamp, row in zip(stamps, streams, strict=True))
    assert {row[1] for row in streams} <= set(range(1, 201))
    assert {row[2] for row in streams} <= set(range(1, 301))

    # the same seed without changes: the same initial rows, so the changed ones show what changed
    unchanged = sa.create_engine(f"sqlite:///{tmp_path / 'unchanged.db'}")
    _generate(unchanged, change_fraction=0.0)
    for table in ("DimUser", "DimArtist", "DimTrack"):
        rows, originals = _rows(engine, table), _rows(unchanged, table)
        changed = {k: row for k, row in rows.items() if row[-1] != "2025-09-07 00:00:00"}
        stamps = [row[-1] for row in changed.values()]
        assert len(stamps) == len(set(stamps)), f"{table}: each changed row has its own updated_at"
        assert all("2025-09-08 00:00:00" <= s < "2025-09-10 00:00:00" for s in stamps)
        # on the last day exactly 5% changed (on the first, some changed again later)
        assert sum(s.startswith("2025-09-09") for s in stamps) == round(len(rows) * 0.05)
        assert {k: v for k, v in rows.items() if k not in changed} == {
            k: v for k, v in originals.items() if k not in changed
        }
        columns = list(_columns(table))
        tracked = {columns.index(c) for c in CHANGES[table]}
        for key, row in changed.items():
            differs = {i for i, (a, b) in enumerate(zip(row, originals[key], strict=True)) if a != b}
            assert differs - tracked == {len(columns) - 1}, (table, row, originals[key])

    again = sa.create_engine(f"sqlite:///{tmp_path / 'again.db'}")  # the same seed, the same data
    _generate(again)
    for table in KEYS:  # and the same values in PostgreSQL as in SQLite
        assert _rows(again, table) == _rows(engine, table)


def _columns(table: str) -> dict:
    return spotify_source._tables()[table]["columns"]


def test_apply_changes_is_one_more_day_of_the_source(source_db):
    engine = source_db.engine()
    _generate(engine, change_fraction=0.0)
    before = {table: _rows(engine, table) for table in KEYS}

    day = START + dt.timedelta(days=3)
    counts = apply_changes(engine, day, 0.1, seed=5)
    assert counts == {"DimUser": 20, "DimArtist": 4, "DimTrack": 30, "DimDate": 1, "FactStream": 1500}

    for table in ("DimUser", "DimArtist", "DimTrack"):
        columns = list(_columns(table))
        rows = _rows(engine, table)
        changed = {k: row for k, row in rows.items() if row != before[table][k]}
        assert len(changed) == counts[table]
        assert len({row[-1] for row in changed.values()}) == len(changed)  # distinct updated_at
        for key, row in changed.items():
            assert row[-1].startswith("2025-09-10 ")
            differs = [
                columns[i] for i, (a, b) in enumerate(zip(row, before[table][key], strict=True)) if a != b
            ]
            assert len(differs) == 2, differs
            assert differs[0] in CHANGES[table]
            assert differs[1] == "updated_at"
    streams = _rows(engine, "FactStream")
    new = [streams[k] for k in sorted(set(streams) - set(before["FactStream"]))]
    assert [row[0] for row in new] == list(range(4501, 6001))
    assert all(row[3] == 20250910 and row[-1].startswith("2025-09-10 ") for row in new)
    assert [row[-1] for row in new] == sorted(row[-1] for row in new)
    assert _count(engine, 'SELECT COUNT(*) FROM "DimDate" WHERE "date_key" = 20250910') == 1

    with pytest.raises(ValueError, match="must come after the last streams' day 2025-09-10"):
        apply_changes(engine, day, 0.1)


def test_apply_changes_on_the_real_scripts(postgres_source):
    initial, incremental = _scripts()
    engine = postgres_source.engine()
    load_script(engine, initial)
    load_script(engine, incremental, as_updates=True)
    counts = apply_changes(engine, dt.date(2025, 10, 8), streams=100)
    assert counts == {"DimUser": 5, "DimArtist": 5, "DimTrack": 5, "DimDate": 1, "FactStream": 100}
    assert _count(engine, 'SELECT MAX("stream_id") FROM "FactStream"') == 1100
    assert _count(engine, 'SELECT COUNT(*) FROM "DimUser" WHERE "updated_at" >= :d', d="2025-10-08") == 5


def test_create_schema_matches_the_original_ddl(postgres_source):
    """The generated tables have the real script's columns, types and keys."""
    initial, _ = _scripts()
    generated, original = postgres_source.engine(), postgres_source.engine()

    def shape(engine):
        inspector = sa.inspect(engine)
        return {
            table: (
                [(c["name"], str(c["type"]).split("(")[0]) for c in inspector.get_columns(table)],
                inspector.get_pk_constraint(table)["constrained_columns"],
            )
            for table in sorted(inspector.get_table_names())
        }

    assert create_schema(generated) == list(README_COUNTS)
    created = shape(generated)
    load_script(original, initial)
    assert created == shape(original)


@pytest.mark.parametrize("driver", ["psycopg2", "psycopg"])
def test_generate_200k_streams_in_postgres(postgres_source, driver):
    engine = sa.create_engine(postgres_source.url.replace("+psycopg2", f"+{driver}"))
    try:
        began = time.perf_counter()
        counts = generate(
            engine, start=START, days=2, users=5000, artists=500, tracks=20_000, streams_per_day=100_000
        )
        elapsed = time.perf_counter() - began
        print(
            f"\n{driver}: generated {sum(counts.values())} rows in {elapsed:.2f} s"
            f" ({200_000 / elapsed:,.0f} streams/s)"
        )
        assert _count(engine, 'SELECT COUNT(*) FROM "FactStream"') == 200_000
        back_in_time = """SELECT COUNT(*) FROM (SELECT "stream_timestamp" < LAG("stream_timestamp")
            OVER (ORDER BY "stream_id") AS back FROM "FactStream") s WHERE back"""
        assert _count(engine, back_in_time) == 0
    finally:
        engine.dispose()
