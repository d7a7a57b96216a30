"""Formula 1 presentation layer: the race years a drop's results touch, recomputed and replaced.

Each table is partitioned by race_year; only the touched years are rewritten (one commit per
table), so a drop costs what it changes. Unchanged silver inputs mean nothing is rewritten.
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


def touched_years(job: Job, silver: dict) -> list[int]:
    """Race years of the results this drop delivered."""
    drop_results = silver["results"].filter(F.col("file_date") == F.to_date(F.lit(job.file_date)))
    years = drop_results.join(silver["races"], "race_id").select("race_year").distinct().collect()
    return sorted(row["race_year"] for row in years)


def main(argv: list[str]) -> None:
    job = start("formula1.gold", argv)
    if not job.file_date:
        raise SystemExit("formula1.gold needs --file-date")
    inputs = {name: job.uri("silver", name) for name in INPUTS}
    if job.engine.version(inputs["results"]) is None:
        log.info("no results have been delivered yet: no presentation table to build")
        return
    stamp = job.stale("gold", "race_results", inputs, settings={"file_date": job.file_date})
    if stamp is None:
        return
    silver = job.read_inputs(inputs, stamp)
    years = touched_years(job, silver)
    if not years:
        log.info("drop %s delivered no results: presentation tables unchanged", job.file_date)
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
