"""Formula 1 presentation layer: the race years whose results changed, recomputed and replaced.

Each table is partitioned by race_year; only the touched years are rewritten (one commit per
table), so a drop costs what it changes. Unchanged silver inputs mean nothing is rewritten, so a
re-run or a backfill of an applied drop changes nothing.
"""

from __future__ import annotations

import logging

from pyspark.sql import functions as F

from spark_jobs.common.job import Job, start
from spark_jobs.formula1 import transforms as tf

log = logging.getLogger(__name__)
INPUTS = ("results", "races", "circuits", "drivers", "constructors")
BUILDERS = {
    "driver_standings": tf.driver_standings,
    "constructor_standings": tf.constructor_standings,
    "calculated_race_results": tf.calculated_race_results,
}


def touched_years(job: Job, silver: dict, built_from: int | None) -> list[int]:
    """Race years of the results that changed since the presentation was last built.

    Comparing the results table with its version at the last build (Delta time travel) catches
    every drop applied since, including one whose own presentation step failed or a late drop.
    """
    current = silver["results"].drop("ingestion_date")
    if built_from is not None:
        previous = job.engine.read(job.uri("silver", "results"), version=built_from).drop("ingestion_date")
        current = current.exceptAll(previous)
    years = (
        current.select("race_id").distinct().join(silver["races"], "race_id").select("race_year").distinct()
    )
    return sorted(row["race_year"] for row in years.collect())


def main(argv: list[str]) -> None:
    job = start("formula1.gold", argv)
    if not job.file_date:
        raise SystemExit("formula1.gold needs --file-date")
    inputs = {name: job.uri("silver", name) for name in INPUTS}
    if job.engine.version(inputs["results"]) is None:
        log.info("no results have been delivered yet: no presentation table to build")
        return
    stamp = job.stale("gold", "race_results", inputs)
    if stamp is None:
        return
    built = job.engine.last_metadata(job.uri("gold", "race_results")).get("stamp", {})
    silver = job.read_inputs(inputs, stamp)
    years = touched_years(job, silver, built.get("inputs", {}).get("results"))
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
    ).cache()
    tables = {"race_results": results, **{name: build(results) for name, build in BUILDERS.items()}}
    # race_results carries the stamp that stale() checks, so it is written last: a crash part-way
    # leaves it stale and the re-run completes the others.
    for name in sorted(job.config["presentation"], key=lambda n: n == "race_results"):
        df = tables[name].cache()
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
    job.write_audit()
