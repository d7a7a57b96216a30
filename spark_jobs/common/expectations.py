"""Data quality expectations in the style of Delta Live Tables: warn, drop or fail.

A rule is a SQL boolean expression. A row fails a rule when the expression is false or NULL.
``warn`` keeps failing rows and counts them, ``drop`` removes them, ``fail`` stops the job before
anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass

from spark_jobs.common.errors import BadInputError

ACTIONS = ("warn", "drop", "fail")


@dataclass(frozen=True)
class Expectation:
    name: str
    rule: str
    action: str

    @classmethod
    def from_config(cls, table: str, item: dict) -> Expectation:
        action = item.get("action", "warn")
        if action not in ACTIONS:
            raise ValueError(
                f"{table}: expectation {item.get('name')!r} has action {action!r}, not one of {ACTIONS}"
            )
        if not item.get("name") or not item.get("rule"):
            raise ValueError(f"{table}: every expectation needs a name and a rule, got {item!r}")
        return cls(name=item["name"], rule=item["rule"], action=action)


@dataclass(frozen=True)
class Outcome:
    table: str
    name: str
    rule: str
    action: str
    rows_total: int
    rows_failing: int
    rows_dropped: int

    @property
    def rows_passed(self) -> int:
        return self.rows_total - self.rows_failing

    @property
    def status(self) -> str:
        if self.rows_failing == 0:
            return "passed"
        return {"warn": "warned", "drop": "dropped", "fail": "failed"}[self.action]


class ExpectationFailedError(BadInputError):
    """A ``fail`` expectation is broken: the same data fails the same way."""


def _passes(expectation: Expectation):
    """A row passes a rule when its expression is true (false or NULL fail)."""
    from pyspark.sql import functions as F

    return F.coalesce(F.expr(expectation.rule).cast("boolean"), F.lit(False))


def _keep(expectations: list[Expectation]):
    """True for a row that every ``drop`` rule lets through."""
    from pyspark.sql import functions as F

    keep = F.lit(True)
    for expectation in expectations:
        if expectation.action == "drop":
            keep = keep & _passes(expectation)
    return keep


def kept_rows(df, expectations: list[Expectation]):
    """``df`` less the rows a ``drop`` rule drops, without counting anything (no Spark job)."""
    return df.filter(_keep(expectations))


def apply_expectations(df, table: str, expectations: list[Expectation]):
    """Evaluate every rule in one pass.

    Returns the rows to keep, one Outcome per rule, and how many rows were dropped in all (a row
    failing two drop rules counts once).
    """
    from pyspark.sql import functions as F

    if not expectations:
        return df, [], 0
    # Keyed by position, not name: two rules may share a name, or a name may be "_total".
    ok = [_passes(e) for e in expectations]
    keep = _keep(expectations)
    counts = df.agg(
        F.count(F.lit(1)).alias("_total"),
        F.sum(F.when(~keep, 1).otherwise(0)).alias("_dropped"),
        *[F.sum(F.when(~cond, 1).otherwise(0)).alias(f"_failing_{i}") for i, cond in enumerate(ok)],
    ).first()
    total = counts["_total"]
    failing = [int(counts[f"_failing_{i}"] or 0) for i in range(len(expectations))]
    outcomes = [
        Outcome(
            table=table,
            name=e.name,
            rule=e.rule,
            action=e.action,
            rows_total=total,
            rows_failing=failing[i],
            rows_dropped=failing[i] if e.action == "drop" else 0,
        )
        for i, e in enumerate(expectations)
    ]
    return df.filter(keep), outcomes, int(counts["_dropped"] or 0)


def checked_rows(df, table: str, expectations: list[Expectation], *, materialized: bool = False):
    """``apply_expectations`` over ``df`` computed once (``materialized``: the caller did), with the
    kept rows computed and kept too: the checkpoint itself when nothing was dropped, else a
    second one of the kept rows. Their count and their write then read the same rows."""
    computed = df if materialized else df.localCheckpoint(eager=True)
    kept, outcomes, dropped = apply_expectations(computed, table, expectations)
    return (kept.localCheckpoint(eager=True) if dropped else computed), outcomes, dropped


def failures(outcomes: list[Outcome]) -> list[str]:
    return [
        f"{o.table}: expectation {o.name!r} ({o.rule}) failed for {o.rows_failing} of {o.rows_total} rows"
        for o in outcomes
        if o.action == "fail" and o.rows_failing
    ]
