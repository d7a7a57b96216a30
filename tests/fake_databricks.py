"""A stand-in for the Databricks Jobs and Clusters REST API on 127.0.0.1, started by the tests.

Databricks cannot run here, so this is the one faked part, and only its control plane: the calls
the provider's hook makes (``api/2.2/jobs/runs/submit``, ``runs/get``, ``runs/get-output``,
``runs/cancel``; ``api/2.1/clusters/create``, ``get``, ``list``, ``delete``), answered as the API
documents them, every request recorded as it arrived. A submitted run is executed for real: its
``spark_python_task`` is ``python <python_file> <parameters>`` in a subprocess, the workspace path
mapped to a local folder (as a bundle deployment would have put the files there), a Spark Connect
client of the test run's server (``SPARK_REMOTE``), as Databricks serverless compute runs it.
Cancelling a run terminates that process. Like Databricks, a second submission with an idempotency
token already used returns the first run instead of starting another.
"""

from __future__ import annotations

import http.server
import itertools
import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlparse

TOKEN_MAX = 64


@dataclass
class Request:
    method: str
    path: str  # e.g. /api/2.2/jobs/runs/submit
    body: dict
    auth: str


@dataclass
class Run:
    run_id: int
    task_run_id: int
    body: dict
    life_cycle_state: str = "PENDING"
    result_state: str | None = None
    state_message: str = ""
    error: str = ""
    error_trace: str = ""
    process: subprocess.Popen | None = None
    cancelled: bool = False
    log: list[str] = field(default_factory=list)


class _ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format, *args):
        pass

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        url = urlparse(self.path)
        # GET takes query parameters, or a JSON body as the hook's async client sends it
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}") if length else {}
        if method == "GET":
            body = {**{k: v[0] for k, v in parse_qs(url.query).items()}, **body}
        self.server.record(Request(method, url.path, body, self.headers.get("Authorization", "")))
        route = self.server.routes.get((method, url.path))
        try:
            if route is None:
                raise _ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} {url.path}'")
            self._reply(200, route(body))
        except _ApiError as exc:
            self._reply(exc.status, {"error_code": exc.code, "message": exc.message})

    def do_POST(self):
        self._handle("POST")

    def do_GET(self):
        self._handle("GET")


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, workspace: dict[str, Path], clusters: tuple[str, ...], env: dict[str, str]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.workspace = {prefix.rstrip("/"): Path(local) for prefix, local in workspace.items()}
        self.env = env
        self.requests: list[Request] = []
        self.runs: dict[int, Run] = {}
        self.task_runs: dict[int, Run] = {}
        self.tokens: dict[str, int] = {}
        self.clusters: dict[str, dict] = {c: {"cluster_id": c, "state": "RUNNING"} for c in clusters}
        self.lock = threading.Lock()
        self._ids = itertools.count(1001)
        self.routes = {
            ("POST", "/api/2.2/jobs/runs/submit"): self.submit,
            ("GET", "/api/2.2/jobs/runs/get"): self.get,
            ("GET", "/api/2.2/jobs/runs/get-output"): self.get_output,
            ("POST", "/api/2.2/jobs/runs/cancel"): self.cancel,
            ("POST", "/api/2.1/clusters/create"): self.cluster_create,
            ("GET", "/api/2.1/clusters/get"): self.cluster_get,
            ("GET", "/api/2.1/clusters/list"): self.cluster_list,
            ("POST", "/api/2.1/clusters/delete"): self.cluster_delete,
        }

    def record(self, request: Request) -> None:
        with self.lock:
            self.requests.append(request)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    # --- jobs ----------------------------------------------------------------------------

    def submit(self, body: dict) -> dict:
        token = body.get("idempotency_token")
        if token is not None and len(token) > TOKEN_MAX:
            raise _ApiError(400, "INVALID_PARAMETER_VALUE", f"idempotency_token longer than {TOKEN_MAX}")
        tasks = body.get("tasks")
        if not isinstance(tasks, list) or len(tasks) != 1:
            raise _ApiError(400, "INVALID_PARAMETER_VALUE", "this stand-in runs one task per submission")
        task = tasks[0]
        computes = [
            k
            for k in ("existing_cluster_id", "new_cluster", "job_cluster_key", "environment_key")
            if k in task
        ]
        if len(computes) != 1:
            raise _ApiError(
                400, "INVALID_PARAMETER_VALUE", f"a task needs exactly one compute, got {computes}"
            )
        if "environment_key" in task:
            keys = [e.get("environment_key") for e in body.get("environments") or []]
            if task["environment_key"] not in keys:
                raise _ApiError(
                    400, "INVALID_PARAMETER_VALUE", f"environment {task['environment_key']!r} not defined"
                )
        if "existing_cluster_id" in task and task["existing_cluster_id"] not in self.clusters:
            raise _ApiError(
                400, "INVALID_PARAMETER_VALUE", f"Cluster {task['existing_cluster_id']} does not exist"
            )
        if "spark_python_task" not in task:
            raise _ApiError(400, "INVALID_PARAMETER_VALUE", "this stand-in runs spark_python_task only")
        with self.lock:
            if token is not None and token in self.tokens:
                return {"run_id": self.tokens[token]}
            run = Run(run_id=next(self._ids), task_run_id=next(self._ids), body=body)
            self.runs[run.run_id] = run
            self.task_runs[run.task_run_id] = run
            if token is not None:
                self.tokens[token] = run.run_id
        threading.Thread(target=self._execute, args=(run,), daemon=True).start()
        return {"run_id": run.run_id}

    def _local_file(self, python_file: str) -> Path | None:
        for prefix, local in self.workspace.items():
            if python_file.startswith(prefix + "/"):
                return local / python_file[len(prefix) + 1 :]
        return None

    def _execute(self, run: Run) -> None:
        task = run.body["tasks"][0]
        cluster = task.get("existing_cluster_id")
        if cluster is not None and self.clusters[cluster]["state"] != "RUNNING":
            self._finish(
                run, "INTERNAL_ERROR", "FAILED", f"Cluster {cluster} is {self.clusters[cluster]['state']}"
            )
            return
        python_task = task["spark_python_task"]
        local = self._local_file(python_task["python_file"])
        if local is None or not local.is_file():
            self._finish(
                run,
                "INTERNAL_ERROR",
                "FAILED",
                f"File {python_task['python_file']} not found in the workspace",
            )
            return
        command = [sys.executable, str(local), *python_task.get("parameters", [])]
        with self.lock:
            if run.cancelled:
                return
            run.process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env
            )
            run.life_cycle_state = "RUNNING"
        _, stderr = run.process.communicate()
        with self.lock:
            if run.cancelled:
                return
        if run.process.returncode == 0:
            self._finish(run, "TERMINATED", "SUCCESS", "")
            return
        lines = [line for line in stderr.splitlines() if line.strip()]
        run.error = lines[-1] if lines else f"exit code {run.process.returncode}"
        run.error_trace = stderr[-4000:]
        self._finish(run, "TERMINATED", "FAILED", "Workload failed, see run output for details")

    def _finish(self, run: Run, life_cycle: str, result: str | None, message: str) -> None:
        with self.lock:
            run.life_cycle_state, run.result_state, run.state_message = life_cycle, result, message

    def _state(self, run: Run) -> dict:
        state = {"life_cycle_state": run.life_cycle_state, "state_message": run.state_message}
        if run.result_state:
            state["result_state"] = run.result_state
        return state

    def _run(self, body: dict, runs: dict[int, Run]) -> Run:
        try:
            run = runs.get(int(body.get("run_id", 0)))
        except ValueError:
            run = None
        if run is None:
            raise _ApiError(400, "INVALID_PARAMETER_VALUE", f"Run {body.get('run_id')} does not exist.")
        return run

    def page(self, run_id: int) -> str:
        return f"{self.url}/?o=1234567890#job/runs/{run_id}"

    def get(self, body: dict) -> dict:
        run = self._run(body, self.runs)
        with self.lock:
            task = run.body["tasks"][0]
            return {
                "run_id": run.run_id,
                "run_name": run.body.get("run_name"),
                "run_type": "SUBMIT_RUN",
                "run_page_url": self.page(run.run_id),
                "state": self._state(run),
                "tasks": [
                    {
                        "run_id": run.task_run_id,
                        "task_key": task["task_key"],
                        "state": self._state(run),
                        "run_page_url": self.page(run.task_run_id),
                    }
                ],
            }

    def get_output(self, body: dict) -> dict:
        if int(body.get("run_id", 0)) in self.runs:
            raise _ApiError(
                400,
                "INVALID_PARAMETER_VALUE",
                "Retrieving the output of runs with multiple tasks is not supported. "
                "Please retrieve the output of each individual task run instead.",
            )
        run = self._run(body, self.task_runs)
        output = {"metadata": {"run_id": run.task_run_id, "state": self._state(run)}}
        if run.error:
            output["error"], output["error_trace"] = run.error, run.error_trace
        return output

    def cancel(self, body: dict) -> dict:
        run = self._run(body, self.runs)
        with self.lock:
            if run.result_state is not None:
                return {}
            run.cancelled = True
            if run.process is not None and run.process.poll() is None:
                run.process.terminate()
            run.life_cycle_state, run.result_state = "TERMINATED", "CANCELED"
            run.state_message = "Run cancelled."
        return {}

    # --- clusters ------------------------------------------------------------------------

    def cluster_create(self, body: dict) -> dict:
        if not body.get("cluster_name"):
            raise _ApiError(400, "INVALID_PARAMETER_VALUE", "cluster_name is required")
        with self.lock:
            cluster_id = f"1130-{next(self._ids):06d}-fake"
            self.clusters[cluster_id] = {"cluster_id": cluster_id, "state": "PENDING", "spec": body, **body}
        return {"cluster_id": cluster_id}

    def cluster_get(self, body: dict) -> dict:
        with self.lock:
            cluster = self.clusters.get(body.get("cluster_id", ""))
            if cluster is None:
                raise _ApiError(
                    400, "INVALID_PARAMETER_VALUE", f"Cluster {body.get('cluster_id')} does not exist"
                )
            answer = {k: v for k, v in cluster.items() if k != "spec"}
            if cluster["state"] == "PENDING":  # it starts while asked about
                cluster["state"] = "RUNNING"
            return {**answer, "state_message": ""}

    def cluster_list(self, body: dict) -> dict:
        with self.lock:
            return {"clusters": [{k: v for k, v in c.items() if k != "spec"} for c in self.clusters.values()]}

    def cluster_delete(self, body: dict) -> dict:
        with self.lock:
            cluster = self.clusters.get(body.get("cluster_id", ""))
            if cluster is None:
                raise _ApiError(
                    400, "INVALID_PARAMETER_VALUE", f"Cluster {body.get('cluster_id')} does not exist"
                )
            cluster["state"] = "TERMINATED"
        return {}


class FakeDatabricks:
    """``with FakeDatabricks(workspace={"/Workspace/x/files": repo_root}) as api:``; ``api.connection()``
    is an ``AIRFLOW_CONN_*`` value for the provider's hook."""

    def __init__(
        self,
        workspace: dict[str, Path] | None = None,
        clusters: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ):
        self._server = _Server(workspace or {}, clusters, dict(env if env is not None else os.environ))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def requests(self) -> list[Request]:
        return list(self._server.requests)

    def calls(self, path_suffix: str) -> list[Request]:
        """The requests whose path ends with ``path_suffix`` (``runs/submit``, ``runs/cancel``...)."""
        return [r for r in self.requests if r.path.endswith("/" + path_suffix)]

    @property
    def submissions(self) -> list[dict]:
        return [r.body for r in self.calls("runs/submit")]

    @property
    def runs(self) -> dict[int, Run]:
        return self._server.runs

    @property
    def clusters(self) -> dict[str, dict]:
        return self._server.clusters

    @property
    def auth_headers(self) -> list[str]:
        return [r.auth for r in self.requests]

    def page(self, run_id: int) -> str:
        return self._server.page(run_id)

    def connection(self, token: str = "dapi-test-token") -> str:
        port = self._server.server_address[1]
        return json.dumps(
            {
                "conn_type": "databricks",
                "host": "127.0.0.1",
                "port": port,
                "schema": "http",
                "password": token,
            }
        )

    def __enter__(self) -> FakeDatabricks:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        for run in list(self._server.runs.values()):
            if run.process is not None and run.process.poll() is None:
                run.process.kill()
                run.process.wait()
        self._server.shutdown()
        self._server.server_close()
