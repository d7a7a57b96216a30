"""A stand-in for the Databricks Jobs REST API on 127.0.0.1, for the compute switch tests.

Databricks cannot run here, so this is the one faked part. It answers the calls that
``DatabricksSubmitRunOperator`` makes (runs/submit, runs/get, runs/get-output) and, like a
real cluster, actually runs the submitted ``spark_python_task``: ``python <python_file> <parameters>``
as a Spark Connect client of the test run's server (``SPARK_REMOTE``), as Databricks serverless
compute runs it.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlparse

BIN = Path(sys.executable).parent


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

    def do_POST(self):
        url = urlparse(self.path)
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if url.path != "/api/2.2/jobs/runs/submit":
            self._reply(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": url.path})
            return
        self.server.auth_headers.append(self.headers.get("Authorization", ""))
        self._reply(200, {"run_id": self.server.submit(body)})

    def do_GET(self):
        url = urlparse(self.path)
        run = self.server.runs.get(int(parse_qs(url.query).get("run_id", ["0"])[0]))
        if run is None:
            self._reply(404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such run"})
        elif url.path == "/api/2.2/jobs/runs/get":
            self._reply(200, run["info"])
        elif url.path == "/api/2.2/jobs/runs/get-output":
            self._reply(200, {"error": run.get("error", ""), "metadata": run["info"]})
        else:
            self._reply(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": url.path})


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.runs: dict[int, dict] = {}
        self.submissions: list[dict] = []
        self.auth_headers: list[str] = []
        self._lock = threading.Lock()

    def submit(self, body: dict) -> int:
        with self._lock:
            run_id = len(self.runs) + 1
            self.submissions.append(body)
            info = {
                "run_id": run_id,
                "run_name": body.get("run_name"),
                "run_page_url": f"http://127.0.0.1:{self.server_address[1]}/#job/runs/{run_id}",
                "state": {"life_cycle_state": "RUNNING", "state_message": "running"},
                "tasks": [{"run_id": run_id, "task_key": body.get("run_name", "task")}],
            }
            self.runs[run_id] = {"info": info}
        threading.Thread(target=self._execute, args=(run_id, body), daemon=True).start()
        return run_id

    def _execute(self, run_id: int, body: dict) -> None:
        task = body["spark_python_task"]
        command = [sys.executable, task["python_file"], *task["parameters"]]
        done = subprocess.run(command, capture_output=True, text=True, check=False, env=os.environ.copy())
        run = self.runs[run_id]
        if done.returncode == 0:
            run["info"]["state"] = {
                "life_cycle_state": "TERMINATED",
                "result_state": "SUCCESS",
                "state_message": "",
            }
        else:
            run["error"] = done.stdout[-2000:] + done.stderr[-2000:]
            run["info"]["state"] = {
                "life_cycle_state": "TERMINATED",
                "result_state": "FAILED",
                "state_message": "spark_python_task failed",
            }


class FakeDatabricks:
    """``with FakeDatabricks() as api: api.connection()`` is an ``AIRFLOW_CONN_*`` value."""

    def __init__(self):
        self._server = _Server()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def submissions(self) -> list[dict]:
        return self._server.submissions

    @property
    def auth_headers(self) -> list[str]:
        return self._server.auth_headers

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
        self._server.shutdown()
        self._server.server_close()
