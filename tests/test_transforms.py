"""Unit tests of the Netflix transforms on small hand-made DataFrames."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql.types import StringType, StructField, StructType

from lakehouse.metadata import load_pipeline
from spark_jobs.netflix import transforms as tf

TITLE_COLUMNS = next(f["columns"] for f in load_pipeline("netflix")["files"] if f["table"] == "titles")
TS = dt.datetime(2026, 1, 1, 12, 0)


def titles(spark, rows: list[dict]):
    """A bronze-like titles frame: every column text, as the CSV reader declares them."""
    schema = StructType([StructField(c, StringType()) for c in TITLE_COLUMNS])
    defaults = {
        "duration_minutes": "90",
        "duration_seasons": None,
        "type": "Movie",
        "title": "A Title",
        "date_added": "9/9/2019",
        "release_year": "2019",
        "rating": "PG",
        "description": "d",
        "show_id": "1",
    }
    return spark.createDataFrame([tuple({**defaults, **r}[c] for c in TITLE_COLUMNS) for r in rows], schema)


def by_id(df) -> dict[str, dict]:
    return {r["show_id"]: r.asDict() for r in df.collect()}


# -- latest_file, without_rescued, clean_lookup ----------------------------------------------------


def test_latest_file_keeps_only_the_greatest_source_file(spark):
    bronze = spark.createDataFrame(
        [
            ("a", "raw/20260101T000000_cast.csv"),
            ("b", "raw/20260101T000000_cast.csv"),
            ("c", "raw/20260103T000000_cast.csv"),
            ("d", "raw/20260103T000000_cast.csv"),
            ("e", "raw/20260102T000000_cast.csv"),
        ],
        "v string, _source_file string",
    )
    out = tf.latest_file(bronze)
    assert sorted(r["v"] for r in out.collect()) == ["c", "d"]
    assert {r["_source_file"] for r in out.collect()} == {"raw/20260103T000000_cast.csv"}
    assert out.columns == bronze.columns


def test_latest_file_is_the_newest_name_wherever_the_lake_was(spark):
    """A lake moved to a root that sorts first: its newer file has the smaller path."""
    bronze = spark.createDataFrame(
        [
            ("old", "file:/z/lake/raw/netflix/titles/20260101T000000_titles.csv"),
            ("new", "file:/a/lake/raw/netflix/titles/20260102T000000_titles.csv"),
        ],
        "v string, _source_file string",
    )
    assert [r["v"] for r in tf.latest_file(bronze).collect()] == ["new"]
    assert tf.latest_file(bronze, "20260103T000000_e.csv").collect() == []
    assert [r["v"] for r in tf.latest_file(bronze, "20260101T120000_e.csv").collect()] == ["new"]


def test_without_rescued_drops_rescued_rows_and_the_column(spark):
    df = spark.createDataFrame(
        [("1", None), ("2", '{"extra": "x"}'), ("3", None), ("4", "")],
        "show_id string, _rescued_data string",
    )
    out = tf.without_rescued(df)
    assert "_rescued_data" not in out.columns
    assert out.columns == ["show_id"]
    # Only NULL means "nothing rescued": an empty rescued text is still a rescued row.
    assert sorted(r["show_id"] for r in out.collect()) == ["1", "3"]


def test_clean_lookup_trims_blanks_to_null_and_keeps_lineage(spark):
    df = spark.createDataFrame(
        [
            ("  Alan Marriott ", " 81145628", "f1.csv", TS, "junk"),
            ("   ", "2", "f1.csv", TS, "junk"),
            ("", "", "f1.csv", TS, "junk"),
            (None, "4", "f1.csv", TS, "junk"),
            ("Tab\t", "5", "f1.csv", TS, "junk"),
        ],
        "cast string, show_id string, _source_file string, _ingested_at timestamp, other string",
    )
    out = tf.clean_lookup(df, ["cast", "show_id"])
    assert out.columns == ["cast", "show_id", "_source_file", "_ingested_at"]
    rows = [tuple(r) for r in out.collect()]
    assert rows == [
        ("Alan Marriott", "81145628", "f1.csv", TS),
        (None, "2", "f1.csv", TS),
        (None, None, "f1.csv", TS),
        (None, "4", "f1.csv", TS),
        # trim() removes spaces only, as Spark's TRIM does.
        ("Tab\t", "5", "f1.csv", TS),
    ]


# -- clean_titles ----------------------------------------------------------------------------------


def test_clean_titles_duration_defaults_and_int_types(spark):
    df = titles(
        spark,
        [
            {"show_id": "null", "duration_minutes": None, "duration_seasons": None},
            {"show_id": "blank", "duration_minutes": "  ", "duration_seasons": ""},
            {"show_id": "text", "duration_minutes": "ninety", "duration_seasons": "two"},
            {"show_id": "ok", "duration_minutes": "94", "duration_seasons": "3"},
        ],
    )
    out = tf.clean_titles(df)
    types = dict(out.dtypes)
    assert types["duration_minutes"] == "int"
    assert types["duration_seasons"] == "int"
    assert types["release_year"] == "int"
    assert types["type_flag"] == "int"
    assert types["date_added"] == "date"
    got = {k: (v["duration_minutes"], v["duration_seasons"]) for k, v in by_id(out).items()}
    assert got == {"null": (0, 1), "blank": (0, 1), "text": (0, 1), "ok": (94, 3)}


def test_unparsed_counts_counts_non_blank_values_that_did_not_parse(spark):
    df = titles(
        spark,
        [
            {"show_id": "1", "duration_minutes": "ninety", "date_added": "sometime"},
            {"show_id": "2", "duration_minutes": None, "release_year": ""},
            {"show_id": "3", "duration_minutes": " ", "duration_seasons": "2 Seasons"},
            {"show_id": "4", "release_year": "MMXIX", "date_added": " 12/31/2020 "},
            {"show_id": "5", "duration_minutes": "1h 30m"},
        ],
    )
    assert tf.unparsed_counts(df) == {
        "duration_minutes": 2,  # "ninety" and "1h 30m"; NULL and blank are not counted
        "duration_seasons": 1,
        "release_year": 1,
        "date_added": 1,
    }


def test_unparsed_counts_is_zero_on_clean_input(spark):
    df = titles(spark, [{"show_id": "1"}, {"show_id": "2", "duration_minutes": None}])
    assert tf.unparsed_counts(df) == dict.fromkeys(
        ["duration_minutes", "duration_seasons", "release_year", "date_added"], 0
    )


def test_clean_titles_short_title_and_rating(spark):
    df = titles(
        spark,
        [
            {"show_id": "1", "title": "Norm of the North: King Sized Adventure", "rating": "TV-PG"},
            {"show_id": "2", "title": "Jandino", "rating": "TV-MA"},
            {"show_id": "3", "title": "A: B: C", "rating": "PG-13"},
            {"show_id": "4", "title": ":leading", "rating": "R"},
            {"show_id": "5", "title": None, "rating": None},
        ],
    )
    got = {k: (v["short_title"], v["rating"], v["title"]) for k, v in by_id(tf.clean_titles(df)).items()}
    assert got == {
        "1": ("Norm of the North", "TV", "Norm of the North: King Sized Adventure"),
        "2": ("Jandino", "TV", "Jandino"),
        "3": ("A", "PG", "A: B: C"),
        "4": ("", "R", ":leading"),
        "5": (None, None, None),
    }


def test_clean_titles_type_flag(spark):
    df = titles(
        spark,
        [
            {"show_id": "m", "type": "Movie"},
            {"show_id": "s", "type": "TV Show"},
            {"show_id": "lower", "type": "movie"},
            {"show_id": "other", "type": "Documentary"},
            {"show_id": "null", "type": None},
        ],
    )
    got = {k: v["type_flag"] for k, v in by_id(tf.clean_titles(df)).items()}
    assert got == {"m": 1, "s": 2, "lower": 0, "other": 0, "null": 0}


def test_clean_titles_duration_ranking_is_dense_longest_first(spark):
    minutes = {"a": "120", "b": "90", "c": "120", "d": "45", "e": None, "f": "90", "g": "200"}
    df = titles(spark, [{"show_id": k, "duration_minutes": v} for k, v in minutes.items()])
    got = {k: v["duration_ranking"] for k, v in by_id(tf.clean_titles(df)).items()}
    # 200 -> 1; the two 120s share 2; the two 90s share 3 (no gap); 45 -> 4; missing (0) last.
    assert got == {"g": 1, "a": 2, "c": 2, "b": 3, "f": 3, "d": 4, "e": 5}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("9/9/2019", dt.date(2019, 9, 9)),
        ("12/31/2020", dt.date(2020, 12, 31)),
        ("01/02/2021", dt.date(2021, 1, 2)),
        ("  3/4/2018 ", dt.date(2018, 3, 4)),
        ("September 9, 2019", None),
        ("2019-09-09", None),
        ("13/45/2019", None),
        ("garbage", None),
        ("", None),
        (None, None),
    ],
)
def test_clean_titles_date_added(spark, text, expected):
    out = tf.clean_titles(titles(spark, [{"show_id": "1", "date_added": text}])).first()
    assert out["date_added"] == expected


def test_clean_titles_show_id_release_year_and_columns(spark):
    df = titles(
        spark,
        [
            {"show_id": " 81145628 ", "release_year": "2019"},
            {"show_id": "  ", "release_year": "unknown"},
        ],
    )
    out = tf.clean_titles(df)
    rows = sorted(((r["show_id"], r["release_year"]) for r in out.collect()), key=str)
    assert rows == [("81145628", 2019), (None, None)]
    assert out.columns == [*TITLE_COLUMNS, "short_title", "type_flag", "duration_ranking"]


# -- Netflix: an empty newest delivery ---------------------------------------------------------------


def test_latest_file_is_empty_when_the_newest_delivery_had_no_rows(spark):
    schema = "show_id STRING, _source_file STRING"
    bronze = spark.createDataFrame(
        [("1", "file:/raw/t/20260101T0000Z__a.csv"), ("2", "file:/raw/t/20260102T0000Z__b.csv")], schema
    )
    assert [r["show_id"] for r in tf.latest_file(bronze).collect()] == ["2"]
    assert [r["show_id"] for r in tf.latest_file(bronze, "20260101T1200Z__e.csv").collect()] == ["2"]
    assert tf.latest_file(bronze, "20260103T0000Z__e.csv").collect() == []


# -- Formula 1: duplicates in one drop are never resolved by chance ----------------------------------


def test_deduplicate_removes_exact_duplicates_and_returns_conflicting_keys(spark):
    from spark_jobs.formula1 import transforms as f1

    rows = [(1, 20.0, "a"), (1, 20.0, "a"), (2, 20.0, "b"), (2, 99.0, "b"), (3, 1.0, "c")]
    df = spark.createDataFrame(rows, "result_id INT, points DOUBLE, code STRING")
    kept, conflicting = f1.deduplicate(df, ["result_id"])
    assert sorted(tuple(r) for r in kept.collect()) == [(1, 20.0, "a"), (3, 1.0, "c")]
    assert sorted((r["result_id"], r["points"], r["_key"]) for r in conflicting.collect()) == [
        (2, 20.0, '{"result_id":2}'),
        (2, 99.0, '{"result_id":2}'),
    ]


def test_deduplicate_follows_a_declared_tie_break_and_never_breaks_a_tie_by_chance(spark):
    from spark_jobs.formula1 import transforms as f1

    rows = [(2, 20.0, "b"), (2, 99.0, "b"), (4, 5.0, "x"), (4, 5.0, "y")]
    df = spark.createDataFrame(rows, "result_id INT, points DOUBLE, code STRING")
    for ordered in (df, df.orderBy("points", ascending=False)):
        kept, conflicting = f1.deduplicate(ordered, ["result_id"], ["points asc"])
        assert [tuple(r) for r in kept.collect()] == [(2, 20.0, "b")]
        # key 4: equal by the tie-break, different otherwise: still a conflict
        assert sorted(r["code"] for r in conflicting.collect()) == ["x", "y"]
    kept, _ = f1.deduplicate(df, ["result_id"], ["points desc", "code desc"])
    assert sorted(tuple(r) for r in kept.collect()) == [(2, 99.0, "b"), (4, 5.0, "y")]
    with pytest.raises(ValueError, match="asc or desc"):
        f1.tie_break_order(["points sideways"])
