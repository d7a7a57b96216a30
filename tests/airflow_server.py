"""A real Airflow for tests that need the scheduler: ``airflow standalone`` in its own home.

It runs the scheduler (LocalExecutor), the DAG processor, the triggerer and the API server, with
its own metadata DB and the environment the test gives it, on a free port of 127.0.0.1. The metadata
DB is a new database on the test run's PostgreSQL server (``LAKEHOUSE_TEST_PG``, else
127.0.0.1:5432; dropped at stop), as in a real deployment; where that server is not reachable,
SQLite in the server's home (where a CLI command racing the scheduler can meet "database is
locked", so commands are retried).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from postgres import address

from lakehouse.ports import free_port

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]


def _pg() -> dict:
    """The test run's PostgreSQL server, as psycopg2 keywords."""
    host, port = address()
    return {"host": host, "port": port, "user": "postgres"}


def _postgres_database() -> str | None:
    """A new, empty database on the local PostgreSQL server, or None if it is not reachable."""
    try:
        import psycopg2
        from psycopg2 import sql
    except ImportError:
        return None
    name = f"airflow_{os.getpid()}_{int(time.time() * 1000) % 10**9}"
    try:
        conn = psycopg2.connect(dbname="postgres", connect_timeout=3, **_pg())
    except psycopg2.OperationalError:
        return None
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    conn.close()
    return name


def _drop_postgres_database(name: str) -> None:
    import psycopg2
    from psycopg2 import sql

    conn = psycopg2.connect(dbname="postgres", connect_timeout=3, **_pg())
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    conn.close()


class AirflowServer:
    def __init__(self, home: Path, env: dict[str, str]):
        self.home = home
        self.port = free_port()
        self.env = {
            **os.environ,
            **env,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
            # Log servers on free ports too: two servers may run at once (pytest -n 2).
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "PYTHONPATH": str(ROOT / "plugins"),
        }
        self.process: subprocess.Popen | None = None
        self._access_token: str | None = None
        self.database = _postgres_database()
        if self.database:
            pg = _pg()
            self.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = (
                f"postgresql+psycopg2://{pg['user']}@{pg['host']}:{pg['port']}/{self.database}"
            )

    def cli(self, *args: str, check: bool = True) -> str:
        for attempt in range(5):
            done = subprocess.run(
                [str(BIN / "airflow"), *args], env=self.env, capture_output=True, text=True, check=False
            )
            if done.returncode == 0 or "database is locked" not in done.stderr:
                break
            time.sleep(2 * (attempt + 1))  # SQLite only: the scheduler held the write lock
        if check and done.returncode != 0:
            raise RuntimeError(
                f"airflow {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
            )
        return done.stdout

    def start(self, timeout: float = 120) -> None:
        self.home.mkdir(parents=True, exist_ok=True)  # standalone creates the metadata DB's tables
        log = open(self.home / "standalone.log", "w")  # noqa: SIM115 (kept open for the process)
        self.process = subprocess.Popen(
            [str(BIN / "airflow"), "standalone"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port}/api/v2/monitor/health"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"airflow standalone exited: {self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    health = json.load(response)
                if all(
                    health.get(part, {}).get("status") == "healthy" for part in ("scheduler", "dag_processor")
                ):
                    return
            except OSError:
                pass
            time.sleep(2)
        raise RuntimeError(f"airflow standalone not healthy after {timeout} s: {self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        path = self.home / "standalone.log"
        return path.read_text()[-chars:] if path.exists() else ""

    # -- the REST API, as the UI and a user's scripts reach it ---------------------------------
    # Polling through the CLI cost about 3 s of CPU per call (each one imports Airflow), taken from
    # the scheduler's tasks on a two-core machine; a REST call costs the API server milliseconds.
    def _token(self) -> str:
        """A JWT for the standalone's admin, logged in with the password it generated."""
        if self._access_token is None:
            passwords = json.loads((self.home / "simple_auth_manager_passwords.json.generated").read_text())
            body = json.dumps({"username": "admin", "password": passwords["admin"]}).encode()
            request = urllib.request.Request(
                f"http://127.0.0.1:{self.port}/auth/token",
                data=body,
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=60) as response:
                self._access_token = json.load(response)["access_token"]
        return self._access_token

    def api(self, method: str, path: str, body: dict | None = None):
        """``method /api/v2/<path>`` as the admin; the decoded JSON answer."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/v2/{path}",
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self._token()}", "Content-Type": "application/json"},
            method=method,
        )
        # A GET is safe to repeat: on a loaded two-core machine the API server, which also serves
        # the running tasks' execution API, has been seen to take over 30 s to answer one poll, and
        # once to close a poll's connection unanswered (RemoteDisconnected) while its worker was
        # replaced. An HTTPError is an answer: never retried.
        attempts = 4 if method == "GET" else 1
        for attempt in range(attempts):
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    return json.load(response)
            except urllib.error.HTTPError:
                raise
            except (TimeoutError, ConnectionError, urllib.error.URLError) as exc:
                # a URLError wraps the socket's timeout or a refused connection
                lost = isinstance(getattr(exc, "reason", exc), TimeoutError | ConnectionError)
                if not lost or attempt == attempts - 1:
                    raise
                time.sleep(2)
        raise AssertionError("unreachable")

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.api("GET", f"dags/{dag_id}")
                return
            except urllib.error.HTTPError as exc:
                if exc.code != 404:
                    raise
            time.sleep(1)
        raise RuntimeError(f"DAG {dag_id} was not parsed within {timeout} s: {self.log_tail()}")

    def unpause(self, dag_id: str) -> None:
        """What the UI's pause toggle does."""
        answer = self.api("PATCH", f"dags/{dag_id}", {"is_paused": False})
        assert answer["is_paused"] is False, answer

    def runs(self, dag_id: str) -> list[dict]:
        """The DAG's runs, with the keys ``airflow dags list-runs -o json`` prints."""
        answer = self.api("GET", f"dags/{dag_id}/dagRuns?limit=100&order_by=logical_date")
        keys = ("dag_id", "state", "logical_date", "start_date", "end_date", "run_type")
        return [{"run_id": r["dag_run_id"], **{k: r.get(k) for k in keys}} for r in answer["dag_runs"]]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        """task_id, or task_id[map_index], -> state, for one run."""
        answer = self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=1000")
        return {
            t["task_id"] + (f"[{t['map_index']}]" if t["map_index"] >= 0 else ""): t["state"]
            for t in answer["task_instances"]
        }

    def wait_for_runs(self, dag_id: str, finished, timeout: float) -> list[dict]:
        """Poll the runs of ``dag_id`` until ``finished(runs)`` is true."""
        deadline = time.monotonic() + timeout
        runs: list[dict] = []
        while time.monotonic() < deadline:
            runs = self.runs(dag_id)
            if finished(runs):
                return runs
            time.sleep(2)
        raise RuntimeError(f"{dag_id}: {runs} after {timeout} s\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        if self.database:
            _drop_postgres_database(self.database)
            self.database = None
