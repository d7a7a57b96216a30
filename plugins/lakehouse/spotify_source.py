"""The Spotify source database: the original T-SQL scripts on PostgreSQL or SQLite, and generated
data of the same shape, for tests, ``make demo`` and benchmarks.

The original project's source is an Azure SQL Database filled by two T-SQL scripts: an initial load,
and an "incremental" load whose rows all re-use existing keys (rows the source changed).
``load_script`` runs them on PostgreSQL or SQLite after a small, explicit translation of the DDL
(``translate_tsql``), the incremental one as upserts. ``generate`` writes synthetic data in the same
five tables, from a few rows for the demo to millions for benchmarks, and ``apply_changes`` changes
a fraction of the dimension rows and adds one more day of streams, as a source does between two runs.

Table and column names keep their case (``"DimUser"``), so every identifier is quoted, and names
taken from a script must match a strict pattern. Timestamps are written to the second, as the
scripts write them (``'2025-09-23 19:49:55'``; SQLite keeps exactly that text). The change column
of each table (``include/spotify/pipeline.yaml``) is indexed, since the pipeline reads by window.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import random
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)

DIALECTS = ("postgresql", "sqlite")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
DAY_SECONDS = 86_400


class ScriptError(ValueError):
    """A statement of a T-SQL script that this translation does not support, or cannot run."""


# -- T-SQL scripts ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Statement:
    """One statement of a script: ``drop``, ``create`` or ``insert``, on ``table``."""

    kind: str
    table: str
    columns: tuple[str, ...] = ()  # create: the declared columns; insert: the listed columns
    definitions: tuple[str, ...] = ()  # create: column definitions and constraints, translated
    key: tuple[str, ...] = ()  # create: the primary key
    rows: tuple[tuple, ...] = ()  # insert: the values, as Python values


_SPECIAL = re.compile(r"['\-/;]")
_DROP = re.compile(r"DROP\s+TABLE\s+IF\s+EXISTS\s+(\S+)", re.I)
_CREATE = re.compile(r"CREATE\s+TABLE\s+([^\s(]+)\s*\((.*)\)", re.I | re.S)
_INSERT = re.compile(r"INSERT\s+INTO\s+([^\s(]+)\s*\(([^()]*)\)\s*VALUES\s*(\(.*)", re.I | re.S)
_TABLE_KEY = re.compile(r"(?:CONSTRAINT\s+\S+\s+)?PRIMARY\s+KEY\s*\(([^()]*)\)", re.I)
_COLUMN = re.compile(
    r"(\S+)\s+([A-Za-z][A-Za-z0-9]*)\s*(?:\(\s*([0-9]+|MAX)\s*(?:,\s*([0-9]+)\s*)?\))?\s*(.*)", re.I | re.S
)
_CONSTRAINT = re.compile(r"(PRIMARY\s+KEY|NOT\s+NULL|NULL)(?:\s+|$)", re.I)
_LITERAL = re.compile(r"\s*(?:N?'((?:[^']|'')*)'|(-?[0-9]*\.[0-9]+|-?[0-9]+\.)|(-?[0-9]+)|(NULL)\b)\s*", re.I)
_PLAIN_TYPES = {
    "INT": "INT",
    "INTEGER": "INTEGER",
    "SMALLINT": "SMALLINT",
    "BIGINT": "BIGINT",
    "DATE": "DATE",
    "DATETIME": "TIMESTAMP",  # T-SQL DATETIME has no time zone, as TIMESTAMP
    "DATETIME2": "TIMESTAMP",
}
_SIZED_TYPES = {"VARCHAR": "VARCHAR", "NVARCHAR": "VARCHAR", "CHAR": "CHAR", "NCHAR": "CHAR"}
_NUMERIC_TYPES = ("DECIMAL", "NUMERIC")


def _quote(name: str) -> str:
    """A validated identifier in double quotes (PostgreSQL and SQLite both quote so)."""
    if not IDENTIFIER.match(name):
        raise ScriptError(f"invalid identifier {name!r}")
    return f'"{name}"'


def _split(script: str) -> list[tuple[int, str]]:
    """The statements of a script as (offset, text), comments removed.

    A statement ends at a ``;`` outside a string literal (``''`` is a quote inside one); ``--``
    comments run to the end of the line, ``/* */`` comments may span lines.
    """
    statements: list[tuple[int, str]] = []
    parts: list[str] = []
    start: int | None = None
    i, n = 0, len(script)
    while i < n:
        match = _SPECIAL.search(script, i)
        j = match.start() if match else n
        chunk = script[i:j]
        if start is None and chunk.strip():
            start = i + len(chunk) - len(chunk.lstrip())
        parts.append(chunk)
        i = j
        if i >= n:
            break
        if script[i] == "'":
            k = i + 1
            while True:
                k = script.find("'", k)
                if k < 0:
                    raise ScriptError(f"line {_line(script, i)}: a string literal is never closed")
                if script.startswith("''", k):
                    k += 2
                    continue
                break
            start = i if start is None else start
            parts.append(script[i : k + 1])
            i = k + 1
        elif script.startswith("--", i):
            k = script.find("\n", i)
            i = n if k < 0 else k
            parts.append(" ")
        elif script.startswith("/*", i):
            k = script.find("*/", i + 2)
            if k < 0:
                raise ScriptError(f"line {_line(script, i)}: a /* comment is never closed")
            i = k + 2
            parts.append(" ")
        elif script[i] == ";":
            text = "".join(parts).strip()
            if text:
                statements.append((start or 0, text))
            parts, start = [], None
            i += 1
        else:  # a lone '-' or '/'
            start = i if start is None else start
            parts.append(script[i])
            i += 1
    text = "".join(parts).strip()
    if text:
        statements.append((start or 0, text))
    return statements


def _line(script: str, offset: int) -> int:
    return script.count("\n", 0, offset) + 1


def _excerpt(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def parse_tsql(script: str) -> list[Statement]:
    """The statements of a T-SQL script, parsed; a statement outside the supported forms raises
    :class:`ScriptError` naming its line and text.

    Supported: ``DROP TABLE IF EXISTS t``; ``CREATE TABLE t (...)`` with columns of the types
    INT, INTEGER, SMALLINT, BIGINT, DATE, DATETIME, DATETIME2, (N)VARCHAR(n|MAX), (N)CHAR(n),
    DECIMAL/NUMERIC(p[, s]), each optionally PRIMARY KEY, NOT NULL or NULL, and a table
    ``[CONSTRAINT c] PRIMARY KEY (...)``; ``INSERT INTO t (columns) VALUES (...)[, (...)]`` of
    literals (numbers, strings, N'strings', NULL).
    """
    parsed = []
    for offset, text in _split(script):
        try:
            parsed.append(_parse_statement(text))
        except ScriptError as exc:
            raise ScriptError(f"line {_line(script, offset)}: {exc}: {_excerpt(text)}") from None
    return parsed


def _parse_statement(text: str) -> Statement:
    if match := _DROP.fullmatch(text):
        return Statement("drop", _identifier(match.group(1), "table name"))
    if match := _CREATE.fullmatch(text):
        return _parse_create(_identifier(match.group(1), "table name"), match.group(2))
    if match := _INSERT.fullmatch(text):
        table = _identifier(match.group(1), "table name")
        columns = tuple(_identifier(c.strip(), "column name") for c in match.group(2).split(","))
        rows = _parse_rows(match.group(3))
        for row in rows:
            if len(row) != len(columns):
                raise ScriptError(f"{len(row)} values for {len(columns)} columns")
        return Statement("insert", table, columns=columns, rows=rows)
    raise ScriptError("unsupported statement (only DROP TABLE IF EXISTS, CREATE TABLE and INSERT ... VALUES)")


def _identifier(name: str, what: str) -> str:
    if not IDENTIFIER.match(name):
        raise ScriptError(f"unsupported {what} {name!r} (plain names only: {IDENTIFIER.pattern})")
    return name


def _split_top_level(body: str) -> list[str]:
    parts, depth, current = [], 0, []
    for char in body:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return parts


def _parse_create(table: str, body: str) -> Statement:
    columns: list[str] = []
    definitions: list[str] = []
    key: tuple[str, ...] = ()
    for item in _split_top_level(body):
        if match := _TABLE_KEY.fullmatch(item):
            if key:
                raise ScriptError("more than one primary key")
            key = tuple(_identifier(c.strip(), "key column") for c in match.group(1).split(","))
            definitions.append(f"PRIMARY KEY ({', '.join(_quote(c) for c in key)})")
            continue
        match = _COLUMN.fullmatch(item)
        if not match:
            raise ScriptError(f"unsupported column definition {item!r}")
        name = _identifier(match.group(1), "column name")
        sql_type = _translate_type(match.group(2), match.group(3), match.group(4))
        constraints = []
        rest = match.group(5).strip()
        while rest:
            constraint = _CONSTRAINT.match(rest)
            if not constraint:
                raise ScriptError(f"unsupported column constraint {rest!r} on {name}")
            word = " ".join(constraint.group(1).upper().split())
            if word == "PRIMARY KEY":
                if key:
                    raise ScriptError("more than one primary key")
                key = (name,)
            constraints.append(word)
            rest = rest[constraint.end() :]
        columns.append(name)
        definitions.append(" ".join([_quote(name), sql_type, *constraints]))
    missing = [c for c in key if c not in columns]
    if missing:
        raise ScriptError(f"primary key column {missing[0]!r} is not a column")
    return Statement("create", table, columns=tuple(columns), definitions=tuple(definitions), key=key)


def _translate_type(name: str, size: str | None, scale: str | None) -> str:
    upper = name.upper()
    if upper in _PLAIN_TYPES and size is None:
        return _PLAIN_TYPES[upper]
    if upper in _SIZED_TYPES and size is not None and scale is None:
        if size.upper() == "MAX":
            if _SIZED_TYPES[upper] == "VARCHAR":
                return "TEXT"
        else:
            return f"{_SIZED_TYPES[upper]}({int(size)})"
    if upper in _NUMERIC_TYPES and size is not None and size.upper() != "MAX":
        return f"{upper}({int(size)}{'' if scale is None else f', {int(scale)}'})"
    written = name + ("" if size is None else f"({size}{'' if scale is None else ', ' + scale})")
    raise ScriptError(f"unsupported column type {written}")


def _parse_rows(text: str) -> tuple[tuple, ...]:
    rows, i, n = [], 0, len(text)
    while True:
        i = _expect(text, i, "(")
        values = []
        while True:
            match = _LITERAL.match(text, i)
            if not match:
                raise ScriptError(f"unsupported value at {_excerpt(text[i:], 40)!r} (literals only)")
            string, decimal, integer, _null = match.groups()
            if string is not None:
                values.append(string.replace("''", "'"))
            elif decimal is not None:
                values.append(Decimal(decimal))
            elif integer is not None:
                values.append(int(integer))
            else:
                values.append(None)
            i = match.end()
            if text.startswith(",", i):
                i += 1
                continue
            i = _expect(text, i, ")")
            break
        rows.append(tuple(values))
        i = _skip_space(text, i)
        if i >= n:
            return tuple(rows)
        i = _expect(text, i, ",")


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i


def _expect(text: str, i: int, token: str) -> int:
    i = _skip_space(text, i)
    if not text.startswith(token, i):
        raise ScriptError(f"expected {token!r} at {_excerpt(text[i:], 40)!r}")
    return i + len(token)


def _literal(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(value)


def _render(statement: Statement) -> str:
    table = _quote(statement.table)
    if statement.kind == "drop":
        return f"DROP TABLE IF EXISTS {table}"
    if statement.kind == "create":
        return f"CREATE TABLE {table} (\n  " + ",\n  ".join(statement.definitions) + "\n)"
    columns = ", ".join(_quote(c) for c in statement.columns)
    values = ", ".join("(" + ", ".join(_literal(v) for v in row) + ")" for row in statement.rows)
    return f"INSERT INTO {table} ({columns}) VALUES {values}"


def _check_dialect(dialect: str) -> str:
    if dialect not in DIALECTS:
        raise ScriptError(f"dialect {dialect!r} is not supported (only {', '.join(DIALECTS)})")
    return dialect


def translate_tsql(script: str, dialect: str) -> list[str]:
    """The statements of a T-SQL script as SQL for ``dialect`` (``postgresql`` or ``sqlite``).

    The translation is the smallest honest one: DATETIME and DATETIME2 become TIMESTAMP,
    NVARCHAR/NCHAR become VARCHAR/CHAR (both databases store Unicode), (N)VARCHAR(MAX) becomes
    TEXT, N'...' literals lose the N; PRIMARY KEY stays; identifiers are quoted so that their case
    is kept; comments are dropped. Both dialects accept the same result today; the argument is
    checked so that a difference has one place to go. Anything else raises :class:`ScriptError`.
    """
    _check_dialect(dialect)
    return [_render(statement) for statement in parse_tsql(script)]


# -- running scripts ----------------------------------------------------------------------------
def _dialect(engine_or_connection) -> str:
    name = engine_or_connection.dialect.name
    if name not in DIALECTS:
        raise ScriptError(f"the Spotify source runs on {' or '.join(DIALECTS)}, not {name}")
    return name


def _tables() -> dict[str, dict]:
    """The pipeline's source tables by source name (DimUser, ...), from its metadata."""
    from lakehouse.metadata import load_pipeline

    return {spec["source_table"]: spec for spec in load_pipeline("spotify")["tables"]}


def load_script(engine: Engine, path: str | Path, *, as_updates: bool = False) -> dict[str, int]:
    """Run a T-SQL script in one transaction; returns the rows each table it touched holds after it.

    With ``as_updates`` every INSERT becomes an upsert on the table's primary key (``INSERT ...
    ON CONFLICT (key) DO UPDATE``), the way a source database changes existing rows: the keys
    stay, and when a key appears twice the later row wins. Values are bound parameters.
    """
    _dialect(engine)
    statements = parse_tsql(Path(path).read_text(encoding="utf-8-sig"))
    with _transaction(engine) as conn:
        touched = _execute(conn, statements, as_updates=as_updates)
        return {table: _count(conn, table) for table in touched}


@contextmanager
def _transaction(engine: Engine) -> Iterator[Connection]:
    """``engine.begin()``, where on SQLite the DDL is inside the transaction too.

    Python's sqlite3 module (before 3.12's ``autocommit``) opens a transaction only before DML,
    so a DROP or CREATE would commit on its own; an explicit BEGIN makes the whole script atomic.
    """
    with engine.begin() as conn:
        raw = conn.connection.dbapi_connection
        if conn.dialect.name == "sqlite" and not getattr(raw, "in_transaction", True):
            conn.exec_driver_sql("BEGIN")
        yield conn


def _execute(conn: Connection, statements: Sequence[Statement], *, as_updates: bool) -> list[str]:
    """Run parsed statements; consecutive INSERTs into the same columns go as one executemany.
    Returns the tables that exist afterwards, in the order the script first named them."""
    import sqlalchemy as sa

    keys: dict[str, tuple[str, ...]] = {}
    change_columns = {table: spec["change_column"] for table, spec in _tables().items()}
    touched: dict[str, bool] = {}
    i = 0
    while i < len(statements):
        statement = statements[i]
        touched.setdefault(statement.table, True)
        if statement.kind != "insert":
            conn.exec_driver_sql(_render(statement))
            touched[statement.table] = statement.kind == "create"
            if statement.kind == "create":
                keys[statement.table] = statement.key
                change = change_columns.get(statement.table)
                if change in statement.columns:
                    _index(conn, statement.table, change)
            i += 1
            continue
        j = i + 1
        while (
            j < len(statements)
            and statements[j].kind == "insert"
            and (statements[j].table, statements[j].columns) == (statement.table, statement.columns)
        ):
            j += 1
        rows = [row for s in statements[i:j] for row in s.rows]
        key = None
        if as_updates:
            key = keys.get(statement.table) or _primary_key(conn, statement.table)
        sql = _insert_sql(statement.table, statement.columns, key)
        params = [{f"p{n}": _bindable(conn, v) for n, v in enumerate(row)} for row in rows]
        conn.execute(sa.text(sql), params)
        touched[statement.table] = True
        i = j
    return [table for table, exists in touched.items() if exists]


def _bindable(conn: Connection, value):
    # sqlite3 cannot bind Decimal; SQLite's NUMERIC affinity reads the text back as a number
    if isinstance(value, Decimal) and conn.dialect.name == "sqlite":
        return str(value)
    return value


def _primary_key(conn: Connection, table: str) -> tuple[str, ...]:
    import sqlalchemy as sa

    inspector = sa.inspect(conn)
    if not inspector.has_table(table):
        raise ScriptError(f"cannot apply updates to {table}: the table does not exist")
    key = tuple(inspector.get_pk_constraint(table).get("constrained_columns") or ())
    if not key:
        raise ScriptError(f"cannot apply updates to {table}: it has no primary key")
    return key


def _insert_sql(
    table: str, columns: Sequence[str], key: Sequence[str] | None = None, *, update: bool = True
) -> str:
    """``INSERT`` with binds ``:p0``, ``:p1``...; with a key, on conflict update the other
    columns (an upsert) or, without ``update``, keep the existing row."""
    names = ", ".join(_quote(c) for c in columns)
    binds = ", ".join(f":p{n}" for n in range(len(columns)))
    sql = f"INSERT INTO {_quote(table)} ({names}) VALUES ({binds})"
    if key is None:
        return sql
    missing = [k for k in key if k not in columns]
    if missing:
        raise ScriptError(f"cannot upsert into {table}: key column {missing[0]!r} is not inserted")
    others = [c for c in columns if c not in key]
    conflict = f" ON CONFLICT ({', '.join(_quote(k) for k in key)}) DO "
    if not others or not update:
        return sql + conflict + "NOTHING"
    return sql + conflict + "UPDATE SET " + ", ".join(f"{_quote(c)} = excluded.{_quote(c)}" for c in others)


def _index(conn: Connection, table: str, column: str) -> None:
    name = _quote(f"ix_{table}_{column}")
    conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {name} ON {_quote(table)} ({_quote(column)})")


def _count(conn: Connection, table: str) -> int:
    return conn.exec_driver_sql(f"SELECT COUNT(*) FROM {_quote(table)}").scalar_one()


# -- the schema ---------------------------------------------------------------------------------
_TSQL_TYPES = {
    "int": "INT",
    "bigint": "BIGINT",
    "string": "VARCHAR(255)",
    "date": "DATE",
    "timestamp": "DATETIME",
}


def schema_script() -> str:
    """The source tables as a T-SQL script (drop, then create), from the pipeline's metadata, in
    the original scripts' style: what Azure SQL Database would be given."""
    lines = [f"DROP TABLE IF EXISTS {table};" for table in _tables()]
    for table, spec in _tables().items():
        single = len(spec["keys"]) == 1
        columns = [
            f"  {name} {_TSQL_TYPES[kind]}{' PRIMARY KEY' if single and name in spec['keys'] else ''}"
            for name, kind in spec["columns"].items()
        ]
        if not single:
            columns.append(f"  PRIMARY KEY ({', '.join(spec['keys'])})")
        lines.append(f"\nCREATE TABLE {table} (\n" + ",\n".join(columns) + "\n);")
    return "\n".join(lines) + "\n"


def create_schema(engine: Engine) -> list[str]:
    """Drop and create the five source tables (empty, change columns indexed); returns their names."""
    _dialect(engine)
    with _transaction(engine) as conn:
        return _create_schema(conn)


def _create_schema(conn: Connection) -> list[str]:
    return _execute(conn, parse_tsql(schema_script()), as_updates=False)


# -- generated data -----------------------------------------------------------------------------
FIRST_NAMES = (
    "Ana", "Ben", "Chloe", "Diego", "Elif", "Femi", "Grace", "Hiro", "Ines", "Jonas", "Kara", "Liam",
    "Maya", "Noah", "Olga", "Priya", "Quinn", "Rosa", "Sami", "Tara", "Uma", "Victor", "Wen", "Yara",
)  # fmt: skip
LAST_NAMES = (
    "Silva", "Patel", "Chen", "O'Neil", "Muller", "Mensah", "Haddad", "Costa", "Ito", "Kowalski",
    "Nguyen", "Garcia", "Okafor", "Larsen", "Rossi", "Dubois", "Kim", "Novak", "Ahmed", "Smith",
)  # fmt: skip
COUNTRIES = (
    "United States", "India", "Brazil", "Germany", "Japan", "Nigeria", "France", "Mexico", "Australia",
    "Canada", "Kenya", "Sweden", "Chile", "Vietnam", "Cote d'Ivoire", "Lao People's Democratic Republic",
)  # fmt: skip
SUBSCRIPTIONS = ("Free", "Premium", "Family")
GENRES = ("Pop", "Rock", "Hip-Hop", "Jazz", "Classical", "Electronic", "Country", "Reggae")
WORDS = (
    "Night", "River", "Signal", "Garden", "Echo", "Harbor", "Winter", "Atlas", "Ember", "Drift",
    "Stand-alone", "Neon", "Velvet", "Paper", "Golden", "Re-mastered", "Silent", "Electric",
)  # fmt: skip
ALBUMS = tuple(f"{word} Album" for word in WORDS)
DURATIONS = tuple(range(90, 421))
DEVICES = ("Mobile", "Desktop", "Smart Speaker")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
DIMENSIONS = ("DimUser", "DimArtist", "DimTrack")
# Tracked (SCD2) columns a generated change may alter, with the values it draws from.
CHANGES = {
    "DimUser": {"country": COUNTRIES, "subscription_type": SUBSCRIPTIONS},
    "DimArtist": {"genre": GENRES, "country": COUNTRIES},
    "DimTrack": {"album_name": ALBUMS, "duration_sec": DURATIONS},
}
STREAM_COLUMNS = (
    "stream_id", "user_id", "track_id", "date_key", "listen_duration", "device_type", "stream_timestamp",
)  # fmt: skip
CHUNK_ROWS = 200_000
_CLOCK: list[str] = []  # "HH:MM:SS" for each second of a day, built on first use


def _clock() -> list[str]:
    if not _CLOCK:
        _CLOCK.extend(f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(DAY_SECONDS))
    return _CLOCK


def _timestamp(day: dt.date, second: int) -> str:
    return f"{day.isoformat()} {_clock()[second]}"


def _how_many(total: int, fraction: float) -> int:
    """``fraction`` of ``total`` rows, rounded; at least one when the fraction is above zero."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must lie in [0, 1], not {fraction!r}")
    if fraction == 0 or total == 0:
        return 0
    return min(total, max(1, round(total * fraction)))


def _seconds(rng: random.Random, count: int) -> list[int]:
    """Seconds of a day for ``count`` changes: all different while a day has enough of them."""
    if count <= DAY_SECONDS:
        return rng.sample(range(DAY_SECONDS), count)
    return [rng.randrange(DAY_SECONDS) for _ in range(count)]


def _other(rng: random.Random, values: Sequence, current):
    while (value := rng.choice(values)) == current:
        pass
    return value


def _date_row(day: dt.date) -> dict:
    return {
        "date_key": int(day.strftime("%Y%m%d")),
        "date": day.isoformat(),
        "day": day.day,
        "month": day.month,
        "year": day.year,
        "weekday": WEEKDAYS[day.weekday()],
    }


def _dimension_rows(rng: random.Random, start: dt.date, users: int, artists: int, tracks: int) -> dict:
    created = _timestamp(start, 0)  # the initial load: every row as of the first midnight

    def earlier(days: int) -> str:
        return (start - dt.timedelta(days=rng.randint(1, days))).isoformat()

    return {
        "DimUser": [
            {
                "user_id": i,
                "user_name": f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
                "country": rng.choice(COUNTRIES),
                "subscription_type": rng.choice(SUBSCRIPTIONS),
                "start_date": earlier(730),
                "end_date": None,
                "updated_at": created,
            }
            for i in range(1, users + 1)
        ],
        "DimArtist": [
            {
                "artist_id": i,
                "artist_name": f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
                "genre": rng.choice(GENRES),
                "country": rng.choice(COUNTRIES),
                "updated_at": created,
            }
            for i in range(1, artists + 1)
        ],
        "DimTrack": [
            {
                "track_id": i,
                "track_name": " ".join(rng.sample(WORDS, 3)),
                "artist_id": rng.randint(1, artists),
                "album_name": rng.choice(ALBUMS),
                "duration_sec": rng.choice(DURATIONS),
                "release_date": earlier(3650),
                "updated_at": created,
            }
            for i in range(1, tracks + 1)
        ],
    }


def _change_in_memory(
    rng: random.Random, table: str, rows: list[dict], fraction: float, day: dt.date
) -> None:
    chosen = rng.sample(range(len(rows)), _how_many(len(rows), fraction))
    for index, second in zip(chosen, _seconds(rng, len(chosen)), strict=True):
        row = rows[index]
        column = rng.choice(sorted(CHANGES[table]))
        row[column] = _other(rng, CHANGES[table][column], row[column])
        row["updated_at"] = _timestamp(day, second)


def _columns(table: str, offered: Iterable[str]) -> list[str]:
    """The table's columns from the metadata, which must be those the generator makes."""
    columns = list(_tables()[table]["columns"])
    if set(columns) != set(offered):
        raise ScriptError(
            f"the generator makes {table} columns {sorted(offered)}, pipeline.yaml declares {sorted(columns)}"
        )
    return columns


def _copy_value(value) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return str(value)


def _copy_driver(conn: Connection) -> str | None:
    """``psycopg2`` or ``psycopg`` when rows can go by PostgreSQL COPY, else None."""
    if conn.dialect.name == "postgresql" and conn.dialect.driver in ("psycopg2", "psycopg"):
        return conn.dialect.driver
    return None


class _ChunkReader(io.TextIOBase):
    """A file whose ``read`` pulls text chunks from an iterator, for psycopg2's ``copy_expert``:
    rows are made while the server is still parsing the ones before."""

    def __init__(self, chunks: Iterable[str]):
        self._chunks = iter(chunks)
        self._current = io.StringIO()

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> str:
        while True:
            text = self._current.read(size)
            if text:
                return text
            chunk = next(self._chunks, None)
            if chunk is None:
                return ""
            self._current = io.StringIO(chunk)


def _copy(conn: Connection, table: str, columns: Sequence[str], chunks: Iterable[str]) -> None:
    """One ``COPY table (columns) FROM STDIN`` (text format) inside the connection's transaction,
    fed chunk by chunk."""
    sql = f"COPY {_quote(table)} ({', '.join(_quote(c) for c in columns)}) FROM STDIN"
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        if _copy_driver(conn) == "psycopg2":
            cursor.copy_expert(sql, _ChunkReader(chunks), size=1 << 20)
        else:
            with cursor.copy(sql) as copy:
                for chunk in chunks:
                    copy.write(chunk)
    finally:
        cursor.close()


def _bulk_insert(conn: Connection, table: str, columns: Sequence[str], rows: Sequence[tuple]) -> None:
    """Rows into a table, fast: COPY on PostgreSQL, else executemany in batches."""
    if not rows:
        return
    if _copy_driver(conn):
        chunks = (
            "".join("\t".join(map(_copy_value, row)) + "\n" for row in rows[lo : lo + CHUNK_ROWS])
            for lo in range(0, len(rows), CHUNK_ROWS)
        )
        _copy(conn, table, columns, chunks)
        return
    marker = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(conn.dialect.paramstyle)
    if marker:
        names = ", ".join(_quote(c) for c in columns)
        sql = f"INSERT INTO {_quote(table)} ({names}) VALUES ({', '.join([marker] * len(columns))})"
        for lo in range(0, len(rows), CHUNK_ROWS):
            conn.exec_driver_sql(sql, list(rows[lo : lo + CHUNK_ROWS]))
    else:  # another paramstyle: let SQLAlchemy bind by name
        import sqlalchemy as sa

        params = [{f"p{n}": v for n, v in enumerate(row)} for row in rows]
        conn.execute(sa.text(_insert_sql(table, columns)), params)


def _write_streams(
    conn: Connection,
    rng: random.Random,
    day: dt.date,
    count: int,
    first_id: int,
    user_ids: Sequence[int],
    track_ids: Sequence[int],
) -> int:
    """``count`` streams on ``day``, ids from ``first_id`` in time order; returns the next id.

    Stream k of the day falls at second ``(k + u) * 86400 / count`` with u uniform in [0, 1):
    uniform over the day and already in order, so ids increase with time without a sort. Made
    in chunks of ``CHUNK_ROWS``; on PostgreSQL one COPY takes the whole day.
    """
    if count <= 0:
        return first_id
    _columns("FactStream", STREAM_COLUMNS)
    prefix, clock, step = day.isoformat() + " ", _clock(), DAY_SECONDS / count
    date_key = int(day.strftime("%Y%m%d"))

    def chunks():
        uniform = rng.random
        for lo in range(0, count, CHUNK_ROWS):
            hi = min(count, lo + CHUNK_ROWS)
            yield (
                range(first_id + lo, first_id + hi),
                rng.choices(user_ids, k=hi - lo),
                rng.choices(track_ids, k=hi - lo),
                rng.choices(DURATIONS, k=hi - lo),
                rng.choices(DEVICES, k=hi - lo),
                [prefix + clock[int((k + uniform()) * step)] for k in range(lo, hi)],
            )

    if _copy_driver(conn):
        # in STREAM_COLUMNS order; every value is a number or a string without tab or backslash
        text = (
            "".join(
                [
                    f"{i}\t{user}\t{track}\t{date_key}\t{seconds}\t{device}\t{stamp}\n"
                    for i, user, track, seconds, device, stamp in zip(*columns, strict=True)
                ]
            )
            for columns in chunks()
        )
        _copy(conn, "FactStream", STREAM_COLUMNS, text)
    else:
        for ids, users, tracks, durations, devices, stamps in chunks():
            dates = [date_key] * len(ids)
            rows = list(zip(ids, users, tracks, dates, durations, devices, stamps, strict=True))
            _bulk_insert(conn, "FactStream", STREAM_COLUMNS, rows)
    return first_id + count


def generate(
    engine: Engine,
    *,
    start: dt.date,
    days: int,
    users: int,
    artists: int,
    tracks: int,
    streams_per_day: int,
    change_fraction: float = 0.01,
    seed: int = 0,
) -> dict[str, int]:
    """Create the source tables afresh and fill them with synthetic data, in one transaction;
    returns the rows per table.

    Every row's timestamps lie in ``[start, start + days)``. The dimensions are created as of the
    first midnight; on each later day ``change_fraction`` of them change one tracked column (a
    country, a subscription, a genre, an album, a duration) and get a new ``updated_at`` that
    day, a different second for each changed row. Only each row's latest state is kept, as in a
    real source: a pipeline sees the history by reading day by day (see :func:`apply_changes`).
    DimDate holds the days; ``streams_per_day`` streams per day reference existing users and
    tracks, with stream ids increasing with their timestamps. Deterministic for a given seed.
    """
    _check_day("start", start)
    for name, value in {"days": days, "users": users, "artists": artists, "tracks": tracks}.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1, not {value!r}")
    if not isinstance(streams_per_day, int) or streams_per_day < 0:
        raise ValueError(f"streams_per_day must be a whole number >= 0, not {streams_per_day!r}")
    _how_many(1, change_fraction)
    rng = random.Random(seed)
    began = time.perf_counter()
    dimensions = _dimension_rows(rng, start, users, artists, tracks)
    for offset in range(1, days):
        for table, rows in dimensions.items():
            _change_in_memory(rng, table, rows, change_fraction, start + dt.timedelta(days=offset))
    dimensions["DimDate"] = [_date_row(start + dt.timedelta(days=offset)) for offset in range(days)]
    with _transaction(engine) as conn:
        _create_schema(conn)
        for table, rows in dimensions.items():
            columns = _columns(table, rows[0])
            _bulk_insert(conn, table, columns, [tuple(row[c] for c in columns) for row in rows])
        streams_began, next_id = time.perf_counter(), 1
        for offset in range(days):
            day = start + dt.timedelta(days=offset)
            next_id = _write_streams(
                conn, rng, day, streams_per_day, next_id, range(1, users + 1), range(1, tracks + 1)
            )
    finished = time.perf_counter()
    streams = days * streams_per_day
    log.info(
        "generated %d streams in %.1f s (%.0f rows/s), %.1f s in all",
        streams,
        finished - streams_began,
        streams / max(finished - streams_began, 1e-9),
        finished - began,
    )
    return {table: len(rows) for table, rows in dimensions.items()} | {"FactStream": streams}


def _check_day(name: str, value) -> None:
    if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
        raise ValueError(f"{name} must be a date (datetime.date), not {value!r}")


def _as_date(value) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite keeps timestamps as text
        return dt.date.fromisoformat(value[:10])
    return value.date() if isinstance(value, dt.datetime) else value


def apply_changes(
    engine: Engine, day: dt.date, fraction: float = 0.01, seed: int = 0, *, streams: int | None = None
) -> dict[str, int]:
    """One more day of the source, in one transaction: what an incremental run then picks up.

    ``fraction`` of the rows of each dimension change one tracked column and get an ``updated_at``
    on ``day`` (a different second each); DimDate gains ``day``; ``streams`` new streams (by
    default as many as on the last day that has streams) follow the last stream id, at times on
    ``day``, referencing existing users and tracks. ``day`` must come after the last stream's day,
    so stream ids keep increasing with time. Works on generated data and on the loaded scripts.
    Returns the rows changed or added per table.
    """
    import sqlalchemy as sa

    _dialect(engine)
    _check_day("day", day)
    tables = _tables()
    rng = random.Random(f"{seed}:{day.isoformat()}")
    with _transaction(engine) as conn:
        last_id, last_stamp = conn.execute(
            sa.text('SELECT MAX("stream_id"), MAX("stream_timestamp") FROM "FactStream"')
        ).one()
        last_day = _as_date(last_stamp)
        if last_day is not None and day <= last_day:
            raise ValueError(f"day {day} must come after the last streams' day {last_day} (ids follow time)")
        result, ids = {}, {}
        for table in DIMENSIONS:
            key, change = tables[table]["keys"][0], tables[table]["change_column"]
            ids[table] = (
                conn.exec_driver_sql(f"SELECT {_quote(key)} FROM {_quote(table)} ORDER BY 1").scalars().all()
            )
            chosen = rng.sample(ids[table], _how_many(len(ids[table]), fraction))
            updates: dict[str, list[dict]] = {}
            for row_id, second in zip(chosen, _seconds(rng, len(chosen)), strict=True):
                column = rng.choice(sorted(CHANGES[table]))
                old, new = rng.sample(CHANGES[table][column], 2)  # old -> new, anything else -> old
                updates.setdefault(column, []).append(
                    {"id": row_id, "old": old, "new": new, "at": _timestamp(day, second)}
                )
            for column, params in updates.items():
                target = _quote(column)
                flip = f"CASE WHEN {target} = :old THEN :new ELSE :old END"
                where = f"{_quote(key)} = :id"
                sql = f"UPDATE {_quote(table)} SET {target} = {flip}, {_quote(change)} = :at WHERE {where}"
                conn.execute(sa.text(sql), params)
            result[table] = len(chosen)
        date_row = _date_row(day)
        sql = _insert_sql("DimDate", list(date_row), tables["DimDate"]["keys"], update=False)
        conn.execute(sa.text(sql), {f"p{n}": v for n, v in enumerate(date_row.values())})
        result["DimDate"] = 1
        if streams is None:
            streams = 0
            if last_day is not None:
                streams = conn.execute(
                    sa.text('SELECT COUNT(*) FROM "FactStream" WHERE "stream_timestamp" >= :since'),
                    {"since": _timestamp(last_day, 0)},
                ).scalar_one()
        _write_streams(conn, rng, day, streams, (last_id or 0) + 1, ids["DimUser"], ids["DimTrack"])
        result["FactStream"] = streams
    return result
