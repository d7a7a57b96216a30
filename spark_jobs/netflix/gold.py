"""Netflix gold: silver tables published behind their declared expectations."""

from __future__ import annotations

from spark_jobs.common.gold import publish
from spark_jobs.common.job import start


def main(argv: list[str]) -> None:
    job = start("netflix.gold", argv)
    publish(job, job.config["gold"])
