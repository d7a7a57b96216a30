"""The Delta engine's contract, on delta-spark through the test run's Spark Connect server.

Every case runs for real: the server loads the pinned Delta jars (``make venv``), exactly what
the jobs use, locally and on Databricks.
"""

from __future__ import annotations

import re
import shutil

import pytest
from pyspark.sql.functions import expr

from spark_jobs.common.delta import DeltaEngine, DeltaTableError

SCHEMA = "k long, grp string, name string"


@pytest.fixture
def engine(spark):
    return DeltaEngine(spark)


def frame(engine, rows):
    return engine.spark.createDataFrame(rows, SCHEMA)


def content(engine, uri, version=None):
    return sorted(tuple(r) for r in engine.read(uri, version=version).select("k", "grp", "name").collect())


BASE = [(1, "a", "x"), (2, "a", "y"), (3, "b", "z")]


def test_version_none_for_missing_table_then_one_per_commit(engine, tmp_path):
    uri = str(tmp_path / "t")
    assert engine.version(uri) is None
    assert engine.exists(uri) is False
    assert engine.history(uri) == []
    assert engine.last_metadata(uri) == {}
    engine.append(frame(engine, BASE), uri)
    assert engine.version(uri) == 0
    assert engine.exists(uri) is True
    engine.append(frame(engine, [(4, "c", "w")]), uri)
    assert engine.version(uri) == 1
    engine.overwrite(frame(engine, [(5, "c", "v")]), uri)
    assert engine.version(uri) == 2


def test_read_returns_written_rows(engine, tmp_path):
    uri = str(tmp_path / "t")
    engine.append(frame(engine, BASE), uri)
    assert content(engine, uri) == BASE
    engine.append(frame(engine, [(4, "c", "w")]), uri)
    assert content(engine, uri) == [*BASE, (4, "c", "w")]


def test_append_with_txn_is_written_once(engine, tmp_path):
    uri = str(tmp_path / "t")
    assert engine.append(frame(engine, BASE), uri, txn=("loader", 1)) is True
    assert engine.version(uri) == 0
    # A replay of batch 1 (a retried task) is skipped: no rows, no commit.
    assert engine.append(frame(engine, BASE), uri, txn=("loader", 1)) is False
    assert engine.version(uri) == 0
    assert content(engine, uri) == BASE
    # The next batch is written.
    assert engine.append(frame(engine, [(4, "c", "w")]), uri, txn=("loader", 2)) is True
    assert engine.version(uri) == 1
    assert content(engine, uri) == [*BASE, (4, "c", "w")]
    # Another application's batch 1 is its own.
    assert engine.append(frame(engine, [(5, "d", "u")]), uri, txn=("other", 1)) is True
    assert engine.version(uri) == 2
    assert len(content(engine, uri)) == 5


def test_overwrite_replaces_everything(engine, tmp_path):
    uri = str(tmp_path / "t")
    engine.append(frame(engine, BASE), uri)
    engine.overwrite(frame(engine, [(9, "z", "new")]), uri)
    assert content(engine, uri) == [(9, "z", "new")]


def test_overwrite_where_replaces_only_that_slice(engine, tmp_path):
    uri = str(tmp_path / "t")
    engine.append(frame(engine, BASE), uri)
    engine.overwrite(frame(engine, [(10, "a", "new")]), uri, where={"grp": "a"})
    assert content(engine, uri) == [(3, "b", "z"), (10, "a", "new")]


def test_overwrite_where_on_missing_table_creates_it(engine, tmp_path):
    uri = str(tmp_path / "t")
    engine.overwrite(frame(engine, [(1, "a", "x")]), uri, where={"grp": "a"})
    assert content(engine, uri) == [(1, "a", "x")]


@pytest.mark.parametrize(
    "value",
    [
        "o'brien",
        "x' OR '1'='1",
        "a\\b",
        "\\' OR true --",
        "\\",
    ],
    ids=["quote", "quote-injection", "backslash", "backslash-injection", "lone-backslash"],
)
def test_overwrite_where_value_is_a_literal(engine, tmp_path, value):
    uri = str(tmp_path / "t")
    engine.append(frame(engine, [*BASE, (4, value, "old")]), uri)
    engine.overwrite(frame(engine, [(5, value, "new")]), uri, where={"grp": value})
    # Only the row whose grp is exactly ``value`` was replaced: the predicate did not widen.
    assert content(engine, uri) == [*BASE, (5, value, "new")]


@pytest.mark.parametrize(
    "value", ["o'brien", "x' OR '1'='1", "a\\b", "\\' OR true --", "\\", "tab\there", "é'ü"]
)
def test_predicate_matches_exactly_the_value(spark, value):
    """``replaceWhere`` goes to Spark's SQL parser: the predicate matches the value and nothing else."""
    df = spark.createDataFrame([(value,), ("other",), ("o",), ("",)], "grp string")
    predicate = DeltaEngine(spark).predicate({"grp": value})
    assert [r[0] for r in df.filter(expr(predicate)).collect()] == [value]


def test_predicate_needs_a_condition_and_ands_columns(engine):
    with pytest.raises(ValueError, match="at least one"):
        engine.predicate({})
    assert engine.predicate({"grp": "a", "k": 3}) == "`grp` = 'a' AND `k` = 3"


def test_merge_upserts_on_keys(engine, tmp_path):
    uri = str(tmp_path / "t")
    engine.append(frame(engine, BASE), uri)
    counts = engine.merge(
        frame(engine, [(2, "a", "y2"), (3, "b", "z2"), (4, "c", "w")]), uri, ["k"], metadata={"run": "m1"}
    )
    assert counts == {"updated": 2, "inserted": 1}
    assert content(engine, uri) == [(1, "a", "x"), (2, "a", "y2"), (3, "b", "z2"), (4, "c", "w")]
    assert engine.version(uri) == 1
    assert engine.last_metadata(uri) == {"run": "m1"}


def test_merge_on_two_keys(engine, tmp_path):
    uri = str(tmp_path / "t")
    engine.append(frame(engine, BASE), uri)
    counts = engine.merge(frame(engine, [(1, "a", "x2"), (1, "b", "new")]), uri, ["k", "grp"])
    assert counts == {"updated": 1, "inserted": 1}
    assert content(engine, uri) == [(1, "a", "x2"), (1, "b", "new"), (2, "a", "y"), (3, "b", "z")]


def test_merge_into_missing_table_creates_it(engine, tmp_path):
    uri = str(tmp_path / "t")
    counts = engine.merge(frame(engine, BASE), uri, ["k"], metadata={"run": "first"})
    assert counts == {"inserted": 3, "updated": 0}
    assert engine.version(uri) == 0
    assert content(engine, uri) == BASE
    assert engine.last_metadata(uri) == {"run": "first"}


def test_history_newest_first_with_metadata(engine, tmp_path):
    uri = str(tmp_path / "t")
    stamp = {"inputs": {"bronze": 3}, "settings": "abc123", "nested": [1, "two", None]}
    engine.append(frame(engine, BASE), uri, metadata={"run_id": "r1"})
    engine.append(frame(engine, [(4, "c", "w")]), uri)
    engine.overwrite(frame(engine, BASE), uri, metadata={"stamp": stamp, "run_id": "r3"})
    history = engine.history(uri)
    assert [c.version for c in history] == [2, 1, 0]
    assert history[0].metadata == {"stamp": stamp, "run_id": "r3"}
    assert history[1].metadata == {}
    assert history[2].metadata == {"run_id": "r1"}
    assert all(c.operation for c in history)
    assert all(c.timestamp is not None for c in history)
    assert history[0].timestamp >= history[2].timestamp
    limited = engine.history(uri, limit=2)
    assert [c.version for c in limited] == [2, 1]
    assert engine.last_metadata(uri) == {"stamp": stamp, "run_id": "r3"}


def test_last_metadata_is_the_newest_commits(engine, tmp_path):
    uri = str(tmp_path / "t")
    engine.append(frame(engine, BASE), uri, metadata={"n": 1})
    assert engine.last_metadata(uri) == {"n": 1}
    engine.append(frame(engine, BASE), uri, metadata={"n": 2})
    assert engine.last_metadata(uri) == {"n": 2}
    engine.append(frame(engine, BASE), uri)
    assert engine.last_metadata(uri) == {}


def test_read_version_time_travel(engine, tmp_path):
    uri = str(tmp_path / "t")
    engine.append(frame(engine, BASE), uri)
    engine.overwrite(frame(engine, [(7, "q", "v1")]), uri)
    engine.append(frame(engine, [(8, "q", "v2")]), uri)
    assert content(engine, uri, version=0) == BASE
    assert content(engine, uri, version=1) == [(7, "q", "v1")]
    assert content(engine, uri, version=2) == [(7, "q", "v1"), (8, "q", "v2")]
    assert content(engine, uri) == content(engine, uri, version=2)


@pytest.mark.parametrize("name", ["a;drop", "x y", "Upper", "a.b", "a`b", 'a"b', "", "_", "1abc"])
def test_ident_rejects_unsafe_names(engine, name):
    with pytest.raises(ValueError, match="invalid column name"):
        engine.ident(name)
    with pytest.raises(ValueError, match="invalid column name"):
        engine.predicate({name: 1})


@pytest.mark.parametrize("name", ["grp", "_rescued_data", "col_2"])
def test_ident_quotes_safe_names(engine, name):
    assert engine.ident(name) == f"`{name}`"


def test_overwrite_where_in_replaces_several_slices_in_one_commit(engine, tmp_path):
    uri = str(tmp_path / "t")
    engine.append(frame(engine, [*BASE, (4, "c", "w")]), uri)
    engine.overwrite(frame(engine, [(7, "a", "n"), (8, "c", "n")]), uri, where={"grp": ["a", "c"]})
    assert engine.version(uri) == 1
    assert content(engine, uri) == [(3, "b", "z"), (7, "a", "n"), (8, "c", "n")]
    with pytest.raises(ValueError, match="at least one value"):
        engine.predicate({"grp": []})


DATED = "k long, name string, file_date string"


def test_merge_newer_by_keeps_newer_rows_against_a_late_older_delivery(engine, tmp_path):
    uri = str(tmp_path / "t")
    newer = engine.spark.createDataFrame([(1, "new", "2021-04-18"), (2, "only-new", "2021-04-18")], DATED)
    older = engine.spark.createDataFrame([(1, "old", "2021-03-28"), (3, "only-old", "2021-03-28")], DATED)
    engine.merge(newer, uri, ["k"], newer_by="file_date")
    counts = engine.merge(older, uri, ["k"], newer_by="file_date")
    assert counts == {"inserted": 1, "updated": 0}
    rows = sorted(tuple(r) for r in engine.read(uri).collect())
    assert rows == [(1, "new", "2021-04-18"), (2, "only-new", "2021-04-18"), (3, "only-old", "2021-03-28")]
    # the same delivery again (a re-run) updates in place and changes nothing
    again = engine.merge(newer, uri, ["k"], newer_by="file_date")
    assert again == {"inserted": 0, "updated": 2}
    assert sorted(tuple(r) for r in engine.read(uri).collect()) == rows


def test_merge_creating_a_table_partitions_it(engine, tmp_path):
    uri = tmp_path / "t"
    engine.merge(frame(engine, BASE), str(uri), ["k"], partition_by=["grp"])
    assert sorted(p.name for p in uri.iterdir() if p.name.startswith("grp=")) == ["grp=a", "grp=b"]


ORDERED = "k long, name string, changed string, tie string"


def test_merge_order_by_updates_only_strictly_greater_rows(engine, tmp_path):
    uri = str(tmp_path / "t")
    rows = [(1, "a", "2025-01-02", "m"), (2, "b", "2025-01-02", "m"), (3, "c", None, "m")]
    engine.merge(engine.spark.createDataFrame(rows, ORDERED), uri, ["k"], order_by=["changed", "tie"])
    source = engine.spark.createDataFrame(
        [
            (1, "older", "2025-01-01", "z"),  # older change: ignored, whatever the tie-breaker
            (2, "tie-wins", "2025-01-02", "n"),  # same change, greater tie-breaker: wins
            (3, "not-null", "2025-01-01", "a"),  # any value is greater than NULL
            (4, "new", "2025-01-03", "a"),
        ],
        ORDERED,
    )
    counts = engine.merge(source, uri, ["k"], order_by=["changed", "tie"])
    assert counts == {"inserted": 1, "updated": 2}
    expected = [
        (1, "a", "2025-01-02", "m"),
        (2, "tie-wins", "2025-01-02", "n"),
        (3, "not-null", "2025-01-01", "a"),
        (4, "new", "2025-01-03", "a"),
    ]
    assert sorted(tuple(r) for r in engine.read(uri).collect()) == expected
    # The same rows again (a re-delivery) are not strictly greater: nothing is updated.
    again = engine.merge(
        engine.spark.createDataFrame(expected, ORDERED), uri, ["k"], order_by=["changed", "tie"]
    )
    assert again == {"inserted": 0, "updated": 0}
    assert sorted(tuple(r) for r in engine.read(uri).collect()) == expected


def test_merge_takes_newer_by_or_order_by_not_both(engine, tmp_path):
    with pytest.raises(ValueError, match="not both"):
        engine.merge(frame(engine, BASE), str(tmp_path / "t"), ["k"], newer_by="name", order_by=["name"])
    assert engine.version(str(tmp_path / "t")) is None


def test_order_guard_is_strict_lexicographic_with_null_lowest_in_spark_sql(spark):
    """The guard is parsed by Spark SQL: its truth table, NULL lowest, strictly greater."""
    values = [None, 1, 2]
    pairs = [(sa, sb, ta, tb) for sa in values for sb in values for ta in values for tb in values]
    df = spark.createDataFrame(pairs, "sa int, sb int, ta int, tb int").selectExpr(
        "named_struct('a', sa, 'b', sb) AS s", "named_struct('a', ta, 'b', tb) AS t"
    )
    guard = DeltaEngine(spark).order_guard(["a", "b"])
    assert guard == (
        "((s.`a` > t.`a` OR (s.`a` IS NOT NULL AND t.`a` IS NULL))) OR "
        "((s.`a` <=> t.`a`) AND (s.`b` > t.`b` OR (s.`b` IS NOT NULL AND t.`b` IS NULL)))"
    )

    def key(a, b):  # NULL lowest
        return (a is not None, a or 0), (b is not None, b or 0)

    got = {
        (r["s"]["a"], r["s"]["b"], r["t"]["a"], r["t"]["b"]): bool(r["wins"])
        for r in df.selectExpr("s", "t", f"coalesce({guard}, false) AS wins").collect()
    }
    assert got == {(sa, sb, ta, tb): key(sa, sb) > key(ta, tb) for sa, sb, ta, tb in pairs}


TYPED = "k bigint, n int, name string, day date, at timestamp, ntz timestamp_ntz, amount double, ok boolean"


def test_types_and_time_travel_survive_merges_and_slice_replaces(engine, spark, tmp_path):
    import datetime as dt

    uri = str(tmp_path / "t")
    at = dt.datetime(2025, 9, 7, 23, 59, 59, 123456)
    rows = [
        (1, 10, "a", dt.date(2025, 9, 7), at, at, 1.5, True),
        (2, None, None, None, None, None, None, None),
        (3, -1, "ü'\\", dt.date(1970, 1, 1), dt.datetime(1970, 1, 1), dt.datetime(1970, 1, 1), -0.0, False),
    ]
    engine.merge(spark.createDataFrame(rows, TYPED), uri, ["k"])
    engine.merge(spark.createDataFrame([(2, 20, "b", None, at, None, 2.0, True)], TYPED), uri, ["k"])
    engine.overwrite(
        spark.createDataFrame([(4, 4, "d", None, None, None, None, None)], TYPED), uri, where={"k": 4}
    )
    read = engine.read(uri)
    assert read.schema.simpleString() == f"struct<{TYPED.replace(' ', ':').replace(',:', ',')}>"
    assert sorted(map(tuple, engine.read(uri, version=0).collect()), key=str) == sorted(rows, key=str)
    assert sorted(r.k for r in read.collect()) == [1, 2, 3, 4]
    assert [r.n for r in read.where("k = 2").collect()] == [20]


def test_empty_table_keeps_its_columns(engine, spark, tmp_path):
    uri = str(tmp_path / "t")
    engine.overwrite(spark.createDataFrame([], SCHEMA), uri)
    assert engine.version(uri) == 0
    read = engine.read(uri)
    assert read.count() == 0
    assert read.columns == ["k", "grp", "name"]


def test_table_id_changes_when_the_table_is_recreated(engine, tmp_path):
    uri = str(tmp_path / "t")
    engine.merge(frame(engine, BASE), uri, ["k"])
    old_id = engine.table_id(uri)
    assert old_id
    assert engine.table_id(uri) == old_id
    shutil.rmtree(uri)
    engine.merge(frame(engine, BASE), uri, ["k"])
    assert engine.table_id(uri) not in (None, old_id)
    assert engine.table_id(str(tmp_path / "missing")) is None


def test_new_tables_get_the_properties_asked_for_and_deletion_vectors(engine, tmp_path):
    uri = str(tmp_path / "t")
    engine.merge(frame(engine, BASE), uri, ["k"], properties={"delta.enableChangeDataFeed": "true"})
    detail = engine.detail(uri)
    assert detail["properties"]["delta.enableChangeDataFeed"] == "true"
    # the server's default, as on Databricks
    assert detail["properties"]["delta.enableDeletionVectors"] == "true"
    # properties apply to a new table only; a later write keeps them
    engine.overwrite(frame(engine, BASE), uri, properties={"delta.enableChangeDataFeed": "false"})
    assert engine.detail(uri)["properties"]["delta.enableChangeDataFeed"] == "true"


CDF = {"delta.enableChangeDataFeed": "true"}


def feed(engine, uri, since, version):
    found = engine.changes(uri, since, version)
    return sorted((r["_change_type"], r["k"], r["name"], r["_commit_version"]) for r in found.collect())


@pytest.mark.parametrize("layout", ["plain", "partitioned", "column-mapping"])
def test_change_feed_lists_exactly_the_changed_rows(engine, spark, tmp_path, layout):
    """Inserts, updates (pre and post images) and deletes between two versions, and nothing else:
    with deletion vectors (on by default), a partitioned table and column mapping alike."""
    uri = str(tmp_path / "t")
    partition_by = ["grp"] if layout == "partitioned" else None
    engine.merge(frame(engine, BASE), uri, ["k"], partition_by=partition_by, properties=CDF)  # v0
    if layout == "column-mapping":
        spark.sql(
            f"ALTER TABLE {engine.table_ref(uri)} SET TBLPROPERTIES ("
            "'delta.columnMapping.mode' = 'name', "
            "'delta.minReaderVersion' = '2', 'delta.minWriterVersion' = '5')"
        )  # v1
    start = engine.version(uri)
    engine.merge(frame(engine, [(2, "a", "y2"), (4, "c", "w")]), uri, ["k"])  # an update, an insert
    spark.sql(f"DELETE FROM {engine.table_ref(uri)} WHERE k = 3")
    end = engine.version(uri)
    assert feed(engine, uri, start, end) == [
        ("delete", 3, "z", end),
        ("insert", 4, "w", start + 1),
        ("update_postimage", 2, "y2", start + 1),
        ("update_preimage", 2, "y", start + 1),
    ]
    assert feed(engine, uri, start + 1, end) == [("delete", 3, "z", end)]
    assert feed(engine, uri, end, end) == []
    assert "_change_type" in engine.changes(uri, end, end).columns
    if layout != "plain":
        detail = engine.detail(uri)
        assert detail["properties"]["delta.enableDeletionVectors"] == "true"


def test_change_feed_gap_is_none_not_a_guess(engine, spark, tmp_path):
    uri = str(tmp_path / "t")
    engine.merge(frame(engine, BASE), uri, ["k"])  # v0: no change data feed
    engine.merge(frame(engine, [(4, "c", "w")]), uri, ["k"])  # v1: none either
    spark.sql(f"ALTER TABLE {engine.table_ref(uri)} SET TBLPROPERTIES (delta.enableChangeDataFeed = true)")
    engine.merge(frame(engine, [(5, "d", "v")]), uri, ["k"])  # v3: recorded
    assert engine.changes(uri, 0, 3) is None
    assert feed(engine, uri, 2, 3) == [("insert", 5, "v", 3)]


def test_a_broken_table_is_named_in_the_error(engine, tmp_path):
    uri = tmp_path / "t"
    engine.append(frame(engine, BASE), str(uri))
    (uri / "_delta_log" / "00000000000000000000.json").write_text("{not json")
    with pytest.raises(DeltaTableError, match=str(uri)):
        engine.history(str(uri))


def test_merge_pruned_by_a_partition_key_reads_only_the_source_partitions(engine, tmp_path):
    uri = str(tmp_path / "t")
    engine.merge(frame(engine, BASE), uri, ["grp", "k"], partition_by=["grp"])
    counts = engine.merge(
        frame(engine, [(1, "a", "x2"), (9, "a", "new")]), uri, ["grp", "k"], prune_by=["grp"]
    )
    assert counts == {"updated": 1, "inserted": 1}
    assert content(engine, uri) == [(1, "a", "x2"), (2, "a", "y"), (3, "b", "z"), (9, "a", "new")]
    commit = engine.spark.sql(f"DESCRIBE HISTORY {engine.table_ref(uri)} LIMIT 1").first()
    # the join names the source's partitions of the target, which Delta prunes files by
    predicate = commit["operationParameters"]["predicate"]
    assert re.search(r"\(grp#\d+ = a\)\)", predicate), predicate
    with pytest.raises(ValueError, match="only key columns"):
        engine.merge(frame(engine, BASE), uri, ["k"], prune_by=["grp"])
