"""Serving: the gold layer published to a SQL warehouse, and the Power BI refresh after it.

Gold tables are the Delta tables under ``gold/<pipeline>/`` whose names do not start with ``_``
(``_audit``, ``_releases`` ... are the pipeline's own). Each is read as of the pipeline's newest
gold release (``reporting.gold_version``), so the warehouse gets one run's tables, not a mix.

Where the warehouse is (``WAREHOUSE_KIND``, connection ``WAREHOUSE_CONN_ID``):

* ``postgres`` (default): each table is copied into a PostgreSQL schema (``publish_postgres``).
  The rows are read with delta-rs in batches (memory bounded by a batch, not the table) and
  ``COPY``-ed into a staging table; in the same transaction the old table is dropped and the staging
  table renamed into place. A reader sees the old rows or the new ones, never a half-loaded or
  missing table. ``<schema>._published`` remembers the Delta table id and version each table was
  published from: an unchanged table is not reloaded. A table gone from gold stays (reported).
* ``synapse``: Synapse serverless SQL views over the gold Delta folders
  (``OPENROWSET(BULK 'https://<account>.dfs.core.windows.net/...', FORMAT = 'DELTA')``), run through
  the connection's SQL hook (type ``mssql``).
* ``databricks``: Unity Catalog tables on the gold folders (``CREATE TABLE ... USING DELTA
  LOCATION 'abfss://...'``, ``REFRESH TABLE``) through a Databricks SQL warehouse.

Only names matching ``^[a-z][a-z0-9_]{0,62}$`` reach SQL, and they are quoted by the dialect's rules
as well; values never are formatted into SQL (``COPY`` carries them). No pandas or pyarrow at import.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import logging
import os
import re
import uuid
from collections.abc import Iterator
from decimal import Decimal

from lakehouse import settings
from lakehouse.metadata import NAME
from lakehouse.storage import table_uri

log = logging.getLogger(__name__)

KINDS = ("postgres", "synapse", "databricks")
DEFAULT_CONN_ID = "adventureworks_warehouse"
PUBLISHED = "_published"
BATCH_ROWS = 50_000
_DECIMAL = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")
_PLAIN_TYPES = {
    "boolean": "boolean",
    "byte": "smallint",
    "short": "smallint",
    "integer": "integer",
    "long": "bigint",
    "float": "real",
    "double": "double precision",
    "date": "date",
    "timestamp": "timestamptz",  # Delta's timestamp is an instant (UTC)
    "timestamp_ntz": "timestamp",
    "string": "text",
    "binary": "bytea",
}


# -- names ------------------------------------------------------------------------------------------
def check_name(kind: str, value, setting: str | None = None) -> str:
    """``value`` if it is a lake-style name, else a ValueError naming it (and the setting)."""
    if not isinstance(value, str) or not NAME.match(value):
        where = f" ({setting})" if setting else ""
        raise ValueError(
            f"invalid {kind} name {value!r}{where}: use 1-63 lower-case letters, digits and '_', "
            "starting with a letter"
        )
    return value


def _check_tables(tables) -> list[str]:
    if isinstance(tables, str) or not isinstance(tables, list | tuple):
        raise ValueError(f"tables must be a list of table names, not {tables!r}")
    return [check_name("table", t) for t in tables]


# -- the gold layer ---------------------------------------------------------------------------------
def gold_tables(pipeline: str) -> list[str]:
    """The Delta tables under ``gold/<pipeline>/`` (not ``_``-prefixed), sorted. A Delta table whose
    folder name is not a valid table name is refused, naming it."""
    from lakehouse.storage import lake_path

    check_name("pipeline", pipeline)
    folder = lake_path("gold", pipeline)
    if not folder.exists():
        return []
    found = []
    for child in folder.iterdir():
        name = child.name
        if name.startswith("_") or not child.is_dir() or not (child / "_delta_log").is_dir():
            continue
        if not NAME.match(name):
            raise ValueError(
                f"gold/{pipeline}/{name!r} is a Delta table whose name is not a valid table name "
                "(lower-case letters, digits and '_'): it cannot be served; rename or remove it"
            )
        found.append(name)
    return sorted(found)


def _gold_delta(pipeline: str, table: str):
    """``(DeltaTable at the version readers should see, uri)`` of a gold table."""
    from deltalake import DeltaTable

    from lakehouse.reporting import gold_version

    uri = table_uri("gold", pipeline, table)
    options = settings.delta_storage_options()
    if not DeltaTable.is_deltatable(uri, storage_options=options):
        raise ValueError(f"gold table {pipeline}.{table} does not exist at {uri}")
    return DeltaTable(uri, version=gold_version(pipeline, table), storage_options=options), uri


def postgres_type(delta_type, where: str) -> str:
    """The PostgreSQL type of a Delta column type (``where`` names the column in errors)."""
    name = getattr(delta_type, "type", None)
    if not isinstance(name, str):
        raise ValueError(f"{where}: nested type {delta_type!r} cannot be published to PostgreSQL")
    if name in _PLAIN_TYPES:
        return _PLAIN_TYPES[name]
    match = _DECIMAL.match(name)
    if match:
        return f"numeric({int(match[1])},{int(match[2])})"
    raise ValueError(f"{where}: Delta type {name!r} cannot be published to PostgreSQL")


# -- COPY text format ---------------------------------------------------------------------------------
def _text(value) -> str:
    """One value in PostgreSQL's COPY text format (NULL is ``\\N``)."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\\\x" + bytes(value).hex()
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, float | int | Decimal):
        return str(value)
    text = str(value)
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text


def _copy_text(batch) -> io.StringIO:
    columns = [column.to_pylist() for column in batch.columns]
    out = io.StringIO()
    for row in zip(*columns, strict=True):
        out.write("\t".join(_text(v) for v in row))
        out.write("\n")
    out.seek(0)
    return out


def _batches(delta, columns: list[str], batch_rows: int) -> Iterator:
    """The table's rows as pyarrow record batches of at most ``batch_rows`` rows, streamed by
    delta-rs's query engine (deletion vectors applied; see ``reporting``)."""
    import pyarrow as pa
    from deltalake import QueryBuilder

    select = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
    builder = QueryBuilder({"datafusion.execution.batch_size": str(batch_rows)}).register("t", delta)
    for batch in builder.execute(f"SELECT {select} FROM t"):
        batch = pa.record_batch(batch)
        for start in range(0, batch.num_rows, batch_rows):
            yield batch.slice(start, batch_rows)


# -- PostgreSQL -------------------------------------------------------------------------------------
def _staging_name(table: str) -> str:
    name = f"_stg_{table}"
    if len(name) > 63:
        name = f"_stg_{table[:45]}_{hashlib.sha1(table.encode()).hexdigest()[:12]}"
    return name


def _driver(conn):
    """``(sql module, copy(cursor, statement, text))`` for the hook's connection: psycopg 3 or
    psycopg2 (``PostgresHook`` picks one by what is installed); both quote with their ``sql``."""
    if type(conn).__module__.split(".")[0] == "psycopg":
        from psycopg import sql

        def copy(cursor, statement, text) -> None:
            with cursor.copy(statement) as stream:
                stream.write(text.getvalue())

        return sql, copy
    from psycopg2 import sql

    def copy(cursor, statement, text) -> None:
        cursor.copy_expert(statement.as_string(conn), text)

    return sql, copy


def _published(sql, cursor, schema: str) -> dict[str, dict]:
    cursor.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.{} (table_name text PRIMARY KEY, delta_table_id text NOT NULL,"
            " delta_version bigint NOT NULL, source_uri text NOT NULL, row_count bigint NOT NULL,"
            " published_at timestamptz NOT NULL DEFAULT now())"
        ).format(sql.Identifier(schema), sql.Identifier(PUBLISHED))
    )
    cursor.execute(
        sql.SQL("SELECT table_name, delta_table_id, delta_version FROM {}.{}").format(
            sql.Identifier(schema), sql.Identifier(PUBLISHED)
        )
    )
    return {name: {"id": tid, "version": int(v)} for name, tid, v in cursor.fetchall()}


def _exists(cursor, schema: str, table: str) -> bool:
    cursor.execute(
        "SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = %s AND tablename = %s", (schema, table)
    )
    return cursor.fetchone() is not None


def publish_postgres(
    conn_id: str,
    pipeline: str,
    schema: str,
    tables: list[str] | None = None,
    *,
    batch_rows: int = BATCH_ROWS,
    force: bool = False,
) -> dict:
    """Publish gold tables of ``pipeline`` into PostgreSQL schema ``schema`` (connection ``conn_id``).

    ``tables``: the gold tables to publish (default: every one). Returns ``{"published": {table:
    rows}, "unchanged": [...], "kept": [...]}``, where ``kept`` lists tables published before that
    are gone from gold: they stay in the warehouse, not refreshed.
    """
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    check_name("pipeline", pipeline)
    check_name("warehouse schema", schema)
    available = gold_tables(pipeline)
    wanted = available if tables is None else _check_tables(tables)
    absent = sorted(set(wanted) - set(available))
    if absent:
        raise ValueError(f"no gold table {', '.join(absent)} under gold/{pipeline}/ to publish")
    if int(batch_rows) < 1:
        raise ValueError(f"batch_rows must be positive, not {batch_rows!r}")

    conn = PostgresHook(postgres_conn_id=conn_id).get_conn()
    sql, _ = _driver(conn)
    ident = sql.Identifier
    result: dict = {"published": {}, "unchanged": [], "kept": []}
    try:
        conn.autocommit = False
        with conn.cursor() as cursor:
            # one publisher per schema at a time: its tables and _published are replaced together
            cursor.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"lakehouse.serving.{schema}",))
            try:
                cursor.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident(schema)))
                before = _published(sql, cursor, schema)
                conn.commit()
                for table in wanted:
                    delta, uri = _gold_delta(pipeline, table)
                    source = {"id": delta.metadata().id, "version": int(delta.version())}
                    if not force and before.get(table) == source and _exists(cursor, schema, table):
                        conn.rollback()
                        log.info("%s.%s: unchanged (Delta version %s), not reloaded", schema, table, source)
                        result["unchanged"].append(table)
                        continue
                    rows = _load_and_swap(conn, cursor, delta, uri, schema, table, source, batch_rows)
                    log.info(
                        "%s.%s: %d rows published from %s version %d",
                        schema,
                        table,
                        rows,
                        uri,
                        source["version"],
                    )
                    result["published"][table] = rows
                result["kept"] = sorted(set(before) - set(available))
                for table in result["kept"]:
                    log.warning(
                        "%s.%s was published before but is no longer in gold/%s/: kept as it is, not "
                        "refreshed (drop it by hand if it is retired)",
                        schema,
                        table,
                        pipeline,
                    )
            finally:
                conn.rollback()
                cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", (f"lakehouse.serving.{schema}",))
                conn.commit()
    finally:
        conn.close()
    return result


def _load_and_swap(conn, cursor, delta, uri, schema, table, source, batch_rows) -> int:
    """One transaction: a staging table filled by COPY batches, then the old table dropped and the
    staging table renamed into its place, and ``_published`` updated. Nothing is seen before commit."""
    sql, copy_text = _driver(conn)
    ident = sql.Identifier
    staging = _staging_name(table)
    fields = delta.schema().fields
    columns = [f.name for f in fields]
    definition = sql.SQL(", ").join(
        sql.SQL("{} {}{}").format(
            ident(f.name),
            sql.SQL(postgres_type(f.type, f"gold table {table}, column {f.name!r}")),
            sql.SQL("" if f.nullable else " NOT NULL"),
        )
        for f in fields
    )
    try:
        cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}.{}").format(ident(schema), ident(staging)))
        cursor.execute(sql.SQL("CREATE TABLE {}.{} ({})").format(ident(schema), ident(staging), definition))
        copy = sql.SQL("COPY {}.{} ({}) FROM STDIN").format(
            ident(schema), ident(staging), sql.SQL(", ").join(map(ident, columns))
        )
        rows = 0
        for batch in _batches(delta, columns, batch_rows):
            copy_text(cursor, copy, _copy_text(batch))
            rows += batch.num_rows
        cursor.execute(sql.SQL("ANALYZE {}.{}").format(ident(schema), ident(staging)))
        # the swap: readers waiting on the old table's lock find the new one by name after commit
        cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}.{}").format(ident(schema), ident(table)))
        cursor.execute(
            sql.SQL("ALTER TABLE {}.{} RENAME TO {}").format(ident(schema), ident(staging), ident(table))
        )
        cursor.execute(
            sql.SQL("COMMENT ON TABLE {}.{} IS {}").format(
                ident(schema),
                ident(table),
                sql.Literal(f"gold table {uri}, Delta version {source['version']}"),
            )
        )
        cursor.execute(
            sql.SQL(
                "INSERT INTO {}.{} (table_name, delta_table_id, delta_version, source_uri, row_count,"
                " published_at) VALUES (%s, %s, %s, %s, %s, now()) ON CONFLICT (table_name) DO UPDATE SET"
                " delta_table_id = EXCLUDED.delta_table_id, delta_version = EXCLUDED.delta_version,"
                " source_uri = EXCLUDED.source_uri, row_count = EXCLUDED.row_count,"
                " published_at = EXCLUDED.published_at"
            ).format(ident(schema), ident(PUBLISHED)),
            (table, source["id"], source["version"], uri, rows),
        )
        conn.commit()
    except Exception:
        conn.rollback()
        raise
    return rows


# -- Azure: the gold folders as Synapse and Databricks address them ----------------------------------
def _azure_root(lake_root: str | None, account: str | None, what: str):
    lake = settings._lake_module()
    root = settings.lake() if lake_root is None else lake.parse_lake_root(lake_root, "lake root")
    if not root.is_azure:
        raise ValueError(
            f"the lake is a local folder ({root}): {what} reads ADLS Gen2 only; set LAKE_ROOT to "
            "abfss://<container>@<account>.dfs.core.windows.net[/prefix] (or abfs://<container> with "
            "LAKE_CONN_ID) to serve it from Azure, or WAREHOUSE_KIND=postgres"
        )
    if root.account is None:
        if account is None:
            from lakehouse.storage import azure_access

            account = azure_access().account
        root = root.with_account(account)
    elif account is not None and account != root.account:
        raise ValueError(f"the lake root names storage account {root.account!r}, not {account!r}")
    return root


def gold_folder(pipeline: str, table: str, root) -> tuple[str, str, str]:
    """``(container, account, path in container)`` of a gold table's folder."""
    check_name("pipeline", pipeline)
    check_name("table", table)
    key = root.key_of("gold")
    path = "/".join(p for p in (key, pipeline, table) if p)
    return root.container_of("gold"), root.account, path


def _tsql_ident(name: str) -> str:
    return "[" + name.replace("]", "]]") + "]"


def _tsql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def synapse_view_sql(
    pipeline: str,
    schema: str,
    tables: list[str],
    *,
    lake_root: str | None = None,
    account: str | None = None,
) -> list[str]:
    """T-SQL for a Synapse serverless SQL database: the schema if missing, then one view per gold
    table over its Delta folder. ``lake_root`` defaults to ``LAKE_ROOT``; an account-less
    ``abfs://`` root takes ``account`` or the ``LAKE_CONN_ID`` connection's."""
    check_name("pipeline", pipeline)
    check_name("warehouse schema", schema)
    tables = _check_tables(tables)
    root = _azure_root(lake_root, account, "Synapse serverless SQL")
    statements = [
        f"IF NOT EXISTS (SELECT * FROM sys.schemas WHERE name = N{_tsql_string(schema)}) "
        f"EXEC({_tsql_string('CREATE SCHEMA ' + _tsql_ident(schema))})"
    ]
    for table in tables:
        container, acct, path = gold_folder(pipeline, table, root)
        url = f"https://{acct}.dfs.core.windows.net/{container}/{path}/"
        statements.append(
            f"CREATE OR ALTER VIEW {_tsql_ident(schema)}.{_tsql_ident(table)} AS SELECT * FROM "
            f"OPENROWSET(BULK {_tsql_string(url)}, FORMAT = 'DELTA') AS [rows]"
        )
    return statements


def _spark_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _spark_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def databricks_sql(
    pipeline: str,
    catalog: str,
    schema: str,
    tables: list[str],
    *,
    lake_root: str | None = None,
    account: str | None = None,
) -> list[str]:
    """Databricks SQL (Unity Catalog): the schema if missing, an external Delta table on each gold
    folder if missing, and a refresh of each. The folders must be under a UC external location."""
    check_name("pipeline", pipeline)
    check_name("catalog", catalog)
    check_name("warehouse schema", schema)
    tables = _check_tables(tables)
    root = _azure_root(lake_root, account, "Unity Catalog (Databricks SQL)")
    qualified_schema = f"{_spark_ident(catalog)}.{_spark_ident(schema)}"
    statements = [f"CREATE SCHEMA IF NOT EXISTS {qualified_schema}"]
    for table in tables:
        container, acct, path = gold_folder(pipeline, table, root)
        location = f"abfss://{container}@{acct}.dfs.core.windows.net/{path}"
        name = f"{qualified_schema}.{_spark_ident(table)}"
        statements.append(f"CREATE TABLE IF NOT EXISTS {name} USING DELTA LOCATION {_spark_string(location)}")
        statements.append(f"REFRESH TABLE {name}")
    return statements


# -- configuration and the Airflow tasks --------------------------------------------------------------
def warehouse_kind() -> str:
    value = (os.environ.get("WAREHOUSE_KIND") or "postgres").strip().lower()
    if value not in KINDS:
        raise ValueError(f"WAREHOUSE_KIND must be one of {', '.join(KINDS)}, not {value!r}")
    return value


def warehouse_conn_id() -> str:
    return (os.environ.get("WAREHOUSE_CONN_ID") or "").strip() or DEFAULT_CONN_ID


def warehouse_catalog() -> str:
    """The Unity Catalog catalog of the Databricks warehouse (``WAREHOUSE_CATALOG``, default main)."""
    return check_name(
        "catalog", (os.environ.get("WAREHOUSE_CATALOG") or "").strip() or "main", "WAREHOUSE_CATALOG"
    )


def warehouse_statements(pipeline: str, schema: str, kind: str, tables: list[str] | None = None) -> list[str]:
    """The SQL a Synapse or Databricks publish runs now: for every gold table (or ``tables``)."""
    tables = gold_tables(pipeline) if tables is None else _check_tables(tables)
    if not tables:
        raise ValueError(f"no gold tables under gold/{pipeline}/ to publish")
    if kind == "synapse":
        return synapse_view_sql(pipeline, schema, tables)
    if kind == "databricks":
        return databricks_sql(pipeline, warehouse_catalog(), schema, tables)
    raise ValueError(f"no SQL statements for warehouse kind {kind!r}")


def serving_task(pipeline: str, schema: str | dict, *, group_id: str = "publish_warehouse", **task_kwargs):
    """The publish step, as configured (``WAREHOUSE_KIND``, ``WAREHOUSE_CONN_ID``, and for
    Databricks ``WAREHOUSE_CATALOG`` and ``WAREHOUSE_HTTP_PATH``): a TaskGroup to chain with ``>>``.

    * postgres: one python task ``publish_postgres`` (returns ``publish_postgres``'s summary);
    * synapse: ``warehouse_sql`` (the statements, made from the gold tables found at run time) >>
      ``run_sql``, a ``SQLExecuteQueryOperator`` on the connection (type ``mssql``);
    * databricks: ``warehouse_sql`` >> ``run_sql``, a ``DatabricksSqlOperator``.

    ``schema``: the warehouse schema, or the metadata's ``serving`` mapping (``{"schema": ...}``).
    ``task_kwargs`` go to every task (retries, pool, ...). Names are checked here, at DAG parse.
    """
    from airflow.sdk import TaskGroup, task

    if isinstance(schema, dict):
        schema = schema.get("schema")
    check_name("pipeline", pipeline)
    check_name("warehouse schema", schema)
    kind = warehouse_kind()
    conn_id = warehouse_conn_id()
    if kind == "databricks":
        warehouse_catalog()
    with TaskGroup(group_id=group_id) as group:
        if kind == "postgres":

            @task(task_id="publish_postgres", **task_kwargs)
            def publish() -> dict:
                return publish_postgres(conn_id, pipeline, schema)

            publish()
            return group

        @task(task_id="warehouse_sql", **task_kwargs)
        def statements() -> list[str]:
            found = warehouse_statements(pipeline, schema, kind)
            log.info("%d %s statements for %s", len(found), kind, schema)
            return found

        sql = statements()
        if kind == "synapse":
            from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator

            run = SQLExecuteQueryOperator(
                task_id="run_sql", conn_id=conn_id, sql=sql, split_statements=False, **task_kwargs
            )
        else:
            from airflow.providers.databricks.operators.databricks_sql import DatabricksSqlOperator

            http_path = (os.environ.get("WAREHOUSE_HTTP_PATH") or "").strip() or None
            run = DatabricksSqlOperator(
                task_id="run_sql", databricks_conn_id=conn_id, http_path=http_path, sql=sql, **task_kwargs
            )
        sql >> run
    return group


# -- Power BI -------------------------------------------------------------------------------------------
def powerbi_settings() -> dict:
    """``POWERBI_DATASET_ID``, ``POWERBI_GROUP_ID`` (workspace), ``POWERBI_CONN_ID`` (default
    ``powerbi_default``), ``POWERBI_CHECK_INTERVAL`` (seconds between polls, default 60),
    ``POWERBI_TIMEOUT`` (seconds, default 3600). ``missing`` names the unset ids."""
    env = {k: (os.environ.get(k) or "").strip() for k in ("POWERBI_DATASET_ID", "POWERBI_GROUP_ID")}
    for key, value in env.items():
        if value:
            try:
                uuid.UUID(value)
            except ValueError:
                raise ValueError(f"{key}={value!r} is not a Power BI id (a GUID)") from None
    out = {
        "dataset_id": env["POWERBI_DATASET_ID"] or None,
        "group_id": env["POWERBI_GROUP_ID"] or None,
        "conn_id": (os.environ.get("POWERBI_CONN_ID") or "").strip() or "powerbi_default",
        "missing": [k for k, v in env.items() if not v],
    }
    for key, default in (("POWERBI_CHECK_INTERVAL", 60), ("POWERBI_TIMEOUT", 3600)):
        raw = (os.environ.get(key) or "").strip() or str(default)
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"{key}={raw!r} must be a positive number of seconds")
        out[key.removeprefix("POWERBI_").lower()] = int(raw)
    return out


def powerbi_refresh_task(pipeline: str | None = None, *, task_id: str = "refresh_powerbi", **task_kwargs):
    """The Power BI dataset refresh (the Azure provider's ``PowerBIDatasetRefreshOperator``, which
    always defers: a triggerer must run), from the ``POWERBI_*`` settings. Without a dataset and
    workspace configured: a task that is skipped, saying which setting is missing. ``pipeline``
    (optional) only names the pipeline in the task's documentation."""
    if pipeline is not None:
        check_name("pipeline", pipeline)
        task_kwargs.setdefault(
            "doc_md", f"Refreshes the Power BI dataset built on the `{pipeline}` warehouse tables."
        )
    config = powerbi_settings()
    if config["missing"]:
        from airflow.sdk import task

        missing = " and ".join(config["missing"])

        @task(task_id=task_id, **task_kwargs)
        def refresh_powerbi_not_configured() -> None:
            from airflow.sdk.exceptions import AirflowSkipException

            message = (
                f"Power BI refresh skipped: {missing} not set (the dataset and workspace ids to refresh)"
            )
            log.warning(message)
            raise AirflowSkipException(message)

        return refresh_powerbi_not_configured()
    return _refresh_operator()(
        task_id=task_id,
        dataset_id=config["dataset_id"],
        group_id=config["group_id"],
        conn_id=config["conn_id"],
        check_interval=config["check_interval"],
        timeout=config["timeout"],
        deferrable=True,
        **task_kwargs,
    )


_REFRESH_OPERATOR = None


def _refresh_operator():
    """``PowerBIRefreshOperator``: the provider's ``PowerBIDatasetRefreshOperator`` that drops the
    hook's cached HTTP client of its connection before each deferral.

    The provider caches one Kiota/httpx client per connection id in a class attribute, bound to the
    event loop it was made in. A triggerer runs every trigger in one loop, so that is fine there;
    ``dag.test()`` / ``airflow dags test`` run each trigger in a new loop (``asyncio.run``), and the
    operator defers twice (refresh, then poll), so the second trigger would reuse a client of a
    closed loop and fail with "Event loop is closed". Where the task runs apart from the triggerer
    the cache is empty and dropping it does nothing.
    """
    global _REFRESH_OPERATOR
    if _REFRESH_OPERATOR is None:
        from airflow.providers.microsoft.azure.hooks.msgraph import KiotaRequestAdapterHook
        from airflow.providers.microsoft.azure.operators.powerbi import PowerBIDatasetRefreshOperator

        class PowerBIRefreshOperator(PowerBIDatasetRefreshOperator):
            def defer(self, *args, **kwargs):
                KiotaRequestAdapterHook.cached_request_adapters.pop(self.conn_id, None)
                super().defer(*args, **kwargs)

        PowerBIRefreshOperator.__module__ = __name__
        _REFRESH_OPERATOR = PowerBIRefreshOperator
    return _REFRESH_OPERATOR


def __getattr__(name: str):
    if name == "PowerBIRefreshOperator":
        return _refresh_operator()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
