"""Metadata and job parameters become paths and SQL: each is validated, with the entry named."""

from __future__ import annotations

import copy
import json

import pytest

from lakehouse.metadata import MetadataError, load_pipeline, validate
from spark_jobs.common.job import parse_args
from spark_jobs.common.lake import Lake

NETFLIX = load_pipeline("netflix")


def _broken(path: list, value):
    meta = copy.deepcopy(NETFLIX)
    target = meta
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return meta


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (["files", 0, "table"], "../titles", "files[0]: invalid table name '../titles'"),
        (
            ["files", 1, "path"],
            "data/../../etc/passwd",
            "files[1]: file path 'data/../../etc/passwd' must not contain '..'",
        ),
        (["files", 1, "path"], "/etc/passwd", "files[1]: invalid file path '/etc/passwd'"),
        (["files", 2, "columns"], ["ok", "bad column"], "files[2]: invalid column name 'bad column'"),
        (["files", 2, "columns"], [], "files[2]: 'columns' must list the file's header"),
        (["gold", 0, "from"], "nope", "gold[0]: 'from' 'nope' is not a source table"),
        (
            ["gold", 0, "expectations", 0, "action"],
            "explode",
            "gold[0]: expectation 'show_id_not_null' action",
        ),
        (["pipeline"], "Netflix", "invalid pipeline name 'Netflix'"),
    ],
)
def test_bad_metadata_is_refused_naming_the_entry(path, value, message):
    with pytest.raises(MetadataError) as error:
        validate(_broken(path, value), "include/netflix/pipeline.yaml")
    assert message in str(error.value)
    assert str(error.value).startswith("include/netflix/pipeline.yaml")


def test_the_shipped_metadata_is_valid():
    assert validate(copy.deepcopy(NETFLIX), "netflix") == NETFLIX
    assert [f["table"] for f in NETFLIX["files"]] == ["titles", "cast", "category", "countries", "directors"]


def test_unknown_pipeline_names_are_refused_before_touching_the_filesystem():
    with pytest.raises(MetadataError, match="invalid pipeline name"):
        load_pipeline("../secrets")


@pytest.mark.parametrize("run_id", ["x; rm -rf /", "a b", "", "run/../../x"])
def test_job_run_ids_are_validated(run_id, capsys):
    with pytest.raises(SystemExit):
        parse_args(["--lake-root", "/tmp/l", "--run-id", run_id, "--config", "{}"])
    assert "--run-id" in capsys.readouterr().err


def test_job_config_must_be_json(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--lake-root", "/tmp/l", "--run-id", "manual__1", "--config", "{not json"])
    assert "--config is not valid JSON" in capsys.readouterr().err


def test_airflow_run_ids_are_accepted():
    args = parse_args(
        [
            "--lake-root",
            "/l",
            "--run-id",
            "scheduled__2026-11-22T00:00:00+00:00",
            "--config",
            json.dumps({"a": 1}),
        ]
    )
    assert args.config == {"a": 1}


def test_lake_layout_local_and_azure():
    assert Lake("/data/lake").uri("gold", "netflix", "titles") == "/data/lake/gold/netflix/titles"
    azure = Lake("abfss://{layer}@acct.dfs.core.windows.net")
    assert azure.uri("raw", "netflix", "titles") == "abfss://raw@acct.dfs.core.windows.net/netflix/titles"
    with pytest.raises(ValueError, match="invalid table name"):
        Lake("/x").uri("gold", "netflix", "../other")
    with pytest.raises(ValueError, match="unknown layer"):
        Lake("/x").uri("platinum", "netflix", "t")


FORMULA1 = load_pipeline("formula1")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("format", "xml", "sources[4]: format must be csv or json, not 'xml'"),
        ("write", "append", "sources[4]: write must be replace or merge, not 'append'"),
        ("keys", [], "sources[4]: a merged table needs 'keys'"),
        ("keys", ["result id"], "sources[4]: invalid column name 'result id'"),
        ("schema", "", "sources[4]: 'schema' must be a Spark DDL string"),
        ("path", "../results.json", "sources[4]: invalid file path '../results.json'"),
    ],
)
def test_bad_drop_sources_are_refused_naming_the_entry(field, value, message):
    meta = copy.deepcopy(FORMULA1)
    meta["sources"][4][field] = value
    with pytest.raises(MetadataError) as error:
        validate(meta, "include/formula1/pipeline.yaml")
    assert message in str(error.value)


def test_the_shipped_formula1_metadata_is_valid():
    assert validate(copy.deepcopy(FORMULA1), "formula1") == FORMULA1
    required = {s["table"]: s.get("required", True) for s in FORMULA1["sources"]}
    assert required["results"] is False  # the 2021-03-21 cut-over has no results.json
    assert sum(required.values()) == 7


SPOTIFY = load_pipeline("spotify")


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (["tables", 0, "table"], "Users", "tables[0]: invalid table name 'Users'"),
        (
            ["tables", 0, "source_table"],
            'DimUser"; DROP TABLE x; --',
            "tables[0]: invalid source table name 'DimUser\"; DROP TABLE x; --'",
        ),
        (["tables", 1, "columns"], {"artist id": "int"}, "tables[1]: invalid column name 'artist id'"),
        (["tables", 1, "columns", "genre"], "text", "column 'genre' has type 'text'"),
        (["tables", 2, "keys"], ["nope"], "tables[2]: 'keys' ['nope'] must be listed columns"),
        (["tables", 2, "change_column"], "track_name", "change_column 'track_name' must be a listed date"),
        (["tables", 0, "gold", "tracked"], ["user name"], "invalid tracked column 'user name'"),
        (["source", "conn_id"], "spotify sql", "invalid source conn_id 'spotify sql'"),
        (["source", "schema"], "dbo; --", "invalid source schema 'dbo; --'"),
        (["schedule", "interval"], {"weeks": 1}, "interval must be like {days: 1}"),
        (["schedule", "lookback_windows"], -1, "lookback_windows must be a whole number >= 0"),
        (["schedule", "start_date"], "2025-09-07", "start_date must be a date (YYYY-MM-DD, unquoted)"),
        (["schedule", "end_date"], "soon", "end_date must be a date"),
        (["expectations", "dim_nope"], [], "'dim_nope' is not a gold table"),
        (["fact", "dimensions", 0, "table"], "people", "dimension table 'people' is not a source table"),
        (["views", 0, "template"], "sql/../../secret.sql", "must not contain '..'"),
        (["views", 0, "keys"], ["user_id"], "views[0]: keys must be the fact table's keys ['stream_id']"),
    ],
)
def test_bad_sql_source_metadata_is_refused_naming_the_entry(path, value, message):
    meta = copy.deepcopy(SPOTIFY)
    target = meta
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(MetadataError) as error:
        validate(meta, "spotify.yaml")
    assert message in str(error.value)


def test_the_shipped_spotify_metadata_is_valid():
    assert [t["table"] for t in SPOTIFY["tables"]] == ["users", "artists", "tracks", "dates", "streams"]
    assert SPOTIFY["schedule"]["lookback_windows"] == 0
