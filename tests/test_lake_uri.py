"""The lake setting: every documented form parsed the same way on both sides, wrong forms refused
when the setting is read (a DAG file's import fails with the message), and what each side makes of
a form: the Airflow side's ``ObjectStoragePath``, delta-rs options, and the Spark session's
``--lake-root`` and ABFS settings derived from the Airflow connection.

No network: the Azure provider's filesystem is built from the connection without a request.
Reads and writes on Azurite for each form are in test_azure_storage.py and test_azure_lake_e2e.py.
"""

from __future__ import annotations

import json

import pytest

from spark_jobs.common.lake import Lake, parse_lake_root

KEY = "a2V5LWZvci10ZXN0cy1vbmx5LW5vdC1hLXNlY3JldA=="  # base64 of a made-up key
ACCT = "lakeacct"
HOST = f"{ACCT}.dfs.core.windows.net"


@pytest.mark.parametrize(
    ("value", "layers"),
    [
        ("/data/lake", ["/data/lake/raw", "/data/lake/gold"]),
        ("/data/lake/", ["/data/lake/raw", "/data/lake/gold"]),
        ("file:///data/lake", ["/data/lake/raw", "/data/lake/gold"]),
        (
            f"abfss://lake@{HOST}",
            [f"abfss://lake@{HOST}/raw", f"abfss://lake@{HOST}/gold"],
        ),
        (
            f"abfss://lake@{HOST}/team/medallion/",
            [f"abfss://lake@{HOST}/team/medallion/raw", f"abfss://lake@{HOST}/team/medallion/gold"],
        ),
        ("abfss://{layer}@" + HOST, [f"abfss://raw@{HOST}", f"abfss://gold@{HOST}"]),
        ("abfss://{layer}@" + HOST + "/v1", [f"abfss://raw@{HOST}/v1", f"abfss://gold@{HOST}/v1"]),
        (f"abfs://lake@{HOST.upper()}", [f"abfs://lake@{HOST}/raw", f"abfs://lake@{HOST}/gold"]),
        ("abfs://lake", ["abfs://lake/raw", "abfs://lake/gold"]),
        ("abfs://lake/team", ["abfs://lake/team/raw", "abfs://lake/team/gold"]),
        ("abfs://{layer}", ["abfs://raw", "abfs://gold"]),
        ("abfs://{layer}/v1", ["abfs://raw/v1", "abfs://gold/v1"]),
    ],
)
def test_documented_forms_give_each_layer_its_place(value, layers):
    lake = Lake(value)
    assert [lake.layer_uri("raw"), lake.layer_uri("gold")] == layers
    assert lake.uri("gold", "netflix", "_audit") == f"{layers[1]}/netflix/_audit"
    # the canonical form parses to the same thing (what settings hand on as --lake-root)
    parsed = parse_lake_root(value)
    assert parse_lake_root(str(parsed)) == parsed


def test_parsed_parts():
    root = parse_lake_root("abfss://{layer}@" + HOST + "/v1")
    assert (root.scheme, root.account, root.per_layer, root.path) == ("abfss", ACCT, True, "v1")
    assert (root.container_of("silver"), root.key_of("silver")) == ("silver", "v1")
    one = parse_lake_root(f"abfss://lake@{HOST}")
    assert (one.container_of("silver"), one.key_of("silver")) == ("lake", "silver")
    adlfs = parse_lake_root("abfs://{layer}")
    assert (adlfs.account, adlfs.key_of("raw")) == (None, "")
    assert str(adlfs.with_account(ACCT, "abfss")) == "abfss://{layer}@" + HOST
    with pytest.raises(ValueError, match="names account 'lakeacct', not 'other'"):
        one.with_account("other")


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("", "empty"),
        (f"wasbs://lake@{ACCT}.blob.core.windows.net", "wasbs:// .* not supported.*abfss://"),
        (f"wasb://lake@{ACCT}.blob.core.windows.net", "wasb:// .* not supported"),
        ("https://example.com/lake", r"unsupported scheme https://"),
        ("http://127.0.0.1:10000/devstoreaccount1", r"unsupported scheme http://"),
        ("s3://bucket/lake", r"unsupported scheme s3://"),
        ("abfss://lake", "abfss:// needs the account"),
        ("abfss://{layer}", "abfss:// needs the account"),
        (f"abfss://lake@{ACCT}.blob.core.windows.net", "not an ADLS Gen2 endpoint"),
        ("abfss://lake@acct.dfs.core.windows.net.evil.com", "not an ADLS Gen2 endpoint"),
        ("abfss://lake@.dfs.core.windows.net", "account '' is not a storage account name"),
        ("abfss://lake@my_acct.dfs.core.windows.net", "account 'my_acct' is not"),
        (f"abfss://lake@{HOST}/" + "{layer}", r"\{layer\} must be the container"),
        (f"abfss://lake@{HOST}/x/" + "{layer}/y", r"\{layer\} must be the container"),
        ("abfss://{env}@" + HOST, r"unknown placeholder \{env\}"),
        ("abfss://{layer}-x@" + HOST, "not a valid container name"),
        ("abfss://{LAYER}@" + HOST, r"unknown placeholder \{LAYER\}"),
        ("abfss://{layer@" + HOST, "unbalanced brace"),
        (f"abfss://Lake@{HOST}", "container 'Lake' is not a valid container name"),
        (f"abfss://la@{HOST}", "container 'la'"),
        (f"abfss://a--b@{HOST}", "container 'a--b'"),
        (f"abfss://lake@{HOST}/a/../b", r"invalid path segment '\.\.'"),
        (f"abfss://lake@{HOST}/a?sv=1", "no query"),
        (f"abfss://lake@{HOST}:443", "not an ADLS Gen2 endpoint"),
        (f"abfs://{HOST}/lake", "the container comes first"),
        ("/data/{layer}/lake", r"\{layer\} is only for Azure containers"),
        ("/data/../etc", r"'\.\.' is not allowed"),
        ("file://relative/lake", "absolute path"),
        ("c:lake", "unsupported URI"),
    ],
)
def test_wrong_forms_are_refused_saying_what_to_write(value, says):
    with pytest.raises(ValueError, match=says) as raised:
        parse_lake_root(value)
    message = str(raised.value)
    assert message.startswith(f"LAKE_ROOT={value!r}: ")
    assert "abfss://{layer}@<account>.dfs.core.windows.net[/prefix]" in message
    assert "abfs://<container>[/prefix]" in message


def test_spark_side_refuses_a_wrong_lake_root_naming_the_argument():
    with pytest.raises(ValueError, match=r"^--lake-root='wasb://"):
        Lake(f"wasb://lake@{ACCT}.blob.core.windows.net")


# -- settings: read at DAG parse -------------------------------------------------------------------


def test_settings_check_the_lake_and_need_a_connection_on_azure(monkeypatch):
    from lakehouse import settings

    monkeypatch.setenv("LAKE_ROOT", "abfss://{layer}@" + HOST + "/")
    monkeypatch.delenv("LAKE_CONN_ID", raising=False)
    with pytest.raises(ValueError, match="on Azure storage and needs LAKE_CONN_ID"):
        settings.lake_root()
    monkeypatch.setenv("LAKE_CONN_ID", "lake")
    assert settings.lake_root() == "abfss://{layer}@" + HOST
    assert settings.spark_lake_root() == "abfss://{layer}@" + HOST
    monkeypatch.setenv("SPARK_LAKE_ROOT", f"abfss://other@{HOST}")
    assert settings.spark_lake_root() == f"abfss://other@{HOST}"
    monkeypatch.setenv("SPARK_LAKE_ROOT", "wasbs://x@y.blob.core.windows.net")
    with pytest.raises(ValueError, match=r"^SPARK_LAKE_ROOT='wasbs://"):
        settings.spark_lake_root()
    monkeypatch.delenv("SPARK_LAKE_ROOT")
    # Databricks takes --lake-root as it is: an adlfs-style root names no account for it
    monkeypatch.setenv("LAKE_ROOT", "abfs://{layer}")
    monkeypatch.setenv("LAKEHOUSE_COMPUTE", "databricks")
    with pytest.raises(
        ValueError, match="names no storage account, which Databricks needs: set SPARK_LAKE_ROOT"
    ):
        settings.spark_lake_root()
    monkeypatch.setenv("SPARK_LAKE_ROOT", "abfss://{layer}@" + HOST)
    assert settings.spark_lake_root() == "abfss://{layer}@" + HOST


def test_a_wrong_lake_root_fails_the_dag_import_with_the_message(monkeypatch):
    from pathlib import Path

    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("LAKE_ROOT", "abfss://raw@" + HOST + "/{layer}")
    monkeypatch.setenv("LAKE_CONN_ID", "lake")
    dags = Path(__file__).resolve().parents[1] / "dags"
    bag = DagBag(dag_folder=str(dags / "netflix.py"))
    assert list(bag.import_errors) == [str(dags / "netflix.py")]
    (error,) = bag.import_errors.values()
    assert (
        "LAKE_ROOT='abfss://raw@lakeacct.dfs.core.windows.net/{layer}': {layer} must be the container"
        in error
    )


# -- what each side makes of a form (connections in the environment, no request sent) --------------


def _connect(monkeypatch, conn: dict, conn_id: str = "lake") -> None:
    monkeypatch.setenv("LAKE_CONN_ID", conn_id)
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


# the provider's abfs filesystem takes the account name from the extras (or a connection string)
KEY_CONN = {"conn_type": "wasb", "login": ACCT, "password": KEY, "extra": {"account_name": ACCT}}
EMULATOR_CONN = {
    "conn_type": "wasb",
    "extra": {
        "connection_string": f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={KEY};"
        "BlobEndpoint=http://127.0.0.1:10999/devstoreaccount1;"
    },
}
SP_CONN = {
    "conn_type": "adls",
    "host": ACCT,
    "login": "client-id",
    "password": "<client-secret>",
    "extra": {"tenant_id": "tenant-1", "account_name": ACCT},
}


@pytest.mark.parametrize(
    ("root", "uri"),
    [
        ("abfss://{layer}@" + HOST, "abfs://lake@silver/netflix/titles"),
        (f"abfss://data@{HOST}/v1", "abfs://lake@data/v1/silver/netflix/titles"),
        ("abfs://{layer}/v1", "abfs://lake@silver/v1/netflix/titles"),
        ("abfs://data", "abfs://lake@data/silver/netflix/titles"),
    ],
)
def test_airflow_side_paths_are_container_paths_with_the_connection(monkeypatch, root, uri):
    from lakehouse.storage import lake_path

    monkeypatch.setenv("LAKE_ROOT", root)
    _connect(monkeypatch, KEY_CONN)
    path = lake_path("silver", "netflix", "titles")
    assert (path.protocol, path.conn_id, str(path)) == ("abfs", "lake", uri)


def test_airflow_side_refuses_a_connection_for_another_account(monkeypatch):
    from lakehouse.storage import lake_path

    monkeypatch.setenv("LAKE_ROOT", "abfss://{layer}@otheracct.dfs.core.windows.net")
    _connect(monkeypatch, KEY_CONN)
    with pytest.raises(
        ValueError, match=r"names storage account 'otheracct', but connection 'lake'.*'lakeacct'"
    ):
        lake_path("raw", "netflix")


def test_local_paths_are_file_urls(monkeypatch, tmp_path):
    from lakehouse.storage import lake_path

    monkeypatch.setenv("LAKE_ROOT", f"file://{tmp_path}")
    monkeypatch.delenv("LAKE_CONN_ID", raising=False)
    path = lake_path("raw", "netflix", "x.csv")
    assert (path.protocol, str(path)) == ("file", f"file://{tmp_path}/raw/netflix/x.csv")


def test_spark_gets_the_account_and_its_key_as_session_settings(monkeypatch):
    from lakehouse.storage import spark_lake

    _connect(monkeypatch, KEY_CONN)
    lake = spark_lake("abfs://{layer}/v1")
    assert lake.root == "abfss://{layer}@" + HOST + "/v1"
    assert lake.conf == {
        "fs.abfs.impl.disable.cache": "true",
        "fs.abfss.impl.disable.cache": "true",
        f"fs.azure.account.auth.type.{HOST}": "SharedKey",
        f"fs.azure.account.key.{HOST}": KEY,
    }
    assert KEY not in repr(lake)
    assert spark_lake("abfss://{layer}@" + HOST).root == "abfss://{layer}@" + HOST
    with pytest.raises(ValueError, match="names storage account 'otheracct', but connection 'lake'"):
        spark_lake("abfss://{layer}@otheracct.dfs.core.windows.net")
    monkeypatch.delenv("LAKE_CONN_ID")  # the server holds the credentials: the root as it is
    assert spark_lake("abfss://{layer}@" + HOST).conf == {}


def test_spark_gets_a_service_principal_as_oauth_settings(monkeypatch):
    from lakehouse.storage import spark_lake

    _connect(monkeypatch, SP_CONN)
    lake = spark_lake(f"abfss://data@{HOST}")
    assert lake.root == f"abfss://data@{HOST}"
    assert lake.conf[f"fs.azure.account.auth.type.{HOST}"] == "OAuth"
    assert lake.conf[f"fs.azure.account.oauth2.client.id.{HOST}"] == "client-id"
    assert lake.conf[f"fs.azure.account.oauth2.client.secret.{HOST}"] == "<client-secret>"
    assert (
        lake.conf[f"fs.azure.account.oauth2.client.endpoint.{HOST}"]
        == "https://login.microsoftonline.com/tenant-1/oauth2/token"
    )


def test_spark_reaches_an_emulator_through_its_blob_endpoint_over_http(monkeypatch):
    from lakehouse.storage import delta_storage_options, spark_lake

    _connect(monkeypatch, EMULATOR_CONN)
    lake = spark_lake("abfs://{layer}")
    host = "devstoreaccount1.dfs.core.windows.net"
    assert lake.root == "abfs://{layer}@" + host
    assert lake.conf[f"fs.azure.abfs.endpoint.{host}"] == "127.0.0.1:10999"
    assert lake.conf[f"fs.azure.fns.account.service.type.{host}"] == "BLOB"
    assert lake.conf["fs.azure.always.use.https"] == "false"
    assert lake.conf[f"fs.azure.account.key.{host}"] == KEY
    monkeypatch.setenv("LAKE_ROOT", "abfs://{layer}")
    assert delta_storage_options() == {
        "azure_storage_account_name": "devstoreaccount1",
        "azure_storage_account_key": KEY,
        "azure_storage_endpoint": "http://127.0.0.1:10999/devstoreaccount1",
        "allow_http": "true",
    }


def test_delta_storage_options_come_from_the_connection_plus_extra_options(monkeypatch):
    from lakehouse import settings

    monkeypatch.setenv("LAKE_ROOT", "abfss://{layer}@" + HOST)
    _connect(monkeypatch, KEY_CONN)
    monkeypatch.setenv("DELTA_STORAGE_OPTIONS", json.dumps({"timeout": "120s"}))
    assert settings.delta_storage_options() == {
        "azure_storage_account_name": ACCT,
        "azure_storage_account_key": KEY,
        "timeout": "120s",
    }
    monkeypatch.setenv("LAKE_ROOT", "/data/lake")
    assert settings.delta_storage_options() == {"timeout": "120s"}
    monkeypatch.delenv("DELTA_STORAGE_OPTIONS")
    assert settings.delta_storage_options() is None


def test_a_connection_without_an_account_name_is_named_with_what_it_lacks(monkeypatch):
    from lakehouse.storage import lake_path, spark_lake

    monkeypatch.setenv("LAKE_ROOT", "abfss://{layer}@" + HOST)
    # a service principal and the account only in the host URL: the provider's abfs filesystem
    # (adlfs) needs extra account_name
    # (another connection id: Airflow keeps one filesystem per connection id and process)
    conn = {**SP_CONN, "host": f"https://{ACCT}.blob.core.windows.net", "extra": {"tenant_id": "t"}}
    _connect(monkeypatch, conn, "lake_no_name")
    with pytest.raises(
        ValueError, match=r"connection 'lake_no_name' \(LAKE_CONN_ID\).*give it extra account_name"
    ):
        lake_path("raw", "netflix")
    with pytest.raises(
        ValueError, match=r"connection 'lake_no_name' \(LAKE_CONN_ID\).*give it extra account_name"
    ):
        spark_lake("abfss://{layer}@" + HOST)
