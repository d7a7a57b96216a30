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
recorded (the bearer token left out). The proxy, the login endpoint and the recording are
``tests/fake_azure.py``'s; the factory's API is here.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fake_azure import LOGIN, FakeAzureService, Recorded

__all__ = ["ARM", "LOGIN", "SCOPE", "FakeDataFactory", "Pipeline", "Recorded", "Run"]

ARM = "management.azure.com"
SCOPE = "https://management.azure.com/.default"


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


class FakeDataFactory(FakeAzureService):
    """The fake factory and its proxy (``fake_azure.FakeAzureService``); use as a context manager."""

    hosts = (ARM, LOGIN)
    api_host = ARM
    scope = SCOPE
    token_prefix = "fake-arm-token-"

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
        self.subscription, self.resource_group, self.factory = subscription, resource_group, factory
        self.pipelines: dict[str, Pipeline] = {}
        self.runs: dict[str, Run] = {}
        super().__init__(folder, tenant=tenant, client_id=client_id, client_secret=client_secret)

    # -- configuration
    def pipeline(self, name: str, **outcome) -> Pipeline:
        self.pipelines[name] = Pipeline(**outcome)
        return self.pipelines[name]

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

    # -- behaviour
    def api(self, method: str, path: str, query: dict[str, str], body) -> tuple[int, dict | None]:
        prefix = (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.DataFactory/factories/{self.factory}/"
        )
        if query.get("api-version") != "2018-06-01":
            return 400, {"error": {"code": "InvalidApiVersion", "message": str(query.get("api-version"))}}
        if not path.startswith(prefix):
            return 404, {"error": {"code": "ResourceNotFound", "message": f"no factory at {path}"}}
        parts = path[len(prefix) :].split("/")
        if method == "POST" and len(parts) == 3 and parts[0] == "pipelines" and parts[2] == "createRun":
            return self._create_run(parts[1], body or {})
        if len(parts) >= 2 and parts[0] == "pipelineruns":
            run = self.runs.get(parts[1])
            if run is None:
                return 404, {"error": {"code": "PipelineRunNotFound", "message": f"no run {parts[1]}"}}
            if method == "GET" and len(parts) == 2:
                return 200, self._poll(run, prefix)
            if method == "POST" and parts[2:] == ["cancel"]:
                self._cancel(run)
                return 200, None
        return 404, {"error": {"code": "NotFound", "message": f"{method} {path}"}}

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
