"""The lake on Azure storage (``abfs://``), against Azurite: the same code as for a local folder.

* Raw ingestion: ``fetch_to_raw`` and ``landed_files`` (what ``raw_file_landed`` pokes) with
  ``LAKE_ROOT=abfs://{layer}`` and an Airflow connection; only configuration differs from the
  local tests. Every blob is checked with azure-storage-blob, independently of our code.
* The Airflow side's Delta reads (``report_run``): delta-rs on a table in a blob container, with
  the storage options taken from the lake's Airflow connection.
* Every documented Azure form of ``LAKE_ROOT``, both sides: the Airflow side writes a file, a Spark
  job's session (credentials from the same connection, set for the job only) reads it and writes
  a Delta table there, delta-rs reads that back; the blobs are where the form says. A session
  without the job's settings cannot reach the account.

Azurite is started once per session (tests/azurite.py); without node/npm these tests skip (and
fail under CI=true).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from pathlib import PurePosixPath

import pytest

from lakehouse.devserver import FileServer
from lakehouse.http_ingest import SourceError, fetch_to_raw, landed_files
from lakehouse.metadata import load_pipeline
from lakehouse.sample_data import write_netflix_sample

CONTAINERS = ("raw", "bronze", "silver", "gold")
CONN_ID = "azurite_lake"
RECORD = "netflix/_sources/titles.json"
RAW_NAME = re.compile(r"^netflix/titles/\d{8}T\d{12}Z__(?P<sha>[0-9a-f]{16})\.csv$")
SCHEMA = "k long, grp string, name string"
BASE = [(1, "a", "x"), (2, "a", "y"), (3, "b", "z")]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def titles_source() -> dict:
    return next(f for f in load_pipeline("netflix")["files"] if f["table"] == "titles")


class Containers:
    """The emulator's blobs as azure-storage-blob sees them (not through adlfs or our code)."""

    def __init__(self, service):
        self.service = service

    def blobs(self, container: str, prefix: str = "") -> dict[str, str]:
        """Blob name -> ETag."""
        client = self.service.get_container_client(container)
        return {b.name: b.etag for b in client.list_blobs(name_starts_with=prefix or None)}

    def download(self, container: str, name: str) -> bytes:
        return self.service.get_blob_client(container, name).download_blob().readall()

    def empty(self) -> None:
        for container in CONTAINERS:
            client = self.service.get_container_client(container)
            for name in list(self.blobs(container)):
                client.delete_blob(name)


@pytest.fixture(scope="session")
def containers(azurite) -> Containers:
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import BlobServiceClient

    # The SDK logs every request and response at INFO; keep failure reports readable.
    logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    for container in CONTAINERS:
        with contextlib.suppress(ResourceExistsError):
            service.create_container(container)
    return Containers(service)


@pytest.fixture
def abfs_lake(azurite, containers, monkeypatch) -> Containers:
    """Empty raw/bronze/silver/gold containers, and the lake configured on them (abfs://)."""
    containers.empty()
    monkeypatch.setenv("LAKE_ROOT", "abfs://{layer}")
    monkeypatch.setenv("LAKE_CONN_ID", CONN_ID)
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", azurite.airflow_connection())
    from lakehouse.storage import lake_path

    # adlfs caches listings per process; blobs were deleted behind its back just now.
    lake_path("raw", "netflix").fs.invalidate_cache()
    return containers


@pytest.fixture
def served(tmp_path, monkeypatch):
    """The generated Netflix files over HTTP, as connection ``netflix_http``."""
    folder = tmp_path / "source"
    write_netflix_sample(folder)
    with FileServer(folder) as server:
        monkeypatch.setenv("AIRFLOW_CONN_NETFLIX_HTTP", server.connection_uri())
        yield folder, server


def test_layer_paths_are_abfs_urls(abfs_lake):
    from lakehouse.storage import lake_path, layer_uri

    assert [layer_uri(layer) for layer in CONTAINERS] == [f"abfs://{c}" for c in CONTAINERS]
    path = lake_path("raw", "netflix", "titles")
    assert path.protocol == "abfs"
    assert str(path) == f"abfs://{CONN_ID}@raw/netflix/titles"


def test_http_file_lands_once_per_content_in_abfs_raw(abfs_lake, served):
    from lakehouse.tasks import raw_file_landed

    folder, _server = served
    poke = raw_file_landed.function  # the sensor's logic, without a task context
    titles = folder / "netflix_titles.csv"
    body = titles.read_bytes()

    assert landed_files("netflix", "titles") == []
    assert poke("netflix", "titles").is_done is False

    # First fetch: one new blob with exactly the served bytes, then the record.
    first = fetch_to_raw("netflix", titles_source(), "netflix_http")
    assert first["status"] == "landed"
    assert first["table"] == "titles"
    assert first["source"] == "netflix_titles.csv"
    assert first["bytes"] == len(body)
    assert first["sha256"] == sha256(body)
    assert first["etag"] == f'"{sha256(body)[:32]}"'  # the server's strong ETag, kept for If-None-Match
    data = abfs_lake.blobs("raw", "netflix/titles/")
    assert len(data) == 1, data
    (name,) = data
    assert RAW_NAME.match(name)["sha"] == sha256(body)[:16]
    assert sha256(abfs_lake.download("raw", name)) == sha256(body)
    assert first["raw_file"] == f"abfs://{CONN_ID}@raw/{name}"
    assert json.loads(abfs_lake.download("raw", RECORD)) == first
    before = abfs_lake.blobs("raw")
    assert set(before) == {name, RECORD}  # no hidden staging blob left behind, nothing else
    assert landed_files("netflix", "titles") == [first["raw_file"]]
    sensed = poke("netflix", "titles")
    assert (sensed.is_done, sensed.xcom_value) == (True, first["raw_file"])

    # Second fetch of the same file: nothing written, not even the record (same ETags).
    second = fetch_to_raw("netflix", titles_source(), "netflix_http")
    assert second["status"] == "unchanged"
    assert {**second, "status": "landed"} == first
    assert abfs_lake.blobs("raw") == before
    assert landed_files("netflix", "titles") == [first["raw_file"]]

    # The source changes: a second blob lands beside the first, which is never rewritten.
    write_netflix_sample(folder, seed=8)
    new_body = titles.read_bytes()
    assert sha256(new_body) != sha256(body)
    third = fetch_to_raw("netflix", titles_source(), "netflix_http")
    assert third["status"] == "landed"
    assert third["sha256"] == sha256(new_body)
    assert third["bytes"] == len(new_body)
    new_name = third["raw_file"].removeprefix(f"abfs://{CONN_ID}@raw/")
    assert RAW_NAME.match(new_name)["sha"] == sha256(new_body)[:16]
    after = abfs_lake.blobs("raw")
    assert set(after) == {name, new_name, RECORD}
    assert after[name] == before[name]
    assert sha256(abfs_lake.download("raw", name)) == sha256(body)
    assert sha256(abfs_lake.download("raw", new_name)) == sha256(new_body)
    assert json.loads(abfs_lake.download("raw", RECORD)) == third
    assert landed_files("netflix", "titles") == [first["raw_file"], third["raw_file"]]
    sensed = poke("netflix", "titles")
    assert (sensed.is_done, sensed.xcom_value) == (True, third["raw_file"])
    assert not [n for n in after if PurePosixPath(n).name.startswith(".") or n.endswith(".tmp")]


@pytest.mark.parametrize("fault", ["header", "truncate", 404])
def test_bad_source_file_raises_and_lands_no_blob(abfs_lake, served, fault):
    folder, server = served
    titles = folder / "netflix_titles.csv"
    if fault == "header":
        header, rest = titles.read_text(encoding="utf-8-sig").split("\n", 1)
        assert header.endswith(",show_id")
        titles.write_text(header.replace(",show_id", ",showid") + "\n" + rest, encoding="utf-8-sig")
        expected = (
            r"^netflix_titles\.csv: header does not match the declared columns "
            r"\(missing \['show_id'\], unexpected \['showid'\]\)"
        )
    elif fault == "truncate":
        server.faults["netflix_titles.csv"] = "truncate"
        expected = r"^netflix_titles\.csv: (truncated transfer|transfer interrupted)"
    else:
        server.faults["netflix_titles.csv"] = fault
        expected = r"^netflix_titles\.csv: HTTP 404"

    with pytest.raises(SourceError, match=expected):
        fetch_to_raw("netflix", titles_source(), "netflix_http")
    assert abfs_lake.blobs("raw") == {}
    assert landed_files("netflix", "titles") == []


# -- the Airflow side's Delta reads (delta-rs: no JVM in a task) -----------------------------------


def test_reports_read_delta_tables_in_azure_storage(azurite, abfs_lake, monkeypatch):
    """``report_run`` reads a run's rows of ``gold/<pipeline>/_audit`` where the lake is: a
    container addressed as ``abfs://``, with the storage options a deployment sets in
    ``DELTA_STORAGE_OPTIONS``. The table is written independently, with deltalake itself."""
    import pyarrow as pa
    from deltalake import write_deltalake

    from lakehouse.reporting import read_rows, rows_for_run, table_version

    monkeypatch.delenv("DELTA_STORAGE_OPTIONS", raising=False)  # from the connection only
    uri = "abfs://gold/netflix/_audit"
    rows = [
        {"run_id": "r1", "job": "gold", "layer": "gold", "table": "titles", "metric": "rows", "value": 3},
        {"run_id": "r2", "job": "gold", "layer": "gold", "table": "titles", "metric": "rows", "value": 4},
    ]
    write_deltalake(uri, pa.Table.from_pylist(rows[:1]), storage_options=azurite.delta_storage_options)
    write_deltalake(
        uri, pa.Table.from_pylist(rows[1:]), mode="append", storage_options=azurite.delta_storage_options
    )
    assert rows_for_run("netflix", "_audit", "r2") == [rows[1]]
    assert rows_for_run("netflix", "_audit", "r3") == []
    assert table_version("gold", "netflix", "_audit") == 1
    assert read_rows(uri, ["run_id"], version=0) == [{"run_id": "r1"}]
    log = sorted(abfs_lake.blobs("gold", "netflix/_audit/_delta_log/"))
    assert log == [f"netflix/_audit/_delta_log/{v:020d}.json" for v in range(2)]
    assert rows_for_run("netflix", "_quality", "r2") == []  # no such table: nothing, not an error


# -- every documented form, both sides -------------------------------------------------------------

HOST = "devstoreaccount1.dfs.core.windows.net"
FORMS = [
    # (LAKE_ROOT, where gold/netflix/t lands: container, blob prefix)
    ("abfss://{layer}@" + HOST, "gold", "netflix/t/"),
    ("abfss://{layer}@" + HOST + "/v1", "gold", "v1/netflix/t/"),
    (f"abfss://lake@{HOST}", "lake", "gold/netflix/t/"),
    (f"abfss://lake@{HOST}/team/x", "lake", "team/x/gold/netflix/t/"),
    (f"abfs://lake@{HOST}/h", "lake", "h/gold/netflix/t/"),
    ("abfs://{layer}", "gold", "netflix/t/"),
    ("abfs://lake/a", "lake", "a/gold/netflix/t/"),
]


@pytest.mark.parametrize(("root", "container", "prefix"), FORMS)
def test_each_form_reads_and_writes_on_both_sides(
    azurite, containers, spark, monkeypatch, root, container, prefix
):
    from lakehouse import settings
    from lakehouse.reporting import read_rows
    from lakehouse.storage import lake_path, spark_lake_session, table_uri
    from spark_jobs.common.lake import Lake

    with contextlib.suppress(Exception):
        containers.service.create_container("lake")
    for name in ("lake", "gold", "raw"):
        client = containers.service.get_container_client(name)
        for blob in list(client.list_blobs()):
            client.delete_blob(blob.name)
    monkeypatch.setenv("LAKE_ROOT", root)
    monkeypatch.setenv("LAKE_CONN_ID", CONN_ID)
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", azurite.airflow_connection())
    monkeypatch.delenv("DELTA_STORAGE_OPTIONS", raising=False)
    lake_path("raw", "netflix").fs.invalidate_cache()

    # Airflow side writes a file ...
    landed = lake_path("raw", "netflix", "in", "rows.csv")
    landed.parent.mkdir(parents=True, exist_ok=True)
    landed.write_text("k,name\n1,a\n2,b\n")
    # ... a Spark job's session reads it and writes a Delta table, with the connection's key ...
    argv = ["netflix.x", "--lake-root", settings.spark_lake_root()]
    with spark_lake_session(argv, spark) as (job_argv, job_spark):
        lake = Lake(job_argv[2])
        assert (lake.parsed.account, lake.parsed.scheme) == ("devstoreaccount1", "abfs")
        rows = job_spark.read.option("header", "true").csv(lake.layer_uri("raw") + "/netflix/in/rows.csv")
        rows.write.format("delta").mode("overwrite").save(lake.uri("gold", "netflix", "t"))
        assert job_spark.conf.get("fs.azure.always.use.https") == "false"
    # ... which it no longer holds once the job is over
    assert job_spark.conf.get("fs.azure.always.use.https", None) is None
    # ... and the Airflow side reads the table back through delta-rs, where the form puts it
    assert sorted(read_rows(table_uri("gold", "netflix", "t")), key=lambda r: r["k"]) == [
        {"k": "1", "name": "a"},
        {"k": "2", "name": "b"},
    ]
    written = containers.blobs(container, prefix)
    assert f"{prefix}_delta_log/00000000000000000000.json" in written
    raw_container, _, raw_prefix = str(landed).split("@", 1)[1].partition("/")
    assert raw_prefix in containers.blobs(raw_container)


def test_a_session_without_the_job_settings_cannot_reach_the_account(azurite, containers, spark, monkeypatch):
    """The credentials are session settings of the job's session, and hadoop's FileSystem cache is
    off for them: another client's session (a new one) cannot use them, even right after the job."""
    from pyspark.sql import SparkSession

    from lakehouse.storage import spark_lake_session

    monkeypatch.setenv("LAKE_CONN_ID", CONN_ID)
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", azurite.airflow_connection())
    argv = ["netflix.x", "--lake-root", "abfs://{layer}"]
    with spark_lake_session(argv, spark) as (job_argv, job_spark):
        uri = job_argv[2].replace("{layer}", "gold") + "/netflix/isolated"
        job_spark.range(3).write.format("delta").mode("overwrite").save(uri)
        other = SparkSession.builder.remote(os.environ["SPARK_REMOTE"]).create()
        try:
            assert other.conf.get("fs.azure.always.use.https", None) is None
            # it has no endpoint, no key: the table (there, see below) is not found, or access refused
            with pytest.raises(Exception, match=r"PATH_NOT_FOUND|(?i:credential|account key|configuration)"):
                other.read.format("delta").load(uri).count()
        finally:
            other.stop()
        assert job_spark.read.format("delta").load(uri).count() == 3
