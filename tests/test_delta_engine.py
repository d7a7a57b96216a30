"""The DeltaEngine contract, run against both engines: delta-rs and delta-spark.

delta-spark needs its jars on the JVM's classpath, which ``configure_spark_with_delta_pip`` fetches
from Maven when a session starts. Whether that works is probed once, in a subprocess, because only
one SparkContext can exist per process: a failed start must not leave this process without Spark,
and a session started without the jars cannot get them later. When the probe succeeds (and no
session is running yet) the test session is started with the jars, so the shared ``spark``
fixture returns that same session; otherwise the delta-spark cases skip and name the cause.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.sql.functions import expr

from spark_jobs.common.delta import DeltaRsEngine, DeltaSparkEngine, delta_jars_loaded

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = "k long, grp string, name string"
PROBE_TIMEOUT = 180

_PROBE = """
from spark_jobs.common.delta import delta_jars_loaded
from spark_jobs.common.session import get_spark
spark = get_spark("delta-probe", with_delta_jars=True)
print("DELTA_JARS_OK" if delta_jars_loaded(spark) else "DELTA_JARS_MISSING")
spark.stop()
"""


def _cause(output: str) -> str:
    """The one line of a failed session start that says why, e.g. Maven's unresolved dependency."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    cause = next((line for line in lines if "unresolved dependency" in line.lower()), None)
    cause = cause or next((line for line in lines if line.startswith("Exception in thread")), None)
    cause = cause or (lines[-1] if lines else "the probe printed nothing")
    cause = cause.removeprefix('Exception in thread "main" ')
    host = next((line for line in lines if line.startswith("Host ") and " not found" in line), None)
    if host:
        cause += f" ({host.split(' url=')[0].rstrip('.')}: Maven unreachable)"
    return cause


def _probe_delta_jars() -> str | None:
    """None when a Spark session with the Delta jars starts in a fresh process, else why not."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        return f"a Spark session with configure_spark_with_delta_pip did not start within {PROBE_TIMEOUT} s"
    if proc.returncode == 0 and "DELTA_JARS_OK" in proc.stdout:
        return None
    if proc.returncode == 0:
        return "the session started but io.delta.tables.DeltaTable is not on its classpath"
    return _cause(proc.stderr + "\n" + proc.stdout)


@pytest.fixture(scope="session")
def delta_spark_problem(request) -> str | None:
    """Start the test session with the Delta jars when they can be loaded; else say why not."""
    from pyspark.sql import SparkSession

    from spark_jobs.common.session import get_spark

    problem = _probe_delta_jars()
    if problem is None and SparkSession.getActiveSession() is None:
        # Becomes the active session, which the shared ``spark`` fixture (get_spark) returns.
        get_spark("tests", with_delta_jars=True)
    spark = request.getfixturevalue("spark")
    if problem is None and not delta_jars_loaded(spark):
        problem = (
            "this process's Spark session was started without them (one SparkContext per "
            "process); run tests/test_delta_engine.py before other Spark tests or on its own"
        )
    return problem


@pytest.fixture(params=["delta-rs", "delta-spark"])
def engine(request, delta_spark_problem):
    # ``spark`` only after ``delta_spark_problem``, which may have to start it with the jars.
    spark = request.getfixturevalue("spark")
    if request.param == "delta-rs":
        return DeltaRsEngine(spark, storage_options={})
    if delta_spark_problem:
        pytest.skip(f"delta-spark jars cannot be loaded: {delta_spark_problem}")
    return DeltaSparkEngine(spark)


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
def test_delta_spark_predicate_matches_exactly_the_value(spark, value):
    """delta-spark hands ``replaceWhere`` to Spark's SQL parser: check its predicate there.

    This needs no Delta jars, so delta-spark's quoting is tested on every machine; delta-rs's
    (parsed by DataFusion) is tested by the overwrite case above.
    """
    df = spark.createDataFrame([(value,), ("other",), ("o",), ("",)], "grp string")
    predicate = DeltaSparkEngine(spark).predicate({"grp": value})
    assert [r[0] for r in df.filter(expr(predicate)).collect()] == [value]


def test_predicate_needs_a_condition_and_ands_columns(engine):
    with pytest.raises(ValueError, match="at least one"):
        engine.predicate({})
    q = engine.quote_char
    assert engine.predicate({"grp": "a", "k": 3}) == f"{q}grp{q} = 'a' AND {q}k{q} = 3"


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
    q = engine.quote_char
    assert engine.ident(name) == f"{q}{name}{q}"


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
    """The delta-spark guard is parsed by Spark SQL: check its truth table there (no jars needed)."""
    values = [None, 1, 2]
    pairs = [(sa, sb, ta, tb) for sa in values for sb in values for ta in values for tb in values]
    df = spark.createDataFrame(pairs, "sa int, sb int, ta int, tb int").selectExpr(
        "named_struct('a', sa, 'b', sb) AS s", "named_struct('a', ta, 'b', tb) AS t"
    )
    guard = DeltaSparkEngine(spark).order_guard(["a", "b"])
    assert guard == (
        "((s.`a` > t.`a` OR (s.`a` IS NOT NULL AND t.`a` IS NULL))) OR "
        "((s.`a` IS NOT DISTINCT FROM t.`a`) AND (s.`b` > t.`b` OR (s.`b` IS NOT NULL AND t.`b` IS NULL)))"
    )

    def key(a, b):  # NULL lowest
        return (a is not None, a or 0), (b is not None, b or 0)

    got = {
        (r["s"]["a"], r["s"]["b"], r["t"]["a"], r["t"]["b"]): bool(r["wins"])
        for r in df.selectExpr("s", "t", f"coalesce({guard}, false) AS wins").collect()
    }
    assert got == {(sa, sb, ta, tb): key(sa, sb) > key(ta, tb) for sa, sb, ta, tb in pairs}


TYPED = "k bigint, n int, name string, day date, at timestamp, ntz timestamp_ntz, amount double, ok boolean"


def test_delta_rs_read_lets_spark_read_the_files_and_equals_the_arrow_read(spark, tmp_path):
    """Locally, delta-rs reads go through Spark's parquet reader (no driver-side copy): the rows,
    column types and time travel must be exactly what the Arrow route gives."""
    import datetime as dt

    from deltalake import DeltaTable

    engine = DeltaRsEngine(spark, storage_options={})
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

    for version in (0, 1, 2, None):
        read = engine.read(uri, version=version)
        plan = read._jdf.queryExecution().optimizedPlan().toString()
        assert "parquet" in plan.lower(), plan  # Spark scans the files itself
        arrow = spark.createDataFrame(DeltaTable(uri, version=version).to_pyarrow_table())
        # The Delta types; the Arrow route alone turned timestamp_ntz into a zoned timestamp.
        assert read.schema.simpleString() == f"struct<{TYPED.replace(' ', ':').replace(',:', ',')}>"
        assert [f.dataType for f in read.schema if f.name != "ntz"] == [
            f.dataType for f in arrow.schema if f.name != "ntz"
        ]
        assert sorted(map(tuple, read.collect()), key=str) == sorted(map(tuple, arrow.collect()), key=str)
    assert sorted(r.k for r in engine.read(uri).collect()) == [1, 2, 3, 4]
    assert [r.n for r in engine.read(uri).where("k = 2").collect()] == [20]


def test_delta_rs_read_of_an_empty_table_keeps_its_columns(spark, tmp_path):
    engine = DeltaRsEngine(spark, storage_options={})
    uri = str(tmp_path / "t")
    engine.overwrite(spark.createDataFrame([], SCHEMA), uri)
    read = engine.read(uri)
    assert read.count() == 0
    assert read.columns == ["k", "grp", "name"]


def test_delta_rs_read_of_a_partitioned_table_keeps_the_partition_column(spark, tmp_path):
    """Partition values live in the paths, so such tables are read through Arrow: same rows."""
    engine = DeltaRsEngine(spark, storage_options={})
    uri = str(tmp_path / "t")
    engine.merge(spark.createDataFrame(BASE, SCHEMA), uri, ["k"], partition_by=["grp"])
    assert sorted(tuple(r) for r in engine.read(uri).select("k", "grp", "name").collect()) == BASE


def test_delta_rs_added_rows_are_the_rows_of_files_added_since_a_version(spark, tmp_path):
    import shutil

    engine = DeltaRsEngine(spark, storage_options={})
    uri = str(tmp_path / "t")
    engine.merge(frame(engine, BASE), uri, ["k"])  # v0
    engine.merge(frame(engine, [(4, "c", "w")]), uri, ["k"])  # v1: an insert, in a new file
    engine.merge(frame(engine, [(2, "a", "y2")]), uri, ["k"])  # v2: an update rewrites v0's file

    def keys(df):
        return sorted(r.k for r in df.collect())

    assert keys(engine.added_rows(uri, 0, 1)) == [4]
    assert keys(engine.added_rows(uri, 1, 1)) == []
    assert engine.added_rows(uri, 1, 1).columns == ["k", "grp", "name"]
    # the rewritten file brings its other rows along: a superset of the change, never less
    assert keys(engine.added_rows(uri, 1)) == [1, 2, 3]
    assert sorted(tuple(r) for r in engine.added_rows(uri, 1).where("k = 2").collect()) == [(2, "a", "y2")]
    assert engine.added_rows(uri, 3) is None  # a version the table does not have yet
    old_id = engine.table_id(uri)
    shutil.rmtree(uri)
    engine.merge(frame(engine, BASE), uri, ["k"])
    engine.merge(frame(engine, [(5, "e", "v")]), uri, ["k"])
    assert engine.table_id(uri) != old_id  # another table at the same path: the caller's check
    assert engine.table_id(str(tmp_path / "missing")) is None
