"""The private PostgreSQL server the tests and the benchmark start (``lakehouse.pgserver``), the
``LAKEHOUSE_TEST_PG`` address, and the CI policy for missing prerequisites (``prereq.py``)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import psycopg2
import pytest
from postgres import ENV_VAR, PostgresUnavailableError, address, start_postgres
from prereq import missing


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    try:
        server = start_postgres(tmp_path_factory.mktemp("pg"))
    except PostgresUnavailableError as exc:
        missing(str(exc))
    yield server
    server.stop()


def _connect(server, dbname: str = "postgres"):
    conn = psycopg2.connect(
        host=server.host, port=server.port, user=server.user, dbname=dbname, connect_timeout=5
    )
    conn.autocommit = True
    return conn


def _refused(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return False
    except OSError:
        return True


def test_server_listens_on_loopback_with_trust_and_no_durability(server):
    assert server.host == "127.0.0.1"
    assert server.user == "postgres"
    assert server.port != 5432  # a free port, not the system cluster's
    assert server.address == f"127.0.0.1:{server.port}"
    conn = _connect(server)  # no password: trust authentication
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT version()")
            assert cursor.fetchone()[0].startswith("PostgreSQL ")
            settings = {}
            for name in ("port", "listen_addresses", "fsync", "synchronous_commit", "full_page_writes"):
                cursor.execute(f"SHOW {name}")
                settings[name] = cursor.fetchone()[0]
            cursor.execute(
                "SELECT current_setting('data_directory'), rolsuper"
                " FROM pg_roles WHERE rolname = current_user"
            )
            data_directory, superuser = cursor.fetchone()
    finally:
        conn.close()
    assert settings == {
        "port": str(server.port),
        "listen_addresses": "127.0.0.1",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
    }
    assert superuser
    # the cluster is the private one, in its own folder, owned by the user the server runs as
    data = Path(data_directory)
    assert data == server.folder / "data"
    assert (server.folder / f".s.PGSQL.{server.port}").is_socket()
    if os.geteuid() == 0:  # PostgreSQL refuses root: the server runs as the postgres OS user
        import pwd

        assert pwd.getpwuid(data.stat().st_uid).pw_name == "postgres"


def test_create_a_database_and_use_it(server):
    admin = _connect(server)
    try:
        with admin.cursor() as cursor:
            cursor.execute("CREATE DATABASE selftest")
        conn = _connect(server, "selftest")
        try:
            with conn.cursor() as cursor:
                cursor.execute("CREATE TABLE t (id int PRIMARY KEY, name text)")
                cursor.execute("INSERT INTO t VALUES (1, 'ä'), (2, 'b')")
                cursor.execute("SELECT id, name FROM t ORDER BY id")
                assert cursor.fetchall() == [(1, "ä"), (2, "b")]
                cursor.execute(
                    "SELECT current_database(), pg_encoding_to_char(encoding) FROM pg_database "
                    "WHERE datname = current_database()"
                )
                assert cursor.fetchone() == ("selftest", "UTF8")
        finally:
            conn.close()
        with admin.cursor() as cursor:
            cursor.execute("DROP DATABASE selftest WITH (FORCE)")
            cursor.execute("SELECT count(*) FROM pg_database WHERE datname = 'selftest'")
            assert cursor.fetchone()[0] == 0
    finally:
        admin.close()


def test_stop_ends_the_server_and_deletes_its_folder(tmp_path):
    try:
        server = start_postgres(tmp_path)
    except PostgresUnavailableError as exc:
        missing(str(exc))
    _connect(server).close()
    folder = server.folder
    assert (folder / "data" / "PG_VERSION").is_file()
    server.stop()
    assert _refused(server.host, server.port)
    assert not folder.exists()
    server.stop()  # idempotent


def test_address_from_the_environment(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert address() == ("127.0.0.1", 5432)
    monkeypatch.setenv(ENV_VAR, "127.0.0.1:54321")
    assert address() == ("127.0.0.1", 54321)
    monkeypatch.setenv(ENV_VAR, "db.example:6543")
    assert address() == ("db.example", 6543)
    for bad in ("127.0.0.1", "127.0.0.1:port", ":5432"):
        monkeypatch.setenv(ENV_VAR, bad)
        with pytest.raises(ValueError, match=ENV_VAR):
            address()


def test_missing_prerequisite_skips_locally_and_fails_in_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no widget"):
        missing("no widget")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"no widget \(CI=true: a missing prerequisite fails"):
        missing("no widget")
