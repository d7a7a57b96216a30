"""One small Delta Lake interface, two engines.

* ``DeltaSparkEngine``: delta-spark, as on Databricks or a laptop whose Spark loaded the Delta jars.
* ``DeltaRsEngine``: delta-rs through Arrow, for a Spark without the Delta jars (no Maven access).

Both write ordinary Delta tables, record a JSON ``userMetadata`` on each commit (the jobs keep
the versions of their inputs there, to skip work whose inputs did not change), and make appends
idempotent through Delta's application transactions (``txnAppId``/``txnVersion``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from spark_jobs.common.lake import check_name

ENGINES = ("delta-spark", "delta-rs")


@dataclass(frozen=True)
class Commit:
    version: int
    operation: str
    timestamp: dt.datetime | None
    metadata: dict[str, Any] = field(default_factory=dict)


def _literal(value: Any, *, backslash_escapes: bool = False) -> str:
    """A SQL literal for a Delta predicate; strings are quoted with embedded quotes doubled.

    ``backslash_escapes``: the parser reads ``\\`` as an escape (Spark SQL does, DataFusion does
    not), so backslashes are doubled too; else ``\\'`` would end the literal early.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dt.datetime | dt.date):
        return f"'{value.isoformat()}'"
    if isinstance(value, str):
        if backslash_escapes:
            value = value.replace("\\", "\\\\")
        return "'" + value.replace("'", "''") + "'"
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


class DeltaEngine(ABC):
    """Read, write (append, replace all or a slice), merge and history of Delta tables."""

    name: str
    quote_char: str
    backslash_escapes: bool = False

    def __init__(self, spark):
        self.spark = spark

    # -- predicates -------------------------------------------------------------------------
    def ident(self, column: str) -> str:
        check_name("column", column.lstrip("_"))
        return f"{self.quote_char}{column}{self.quote_char}"

    def predicate(self, where: dict[str, Any]) -> str:
        """``col = value`` per item, ANDed; a list or tuple value means ``col IN (...)``."""
        if not where:
            raise ValueError("a replace needs at least one column = value condition")
        parts = []
        for col, val in where.items():
            if isinstance(val, list | tuple | set | frozenset):
                if not val:
                    raise ValueError(f"an IN condition on {col!r} needs at least one value")
                values = ", ".join(_literal(v, backslash_escapes=self.backslash_escapes) for v in sorted(val))
                parts.append(f"{self.ident(col)} IN ({values})")
            else:
                parts.append(f"{self.ident(col)} = {_literal(val, backslash_escapes=self.backslash_escapes)}")
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
            # parenthesised: DataFusion binds IS NOT DISTINCT FROM more loosely than AND
            equal = [f"(s.{self.ident(p)} IS NOT DISTINCT FROM t.{self.ident(p)})" for p in order_by[:i]]
            greater = f"(s.{c} > t.{c} OR (s.{c} IS NOT NULL AND t.{c} IS NULL))"
            terms.append("(" + " AND ".join([*equal, greater]) + ")")
        return " OR ".join(terms)

    # -- the interface ----------------------------------------------------------------------
    @abstractmethod
    def version(self, uri: str) -> int | None:
        """Current version, or None when no table exists at ``uri``."""

    def exists(self, uri: str) -> bool:
        return self.version(uri) is not None

    @abstractmethod
    def read(self, uri: str, version: int | None = None):
        """The table (optionally as of ``version``) as a Spark DataFrame."""

    @abstractmethod
    def append(
        self,
        df,
        uri: str,
        *,
        metadata: dict | None = None,
        txn: tuple[str, int] | None = None,
        partition_by: list[str] | None = None,
    ) -> bool:
        """Append rows. With ``txn=(app_id, n)`` a batch already committed is skipped (False)."""

    @abstractmethod
    def overwrite(
        self,
        df,
        uri: str,
        *,
        where: dict[str, Any] | None = None,
        metadata: dict | None = None,
        partition_by: list[str] | None = None,
    ) -> None:
        """Replace the whole table, or only the rows matching ``where`` (column = value, ANDed)."""

    @abstractmethod
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
    ) -> dict:
        """Upsert on ``keys``: update matched rows, insert the rest. Returns row counts.

        With ``newer_by`` (a column such as ``file_date``), a matched row is only updated by a
        source row whose value is not older, so a late, older delivery never overwrites newer data.
        With ``order_by`` (columns such as ``[updated_at, _row_hash]``), only by a source row
        strictly greater by those columns in order: an older row, or the same row delivered
        again, changes nothing. ``partition_by`` applies when the merge creates the table.
        """

    @abstractmethod
    def history(self, uri: str, limit: int | None = None) -> list[Commit]:
        """Commits, newest first."""

    @abstractmethod
    def table_id(self, uri: str) -> str | None:
        """The table's id (Delta ``metaData.id``): another id at the same path is another table."""

    @abstractmethod
    def added_rows(self, uri: str, since: int, version: int | None = None):
        """The rows of the data files the table has at ``version`` (default: current) and did not
        have at ``since``: every row inserted or updated in between, with rows that merely shared
        a rewritten file. None when this engine cannot tell exactly (the caller reads the table)."""

    def last_metadata(self, uri: str) -> dict[str, Any]:
        commits = self.history(uri, limit=1)
        return commits[0].metadata if commits else {}


class DeltaRsEngine(DeltaEngine):
    """delta-rs (the ``deltalake`` package): Spark DataFrames cross over as Arrow tables."""

    name = "delta-rs"
    quote_char = '"'

    def __init__(self, spark, storage_options: dict[str, str] | None = None):
        super().__init__(spark)
        if storage_options is None:
            storage_options = json.loads(os.environ.get("DELTA_STORAGE_OPTIONS") or "{}")
        self.storage_options = storage_options or None

    def _table(self, uri: str, version: int | None = None):
        from deltalake import DeltaTable

        return DeltaTable(uri, version=version, storage_options=self.storage_options)

    def version(self, uri: str) -> int | None:
        from deltalake import DeltaTable

        if not DeltaTable.is_deltatable(uri, storage_options=self.storage_options):
            return None
        return self._table(uri).version()

    def read(self, uri: str, version: int | None = None):
        """The table's files read by Spark itself where it can (a local table without partition
        columns, column mapping or deletion vectors: its data files are then exactly its rows),
        else the rows through Arrow. Spark reads lazily and in parallel; through Arrow, the
        whole table passes the Python driver, which grows with the table."""
        table = self._table(uri, version)
        if not self._spark_reads(uri, table):
            return self.spark.createDataFrame(table.to_pyarrow_table())
        return self._read_files(table.file_uris(), self._spark_schema(table))

    def _read_files(self, files: list[str], schema):
        """Data files of a table read by Spark with the table's schema (none: no rows)."""
        if not files:
            return self.spark.createDataFrame([], schema)
        return self.spark.read.schema(schema).parquet(*files)

    @staticmethod
    def _spark_schema(table):
        import pyarrow as pa
        from pyspark.sql.pandas.types import from_arrow_schema

        return from_arrow_schema(pa.schema(table.schema().to_arrow()))

    @staticmethod
    def _spark_reads(uri: str, table) -> bool:
        """Whether the current files are the rows: local, unpartitioned, plain parquet columns."""
        if "://" in uri and not uri.startswith("file://"):
            return False  # remote stores: Spark may lack their filesystem; delta-rs has it
        metadata = table.metadata()
        if metadata.partition_columns:
            return False  # partition values live in the paths, not the files
        if (metadata.configuration or {}).get("delta.columnMapping.mode", "none") != "none":
            return False
        features = table.protocol().reader_features or []
        return "deletionVectors" not in features

    @staticmethod
    def _props(metadata: dict | None, txn: tuple[str, int] | None = None):
        from deltalake import CommitProperties, Transaction

        return CommitProperties(
            custom_metadata={"userMetadata": json.dumps(metadata, sort_keys=True)} if metadata else None,
            app_transactions=[Transaction(app_id=txn[0], version=txn[1])] if txn else None,
        )

    def append(self, df, uri, *, metadata=None, txn=None, partition_by=None) -> bool:
        from deltalake import write_deltalake

        if txn is not None and self.exists(uri):
            done = self._table(uri).transaction_version(txn[0])
            if done is not None and done >= txn[1]:
                return False
        write_deltalake(
            uri,
            df.toArrow(),
            mode="append",
            partition_by=partition_by,
            storage_options=self.storage_options,
            commit_properties=self._props(metadata, txn),
        )
        return True

    def overwrite(self, df, uri, *, where=None, metadata=None, partition_by=None) -> None:
        from deltalake import write_deltalake

        predicate = self.predicate(where) if where and self.exists(uri) else None
        write_deltalake(
            uri,
            df.toArrow(),
            mode="overwrite",
            predicate=predicate,
            partition_by=partition_by,
            schema_mode=None if predicate else "overwrite",
            storage_options=self.storage_options,
            commit_properties=self._props(metadata),
        )

    def merge(self, df, uri, keys, *, metadata=None, newer_by=None, partition_by=None, order_by=None) -> dict:
        condition, guard = self.merge_conditions(keys, newer_by, order_by)
        data = df.toArrow()
        if not self.exists(uri):
            from deltalake import write_deltalake

            write_deltalake(
                uri,
                data,
                mode="append",
                partition_by=partition_by,
                storage_options=self.storage_options,
                commit_properties=self._props(metadata),
            )
            return {"inserted": data.num_rows, "updated": 0}
        metrics = (
            self._table(uri)
            .merge(
                source=data,
                predicate=condition,
                source_alias="s",
                target_alias="t",
                commit_properties=self._props(metadata),
            )
            .when_matched_update_all(predicate=guard)
            .when_not_matched_insert_all()
            .execute()
        )
        return {
            "inserted": int(metrics.get("num_target_rows_inserted", 0)),
            "updated": int(metrics.get("num_target_rows_updated", 0)),
        }

    def table_id(self, uri: str) -> str | None:
        return self._table(uri).metadata().id if self.exists(uri) else None

    def added_rows(self, uri: str, since: int, version: int | None = None):
        new = self._table(uri, version)
        if since > new.version() or not self._spark_reads(uri, new):
            return None
        try:
            old = self._table(uri, since)
        except Exception:  # that version's log is gone: the caller reads it all
            return None
        if old.metadata().id != new.metadata().id or not self._spark_reads(uri, old):
            return None
        return self._read_files(sorted(set(new.file_uris()) - set(old.file_uris())), self._spark_schema(new))

    def history(self, uri, limit=None) -> list[Commit]:
        if not self.exists(uri):
            return []
        commits = []
        for entry in self._table(uri).history(limit):
            millis = entry.get("timestamp")
            commits.append(
                Commit(
                    version=int(entry["version"]),
                    operation=str(entry.get("operation", "")),
                    timestamp=dt.datetime.fromtimestamp(millis / 1000, dt.UTC) if millis else None,
                    metadata=_parse_metadata(entry.get("userMetadata")),
                )
            )
        return sorted(commits, key=lambda c: c.version, reverse=True)


class DeltaSparkEngine(DeltaEngine):
    """delta-spark: Databricks' native engine, or a local Spark with the Delta jars."""

    name = "delta-spark"
    quote_char = "`"
    backslash_escapes = True  # in Spark SQL string literals a backslash escapes the next character

    def _table(self, uri: str):
        from delta.tables import DeltaTable

        return DeltaTable.forPath(self.spark, uri)

    def version(self, uri: str) -> int | None:
        from delta.tables import DeltaTable

        if not DeltaTable.isDeltaTable(self.spark, uri):
            return None
        return int(self._table(uri).history(1).collect()[0]["version"])

    def read(self, uri, version=None):
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(uri)

    @staticmethod
    def _writer(df, mode, metadata, partition_by):
        writer = df.write.format("delta").mode(mode)
        if metadata:
            writer = writer.option("userMetadata", json.dumps(metadata, sort_keys=True))
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        return writer

    def append(self, df, uri, *, metadata=None, txn=None, partition_by=None) -> bool:
        writer = self._writer(df, "append", metadata, partition_by)
        if txn is not None:
            before = self.version(uri)
            writer.option("txnAppId", txn[0]).option("txnVersion", txn[1]).save(uri)
            return self.version(uri) != before
        writer.save(uri)
        return True

    def overwrite(self, df, uri, *, where=None, metadata=None, partition_by=None) -> None:
        writer = self._writer(df, "overwrite", metadata, partition_by)
        if where and self.exists(uri):
            writer = writer.option("replaceWhere", self.predicate(where))
        else:
            writer = writer.option("overwriteSchema", "true")
        writer.save(uri)

    def merge(self, df, uri, keys, *, metadata=None, newer_by=None, partition_by=None, order_by=None) -> dict:
        condition, guard = self.merge_conditions(keys, newer_by, order_by)
        if not self.exists(uri):
            self._writer(df, "append", metadata, partition_by).save(uri)
            return {"inserted": df.count(), "updated": 0}
        conf_key = "spark.databricks.delta.commitInfo.userMetadata"
        self.spark.conf.set(conf_key, json.dumps(metadata or {}, sort_keys=True))
        try:
            (
                self._table(uri)
                .alias("t")
                .merge(df.alias("s"), condition)
                .whenMatchedUpdateAll(condition=guard)
                .whenNotMatchedInsertAll()
                .execute()
            )
        finally:
            self.spark.conf.unset(conf_key)
        metrics = self._table(uri).history(1).collect()[0]["operationMetrics"] or {}
        return {
            "inserted": int(metrics.get("numTargetRowsInserted", 0)),
            "updated": int(metrics.get("numTargetRowsUpdated", 0)),
        }

    def table_id(self, uri: str) -> str | None:
        return str(self._table(uri).detail().first()["id"]) if self.exists(uri) else None

    def added_rows(self, uri: str, since: int, version: int | None = None):
        detail = self._table(uri).detail().first()
        properties = detail["properties"] or {}
        if (
            detail["partitionColumns"]
            or properties.get("delta.enableDeletionVectors") == "true"
            or properties.get("delta.columnMapping.mode", "none") != "none"
        ):
            return None  # the data files alone are not the rows
        new = self.read(uri, version)
        try:
            old_files = set(self.read(uri, since).inputFiles())
        except Exception:  # that version's log is gone: the caller reads it all
            return None
        files = sorted(set(new.inputFiles()) - old_files)
        if not files:
            return new.limit(0)
        return self.spark.read.schema(new.schema).parquet(*files)

    def history(self, uri, limit=None) -> list[Commit]:
        if not self.exists(uri):
            return []
        table = self._table(uri)
        rows = (table.history(limit) if limit else table.history()).collect()
        return [
            Commit(
                version=int(r["version"]),
                operation=str(r["operation"]),
                timestamp=r["timestamp"],
                metadata=_parse_metadata(r["userMetadata"]),
            )
            for r in sorted(rows, key=lambda r: r["version"], reverse=True)
        ]


def delta_jars_loaded(spark) -> bool:
    """True when the session's JVM can load delta-spark's classes."""
    try:
        from py4j.java_gateway import JavaClass

        return isinstance(spark._jvm.io.delta.tables.DeltaTable, JavaClass)
    except Exception:  # Spark Connect or a JVM without py4j access: no classic Delta classes
        return False


def engine_choice(choice: str | None = None) -> str:
    """``DELTA_ENGINE``: auto (the default), delta-spark or delta-rs."""
    choice = (choice or os.environ.get("DELTA_ENGINE") or "auto").strip().lower()
    if choice != "auto" and choice not in ENGINES:
        raise ValueError(f"DELTA_ENGINE must be auto, delta-spark or delta-rs, not {choice!r}")
    return choice


def make_engine(spark, choice: str = "auto") -> DeltaEngine:
    """delta-spark where the session can load its classes (Databricks, a Spark given the jars),
    delta-rs otherwise; an explicit choice is obeyed or fails loudly."""
    if choice == "auto":
        choice = "delta-spark" if delta_jars_loaded(spark) else "delta-rs"
    if choice == "delta-spark":
        if not delta_jars_loaded(spark):
            raise RuntimeError("DELTA_ENGINE=delta-spark but this Spark session has no Delta jars")
        return DeltaSparkEngine(spark)
    return DeltaRsEngine(spark)
