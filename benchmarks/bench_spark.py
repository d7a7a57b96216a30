"""The benchmark's own Spark Connect server, shared by its sections (part of ``make bench``).

Local compute is one long-running Spark Connect server (``lakehouse.spark_server``): the benchmark
starts one on a free port of 127.0.0.1, in its own folder under the scratch folder, points the
``spark_connect_default`` connection (and ``SPARK_REMOTE``) at it, and stops it at the end. Its
start is timed apart (the JVM until it listens, then the Delta warm-up ``start()`` runs by default),
since a real server is started once per machine session, not once per DAG run.

The driver's memory is ``BENCH_SPARK_MEMORY`` (default 8g: enough for the Spotify benchmark's 10M
case; the project's default is 4g). Other settings are the project's (``server_conf()``, which
``SPARK_SERVER_CONF`` can change).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_MEMORY = "8g"
OOM_MARKERS = ("java.lang.OutOfMemoryError", "Java heap space", "GC overhead limit exceeded")


@dataclass
class BenchServer:
    """One Spark Connect server for the whole benchmark, started on first use."""

    folder: Path
    memory: str = field(
        default_factory=lambda: os.environ.get("BENCH_SPARK_MEMORY", "").strip() or DEFAULT_MEMORY
    )
    server: object | None = None  # lakehouse.spark_server.SparkServer
    listen_seconds: float = 0.0  # the JVM, from launch until it listens
    warm_seconds: float = 0.0  # then start()'s Delta warm-up (write, merge, change feed)
    starts: int = 0
    conf: dict[str, str] = field(default_factory=dict)

    @property
    def start_seconds(self) -> float:
        return self.listen_seconds + self.warm_seconds

    def running(self) -> bool:
        from lakehouse import spark_server

        return self.server is not None and spark_server.listening(self.server.host, self.server.port)

    def ensure(self) -> BenchServer:
        """Start the server unless it is up (again after it died, e.g. of an out-of-memory error)."""
        from lakehouse import spark_server
        from lakehouse.ports import free_port

        if self.running():
            return self
        if self.server is not None:
            self.server.stop()
        self.conf = {**spark_server.server_conf(), "spark.driver.memory": self.memory}
        started = time.perf_counter()
        server = spark_server.start(free_port(), folder=self.folder, conf=self.conf, warm=False)
        listening = time.perf_counter()
        try:
            spark_server.warm_up(server.url)
        except Exception:
            server.stop()
            raise
        self.listen_seconds, self.warm_seconds = listening - started, time.perf_counter() - listening
        self.server = server
        self.starts += 1
        os.environ["AIRFLOW_CONN_SPARK_CONNECT_DEFAULT"] = server.connection()
        os.environ["SPARK_REMOTE"] = server.url
        print(f"\n{self.describe()}", flush=True)
        return self

    def describe(self) -> str:
        again = f" (start number {self.starts}: the previous one died)" if self.starts > 1 else ""
        return (
            f"Spark Connect server for the benchmark at {self.server.url}{again}: "
            f"{self.conf.get('spark.master')}, driver memory {self.memory} (BENCH_SPARK_MEMORY), "
            f"log {self.server.log}\n"
            f"  started in {self.start_seconds:.1f} s: JVM listening after {self.listen_seconds:.1f} s, "
            f"Delta warm-up {self.warm_seconds:.1f} s (paid once per machine session, not per run)"
        )

    def post_mortem(self) -> str | None:
        """After a failed run: whether the server died, and an out-of-memory error in its log."""
        if self.server is None:
            return None
        said = []
        if not self.running():
            said.append("the Spark Connect server no longer answers")
        log = self.server.log
        if log is not None and log.exists():
            with open(log, "rb") as handle:
                handle.seek(max(0, log.stat().st_size - 2_000_000))
                tail = handle.read().decode(errors="replace")
            oom = [line.strip() for line in tail.splitlines() if any(m in line for m in OOM_MARKERS)]
            if oom:
                said.append(f"its log says: {oom[-1][:200]}")
        return "; ".join(said) or None

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        for name in ("AIRFLOW_CONN_SPARK_CONNECT_DEFAULT", "SPARK_REMOTE"):
            os.environ.pop(name, None)


class SparkTaskWatch:
    """While it lasts, each Spark task's ``execute_callable`` (the client session, the job, its
    stop) is timed, and a failure's exception kept. ``dag.test()`` runs tasks in this process, so
    the operator class is wrapped here; ``calls`` counts what it saw (0 means the tasks ran
    elsewhere, and these figures are missing)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}  # task id -> seconds in execute_callable (summed)
        self.errors: list[str] = []
        self.calls = 0
        self._patch = None

    def __enter__(self):
        from unittest import mock

        from lakehouse.compute import SparkConnectJobOperator

        original = SparkConnectJobOperator.execute_callable
        watch = self

        def execute_callable(operator):
            watch.calls += 1
            started = time.perf_counter()
            try:
                return original(operator)
            except BaseException as exc:
                watch.errors.append(" ".join(f"{type(exc).__name__}: {exc}".split()))
                raise
            finally:
                seconds = time.perf_counter() - started
                watch.seconds[operator.task_id] = watch.seconds.get(operator.task_id, 0.0) + seconds

        self._patch = mock.patch.object(SparkConnectJobOperator, "execute_callable", execute_callable)
        self._patch.start()
        return self

    def __exit__(self, *exc):
        self._patch.stop()
