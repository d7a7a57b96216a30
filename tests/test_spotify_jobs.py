"""The Spotify silver and gold jobs on a local lake: bronze windows written here, both jobs run.

One scenario runs once per module (``story``): two batches of windows into lake A (with a re-run
and a failing expectation in between), the same windows batched differently into lake B, all at
once into lake C, then a third batch into lake A whose only change is untracked, a fourth whose
changes reach facts only through a tie, an outrigger and a type 1 row, and lake A's bronze built
from scratch into lake D. The tests read what each step left.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from deltalake import DeltaTable

from lakehouse.reporting import read_rows
from spark_jobs.common.expectations import ExpectationFailedError
from spark_jobs.spotify import gold, silver

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ROOT / "include" / "spotify"
ARROW_TYPES = {
    "int": pa.int32(),
    "bigint": pa.int64(),
    "string": pa.string(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
}
W7, W8, W9 = "20250907T000000", "20250908T000000", "20250909T000000"


def load_config() -> dict:
    """pipeline.yaml with each view's SQL rendered, as Airflow passes it (dates as text, via JSON)."""
    config = yaml.safe_load((PIPELINE / "pipeline.yaml").read_text())
    specs = {t["table"]: t for t in config["tables"]}
    for view in config["views"]:
        view["sql"] = jinja2.Template((PIPELINE / "sql" / view["template"]).read_text()).render(
            fact=specs[config["fact"]["table"]]["gold"]["table"],
            dims={d: specs[d]["gold"]["table"] for d in ("users", "tracks", "dates")},
            keys={d: specs[d]["gold"]["surrogate_key"] for d in ("users", "tracks")},
        )
    return json.loads(json.dumps(config, default=str))


CONFIG = load_config()
SPECS = {t["table"]: t for t in CONFIG["tables"]}


def write_window(lake: Path, table: str, window: str, rows: list[tuple]) -> str:
    """Write one extracted window as the Airflow side does: parquet, then its manifest. Returns sha256."""
    spec = SPECS[table]
    columns = list(spec["columns"])
    order = [columns.index(c) for c in [spec["change_column"], *spec["keys"]]]
    rows = sorted(rows, key=lambda r: tuple((r[i] is not None, r[i]) for i in order))
    schema = pa.schema([(c, ARROW_TYPES[t]) for c, t in spec["columns"].items()])
    data = pa.Table.from_pylist([dict(zip(columns, r, strict=True)) for r in rows], schema=schema)
    buffer = io.BytesIO()
    pq.write_table(data, buffer)
    payload = buffer.getvalue()
    sha = hashlib.sha256(payload).hexdigest()
    folder = lake / "bronze" / "spotify" / table
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{window}.parquet").write_bytes(payload)
    start = dt.datetime.strptime(window, "%Y%m%dT%H%M%S").replace(tzinfo=dt.UTC)
    change = [r[columns.index(spec["change_column"])] for r in rows]
    manifest = {
        "table": table,
        "window": window,
        "window_start": start.isoformat(),
        "window_end": (start + dt.timedelta(days=1)).isoformat(),
        "file": f"{window}.parquet",
        "rows": len(rows),
        "sha256": sha,
        "max_change": str(max((c for c in change if c is not None), default="")) or None,
        "run_id": "extract",
        "extracted_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    manifests = lake / "bronze" / "spotify" / "_windows" / table
    manifests.mkdir(parents=True, exist_ok=True)
    (manifests / f"{window}.json").write_text(json.dumps(manifest, indent=2))
    return sha


def at(day: int, hour: int = 0) -> dt.datetime:
    """A source timestamp (no time zone, as bronze holds them)."""
    return dt.datetime(2025, 9, day, hour)


def utc(day: int, hour: int = 0) -> dt.datetime:
    """The same instant as read back from a Delta table."""
    return at(day, hour).replace(tzinfo=dt.UTC)


D = dt.date
USERS_W7 = [
    (1, "ana", "US", "free", D(2025, 1, 1), None, at(7, 10)),
    (2, "bo", "DE", "premium", D(2024, 6, 1), None, at(7, 11)),
]
USERS_W8_USER1 = (1, "ana", "US", "premium", D(2025, 1, 1), None, at(8, 9))
USERS_W8 = [
    USERS_W8_USER1,
    (2, "bo", "DE", "premium", D(2024, 6, 1), None, at(8, 12)),  # only updated_at changed
]
LATE_USER = (1, "ana", "CA", "free", D(2025, 1, 1), None, at(7, 18))  # arrives with W7's re-extraction
WINDOWS = {
    W7: {
        "users": USERS_W7,
        "artists": [(1, "The-Band", "rock", "UK", at(7, 8)), (2, "Solo", "pop", "US", at(7, 8))],
        "tracks": [
            (10, "Song-One", 1, "First", 120, D(2020, 1, 1), at(7, 8)),
            (20, "Long-Track", 2, "Second", 400, D(2021, 1, 1), at(7, 8)),
        ],
        "dates": [(20250907, D(2025, 9, 7), 7, 9, 2025, "Sunday")],
        "streams": [
            (1, 1, 10, 20250907, 100, "mobile", at(7, 12)),
            (2, 2, 20, 20250907, 200, "web", at(7, 13)),
            (2, 2, 20, 20250907, 200, "web", at(7, 13)),  # the same row twice
            (3, 1, 10, 20250907, 50, "tv", at(7, 9)),  # before user 1's first version
            (4, 99, 10, 20250907, 10, "web", at(7, 14)),  # an unknown user
            (8, 1, 20, 20250907, 30, "mobile", at(7, 19)),  # re-pointed by the late user change
        ],
    },
    W8: {
        "users": USERS_W8,
        "artists": [],
        "tracks": [(10, "Song-One", 2, "First", 120, D(2020, 1, 1), at(8, 6))],  # another artist
        "dates": [(20250908, D(2025, 9, 8), 8, 9, 2025, "Monday")],
        "streams": [
            (5, 1, 10, 20250908, 180, "mobile", at(8, 10)),
            (6, 2, 20, 20250908, -5, "web", at(8, 13)),  # negative: a warn expectation
        ],
    },
    W9: {
        "users": [],
        "artists": [],
        "tracks": [],
        "dates": [(20250909, D(2025, 9, 9), 9, 9, 2025, "Tuesday")],
        "streams": [(7, 2, 20, 20250909, 60, "web", at(9, 8))],
    },
}


def write_windows(lake: Path, windows: list[str], *, late: bool) -> dict[tuple[str, str], str]:
    """The windows' rows of every table; like the extraction, an empty window lands nothing."""
    shas = {}
    for window in windows:
        for table, rows in WINDOWS[window].items():
            if late and window == W7 and table == "users":
                rows = [*rows, LATE_USER]
            if rows:
                shas[(table, window)] = write_window(lake, table, window, rows)
    return shas


def run(job, lake: Path, run_id: str, config: dict | None = None, tables: str = "") -> None:
    argv = ["--lake-root", str(lake), "--run-id", run_id, "--config", json.dumps(config or CONFIG)]
    job.main([*argv, "--tables", tables] if tables else argv)


def read(lake: Path, layer: str, table: str) -> list[dict]:
    rows = read_rows(str(lake / layer / "spotify" / table))
    return sorted(rows, key=lambda r: repr(sorted(r.items())))


def snapshot(lake: Path) -> dict[str, tuple[int, list[dict]]]:
    """Version and content of every silver and gold table."""
    found = {}
    for layer in ("silver", "gold"):
        for log_dir in sorted((lake / layer / "spotify").glob("*/_delta_log")):
            name = log_dir.parent.name
            found[f"{layer}.{name}"] = (DeltaTable(str(log_dir.parent)).version(), read(lake, layer, name))
    return found


def content(
    snap: dict, *, skip: tuple[str, ...] = ("gold._audit", "gold._quality", "gold._releases")
) -> dict[str, list[dict]]:
    """Contents only, without bookkeeping that names runs."""
    found = {}
    for name, (_, rows) in snap.items():
        if name in skip:
            continue
        if name == "silver._applied_windows":
            rows = sorted(({k: v for k, v in r.items() if k != "applied_run_id"} for r in rows), key=repr)
        found[name] = rows
    return found


def audit(lake: Path, run_id: str) -> dict[tuple[str, str, str], int]:
    return {
        (r["job"], r["table"], r["metric"]): r["value"]
        for r in read(lake, "gold", "_audit")
        if r["run_id"] == run_id
    }


@dataclass
class Story:
    lake_a: Path
    shas: dict = field(default_factory=dict)
    steps: dict[str, dict] = field(default_factory=dict)
    audits: dict[str, dict] = field(default_factory=dict)
    failure: str = ""
    tie_country: str = ""


@pytest.fixture(scope="module")
def story(spark, tmp_path_factory) -> Story:
    base = tmp_path_factory.mktemp("spotify")
    lake = base / "a"
    story = Story(lake)

    # Lake A, batch 1: windows 7 and 8, then a re-run of both jobs (a cleared run).
    story.shas["batch1"] = write_windows(lake, [W7, W8], late=False)
    run(silver, lake, "r1")
    run(gold, lake, "r1")
    story.steps["batch1"] = snapshot(lake)
    story.audits["r1"] = audit(lake, "r1")
    run(silver, lake, "r1")
    run(gold, lake, "r1")
    story.steps["rerun"] = snapshot(lake)
    story.audits["r1-rerun"] = audit(lake, "r1")

    # Batch 2: window 7 of users re-extracted with a late, older change; window 7 of artists
    # re-extracted identical (same sha256); window 9. Gold first with a rule that fails.
    story.shas["batch2"] = write_windows(lake, [W7, W9], late=True)
    run(silver, lake, "r2")
    failing = json.loads(json.dumps(CONFIG))
    failing["expectations"]["dim_user"].append(
        {"name": "no_canada", "rule": "country <> 'CA'", "action": "fail"}
    )
    with pytest.raises(ExpectationFailedError) as caught:
        run(gold, lake, "r2", failing)
    story.failure = str(caught.value)
    story.steps["failed"] = snapshot(lake)
    run(gold, lake, "r2")
    story.steps["batch2"] = snapshot(lake)
    story.audits["r2"] = audit(lake, "r2")

    # Lake B: the same final windows, newest first: 8 and 9, then 7 (with the late change).
    lake_b = base / "b"
    write_windows(lake_b, [W8, W9], late=True)
    run(silver, lake_b, "b1")
    run(gold, lake_b, "b1")
    write_windows(lake_b, [W7], late=True)
    run(silver, lake_b, "b2")
    run(gold, lake_b, "b2")
    story.steps["lake_b"] = snapshot(lake_b)

    # Lake C: lake A's bronze, all at once (a rebuild of silver and gold from scratch).
    lake_c = base / "c"
    shutil.copytree(lake / "bronze", lake_c / "bronze")
    run(silver, lake_c, "c1")
    run(gold, lake_c, "c1")
    story.steps["lake_c"] = snapshot(lake_c)

    # Batch 3: user 2 again, only updated_at changed: silver grows, gold's content does not.
    write_window(lake, "users", W9, [(2, "bo", "DE", "premium", D(2024, 6, 1), None, at(9, 7))])
    run(silver, lake, "r3")
    run(gold, lake, "r3")
    story.steps["untracked"] = snapshot(lake)
    story.audits["r3"] = audit(lake, "r3")

    # Batch 4, continued from the gold that is there: W8 of users re-extracted with a row that
    # ties user 1's 8 Sep version and wins (same surrogate key, other values), artist 2's genre
    # from 9 Sep 01:00 (reaches facts only through their track), a type 1 change of a date.
    story.tie_country = winning_tie(spark, USERS_W8_USER1)
    write_window(
        lake, "users", W8, [(*USERS_W8_USER1[:2], story.tie_country, *USERS_W8_USER1[3:]), USERS_W8[1]]
    )
    write_window(lake, "artists", W9, [(2, "Solo", "jazz", "US", at(9, 1))])
    write_window(lake, "dates", W8, [(20250908, D(2025, 9, 8), 8, 9, 2025, "Mon")])
    run(silver, lake, "r4")
    run(gold, lake, "r4")
    story.steps["batch4"] = snapshot(lake)
    story.audits["r4"] = audit(lake, "r4")

    # Lake D: lake A's bronze now, built from scratch.
    lake_d = base / "d"
    shutil.copytree(lake / "bronze", lake_d / "bronze")
    run(silver, lake_d, "d1")
    run(gold, lake_d, "d1")
    story.steps["lake_d"] = snapshot(lake_d)
    story.audits["d1"] = audit(lake_d, "d1")
    return story


def winning_tie(spark, row: tuple) -> str:
    """A country for ``row`` (a user version) whose silver row hash is greater than the row's own,
    so that silver's merge takes it at the same change time."""
    from spark_jobs.spotify import transforms as tf

    spec, rules = SPECS["users"], CONFIG["silver"]
    business = [*spec["columns"], *tf.derived_columns("users", rules)]

    def row_hash(values: tuple) -> str:
        df = spark.createDataFrame([values], tf.bronze_schema(spec["columns"]))
        return tf.with_row_hash(tf.clean(df, "users", rules), business).first()[tf.ROW_HASH]

    own = row_hash(row)
    return next(
        c for c in ("FR", "IT", "ES", "PT", "NL", "BE", "AT", "PL") if row_hash((*row[:2], c, *row[3:])) > own
    )


# -- helpers to read gold as business facts ------------------------------------------------------------


def rows_of(snap: dict, name: str) -> list[dict]:
    return snap[name][1]


def versions_of(snap: dict, dim: str, key: str, *columns: str) -> list[tuple]:
    rows = sorted(rows_of(snap, f"gold.{dim}"), key=lambda r: (r[key], r["valid_from"]))
    return [tuple(r[c] for c in (key, *columns, "valid_from", "valid_to", "is_current")) for r in rows]


def resolved_facts(snap: dict) -> dict[int, tuple]:
    """Each fact's dimension versions as (key, valid_from), instead of surrogate keys."""

    def by_sk(dim: str, sk: str, key: str) -> dict:
        return {
            r[sk]: (r[key], r["valid_from"].day, r["valid_from"].hour) for r in rows_of(snap, f"gold.{dim}")
        }

    users = by_sk("dim_user", "user_sk", "user_id")
    tracks = by_sk("dim_track", "track_sk", "track_id")
    artists = by_sk("dim_artist", "artist_sk", "artist_id")
    return {
        r["stream_id"]: (
            users.get(r["user_sk"]),
            tracks.get(r["track_sk"]),
            artists.get(r["artist_sk"]),
            r["date_key"],
            r["listen_duration"],
        )
        for r in rows_of(snap, "gold.fact_stream")
    }


# -- silver ----------------------------------------------------------------------------------------------


def test_silver_holds_cleaned_history_and_applied_windows(story):
    snap = story.steps["batch1"]
    users = [
        (r["user_id"], r["user_name"], r["subscription_type"], r["updated_at"], r["_window"])
        for r in sorted(rows_of(snap, "silver.users"), key=lambda r: (r["user_id"], r["updated_at"]))
    ]
    assert users == [
        (1, "ANA", "free", utc(7, 10), W7),
        (1, "ANA", "premium", utc(8, 9), W8),
        (2, "BO", "premium", utc(7, 11), W7),
        (2, "BO", "premium", utc(8, 12), W8),
    ]
    tracks = {
        (r["track_id"], r["artist_id"]): (r["track_name"], r["duration_bucket"])
        for r in rows_of(snap, "silver.tracks")
    }
    assert tracks == {
        (10, 1): ("Song One", "low"),
        (10, 2): ("Song One", "low"),
        (20, 2): ("Long Track", "high"),
    }
    streams = rows_of(snap, "silver.streams")
    assert sorted(r["stream_id"] for r in streams) == [1, 2, 3, 4, 5, 6, 8]
    assert list(streams[0]) == [*SPECS["streams"]["columns"], "_window", "_row_hash"]
    applied = {
        (r["table"], r["window"]): (r["sha256"], r["rows"], r["applied_run_id"])
        for r in rows_of(snap, "silver._applied_windows")
    }
    assert applied == {
        (table, window): (sha, len(WINDOWS[window][table]), "r1")
        for (table, window), sha in story.shas["batch1"].items()
    }
    assert ("artists", W8) not in applied  # no artist changed that day: no window


def test_silver_counts_in_the_audit(story):
    r1 = story.audits["r1"]
    assert {
        m: r1[("silver", "streams", m)]
        for m in ("windows_pending", "rows_read", "duplicates_removed", "rows_inserted", "rows_updated")
    } == {
        "windows_pending": 2,
        "rows_read": 8,
        "duplicates_removed": 1,
        "rows_inserted": 7,
        "rows_updated": 0,
    }
    assert r1[("silver", "users", "rows_inserted")] == 4
    # the re-run found nothing pending, and said so
    rerun = story.audits["r1-rerun"]
    assert all(rerun[("silver", t, "windows_pending")] == 0 for t in SPECS)
    r2 = story.audits["r2"]
    assert r2[("silver", "users", "windows_pending")] == 1  # window 7 re-extracted with other rows
    assert r2[("silver", "users", "rows_read")] == 3
    assert r2[("silver", "users", "rows_inserted")] == 1
    assert r2[("silver", "users", "rows_updated")] == 0  # the two rows already there are unchanged
    assert r2[("silver", "artists", "windows_pending")] == 0  # 7 re-extracted identical: same sha256
    assert story.shas["batch2"][("artists", W7)] == story.shas["batch1"][("artists", W7)]
    assert story.shas["batch2"][("users", W7)] != story.shas["batch1"][("users", W7)]


# -- gold: batch 1 -------------------------------------------------------------------------------------


def test_gold_dimensions_after_the_first_batch(story):
    snap = story.steps["batch1"]
    assert versions_of(
        snap, "dim_user", "user_id", "user_name", "country", "subscription_type", "updated_at"
    ) == [
        (1, "ANA", "US", "free", utc(7, 10), utc(7, 10), utc(8, 9), False),
        (1, "ANA", "US", "premium", utc(8, 9), utc(8, 9), None, True),
        # the change of updated_at alone opened no version
        (2, "BO", "DE", "premium", utc(7, 11), utc(7, 11), None, True),
    ]
    assert versions_of(snap, "dim_track", "track_id", "track_name", "artist_id", "duration_bucket") == [
        (10, "Song One", 1, "low", utc(7, 8), utc(8, 6), False),
        (10, "Song One", 2, "low", utc(8, 6), None, True),
        (20, "Long Track", 2, "high", utc(7, 8), None, True),
    ]
    assert versions_of(snap, "dim_artist", "artist_id", "artist_name") == [
        (1, "The-Band", utc(7, 8), None, True),
        (2, "Solo", utc(7, 8), None, True),
    ]
    assert [r["weekday"] for r in rows_of(snap, "gold.dim_date")] == ["Sunday", "Monday"]
    dim_user = rows_of(snap, "gold.dim_user")
    assert list(dim_user[0]) == [
        "user_sk",
        "user_id",
        "user_name",
        "country",
        "subscription_type",
        "start_date",
        "end_date",
        "updated_at",
        "valid_from",
        "valid_to",
        "is_current",
    ]


def test_gold_fact_points_at_the_versions_valid_at_each_stream(story):
    facts = resolved_facts(story.steps["batch1"])
    assert facts == {
        1: ((1, 7, 10), (10, 7, 8), (1, 7, 8), 20250907, 100),
        2: ((2, 7, 11), (20, 7, 8), (2, 7, 8), 20250907, 200),
        3: ((1, 7, 10), (10, 7, 8), (1, 7, 8), 20250907, 50),  # before the first version: the first
        4: (None, (10, 7, 8), (1, 7, 8), 20250907, 10),  # unknown user: NULL user_sk, warned
        5: ((1, 8, 9), (10, 8, 6), (2, 7, 8), 20250908, 180),  # the track's artist then: 2
        6: ((2, 7, 11), (20, 7, 8), (2, 7, 8), 20250908, -5),
        8: ((1, 7, 10), (20, 7, 8), (2, 7, 8), 20250907, 30),
    }
    fact = rows_of(story.steps["batch1"], "gold.fact_stream")
    assert list(fact[0]) == [
        "stream_id",
        "user_sk",
        "track_sk",
        "artist_sk",
        "date_key",
        "listen_duration",
        "device_type",
        "stream_timestamp",
    ]
    r1 = story.audits["r1"]
    assert r1[("gold", "fact_stream", "facts_before_first_version")] == 1
    assert r1[("gold", "fact_stream", "facts_changed")] == 7
    quality = {
        (r["table"], r["rule"]): (r["status"], r["rows_failing"])
        for r in rows_of(story.steps["batch1"], "gold._quality")
        if r["run_id"] == "r1"
    }
    assert quality[("fact_stream", "user_known")] == ("warned", 1)
    assert quality[("fact_stream", "listen_duration_not_negative")] == ("warned", 1)
    assert quality[("dim_track", "duration_positive")] == ("passed", 0)


def test_stream_facts_view_joins_the_versions(story):
    view = {r["stream_id"]: r for r in rows_of(story.steps["batch1"], "gold.stream_facts")}
    assert sorted(view) == [1, 2, 3, 4, 5, 6, 8]
    assert (view[5]["subscription_type"], view[5]["user_country"], view[5]["weekday"]) == (
        "premium",
        "US",
        "Monday",
    )
    assert (view[1]["subscription_type"], view[1]["track_name"], view[1]["duration_bucket"]) == (
        "free",
        "Song One",
        "low",
    )
    assert view[4]["user_id"] is None
    assert view[8]["user_country"] == "US"
    assert story.steps["batch2"]["gold.stream_facts"][1] != story.steps["batch1"]["gold.stream_facts"][1]
    late = {r["stream_id"]: r for r in rows_of(story.steps["batch2"], "gold.stream_facts")}
    assert late[8]["user_country"] == "CA"
    assert late[7]["weekday"] == "Tuesday"


# -- re-runs and failures ----------------------------------------------------------------------------------


def test_rerun_changes_nothing(story):
    before, after = story.steps["batch1"], story.steps["rerun"]
    assert {k: v for k, v in after.items() if k != "gold._audit"} == {
        k: v for k, v in before.items() if k != "gold._audit"
    }


def test_failed_expectation_writes_no_gold_table(story):
    assert "no_canada" in story.failure
    assert "no gold table was written" in story.failure
    before, failed = story.steps["rerun"], story.steps["failed"]
    gold_tables = [n for n in before if n.startswith("gold.") and n not in ("gold._audit", "gold._quality")]
    assert {n: failed[n] for n in gold_tables} == {n: before[n] for n in gold_tables}
    quality = {
        (r["table"], r["rule"]): r["status"] for r in rows_of(failed, "gold._quality") if r["run_id"] == "r2"
    }
    assert quality[("dim_user", "no_canada")] == "failed"


# -- gold: batch 2, a late older change --------------------------------------------------------------------


def test_late_older_change_recuts_scd2_history_and_repoints_facts(story):
    snap = story.steps["batch2"]
    assert versions_of(snap, "dim_user", "user_id", "country", "subscription_type") == [
        (1, "US", "free", utc(7, 10), utc(7, 18), False),
        (1, "CA", "free", utc(7, 18), utc(8, 9), False),
        (1, "US", "premium", utc(8, 9), None, True),
        (2, "DE", "premium", utc(7, 11), None, True),
    ]
    facts = resolved_facts(snap)
    before = resolved_facts(story.steps["batch1"])
    assert facts[8][0] == (1, 7, 18)  # the stream at 19:00 now falls in the late version
    assert facts[7] == ((2, 7, 11), (20, 7, 8), (2, 7, 8), 20250909, 60)
    assert {k: v for k, v in facts.items() if k not in (7, 8)} == {k: v for k, v in before.items() if k != 8}
    r2 = story.audits["r2"]
    assert r2[("gold", "fact_stream", "facts_changed")] == 2
    assert r2[("gold", "fact_stream", "rows_inserted")] == 1
    assert r2[("gold", "fact_stream", "rows_updated")] == 1
    # dimensions whose silver did not change were not rebuilt: same versions
    for table in ("gold.dim_artist", "gold.dim_track"):
        assert snap[table] == story.steps["batch1"][table]
    assert snap["gold.dim_user"][0] == story.steps["batch1"]["gold.dim_user"][0] + 1


def test_other_batchings_give_the_same_silver_and_gold(story):
    final = content(story.steps["batch2"])
    assert content(story.steps["lake_b"]) == final
    assert content(story.steps["lake_c"]) == final


def test_untracked_change_rebuilds_gold_but_commits_nothing(story):
    before, after = story.steps["batch2"], story.steps["untracked"]
    assert after["silver.users"][0] == before["silver.users"][0] + 1
    assert len(rows_of(after, "silver.users")) == len(rows_of(before, "silver.users")) + 1
    for name in ("gold.dim_user", "gold.fact_stream", "gold.stream_facts", "gold.dim_track"):
        assert after[name] == before[name], name
    r3 = story.audits["r3"]
    assert r3[("gold", "dim_user", "rows_written")] == 0
    assert r3[("gold", "fact_stream", "facts_changed")] == 0
    assert r3[("gold", "stream_facts", "rows_written")] == 0


def test_a_manifest_that_disagrees_with_its_file_stops_silver(spark, tmp_path):
    lake = tmp_path / "lake"
    write_window(lake, "users", W7, USERS_W7)
    manifest = lake / "bronze" / "spotify" / "_windows" / "users" / f"{W7}.json"
    manifest.write_text(manifest.read_text().replace('"rows": 2', '"rows": 3'))
    with pytest.raises(silver.BronzeWindowError, match=f"{W7} has 2 rows, its manifest says 3"):
        run(silver, lake, "bad", None, tables="users")
    assert not (lake / "silver").exists()
    # A table with no bronze window yet (extraction lands no empty window) is there, empty, for gold.
    run(silver, lake, "none", None, tables="artists")
    assert audit(lake, "none") == {("silver", "artists", "windows_pending"): 0}
    artists = DeltaTable(str(lake / "silver" / "spotify" / "artists"))
    assert read_rows(artists.table_uri) == []
    assert artists.schema().to_arrow().names == [*SPECS["artists"]["columns"], "_window", "_row_hash"]
    run(silver, lake, "again", None, tables="artists")
    assert DeltaTable(str(lake / "silver" / "spotify" / "artists")).version() == 0  # created once


def test_a_deleted_silver_table_is_rebuilt_from_every_window(spark, tmp_path):
    lake = tmp_path / "lake"
    write_windows(lake, [W7, W8], late=False)
    run(silver, lake, "s1", None, tables="users")
    users = lake / "silver" / "spotify" / "users"
    built = read(lake, "silver", "users")
    shutil.rmtree(users)  # _applied_windows still lists users' windows
    run(silver, lake, "s2", None, tables="users")
    assert audit(lake, "s2")[("silver", "users", "windows_pending")] == 2
    assert read(lake, "silver", "users") == built


# -- gold: incremental runs ---------------------------------------------------------------------------


def test_gold_recomputes_only_the_facts_a_change_can_touch(story):
    """A full build computes every fact; later runs only the facts whose stream row changed or that
    may point at a changed dimension version (from its earliest change on) or type 1 row."""
    assert story.audits["r1"][("gold", "fact_stream", "facts_rebuilt")] == 7  # the first build: all
    # W9's stream 7 (new, and its new date); user 1's from 7 Sep 18:00, where the late version
    # cut the first one short: streams 8 (19:00) and 5 (8 Sep), not 1 and 3 (before it)
    assert story.audits["r2"][("gold", "fact_stream", "facts_rebuilt")] == 3
    assert story.audits["r3"][("gold", "fact_stream", "facts_rebuilt")] == 0  # gold's content unchanged
    # stream 5 (user 1's tied version), 5 and 6 (date 8 Sep), 7 (artist 2's version from 9 Sep
    # 01:00, via track 20; the first version only got a valid_to: facts before 01:00 stay)
    r4 = story.audits["r4"]
    assert r4[("gold", "fact_stream", "facts_rebuilt")] == 3
    assert r4[("gold", "fact_stream", "facts_changed")] == 1
    assert r4[("gold", "stream_facts", "rows_written")] == 2  # streams 5 and 6: the view has no artist
    assert story.audits["d1"][("gold", "fact_stream", "facts_rebuilt")] == 8


def deletion_vectors_in_log(table: Path) -> int:
    """Data files of ``table``'s log that carry a deletion vector (rows deleted without a rewrite)."""
    count = 0
    for commit in sorted((table / "_delta_log").glob("*.json")):
        for line in commit.read_text().splitlines():
            add = json.loads(line).get("add")
            count += bool(add and add.get("deletionVector"))
    return count


def test_incremental_gold_equals_gold_built_from_scratch(story):
    """Gold continued run by run equals gold built from scratch, on silver tables as Databricks
    makes them: the change data feed on, deletion vectors on and used by the merges."""
    silver = story.lake_a / "silver" / "spotify"
    for name in ("users", "artists", "tracks", "dates", "streams"):
        table = DeltaTable(str(silver / name))
        assert table.metadata().configuration.get("delta.enableChangeDataFeed") == "true", name
        assert "deletionVectors" in (table.protocol().reader_features or []), name
    assert deletion_vectors_in_log(silver / "users") > 0  # the late and tied changes went to DVs
    snap = story.steps["batch4"]
    assert content(snap) == content(story.steps["lake_d"])
    facts = resolved_facts(snap)
    assert facts[7][2] == (2, 9, 1)  # the artist version valid at the stream, through its track
    view = {r["stream_id"]: r for r in rows_of(snap, "gold.stream_facts")}
    assert (view[5]["user_country"], view[5]["weekday"], view[6]["weekday"]) == (
        story.tie_country,
        "Mon",
        "Mon",
    )
    assert view[1]["weekday"] == "Sunday"
