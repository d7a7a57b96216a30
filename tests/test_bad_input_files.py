"""Bad input files and failed writes, through the Spark jobs themselves (Spark Connect, Delta).

Each case asserts the outcome (a failed job whose error is a ``BadInputError``, or a quarantined
row), the message (it names the table, the file, the key or the path), and the lake (bit for bit
what it was before, or exactly the declared result); then the input is fixed and a re-run reaches
the state of a clean lake built from the good input only.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from pathlib import Path

import pytest
from conftest import shared_data

from lakehouse.metadata import load_pipeline
from lakehouse.reporting import read_rows
from lakehouse.sample_data import write_netflix_sample
from spark_jobs.common.delta import DeltaTableError
from spark_jobs.common.errors import (
    BadInputError,
    ConflictingDuplicatesError,
    EmptyDeliveryError,
    RescuedRowsError,
    UnparsableFileError,
)

DAY1, DAY2 = "2021-03-28", "2021-04-18"
F1_TABLES = ["results", "pit_stops", "lap_times"]
VOLATILE = ("ingestion_date", "_ingested_at", "recorded_at", "released_at", "quarantined_at")


# -- helpers ---------------------------------------------------------------------------------------


def run(spark, lake: Path, job: str, config: dict, *, run_id: str, file_date=None, tables=None) -> None:
    """Run ``<pipeline>.<job>`` as the Airflow task does: ``run.py``'s main in this session."""
    from spark_jobs import run as entry

    argv = [job, "--lake-root", str(lake), "--run-id", run_id, "--config", json.dumps(config, default=str)]
    if file_date:
        argv += ["--file-date", file_date]
    if tables:
        argv += ["--tables", ",".join(tables)]
    entry.main(argv, spark)


def fails(spark, lake: Path, job: str, config: dict, error: type, **kwargs) -> str:
    """Run a job that must fail with ``error`` (a ``BadInputError`` when the input is bad)."""
    with pytest.raises(error) as caught:
        run(spark, lake, job, config, **kwargs)
    return str(caught.value)


def lake_hash(lake: Path) -> dict[str, str]:
    """sha256 of every file of the lake's Delta layers: equal hashes mean an untouched lake."""
    found = {}
    for layer in ("bronze", "silver", "gold"):
        for path in sorted((lake / layer).rglob("*")):
            if path.is_file():
                found[str(path.relative_to(lake))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def rows(lake: Path, layer: str, pipeline: str, table: str) -> list[dict]:
    found = read_rows(str(lake / layer / pipeline / table))
    for row in found:
        for column in VOLATILE:
            row.pop(column, None)
        if "_source_file" in row:  # the raw file's name, not where this lake lives
            row["_source_file"] = row["_source_file"].rsplit("/", 1)[-1]
    return sorted(found, key=lambda r: repr(sorted(r.items())))


def state(lake: Path, pipeline: str, *, versions: bool = True) -> dict:
    """Every data table (not bookkeeping) of the pipeline: content, and version if asked."""
    found = {}
    for layer in ("bronze", "silver", "gold"):
        for log in sorted((lake / layer / pipeline).glob("*/_delta_log")):
            name = log.parent.name
            if name.startswith("_"):
                continue
            content = rows(lake, layer, pipeline, name)
            found[f"{layer}.{name}"] = (_version(log), content) if versions else content
    return found


def _version(log: Path) -> int:
    return max(int(p.stem) for p in log.glob("*.json"))


def audit(lake: Path, pipeline: str, run_id: str) -> dict[tuple[str, str], int]:
    return {
        (r["table"], r["metric"]): r["value"]
        for r in read_rows(str(lake / "gold" / pipeline / "_audit"))
        if r["run_id"] == run_id
    }


def source(config: dict, table: str, key: str = "sources") -> dict:
    return next(s for s in config[key] if s["table"] == table)


# -- Formula 1 -------------------------------------------------------------------------------------


def f1_config(**per_table) -> dict:
    config = copy.deepcopy(load_pipeline("formula1"))
    for table, settings in per_table.items():
        source(config, table).update(settings)
    return config


def land(lake: Path, day: str) -> Path:
    folder = lake / "raw" / "formula1" / day
    shutil.copytree(shared_data("formula1") / day, folder)
    return folder


@pytest.fixture(scope="module")
def f1_lakes(spark, tmp_path_factory):
    """``base``: drop DAY1 applied (results, pit stops, lap times); ``clean``: then DAY2 too."""
    base = tmp_path_factory.mktemp("f1") / "base"
    land(base, DAY1)
    run(spark, base, "formula1.silver", f1_config(), run_id="r1", file_date=DAY1, tables=F1_TABLES)
    clean = base.parent / "clean"
    shutil.copytree(base, clean)
    land(clean, DAY2)
    run(spark, clean, "formula1.silver", f1_config(), run_id="r2", file_date=DAY2, tables=F1_TABLES)
    return base, clean


@pytest.fixture
def f1(f1_lakes, tmp_path):
    """A lake with drop DAY1 applied and drop DAY2 landed: the test breaks DAY2's files."""
    base, clean = f1_lakes
    lake = tmp_path / "lake"
    shutil.copytree(base, lake)
    return lake, land(lake, DAY2), state(clean, "formula1")


def f1_fails(spark, lake: Path, error: type, config: dict | None = None) -> str:
    before = lake_hash(lake)
    message = fails(
        spark,
        lake,
        "formula1.silver",
        config or f1_config(),
        error,
        run_id="r2",
        file_date=DAY2,
        tables=F1_TABLES,
    )
    assert issubclass(error, BadInputError)
    assert lake_hash(lake) == before  # nothing written, not even the tables whose files were good
    return message


def f1_fixed(spark, lake: Path, clean: dict, config: dict | None = None, *, versions: bool = True) -> None:
    run(spark, lake, "formula1.silver", config or f1_config(), run_id="r2", file_date=DAY2, tables=F1_TABLES)
    if versions:
        assert state(lake, "formula1") == clean
    else:
        assert state(lake, "formula1", versions=False) == {k: v[1] for k, v in clean.items()}


def test_a_truncated_json_array_file_fails_naming_it(spark, f1):
    lake, drop, clean = f1
    good = (drop / "pit_stops.json").read_text()
    (drop / "pit_stops.json").write_text(good[: len(good) // 2])  # cut in half: no closing ]
    # whatever the tolerance: rescued rows are for rows, not files
    lenient = f1_config(pit_stops={"rescued_rows": {"max_count": 1000}})
    message = f1_fails(spark, lake, UnparsableFileError, lenient)
    assert "silver.pit_stops" in message
    assert "pit_stops.json does not parse" in message
    assert '"raceId"' in message  # the text it begins with

    (drop / "pit_stops.json").write_text(good)
    f1_fixed(spark, lake, clean)


def test_a_json_lines_file_cut_in_its_last_record_fails_naming_it(spark, f1):
    lake, drop, clean = f1
    good = (drop / "results.json").read_text()
    last = good.rstrip("\n").rsplit("\n", 1)[-1]
    (drop / "results.json").write_text(good.rstrip("\n")[: -len(last) // 2])  # no newline, no closing }
    lenient = f1_config(results={"rescued_rows": {"max_count": 1000}})
    message = f1_fails(spark, lake, UnparsableFileError, lenient)
    assert "silver.results" in message
    assert "results.json is truncated" in message
    assert last[: len(last) // 2][:40].strip() in message  # the cut line's text

    (drop / "results.json").write_text(good)
    f1_fixed(spark, lake, clean)


def test_rescued_rows_past_the_tolerance_fail_naming_file_and_lines_then_within_it_are_counted(spark, f1):
    lake, drop, clean = f1
    laps = drop / "lap_times" / "lap_times_split_1.csv"
    good = laps.read_text()
    lines = good.splitlines()
    bad = [line + ",EXTRA" if i < 12 else line for i, line in enumerate(lines)]  # 12 rows, 1 field too many
    laps.write_text("\n".join(bad) + "\n")
    message = f1_fails(spark, lake, RescuedRowsError)  # default tolerance: 10 rows
    assert "silver.lap_times" in message
    assert "12 rows do not fit" in message
    assert "lap_times_split_1.csv (12)" in message
    assert bad[0] in message  # the first bad line, as it is in the file

    # declared tolerance: the run goes on, rows (not fields) are counted, rescued rows not merged
    lenient = f1_config(lap_times={"rescued_rows": {"max_fraction": 0.02}})
    run(spark, lake, "formula1.silver", lenient, run_id="r2-lenient", file_date=DAY2, tables=F1_TABLES)
    counts = audit(lake, "formula1", "r2-lenient")
    assert counts[("lap_times", "rows_read")] == len(lines)
    assert counts[("lap_times", "rows_rescued")] == 12
    assert counts[("lap_times", "rows_inserted")] == len(lines) - 12
    assert counts[("lap_times", "duplicates_removed")] == 0

    laps.write_text(good)  # fixed: the twelve rows arrive whole
    f1_fixed(spark, lake, clean, versions=False)


def test_a_csv_row_with_an_extra_column_counts_once_in_rows_read(spark, f1):
    lake, drop, _clean = f1
    laps = drop / "lap_times" / "lap_times_split_1.csv"
    lines = laps.read_text().splitlines()
    laps.write_text("\n".join(line + ",EXTRA" for line in lines) + "\n")  # every row: one field too many
    lenient = f1_config(lap_times={"rescued_rows": {"max_fraction": 1.0}})
    run(spark, lake, "formula1.silver", lenient, run_id="r2-extra", file_date=DAY2, tables=["lap_times"])
    counts = audit(lake, "formula1", "r2-extra")
    assert counts[("lap_times", "rows_read")] == len(lines)
    assert counts[("lap_times", "rows_rescued")] == len(lines)
    assert counts[("lap_times", "rows_inserted")] == 0


def test_an_empty_file_in_a_drop_fails_unless_allowed(spark, f1):
    lake, drop, clean = f1
    # a file with no row (Spark's file sources do not list a 0-byte file at all: a required one
    # fails as missing, named; see test_formula1_bad_input)
    (drop / "lap_times" / "lap_times_split_2.csv").write_text("\n")
    message = f1_fails(spark, lake, EmptyDeliveryError)
    assert "silver.lap_times" in message
    assert "lap_times_split_2.csv hold no rows" in message

    # zero rows declared as a possible delivery: the empty file adds nothing, loses nothing
    f1_fixed(spark, lake, clean, f1_config(lap_times={"allow_empty": True}))


def _results_with(drop: Path, extra: dict) -> tuple[str, dict]:
    path = drop / "results.json"
    good = path.read_text()
    rows = [json.loads(line) for line in good.splitlines() if line.strip()]
    path.write_text(good.rstrip("\n") + "\n" + json.dumps(extra) + "\n")
    return good, rows


def test_exact_duplicates_are_removed_and_counted(spark, f1):
    lake, drop, clean = f1
    rows = [json.loads(line) for line in (drop / "results.json").read_text().splitlines() if line.strip()]
    _results_with(drop, rows[3])  # the same row twice
    f1_fixed(spark, lake, clean)
    assert audit(lake, "formula1", "r2")[("results", "duplicates_removed")] == 1


def test_conflicting_duplicates_fail_naming_the_keys_or_follow_the_declared_rule(spark, f1):
    lake, drop, clean = f1
    path = drop / "results.json"
    good = path.read_text()
    rows = [json.loads(line) for line in good.splitlines() if line.strip()]
    winner = rows[0]
    cheat = {**winner, "points": 99.0}
    path.write_text(good.rstrip("\n") + "\n" + json.dumps(cheat) + "\n")
    key = f'{{"result_id":{winner["resultId"]}}}'

    message = f1_fails(spark, lake, ConflictingDuplicatesError)
    assert "silver.results" in message
    assert key in message
    assert "no tie_break is declared" in message

    # a declared tie-break decides, the same way whatever the order of the rows
    ruled = f1_config(results={"tie_break": {"order_by": ["points asc"]}})
    tied = lake.parent / "tied"
    shutil.copytree(lake, tied)
    run(spark, tied, "formula1.silver", ruled, run_id="r2", file_date=DAY2, tables=["results"])
    kept = [r for r in rows_of(tied, "results") if r["result_id"] == winner["resultId"]]
    assert [r["points"] for r in kept] == [winner["points"]]
    assert audit(tied, "formula1", "r2")[("results", "rows_tie_broken")] == 1

    # quarantine: the key's rows are set aside with the reason, the rest of the drop goes on
    quarantined = f1_config(results={"quarantine": True})
    for attempt in (1, 2):  # the second: a re-run changes nothing
        run(spark, lake, "formula1.silver", quarantined, run_id="r2-q", file_date=DAY2, tables=F1_TABLES)
        q = read_rows(str(lake / "silver" / "formula1" / "_quarantine"))
        assert len(q) == 2, attempt
        assert {r["key"] for r in q} == {key}
        assert {r["reason"] for r in q} == {"conflicting duplicate key"}
        assert {json.loads(r["row"])["points"] for r in q} == {winner["points"], 99.0}
        assert {r["table"] for r in q} == {"results"}
    assert audit(lake, "formula1", "r2-q")[("results", "rows_quarantined")] == 2
    results = rows_of(lake, "results")
    assert winner["resultId"] not in {r["result_id"] for r in results}
    expected = {k: v[1] for k, v in clean.items()}
    assert len(results) == len(expected["silver.results"]) - 1  # every other row of the drop is there
    # the other tables of the drop were applied as in the clean lake
    assert {k: v[1] for k, v in state(lake, "formula1").items() if k != "silver.results"} == {
        k: v for k, v in expected.items() if k != "silver.results"
    }

    path.write_text(good)  # fixed: the re-run completes the drop
    f1_fixed(spark, lake, clean, versions=False)


def rows_of(lake: Path, table: str) -> list[dict]:
    return rows(lake, "silver", "formula1", table)


# -- Netflix ---------------------------------------------------------------------------------------

NETFLIX = {
    "titles": "netflix_titles.csv",
    "cast": "netflix_cast.csv",
    "category": "netflix_category.csv",
    "countries": "netflix_countries.csv",
    "directors": "netflix_directors.csv",
}
FIRST, SECOND = "20261101T000000Z__first.csv", "20261108T000000Z__second.csv"


def text(path: Path) -> str:
    """A sample file's text as it is (a BOM, then CRLF line ends kept)."""
    return path.read_bytes().decode("utf-8-sig")


def netflix_config(**per_table) -> dict:
    config = copy.deepcopy(load_pipeline("netflix"))
    for table, settings in per_table.items():
        source(config, table, "files").update(settings)
    return config


def land_netflix(lake: Path, folder: Path, name: str, tables=NETFLIX) -> None:
    for table in tables:
        target = lake / "raw" / "netflix" / table
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(folder / NETFLIX[table], target / name)


def netflix_run(spark, lake: Path, config: dict, run_id: str, jobs=("bronze", "silver", "gold"), tables=None):
    for job in jobs:
        run(spark, lake, f"netflix.{job}", config, run_id=run_id, tables=tables)


@pytest.fixture(scope="module")
def netflix_sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("netflix-sources")
    write_netflix_sample(root / "one", titles=40, seed=11)
    write_netflix_sample(root / "two", titles=45, seed=12)
    return root / "one", root / "two"


@pytest.fixture(scope="module")
def netflix_lakes(spark, netflix_sources, tmp_path_factory):
    """``base``: the first delivery through gold; ``clean``: then the second titles file too."""
    one, two = netflix_sources
    base = tmp_path_factory.mktemp("netflix") / "base"
    land_netflix(base, one, FIRST)
    netflix_run(spark, base, netflix_config(), "n1")
    clean = base.parent / "clean"
    shutil.copytree(base, clean)
    land_netflix(clean, two, SECOND, ["titles"])
    netflix_run(spark, clean, netflix_config(), "n2", tables=["titles"])
    return base, clean


@pytest.fixture
def netflix(netflix_lakes, tmp_path):
    base, clean = netflix_lakes
    lake = tmp_path / "lake"
    shutil.copytree(base, lake)
    return lake, state(clean, "netflix")


def test_a_header_only_file_fails_bronze_unless_zero_rows_are_allowed(spark, netflix, netflix_sources):
    lake, clean = netflix
    one, two = netflix_sources
    raw = lake / "raw" / "netflix" / "titles"
    header = text(one / NETFLIX["titles"]).split("\r\n", 1)[0]
    (raw / SECOND).write_bytes((header + "\r\n").encode("utf-8-sig"))
    before = lake_hash(lake)
    message = fails(spark, lake, "netflix.bronze", netflix_config(), EmptyDeliveryError, run_id="n2")
    assert "bronze.titles" in message
    assert f"{SECOND} hold no rows" in message
    assert lake_hash(lake) == before

    # declared: zero rows is the delivery; recorded once, and silver follows it to zero rows
    allowed = netflix_config(titles={"allow_empty": True})
    empty = lake.parent / "empty"
    shutil.copytree(lake, empty)
    netflix_run(spark, empty, allowed, "n2", jobs=("bronze", "silver"), tables=["titles"])
    recorded = read_rows(str(empty / "bronze" / "netflix" / "_files"))
    assert [(r["table"], r["file"], r["rows"]) for r in recorded] == [("titles", SECOND, 0)]
    assert rows(empty, "silver", "netflix", "titles") == []
    assert rows(empty, "bronze", "netflix", "titles") == rows(lake, "bronze", "netflix", "titles")
    after = lake_hash(empty)
    run(spark, empty, "netflix.bronze", allowed, run_id="n3")  # not pending any more: nothing to do
    assert lake_hash(empty) == after

    # fixed: the file arrives whole; the lake becomes the clean lake
    shutil.copy(two / NETFLIX["titles"], raw / SECOND)
    netflix_run(spark, lake, netflix_config(), "n2", tables=["titles"])
    assert state(lake, "netflix") == clean


def test_too_many_rescued_rows_fail_bronze_naming_file_and_lines(spark, netflix, netflix_sources):
    lake, clean = netflix
    _one, two = netflix_sources
    good = text(two / NETFLIX["titles"])
    lines = good.split("\r\n")
    bad = [lines[0], *(f"{i},,Movie,Broken {i},1/1/2020,2020,R,x,{70000000 + i},EXTRA" for i in range(11))]
    raw = lake / "raw" / "netflix" / "titles"
    (raw / SECOND).write_bytes("\r\n".join([*bad, *lines[1:]]).encode("utf-8-sig"))
    before = lake_hash(lake)
    message = fails(spark, lake, "netflix.bronze", netflix_config(), RescuedRowsError, run_id="n2")
    assert "bronze.titles" in message
    assert f"{SECOND} (11)" in message
    assert "Broken 0" in message
    assert lake_hash(lake) == before

    shutil.copy(two / NETFLIX["titles"], raw / SECOND)
    netflix_run(spark, lake, netflix_config(), "n2", tables=["titles"])
    assert state(lake, "netflix") == clean


def test_a_failed_gold_write_names_table_path_and_cause_and_readers_keep_the_last_release(
    spark, netflix, netflix_sources
):
    lake, clean = netflix
    _one, two = netflix_sources
    releases = read_rows(str(lake / "gold" / "netflix" / "_releases"))
    assert [(r["release"], r["run_id"], dict(r["tables"])) for r in releases] == [
        (1, "n1", dict.fromkeys(NETFLIX, 0))
    ]
    land_netflix(lake, two, SECOND, ["titles"])
    netflix_run(spark, lake, netflix_config(), "n2", jobs=("bronze", "silver"), tables=["titles"])
    # gold's lookup tables go stale too (their settings change), so gold rewrites every table
    config = netflix_config()
    for spec in config["gold"]:
        spec.setdefault("expectations", []).append({"name": "always", "rule": "true", "action": "warn"})

    # an unreadable log: the job stops before writing anything, naming table, path and cause
    log = lake / "gold" / "netflix" / "cast" / "_delta_log" / "00000000000000000000.json"
    good_log = log.read_bytes()
    log.write_bytes(b"\x00not json\x00")
    before = lake_hash(lake)
    with pytest.raises(DeltaTableError) as caught:
        run(spark, lake, "netflix.gold", config, run_id="n2")
    message = str(caught.value)
    assert "Delta table cast at" in message
    assert str(lake / "gold" / "netflix" / "cast") in message
    assert "failed: " in message
    assert len(message.split("failed: ", 1)[1]) > 10
    assert lake_hash(lake) == before
    log.write_bytes(good_log)

    # a write that fails part-way: other tables may be new, but no release names them
    cast = lake / "gold" / "netflix" / "cast"
    aside = lake.parent / "cast-aside"
    cast.rename(aside)
    cast.write_text("not a folder")
    release_before = lake_hash(lake / "gold" / "netflix" / "_releases")
    with pytest.raises(DeltaTableError) as caught:
        run(spark, lake, "netflix.gold", config, run_id="n2")
    assert _version(lake / "gold" / "netflix" / "titles" / "_delta_log") == 1  # written before the failure
    message = str(caught.value)
    assert "Delta table cast at" in message
    assert str(cast) in message
    assert lake_hash(lake / "gold" / "netflix" / "_releases") == release_before
    latest = read_rows(str(lake / "gold" / "netflix" / "_releases"))
    assert [r["release"] for r in latest] == [1]

    # fixed: the re-run completes gold and releases every table's new version in one record
    cast.unlink()
    aside.rename(cast)
    run(spark, lake, "netflix.gold", config, run_id="n2")
    latest = max(read_rows(str(lake / "gold" / "netflix" / "_releases")), key=lambda r: r["release"])
    assert latest["release"] == 2
    assert latest["run_id"] == "n2"
    assert dict(latest["tables"]) == {
        t: _version(lake / "gold" / "netflix" / t / "_delta_log") for t in NETFLIX
    }
    assert all(v >= 1 for v in dict(latest["tables"]).values())
    assert state(lake, "netflix", versions=False) == {k: v[1] for k, v in clean.items()}
    # a re-run that changes nothing releases nothing
    after = lake_hash(lake / "gold" / "netflix" / "_releases")
    run(spark, lake, "netflix.gold", config, run_id="n2")
    assert lake_hash(lake / "gold" / "netflix" / "_releases") == after
