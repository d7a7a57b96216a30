"""Source databases for tests: a fresh PostgreSQL database, or a SQLite file, per test.

Register them in a test module with ``pytest_plugins = ["sourcedb"]`` (importing the fixture
functions instead makes ruff flag every test that takes them as a parameter, F811).
Each yields a :class:`SourceDB`: a SQLAlchemy URL, the same database as an Airflow connection (JSON,
for ``AIRFLOW_CONN_<ID>``), and engines that are disposed of afterwards.

PostgreSQL is the test run's private server, at ``LAKEHOUSE_TEST_PG`` (``host:port``; see
``postgres.py``), else 127.0.0.1:5432; user postgres, trust authentication. Each test gets its own
database ``spotify_<random>``, dropped afterwards with ``WITH (FORCE)`` so that a connection a test
left open cannot keep it. Where the server is not reachable the test is skipped, naming the server
(under ``CI=true`` it fails: see ``prereq.py``).
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field

import pytest
from postgres import ENV_VAR, address
from prereq import missing

PG_USER = "postgres"


@dataclass
class SourceDB:
    url: str  # SQLAlchemy URL
    conn: str  # an Airflow connection as JSON
    name: str  # the database name, or the SQLite file's path
    _engines: list = field(default_factory=list)

    def engine(self, **kwargs):
        """A SQLAlchemy engine on this database, disposed of when the test ends."""
        import sqlalchemy as sa

        engine = sa.create_engine(self.url, **kwargs)
        self._engines.append(engine)
        return engine

    def dispose(self) -> None:
        for engine in self._engines:
            engine.dispose()


def _admin(host: str, port: int):
    """An autocommit connection to the server's ``postgres`` database, or a skip naming the server."""
    import psycopg2

    try:
        conn = psycopg2.connect(host=host, port=port, user=PG_USER, dbname="postgres", connect_timeout=3)
    except psycopg2.OperationalError as exc:
        reason = " ".join(str(exc).split())
        source = f"from {ENV_VAR}" if os.environ.get(ENV_VAR) else f"{ENV_VAR} unset"
        missing(f"PostgreSQL is not reachable at {host}:{port} ({source}) as user {PG_USER}: {reason}")
    conn.autocommit = True
    return conn


@pytest.fixture
def postgres_source():
    """A new, empty PostgreSQL database for this test only."""
    from psycopg2 import sql

    name = f"spotify_{secrets.token_hex(6)}"
    host, port = address()
    admin = _admin(host, port)
    try:
        with admin.cursor() as cursor:
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        conn = {"conn_type": "postgres", "host": host, "port": port, "login": PG_USER, "schema": name}
        source = SourceDB(
            url=f"postgresql+psycopg2://{PG_USER}@{host}:{port}/{name}",
            conn=json.dumps(conn),
            name=name,
        )
        try:
            yield source
        finally:
            source.dispose()
            with admin.cursor() as cursor:
                cursor.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
    finally:
        admin.close()


@pytest.fixture
def sqlite_source(tmp_path):
    """A new SQLite file for this test only.

    The provider's ``SqliteHook.get_uri`` turns the connection ``{"conn_type": "sqlite", "host":
    "/abs/path.db"}`` into ``sqlite:////abs/path.db`` (Airflow's ``sqlite:///abs/path.db`` with one
    more slash), so the host is the file's absolute path; ``get_conn`` opens ``file:/abs/path.db``.
    """
    path = (tmp_path / "spotify.db").resolve()
    source = SourceDB(
        url=f"sqlite:///{path}", conn=json.dumps({"conn_type": "sqlite", "host": str(path)}), name=str(path)
    )
    try:
        yield source
    finally:
        source.dispose()
