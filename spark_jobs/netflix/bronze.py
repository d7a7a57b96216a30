"""Netflix bronze: the new raw CSV files of each source, with lineage and rescued rows."""

from __future__ import annotations

from spark_jobs.common.bronze import ingest_sources
from spark_jobs.common.job import start


def main(argv: list[str]) -> None:
    ingest_sources(start("netflix.bronze", argv))
