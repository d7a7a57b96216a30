"""Copy every table of a SQL schema to bronze parquet: discovery from the catalog, type mapping,
chunked reads, one part per chunk, a manifest last.

``discover`` reads the source's own catalog (SQLAlchemy's inspector) when a run starts: the tables
of the schema that the include/exclude patterns choose, their columns, each column's *kind* (the
logical type bronze keeps: see ``KINDS``), the primary key, and whether a change column makes the
copy incremental. ``copy_table`` lands one table's load as

    bronze/<pipeline>/<table>/<load_id>/part-<token>-<NNNNN>.parquet   (one part per chunk)
    bronze/<pipeline>/_loads/<table>/<load_id>.json                   (the manifest, written last)

where ``load_id`` is the run's first window start (``sql_ingest.WID_FORMAT``): re-running a run
replaces its own load. Readers read only the files a manifest lists; the parts of other attempts
are deleted once the manifest is in place. Identifiers are quoted by the source's dialect, values
and window bounds are bound parameters.

The engine is the connection's hook's (``get_sqlalchemy_engine``). A MySQL/MariaDB connection
whose hook is not installed (the MySQL provider needs ``mysqlclient``, which has no wheels) gets a
``mysql+pymysql`` engine built from the connection's fields.
"""

from __future__ import annotations

import datetime as dt
import decimal
import fnmatch
import hashlib
import json
import logging
import re
import uuid
import warnings
import zoneinfo

from lakehouse.metadata import NAME, TABLE_PATTERN
from lakehouse.sql_ingest import WID_FORMAT, Window, _ceil_date, parquet_bytes, write_atomically
from lakehouse.storage import lake_path

log = logging.getLogger(__name__)

CHUNK_ROWS = 50_000
CONNECT_TIMEOUT = 10  # seconds: an unreachable source fails the attempt instead of hanging
MAX_PRECISION = 38  # decimal128, and Spark's DecimalType
# numeric without precision: values that do not fit fail, naming the row
UNBOUNDED_NUMERIC = "decimal(38,18)"
KINDS = [
    "boolean",
    "int16",
    "int32",
    "int64",
    "float32",
    "float64",
    "string",
    "binary",
    "date",
    "time",
    "timestamp",
    "timestamptz",
    "uuid",
    "json",
    "xml",
]
DECIMAL_KIND = re.compile(r"^decimal\((\d+),(\d+)\)$")
CHANGE_KINDS = ("date", "timestamp", "timestamptz")
SCHEMA_NAME = re.compile(r"^[A-Za-z0-9_$ -]{1,128}$")


class SchemaCopyError(RuntimeError):
    """The source or its data cannot be copied as it is: retrying would not help."""


class SourceUnreachableError(RuntimeError):
    """The source connection could not be opened (the task's own retries apply)."""


class UnmappableTypeError(ValueError):
    """A source type with no kind."""


# -- the engine ----------------------------------------------------------------------------------
def source_engine(conn_id: str):
    """A SQLAlchemy engine for an Airflow connection: its hook's, with a connect timeout."""
    import sqlalchemy as sa
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    conn_type = (conn.conn_type or "").lower()
    timeout = {"connect_args": {"connect_timeout": CONNECT_TIMEOUT}}
    if conn_type in ("mysql", "mariadb"):
        try:
            hook = conn.get_hook()
        except Exception:
            hook = None
        if hook is None:
            url = sa.engine.URL.create(
                "mysql+pymysql",
                username=conn.login or None,
                password=conn.password or None,
                host=conn.host or "127.0.0.1",
                port=conn.port or None,
                database=conn.schema or None,
                query={"charset": "utf8mb4"},
            )
            return sa.create_engine(url, **timeout)
        return hook.get_sqlalchemy_engine(engine_kwargs=timeout)
    hook = conn.get_hook()
    if not hasattr(hook, "get_sqlalchemy_engine"):
        raise SchemaCopyError(f"connection {conn_id!r} (type {conn_type}) has no SQLAlchemy engine")
    kwargs = timeout if conn_type in ("postgres", "postgresql") else None
    return hook.get_sqlalchemy_engine(engine_kwargs=kwargs)


def _connect(engine, conn_id: str):
    """Open a connection, or fail naming the connection (never its password). MySQL/MariaDB
    sessions run in UTC, so TIMESTAMP values (stored as UTC) come back as UTC."""
    import sqlalchemy as sa

    try:
        conn = engine.connect()
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        url = engine.url
        where = f"{url.host}:{url.port}" if url.host else (url.database or "")
        reason = " ".join(str(exc.orig or exc).split())
        raise SourceUnreachableError(
            f"source connection {conn_id!r} ({engine.dialect.name} at {where}) is not reachable: {reason}"
        ) from None
    if engine.dialect.name in ("mysql", "mariadb"):
        conn.exec_driver_sql("SET time_zone = '+00:00'")
    return conn


# -- kinds ---------------------------------------------------------------------------------------
def kind_of(dialect, type_) -> str:
    """The kind of a SQLAlchemy column type as ``dialect`` (a Dialect or its name) reflects it;
    a type name string (what the catalog says of a type SQLAlchemy does not know) works too.
    Raises :class:`UnmappableTypeError` for a type bronze cannot keep faithfully."""
    from sqlalchemy import types as st
    from sqlalchemy.dialects import mssql, mysql
    from sqlalchemy.dialects import postgresql as pg

    name = getattr(dialect, "name", dialect)
    if isinstance(type_, str):
        return _kind_of_name(type_)
    t = type_
    if name == "mssql":
        if isinstance(t, mssql.SMALLMONEY):
            return "decimal(10,4)"
        if isinstance(t, mssql.MONEY):
            return "decimal(19,4)"
        if isinstance(t, mssql.UNIQUEIDENTIFIER):
            return "uuid"
        if isinstance(t, mssql.BIT):
            return "boolean"
        if isinstance(t, mssql.DATETIMEOFFSET):
            return "timestamptz"
        if isinstance(t, mssql.XML):
            return "xml"
        if isinstance(t, mssql.IMAGE | mssql.TIMESTAMP):  # TIMESTAMP is SQL Server's rowversion
            return "binary"
        if isinstance(t, mssql.TINYINT):
            return "int16"
        if isinstance(t, mssql.SQL_VARIANT):
            raise UnmappableTypeError(_type_text(t, dialect))
    if name in ("mysql", "mariadb"):
        if isinstance(t, mysql.TINYINT):
            return "boolean" if t.display_width == 1 else "int16"
        if isinstance(t, mysql.BIT):
            if (t.length or 1) == 1:
                return "boolean"
            raise UnmappableTypeError(_type_text(t, dialect))
        if isinstance(t, mysql.TIMESTAMP):
            return "timestamptz"  # stored as UTC, read in a UTC session
        if isinstance(t, mysql.YEAR):
            return "int16"
        if isinstance(t, mysql.SET):
            return "string"
        if getattr(t, "unsigned", False) and isinstance(t, st.Integer):
            if isinstance(t, mysql.BIGINT):
                return "decimal(20,0)"
            return "int32" if isinstance(t, mysql.SMALLINT) else "int64"
        if isinstance(t, mysql.FLOAT):
            return "float32"
    if name == "postgresql":
        if isinstance(t, pg.MONEY):
            return "decimal(19,2)"  # read as numeric: money's text form depends on the locale
        if isinstance(t, pg.INET | pg.CIDR | pg.MACADDR | pg.CITEXT):
            return "string"
        if isinstance(t, pg.JSON | pg.JSONB):
            return "json"
        if isinstance(t, pg.TIME) and t.timezone:
            raise UnmappableTypeError(_type_text(t, dialect))
    if isinstance(t, st.Boolean):
        return "boolean"
    if isinstance(t, st.Uuid):
        return "uuid"
    if isinstance(t, st.JSON):
        return "json"
    if isinstance(t, st.Float):
        if name == "sqlite":
            return "float64"  # SQLite's REAL is 8 bytes
        if isinstance(t, st.REAL) or (t.precision is not None and t.precision <= 24):
            return "float32"
        return "float64"
    if isinstance(t, st.Numeric):
        if t.precision is None:
            return UNBOUNDED_NUMERIC
        if t.precision > MAX_PRECISION:
            raise UnmappableTypeError(f"{_type_text(t, dialect)} (precision over {MAX_PRECISION})")
        return f"decimal({t.precision},{t.scale or 0})"
    if isinstance(t, st.Integer):
        if name == "sqlite":
            return "int64"  # SQLite's INTEGER is 8 bytes
        if isinstance(t, st.SmallInteger):
            return "int16"
        return "int64" if isinstance(t, st.BigInteger) else "int32"
    if isinstance(t, st.DateTime):
        return "timestamptz" if getattr(t, "timezone", False) else "timestamp"
    if isinstance(t, st.Date):
        return "date"
    if isinstance(t, st.Time):
        return "time"
    if isinstance(t, st._Binary):
        return "binary"
    if isinstance(t, st.String):  # CHAR, VARCHAR, TEXT, NVARCHAR, ENUM, ...
        return "string"
    raise UnmappableTypeError(_type_text(t, dialect))


_NAMED_KINDS = {
    "xml": "xml",
    "uuid": "uuid",
    "uniqueidentifier": "uuid",
    "json": "json",
    "jsonb": "json",
    "money": "decimal(19,2)",
    "inet": "string",
    "cidr": "string",
    "macaddr": "string",
    "citext": "string",
}


def _kind_of_name(type_name: str) -> str:
    kind = _NAMED_KINDS.get(type_name.strip().lower())
    if kind is None:
        raise UnmappableTypeError(type_name)
    return kind


def _type_text(type_, dialect) -> str:
    from sqlalchemy.types import NullType

    if isinstance(type_, NullType):
        return "(unknown to SQLAlchemy)"
    try:
        return str(type_.compile(dialect=dialect if not isinstance(dialect, str) else None))
    except Exception:
        return repr(type_)


def arrow_type(kind: str):
    """The bronze parquet (Arrow) type of a kind."""
    import pyarrow as pa

    match = DECIMAL_KIND.match(kind)
    if match:
        return pa.decimal128(int(match[1]), int(match[2]))
    types = {
        "boolean": pa.bool_(),
        "int16": pa.int16(),
        "int32": pa.int32(),
        "int64": pa.int64(),
        "float32": pa.float32(),
        "float64": pa.float64(),
        "string": pa.string(),
        "binary": pa.binary(),
        "date": pa.date32(),
        "time": pa.time64("us"),
        "timestamp": pa.timestamp("us"),
        "timestamptz": pa.timestamp("us", tz="UTC"),
        "uuid": pa.string(),
        "json": pa.string(),
        "xml": pa.string(),
    }
    if kind not in types:
        raise ValueError(f"unknown kind {kind!r}")
    return types[kind]


# -- discovery -----------------------------------------------------------------------------------
def _naming():
    from lakehouse import settings

    settings._lake_module()  # puts the repository root (spark_jobs) on sys.path
    from spark_jobs.common import naming

    return naming


def _lake_name(name: str) -> str | None:
    """The lake table name of a source table (``naming.lake_name``), None when it gives none."""
    return _naming().lake_name(name)


def _patterns(source: dict, key: str, default: list[str]) -> list[str]:
    patterns = source.get(key)
    patterns = default if patterns is None else patterns
    if not isinstance(patterns, list) or not all(
        isinstance(p, str) and TABLE_PATTERN.match(p) for p in patterns
    ):
        raise SchemaCopyError(
            f"source {key}: {patterns!r} must be a list of table name patterns "
            f"(letters, digits, _ - $ space and the wildcards * ? [ ] !)"
        )
    return [p.lower() for p in patterns]


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name.lower(), p) for p in patterns)


def _resolve_schema(inspector, conn_id: str, schema) -> str:
    """The schema to copy, checked against the catalog's list before it is used anywhere."""
    if schema is None:
        return inspector.default_schema_name
    if not isinstance(schema, str) or not SCHEMA_NAME.match(schema):
        raise SchemaCopyError(
            f"source schema {schema!r} of connection {conn_id!r} is not a schema name "
            "(letters, digits, _ $ - and spaces)"
        )
    names = inspector.get_schema_names()
    if schema not in names:
        folded = [n for n in names if n.lower() == schema.lower()]
        if len(folded) != 1:
            raise SchemaCopyError(
                f"source schema {schema!r} not found in connection {conn_id!r} "
                f"(it has: {', '.join(sorted(names))})"
            )
        schema = folded[0]
    return schema


def discover(conn_id: str, source: dict) -> dict:
    """The tables of ``source["schema"]`` to copy, from the catalog now.

    Returns ``{"schema": name, "tables": [spec, ...], "excluded": [lake names of tables the
    patterns leave out]}``; each spec is JSON (it travels by XCom) with ``table`` (lake name),
    ``source_schema``, ``source_table``, ``columns`` ([{name, source_type, kind, nullable}]),
    ``primary_key``, ``change_column``, ``mode`` (``full`` or ``incremental``) and ``reason`` (why
    a table with a change column is copied in full). Raises :class:`SchemaCopyError` naming every
    table and column it cannot take.
    """
    import sqlalchemy as sa

    include = _patterns(source, "include", ["*"])
    exclude = _patterns(source, "exclude", [])
    change_names = [c.lower() for c in source.get("change_columns") or []]
    overrides = {str(k).lower(): v for k, v in (source.get("incremental") or {}).items()}
    engine = source_engine(conn_id)
    try:
        with _connect(engine, conn_id) as conn:
            inspector = sa.inspect(conn)
            schema = _resolve_schema(inspector, conn_id, source.get("schema"))
            names = sorted(inspector.get_table_names(schema=schema))
            specs, excluded, errors = [], [], []
            for name in names:
                if not _matches(name, include) or _matches(name, exclude):
                    lake = _lake_name(name)
                    if lake:
                        excluded.append(lake)
                    continue
                try:
                    specs.append(
                        _table_spec(conn, inspector, schema, name, change_names, overrides.get(name.lower()))
                    )
                except SchemaCopyError as exc:
                    errors.append(str(exc))
    finally:
        engine.dispose()
    by_lake: dict[str, list[str]] = {}
    for spec in specs:
        by_lake.setdefault(spec["table"], []).append(spec["source_table"])
    for lake, sources in sorted(by_lake.items()):
        if len(sources) > 1:
            errors.append(
                f"{schema}: tables {', '.join(sources)} all give the lake name {lake!r}: "
                "exclude all but one (source.exclude)"
            )
    if errors:
        raise SchemaCopyError(
            f"{len(errors)} problem(s) in schema {schema!r} of connection {conn_id!r} "
            "(exclude a table with source.exclude to leave it out):\n" + "\n".join(errors)
        )
    if not specs:
        log.warning(
            "schema %s of %s: no table matches include %s / exclude %s", schema, conn_id, include, exclude
        )
    return {"schema": schema, "tables": specs, "excluded": sorted(excluded)}


def _table_spec(conn, inspector, schema: str, name: str, change_names: list[str], override) -> dict:
    from sqlalchemy.types import NullType

    where = f"{schema}.{name}"
    lake = _lake_name(name)
    problems = []
    if lake is None:
        problems.append(
            f"{where}: table name {name!r} gives no lake name (lower snake_case, a letter first, "
            "at most 63 letters, digits and _)"
        )
    reflected = _columns(inspector, name, schema)
    raw = (
        _catalog_types(conn, schema, name) if any(isinstance(c["type"], NullType) for c in reflected) else {}
    )
    columns, gold_names = [], {}
    for col in reflected:
        type_ = raw.get(col["name"], col["type"]) if isinstance(col["type"], NullType) else col["type"]
        try:
            kind = kind_of(conn.dialect, type_)
        except UnmappableTypeError as exc:
            problems.append(
                f"{where}.{col['name']}: type {exc} cannot be mapped to a lake type (exclude the "
                "table, or change the column's type in the source)"
            )
            continue
        column_lake = _naming().snake_case(col["name"])  # the gold column name (naming.snake_columns)
        if not column_lake:
            problems.append(f"{where}.{col['name']}: column name has no ASCII letter or digit to name it by")
        elif column_lake in gold_names:
            problems.append(
                f"{where}: columns {gold_names[column_lake]!r} and {col['name']!r} both give {column_lake!r}"
            )
        else:
            gold_names[column_lake] = col["name"]
        source_type = type_ if isinstance(type_, str) else _type_text(type_, conn.dialect)
        columns.append(
            {"name": col["name"], "source_type": source_type, "kind": kind, "nullable": bool(col["nullable"])}
        )
    if problems:
        raise SchemaCopyError("\n".join(problems))
    primary_key = list(inspector.get_pk_constraint(name, schema=schema).get("constrained_columns") or [])
    by_lower = {c["name"].lower(): c for c in columns}
    change, reason = None, None
    if override:
        change = by_lower.get(str(override).lower())
        if change is None:
            raise SchemaCopyError(
                f"{where}: source.incremental names column {override!r}, which it does not have"
            )
    else:
        change = next((by_lower[n] for n in change_names if n in by_lower), None)
    if change is not None:
        if not primary_key:
            reason = f"change column {change['name']} but no primary key to merge by: copied in full"
        elif change["kind"] not in CHANGE_KINDS:
            reason = (
                f"change column {change['name']} is {change['kind']}, not a date or timestamp: copied in full"
            )
        elif change["nullable"]:
            reason = (
                f"change column {change['name']} is nullable (rows without a value would never be "
                "copied incrementally): copied in full"
            )
    incremental = change is not None and reason is None
    return {
        "table": lake,
        "source_schema": schema,
        "source_table": name,
        "columns": columns,
        "primary_key": primary_key,
        "change_column": change["name"] if incremental else None,
        "mode": "incremental" if incremental else "full",
        "reason": reason,
    }


def _columns(inspector, table: str, schema: str) -> list[dict]:
    """The inspector's columns; a type SQLAlchemy does not know (e.g. PostgreSQL's xml) comes back
    as NullType, and ``_catalog_types`` names it, so its warning says nothing new."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Did not recognize type", category=Warning)
        return inspector.get_columns(table, schema=schema)


def _catalog_types(conn, schema: str, table: str) -> dict[str, str]:
    """Type names from information_schema, for types SQLAlchemy reflects as NullType."""
    import sqlalchemy as sa

    if conn.dialect.name == "postgresql":
        query = sa.text(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a "
            "JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = :schema AND c.relname = :table AND a.attnum > 0 AND NOT a.attisdropped"
        )
    else:
        query = sa.text(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = :schema AND table_name = :table"
        )
    return {row[0]: row[1] for row in conn.execute(query, {"schema": schema, "table": table})}


# -- values --------------------------------------------------------------------------------------
def converter(kind: str, timezone: str = "UTC"):
    """A function turning one source value into the kind's Python value for Arrow (None stays)."""
    match = DECIMAL_KIND.match(kind)
    if match:
        precision, scale = int(match[1]), int(match[2])
        quantum = decimal.Decimal(1).scaleb(-scale)

        def to_decimal(v):
            if isinstance(v, bool):
                raise ValueError(f"not a number: {v!r}")
            if isinstance(v, float):
                v = decimal.Decimal(repr(v))
            d = decimal.Decimal(v) if isinstance(v, int | str) else v
            if not isinstance(d, decimal.Decimal) or not d.is_finite():
                raise ValueError(f"not a finite decimal: {v!r}")
            q = d.quantize(quantum, rounding=decimal.ROUND_HALF_EVEN)
            if q != d and isinstance(v, decimal.Decimal | int | str):
                raise ValueError(f"{v} has more than {scale} decimal places")
            if len(q.as_tuple().digits) > precision and q != 0:
                raise ValueError(f"{v} does not fit decimal({precision},{scale})")
            return q

        return to_decimal
    zone = zoneinfo.ZoneInfo(timezone)

    def to_bool(v):
        if isinstance(v, bool):
            return v
        if isinstance(v, int) and v in (0, 1):
            return bool(v)
        if isinstance(v, bytes) and v in (b"\x00", b"\x01"):
            return v == b"\x01"
        raise ValueError(f"not a boolean: {v!r}")

    def to_int(v):
        if isinstance(v, bool) or not isinstance(v, int | decimal.Decimal) or v != int(v):
            raise ValueError(f"not an integer: {v!r}")
        return int(v)

    def to_float(v):
        if isinstance(v, bool) or not isinstance(v, int | float | decimal.Decimal):
            raise ValueError(f"not a number: {v!r}")
        return float(v)

    def to_string(v):
        if isinstance(v, bytes | bytearray | memoryview):
            raise ValueError("binary value in a text column")
        return str(v)

    def to_binary(v):
        if isinstance(v, bytes | bytearray | memoryview):
            return bytes(v)
        raise ValueError(f"not binary: {type(v).__name__}")

    def to_date(v):
        if isinstance(v, dt.datetime):
            if v.time() != dt.time() or v.tzinfo is not None:
                raise ValueError(f"a timestamp in a date column: {v!r}")
            return v.date()
        return v if isinstance(v, dt.date) else dt.date.fromisoformat(str(v))

    def to_time(v):
        if isinstance(v, dt.timedelta):  # MySQL TIME
            if not dt.timedelta(0) <= v < dt.timedelta(days=1):
                raise ValueError(f"{v} is not a time of day")
            return (dt.datetime.min + v).time()
        if isinstance(v, dt.time):
            if v.tzinfo is not None:
                raise ValueError(f"a time with a zone: {v!r}")
            return v
        return dt.time.fromisoformat(str(v))

    def to_timestamp(v):
        if not isinstance(v, dt.datetime):
            v = dt.datetime.fromisoformat(str(v))
        if v.tzinfo is not None:  # an instant: its wall time in the source's zone
            v = v.astimezone(zone).replace(tzinfo=None)
        return v

    def to_timestamptz(v):
        if not isinstance(v, dt.datetime):
            v = dt.datetime.fromisoformat(str(v))
        if v.tzinfo is None:  # MySQL TIMESTAMP, read in a UTC session
            return v.replace(tzinfo=dt.UTC)
        return v.astimezone(dt.UTC)

    def to_uuid(v):
        if isinstance(v, uuid.UUID):
            return str(v)
        if isinstance(v, bytes) and len(v) == 16:
            return str(uuid.UUID(bytes=v))
        return str(uuid.UUID(str(v)))

    def to_json(v):
        return v if isinstance(v, str) else json.dumps(v, sort_keys=True)

    functions = {
        "boolean": to_bool,
        "int16": to_int,
        "int32": to_int,
        "int64": to_int,
        "float32": to_float,
        "float64": to_float,
        "string": to_string,
        "binary": to_binary,
        "date": to_date,
        "time": to_time,
        "timestamp": to_timestamp,
        "timestamptz": to_timestamptz,
        "uuid": to_uuid,
        "json": to_json,
        "xml": to_string,
    }
    if kind not in functions:
        raise ValueError(f"unknown kind {kind!r}")
    return functions[kind]


# -- copy ----------------------------------------------------------------------------------------
def manifest_folder(pipeline: str, table: str | None = None):
    return lake_path("bronze", pipeline, "_loads", *([table] if table else []))


def read_manifest(pipeline: str, table: str, load_id: str) -> dict | None:
    path = manifest_folder(pipeline, table) / f"{load_id}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _load_ids(pipeline: str, table: str) -> list[str]:
    folder = manifest_folder(pipeline, table)
    if not folder.exists():
        return []
    return sorted(
        p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json") and not p.name.startswith(".")
    )


def _check_spec(pipeline: str, spec: dict) -> None:
    for what, name in (("pipeline", pipeline), ("table", spec.get("table"))):
        if not isinstance(name, str) or not NAME.match(name):
            raise SchemaCopyError(f"invalid lake {what} name {name!r}")
    if spec.get("mode") not in ("full", "incremental"):
        raise SchemaCopyError(f"{spec['table']}: mode {spec.get('mode')!r} is not full or incremental")
    for column in spec["columns"]:
        if column["kind"] not in KINDS and not DECIMAL_KIND.match(column["kind"]):
            raise SchemaCopyError(f"{spec['table']}.{column['name']}: unknown kind {column['kind']!r}")


def _current_columns(conn, spec: dict, schema: str) -> dict:
    """The table's columns as the catalog has them now (reflected types, for reading values);
    fails naming the table when it, or a column, went away since discovery."""
    import sqlalchemy as sa

    inspector = sa.inspect(conn)
    name = spec["source_table"]
    if not inspector.has_table(name, schema=schema):
        raise SchemaCopyError(
            f"{schema}.{name} (lake table {spec['table']}) was dropped after discovery: nothing landed, "
            "its lake tables are kept"
        )
    now = {c["name"]: c["type"] for c in _columns(inspector, name, schema)}
    gone = [c["name"] for c in spec["columns"] if c["name"] not in now]
    if gone:
        raise SchemaCopyError(
            f"{schema}.{name}: column(s) {', '.join(gone)} dropped after discovery: nothing landed, "
            "its lake tables are kept (the next run discovers the table as it is)"
        )
    return now


def _query(conn, spec: dict, schema: str, types: dict, mode: str, lower, upper, timezone: str):
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql as pg
    from sqlalchemy.sql.elements import quoted_name
    from sqlalchemy.types import NullType

    names = [c["name"] for c in spec["columns"]]

    def typed(name):
        t = types[name]
        return sa.types.NULLTYPE if isinstance(t, NullType) else t

    table = sa.table(
        quoted_name(spec["source_table"], quote=True),
        *(sa.column(quoted_name(n, quote=True), typed(n)) for n in names),
        schema=quoted_name(schema, quote=True),
    )
    selected = []
    for name in names:
        column = table.c[name]
        if isinstance(types[name], pg.MONEY):
            match = DECIMAL_KIND.match(next(c["kind"] for c in spec["columns"] if c["name"] == name))
            column = sa.cast(column, sa.Numeric(int(match[1]), int(match[2]))).label(name)
        selected.append(column)
    query = sa.select(*selected)
    if mode in ("initial", "incremental"):
        name = spec["change_column"]
        kind = next(c["kind"] for c in spec["columns"] if c["name"] == name)
        column = table.c[name]
        low, high = (
            _bound(conn.dialect.name, kind, lower, timezone),
            _bound(conn.dialect.name, kind, upper, timezone),
        )
        if mode == "incremental":
            query = query.where(column >= sa.bindparam("lower", low, type_=column.type))
        query = query.where(column < sa.bindparam("upper", high, type_=column.type))
    keys = spec.get("primary_key") or []
    if keys:  # the same rows give the same parts, in the same order
        query = query.order_by(*(table.c[k] for k in keys))
    return query


def _bound(dialect: str, kind: str, moment: dt.datetime, timezone: str):
    """A window bound (a UTC instant) as a value of the change column's kind."""
    if kind == "date":  # d in [start, end) when d >= ceil(start) and d < ceil(end), in the source zone
        return _ceil_date(moment.astimezone(zoneinfo.ZoneInfo(timezone)))
    if kind == "timestamp":
        return moment.astimezone(zoneinfo.ZoneInfo(timezone)).replace(tzinfo=None)
    utc = moment.astimezone(dt.UTC)
    return utc.replace(tzinfo=None) if dialect in ("mysql", "mariadb") else utc


def copy_table(pipeline: str, spec: dict, source: dict, windows: list[Window], run_id: str) -> dict:
    """Copy one discovered table's load to bronze (see the module's notes); returns its manifest
    with ``parts`` (how many) and ``replaced`` (rows of the load this one replaced, or None).

    ``windows`` are the run's windows (``sql_ingest.run_windows``): the load is
    ``[windows[0].start, windows[-1].end)`` and its id is the first start.
    """
    import pyarrow as pa
    import sqlalchemy as sa

    _check_spec(pipeline, spec)
    if not windows:
        raise SchemaCopyError(f"{spec['table']}: no window to copy")
    start, end = windows[0].start, windows[-1].end
    load_id = start.strftime(WID_FORMAT)
    table = spec["table"]
    timezone = source.get("timezone") or "UTC"
    chunk_rows = int(source.get("chunk_rows") or CHUNK_ROWS)
    mode = spec["mode"]
    if mode == "incremental" and not any(other < load_id for other in _load_ids(pipeline, table)):
        mode = "initial"
    engine = source_engine(source["conn_id"])
    folder = lake_path("bronze", pipeline, table, load_id)
    token = uuid.uuid4().hex[:12]
    files, digests, rows, max_change = [], [], 0, None
    kinds = [c["kind"] for c in spec["columns"]]
    names = [c["name"] for c in spec["columns"]]
    convert = [converter(k, timezone) for k in kinds]
    schema_arrow = pa.schema([pa.field(n, arrow_type(k)) for n, k in zip(names, kinds, strict=True)])
    change_index = names.index(spec["change_column"]) if spec.get("change_column") else None
    key_index = [names.index(k) for k in spec.get("primary_key") or []]
    try:
        with _connect(engine, source["conn_id"]) as conn:
            schema = spec.get("source_schema") or sa.inspect(conn).default_schema_name
            where = f"{schema}.{spec['source_table']}"
            types = _current_columns(conn, spec, schema)
            query = _query(conn, spec, schema, types, mode, start, end, timezone)
            log.info(
                "%s -> %s: %s copy, load %s%s",
                where,
                table,
                mode,
                load_id,
                f", {spec['change_column']} in [{start.isoformat() if mode == 'incremental' else '...'}, "
                f"{end.isoformat()})"
                if mode != "full"
                else "",
            )
            folder.mkdir(parents=True, exist_ok=True)
            try:
                result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(query)
                for batch in result.partitions(chunk_rows):
                    columns = [[] for _ in names]
                    for row in batch:
                        for i, value in enumerate(row):
                            if value is None:
                                columns[i].append(None)
                                continue
                            try:
                                columns[i].append(convert[i](value))
                            except (TypeError, ValueError, ArithmeticError) as exc:
                                key = {names[k]: row[k] for k in key_index} or "(no primary key)"
                                raise SchemaCopyError(
                                    f"{where}.{names[i]} of row {key}: {exc} (kind {kinds[i]}); "
                                    "nothing landed"
                                ) from None
                    if change_index is not None:
                        top = max((v for v in columns[change_index] if v is not None), default=None)
                        if top is not None and (max_change is None or top > max_change):
                            max_change = top
                    name, digest = _write_part(folder, token, len(files), columns, schema_arrow, where)
                    files.append(name)
                    digests.append(digest)
                    rows += len(batch)
            except sa.exc.DBAPIError as exc:
                if exc.connection_invalidated:
                    raise
                _current_columns(conn, spec, schema)  # gone meanwhile: say so
                raise
    finally:
        engine.dispose()
    if not files:  # an empty table or window: one part with the schema
        name, digest = _write_part(folder, token, 0, [[] for _ in names], schema_arrow, where)
        files.append(name)
        digests.append(digest)
    previous = read_manifest(pipeline, table, load_id)
    content = _content_hash(digests, mode, start, end, spec)
    if (
        previous
        and previous.get("sha256") == content
        and all((folder / f).exists() for f in previous["files"])
    ):
        # The same rows as the landed load: keep it (and its manifest, so silver has nothing to do).
        for leftover in folder.iterdir():
            if leftover.name not in previous["files"]:
                leftover.unlink()
        log.info("%s: load %s unchanged since run %s (%s rows)", table, load_id, previous["run_id"], rows)
        return {**previous, "parts": len(previous["files"]), "replaced": None, "status": "unchanged"}
    manifest = {
        "table": table,
        "source_schema": schema,
        "source_table": spec["source_table"],
        "load_id": load_id,
        "mode": mode,
        "window_start": start.isoformat() if mode == "incremental" else None,
        "window_end": end.isoformat(),
        "change_column": spec.get("change_column"),
        "primary_key": spec.get("primary_key") or [],
        "columns": spec["columns"],
        "files": files,
        "rows": rows,
        "sha256": content,
        "max_change": _iso(max_change),
        "run_id": run_id,
        "extracted_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    path = manifest_folder(pipeline, table) / f"{load_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps(manifest, indent=2).encode())
    for leftover in folder.iterdir():  # earlier attempts' parts: no manifest lists them now
        if leftover.name not in files:
            leftover.unlink()
    replaced = previous["rows"] if previous else None
    log.info(
        "%s: landed %s rows in %s part(s), load %s (%s)%s",
        table,
        rows,
        len(files),
        load_id,
        mode,
        f", replacing {replaced} rows of run {previous['run_id']}" if previous else "",
    )
    return {**manifest, "parts": len(files), "replaced": replaced, "status": "landed"}


def _content_hash(part_digests: list[bytes], mode: str, start, end, spec: dict) -> str:
    """What identifies a load's content: its parts' bytes (the same rows give the same bytes), what
    they were read as and from which window. An identical re-extraction keeps the landed load."""
    digest = hashlib.sha256()
    what = {"mode": mode, "columns": spec["columns"], "primary_key": spec.get("primary_key") or []}
    what["window"] = [start.isoformat() if mode == "incremental" else None, end.isoformat()]
    digest.update(json.dumps(what, sort_keys=True).encode())
    for part in part_digests:
        digest.update(part)
    return digest.hexdigest()


def _write_part(
    folder, token: str, number: int, columns: list[list], schema, where: str
) -> tuple[str, bytes]:
    """Write one part; returns its name and the sha256 of its bytes (for the load's content hash)."""
    import pyarrow as pa

    arrays = []
    for values, field in zip(columns, schema, strict=True):
        try:
            arrays.append(pa.array(values, type=field.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
            raise SchemaCopyError(f"{where}.{field.name}: {exc}; nothing landed") from None
    name = f"part-{token}-{number:05d}.parquet"
    data = parquet_bytes(pa.Table.from_arrays(arrays, schema=schema))
    (folder / name).write_bytes(data)
    return name, hashlib.sha256(data).digest()


def _iso(value) -> str | None:
    if value is None:
        return None
    return value.isoformat()


def dropped_tables(pipeline: str, discovered: dict) -> list[str]:
    """Lake tables with bronze loads whose source table is no longer in the source (excluded
    tables are not dropped ones). They are reported; their lake tables are kept."""
    folder = manifest_folder(pipeline)
    if not folder.exists():
        return []
    present = {spec["table"] for spec in discovered["tables"]} | set(discovered.get("excluded") or [])
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name not in present
    )
