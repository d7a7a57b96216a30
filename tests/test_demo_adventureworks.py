"""``make demo``'s AdventureWorks part as the demo runs it: its SQLite source generated once, one
``adventureworks_copy`` run (real Spark and Delta), then ``adventureworks_serve`` into a throwaway
private PostgreSQL server; every gold table holds every row of its source table."""

from __future__ import annotations

import json

import pytest

from lakehouse import aw_source, demo
from lakehouse.reporting import read_rows
from spark_jobs.common.naming import snake_case

pytestmark = pytest.mark.e2e


def test_the_demo_copies_every_table_of_its_sqlite_source_and_serves_it(
    airflow_db, lake, tmp_path, monkeypatch, capsys
):
    path = tmp_path / "demo" / "adventureworks.db"
    monkeypatch.setattr(demo, "AW_SOURCE", path)
    monkeypatch.setattr(demo, "_BAG", None)  # parsed again, with this test's settings
    # The demo sets these for its own source; monkeypatch puts back what was there.
    for name in ("AIRFLOW_CONN_ADVENTUREWORKS_SQL", "ADVENTUREWORKS_SOURCE_SCHEMA"):
        monkeypatch.setenv(name, "")
    monkeypatch.delenv("AIRFLOW_CONN_ADVENTUREWORKS_WAREHOUSE", raising=False)

    assert demo.adventureworks_source() is True
    assert json.loads(demo.os.environ["AIRFLOW_CONN_ADVENTUREWORKS_SQL"])["host"] == str(path)
    assert "Generated" in capsys.readouterr().out
    assert demo.adventureworks_source() is True  # a second demo uses the file it generated
    assert "Using the source database" in capsys.readouterr().out

    assert demo.demo_adventureworks(own_source=False)
    out = capsys.readouterr().out
    assert "DAG run adventureworks_copy 2025-01-02T00:00:00+00:00: success" in out
    serve_line = next(line for line in out.splitlines() if line.startswith("DAG run adventureworks_serve"))
    assert serve_line.endswith("success", 0, serve_line.rindex(" in "))

    generated = aw_source.rows()
    served = {
        line.split()[0].removeprefix("adventureworks."): int(line.split()[1])
        for line in out.split("Warehouse tables:")[1].splitlines()
        if line.startswith("adventureworks.")
    }
    assert served == {snake_case(t): len(rows) for t, rows in generated.items()}
    for table, rows in generated.items():
        gold = read_rows(str(lake / "gold" / "adventureworks" / snake_case(table)))
        assert len(gold) == len(rows), table
    assert not list(path.parent.glob("postgres*")), "the throwaway warehouse server is removed"
