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
directly whether a run's cost follows what changed or the size of the table.

The databases live on the server at ``LAKEHOUSE_TEST_PG`` (``host:port``, user postgres, trust) when
it is set, else on a private server started for the benchmark and deleted after it
(``lakehouse.pgserver``, as the tests do).

Each Spark job records how long its Python driver ran and how long its SparkSession took to start
(``LAKEHOUSE_TIMINGS_FILE``); the rest of the task (JVM launch, session start, shutdown) is
start-up, which does not depend on the data. The counts the jobs recorded in
``gold/spotify/_audit`` show what each step read and wrote, and the time between the jobs' own
log lines splits silver and gold into phases. Each size's lake is deleted after its runs unless
``BENCH_SPOTIFY_KEEP_LAKE`` is set; its database is always dropped.

Notes from running it on 2 cores:

* ``make bench`` runs 100k and 1M by default (about 7 minutes); ``BENCH_SPOTIFY_SIZES=100k,1M,10M``
  adds 10M (about 25 minutes more, most of it building the initial lake).
* The initial build is cut into transform runs of at most 1M new streams, as a daily catch-up
  would run: the local Delta engine (delta-rs) hands a merge's source rows to Delta through the
  Spark driver as Arrow, and the jobs' driver has 2g (``SPARK_SUBMIT_CONF`` raises it).
* An incremental run reads silver and gold through Spark's own parquet reader and recomputes
  only the facts it can have changed (``facts_rebuilt`` in ``_audit``), so its work follows the
  change; what still grows with the table are scans (silver streams for the facts of changed
  dimension keys, stored facts for the comparison) and the Delta merge's scan of its target.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
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
# Where the time inside a job goes: the jobs' own log lines (in spark-submit's output) that end
# each phase, by job; a phase lasts from the line before to its own line.
JOB_LINE = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO spark_jobs(?:\.[\w.]+)?: (.*)")
ERROR_LINE = re.compile(r"(java\.lang\.OutOfMemoryError.*|\S*(Error|Exception): .*)")
PHASES = {
    "silver": [
        ("job spotify.silver ", None),
        ("silver silver.streams windows_pending", "other tables"),
        ("silver silver.streams rows_updated", "streams"),
    ],
    "gold": [
        ("job spotify.gold ", None),
        ("quality ", "build+check"),
        ("gold gold.dim_date rows_written", "dims write"),
        ("gold gold.fact_stream facts_changed", "fact diff"),
        ("gold gold.fact_stream rows_updated", "fact merge"),
        ("gold gold.stream_facts rows_written", "stream_facts"),
    ],
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
    def startup(self) -> float:
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


def run_dag(dag_id: str, logical_date: dt.datetime):
    """``dag.test()`` of a freshly parsed DAG (the Spark jobs' lake root is read at parse time)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "spotify.py"))
    if bag.import_errors:
        raise SystemExit(f"the Spotify DAGs do not import: {bag.import_errors}")
    run = bag.dags[dag_id].test(logical_date=logical_date)
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


class JobLines:
    """Collects the Spark jobs' own log lines, with their timestamps, and the last error lines,
    while a run lasts: the SparkSubmitHook's reading of spark-submit's output is wrapped to see
    each line on its way (a private method of the provider: where it is gone, no phases or
    causes are reported)."""

    def __init__(self):
        self.lines: list[tuple[dt.datetime, str]] = []
        self.errors: list[str] = []
        self._patch = None

    def _tee(self, itr):
        for line in itr:
            text = str(line).strip()
            if match := JOB_LINE.search(text):
                self.lines.append((dt.datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f"), match[2]))
            elif match := ERROR_LINE.search(text):
                self.errors.append(match[0])
            yield line

    def cause(self) -> str | None:
        """The error the job died of, as it said: out of memory first, else its last error."""
        memory = [e for e in self.errors if "OutOfMemoryError" in e or "heap space" in e]
        found = memory or self.errors
        return found[0][:200] if found else None

    def __enter__(self):
        from unittest import mock

        from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook

        original = getattr(SparkSubmitHook, "_process_spark_submit_log", None)
        if original is not None:
            tee = self._tee

            def process(hook, itr):
                return original(hook, tee(itr))

            self._patch = mock.patch.object(SparkSubmitHook, "_process_spark_submit_log", process)
            self._patch.start()
        return self

    def __exit__(self, *exc):
        if self._patch is not None:
            self._patch.stop()

    def phases(self) -> dict[str, float]:
        """Seconds per phase of each job (PHASES); a phase whose lines were not seen is left out."""
        found = {}
        for job, marks in PHASES.items():
            start = next((i for i, (_, text) in enumerate(self.lines) if text.startswith(marks[0][0])), None)
            if start is None:
                continue
            previous = self.lines[start][0]
            for prefix, name in marks[1:]:
                hit = next((at for at, text in self.lines[start:] if text.startswith(prefix)), None)
                if hit is not None:
                    found[f"{job}: {name}"] = (hit - previous).total_seconds()
                    previous = hit
        return found


def transform(logical_date: dt.datetime, timings: Path) -> Run:
    """One spotify_transform run: task seconds, each job's own work and phases, its audit counts.
    A failed run raises :class:`RunFailedError` naming the failed task and, where the job's
    output said, what it died of."""
    from lakehouse.reporting import rows_for_run

    timings.write_text("")
    run = Run()
    with JobLines() as lines:
        try:
            dag_run = run_dag("spotify_transform", logical_date)
        except RunFailedError as exc:
            cause = lines.cause()
            raise RunFailedError(f"{exc}: {cause}" if cause else str(exc)) from None
    run.phases = lines.phases()
    seconds = task_seconds(dag_run)
    run.task = {job: seconds.get(job, 0.0) for job in SPARK_JOBS}
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


def initial_build(size: int, timings: Path, label: str) -> Run:
    """Bronze and a transform run per group of days holding at most ``BENCH_SPOTIFY_CHUNK``
    streams (default 1M; one group up to that size), as a daily catch-up would build the lake:
    the transform of a whole 3M or 10M at once does not fit the jobs' 2g driver (see the
    module's notes). Returns the summed seconds."""
    chunk = parse_rows("BENCH_SPOTIFY_CHUNK", os.environ.get("BENCH_SPOTIFY_CHUNK", "").strip() or "1M")
    per_run = max(1, min(DAYS, chunk // max(size // DAYS, 1)))
    days = [START + dt.timedelta(days=i) for i in range(DAYS)]
    groups = [days[i : i + per_run] for i in range(0, DAYS, per_run)]
    total = Run()
    for number, group in enumerate(groups, 1):
        ingest = extract_days(group, f"bench_initial_{number}")
        part = transform(midnight(days[-1] + dt.timedelta(days=1)) + dt.timedelta(minutes=number), timings)
        total.ingest += ingest
        for job in SPARK_JOBS:
            total.task[job] = total.task.get(job, 0.0) + part.task.get(job, 0.0)
            total.work[job] = total.work.get(job, 0.0) + part.work.get(job, 0.0)
        if len(groups) > 1:
            say(f"{label} initial {number}/{len(groups)}, {group[0]}..{group[-1]}: {part.transform:.0f} s")
    total.extract = total.ingest
    return total


def incremental(db, day: dt.date, streams: int, seed: int, timings: Path) -> Run:
    """One more day in the source, then one spotify_ingest run for it and one spotify_transform."""
    from lakehouse.spotify_source import apply_changes

    changed = apply_changes(db.engine, day, CHANGE, seed=seed, streams=streams)
    started = time.perf_counter()
    ingest = run_dag("spotify_ingest", midnight(day + dt.timedelta(days=1)))
    seconds = time.perf_counter() - started
    run = transform(midnight(day + dt.timedelta(days=1)) + dt.timedelta(hours=1), timings)
    run.changed, run.ingest = changed, seconds
    run.extract = task_seconds(ingest).get("extract_sql_table", 0.0)
    return run


def bench_size(size: int, work: Path, timings: Path, fixed: int) -> Result:
    """The initial build and the incremental run(s) at one size; a failed run ends this size (its
    step is reported) and the benchmark goes on with the next one."""
    from lakehouse.spotify_source import generate

    lake = work / f"spotify-lake-{human(size)}"
    os.environ["LAKE_ROOT"] = str(lake)
    label = f"  {human(size):>5}:"
    result = Result(size)
    step = "generate"
    try:
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
            result.initial = initial_build(size, timings, label)
            say(
                f"{label} initial lake built: ingest {result.initial.ingest:.0f} s, "
                f"transform {result.initial.transform:.0f} s"
            )
            day = START + dt.timedelta(days=DAYS)
            step = "incremental run (1%)"
            result.incremental = incremental(db, day, size // 100, size, timings)
            say(f"{label} incremental run: {result.incremental.summary}")
            if fixed:
                step = "incremental run (fixed change)"
                result.fixed = incremental(db, day + dt.timedelta(days=1), fixed, size + 1, timings)
                say(f"{label} incremental run: {result.fixed.summary}")
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
        f" {'start-up s':>11}   {'size x':>6} {'chg x':>6} {'total x':>7} {'work x':>6}"
    )
    for r in results:
        run = pick(r)
        work, base_work = run.extract + run.spark_work, base.extract + base.spark_work
        say(
            f"  {human(r.size):>5} {run.rows_changed:>12,} {run.ingest:9.1f} {run.task['silver']:9.1f}"
            f" {run.task['gold']:7.1f} {run.total:8.1f} {run.startup:11.1f}"
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


def report(everything: list[Result]) -> None:
    results = [r for r in everything if r.failure is None]
    for r in everything:
        if r.failure:
            say(f"\n  {human(r.size)}: no figures: the {r.failure}")
    if not results:
        return
    say(
        f"\nSpotify: an incremental run's cost as the fact table grows (PostgreSQL source, local[2] Spark)\n"
        f"  N stream rows over {DAYS} days; dimensions fixed at "
        + ", ".join(f"{v:,} {k}" for k, v in DIMENSIONS.items())
        + f", {CHANGE:.0%} of each changed per day\n"
        "  ingest: the spotify_ingest run (5 extract tasks); silver, gold: the Spark tasks; start-up: the\n"
        "  part of those tasks before and after the jobs' own work (JVM, SparkSession); ratios: to the\n"
        f"  {human(results[0].size)} case ('work' = extract tasks + Spark work, i.e. without start-up)"
    )
    runs_table(
        f"incremental run: {CHANGE:.0%} of N new streams, {CHANGE:.0%} of each dimension",
        results,
        lambda r: r.incremental,
    )
    if all(r.fixed for r in results):
        fixed = results[0].fixed.changed.get("FactStream", 0)
        runs_table(
            f"incremental run with a fixed change: {fixed:,} new streams, {CHANGE:.0%} of each dimension",
            results,
            lambda r: r.fixed,
        )
    phases = [f"{job}: {name}" for job, marks in PHASES.items() for _, name in marks[1:]]
    say("\n  inside the Spark jobs (seconds between the jobs' own log lines; 1% run / fixed-change run)")
    say(f"  {'N':>5} " + " ".join(f"{p:>22}" for p in phases))
    for r in results:
        cells = []
        for phase in phases:
            values = [run.phases.get(phase) for run in (r.incremental, r.fixed) if run]
            cells.append(" / ".join("-" if v is None else f"{v:.1f}" for v in values))
        say(f"  {human(r.size):>5} " + " ".join(f"{c:>22}" for c in cells))
    say("\n  what each incremental run's jobs counted (gold/spotify/_audit)")
    say(f"  {'N':>5} {'run':>6} " + " ".join(f"{title:>26}" for title in AUDIT.values()))
    for r in results:
        for name, run in (("1%", r.incremental), ("fixed", r.fixed)):
            if run:
                say(
                    f"  {human(r.size):>5} {name:>6} "
                    + " ".join(f"{run.audit.get(k, 0):>26,}" for k in AUDIT)
                )
    say("\n  initial build (timed apart, not part of the comparison)")
    say(f"  {'N':>5} {'generate s':>11} {'ingest s':>9} {'silver s':>9} {'gold s':>7} {'total s':>8}")
    for r in results:
        init = r.initial
        say(
            f"  {human(r.size):>5} {r.generate:11.1f} {init.ingest:9.1f} {init.task['silver']:9.1f}"
            f" {init.task['gold']:7.1f} {init.total:8.1f}"
        )


def bench_spotify(work: Path) -> None:
    from lakehouse.pgserver import ENV_VAR, PostgresUnavailableError, start_postgres

    if os.environ.get(ENV_VAR):
        _bench_spotify(work)
        return
    try:
        server = start_postgres(work)
    except PostgresUnavailableError as exc:
        say(f"\nSpotify benchmark skipped: {exc}")
        return
    say(f"\nA private PostgreSQL server for the Spotify benchmark on {server.address} ({ENV_VAR} unset)")
    os.environ[ENV_VAR] = server.address
    try:
        _bench_spotify(work)
    finally:
        server.stop()
        del os.environ[ENV_VAR]


def _bench_spotify(work: Path) -> None:
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
        f"(BENCH_SPOTIFY_SIZES; 10M is opt-in), then {fixed:,} rows (BENCH_SPOTIFY_FIXED)"
    )
    started = time.perf_counter()
    results = [bench_size(size, work, timings, fixed) for size in chosen]
    report(results)
    say(f"\n  Spotify benchmark: {(time.perf_counter() - started) / 60:.1f} min in all")
