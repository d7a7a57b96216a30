"""The AdventureWorks silver and gold jobs on the Spark Connect server, on bronze loads written here.

The loads follow the shared contract (parquet parts per load, a manifest per load in ``_loads``),
written with pyarrow as the copy task writes them, with the awkward types: decimal(19,4), naive
timestamps in a non-UTC source zone, UTC timestamps, binary, uuid strings, booleans, times, nulls,
a composite key, a column name with a space (so column mapping), a table without a key (full).

One story runs once per module (``story``), on lake A: the initial loads (r1), the same run again,
incremental loads with a new column and a new full load (r2), a re-extracted first load with other
rows (r3), then bad input (a broken manifest, two columns that collide in snake_case). Lake B gets
the same final loads in reverse order. A model (``Model``) applies each load as the contract says;
every row of every silver and gold table is compared with it.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import zoneinfo
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from lakehouse.reporting import read_rows
from spark_jobs.adventureworks import gold, silver
from spark_jobs.common.naming import NameCollisionError, snake_case

TZ = "America/New_York"
CONFIG = {
    "pipeline": "adventureworks",
    "source": {
        "conn_id": "adventureworks_sql",
        "schema": "SalesLT",
        "include": ["*"],
        "exclude": [],
        "change_columns": ["ModifiedDate"],
        "incremental": {},
        "timezone": TZ,
        "chunk_rows": 2,
        "queue": None,
    },
    "silver": {"timestamps": "utc"},
    "serving": {"schema": "adventureworks"},
}
L1, L2 = "20250101T000000", "20250102T000000"
INGESTION = ("_load_id", "_source_table", "_run_id")
ARROW = {
    "boolean": pa.bool_(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "decimal(19,4)": pa.decimal128(19, 4),
    "string": pa.string(),
    "uuid": pa.string(),
    "binary": pa.binary(),
    "date": pa.date32(),
    "time": pa.time64("us"),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
}


@dataclass(frozen=True)
class Spec:
    table: str
    source_table: str
    columns: tuple[tuple[str, str], ...]  # (name, kind) as the source has them
    primary_key: tuple[str, ...] = ()
    change_column: str | None = None


HEADER = Spec(
    "sales_order_header",
    "SalesOrderHeader",
    (
        ("SalesOrderID", "int32"),
        ("OrderDate", "timestamp"),
        ("ShipDate", "timestamptz"),
        ("TotalDue", "decimal(19,4)"),
        ("OnlineOrderFlag", "boolean"),
        ("rowguid", "uuid"),
        ("Comment", "string"),
        ("ModifiedDate", "timestamp"),
    ),
    ("SalesOrderID",),
    "ModifiedDate",
)
# a column added in the source before the second load
HEADER_2 = replace(HEADER, columns=(*HEADER.columns, ("CreditCardApprovalCode", "string")))
DETAIL = Spec(
    "sales_order_detail",
    "SalesOrderDetail",
    (
        ("SalesOrderID", "int32"),
        ("SalesOrderDetailID", "int32"),
        ("Order Qty", "int16"),  # a name Delta stores only with column mapping
        ("UnitPrice", "decimal(19,4)"),
        ("ModifiedDate", "timestamp"),
    ),
    ("SalesOrderID", "SalesOrderDetailID"),
    "ModifiedDate",
)
PHOTO = Spec(  # no primary key: copied in full
    "product_photo",
    "ProductPhoto",
    (
        ("ThumbNailPhoto", "binary"),
        ("PhotoName", "string"),
        ("Weight", "float64"),
        ("Size", "int64"),
        ("SellStartDate", "date"),
        ("OpensAt", "time"),
    ),
)
CLASH = Spec("clash", "Clash", (("OrderID", "int32"), ("order_id", "int32")))


def at(day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    """A naive source timestamp (in the source's zone, TZ)."""
    return dt.datetime(2025, 1, day, hour, minute)


def utc(day: int, hour: int = 0) -> dt.datetime:
    return dt.datetime(2025, 1, day, hour, tzinfo=dt.UTC)


G1, G2, G3, G4, G5 = (f"6f9619ff-8b86-d011-b42d-00c04fc964f{i}" for i in range(1, 6))
HEADER_L1 = [
    (1, at(1, 8), utc(1, 20), Decimal("1234.5678"), True, G1, None, at(1, 9)),
    (2, at(1, 9), None, Decimal("0.0001"), False, G2, "rush", at(1, 10)),
    (3, at(1, 10), utc(2, 1), Decimal("999999999999999.9999"), None, G3, "", at(1, 11)),
]
HEADER_L2 = [  # order 2 updated (newer ModifiedDate), order 4 new; the new column
    (2, at(1, 9), utc(3, 5), Decimal("10.5000"), True, G2, "shipped", at(2, 7), "A-1"),
    (4, at(2, 3), None, Decimal("-5.2500"), True, G4, "new", at(2, 8), None),
]
HEADER_L1_AGAIN = [  # re-extracted: order 5 appeared; an older version of order 2 must not win
    HEADER_L1[0],
    (2, at(1, 9), None, Decimal("7.0000"), False, G2, "stale", at(1, 12)),
    HEADER_L1[2],
    (5, at(1, 20), None, Decimal("1.0000"), True, G5, None, at(1, 21)),
]
DETAIL_L1 = [
    (1, 1, 2, Decimal("10.0000"), at(1, 9)),
    (1, 2, 1, Decimal("20.0000"), at(1, 9)),
    (2, 1, None, Decimal("30.0000"), at(1, 10)),
]
DETAIL_L2 = [(1, 2, 5, Decimal("19.5000"), at(2, 6))]
PNG = b"\x89PNG\r\n\x1a\n\x00\xff"
PHOTO_L1 = [
    (PNG, "a.png", 1.5, 2**40, dt.date(2024, 2, 29), dt.time(8, 30)),
    (b"", "empty.gif", None, None, None, dt.time(23, 59, 59, 123456)),
]
PHOTO_L2 = [(PNG + b"\x01", "a.png", 1.25, 7, dt.date(2025, 1, 2), None)]


# -- writing bronze as the copy task does ------------------------------------------------------------------
def write_load(
    lake: Path, spec: Spec, load_id: str, mode: str, rows: list[tuple], *, token: str = "t1"
) -> None:
    """Parts of at most 2 rows (one empty part for no rows), then the manifest."""
    folder = lake / "bronze" / "adventureworks" / spec.table / load_id
    if folder.exists():
        shutil.rmtree(folder)  # the copy task deletes an earlier attempt's parts
    folder.mkdir(parents=True)
    names = [n for n, _ in spec.columns]
    schema = pa.schema([(n, ARROW[k]) for n, k in spec.columns])
    chunks = [rows[i : i + 2] for i in range(0, len(rows), 2)] or [[]]
    files = []
    for number, chunk in enumerate(chunks):
        name = f"part-{token}-{number:05d}.parquet"
        data = pa.Table.from_pylist([dict(zip(names, r, strict=True)) for r in chunk], schema=schema)
        pq.write_table(data, folder / name)
        files.append(name)
    start = dt.datetime.strptime(load_id, "%Y%m%dT%H%M%S").replace(tzinfo=dt.UTC)
    manifest = {
        "table": spec.table,
        "source_schema": "SalesLT",
        "source_table": spec.source_table,
        "load_id": load_id,
        "mode": mode,
        "window_start": start.isoformat() if mode == "incremental" else None,
        "window_end": (start + dt.timedelta(days=1)).isoformat(),
        "change_column": spec.change_column,
        "primary_key": list(spec.primary_key),
        "columns": [
            {"name": n, "source_type": k.upper(), "kind": k, "nullable": True} for n, k in spec.columns
        ],
        "files": files,
        "rows": len(rows),
        "max_change": None,
        "run_id": f"copy-{token}",
        "extracted_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    manifests = lake / "bronze" / "adventureworks" / "_loads" / spec.table
    manifests.mkdir(parents=True, exist_ok=True)
    (manifests / f"{load_id}.json").write_text(json.dumps(manifest, indent=2))


# -- what silver should hold ---------------------------------------------------------------------------------
def silver_value(kind: str, value):
    if value is None:
        return None
    if kind == "timestamp":
        return value.replace(tzinfo=zoneinfo.ZoneInfo(TZ)).astimezone(dt.UTC)
    if kind == "time":
        return value.strftime("%H:%M:%S.%f")
    return value


@dataclass
class Model:
    """Silver as the contract defines it, load by load: a full load replaces the table when it is the
    newest full load; other rows replace a stored row only when newer by (change column, load id)."""

    tables: dict[str, dict] = field(default_factory=dict)  # table -> key -> row
    newest_full: dict[str, str] = field(default_factory=dict)
    columns: dict[str, list[str]] = field(default_factory=dict)

    def apply(self, spec: Spec, load_id: str, mode: str, rows: list[tuple], run_id: str) -> None:
        names = [n for n, _ in spec.columns]
        known = self.columns.setdefault(spec.table, [])
        known.extend(n for n in names if n not in known)

        def row(values: tuple) -> dict:
            found = {n: silver_value(k, v) for (n, k), v in zip(spec.columns, values, strict=True)}
            return {
                **found,
                "_load_id": load_id,
                "_source_table": f"SalesLT.{spec.source_table}",
                "_run_id": run_id,
            }

        if mode == "full":
            if load_id >= self.newest_full.get(spec.table, ""):
                self.newest_full[spec.table] = load_id
                self.tables[spec.table] = {i: row(r) for i, r in enumerate(rows)}
                self.columns[spec.table] = names
            return
        stored = self.tables.setdefault(spec.table, {})
        for values in rows:
            new = row(values)
            key = tuple(new[k] for k in spec.primary_key)
            old = stored.get(key)
            if old is None or (new[spec.change_column], load_id) > (old[spec.change_column], old["_load_id"]):
                stored[key] = new

    def rows(self, table: str) -> list[dict]:
        names = [*self.columns[table], *INGESTION]
        return ordered([{n: r.get(n) for n in names} for r in self.tables[table].values()])


def ordered(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: repr(sorted(r.items())))


def snake(rows: list[dict]) -> list[dict]:
    return ordered([{(k if k in INGESTION else snake_case(k)): v for k, v in r.items()} for r in rows])


# -- running the jobs and reading what they left ----------------------------------------------------------
def run(job, lake: Path, run_id: str) -> None:
    job.main(["--lake-root", str(lake), "--run-id", run_id, "--config", json.dumps(CONFIG)])


def silver_rows(spark, lake: Path, table: str) -> list[dict]:
    """Read with Spark (delta-rs reads no table with both column mapping and deletion vectors)."""
    df = spark.read.format("delta").load(str(lake / "silver" / "adventureworks" / table))
    return ordered(df.toArrow().to_pylist())


def gold_rows(lake: Path, table: str) -> list[dict]:
    """Read with delta-rs, as the serving side does."""
    return ordered(read_rows(str(lake / "gold" / "adventureworks" / table)))


def versions(lake: Path) -> dict[str, int]:
    found = {}
    for layer in ("silver", "gold"):
        for log_dir in sorted((lake / layer / "adventureworks").glob("*/_delta_log")):
            found[f"{layer}.{log_dir.parent.name}"] = DeltaTable(str(log_dir.parent)).version()
    return found


def audit(lake: Path, run_id: str) -> dict[tuple[str, str, str], int]:
    rows = read_rows(str(lake / "gold" / "adventureworks" / "_audit"))
    return {(r["layer"], r["table"], r["metric"]): r["value"] for r in rows if r["run_id"] == run_id}


def deletion_vectors_in_log(table: Path) -> int:
    count = 0
    for commit in sorted((table / "_delta_log").glob("*.json")):
        for line in commit.read_text().splitlines():
            add = json.loads(line).get("add")
            count += bool(add and add.get("deletionVector"))
    return count


TABLES = (HEADER.table, DETAIL.table, PHOTO.table)


@dataclass
class Story:
    lake_a: Path
    lake_b: Path
    steps: dict[str, dict] = field(default_factory=dict)  # step -> table -> (silver rows, gold rows)
    models: dict[str, dict] = field(default_factory=dict)  # step -> table -> expected silver rows
    versions: dict[str, dict] = field(default_factory=dict)
    audits: dict[str, dict] = field(default_factory=dict)
    silver_error: str = ""
    gold_error: str = ""


def capture(
    story: Story, spark, step: str, lake: Path, model: Model | None, *, with_gold: bool = True
) -> None:
    story.steps[step] = {
        t: (silver_rows(spark, lake, t), gold_rows(lake, t) if with_gold else None) for t in TABLES
    }
    story.versions[step] = versions(lake)
    if model is not None:
        story.models[step] = {t: model.rows(t) for t in TABLES}


@pytest.fixture(scope="module")
def story(spark, tmp_path_factory) -> Story:
    base = tmp_path_factory.mktemp("adventureworks")
    lake = base / "a"
    story = Story(lake, base / "b")
    model = Model()

    # r1: the first loads; a leftover part of an earlier attempt that no manifest lists
    write_load(lake, HEADER, L1, "initial", HEADER_L1)
    pq.write_table(
        pa.table({"SalesOrderID": pa.array([99], pa.int32())}),
        lake / "bronze/adventureworks" / HEADER.table / L1 / "part-old-00000.parquet",
    )
    write_load(lake, DETAIL, L1, "initial", DETAIL_L1)
    write_load(lake, PHOTO, L1, "full", PHOTO_L1)
    for spec, mode, rows in (
        (HEADER, "initial", HEADER_L1),
        (DETAIL, "initial", DETAIL_L1),
        (PHOTO, "full", PHOTO_L1),
    ):
        model.apply(spec, L1, mode, rows, "r1")
    run(silver, lake, "r1")
    run(gold, lake, "r1")
    capture(story, spark, "r1", lake, model)
    story.audits["r1"] = audit(lake, "r1")

    # the same run again: nothing new
    run(silver, lake, "r1")
    run(gold, lake, "r1")
    story.versions["r1-again"] = versions(lake)

    # r2: incremental loads (a new column in the header) and a new full load of the photos
    write_load(lake, HEADER_2, L2, "incremental", HEADER_L2)
    write_load(lake, DETAIL, L2, "incremental", DETAIL_L2)
    write_load(lake, PHOTO, L2, "full", PHOTO_L2)
    for spec, mode, rows in (
        (HEADER_2, "incremental", HEADER_L2),
        (DETAIL, "incremental", DETAIL_L2),
        (PHOTO, "full", PHOTO_L2),
    ):
        model.apply(spec, L2, mode, rows, "r2")
    run(silver, lake, "r2")
    run(gold, lake, "r2")
    capture(story, spark, "r2", lake, model)
    story.audits["r2"] = audit(lake, "r2")

    # r3: the first header load re-extracted (a cleared copy task) with other rows
    write_load(lake, HEADER, L1, "initial", HEADER_L1_AGAIN, token="t2")
    model.apply(HEADER, L1, "initial", HEADER_L1_AGAIN, "r3")
    run(silver, lake, "r3")
    run(gold, lake, "r3")
    capture(story, spark, "r3", lake, model)
    story.audits["r3"] = audit(lake, "r3")

    # lake B: lake A's loads, newest first
    lake_b = story.lake_b
    shutil.copytree(lake / "bronze", lake_b / "bronze")
    held = lake_b / "held"
    held.mkdir()
    for spec in (HEADER, DETAIL, PHOTO):
        shutil.move(
            lake_b / "bronze/adventureworks/_loads" / spec.table / f"{L1}.json", held / f"{spec.table}.json"
        )
    run(silver, lake_b, "b1")
    for spec in (HEADER, DETAIL, PHOTO):
        shutil.move(
            held / f"{spec.table}.json", lake_b / "bronze/adventureworks/_loads" / spec.table / f"{L1}.json"
        )
    run(silver, lake_b, "b2")  # gold is a function of silver: not run here
    capture(story, spark, "lake_b", lake_b, None, with_gold=False)

    # bad input on lake A: a manifest whose table is not its folder's; columns colliding in gold
    write_load(lake, Spec("broken", "Broken", (("ID", "int32"),)), L2, "full", [(1,)])
    manifest = lake / "bronze/adventureworks/_loads/broken" / f"{L2}.json"
    manifest.write_text(manifest.read_text().replace('"table": "broken"', '"table": "other"'))
    write_load(lake, CLASH, L2, "full", [(1, 2)])
    with pytest.raises(silver.BronzeLoadError) as caught:
        run(silver, lake, "r4")
    story.silver_error = str(caught.value)
    with pytest.raises(NameCollisionError) as caught:
        run(gold, lake, "r4")
    story.gold_error = str(caught.value)
    story.versions["r4"] = versions(lake)
    return story


# -- the tests -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("step", ["r1", "r2", "r3"])
@pytest.mark.parametrize("table", TABLES)
def test_silver_and_gold_hold_every_row_the_loads_say(story, step, table):
    silver_found, gold_found = story.steps[step][table]
    expected = story.models[step][table]
    assert silver_found == expected
    assert gold_found == snake(expected)


def test_types_survive(story):
    """Decimal precision and scale, binary, uuid text, booleans, times; naive source timestamps
    (New York) as UTC instants, UTC ones unchanged."""
    rows = {r["SalesOrderID"]: r for r in story.steps["r1"][HEADER.table][0]}
    assert rows[1]["OrderDate"] == utc(1, 13)  # 08:00 in New York (EST, UTC-5)
    assert rows[1]["ShipDate"] == utc(1, 20)
    assert rows[3]["TotalDue"] == Decimal("999999999999999.9999")
    assert rows[2]["rowguid"] == G2
    assert rows[3]["OnlineOrderFlag"] is None
    photos = {r["photo_name"]: r for r in story.steps["r1"][PHOTO.table][1]}
    assert photos["a.png"]["thumb_nail_photo"] == PNG
    assert photos["empty.gif"]["thumb_nail_photo"] == b""
    assert photos["empty.gif"]["opens_at"] == "23:59:59.123456"
    gold_header = DeltaTable(str(story.lake_a / "gold/adventureworks" / HEADER.table)).schema().to_arrow()
    assert gold_header.field("total_due").type == pa.decimal128(19, 4)
    assert gold_header.field("order_date").type == pa.timestamp("us", tz="UTC")
    assert gold_header.field("sales_order_id").type == pa.int32()


def test_a_run_with_nothing_new_commits_nothing(story):
    before, after = story.versions["r1"], story.versions["r1-again"]
    assert {k: v for k, v in after.items() if k != "gold._audit"} == {
        k: v for k, v in before.items() if k != "gold._audit"
    }
    assert set(before) >= {f"{layer}.{t}" for layer in ("silver", "gold") for t in TABLES}


def test_an_incremental_load_moves_only_its_rows(story):
    r1 = {r["SalesOrderID"]: r for r in story.steps["r1"][HEADER.table][0]}
    r2 = {r["SalesOrderID"]: r for r in story.steps["r2"][HEADER.table][0]}
    assert {k: r2[k] for k in (1, 3)} == {k: {**r1[k], "CreditCardApprovalCode": None} for k in (1, 3)}
    assert (r2[2]["_load_id"], r2[2]["_run_id"], r2[2]["CreditCardApprovalCode"]) == (L2, "r2", "A-1")
    counts = story.audits["r2"]
    assert counts[("silver", HEADER.table, "rows_inserted")] == 1
    assert counts[("silver", HEADER.table, "rows_updated")] == 1
    assert counts[("silver", HEADER.table, "columns_added")] == 1
    assert counts[("silver", DETAIL.table, "rows_updated")] == 1
    assert counts[("silver", PHOTO.table, "rows_written")] == 1
    assert counts[("gold", HEADER.table, "rows_written")] == 4


def test_an_added_column_evolves_silver_and_gold(story):
    silver_found, gold_found = story.steps["r2"][HEADER.table]
    assert all("CreditCardApprovalCode" in r for r in silver_found)
    assert sorted((r["sales_order_id"], r["credit_card_approval_code"]) for r in gold_found) == [
        (1, None),
        (2, "A-1"),
        (3, None),
        (4, None),
    ]


def test_a_re_extracted_load_is_applied_again_but_an_older_row_never_wins(story):
    rows = {r["SalesOrderID"]: r for r in story.steps["r3"][HEADER.table][0]}
    assert rows[5]["_run_id"] == "r3"
    assert rows[2]["Comment"] == "shipped"  # the re-extracted, older version of order 2 lost
    assert rows[1]["_run_id"] == "r1"  # the same row again changes nothing
    assert story.audits["r3"][("silver", HEADER.table, "rows_inserted")] == 1
    assert story.audits["r3"][("silver", HEADER.table, "rows_updated")] == 0
    changed = {k for k, v in story.versions["r3"].items() if story.versions["r2"].get(k) != v}
    assert changed == {
        "silver.sales_order_header",
        "silver._applied_loads",
        "gold.sales_order_header",
        "gold._audit",
    }


def test_loads_in_reverse_order_give_the_same_tables(story):
    def without_run(rows):
        return ordered([{k: v for k, v in r.items() if k != "_run_id"} for r in rows])

    for table in TABLES:
        assert without_run(story.steps["lake_b"][table][0]) == without_run(story.steps["r3"][table][0]), table


def test_silver_tables_have_the_change_feed_or_column_mapping_and_merge_through_deletion_vectors(
    spark, story
):
    folder = story.lake_a / "silver/adventureworks"
    details = {
        t: spark.sql(f"DESCRIBE DETAIL delta.`{folder / t}`").first().asDict()
        for t in (HEADER.table, DETAIL.table)
    }
    header, detail = details[HEADER.table], details[DETAIL.table]
    assert header["properties"].get("delta.enableChangeDataFeed") == "true"
    assert "deletionVectors" in header["tableFeatures"]
    assert detail["properties"].get("delta.columnMapping.mode") == "name"  # for "Order Qty"
    assert "deletionVectors" in detail["tableFeatures"]
    assert deletion_vectors_in_log(folder / HEADER.table) > 0
    assert deletion_vectors_in_log(folder / DETAIL.table) > 0


def test_a_bad_manifest_fails_naming_it_and_the_other_tables_go_on(story):
    assert "_loads/broken/20250102T000000.json" in story.silver_error
    assert "'other'" in story.silver_error
    assert "silver.clash" in story.versions["r4"]  # applied despite the broken table
    assert "silver.broken" not in story.versions["r4"]


def test_columns_colliding_in_snake_case_fail_gold_naming_the_table_and_both(story):
    assert "gold.clash" in story.gold_error
    assert "'OrderID'" in story.gold_error
    assert "'order_id'" in story.gold_error
    assert "gold.clash" not in story.versions["r4"]


# -- manifest checks (no Spark) ----------------------------------------------------------------------------
GOOD = {
    "table": "t",
    "source_schema": "SalesLT",
    "source_table": "T",
    "load_id": L1,
    "mode": "incremental",
    "change_column": "ModifiedDate",
    "primary_key": ["ID"],
    "columns": [{"name": "ID", "kind": "int32"}, {"name": "ModifiedDate", "kind": "timestamp"}],
    "files": ["part-x-00000.parquet"],
    "rows": 1,
}


def test_a_good_manifest_is_read():
    load = silver.parse_manifest("t", f"{L1}.json", json.dumps(GOOD))
    assert (load.mode, load.primary_key, load.change_column, load.source_table) == (
        "incremental",
        ("ID",),
        "ModifiedDate",
        "SalesLT.T",
    )
    assert load.columns == (("ID", "int32"), ("ModifiedDate", "timestamp"))
    assert (
        load.fingerprint
        != silver.parse_manifest("t", f"{L1}.json", json.dumps({**GOOD, "rows": 2})).fingerprint
    )


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"table": "u"}, "table 'u' is not the folder's 't'"),
        ({"load_id": L2}, "load_id '20250102T000000' is not the file's name"),
        ({"mode": "delta"}, "mode 'delta' is not one of"),
        ({"files": ["../../silver/x.parquet"]}, "must be a non-empty list of parquet file names"),
        ({"files": []}, "must be a non-empty list of parquet file names"),
        ({"rows": -1}, "rows -1 is not a count"),
        ({"primary_key": []}, "mode incremental needs a primary_key and a change_column"),
        ({"primary_key": ["Nope"]}, "primary_key ['Nope'] is not a list of its columns"),
        ({"change_column": "Nope"}, "change_column 'Nope' is not one of its columns"),
        (
            {"columns": [{"name": "ID", "kind": "geometry"}]},
            "column 'ID': kind 'geometry' is not one silver reads",
        ),
        ({"columns": [{"name": "ID", "kind": "decimal(40,2)"}]}, "kind 'decimal(40,2)'"),
        (
            {"columns": [{"name": "id", "kind": "int32"}, {"name": "ID", "kind": "int32"}]},
            "'ID' appears twice",
        ),
        ({"columns": [{"name": "_Run_ID", "kind": "string"}]}, "the name of an ingestion column"),
    ],
)
def test_a_manifest_that_does_not_fit_fails_naming_it(change, says):
    with pytest.raises(silver.BronzeLoadError) as caught:
        silver.parse_manifest("t", f"{L1}.json", json.dumps({**GOOD, **change}))
    assert str(caught.value).startswith(f"bronze manifest _loads/t/{L1}.json: ")
    assert says in str(caught.value)


def test_a_manifest_that_is_not_json_fails_naming_it():
    with pytest.raises(silver.BronzeLoadError, match=f"_loads/t/{L1}.json: not JSON"):
        silver.parse_manifest("t", f"{L1}.json", '{"table": "t",')
