"""Formula 1 presentation layer: the race years whose results changed, recomputed and replaced.

Each table is partitioned by race_year; only the touched years are rewritten (one commit per
table), so a drop costs what it changes. Unchanged silver inputs mean nothing is rewritten, so a
re-run or a backfill of an applied drop changes nothing.
"""

from __future__ import annotations

import logging

from pyspark.sql import functions as F

from spark_jobs.common.gold import finish
from spark_jobs.common.job import Job, start
from spark_jobs.formula1 import transforms as tf

log = logging.getLogger(__name__)
INPUTS = ("results", "races", "circuits", "drivers", "constructors")
BUILDERS = {
    "driver_standings": tf.driver_standings,
    "constructor_standings": tf.constructor_standings,
    "calculated_race_results": tf.calculated_race_results,
}


CHANGED = ("insert", "update_postimage")
REPLACED = ("update_preimage", "delete")


def touched_years(job: Job, silver: dict, built_from: int | None, version: int) -> list[int]:
    """Race years of the results that changed since the presentation was last built.

    Silver results keep Delta's change data feed: the rows inserted, updated or deleted between
    the version of the last build and ``version`` (every drop applied since, including one whose
    own presentation step failed, or a late drop), less updates that changed nothing but the
    ingestion time. No earlier build, or a feed that cannot tell: every year.
    """
    changed = silver["results"]
    if built_from is not None:
        feed = job.engine.changes(job.uri("silver", "results"), built_from, version)
        if feed is None:
            log.warning("silver results has no change data since version %s: every race year", built_from)
        else:
            feed = feed.drop("ingestion_date", "_commit_version", "_commit_timestamp")
            after = feed.filter(F.col("_change_type").isin(*CHANGED)).drop("_change_type")
            before = feed.filter(F.col("_change_type").isin(*REPLACED)).drop("_change_type")
            changed = after.exceptAll(before).unionByName(before.exceptAll(after))
    years = (
        changed.select("race_id").distinct().join(silver["races"], "race_id").select("race_year").distinct()
    )
    return sorted(row["race_year"] for row in years.collect())


def main(argv: list[str]) -> None:
    job = start("formula1.gold", argv)
    if not job.file_date:
        raise SystemExit("formula1.gold needs --file-date")
    build(job)
    # every presentation table is written: one commit makes them the versions readers see
    finish(job, job.config["presentation"])


def build(job: Job) -> None:
    inputs = {name: job.uri("silver", name) for name in INPUTS}
    if job.engine.version(inputs["results"]) is None:
        log.info("no results have been delivered yet: no presentation table to build")
        return
    stamp = job.stale("gold", "race_results", inputs)
    if stamp is None:
        return
    built = job.engine.last_metadata(job.uri("gold", "race_results")).get("stamp", {})
    silver = job.read_inputs(inputs, stamp)
    years = touched_years(job, silver, built.get("inputs", {}).get("results"), stamp["inputs"]["results"])
    if not years:
        log.info("no results changed since the last build (drop %s): presentation unchanged", job.file_date)
        return
    in_years = F.col("race_year").isin(years)
    results = tf.race_results(
        silver["results"],
        silver["races"].filter(in_years),
        silver["circuits"],
        silver["drivers"],
        silver["constructors"],
    ).localCheckpoint(eager=True)
    tables = {"race_results": results, **{name: build(results) for name, build in BUILDERS.items()}}

    def write(name: str) -> None:
        # computed once for its count and its write; race_results already is (the others read it)
        df = results if name == "race_results" else tables[name].localCheckpoint(eager=True)
        rows = df.count()
        metadata = {"stamp": stamp, "run_id": job.run_id, "job": job.name, "race_years": years}
        job.engine.overwrite(
            df,
            job.uri("gold", name),
            where={"race_year": years},
            metadata=metadata,
            partition_by=["race_year"],
        )
        job.count("gold", name, "rows_written", rows)
        job.count("gold", name, "race_years", len(years))

    # race_results carries the stamp that stale() checks, so it is written last: a crash part-way
    # leaves it stale and the re-run completes the others.
    others = [name for name in job.config["presentation"] if name != "race_results"]
    job.for_each(others, write)
    if "race_results" in job.config["presentation"]:
        write("race_results")
