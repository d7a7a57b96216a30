"""``make bench``: how long DAG files take to parse, and where the Netflix DAG's time goes.

1. Parse: the DAG folder loaded by ``DagBag`` in a fresh interpreter (as the DAG processor does),
   several times; per file, Airflow's own per-file load duration.
2. End to end: the Netflix DAG with ``dag.test()`` on the demo's generated data, in a fresh lake,
   first run (everything new) and second run (nothing changed). Each Spark job records how long
   its Python driver ran and how long its SparkSession took to start; the rest of each Spark
   task (JVM launch, session start, shutdown) is start-up. Everything outside Spark tasks
   (HTTP fetches, sensor, branch, report, scheduling in ``dag.test()``) is Airflow's share.
3. Spotify: one incremental run's cost as the fact table grows (``spotify_incremental.py``), on
   a private PostgreSQL server (or ``LAKEHOUSE_TEST_PG``); sizes from ``BENCH_SPOTIFY_SIZES``
   (default ``100k,1M``).

``benchmarks/run.py parse netflix spotify`` (or ``BENCH_SECTIONS=spotify make bench``) runs only
the sections named; without any, all three.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "plugins"))
SPARK_TASKS = {"bronze", "silver_lookups", "silver_titles", "gold"}
PARSE_RUNS = 5
SECTIONS = ("parse", "netflix", "spotify")

PARSE_SCRIPT = """
import json, time
started = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag
imported = time.perf_counter()
bag = DagBag(dag_folder=DAGS)
done = time.perf_counter()
print(json.dumps({
    "import_airflow": imported - started,
    "dagbag": done - imported,
    "files": {s.file: s.duration.total_seconds() if hasattr(s.duration, "total_seconds") else s.duration
              for s in bag.dagbag_stats},
    "dags": len(bag.dags),
}))
"""


def setup_environment(home: Path, lake: Path) -> None:
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "AIRFLOW_CONN_SPARK_LOCAL": '{"conn_type": "spark", "host": "local[2]"}',
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "LAKE_ROOT": str(lake),
            "LAKEHOUSE_RETRIES": "0",
        }
    )
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], check=True, capture_output=True)


def bench_parse() -> None:
    script = f"DAGS = {str(ROOT / 'dags')!r}\n" + PARSE_SCRIPT
    runs = []
    for _ in range(PARSE_RUNS):
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"\nDAG parsing ({PARSE_RUNS} fresh interpreters, median)")
    print(f"  import airflow          {statistics.median(r['import_airflow'] for r in runs):7.3f} s")
    dagbag = statistics.median(r["dagbag"] for r in runs)
    print(f"  DagBag load, all files  {dagbag:7.3f} s ({runs[0]['dags']} DAGs)")
    for file in sorted(runs[0]["files"]):
        seconds = statistics.median(r["files"][file] for r in runs)
        print(f"  {Path(file).name:<23} {seconds:7.3f} s per parse")


def run_once(label: str, logical_date: dt.datetime, timings: Path) -> dict:
    from airflow.dag_processing.dagbag import DagBag

    timings.write_text("")
    dag = DagBag(dag_folder=str(ROOT / "dags")).dags["netflix"]
    started = time.perf_counter()
    run = dag.test(logical_date=logical_date, run_conf={"force_silver_titles": True})
    wall = time.perf_counter() - started
    if str(run.state) != "success":
        raise SystemExit(f"{label}: the DAG run ended {run.state}")
    durations = {
        ti.task_id: (ti.end_date - ti.start_date).total_seconds()
        for ti in run.get_task_instances()
        if ti.task_id in SPARK_TASKS and ti.start_date and ti.end_date
    }
    jobs = [json.loads(line) for line in timings.read_text().splitlines() if line]
    spark_tasks = sum(durations.values())
    work = sum(j["python_seconds"] - j["session_seconds"] for j in jobs)
    return {
        "label": label,
        "wall": wall,
        "spark_startup": spark_tasks - work,
        "spark_work": work,
        "airflow": wall - spark_tasks,
        "session_start": statistics.mean(j["session_seconds"] for j in jobs) if jobs else 0.0,
        "jobs": len(jobs),
    }


def bench_end_to_end() -> None:
    from lakehouse.devserver import FileServer
    from lakehouse.sample_data import write_netflix_sample

    source = Path(tempfile.mkdtemp(prefix="bench-source-"))
    counts = write_netflix_sample(source)
    timings = Path(tempfile.mkdtemp(prefix="bench-timings-")) / "timings.jsonl"
    os.environ["LAKEHOUSE_TIMINGS_FILE"] = str(timings)
    results = []
    with FileServer(source) as server:
        os.environ["AIRFLOW_CONN_NETFLIX_HTTP"] = server.connection_uri()
        first = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)
        results.append(run_once("first run (all new)", first, timings))
        results.append(run_once("second run (no change)", first + dt.timedelta(days=1), timings))
    print(f"\nNetflix DAG end to end on the demo data ({sum(counts.values())} source rows, 5 files)")
    print(f"  {'':<24} {'wall':>7} {'Spark start-up':>15} {'Spark work':>11} {'Airflow+other':>14}")
    for r in results:
        print(
            f"  {r['label']:<24} {r['wall']:6.1f}s {r['spark_startup']:14.1f}s {r['spark_work']:10.1f}s"
            f" {r['airflow']:13.1f}s"
        )
    for r in results:
        print(
            f"  {r['label']}: start-up is {r['spark_startup'] / r['wall']:.0%} of wall time over {r['jobs']} "
            f"Spark applications (SparkSession start {r['session_start']:.1f} s each on average)"
        )
    print(f"  second run / first run: {results[1]['wall'] / results[0]['wall']:.2f}")


def sections(argv: list[str]) -> list[str]:
    chosen = argv or os.environ.get("BENCH_SECTIONS", "").replace(",", " ").split() or list(SECTIONS)
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        raise SystemExit(
            f"unknown benchmark section(s) {', '.join(unknown)}: choose from {', '.join(SECTIONS)}"
        )
    return [name for name in SECTIONS if name in chosen]


def main(argv: list[str]) -> None:
    chosen = sections(argv)
    work = Path(tempfile.mkdtemp(prefix="lakehouse-bench-"))
    setup_environment(work / "airflow", work / "lake")
    print(f"Benchmarks on {os.cpu_count()} cores, Python {sys.version.split()[0]}; scratch in {work}")
    if "parse" in chosen:
        bench_parse()
    if "netflix" in chosen:
        bench_end_to_end()
    if "spotify" in chosen:
        from spotify_incremental import bench_spotify

        bench_spotify(work)


if __name__ == "__main__":
    main(sys.argv[1:])
