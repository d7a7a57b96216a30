"""Spark jobs on Databricks: settings, the run operator, the DAG run's shared job cluster, and the
Asset Bundle's job resources derived from the DAGs.

A Spark task (``lakehouse.compute.spark_job`` with ``LAKEHOUSE_COMPUTE=databricks``) is a one-time
run (``api/2.2/jobs/runs/submit``) of the deployed ``spark_jobs/run.py`` with the same arguments a
local run gets. Its compute, from the settings below:

* serverless (default): the run's task has no cluster, only an ``environment_key`` naming a
  serverless environment (``DATABRICKS_SERVERLESS_ENVIRONMENT``, a JSON ``spec``);
* ``DATABRICKS_JOB_CLUSTER`` (a cluster spec as JSON): one cluster per DAG run, created by the
  setup task ``databricks_cluster`` and deleted by the teardown task ``databricks_cluster_delete``
  (Airflow setup/teardown), every Spark task of the run using it by ``existing_cluster_id``; a branch
  that skips a Spark task skips it there too;
* ``DATABRICKS_CLUSTER_ID``: an existing (all-purpose) cluster.

Each submission carries an idempotency token made of the DAG, run, task, map index and the task
instance's clear generation (the try number it was last cleared at): a retry (after a worker crash,
a lost response or a failed poll) gets the run it already started back from Databricks instead of a
duplicate. When that run ended without success, the next token of the series (``-1``, ``-2``...)
starts a new run, so a retry does re-run a failed job; clearing the task (a new clear generation)
re-runs it whatever its last state.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections.abc import Sequence

from airflow.providers.databricks.operators.databricks import (
    XCOM_RUN_ID_KEY,
    XCOM_RUN_PAGE_URL_KEY,
    DatabricksSubmitRunOperator,
)
from airflow.sdk import BaseOperator

CLUSTER_TASK = "databricks_cluster"
CLUSTER_DELETE_TASK = "databricks_cluster_delete"
ENVIRONMENT_KEY = "lakehouse"
DEFAULT_ENVIRONMENT = {"environment_version": "4"}
TOKEN_PREFIX = "lakehouse-"
MAX_ATTEMPTS = 100  # token series length: failed runs of one task in one clear of a DAG run
CLUSTER_CREATE_ENDPOINT = ("POST", "2.1/clusters/create")
CLUSTER_ID = re.compile(r"^[0-9A-Za-z][0-9A-Za-z-]{0,99}$")
WORKSPACE_PATH = re.compile(r"^/[^\s]*$")
TASK_KEY_UNSAFE = re.compile(r"[^\w-]")


class DatabricksSettingsError(ValueError):
    """A Databricks setting is missing or invalid; the message names it."""


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, "").strip() or default


def conn_id() -> str:
    return _env("DATABRICKS_CONN_ID", "databricks_default")


def jobs_root() -> str:
    """The workspace folder ``spark_jobs/`` is deployed to (the bundle's ``files/spark_jobs``)."""
    root = _env("DATABRICKS_JOBS_ROOT")
    if not root:
        raise DatabricksSettingsError(
            "LAKEHOUSE_COMPUTE=databricks needs DATABRICKS_JOBS_ROOT (the workspace folder spark_jobs/ "
            "is deployed to, e.g. /Workspace/Users/me/.bundle/lakehouse/dev/files/spark_jobs)"
        )
    if not WORKSPACE_PATH.match(root) or ".." in root.split("/"):
        raise DatabricksSettingsError(
            f"DATABRICKS_JOBS_ROOT must be an absolute workspace path without spaces or '..', not {root!r}"
        )
    return root.rstrip("/")


def poll_seconds() -> int:
    value = _env("DATABRICKS_POLL_SECONDS", "30")
    if not value.isdigit() or int(value) < 1:
        raise DatabricksSettingsError(
            f"DATABRICKS_POLL_SECONDS must be a whole number of seconds >= 1, not {value!r}"
        )
    return int(value)


def deferrable() -> bool:
    """``DATABRICKS_DEFERRABLE`` (true/false); unset: Airflow's ``[operators] default_deferrable``."""
    value = _env("DATABRICKS_DEFERRABLE").lower()
    if not value:
        from airflow.configuration import conf

        return conf.getboolean("operators", "default_deferrable", fallback=False)
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise DatabricksSettingsError(f"DATABRICKS_DEFERRABLE must be true or false, not {value!r}")
    return value in ("true", "1", "yes")


def _json_object(name: str) -> dict | None:
    raw = _env(name)
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise DatabricksSettingsError(f"{name} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict) or not value:
        raise DatabricksSettingsError(f"{name} must be a non-empty JSON object, not {raw[:80]!r}")
    return value


def compute_mode() -> str:
    """``serverless`` (default), ``job_cluster`` (``DATABRICKS_JOB_CLUSTER``) or ``existing_cluster``."""
    if _env("DATABRICKS_NEW_CLUSTER"):
        raise DatabricksSettingsError(
            "DATABRICKS_NEW_CLUSTER (a new cluster for every task) is no longer supported: set "
            "DATABRICKS_JOB_CLUSTER to the same cluster spec for one cluster per DAG run, or leave "
            "both unset for serverless compute"
        )
    cluster_id, job_cluster = _env("DATABRICKS_CLUSTER_ID"), _env("DATABRICKS_JOB_CLUSTER")
    if cluster_id and job_cluster:
        raise DatabricksSettingsError("set DATABRICKS_CLUSTER_ID or DATABRICKS_JOB_CLUSTER, not both")
    if cluster_id:
        if not CLUSTER_ID.match(cluster_id):
            raise DatabricksSettingsError(f"DATABRICKS_CLUSTER_ID is not a cluster id: {cluster_id!r}")
        return "existing_cluster"
    if job_cluster:
        return "job_cluster"
    return "serverless"


def job_cluster_spec() -> dict:
    spec = _json_object("DATABRICKS_JOB_CLUSTER")
    if spec is None:
        raise DatabricksSettingsError("DATABRICKS_JOB_CLUSTER is not set")
    for key in ("cluster_name", "cluster_id"):
        if key in spec:
            raise DatabricksSettingsError(
                f"DATABRICKS_JOB_CLUSTER must not set {key!r}: each DAG run names its own"
            )
    return spec


def serverless_environment() -> dict:
    """The serverless environment ``spec`` (``DATABRICKS_SERVERLESS_ENVIRONMENT``, JSON)."""
    return _json_object("DATABRICKS_SERVERLESS_ENVIRONMENT") or dict(DEFAULT_ENVIRONMENT)


def task_compute() -> tuple[dict, list[dict] | None]:
    """The run task's compute fields and the run's ``environments`` (serverless only)."""
    mode = compute_mode()
    if mode == "existing_cluster":
        return {"existing_cluster_id": _env("DATABRICKS_CLUSTER_ID")}, None
    if mode == "job_cluster":
        job_cluster_spec()  # validated when the DAG is parsed
        return {"existing_cluster_id": "{{ ti.xcom_pull(task_ids='" + CLUSTER_TASK + "') }}"}, None
    environment = {"environment_key": ENVIRONMENT_KEY, "spec": serverless_environment()}
    return {"environment_key": ENVIRONMENT_KEY}, [environment]


def idempotency_token(
    dag_id: str, run_id: str, task_id: str, map_index: int, generation: int, attempt: int
) -> str:
    """``lakehouse-<40 hex>-<attempt>``: at most 64 characters, as Databricks requires.

    ``generation`` counts the task instance's clears: the try number it was cleared at (0 if never
    cleared). A retry keeps it; a clear (Clear in the UI, the REST API) moves it on.
    """
    key = "\x00".join((dag_id, run_id, task_id, str(map_index), str(generation)))
    token = f"{TOKEN_PREFIX}{hashlib.sha256(key.encode()).hexdigest()[:40]}-{attempt}"
    assert len(token) <= 64, token
    return token


def clear_generation(ti, retries: int) -> int:
    """The try number the task instance was last cleared at: Airflow sets ``max_tries`` to
    ``try_number + retries`` when it clears a task (and to ``retries`` when it creates one), and
    leaves it alone on a retry, as its own "first try of this clear" computation assumes."""
    return max(0, int(getattr(ti, "max_tries", 0) or 0) - int(retries or 0))


def _context_token(context, attempt: int) -> str:
    ti = context["ti"]
    generation = clear_generation(ti, ti.task.retries)
    return idempotency_token(
        ti.dag_id, ti.run_id, ti.task_id, getattr(ti, "map_index", -1), generation, attempt
    )


def task_key(task_id: str) -> str:
    return TASK_KEY_UNSAFE.sub("_", task_id)[:100]


class DatabricksRunError(RuntimeError):
    """A Databricks run of a Spark job ended without success; names the job, the error and the run page."""


class DatabricksSparkJobOperator(DatabricksSubmitRunOperator):
    """``run.py <pipeline>.<job> ARGS`` as a one-time Databricks run, with an idempotency token.

    Reconnection is by the token (Databricks returns the run a token already started), so it is the
    same whether the task polls (``deferrable=False``) or waits in the triggerer: the provider's
    ``task_state_store`` reconnection is off (``durable=False``), as it would reuse a run the task
    was cleared to re-run. The run page is the task's extra link "See Databricks Job Run".
    """

    def __init__(self, *, argv: Sequence[str], job: str, python_file: str, **kwargs):
        compute, environments = task_compute()
        task = {
            "task_key": task_key(kwargs["task_id"]),
            "spark_python_task": {"python_file": python_file, "parameters": list(argv)},
            **compute,
        }
        kwargs.setdefault("run_name", "{{ dag.dag_id }}." + kwargs["task_id"] + " {{ run_id }}")
        super().__init__(tasks=[task], environments=environments, durable=False, **kwargs)
        self.job = job

    def _describe(self) -> str:
        parameters = self.tasks[0]["spark_python_task"]["parameters"]
        tables = next((parameters[i + 1] for i, a in enumerate(parameters[:-1]) if a == "--tables"), "")
        return self.job + (f" (tables {tables.replace(',', ', ')})" if tables else "")

    def submit_job(self, context) -> int:
        """Submit with the task's token; a token whose run ended without success moves to the next."""
        from airflow.providers.databricks.hooks.databricks import RunState

        body = self._prepare_submit_json(context)
        for attempt in range(MAX_ATTEMPTS):
            body["idempotency_token"] = _context_token(context, attempt)
            run_id = self._hook.submit_run(body)
            state = RunState(**self._hook.get_run(run_id)["state"])
            if not state.is_terminal or state.is_successful:
                self.run_id = run_id
                self.log.info(
                    "Spark job %s: Databricks run %s (%s, token %s)",
                    self._describe(),
                    run_id,
                    state.life_cycle_state,
                    body["idempotency_token"],
                )
                return run_id
            self.log.info(
                "Databricks run %s (token %s) ended %s: submitting the job again",
                run_id,
                body["idempotency_token"],
                state.result_state or state.life_cycle_state,
            )
        raise DatabricksRunError(
            f"Spark job {self._describe()}: {MAX_ATTEMPTS} failed Databricks runs in this try"
        )

    def execute(self, context):
        run_id = self.submit_job(context)
        if not self.deferrable:
            from airflow.providers.common.compat.sdk import AirflowException

            try:
                self.poll_until_complete(run_id, context)
            except AirflowException as exc:
                raise self._failure(run_id) from exc
            return None
        self._defer_or_finish(run_id, context)
        return None

    def _defer_or_finish(self, run_id: int, context) -> None:
        from airflow.providers.databricks.hooks.databricks import RunState
        from airflow.providers.databricks.triggers.databricks import DatabricksExecutionTrigger

        url = self._hook.get_run_page_url(run_id)
        if self.do_xcom_push:
            context["ti"].xcom_push(key=XCOM_RUN_ID_KEY, value=run_id)
            context["ti"].xcom_push(key=XCOM_RUN_PAGE_URL_KEY, value=url)
        self.log.info("View run status, Spark UI, and logs at %s", url)
        state = RunState(**self._hook.get_run(run_id)["state"])
        if state.is_terminal:
            if not state.is_successful:
                raise self._failure(run_id)
            return
        self.defer(
            trigger=DatabricksExecutionTrigger(
                run_id=run_id,
                databricks_conn_id=self.databricks_conn_id,
                polling_period_seconds=self.polling_period_seconds,
                retry_limit=self.databricks_retry_limit,
                retry_delay=self.databricks_retry_delay,
                retry_args=self.databricks_retry_args,
                run_page_url=url,
            ),
            method_name="execute_complete",
        )

    def execute_complete(self, context, event: dict):
        from airflow.providers.databricks.hooks.databricks import RunState

        self.run_id = event["run_id"]
        if RunState.from_json(event["run_state"]).is_successful:
            self.log.info("Spark job %s: Databricks run %s succeeded", self._describe(), self.run_id)
            return None
        raise self._failure(self.run_id)

    def _failure(self, run_id: int) -> DatabricksRunError:
        """The run's end, its failed task's error and the page to look at, read from Databricks."""
        try:
            info = self._hook.get_run(run_id)
        except Exception as exc:  # the API is unreachable: say so rather than hide the original
            return DatabricksRunError(
                f"Spark job {self._describe()}: Databricks run {run_id} could not be read ({exc})"
            )
        state = info.get("state", {})
        errors = []
        for task in info.get("tasks", []):
            if task.get("state", {}).get("result_state") not in (None, "SUCCESS"):
                try:
                    output = self._hook.get_run_output(task["run_id"])
                except Exception:  # the state message below still says what happened
                    output = {}
                error = " ".join(str(output.get("error") or "").split())
                if error:
                    errors.append(error[-1500:])
        ended = state.get("result_state") or state.get("life_cycle_state", "UNKNOWN")
        message = f"Spark job {self._describe()}: Databricks run {run_id} ended {ended}"
        if state.get("state_message"):
            message += f" ({state['state_message']})"
        if errors:
            message += ": " + "; ".join(errors)
        message += f". Run page: {info.get('run_page_url', 'unknown')}"
        if any(error_class(e) in bad_input_classes() for e in errors):
            from airflow.sdk.exceptions import AirflowFailException

            return AirflowFailException(f"{message} (bad input, not retried)")
        return DatabricksRunError(message)


def error_class(error: str) -> str:
    """``RescuedRowsError`` from a run's error, ``spark_jobs.common.errors.RescuedRowsError: ...``."""
    head = error.split(":", 1)[0].strip() if ":" in error else ""
    return head.rsplit(".", 1)[-1] if re.fullmatch(r"[A-Za-z_][\w.]*", head) else ""


@functools.cache
def bad_input_classes(root: str | None = None) -> frozenset[str]:
    """``BadInputError`` and every class of ``spark_jobs/`` derived from it, read from the source:
    a run's error carries the exception's class name, not its bases, and the Airflow side imports
    nothing from the jobs' package."""
    import ast
    from pathlib import Path

    from lakehouse import settings

    bases: dict[str, set[str]] = {}
    for path in Path(root or settings.spark_jobs_dir()).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                names = {b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "") for b in node.bases}
                bases.setdefault(node.name, set()).update(names)
    found = {"BadInputError"}
    while True:
        more = {name for name, parents in bases.items() if parents & found} - found
        if not more:
            return frozenset(found)
        found |= more


def spark_job_operator(task_id: str, pipeline: str, job: str, argv: list[str], **kwargs):
    """The Databricks operator for ``spark_job``; in job cluster mode, wired to the run's cluster."""
    kwargs.setdefault("deferrable", deferrable())
    operator = DatabricksSparkJobOperator(
        task_id=task_id,
        job=f"{pipeline}.{job}",
        argv=argv,
        python_file=f"{jobs_root()}/run.py",
        databricks_conn_id=conn_id(),
        polling_period_seconds=poll_seconds(),
        **kwargs,
    )
    if compute_mode() == "job_cluster":
        setup, teardown = _cluster_tasks(operator.dag)
        # Airflow requires a setup's direct downstream tasks to have the default trigger rule; a
        # task with another rule (gold's none_failed) gets the cluster through its upstream tasks.
        if operator.trigger_rule == "all_success":
            setup >> operator
        operator >> teardown
    return operator


# --- one job cluster per DAG run -------------------------------------------------------------


def _cluster_tasks(dag):
    """The DAG's cluster setup and teardown tasks, created with its first Spark task."""
    if dag is None:
        raise DatabricksSettingsError("DATABRICKS_JOB_CLUSTER: a Spark task must be created inside a DAG")
    if CLUSTER_TASK in dag.task_dict:
        return dag.task_dict[CLUSTER_TASK], dag.task_dict[CLUSTER_DELETE_TASK]
    setup = DatabricksJobClusterOperator(
        task_id=CLUSTER_TASK,
        cluster=job_cluster_spec(),
        databricks_conn_id=conn_id(),
        polling_period_seconds=poll_seconds(),
        doc_md="Creates the Databricks job cluster the DAG run's Spark tasks share (DATABRICKS_JOB_CLUSTER).",
    ).as_setup()
    teardown = DatabricksClusterDeleteOperator(
        task_id=CLUSTER_DELETE_TASK,
        databricks_conn_id=conn_id(),
        doc_md="Deletes this DAG run's Databricks job cluster, whatever its Spark tasks' outcome.",
    ).as_teardown(setups=setup)
    return setup, teardown


def _hook(databricks_conn_id: str):
    from airflow.providers.databricks.hooks.databricks import DatabricksHook

    return DatabricksHook(databricks_conn_id, caller="lakehouse.databricks")


def cluster_name(dag_id: str, run_id: str, generation: int) -> str:
    """The DAG run's cluster: a retried setup finds it by name; a cleared one makes a new one."""
    digest = hashlib.sha256(f"{dag_id}\x00{run_id}\x00{generation}".encode()).hexdigest()[:12]
    return f"lakehouse-{dag_id[:60]}-{digest}"


class DatabricksJobClusterOperator(BaseOperator):
    """Creates the DAG run's job cluster and waits until it runs; its XCom is the cluster id.

    A retry first looks for the cluster its earlier try created (by name: DAG run and clear generation),
    so a retried setup does not leave a second cluster behind.
    """

    template_fields: Sequence[str] = ("cluster",)
    ui_color = "#1CB1C2"

    def __init__(self, *, cluster: dict, databricks_conn_id: str, polling_period_seconds: int = 30, **kwargs):
        super().__init__(**kwargs)
        self.cluster = cluster
        self.databricks_conn_id = databricks_conn_id
        self.polling_period_seconds = polling_period_seconds

    def execute(self, context) -> str:
        import time

        ti = context["ti"]
        name = cluster_name(ti.dag_id, ti.run_id, clear_generation(ti, self.retries))
        hook = _hook(self.databricks_conn_id)
        cluster_id = self._existing(hook, name)
        if cluster_id is None:
            spec = {"autotermination_minutes": 60, **self.cluster, "cluster_name": name}
            spec["custom_tags"] = {**spec.get("custom_tags", {}), "lakehouse_dag": ti.dag_id}
            cluster_id = hook._do_api_call(CLUSTER_CREATE_ENDPOINT, spec)["cluster_id"]
            self.log.info("created job cluster %s (%s)", cluster_id, name)
        else:
            self.log.info("reusing job cluster %s (%s) from an earlier try", cluster_id, name)
        while True:
            state = hook.get_cluster_state(cluster_id)
            if state.is_running:
                return cluster_id
            if state.is_terminal:
                raise DatabricksRunError(
                    f"job cluster {cluster_id} ({name}) ended {state.state}: {state.state_message}"
                )
            self.log.info("job cluster %s is %s", cluster_id, state.state)
            time.sleep(self.polling_period_seconds)

    @staticmethod
    def _existing(hook, name: str) -> str | None:
        listing = hook._do_api_call(("GET", "2.1/clusters/list"), {})
        for cluster in listing.get("clusters", []):
            if cluster.get("cluster_name") == name and cluster.get("state") not in (
                "TERMINATING",
                "TERMINATED",
            ):
                return cluster["cluster_id"]
        return None


class DatabricksClusterDeleteOperator(BaseOperator):
    """Terminates the DAG run's job cluster (teardown: runs whatever the Spark tasks did)."""

    ui_color = "#1CB1C2"

    def __init__(self, *, databricks_conn_id: str, **kwargs):
        super().__init__(**kwargs)
        self.databricks_conn_id = databricks_conn_id

    def execute(self, context) -> None:
        cluster_id = context["ti"].xcom_pull(task_ids=CLUSTER_TASK)
        if not cluster_id:
            self.log.info("no job cluster was created in this DAG run")
            return
        _hook(self.databricks_conn_id).terminate_cluster({"cluster_id": cluster_id})
        self.log.info("job cluster %s terminated", cluster_id)


# --- the Asset Bundle's job resources ---------------------------------------------------------

BUNDLE_DIR_NAME = "include/databricks"
LAKE_ROOT_PLACEHOLDER = "/__lakehouse_bundle_lake_root__"
JOBS_ROOT_PLACEHOLDER = "/__lakehouse_bundle_jobs_root__"
# Airflow templates in job parameters and the Databricks dynamic value each becomes in a bundle job
TEMPLATE_TO_DYNAMIC = {"{{ run_id }}": "{{job.run_id}}", "{{ ds }}": "{{job.start_time.iso_date}}"}


def bundle_parameters(parameters: Sequence[str]) -> list[str]:
    """A DAG task's parameters as a bundle job's: lake root and Airflow templates replaced."""
    out = []
    for value in parameters:
        value = value.replace(LAKE_ROOT_PLACEHOLDER, "${var.lake_root}")
        for template, dynamic in TEMPLATE_TO_DYNAMIC.items():
            value = value.replace(template, dynamic)
        if "{{ " in value or "{%" in value:
            raise DatabricksSettingsError(
                f"no Databricks equivalent for the Airflow template in {value[:120]!r}"
            )
        out.append(value)
    return out


def bundle_jobs(dag_folder) -> dict[str, dict]:
    """One bundle job per DAG with Spark tasks: its tasks as the DAG submits them, with its order.

    The DAGs are parsed with ``LAKEHOUSE_COMPUTE=databricks`` and placeholders for the lake and
    jobs roots, so each task's ``python_file`` and ``parameters`` come from the DAG's own code.
    """
    from airflow.dag_processing.dagbag import DagBag

    saved = dict(os.environ)
    os.environ.update(
        {
            "LAKEHOUSE_COMPUTE": "databricks",
            "DATABRICKS_JOBS_ROOT": JOBS_ROOT_PLACEHOLDER,
            "SPARK_LAKE_ROOT": LAKE_ROOT_PLACEHOLDER,
        }
    )
    for name in ("DATABRICKS_CLUSTER_ID", "DATABRICKS_JOB_CLUSTER", "DATABRICKS_NEW_CLUSTER"):
        os.environ.pop(name, None)
    try:
        bag = DagBag(dag_folder=str(dag_folder))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    if bag.import_errors:
        raise DatabricksSettingsError(f"DAGs failed to import in Databricks mode: {bag.import_errors}")
    jobs = {}
    for dag_id in sorted(bag.dags):
        dag = bag.dags[dag_id]
        spark = {t.task_id: t for t in dag.tasks if isinstance(t, DatabricksSparkJobOperator)}
        if not spark:
            continue
        tasks = []
        upstreams = {t: _spark_upstream(dag, t, spark) for t in spark}
        for task_id in sorted(spark, key=lambda t: (_depth(t, upstreams), t)):
            submitted = spark[task_id].tasks[0]["spark_python_task"]
            python_file = submitted["python_file"].replace(JOBS_ROOT_PLACEHOLDER, "../../../spark_jobs")
            task = {
                "task_key": task_key(task_id),
                "environment_key": ENVIRONMENT_KEY,
                "spark_python_task": {
                    "python_file": python_file,
                    "parameters": bundle_parameters(submitted["parameters"]),
                },
            }
            upstream = sorted(task_key(u) for u in upstreams[task_id])
            if upstream:
                task["depends_on"] = [{"task_key": key} for key in upstream]
                if spark[task_id].trigger_rule in ("none_failed", "none_failed_min_one_success"):
                    task["run_if"] = "NONE_FAILED"
            tasks.append(task)
        jobs[dag_id] = {
            "name": f"lakehouse-{dag_id}",
            "description": f"The Spark tasks of Airflow DAG {dag_id}, as the DAG submits them.",
            "tags": {"lakehouse_dag": dag_id},
            "max_concurrent_runs": 1,
            "environments": [{"environment_key": ENVIRONMENT_KEY, "spec": dict(DEFAULT_ENVIRONMENT)}],
            "tasks": tasks,
        }
    return jobs


def _depth(task_id: str, upstreams: dict[str, set[str]]) -> int:
    """The longest chain of Spark tasks before ``task_id``: tasks in an order that runs."""
    return max((_depth(u, upstreams) + 1 for u in upstreams[task_id]), default=0)


def _ancestors(dag, task_id: str) -> set[str]:
    seen, stack = set(), list(dag.get_task(task_id).upstream_task_ids)
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(dag.get_task(current).upstream_task_ids)
    return seen


def _spark_upstream(dag, task_id: str, spark: dict) -> set[str]:
    """The nearest Spark tasks upstream of ``task_id``, through any non-Spark tasks (a Spark task
    that is already upstream of another one found is left out: the job needs no such edge)."""
    found = {t for t in _ancestors(dag, task_id) if t in spark}
    implied = set().union(*(_ancestors(dag, t) for t in found)) if found else set()
    return found - implied


def bundle_resource_files(dag_folder) -> dict[str, str]:
    """``resources/<dag_id>.job.yml`` file name -> YAML text, for every DAG with Spark tasks."""
    import yaml

    files = {}
    for dag_id, job in bundle_jobs(dag_folder).items():
        header = (
            f"# Generated from dags/ by `python -m lakehouse.databricks bundle-resources`: do not edit.\n"
            f"# The Spark tasks of DAG {dag_id}, with the python_file and parameters the DAG submits.\n"
        )
        body = yaml.safe_dump({"resources": {"jobs": {dag_id: job}}}, sort_keys=False, width=100000)
        files[f"{dag_id}.job.yml"] = header + body
    return files


def main(argv: list[str] | None = None) -> None:
    import argparse
    from pathlib import Path

    from lakehouse import settings

    parser = argparse.ArgumentParser(prog="python -m lakehouse.databricks")
    parser.add_argument("command", choices=["bundle-resources"])
    parser.add_argument("--check", action="store_true", help="fail if the committed files differ")
    args = parser.parse_args(argv)
    folder = settings.REPO_ROOT / BUNDLE_DIR_NAME / "resources"
    files = bundle_resource_files(settings.REPO_ROOT / "dags")
    stale = [
        name
        for name, text in files.items()
        if not (folder / name).is_file() or (folder / name).read_text() != text
    ]
    if args.check:
        if stale:
            raise SystemExit(f"bundle job resources out of date: {', '.join(stale)} (run without --check)")
        return
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        Path(folder / name).write_text(text)
    print("\n".join(str(folder / name) for name in files))


if __name__ == "__main__":
    # the DAGs' operators are lakehouse.databricks's classes, not this __main__ module's copies
    from lakehouse.databricks import main as _main

    _main()
