"""Entry point for spark-submit and Databricks ``spark_python_task``: ``run.py <pipeline>.<job> ARGS``.

Puts the folder holding ``spark_jobs`` on ``sys.path`` so the package imports the same way from a
checkout, a Databricks workspace folder or an uploaded copy.
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

STARTED = time.monotonic()

JOB_NAME = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")


def main(argv: list[str]) -> None:
    if not argv or not JOB_NAME.match(argv[0]):
        raise SystemExit("usage: run.py <pipeline>.<job> --lake-root ROOT --run-id ID --config JSON")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    module = importlib.import_module(f"spark_jobs.{argv[0]}")
    module.main(argv[1:])
    record_timing(argv[0])


def record_timing(job: str) -> None:
    """Append this job's timings to ``LAKEHOUSE_TIMINGS_FILE`` when set (``make bench`` sets it)."""
    path = os.environ.get("LAKEHOUSE_TIMINGS_FILE")
    if not path:
        return
    from spark_jobs.common import job as job_module

    timing = {
        "job": job,
        "python_seconds": time.monotonic() - STARTED,
        "session_seconds": job_module.SESSION_SECONDS,
    }
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(timing) + "\n")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main(sys.argv[1:])
