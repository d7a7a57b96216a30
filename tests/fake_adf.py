"""A stand-in for Azure Data Factory's management endpoints (and its token endpoint), for tests.

Data Factory cannot run here. The provider's hook, operator and trigger are used unchanged: they
build the Azure SDK's ``DataFactoryManagementClient``, which calls ``https://management.azure.com``
with a token from ``https://login.microsoftonline.com``. Neither hook takes an endpoint from its
connection, so the SDK is pointed here the way a corporate network would: through an HTTPS proxy
(``HTTPS_PROXY``), which this server is. It answers ``CONNECT`` for those two hosts only, speaks TLS
to the client with a certificate for them signed by a throwaway test CA (trusted through
``REQUESTS_CA_BUNDLE`` and ``SSL_CERT_FILE``, certifi's roots plus that CA), and serves:

- ``GET  login.microsoftonline.com/<tenant>/v2.0/.well-known/openid-configuration`` (MSAL's discovery)
- ``POST login.microsoftonline.com/<tenant>/oauth2/v2.0/token`` (client credentials; checked)
- ``POST .../factories/<f>/pipelines/<p>/createRun``   -> ``{"runId": ...}``
- ``GET  .../factories/<f>/pipelineruns/<runId>``     -> the run: InProgress, then its outcome
- ``POST .../factories/<f>/pipelineruns/<runId>/cancel``

Every management request must carry a token this server issued, for the declared subscription,
resource group and factory. Each pipeline's outcome is configured (``Succeeded`` after N polls,
``Failed`` with a message, ``Cancelled``); on success it calls ``on_success(run)`` first, which
the tests use to do what the ADF copy pipeline does (land files in the lake). Every request is
recorded (the bearer token left out).
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import ssl
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from fake_tls import make_certificates, proxy_env, server_context

ARM = "management.azure.com"
LOGIN = "login.microsoftonline.com"
SCOPE = "https://management.azure.com/.default"


@dataclass
class Recorded:
    method: str
    host: str
    path: str
    query: dict[str, str]
    body: object


@dataclass
class Pipeline:
    outcome: str = "Succeeded"  # Succeeded, Failed or Cancelled; "InProgress" never ends
    polls: int = 1  # answers of InProgress before the outcome
    message: str = ""
    on_success: Callable[[dict], None] | None = None
    on_poll: Callable[[dict], None] | None = None


@dataclass
class Run:
    run_id: str
    pipeline: str
    parameters: dict
    started: dt.datetime
    status: str = "InProgress"
    message: str = ""
    gets: int = 0
    cancel_requested: bool = False
    ended: dt.datetime | None = None
    extra: dict = field(default_factory=dict)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    # -- the proxy: CONNECT to one of the two hosts, then TLS with the test certificate
    def do_CONNECT(self):
        host, _, port = self.path.partition(":")
        if host not in (ARM, LOGIN) or port != "443":
            self.server.refused.append(self.path)
            self._reply(403, {"error": f"this test proxy only serves {ARM} and {LOGIN}"})
            self.close_connection = True
            return
        self.send_response(200, "Connection Established")
        self.end_headers()
        self.wfile.flush()
        self.connection = self.server.tls.wrap_socket(self.connection, server_side=True)
        self.rfile = self.connection.makefile("rb", -1)
        self.wfile = self.connection.makefile("wb", 0)
        self.tunnel_host = host
        self.close_connection = False

    def finish(self):
        try:
            super().finish()
        finally:
            if isinstance(self.connection, ssl.SSLSocket):
                self.connection.close()

    def _reply(self, status: int, body: dict | None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _request(self, method: str):
        host = getattr(self, "tunnel_host", None)
        if host is None:  # a plain request to the proxy itself
            self._reply(400, {"error": "send requests through CONNECT"})
            return
        url = urlparse(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        ctype = self.headers.get("Content-Type", "")
        if not raw:
            body = None
        elif "json" in ctype:
            body = json.loads(raw)
        else:
            body = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if host == LOGIN:
            redacted = {k: ("<redacted>" if k == "client_secret" else v) for k, v in (body or {}).items()}
            self.server.record(Recorded(method, host, url.path, query, redacted or None))
            self._reply(*self.server.login(method, url.path, body or {}))
        else:
            self.server.record(Recorded(method, host, url.path, query, body))
            auth = self.headers.get("Authorization", "")
            if auth.removeprefix("Bearer ") not in self.server.tokens:
                self._reply(401, {"error": {"code": "InvalidAuthenticationToken", "message": "bad token"}})
                return
            self._reply(*self.server.management(method, unquote(url.path), query, body))

    def do_GET(self):
        self._request("GET")

    def do_POST(self):
        self._request("POST")


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeDataFactory, tls: ssl.SSLContext):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake
        self.tls = tls
        self.tokens: set[str] = set()
        self.refused: list[str] = []
        self.lock = threading.Lock()

    def record(self, item: Recorded) -> None:
        with self.lock:
            self.fake.requests.append(item)

    def login(self, method: str, path: str, form: dict) -> tuple[int, dict]:
        fake = self.fake
        base = f"https://{LOGIN}/{fake.tenant}"
        if method == "GET" and path == f"/{fake.tenant}/v2.0/.well-known/openid-configuration":
            return 200, {
                "issuer": f"{base}/v2.0",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "tenant_region_scope": "EU",
            }
        if method == "POST" and path == f"/{fake.tenant}/oauth2/v2.0/token":
            if (
                form.get("grant_type") != "client_credentials"
                or form.get("client_id") != fake.client_id
                or form.get("client_secret") != fake.client_secret
                or form.get("scope") != SCOPE
            ):
                return 401, {"error": "invalid_client", "error_description": "AADSTS7000215: bad client"}
            token = f"fake-arm-token-{uuid.uuid4().hex}"
            with self.lock:
                self.tokens.add(token)
            return 200, {
                "token_type": "Bearer",
                "expires_in": 3599,
                "ext_expires_in": 3599,
                "access_token": token,
            }
        return 404, {"error": "not_found", "error_description": path}

    def management(self, method: str, path: str, query: dict, body) -> tuple[int, dict | None]:
        fake = self.fake
        prefix = (
            f"/subscriptions/{fake.subscription}/resourceGroups/{fake.resource_group}"
            f"/providers/Microsoft.DataFactory/factories/{fake.factory}/"
        )
        if query.get("api-version") != "2018-06-01":
            return 400, {"error": {"code": "InvalidApiVersion", "message": str(query.get("api-version"))}}
        if not path.startswith(prefix):
            return 404, {"error": {"code": "ResourceNotFound", "message": f"no factory at {path}"}}
        parts = path[len(prefix) :].split("/")
        if method == "POST" and len(parts) == 3 and parts[0] == "pipelines" and parts[2] == "createRun":
            return fake._create_run(parts[1], body or {})
        if len(parts) >= 2 and parts[0] == "pipelineruns":
            run = fake.runs.get(parts[1])
            if run is None:
                return 404, {"error": {"code": "PipelineRunNotFound", "message": f"no run {parts[1]}"}}
            if method == "GET" and len(parts) == 2:
                return 200, fake._poll(run, prefix)
            if method == "POST" and parts[2:] == ["cancel"]:
                fake._cancel(run)
                return 200, None
        return 404, {"error": {"code": "NotFound", "message": f"{method} {path}"}}


class FakeDataFactory:
    """The fake factory and its proxy; use as a context manager."""

    def __init__(
        self,
        folder: Path,
        *,
        subscription: str = "00000000-1111-2222-3333-444444444444",
        tenant: str = "55555555-6666-7777-8888-999999999999",
        resource_group: str = "rg-lakehouse",
        factory: str = "adf-lakehouse",
        client_id: str = "airflow-sp",
        client_secret: str = "test-only-secret",
    ):
        self.folder = folder
        self.subscription, self.tenant = subscription, tenant
        self.resource_group, self.factory = resource_group, factory
        self.client_id, self.client_secret = client_id, client_secret
        self.pipelines: dict[str, Pipeline] = {}
        self.runs: dict[str, Run] = {}
        self.requests: list[Recorded] = []
        self.certs = make_certificates(folder, [ARM, LOGIN])
        self._server = _Server(self, server_context(self.certs))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- configuration
    def pipeline(self, name: str, **outcome) -> Pipeline:
        self.pipelines[name] = Pipeline(**outcome)
        return self.pipelines[name]

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def env(self) -> dict[str, str]:
        """What points the Azure SDK here: the proxy, and the CA bundle that trusts its certificate.

        Local addresses bypass the proxy (Spark Connect's gRPC channel and local HTTP sources)."""
        return proxy_env(self.proxy_url, self.certs)

    def connection(self, **extra) -> str:
        """An ``azure_data_factory`` connection (service principal) for this factory, as JSON."""
        return json.dumps(
            {
                "conn_type": "azure_data_factory",
                "login": self.client_id,
                "password": self.client_secret,
                "extra": {
                    "tenantId": self.tenant,
                    "subscriptionId": self.subscription,
                    "resource_group_name": self.resource_group,
                    "factory_name": self.factory,
                    **extra,
                },
            }
        )

    def calls(self, method: str | None = None, suffix: str = "", host: str = ARM) -> list[Recorded]:
        return [
            r
            for r in list(self.requests)
            if r.host == host and (method is None or r.method == method) and r.path.endswith(suffix)
        ]

    # -- behaviour
    def _create_run(self, name: str, parameters: dict) -> tuple[int, dict]:
        if name not in self.pipelines:
            return 404, {
                "error": {
                    "code": "PipelineNotFound",
                    "message": f"Pipeline '{name}' not found in {self.factory}",
                }
            }
        run = Run(str(uuid.uuid4()), name, parameters, dt.datetime.now(dt.UTC))
        self.runs[run.run_id] = run
        return 200, {"runId": run.run_id}

    def _poll(self, run: Run, prefix: str) -> dict:
        spec = self.pipelines[run.pipeline]
        run.gets += 1
        if spec.on_poll is not None:
            spec.on_poll(self._view(run, prefix))
        if run.status == "Canceling":
            self._end(run, "Cancelled", "Pipeline run was cancelled by the user.")
        elif run.status == "InProgress" and run.cancel_requested:
            run.status = "Canceling"
        elif run.status == "InProgress" and run.gets > spec.polls and spec.outcome != "InProgress":
            if spec.outcome == "Succeeded" and spec.on_success is not None:
                try:
                    spec.on_success(self._view(run, prefix))
                except Exception as exc:  # the copy failed: ADF reports it as the run's message
                    self._end(run, "Failed", f"Operation on target copy failed: {exc}")
                    return self._view(run, prefix)
            self._end(run, spec.outcome, spec.message)
        return self._view(run, prefix)

    def _cancel(self, run: Run) -> None:
        run.cancel_requested = True

    def _end(self, run: Run, status: str, message: str) -> None:
        run.status, run.message, run.ended = status, message, dt.datetime.now(dt.UTC)

    def _view(self, run: Run, prefix: str) -> dict:
        ended = run.ended
        return {
            "id": f"{prefix}pipelineruns/{run.run_id}",
            "runId": run.run_id,
            "runGroupId": run.run_id,
            "isLatest": True,
            "pipelineName": run.pipeline,
            "parameters": run.parameters,
            "invokedBy": {"name": "Manual", "id": uuid.uuid4().hex, "invokedByType": "Manual"},
            "runStart": run.started.isoformat(),
            "runEnd": ended.isoformat() if ended else None,
            "durationInMs": int((ended - run.started).total_seconds() * 1000) if ended else None,
            "lastUpdated": dt.datetime.now(dt.UTC).isoformat(),
            "status": run.status,
            "message": run.message,
            "annotations": [],
            "runDimension": {},
        }

    # -- lifecycle
    def __enter__(self) -> FakeDataFactory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
