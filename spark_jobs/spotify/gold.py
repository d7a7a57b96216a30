"""Spotify gold: a star schema with type 2 dimensions, rebuilt from silver's history.

* SCD2 dimensions (``gold.scd: 2``): every version of a key, with ``valid_from``/``valid_to``, a
  function of silver alone; replaced in one commit, only when its content changed.
* SCD1 dimensions (``gold.scd: 1``): silver's rows (already the latest per key).
* The fact (``gold.fact: true``): each row points at the dimension versions valid at its change
  time; merged by key, only the rows that are new or whose content changed.
* Views (``config['views']``): SQL rendered by Airflow, run over the gold tables; replaced when
  their content changed.

Each table is rebuilt only when the versions of the silver tables it reads (or its settings)
changed since its last commit. All stale tables are computed and checked against their
expectations before any is written: a broken ``fail`` rule writes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from pyspark.sql import functions as F

from spark_jobs.common.expectations import Expectation, ExpectationFailedError, apply_expectations, failures
from spark_jobs.common.gold import record_quality
from spark_jobs.common.job import Job, start
from spark_jobs.spotify import transforms as tf

log = logging.getLogger(__name__)

BEFORE_FIRST = "facts_before_first_version"


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


@dataclass
class Built:
    df: object  # the rows to write, after expectations (cached)
    outcomes: list = field(default_factory=list)
    dropped: int = 0
    counts: dict[str, int] = field(default_factory=dict)


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
        found.append(Target(view["table"], "view", every_input, settings, sql=view["sql"]))
    return found


class Star:
    """Builds gold tables from silver at pinned versions, each at most once per run."""

    def __init__(self, job: Job, targets: list[Target]):
        self.job = job
        self.targets = {t.name: t for t in targets}
        self.order = [t.name for t in targets]
        self.specs = {t["table"]: t for t in job.config["tables"]}
        self.rules = job.config.get("silver") or {}
        self.expectations = job.config.get("expectations") or {}
        self.versions: dict[str, int | None] = {}
        self.built: dict[str, Built] = {}

    def pin(self, table: str) -> int:
        if table not in self.versions:
            self.versions[table] = self.job.engine.version(self.job.uri("silver", table))
        return self.versions[table]

    def silver(self, table: str):
        """Silver ``table``'s business columns, at the version pinned for this run."""
        spec = self.specs[table]
        df = self.job.engine.read(self.job.uri("silver", table), version=self.pin(table))
        return df.select(*business_columns(spec, self.rules))

    def checked(self, name: str, df, counts: dict | None = None) -> Built:
        rules = [Expectation.from_config(name, e) for e in self.expectations.get(name, [])]
        kept, outcomes, dropped = apply_expectations(df.cache(), name, rules)
        return Built(kept.cache(), outcomes, dropped, counts or {})

    def build(self, name: str) -> Built:
        if name in self.built:
            return self.built[name]
        target = self.targets[name]
        if target.kind in ("scd1", "scd2"):
            built = self.checked(name, self.dimension(target))
        elif target.kind == "fact":
            built = self.fact(target)
        else:
            for other in self.order:
                if other == name:
                    break
                self.build(other).df.createOrReplaceTempView(other)
            built = self.checked(name, self.job.spark.sql(target.sql))
        self.built[name] = built
        return built

    def dimension(self, target: Target):
        spec = self.specs[target.source]
        history = self.silver(target.source)
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
        spec = self.specs[target.source]
        lookups = fact_lookups(self.job.config)
        dims = {lookup.table: self.build(self.specs[lookup.table]["gold"]["table"]).df for lookup in lookups}
        rows = fact_rows(
            self.silver(target.source), dims, lookups, keys=spec["keys"], at=spec["change_column"]
        ).cache()
        early = rows.filter("_before_first").count()
        built = self.checked(target.name, rows.drop("_before_first"), {BEFORE_FIRST: early})
        rows.unpersist()
        return built


def replace_if_changed(job: Job, name: str, df, stamp: dict) -> None:
    """Replace ``gold.<name>`` in one commit, unless it holds exactly these rows already."""
    uri = job.uri("gold", name)
    version = job.engine.version(uri)
    if version is not None and tf.same_content(df, job.engine.read(uri, version=version)):
        log.info("gold.%s: content unchanged: no commit", name)
        job.count("gold", name, "rows_written", 0)
        return
    job.replace("gold", name, df, stamp)


def merge_changed_facts(job: Job, name: str, df, keys: list[str], stamp: dict) -> None:
    """Merge by ``keys`` only the rows that are new or differ from the stored ones."""
    uri = job.uri("gold", name)
    metadata = {"stamp": stamp, "run_id": job.run_id, "job": job.name}
    version = job.engine.version(uri)
    existing = None if version is None else job.engine.read(uri, version=version)  # pinned: merged below
    if existing is None or [f.simpleString() for f in existing.schema.fields] != [
        f.simpleString() for f in df.schema.fields
    ]:
        rows = job.replace("gold", name, df, stamp)
        job.count("gold", name, "facts_changed", rows)
        return
    changed = df.exceptAll(existing.select(*df.columns)).cache()
    count = changed.count()
    job.count("gold", name, "facts_changed", count)
    if not count:
        log.info("gold.%s: no fact changed: no commit", name)
    else:
        result = job.engine.merge(changed, uri, keys, metadata=metadata)
        job.count("gold", name, "rows_inserted", result["inserted"])
        job.count("gold", name, "rows_updated", result["updated"])
    changed.unpersist()


def main(argv: list[str]) -> None:
    job = start("spotify.gold", argv)
    star = Star(job, targets(job.config))
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
        job.write_audit()
        return

    built = [(target, stamp, star.build(target.name)) for target, stamp in stale]
    outcomes = [o for _, _, b in built for o in b.outcomes]
    record_quality(job, outcomes)
    broken = failures(outcomes)
    if broken:
        raise ExpectationFailedError("; ".join(broken) + " (no gold table was written)")
    for target, stamp, b in built:
        for metric, value in b.counts.items():
            job.count("gold", target.name, metric, value)
        job.count("gold", target.name, "rows_dropped", b.dropped)
        if target.kind == "fact":
            keys = star.specs[target.source]["keys"]
            merge_changed_facts(job, target.name, b.df, keys, stamp)
        else:
            replace_if_changed(job, target.name, b.df, stamp)
    job.write_audit()
