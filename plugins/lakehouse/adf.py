"""Raw files landed by an existing Azure Data Factory pipeline, as one step of a DAG.

Teams move one pipeline at a time: while the ADF copy pipeline still lands a source's files, the
DAG runs it (the provider's ``AzureDataFactoryRunPipelineOperator``) instead of its own fetch
tasks, then accepts what it landed and runs bronze, silver and gold on it. The pipeline's
metadata declares it (``landing.adf``); ``<PIPELINE>_LANDING=adf`` or ``landing.kind: adf``
chooses it when the DAG is parsed (``lakehouse.metadata.landing_kind``). Only DAGs that choose it
import this module (and the Azure SDK).

1. ``LandingPipelineOperator`` renders the landing folder (``landing.adf.folder``, under
   ``raw/<pipeline>/``, e.g. ``_adf/{{ ds }}``) first, so that the pipeline's parameters can name
   it (``{{ landing_folder }}``: relative to the raw layer, ``{{ landing_uri }}``: the full URI),
   checks the rendered parameters (names, and values: no control characters, no leftover
   template, no ``..`` path part, no leading ``@``, which ADF reads as an expression) and starts
   the run. It waits for the run in the worker, or deferred to the triggerer when configured
   (``deferrable`` in the metadata, else Airflow's ``[operators] default_deferrable``). A run
   that fails or is cancelled fails the task with ADF's own message, the run id and the link to
   the run in ADF's monitor (the operator's ``Monitor Pipeline Run`` extra link shows the same):
   the provider says only "has failed or has been cancelled". A cancelled run is not retried
   (someone stopped it on purpose); a failed one keeps the task's retries, each a new ADF run.
   Killing the task (marked failed or cleared while it waits in the worker) cancels the ADF run.
   A run that outlives ``timeout_minutes`` is cancelled too, so a retry never runs beside it.
2. ``accept_landed_file`` (mapped per file, like the fetch tasks) checks each file ADF landed as
   a fetched file is checked (there, non-empty, declared encoding, declared header) and promotes
   it into ``raw/<pipeline>/<table>/`` under the same naming and ``_sources`` record as an HTTP
   fetch, unless its content is already there: bronze, silver and gold then run exactly as on
   fetched files. ADF's folder is left as ADF wrote it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from pathlib import PurePosixPath

from airflow.providers.common.compat.sdk import conf
from airflow.providers.microsoft.azure.hooks.data_factory import (
    AzureDataFactoryPipelineRunException,
    AzureDataFactoryPipelineRunStatus,
    get_field,
)
from airflow.providers.microsoft.azure.operators.data_factory import AzureDataFactoryRunPipelineOperator
from airflow.sdk import get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from lakehouse.metadata import ADF_PARAMETER, REL_PATH
from lakehouse.storage import lake_path, layer_uri

log = logging.getLogger(__name__)

CHUNK = 1 << 20
MAX_VALUE_LENGTH = 2048
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class LandingError(ValueError):
    """A rendered landing setting that must not reach ADF; the message names it."""


def poll_seconds() -> int:
    """How often a waiting task asks ADF for the run's status (``ADF_POLL_SECONDS``, default 30)."""
    value = os.environ.get("ADF_POLL_SECONDS", "").strip() or "30"
    if not value.isdigit() or not 1 <= int(value) <= 3600:
        raise ValueError(f"ADF_POLL_SECONDS must be a whole number of seconds from 1 to 3600, not {value!r}")
    return int(value)


def check_folder(folder: str, pipeline: str) -> str:
    """The rendered landing folder: a plain relative path under ``raw/<pipeline>/_...``."""
    if (
        not isinstance(folder, str)
        or not REL_PATH.match(folder)
        or ".." in PurePosixPath(folder).parts
        or not folder.startswith("_")
    ):
        raise LandingError(
            f"landing folder {folder!r} of pipeline {pipeline!r} must render to a relative path "
            "under raw/<pipeline>/ starting with '_', of letters, digits, '_', '-', '.' and '/', no '..'"
        )
    return folder.rstrip("/")


def check_parameters(values: dict, declared: set[str], pipeline_name: str) -> dict:
    """The rendered parameters of an ADF run: the declared names, plain values."""
    if set(values) != declared:
        raise LandingError(
            f"ADF pipeline {pipeline_name}: parameters {sorted(values)} are not the declared "
            f"{sorted(declared)}"
        )
    for name, value in values.items():
        where = f"ADF pipeline {pipeline_name} parameter {name!r}"
        if not ADF_PARAMETER.match(name):
            raise LandingError(f"{where}: invalid name")
        if isinstance(value, bool | int | float):
            continue
        if not isinstance(value, str) or not value.strip():
            raise LandingError(f"{where}: rendered to {value!r}, not a non-empty string or a number")
        if len(value) > MAX_VALUE_LENGTH:
            raise LandingError(f"{where}: {len(value)} characters, more than {MAX_VALUE_LENGTH}")
        if CONTROL.search(value):
            raise LandingError(f"{where}: {value!r} holds a control character")
        if "{{" in value or "{%" in value:
            raise LandingError(f"{where}: {value!r} still holds a template")
        if value.startswith("@"):
            raise LandingError(f"{where}: {value!r} starts with '@', which ADF reads as an expression")
        if ".." in re.split(r"[/\\]", value):
            raise LandingError(f"{where}: {value!r} holds a '..' path part")
    return values


def monitor_url(subscription_id: str, resource_group: str, factory: str, run_id: str) -> str:
    """The run in ADF's monitor: the URL of the operator's ``Monitor Pipeline Run`` extra link."""
    return (
        f"https://adf.azure.com/en-us/monitoring/pipelineruns/{run_id}"
        f"?factory=/subscriptions/{subscription_id}/"
        f"resourceGroups/{resource_group}/providers/Microsoft.DataFactory/"
        f"factories/{factory}"
    )


class LandingPipelineOperator(AzureDataFactoryRunPipelineOperator):
    """Run the ADF pipeline that lands a pipeline's raw files (see the module's docstring).

    Returns (XCom) ``{"run_id", "pipeline_name", "folder", "monitor_url"}``, ``folder`` relative
    to ``raw/<pipeline>/``.
    """

    template_fields = (*AzureDataFactoryRunPipelineOperator.template_fields, "landing_folder")

    def __init__(self, *, pipeline: str, landing_folder: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pipeline = pipeline
        self.landing_folder = landing_folder
        self.declared_parameters = sorted(self.parameters or {})
        self.run_id = None

    def render_template_fields(self, context, jinja_env=None) -> None:
        """The folder first, then every field with ``landing_folder`` and ``landing_uri`` known."""
        jinja_env = jinja_env or self.get_template_env()
        self._do_render_template_fields(self, ["landing_folder"], context, jinja_env, set())
        relative = f"{self.pipeline}/{str(self.landing_folder).rstrip('/')}"
        extra = {"landing_folder": relative, "landing_uri": f"{layer_uri('raw')}/{relative}"}
        super().render_template_fields({**context, **extra}, jinja_env)

    def execute(self, context):
        try:
            self.landing_folder = check_folder(self.landing_folder, self.pipeline)
            self.parameters = check_parameters(
                self.parameters or {}, set(self.declared_parameters), self.pipeline_name
            )
        except LandingError as exc:
            raise AirflowFailException(f"{exc}. Nothing was sent to ADF (not retried)") from exc
        log.info(
            "ADF pipeline %s in factory %s: landing into raw/%s/%s with parameters %s",
            self.pipeline_name,
            self.factory_name,
            self.pipeline,
            self.landing_folder,
            json.dumps(self.parameters, sort_keys=True),
        )
        try:
            super().execute(context)
        except AzureDataFactoryPipelineRunException as exc:
            if not self.run_id:
                raise
            raise self._run_failed(str(exc)) from exc
        return self._landed()

    def execute_complete(self, context, event: dict):
        self.run_id = (event or {}).get("run_id") or context["ti"].xcom_pull(
            task_ids=self.task_id, key="run_id"
        )
        if not event or event.get("status") != "success":
            raise self._run_failed((event or {}).get("message", "no event from the trigger"))
        log.info(event["message"])
        return self._landed()

    def on_kill(self) -> None:
        """Cancel the ADF run this task started, and wait until ADF says it is cancelled."""
        if self.run_id:
            log.info("task killed: cancelling ADF pipeline run %s", self.run_id)
            super().on_kill()

    def _monitor_url(self) -> str:
        extras = self.hook.get_connection(self.azure_data_factory_conn_id).extra_dejson
        subscription = get_field(extras, "subscriptionId") or "<subscription>"
        return monitor_url(subscription, self.resource_group_name, self.factory_name, str(self.run_id))

    def _landed(self) -> dict:
        return {
            "run_id": self.run_id,
            "pipeline_name": self.pipeline_name,
            "folder": self.landing_folder,
            "monitor_url": self._monitor_url(),
        }

    def _run_failed(self, reason: str) -> Exception:
        """The failure to raise for a run that did not succeed: ADF's status and message, the run
        id and its monitor link. A run still going (a timeout) is cancelled first."""
        run = self.hook.get_pipeline_run(self.run_id, self.resource_group_name, self.factory_name)
        status = run.status
        if status not in AzureDataFactoryPipelineRunStatus.TERMINAL_STATUSES:
            self.hook.cancel_pipeline_run(self.run_id, self.resource_group_name, self.factory_name)
            what = f"did not end in time ({reason}); it was {status} and is being cancelled"
        else:
            what = f"ended {status}: {run.message or 'ADF gave no message'}"
        text = (
            f"ADF pipeline {self.pipeline_name} run {self.run_id} (factory {self.factory_name}) {what}. "
            f"Monitor Pipeline Run: {self._monitor_url()}"
        )
        if status == AzureDataFactoryPipelineRunStatus.CANCELLED:
            return AirflowFailException(f"{text} (not retried: the run was cancelled)")
        return AzureDataFactoryPipelineRunException(text)


def landing_operator(meta: dict, **kwargs) -> LandingPipelineOperator:
    """The ``adf_landing`` task of a pipeline whose metadata declares ``landing.adf``."""
    adf = meta["landing"]["adf"]
    deferrable = adf.get("deferrable")
    if deferrable is None:
        deferrable = conf.getboolean("operators", "default_deferrable", fallback=False)
    return LandingPipelineOperator(
        task_id=kwargs.pop("task_id", "adf_landing"),
        pipeline=meta["pipeline"],
        landing_folder=adf["folder"],
        azure_data_factory_conn_id=adf.get("conn_id", "azure_data_factory_default"),
        resource_group_name=adf["resource_group"],
        factory_name=adf["factory"],
        pipeline_name=adf["pipeline_name"],
        parameters=dict(adf.get("parameters") or {}),
        wait_for_termination=True,
        deferrable=deferrable,
        check_interval=kwargs.pop("check_interval", poll_seconds()),
        timeout=kwargs.pop("timeout", 60 * adf.get("timeout_minutes", 120)),
        doc_md=f"Runs ADF pipeline `{adf['pipeline_name']}` (factory `{adf['factory']}`), which lands "
        f"the raw files in `raw/{meta['pipeline']}/{adf['folder']}`.",
        **kwargs,
    )


def accept_file(pipeline: str, source: dict, landing: dict) -> dict:
    """Check one file ADF landed and promote it into the raw layer unless its content is there.

    The same checks, naming and ``_sources`` record as an HTTP fetch
    (``lakehouse.http_ingest``), so bronze cannot tell the two apart. A missing, empty or
    malformed file raises a non-retryable ``SourceError`` naming it and the ADF run.
    """
    from lakehouse.http_ingest import (
        Landed,
        SourceError,
        check_spooled,
        land_spooled,
        read_record,
        write_record,
    )

    table, name = source["table"], source["path"]
    folder = check_folder(landing["folder"], pipeline)
    landed_by = f"ADF run {landing['run_id']} of {landing['pipeline_name']}"
    incoming = lake_path("raw", pipeline, *folder.split("/"), *PurePosixPath(name).parts)
    if not incoming.exists():
        raise SourceError(
            f"{name}: {landed_by} succeeded but left no such file in raw/{pipeline}/{folder}", retryable=False
        )
    with tempfile.TemporaryFile() as spool:
        digest, size = hashlib.sha256(), 0
        with incoming.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
                spool.write(chunk)
                size += len(chunk)
        sha = digest.hexdigest()
        where = f"{name} (landed by {landed_by})"
        check_spooled(spool, size, source, where, empty="the file is empty")
        previous = read_record(pipeline, table)
        if previous and previous.get("sha256") == sha:
            log.info("%s: content unchanged (sha256 %s), not landed again", where, sha[:16])
            return {**previous, "status": "unchanged"}
        final, now = land_spooled(spool, pipeline, table, name, sha)

    record = Landed(
        table=table,
        source=str(incoming),
        status="landed",
        raw_file=str(final),
        bytes=size,
        sha256=sha,
        etag=None,
        last_modified=None,
        landed_at=now.isoformat(),
    ).__dict__ | {"adf_run_id": landing["run_id"], "adf_pipeline": landing["pipeline_name"]}
    write_record(pipeline, table, record)
    log.info("%s: landed %s bytes as %s", where, size, final)
    return record


@task(map_index_template="{{ source_file }}")
def accept_landed_file(pipeline: str, source: dict, landing: dict) -> dict:
    """Promote one file the ADF pipeline landed into the raw layer (mapped per file).

    A missing, empty or malformed file fails the task at once (a retry reads the same file)."""
    from lakehouse.http_ingest import SourceError

    get_current_context()["source_file"] = source["path"]
    try:
        return accept_file(pipeline, source, landing)
    except SourceError as exc:
        raise AirflowFailException(f"{exc} (not retried: a retry cannot fix this)") from exc
