"""Unit tests of the Spotify transforms on small hand-made DataFrames."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml
from pyspark.sql import functions as F

from spark_jobs.spotify import gold
from spark_jobs.spotify import transforms as tf

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "include" / "spotify" / "pipeline.yaml").read_text())
SPECS = {t["table"]: t for t in CONFIG["tables"]}
RULES = CONFIG["silver"]


def ts(day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(2025, 9, day, hour, minute)


def frame(spark, table: str, rows: list[dict]):
    """A bronze-like frame of ``table``: every declared column, NULL where a row does not say."""
    columns = SPECS[table]["columns"]
    schema = tf.bronze_schema(columns)
    return spark.createDataFrame([tuple(r.get(c) for c in columns) for r in rows], schema)


def silver(spark, table: str, rows: list[dict], window: str = "20250907T000000"):
    """Rows as the silver job keeps them: cleaned, hashed, deduplicated by the silver key."""
    spec = SPECS[table]
    df = tf.clean(frame(spark, table, rows), table, RULES).withColumn(tf.WINDOW, F.lit(window))
    df = tf.with_row_hash(df, [*spec["columns"], *tf.derived_columns(table, RULES)])
    return tf.deduplicate(df, tf.silver_key(spec), spec["change_column"])


# -- silver clean-up ---------------------------------------------------------------------------------


def test_bronze_schema_maps_declared_types_and_rejects_unknown_ones():
    schema = tf.bronze_schema(SPECS["streams"]["columns"])
    assert [(f.name, f.dataType.simpleString()) for f in schema.fields] == [
        ("stream_id", "bigint"),
        ("user_id", "int"),
        ("track_id", "int"),
        ("date_key", "int"),
        ("listen_duration", "int"),
        ("device_type", "string"),
        ("stream_timestamp", "timestamp"),
    ]
    with pytest.raises(ValueError, match="unsupported column type"):
        tf.bronze_schema({"x": "float"})


def test_clean_upper_cases_user_names_only_in_users(spark):
    users = frame(spark, "users", [{"user_id": 1, "user_name": "Ana-Lee é"}, {"user_id": 2}])
    out = {r["user_id"]: r["user_name"] for r in tf.clean(users, "users", RULES).collect()}
    assert out == {1: "ANA-LEE É", 2: None}
    artists = frame(spark, "artists", [{"artist_id": 1, "artist_name": "low-key"}])
    assert tf.clean(artists, "artists", RULES).first()["artist_name"] == "low-key"
    assert tf.clean(artists, "artists", RULES).columns == artists.columns


def test_clean_tracks_dashes_and_duration_buckets(spark):
    rows = [
        {"track_id": 1, "track_name": "Up-Town--Funk", "duration_sec": 149},
        {"track_id": 2, "track_name": "plain", "duration_sec": 150},
        {"track_id": 3, "track_name": None, "duration_sec": 299},
        {"track_id": 4, "track_name": "-", "duration_sec": 300},
        {"track_id": 5, "track_name": "x", "duration_sec": None},
        {"track_id": 6, "track_name": "x", "duration_sec": 0},
    ]
    out = tf.clean(frame(spark, "tracks", rows), "tracks", RULES)
    assert out.columns == [*SPECS["tracks"]["columns"], "duration_bucket"]
    got = {r["track_id"]: (r["track_name"], r["duration_bucket"]) for r in out.collect()}
    assert got == {
        1: ("Up Town  Funk", "low"),
        2: ("plain", "medium"),
        3: (None, "medium"),
        4: (" ", "high"),
        5: ("x", None),
        6: ("x", "low"),
    }
    assert tf.derived_columns("tracks", RULES) == ["duration_bucket"]
    assert tf.derived_columns("users", RULES) == []


def test_row_hash_tells_null_from_empty_and_ignores_session_time_zone(spark):
    columns = SPECS["users"]["columns"]
    rows = [
        {"user_id": 1, "user_name": "", "updated_at": ts(7, 10)},
        {"user_id": 1, "user_name": None, "updated_at": ts(7, 10)},
        {"user_id": 1, "user_name": "a", "country": "bc", "updated_at": ts(7, 10)},
        {"user_id": 1, "user_name": "ab", "country": "c", "updated_at": ts(7, 10)},
        {"user_id": 1, "user_name": "a", "country": "bc", "updated_at": ts(7, 11)},
    ]
    df = frame(spark, "users", rows)
    hashes = [r[tf.ROW_HASH] for r in tf.with_row_hash(df, columns).collect()]
    assert len(set(hashes)) == 5
    assert all(len(h) == 64 for h in hashes)
    zone = spark.conf.get("spark.sql.session.timeZone")
    try:
        spark.conf.set("spark.sql.session.timeZone", "America/New_York")
        assert [r[tf.ROW_HASH] for r in tf.with_row_hash(df, columns).collect()] == hashes
    finally:
        spark.conf.set("spark.sql.session.timeZone", zone)


# -- deduplication -------------------------------------------------------------------------------------


def test_silver_key_is_the_version_for_scd2_and_the_key_otherwise():
    assert tf.silver_key(SPECS["users"]) == ["user_id", "updated_at"]
    assert tf.silver_key(SPECS["dates"]) == ["date_key"]
    assert tf.silver_key(SPECS["streams"]) == ["stream_id"]


def test_deduplicate_is_the_same_whatever_the_arrival_order_of_tied_changes(spark):
    # Two different changes of stream 1 with the same timestamp, and an older one.
    rows = [
        {"stream_id": 1, "user_id": 7, "device_type": "web", "stream_timestamp": ts(7, 12)},
        {"stream_id": 1, "user_id": 7, "device_type": "mobile", "stream_timestamp": ts(7, 12)},
        {"stream_id": 1, "user_id": 7, "device_type": "tv", "stream_timestamp": ts(7, 11)},
        {"stream_id": 2, "user_id": 8, "device_type": "web", "stream_timestamp": ts(7, 9)},
        {"stream_id": 2, "user_id": 8, "device_type": "web", "stream_timestamp": ts(7, 9)},
    ]
    spec = SPECS["streams"]

    def winners(ordered: list[dict]) -> dict:
        df = tf.with_row_hash(frame(spark, "streams", ordered).repartition(3), list(spec["columns"]))
        out = tf.deduplicate(df, ["stream_id"], "stream_timestamp").collect()
        return {r["stream_id"]: (r["device_type"], r[tf.ROW_HASH]) for r in out}

    first = winners(rows)
    second = winners(list(reversed(rows)))
    assert first == second
    hashes = {
        r["device_type"]: r[tf.ROW_HASH]
        for r in tf.with_row_hash(frame(spark, "streams", rows[:2]), list(spec["columns"])).collect()
    }
    assert first[1][0] == max(hashes, key=hashes.get)  # the tie goes to the greater _row_hash
    assert first[2][0] == "web"
    # Identical rows from two windows: the earliest window's is kept, in either order.
    once = frame(spark, "streams", [rows[3]])
    schema = once.schema.add(tf.WINDOW, "string")
    for windows in (["20250909T000000", "20250908T000000"], ["20250908T000000", "20250909T000000"]):
        df = spark.createDataFrame([(*once.first(), w) for w in windows], schema)
        out = tf.deduplicate(tf.with_row_hash(df, list(spec["columns"])), ["stream_id"], "stream_timestamp")
        assert [r[tf.WINDOW] for r in out.collect()] == ["20250908T000000"]


def test_deduplicate_keeps_every_version_of_an_scd2_key_and_the_latest_of_an_scd1_key(spark):
    users = silver(
        spark,
        "users",
        [
            {"user_id": 1, "country": "US", "updated_at": ts(7, 10)},
            {"user_id": 1, "country": "CA", "updated_at": ts(8, 10)},
            {"user_id": 1, "country": "CA", "updated_at": ts(8, 10)},  # delivered twice
        ],
    )
    assert sorted((r["country"], r["updated_at"]) for r in users.collect()) == [
        ("CA", ts(8, 10)),
        ("US", ts(7, 10)),
    ]
    dates = silver(
        spark,
        "dates",
        [
            {"date_key": 20250907, "date": dt.date(2025, 9, 7), "weekday": "Sun"},
            {"date_key": 20250907, "date": dt.date(2025, 9, 8), "weekday": "Mon"},
            {"date_key": 20250907, "date": None, "weekday": "Sat"},  # NULL change: lowest
        ],
    )
    assert [r["weekday"] for r in dates.collect()] == ["Mon"]


# -- SCD2 ------------------------------------------------------------------------------------------------


def dim_user(spark, rows: list[dict]):
    gold_spec = SPECS["users"]["gold"]
    history = silver(spark, "users", rows)
    return tf.scd2(
        history,
        keys=["user_id"],
        change_column="updated_at",
        tracked=gold_spec["tracked"],
        surrogate_key="user_sk",
        columns=list(SPECS["users"]["columns"]),
    )


def versions(df, *columns: str) -> list[tuple]:
    """(user_id, *columns) of each version, by user_id and valid_from."""
    rows = sorted(df.collect(), key=lambda r: (r["user_id"], r["valid_from"]))
    return [tuple(r[c] for c in ("user_id", *columns)) for r in rows]


U1 = {"user_id": 1, "user_name": "ana", "country": "US", "subscription_type": "free"}


def test_scd2_versions_ranges_and_current_flag(spark):
    dim = dim_user(
        spark,
        [
            {**U1, "updated_at": ts(7, 10)},
            {**U1, "subscription_type": "premium", "updated_at": ts(9, 10)},
            {"user_id": 2, "user_name": "bo", "updated_at": ts(8)},
        ],
    )
    assert dim.columns == [
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
    assert dict(dim.dtypes)["user_sk"] == "bigint"
    assert versions(dim, "user_name", "subscription_type", "valid_from", "valid_to", "is_current") == [
        (1, "ANA", "free", ts(7, 10), ts(9, 10), False),
        (1, "ANA", "premium", ts(9, 10), None, True),
        (2, "BO", None, ts(8), None, True),
    ]
    expected_sk = dim.select(
        "user_sk", F.xxhash64(F.col("user_id"), F.col("valid_from")).alias("expected")
    ).collect()
    assert all(r["user_sk"] == r["expected"] for r in expected_sk)
    assert len({r["user_sk"] for r in expected_sk}) == 3


def test_scd2_late_older_change_recuts_the_neighbours(spark):
    before = [{**U1, "updated_at": ts(7, 10)}, {**U1, "subscription_type": "premium", "updated_at": ts(9)}]
    late = {**U1, "country": "CA", "updated_at": ts(8)}
    first, second = dim_user(spark, before), dim_user(spark, [*before, late])
    assert versions(second, "country", "subscription_type", "valid_from", "valid_to", "is_current") == [
        (1, "US", "free", ts(7, 10), ts(8), False),
        (1, "CA", "free", ts(8), ts(9), False),
        (1, "US", "premium", ts(9), None, True),
    ]
    # the versions that existed keep their surrogate keys; only the new one is new
    old_keys = {r["user_sk"] for r in first.collect()}
    new_keys = {r["user_sk"] for r in second.collect()}
    assert old_keys < new_keys
    assert len(new_keys - old_keys) == 1


def test_scd2_redelivered_row_and_untracked_change_open_no_version(spark):
    base = [{**U1, "updated_at": ts(7, 10)}, {**U1, "country": "CA", "updated_at": ts(8)}]
    expected = dim_user(spark, base).collect()
    again = dim_user(spark, [*base, {**U1, "country": "CA", "updated_at": ts(8)}])  # re-delivered
    assert sorted(again.collect()) == sorted(expected)
    # Only updated_at changes (not tracked): the earlier version stands, with its own values.
    untracked = dim_user(spark, [*base, {**U1, "country": "CA", "updated_at": ts(9, 12)}])
    assert sorted(untracked.collect()) == sorted(expected)
    assert versions(untracked, "country", "updated_at", "valid_from", "valid_to") == [
        (1, "US", ts(7, 10), ts(7, 10), ts(8)),
        (1, "CA", ts(8), ts(8), None),
    ]
    # A change back to earlier values is a new version; NULL equals NULL, not a value.
    back = dim_user(
        spark, [*base, {**U1, "updated_at": ts(9)}, {**U1, "country": None, "updated_at": ts(10)}]
    )
    assert versions(back, "country", "valid_from") == [
        (1, "US", ts(7, 10)),
        (1, "CA", ts(8)),
        (1, "US", ts(9)),
        (1, None, ts(10)),
    ]
    nulls = dim_user(
        spark, [{**U1, "country": None, "updated_at": ts(7)}, {**U1, "country": None, "updated_at": ts(8)}]
    )
    assert versions(nulls, "valid_from", "valid_to") == [(1, ts(7), None)]


def test_scd2_is_the_same_whatever_the_order_of_the_history(spark):
    rows = [
        {**U1, "updated_at": ts(7, 10)},
        {**U1, "country": "CA", "updated_at": ts(8)},
        {**U1, "country": "CA", "user_name": "ann", "updated_at": ts(8, 1)},
        {**U1, "country": "CA", "user_name": "ann", "updated_at": ts(9)},
    ]
    forward = dim_user(spark, rows).collect()
    backward = dim_user(spark, list(reversed(rows))).collect()
    assert sorted(forward) == sorted(backward)
    assert len(forward) == 3


# -- as-of lookups -----------------------------------------------------------------------------------------


def test_as_of_takes_the_version_valid_at_the_fact_time(spark):
    dim = dim_user(
        spark,
        [
            {**U1, "updated_at": ts(7, 10)},
            {**U1, "subscription_type": "premium", "updated_at": ts(8, 10)},
            {"user_id": 2, "user_name": "bo", "updated_at": ts(7)},
        ],
    )
    sk = {(r["user_id"], r["valid_from"]): r["user_sk"] for r in dim.collect()}
    facts = spark.createDataFrame(
        [
            (1, 1, ts(7, 9)),  # before user 1's first version: the first version
            (2, 1, ts(7, 10)),  # exactly at valid_from
            (3, 1, ts(8, 9, 59)),
            (4, 1, ts(8, 10)),  # exactly at the first version's valid_to: the next one
            (5, 1, ts(20)),
            (6, 2, ts(7, 12)),
            (7, 99, ts(7, 12)),  # unknown user
            (8, 1, None),  # no time: no version
            (9, None, ts(7, 12)),
        ],
        "stream_id long, user_id int, stream_timestamp timestamp",
    )
    out = tf.as_of(
        facts,
        dim,
        on={"user_id": "user_id"},
        at="stream_timestamp",
        take={"user_sk": "user_sk"},
        before_first="early",
    )
    assert out.columns == ["stream_id", "user_id", "stream_timestamp", "user_sk", "early"]
    got = {r["stream_id"]: (r["user_sk"], r["early"]) for r in out.collect()}
    v1, v2, bo = sk[(1, ts(7, 10))], sk[(1, ts(8, 10))], sk[(2, ts(7))]
    assert got == {
        1: (v1, True),
        2: (v1, False),
        3: (v1, False),
        4: (v2, False),
        5: (v2, False),
        6: (bo, False),
        7: (None, False),
        8: (None, False),
        9: (None, False),
    }
    with pytest.raises(ValueError, match="overwrite fact column"):
        tf.as_of(
            facts,
            dim,
            on={"user_id": "user_id"},
            at="stream_timestamp",
            take={"user_id": "user_id"},
            before_first="e",
        )


def test_fact_lookups_follow_the_metadata_including_the_track_artist():
    lookups = gold.fact_lookups(CONFIG)
    assert lookups == [
        gold.Lookup("users", "user_id", "user_id", "user_sk"),
        gold.Lookup("tracks", "track_id", "track_id", "track_sk"),
        gold.Lookup("artists", "artist_id", "artist_id", "artist_sk", via="tracks"),
    ]


def test_fact_rows_take_the_artist_of_the_track_version_at_the_stream_time(spark):
    tracks = silver(
        spark,
        "tracks",
        [
            {"track_id": 10, "track_name": "a-b", "artist_id": 1, "duration_sec": 100, "updated_at": ts(7)},
            {"track_id": 10, "track_name": "a-b", "artist_id": 2, "duration_sec": 100, "updated_at": ts(8)},
        ],
    )
    artists = silver(
        spark,
        "artists",
        [
            {"artist_id": 1, "artist_name": "one", "updated_at": ts(6)},
            {"artist_id": 2, "artist_name": "two", "updated_at": ts(9)},
        ],
    )

    def dim(df, table):
        spec = SPECS[table]
        return tf.scd2(
            df,
            keys=spec["keys"],
            change_column=spec["change_column"],
            tracked=spec["gold"]["tracked"],
            surrogate_key=spec["gold"]["surrogate_key"],
            columns=[*spec["columns"], *tf.derived_columns(table, RULES)],
        )

    users = dim(silver(spark, "users", [{**U1, "updated_at": ts(1)}]), "users")
    dims = {"users": users, "tracks": dim(tracks, "tracks"), "artists": dim(artists, "artists")}
    streams = frame(
        spark,
        "streams",
        [
            {
                "stream_id": 1,
                "user_id": 1,
                "track_id": 10,
                "date_key": 20250907,
                "stream_timestamp": ts(7, 12),
            },
            {
                "stream_id": 2,
                "user_id": 1,
                "track_id": 10,
                "date_key": 20250908,
                "stream_timestamp": ts(8, 12),
            },
            {
                "stream_id": 3,
                "user_id": 1,
                "track_id": 10,
                "date_key": 20250909,
                "stream_timestamp": ts(9, 12),
            },
        ],
    )
    out = gold.fact_rows(streams, dims, gold.fact_lookups(CONFIG), keys=["stream_id"], at="stream_timestamp")
    assert out.columns == [
        "stream_id",
        "user_sk",
        "track_sk",
        "artist_sk",
        "date_key",
        "listen_duration",
        "device_type",
        "stream_timestamp",
        "_before_first",
    ]
    artist = {r["artist_sk"]: (r["artist_id"], r["valid_from"]) for r in dims["artists"].collect()}
    got = {r["stream_id"]: (artist.get(r["artist_sk"]), r["_before_first"]) for r in out.collect()}
    assert got == {
        1: ((1, ts(6)), False),
        # the track's artist 2 has no version until the 9th: its first version, flagged
        2: ((2, ts(9)), True),
        3: ((2, ts(9)), False),
    }


def test_same_content_compares_rows_as_multisets_and_columns_with_types(spark):
    a = spark.createDataFrame([(1, "x"), (1, "x"), (2, None)], "k int, v string")
    assert tf.same_content(a, a.orderBy(F.desc("k")))
    assert not tf.same_content(a, a.distinct())
    assert not tf.same_content(a, a.select(F.col("k").cast("long"), "v"))
    assert not tf.same_content(a, a.select("v", "k"))
    schema = "k int, v string"
    assert not tf.same_content(a, spark.createDataFrame([(1, "x"), (2, None), (2, None)], schema))
    assert not tf.same_content(a, spark.createDataFrame([(1, "x"), (1, "x"), (2, "")], schema))
    crossed = spark.createDataFrame([(1, "y"), (2, "x")], schema)
    assert not tf.same_content(spark.createDataFrame([(1, "x"), (2, "y")], schema), crossed)
    assert tf.same_content(crossed.limit(0), a.limit(0))
