"""Spotify end to end on the real scripts in PostgreSQL: daily windows, late changes, SCD2.

The source is the local PostgreSQL server, loaded with ../shared/data/spotify's initial script,
then with its incremental script as updates of existing ids (the way a source database changes).
The DAGs run with ``dag.test()``; Spark and Delta are real. Expected tables are computed here,
independently, from what the source database held.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections import Counter

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from conftest import clear_and_rerun, run_dag, shared_data
from deltalake import DeltaTable

from lakehouse.reporting import read_rows
from lakehouse.spotify_source import load_script

pytestmark = pytest.mark.e2e
pytest_plugins = ["sourcedb"]

UTC = dt.UTC
FIRST_DAY = dt.date(2025, 9, 7)  # the first window: the initial script's changes start that day
LAST_DAY = dt.date(2025, 10, 7)  # its last change: 2025-10-07 19:49:56
TIE = dt.datetime(2025, 10, 7, 19, 49, 56)
SOURCES = {"users": "DimUser", "artists": "DimArtist", "tracks": "DimTrack", "dates": "DimDate"}
SOURCES["streams"] = "FactStream"
KEYS = {"users": "user_id", "artists": "artist_id", "tracks": "track_id", "dates": "date_key"}
KEYS["streams"] = "stream_id"
TRACKED = {
    "users": ["user_name", "country", "subscription_type", "start_date", "end_date"],
    "artists": ["artist_name", "genre", "country"],
    "tracks": ["track_name", "artist_id", "album_name", "duration_sec", "release_date"],
}
GOLD = ["dim_user", "dim_artist", "dim_track", "dim_date", "fact_stream", "stream_facts"]


def logical(day: dt.date) -> dt.datetime:
    """The logical date of a manual run whose interval is the day ``day`` (it ends at midnight)."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=UTC)


def days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


# -- reading both sides ----------------------------------------------------------------------------
def source_rows(engine, table: str) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.text(f'SELECT * FROM "{SOURCES[table]}"'))]


def bronze_rows(lake, table: str) -> list[dict]:
    folder = lake / "bronze" / "spotify" / table
    return [row for path in sorted(folder.glob("*.parquet")) for row in pq.read_table(path).to_pylist()]


def as_set(rows: list[dict]) -> Counter:
    return Counter(tuple(sorted(r.items())) for r in rows)


def naive_utc(value):
    """Delta's timestamps come back in UTC with a zone; the source's are UTC without one."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def delta_rows(lake, layer: str, table: str) -> list[dict]:
    rows = read_rows(str(lake / layer / "spotify" / table))
    return [{k: naive_utc(v) for k, v in row.items()} for row in rows]


def gold_content(lake) -> dict[str, Counter]:
    return {t: as_set(delta_rows(lake, "gold", t)) for t in GOLD}


def gold_versions(lake) -> dict[str, int]:
    return {t: DeltaTable(str(lake / "gold" / "spotify" / t)).version() for t in GOLD}


# -- the independent computation ---------------------------------------------------------------------
def silver_version(table: str, row: dict) -> dict:
    row = dict(row)
    if table == "users":
        row["user_name"] = row["user_name"].upper() if row["user_name"] is not None else None
    if table == "tracks":
        row["track_name"] = row["track_name"].replace("-", " ")
    return row


def expected_scd2(table: str, observed: list[list[dict]]) -> dict[int, list[tuple]]:
    """Per key: (tracked values, valid_from, valid_to, is_current), from every version observed."""
    key = KEYS[table]
    versions: dict[int, dict[dt.datetime, dict]] = {}
    for snapshot in observed:
        for row in snapshot:
            versions.setdefault(row[key], {})[row["updated_at"]] = silver_version(table, row)
    history = {}
    for key_value, by_time in versions.items():
        kept = []
        for at in sorted(by_time):
            values = tuple(by_time[at][c] for c in TRACKED[table])
            if not kept or kept[-1][0] != values:
                kept.append((values, at))
        history[key_value] = [
            (values, at, kept[i + 1][1] if i + 1 < len(kept) else None, i + 1 == len(kept))
            for i, (values, at) in enumerate(kept)
        ]
    return history


def actual_scd2(lake, table: str, gold_table: str) -> dict[int, list[tuple]]:
    history: dict[int, list[tuple]] = {}
    rows = sorted(delta_rows(lake, "gold", gold_table), key=lambda r: (r[KEYS[table]], r["valid_from"]))
    for row in rows:
        history.setdefault(row[KEYS[table]], []).append(
            (tuple(row[c] for c in TRACKED[table]), row["valid_from"], row["valid_to"], row["is_current"])
        )
    return history


def expected_facts(observed: list[list[dict]], users: dict[int, list[tuple]]) -> dict[int, tuple]:
    """Per stream: the newest version seen (a late older change never wins), and the user version
    valid at its stream time (or the first version, for a stream before it)."""
    newest: dict[int, dict] = {}
    for snapshot in observed:
        for row in snapshot:
            kept = newest.get(row["stream_id"])
            if kept is None or row["stream_timestamp"] > kept["stream_timestamp"]:
                newest[row["stream_id"]] = row
    facts = {}
    for stream_id, row in newest.items():
        versions = users[row["user_id"]]
        valid = [v for v in versions if v[1] <= row["stream_timestamp"]]
        user_from = (valid[-1] if valid else versions[0])[1]
        facts[stream_id] = (row["stream_timestamp"], row["listen_duration"], row["user_id"], user_from)
    return facts


def actual_facts(lake) -> dict[int, tuple]:
    users = {r["user_sk"]: r for r in delta_rows(lake, "gold", "dim_user")}
    return {
        r["stream_id"]: (
            r["stream_timestamp"],
            r["listen_duration"],
            users[r["user_sk"]]["user_id"],
            users[r["user_sk"]]["valid_from"],
        )
        for r in delta_rows(lake, "gold", "fact_stream")
    }


# -- the scenario ------------------------------------------------------------------------------------
@pytest.fixture
def spotify_env(airflow_db, lake, postgres_source, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SPOTIFY_SQL", postgres_source.conn)
    monkeypatch.setenv("LAKEHOUSE_RETRIES", "0")
    return postgres_source.engine(), lake


def ingest(day: dt.date, conf: dict | None = None):
    result = run_dag("spotify_ingest", logical_date=logical(day), conf=conf)
    assert result.state == "success", result.tasks
    return result


def transform(when: dt.datetime):
    result = run_dag("spotify_transform", logical_date=when)
    assert result.state == "success", result.tasks
    return result


def load_history_and_the_month(engine, lake) -> list[dict]:
    """The initial script, its dates' history (a manual from/to run), then its 31 daily windows."""
    data = shared_data("spotify")
    load_script(engine, data / "spotify_initial_load.sql")
    ingest(FIRST_DAY, {"from_date": "2024-10-01", "to_date": FIRST_DAY.isoformat()})
    for day in days(FIRST_DAY, LAST_DAY):
        ingest(day)
    for table in SOURCES:
        assert as_set(bronze_rows(lake, table)) == as_set(source_rows(engine, table)), table
    transform(dt.datetime(2025, 10, 8, 1, tzinfo=UTC))
    return {t: source_rows(engine, t) for t in SOURCES}


def test_late_changes_are_found_by_reprocessing_or_a_lookback_and_build_the_scd2_history(
    spotify_env, monkeypatch
):
    engine, lake = spotify_env
    initial = load_history_and_the_month(engine, lake)
    ties = [r for r in bronze_rows(lake, "streams") if r["stream_timestamp"] == TIE]
    assert len(ties) == 10

    # The incremental script: updates of existing ids, back-dated into windows already loaded.
    load_script(engine, shared_data("spotify") / "spotify_incremental_load.sql", as_updates=True)
    final = {t: source_rows(engine, t) for t in SOURCES}
    for day in days(LAST_DAY + dt.timedelta(days=1), LAST_DAY + dt.timedelta(days=2)):
        later = ingest(day)
        # the later windows alone see none of them (only the params check ran)
        assert {t: s for t, s in later.tasks.items() if s != "skipped"} == {"check_params": "success"}
    assert as_set(bronze_rows(lake, "streams")) == as_set(initial["streams"])
    lookback_lake = lake.parent / "lookback_lake"  # the same state, to try a lookback on below
    shutil.copytree(lake, lookback_lake)

    # Reprocessing: every window of the month again, in one run over that range (the original's
    # backfill override; a backfill of daily runs with reprocessing is test_spotify_scheduler's).
    month = {"from_date": FIRST_DAY.isoformat(), "to_date": (LAST_DAY + dt.timedelta(days=1)).isoformat()}
    reprocessed = ingest(LAST_DAY + dt.timedelta(days=3), month)
    assert {reprocessed.tasks[f"extract_sql_table[{i}]"] for i in range(len(SOURCES))} == {"success"}
    for table in SOURCES:  # bronze now holds every source row once: none lost, none twice
        assert as_set(bronze_rows(lake, table)) == as_set(final[table]), table
    assert len([r for r in bronze_rows(lake, "streams") if r["stream_timestamp"] == TIE]) == 31
    transform(dt.datetime(2025, 10, 10, 1, tzinfo=UTC))

    observed = [initial, final]
    for table, gold_table in (("users", "dim_user"), ("tracks", "dim_track"), ("artists", "dim_artist")):
        expected = expected_scd2(table, [snapshot[table] for snapshot in observed])
        assert actual_scd2(lake, table, gold_table) == expected, table
    users = expected_scd2("users", [initial["users"], final["users"]])
    assert sum(len(v) for v in users.values()) > len(users)  # there is history to check
    assert actual_facts(lake) == expected_facts([initial["streams"], final["streams"]], users)
    assert len(delta_rows(lake, "gold", "stream_facts")) == 1000
    dim_date = delta_rows(lake, "gold", "dim_date")
    assert sorted(r["date_key"] for r in dim_date) == sorted(r["date_key"] for r in final["dates"])

    # Clearing and re-running the last transform run, or an ingest run, changes nothing.
    versions, content = gold_versions(lake), gold_content(lake)
    silver_before = {t: as_set(delta_rows(lake, "silver", t)) for t in SOURCES}
    clear_and_rerun("spotify_transform", logical_date=dt.datetime(2025, 10, 10, 1, tzinfo=UTC))
    assert gold_versions(lake) == versions
    assert gold_content(lake) == content
    assert {t: as_set(delta_rows(lake, "silver", t)) for t in SOURCES} == silver_before
    folder = lake / "bronze" / "spotify" / "streams"
    files = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}
    rerun = clear_and_rerun("spotify_ingest", logical_date=logical(dt.date(2025, 10, 1)))
    assert rerun.state == "success"
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()} == files

    # Separately, from the state before the backfill: the next window with a 31-window lookback.
    monkeypatch.setenv("LAKE_ROOT", str(lookback_lake))
    result = ingest(LAST_DAY + dt.timedelta(days=1), {"lookback_windows": 31})  # from 09-07
    assert result.tasks["extract_sql_table[4]"] == "success"
    for table in SOURCES:
        assert as_set(bronze_rows(lookback_lake, table)) == as_set(final[table]), table
    transform(dt.datetime(2025, 10, 11, 1, tzinfo=UTC))
    assert gold_content(lookback_lake) == content  # the same gold as the reprocessing backfill
    audit = delta_rows(lookback_lake, "gold", "_audit")
    assert any(r["metric"] == "windows_pending" and r["value"] > 0 for r in audit)


def test_a_hostile_from_date_is_refused_before_anything_runs(spotify_env):
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError, match="from_date"):
        run_dag(
            "spotify_ingest",
            logical_date=logical(FIRST_DAY),
            conf={"from_date": "2024-01-01'; DROP TABLE x; --", "to_date": "2024-02-01"},
        )


def test_bronze_manifests_and_watermarks_tell_operators_what_landed(spotify_env):
    engine, lake = spotify_env
    load_script(engine, shared_data("spotify") / "spotify_initial_load.sql")
    ingest(LAST_DAY)
    watermark = json.loads((lake / "bronze/spotify/_watermarks/streams.json").read_text())
    assert watermark["last_change_value"] == TIE.isoformat()
    assert watermark["last_window"] == "20251007T000000"
    manifest = json.loads((lake / "bronze/spotify/_windows/streams/20251007T000000.json").read_text())
    with engine.connect() as conn:
        count = conn.execute(
            sa.text(
                'SELECT count(*) FROM "FactStream" WHERE stream_timestamp >= :a AND stream_timestamp < :b'
            ),
            {"a": dt.datetime(2025, 10, 7), "b": dt.datetime(2025, 10, 8)},
        ).scalar()
    assert manifest["rows"] == count
