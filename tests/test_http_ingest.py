"""HTTP file to raw: change detection and every way a source file can be bad, against a real
HTTP server on 127.0.0.1 and a local lake. Nothing half-landed, every error names the file."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from lakehouse.devserver import FileServer
from lakehouse.http_ingest import SourceError, fetch_to_raw, landed_files, read_record
from lakehouse.metadata import load_pipeline
from lakehouse.sample_data import write_netflix_sample

SOURCES = {s["table"]: s for s in load_pipeline("netflix")["files"]}


@pytest.fixture
def served(tmp_path, lake, monkeypatch):
    source = tmp_path / "source"
    write_netflix_sample(source, titles=25, seed=2)
    with FileServer(source) as server:
        monkeypatch.setenv("AIRFLOW_CONN_NETFLIX_HTTP", server.connection_uri())
        yield server, source


def _raw(lake, table):
    folder = lake / "raw" / "netflix" / table
    return sorted(folder.iterdir()) if folder.exists() else []


def test_a_file_lands_once_and_again_only_when_it_changes(served, lake):
    _, source = served
    first = fetch_to_raw("netflix", SOURCES["titles"], "netflix_http")
    body = (source / "netflix_titles.csv").read_bytes()
    assert first["status"] == "landed"
    assert first["bytes"] == len(body)
    assert first["sha256"] == hashlib.sha256(body).hexdigest()
    assert first["etag"]
    [landed] = _raw(lake, "titles")
    assert landed.read_bytes() == body  # byte for byte, BOM included
    assert landed.name.endswith(f"__{first['sha256'][:16]}.csv")
    assert read_record("netflix", "titles")["sha256"] == first["sha256"]

    second = fetch_to_raw("netflix", SOURCES["titles"], "netflix_http")
    assert second["status"] == "unchanged"
    assert _raw(lake, "titles") == [landed]

    (source / "netflix_titles.csv").write_bytes(body + b"90,,Movie,New,1/1/2021,2021,R,new,123\n")
    third = fetch_to_raw("netflix", SOURCES["titles"], "netflix_http")
    assert third["status"] == "landed"
    assert len(_raw(lake, "titles")) == 2
    assert landed_files("netflix", "titles")[-1].endswith(_raw(lake, "titles")[-1].name)


def test_the_same_content_under_a_new_etag_is_not_landed_again(served, lake):
    fetch_to_raw("netflix", SOURCES["cast"], "netflix_http")
    record_path = lake / "raw" / "netflix" / "_sources" / "cast.json"
    record = json.loads(record_path.read_text())
    record["etag"] = '"stale"'  # the server no longer answers 304 to it
    record_path.write_text(json.dumps(record))
    again = fetch_to_raw("netflix", SOURCES["cast"], "netflix_http")
    assert again["status"] == "unchanged"
    assert len(_raw(lake, "cast")) == 1


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (404, "netflix_cast.csv: HTTP 404"),
        (500, "netflix_cast.csv: HTTP 500"),
        ("truncate", "netflix_cast.csv: "),
    ],
)
def test_http_failures_name_the_file_and_land_nothing(served, lake, fault, message):
    server, _ = served
    server.faults["netflix_cast.csv"] = fault
    with pytest.raises(SourceError, match=message) as error:
        fetch_to_raw("netflix", SOURCES["cast"], "netflix_http")
    if fault == "truncate":
        assert "truncated" in str(error.value) or "interrupted" in str(error.value)
    assert _raw(lake, "cast") == []
    assert read_record("netflix", "cast") is None


def test_a_renamed_header_column_is_refused_before_it_lands(served, lake):
    _, source = served
    path = source / "netflix_titles.csv"
    path.write_text(
        path.read_text(encoding="utf-8-sig").replace("show_id", "showid", 1), encoding="utf-8-sig"
    )
    with pytest.raises(SourceError) as error:
        fetch_to_raw("netflix", SOURCES["titles"], "netflix_http")
    text = str(error.value)
    assert text.startswith("netflix_titles.csv: header does not match")
    assert "missing ['show_id']" in text
    assert "unexpected ['showid']" in text
    assert _raw(lake, "titles") == []


def test_an_empty_file_is_refused(served, lake):
    _, source = served
    (source / "netflix_directors.csv").write_bytes(b"")
    with pytest.raises(SourceError, match=re.escape("netflix_directors.csv: the server sent an empty file")):
        fetch_to_raw("netflix", SOURCES["directors"], "netflix_http")
    assert _raw(lake, "directors") == []


def test_a_bad_file_after_a_good_one_keeps_the_good_one(served, lake):
    _, source = served
    first = fetch_to_raw("netflix", SOURCES["countries"], "netflix_http")
    path = source / "netflix_countries.csv"
    path.write_text("country,id\nFrance,1\n", encoding="utf-8")
    with pytest.raises(SourceError, match=re.escape("netflix_countries.csv: header does not match")):
        fetch_to_raw("netflix", SOURCES["countries"], "netflix_http")
    assert [p.name for p in _raw(lake, "countries")] == [first["raw_file"].rsplit("/", 1)[-1]]
    assert read_record("netflix", "countries")["sha256"] == first["sha256"]


def test_a_missing_connection_is_a_clear_error(lake, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_NETFLIX_HTTP", raising=False)
    with pytest.raises(Exception, match="netflix_http"):
        fetch_to_raw("netflix", SOURCES["titles"], "netflix_http")


@pytest.mark.parametrize(
    ("fault", "retryable"),
    [(404, False), (403, False), (410, False), (408, True), (429, True), (500, True), (503, True)],
)
def test_a_failure_says_whether_a_retry_can_fix_it(served, lake, fault, retryable):
    server, _ = served
    server.faults["netflix_cast.csv"] = fault
    with pytest.raises(SourceError, match=f"netflix_cast.csv: HTTP {fault}") as error:
        fetch_to_raw("netflix", SOURCES["cast"], "netflix_http")
    assert error.value.retryable is retryable
    assert _raw(lake, "cast") == []


def test_a_file_that_does_not_decode_is_refused_naming_the_first_bad_byte(served, lake):
    _, source = served
    path = source / "netflix_directors.csv"
    good = path.read_bytes()
    bad_at = len(good) - 5
    path.write_bytes(good[:bad_at] + b"\xe9" + good[bad_at + 1 :])  # a latin-1 'é' in UTF-8 text
    with pytest.raises(SourceError) as error:
        fetch_to_raw("netflix", SOURCES["directors"], "netflix_http")
    assert str(error.value).startswith(
        f"netflix_directors.csv: not valid utf-8 at byte offset {bad_at} (0xe9"
    )
    assert error.value.retryable is False
    assert _raw(lake, "directors") == []
    assert read_record("netflix", "directors") is None
