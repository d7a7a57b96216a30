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
Power BI's 404. Every request is recorded, the client secret and bearer tokens left out. The proxy,
the login endpoint and the recording are ``tests/fake_azure.py``'s; the refresh API is here.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from fake_azure import LOGIN, FakeAzureService, Recorded

__all__ = ["API", "LOGIN", "SCOPE", "Dataset", "FakePowerBI", "Recorded", "Refresh"]

API = "api.powerbi.com"
SCOPE = "https://analysis.windows.net/powerbi/api/.default"


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


class FakePowerBI(FakeAzureService):
    """The fake Power BI service and its proxy (``fake_azure.FakeAzureService``); use as a context
    manager."""

    hosts = (API, LOGIN)
    api_host = API
    scope = SCOPE
    token_prefix = "fake-powerbi-token-"
    unauthorized = (403, {"error": {"code": "TokenExpired", "message": "no valid token"}})

    def __init__(
        self,
        folder: Path,
        *,
        tenant: str = "55555555-6666-7777-8888-999999999999",
        client_id: str = "powerbi-sp",
        client_secret: str = "test-only-secret",
        group: str = "11111111-2222-3333-4444-555555555555",
    ):
        self.group = group
        self.datasets: dict[str, Dataset] = {}
        self.refreshes: dict[str, Refresh] = {}
        super().__init__(folder, tenant=tenant, client_id=client_id, client_secret=client_secret)

    # -- configuration
    def dataset(self, dataset_id: str, **outcome) -> Dataset:
        self.datasets[dataset_id] = Dataset(**outcome)
        return self.datasets[dataset_id]

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

    # -- behaviour
    def api(self, method: str, path: str, query: dict[str, str], body) -> tuple:
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
