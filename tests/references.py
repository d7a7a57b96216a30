"""Local reference lakes, built once per test session and shared by every test that compares with one.

Several end-to-end tests run a pipeline twice, locally as a *reference* and on a remote path
(Azurite, the Databricks Jobs API stand-in, the Data Factory stand-in), and compare gold. Where
two tests (often in different pytest-xdist workers) would make the same local run on the same
input, the first one asking for its key builds it and the others reuse it:

    folder, value = reference_lakes("netflix-http-...", build)

``build(folder)`` fills an empty folder and returns a picklable value (a run's task states, say);
the first caller runs it under an exclusive ``fcntl.flock`` on ``<key>.lock``, into
``<key>.building-<pid>``, pickles the value there and renames that folder to ``<key>`` (one atomic
rename: ``<key>`` exists only complete). Every later caller, in any worker, waits on the lock and
gets the finished folder and the unpickled value. A build that raises leaves nothing behind (its
folder is removed, the error propagates) and the next caller builds again. Each build is one line
in ``builds.log`` (key, pid, xdist worker, seconds) beside the references, each use one in ``uses.log``.

The folder is shared: callers treat it as read-only and copy it (``shutil.copytree``) to go on
from it. The cache is one per session: under xdist the workers' common base temporary folder (see
pytest-xdist's "Making session-scoped fixtures execute only once"), else the session's own.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import pickle
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

FOLDER = "0-references"
VALUE = "value.pickle"
KEY = re.compile(r"[a-z0-9][a-z0-9._-]{0,150}")


def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's reference folder: shared by the xdist workers of one run, new for each run."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # pytest-N/, the parent of every worker's pytest-N/popen-gwK
    folder = base / FOLDER
    folder.mkdir(exist_ok=True)
    return folder


def reference_lake(root: Path, key: str, build: Callable[[Path], object]) -> tuple[Path, object]:
    """The reference ``key`` under ``root``: built by ``build(folder)`` if no caller has yet."""
    if not KEY.fullmatch(key):
        raise ValueError(f"reference key {key!r}: use lower-case letters, digits, '.', '_' and '-'")
    final = root / key
    with open(root / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        if not final.is_dir():
            for stale in root.glob(f"{key}.building-*"):  # a build whose process was killed
                shutil.rmtree(stale)
            building = root / f"{key}.building-{os.getpid()}"
            building.mkdir()
            started = time.monotonic()
            try:
                value = build(building)
                (building / VALUE).write_bytes(pickle.dumps(value))
                building.rename(final)
            except BaseException:
                shutil.rmtree(building, ignore_errors=True)
                raise
            _log(root / "builds.log", key, f" seconds={time.monotonic() - started:.1f}")
        _log(root / "uses.log", key)
        return final, pickle.loads((final / VALUE).read_bytes())


def _log(path: Path, key: str, more: str = "") -> None:
    with open(path, "a") as log:
        log.write(f"{key} pid={os.getpid()} worker={os.environ.get('PYTEST_XDIST_WORKER', '-')}{more}\n")


def builds(root: Path) -> list[str]:
    """The keys built in this session so far, one entry per build (for the tests of this module)."""
    log = root / "builds.log"
    return [line.split()[0] for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture(scope="session")
def reference_lakes(tmp_path_factory) -> Callable[[str, Callable[[Path], object]], tuple[Path, object]]:
    """``reference_lakes(key, build) -> (folder, value)``, cached for the session (see the module)."""
    root = cache_dir(tmp_path_factory)
    return lambda key, build: reference_lake(root, key, build)


# -- the references the tests share ----------------------------------------------------------------

# Settings that would make a "local run" something else, or make it depend on which test asks
# first: the reference sets its own and unsets these while it runs
NOT_LOCAL = (
    "LAKE_CONN_ID",
    "SPARK_LAKE_ROOT",
    "DELTA_STORAGE_OPTIONS",
    "LAKEHOUSE_COMPUTE",
    "SPARK_CONN_ID",
    "LAKEHOUSE_INCLUDE_DIR",
    "SPARK_JOBS_DIR",
    # what a caller's fixture may have set to reach a fake cloud service (tests/fake_tls.py)
    "HTTPS_PROXY",
    "https_proxy",
    "REQUESTS_CA_BUNDLE",
    "SSL_CERT_FILE",
)


def netflix_http(
    reference_lakes, *, titles: int, seed: int, day: dt.datetime, retries: int | None = None
) -> tuple[Path, Path, object]:
    """The Netflix DAG run locally (HTTP landing from a FileServer) on
    ``write_netflix_sample(titles=, seed=)`` at ``day``: ``(lake, source, RunResult)``.

    ``retries`` is ``LAKEHOUSE_RETRIES`` (None: unset, the default). The run must succeed or
    nothing is kept. Lineage columns (``_source_file``) name the folder the lake was built in; a
    test that goes on from a copy meets them as a moved lake would.
    """
    from conftest import run_dag

    from lakehouse.devserver import FileServer
    from lakehouse.sample_data import write_netflix_sample

    def build(folder: Path):
        source, lake = folder / "source", folder / "lake"
        write_netflix_sample(source, titles=titles, seed=seed)
        lake.mkdir()
        with pytest.MonkeyPatch.context() as env, FileServer(source) as server:
            for name in NOT_LOCAL:
                env.delenv(name, raising=False)
            env.setenv("LAKE_ROOT", str(lake))
            env.setenv("NETFLIX_LANDING", "http")
            env.setenv("AIRFLOW_CONN_NETFLIX_HTTP", server.connection_uri())
            if retries is None:
                env.delenv("LAKEHOUSE_RETRIES", raising=False)
            else:
                env.setenv("LAKEHOUSE_RETRIES", str(retries))
            result = run_dag("netflix", logical_date=day)
        assert result.state == "success", ("reference run of netflix", result.tasks)
        return result

    key = f"netflix-http-titles{titles}-seed{seed}-{day:%Y%m%dT%H%M}-retries{retries}"
    folder, result = reference_lakes(key.lower(), build)
    return folder / "lake", folder / "source", result


def same_files(mine: Path, reference: Path) -> bool:
    """Whether two source folders hold the same files, byte for byte (a reference's input is the
    caller's input: the sample generator is seeded, this checks it)."""
    names = sorted(p.name for p in mine.iterdir())
    return names == sorted(p.name for p in reference.iterdir()) and all(
        (mine / n).read_bytes() == (reference / n).read_bytes() for n in names
    )
