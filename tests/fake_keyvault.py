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
- ``HTTPS_PROXY`` points at the fake, an HTTPS proxy (``tests/fake_azure.py``) that answers
  ``CONNECT`` for those two host names (and nothing else) and speaks TLS on the tunnel itself.
- Its certificate is issued for those names by a CA the fake creates; ``REQUESTS_CA_BUNDLE``
  (honoured by azure-core's requests transport, which uses the environment's settings) names a
  bundle of certifi's roots plus that CA.

It serves what the clients call: Entra's OIDC discovery document
(``GET /{tenant}/v2.0/.well-known/openid-configuration``) and token endpoint
(``POST /{tenant}/oauth2/v2.0/token``, client credentials, checked), and Key Vault's
``GET /secrets/{name}[/{version}]?api-version=...``: a request without a bearer token gets the
401 challenge the SDK expects first (``WWW-Authenticate: Bearer authorization=..., resource=...``),
one with a token the fake did not issue a 401, a missing secret Key Vault's 404 error body.
Every request is recorded (``requests``, with its status and ``Authorization`` header), every token
issued too (``tokens``), every ``CONNECT`` (``tunnelled``). The proxy, the TLS and the Entra endpoint
are ``tests/fake_azure.py``'s; Key Vault's API and its recording are here.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from fake_azure import LOGIN, FakeAzureService, Incoming

LOGIN_HOST = LOGIN
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


class FakeKeyVault(FakeAzureService):
    """Key Vault ``vault_name`` holding ``secrets`` (name -> value), for one service principal."""

    hosts = (LOGIN_HOST, f"*.{VAULT_DOMAIN}")
    scope = f"https://{VAULT_DOMAIN}/.default"
    token_prefix = "fake-kv-token-"

    def __init__(self, folder: Path, secrets_: dict[str, str], *, vault_name: str = "lakehouse-test"):
        self.vault_host = f"{vault_name}.{VAULT_DOMAIN}"
        self.vault_url = f"https://{self.vault_host}/"
        self.secrets = {name: (uuid.uuid4().hex, value) for name, value in secrets_.items()}
        super().__init__(
            folder,
            tenant=str(uuid.uuid4()),
            client_id=str(uuid.uuid4()),
            client_secret=f"kv-client-secret-{secrets.token_hex(12)}",
        )

    @property
    def tenant_id(self) -> str:
        return self.tenant

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
            **super().env(),
        }

    # --- what the server answers -----------------------------------------------------------

    def _authority(self) -> str:
        return f"https://{LOGIN_HOST}/{self.tenant_id}"

    def handle(self, request: Incoming) -> tuple:
        """Answer the login host (``login``, ``token``) and the vault (``vault_get``; the SDK's first
        try without a token gets the challenge), and record each request with its answer's status."""
        authorization = request.headers.get("Authorization", "")
        form = request.body if request.method == "POST" and isinstance(request.body, dict) else None
        if request.host == LOGIN_HOST:
            reply = self.login(request.method, request.path, form or {})
        elif request.method == "GET":
            reply = self.vault_get(request.host, request.target, authorization)
        else:
            reply = 405, {"error": {"code": "MethodNotAllowed", "message": request.target}}
        self._record(Request(request.host, request.method, request.target, authorization, reply[0], form))
        return reply

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
