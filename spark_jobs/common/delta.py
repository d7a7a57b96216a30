"""Delta Lake through delta-spark, in Delta's SQL and DataFrame options only.

That subset runs the same on Databricks (serverless, standard-access and classic clusters) and on
a local Spark Connect server with the Delta jars: ``DeltaTable``'s Python API would need the
Delta Connect server plugin there, so MERGE, history and table details are SQL statements.

Every commit carries a JSON ``userMetadata`` (the jobs keep the versions of their inputs there, to
skip work whose inputs did not change); appends can be made idempotent with Delta's application
transactions (``txnAppId``/``txnVersion``); tables are created with the properties the caller
asks for (silver tables with the change data feed on, so readers can follow what changed).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from spark_jobs.common.lake import check_name

USER_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"
# Error conditions that mean "no Delta table at this path" (as opposed to a broken one).
NOT_A_TABLE = frozenset(
    {"DELTA_TABLE_ONLY_OPERATION", "DELTA_MISSING_DELTA_TABLE", "DELTA_TABLE_NOT_FOUND", "PATH_NOT_FOUND"}
)
# The change data feed cannot answer for a range of versions (not recorded, or its log is gone).
NO_CHANGE_DATA = frozenset(
    {
        "DELTA_MISSING_CHANGE_DATA",
        "DELTA_CHANGE_DATA_FEED_NOT_ENABLED",
        "DELTA_VERSIONS_NOT_CONTIGUOUS",
        "DELTA_CDC_READ_NULL_RANGE_BOUNDARY",
        "DELTA_INVALID_CDC_RANGE",
        "DELTA_TABLE_FEATURE_READ_ONLY_FOR_CDF",
        "DELTA_FILE_NOT_FOUND_DETAILED",
        "DELTA_VERSION_NOT_CONTIGUOUS",
        "DELTA_CANNOT_RECONSTRUCT_PATH_FROM_URI",
        "DELTA_TIME_TRAVEL_INVALID_BEGIN_VALUE",
    }
)
CHANGE_COLUMNS = ("_change_type", "_commit_version", "_commit_timestamp")
PRUNE_LIMIT = 1000  # most partition values a merge names in its target predicate


class DeltaTableError(RuntimeError):
    """A Delta operation failed; the message names the table's path and the cause."""


@dataclass(frozen=True)
class Commit:
    version: int
    operation: str
    timestamp: dt.datetime | None
    metadata: dict[str, Any] = field(default_factory=dict)


def condition(exc: BaseException) -> str | None:
    """The error class of a Spark exception (``DELTA_MISSING_CHANGE_DATA`` ...), if it has one."""
    getter = getattr(exc, "getCondition", None)
    try:
        return getter() if getter else None
    except Exception:  # an exception type without a condition
        return None


def short_message(exc: BaseException) -> str:
    """A Spark error's message without the JVM stack trace that follows it."""
    text = str(exc).split("\n\nJVM stacktrace:", 1)[0]
    return " ".join(text.split())[:600]


def _literal(value: Any) -> str:
    """A Spark SQL literal for a predicate; quotes are doubled and backslashes escaped."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dt.datetime | dt.date):
        return f"'{value.isoformat()}'"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
    raise TypeError(f"unsupported predicate value {value!r}")


def _parse_metadata(raw: Any) -> dict[str, Any]:
    if not raw:
        return {}
    if isinstance(raw, dict):
        return raw
    try:
        parsed = json.loads(raw)
    except (TypeError, ValueError):
        return {"text": raw}
    return parsed if isinstance(parsed, dict) else {"value": parsed}


class DeltaEngine:
    """Read, write (append, replace all or a slice), merge, history and change feed of Delta tables
    addressed by path."""

    name = "delta-spark"

    def __init__(self, spark):
        self.spark = spark
        # The newest commit of each table this engine has looked at (None: no table), until it
        # writes there: a job asks for the same versions many times, each a query on the server.
        self._head: dict[str, Commit | None] = {}
        # MERGE takes its commit metadata from a session setting: one MERGE at a time per session.
        self._merge_lock = threading.Lock()

    # -- SQL building blocks ------------------------------------------------------------------------
    @staticmethod
    def table_ref(uri: str) -> str:
        """``delta.`<path>```, the path quoted as a Spark SQL identifier."""
        return "delta.`" + uri.replace("`", "``") + "`"

    @staticmethod
    def ident(column: str) -> str:
        check_name("column", column.lstrip("_"))
        return f"`{column}`"

    def predicate(self, where: dict[str, Any]) -> str:
        """``col = value`` per item, ANDed; a list or tuple value means ``col IN (...)``."""
        if not where:
            raise ValueError("a replace needs at least one column = value condition")
        parts = []
        for col, val in where.items():
            if isinstance(val, list | tuple | set | frozenset):
                if not val:
                    raise ValueError(f"an IN condition on {col!r} needs at least one value")
                parts.append(f"{self.ident(col)} IN ({', '.join(_literal(v) for v in sorted(val))})")
            else:
                parts.append(f"{self.ident(col)} = {_literal(val)}")
        return " AND ".join(parts)

    def merge_conditions(
        self, keys: list[str], newer_by: str | None, order_by: list[str] | None = None
    ) -> tuple[str, str | None]:
        """The join on ``keys``, and the update guard: a source row wins only if not older
        (``newer_by``), or only if strictly greater by ``order_by`` (see ``order_guard``)."""
        if newer_by and order_by:
            raise ValueError("a merge takes newer_by or order_by, not both")
        join = " AND ".join(f"t.{self.ident(k)} = s.{self.ident(k)}" for k in keys)
        guard = f"s.{self.ident(newer_by)} >= t.{self.ident(newer_by)}" if newer_by else None
        if order_by:
            guard = self.order_guard(order_by)
        return join, guard

    def order_guard(self, order_by: list[str]) -> str:
        """``s`` strictly greater than ``t`` by the columns in order (lexicographically), NULL lowest.

        ``[a, b]`` gives ``(s.a > t.a) OR (s.a = t.a AND s.b > t.b)``, with NULL-safe equality and
        a value counting as greater than NULL: equal rows, and older ones, never win.
        """
        if not order_by:
            raise ValueError("order_by needs at least one column")
        terms = []
        for i, column in enumerate(order_by):
            c = self.ident(column)
            equal = [f"(s.{self.ident(p)} <=> t.{self.ident(p)})" for p in order_by[:i]]
            greater = f"(s.{c} > t.{c} OR (s.{c} IS NOT NULL AND t.{c} IS NULL))"
            terms.append("(" + " AND ".join([*equal, greater]) + ")")
        return " OR ".join(terms)

    def _fail(self, what: str, uri: str, exc: BaseException) -> DeltaTableError:
        table = uri.rstrip("/").rsplit("/", 1)[-1]
        return DeltaTableError(f"{what} of Delta table {table} at {uri} failed: {short_message(exc)}")

    # -- state ----------------------------------------------------------------------------------------
    def history(self, uri: str, limit: int | None = None) -> list[Commit]:
        """Commits, newest first; none when no Delta table is at ``uri``."""
        from pyspark.errors import AnalysisException

        if limit == 1 and uri in self._head:
            head = self._head[uri]
            return [] if head is None else [head]
        sql = f"DESCRIBE HISTORY {self.table_ref(uri)}" + (f" LIMIT {int(limit)}" if limit else "")
        try:
            rows = self.spark.sql(sql).select("version", "operation", "timestamp", "userMetadata").collect()
        except Exception as exc:
            if isinstance(exc, AnalysisException) and condition(exc) in NOT_A_TABLE:
                return []
            raise self._fail("reading the history", uri, exc) from exc
        commits = [
            Commit(
                version=int(r["version"]),
                operation=str(r["operation"]),
                timestamp=r["timestamp"],
                metadata=_parse_metadata(r["userMetadata"]),
            )
            for r in rows
        ]
        commits = sorted(commits, key=lambda c: c.version, reverse=True)
        self._head[uri] = commits[0] if commits else None
        return commits

    def _wrote(self, uri: str) -> None:
        """Forget what was known of ``uri``'s newest commit: this engine just wrote there."""
        self._head.pop(uri, None)

    def version(self, uri: str) -> int | None:
        """Current version, or None when no table exists at ``uri``."""
        commits = self.history(uri, limit=1)
        return commits[0].version if commits else None

    def exists(self, uri: str) -> bool:
        return self.version(uri) is not None

    def last_metadata(self, uri: str) -> dict[str, Any]:
        commits = self.history(uri, limit=1)
        return commits[0].metadata if commits else {}

    def detail(self, uri: str) -> dict | None:
        """``DESCRIBE DETAIL``: id, partition columns, properties, features; None when missing."""
        from pyspark.errors import AnalysisException

        try:
            row = self.spark.sql(f"DESCRIBE DETAIL {self.table_ref(uri)}").first()
        except Exception as exc:
            if isinstance(exc, AnalysisException) and condition(exc) in NOT_A_TABLE:
                return None
            raise self._fail("reading the details", uri, exc) from exc
        if row is None or (row["format"] or "").lower() != "delta":
            return None
        return row.asDict(recursive=True)

    def table_id(self, uri: str) -> str | None:
        """The table's id (Delta ``metaData.id``): another id at the same path is another table."""
        found = self.detail(uri)
        return str(found["id"]) if found else None

    # -- reads ----------------------------------------------------------------------------------------
    def read(self, uri: str, version: int | None = None):
        """The table (optionally as of ``version``) as a DataFrame."""
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        try:
            df = reader.load(uri)
            df.columns  # noqa: B018 - plans the read: a missing or unreadable log fails here, named
        except Exception as exc:
            raise self._fail("a read", uri, exc) from exc
        return df

    def changes(self, uri: str, since: int, version: int):
        """The change data feed after version ``since`` up to ``version``: the table's columns plus
        ``_change_type`` (insert, update_preimage, update_postimage, delete), ``_commit_version``
        and ``_commit_timestamp``; exact with deletion vectors, partitions and column mapping.

        Materialised, so that a gap is found here: None when the feed cannot tell (it was off for
        some of these versions, or their log is gone); the caller then reads the whole table.
        """
        from pyspark.errors import AnalysisException, SparkRuntimeException

        if version < since:
            raise ValueError(f"{uri}: version {version} is older than {since}")
        reader = self.spark.read.format("delta").option("readChangeFeed", "true")
        if version == since:
            # no version in the range: the feed's columns, no rows
            return reader.option("startingVersion", since).option("endingVersion", since).load(uri).limit(0)
        try:
            df = (
                reader.option("startingVersion", since + 1)
                .option("endingVersion", version)
                .load(uri)
                .localCheckpoint(eager=True)
            )
        except (AnalysisException, SparkRuntimeException) as exc:
            if condition(exc) in NO_CHANGE_DATA:
                return None
            raise self._fail("reading the change data feed", uri, exc) from exc
        return df

    # -- writes ---------------------------------------------------------------------------------------
    @staticmethod
    def _writer(df, mode, metadata, partition_by, properties=None):
        # Always set: a write without it would take a concurrent MERGE's session-wide metadata.
        user_metadata = json.dumps(metadata, sort_keys=True) if metadata else ""
        if partition_by:
            # one file per partition from one task, not one per partition from every task
            df = df.repartition(*partition_by)
        writer = df.write.format("delta").mode(mode).option("userMetadata", user_metadata)
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        for key, value in (properties or {}).items():
            writer = writer.option(key, value)  # table properties, applied when the write creates it
        return writer

    def append(
        self,
        df,
        uri: str,
        *,
        metadata: dict | None = None,
        txn: tuple[str, int] | None = None,
        partition_by: list[str] | None = None,
        properties: dict[str, str] | None = None,
    ) -> bool:
        """Append rows. With ``txn=(app_id, n)`` a batch already committed is skipped (False)."""
        before = self.version(uri)
        writer = self._writer(df, "append", metadata, partition_by, properties if before is None else None)
        if txn is not None:
            writer = writer.option("txnAppId", txn[0]).option("txnVersion", txn[1])
        try:
            writer.save(uri)
        except Exception as exc:
            raise self._fail("an append", uri, exc) from exc
        finally:
            self._wrote(uri)
        return txn is None or self.version(uri) != before

    def overwrite(
        self,
        df,
        uri: str,
        *,
        where: dict[str, Any] | None = None,
        metadata: dict | None = None,
        partition_by: list[str] | None = None,
        properties: dict[str, str] | None = None,
    ) -> None:
        """Replace the whole table, or only the rows matching ``where`` (column = value, ANDed)."""
        exists = self.exists(uri)
        writer = self._writer(df, "overwrite", metadata, partition_by, None if exists else properties)
        if where and exists:
            writer = writer.option("replaceWhere", self.predicate(where))
        else:
            writer = writer.option("overwriteSchema", "true")
        try:
            writer.save(uri)
        except Exception as exc:
            raise self._fail("a replace", uri, exc) from exc
        finally:
            self._wrote(uri)

    def merge(
        self,
        df,
        uri: str,
        keys: list[str],
        *,
        metadata: dict | None = None,
        newer_by: str | None = None,
        partition_by: list[str] | None = None,
        order_by: list[str] | None = None,
        properties: dict[str, str] | None = None,
        prune_by: list[str] | None = None,
    ) -> dict:
        """Upsert on ``keys``: update matched rows, insert the rest. Returns row counts.

        With ``newer_by`` (a column such as ``file_date``), a matched row is only updated by a
        source row whose value is not older, so a late, older delivery never overwrites newer data.
        With ``order_by`` (columns such as ``[updated_at, _row_hash]``), only by a source row
        strictly greater by those columns in order: an older row, or the same row delivered
        again, changes nothing. ``partition_by`` and ``properties`` apply when the merge creates
        the table. ``prune_by`` names partition columns among the keys: the merge then reads only
        the target's partitions that the source's values of those columns name (Delta prunes
        files by a target predicate in the join, not by the join itself).
        """
        join, guard = self.merge_conditions(keys, newer_by, order_by)
        unsafe = sorted(set(prune_by or []) - set(keys))
        if unsafe:
            raise ValueError(f"prune_by {unsafe}: only key columns can narrow a merge's target")
        if not self.exists(uri):
            df = df.localCheckpoint(eager=True)
            self.append(df, uri, metadata=metadata, partition_by=partition_by, properties=properties)
            return {"inserted": df.count(), "updated": 0}
        if prune_by:
            df = df.localCheckpoint(eager=True)
            for column in prune_by:
                values = [r[0] for r in df.select(column).distinct().limit(PRUNE_LIMIT + 1).collect()]
                if len(values) <= PRUNE_LIMIT and None not in values:
                    literals = ", ".join(_literal(v) for v in sorted(values)) or "NULL"
                    join += f" AND t.{self.ident(column)} IN ({literals})"
        view = f"_merge_source_{uuid.uuid4().hex}"
        df.createOrReplaceTempView(view)
        matched = (
            f"WHEN MATCHED AND ({guard}) THEN UPDATE SET *" if guard else "WHEN MATCHED THEN UPDATE SET *"
        )
        sql = (
            f"MERGE INTO {self.table_ref(uri)} AS t USING {view} AS s ON {join} "
            f"{matched} WHEN NOT MATCHED THEN INSERT *"
        )
        try:
            with self._merge_lock:
                self.spark.conf.set(USER_METADATA_CONF, json.dumps(metadata or {}, sort_keys=True))
                try:
                    result = self.spark.sql(sql).first()
                finally:
                    self.spark.conf.unset(USER_METADATA_CONF)
        except Exception as exc:
            raise self._fail("a MERGE", uri, exc) from exc
        finally:
            self._wrote(uri)
            self.spark.catalog.dropTempView(view)
        return {"inserted": int(result["num_inserted_rows"]), "updated": int(result["num_updated_rows"])}
