"""Serving: gold Delta tables (written here with delta-rs) published into a real PostgreSQL database
(a fresh one per test, ``sourcedb``), and the Synapse / Databricks SQL checked by parsing it with
sqlglot in its dialect.
"""

from __future__ import annotations

import datetime as dt
import shutil
import threading
from decimal import Decimal

import pytest
import sqlglot
from sqlglot import exp
from sqlglot.dialects.tsql import TSQL
from sqlglot.parsers.tsql import TSQLParser
from sqlglot.tokens import TokenType

from lakehouse import serving

pytest_plugins = ["sourcedb"]

PIPELINE = "adventureworks"
SCHEMA = "adventureworks"
CONN_ID = "adventureworks_warehouse"
UTC = dt.UTC


# -- helpers ----------------------------------------------------------------------------------------
def write_gold(lake, table: str, data, mode: str = "overwrite") -> None:
    from deltalake import write_deltalake

    write_deltalake(str(lake / "gold" / PIPELINE / table), data, mode=mode)


def customer_table(n: int = 5, offset: int = 0):
    import pyarrow as pa

    ids = list(range(offset, offset + n))
    tz = dt.timezone(dt.timedelta(hours=-5))
    return pa.table(
        {
            "customer_id": pa.array(ids, pa.int64()),
            "small": pa.array([None if i % 3 == 0 else i - 2 for i in ids], pa.int16()),
            "total_due": pa.array(
                [None if i == 1 else Decimal(f"{i * 1234567}.{i:04d}") * (-1 if i % 2 else 1) for i in ids],
                pa.decimal128(19, 4),
            ),
            "modified_at": pa.array(
                [
                    dt.datetime(2025, 3, 30, 1, 30, tzinfo=tz) + dt.timedelta(hours=i) if i != 2 else None
                    for i in ids
                ],
                pa.timestamp("us", tz="UTC"),
            ),
            "local_time": pa.array(
                [dt.datetime(2025, 1, 1, 12, 0, 0, 123456) + dt.timedelta(days=i) for i in ids],
                pa.timestamp("us"),
            ),
            "birth": pa.array([dt.date(1990, 1, 1) + dt.timedelta(days=i) if i != 3 else None for i in ids]),
            "photo": pa.array(
                [None if i == 0 else bytes([i % 256, 0, 255, 92, 9, 10]) for i in ids], pa.binary()
            ),
            "active": pa.array([None if i == 4 else i % 2 == 0 for i in ids], pa.bool_()),
            "ratio": pa.array([None if i == 2 else i / 3 for i in ids], pa.float64()),
            "name": pa.array(
                [
                    None
                    if i == 3
                    else ["", "tab\there", "line\nbreak\r\\N", 'O\'Brien "x" \\ back', "Zoë 東京"][i % 5]
                    for i in ids
                ],
                pa.string(),
            ),
        }
    )


def product_table():
    import pyarrow as pa

    return pa.table({"product_id": pa.array([1, 2], pa.int32()), "name": ["bike", "helmet"]})


@pytest.fixture
def warehouse(postgres_source, lake, monkeypatch):
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", postgres_source.conn)
    return postgres_source


def query(warehouse, sql: str, params=()):
    import psycopg2

    conn = psycopg2.connect(warehouse.url.replace("postgresql+psycopg2", "postgresql"))
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    finally:
        conn.close()


def warehouse_rows(warehouse, table: str, order: str) -> list[dict]:
    import psycopg2
    import psycopg2.extras

    conn = psycopg2.connect(warehouse.url.replace("postgresql+psycopg2", "postgresql"))
    try:
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cursor:
            cursor.execute(f'SELECT * FROM {SCHEMA}."{table}" ORDER BY {order}')
            rows = [dict(r) for r in cursor.fetchall()]
    finally:
        conn.close()
    for row in rows:
        for key, value in row.items():
            if isinstance(value, memoryview):
                row[key] = bytes(value)
    return rows


def oid(warehouse, table: str) -> int:
    ((found,),) = query(warehouse, "SELECT %s::regclass::oid", (f'{SCHEMA}."{table}"',))
    return found


# -- PostgreSQL ---------------------------------------------------------------------------------------
def test_publish_copies_every_row_with_its_type(warehouse, lake):
    source = customer_table(n=12)
    write_gold(lake, "customer", source)
    write_gold(lake, "product", product_table())
    (lake / "gold" / PIPELINE / "_audit").mkdir(parents=True)  # the pipeline's own: never published
    assert serving.gold_tables(PIPELINE) == ["customer", "product"]

    result = serving.publish_postgres(CONN_ID, PIPELINE, SCHEMA)
    assert result == {"published": {"customer": 12, "product": 2}, "unchanged": [], "kept": []}

    expected = source.to_pylist()
    assert warehouse_rows(warehouse, "customer", "customer_id") == expected
    assert warehouse_rows(warehouse, "product", "product_id") == product_table().to_pylist()
    # the tricky values survived: negative decimals, a tz instant, bytes with tab/newline/backslash
    assert expected[3]["total_due"] == Decimal("-3703701.0003")
    assert expected[5]["photo"] == bytes([5, 0, 255, 92, 9, 10])
    types = dict(
        query(
            warehouse,
            "SELECT column_name, format_type(atttypid, atttypmod) FROM information_schema.columns c "
            "JOIN pg_attribute a ON a.attrelid = %s::regclass AND a.attname = c.column_name "
            "WHERE table_schema = %s AND table_name = 'customer'",
            (f"{SCHEMA}.customer", SCHEMA),
        )
    )
    assert types == {
        "customer_id": "bigint",
        "small": "smallint",
        "total_due": "numeric(19,4)",
        "modified_at": "timestamp with time zone",
        "local_time": "timestamp without time zone",
        "birth": "date",
        "photo": "bytea",
        "active": "boolean",
        "ratio": "double precision",
        "name": "text",
    }
    published = query(
        warehouse, f"SELECT table_name, delta_version, row_count FROM {SCHEMA}._published ORDER BY 1"
    )
    assert published == [("customer", 0, 12), ("product", 0, 2)]
    ((comment,),) = query(warehouse, "SELECT obj_description(%s::regclass)", (f"{SCHEMA}.customer",))
    assert comment.endswith("/gold/adventureworks/customer, Delta version 0")


def test_unchanged_tables_are_not_reloaded_and_changed_ones_are(warehouse, lake):
    write_gold(lake, "customer", customer_table(n=4))
    write_gold(lake, "product", product_table())
    serving.publish_postgres(CONN_ID, PIPELINE, SCHEMA)
    first = {t: oid(warehouse, t) for t in ("customer", "product")}

    again = serving.publish_postgres(CONN_ID, PIPELINE, SCHEMA)
    assert again == {"published": {}, "unchanged": ["customer", "product"], "kept": []}
    assert {t: oid(warehouse, t) for t in first} == first  # the same tables: nothing reloaded

    write_gold(lake, "customer", customer_table(n=3, offset=100), mode="append")
    third = serving.publish_postgres(CONN_ID, PIPELINE, SCHEMA)
    assert third == {"published": {"customer": 7}, "unchanged": ["product"], "kept": []}
    assert oid(warehouse, "customer") != first["customer"]
    assert oid(warehouse, "product") == first["product"]
    assert [r["customer_id"] for r in warehouse_rows(warehouse, "customer", "customer_id")] == [
        0,
        1,
        2,
        3,
        100,
        101,
        102,
    ]

    # a warehouse table dropped by hand is published again though gold did not change
    query_commit(warehouse, f"DROP TABLE {SCHEMA}.product")
    fourth = serving.publish_postgres(CONN_ID, PIPELINE, SCHEMA, ["product"])
    assert fourth["published"] == {"product": 2}


def query_commit(warehouse, sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect(warehouse.url.replace("postgresql+psycopg2", "postgresql"))
    try:
        with conn, conn.cursor() as cursor:
            cursor.execute(sql)
    finally:
        conn.close()


def test_publish_reads_the_released_version(warehouse, lake):
    """A gold release (``_releases``) pins each table's version: a table written after it is
    published as released, not as it is now."""
    import pyarrow as pa

    write_gold(lake, "product", product_table())  # version 0
    write_gold(lake, "product", pa.table({"product_id": pa.array([9], pa.int32()), "name": ["late"]}))
    releases = pa.table(
        {
            "release": pa.array([1], pa.int64()),
            "run_id": ["run-1"],
            "tables": pa.array([[("product", 0)]], pa.map_(pa.string(), pa.int64())),
        }
    )
    write_gold(lake, "_releases", releases)
    assert serving.publish_postgres(CONN_ID, PIPELINE, SCHEMA)["published"] == {"product": 2}
    assert [r["name"] for r in warehouse_rows(warehouse, "product", "product_id")] == ["bike", "helmet"]


def test_a_table_gone_from_gold_stays_in_the_warehouse(warehouse, lake):
    write_gold(lake, "customer", customer_table(n=3))
    write_gold(lake, "product", product_table())
    serving.publish_postgres(CONN_ID, PIPELINE, SCHEMA)
    shutil.rmtree(lake / "gold" / PIPELINE / "product")

    result = serving.publish_postgres(CONN_ID, PIPELINE, SCHEMA)
    assert result == {"published": {}, "unchanged": ["customer"], "kept": ["product"]}
    assert len(warehouse_rows(warehouse, "product", "product_id")) == 2
    with pytest.raises(ValueError, match="no gold table product under gold/adventureworks/"):
        serving.publish_postgres(CONN_ID, PIPELINE, SCHEMA, ["product"])


def test_readers_see_the_old_rows_or_the_new_never_a_half_loaded_or_missing_table(warehouse, lake):
    import psycopg2
    import pyarrow as pa

    old_rows, new_rows = 1_000, 120_000
    write_gold(lake, "big", pa.table({"id": pa.array(range(old_rows), pa.int64()), "v": ["x"] * old_rows}))
    serving.publish_postgres(CONN_ID, PIPELINE, SCHEMA)
    write_gold(lake, "big", pa.table({"id": pa.array(range(new_rows), pa.int64()), "v": ["y"] * new_rows}))

    counts: list[int] = []
    errors: list[BaseException] = []
    publishing = threading.Event()
    during: list[int] = []
    stop = threading.Event()

    def reader():
        conn = psycopg2.connect(warehouse.url.replace("postgresql+psycopg2", "postgresql"))
        conn.autocommit = True
        try:
            with conn.cursor() as cursor:
                while not stop.is_set():
                    try:
                        cursor.execute(f"SELECT count(*) FROM {SCHEMA}.big")
                        (count,) = cursor.fetchone()
                    except Exception as exc:  # any error is the failure under test
                        errors.append(exc)
                        return
                    counts.append(count)
                    if publishing.is_set():
                        during.append(count)
        finally:
            conn.close()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        while not counts:  # the reader is running before the publish starts
            stop.wait(0.01)
        publishing.set()
        result = serving.publish_postgres(CONN_ID, PIPELINE, SCHEMA, batch_rows=10_000)
        publishing.clear()
        seen = len(counts)
        while len(counts) < seen + 3 and thread.is_alive():  # a few reads after the swap
            stop.wait(0.01)
    finally:
        stop.set()
        thread.join()
    assert not errors, errors
    assert result["published"] == {"big": new_rows}
    assert set(counts) <= {old_rows, new_rows}
    assert counts[-1] == new_rows
    assert old_rows in during  # the reader read the old table while the new one was loading
    assert len(during) >= 3


def test_hostile_names_are_refused_before_any_sql(warehouse, lake):
    write_gold(lake, "product", product_table())
    for schema in ("public; drop table x", "Adventure", "", "a" * 64, "_published"):
        with pytest.raises(ValueError, match="invalid warehouse schema name"):
            serving.publish_postgres(CONN_ID, PIPELINE, schema)
    for tables in (["product", 'x"; drop table product; --'], ["Product"], "product"):
        with pytest.raises(ValueError, match="table"):
            serving.publish_postgres(CONN_ID, PIPELINE, SCHEMA, tables)
    with pytest.raises(ValueError, match="invalid pipeline name"):
        serving.publish_postgres(CONN_ID, "../adventureworks", SCHEMA)
    # a Delta table in gold whose folder name could not be a table name
    write_gold(lake, "product", product_table())
    shutil.copytree(lake / "gold" / PIPELINE / "product", lake / "gold" / PIPELINE / 'x"; drop schema')
    with pytest.raises(ValueError, match="not a valid table name"):
        serving.publish_postgres(CONN_ID, PIPELINE, SCHEMA)
    # nothing reached the warehouse
    assert query(warehouse, "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (SCHEMA,)) == [(0,)]


def test_unpublishable_column_type_names_table_and_column(warehouse, lake):
    import pyarrow as pa

    write_gold(lake, "odd", pa.table({"id": [1], "tags": pa.array([["a"]], pa.list_(pa.string()))}))
    with pytest.raises(ValueError, match="gold table odd, column 'tags'"):
        serving.publish_postgres(CONN_ID, PIPELINE, SCHEMA)
    # the failed table left no staging table and no half-made table behind
    assert query(warehouse, "SELECT tablename FROM pg_tables WHERE schemaname = %s", (SCHEMA,)) == [
        ("_published",)
    ]


# -- Synapse serverless SQL (T-SQL) -----------------------------------------------------------------
class SynapseParser(TSQLParser):
    """sqlglot's T-SQL parser plus Synapse serverless's ``OPENROWSET(BULK '<url>', NAME = value, ...)``,
    which sqlglot (30.x) does not know: parsed into an ``Anonymous`` function whose first argument is
    the BULK path and the rest ``NAME = value`` equalities. Every other part is sqlglot's own."""

    def _parse_openrowset(self):
        if not self._match_text_seq("BULK"):
            self.raise_error("expected BULK")
        path = self._parse_string()
        options = []
        while self._match(TokenType.COMMA):
            options.append(self._parse_assignment())
        return self.expression(exp.Anonymous(this="OPENROWSET", expressions=[path, *options]))

    FUNCTION_PARSERS = {**TSQLParser.FUNCTION_PARSERS, "OPENROWSET": lambda self: self._parse_openrowset()}


class Synapse(TSQL):
    Parser = SynapseParser


def parse_tsql(statement: str):
    return sqlglot.parse_one(statement, read=Synapse)


def test_synapse_views_over_the_gold_folders():
    root = "abfss://lake@acct01.dfs.core.windows.net/prod/v1"
    statements = serving.synapse_view_sql(PIPELINE, SCHEMA, ["address", "sales_order_header"], lake_root=root)
    assert len(statements) == 3

    # IF NOT EXISTS (SELECT * FROM sys.schemas WHERE name = N'<schema>') EXEC('CREATE SCHEMA [<schema>]')
    # (sqlglot reads the IF and its condition; it takes EXEC for an alias and keeps the dynamic SQL
    # as a string, which is parsed on its own below)
    schema_stmt = sqlglot.parse_one(statements[0], read="tsql")
    assert isinstance(schema_stmt, exp.IfBlock)
    exists = schema_stmt.this.find(exp.Exists)
    assert isinstance(exists.parent, exp.Not)
    catalog = exists.find(exp.Table)
    assert (catalog.db, catalog.name) == ("sys", "schemas")
    where = exists.find(exp.EQ)
    assert (where.this.name, where.expression.this) == ("name", SCHEMA)
    (dynamic,) = [lit for lit in schema_stmt.args["true"].find_all(exp.Literal) if lit.is_string]
    create_schema = sqlglot.parse_one(dynamic.this, read="tsql")
    assert isinstance(create_schema, exp.Create)
    assert create_schema.kind == "SCHEMA"
    assert [i.name for i in create_schema.this.find_all(exp.Identifier)] == [SCHEMA]

    for statement, table in zip(statements[1:], ["address", "sales_order_header"], strict=True):
        tree = parse_tsql(statement)
        assert isinstance(tree, exp.Create)
        assert tree.kind == "VIEW"
        assert tree.args["replace"] is True  # CREATE OR ALTER
        view = tree.this
        assert (view.db, view.name) == (SCHEMA, table)
        select = tree.expression
        assert isinstance(select, exp.Select)
        assert [e.sql() for e in select.expressions] == ["*"]
        source = select.args["from_"].this if "from_" in select.args else select.args["from"].this
        assert source.alias == "rows"
        call = source.this if isinstance(source, exp.Table) else source
        call = call if isinstance(call, exp.Anonymous) else call.find(exp.Anonymous)
        assert call.name.upper() == "OPENROWSET"
        bulk, *options = call.expressions
        assert bulk.this == f"https://acct01.dfs.core.windows.net/lake/prod/v1/gold/adventureworks/{table}/"
        assert [(o.this.name.upper(), o.expression.this) for o in options] == [("FORMAT", "DELTA")]


def test_synapse_container_per_layer_and_account_from_argument():
    (_, view) = serving.synapse_view_sql(
        PIPELINE, SCHEMA, ["address"], lake_root="abfs://{layer}", account="acct02"
    )
    call = parse_tsql(view).find(exp.Anonymous)
    assert call.expressions[0].this == "https://acct02.dfs.core.windows.net/gold/adventureworks/address/"


def test_synapse_refuses_a_local_lake_and_hostile_names(tmp_path):
    with pytest.raises(ValueError, match=r"local folder .*: Synapse serverless SQL reads ADLS Gen2 only"):
        serving.synapse_view_sql(PIPELINE, SCHEMA, ["address"], lake_root=str(tmp_path))
    root = "abfss://lake@acct01.dfs.core.windows.net"
    for tables in (["addr]; drop view x; --"], ["x'y"], "address"):
        with pytest.raises(ValueError, match="table"):
            serving.synapse_view_sql(PIPELINE, SCHEMA, tables, lake_root=root)
    with pytest.raises(ValueError, match="warehouse schema"):
        serving.synapse_view_sql(PIPELINE, "dbo]; drop", ["address"], lake_root=root)


# -- Databricks SQL (Unity Catalog) -----------------------------------------------------------------
def test_databricks_unity_catalog_tables_on_the_gold_folders():
    root = "abfss://{layer}@acct01.dfs.core.windows.net/team"
    statements = serving.databricks_sql(
        PIPELINE, "lakehouse", SCHEMA, ["address", "customer"], lake_root=root
    )
    trees = [sqlglot.parse_one(s, read="databricks") for s in statements]
    assert len(trees) == 5

    schema = trees[0]
    assert isinstance(schema, exp.Create)
    assert (schema.kind, schema.args.get("exists")) == ("SCHEMA", True)
    assert (schema.this.catalog, schema.this.db) == ("lakehouse", SCHEMA) or schema.this.sql(
        "databricks"
    ) == f"`lakehouse`.`{SCHEMA}`"

    for i, table in enumerate(["address", "customer"]):
        create, refresh = trees[1 + 2 * i], trees[2 + 2 * i]
        assert isinstance(create, exp.Create)
        assert (create.kind, create.args.get("exists")) == ("TABLE", True)
        target = create.this if isinstance(create.this, exp.Table) else create.this.this
        assert (target.catalog, target.db, target.name) == ("lakehouse", SCHEMA, table)
        props = create.args["properties"].expressions
        formats = [p for p in props if isinstance(p, exp.FileFormatProperty)]
        locations = [p for p in props if isinstance(p, exp.LocationProperty)]
        assert [f.this.name.upper() for f in formats] == ["DELTA"]
        assert [loc.this.this for loc in locations] == [
            f"abfss://gold@acct01.dfs.core.windows.net/team/{PIPELINE}/{table}"
        ]
        assert isinstance(refresh, exp.Refresh)
        assert refresh.sql("databricks").upper().startswith("REFRESH TABLE")
        refreshed = refresh.find(exp.Table)
        assert (refreshed.catalog, refreshed.db, refreshed.name) == ("lakehouse", SCHEMA, table)


def test_databricks_refuses_local_lake_and_bad_names(tmp_path):
    with pytest.raises(ValueError, match="local folder"):
        serving.databricks_sql(PIPELINE, "main", SCHEMA, ["address"], lake_root=str(tmp_path))
    root = "abfss://lake@acct01.dfs.core.windows.net"
    with pytest.raises(ValueError, match="invalid catalog name"):
        serving.databricks_sql(PIPELINE, "main`; drop", SCHEMA, ["address"], lake_root=root)
    with pytest.raises(ValueError, match="invalid table name"):
        serving.databricks_sql(PIPELINE, "main", SCHEMA, ["a`b"], lake_root=root)
    with pytest.raises(ValueError, match="names storage account 'acct01', not 'other01'"):
        serving.databricks_sql(PIPELINE, "main", SCHEMA, ["address"], lake_root=root, account="other01")


def test_escaping_is_the_dialects_own():
    # names are validated first; the quoting helpers still follow each dialect's rules
    assert serving._tsql_ident("a]b") == "[a]]b]"
    assert serving._tsql_string("it's") == "'it''s'"
    assert serving._spark_ident("a`b") == "`a``b`"
    literal = serving._spark_string("a\\'b")  # a, backslash, quote, b
    assert literal == "'a\\\\\\'b'"
    parsed = sqlglot.parse_one(f"SELECT {literal} AS x", read="databricks").find(exp.Literal)
    assert parsed.this == "a\\'b"  # sqlglot reads it back as the same four characters


# -- the serving step, by configuration ------------------------------------------------------------
def _build(monkeypatch, **env):
    from airflow.sdk import DAG

    for key in ("WAREHOUSE_KIND", "WAREHOUSE_CONN_ID", "WAREHOUSE_CATALOG", "WAREHOUSE_HTTP_PATH"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with DAG("serving_kinds", schedule=None, start_date=dt.datetime(2026, 1, 1, tzinfo=UTC)) as dag:
        serving.serving_task(PIPELINE, SCHEMA)
    return dag


def test_serving_task_by_kind(monkeypatch):
    from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
    from airflow.providers.databricks.operators.databricks_sql import DatabricksSqlOperator

    dag = _build(monkeypatch)
    assert sorted(dag.task_dict) == ["publish_warehouse.publish_postgres"]
    from airflow.sdk import DAG

    with DAG("serving_meta", schedule=None, start_date=dt.datetime(2026, 1, 1, tzinfo=UTC)) as dag:
        serving.serving_task(PIPELINE, {"schema": SCHEMA})  # the metadata's serving mapping
    assert sorted(dag.task_dict) == ["publish_warehouse.publish_postgres"]

    dag = _build(monkeypatch, WAREHOUSE_KIND="synapse", WAREHOUSE_CONN_ID="synapse_sql")
    run = dag.task_dict["publish_warehouse.run_sql"]
    assert type(run) is SQLExecuteQueryOperator
    assert run.conn_id == "synapse_sql"
    assert dag.task_dict["publish_warehouse.warehouse_sql"] in run.upstream_list

    dag = _build(monkeypatch, WAREHOUSE_KIND="databricks", WAREHOUSE_HTTP_PATH="/sql/1.0/warehouses/abc")
    run = dag.task_dict["publish_warehouse.run_sql"]
    assert type(run) is DatabricksSqlOperator
    assert (run.databricks_conn_id, run.http_path) == (CONN_ID, "/sql/1.0/warehouses/abc")

    with pytest.raises(ValueError, match="WAREHOUSE_KIND must be one of"):
        _build(monkeypatch, WAREHOUSE_KIND="bigquery")
    with pytest.raises(ValueError, match="WAREHOUSE_CATALOG"):
        _build(monkeypatch, WAREHOUSE_KIND="databricks", WAREHOUSE_CATALOG="x; drop")
    from airflow.sdk import DAG

    with (
        DAG("serving_bad", schedule=None, start_date=dt.datetime(2026, 1, 1, tzinfo=UTC)),
        pytest.raises(ValueError, match="invalid warehouse schema name"),
    ):
        serving.serving_task(PIPELINE, "x; drop")


def test_warehouse_statements_use_the_lake_setting(monkeypatch):
    monkeypatch.setenv("LAKE_ROOT", "abfss://lake@acct01.dfs.core.windows.net")
    monkeypatch.setenv("LAKE_CONN_ID", "adls_lake")
    monkeypatch.setenv("WAREHOUSE_CATALOG", "lakehouse")
    synapse = serving.warehouse_statements(PIPELINE, SCHEMA, "synapse", ["address"])
    assert "https://acct01.dfs.core.windows.net/lake/gold/adventureworks/address/" in synapse[1]
    databricks = serving.warehouse_statements(PIPELINE, SCHEMA, "databricks", ["address"])
    assert databricks[1].startswith("CREATE TABLE IF NOT EXISTS `lakehouse`.`adventureworks`.`address`")


def test_postgres_serving_task_runs_in_a_dag(airflow_db, warehouse, lake, monkeypatch):
    from dag_serialization import serialize

    write_gold(lake, "product", product_table())
    dag = _build(monkeypatch)
    serialize(dag)
    run = dag.test(logical_date=dt.datetime(2026, 1, 2, tzinfo=UTC))
    assert str(run.state) == "success"
    (ti,) = run.get_task_instances()
    assert ti.xcom_pull(task_ids=ti.task_id) == {"published": {"product": 2}, "unchanged": [], "kept": []}
    assert warehouse_rows(warehouse, "product", "product_id") == product_table().to_pylist()
