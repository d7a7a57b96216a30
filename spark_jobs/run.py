"""Entry point for spark-submit and Databricks ``spark_python_task``: ``run.py <pipeline>.<job> ARGS``.

Puts the folder holding ``spark_jobs`` on ``sys.path`` so the package imports the same way from a
checkout, a Databricks workspace folder or an uploaded copy.
"""

from __future__ import annotations

import importlib
import logging
import re
import sys
from pathlib import Path

JOB_NAME = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")


def main(argv: list[str]) -> None:
    if not argv or not JOB_NAME.match(argv[0]):
        raise SystemExit("usage: run.py <pipeline>.<job> --lake-root ROOT --run-id ID --config JSON")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    module = importlib.import_module(f"spark_jobs.{argv[0]}")
    module.main(argv[1:])


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main(sys.argv[1:])
