"""A stand-in for the Power BI REST API's dataset refresh endpoints (and the Entra token endpoint).

The Azure provider's ``PowerBIDatasetRefreshOperator``, its trigger and hook run unchanged: the hook
(a Kiota/httpx client) calls ``https://api.powerbi.com/v1.0/myorg/...`` with a token that
azure-identity gets from ``https://login.microsoftonline.com``. This server is the HTTPS proxy they
reach those hosts through (``HTTPS_PROXY``, as a corporate network sets it; the connection's
``trust_env`` extra lets the hook's httpx client read it), answering ``CONNECT`` for those two
hosts only and speaking TLS with a certificate for them signed by a throwaway test CA
(``tests/fake_tls.py``; trusted through the connection's ``verify`` extra, a CA bundle of certifi's
roots plus the test CA). It serves:

- ``GET  login.microsoftonline.com/<tenant>/v2.0/.well-known/openid-configuration``
- ``POST login.microsoftonline.com/<tenant>/oauth2/v2.0/token`` (client credentials, Power BI's scope)
- ``POST api.powerbi.com/v1.0/myorg/groups/<group>/datasets/<dataset>/refreshes`` -> 202, header
  ``RequestId``
- ``GET  .../refreshes`` -> the refresh history: ``Unknown`` (in progress) for the configured number
  of polls, then ``Completed`` or ``Failed`` with ``serviceExceptionJson``
- ``DELETE .../refreshes/<id>`` (cancel)

Every API request must carry a token this server issued; unknown workspaces or datasets get
Power BI's 404. Every request is recorded, the client secret and bearer tokens left out.
"""

from __future__ import annotations

import http.server
import json
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from fake_tls import make_certificates, proxy_env, server_context

API = "api.powerbi.com"
LOGIN = "login.microsoftonline.com"
SCOPE = "https://analysis.windows.net/powerbi/api/.default"


@dataclass
class Recorded:
    method: str
    host: str
    path: str
    body: object
    authorized: bool = False


@dataclass
class Dataset:
    outcome: str = "Completed"  # or "Failed"
    polls: int = 1  # history answers of "Unknown" before the outcome
    error: dict | None = None  # serviceExceptionJson of a failed refresh


@dataclass
class Refresh:
    request_id: str
    group: str
    dataset: str
    body: object
    gets: int = 0
    status: str = "Unknown"
    cancelled: bool = False
    extra: dict = field(default_factory=dict)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def do_CONNECT(self):
        host, _, port = self.path.partition(":")
        if host not in (API, LOGIN) or port != "443":
            self.server.fake.refused.append(self.path)
            self._reply(403, {"error": f"this test proxy only serves {API} and {LOGIN}"})
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

    def _reply(self, status: int, body, headers: dict | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _request(self, method: str):
        host = getattr(self, "tunnel_host", None)
        if host is None:
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
        fake = self.server.fake
        if host == LOGIN:
            shown = {k: ("<redacted>" if k == "client_secret" else v) for k, v in (body or {}).items()}
            fake._record(Recorded(method, host, url.path, shown or None))
            self._reply(*fake._login(method, url.path, body or {}))
            return
        token = self.headers.get("Authorization", "").removeprefix("Bearer ")
        authorized = token in fake.tokens
        fake._record(Recorded(method, host, unquote(url.path), body, authorized))
        if not authorized:
            self._reply(403, {"error": {"code": "TokenExpired", "message": "no valid token"}})
            return
        self._reply(*fake._api(method, unquote(url.path), body))

    def do_GET(self):
        self._request("GET")

    def do_POST(self):
        self._request("POST")

    def do_DELETE(self):
        self._request("DELETE")


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakePowerBI, tls: ssl.SSLContext):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake
        self.tls = tls


class FakePowerBI:
    """The fake Power BI service and its proxy; use as a context manager."""

    def __init__(
        self,
        folder: Path,
        *,
        tenant: str = "55555555-6666-7777-8888-999999999999",
        client_id: str = "powerbi-sp",
        client_secret: str = "test-only-secret",
        group: str = "11111111-2222-3333-4444-555555555555",
    ):
        self.tenant, self.client_id, self.client_secret, self.group = tenant, client_id, client_secret, group
        self.datasets: dict[str, Dataset] = {}
        self.refreshes: dict[str, Refresh] = {}
        self.requests: list[Recorded] = []
        self.refused: list[str] = []
        self.tokens: set[str] = set()
        self.lock = threading.Lock()
        self.certs = make_certificates(folder, [API, LOGIN])
        self._server = _Server(self, server_context(self.certs))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- configuration
    def dataset(self, dataset_id: str, **outcome) -> Dataset:
        self.datasets[dataset_id] = Dataset(**outcome)
        return self.datasets[dataset_id]

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def env(self) -> dict[str, str]:
        """The proxy and CA bundle environment (``fake_tls.proxy_env``)."""
        return proxy_env(self.proxy_url, self.certs)

    def connection(self, **extra) -> str:
        """A ``powerbi`` connection (service principal) for this fake, as JSON: ``trust_env`` (use the
        environment's proxy) and ``verify`` (the CA bundle that trusts the fake's certificate)."""
        return json.dumps(
            {
                "conn_type": "powerbi",
                "login": self.client_id,
                "password": self.client_secret,
                "extra": {
                    "tenant_id": self.tenant,
                    "trust_env": True,
                    "verify": str(self.certs["bundle"]),
                    **extra,
                },
            }
        )

    def calls(self, method: str | None = None, suffix: str = "", host: str = API) -> list[Recorded]:
        return [
            r
            for r in list(self.requests)
            if r.host == host and (method is None or r.method == method) and r.path.endswith(suffix)
        ]

    def __enter__(self) -> FakePowerBI:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- behaviour
    def _record(self, item: Recorded) -> None:
        with self.lock:
            self.requests.append(item)

    def _login(self, method: str, path: str, form: dict) -> tuple:
        base = f"https://{LOGIN}/{self.tenant}"
        if method == "GET" and path == f"/{self.tenant}/v2.0/.well-known/openid-configuration":
            return 200, {
                "issuer": f"{base}/v2.0",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "tenant_region_scope": "EU",
            }
        if method == "POST" and path == f"/{self.tenant}/oauth2/v2.0/token":
            if (
                form.get("grant_type") != "client_credentials"
                or form.get("client_id") != self.client_id
                or form.get("client_secret") != self.client_secret
                or form.get("scope") != SCOPE
            ):
                return 401, {"error": "invalid_client", "error_description": "AADSTS7000215: bad client"}
            token = f"fake-powerbi-token-{uuid.uuid4().hex}"
            with self.lock:
                self.tokens.add(token)
            return 200, {
                "token_type": "Bearer",
                "expires_in": 3599,
                "ext_expires_in": 3599,
                "access_token": token,
            }
        return 404, {"error": "not_found", "error_description": path}

    def _api(self, method: str, path: str, body) -> tuple:
        parts = path.strip("/").split("/")
        # v1.0/myorg/groups/<group>/datasets/<dataset>/refreshes[/<id>]
        if (
            parts[:3] != ["v1.0", "myorg", "groups"]
            or len(parts) < 7
            or parts[4] != "datasets"
            or parts[6] != "refreshes"
        ):
            return 404, {"error": {"code": "NotFound", "message": f"{method} {path}"}}
        group, dataset = parts[3], parts[5]
        if group != self.group or dataset not in self.datasets:
            return 404, {
                "error": {"code": "ItemNotFound", "message": f"Dataset {dataset} is not found in {group}"}
            }
        spec = self.datasets[dataset]
        if method == "POST" and len(parts) == 7:
            refresh = Refresh(str(uuid.uuid4()), group, dataset, body)
            with self.lock:
                self.refreshes[refresh.request_id] = refresh
            return 202, None, {"RequestId": refresh.request_id}
        if method == "GET" and len(parts) == 7:
            history = []
            for refresh in reversed(list(self.refreshes.values())):
                if refresh.dataset != dataset:
                    continue
                refresh.gets += 1
                if refresh.status == "Unknown" and refresh.gets > spec.polls:
                    refresh.status = spec.outcome
                entry = {
                    "requestId": refresh.request_id,
                    "id": abs(hash(refresh.request_id)) % 10**9,
                    "refreshType": "ViaEnhancedApi",
                    "startTime": "2026-11-22T00:00:00Z",
                    "status": "Cancelled" if refresh.cancelled else refresh.status,
                }
                if refresh.status == "Failed":
                    entry["serviceExceptionJson"] = json.dumps(
                        spec.error or {"errorCode": "ModelRefreshFailed"}
                    )
                history.append(entry)
            return 200, {"value": history}
        if method == "DELETE" and len(parts) == 8 and parts[7] in self.refreshes:
            self.refreshes[parts[7]].cancelled = True
            return 200, None
        return 404, {"error": {"code": "NotFound", "message": f"{method} {path}"}}
