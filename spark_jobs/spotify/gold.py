"""Spotify gold: a star schema with type 2 dimensions, kept up to date with silver's history.

* SCD2 dimensions (``gold.scd: 2``): every version of a key, with ``valid_from``/``valid_to``, a
  function of silver alone; replaced in one commit, only when its content changed.
* SCD1 dimensions (``gold.scd: 1``): silver's rows (already the latest per key).
* The fact (``gold.fact: true``): each row points at the dimension versions valid at its change
  time; merged by key, only the rows that are new or whose content changed.
* Views (``config['views']``): SQL rendered by Airflow, run over the gold tables; replaced when
  their content changed, or, with ``keys`` (one row per fact), merged like the fact.

The fact and keyed views follow the change, not their size: a run recomputes only the facts it
can have changed since their last build (``Star.candidates``); the first build, new settings or
a re-created silver table recompute every fact. Dimensions are small and rebuilt whole, unless
their last commit was built from the same silver versions with the same settings: then they are
read as stored (``Star.stored_build``). Independent steps (the dimensions; each changed
dimension's ranges) run side by side.

Each table is rebuilt only when the versions of the silver tables it reads (or its settings)
changed since its last commit. All stale tables are computed and checked against their
expectations before any is written: a broken ``fail`` rule writes nothing. In an incremental run
the fact's and views' expectations are counted over the rows it recomputed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial

from pyspark.sql import functions as F

from spark_jobs.common.expectations import Expectation, checked_rows, kept_rows
from spark_jobs.common.gold import finish, write_checked
from spark_jobs.common.job import Job, settings_hash, start
from spark_jobs.spotify import transforms as tf

log = logging.getLogger(__name__)

BEFORE_FIRST = "facts_before_first_version"
REBUILT = "facts_rebuilt"  # the facts this run computed: the candidates, or all of them


@dataclass(frozen=True)
class Lookup:
    """How the fact finds a type 2 dimension's version: its ``column`` equals the dimension's
    ``key``; ``via`` names the dimension whose version carries that column (an outrigger, such
    as a track's artist), None when the fact has it."""

    table: str
    column: str
    key: str
    surrogate_key: str
    via: str | None = None


@dataclass(frozen=True)
class Target:
    """One gold table: what it is built from, and the settings its stamp hashes."""

    name: str
    kind: str  # scd2, scd1, fact or view
    inputs: tuple[str, ...]  # silver tables
    settings: dict
    source: str | None = None  # the silver table of a dimension or the fact
    sql: str | None = None  # a view's rendered SQL
    keys: tuple[str, ...] = ()  # a view with one row per fact: the fact's keys


@dataclass
class Built:
    df: object  # the rows to write, after expectations (cached)
    outcomes: list = field(default_factory=list)
    dropped: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    changed: object = None  # fact, keyed view: the rows to merge (None: write all of ``df``)
    after: object = None  # fact, keyed view: the table as it will be after this run


def business_columns(spec: dict, rules: dict) -> list[str]:
    return [*spec["columns"], *tf.derived_columns(spec["table"], rules)]


def fact_lookups(config: dict) -> list[Lookup]:
    """The fact's type 2 dimensions: those in ``fact.dimensions``, then outriggers, i.e. the
    other type 2 dimensions whose key is a column of one of them (a track's ``artist_id``)."""
    specs = {t["table"]: t for t in config["tables"]}

    def single_key(spec: dict) -> str:
        if len(spec["keys"]) != 1:
            raise ValueError(f"{spec['table']}: a fact can only look up a dimension with one key column")
        return spec["keys"][0]

    direct = [
        Lookup(
            d["table"], d["column"], single_key(specs[d["table"]]), specs[d["table"]]["gold"]["surrogate_key"]
        )
        for d in config["fact"]["dimensions"]
        if specs[d["table"]]["gold"].get("scd") == 2
    ]
    used = {lookup.table for lookup in direct}
    outriggers = []
    for spec in config["tables"]:
        if (spec.get("gold") or {}).get("scd") != 2 or spec["table"] in used:
            continue
        key = single_key(spec)
        via = next((d for d in direct if key in specs[d.table]["columns"]), None)
        if via is not None:
            outriggers.append(Lookup(spec["table"], key, key, spec["gold"]["surrogate_key"], via=via.table))
    return direct + outriggers


def fact_rows(streams, dims: dict, lookups: list[Lookup], *, keys: list[str], at: str):
    """The fact: ``keys``, one surrogate key per lookup, then the other columns, less the
    dimension keys replaced by surrogate keys; plus a boolean ``_before_first`` per row (some
    version was taken from before the key's first version), for counting."""
    facts = streams

    def carried(lookup: Lookup) -> str:
        return f"_via_{lookup.via}_{lookup.column}"

    for lookup in lookups:
        take = {lookup.surrogate_key: lookup.surrogate_key}
        take.update({o.column: carried(o) for o in lookups if o.via == lookup.table})
        on = {carried(lookup) if lookup.via else lookup.column: lookup.key}
        facts = tf.as_of(
            facts, dims[lookup.table], on=on, at=at, take=take, before_first=f"_early_{lookup.table}"
        )
    early = [f"_early_{lookup.table}" for lookup in lookups]
    replaced = {lookup.column for lookup in lookups if lookup.via is None}
    rest = [c for c in streams.columns if c not in keys and c not in replaced]
    any_early = F.lit(False)
    for flag in early:
        any_early = any_early | F.col(flag)
    return facts.select(
        *keys, *[lookup.surrogate_key for lookup in lookups], *rest, any_early.alias("_before_first")
    )


def targets(config: dict) -> list[Target]:
    """The gold tables in build order: dimensions, the fact, then the views."""
    rules = config.get("silver") or {}
    expectations = config.get("expectations") or {}
    specs = {t["table"]: t for t in config["tables"]}
    found = []
    fact = None
    for spec in config["tables"]:
        gold = spec.get("gold") or {}
        if not gold:
            continue
        settings = {"table": spec, "rules": rules, "expectations": expectations.get(gold["table"], [])}
        if gold.get("fact"):
            fact = spec
        elif gold.get("scd") in (1, 2):
            kind = f"scd{gold['scd']}"
            found.append(Target(gold["table"], kind, (spec["table"],), settings, source=spec["table"]))
        else:
            raise ValueError(f"{spec['table']}: gold needs scd: 1 or 2, or fact: true")
    if fact is not None:
        lookups = fact_lookups(config)
        inputs = (fact["table"], *(lookup.table for lookup in lookups))
        settings = {
            "fact": config["fact"],
            "tables": [specs[t] for t in inputs],
            "rules": rules,
            "expectations": {
                specs[t]["gold"]["table"]: expectations.get(specs[t]["gold"]["table"], []) for t in inputs
            },
        }
        found.append(Target(fact["gold"]["table"], "fact", inputs, settings, source=fact["table"]))
    every_input = tuple(t["table"] for t in config["tables"] if t.get("gold"))
    for view in config.get("views") or []:
        if not view.get("sql"):
            raise ValueError(f"view {view.get('table')!r} has no rendered sql")
        settings = {"view": view, "tables": config["tables"], "rules": rules, "expectations": expectations}
        keys = tuple(view.get("keys") or ())
        if keys and (fact is None or list(keys) != list(fact["keys"])):
            raise ValueError(f"view {view['table']!r}: keys must be the fact's keys, {fact and fact['keys']}")
        found.append(Target(view["table"], "view", every_input, settings, sql=view["sql"], keys=keys))
    return found


class Star:
    """Builds gold tables from silver at pinned versions, each at most once per run.

    The fact and the keyed views are rebuilt only for the facts a change can touch (see
    ``candidates``), when their last build can be told apart from now; else in full.
    """

    def __init__(self, job: Job, targets: list[Target]):
        self.job = job
        self.targets = {t.name: t for t in targets}
        self.order = [t.name for t in targets]
        self.specs = {t["table"]: t for t in job.config["tables"]}
        self.rules = job.config.get("silver") or {}
        self.expectations = job.config.get("expectations") or {}
        self.versions: dict[str, int | None] = {}
        self.ids: dict[str, str | None] = {}
        self.built: dict[str, Built] = {}
        self.earlier: dict[tuple[str, int], object] = {}  # dimension_then
        self._candidates: object = _UNSET

    # -- silver at pinned versions ----------------------------------------------------------------
    def pin(self, table: str) -> int:
        if table not in self.versions:
            self.versions[table] = self.job.engine.version(self.job.uri("silver", table))
        return self.versions[table]

    def table_id(self, table: str) -> str | None:
        if table not in self.ids:
            self.ids[table] = self.job.engine.table_id(self.job.uri("silver", table))
        return self.ids[table]

    def silver(self, table: str, version: int | None = None):
        """Silver ``table``'s business columns, at ``version`` (default: the one pinned for this run)."""
        spec = self.specs[table]
        uri = self.job.uri("silver", table)
        df = self.job.engine.read(uri, version=self.pin(table) if version is None else version)
        return df.select(*business_columns(spec, self.rules))

    def metadata(self, target: Target, stamp: dict) -> dict:
        """A gold commit's metadata: the stamp, and the ids of the silver tables it was built from."""
        ids = {table: self.table_id(table) for table in target.inputs}
        return {"stamp": stamp, "run_id": self.job.run_id, "job": self.job.name, "input_ids": ids}

    # -- what changed since the last build ---------------------------------------------------------
    def last_build(self, target: Target) -> dict[str, int] | None:
        """The silver versions ``target`` was last built from, if it can be continued from them:
        same settings, same silver tables (ids), versions not newer than now; else None."""
        uri = self.job.uri("gold", target.name)
        if not self.job.engine.exists(uri):
            return None
        meta = self.job.engine.last_metadata(uri)
        stamp, ids = meta.get("stamp") or {}, meta.get("input_ids") or {}
        versions = stamp.get("inputs") or {}
        if stamp.get("settings") != settings_hash(target.settings):
            return None
        for table in target.inputs:
            version = versions.get(table)
            if version is None or version > self.pin(table) or ids.get(table) != self.table_id(table):
                return None
        return {table: versions[table] for table in target.inputs}

    def since(self) -> dict[str, int] | None:
        """Per silver table, the oldest version the fact and the keyed views were built from."""
        found: dict[str, int] = {}
        for target in self.targets.values():
            if target.kind == "fact" or (target.kind == "view" and target.keys):
                versions = self.last_build(target)
                if versions is None:
                    return None
                for table, version in versions.items():
                    found[table] = min(version, found.get(table, version))
        return found or None

    def changed_since(self, table: str, version: int) -> bool:
        """Whether silver ``table`` has commits after ``version`` up to the one pinned for this run."""
        return version != self.pin(table)

    def stored_build(self, target: Target, versions: dict[str, int]):
        """Gold ``target`` as stored, when its last commit was built from silver at ``versions``
        (the same tables: same ids) with the same settings: what building it from them would
        give. None otherwise."""
        uri = self.job.uri("gold", target.name)
        if not self.job.engine.exists(uri):
            return None
        meta = self.job.engine.last_metadata(uri)
        stamp = Job.stamp(versions, target.settings)
        ids = {table: self.table_id(table) for table in versions}
        if meta.get("stamp") != stamp or meta.get("input_ids") != ids:
            return None
        return self.job.engine.read(uri, version=self.job.engine.version(uri))

    def checked_quietly(self, name: str, df):
        """``df`` less the rows the drop rules of ``name`` drop, without recording outcomes."""
        return kept_rows(df, [Expectation.from_config(name, e) for e in self.expectations.get(name, [])])

    def dimension_then(self, table: str, version: int):
        """A dimension as it was built from silver ``table`` at ``version`` (after its drop rules),
        once per run: the ranges and the outrigger's carriers both read it. Read as stored when
        its last commit was built from that version (as when the fact was), else built again."""
        if (table, version) not in self.earlier:
            target = self.targets[self.specs[table]["gold"]["table"]]
            dimension = self.stored_build(target, {table: version})
            if dimension is None:
                dimension = _materialized(self.checked_quietly(target.name, self.dimension(target, version)))
            self.earlier[(table, version)] = dimension
        return self.earlier[(table, version)]

    def changed_ranges(self, table: str, version: int):
        """Per key of type 2 dimension ``table`` whose versions differ from those built at silver
        ``version``: ``_key``, and ``_from``, the earliest time from which a fact of the key can
        point elsewhere: a version that only got another ``valid_to`` moves facts from the
        earlier of the two ends on; any other changed version from its ``valid_from``. NULL when
        that is the key's first version: facts before it point at it too."""
        spec = self.specs[table]
        key, sk = spec["keys"][0], spec["gold"]["surrogate_key"]
        old = self.dimension_then(table, version)
        new = self.build(spec["gold"]["table"]).df
        validity = (tf.VALID_TO, tf.IS_CURRENT)
        rest = [c for c in new.columns if c not in validity]
        o = old.exceptAll(new).select(*[F.col(c).alias(f"o_{c}") for c in new.columns])
        n = new.exceptAll(old).select(*[F.col(c).alias(f"n_{c}") for c in new.columns])
        same = F.lit(True)
        for column in rest:
            same = same & F.col(f"o_{column}").eqNullSafe(F.col(f"n_{column}"))
        paired = F.col(f"o_{sk}").isNotNull() & F.col(f"n_{sk}").isNotNull() & same
        end = F.least(F.col(f"o_{tf.VALID_TO}"), F.col(f"n_{tf.VALID_TO}"))
        start = F.coalesce(F.col(f"o_{tf.VALID_FROM}"), F.col(f"n_{tf.VALID_FROM}"))
        moved = o.join(n, F.col(f"o_{sk}") == F.col(f"n_{sk}"), "full_outer").select(
            F.coalesce(F.col(f"o_{key}"), F.col(f"n_{key}")).alias(key),
            F.when(paired, end).otherwise(start).alias("_from"),
        )
        first = old.unionByName(new).groupBy(key).agg(F.min(tf.VALID_FROM).alias("_first"))
        return _materialized(
            moved.groupBy(key)
            .agg(F.min("_from").alias("_from"))
            .join(first, key)
            .select(
                F.col(key).alias("_key"),
                F.when(F.col("_from") > F.col("_first"), F.col("_from")).alias("_from"),
            )
        )

    def changed_rows(self, table: str, since: int):
        """Silver ``table``'s rows inserted or updated after version ``since`` up to the version
        pinned for this run, from Delta's change data feed: exact with deletion vectors,
        partitions and column mapping. None when the feed cannot tell, or when rows were deleted
        (a replaced table): every fact is then recomputed."""
        feed = self.job.engine.changes(self.job.uri("silver", table), since, self.pin(table))
        if feed is None:
            log.info("silver.%s: no change data since version %s: every fact is recomputed", table, since)
            return None
        if feed.filter(F.col("_change_type") == "delete").limit(1).count():
            log.info("silver.%s: rows were deleted since version %s: every fact is recomputed", table, since)
            return None
        return feed.filter(F.col("_change_type").isin("insert", "update_postimage"))

    def candidates(self):
        """The keys of the facts this run can have changed, or None (rebuild every fact).

        A fact can change when its silver row was inserted or updated (Delta's change data feed
        of silver since, ``changed_rows``), when a type 2 dimension version it may point at
        changed (its key, at or after the earliest changed version; through an outrigger, the
        keys of the dimension that carries it), or a type 1 dimension row it joins changed.
        """
        if self._candidates is _UNSET:
            self._candidates = self._find_candidates()
        return self._candidates

    def _find_candidates(self):
        since = self.since()
        fact = next((t for t in self.targets.values() if t.kind == "fact"), None)
        if since is None or fact is None:
            return None
        spec = self.specs[fact.source]
        keys, at = spec["keys"], spec["change_column"]
        lookups = fact_lookups(self.job.config)
        # the same silver rows give the same dimension versions: only changed tables are compared
        changed = [look.table for look in lookups if self.changed_since(look.table, since[look.table])]
        type1 = [
            dim["table"]
            for dim in self.job.config["fact"]["dimensions"]
            if (self.specs[dim["table"]].get("gold") or {}).get("scd") == 1
            and dim["table"] in since
            and self.changed_since(dim["table"], since[dim["table"]])
        ]
        # The feed of the fact's silver and each changed dimension's earlier versions (and
        # ranges) are independent queries: computed side by side.
        steps = [partial(self.changed_rows, fact.source, since[fact.source])]
        steps += [partial(self.changed_ranges, table, since[table]) for table in changed]
        steps += [partial(self.dimension_then, table, since[table]) for table in type1]
        added, *found_ranges = self.job.side_by_side(*steps)
        if added is None:
            return None
        found_by_table = dict(zip(changed, found_ranges[: len(changed)], strict=True))
        streams = self.silver(fact.source)
        ranges: dict[str, list] = {}
        for lookup in lookups:
            if lookup.table not in found_by_table:
                continue
            found = found_by_table[lookup.table]
            column = lookup.column
            if lookup.via:
                via = next(v for v in lookups if v.table == lookup.via)
                via_key = self.specs[lookup.via]["keys"][0]
                carriers = self.build(self.specs[lookup.via]["gold"]["table"]).df
                if self.changed_since(lookup.via, since[lookup.via]):
                    carriers = self.dimension_then(lookup.via, since[lookup.via]).unionByName(carriers)
                carriers = carriers.select(via_key, lookup.column).distinct()
                found = carriers.join(found, carriers[lookup.column] == found["_key"]).select(
                    F.col(via_key).alias("_key"), "_from"
                )
                column = via.column
            ranges.setdefault(column, []).append(found)
        # One scan of the fact's silver rows: each changed range (and changed type 1 row) is
        # joined by its key, at most one row per key, and a fact is touched when any matched.
        touched = None
        for i, (column, frames) in enumerate(ranges.items()):
            union = frames[0]
            for frame in frames[1:]:
                union = union.unionByName(frame)
            merged = union.groupBy("_key").agg(
                F.when(F.max(F.col("_from").isNull().cast("int")) == 1, F.lit(None))
                .otherwise(F.min("_from"))
                .alias("_from")
            )
            key_col, from_col = f"_range{i}_key", f"_range{i}_from"
            merged = merged.select(F.col("_key").alias(key_col), F.col("_from").alias(from_col))
            streams = streams.join(F.broadcast(merged), F.col(column) == F.col(key_col), "left")
            hit = F.col(key_col).isNotNull() & (F.col(from_col).isNull() | (F.col(at) >= F.col(from_col)))
            touched = hit if touched is None else touched | hit
        for i, dim in enumerate(self.job.config["fact"]["dimensions"]):
            table = dim["table"]
            if table not in type1:
                continue
            key = self.specs[table]["keys"][0]
            old = self.dimension_then(table, since[table])
            new = self.build(self.specs[table]["gold"]["table"]).df
            key_col = f"_changed{i}_key"
            changed = (
                old.exceptAll(new)
                .unionByName(new.exceptAll(old))
                .select(F.col(key).alias(key_col))
                .distinct()
            )
            streams = streams.join(F.broadcast(changed), F.col(dim["column"]) == F.col(key_col), "left")
            hit = F.col(key_col).isNotNull()
            touched = hit if touched is None else touched | hit
        union = added.select(*keys)
        if touched is not None:
            union = union.unionByName(streams.filter(touched).select(*keys))
        return _materialized(union.distinct())

    # -- building ----------------------------------------------------------------------------------
    def checked(self, name: str, df, counts: dict | None = None, *, materialized: bool = False) -> Built:
        """``df`` after the expectations of ``name``, computed once (``materialized``: it is already)."""
        rules = [Expectation.from_config(name, e) for e in self.expectations.get(name, [])]
        kept, outcomes, dropped = checked_rows(df, name, rules, materialized=materialized)
        return Built(kept, outcomes, dropped, counts or {})

    def stored(self, name: str, like):
        """Gold ``name`` at its current version, or None when missing or of other columns than ``like``."""
        uri = self.job.uri("gold", name)
        version = self.job.engine.version(uri)
        if version is None:
            return None
        df = self.job.engine.read(uri, version=version)
        shape = [f.simpleString() for f in df.schema.fields]
        return df if shape == [f.simpleString() for f in like.schema.fields] else None

    def differences(self, built: Built, name: str, keys: list[str], candidates) -> Built:
        """Sets ``built.changed`` (rows to merge, or None: replace with all) and ``built.after``
        (the table as it will be after this run)."""
        stored = self.stored(name, built.df)
        if stored is None:
            built.changed, built.after = None, built.df
            return built
        compared = stored if candidates is None else stored.join(candidates, keys, "left_semi")
        built.changed = _materialized(built.df.exceptAll(compared.select(*built.df.columns)))
        built.after = stored.join(built.changed.select(*keys), keys, "left_anti").unionByName(built.changed)
        return built

    def build(self, name: str) -> Built:
        if name in self.built:
            return self.built[name]
        target = self.targets[name]
        stored = None
        if target.kind in ("scd1", "scd2"):
            stored = self.stored_build(target, {table: self.pin(table) for table in target.inputs})
        if stored is not None:
            built = Built(stored)  # a lookup of the fact, read as written: no rule is checked again
        elif target.kind in ("scd1", "scd2"):
            built = self.checked(name, self.dimension(target))
        elif target.kind == "fact":
            built = self.fact(target)
        else:
            built = self.view(target)
        self.built[name] = built
        return built

    def dimension(self, target: Target, version: int | None = None):
        spec = self.specs[target.source]
        history = self.silver(target.source, version)
        if target.kind == "scd1":
            return history
        gold = spec["gold"]
        return tf.scd2(
            history,
            keys=spec["keys"],
            change_column=spec["change_column"],
            tracked=gold["tracked"],
            surrogate_key=gold["surrogate_key"],
            columns=history.columns,
        )

    def fact(self, target: Target) -> Built:
        return self._over_candidates(target, lambda candidates: self._fact(target, candidates))

    def _over_candidates(self, target: Target, make) -> Built:
        """``make(candidates)``; ``make(None)`` (every fact) when the stored table has other columns,
        which only a full build can replace."""
        built = make(self.candidates())
        if (
            built.changed is None
            and self._candidates is not None
            and self.job.engine.exists(self.job.uri("gold", target.name))
        ):
            built = make(None)
        return built

    def _fact(self, target: Target, candidates) -> Built:
        spec = self.specs[target.source]
        lookups = fact_lookups(self.job.config)
        dims = {lookup.table: self.build(self.specs[lookup.table]["gold"]["table"]).df for lookup in lookups}
        streams = self.silver(target.source)
        if candidates is not None:
            streams = streams.join(candidates, spec["keys"], "left_semi")
        rows = fact_rows(streams, dims, lookups, keys=spec["keys"], at=spec["change_column"])
        rows = _materialized(rows)
        tally = rows.agg(
            F.count(F.lit(1)).alias("rows"), F.count(F.when(F.col("_before_first"), 1)).alias("early")
        ).first()
        counts = {REBUILT: tally["rows"], BEFORE_FIRST: tally["early"]}
        built = self.checked(target.name, rows.drop("_before_first"), counts, materialized=True)
        return self.differences(built, target.name, spec["keys"], candidates)

    def view(self, target: Target) -> Built:
        """The view's SQL over the gold tables as they will be after this run; a keyed view only
        over the candidate facts (all of them when the stored view has other columns)."""
        if not target.keys:
            return self._view(target, None)
        return self._over_candidates(target, lambda candidates: self._view(target, candidates))

    def _view(self, target: Target, candidates) -> Built:
        for other in self.order:
            if other == target.name:
                break
            before = self.build(other)
            df = before.after if before.after is not None else before.df
            if self.targets[other].kind == "fact" and candidates is not None:
                df = df.join(candidates, self.specs[self.targets[other].source]["keys"], "left_semi")
            df.createOrReplaceTempView(other)
        built = self.checked(target.name, self.job.spark.sql(target.sql))
        if not target.keys:
            return built
        missing = sorted(set(target.keys) - set(built.df.columns))
        if missing:
            raise ValueError(f"view {target.name}: its keys {missing} are not columns of its SQL")
        return self.differences(built, target.name, list(target.keys), candidates)


_UNSET = object()


def _materialized(df):
    """``df`` computed once and kept, with a plan that no longer repeats how: the dimensions are
    read by several later steps, whose plans would otherwise nest theirs many times over."""
    return df.localCheckpoint(eager=True)


def replace_if_changed(job: Job, name: str, df, metadata: dict) -> None:
    """Replace ``gold.<name>`` in one commit, unless it holds exactly these rows already."""
    uri = job.uri("gold", name)
    version = job.engine.version(uri)
    if version is not None and tf.same_content(df, job.engine.read(uri, version=version)):
        log.info("gold.%s: content unchanged: no commit", name)
        job.count("gold", name, "rows_written", 0)
        return
    df = df.localCheckpoint(eager=True)
    rows = df.count()
    job.engine.overwrite(df, uri, metadata=metadata)
    job.count("gold", name, "rows_written", rows)


def merge_changes(job: Job, target: Target, built: Built, keys: list[str], metadata: dict) -> None:
    """Write a fact or keyed view: all rows when the table is new (or its columns changed), else
    merge by ``keys`` only the rows that are new or differ from the stored ones."""
    metric = "facts_changed" if target.kind == "fact" else "rows_written"
    uri = job.uri("gold", target.name)
    if built.changed is None:
        df = built.df
        rows = df.count()
        job.engine.overwrite(df, uri, metadata=metadata)
        job.count("gold", target.name, metric, rows)
        return
    count = built.changed.count()
    job.count("gold", target.name, metric, count)
    if not count:
        log.info("gold.%s: no row changed: no commit", target.name)
        return
    result = job.engine.merge(built.changed, uri, keys, metadata=metadata)
    job.count("gold", target.name, "rows_inserted", result["inserted"])
    job.count("gold", target.name, "rows_updated", result["updated"])


def main(argv: list[str]) -> None:
    job = start("spotify.gold", argv)
    star = Star(job, targets(job.config))
    # Each table's newest commit is a small query of its own: asked for side by side, not in turn.
    silver_tables = sorted({table for target in star.targets.values() for table in target.inputs})
    uris = [job.uri("silver", t) for t in silver_tables] + [job.uri("gold", t) for t in star.targets]
    job.for_each(uris, job.engine.version)
    stale = []
    for target in star.targets.values():
        if not job.wants(target.name):
            continue
        inputs = {table: job.uri("silver", table) for table in target.inputs}
        stamp = job.stale("gold", target.name, inputs, settings=target.settings)
        if stamp is None:
            continue
        for table, version in stamp["inputs"].items():
            if star.pin(table) != version:
                raise RuntimeError(f"silver.{table} changed while gold was starting; run gold again")
        stale.append((target, stamp))
    if not stale:
        log.info("every gold table is up to date with silver: nothing to do")
        finish(job, list(star.targets))
        return

    job.for_each(silver_tables, star.table_id)  # read by the builds' checks and every commit
    # the dimensions first, side by side: each reads one silver table, the rest read them
    job.for_each([t.name for t in star.targets.values() if t.kind in ("scd1", "scd2")], star.build)
    built = [(target, stamp, star.build(target.name)) for target, stamp in stale]
    outcomes = [o for _, _, b in built for o in b.outcomes]

    def write(item) -> None:
        target, stamp, b = item
        for metric, value in b.counts.items():
            job.count("gold", target.name, metric, value)
        job.count("gold", target.name, "rows_dropped", b.dropped)
        metadata = star.metadata(target, stamp)
        if target.kind == "fact":
            merge_changes(job, target, b, star.specs[target.source]["keys"], metadata)
        elif target.kind == "view" and target.keys:
            merge_changes(job, target, b, list(target.keys), metadata)
        else:
            replace_if_changed(job, target.name, b.df, metadata)

    # every table is computed and checked: the writes, one per table, go side by side
    write_checked(job, outcomes, built, write)
    finish(job, list(star.targets))
