"""A local stand-in for Azure Key Vault's secrets REST API and its Microsoft Entra token endpoint.

Key Vault cannot run here, so this is faked, and the real clients talk to it unchanged: Airflow's
``AzureKeyVaultBackend`` with its ``SecretClient`` (azure-keyvault-secrets) and
``ClientSecretCredential`` (azure-identity, MSAL underneath).

How the real clients reach it, without patching anything:

- The vault URL and the authority are the real names (``https://<vault>.vault.azure.net``,
  ``https://login.microsoftonline.com/<tenant>``), so the SDK's checks run as in Azure: MSAL skips
  instance discovery only for a well-known authority host (the backend builds the credential with
  no ``disable_instance_discovery``, so ``AZURE_AUTHORITY_HOST=https://127.0.0.1:...`` would send
  MSAL to login.microsoftonline.com's discovery endpoint first), and the Key Vault client checks
  that the challenge's resource (``https://vault.azure.net``) is the vault URL's domain
  (``verify_challenge_resource`` stays on).
- ``HTTPS_PROXY`` points at a small CONNECT proxy here that tunnels those two host names (and
  nothing else) to one local HTTPS server.
- That server's certificate is issued for those names by a CA the fake creates; ``REQUESTS_CA_BUNDLE``
  (honoured by azure-core's requests transport, which uses the environment's settings) names a
  bundle of certifi's roots plus that CA.

It serves what the clients call: Entra's OIDC discovery document
(``GET /{tenant}/v2.0/.well-known/openid-configuration``) and token endpoint
(``POST /{tenant}/oauth2/v2.0/token``, client credentials, checked), and Key Vault's
``GET /secrets/{name}[/{version}]?api-version=...``: a request without a bearer token gets the
401 challenge the SDK expects first (``WWW-Authenticate: Bearer authorization=..., resource=...``),
one with a token the fake did not issue a 401, a missing secret Key Vault's 404 error body.
Every request is recorded (``requests``), every token issued too (``tokens``).
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import re
import secrets
import select
import socket
import socketserver
import ssl
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from fake_tls import make_certificates, proxy_env, server_context

LOGIN_HOST = "login.microsoftonline.com"
VAULT_DOMAIN = "vault.azure.net"
BACKEND = "airflow.providers.microsoft.azure.secrets.key_vault.AzureKeyVaultBackend"
SECRET_NAME = re.compile(r"^/secrets/([0-9a-zA-Z-]{1,127})(?:/([0-9a-zA-Z]*))?/?$")
CREATED = int(dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp())


@dataclass
class Request:
    host: str
    method: str
    path: str
    authorization: str
    status: int
    form: dict[str, str] | None = None  # a token request's form fields


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _TLSServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def _reply(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _record(self, status: int, form: dict[str, str] | None = None) -> None:
        self.server.vault.requests.append(
            Request(
                host=self.headers.get("Host", "").split(":")[0],
                method=self.command,
                path=self.path,
                authorization=self.headers.get("Authorization", ""),
                status=status,
                form=form,
            )
        )

    def do_GET(self):
        host = self.headers.get("Host", "").split(":")[0].lower()
        status, body, headers = (
            self.server.vault.login_get(self.path)
            if host == LOGIN_HOST
            else self.server.vault.vault_get(host, self.path, self.headers.get("Authorization", ""))
        )
        self._record(status)
        self._reply(status, body, headers)

    def do_POST(self):
        host = self.headers.get("Host", "").split(":")[0].lower()
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        form = {key: values[0] for key, values in parse_qs(raw).items()}
        if host != LOGIN_HOST:
            status, body = 405, {"error": {"code": "MethodNotAllowed", "message": self.path}}
        else:
            status, body = self.server.vault.token(self.path, form)
        self._record(status, form)
        self._reply(status, body)


class _TLSServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, vault: FakeKeyVault, context: ssl.SSLContext):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.vault = vault
        self.socket = context.wrap_socket(self.socket, server_side=True)


class _ProxyHandler(socketserver.BaseRequestHandler):
    """``CONNECT host:443``: a tunnel to the fake's HTTPS server, for the login and vault hosts only."""

    server: _ProxyServer

    def handle(self):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.request.recv(4096)
            if not chunk:
                return
            data += chunk
        method, target, *_ = data.split(b"\r\n", 1)[0].decode().split(" ")
        host = target.rsplit(":", 1)[0].lower()
        self.server.tunnelled.append(f"{method} {target}")
        if method != "CONNECT" or not (host == LOGIN_HOST or host.endswith(f".{VAULT_DOMAIN}")):
            self.request.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        upstream = socket.create_connection(("127.0.0.1", self.server.tls_port))
        self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        sockets = [self.request, upstream]
        try:
            while True:
                readable, _, _ = select.select(sockets, [], [], 30)
                if not readable:
                    return
                for sock in readable:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    (upstream if sock is self.request else self.request).sendall(chunk)
        except OSError:
            return
        finally:
            upstream.close()


class _ProxyServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, tls_port: int):
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.tls_port = tls_port
        self.tunnelled: list[str] = []


class FakeKeyVault:
    """Key Vault ``vault_name`` holding ``secrets`` (name -> value), for one service principal."""

    def __init__(self, folder: Path, secrets_: dict[str, str], *, vault_name: str = "lakehouse-test"):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.vault_host = f"{vault_name}.{VAULT_DOMAIN}"
        self.vault_url = f"https://{self.vault_host}/"
        self.tenant_id = str(uuid.uuid4())
        self.client_id = str(uuid.uuid4())
        self.client_secret = f"kv-client-secret-{secrets.token_hex(12)}"
        self.secrets = {name: (uuid.uuid4().hex, value) for name, value in secrets_.items()}
        self.requests: list[Request] = []
        self.tokens: list[str] = []
        self._tls: _TLSServer | None = None
        self._proxy: _ProxyServer | None = None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeKeyVault:
        self.certs = make_certificates(
            self.folder, [LOGIN_HOST, f"*.{VAULT_DOMAIN}", "localhost", "127.0.0.1"]
        )
        self._tls = _TLSServer(self, server_context(self.certs))
        self._proxy = _ProxyServer(self._tls.server_address[1])
        for server in (self._tls, self._proxy):
            threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        for server in (self._proxy, self._tls):
            if server is not None:
                server.shutdown()
                server.server_close()

    def __enter__(self) -> FakeKeyVault:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def proxy_url(self) -> str:
        assert self._proxy is not None, "not started"
        return f"http://127.0.0.1:{self._proxy.server_address[1]}"

    @property
    def tunnelled(self) -> list[str]:
        return self._proxy.tunnelled if self._proxy else []

    def backend_kwargs(self, **extra) -> dict:
        return {
            "connections_prefix": "airflow-connections",
            "variables_prefix": "airflow-variables",
            "vault_url": self.vault_url,
            "tenant_id": self.tenant_id,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            **extra,
        }

    def env(self) -> dict[str, str]:
        """What a process needs to use this vault as Airflow's secrets backend."""
        return {
            "AIRFLOW__SECRETS__BACKEND": BACKEND,
            "AIRFLOW__SECRETS__BACKEND_KWARGS": json.dumps(self.backend_kwargs()),
            **proxy_env(self.proxy_url, self.certs),
        }

    # --- what the server answers -----------------------------------------------------------

    def _authority(self) -> str:
        return f"https://{LOGIN_HOST}/{self.tenant_id}"

    def login_get(self, path: str) -> tuple[int, dict, dict]:
        if urlparse(path).path != f"/{self.tenant_id}/v2.0/.well-known/openid-configuration":
            return 400, {"error": "invalid_tenant", "error_description": f"unknown tenant in {path}"}, {}
        base = self._authority()
        return (
            200,
            {
                "issuer": f"{base}/v2.0",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
                "tenant_region_scope": "EU",
            },
            {},
        )

    def token(self, path: str, form: dict[str, str]) -> tuple[int, dict]:
        if urlparse(path).path != f"/{self.tenant_id}/oauth2/v2.0/token":
            return 400, {"error": "invalid_tenant", "error_description": f"unknown tenant in {path}"}
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type", "error_description": str(form.get("grant_type"))}
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return 401, {
                "error": "invalid_client",
                "error_description": "AADSTS7000215: Invalid client secret.",
            }
        if f"https://{VAULT_DOMAIN}/.default" not in form.get("scope", "").split():
            return 400, {"error": "invalid_scope", "error_description": form.get("scope", "")}
        token = f"fake-kv-token-{secrets.token_hex(16)}"
        self.tokens.append(token)
        return 200, {
            "token_type": "Bearer",
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": token,
        }

    def vault_get(self, host: str, path: str, authorization: str) -> tuple[int, dict, dict]:
        challenge = {
            "WWW-Authenticate": f'Bearer authorization="{self._authority()}", resource="https://{VAULT_DOMAIN}"'
        }
        if host != self.vault_host:
            return 404, {"error": {"code": "VaultNotFound", "message": f"no vault at {host}"}}, {}
        url = urlparse(path)
        if not parse_qs(url.query).get("api-version"):
            return 400, {"error": {"code": "MissingApiVersionParameter", "message": "api-version"}}, {}
        if not authorization.startswith("Bearer "):
            message = "AKV10000: Request is missing a Bearer or PoP token."
            return 401, {"error": {"code": "Unauthorized", "message": message}}, challenge
        if authorization.removeprefix("Bearer ") not in self.tokens:
            message = "AKV10032: Invalid issuer."
            return 401, {"error": {"code": "Unauthorized", "message": message}}, challenge
        match = SECRET_NAME.match(url.path)
        if not match:
            return 400, {"error": {"code": "BadParameter", "message": f"not a secret path: {url.path}"}}, {}
        name, version = match.group(1), match.group(2) or ""
        stored = self.secrets.get(name)
        if stored is None or (version and version != stored[0]):
            message = (
                f"A secret with (name/id) {name}{'/' + version if version else ''} was not found in this "
                "key vault. If you recently deleted this secret you may be able to recover it using the "
                "correct recovery command. For help resolving this issue, please see "
                "https://go.microsoft.com/fwlink/?linkid=2125182"
            )
            return 404, {"error": {"code": "SecretNotFound", "message": message}}, {}
        return (
            200,
            {
                "value": stored[1],
                "id": f"https://{self.vault_host}/secrets/{name}/{stored[0]}",
                "attributes": {
                    "enabled": True,
                    "created": CREATED,
                    "updated": CREATED,
                    "recoveryLevel": "Recoverable+Purgeable",
                    "recoverableDays": 90,
                },
                "tags": {},
            },
            {},
        )

    # --- what tests look at ----------------------------------------------------------------

    def secret_reads(self) -> list[Request]:
        """The secret GETs that carried a token (the SDK's unauthenticated first try excluded)."""
        return [
            r
            for r in self.requests
            if r.host == self.vault_host and r.method == "GET" and r.authorization.startswith("Bearer ")
        ]

    def names_read(self) -> set[str]:
        return {SECRET_NAME.match(urlparse(r.path).path).group(1) for r in self.secret_reads()}
