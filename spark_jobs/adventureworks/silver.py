"""AdventureWorks silver: every table's bronze loads applied once, as Delta tables with the source's columns.

The job finds its work in the lake, not in its arguments: each manifest
``bronze/<pipeline>/_loads/<table>/<load_id>.json`` describes one load (mode, primary key, change
column, columns and their kinds, the parquet parts it consists of, its row count). A load is
pending until its (table, load_id, fingerprint) is in ``silver/<pipeline>/_applied_loads``; the
fingerprint is the manifest's sha256, so a re-extracted load (a cleared or re-run copy task
writes new parts and a new manifest) is applied again, and an applied one is not. Records count
only while the silver table exists: a deleted silver table is rebuilt from every load.

Per table, with its loads in load-id order:

* ``full``: the table is replaced by its newest full load (the whole source table), when that
  load is pending. Older full loads are superseded and never read.
* ``initial`` / ``incremental`` (a primary key and a change column): the pending loads after the
  newest full load, deduplicated per key (newest by change column, then load id), MERGEd by the
  primary key. A stored row is replaced only by a row strictly newer by (change column, load id):
  an older row never replaces a newer one, and applying loads in any order gives the same table.
  A row re-extracted with the same change value and load id as the stored one is not rewritten
  (the source did not mark it as changed).

Deletes in the source are not visible to an incremental copy: a row deleted there stays in silver
(its last version) until a full load replaces the table. Full tables follow deletes.

Columns: the source's names and values, plus ``_load_id``, ``_source_table`` (``schema.table`` in
the source) and ``_run_id`` (the run that applied the row). Kinds map to Spark types: decimals keep
precision and scale, binary stays binary, uuid/json/xml are strings, ``timestamp`` (naive, in
``source.timezone``) becomes the UTC instant, ``timestamptz`` stays the instant (both Spark
TIMESTAMP), ``time`` becomes ``HH:MM:SS.ffffff`` text (Delta has no time type). A column added in a
newer load evolves the table (null in older rows); a column no longer loaded is null in new rows
of a merged table and gone from a replaced (full) table; a column whose kind changes fails.

Tables keep the change data feed on, unless a column name holds a character Delta cannot store
without column mapping (`` ,;{}()=`` or a tab or newline): such a table gets column mapping by
name instead, since Delta refuses to replace a table that has both.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import zoneinfo
from dataclasses import dataclass

from pyspark.sql import Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_jobs.common.delta import DeltaEngine
from spark_jobs.common.errors import BadInputError, shorten
from spark_jobs.common.files import list_files
from spark_jobs.common.job import SILVER_PROPERTIES, Job, start
from spark_jobs.common.lake import check_name

log = logging.getLogger(__name__)

APPLIED = "_applied_loads"
LOADS = "_loads"
LOAD_ID = "_load_id"
SOURCE_TABLE = "_source_table"
RUN_ID = "_run_id"
INGESTION_COLUMNS = (LOAD_ID, SOURCE_TABLE, RUN_ID)
MODES = ("full", "initial", "incremental")
_LOAD_ID = re.compile(r"^\d{8}T\d{6}$")
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.parquet$")
_DECIMAL = re.compile(r"^decimal\((\d{1,2}),(\d{1,2})\)$")
_NEEDS_MAPPING = re.compile(r"[ ,;{}()\n\t=]")
MAPPING_PROPERTIES = {"delta.columnMapping.mode": "name"}
TIME_FORMAT = "HH:mm:ss.SSSSSS"
SIMPLE_KINDS = {
    "boolean": T.BooleanType(),
    "int16": T.ShortType(),
    "int32": T.IntegerType(),
    "int64": T.LongType(),
    "float32": T.FloatType(),
    "float64": T.DoubleType(),
    "string": T.StringType(),
    "uuid": T.StringType(),
    "json": T.StringType(),
    "xml": T.StringType(),
    "binary": T.BinaryType(),
    "date": T.DateType(),
    "time": T.LongType(),  # read as microseconds since midnight (Spark 4.2 reads no TIME from parquet)
    "timestamp": T.TimestampNTZType(),
    "timestamptz": T.TimestampType(),
}


class BronzeLoadError(BadInputError):
    """A load's manifest does not fit the contract or its files; the message names the manifest."""


class SilverSchemaError(BadInputError):
    """A load's columns cannot go into the silver table as it is; the message names table and column."""


class SourceNamesEngine(DeltaEngine):
    """The Delta engine with column names as the source spells them (``SalesOrderID``, ``Order Qty``)
    in MERGE conditions: quoted as Spark SQL identifiers instead of held to lake-name rules."""

    @staticmethod
    def ident(column: str) -> str:
        if not isinstance(column, str) or not column or any(ord(c) < 32 for c in column):
            raise ValueError(f"invalid column name {column!r}")
        return "`" + column.replace("`", "``") + "`"

    def add_columns(self, uri: str, columns: list[tuple[str, T.DataType]]) -> None:
        """``ALTER TABLE ... ADD COLUMNS``, under the lock that keeps a concurrent MERGE's commit
        metadata (a session setting) out of this commit."""
        ddl = ", ".join(f"{self.ident(name)} {data_type.simpleString()}" for name, data_type in columns)
        try:
            with self._merge_lock:
                self.spark.sql(f"ALTER TABLE {self.table_ref(uri)} ADD COLUMNS ({ddl})").collect()
        except Exception as exc:
            raise self._fail("adding columns", uri, exc) from exc
        finally:
            self._wrote(uri)


@dataclass(frozen=True)
class Load:
    """One checked manifest."""

    table: str
    load_id: str
    mode: str
    source_table: str  # schema.table in the source
    primary_key: tuple[str, ...]
    change_column: str | None
    columns: tuple[tuple[str, str], ...]  # (name, kind)
    files: tuple[str, ...]
    rows: int
    fingerprint: str
    where: str  # the manifest, for messages

    @property
    def key(self) -> tuple[str, str]:
        return (self.load_id, self.fingerprint)


def spark_type(kind: str, where: str) -> T.DataType:
    found = SIMPLE_KINDS.get(kind)
    if found is not None:
        return found
    match = _DECIMAL.match(kind or "")
    if match:
        precision, scale = int(match[1]), int(match[2])
        if 1 <= precision <= 38 and scale <= precision:
            return T.DecimalType(precision, scale)
    raise BronzeLoadError(f"{where}: kind {kind!r} is not one silver reads")


def bronze_folder(job: Job) -> str:
    return f"{job.lake.layer_uri('bronze')}/{job.pipeline}"


def quoted(column: str):
    """A column by its exact name (dots, spaces, backticks and all)."""
    return F.col("`" + column.replace("`", "``") + "`")


# -- manifests ------------------------------------------------------------------------------------------
def parse_manifest(table: str, file_name: str, text: str) -> Load:
    """``text`` (the manifest ``_loads/<table>/<file_name>``) checked against the contract."""
    where = f"bronze manifest {LOADS}/{table}/{file_name}"

    def fail(why: str) -> BronzeLoadError:
        return BronzeLoadError(f"{where}: {why}")

    try:
        m = json.loads(text)
    except ValueError as exc:
        raise fail(f"not JSON ({exc})") from exc
    if not isinstance(m, dict):
        raise fail("not a JSON object")
    if m.get("table") != table:
        raise fail(f"table {shorten(repr(m.get('table')))} is not the folder's {table!r}")
    load_id = m.get("load_id")
    if not isinstance(load_id, str) or not _LOAD_ID.match(load_id) or file_name != f"{load_id}.json":
        raise fail(f"load_id {shorten(repr(load_id))} is not the file's name (YYYYMMDDTHHMMSS.json)")
    mode = m.get("mode")
    if mode not in MODES:
        raise fail(f"mode {shorten(repr(mode))} is not one of {', '.join(MODES)}")
    columns = m.get("columns")
    if not isinstance(columns, list) or not columns:
        raise fail("columns must be a non-empty list")
    pairs, seen = [], set()
    for column in columns:
        name = column.get("name") if isinstance(column, dict) else None
        if (
            not isinstance(name, str)
            or not name.strip()
            or any(ord(c) < 32 and c not in "\t\n" for c in name)
        ):
            raise fail(f"column {shorten(repr(column))} has no usable name")
        if name.lower() in seen:
            raise fail(f"column {name!r} appears twice (names are compared case-insensitively)")
        if name.lower() in INGESTION_COLUMNS:
            raise fail(f"column {name!r} has the name of an ingestion column silver adds")
        seen.add(name.lower())
        kind = column.get("kind")
        spark_type(kind, f"{where}: column {name!r}")
        pairs.append((name, kind))
    names = {name for name, _ in pairs}
    key = m.get("primary_key") or []
    change = m.get("change_column")
    if not isinstance(key, list) or any(k not in names for k in key) or len(set(key)) != len(key):
        raise fail(f"primary_key {shorten(repr(key))} is not a list of its columns")
    if change is not None and change not in names:
        raise fail(f"change_column {shorten(repr(change))} is not one of its columns")
    if mode != "full" and (not key or change is None):
        raise fail(f"mode {mode} needs a primary_key and a change_column")
    files = m.get("files")
    if (
        not isinstance(files, list)
        or not files
        or not all(isinstance(f, str) and _PART.match(f) for f in files)
    ):
        raise fail(f"files {shorten(repr(files))} must be a non-empty list of parquet file names")
    if len(set(files)) != len(files):
        raise fail("files lists a part twice")
    rows = m.get("rows")
    if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
        raise fail(f"rows {shorten(repr(rows))} is not a count")
    schema, source = m.get("source_schema"), m.get("source_table")
    if not isinstance(source, str) or not source:
        raise fail("source_table is missing")
    return Load(
        table=table,
        load_id=load_id,
        mode=mode,
        source_table=f"{schema}.{source}" if schema else source,
        primary_key=tuple(key),
        change_column=change,
        columns=tuple(pairs),
        files=tuple(files),
        rows=rows,
        fingerprint=hashlib.sha256(text.encode()).hexdigest(),
        where=where,
    )


def manifest_paths(job: Job) -> dict[str, list[str]]:
    """Per table (the manifest's folder), the paths of its manifests."""
    found: dict[str, list[str]] = {}
    for info in list_files(job.spark, f"{bronze_folder(job)}/{LOADS}", glob="*.json"):
        table = info.path.rstrip("/").rsplit("/", 2)[-2]
        found.setdefault(table, []).append(info.path)
    return found


def read_manifests(job: Job) -> tuple[dict[str, list[Load]], dict[str, Exception]]:
    """Per table, its loads in load-id order; and per table, why its manifests cannot be used."""
    paths = {t: p for t, p in manifest_paths(job).items() if job.wants(t)}
    if not paths:
        return {}, {}
    texts = (
        job.spark.read.text([p for ps in paths.values() for p in ps], wholetext=True)
        .select("value", F.col("_metadata.file_path").alias("path"))
        .collect()
    )
    loads: dict[str, list[Load]] = {}
    errors: dict[str, Exception] = {}
    for row in sorted(texts, key=lambda r: r["path"]):
        table, file_name = row["path"].rstrip("/").rsplit("/", 2)[-2:]
        if table in errors:
            continue
        try:
            check_name("table", table)
            loads.setdefault(table, []).append(parse_manifest(table, file_name, row["value"]))
        except (BronzeLoadError, ValueError) as exc:
            errors[table] = (
                exc if isinstance(exc, BronzeLoadError) else BronzeLoadError(f"{LOADS}/{table}: {exc}")
            )
            loads.pop(table, None)
    return {t: sorted(ls, key=lambda load: load.load_id) for t, ls in loads.items()}, errors


def applied_loads(job: Job) -> dict[str, set[tuple[str, str]]]:
    """Per table, (load_id, fingerprint) of the loads already in silver."""
    uri = job.uri("silver", APPLIED)
    if not job.engine.exists(uri):
        return {}
    found: dict[str, set[tuple[str, str]]] = {}
    for r in job.engine.read(uri).select("table", "load_id", "fingerprint").collect():
        found.setdefault(r["table"], set()).add((r["load_id"], r["fingerprint"]))
    return found


# -- reading loads ----------------------------------------------------------------------------------------
def source_timezone(config: dict) -> str:
    name = (config.get("source") or {}).get("timezone") or "UTC"
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise BadInputError(
            f"setting source.timezone {name!r} is not a time zone (e.g. UTC, Europe/Berlin)"
        ) from exc
    convention = (config.get("silver") or {}).get("timestamps", "utc")
    if convention != "utc":
        raise BadInputError(f"setting silver.timestamps {convention!r} is not supported: only 'utc'")
    return name


def read_load(job: Job, load: Load, timezone: str):
    """One load's rows, normalised, with the ingestion columns."""
    folder = f"{bronze_folder(job)}/{load.table}/{load.load_id}"
    schema = T.StructType([T.StructField(n, spark_type(k, load.where), True) for n, k in load.columns])
    try:
        df = job.spark.read.schema(schema).parquet(*[f"{folder}/{name}" for name in load.files])
        df.columns  # noqa: B018 - plans the read: a missing part fails here
    except Exception as exc:
        present = {f.name for f in list_files(job.spark, folder, glob="*.parquet", recursive=False)}
        missing = [name for name in load.files if name not in present]
        if missing:
            raise BronzeLoadError(
                f"{load.where}: part(s) not found in {folder}: {', '.join(missing)}"
            ) from exc
        raise
    columns = []
    for name, kind in load.columns:
        column = quoted(name)
        if kind == "timestamp":
            column = F.to_utc_timestamp(column.cast("timestamp"), timezone)
        elif kind == "time":
            column = F.date_format(F.timestamp_micros(column), TIME_FORMAT)
        columns.append(column.alias(name))
    return df.select(
        *columns,
        F.lit(load.load_id).alias(LOAD_ID),
        F.lit(load.source_table).alias(SOURCE_TABLE),
        F.lit(job.run_id).alias(RUN_ID),
    )


def read_loads(job: Job, loads: list[Load], timezone: str):
    """The loads' rows as one DataFrame (materialised), after checking each holds the rows its
    manifest says and that a column keeps its kind from load to load."""
    kinds: dict[str, tuple[str, str]] = {}
    for load in loads:
        for name, kind in load.columns:
            before = kinds.setdefault(name.lower(), (kind, load.load_id))
            if before[0] != kind:
                raise SilverSchemaError(
                    f"silver.{load.table}: column {name!r} is {before[0]} in load {before[1]} "
                    f"but {kind} in load {load.load_id}"
                )
    df = None
    for load in loads:
        part = read_load(job, load, timezone)
        df = part if df is None else df.unionByName(part, allowMissingColumns=True)
    df = df.localCheckpoint(eager=True)
    counts = {r[LOAD_ID]: r["count"] for r in df.groupBy(LOAD_ID).count().collect()}
    wrong = [
        f"{load.where} says {load.rows} rows, its parts hold {counts.get(load.load_id, 0)}"
        for load in loads
        if counts.get(load.load_id, 0) != load.rows
    ]
    if wrong:
        raise BronzeLoadError("; ".join(wrong))
    return df


def newest_per_key(df, load: Load):
    """One row per primary key: the newest by change column (NULL oldest), then by load id."""
    order = [quoted(load.change_column).desc_nulls_last(), F.col(LOAD_ID).desc()]
    window = Window.partitionBy(*[quoted(k) for k in load.primary_key]).orderBy(*order)
    return df.withColumn("_rank", F.row_number().over(window)).filter("_rank = 1").drop("_rank")


# -- applying loads ---------------------------------------------------------------------------------------
def needs_mapping(columns) -> list[str]:
    return [c for c in columns if _NEEDS_MAPPING.search(c)]


def properties_for(columns) -> dict[str, str]:
    return MAPPING_PROPERTIES if needs_mapping(columns) else SILVER_PROPERTIES


def check_mapping(job: Job, table: str, uri: str, columns) -> None:
    """Names that need column mapping can only go into a table that has it."""
    names = needs_mapping(columns)
    if not names:
        return
    properties = (job.engine.detail(uri) or {}).get("properties") or {}
    if properties.get("delta.columnMapping.mode", "none") == "none":
        raise SilverSchemaError(
            f"silver.{table}: column(s) {names} need Delta column mapping, which the existing table "
            f"does not have: delete {uri} to rebuild it from bronze with column mapping"
        )


def evolve(job: Job, table: str, uri: str, df):
    """Add the columns ``df`` has and the table lacks; give ``df`` the table's columns it lacks
    (null); fail on a column whose type differs. Returns ``df`` in the table's column order."""
    current = {f.name: f.dataType for f in job.engine.read(uri).schema.fields}
    lower = {name.lower(): name for name in current}
    incoming = {f.name: f.dataType for f in df.schema.fields}
    added = []
    for name, data_type in incoming.items():
        existing = lower.get(name.lower())
        if existing is None:
            added.append((name, data_type))
        elif current[existing] != data_type:
            raise SilverSchemaError(
                f"silver.{table}: column {name!r} is {current[existing].simpleString()} in the table "
                f"but {data_type.simpleString()} in the load"
            )
        elif existing != name:
            df = df.withColumnRenamed(name, existing)
    if added:
        check_mapping(job, table, uri, [name for name, _ in added])
        job.engine.add_columns(uri, added)
        log.info("silver.%s: columns added: %s", table, [n for n, _ in added])
        job.count("silver", table, "columns_added", len(added))
    have = {f.name.lower() for f in df.schema.fields}
    for name, data_type in current.items():
        if name.lower() not in have:
            df = df.withColumn(name, F.lit(None).cast(data_type))
    return df.select(*[quoted(n) for n in [*current, *(n for n, _ in added)]])


def apply_table(job: Job, table: str, loads: list[Load], done: set, timezone: str) -> list[Load]:
    """Apply ``table``'s pending loads to its silver table; returns the loads applied."""
    uri = job.uri("silver", table)
    exists = job.engine.exists(uri)
    done = done if exists else set()
    fulls = [load for load in loads if load.mode == "full"]
    base = fulls[-1] if fulls else None
    later = [load for load in loads if load.mode != "full" and (base is None or load.load_id > base.load_id)]
    rebuild = base is not None and base.key not in done
    pending = later if rebuild else [load for load in later if load.key not in done]
    job.count("silver", table, "loads_pending", int(rebuild) + len(pending))
    if not rebuild and not pending:
        log.info("silver.%s: no new bronze loads: skipped", table)
        return []
    applied = []
    if rebuild:
        df = read_loads(job, [base], timezone)
        if exists:
            check_mapping(job, table, uri, df.columns)
        metadata = {"run_id": job.run_id, "job": job.name, "loads": [base.load_id]}
        job.engine.overwrite(df, uri, metadata=metadata, properties=properties_for(df.columns))
        job.count("silver", table, "rows_read", base.rows)
        job.count("silver", table, "rows_written", base.rows)
        applied.append(base)
        exists = True
    if pending:
        newest = pending[-1]
        df = read_loads(job, pending, timezone)
        rows_read = sum(load.rows for load in pending)
        rows = newest_per_key(df, newest)
        if exists:
            rows = evolve(job, table, uri, rows)
        metadata = {"run_id": job.run_id, "job": job.name, "loads": [load.load_id for load in pending]}
        if exists and not rows_read:
            result = {"inserted": 0, "updated": 0}
        else:
            result = job.engine.merge(
                rows,
                uri,
                list(newest.primary_key),
                metadata=metadata,
                order_by=[newest.change_column, LOAD_ID],
                properties=properties_for(rows.columns),
            )
        job.count("silver", table, "rows_read", rows_read)
        job.count("silver", table, "rows_inserted", result["inserted"])
        job.count("silver", table, "rows_updated", result["updated"])
        applied.extend(pending)
    return applied


def record_loads(job: Job, applied: dict[str, list[Load]]) -> None:
    """Upsert (table, load_id) -> fingerprint into ``_applied_loads`` after the rows are in: one
    commit for every table's loads of this run, none when no load was applied."""
    if not any(applied.values()):
        return
    schema = T.StructType(
        [
            T.StructField("table", T.StringType(), False),
            T.StructField("load_id", T.StringType(), False),
            T.StructField("fingerprint", T.StringType(), False),
            T.StructField("mode", T.StringType(), False),
            T.StructField("rows", T.LongType(), False),
            T.StructField("applied_run_id", T.StringType(), False),
            T.StructField("applied_at", T.TimestampType(), False),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    rows = [
        (table, load.load_id, load.fingerprint, load.mode, load.rows, job.run_id, now)
        for table, loads in sorted(applied.items())
        for load in loads
    ]
    job.engine.merge(
        job.spark.createDataFrame(rows, schema),
        job.uri("silver", APPLIED),
        ["table", "load_id"],
        metadata={
            "run_id": job.run_id,
            "job": job.name,
            "tables": sorted(t for t, ls in applied.items() if ls),
        },
    )


def main(argv: list[str]) -> None:
    """Every table's pending loads applied side by side, then recorded in one commit: a table that
    fails (a bad manifest, a missing part, a kind that changed) leaves its loads pending, the
    others are applied and recorded; then the first failure is raised."""
    job = start("adventureworks.silver", argv)
    job.engine = SourceNamesEngine(job.spark)
    timezone = source_timezone(job.config)
    loads, errors = read_manifests(job)
    applied = applied_loads(job) if loads else {}

    def attempt(table: str):
        try:
            return apply_table(job, table, loads[table], applied.get(table, set()), timezone), None
        except Exception as exc:  # recorded below once the others are done
            log.error("silver.%s failed: %s", table, exc)
            return [], exc

    tables = sorted(loads)
    outcomes = job.for_each(tables, attempt)
    record_loads(job, {table: done for table, (done, _) in zip(tables, outcomes, strict=True)})
    job.write_audit()
    failures = [*errors.values(), *(exc for _, exc in outcomes if exc is not None)]
    if failures:
        for extra in failures[1:]:
            log.error("silver: also failed: %s", extra)
        raise failures[0]
