"""Which test files the Spark Connect server spent its CPU on, so a saving can be aimed.

The controller samples the server's CPU time once a second; each worker logs when each test ran
(setup to teardown). The server's CPU in each second is split equally among the tests running
then (two workers share one server), and summed per file. An estimate: a test that waits on
Airflow while the other worker's test keeps the server busy gets half of that second.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections import defaultdict
from pathlib import Path

LOG_ENV = "LAKEHOUSE_TEST_CPU_LOG"


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of a process (Linux), None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Sampler:
    """The server's cumulative CPU time, once a second, in a daemon thread of the controller."""

    def __init__(self, pid: int, folder: Path):
        self.pid, self.folder = pid, folder
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spark-cpu-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            cpu = cpu_seconds(self.pid)
            if cpu is None:
                return
            self.samples.append((time.time(), cpu))
            self._stop.wait(1.0)

    def by_file(self) -> dict[str, float]:
        """Server CPU seconds per test file, each second split among the tests running in it."""
        self._stop.set()
        intervals = []
        for log in self.folder.glob("intervals-*.jsonl"):
            for line in log.read_text().splitlines():
                entry = json.loads(line)
                intervals.append((entry["start"], entry["end"], entry["file"]))
        shares: dict[str, float] = defaultdict(float)
        if self.samples:
            shares["(server start-up)"] = self.samples[0][1]
        for (t0, c0), (t1, c1) in itertools.pairwise(self.samples):
            middle = (t0 + t1) / 2
            running = [name for start, end, name in intervals if start <= middle < end]
            for name in running:
                shares[name] += (c1 - c0) / len(running)
            if not running:
                shares["(between tests)"] += c1 - c0
        return dict(shares)


def log_interval(nodeid: str, start: float, end: float) -> None:
    """In a worker: record that a test ran from start to end (epoch seconds)."""
    folder = os.environ.get(LOG_ENV)
    if not folder:
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    entry = {"file": nodeid.split("::", 1)[0].rsplit("/", 1)[-1], "start": start, "end": end}
    with open(Path(folder) / f"intervals-{worker}.jsonl", "a") as log:
        log.write(json.dumps(entry) + "\n")
