"""A local Spark Connect server with Delta Lake: the laptop's stand-in for Databricks compute.

One server runs for many jobs, as a Databricks cluster or serverless compute does, so a Spark task
costs its work and a client connection (well under a second), not a JVM start. ``make demo``,
``make airflow`` and the test session start it (or reuse one that answers on the port); in
docker-compose it is the ``spark-connect`` service (``python -m lakehouse.spark_server run``).

It is pyspark's own server (``SparkConnectServer``, shipped in the pyspark wheel) with the JVM
packages ``make venv`` fetched into ``.venv/spark-jars`` (delta-spark and hadoop-azure, pinned in
``include/spark/pom.xml``), Delta's SQL extension and catalog, and deletion vectors on for new
tables, as on Databricks. ``SPARK_SERVER_CONF`` (JSON of ``spark.*`` settings) adds or overrides
settings, e.g. ``{"spark.driver.memory": "8g"}`` for bigger data.

    python -m lakehouse.spark_server start [--port 15002]   # detached; waits until it answers
    python -m lakehouse.spark_server stop  [--port 15002]
    python -m lakehouse.spark_server status [--port 15002]
    python -m lakehouse.spark_server run   [--port 15002]   # in the foreground (containers)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from lakehouse import settings
from lakehouse.ports import listening

DEFAULT_PORT = 15002
SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
DEFAULTS = {
    "spark.master": "local[2]",
    "spark.ui.enabled": "false",
    "spark.log.level": "WARN",
    "spark.sql.shuffle.partitions": "4",
    "spark.sql.session.timeZone": "UTC",
    # A long-lived server holds Delta snapshots and cached query plans: with a 2g heap its old
    # generation stayed past G1's marking threshold, and concurrent marking cycles ran all along
    # (measured on the Spotify jobs' tests: 32-46 s of marking threads' CPU in four of five 2g
    # runs, none at 4g or 6g). The heap grows only as far as it is used (2.4 GB committed there).
    "spark.driver.memory": "4g",
    # Delta replays a table's log in this many tasks (default 50): enough for local[2]
    "spark.databricks.delta.snapshotPartitions": "2",
    # Keep the code Spark generates for each query shape (default 100 entries): one long-lived
    # server compiles the jobs' many small queries (and Delta's own) once instead of over and over.
    "spark.sql.codegen.cache.maxEntries": "5000",
    # Room for the JIT's code (default 240 MB): Spark, Delta and the generated classes of a
    # long-lived server filled the profiled half of the default within one test session, and the JIT
    # then evicts and recompiles (measured: about 10% less server CPU for the same jobs).
    "spark.driver.extraJavaOptions": "-XX:ReservedCodeCacheSize=512m",
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    # Databricks creates Delta tables with deletion vectors on; so does this server, so that the
    # jobs meet them here first.
    "spark.databricks.delta.properties.defaults.enableDeletionVectors": "true",
    # jobs of several clients (parallel tasks, test workers) share the cores fairly
    "spark.scheduler.mode": "FAIR",
    "spark.connect.grpc.binding.address": "127.0.0.1",
}
REQUIRED_JARS = ("delta-spark_", "delta-storage-", "hadoop-azure-")


class SparkServerError(RuntimeError):
    """The server could not be started; the message says why and where its log is."""


@dataclass(frozen=True)
class SparkServer:
    host: str
    port: int
    pid: int | None  # None: it was running already (not ours to stop)
    log: Path | None

    @property
    def url(self) -> str:
        return f"sc://{self.host}:{self.port}"

    def connection(self) -> str:
        """The server as an Airflow connection (``AIRFLOW_CONN_<ID>`` JSON, type spark_connect)."""
        return json.dumps({"conn_type": "spark_connect", "host": f"sc://{self.host}", "port": self.port})

    def stop(self) -> None:
        if self.pid is not None:
            _terminate(self.pid)


def server_conf() -> dict[str, str]:
    """The defaults, updated by ``SPARK_SERVER_CONF`` (a JSON object of ``spark.*`` settings)."""
    raw = os.environ.get("SPARK_SERVER_CONF", "").strip() or "{}"
    try:
        extra = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"SPARK_SERVER_CONF is not valid JSON: {exc}") from exc
    if not isinstance(extra, dict) or not all(
        isinstance(k, str) and k.startswith("spark.") and isinstance(v, str | int | float | bool)
        for k, v in extra.items()
    ):
        raise ValueError(f"SPARK_SERVER_CONF must map spark.* settings to values, not {raw!r}")
    return {**DEFAULTS, **{k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in extra.items()}}


def jars() -> list[Path]:
    """The JVM packages to load: every jar in ``SPARK_JARS_DIR`` (``.venv/spark-jars``)."""
    folder = settings.spark_jars_dir()
    found = sorted(folder.glob("*.jar"))
    missing = [prefix for prefix in REQUIRED_JARS if not any(j.name.startswith(prefix) for j in found)]
    if missing:
        raise SparkServerError(
            f"{folder} lacks the JVM packages {missing}: run `make venv` (Maven fetches them, see "
            "include/spark/pom.xml) or set SPARK_JARS_DIR"
        )
    return found


def spark_submit() -> str:
    import pyspark

    local = Path(sys.executable).parent / "spark-submit"
    return str(local if local.exists() else Path(pyspark.__file__).parent / "bin" / "spark-submit")


def command(port: int, conf: dict[str, str] | None = None) -> list[str]:
    conf = {**(conf or server_conf()), "spark.connect.grpc.binding.port": str(port)}
    args = [spark_submit(), "--class", SERVER_CLASS, "--name", f"spark-connect-{port}"]
    args += ["--jars", ",".join(str(j) for j in jars())]
    for key, value in sorted(conf.items()):
        args += ["--conf", f"{key}={value}"]
    return [*args, "spark-internal"]


def environment() -> dict[str, str]:
    """The server's environment: this Python for its Python workers, the repository importable."""
    env = dict(os.environ)
    env.pop("SPARK_REMOTE", None)  # the server itself is not a client
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    path = [str(settings.REPO_ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in path if p)
    return env


def state_dir() -> Path:
    return Path(os.environ.get("SPARK_SERVER_DIR", "").strip() or settings.REPO_ROOT / ".spark")


def start(
    port: int = DEFAULT_PORT,
    *,
    host: str = "127.0.0.1",
    folder: Path | None = None,
    conf: dict[str, str] | None = None,
    timeout: float = 180,
    warm: bool = True,
) -> SparkServer:
    """Start a server on ``port`` (detached, in its own process group), or reuse the one there.

    Waits until it answers; with ``warm``, runs a small Delta write, merge and change-feed read
    first, so that the first real job does not pay for loading Delta's classes.
    """
    if listening(host, port):
        return SparkServer(host, port, pid=None, log=None)
    folder = folder or state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"spark-connect-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            command(port, conf),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=environment(),
            start_new_session=True,
            cwd=folder,
        )
    (folder / f"spark-connect-{port}.pid").write_text(str(proc.pid))
    server = SparkServer(host, port, pid=proc.pid, log=log)
    deadline = time.monotonic() + timeout
    while not listening(host, port):
        if proc.poll() is not None:
            raise SparkServerError(f"the Spark Connect server exited ({proc.returncode}): {_tail(log)}")
        if time.monotonic() > deadline:
            server.stop()
            raise SparkServerError(
                f"the Spark Connect server did not listen within {timeout:.0f} s: {_tail(log)}"
            )
        time.sleep(0.5)
    if warm:
        try:
            warm_up(server.url)
        except Exception:
            server.stop()
            raise
    return server


def warm_up(url: str) -> None:
    """A Delta table written, merged and read back through the change data feed, then deleted."""
    import shutil

    from pyspark.sql import SparkSession

    spark = SparkSession.builder.remote(url).getOrCreate()
    folder = tempfile.mkdtemp(prefix="spark-warm-up-")
    try:
        path = f"{folder}/t"
        spark.range(3).selectExpr("id", "'a' AS v").write.format("delta").option(
            "delta.enableChangeDataFeed", "true"
        ).save(path)
        spark.range(2, 5).selectExpr("id", "'b' AS v").createOrReplaceTempView("warm_up")
        spark.sql(
            f"MERGE INTO delta.`{path}` t USING warm_up s ON t.id = s.id "
            "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
        ).collect()
        spark.sql(f"DESCRIBE HISTORY delta.`{path}` LIMIT 1").collect()
        spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", 1).load(
            path
        ).collect()
    finally:
        spark.stop()
        shutil.rmtree(folder, ignore_errors=True)


def stop(port: int = DEFAULT_PORT, folder: Path | None = None) -> bool:
    """Stop the server this launcher started on ``port``; False when there was none."""
    pid_file = (folder or state_dir()) / f"spark-connect-{port}.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().strip())
    pid_file.unlink()
    return _terminate(pid)


def _terminate(pid: int, grace: float = 20) -> bool:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    return True


def _tail(log: Path, lines: int = 15) -> str:
    text = log.read_text(errors="replace").splitlines() if log.exists() else []
    return f"last lines of {log}:\n" + "\n".join(text[-lines:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lakehouse.spark_server", description=__doc__.split("\n")[0]
    )
    parser.add_argument("action", choices=["start", "stop", "status", "run"])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--host", default="127.0.0.1", help="where clients reach it (start, status)")
    args = parser.parse_args(argv)
    if args.action == "run":  # in the foreground, replacing this process (a container's command)
        cmd = command(args.port)
        os.execvpe(cmd[0], cmd, environment())
    if args.action == "status":
        up = listening(args.host, args.port)
        print(f"Spark Connect server sc://{args.host}:{args.port}: {'running' if up else 'not running'}")
        return 0 if up else 1
    if args.action == "stop":
        print("stopped" if stop(args.port) else f"no server started here on port {args.port}")
        return 0
    started = time.monotonic()
    server = start(args.port, host=args.host)
    if server.pid is None:
        print(f"Spark Connect server already running at {server.url}")
    else:
        seconds = time.monotonic() - started
        print(f"Spark Connect server started at {server.url} in {seconds:.0f} s (log: {server.log})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
