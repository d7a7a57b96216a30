"""A Spark job as an Airflow task: a Spark Connect client or a Databricks run, by configuration.

Both run the same entry point, ``spark_jobs/run.py``, with the same arguments, so a DAG does not
change when ``LAKEHOUSE_COMPUTE`` moves it from a laptop to Databricks:

* ``local`` (default): the task is a Spark Connect client of the server behind connection
  ``SPARK_CONN_ID`` (``spark_connect_default``), through the Spark provider's ``PySparkOperator``:
  ``run.py``'s ``main`` runs in the task with that session, so a job costs its work, not a JVM start.
* ``databricks``: a one-time Databricks run of the deployed ``run.py`` as a ``spark_python_task``, on
  serverless compute, the DAG run's job cluster or an existing cluster (``lakehouse.databricks``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from airflow.providers.apache.spark.operators.spark_pyspark import PySparkOperator

from lakehouse import settings


class SparkJobError(RuntimeError):
    """A Spark job failed, was killed or lost its server; the message names the job and tables
    and says which of these happened (never the job's configuration)."""


BAD_INPUT = "BadInputError"  # spark_jobs.common.errors: input a retry cannot fix


def _is_bad_input(exc: BaseException) -> bool:
    """Whether a job's error is (a subclass of) ``spark_jobs.common.errors.BadInputError``.

    Matched by class name along the MRO, so this module imports nothing from the jobs' package.
    Under Databricks, ``lakehouse.databricks`` reads the class from the run's error instead.
    """
    return any(cls.__name__ == BAD_INPUT for cls in type(exc).__mro__)


def job_arguments(
    pipeline: str,
    job: str,
    config: dict,
    tables: list[str] | None = None,
    extra_args: list[str] | None = None,
) -> list[str]:
    args = [
        f"{pipeline}.{job}",
        "--lake-root",
        settings.spark_lake_root(),
        "--run-id",
        "{{ run_id }}",
        "--config",
        json.dumps(config, sort_keys=True, separators=(",", ":"), default=str),
    ]
    if tables:
        args += ["--tables", ",".join(tables)]
    return args + list(extra_args or [])


def _describe(argv: Sequence[str]) -> str:
    """``netflix.silver (tables cast, category)``: the job and what it was asked to write."""
    tables = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--tables"), "")
    return argv[0] + (f" (tables {tables.replace(',', ', ')})" if tables else "")


def _cause(exc: BaseException) -> str:
    text = str(exc).split("\n\nJVM stacktrace:", 1)[0]
    return " ".join(text.split())[:800] or type(exc).__name__


def run_spark_job(argv: list[str], spark=None) -> None:
    """Run ``spark_jobs/run.py``'s ``main`` on ``spark``; a failure names the job and its cause."""
    import sys

    root = str(settings.spark_jobs_dir().parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    from airflow.sdk.exceptions import AirflowFailException

    from lakehouse.storage import spark_lake_session
    from spark_jobs.run import main

    try:
        with spark_lake_session(list(argv), spark) as (job_argv, job_spark):
            main(job_argv, spark=job_spark)
    except SystemExit as exc:  # argparse's usage errors
        raise SparkJobError(f"Spark job {_describe(argv)}: invalid arguments ({exc})") from exc
    except Exception as exc:
        if _is_bad_input(exc):
            raise AirflowFailException(
                f"Spark job {_describe(argv)} failed on bad input, not retried: "
                f"{type(exc).__name__}: {_cause(exc)}"
            ) from exc
        if _server_lost(exc):
            raise SparkJobError(
                f"Spark job {_describe(argv)}: lost its Spark Connect server (it was killed, stopped "
                f"or is unreachable: {_cause(exc)})"
            ) from exc
        raise SparkJobError(
            f"Spark job {_describe(argv)} failed: {type(exc).__name__}: {_cause(exc)}"
        ) from exc


def _server_lost(exc: BaseException) -> bool:
    """Whether the client lost the server (it stopped, was killed or is unreachable)."""
    text = str(exc)
    return any(marker in text for marker in ("StatusCode.UNAVAILABLE", "failed to connect to all addresses"))


class SparkConnectJobOperator(PySparkOperator):
    """``spark_jobs/run.py <pipeline>.<job> ARGS`` as a Spark Connect client, in the task's process.

    The provider's ``PySparkOperator`` builds the session from the ``spark_connect`` connection and
    stops it afterwards; a killed task (or one that times out) interrupts what it left running on
    the server, so nothing keeps writing after the task has ended.
    """

    template_fields: Sequence[str] = (*PySparkOperator.template_fields,)
    ui_color = "#f7c873"

    def __init__(self, *, argv: list[str], **kwargs):
        super().__init__(python_callable=run_spark_job, op_kwargs={"argv": argv}, **kwargs)
        self._argv = list(argv)
        self._killed = False

    def execute_callable(self):
        from airflow.sdk.exceptions import AirflowFailException, AirflowTaskTimeout
        from pyspark.sql import SparkSession

        self._killed = False
        try:
            return super().execute_callable()
        except AirflowTaskTimeout as exc:
            # execution_timeout: Airflow interrupts this thread, then calls on_kill
            raise AirflowTaskTimeout(
                f"Spark job {_describe(self._argv)} timed out: it ran longer than its "
                f"execution_timeout of {self.execution_timeout}; its work on the Spark Connect "
                "server was interrupted"
            ) from exc
        except SparkJobError as exc:
            if self._killed:  # on_kill interrupted the job's operations: that is why it failed
                raise SparkJobError(
                    f"Spark job {_describe(self._argv)} was killed (the task was stopped: marked "
                    "failed or success, cleared, or sent SIGTERM); its work on the Spark Connect "
                    "server was interrupted"
                ) from exc.__cause__
            raise
        except AirflowFailException:
            raise
        except BaseException:
            # any other interruption of this thread: stop the server's work too
            self._interrupt(SparkSession.getActiveSession())
            raise

    def on_kill(self) -> None:
        from pyspark.sql import SparkSession

        self._killed = True
        self.log.warning("Spark job %s: killed, interrupting its work on the server", _describe(self._argv))
        self._interrupt(SparkSession.getActiveSession())

    def _interrupt(self, session) -> None:
        if session is None:
            return
        try:
            interrupted = session.interruptAll()
            self.log.warning("interrupted %s operation(s) on the Spark Connect server", len(interrupted))
        except Exception as exc:  # the server may be gone already
            self.log.warning("could not interrupt the Spark Connect session: %s", _cause(exc))


def spark_job(
    task_id: str,
    pipeline: str,
    job: str,
    config: dict,
    *,
    tables: list[str] | None = None,
    extra_args: list[str] | None = None,
    **kwargs,
):
    """An operator running ``spark_jobs/<pipeline>/<job>.py`` on the configured compute.

    ``extra_args`` are appended to the job's arguments and may be templated (``{{ ds }}``).
    """
    args = job_arguments(pipeline, job, config, tables, extra_args)
    doc = f"Spark job `{pipeline}.{job}`" + (f" for tables {', '.join(tables)}" if tables else "")
    kwargs.setdefault("doc_md", doc)
    if settings.compute() == "databricks":
        from lakehouse import databricks

        return databricks.spark_job_operator(task_id, pipeline, job, args, **kwargs)
    return SparkConnectJobOperator(
        task_id=task_id,
        conn_id=settings.spark_conn_id(),
        argv=args,
        config_kwargs={"spark.app.name": f"{pipeline}.{job}"},
        **kwargs,
    )
