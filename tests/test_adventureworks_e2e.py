"""AdventureWorks end to end: a whole source schema in real PostgreSQL or MariaDB, copied by
``adventureworks_copy`` (discovery, mapped copy, Spark silver and gold on Delta), served by
``adventureworks_serve`` into a real PostgreSQL warehouse; every row of every table compared with
the source, after a first run and after a day of changes (updates, inserts, an added table, an
added column).

The DAGs run with ``dag.test()``; Spark and Delta are real. The expected rows are the source's own
(``aw_source.read_all``), mapped only by the documented rules: gold names columns in snake_case,
naive source timestamps are UTC wall times (``source.timezone``), uuid is text.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import secrets
import uuid
from collections import Counter

import pytest
import sqlalchemy as sa
from conftest import clear_and_rerun, run_dag
from deltalake import DeltaTable

from lakehouse import aw_source
from lakehouse.reporting import read_rows
from spark_jobs.common.naming import snake_case

pytestmark = pytest.mark.e2e
pytest_plugins = ["sourcedb", "mariadb"]

UTC = dt.UTC
DAY1 = dt.date(2025, 1, 1)  # the pipeline's start_date: the first (initial) load of every table
DAY2 = dt.date(2025, 1, 2)
DAY3 = dt.date(2025, 1, 3)
# A column type the pipeline cannot map, per dialect.
UNMAPPABLE = {"postgresql": "int4range", "mariadb": "POINT"}
CHANGED_AT = dt.datetime(2025, 1, 2, 10, 30, 15)  # inside DAY2's window
PIPELINE = "adventureworks"
SERVING_SCHEMA = "adventureworks"


def logical(day: dt.date) -> dt.datetime:
    """The logical date of a manual run whose interval is ``day``."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=UTC)


def value(v):
    """One value as the lake keeps it: uuid as text, binary as bytes, timestamps as UTC instants
    (naive source timestamps are UTC wall times: ``source.timezone: UTC``)."""
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, memoryview | bytearray):
        return bytes(v)
    if isinstance(v, dt.datetime):
        return (v if v.tzinfo else v.replace(tzinfo=UTC)).astimezone(UTC)
    if isinstance(v, decimal.Decimal):
        return v.normalize()
    return v


def content(rows: list[dict]) -> Counter:
    return Counter(tuple(sorted((k, value(v)) for k, v in row.items())) for row in rows)


def expected(source: dict[str, list[dict]]) -> dict[str, Counter]:
    """The source's tables as gold names them: snake_case tables and columns."""
    return {
        snake_case(table): content([{snake_case(k): v for k, v in row.items()} for row in rows])
        for table, rows in source.items()
    }


def gold(lake) -> dict[str, Counter]:
    folder = lake / "gold" / PIPELINE
    tables = sorted(p.name for p in folder.iterdir() if not p.name.startswith("_"))
    return {
        table: content(
            [{k: v for k, v in r.items() if not k.startswith("_")} for r in read_rows(str(folder / table))]
        )
        for table in tables
    }


def warehouse_rows(url: str) -> dict[str, Counter]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            tables = sa.inspect(conn).get_table_names(schema=SERVING_SCHEMA)
            out = {}
            for table in tables:
                if table.startswith("_"):
                    continue
                reflected = sa.Table(table, sa.MetaData(schema=SERVING_SCHEMA), autoload_with=conn)
                rows = [dict(r._mapping) for r in conn.execute(sa.select(reflected))]
                out[table] = content([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows])
            return out
    finally:
        engine.dispose()


def manifest(lake, table: str, day: dt.date) -> dict:
    load_id = dt.datetime.combine(day, dt.time()).strftime("%Y%m%dT%H%M%S")
    return json.loads((lake / "bronze" / PIPELINE / "_loads" / table / f"{load_id}.json").read_text())


def assert_same(found: dict[str, Counter], want: dict[str, Counter], where: str) -> None:
    assert sorted(found) == sorted(want), f"{where}: tables differ"
    for table in want:
        missing, extra = want[table] - found[table], found[table] - want[table]
        assert not missing, (
            f"{where}.{table}: {sum(missing.values())} source rows missing, e.g. {list(missing)[:1]}"
        )
        assert not extra, (
            f"{where}.{table}: {sum(extra.values())} rows not in the source, e.g. {list(extra)[:1]}"
        )


@pytest.fixture
def warehouse(postgres_source):
    """The warehouse: a PostgreSQL database of its own (the source may be PostgreSQL too)."""
    return postgres_source


@pytest.fixture(params=["postgresql", "mariadb"])
def source(request, monkeypatch):
    """The source schema, built by ``aw_source`` in a real database of each dialect."""
    if request.param == "postgresql":
        db = request.getfixturevalue("source_pg")
        schema = "saleslt"
        with db.engine().begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    else:
        db = request.getfixturevalue("mariadb_source")
        schema = db.name  # MariaDB's schemas are its databases
    monkeypatch.setenv("AIRFLOW_CONN_ADVENTUREWORKS_SQL", db.conn)
    monkeypatch.setenv("ADVENTUREWORKS_SOURCE_SCHEMA", schema)
    return db, schema, request.param


@pytest.fixture
def source_pg():
    """A second fresh PostgreSQL database (``postgres_source`` is the warehouse's)."""
    import psycopg2
    from postgres import address
    from psycopg2 import sql
    from sourcedb import PG_USER, SourceDB

    host, port = address()
    name = f"aw_src_{secrets.token_hex(5)}"
    admin = psycopg2.connect(host=host, port=port, user=PG_USER, dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    conn = {"conn_type": "postgres", "host": host, "port": port, "login": PG_USER, "schema": name}
    url = f"postgresql+psycopg2://{PG_USER}@{host}:{port}/{name}"
    db = SourceDB(url=url, conn=json.dumps(conn), name=name)
    try:
        yield db
    finally:
        db.dispose()
        with admin.cursor() as cursor:
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.close()


def test_schema_copied_conformed_and_served(airflow_db, lake, source, warehouse, monkeypatch):
    db, schema, dialect = source
    monkeypatch.setenv("AIRFLOW_CONN_ADVENTUREWORKS_WAREHOUSE", warehouse.conn)
    engine = db.engine()
    aw_source.create(engine, schema)

    # Day 1: every table's first load, silver, gold; then the warehouse.
    first = run_dag(f"{PIPELINE}_copy", logical_date=logical(DAY1))
    assert first.state == "success", first.tasks
    assert sum(1 for t in first.tasks if t.startswith("copy_table[")) == len(aw_source.TABLES)
    want = expected(aw_source.read_all(engine, schema))
    assert_same(gold(lake), want, "gold after day 1")
    assert manifest(lake, "customer", DAY1)["mode"] == "initial"
    assert manifest(lake, "error_log", DAY1)["mode"] == "full"  # no primary key: copied in full
    served = run_dag(f"{PIPELINE}_serve", logical_date=logical(DAY1))
    assert served.state in ("success",), served.tasks
    assert served.tasks["refresh_powerbi"] == "skipped"  # no POWERBI_DATASET_ID here
    assert_same(warehouse_rows(warehouse.url), want, "warehouse after day 1")

    # Day 2: a column added, rows updated and inserted, a table added.
    aw_source.add_column(engine, schema)
    changed = aw_source.apply_changes(engine, schema, CHANGED_AT)
    added = aw_source.add_table(engine, schema, CHANGED_AT)
    silver_customer = lake / "silver" / PIPELINE / "customer"
    before = DeltaTable(str(silver_customer)).version()
    second = run_dag(f"{PIPELINE}_copy", logical_date=logical(DAY2))
    assert second.state == "success", second.tasks
    want = expected(aw_source.read_all(engine, schema))
    assert snake_case(added) in want
    assert_same(gold(lake), want, "gold after day 2")

    # Only the changed rows moved: the incremental loads hold exactly them, and silver's MERGE
    # updated and inserted exactly them.
    for table, keys in changed.items():
        load = manifest(lake, snake_case(table), DAY2)
        assert (load["mode"], load["rows"]) == ("incremental", len(keys)), table
    history = DeltaTable(str(silver_customer)).history()
    commits = sorted((h for h in history if h["version"] > before), key=lambda h: h["version"])
    # the added column (ADD COLUMNS), then one MERGE of the changed rows
    assert [c["operation"] for c in commits] == ["ADD COLUMNS", "MERGE"], commits
    metrics = commits[-1]["operationMetrics"]
    assert (int(metrics["numTargetRowsUpdated"]), int(metrics["numTargetRowsInserted"])) == (2, 1)
    assert "suffix" in DeltaTable(str(lake / "gold" / PIPELINE / "customer")).schema().to_arrow().names

    served = run_dag(f"{PIPELINE}_serve", logical_date=logical(DAY2))
    assert served.state == "success", served.tasks
    assert_same(warehouse_rows(warehouse.url), want, "warehouse after day 2")

    if dialect == "postgresql":
        # Clear and re-run day 2 with the source unchanged: the same loads, so nothing is rewritten
        # (only the run's row counts go to _audit).
        versions = lake_versions(lake)
        again = clear_and_rerun(f"{PIPELINE}_copy", logical_date=logical(DAY2))
        assert again.state == "success", again.tasks
        audit = str(lake / "gold" / PIPELINE / "_audit")
        after = lake_versions(lake)
        assert after.pop(audit) > versions.pop(audit)
        assert after == versions

    # Day 3: a table with a column of a type the pipeline cannot map. Discovery refuses the run,
    # naming the table, column and type (in the task's log); nothing is copied or rewritten.
    table = '"Booking"' if dialect == "postgresql" else "`Booking`"
    where = f"{schema}.{table}" if dialect == "postgresql" else table
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {where} (id INTEGER PRIMARY KEY, seats {UNMAPPABLE[dialect]})")
    versions = lake_versions(lake)
    third = run_dag(f"{PIPELINE}_copy", logical_date=logical(DAY3))
    assert third.state == "failed"
    assert third.tasks["discover_tables"] == "failed"
    assert third.tasks["silver"] == "upstream_failed"
    assert lake_versions(lake) == versions
    assert not list((lake / "bronze" / PIPELINE).glob("*/20250103T000000"))


def lake_versions(lake) -> dict[str, int]:
    """Every Delta table's version, and the count of bronze files: what a refused run must not change."""
    found = {str(p.parent): DeltaTable(str(p.parent)).version() for p in lake.glob("*/*/*/_delta_log")}
    found["bronze files"] = sum(1 for p in (lake / "bronze").rglob("*") if p.is_file())
    return found
