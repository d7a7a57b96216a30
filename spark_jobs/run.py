"""The jobs' one entry point: ``run.py <pipeline>.<job> ARGS``.

Databricks runs it as a ``spark_python_task``; locally the Airflow task calls ``main`` with its Spark
Connect session, and ``python spark_jobs/run.py ...`` with ``SPARK_REMOTE=sc://host:port`` runs a
job by hand. As a script it puts the folder holding ``spark_jobs`` on ``sys.path`` so the package
imports the same way from a checkout, a Databricks workspace folder or an uploaded copy.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import sys
import time
from pathlib import Path

JOB_NAME = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")


def main(argv: list[str], spark=None) -> None:
    """Run job ``argv[0]`` with the rest as its arguments, on ``spark`` when given."""
    if not argv or not JOB_NAME.match(argv[0]):
        raise SystemExit("usage: run.py <pipeline>.<job> --lake-root ROOT --run-id ID --config JSON")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("spark_jobs").setLevel(logging.INFO)
    # The Spark Connect client logs every server error it then raises (with its stack): the job
    # reports what it cannot handle, and "no table here yet" is an answer, not an error.
    logging.getLogger("pyspark.sql.connect.logging").setLevel(logging.CRITICAL)
    from spark_jobs.common import session

    session.bind(spark)
    started = time.monotonic()
    try:
        module = importlib.import_module(f"spark_jobs.{argv[0]}")
        module.main(argv[1:])
    finally:
        session.bind(None)
    record_timing(argv[0], time.monotonic() - started)


def record_timing(job: str, seconds: float) -> None:
    """Append this job's timings to ``LAKEHOUSE_TIMINGS_FILE`` when set (``make bench`` sets it)."""
    path = os.environ.get("LAKEHOUSE_TIMINGS_FILE")
    if not path:
        return
    from spark_jobs.common import job as job_module

    timing = {"job": job, "python_seconds": seconds, "session_seconds": job_module.SESSION_SECONDS}
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(timing) + "\n")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main(sys.argv[1:])
