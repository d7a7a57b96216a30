"""The pipelines with the lake in (emulated) Azure storage: same DAGs, same input, same gold tables
as with a local lake.

Only configuration differs from a local run: ``LAKE_ROOT`` is a documented Azure form and
``LAKE_CONN_ID`` names an Airflow connection (Azurite's connection string). The Airflow side
(landing, records, sensors, reports) goes through ``ObjectStoragePath`` and the Azure provider;
the Spark jobs go through hadoop-azure's ABFS driver and delta-spark, on the blob endpoint
(Azurite serves no dfs endpoint), with the credentials the task takes from that connection and
sets on its own Spark Connect session. Every blob is then read back with delta-rs (Azure) and
compared with the same pipeline run on a local lake.

One Azurite per test session (tests/azurite.py); without node/npm these tests skip (CI: fail).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging

import pytest
import references
from azurite import ACCOUNT, ACCOUNT_KEY
from conftest import run_dag

from lakehouse.devserver import FileServer
from lakehouse.metadata import load_pipeline
from lakehouse.reporting import read_rows
from lakehouse.sample_data import write_formula1_drops, write_netflix_sample

pytestmark = pytest.mark.e2e
pytest_plugins = ["sourcedb", "references"]  # reference_lakes: local runs shared across tests

CONN_ID = "azure_lake"
HOST = f"{ACCOUNT}.dfs.core.windows.net"
SUNDAY = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)
NETFLIX_GOLD = ["titles", "cast", "category", "countries", "directors", "_quality"]
# columns that name a run, a time or where a file was: they differ between any two runs
VOLATILE = {"run_id", "_ingested_at", "_source_file", "recorded_at", "ingestion_date"}


@pytest.fixture(scope="module")
def blob_service(azurite):
    from azure.storage.blob import BlobServiceClient

    logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
    return BlobServiceClient.from_connection_string(azurite.connection_string)


def create_containers(service, names) -> None:
    from azure.core.exceptions import ResourceExistsError

    for name in names:
        with contextlib.suppress(ResourceExistsError):
            service.create_container(name)


def fresh_containers(service, names, prefix: str) -> None:
    """The containers exist and hold nothing under ``prefix`` (other tests share the emulator)."""
    create_containers(service, names)
    for name in names:
        client = service.get_container_client(name)
        for blob in blob_names(service, name, prefix):
            client.delete_blob(blob)


def blob_names(service, container: str, prefix: str = "") -> list[str]:
    return [
        b.name for b in service.get_container_client(container).list_blobs(name_starts_with=prefix or None)
    ]


@contextlib.contextmanager
def azure_lake(monkeypatch, azurite, root: str):
    """The lake at ``root`` (an Azure form) with the Azurite connection; nothing else set."""
    monkeypatch.setenv("LAKE_ROOT", root)
    monkeypatch.setenv("LAKE_CONN_ID", CONN_ID)
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", azurite.airflow_connection())
    monkeypatch.delenv("DELTA_STORAGE_OPTIONS", raising=False)  # from the connection, not a copy
    monkeypatch.delenv("SPARK_LAKE_ROOT", raising=False)
    yield


def gold(pipeline: str, table: str) -> list[dict]:
    """A gold table as of the pipeline's release, wherever LAKE_ROOT is, stable columns only."""
    from lakehouse.reporting import released_versions
    from lakehouse.storage import table_uri

    version = released_versions(pipeline).get(table)
    data = read_rows(table_uri("gold", pipeline, table), version=version)
    data = [{k: v for k, v in row.items() if k not in VOLATILE} for row in data]
    return sorted(data, key=lambda r: repr(sorted(r.items())))


def test_netflix_on_azure_equals_the_local_lake(
    airflow_db, azurite, blob_service, tmp_path, monkeypatch, reference_lakes
):
    """``LAKE_ROOT=abfss://{layer}@<account>.dfs.core.windows.net`` (a container per layer), the
    README's form: the whole DAG, then its gold tables against a local run of the same files (the
    session's reference run, shared with test_netflix_e2e's first run)."""
    fresh_containers(blob_service, ("raw", "bronze", "silver", "gold"), "netflix/")
    source = tmp_path / "source"
    write_netflix_sample(source, titles=120, seed=3)
    local, local_source, first = references.netflix_http(reference_lakes, titles=120, seed=3, day=SUNDAY)
    assert references.same_files(source, local_source)
    assert first.state == "success", first.tasks
    with FileServer(source) as server:
        monkeypatch.setenv("AIRFLOW_CONN_NETFLIX_HTTP", server.connection_uri())

        monkeypatch.setenv("LAKE_ROOT", str(local))  # read only: gold() reads the tables
        monkeypatch.delenv("LAKE_CONN_ID", raising=False)
        expected = {table: gold("netflix", table) for table in NETFLIX_GOLD}
        assert all(expected[t] for t in NETFLIX_GOLD), {t: len(v) for t, v in expected.items()}

        with azure_lake(monkeypatch, azurite, "abfss://{layer}@" + HOST):
            run = run_dag("netflix", logical_date=SUNDAY)
            assert run.state == "success", run.tasks
            assert run.tasks["silver_titles"] == "success"
            found = {table: gold("netflix", table) for table in NETFLIX_GOLD}
            # the report task read the run's rows back from the gold container
            from lakehouse.reporting import rows_for_run

            audit = rows_for_run("netflix", "_audit", run.run_id)
    assert found == expected
    # the Spark tasks' rendered fields hold the lake setting, never the key (set on the session)
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.utils.session import create_session

    with create_session() as session:
        fields = (
            session.query(RenderedTaskInstanceFields).filter_by(dag_id="netflix", run_id=run.run_id).all()
        )
        rendered = json.dumps([f.rendered_fields for f in fields], default=str)
    assert "abfss://{layer}@" + HOST in rendered
    assert ACCOUNT_KEY not in rendered
    assert {(r["layer"], r["table"], r["metric"]) for r in audit} >= {("gold", "titles", "rows_dropped")}
    # everything is in the containers, nothing in a local folder by mistake
    raw = blob_names(blob_service, "raw", "netflix/")
    assert {name.split("/")[1] for name in raw} == {
        "_sources",
        "titles",
        "cast",
        "category",
        "countries",
        "directors",
    }
    for layer in ("bronze", "silver", "gold"):
        assert "netflix/titles/_delta_log/00000000000000000000.json" in blob_names(
            blob_service, layer, "netflix/titles/"
        )


def test_formula1_drops_on_azure_equal_the_local_lake(
    airflow_db, azurite, blob_service, tmp_path, monkeypatch
):
    """``LAKE_ROOT=abfss://<container>@<account>.dfs.core.windows.net/<prefix>`` (one container,
    layers as folders): two drops uploaded by someone else into the raw folder, each found by the
    sensor, merged into silver and presented in gold by Spark on the container, as from a folder."""
    local = tmp_path / "lake"
    days = write_formula1_drops(local / "raw" / "formula1")[:2]  # the cut-over, then a race
    presentation = load_pipeline("formula1")["presentation"]

    def run(day: str) -> None:
        logical_date = dt.datetime.combine(dt.date.fromisoformat(day), dt.time(), tzinfo=dt.UTC)
        result = run_dag("formula1", logical_date=logical_date)
        assert result.state == "success", (day, result.tasks)

    monkeypatch.setenv("LAKE_ROOT", str(local))
    monkeypatch.delenv("LAKE_CONN_ID", raising=False)
    for day in days:
        run(day)
    expected = {table: gold("formula1", table) for table in presentation}
    assert all(expected.values()), {t: len(v) for t, v in expected.items()}

    container, prefix = "lake", "medallion"
    fresh_containers(blob_service, [container], prefix + "/")
    client = blob_service.get_container_client(container)
    with azure_lake(monkeypatch, azurite, f"abfss://{container}@{HOST}/{prefix}"):
        for day in days:
            drop = local / "raw" / "formula1" / day
            for path in sorted(p for p in drop.rglob("*") if p.is_file()):
                client.upload_blob(f"{prefix}/raw/formula1/{day}/{path.relative_to(drop)}", path.read_bytes())
            run(day)
        found = {table: gold("formula1", table) for table in presentation}
    assert found == expected
    names = blob_names(blob_service, container, prefix + "/")
    for layer in ("silver", "gold"):
        assert any(n.startswith(f"{prefix}/{layer}/formula1/") and "/_delta_log/" in n for n in names), layer


def test_spotify_day_on_azure_equals_the_local_lake(airflow_db, azurite, blob_service, tmp_path, monkeypatch):
    """``LAKE_ROOT=abfs://{layer}`` (adlfs style: the account is the connection's): a day of a SQL
    source extracted to bronze by the Airflow side (Parquet files, window manifests, watermarks),
    then silver and the gold star schema with SCD2 dimensions by Spark, as on a local lake."""
    import sqlalchemy as sa

    from lakehouse.demo import spotify_logical_date
    from lakehouse.spotify_source import generate

    start = dt.date(2025, 9, 7)  # the pipeline's start_date
    source = tmp_path / "spotify.db"
    engine = sa.create_engine(f"sqlite:///{source}")
    generate(
        engine,
        start=start,
        days=1,
        users=40,
        artists=10,
        tracks=40,
        streams_per_day=80,
        change_fraction=0.1,
        seed=3,
    )
    engine.dispose()
    monkeypatch.setenv("AIRFLOW_CONN_SPOTIFY_SQL", json.dumps({"conn_type": "sqlite", "host": str(source)}))
    meta = load_pipeline("spotify")
    gold_tables = [spec["gold"]["table"] for spec in meta["tables"]] + [v["table"] for v in meta["views"]]
    ingest_date = dt.datetime.fromisoformat(spotify_logical_date(start))

    def run() -> dict[str, list[dict]]:
        ingest = run_dag("spotify_ingest", logical_date=ingest_date)
        assert ingest.state == "success", ingest.tasks
        transform = run_dag("spotify_transform", logical_date=dt.datetime.now(dt.UTC))
        assert transform.state == "success", transform.tasks
        return {table: gold("spotify", table) for table in gold_tables}

    monkeypatch.setenv("LAKE_ROOT", str(tmp_path / "lake"))
    monkeypatch.delenv("LAKE_CONN_ID", raising=False)
    expected = run()
    assert all(expected.values()), {t: len(v) for t, v in expected.items()}

    fresh_containers(blob_service, ("raw", "bronze", "silver", "gold"), "spotify/")
    with azure_lake(monkeypatch, azurite, "abfs://{layer}"):
        found = run()
    assert found == expected
    bronze = blob_names(blob_service, "bronze", "spotify/")
    assert any(n.startswith("spotify/_windows/") for n in bronze)
    assert any(n.startswith("spotify/_watermarks/") for n in bronze)
    assert any(n.endswith(".parquet") for n in bronze)
    for layer in ("silver", "gold"):
        assert any("/_delta_log/" in n for n in blob_names(blob_service, layer, "spotify/")), layer


def test_adventureworks_on_azure_is_served_with_every_source_row(
    airflow_db, azurite, blob_service, tmp_path, monkeypatch, postgres_source
):
    """``LAKE_ROOT=abfss://<container>@<account>.dfs.core.windows.net/<prefix>``: the schema copy
    lands bronze through ``ObjectStoragePath``, Spark finds the loads and writes silver and gold
    over ABFS, and the serving step lists gold and reads it with delta-rs from the container into
    the PostgreSQL warehouse, where every row of every table equals the source's (SQLite here: the
    source dialects are covered by test_adventureworks_e2e)."""
    import sqlalchemy as sa
    from test_adventureworks_e2e import DAY1, assert_same, expected, logical, warehouse_rows

    from lakehouse import aw_source

    source = tmp_path / "adventureworks.db"
    engine = sa.create_engine(f"sqlite:///{source}")
    aw_source.create(engine)
    monkeypatch.setenv(
        "AIRFLOW_CONN_ADVENTUREWORKS_SQL", json.dumps({"conn_type": "sqlite", "host": str(source)})
    )
    monkeypatch.setenv("ADVENTUREWORKS_SOURCE_SCHEMA", "main")
    monkeypatch.setenv("AIRFLOW_CONN_ADVENTUREWORKS_WAREHOUSE", postgres_source.conn)

    container, prefix = "lake", "schemacopy"
    fresh_containers(blob_service, [container], prefix + "/")
    with azure_lake(monkeypatch, azurite, f"abfss://{container}@{HOST}/{prefix}"):
        copied = run_dag("adventureworks_copy", logical_date=logical(DAY1))
        assert copied.state == "success", copied.tasks
        served = run_dag("adventureworks_serve", logical_date=logical(DAY1))
        assert served.state == "success", served.tasks
    try:
        want = expected(aw_source.read_all(engine))
    finally:
        engine.dispose()
    assert_same(warehouse_rows(postgres_source.url), want, "warehouse served from Azure storage")
    names = blob_names(blob_service, container, prefix + "/")
    assert any(n.startswith(f"{prefix}/bronze/adventureworks/_loads/customer/") for n in names)
    for layer in ("silver", "gold"):
        assert any(n.startswith(f"{prefix}/{layer}/adventureworks/customer/_delta_log/") for n in names), (
            layer
        )
