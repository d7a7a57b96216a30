"""Bad input and faults on the Airflow side (issue 10), each against real parts: a real HTTP
server, real Airflow runs (``dag.test()``), a real SMTP server, the real Spark Connect server and
real Delta tables. Each case asserts the outcome, the message (naming the file, parameter, job or
table) and the lake (bit for bit what it was before, or exactly the declared result).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
from conftest import ROOT, load_dag, run_dag, shared_data
from dag_serialization import serialize

from lakehouse.devserver import FileServer
from lakehouse.sample_data import write_netflix_sample

pytest_plugins = ["smtp_inbox"]  # the inbox fixture: a real SMTP server

SUNDAY = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)


# -- helpers and fixtures -------------------------------------------------------------------------
def lake_digest(root: Path) -> dict[str, str]:
    """Every file under the lake and the sha256 of its bytes: equal digests, an untouched lake."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def try_numbers(dag_id: str, run_id: str) -> dict[str, int]:
    """task_id[map_index] -> try_number of the run's task instances (0: never started)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        tis = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
        ).all()
        return {
            (ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"): ti.try_number for ti in tis
        }


@pytest.fixture
def include_copy(tmp_path, monkeypatch):
    """A copy of include/ the test may edit, used by DAGs parsed afterwards."""
    from lakehouse.metadata import load_pipeline

    folder = tmp_path / "include"
    shutil.copytree(ROOT / "include", folder)
    monkeypatch.setenv("LAKEHOUSE_INCLUDE_DIR", str(folder))
    load_pipeline.cache_clear()
    yield folder
    load_pipeline.cache_clear()


# -- 1. encoding ----------------------------------------------------------------------------------
def latin1_cast(target: Path, rows: int = 800) -> list[dict]:
    """A latin-1 copy of real Netflix cast rows (those latin-1 can hold, accented names first):
    what a source exporting in latin-1 would serve. Returns the rows as text."""
    source = shared_data("netflix") / "netflix_cast.csv"
    with open(source, encoding="utf-8-sig", newline="") as handle:
        real = [r for r in csv.DictReader(handle) if _fits_latin1(r)]
    accented = [r for r in real if any(ord(c) > 127 for c in r["cast"])]
    plain = [r for r in real if r not in accented]
    chosen = accented[: rows // 4] + plain[: rows - rows // 4]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=["cast", "show_id"], lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(chosen)
    target.write_bytes(text.getvalue().encode("latin-1"))
    return chosen


def _fits_latin1(row: dict) -> bool:
    try:
        "".join(row.values()).encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def test_a_latin1_file_declared_utf8_fails_its_fetch_naming_file_and_offset_and_lands_nothing(
    tmp_path, lake, monkeypatch
):
    from lakehouse.http_ingest import SourceError, fetch_to_raw, read_record
    from lakehouse.metadata import load_pipeline

    cast = {s["table"]: s for s in load_pipeline("netflix")["files"]}["cast"]
    assert cast["encoding"] == "utf-8"
    assert cast["options"]["encoding"] == "UTF-8"
    source = tmp_path / "source"
    write_netflix_sample(source, titles=20, seed=4)
    with FileServer(source) as server:
        monkeypatch.setenv("AIRFLOW_CONN_NETFLIX_HTTP", server.connection_uri())
        good = fetch_to_raw("netflix", cast, "netflix_http")  # a good UTF-8 file landed first
        before = lake_digest(lake)
        latin1_cast(source / "netflix_cast.csv")
        body = (source / "netflix_cast.csv").read_bytes()
        first_bad = next(i for i, b in enumerate(body) if b >= 0x80)
        with pytest.raises(SourceError) as error:
            fetch_to_raw("netflix", cast, "netflix_http")

    message = str(error.value)
    assert message.startswith("netflix_cast.csv: not valid utf-8")
    assert f"at byte offset {first_bad} (0x{body[first_bad]:02x}" in message
    assert error.value.retryable is False
    assert lake_digest(lake) == before  # raw folder and _sources record unchanged
    assert read_record("netflix", "cast")["sha256"] == good["sha256"]


def test_an_unknown_encoding_is_refused_when_the_metadata_loads():
    from lakehouse.metadata import MetadataError, validate

    meta = {"pipeline": "netflix", "files": [{"table": "cast", "path": "c.csv", "columns": ["cast"]}]}
    meta["files"][0]["encoding"] = "latin-9000"
    with pytest.raises(MetadataError, match=r"files\[0\]: encoding 'latin-9000' is not a text encoding"):
        validate(meta, "pipeline.yaml")
    meta["files"][0]["encoding"] = "rot13"  # a codec, but not a text encoding
    with pytest.raises(MetadataError, match="encoding 'rot13'"):
        validate(meta, "pipeline.yaml")
    meta["files"][0]["encoding"] = "latin-1"
    source = validate(meta, "pipeline.yaml")["files"][0]
    assert source["encoding"] == "iso8859-1"
    assert source["options"] == {"encoding": "ISO-8859-1"}  # what Spark's CSV reader is told


def test_a_latin1_file_declared_utf8_fails_the_run_once_without_retry_and_one_alert(
    airflow_db, lake, tmp_path, monkeypatch, inbox
):
    source = tmp_path / "source"
    write_netflix_sample(source, titles=20, seed=5)
    latin1_cast(source / "netflix_cast.csv", rows=200)
    with FileServer(source) as server:
        monkeypatch.setenv("AIRFLOW_CONN_NETFLIX_HTTP", server.connection_uri())
        result = run_dag("netflix", logical_date=SUNDAY)

    assert result.state == "failed"
    assert result.tasks["fetch_http_file[1]"] == "failed"  # cast, the second file of the metadata
    assert try_numbers("netflix", result.run_id)["fetch_http_file[1]"] == 1  # not retried
    assert result.tasks["bronze"] == "upstream_failed"
    assert len(inbox.messages) == 1, [m["Subject"] for m in inbox.messages]
    assert "netflix_cast.csv: not valid utf-8 at byte offset" in inbox.bodies()[0]
    assert not (lake / "raw" / "netflix" / "cast").exists()
    assert not any(lake.glob("bronze/**/_delta_log"))


@pytest.mark.e2e
def test_a_latin1_file_declared_latin1_reaches_gold_with_its_accents(
    airflow_db, lake, tmp_path, monkeypatch, include_copy
):
    from lakehouse.reporting import read_rows

    yaml_path = include_copy / "netflix" / "pipeline.yaml"
    text = yaml_path.read_text()
    declared = text.replace(
        "    path: netflix_cast.csv\n", "    path: netflix_cast.csv\n    encoding: latin-1\n"
    )
    assert declared != text
    yaml_path.write_text(declared)
    source = tmp_path / "source"
    write_netflix_sample(source, titles=20, seed=6)
    chosen = latin1_cast(source / "netflix_cast.csv", rows=400)
    with FileServer(source) as server:
        monkeypatch.setenv("AIRFLOW_CONN_NETFLIX_HTTP", server.connection_uri())
        result = run_dag("netflix", logical_date=SUNDAY)

    assert result.state == "success", result.tasks
    [raw] = (lake / "raw" / "netflix" / "cast").glob("*.csv")
    assert raw.read_bytes() == (source / "netflix_cast.csv").read_bytes()  # landed as served
    expected = sorted(r["cast"] for r in chosen)
    assert any("é" in name for name in expected)
    for layer in ("bronze", "silver", "gold"):
        rows = read_rows(str(lake / layer / "netflix" / "cast"))
        assert not any("\ufffd" in str(v) for r in rows for v in r.values()), layer
    gold = sorted(r["cast"] for r in read_rows(str(lake / "gold" / "netflix" / "cast")))
    assert gold == expected


# -- 2. parameters checked as a whole -------------------------------------------------------------
@pytest.fixture
def spotify_source(tmp_path, monkeypatch):
    import sqlalchemy as sa

    from lakehouse.spotify_source import create_schema

    path = tmp_path / "source.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    create_schema(engine)
    engine.dispose()
    monkeypatch.setenv("AIRFLOW_CONN_SPOTIFY_SQL", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    return path


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"from_date": "2025-09-10", "to_date": "2025-09-08"}, "parameter to_date: 2025-09-08 must be after"),
        ({"from_date": "2025-09-08", "to_date": "2025-09-08"}, "parameter to_date: 2025-09-08 must be after"),
        ({"from_date": "2025-09-08"}, "parameter to_date: missing; from_date was given"),
        ({"to_date": "2025-09-08"}, "parameter from_date: missing; to_date was given"),
        (
            {"from_date": "0001-01-01", "to_date": "9999-12-31"},
            "parameters from_date .. to_date: 0001-01-01 .. 9999-12-31 covers",
        ),
    ],
    ids=["to_before_from", "to_equals_from", "from_alone", "to_alone", "range_over_cap"],
)
def test_spotify_params_are_refused_as_a_whole_before_any_table_task_starts(
    airflow_db, lake, spotify_source, inbox, conf, message
):
    before = lake_digest(lake)
    result = run_dag("spotify_ingest", logical_date=dt.datetime(2025, 9, 9, tzinfo=dt.UTC), conf=conf)

    assert result.state == "failed"
    assert result.tasks["check_params"] == "failed"
    tries = try_numbers("spotify_ingest", result.run_id)
    assert tries["check_params"] == 1  # not retried
    extract = {k: v for k, v in result.tasks.items() if k.startswith("extract_sql_table")}
    assert extract
    assert set(extract.values()) == {"upstream_failed"}
    assert all(tries[k] == 0 for k in extract)
    assert len(inbox.messages) == 1, [m["Subject"] for m in inbox.messages]
    assert "spotify_ingest.check_params failed" in inbox.messages[0]["Subject"]
    assert message in inbox.bodies()[0]
    if "covers" in message:
        assert "max_windows 366" in inbox.bodies()[0]
    assert lake_digest(lake) == before


def test_spotify_a_param_of_the_wrong_form_is_refused_when_the_run_is_created(
    airflow_db, lake, spotify_source
):
    from airflow.exceptions import ParamValidationError

    dag = load_dag("spotify_ingest")
    with pytest.raises(ParamValidationError, match="from_date"):
        dag.test(
            logical_date=dt.datetime(2025, 9, 9, tzinfo=dt.UTC),
            run_conf={"from_date": "2025-13-45", "to_date": "2025-09-10"},
        )
    with pytest.raises(ParamValidationError, match="lookback_windows"):
        dag.test(logical_date=dt.datetime(2025, 9, 9, tzinfo=dt.UTC), run_conf={"lookback_windows": 366})
    assert lake_digest(lake) == {}


def test_spotify_good_params_pass_the_check_and_the_cap_is_the_metadata_s(
    airflow_db, lake, spotify_source, include_copy
):
    yaml_path = include_copy / "spotify" / "pipeline.yaml"
    yaml_path.write_text(yaml_path.read_text().replace("max_windows: 366", "max_windows: 3"))
    ok = run_dag(
        "spotify_ingest",
        logical_date=dt.datetime(2025, 9, 20, tzinfo=dt.UTC),
        conf={"from_date": "2025-09-07", "to_date": "2025-09-10"},  # exactly 3 windows
    )
    assert ok.tasks["check_params"] == "success"
    assert ok.state == "success", ok.tasks  # an empty source: the table tasks skip
    over = run_dag(
        "spotify_ingest",
        logical_date=dt.datetime(2025, 9, 21, tzinfo=dt.UTC),
        conf={"from_date": "2025-09-07", "to_date": "2025-09-11"},
    )
    assert over.tasks["check_params"] == "failed"


# -- 3. errors a retry cannot fix: a bad-input Spark job ----------------------------------------
def register_job(name: str, main) -> str:
    """A job module ``spark_jobs.<name>`` for ``run.py`` to import, defined by the test."""
    module = types.ModuleType(f"spark_jobs.{name}")
    module.main = main
    sys.modules[f"spark_jobs.{name}"] = module
    return name


def one_job_dag(dag_id: str, job: str, **task_kwargs):
    from airflow.sdk import DAG

    from lakehouse.compute import spark_job
    from lakehouse.defaults import default_args

    pipeline, name = job.split(".")
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        default_args=default_args({"owner": "tests"}),
    ) as dag:
        spark_job("job", pipeline, name, {"tables": ["facts"]}, tables=["facts"], **task_kwargs)
    serialize(dag)
    return dag


def test_a_bad_input_error_from_a_spark_job_is_not_retried_and_alerts_once(airflow_db, lake, inbox):
    pytest.importorskip("spark_jobs.common.errors", reason="the jobs' BadInputError")
    from spark_jobs.common.errors import BadInputError
    from spark_jobs.common.session import get_spark

    class MalformedDeliveryError(BadInputError):
        pass

    def main(argv):
        rows = get_spark("test").range(3).count()  # real work on the server, then bad input
        raise MalformedDeliveryError(f"facts.csv: {rows} rows, line 2 has 3 fields, the header 2")

    job = register_job("airflowtest.badinput", main)
    run = one_job_dag("airflowtest_badinput", job).test(logical_date=SUNDAY)

    assert str(run.state) == "failed"
    assert try_numbers("airflowtest_badinput", run.run_id) == {"job": 1}
    assert len(inbox.messages) == 1, [m["Subject"] for m in inbox.messages]
    body = inbox.bodies()[0]
    assert "Spark job airflowtest.badinput (tables facts) failed on bad input, not retried" in body
    assert "MalformedDeliveryError: facts.csv: 3 rows, line 2 has 3 fields" in body
    assert "--config" not in body
    assert "lake-root" not in body


def test_a_failure_a_retry_can_fix_keeps_its_retries(airflow_db, lake, inbox):
    def main(argv):
        raise ConnectionResetError("the source went away")

    job = register_job("airflowtest.flaky", main)
    run = one_job_dag("airflowtest_flaky", job).test(logical_date=SUNDAY)

    assert str(run.state) == "failed"
    assert try_numbers("airflowtest_flaky", run.run_id) == {"job": 2}  # retried once
    assert len(inbox.messages) == 1
    assert "Spark job airflowtest.flaky (tables facts) failed: ConnectionResetError" in inbox.bodies()[0]


# -- 4. a Spark job that times out says so --------------------------------------------------------
def test_a_spark_job_that_times_out_names_job_and_tables_and_says_timed_out(airflow_db, lake, inbox):
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from spark_jobs.common.session import get_spark

    def main(argv):
        # long enough to still run when the timeout comes: a cross join of 100 k x 100 k rows
        spark = get_spark("test")
        spark.range(100_000).crossJoin(spark.range(100_000).withColumnRenamed("id", "j")).selectExpr(
            "sum(id * j)"
        ).collect()

    job = register_job("airflowtest.slow", main)
    dag = one_job_dag("airflowtest_slow", job, execution_timeout=dt.timedelta(seconds=8), retries=0)
    run = dag.test(logical_date=SUNDAY)

    assert str(run.state) == "failed"
    assert len(inbox.messages) == 1
    body = inbox.bodies()[0]
    assert "Spark job airflowtest.slow (tables facts) timed out" in body
    assert "execution_timeout of 0:00:08" in body
    assert "--config" not in body
    with create_session() as session:
        ti = session.scalar(select(TaskInstance).where(TaskInstance.run_id == run.run_id))
        assert ti.try_number == 1


# -- 5. delta-rs readers exit cleanly, under load -------------------------------------------------
READER = """
import os, sys
sys.path.insert(0, {plugins!r})
os.environ["LAKE_ROOT"] = {lake!r}


def pool_threads():  # pyarrow's thread pools' threads carry the interpreter's name
    names = [open(f"/proc/self/task/{{t}}/comm").read().strip() for t in os.listdir("/proc/self/task")]
    return names.count(open("/proc/self/comm").read().strip())


import deltalake, pyarrow, pyarrow.compute  # noqa: E401 (importing pyarrow starts a thread of its own)
from lakehouse.reporting import catalog, read_arrow, read_gold, released_versions, rows_for_run

before = pool_threads()

assert read_arrow({table!r}).num_rows == {rows}
assert len(rows_for_run("f1", "_audit", "run-1")) == 1
assert released_versions("f1") == {{"standings": 1}}
assert len(read_gold("f1", "standings")) == 220_000  # the released version, before the delete
assert {{t["table"]: t["rows"] for t in catalog({lake!r})}}["standings"] == 220_000
print("threads", before, pool_threads())
"""


@pytest.fixture(scope="module")
def spark_lake(tmp_path_factory, spark):
    """A lake with a Spark-written gold table (deletion vectors), an _audit table and a release."""
    root = tmp_path_factory.mktemp("lake")
    table = root / "gold" / "f1" / "standings"
    spark.range(200_000).selectExpr("id", "id % 30 AS points", "concat('driver ', id) AS name").write.format(
        "delta"
    ).save(str(table))  # version 0
    spark.range(200_000, 220_000).selectExpr(
        "id", "id % 30 AS points", "concat('driver ', id) AS name"
    ).write.format("delta").mode("append").save(str(table))  # version 1: the release
    spark.sql(f"DELETE FROM delta.`{table}` WHERE id % 7 = 0")  # version 2, not released
    spark.createDataFrame([("run-1", "gold", 1)], "run_id string, layer string, value long").write.format(
        "delta"
    ).save(str(root / "gold" / "f1" / "_audit"))
    spark.sql(
        "SELECT 1L AS release, 'run-1' AS run_id, 'gold' AS job, current_timestamp() AS released_at, "
        "map('standings', 1L) AS tables"
    ).write.format("delta").save(str(root / "gold" / "f1" / "_releases"))
    return root


def test_delta_rs_readers_exit_cleanly_in_fresh_interpreters_under_cpu_load(spark_lake):
    from deltalake import DeltaTable

    table = spark_lake / "gold" / "f1" / "standings"
    assert "deletionVectors" in (DeltaTable(str(table)).protocol().reader_features or [])
    current_rows = 220_000 - len([i for i in range(220_000) if i % 7 == 0])
    script = READER.format(
        plugins=str(ROOT / "plugins"), lake=str(spark_lake), table=str(table), rows=current_rows
    )
    # The thread count below is the deterministic proof (its control is the next test); clean exits
    # under load are the symptom it prevents, checked on four interpreters (twelve held every core of
    # the machine for 40 s, the other test worker's too).
    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)
    ]
    try:
        results = [
            subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
            for _ in range(4)
        ]
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    codes = [r.returncode for r in results]
    assert codes == [0] * len(results), [r.stderr[-500:] for r in results if r.returncode]
    for result in results:
        before, after = result.stdout.split()[-2:]
        assert before == after, "a read started pyarrow's thread pool"  # why they exit cleanly


def test_the_thread_check_sees_pyarrow_s_scanner_threads(tmp_path):
    """The control for the test above: pyarrow's dataset scanner (``to_pyarrow_table``, which
    aborts at exit under load) does start threads that the check counts."""
    import pyarrow as pa
    from deltalake import write_deltalake

    write_deltalake(str(tmp_path / "t"), pa.table({"id": list(range(50_000))}))
    script = (
        "import os\n"
        "def n(): return [open(f'/proc/self/task/{t}/comm').read().strip() "
        "for t in os.listdir('/proc/self/task')].count(open('/proc/self/comm').read().strip())\n"
        "b = n()\nfrom deltalake import DeltaTable\n"
        f"DeltaTable({str(tmp_path / 't')!r}).to_pyarrow_table()\nprint(b, n())\n"
        "os._exit(0)\n"  # skip the teardown that can abort: this test checks the count only
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    before, after = out.stdout.split()
    assert int(after) > int(before)


# -- 3 (end to end). a real job's bad input: a header-only file --------------------------------
@pytest.mark.e2e
def test_a_header_only_file_fails_bronze_once_without_retry_naming_the_file(
    airflow_db, lake, tmp_path, monkeypatch, inbox
):
    """The jobs raise a BadInputError subclass for a delivery of no rows (allow_empty is false by
    default); the Spark task fails at its first try, with one alert naming the job and the file."""
    pytest.importorskip("spark_jobs.common.delivery", reason="the jobs' delivery checks")
    source = tmp_path / "source"
    write_netflix_sample(source, titles=20, seed=8)
    (source / "netflix_directors.csv").write_bytes("\ufeffdirector,show_id\r\n".encode())
    with FileServer(source) as server:
        monkeypatch.setenv("AIRFLOW_CONN_NETFLIX_HTTP", server.connection_uri())
        result = run_dag("netflix", logical_date=SUNDAY)

    assert result.state == "failed"
    assert result.tasks["bronze"] == "failed"
    assert try_numbers("netflix", result.run_id)["bronze"] == 1  # not retried
    assert len(inbox.messages) == 1, [m["Subject"] for m in inbox.messages]
    body = inbox.bodies()[0]
    assert "Spark job netflix.bronze failed on bad input, not retried" in body
    assert "EmptyDeliveryError" in body
    assert "netflix_directors.csv" in body or "directors" in body
    assert "--config" not in body


# -- 6. a second run of the same logical date ---------------------------------------------------
def test_the_demo_refuses_a_date_that_has_a_run_saying_how_to_clear_it(airflow_db, lake, spotify_source):
    """A run triggered for a date (the real ``airflow dags trigger`` CLI) is someone's run: the
    demo's ``dag.test()`` would delete it, and Airflow 3.3.2's own ``dags trigger`` fails on the
    database's unique constraint with a raw IntegrityError. The demo names the run and how to
    clear it instead, and the run stays."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from lakehouse import demo

    airflow = str(Path(sys.executable).parent / "airflow")
    env = os.environ.copy()
    subprocess.run([airflow, "dags", "reserialize"], env=env, check=True, capture_output=True)
    day = "2025-09-10T00:00:00+00:00"
    # This worker's metadata DB is the session's: another test (Spotify end to end) may have run
    # that day already. The case starts from no run of it.
    with create_session() as session:
        for run in session.scalars(
            select(DagRun).where(
                DagRun.dag_id == "spotify_ingest", DagRun.logical_date == dt.datetime.fromisoformat(day)
            )
        ):
            session.delete(run)
    trigger = [airflow, "dags", "trigger", "spotify_ingest", "-l", day]
    subprocess.run(trigger, env=env, check=True, capture_output=True)
    again = subprocess.run(trigger, env=env, capture_output=True, text=True, check=False)
    assert again.returncode != 0
    assert "IntegrityError" in again.stderr  # Airflow's own CLI: the raw error this case is about

    with pytest.raises(demo.RunExistsError) as error:
        demo.run_dag("spotify_ingest", day, {})
    message = str(error.value)
    assert message.startswith(f"A run of spotify_ingest for logical date {day} exists already (manual__")
    assert "triggered by cli" in message
    assert f"airflow tasks clear spotify_ingest -s {day} -e {day} -y" in message
    with create_session() as session:
        runs = session.scalars(select(DagRun).where(DagRun.dag_id == "spotify_ingest")).all()
        at_day = [(str(r.triggered_by.value), r.run_id) for r in runs if r.logical_date.isoformat() == day]
        assert len(at_day) == 1  # the triggered run, still there
        assert at_day[0][0] == "cli"
        assert at_day[0][1] in message
    assert demo.timed_run("spotify_ingest", day, {}) is False  # said, not raised
    assert lake_digest(lake) == {}


def test_a_killed_spark_job_names_job_and_tables_and_says_killed(airflow_db, lake, inbox):
    """SIGTERM to the task's process (what Airflow sends a task marked failed or cleared while it
    runs): the task runner calls ``on_kill``, which interrupts the job on the server."""
    import signal
    import threading
    import time

    from spark_jobs.common.session import get_spark

    def main(argv):
        handler = signal.getsignal(signal.SIGTERM)
        assert getattr(handler, "__name__", "") == "_on_term", handler  # the task runner's, not pytest's

        def kill_soon():
            time.sleep(4)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=kill_soon, daemon=True).start()
        spark = get_spark("test")
        spark.range(100_000).crossJoin(spark.range(100_000).withColumnRenamed("id", "j")).selectExpr(
            "sum(id * j)"
        ).collect()

    job = register_job("airflowtest.killed", main)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        run = one_job_dag("airflowtest_killed", job, retries=0).test(logical_date=SUNDAY)
    finally:
        signal.signal(signal.SIGTERM, previous)

    assert str(run.state) == "failed"
    assert try_numbers("airflowtest_killed", run.run_id) == {"job": 1}
    assert len(inbox.messages) == 1
    body = inbox.bodies()[0]
    assert "Spark job airflowtest.killed (tables facts) was killed" in body
    assert "--config" not in body
