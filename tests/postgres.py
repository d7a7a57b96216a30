"""A private PostgreSQL server for the test run: the launcher in ``lakehouse.pgserver``.

``start_postgres(base_dir)`` returns a :class:`PostgresServer` (``host``, ``port``, ``user``,
``address`` = ``host:port``, ``stop()``). Start it once per test run, in the pytest-xdist controller
(``pytest_configure`` without ``config.workerinput``), and set ``LAKEHOUSE_TEST_PG`` to its
``address`` before the workers start: they inherit it, and ``sourcedb`` and ``airflow_server`` read
it through :func:`address` (127.0.0.1:5432 when it is unset).
"""

from __future__ import annotations

from lakehouse.pgserver import (
    ENV_VAR,
    PostgresServer,
    PostgresUnavailableError,
    address,
    start_postgres,
)

__all__ = ["ENV_VAR", "PostgresServer", "PostgresUnavailableError", "address", "start_postgres"]
