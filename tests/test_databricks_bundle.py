"""The Databricks Asset Bundle (``include/databricks``): its structure, every path it names, and its
jobs against what the DAGs submit.

The Databricks CLI (``databricks bundle validate``) cannot be installed from the registries these
machines reach (not on PyPI: ``databricks-cli`` there is the legacy CLI without bundles; not on npm;
not served by the Go module proxy), so the structure is checked here instead.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, load_dag

from lakehouse import databricks

BUNDLE = ROOT / "include" / "databricks"
LAKE = "/lake/for/this/test"
RUN_ID = "manual__2026-11-22T00:00:00+00:00"
DS = "2026-11-22"


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def bundle() -> dict:
    return _yaml(BUNDLE / "databricks.yml")


@pytest.fixture(scope="module")
def resource_files(bundle) -> list[Path]:
    files = sorted({p for pattern in bundle["include"] for p in BUNDLE.glob(pattern)})
    assert files, bundle["include"]
    return files


def test_the_bundle_has_dev_and_prod_targets_and_syncs_the_jobs_and_metadata(bundle):
    assert bundle["bundle"]["name"] == "lakehouse"
    targets = bundle["targets"]
    assert set(targets) == {"dev", "prod"}
    assert targets["dev"]["mode"] == "development"
    assert targets["dev"]["default"] is True
    assert targets["prod"]["mode"] == "production"
    assert targets["prod"]["workspace"]["root_path"].startswith("/Workspace/Shared/")
    synced = [(BUNDLE / p).resolve() for p in bundle["sync"]["paths"]]
    for path in synced:
        assert path.is_dir(), path
        assert ROOT in path.parents  # inside the repository, whatever the bundle root
    assert ROOT / "spark_jobs" in synced
    pipelines = {p.parent.name for p in (ROOT / "include").glob("*/pipeline.yaml")}
    assert {p.name for p in synced if p.parent == ROOT / "include"} == pipelines  # every pipeline's metadata


def test_every_path_and_variable_the_resources_name_exists(bundle, resource_files):
    declared = set(bundle.get("variables", {}))
    for path in resource_files:
        text = path.read_text()
        assert set(re.findall(r"\$\{var\.(\w+)\}", text)) <= declared, path
        for job in _yaml(path)["resources"]["jobs"].values():
            environments = {e["environment_key"] for e in job.get("environments", [])}
            keys = [t["task_key"] for t in job["tasks"]]
            assert len(keys) == len(set(keys))
            for task in job["tasks"]:
                python_file = (path.parent / task["spark_python_task"]["python_file"]).resolve()
                assert python_file == ROOT / "spark_jobs" / "run.py", python_file
                assert python_file.is_file()
                assert task["environment_key"] in environments
                for dependency in task.get("depends_on", []):
                    assert dependency["task_key"] in keys[: keys.index(task["task_key"])]


def test_the_committed_job_resources_are_generated_from_the_dags(airflow_db, resource_files):
    generated = databricks.bundle_resource_files(ROOT / "dags")
    committed = {p.name: p.read_text() for p in resource_files if p.name.endswith(".job.yml")}
    assert set(committed) == set(generated)
    stale = [name for name in generated if committed[name] != generated[name]]
    assert not stale, f"{stale} differ from the DAGs: run `python -m lakehouse.databricks bundle-resources`"


def _as_submitted(value: str) -> str:
    """A bundle job's parameter with its variables and dynamic values filled as for one run."""
    return (
        value.replace("${var.lake_root}", LAKE)
        .replace("{{job.run_id}}", RUN_ID)
        .replace("{{job.start_time.iso_date}}", DS)
    )


def test_each_job_task_runs_what_the_dag_submits_for_that_task(airflow_db, monkeypatch, resource_files):
    """Checked against the DAG's own operators, parsed in Databricks mode and rendered as Airflow
    renders them: the same file (relative to the synced repository) and the same arguments."""
    from jinja2 import Template

    monkeypatch.setenv("LAKEHOUSE_COMPUTE", "databricks")
    monkeypatch.setenv("DATABRICKS_JOBS_ROOT", "/Workspace/Shared/.bundle/lakehouse/prod/files/spark_jobs")
    monkeypatch.setenv("SPARK_LAKE_ROOT", LAKE)
    for path in resource_files:
        for dag_id, job in _yaml(path)["resources"]["jobs"].items():
            dag = load_dag(dag_id)
            spark_tasks = {
                t.task_id: t for t in dag.tasks if type(t).__name__ == "DatabricksSparkJobOperator"
            }
            assert sorted(t["task_key"] for t in job["tasks"]) == sorted(spark_tasks)
            for task in job["tasks"]:
                (submitted,) = spark_tasks[task["task_key"]].tasks
                python_file = submitted["spark_python_task"]["python_file"]
                assert python_file == "/Workspace/Shared/.bundle/lakehouse/prod/files/spark_jobs/run.py"
                relative = (
                    (path.parent / task["spark_python_task"]["python_file"]).resolve().relative_to(ROOT)
                )
                assert python_file.endswith(
                    "/files/" + relative.as_posix()
                )  # the sync root is the repository
                rendered = [
                    Template(a).render(run_id=RUN_ID, ds=DS)
                    for a in submitted["spark_python_task"]["parameters"]
                ]
                assert [_as_submitted(a) for a in task["spark_python_task"]["parameters"]] == rendered
