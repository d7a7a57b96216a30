"""What a delivery of files must satisfy before any of its rows is written.

A source's files are read with its declared columns; rows that do not fit are kept in
``_rescued_data``. Rescued rows are for rows, not for files, so a delivery is checked as a whole,
per file, before anything is written:

- **a file that does not parse fails**, whatever the tolerance: a multi-line JSON file (an array
  or object per file) whose text does not parse (Spark rescues the whole file as one row), or a
  JSON-lines file whose last record is cut (the file ends inside a record);
- **an empty file fails** (a header-only CSV, a 0-byte file, ``[]``) unless the source declares
  ``allow_empty: true``; then it is a delivery of zero rows;
- **too many rescued rows fail**: a source tolerates ``rescued_rows: {max_count: N}`` and/or
  ``{max_fraction: F}`` (of the delivery's rows; both must hold when both are given), by default
  ``{max_count: 10}``.

Every failure is a :class:`~spark_jobs.common.errors.BadInputError` whose message names the
table, the file and the first bad lines (shortened).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from urllib.parse import unquote

from spark_jobs.common.errors import EmptyDeliveryError, RescuedRowsError, UnparsableFileError, shorten
from spark_jobs.common.files import RESCUED

log = logging.getLogger(__name__)

FILE_COLUMN = "_file_path"  # the file each row came from (``_metadata.file_path``)
DEFAULT_RESCUED_ROWS = {"max_count": 10}
EXAMPLES = 3  # bad lines named in a message


@dataclass
class Delivery:
    """Row counts of a checked delivery, per file (by name) and in all."""

    rows: int = 0
    rescued: int = 0
    per_file: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (rows, rescued)
    empty_files: list[str] = field(default_factory=list)  # paths of files with no row


def file_name(path: str) -> str:
    return unquote(path).rstrip("/").rsplit("/", 1)[-1]


def _key(path: str) -> str:
    """A path as both Spark's listing and ``_metadata.file_path`` spell it, for matching."""
    return unquote(path).rstrip("/").removeprefix("file://").removeprefix("file:")


def tolerance(spec: dict) -> dict:
    declared = spec.get("rescued_rows")
    return dict(declared) if declared else dict(DEFAULT_RESCUED_ROWS)


def check(
    spark,
    df,
    *,
    table: str,
    files: list[str],
    spec: dict,
    json_lines: bool = False,
    whole_file_json: bool = False,
) -> Delivery:
    """Check a materialised delivery ``df`` (with ``_rescued_data`` and ``FILE_COLUMN``) read from
    ``files`` (paths as Spark lists them); raise a ``BadInputError`` naming table, file and lines."""
    from pyspark.sql import functions as F

    stats = df.groupBy(FILE_COLUMN).agg(F.count(F.lit(1)).alias("rows"), F.count(RESCUED).alias("rescued"))
    by_path = {_key(r[FILE_COLUMN]): (int(r["rows"]), int(r["rescued"])) for r in stats.collect()}
    result = Delivery()
    for path in files:
        rows, rescued = by_path.get(_key(path), (0, 0))
        result.per_file[file_name(path)] = (rows, rescued)
        result.rows += rows
        result.rescued += rescued
        if rows == 0:
            result.empty_files.append(path)
    bad = [p for p in files if by_path.get(_key(p), (0, 0))[1]]

    if bad and whole_file_json:
        first = df.filter(F.col(RESCUED).isNotNull()).select(FILE_COLUMN, RESCUED).first()
        text = first[RESCUED] or ""
        raise UnparsableFileError(
            f"{table}: file {file_name(first[FILE_COLUMN])} does not parse as JSON (a whole file, "
            f"read with multiline: true; truncated or not matching the declared columns): it begins "
            f"{shorten(text[:200], 80)!r} and ends {shorten(text[-200:], 80)[-80:]!r}; nothing was written"
        )
    if bad and json_lines:
        _check_last_records(spark, df, table, bad)
    if result.empty_files and not spec.get("allow_empty", False):
        names = ", ".join(file_name(p) for p in result.empty_files)
        raise EmptyDeliveryError(
            f"{table}: file(s) {names} hold no rows (header only or empty) and the source does not "
            f"declare allow_empty: true; nothing was written"
        )
    limit = tolerance(spec)
    too_many = []
    if "max_count" in limit and result.rescued > int(limit["max_count"]):
        too_many.append(f"more than max_count {limit['max_count']}")
    if "max_fraction" in limit and result.rescued > float(limit["max_fraction"]) * result.rows:
        too_many.append(f"more than max_fraction {limit['max_fraction']} of {result.rows} rows")
    if too_many:
        lines = [
            f"{file_name(r[FILE_COLUMN])}: {shorten(r[RESCUED])!r}"
            for r in df.filter(F.col(RESCUED).isNotNull())
            .select(FILE_COLUMN, RESCUED)
            .limit(EXAMPLES)
            .collect()
        ]
        per_file = ", ".join(f"{file_name(p)} ({by_path[_key(p)][1]})" for p in bad)
        raise RescuedRowsError(
            f"{table}: {result.rescued} rows do not fit the declared columns ({' and '.join(too_many)} "
            f"rescued rows tolerated) in file(s) {per_file}; first bad lines: {'; '.join(lines)}; "
            f"nothing was written"
        )
    return result


def _check_last_records(spark, df, table: str, paths: list[str]) -> None:
    """A JSON-lines file whose last line is a rescued row ends inside a record: it was cut."""
    from pyspark.sql import functions as F

    texts = (
        spark.read.text(paths, wholetext=True)
        .select(
            F.col("_metadata.file_path").alias(FILE_COLUMN),
            F.substring_index(F.regexp_replace(F.col("value"), r"\s+$", ""), "\n", -1).alias("last_line"),
        )
        .collect()
    )
    rescued = {
        (_key(r[FILE_COLUMN]), (r[RESCUED] or "").strip())
        for r in df.filter(F.col(RESCUED).isNotNull()).select(FILE_COLUMN, RESCUED).collect()
    }
    for row in texts:
        last = (row["last_line"] or "").strip()
        if (_key(row[FILE_COLUMN]), last) in rescued:
            raise UnparsableFileError(
                f"{table}: file {file_name(row[FILE_COLUMN])} is truncated: its last record does not "
                f"parse (the file ends inside it): {shorten(last)!r}; nothing was written"
            )
