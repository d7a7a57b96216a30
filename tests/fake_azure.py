"""The shared plumbing of the local stand-ins for Azure's REST APIs: the HTTPS proxy they are reached
through, request recording, and Microsoft Entra ID's login endpoint.

Azure's control planes cannot run here, and the SDKs and providers that call them take no endpoint
from their configuration, so each fake is reached the way a corporate network reaches Azure: the
client's ``HTTPS_PROXY`` is a :class:`FakeAzureService`'s server. It answers ``CONNECT`` for the
service's own host names and ``login.microsoftonline.com`` only (anything else gets 403 and is
listed in ``refused``), speaks TLS on the tunnel with a certificate for those names signed by a
throwaway test CA (``tests/fake_tls.py``), and serves, on the login host:

- ``GET  /<tenant>/v2.0/.well-known/openid-configuration`` (MSAL's discovery)
- ``POST /<tenant>/oauth2/v2.0/token`` (client credentials for the fake's service principal and
  ``scope``, checked; it mints ``<token_prefix><random hex>`` and remembers it in ``tokens``)

and on the service's hosts whatever the subclass's :meth:`FakeAzureService.api` answers, to requests
that carry a token it issued (others get ``unauthorized``). Every request is recorded in
``requests`` (the client secret and bearer tokens left out); a subclass that records differently,
or checks tokens itself, overrides :meth:`FakeAzureService.handle`.
"""

from __future__ import annotations

import http.server
import json
import secrets
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from fake_tls import make_certificates, proxy_env, server_context

LOGIN = "login.microsoftonline.com"

Reply = tuple  # (status, body) or (status, body, headers); a body of None sends no content


@dataclass
class Recorded:
    method: str
    host: str
    path: str  # percent-decoded, without the query
    query: dict[str, str]
    body: object  # parsed JSON or form; a token request's client_secret is "<redacted>"
    authorized: bool = False  # an API request carried a token the fake issued


@dataclass
class Incoming:
    """One request that came through the tunnel."""

    method: str
    host: str
    target: str  # the request line's path and query, as sent
    headers: object  # the handler's http.client.HTTPMessage
    body: object  # parsed JSON, a form as a dict, or None

    @property
    def path(self) -> str:
        return unquote(urlparse(self.target).path)

    @property
    def query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlparse(self.target).query).items()}

    @property
    def bearer(self) -> str:
        return self.headers.get("Authorization", "").removeprefix("Bearer ")


def host_matches(host: str, names: tuple[str, ...]) -> bool:
    """``host`` is one of ``names`` or under one of its ``*.`` wildcards."""
    return any(host == name or (name.startswith("*.") and host.endswith(name[1:])) for name in names)


def openid_configuration(tenant: str) -> dict:
    base = f"https://{LOGIN}/{tenant}"
    return {
        "issuer": f"{base}/v2.0",
        "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
        "token_endpoint": f"{base}/oauth2/v2.0/token",
        "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
        "tenant_region_scope": "EU",
    }


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    # -- the proxy: CONNECT to one of the fake's hosts, then TLS with the test certificate
    def do_CONNECT(self):
        fake = self.server.fake
        host, _, port = self.path.partition(":")
        host = host.lower()
        fake.tunnelled.append(f"CONNECT {self.path}")
        if not host_matches(host, fake.hosts) or port != "443":
            fake.refused.append(self.path)
            served = " and ".join(fake.hosts)
            self._reply(403, {"error": f"this test proxy only serves {served}"})
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

    def _request(self):
        host = getattr(self, "tunnel_host", None)
        if host is None:  # a plain request to the proxy itself
            self._reply(400, {"error": "send requests through CONNECT"})
            return
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not raw:
            body = None
        elif "json" in self.headers.get("Content-Type", ""):
            body = json.loads(raw)
        else:
            body = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        self._reply(*self.server.fake.handle(Incoming(self.command, host, self.path, self.headers, body)))

    def do_GET(self):
        self._request()

    def do_POST(self):
        self._request()

    def do_PUT(self):
        self._request()

    def do_DELETE(self):
        self._request()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeAzureService, tls: ssl.SSLContext):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake
        self.tls = tls


class FakeAzureService:
    """A fake Azure service behind its HTTPS proxy, for one tenant's service principal; use as a
    context manager (or ``start()``/``stop()``).

    Subclasses set ``hosts`` (their host names, ``*.`` wildcards allowed, ``LOGIN`` included),
    ``scope`` (the token scope the login endpoint accepts), ``token_prefix`` and ``unauthorized``
    (the answer to an API call without an issued token), and implement :meth:`api`.
    """

    hosts: tuple[str, ...] = (LOGIN,)
    api_host: str = ""  # the default host of calls()
    scope: str = ""
    token_prefix: str = "fake-token-"
    unauthorized: Reply = (401, {"error": {"code": "InvalidAuthenticationToken", "message": "bad token"}})

    def __init__(self, folder: Path, *, tenant: str, client_id: str, client_secret: str):
        self.folder = Path(folder)
        self.tenant, self.client_id, self.client_secret = tenant, client_id, client_secret
        self.requests: list = []
        self.refused: list[str] = []  # CONNECT targets the proxy refused
        self.tunnelled: list[str] = []  # every CONNECT request line's method and target
        self.tokens: set[str] = set()
        self.lock = threading.Lock()
        self.certs = make_certificates(self.folder, list(self.hosts))
        self._server = _Server(self, server_context(self.certs))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- what clients and tests use
    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def env(self) -> dict[str, str]:
        """What points the Azure SDKs here: the proxy, and the CA bundle that trusts its certificate.

        Local addresses bypass the proxy (Spark Connect's gRPC channel and local HTTP sources)."""
        return proxy_env(self.proxy_url, self.certs)

    def calls(self, method: str | None = None, suffix: str = "", host: str | None = None) -> list[Recorded]:
        """The recorded requests to ``host`` (the API host by default), by method and path suffix."""
        host = host or self.api_host
        return [
            r
            for r in list(self.requests)
            if r.host == host and (method is None or r.method == method) and r.path.endswith(suffix)
        ]

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- what the server answers
    def handle(self, request: Incoming) -> Reply:
        """Record ``request`` and answer it: the login host, else the API once the token checks out."""
        if request.host == LOGIN:
            form = request.body if isinstance(request.body, dict) else {}
            shown = {k: ("<redacted>" if k == "client_secret" else v) for k, v in form.items()}
            self._record(Recorded(request.method, request.host, request.path, request.query, shown or None))
            return self.login(request.method, request.path, form)
        authorized = request.bearer in self.tokens
        self._record(
            Recorded(request.method, request.host, request.path, request.query, request.body, authorized)
        )
        if not authorized:
            return self.unauthorized
        return self.api(request.method, request.path, request.query, request.body)

    def login(self, method: str, path: str, form: dict) -> Reply:
        if method == "GET" and path == f"/{self.tenant}/v2.0/.well-known/openid-configuration":
            return 200, openid_configuration(self.tenant)
        if method == "POST" and path == f"/{self.tenant}/oauth2/v2.0/token":
            return self.token(path, form)
        return 400, {"error": "invalid_tenant", "error_description": f"unknown tenant in {path}"}

    def token(self, path: str, form: dict[str, str]) -> tuple[int, dict]:
        """Entra's client-credentials grant, for this fake's service principal and ``scope`` only."""
        if urlparse(path).path != f"/{self.tenant}/oauth2/v2.0/token":
            return 400, {"error": "invalid_tenant", "error_description": f"unknown tenant in {path}"}
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type", "error_description": str(form.get("grant_type"))}
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            message = "AADSTS7000215: Invalid client secret."
            return 401, {"error": "invalid_client", "error_description": message}
        if form.get("scope") != self.scope:
            return 400, {"error": "invalid_scope", "error_description": str(form.get("scope"))}
        token = f"{self.token_prefix}{secrets.token_hex(16)}"
        with self.lock:
            self.tokens.add(token)
        return 200, {
            "token_type": "Bearer",
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": token,
        }

    def api(self, method: str, path: str, query: dict[str, str], body) -> Reply:
        raise NotImplementedError

    def _record(self, item) -> None:
        with self.lock:
            self.requests.append(item)
