"""A private, throwaway PostgreSQL server for the tests and ``make bench`` (development tooling).

``start_postgres(base_dir)`` creates a new cluster with the machine's PostgreSQL server binaries
(``/usr/lib/postgresql/<version>/bin``, as Debian installs them, else ``initdb`` on the PATH) and
starts it on a free port of 127.0.0.1: superuser ``postgres``, trust authentication, durability
off (``fsync``, ``synchronous_commit``, ``full_page_writes``), its Unix socket in its own folder.
Nothing of the system's configuration is read or changed, and no system cluster needs to run.
``stop()`` stops it at once (``pg_ctl stop -m immediate``) and deletes the cluster.

PostgreSQL refuses to run as root: as root, the cluster belongs to the ``postgres`` OS user (which
Debian's package creates) and every server command runs as that user (``runuser``), in a folder it
owns. That folder is under ``base_dir`` when that user can reach it and the socket path fits, else
under the system's temporary folder (pytest's temporary folders are private to root, for example).

The tests and the benchmark find the server through ``LAKEHOUSE_TEST_PG`` (``host:port``; user
``postgres``, trust), falling back to ``127.0.0.1:5432`` when it is unset: see :func:`address`.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from lakehouse.ports import free_port, listening

ENV_VAR = "LAKEHOUSE_TEST_PG"
DEFAULT_ADDRESS = ("127.0.0.1", 5432)
USER = "postgres"  # the database superuser, and the OS user that runs the server under root
HOST = "127.0.0.1"
START_TIMEOUT = 60
INSTALL_HINT = (
    "install PostgreSQL's server (Debian: apt-get install postgresql; `make prereqs` does it as root)"
)
# A Unix socket path holds at most 107 bytes: <folder>/.s.PGSQL.<port>
MAX_SOCKET_DIR = 107 - len("/.s.PGSQL.65535")


class PostgresUnavailableError(RuntimeError):
    """The server binaries, or the OS user to run them as, are missing: a prerequisite."""


@dataclass
class PostgresServer:
    host: str
    port: int
    user: str
    folder: Path  # the cluster's folder: data/, server.log and the socket; deleted by stop()
    _pg_ctl: str = field(repr=False, default="")
    _run_as: str | None = field(repr=False, default=None)
    _owner_pid: int = field(repr=False, default_factory=os.getpid)
    _stopped: bool = field(repr=False, default=False)

    @property
    def address(self) -> str:
        """``host:port``, the value for ``LAKEHOUSE_TEST_PG``."""
        return f"{self.host}:{self.port}"

    def stop(self) -> None:
        """Stop the server at once (nothing in it is kept) and delete its folder. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        _run(
            [self._pg_ctl, "stop", "-D", str(self.folder / "data"), "-m", "immediate", "-w", "-t", "30"],
            self._run_as,
            self.folder,
            check=False,
        )
        shutil.rmtree(self.folder, ignore_errors=True)

    def _stop_at_exit(self) -> None:
        if os.getpid() == self._owner_pid:  # not in a forked child
            self.stop()


def address() -> tuple[str, int]:
    """The test server's ``(host, port)``: ``LAKEHOUSE_TEST_PG`` (``host:port``), else 127.0.0.1:5432."""
    value = os.environ.get(ENV_VAR, "").strip()
    if not value:
        return DEFAULT_ADDRESS
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"{ENV_VAR}={value!r}: expected host:port, e.g. 127.0.0.1:54321")
    return host, int(port)


def server_binaries() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl``: the newest under /usr/lib/postgresql, else the PATH."""
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")

    def version(path: str) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", Path(path).parts[-3]))

    if found:
        return Path(max(found, key=version)).parent
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl", path=str(Path(initdb).parent)):
        return Path(initdb).parent
    raise PostgresUnavailableError(
        f"PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin "
        f"or on the PATH: {INSTALL_HINT}"
    )


def start_postgres(base_dir: Path) -> PostgresServer:
    """Create and start a private PostgreSQL cluster (see the module's notes); stop it with ``stop()``.

    Raises :class:`PostgresUnavailableError` when PostgreSQL is not installed (or, as root, there is no
    ``postgres`` OS user), and RuntimeError, with the server's log, when it does not start.
    The server is also stopped when this process exits, if ``stop()`` was not called.
    """
    bindir = server_binaries()
    run_as = _server_user()
    folder = _cluster_folder(Path(base_dir), run_as)
    try:
        data, log = folder / "data", folder / "server.log"
        _run(
            [
                str(bindir / "initdb"),
                *("-A", "trust", "-U", USER, "-D", str(data)),
                *("--no-locale", "-E", "UTF8", "--no-sync"),
            ],
            run_as,
            folder,
        )
        pg_ctl = str(bindir / "pg_ctl")
        port = _start(pg_ctl, data, log, folder, run_as)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    server = PostgresServer(host=HOST, port=port, user=USER, folder=folder, _pg_ctl=pg_ctl, _run_as=run_as)
    atexit.register(server._stop_at_exit)
    return server


def _server_user() -> str | None:
    """The OS user to run the server as: None (this one), or ``postgres`` under root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(USER)
    except KeyError:
        raise PostgresUnavailableError(
            f"running as root, and PostgreSQL refuses to: there is no {USER!r} OS user to run it as "
            f"({INSTALL_HINT}, which creates it)"
        ) from None
    return USER


def _cluster_folder(base_dir: Path, run_as: str | None) -> Path:
    """A new folder for the cluster, owned by the user that runs the server."""
    candidates = []
    if len(str(base_dir.resolve())) + len("/pg-xxxxxxxx") <= MAX_SOCKET_DIR:
        base_dir.mkdir(parents=True, exist_ok=True)
        candidates.append(base_dir)
    candidates.append(Path(tempfile.gettempdir()))
    for parent in candidates:
        folder = Path(tempfile.mkdtemp(prefix="pg-", dir=parent))
        if run_as is None:
            return folder
        user = pwd.getpwnam(run_as)
        os.chown(folder, user.pw_uid, user.pw_gid)
        if _run(["test", "-w", str(folder), "-a", "-x", str(folder)], run_as, None, check=False) == 0:
            return folder
        folder.rmdir()  # the server's user cannot reach it: a folder above is private
    raise PostgresUnavailableError(f"no folder that the {run_as!r} OS user can write to (tried {candidates})")


def _start(pg_ctl: str, data: Path, log: Path, folder: Path, run_as: str | None) -> int:
    """Start the server on a free port (another, if something took the port meanwhile)."""
    for _ in range(3):
        port = free_port()
        options = (
            f"-p {port} -k {shlex.quote(str(folder))} -c listen_addresses={HOST}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        code = _run(
            [pg_ctl, "start", "-D", str(data), "-l", str(log), "-w", "-t", str(START_TIMEOUT), "-o", options],
            run_as,
            folder,
            check=False,
        )
        if code == 0 and listening(HOST, port):
            return port
        _run([pg_ctl, "stop", "-D", str(data), "-m", "immediate"], run_as, folder, check=False)
        output = log.read_text(errors="replace") if log.exists() else ""
        if "could not bind" not in output and "already in use" not in output:
            break
        time.sleep(0.2)
    raise RuntimeError(f"PostgreSQL did not start ({pg_ctl} start exited {code}); its log:\n{output.strip()}")


def _run(command: list[str], run_as: str | None, cwd: Path | None, check: bool = True) -> int:
    """Run a command (as ``run_as``), its output captured; with ``check``, a failure raises with it."""
    if run_as is not None:
        if shutil.which("runuser"):
            command = ["runuser", "-u", run_as, "--", *command]
        else:
            command = ["su", run_as, "-s", "/bin/sh", "-c", shlex.join(command)]
    proc = subprocess.run(
        command,
        cwd=cwd or "/",
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT * 2,
        check=False,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{shlex.join(command)} exited {proc.returncode}:\n{(proc.stdout + proc.stderr).strip()}"
        )
    return proc.returncode
