"""Pipeline metadata from ``include/<pipeline>/pipeline.yaml``, validated before use.

Names from metadata become lake paths and SQL identifiers, so they are checked here: a bad
entry fails the DAG import with a message naming the file and the entry.
"""

from __future__ import annotations

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
        columns = source.get("columns") or []
        if not columns:
            raise MetadataError(f"{here}: 'columns' must list the file's header")
        for column in columns:
            _check(COLUMN, column, "column name", here)
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
    return meta


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
