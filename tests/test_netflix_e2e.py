"""The Netflix DAG end to end with dag.test(): real Airflow, local Spark, Delta tables, HTTP."""

from __future__ import annotations

import datetime as dt
import shutil

import pytest
import references
from conftest import clear_and_rerun, run_dag, shared_data
from lakecheck import audit, count, csv_rows, raw_files, rows, snapshot, versions

from lakehouse.devserver import FileServer
from lakehouse.sample_data import write_netflix_sample

pytestmark = pytest.mark.e2e
pytest_plugins = ["references"]  # the reference_lakes fixture: local runs shared across tests

SUNDAY = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)  # ISO weekday 7: silver titles is due
MONDAY = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
NEXT_SUNDAY = dt.datetime(2026, 11, 29, tzinfo=dt.UTC)
FILES = {
    "titles": "netflix_titles.csv",
    "cast": "netflix_cast.csv",
    "category": "netflix_category.csv",
    "countries": "netflix_countries.csv",
    "directors": "netflix_directors.csv",
}


def expected_gold(table: str, data: list[dict]) -> int:
    """Rows that pass the drop expectations: a show_id, and for titles a title too."""
    keep = [r for r in data if (r["show_id"] or "").strip()]
    if table == "titles":
        keep = [r for r in keep if r["title"]]
    return len(keep)


def assert_every_row_accounted(lake, source, run_id):
    counts = audit(lake, run_id)
    for table, file_name in FILES.items():
        data = csv_rows(source / file_name)
        assert count(lake, f"bronze.{table}") == len(data), table
        assert counts[("bronze", table, "rows_ingested")] == len(data), table
        assert counts[("bronze", table, "rows_rescued")] == 0, table
        assert count(lake, f"silver.{table}") == len(data), table
        gold = expected_gold(table, data)
        assert count(lake, f"gold.{table}") == gold, table
        assert counts[("gold", table, "rows_dropped")] == len(data) - gold, table


def test_generated_files_flow_then_nothing_then_only_the_changed_file(
    airflow_db, lake, tmp_path, monkeypatch, reference_lakes
):
    source = tmp_path / "source"
    write_netflix_sample(source, titles=120, seed=3)
    # The first run is the session's reference run of these files on SUNDAY (shared with
    # test_azure_lake_e2e): its lake is copied into this test's lake, which goes on from there.
    reference, reference_source, first = references.netflix_http(
        reference_lakes, titles=120, seed=3, day=SUNDAY
    )
    assert references.same_files(source, reference_source)
    # a copied lake, as a moved one: silver takes the newest raw file by name, whatever its root
    shutil.copytree(reference, lake, dirs_exist_ok=True)
    with FileServer(source) as server:
        monkeypatch.setenv("AIRFLOW_CONN_NETFLIX_HTTP", server.connection_uri())

        assert first.state == "success", first.tasks
        assert first.tasks["silver_titles"] == "success"
        assert first.tasks["titles_not_due"] == "skipped"
        assert_every_row_accounted(lake, source, first.run_id)
        multiline = [r["title"] for r in csv_rows(source / "netflix_titles.csv") if "\n" in r["title"]]
        assert multiline  # the generator writes a title with a line break inside quotes
        assert set(multiline) <= {r["title"] for r in rows(lake, "gold.titles")}
        after_first = versions(lake)
        assert set(after_first) == {
            *(f"{layer}.{t}" for layer in ("bronze", "silver", "gold") for t in FILES),
            "gold._audit",
            "gold._quality",
            "gold._releases",
        }

        # No source change, on a Monday: silver titles is not due; nothing is rewritten.
        second = run_dag("netflix", logical_date=MONDAY)
        assert second.state == "success", second.tasks
        assert second.tasks["silver_titles"] == "skipped"
        assert second.tasks["titles_not_due"] == "success"
        assert versions(lake) == after_first
        assert audit(lake, second.run_id) == {}
        assert all(len(raw_files(lake, t)) == 1 for t in FILES)

        # One file changes: only it flows through bronze, silver and gold.
        titles = source / "netflix_titles.csv"
        with open(titles, "a", encoding="utf-8", newline="") as handle:
            handle.write('95,,Movie,Late Arrival: Redux,1/2/2021,2020,PG-13,"New, late",89999999\n')
        gold_titles_before = count(lake, "gold.titles")
        third = run_dag("netflix", logical_date=NEXT_SUNDAY)
        assert third.state == "success", third.tasks
        after_third = versions(lake)
        changed = {name for name, version in after_third.items() if version != after_first[name]}
        assert changed == {
            *("bronze.titles", "silver.titles", "gold.titles"),
            *("gold._audit", "gold._quality", "gold._releases"),
        }
        assert all(after_third[name] == after_first[name] + 1 for name in changed - {"gold._audit"})
        assert count(lake, "gold.titles") == gold_titles_before + 1
        assert count(lake, "bronze.titles") == 2 * 120 + 1  # both landed versions, with lineage
        assert len(raw_files(lake, "titles")) == 2
        assert audit(lake, third.run_id)[("bronze", "titles", "rows_ingested")] == 121
        short = {r["short_title"] for r in rows(lake, "gold.titles")}
        assert "Late Arrival" in short

        # Clearing that run and running it again leaves every table exactly as it was.
        before = snapshot(lake)
        again = clear_and_rerun("netflix", logical_date=NEXT_SUNDAY)
        assert again.run_id == third.run_id
        assert again.state == "success", again.tasks
        assert snapshot(lake) == before


def test_real_netflix_files_every_row_accounted(airflow_db, lake, monkeypatch):
    source = shared_data("netflix")
    with FileServer(source) as server:
        monkeypatch.setenv("AIRFLOW_CONN_NETFLIX_HTTP", server.connection_uri())
        result = run_dag("netflix", logical_date=MONDAY, conf={"force_silver_titles": True})
    assert result.state == "success", result.tasks
    assert result.tasks["silver_titles"] == "success"
    assert_every_row_accounted(lake, source, result.run_id)
    # The real quirks: a BOM before each header, CRLF line ends, four empty show_ids.
    titles = csv_rows(source / "netflix_titles.csv")
    assert count(lake, "bronze.titles") == len(titles) == 6236
    quality = {(r["table"], r["rule"]): r for r in rows(lake, "gold._quality")}
    assert quality[("titles", "show_id_not_null")]["rows_failing"] == 4
    assert quality[("titles", "show_id_not_null")]["status"] == "dropped"
    assert (source / "netflix_titles.csv").read_bytes().count(b"\r\n") == len(titles) + 1
    silver = rows(lake, "silver.titles")
    assert not [r for r in silver if (r["show_id"] or "").endswith("\r")]
    assert {r["show_id"] for r in silver} == {r["show_id"] or None for r in titles}
    # the run's expectation results travel with the gold Asset's event
    extra = latest_asset_event_extra("netflix.gold.titles")
    assert extra["run_id"] == result.run_id
    assert extra["location"] == str(lake / "gold" / "netflix" / "titles")
    assert extra["delta_version"] == 0
    by_rule = {e["rule"]: e for e in extra["expectations"]}
    assert by_rule["show_id_not_null"]["rows_dropped"] == 4
    assert by_rule["known_type"]["status"] == quality[("titles", "known_type")]["status"]


def latest_asset_event_extra(asset_name: str) -> dict:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = (
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == asset_name)
            .order_by(AssetEvent.id.desc())
        )
        return dict(session.scalars(query).first().extra)


def _broken_titles(text: str, keep_rows: int) -> str:
    """A negative duration row, ``keep_rows`` whole lines, then a row cut after three fields."""
    lines = text.split("\n")
    negative = "-5,,Movie,Negative Length,1/1/2020,2020,R,broken clock,70000001"
    partial = ",".join(lines[keep_rows + 2].split(",")[:3])
    return "\n".join([lines[0], negative, *lines[1 : keep_rows + 1]]) + "\n" + partial


def test_truncated_file_is_rescued_and_a_failed_expectation_writes_no_gold(
    airflow_db, lake, tmp_path, monkeypatch
):
    source = tmp_path / "source"
    write_netflix_sample(source, titles=60, seed=5)
    titles = source / "netflix_titles.csv"
    good = titles.read_text(encoding="utf-8-sig")
    titles.write_text(_broken_titles(good, keep_rows=40), encoding="utf-8-sig")
    parsed = csv_rows(titles)
    monkeypatch.setenv("LAKEHOUSE_RETRIES", "0")

    with FileServer(source) as server:
        monkeypatch.setenv("AIRFLOW_CONN_NETFLIX_HTTP", server.connection_uri())
        failed = run_dag("netflix", logical_date=SUNDAY)
        assert failed.state == "failed"
        assert failed.tasks["silver_titles"] == "success"
        assert failed.tasks["gold"] == "failed"
        counts = audit(lake, failed.run_id)
        # every row of the truncated file reached bronze; the cut row was rescued, not lost
        assert count(lake, "bronze.titles") == len(parsed)
        assert counts[("bronze", "titles", "rows_rescued")] == 1
        assert counts[("silver", "titles", "rows_rescued_not_promoted")] == 1
        assert count(lake, "silver.titles") == len(parsed) - 1
        rescued = [r for r in rows(lake, "bronze.titles") if r["_rescued_data"]]
        assert len(rescued) == 1
        # the fail expectation stopped gold before any table was written, and says why
        assert not any(name.startswith("gold.") and not name.startswith("gold._") for name in versions(lake))
        quality = {(r["table"], r["rule"]): r for r in rows(lake, "gold._quality")}
        assert quality[("titles", "duration_not_negative")]["status"] == "failed"
        assert quality[("titles", "duration_not_negative")]["rows_failing"] == 1

        # The source is fixed: the next run lands it, and gold is built from it.
        titles.write_text(good, encoding="utf-8-sig")
        fixed = run_dag("netflix", logical_date=NEXT_SUNDAY)
        assert fixed.state == "success", fixed.tasks
        assert count(lake, "gold.titles") == expected_gold("titles", csv_rows(titles))


def test_http_error_fails_the_file_and_nothing_downstream_runs(airflow_db, lake, tmp_path, monkeypatch):
    source = tmp_path / "source"
    write_netflix_sample(source, titles=30, seed=9)
    monkeypatch.setenv("LAKEHOUSE_RETRIES", "0")
    with FileServer(source) as server:
        server.faults["netflix_cast.csv"] = 500
        monkeypatch.setenv("AIRFLOW_CONN_NETFLIX_HTTP", server.connection_uri())
        result = run_dag("netflix", logical_date=SUNDAY)
    assert result.state == "failed"
    assert result.tasks["fetch_http_file[1]"] == "failed"  # netflix_cast.csv
    assert all(result.tasks[f"fetch_http_file[{i}]"] == "success" for i in (0, 2, 3, 4))
    for task in ("titles_landed", "bronze", "silver_lookups", "gold", "report_run"):
        assert result.tasks[task] == "upstream_failed", task
    assert versions(lake) == {}  # no Delta table was started
    assert raw_files(lake, "cast") == []
    assert len(raw_files(lake, "titles")) == 1  # complete files that did arrive are kept in raw
