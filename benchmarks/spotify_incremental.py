"""Spotify: what one incremental run costs as the fact table grows (part of ``make bench``).

For each size N (stream rows; ``BENCH_SPOTIFY_SIZES``, default ``100k,1M``; ``10M`` is opt-in):
a fresh PostgreSQL database and a fresh lake; N generated streams over
``DAYS`` days, with dimensions of a fixed size, so that only the fact grows. The initial lake is
built and timed apart: the daily windows extracted with ``lakehouse.sql_ingest.extract_table``
and transformed with ``spotify_transform``, in groups of at most ``BENCH_SPOTIFY_CHUNK`` streams
(default 1M: one group up to 1M). Then the timed incremental run: one more day in the source
(``apply_changes``: 1% of N new streams, 1% of each dimension changed), ``spotify_ingest`` for that
day and ``spotify_transform`` (the silver and gold Spark jobs), both with ``dag.test()``.

Since 1% of N grows with N, a second incremental run follows with a fixed change
(``BENCH_SPOTIFY_FIXED`` new streams, default 1,000; 0 leaves it out): its cost across sizes says
directly whether a run's cost follows what changed or the size of the table. Then, on a copy of
the lake's silver layer without gold, the gold job alone builds gold from scratch (every fact):
an incremental run is worth what it saves against that.

The databases live on the server at ``LAKEHOUSE_TEST_PG`` (``host:port``, user postgres, trust) when
it is set, else on a private server started for the benchmark and deleted after it
(``lakehouse.pgserver``, as the tests do). The Spark jobs run on the benchmark's Spark Connect
server (``bench_spark.py``; driver memory ``BENCH_SPARK_MEMORY``, default 8g).

``dag.test()`` runs each task in this process, so each Spark job's own log lines (Python logging,
loggers under ``spark_jobs``) reach a handler attached here: the time between them splits silver
and gold into phases. Each job also records its own time (``LAKEHOUSE_TIMINGS_FILE``): the rest of
its task (the client session, the operator, the task runner) is overhead, which does not depend
on the data. The counts the jobs recorded in ``gold/spotify/_audit`` show what each step read and
wrote. Each size's lake is deleted after its runs unless ``BENCH_SPOTIFY_KEEP_LAKE`` is set; its
database is always dropped.

Notes from running it on 2 cores:

* ``make bench`` runs 100k and 1M by default (about 7 minutes); ``BENCH_SPOTIFY_SIZES=100k,1M,10M``
  adds 10M (most of it building the initial lake).
* The initial build is cut into transform runs of at most 1M new streams, as a daily catch-up
  would run (and as the earlier figure for the 10M lake, 27 minutes, was measured).
* An incremental run reads silver and gold through Spark's own parquet reader and recomputes
  only the facts it can have changed (``facts_rebuilt`` in ``_audit``), so its work follows the
  change; what still grows with the table are scans (silver streams for the facts of changed
  dimension keys, stored facts for the comparison) and the Delta merge's scan of its target.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SIZES = "100k,1M"  # larger sizes are opt-in: see the module's notes
START = dt.date(2025, 9, 7)  # the pipeline's start_date
DAYS = 10
DIMENSIONS = {"users": 10_000, "artists": 1_000, "tracks": 20_000}
CHANGE = 0.01
SPARK_JOBS = ("silver", "gold")
JOBS_LOGGER = "spark_jobs"  # the jobs' loggers: spark_jobs, spark_jobs.spotify.gold, ...
# Issue 9's targets, and the figures before the move to one Spark Connect server.
TARGET_FIXED_GROWTH, BEFORE_FIXED_GROWTH = 1.2, 1.9  # fixed change, total at 10M / at 100k
TARGET_SCRATCH_RATIO = 0.1  # incremental run / gold from scratch, at 10M
BEFORE_INITIAL_10M = "27 min"  # the 10M lake, in runs of 1M
# Where the time inside a job goes, from the jobs' own log lines: (job, phase, from, to): from the
# last line starting with ``from`` (None: the job's first line) to the last line starting with one
# of ``to`` (None: the job's last line), among that job's lines. A job may work on its tables one
# by one or side by side, so each gold table's "written" runs from the end of build+check (the
# expectations' lines) to that table's last line, and phases may overlap.
PHASES = [
    ("silver", "all tables", None, None),
    ("silver", "streams", "silver silver.streams windows_pending", ("silver silver.streams rows_updated",)),
    ("gold", "build+check", None, ("quality ",)),
    ("gold", "dims written", "quality ", ("gold gold.dim_",)),
    ("gold", "fact written", "quality ", ("gold gold.fact_stream ",)),
    ("gold", "fact merge", "gold gold.fact_stream facts_changed", ("gold gold.fact_stream rows_updated",)),
    ("gold", "stream_facts written", "quality ", ("gold gold.stream_facts ",)),
    ("gold", "all written", "quality ", None),
]
PHASE_NOTES = {
    "all tables": "job start to its last line",
    "streams": "pending windows counted to merged",
    "build+check": "job start to the expectations",
    "dims written": "from the expectations",
    "fact written": "from the expectations",
    "fact merge": "the MERGE INTO itself",
    "stream_facts written": "from the expectations",
    "all written": "from the expectations",
}
# What a run read and wrote, from gold/spotify/_audit: (layer, table, metric) -> column title.
AUDIT = {
    ("silver", "streams", "rows_read"): "silver streams read",
    ("silver", "streams", "rows_inserted"): "silver streams inserted",
    ("gold", "fact_stream", "facts_rebuilt"): "gold facts recomputed",
    ("gold", "fact_stream", "facts_changed"): "gold facts changed",
    ("gold", "stream_facts", "rows_written"): "gold stream_facts written",
}


@dataclass
class Run:
    """One run: the rows the source changed, and seconds per step."""

    changed: dict[str, int] = field(default_factory=dict)
    ingest: float = 0.0  # the spotify_ingest DAG run (initial build: the direct extractions)
    extract: float = 0.0  # of which the extract_sql_table tasks
    task: dict[str, float] = field(default_factory=dict)  # Spark task seconds, by job
    work: dict[str, float] = field(default_factory=dict)  # of which the job's own work
    phases: dict[str, float] = field(default_factory=dict)  # "job: phase" -> seconds (PHASES)
    audit: dict[tuple, int] = field(default_factory=dict)
    transforms: int = 0  # spotify_transform runs (the initial build has several)
    job_lines: int = 0  # the jobs' log lines the handler saw (0: not in this process)

    @property
    def rows_changed(self) -> int:
        return sum(self.changed.values())

    @property
    def transform(self) -> float:
        return sum(self.task.values())

    @property
    def total(self) -> float:
        return self.ingest + self.transform

    @property
    def spark_work(self) -> float:
        return sum(self.work.values())

    @property
    def overhead(self) -> float:
        return self.transform - self.spark_work

    @property
    def summary(self) -> str:
        return (
            f"{self.rows_changed:,} rows changed, {self.total:.0f} s (ingest {self.ingest:.0f} s, "
            f"silver {self.task.get('silver', 0):.0f} s, gold {self.task.get('gold', 0):.0f} s)"
        )


@dataclass
class Result:
    size: int
    generate: float = 0.0
    initial: Run | None = None
    incremental: Run | None = None
    fixed: Run | None = None
    scratch: Run | None = None  # gold alone, from scratch, on a copy of the lake's silver
    failure: str | None = None  # the step that failed, when one did


class RunFailedError(RuntimeError):
    """A DAG run of the benchmark did not succeed; the message names its failed tasks."""


def parse_rows(name: str, item: str) -> int:
    factor = {"k": 1_000, "m": 1_000_000}.get(item[-1:].lower(), 1)
    try:
        return int(float(item[:-1] if factor > 1 else item) * factor)
    except ValueError:
        raise SystemExit(f"{name}: {item!r} is not a number of rows (e.g. 100000, 100k, 1M)") from None


def sizes() -> list[int]:
    """``BENCH_SPOTIFY_SIZES``: comma-separated row counts (``k`` and ``M`` allowed)."""
    raw = os.environ.get("BENCH_SPOTIFY_SIZES", "").strip() or DEFAULT_SIZES
    found = {parse_rows("BENCH_SPOTIFY_SIZES", item) for item in raw.replace(" ", "").split(",") if item}
    small = [n for n in found if n < DAYS * 100]
    if small or not found:
        raise SystemExit(f"BENCH_SPOTIFY_SIZES={raw!r}: give sizes of at least {DAYS * 100} rows")
    return sorted(found)


def fixed_change() -> int:
    return parse_rows("BENCH_SPOTIFY_FIXED", os.environ.get("BENCH_SPOTIFY_FIXED", "").strip() or "1000")


def human(n: int) -> str:
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if n >= size and n % (size // 10) == 0:
            return f"{n / size:g}{unit}"
    return str(n)


def say(message: str = "") -> None:
    print(message, flush=True)


# -- the source database ---------------------------------------------------------------------------
def pg() -> dict:
    """The PostgreSQL server's ``LAKEHOUSE_TEST_PG`` address, as psycopg2 keywords."""
    from lakehouse.pgserver import USER, address

    host, port = address()
    return {"host": host, "port": port, "user": USER}


def admin():
    import psycopg2

    conn = psycopg2.connect(dbname="postgres", connect_timeout=3, **pg())
    conn.autocommit = True
    return conn


def postgres_unreachable() -> str | None:
    """None when the server answers, else why not."""
    import psycopg2

    try:
        admin().close()
    except psycopg2.OperationalError as exc:
        return " ".join(str(exc).split())
    return None


class Database:
    """A new database on the server, dropped on exit (``WITH (FORCE)``)."""

    def __init__(self, size: int):
        self.name = f"bench_spotify_{human(size).lower().replace('.', '_')}_{secrets.token_hex(4)}"

    def _admin_sql(self, template: str) -> None:
        from psycopg2 import sql

        conn = admin()
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql.SQL(template).format(sql.Identifier(self.name)))
        finally:
            conn.close()

    def __enter__(self):
        import sqlalchemy as sa

        self._admin_sql("CREATE DATABASE {}")
        server = pg()
        self.engine = sa.create_engine(
            f"postgresql+psycopg2://{server['user']}@{server['host']}:{server['port']}/{self.name}"
        )
        self.connection = json.dumps(
            {
                "conn_type": "postgres",
                "host": server["host"],
                "port": server["port"],
                "login": server["user"],
                "schema": self.name,
            }
        )
        return self

    def __exit__(self, *exc):
        self.engine.dispose()
        self._admin_sql("DROP DATABASE IF EXISTS {} WITH (FORCE)")


# -- runs ---------------------------------------------------------------------------------------
def midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def run_dag(dag_id: str, logical_date: dt.datetime, mark_success: str | None = None):
    """``dag.test()`` of a freshly parsed DAG (the Spark jobs' lake root is read at parse time);
    tasks matching ``mark_success`` (a regex of task ids) are marked successful, not run."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "spotify.py"))
    if bag.import_errors:
        raise SystemExit(f"the Spotify DAGs do not import: {bag.import_errors}")
    run = bag.dags[dag_id].test(logical_date=logical_date, mark_success_pattern=mark_success)
    if str(run.state) != "success":
        failed = sorted({ti.task_id for ti in run.get_task_instances() if str(ti.state) == "failed"})
        raise RunFailedError(f"{dag_id} ended {run.state}, failed task(s): {', '.join(failed) or 'none'}")
    return run


def task_seconds(run) -> dict[str, float]:
    """Seconds per task id (a mapped task's instances summed: ``dag.test()`` runs them in turn)."""
    seconds: dict[str, float] = {}
    for ti in run.get_task_instances():
        if ti.start_date and ti.end_date:
            seconds[ti.task_id] = seconds.get(ti.task_id, 0.0) + (ti.end_date - ti.start_date).total_seconds()
    return seconds


def extract_days(days: list[dt.date], run_id: str) -> float:
    """Each of ``days``' windows to bronze, table by table and one window at a time (an
    extraction then holds one day of streams in memory); returns the seconds taken."""
    from lakehouse.metadata import load_pipeline
    from lakehouse.sql_ingest import Window, extract_table

    meta = load_pipeline("spotify")
    started = time.perf_counter()
    for day in days:
        window = Window(midnight(day), midnight(day + dt.timedelta(days=1)))
        for spec in meta["tables"]:
            extract_table(meta["pipeline"], spec, meta["source"], [window], run_id)
    return time.perf_counter() - started


class JobLines(logging.Handler):
    """The Spark jobs' own log lines, with their times, while a run lasts: a handler on the
    ``spark_jobs`` logger of this process, where ``dag.test()`` runs the tasks."""

    def __init__(self):
        super().__init__(level=logging.INFO)
        self.lines: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append((record.created, record.getMessage()))
        except Exception:
            self.handleError(record)

    def __enter__(self):
        logging.getLogger(JOBS_LOGGER).addHandler(self)
        return self

    def __exit__(self, *exc):
        logging.getLogger(JOBS_LOGGER).removeHandler(self)

    def jobs(self) -> dict[str, list[tuple[float, str]]]:
        """Each job's lines, from its ``job spotify.<name>`` line to the next job's (the last run
        of a job wins)."""
        found: dict[str, list[tuple[float, str]]] = {}
        current = None
        for at, text in self.lines:
            if text.startswith("job spotify."):
                current = found[text.split()[1].split(".", 1)[1]] = []
            if current is not None:
                current.append((at, text))
        return found

    def phases(self) -> dict[str, float]:
        """Seconds per phase (PHASES), as "job: phase"; a phase whose lines were not seen is left out."""
        found = {}
        jobs = self.jobs()
        for job, name, start, ends in PHASES:
            lines = jobs.get(job)
            if not lines:
                continue
            begin = [at for at, text in lines if text.startswith(start)] if start else [lines[0][0]]
            end = [at for at, text in lines if text.startswith(ends)] if ends else [lines[-1][0]]
            if begin and end and end[-1] >= begin[-1]:
                found[f"{job}: {name}"] = end[-1] - begin[-1]
        return found


def transform(logical_date: dt.datetime, timings: Path, server, *, gold_only: bool = False) -> Run:
    """One spotify_transform run: task seconds, each job's own work and phases, its audit counts.
    With ``gold_only``, silver and the report are marked successful and only gold runs. A failed
    run raises :class:`RunFailedError` naming the failed task and what it died of."""
    from bench_spark import SparkTaskWatch

    from lakehouse.reporting import rows_for_run

    timings.write_text("")
    run = Run(transforms=1)
    with JobLines() as lines, SparkTaskWatch() as watch:
        try:
            dag_run = run_dag(
                "spotify_transform", logical_date, mark_success="silver|report_run" if gold_only else None
            )
        except RunFailedError as exc:
            causes = [c for c in (watch.errors[0][:600] if watch.errors else None, server.post_mortem()) if c]
            raise RunFailedError("; ".join([str(exc), *causes])) from None
    run.phases = lines.phases()
    run.job_lines = len(lines.lines)
    seconds = task_seconds(dag_run)
    run.task = {job: seconds.get(job, 0.0) for job in SPARK_JOBS if not (gold_only and job != "gold")}
    for line in timings.read_text().splitlines():
        if line.strip():
            timing = json.loads(line)
            run.work[timing["job"].split(".", 1)[1]] = timing["python_seconds"] - timing["session_seconds"]
    run.audit = {
        key: int(row["value"])
        for row in rows_for_run("spotify", "_audit", dag_run.run_id)
        if (key := (row["layer"], row["table"], row["metric"])) in AUDIT
    }
    return run


def initial_build(size: int, timings: Path, label: str, server) -> Run:
    """Bronze and a transform run per group of days holding at most ``BENCH_SPOTIFY_CHUNK``
    streams (default 1M; one group up to that size), as a daily catch-up would build the lake
    (see the module's notes). Returns the summed seconds."""
    chunk = parse_rows("BENCH_SPOTIFY_CHUNK", os.environ.get("BENCH_SPOTIFY_CHUNK", "").strip() or "1M")
    per_run = max(1, min(DAYS, chunk // max(size // DAYS, 1)))
    days = [START + dt.timedelta(days=i) for i in range(DAYS)]
    groups = [days[i : i + per_run] for i in range(0, DAYS, per_run)]
    total = Run()
    for number, group in enumerate(groups, 1):
        ingest = extract_days(group, f"bench_initial_{number}")
        logical_date = midnight(days[-1] + dt.timedelta(days=1)) + dt.timedelta(minutes=number)
        part = transform(logical_date, timings, server)
        total.ingest += ingest
        total.transforms += 1
        total.job_lines += part.job_lines
        for job in SPARK_JOBS:
            total.task[job] = total.task.get(job, 0.0) + part.task.get(job, 0.0)
            total.work[job] = total.work.get(job, 0.0) + part.work.get(job, 0.0)
        if len(groups) > 1:
            say(f"{label} initial {number}/{len(groups)}, {group[0]}..{group[-1]}: {part.transform:.0f} s")
    total.extract = total.ingest
    return total


def incremental(db, day: dt.date, streams: int, seed: int, timings: Path, server) -> Run:
    """One more day in the source, then one spotify_ingest run for it and one spotify_transform."""
    from lakehouse.spotify_source import apply_changes

    changed = apply_changes(db.engine, day, CHANGE, seed=seed, streams=streams)
    started = time.perf_counter()
    ingest = run_dag("spotify_ingest", midnight(day + dt.timedelta(days=1)))
    seconds = time.perf_counter() - started
    run = transform(midnight(day + dt.timedelta(days=1)) + dt.timedelta(hours=1), timings, server)
    run.changed, run.ingest = changed, seconds
    run.extract = task_seconds(ingest).get("extract_sql_table", 0.0)
    return run


def gold_from_scratch(lake: Path, logical_date: dt.datetime, timings: Path, server) -> Run:
    """The gold job alone, into a copy of ``lake`` that holds its silver layer and no gold: every
    gold table built from scratch, from the same silver the incremental runs ended with."""
    copy = lake.with_name(f"{lake.name}-gold-from-scratch")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(lake / "silver", copy / "silver")
    os.environ["LAKE_ROOT"] = str(copy)
    try:
        return transform(logical_date, timings, server, gold_only=True)
    finally:
        os.environ["LAKE_ROOT"] = str(lake)
        shutil.rmtree(copy, ignore_errors=True)


def bench_size(size: int, work: Path, timings: Path, fixed: int, server) -> Result:
    """The initial build, the incremental run(s) and gold from scratch at one size; a failed run
    ends this size (its step is reported) and the benchmark goes on with the next one."""
    from lakehouse.spotify_source import generate

    lake = work / f"spotify-lake-{human(size)}"
    os.environ["LAKE_ROOT"] = str(lake)
    label = f"  {human(size):>5}:"
    result = Result(size)
    step = "generate"
    try:
        server.ensure()  # again, if an earlier size's run took it down
        with Database(size) as db:
            os.environ["AIRFLOW_CONN_SPOTIFY_SQL"] = db.connection
            say(f"{label} generating {size:,} streams over {DAYS} days into PostgreSQL database {db.name}")
            started = time.perf_counter()
            generate(
                db.engine,
                start=START,
                days=DAYS,
                streams_per_day=size // DAYS,
                change_fraction=CHANGE,
                seed=size,
                **DIMENSIONS,
            )
            result.generate = time.perf_counter() - started

            step = "initial build"
            result.initial = initial_build(size, timings, label, server)
            say(
                f"{label} initial lake built in {result.initial.total / 60:.1f} min: ingest "
                f"{result.initial.ingest:.0f} s, transform {result.initial.transform:.0f} s "
                f"({result.initial.transforms} run(s))"
            )
            day = START + dt.timedelta(days=DAYS)
            step = "incremental run (1%)"
            result.incremental = incremental(db, day, size // 100, size, timings, server)
            say(f"{label} incremental run: {result.incremental.summary}")
            if fixed:
                step = "incremental run (fixed change)"
                result.fixed = incremental(db, day + dt.timedelta(days=1), fixed, size + 1, timings, server)
                say(f"{label} incremental run: {result.fixed.summary}")
            step = "gold from scratch"
            result.scratch = gold_from_scratch(lake, midnight(day + dt.timedelta(days=3)), timings, server)
            say(f"{label} gold from scratch on the same silver: {result.scratch.task['gold']:.0f} s")
    except RunFailedError as exc:
        result.failure = f"{step}: {exc}"
        say(f"{label} FAILED in the {result.failure}")
    if os.environ.get("BENCH_SPOTIFY_KEEP_LAKE"):
        say(f"{label} lake kept in {lake} (BENCH_SPOTIFY_KEEP_LAKE)")
    else:
        shutil.rmtree(lake, ignore_errors=True)
    return result


# -- report -------------------------------------------------------------------------------------
def times(value: float, base: float) -> str:
    return f"{value / base:5.1f}x" if base > 0 else "    - "


def runs_table(title: str, results: list[Result], pick) -> None:
    base_result = results[0]
    base = pick(base_result)
    say(f"\n  {title}")
    say(
        f"  {'N':>5} {'rows changed':>12} {'ingest s':>9} {'silver s':>9} {'gold s':>7} {'total s':>8}"
        f" {'overhead s':>11}   {'size x':>6} {'chg x':>6} {'total x':>7} {'work x':>6}"
    )
    for r in results:
        run = pick(r)
        work, base_work = run.extract + run.spark_work, base.extract + base.spark_work
        say(
            f"  {human(r.size):>5} {run.rows_changed:>12,} {run.ingest:9.1f} {run.task['silver']:9.1f}"
            f" {run.task['gold']:7.1f} {run.total:8.1f} {run.overhead:11.1f}"
            f"   {times(r.size, base_result.size)} {times(run.rows_changed, base.rows_changed)}"
            f"  {times(run.total, base.total)} {times(work, base_work)}"
        )
    say(f"  {'':>5} {'':>12} {'extract':>9} {'work':>9} {'work':>7}")
    for r in results:
        run = pick(r)
        say(
            f"  {human(r.size):>5} {'':>12} {run.extract:9.1f} {run.work.get('silver', 0):9.1f}"
            f" {run.work.get('gold', 0):7.1f}   extract {times(run.extract, base.extract).strip()},"
            f" silver work {times(run.work.get('silver', 0), base.work.get('silver', 0)).strip()},"
            f" gold work {times(run.work.get('gold', 0), base.work.get('gold', 0)).strip()}"
        )


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}" if base > 0 else "-"


def report(everything: list[Result], server, fixed: int) -> None:
    for r in everything:
        if r.failure:
            say(f"\n  {human(r.size)}: the {r.failure}")
    results = [r for r in everything if r.incremental]
    built = [r for r in everything if r.initial]
    if not built:
        return
    say(
        f"\nSpotify: an incremental run's cost as the fact table grows (PostgreSQL source; Spark Connect "
        f"server {server.conf.get('spark.master')}, driver memory {server.memory})\n"
        f"  N stream rows over {DAYS} days; dimensions fixed at "
        + ", ".join(f"{v:,} {k}" for k, v in DIMENSIONS.items())
        + f", {CHANGE:.0%} of each changed per day\n"
        "  what the figures mean:\n"
        "    ingest: the spotify_ingest run (5 extract tasks); silver, gold: the transform's Spark tasks\n"
        "    overhead: those Spark tasks minus the jobs' own work (client session, operator, task runner)\n"
        "    work: the extract tasks + the Spark jobs' own work, i.e. without overhead\n"
        f"    size x, chg x, total x, work x: ratios to the {human(built[0].size)} case\n"
        "    gold from scratch: the gold job alone on a copy of the lake's silver without gold (every fact)\n"
        "    initial build: bronze extracted directly, then spotify_transform runs of at most 1M new streams"
    )
    if results:
        runs_table(
            f"incremental run: {CHANGE:.0%} of N new streams, {CHANGE:.0%} of each dimension",
            results,
            lambda r: r.incremental,
        )
    with_fixed = [r for r in results if r.fixed]
    if with_fixed:
        runs_table(
            f"incremental run with a fixed change: {fixed:,} new streams, {CHANGE:.0%} of each dimension",
            with_fixed,
            lambda r: r.fixed,
        )
    if results:
        say(
            "\n  inside the Spark jobs: seconds between the jobs' own log lines (1% run / fixed-change run);"
            "\n  a job writes its tables one by one or side by side, so the gold phases can overlap"
        )
        say(f"  {'phase':<56}" + "".join(f"{human(r.size):>16}" for r in results))
        for job, name, _, _ in PHASES:
            phase = f"{job}: {name}"
            cells = []
            for r in results:
                values = [run.phases.get(phase) for run in (r.incremental, r.fixed) if run]
                cells.append(" / ".join("-" if v is None else f"{v:.1f}" for v in values))
            say(f"  {f'{phase} ({PHASE_NOTES[name]})':<56}" + "".join(f"{c:>16}" for c in cells))
        unseen = [human(r.size) for r in results if not r.incremental.job_lines]
        if unseen:
            say(f"  no job log line reached this process at {', '.join(unseen)}: no phases there")
        else:
            lines = sum(run.job_lines for r in results for run in (r.incremental, r.fixed) if run)
            say(f"  (dag.test() ran the Spark tasks in this process: its handler got {lines:,} job lines)")
        say("\n  what each incremental run's jobs counted (gold/spotify/_audit)")
        say(f"  {'N':>5} {'run':>7} " + " ".join(f"{title:>26}" for title in AUDIT.values()))
        for r in results:
            for name, run in (("1%", r.incremental), ("fixed", r.fixed), ("scratch", r.scratch)):
                if run:
                    say(
                        f"  {human(r.size):>5} {name:>7} "
                        + " ".join(f"{run.audit.get(k, 0):>26,}" for k in AUDIT)
                    )
    scratch = [r for r in results if r.scratch and r.fixed]
    if scratch:
        say("\n  incremental run ÷ gold rebuilt from scratch on the same lake (after the fixed-change run)")
        say(
            f"  {'N':>5} {'scratch gold s':>15} {'(work s)':>9} {'fixed run s':>12} {'fixed ÷ scratch':>16}"
            f" {'fixed gold ÷ scratch gold':>26} {'1% run ÷ scratch':>17}"
        )
        for r in scratch:
            gold = r.scratch.task.get("gold", 0.0)
            say(
                f"  {human(r.size):>5} {gold:15.1f} {r.scratch.work.get('gold', 0):9.1f}"
                f" {r.fixed.total:12.1f} {ratio(r.fixed.total, gold):>16}"
                f" {ratio(r.fixed.task.get('gold', 0), gold):>26} {ratio(r.incremental.total, gold):>17}"
            )
    say("\n  initial build (timed apart, not part of the comparison)")
    say(
        f"  {'N':>5} {'generate s':>11} {'ingest s':>9} {'silver s':>9} {'gold s':>7} {'total s':>8}"
        f" {'total min':>10} {'transform runs':>15}"
    )
    for r in built:
        init = r.initial
        say(
            f"  {human(r.size):>5} {r.generate:11.1f} {init.ingest:9.1f} {init.task['silver']:9.1f}"
            f" {init.task['gold']:7.1f} {init.total:8.1f} {init.total / 60:10.1f} {init.transforms:>15}"
        )

    say("\n  Issue 9 figures (Spotify)")
    if len(with_fixed) > 1:
        small, large = with_fixed[0], with_fixed[-1]
        say(
            f"    fixed {fixed:,}-stream change, total at {human(large.size)} ÷ at {human(small.size)}: "
            f"{large.fixed.total / small.fixed.total:.2f}x  (target ≤ {TARGET_FIXED_GROWTH}x at 10M ÷ 100k;"
            f" was {BEFORE_FIXED_GROWTH}x)"
        )
    else:
        say("    fixed-change growth: needs two sizes with a fixed-change run")
    if scratch:
        largest = scratch[-1]
        say(
            f"    incremental run ÷ gold from scratch at {human(largest.size)}: "
            f"{ratio(largest.fixed.total, largest.scratch.task.get('gold', 0))} (fixed-change run; "
            f"target ≤ {TARGET_SCRATCH_RATIO} at 10M)"
        )
    ten_million = next((r for r in built if r.size == 10_000_000), None)
    if ten_million:
        say(
            f"    initial 10M lake: {ten_million.initial.total / 60:.1f} min in "
            f"{ten_million.initial.transforms} transform runs (was {BEFORE_INITIAL_10M} in runs of 1M)"
        )
    else:
        say(
            f"    initial 10M lake: not measured (largest here {human(built[-1].size)}: "
            f"{built[-1].initial.total / 60:.1f} min); BENCH_SPOTIFY_SIZES=...,10M measures it "
            f"(was {BEFORE_INITIAL_10M} in runs of 1M)"
        )


def bench_spotify(work: Path, server) -> None:
    from lakehouse.pgserver import ENV_VAR, PostgresUnavailableError, start_postgres

    if os.environ.get(ENV_VAR):
        _bench_spotify(work, server)
        return
    try:
        postgres = start_postgres(work)
    except PostgresUnavailableError as exc:
        say(f"\nSpotify benchmark skipped: {exc}")
        return
    say(f"\nA private PostgreSQL server for the Spotify benchmark on {postgres.address} ({ENV_VAR} unset)")
    os.environ[ENV_VAR] = postgres.address
    try:
        _bench_spotify(work, server)
    finally:
        postgres.stop()
        del os.environ[ENV_VAR]


def _bench_spotify(work: Path, server) -> None:
    why = postgres_unreachable()
    if why:
        host, port = pg()["host"], pg()["port"]
        say(f"\nSpotify benchmark skipped: PostgreSQL is not reachable at {host}:{port}: {why}")
        return
    chosen, fixed = sizes(), fixed_change()
    timings = work / "spotify-timings.jsonl"
    os.environ["LAKEHOUSE_TIMINGS_FILE"] = str(timings)
    say(
        f"\nSpotify incremental runs on {', '.join(human(n) for n in chosen)} stream rows "
        f"(BENCH_SPOTIFY_SIZES; 10M is opt-in), then {fixed:,} rows (BENCH_SPOTIFY_FIXED), "
        f"then gold from scratch"
    )
    started = time.perf_counter()
    results = [bench_size(size, work, timings, fixed, server) for size in chosen]
    report(results, server, fixed)
    say(f"\n  Spotify benchmark: {(time.perf_counter() - started) / 60:.1f} min in all")
