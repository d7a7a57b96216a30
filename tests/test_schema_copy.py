"""Schema copy to bronze (lakehouse.schema_copy) against real PostgreSQL, MariaDB and SQLite:
discovery from the catalog, every row landed with its type, chunked parts, incremental windows,
schema changes and bad input. No Spark: the module's functions are called directly, the sources
are Airflow connections from ``AIRFLOW_CONN_<ID>``."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import socket
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mssql, mysql, postgresql, sqlite

from lakehouse import aw_source, schema_copy
from lakehouse.sql_ingest import Window

pytest_plugins = ["sourcedb", "mariadb"]

PIPELINE = "adventureworks"
CONN_ID = "aw_source_test"
DAY = dt.timedelta(days=1)
W1 = Window(dt.datetime(2025, 1, 1, tzinfo=dt.UTC), dt.datetime(2025, 1, 2, tzinfo=dt.UTC))
W2 = Window(W1.end, W1.end + DAY)
W3 = Window(W2.end, W2.end + DAY)
CHUNK = 4


# -- the type table --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("dialect", "type_", "kind"),
    [
        ("postgresql", postgresql.NUMERIC(19, 4), "decimal(19,4)"),
        ("postgresql", postgresql.NUMERIC(), schema_copy.UNBOUNDED_NUMERIC),
        ("postgresql", postgresql.MONEY(), "decimal(19,2)"),
        ("postgresql", postgresql.UUID(), "uuid"),
        ("postgresql", postgresql.BYTEA(), "binary"),
        ("postgresql", postgresql.JSONB(), "json"),
        ("postgresql", postgresql.JSON(), "json"),
        ("postgresql", "xml", "xml"),
        ("postgresql", postgresql.TIMESTAMP(timezone=True), "timestamptz"),
        ("postgresql", postgresql.TIMESTAMP(), "timestamp"),
        ("postgresql", postgresql.DATE(), "date"),
        ("postgresql", postgresql.TIME(), "time"),
        ("postgresql", postgresql.BOOLEAN(), "boolean"),
        ("postgresql", postgresql.SMALLINT(), "int16"),
        ("postgresql", postgresql.INTEGER(), "int32"),
        ("postgresql", postgresql.BIGINT(), "int64"),
        ("postgresql", postgresql.REAL(), "float32"),
        ("postgresql", postgresql.DOUBLE_PRECISION(), "float64"),
        ("postgresql", postgresql.INET(), "string"),
        ("postgresql", postgresql.CITEXT(), "string"),
        ("postgresql", postgresql.TEXT(), "string"),
        ("postgresql", postgresql.ENUM("a", "b", name="e"), "string"),
        ("mysql", mysql.TINYINT(display_width=1), "boolean"),
        ("mysql", mysql.BOOLEAN(), "boolean"),
        ("mysql", mysql.TINYINT(), "int16"),
        ("mysql", mysql.BIT(1), "boolean"),
        ("mysql", mysql.DATETIME(fsp=6), "timestamp"),
        ("mysql", mysql.TIMESTAMP(), "timestamptz"),
        ("mysql", mysql.BLOB(), "binary"),
        ("mysql", mysql.LONGBLOB(), "binary"),
        ("mysql", mysql.VARBINARY(16), "binary"),
        ("mysql", mysql.DECIMAL(19, 4), "decimal(19,4)"),
        ("mysql", mysql.INTEGER(unsigned=True), "int64"),
        ("mysql", mysql.BIGINT(unsigned=True), "decimal(20,0)"),
        ("mysql", mysql.FLOAT(), "float32"),
        ("mysql", mysql.DOUBLE(), "float64"),
        ("mysql", mysql.YEAR(), "int16"),
        ("mysql", mysql.ENUM("a", "b"), "string"),
        ("mysql", mysql.LONGTEXT(), "string"),
        ("mariadb", sa.UUID(), "uuid"),
        ("mariadb", mysql.TIME(), "time"),
        ("sqlite", sqlite.NUMERIC(19, 4), "decimal(19,4)"),
        ("sqlite", sqlite.BOOLEAN(), "boolean"),
        ("sqlite", sqlite.DATETIME(), "timestamp"),
        ("sqlite", sqlite.DATE(), "date"),
        ("sqlite", sqlite.BLOB(), "binary"),
        ("sqlite", sqlite.INTEGER(), "int64"),
        ("sqlite", sqlite.REAL(), "float64"),
        ("sqlite", sqlite.VARCHAR(10), "string"),
        ("mssql", mssql.MONEY(), "decimal(19,4)"),
        ("mssql", mssql.SMALLMONEY(), "decimal(10,4)"),
        ("mssql", mssql.UNIQUEIDENTIFIER(), "uuid"),
        ("mssql", mssql.BIT(), "boolean"),
        ("mssql", mssql.DATETIMEOFFSET(), "timestamptz"),
        ("mssql", mssql.XML(), "xml"),
        ("mssql", mssql.VARBINARY(100), "binary"),
        ("mssql", mssql.IMAGE(), "binary"),
        ("mssql", mssql.DATETIME2(), "timestamp"),
        ("mssql", mssql.DATETIME(), "timestamp"),
        ("mssql", mssql.SMALLDATETIME(), "timestamp"),
        ("mssql", mssql.TINYINT(), "int16"),
        ("mssql", mssql.NVARCHAR(20), "string"),
        ("mssql", mssql.NTEXT(), "string"),
        ("mssql", mssql.DECIMAL(38, 10), "decimal(38,10)"),
    ],
)
def test_kind_of(dialect, type_, kind):
    assert schema_copy.kind_of(dialect, type_) == kind
    if kind not in ("xml",) and not isinstance(type_, str):
        schema_copy.arrow_type(kind)  # every kind has a bronze type


@pytest.mark.parametrize(
    ("dialect", "type_"),
    [
        ("postgresql", postgresql.INT4RANGE()),
        ("postgresql", postgresql.ARRAY(postgresql.INTERVAL())),
        ("postgresql", postgresql.INTERVAL()),
        ("postgresql", postgresql.TIME(timezone=True)),
        ("postgresql", postgresql.NUMERIC(50, 2)),
        ("postgresql", "tsvector"),
        ("mysql", mysql.BIT(8)),
        ("mssql", mssql.SQL_VARIANT()),
        ("sqlite", sa.types.NullType()),
    ],
)
def test_kind_of_refuses(dialect, type_):
    with pytest.raises(schema_copy.UnmappableTypeError):
        schema_copy.kind_of(dialect, type_)


def test_arrow_types_keep_precision_and_zone():
    assert schema_copy.arrow_type("decimal(19,4)") == pa.decimal128(19, 4)
    assert schema_copy.arrow_type("timestamptz") == pa.timestamp("us", tz="UTC")
    assert schema_copy.arrow_type("timestamp") == pa.timestamp("us")
    assert schema_copy.arrow_type("uuid") == pa.string()
    convert = schema_copy.converter("decimal(19,4)")
    assert str(convert(decimal.Decimal("1.5"))) == "1.5000"
    with pytest.raises(ValueError, match="more than 4 decimal places"):
        convert(decimal.Decimal("1.00001"))
    with pytest.raises(ValueError, match="does not fit"):
        schema_copy.converter("decimal(5,2)")(decimal.Decimal("12345.6"))
    instant = dt.datetime(2025, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert schema_copy.converter("timestamptz")(instant) == dt.datetime(2025, 1, 1, 10, tzinfo=dt.UTC)
    assert schema_copy.converter("timestamp", "Europe/Zurich")(instant) == dt.datetime(2025, 1, 1, 11)
    guid = uuid.UUID("6F9619FF-8B86-D011-B42D-00C04FC964FF")
    assert schema_copy.converter("uuid")(guid) == "6f9619ff-8b86-d011-b42d-00c04fc964ff"
    assert schema_copy.converter("boolean")(1) is True
    with pytest.raises(ValueError, match="not a boolean"):
        schema_copy.converter("boolean")(2)
    assert schema_copy.converter("binary")(memoryview(b"\x00\xff")) == b"\x00\xff"
    assert schema_copy.converter("time")(dt.timedelta(hours=13, seconds=5)) == dt.time(13, 0, 5)


# -- sources ---------------------------------------------------------------------------------
class Source:
    def __init__(self, db, monkeypatch, schema: str | None, dialect: str):
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", db.conn)
        self.db, self.schema, self.dialect = db, schema, dialect
        self.engine = db.engine()

    def config(self, **extra) -> dict:
        return {
            "conn_id": CONN_ID,
            "schema": self.schema,
            "include": ["*"],
            "exclude": [],
            "change_columns": ["ModifiedDate", "modified_date", "updated_at"],
            "incremental": {},
            "timezone": "UTC",
            "chunk_rows": CHUNK,
            **extra,
        }

    def execute(self, statement: str) -> None:
        with self.engine.begin() as conn:
            conn.exec_driver_sql(statement)


@pytest.fixture(params=["postgresql", "mariadb", "sqlite"])
def source(request, lake, monkeypatch):
    if request.param == "postgresql":
        db = request.getfixturevalue("postgres_source")
        src = Source(db, monkeypatch, "SalesLT", "postgresql")
        src.execute('CREATE SCHEMA "SalesLT"')
    elif request.param == "mariadb":
        db = request.getfixturevalue("mariadb_source")
        src = Source(db, monkeypatch, db.name, "mariadb")
    else:
        src = Source(request.getfixturevalue("sqlite_source"), monkeypatch, None, "sqlite")
    return src


@pytest.fixture
def pg(request, lake, monkeypatch):
    db = request.getfixturevalue("postgres_source")
    src = Source(db, monkeypatch, "saleslt", "postgresql")
    src.execute("CREATE SCHEMA saleslt")
    return src


def load(lake, table: str, load_id: str) -> tuple[dict, pa.Table]:
    """A load's manifest and its rows, read from the files the manifest lists."""
    manifest = json.loads((lake / "bronze" / PIPELINE / "_loads" / table / f"{load_id}.json").read_text())
    folder = lake / "bronze" / PIPELINE / table / load_id
    assert sorted(p.name for p in folder.iterdir()) == sorted(manifest["files"]), "unlisted parts left"
    parts = [pq.read_table(folder / name) for name in manifest["files"]]
    data = pa.concat_tables(parts)
    assert data.num_rows == manifest["rows"]
    return manifest, data


def expected_value(value, kind: str):
    """A source value as bronze keeps it, for comparison (the source's own type where it has one)."""
    if value is None:
        return None
    if isinstance(value, uuid.UUID):
        return str(value) if kind == "uuid" else value.hex  # SQLite keeps a uuid as CHAR(32) hex
    if isinstance(value, dt.datetime):
        if kind == "timestamp" and value.tzinfo is not None:
            return value.astimezone(dt.UTC).replace(tzinfo=None)  # source.timezone is UTC
        if kind == "timestamptz" and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
    if kind == "boolean" and isinstance(value, int) and not isinstance(value, bool):
        assert value in (0, 1)
        return bool(value)
    return value


def assert_same_rows(manifest: dict, data: pa.Table, source_rows: list[dict]) -> None:
    kinds = {c["name"]: c["kind"] for c in manifest["columns"]}
    landed = data.to_pylist()
    expected = [{name: expected_value(row.get(name), kinds[name]) for name in kinds} for row in source_rows]
    keys = manifest["primary_key"] or list(kinds)

    def order(row):
        return tuple((v is None, str(v)) for v in (row[k] for k in keys))

    assert sorted(landed, key=order) == sorted(expected, key=order), manifest["table"]
    for row in landed:  # the types, not only equal values (True == 1, Decimal("1") == 1)
        for name, value in row.items():
            if value is not None and kinds[name] == "boolean":
                assert type(value) is bool
            if value is not None and kinds[name].startswith("decimal"):
                assert isinstance(value, decimal.Decimal)


def copy_all(src: Source, windows: list[Window], run_id: str, **config) -> dict[str, dict]:
    source = src.config(**config)
    found = schema_copy.discover(CONN_ID, source)
    return {
        spec["table"]: schema_copy.copy_table(PIPELINE, spec, source, windows, run_id)
        for spec in found["tables"]
    }


# -- every row, every type -------------------------------------------------------------------
def test_discovery_and_every_row_landed(source, lake):
    counts = aw_source.create(source.engine, source.schema)
    found = schema_copy.discover(CONN_ID, source.config())
    specs = {spec["source_table"]: spec for spec in found["tables"]}
    assert sorted(specs) == sorted(aw_source.TABLES)
    assert specs["SalesOrderDetail"]["table"] == "sales_order_detail"
    assert specs["CustomerAddress"]["primary_key"] == ["CustomerID", "AddressID"]
    assert specs["SalesOrderDetail"]["primary_key"] == ["SalesOrderID", "SalesOrderDetailID"]
    assert specs["SalesOrderHeader"]["mode"] == "incremental"
    assert specs["SalesOrderHeader"]["change_column"] == "ModifiedDate"
    assert specs["ErrorLog"]["mode"] == "full"
    assert specs["ErrorLog"]["primary_key"] == []
    assert "no primary key" in specs["ErrorLog"]["reason"]
    kinds = {(t, c["name"]): c["kind"] for t, s in specs.items() for c in s["columns"]}
    assert kinds["Product", "ListPrice"] == "decimal(19,4)"
    assert kinds["SalesOrderDetail", "LineTotal"] == "decimal(38,6)"
    assert kinds["Customer", "PasswordHash"] == "binary"
    assert kinds["Customer", "NameStyle"] == "boolean"
    assert kinds["Product", "SellStartDate"] == "timestamp"
    assert kinds["SalesOrderHeader", "DueDate"] == "date"
    nullable = {(t, c["name"]): c["nullable"] for t, s in specs.items() for c in s["columns"]}
    assert nullable["Customer", "MiddleName"]
    assert not nullable["Customer", "LastName"]
    if source.dialect == "sqlite":  # no zone-aware type, no uuid type: naive UTC text, CHAR(32)
        assert kinds["SalesOrderHeader", "OrderDate"] == "timestamp"
        assert kinds["Customer", "rowguid"] == "string"
    else:
        assert kinds["SalesOrderHeader", "OrderDate"] == "timestamptz"
        assert kinds["Customer", "rowguid"] == "uuid"
    if source.dialect == "postgresql":
        assert kinds["ProductModel", "CatalogDescription"] == "xml"

    summaries = {
        spec["table"]: schema_copy.copy_table(PIPELINE, spec, source.config(), [W1], "run-1")
        for spec in found["tables"]
    }
    generated = aw_source.rows()
    for spec in found["tables"]:
        manifest, data = load(lake, spec["table"], W1.wid)
        assert manifest["rows"] == counts[spec["source_table"]] == summaries[spec["table"]]["rows"]
        assert manifest["mode"] == ("full" if spec["mode"] == "full" else "initial")
        assert manifest["window_start"] is None
        assert manifest["window_end"] == W1.end.isoformat()
        assert manifest["load_id"] == "20250101T000000"
        assert manifest["run_id"] == "run-1"
        assert len(manifest["files"]) == max(1, math.ceil(manifest["rows"] / CHUNK))  # one part per chunk
        assert_same_rows(manifest, data, generated[spec["source_table"]])
    _, header = load(lake, "sales_order_header", W1.wid)
    assert header.schema.field("SubTotal").type == pa.decimal128(19, 4)
    assert header.schema.field("DueDate").type == pa.date32()
    if source.dialect != "sqlite":
        assert header.schema.field("OrderDate").type == pa.timestamp("us", tz="UTC")
    _, customer = load(lake, "customer", W1.wid)
    assert customer.schema.field("PasswordHash").type == pa.binary()
    assert customer.schema.field("NameStyle").type == pa.bool_()
    # and the same as the database returns them now (read_all, the tests' view of the source)
    now = aw_source.read_all(source.engine, source.schema)
    for spec in found["tables"]:
        manifest, data = load(lake, spec["table"], W1.wid)
        assert_same_rows(manifest, data, now[spec["source_table"]])


# -- incremental windows, schema changes -----------------------------------------------------
def test_incremental_windows_and_schema_changes(source, lake):
    aw_source.create(source.engine, source.schema)
    first = copy_all(source, [W1], "run-1")
    assert first["customer"]["mode"] == "initial"
    assert first["customer"]["replaced"] is None
    manifests = {
        t: (lake / "bronze" / PIPELINE / "_loads" / t / f"{W1.wid}.json").read_bytes() for t in first
    }
    again = copy_all(source, [W1], "run-1-again")  # the same rows again: every landed load is kept
    assert {t: s["status"] for t, s in again.items()} == dict.fromkeys(first, "unchanged")
    assert again["customer"]["files"] == first["customer"]["files"]
    assert {
        t: (lake / "bronze" / PIPELINE / "_loads" / t / f"{W1.wid}.json").read_bytes() for t in first
    } == (manifests)
    assert load(lake, "customer", W1.wid)[0]["run_id"] == "run-1"  # the other attempt's parts are gone
    # Changes stamped exactly on the boundary W1.end == W2.start: they belong to W2, not W1.
    changed = aw_source.apply_changes(source.engine, source.schema, W2.start)
    rerun = copy_all(source, [W1], "run-1-rerun")
    assert rerun["customer"]["rows"] == first["customer"]["rows"] - 2  # two customers moved to W2
    assert 1 not in load(lake, "customer", W1.wid)[1].column("CustomerID").to_pylist()
    assert rerun["customer"]["status"] == "landed"
    assert rerun["customer"]["replaced"] == first["customer"]["rows"]
    assert set(rerun["customer"]["files"]).isdisjoint(
        first["customer"]["files"]
    )  # old parts deleted (load())
    second = copy_all(source, [W2], "run-2")
    assert {t: s["rows"] for t, s in second.items()} == {
        "address": 0,
        "customer": 3,
        "customer_address": 0,
        "error_log": len(aw_source.rows()["ErrorLog"]),  # full every run
        "product": 0,
        "product_category": 0,
        "product_model": 0,
        "sales_order_detail": 1,
        "sales_order_header": 2,
    }
    manifest, data = load(lake, "customer", W2.wid)
    assert manifest["mode"] == "incremental"
    assert manifest["window_start"] == W2.start.isoformat()
    assert sorted(data.column("CustomerID").to_pylist()) == sorted(changed["Customer"])
    now = {row["CustomerID"]: row for row in aw_source.read_all(source.engine, source.schema)["Customer"]}
    assert_same_rows(manifest, data, [now[key] for key in changed["Customer"]])
    assert manifest["max_change"] == "2025-01-02T00:00:00"
    assert data.column("LastName").to_pylist().count("Changed 1") == 1
    _, empty = load(lake, "product", W2.wid)  # an empty window still has its schema
    assert empty.num_rows == 0
    assert empty.schema.field("ListPrice").type == pa.decimal128(19, 4)

    # A table and a column added between two runs: discovered, copied, no configuration.
    aw_source.add_table(source.engine, source.schema, W2.start + dt.timedelta(hours=1))
    aw_source.add_column(source.engine, source.schema)
    third = copy_all(source, [W3], "run-3")
    assert third["product_description"]["mode"] == "initial"
    assert third["product_description"]["rows"] == 5
    assert third["customer"]["mode"] == "incremental"
    assert third["customer"]["rows"] == 0
    manifest, data = load(lake, "customer", W3.wid)
    assert "Suffix" in data.column_names
    assert manifest["columns"][-1]["name"] == "Suffix"

    # A table dropped from the source: reported, its lake folders kept.
    source.execute(f"DROP TABLE {_qualified(source, aw_source.ADDED_TABLE)}")
    found = schema_copy.discover(CONN_ID, source.config())
    assert schema_copy.dropped_tables(PIPELINE, found) == ["product_description"]
    assert (lake / "bronze" / PIPELINE / "product_description" / W3.wid).is_dir()
    excluded = schema_copy.discover(CONN_ID, source.config(exclude=["Error*"]))
    assert "error_log" in excluded["excluded"]
    assert "error_log" not in [s["table"] for s in excluded["tables"]]
    assert schema_copy.dropped_tables(PIPELINE, excluded) == ["product_description"]  # excluded is not gone


def _qualified(source: Source, table: str) -> str:
    prep = source.engine.dialect.identifier_preparer
    return f"{prep.quote_schema(source.schema)}.{prep.quote(table)}" if source.schema else prep.quote(table)


# -- bad input -------------------------------------------------------------------------------
def test_unmappable_types_fail_naming_table_column_and_type(pg):
    pg.execute("CREATE TABLE saleslt.bookings (id int PRIMARY KEY, seats int4range, pauses interval[])")
    pg.execute("CREATE TABLE saleslt.fine (id int PRIMARY KEY, price money, doc xml, extra jsonb)")
    with pytest.raises(schema_copy.SchemaCopyError) as error:
        schema_copy.discover(CONN_ID, pg.config())
    message = str(error.value)
    assert "saleslt.bookings.seats: type INT4RANGE cannot be mapped" in message
    assert "saleslt.bookings.pauses: type INTERVAL[] cannot be mapped" in message
    assert "fine" not in message
    found = schema_copy.discover(CONN_ID, pg.config(exclude=["book*"]))
    assert [s["table"] for s in found["tables"]] == ["fine"]
    kinds = {c["name"]: c["kind"] for c in found["tables"][0]["columns"]}
    assert kinds == {"id": "int32", "price": "decimal(19,2)", "doc": "xml", "extra": "json"}


def test_money_xml_json_values(pg, lake):
    pg.execute("CREATE TABLE saleslt.fine (id int PRIMARY KEY, price money, doc xml, extra jsonb)")
    pg.execute(
        "INSERT INTO saleslt.fine VALUES (1, 1234567.89, '<a b=\"1\">x &amp; y</a>', '{\"k\": [1, 2]}'), "
        "(2, -0.01, NULL, NULL)"
    )
    found = schema_copy.discover(CONN_ID, pg.config())
    schema_copy.copy_table(PIPELINE, found["tables"][0], pg.config(), [W1], "run-1")
    _, data = load(lake, "fine", W1.wid)
    assert data.schema.field("price").type == pa.decimal128(19, 2)
    assert data.to_pylist() == [
        {
            "id": 1,
            "price": decimal.Decimal("1234567.89"),
            "doc": '<a b="1">x &amp; y</a>',
            "extra": '{"k": [1, 2]}',
        },
        {"id": 2, "price": decimal.Decimal("-0.01"), "doc": None, "extra": None},
    ]


@pytest.mark.parametrize("schema", ["x; DROP TABLE y", '"', "nope"])
def test_hostile_or_unknown_schema(pg, schema):
    pg.execute("CREATE TABLE saleslt.y (id int PRIMARY KEY)")
    with pytest.raises(schema_copy.SchemaCopyError, match="source schema") as error:
        schema_copy.discover(CONN_ID, pg.config(schema=schema))
    assert repr(schema) in str(error.value)
    with pg.engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM saleslt.y")) == 0  # still there


def test_hostile_table_names(pg, lake):
    hostile = 'Robert"); DROP TABLE saleslt.ok;--'
    pg.execute(f'CREATE TABLE saleslt."{hostile.replace(chr(34), chr(34) * 2)}" (id int PRIMARY KEY)')
    pg.execute(
        'CREATE TABLE saleslt."Order Details" ("Order ID" int PRIMARY KEY, "Unit""Price" numeric(9,2))'
    )
    pg.execute("CREATE TABLE saleslt.ok (id int PRIMARY KEY)")
    pg.execute('CREATE TABLE saleslt."--;" (id int PRIMARY KEY)')  # no lake name can come of it
    pg.execute('INSERT INTO saleslt."Order Details" VALUES (1, 2.50)')
    with pytest.raises(schema_copy.SchemaCopyError, match="gives no lake name") as error:
        schema_copy.discover(CONN_ID, pg.config(include=["*"]))
    assert "saleslt.--;: table name '--;' gives no lake name" in str(error.value)
    found = schema_copy.discover(CONN_ID, pg.config(exclude=["-*"]))
    specs = {s["table"]: s for s in found["tables"]}
    assert sorted(specs) == ["ok", "order_details", "robert_drop_table_saleslt_ok"]
    for spec in specs.values():
        schema_copy.copy_table(PIPELINE, spec, pg.config(), [W1], "run-1")
    assert load(lake, "robert_drop_table_saleslt_ok", W1.wid)[0]["source_table"] == hostile
    _, data = load(lake, "order_details", W1.wid)
    assert data.to_pylist() == [{"Order ID": 1, 'Unit"Price': decimal.Decimal("2.50")}]
    with pg.engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM saleslt.ok")) == 0  # still there
    with pytest.raises(schema_copy.SchemaCopyError, match="patterns"):
        schema_copy.discover(CONN_ID, pg.config(include=["x'; --"]))


def test_duplicate_lake_names_refused(pg):
    pg.execute('CREATE TABLE saleslt."SalesOrder" (id int PRIMARY KEY)')
    pg.execute("CREATE TABLE saleslt.sales_order (id int PRIMARY KEY)")
    with pytest.raises(
        schema_copy.SchemaCopyError, match="SalesOrder, sales_order all give the lake name 'sales_order'"
    ):
        schema_copy.discover(CONN_ID, pg.config())


@pytest.mark.parametrize("conn_type", ["postgres", "mysql"])
def test_unreachable_source_names_the_connection(monkeypatch, lake, conn_type):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    conn = {"conn_type": conn_type, "host": "127.0.0.1", "port": port, "login": "someone", "schema": "db"}
    conn["password"] = "s3cret-pw"
    monkeypatch.setenv("AIRFLOW_CONN_AW_DOWN", json.dumps(conn))
    with pytest.raises(schema_copy.SourceUnreachableError) as error:
        schema_copy.discover("aw_down", {"conn_id": "aw_down", "schema": "saleslt"})
    dialect = "postgresql" if conn_type == "postgres" else "mysql"
    assert f"source connection 'aw_down' ({dialect} at 127.0.0.1:{port})" in str(error.value)
    assert "s3cret-pw" not in str(error.value)


def test_table_or_column_dropped_mid_run(pg, lake):
    aw_source.create(pg.engine, "saleslt")
    found = {s["source_table"]: s for s in schema_copy.discover(CONN_ID, pg.config())["tables"]}
    pg.execute('DROP TABLE saleslt."ErrorLog"')
    pg.execute('ALTER TABLE saleslt."Customer" DROP COLUMN "MiddleName"')
    with pytest.raises(schema_copy.SchemaCopyError, match="dropped after discovery") as error:
        schema_copy.copy_table(PIPELINE, found["ErrorLog"], pg.config(), [W1], "run-1")
    assert "saleslt.ErrorLog (lake table error_log)" in str(error.value)
    with pytest.raises(schema_copy.SchemaCopyError, match="column\\(s\\) MiddleName dropped after discovery"):
        schema_copy.copy_table(PIPELINE, found["Customer"], pg.config(), [W1], "run-1")
    assert not (lake / "bronze" / PIPELINE / "_loads" / "error_log").exists()
    assert not (lake / "bronze" / PIPELINE / "_loads" / "customer").exists()


def test_bad_value_fails_naming_row_and_next_attempt_cleans_up(sqlite_source, lake, monkeypatch):
    src = Source(sqlite_source, monkeypatch, None, "sqlite")
    src.execute("CREATE TABLE Items (ItemID INTEGER PRIMARY KEY, Qty INTEGER, Price NUMERIC(9,2))")
    src.execute(
        "INSERT INTO Items VALUES (1, 1, 1.50), (2, 2, 2.25), (3, 3, 3.00), (4, 4, 4.10), (5, 'five', 5.00)"
    )
    spec = schema_copy.discover(CONN_ID, src.config())["tables"][0]
    with pytest.raises(
        schema_copy.SchemaCopyError, match=r"main\.Items\.Qty of row \{'ItemID': 5\}: not an integer"
    ):
        schema_copy.copy_table(PIPELINE, spec, src.config(chunk_rows=2), [W1], "run-1")
    folder = lake / "bronze" / PIPELINE / "items" / W1.wid
    assert len(list(folder.iterdir())) == 2  # the failed attempt's parts, listed nowhere
    assert not (lake / "bronze" / PIPELINE / "_loads" / "items").exists()
    src.execute("UPDATE Items SET Qty = 5 WHERE ItemID = 5")
    schema_copy.copy_table(PIPELINE, spec, src.config(chunk_rows=2), [W1], "run-1")
    manifest, data = load(lake, "items", W1.wid)  # only the listed parts are left
    assert len(manifest["files"]) == 3
    assert data.column("Qty").to_pylist() == [1, 2, 3, 4, 5]
    assert data.column("Price").to_pylist()[3] == decimal.Decimal("4.10")


# -- an Azure lake ---------------------------------------------------------------------------
def test_copy_to_azure_storage(azurite, sqlite_source, monkeypatch):
    """The same layout written through ObjectStoragePath (abfs://, adlfs) on Azurite; read back with
    azure-storage-blob, not the code under test."""
    import contextlib
    import io
    import logging
    import secrets

    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import BlobServiceClient

    logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    with contextlib.suppress(ResourceExistsError):
        service.create_container("awlake")
    prefix = f"t{secrets.token_hex(4)}"
    monkeypatch.setenv("LAKE_ROOT", f"abfs://awlake/{prefix}")
    monkeypatch.setenv("LAKE_CONN_ID", "aw_lake")
    monkeypatch.setenv("AIRFLOW_CONN_AW_LAKE", azurite.airflow_connection())
    src = Source(sqlite_source, monkeypatch, None, "sqlite")
    aw_source.create(src.engine)
    found = schema_copy.discover(CONN_ID, src.config())
    spec = next(s for s in found["tables"] if s["table"] == "sales_order_header")
    first = schema_copy.copy_table(PIPELINE, spec, src.config(), [W1], "run-1")
    with src.engine.begin() as conn:  # a row changed in the source (its ModifiedDate left as it was)
        conn.exec_driver_sql(
            'UPDATE "SalesOrderHeader" SET "Comment" = \'changed\' '
            'WHERE "SalesOrderID" = (SELECT MIN("SalesOrderID") FROM "SalesOrderHeader")'
        )
    second = schema_copy.copy_table(PIPELINE, spec, src.config(), [W1], "run-2")  # replaces the load
    container = service.get_container_client("awlake")
    names = sorted(b.name for b in container.list_blobs(name_starts_with=f"{prefix}/bronze/{PIPELINE}/"))
    base = f"{prefix}/bronze/{PIPELINE}"
    parts = [f"{base}/sales_order_header/{W1.wid}/{name}" for name in second["files"]]
    assert [n for n in names if not n.endswith("/")] == sorted(
        [*parts, f"{base}/_loads/sales_order_header/{W1.wid}.json"]
    ), "the first attempt's parts are deleted"
    assert set(first["files"]).isdisjoint(second["files"])
    manifest = json.loads(
        container.download_blob(f"{base}/_loads/sales_order_header/{W1.wid}.json").readall()
    )
    assert manifest["run_id"] == "run-2"
    assert manifest["rows"] == 15
    data = pa.concat_tables(pq.read_table(io.BytesIO(container.download_blob(p).readall())) for p in parts)
    assert_same_rows(manifest, data, aw_source.read_all(src.engine)["SalesOrderHeader"])
    assert "changed" in data.column("Comment").to_pylist()
    assert schema_copy.dropped_tables(PIPELINE, found) == []
    assert schema_copy.dropped_tables(PIPELINE, {"tables": [], "excluded": []}) == ["sales_order_header"]


def test_naive_timestamps_in_the_source_time_zone(pg, lake):
    """source.timezone: naive change values are wall times there, so the UTC windows are shifted."""
    pg.execute("CREATE TABLE saleslt.notes (id int PRIMARY KEY, body text, modified_date timestamp NOT NULL)")
    pg.execute(
        "INSERT INTO saleslt.notes VALUES (1, 'a', '2024-12-31 23:00'), "
        "(2, 'b', '2025-01-01 18:59:59.999999'), (3, 'c', '2025-01-01 19:00'), "
        "(4, 'd', '2025-01-02 18:59:59'), (5, 'e', '2025-01-02 19:00')"
    )
    config = pg.config(timezone="America/New_York")  # UTC-5 in January
    spec = schema_copy.discover(CONN_ID, config)["tables"][0]
    assert spec["mode"] == "incremental"
    assert spec["change_column"] == "modified_date"
    schema_copy.copy_table(PIPELINE, spec, config, [W1], "run-1")
    schema_copy.copy_table(PIPELINE, spec, config, [W2], "run-2")
    initial, w1 = load(lake, "notes", W1.wid)
    incremental, w2 = load(lake, "notes", W2.wid)
    assert initial["mode"] == "initial"
    assert w1.column("id").to_pylist() == [1, 2]  # before 2025-01-02 00:00 UTC
    assert incremental["mode"] == "incremental"
    assert w2.column("id").to_pylist() == [3, 4]
    assert w2.column("modified_date").to_pylist()[0] == dt.datetime(2025, 1, 1, 19)  # the wall time, kept
    assert incremental["max_change"] == "2025-01-02T18:59:59"
