"""``make demo``'s Spotify part, without Airflow runs or Spark: its SQLite source (generated once,
one more day of changes applied once) and the SCD2 history it prints."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
from deltalake import write_deltalake

from lakehouse import demo

EXTRA_DAY = demo.SPOTIFY_START + dt.timedelta(days=demo.SPOTIFY_DAYS)


def last_day(path) -> dt.date:
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        return demo.last_stream_day(engine)
    finally:
        engine.dispose()


def test_a_manual_run_for_a_day_has_the_next_midnight_as_its_logical_date():
    assert demo.spotify_logical_date(dt.date(2025, 9, 7)) == "2025-09-08T00:00:00+00:00"


def test_the_demo_source_is_its_own_sqlite_file_however_the_connection_names_it(tmp_path):
    path = tmp_path / "spotify.db"
    assert demo.is_demo_source(None, path)
    assert demo.is_demo_source(json.dumps({"conn_type": "sqlite", "host": str(path)}), path)
    assert demo.is_demo_source(f"sqlite:///{path}", path)
    assert not demo.is_demo_source(json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "x.db")}), path)
    postgres = {"conn_type": "postgres", "host": "127.0.0.1", "login": "postgres", "schema": "spotify"}
    assert not demo.is_demo_source(json.dumps(postgres), path)
    assert not demo.is_demo_source("postgres://postgres@127.0.0.1/spotify", path)


def test_the_source_is_generated_once_and_gets_the_extra_day_once(tmp_path, monkeypatch):
    monkeypatch.setenv("LAKE_ROOT", str(tmp_path / "lake"))
    path = tmp_path / "demo" / "spotify.db"
    path.parent.mkdir()
    path.touch()  # an empty file, as a connection opened before the demo leaves

    demo.spotify_source(path, EXTRA_DAY, generate_only=True)
    assert last_day(path) == EXTRA_DAY - dt.timedelta(days=1)
    generated = rows_of(path)
    demo.spotify_source(path, EXTRA_DAY, generate_only=False)
    assert last_day(path) == EXTRA_DAY
    changed = rows_of(path)
    demo.spotify_source(path, EXTRA_DAY, generate_only=False)  # the changes are added once
    assert rows_of(path) == changed

    # A second demo (the lake holds windows ingested from it) reads the earlier days again: the
    # source is generated again as it was, and the same changes follow, so nothing is new.
    (tmp_path / "lake" / "bronze" / "spotify" / "_windows").mkdir(parents=True)
    demo.spotify_source(path, EXTRA_DAY, generate_only=True)
    assert rows_of(path) == generated
    demo.spotify_source(path, EXTRA_DAY, generate_only=False)
    assert rows_of(path) == changed


def rows_of(path) -> dict[str, list[tuple]]:
    """Every row of every table of the SQLite source, sorted."""
    import sqlite3

    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: sorted(conn.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in tables}


def test_the_history_shows_users_whose_subscription_changed_first(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LAKE_ROOT", str(tmp_path / "lake"))
    t = [dt.datetime(2025, 9, d, tzinfo=dt.UTC) for d in (7, 8, 9)]
    rows = [
        # user 1 changed country only; user 2 changed subscription twice; user 3 never changed
        (1, "ANA SILVA", "Free", t[0], t[1], False),
        (1, "ANA SILVA", "Free", t[1], None, True),
        (2, "BEN CHEN", "Free", t[0], t[1], False),
        (2, "BEN CHEN", "Premium", t[1], t[2], False),
        (2, "BEN CHEN", "Family", t[2], None, True),
        (3, "CHLOE ITO", "Free", t[0], None, True),
    ]
    columns = list(zip(*rows, strict=True))
    table = pa.table(
        {
            "user_sk": pa.array(range(len(rows)), pa.int64()),
            **{name: list(values) for name, values in zip(demo.SCD2_COLUMNS, columns, strict=True)},
        }
    )
    write_deltalake(str(tmp_path / "lake" / "gold" / "spotify" / "dim_user"), table)

    demo.print_scd2_history(users=2)

    out = capsys.readouterr().out
    assert "2 of 3 users have more than one version" in out
    lines = [line.split() for line in out.splitlines() if line[:1] == " " and line.split()[0].isdigit()]
    assert [line[0] for line in lines] == ["2", "2", "2", "1", "1"]
    assert lines[0][3:] == ["Free", "2025-09-07", "00:00:00", "2025-09-08", "00:00:00", "False"]
    assert lines[2][3:] == ["Family", "2025-09-09", "00:00:00", "True"]
