"""Azurite, the Azure Storage emulator, as a session fixture: a blob service on 127.0.0.1.

The npm package is installed once into a cache folder outside the repository
(``~/.cache/lakehouse-azurite``, or ``$LAKEHOUSE_AZURITE_CACHE``), so later sessions only start
it (about 2 s). Without node/npm, or when the install fails, the tests that need it skip and say
exactly what is missing (under ``CI=true`` they fail: see ``prereq.py``).

``--disableTelemetry`` keeps Azurite off the internet; ``--skipApiVersionCheck`` lets the newest
azure-storage-blob talk to it (its API version is newer than Azurite knows).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prereq import missing

from lakehouse.ports import free_port, listening

AZURITE_VERSION = "3.37.0"
ACCOUNT = "devstoreaccount1"
# The emulator's well-known account key, published in Azurite's README (not a secret).
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
INSTALL_TIMEOUT = 600
START_TIMEOUT = 30
NODE_MISSING = (
    "node/npm not found: Azurite (npm package azurite) is needed for the Azure storage tests"
    " (Debian: apt-get install nodejs npm)"
)


@dataclass(frozen=True)
class Azurite:
    host: str
    port: int
    location: Path

    @property
    def blob_endpoint(self) -> str:
        return f"http://{self.host}:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_endpoint};"
        )

    @property
    def delta_storage_options(self) -> dict[str, str]:
        """delta-rs (object_store) options for this emulator on any port, no environment needed.

        ``azure_storage_use_emulator`` alone means port 10000 (or ``$AZURITE_BLOB_STORAGE_URL``);
        an explicit account, key and endpoint work on any port. ``allow_http`` is the generic
        client option: the Azure-prefixed ``azure_storage_allow_http`` is not accepted for it.
        """
        return {
            "azure_storage_account_name": ACCOUNT,
            "azure_storage_account_key": ACCOUNT_KEY,
            "azure_storage_endpoint": self.blob_endpoint,
            "allow_http": "true",
        }

    def airflow_connection(self) -> str:
        """The value for ``AIRFLOW_CONN_<ID>``: read by the Azure provider's ``abfs`` filesystem
        (``connection_string`` extra, which ``get_fs`` checks first) and by ``WasbHook``."""
        return json.dumps({"conn_type": "wasb", "extra": {"connection_string": self.connection_string}})


def cache_dir() -> Path:
    return Path(os.environ.get("LAKEHOUSE_AZURITE_CACHE") or Path.home() / ".cache" / "lakehouse-azurite")


def _installed_version(cache: Path) -> str | None:
    try:
        return json.loads((cache / "node_modules" / "azurite" / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def _first_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if not line.lower().startswith("npm warn")]
    return (errors or lines or ["npm printed nothing"])[0]


def install_azurite() -> Path:
    """The ``azurite-blob`` executable, installed into the cache folder if needed, or a skip (CI: fail)."""
    if shutil.which("node") is None:
        missing(NODE_MISSING)
    cache = cache_dir()
    binary = cache / "node_modules" / ".bin" / "azurite-blob"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".install.lock", "w") as lock:  # two sessions must not install at once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.exists() and _installed_version(cache) == AZURITE_VERSION:
            return binary
        npm = shutil.which("npm")
        if npm is None:
            missing(NODE_MISSING)
        command = [npm, "install", "--no-audit", "--no-fund", "--prefix", str(cache)]
        try:
            proc = subprocess.run(
                [*command, f"azurite@{AZURITE_VERSION}"],
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            missing(f"npm install azurite@{AZURITE_VERSION} failed: no result within {INSTALL_TIMEOUT} s")
        if proc.returncode != 0 or not binary.exists():
            output = proc.stderr + "\n" + proc.stdout
            missing(f"npm install azurite@{AZURITE_VERSION} failed: {_first_line(output)}")
        return binary


def _start(binary: Path, host: str, location: Path, log_path: Path) -> tuple[subprocess.Popen, int]:
    """Start Azurite on a free port; retried if another process took the port meanwhile."""
    problem = ""
    for _ in range(3):
        port = free_port(host)
        log = open(log_path, "ab")  # noqa: SIM115 (closed with the process below)
        proc = subprocess.Popen(
            [
                str(binary),
                *("--blobHost", host, "--blobPort", str(port), "--location", str(location)),
                *("--disableTelemetry", "--skipApiVersionCheck", "--silent"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            if listening(host, port, timeout=0.5):
                return proc, port
            time.sleep(0.1)
        if proc.poll() is None:
            _stop(proc)
            problem = f"not listening on {host}:{port} within {START_TIMEOUT} s"
            break
        problem = f"exited with code {proc.returncode}"
    output = log_path.read_text(errors="replace").strip()
    pytest.fail(f"Azurite {AZURITE_VERSION} did not start ({problem}); its output:\n{output}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def azurite(tmp_path_factory) -> Iterator[Azurite]:
    """A running Azurite blob service on 127.0.0.1 (a free port), stopped at the end of the session."""
    binary = install_azurite()
    host = "127.0.0.1"
    location = tmp_path_factory.mktemp("azurite")
    (location / "data").mkdir()
    proc, port = _start(binary, host, location / "data", location / "azurite.log")
    try:
        yield Azurite(host=host, port=port, location=location / "data")
    finally:
        _stop(proc)
