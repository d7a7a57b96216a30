"""Pipeline metadata from ``include/<pipeline>/pipeline.yaml``, validated before use.

Names from metadata become lake paths and SQL identifiers, so they are checked here: a bad
entry fails the DAG import with a message naming the file and the entry.
"""

from __future__ import annotations

import codecs
import datetime as dt
import re
from functools import cache
from pathlib import PurePosixPath

from lakehouse import settings

NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
REL_PATH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]{0,254}$")


class MetadataError(ValueError):
    pass


def _check(pattern: re.Pattern, value, what: str, where: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise MetadataError(f"{where}: invalid {what} {value!r}")
    return value


def _check_path(value, where: str) -> str:
    _check(REL_PATH, value, "file path", where)
    if ".." in PurePosixPath(value).parts:
        raise MetadataError(f"{where}: file path {value!r} must not contain '..'")
    return value


def validate(meta: dict, where: str) -> dict:
    _check(NAME, meta.get("pipeline"), "pipeline name", where)
    for index, source in enumerate(meta.get("files", [])):
        here = f"{where} files[{index}]"
        _check(NAME, source.get("table"), "table name", here)
        _check_path(source.get("path"), here)
        _validate_delivery_rules(source, here)
        columns = source.get("columns") or []
        if not columns:
            raise MetadataError(f"{here}: 'columns' must list the file's header")
        for column in columns:
            _check(COLUMN, column, "column name", here)
        _normalise_encoding(source, here)
    tables = {source["table"] for source in meta.get("files", [])}
    for index, spec in enumerate(meta.get("gold", [])):
        here = f"{where} gold[{index}]"
        _check(NAME, spec.get("table"), "table name", here)
        if spec.get("from") not in tables:
            raise MetadataError(f"{here}: 'from' {spec.get('from')!r} is not a source table")
        for rule in spec.get("expectations", []):
            if rule.get("action", "warn") not in ("warn", "drop", "fail"):
                raise MetadataError(
                    f"{here}: expectation {rule.get('name')!r} action must be warn, drop or fail"
                )
    for index, source in enumerate(meta.get("sources", [])):
        _validate_drop_source(source, f"{where} sources[{index}]")
    for table in meta.get("presentation", []):
        _check(NAME, table, "presentation table name", where)
    if "tables" in meta:
        _validate_sql_source(meta, where)
    if meta.get("kind") == "schema_copy":
        _validate_schema_copy(meta, where)
    if "landing" in meta:
        _validate_landing(meta["landing"], f"{where} landing")
    return meta


# How a file pipeline's raw files arrive: ``http`` (the DAG's fetch tasks) or ``adf`` (an existing
# Azure Data Factory pipeline lands them; see lakehouse/adf.py). Names as Azure allows them.
LANDING_KINDS = ("http", "adf")
ADF_PIPELINE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,139}$")
ADF_FACTORY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{1,61}[A-Za-z0-9]$")
RESOURCE_GROUP = re.compile(r"^[-\w.()]{0,89}[-\w()]$")
ADF_PARAMETER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
LANDING_FOLDER = re.compile(r"^_[a-z0-9_]{0,62}(/|$)")


def _validate_landing(landing, where: str) -> None:
    """``landing: {kind: http|adf, adf: {...}}``; the ``adf`` block is checked whenever present,
    so that switching to it (``<PIPELINE>_LANDING=adf``) cannot pick an unchecked one."""
    if not isinstance(landing, dict):
        raise MetadataError(f"{where}: must be a mapping like {{kind: http}}")
    if landing.get("kind", "http") not in LANDING_KINDS:
        raise MetadataError(f"{where}: kind must be one of {LANDING_KINDS}, not {landing.get('kind')!r}")
    adf = landing.get("adf")
    if adf is None:
        if landing.get("kind") == "adf":
            raise MetadataError(f"{where}: kind adf needs an 'adf' block")
        return
    here = f"{where}.adf"
    if not isinstance(adf, dict):
        raise MetadataError(f"{here}: must be a mapping")
    unknown = set(adf) - {
        "conn_id",
        "resource_group",
        "factory",
        "pipeline_name",
        "folder",
        "parameters",
        "deferrable",
        "timeout_minutes",
    }
    if unknown:
        raise MetadataError(f"{here}: unknown setting(s) {sorted(unknown)}")
    _check(COLUMN, adf.get("conn_id", "azure_data_factory_default"), "conn_id", here)
    _check(RESOURCE_GROUP, adf.get("resource_group"), "resource_group", here)
    _check(ADF_FACTORY, adf.get("factory"), "factory name", here)
    _check(ADF_PIPELINE, adf.get("pipeline_name"), "pipeline_name", here)
    folder = adf.get("folder")
    if not isinstance(folder, str) or not LANDING_FOLDER.match(folder) or ".." in folder:
        raise MetadataError(
            f"{here}: folder {folder!r} must be a folder under raw/<pipeline>/ whose first part starts "
            "with '_' (e.g. '_adf/{{ ds }}'), so bronze never reads it as a table; no '..'"
        )
    parameters = adf.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise MetadataError(f"{here}: parameters must map ADF parameter names to values")
    for name, value in parameters.items():
        _check(ADF_PARAMETER, name, "ADF parameter name", here)
        if isinstance(value, bool | int | float) or (isinstance(value, str) and value):
            continue
        raise MetadataError(
            f"{here}: parameter {name!r} must be a non-empty string (a template) or a number, not {value!r}"
        )
    if not isinstance(adf.get("deferrable", False), bool):
        raise MetadataError(f"{here}: deferrable must be true or false, not {adf['deferrable']!r}")
    timeout = adf.get("timeout_minutes", 120)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or not 1 <= timeout <= 7 * 24 * 60:
        raise MetadataError(
            f"{here}: timeout_minutes must be a whole number from 1 to 10080, not {timeout!r}"
        )


def landing_kind(meta: dict) -> str:
    """How the pipeline's raw files arrive: ``<PIPELINE>_LANDING`` from the environment (read
    when the DAG is parsed) or else the metadata's ``landing.kind``, default ``http``."""
    import os

    variable = f"{meta['pipeline'].upper()}_LANDING"
    landing = meta.get("landing") or {}
    kind = os.environ.get(variable, "").strip().lower() or landing.get("kind", "http")
    if kind not in LANDING_KINDS:
        raise MetadataError(f"{variable}: must be one of {LANDING_KINDS}, not {kind!r}")
    if kind == "adf" and not landing.get("adf"):
        raise MetadataError(
            f"{variable}=adf: pipeline {meta['pipeline']!r} declares no landing.adf block in its metadata"
        )
    return kind


# Python codec name -> the name Spark's (Java's) CSV reader knows the same charset by
SPARK_CHARSETS = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8", "iso8859-1": "ISO-8859-1", "cp1252": "windows-1252"}


def _normalise_encoding(source: dict, here: str) -> None:
    """A file's declared ``encoding`` (default UTF-8) must be a Python codec; it is kept as the
    codec's canonical name (what the fetch decodes with, strictly) and becomes the Spark CSV
    reader's ``options.encoding`` unless the source sets that itself."""
    declared = source.get("encoding", "utf-8")
    try:
        if not isinstance(declared, str):
            raise LookupError(declared)
        codec = codecs.lookup(declared)
        if not codec._is_text_encoding:  # e.g. base64, rot13
            raise LookupError(declared)
    except LookupError:
        raise MetadataError(f"{here}: encoding {declared!r} is not a text encoding Python knows") from None
    source["encoding"] = codec.name
    options = source.setdefault("options", {})
    if not isinstance(options, dict):
        raise MetadataError(f"{here}: 'options' must map Spark CSV options to values")
    options.setdefault("encoding", SPARK_CHARSETS.get(codec.name, codec.name))


COLUMN_TYPES = ("int", "bigint", "string", "date", "timestamp")


def _validate_sql_source(meta: dict, where: str) -> None:
    """Tables copied from a SQL database by change column, and what gold builds of them."""
    source = meta.get("source") or {}
    _check(COLUMN, source.get("conn_id"), "source conn_id", f"{where} source")
    if source.get("schema") is not None:
        _check(COLUMN, source["schema"], "source schema", f"{where} source")
    _validate_window_schedule(meta, where)
    names = set()
    for index, spec in enumerate(meta["tables"]):
        here = f"{where} tables[{index}]"
        names.add(_check(NAME, spec.get("table"), "table name", here))
        _check(COLUMN, spec.get("source_table"), "source table name", here)
        columns = spec.get("columns")
        if not isinstance(columns, dict) or not columns:
            raise MetadataError(f"{here}: 'columns' must map each column to one of {COLUMN_TYPES}")
        for column, kind in columns.items():
            _check(COLUMN, column, "column name", here)
            if kind not in COLUMN_TYPES:
                raise MetadataError(f"{here}: column {column!r} has type {kind!r}, not one of {COLUMN_TYPES}")
        keys = spec.get("keys") or []
        if not keys or any(k not in columns for k in keys):
            raise MetadataError(f"{here}: 'keys' {keys!r} must be listed columns")
        change = spec.get("change_column")
        if change not in columns or columns[change] not in ("date", "timestamp"):
            raise MetadataError(f"{here}: change_column {change!r} must be a listed date or timestamp column")
        gold = spec.get("gold") or {}
        if gold:
            _check(NAME, gold.get("table"), "gold table name", here)
            if gold.get("scd") == 2:
                _check(COLUMN, gold.get("surrogate_key"), "surrogate_key", here)
                for column in gold.get("tracked") or []:
                    _check(COLUMN, column, "tracked column", here)
    gold_tables = {spec["gold"]["table"] for spec in meta["tables"] if spec.get("gold")}
    for table, rules in (meta.get("expectations") or {}).items():
        if table not in gold_tables:
            raise MetadataError(f"{where} expectations: {table!r} is not a gold table")
        for rule in rules:
            if rule.get("action", "warn") not in ("warn", "drop", "fail") or not rule.get("rule"):
                raise MetadataError(
                    f"{where} expectations.{table}: {rule.get('name')!r} needs a rule and an action"
                )
    fact = meta.get("fact") or {}
    for dim in fact.get("dimensions", []):
        _check(COLUMN, dim.get("column"), "fact dimension column", f"{where} fact")
        if dim.get("table") not in names:
            raise MetadataError(f"{where} fact: dimension table {dim.get('table')!r} is not a source table")
    fact_keys = next((t["keys"] for t in meta["tables"] if t.get("table") == fact.get("table")), None)
    for index, view in enumerate(meta.get("views", [])):
        here = f"{where} views[{index}]"
        _check(NAME, view.get("table"), "view table name", here)
        _check_path(view.get("template"), here)
        if "keys" in view and (not fact_keys or view["keys"] != fact_keys):
            raise MetadataError(
                f"{here}: keys must be the fact table's keys {fact_keys}, not {view['keys']!r}"
            )


def _validate_window_schedule(meta: dict, where: str) -> None:
    """The window grid of a SQL copy: interval, start (and end) date, lookback, max windows."""
    interval = (meta.get("schedule") or {}).get("interval")
    if (
        not isinstance(interval, dict)
        or not interval
        or any(k not in ("days", "hours") or not isinstance(v, int) or v <= 0 for k, v in interval.items())
    ):
        raise MetadataError(
            f"{where} schedule: interval must be like {{days: 1}} or {{hours: 6}}, not {interval!r}"
        )
    schedule = meta.get("schedule") or {}
    for name in ("start_date", "end_date"):
        value = schedule.get(name)
        if (value is not None or name == "start_date") and type(value) is not dt.date:
            raise MetadataError(
                f"{where} schedule: {name} must be a date (YYYY-MM-DD, unquoted), not {value!r}"
            )
    lookback = (meta.get("schedule") or {}).get("lookback_windows", 0)
    if not isinstance(lookback, int) or isinstance(lookback, bool) or lookback < 0:
        raise MetadataError(
            f"{where} schedule: lookback_windows must be a whole number >= 0, not {lookback!r}"
        )
    max_windows = schedule.setdefault("max_windows", 366)
    if not isinstance(max_windows, int) or isinstance(max_windows, bool) or max_windows < 1:
        raise MetadataError(f"{where} schedule: max_windows must be a whole number >= 1, not {max_windows!r}")
    if lookback + 1 > max_windows:
        raise MetadataError(
            f"{where} schedule: lookback_windows {lookback} reads {lookback + 1} windows a run, "
            f"more than max_windows {max_windows}"
        )


# Patterns choosing a schema's tables: shell wildcards on names, nothing that could be a path or SQL.
TABLE_PATTERN = re.compile(r"^[A-Za-z0-9_*?\[\]!$ -]{1,128}$")
TIMESTAMP_CONVENTIONS = ("utc",)


def _validate_schema_copy(meta: dict, where: str) -> None:
    """A whole schema copied by configuration: the source, the window grid, silver, serving."""
    import zoneinfo

    source = meta.get("source") or {}
    here = f"{where} source"
    _check(COLUMN, source.get("conn_id"), "source conn_id", here)
    if source.get("schema") is not None:
        _check(COLUMN, source["schema"], "source schema", here)
    for key in ("include", "exclude"):
        patterns = source.setdefault(key, ["*"] if key == "include" else [])
        if not isinstance(patterns, list):
            raise MetadataError(f"{here}: {key} must be a list of table name patterns")
        for pattern in patterns:
            _check(TABLE_PATTERN, pattern, f"{key} pattern", here)
    for column in source.setdefault("change_columns", []):
        _check(COLUMN, column, "change column", here)
    incremental = source.setdefault("incremental", {})
    if not isinstance(incremental, dict):
        raise MetadataError(f"{here}: incremental must map source tables to their change column")
    for table, column in incremental.items():
        _check(COLUMN, table, "incremental table", here)
        _check(COLUMN, column, "incremental change column", here)
    timezone = source.setdefault("timezone", "UTC")
    try:
        zoneinfo.ZoneInfo(str(timezone))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise MetadataError(f"{here}: timezone {timezone!r} is not an IANA time zone") from None
    chunk = source.setdefault("chunk_rows", 50_000)
    if not isinstance(chunk, int) or isinstance(chunk, bool) or not 1 <= chunk <= 10_000_000:
        raise MetadataError(f"{here}: chunk_rows must be a whole number from 1 to 10000000, not {chunk!r}")
    if source.get("queue") is not None:
        _check(COLUMN, source["queue"], "worker queue", here)
    _validate_window_schedule(meta, where)
    convention = (meta.setdefault("silver", {})).setdefault("timestamps", "utc")
    if convention not in TIMESTAMP_CONVENTIONS:
        raise MetadataError(
            f"{where} silver: timestamps must be one of {TIMESTAMP_CONVENTIONS}, not {convention!r}"
        )
    _check(NAME, (meta.get("serving") or {}).get("schema"), "serving schema", f"{where} serving")


def _validate_drop_source(source: dict, here: str) -> None:
    """A source of a file drop: where it is, how to read it, and how it is written."""
    _check(NAME, source.get("table"), "table name", here)
    _check_path(source.get("path"), here)
    if source.get("format") not in ("csv", "json"):
        raise MetadataError(f"{here}: format must be csv or json, not {source.get('format')!r}")
    if not isinstance(source.get("schema"), str) or not source["schema"].strip():
        raise MetadataError(f"{here}: 'schema' must be a Spark DDL string")
    if source.get("write") not in ("replace", "merge"):
        raise MetadataError(f"{here}: write must be replace or merge, not {source.get('write')!r}")
    if source["write"] == "merge" and not source.get("keys"):
        raise MetadataError(f"{here}: a merged table needs 'keys'")
    named = [*source.get("keys", []), *source.get("partition_by", []), *source.get("drop_columns", [])]
    named += [
        *(source.get("rename") or {}),
        *(source.get("rename") or {}).values(),
        *(source.get("casts") or {}),
    ]
    for column in named:
        _check(COLUMN, column, "column name", here)
    _validate_delivery_rules(source, here)


def _validate_delivery_rules(source: dict, here: str) -> None:
    """What a file source tolerates: ``rescued_rows: {max_count: N, max_fraction: F}``,
    ``allow_empty: bool``; for keyed sources ``tie_break: {order_by: [col [asc|desc], ...]}`` and
    ``quarantine: bool``."""
    limit = source.get("rescued_rows")
    if limit is not None:
        if not isinstance(limit, dict) or not limit or set(limit) - {"max_count", "max_fraction"}:
            raise MetadataError(f"{here}: rescued_rows must be {{max_count: N}} and/or {{max_fraction: F}}")
        count = limit.get("max_count", 0)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise MetadataError(f"{here}: rescued_rows max_count must be a whole number >= 0, not {count!r}")
        fraction = limit.get("max_fraction", 0)
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 <= fraction <= 1:
            raise MetadataError(
                f"{here}: rescued_rows max_fraction must be between 0 and 1, not {fraction!r}"
            )
    for flag in ("allow_empty", "quarantine"):
        if not isinstance(source.get(flag, False), bool):
            raise MetadataError(f"{here}: {flag} must be true or false, not {source[flag]!r}")
    tie_break = source.get("tie_break")
    if (tie_break is not None or source.get("quarantine")) and not source.get("keys"):
        raise MetadataError(f"{here}: tie_break and quarantine apply to a source with 'keys'")
    if tie_break is not None:
        order_by = tie_break.get("order_by") if isinstance(tie_break, dict) else None
        if not isinstance(order_by, list) or not order_by:
            raise MetadataError(f"{here}: tie_break must be {{order_by: [column [asc|desc], ...]}}")
        for item in order_by:
            column, _, direction = str(item).strip().partition(" ")
            _check(COLUMN, column, "tie_break column", here)
            if direction.strip().lower() not in ("", "asc", "desc"):
                raise MetadataError(f"{here}: tie_break {item!r}: the direction must be asc or desc")


@cache
def load_pipeline(name: str) -> dict:
    """The pipeline's metadata (cached per process; files change only with a deploy)."""
    import yaml

    _check(NAME, name, "pipeline name", "load_pipeline")
    path = settings.include_dir() / name / "pipeline.yaml"
    with open(path, encoding="utf-8") as handle:
        meta = yaml.safe_load(handle)
    if not isinstance(meta, dict) or meta.get("pipeline") != name:
        raise MetadataError(f"{path}: 'pipeline' must be {name!r}")
    return validate(meta, str(path))
