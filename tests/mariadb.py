"""A private, throwaway MariaDB server for the test run (like ``lakehouse.pgserver`` for PostgreSQL).

``start_mariadb(base_dir)`` creates a data folder with ``mariadb-install-db`` (Debian's
``mariadb-server`` package) and starts ``mariadbd`` on a free port of 127.0.0.1, its socket and
log in the same folder, durability off, no binary log, no system option files read
(``--no-defaults``). Its ``root`` user has no password (on 127.0.0.1 only). Under root the server
runs as root (``--user=root``: it refuses otherwise). ``stop()`` kills it and deletes the folder.

Start it once per test run in the pytest-xdist controller and set ``LAKEHOUSE_TEST_MARIADB``
(``host:port``) for the workers; the ``mariadb_source`` fixture reads it (see :func:`address`).
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lakehouse.ports import free_port, listening

ENV_VAR = "LAKEHOUSE_TEST_MARIADB"
USER = "root"
HOST = "127.0.0.1"
START_TIMEOUT = 60
INSTALL_HINT = (
    "install MariaDB's server (Debian: apt-get install mariadb-server; `make prereqs` does it as root)"
)


class MariaDBUnavailableError(RuntimeError):
    """The server binaries are missing: a prerequisite."""


@dataclass
class MariaDBServer:
    host: str
    port: int
    folder: Path
    _process: subprocess.Popen = field(repr=False, default=None)
    _owner_pid: int = field(repr=False, default_factory=os.getpid)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self) -> None:
        """Kill the server (nothing in it is kept) and delete its folder. Idempotent."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=30)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _stop_at_exit(self) -> None:
        if os.getpid() == self._owner_pid:
            self.stop()


def address() -> tuple[str, int] | None:
    """``(host, port)`` from ``LAKEHOUSE_TEST_MARIADB``, or None when it is unset."""
    value = os.environ.get(ENV_VAR, "").strip()
    if not value:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"{ENV_VAR}={value!r}: expected host:port, e.g. 127.0.0.1:33306")
    return host, int(port)


def _binary(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if not found:
        raise MariaDBUnavailableError(f"{name} not found: {INSTALL_HINT}")
    return found


def start_mariadb(base_dir: Path) -> MariaDBServer:
    """Create and start a private MariaDB server (see the module's notes); stop it with ``stop()``."""
    install, server = _binary("mariadb-install-db"), _binary("mariadbd")
    base_dir = Path(base_dir)
    base_dir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="mariadb-", dir=base_dir))
    user = ["--user=root"] if os.geteuid() == 0 else []
    data, log = folder / "data", folder / "server.log"
    try:
        proc = subprocess.run(
            [
                install,
                "--no-defaults",
                f"--datadir={data}",
                *user,
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
            ],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"mariadb-install-db exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
        for _ in range(3):
            port = free_port()
            process = subprocess.Popen(
                [
                    server,
                    "--no-defaults",
                    f"--datadir={data}",
                    *user,
                    f"--port={port}",
                    f"--bind-address={HOST}",
                    f"--socket={folder / 'mysqld.sock'}",
                    f"--pid-file={folder / 'mysqld.pid'}",
                    f"--log-error={log}",
                    "--skip-name-resolve",
                    "--skip-log-bin",
                    "--innodb-flush-log-at-trx-commit=0",
                    "--innodb-doublewrite=0",
                    "--innodb-buffer-pool-size=64M",
                    "--character-set-server=utf8mb4",
                    "--collation-server=utf8mb4_unicode_ci",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline and process.poll() is None and not listening(HOST, port):
                time.sleep(0.1)
            if process.poll() is None and listening(HOST, port):
                result = MariaDBServer(host=HOST, port=port, folder=folder, _process=process)
                atexit.register(result._stop_at_exit)
                return result
            if process.poll() is None:
                process.kill()
                process.wait()
            output = log.read_text(errors="replace") if log.exists() else ""
            if "Address already in use" not in output:
                break
        raise RuntimeError(f"mariadbd did not start; its log:\n{output.strip()}")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


@pytest.fixture
def mariadb_source():
    """A new, empty MariaDB database (MySQL's schema) for this test only, as a ``SourceDB``."""
    import pymysql
    from prereq import missing
    from sourcedb import SourceDB

    where = address()
    if where is None:
        missing(f"no MariaDB server for the tests ({ENV_VAR} unset: {INSTALL_HINT})")
    host, port = where
    try:
        admin = pymysql.connect(host=host, port=port, user=USER, connect_timeout=3, autocommit=True)
    except pymysql.err.OperationalError as exc:
        missing(f"MariaDB is not reachable at {host}:{port} ({ENV_VAR}): {exc}")
    name = f"aw_{secrets.token_hex(6)}"
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        conn = {
            "conn_type": "mysql",
            "host": host,
            "port": port,
            "login": USER,
            "schema": name,
            "extra": {"client": "pymysql"},
        }
        source = SourceDB(
            url=f"mysql+pymysql://{USER}@{host}:{port}/{name}?charset=utf8mb4",
            conn=json.dumps(conn),
            name=name,
        )
        try:
            yield source
        finally:
            source.dispose()
            with admin.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        admin.close()
