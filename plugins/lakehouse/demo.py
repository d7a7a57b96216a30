"""``make demo``: the Netflix, Formula 1, Spotify and AdventureWorks DAGs end to end on generated
data, on this machine only.

Sets up a local Airflow home (SQLite) if needed, starts the local Spark Connect server (or uses the
one running), writes sample files, serves them on 127.0.0.1, runs each DAG with ``dag.test()`` in
this process (as ``airflow dags test`` does, with one Airflow start for all runs) while printing
each task as it finishes, and ends with every lake table written: layer, rows and Delta version.
Running it again shows that unchanged sources rewrite nothing.

Spotify's source is a generated SQLite database (``.demo/spotify.db``): a few days ingested one
daily window at a time, then one more day of source changes ingested the same way, then one
transform run; it prints the SCD2 history gold built for users who changed.

AdventureWorks' source is a generated SQLite database (``.demo/adventureworks.db``): one
``adventureworks_copy`` run copies its every table, then ``adventureworks_serve`` publishes gold to a
PostgreSQL warehouse (a throwaway private server unless ``adventureworks_warehouse`` is set).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from lakehouse import settings, spark_server
from lakehouse.devserver import FileServer
from lakehouse.reporting import catalog, format_table, read_gold
from lakehouse.sample_data import write_formula1_drops, write_netflix_sample
from lakehouse.spark_server import SparkServer
from lakehouse.storage import layer_uri

TASK_LINE = re.compile(r"\[DAG TEST\] (starting|end task) task_id=(\S+) map_index=(-?\d+)")


def say(message: str) -> None:
    print(message, flush=True)


def ensure_airflow_db(airflow: str) -> None:
    home = Path(os.environ.setdefault("AIRFLOW_HOME", str(settings.REPO_ROOT / ".airflow")))
    if (home / "airflow.db").exists():
        return
    say(f"Initialising the Airflow metadata database in {home} (SQLite)")
    home.mkdir(parents=True, exist_ok=True)
    subprocess.run([airflow, "db", "migrate"], check=True, capture_output=True)


class TaskProgress(logging.Handler):
    """Prints a line as ``dag.test()`` starts and ends each task, with its state and time, and the
    first line of each error a task logs."""

    def __init__(self, dag_id: str):
        super().__init__(level=logging.INFO)
        self.dag_id = dag_id
        self.started: dict[str, float] = {}
        self.run_id: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if match := TASK_LINE.search(message):
            phase, task_id, index = match.groups()
            name = task_id if index == "-1" else f"{task_id}[{index}]"
            if phase == "starting":
                self.started[name] = time.monotonic()
                say(f"  ...   {name}")
            else:
                seconds = time.monotonic() - self.started.get(name, time.monotonic())
                say(f"  {self.state(task_id, int(index)):<7} {name:<24} {seconds:6.1f} s")
        elif record.levelno >= logging.ERROR and not message.startswith("[DAG TEST]"):
            say("  " + message.strip().splitlines()[0][:300])

    def state(self, task_id: str, map_index: int) -> str:
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            found = session.scalars(
                select(TaskInstance.state)
                .where(TaskInstance.dag_id == self.dag_id, TaskInstance.task_id == task_id)
                .where(TaskInstance.map_index == map_index)
                .order_by(TaskInstance.start_date.desc())
                .limit(1)
            ).first()
        return str(found) if found else "?"


class RunExistsError(RuntimeError):
    """A run of the DAG for that logical date exists already, and was not made by ``dags test``."""


def run_exists_message(dag_id: str, when: dt.datetime, run_id: str, state: str, by: str) -> str:
    day = when.isoformat()
    return (
        f"A run of {dag_id} for logical date {day} exists already ({run_id}, {state}, triggered by "
        f"{by}): a DAG has one run per logical date. To run that date again, clear the existing run "
        f"(Clear in the UI, or `airflow tasks clear {dag_id} -s {day} -e {day} -y`), or pick "
        "another logical date."
    )


def existing_run(dag_id: str, when: dt.datetime):
    """The run of ``dag_id`` at logical date ``when``: (run_id, state, triggered_by) or None."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.logical_date == when))
        if run is None:
            return None
        by = getattr(run.triggered_by, "value", run.triggered_by)
        return run.run_id, str(run.state), str(by)


def run_dag(dag_id: str, logical_date: str, conf: dict) -> str:
    """The DAG run with ``dag.test()`` in this process (one Airflow start for the whole demo),
    printing one line per task; returns the run's final state.

    ``dag.test()`` replaces a run of the same logical date (an earlier demo's, say), but a run
    someone triggered or the scheduler made is theirs: the demo refuses, saying how to clear it,
    instead of deleting it (or failing on the database's unique constraint).
    """
    from sqlalchemy.exc import IntegrityError

    dag = dag_bag().dags[dag_id]
    when = dt.datetime.fromisoformat(logical_date)
    when = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    found = existing_run(dag_id, when)
    if found and found[2] != "test":
        raise RunExistsError(run_exists_message(dag_id, when, *found))
    progress = TaskProgress(dag_id)
    root = logging.getLogger()
    # the task lines are the progress; Airflow's own info lines would bury them
    quieted = [(h, h.level) for h in root.handlers]
    for handler, _ in quieted:
        handler.setLevel(max(handler.level, logging.WARNING))
    root.addHandler(progress)
    try:
        run = dag.test(logical_date=when, run_conf=conf)
    except IntegrityError as exc:  # another process created that run meanwhile
        if "dag_run" not in str(exc) or (found := existing_run(dag_id, when)) is None:
            raise
        raise RunExistsError(run_exists_message(dag_id, when, *found)) from None
    finally:
        root.removeHandler(progress)
        for handler, level in quieted:
            handler.setLevel(level)
    return str(run.state)


_BAG = None


def dag_bag():
    """The DAG folder, parsed once (after the demo's settings are in the environment)."""
    global _BAG
    if _BAG is None:
        from airflow.dag_processing.dagbag import DagBag

        _BAG = DagBag(dag_folder=str(settings.REPO_ROOT / "dags"))
        if _BAG.import_errors:
            raise SystemExit(f"DAG import errors: {_BAG.import_errors}")
    return _BAG


def raw_file_counts(root: Path) -> list[str]:
    counts = []
    for folder in sorted((root / "raw").glob("*/*")):
        if not folder.name.startswith("_"):
            files = [f for f in folder.rglob("*") if f.is_file() and not f.name.startswith(".")]
            counts.append(f"{folder.parent.name}/{folder.name}: {len(files)} files")
    return counts


def demo_netflix() -> bool:
    source = settings.REPO_ROOT / ".demo" / "netflix"
    if not (source / "netflix_titles.csv").exists():
        counts = write_netflix_sample(source)
        say(f"Generated sample files in {source}: " + ", ".join(f"{k} {v} rows" for k, v in counts.items()))
    else:
        say(f"Using the sample files in {source} (delete .demo/ to generate new ones)")
    with FileServer(source) as server:
        os.environ["AIRFLOW_CONN_NETFLIX_HTTP"] = server.connection_uri()
        logical_date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")
        say(f"Serving them at {server.url}; running DAG netflix into the lake at {settings.lake_root()}")
        return timed_run("netflix", logical_date, {"force_silver_titles": True})


def demo_formula1() -> bool:
    raw = Path(layer_uri("raw")) / "formula1"
    days = write_formula1_drops(raw)
    say(f"\nFormula 1: generated drops in {raw} ({', '.join(days)}); one DAG run per drop, in order")
    return all(timed_run("formula1", day, {}) for day in days)


# Spotify: generated days in a SQLite source, ingested window by window, one more day of changes.
SPOTIFY_START = dt.date(2025, 9, 7)  # the pipeline's start_date (include/spotify/pipeline.yaml)
SPOTIFY_DAYS = 3  # generated: 2025-09-07 .. 2025-09-09; then one more day of changes
SPOTIFY_SIZE = {"users": 300, "artists": 100, "tracks": 400, "streams_per_day": 500}
SPOTIFY_CHANGES = 0.05  # of each dimension's rows, per day
SPOTIFY_SEED = 7
SCD2_COLUMNS = ["user_id", "user_name", "subscription_type", "valid_from", "valid_to", "is_current"]


def spotify_logical_date(day: dt.date) -> str:
    """The logical date of a manual run whose data interval is ``day``: the day after, at midnight
    (a manual run's interval is the interval before its logical date)."""
    return (day + dt.timedelta(days=1)).isoformat() + "T00:00:00+00:00"


def spotify_source(path: Path, extra_day: dt.date, *, generate_only: bool) -> None:
    """Generate the source at ``path`` unless it is there; without ``generate_only``, then add
    ``extra_day``'s changes unless it has them already (a second ``make demo``).

    A database without the source tables (an empty file, as opening the connection before the
    demo creates) is generated afresh; so is one that has the extra day while the lake has no
    Spotify windows (the lake was deleted): a source keeps only each row's latest state, so the
    versions the history is built from would be gone.
    """
    import sqlalchemy as sa

    from lakehouse.spotify_source import apply_changes, generate

    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        if generate_only and path.exists():
            windows = Path(layer_uri("bronze")) / "spotify" / "_windows"
            last = last_stream_day(engine)
            why = None
            if last is None:
                why = "has no source tables"
            elif last >= extra_day:
                # its earlier days are read again below: as they were, not as the changes left them
                why = f"has {extra_day}'s changes already"
                why += "" if windows.exists() else " (and the lake has no Spotify windows)"
            if why:
                say(f"{path} {why}: generating it again (same seed: the same rows, the same changes)")
                engine.dispose()
                path.unlink()
        if generate_only:
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                counts = generate(
                    engine,
                    start=SPOTIFY_START,
                    days=SPOTIFY_DAYS,
                    change_fraction=SPOTIFY_CHANGES,
                    seed=SPOTIFY_SEED,
                    **SPOTIFY_SIZE,
                )
                say(f"Generated {path}: " + ", ".join(f"{k} {v} rows" for k, v in counts.items()))
            else:
                say(f"Using the source database {path} (delete .demo/ to generate a new one)")
        elif (last_stream_day(engine) or dt.date.min) < extra_day:
            changed = apply_changes(engine, extra_day, SPOTIFY_CHANGES, seed=SPOTIFY_SEED)
            say(
                f"Changed the source on {extra_day}: "
                + ", ".join(f"{k} {v} rows" for k, v in changed.items())
            )
        else:
            say(f"The source has {extra_day}'s changes already")
    finally:
        engine.dispose()


def last_stream_day(engine) -> dt.date | None:
    """The day of the source's last stream; None when it has no source tables (a database file
    that a connection created empty)."""
    import sqlalchemy as sa

    if not sa.inspect(engine).has_table("FactStream"):
        return None
    with engine.connect() as conn:
        last = conn.execute(sa.text('SELECT MAX("stream_timestamp") FROM "FactStream"')).scalar_one()
    return dt.date.fromisoformat(str(last)[:10]) if last else dt.date.min


def is_demo_source(connection: str | None, path: Path) -> bool:
    """Whether a source connection (its ``AIRFLOW_CONN_<ID>`` value: ``spotify_sql``,
    ``adventureworks_sql``) is unset or is the demo's own SQLite file (as the Makefile sets it),
    which the demo may create and change."""
    if not connection:
        return True
    try:
        value = json.loads(connection)
    except ValueError:  # a URI: sqlite:////abs/path.db
        kind, _, rest = connection.partition("://")
        value = {"conn_type": kind, "host": "/" + rest.lstrip("/")} if kind == "sqlite" else {}
    if not isinstance(value, dict) or value.get("conn_type") != "sqlite" or not value.get("host"):
        return False
    return Path(value["host"]).expanduser().resolve() == path.resolve()


def demo_spotify() -> bool:
    path = settings.REPO_ROOT / ".demo" / "spotify.db"
    days = [SPOTIFY_START + dt.timedelta(days=i) for i in range(SPOTIFY_DAYS)]
    extra_day = days[-1] + dt.timedelta(days=1)
    say("\nSpotify: a SQL source, one spotify_ingest run per daily window, then spotify_transform once")
    own = not is_demo_source(os.environ.get("AIRFLOW_CONN_SPOTIFY_SQL"), path)
    if own:
        say(
            "Using your connection spotify_sql (AIRFLOW_CONN_SPOTIFY_SQL): nothing generated or changed in it"
        )
    else:
        spotify_source(path, extra_day, generate_only=True)
        os.environ["AIRFLOW_CONN_SPOTIFY_SQL"] = json.dumps({"conn_type": "sqlite", "host": str(path)})
    started = time.monotonic()
    ok = all(timed_run("spotify_ingest", spotify_logical_date(day), {}) for day in days)
    if ok and not own:
        spotify_source(path, extra_day, generate_only=False)
    ok = ok and timed_run("spotify_ingest", spotify_logical_date(extra_day), {})
    # Under `dags test` no scheduler sees the bronze Asset's events, so the transform is run here.
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    ok = ok and timed_run("spotify_transform", now, {})
    if ok:
        print_scd2_history()
    say(f"Spotify: {time.monotonic() - started:.0f} s for {len(days) + 1} ingest runs and one transform run")
    return ok


# AdventureWorks: a generated source schema in SQLite, copied whole, conformed and served.
AW_DAY = dt.date(2025, 1, 1)  # the pipeline's start_date: every table's first load
AW_SOURCE = settings.REPO_ROOT / ".demo" / "adventureworks.db"


def adventureworks_source() -> bool:
    """Point connection ``adventureworks_sql`` at the demo's SQLite file (generated once) unless it
    is the user's own; returns whether it is the demo's. Called before the DAGs are parsed: the
    DAG reads the source schema (``ADVENTUREWORKS_SOURCE_SCHEMA``, SQLite's ``main``) then."""
    import sqlalchemy as sa

    from lakehouse.aw_source import create

    if not is_demo_source(os.environ.get("AIRFLOW_CONN_ADVENTUREWORKS_SQL"), AW_SOURCE):
        return False
    os.environ["AIRFLOW_CONN_ADVENTUREWORKS_SQL"] = json.dumps(
        {"conn_type": "sqlite", "host": str(AW_SOURCE)}
    )
    os.environ["ADVENTUREWORKS_SOURCE_SCHEMA"] = "main"
    engine = sa.create_engine(f"sqlite:///{AW_SOURCE}")
    try:
        if AW_SOURCE.exists() and sa.inspect(engine).get_table_names():
            say(f"Using the source database {AW_SOURCE} (delete .demo/ to generate a new one)")
            return True
        AW_SOURCE.parent.mkdir(parents=True, exist_ok=True)
        counts = create(engine)
        say(f"Generated {AW_SOURCE}: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + " rows")
    finally:
        engine.dispose()
    return True


def demo_adventureworks(own_source: bool) -> bool:
    """One adventureworks_copy run (every table's first load), then adventureworks_serve into a
    PostgreSQL warehouse: ``adventureworks_warehouse`` if set, else a throwaway private server
    when PostgreSQL is installed (else serving is left out, saying why)."""
    from lakehouse import pgserver

    where = "your connection adventureworks_sql" if own_source else f"{AW_SOURCE} (SQLite)"
    say(f"\nAdventureWorks: every table of the source schema in {where}, copied, conformed and served")
    if not timed_run("adventureworks_copy", spotify_logical_date(AW_DAY), {}):
        return False
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    if os.environ.get("AIRFLOW_CONN_ADVENTUREWORKS_WAREHOUSE"):
        return timed_run("adventureworks_serve", now, {})
    try:
        server = pgserver.start_postgres(AW_SOURCE.parent)
    except pgserver.PostgresUnavailableError as exc:
        say(f"Serving left out: no warehouse connection adventureworks_warehouse and {exc}")
        return True
    try:
        os.environ["AIRFLOW_CONN_ADVENTUREWORKS_WAREHOUSE"] = json.dumps(
            {
                "conn_type": "postgres",
                "host": server.host,
                "port": server.port,
                "login": server.user,
                "schema": "postgres",
            }
        )
        say(
            f"Serving into a throwaway PostgreSQL server at {server.address} "
            "(set connection adventureworks_warehouse for yours)"
        )
        ok = timed_run("adventureworks_serve", now, {})
        if ok:
            print_warehouse(server)
        return ok
    finally:
        del os.environ["AIRFLOW_CONN_ADVENTUREWORKS_WAREHOUSE"]
        server.stop()


def print_warehouse(server) -> None:
    """The warehouse's tables and their row counts, as a reader of the warehouse sees them."""
    import sqlalchemy as sa

    engine = sa.create_engine(f"postgresql+psycopg2://{server.user}@{server.host}:{server.port}/postgres")
    try:
        with engine.connect() as conn:
            tables = sa.inspect(conn).get_table_names(schema="adventureworks")
            rows = [
                {
                    "table": f"adventureworks.{t}",
                    "rows": conn.scalar(
                        sa.select(sa.func.count()).select_from(sa.table(t, schema="adventureworks"))
                    ),
                }
                for t in sorted(tables)
                if not t.startswith("_")  # _published: what each table was published from
            ]
    finally:
        engine.dispose()
    say("Warehouse tables:\n" + format_table(rows, ["table", "rows"]))


def print_scd2_history(users: int = 3) -> None:
    """The versions gold/spotify/dim_user holds for a few users that changed (a change of
    country is a new version too, though not a column shown here)."""
    rows = read_gold("spotify", "dim_user", SCD2_COLUMNS)  # as of the newest gold release
    versions: dict[int, list[dict]] = {}
    for row in rows:
        versions.setdefault(row["user_id"], []).append(row)
    changed = [uid for uid, v in versions.items() if len(v) > 1]
    # Users whose subscription changed first (their change shows in these columns), then by id.
    changed.sort(key=lambda u: (len({r["subscription_type"] for r in versions[u]}) == 1, u))
    say(
        f"\nSCD2 history in gold/spotify/dim_user: {len(changed)} of {len(versions)} users have more than "
        "one version (changed after an earlier version was ingested); a few of them:"
    )
    shown = [
        {c: _cell(v) for c, v in row.items()}
        for uid in changed[:users]
        for row in sorted(versions[uid], key=lambda r: r["valid_from"])
    ]
    if shown:
        say(format_table(shown, SCD2_COLUMNS))


def _cell(value) -> str:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    return "" if value is None else str(value)


def start_spark() -> SparkServer:
    """The Spark Connect server the DAGs' Spark tasks run on: one already answering on the
    connection's port (``make airflow`` started one, say), else one started for the demo."""
    started = time.monotonic()
    server = spark_server.start(spark_server.DEFAULT_PORT)
    os.environ["AIRFLOW_CONN_SPARK_CONNECT_DEFAULT"] = server.connection()
    if server.pid is None:
        say(f"Using the Spark Connect server at {server.url}")
    else:
        seconds = time.monotonic() - started
        say(f"Started a Spark Connect server (Delta Lake, local[2]) at {server.url} in {seconds:.0f} s")
    return server


def timed_run(dag_id: str, logical_date: str, conf: dict) -> bool:
    started = time.monotonic()
    try:
        state = run_dag(dag_id, logical_date, conf)
    except RunExistsError as exc:
        say(f"DAG run {dag_id} {logical_date}: not run. {exc}")
        return False
    say(f"DAG run {dag_id} {logical_date}: {state} in {time.monotonic() - started:.0f} s")
    return state == "success"


def main() -> int:
    bin_dir = Path(sys.executable).parent
    airflow = str(bin_dir / "airflow")
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(settings.REPO_ROOT / "dags"))
    os.environ.setdefault("LAKE_ROOT", str(settings.REPO_ROOT / ".lake"))
    # A failed task is retried after seconds, not the pipelines' five minutes, while one watches.
    os.environ.setdefault("LAKEHOUSE_RETRY_DELAY_SECONDS", "10")
    ensure_airflow_db(airflow)
    aw_demo_source = adventureworks_source()
    server = start_spark()
    try:
        ok = demo_netflix()
        ok = demo_formula1() and ok
        ok = demo_spotify() and ok
        ok = demo_adventureworks(not aw_demo_source) and ok
    finally:
        if server.pid is not None:
            say(f"\nStopping the Spark Connect server at {server.url}")
            server.stop()

    say("\nRaw files landed: " + ", ".join(raw_file_counts(Path(settings.lake_root()))))
    tables = catalog(settings.lake_root())
    say("\nLake tables (layer / pipeline / table, rows, Delta version):\n")
    say(format_table(tables, ["layer", "pipeline", "table", "rows", "version"]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
