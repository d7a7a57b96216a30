"""``make demo``: the Netflix and Formula 1 DAGs end to end on generated files, on this machine only.

Sets up a local Airflow home (SQLite) if needed, writes sample files, serves them on 127.0.0.1,
runs the DAG with ``airflow dags test`` while printing each task as it finishes, and ends with
every lake table written: layer, rows and Delta version. Running it again shows that unchanged
sources rewrite nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from lakehouse import settings
from lakehouse.devserver import FileServer
from lakehouse.reporting import catalog, format_table
from lakehouse.sample_data import write_formula1_drops, write_netflix_sample
from lakehouse.storage import layer_uri

TASK_LINE = re.compile(r"\[DAG TEST\] (starting|end task) task_id=(\S+) map_index=(-?\d+)")
NEW_STATE = re.compile(r"new_state=(\w+)")
ERROR_LINE = re.compile(r"^\S*(Error|Exception)\b.*: ")
FINISHED = re.compile(r"DagRun Finished: .*? state=(\w+)")


def say(message: str) -> None:
    print(message, flush=True)


def ensure_airflow_db(airflow: str) -> None:
    home = Path(os.environ.setdefault("AIRFLOW_HOME", str(settings.REPO_ROOT / ".airflow")))
    if (home / "airflow.db").exists():
        return
    say(f"Initialising the Airflow metadata database in {home} (SQLite)")
    home.mkdir(parents=True, exist_ok=True)
    subprocess.run([airflow, "db", "migrate"], check=True, capture_output=True)


def run_dag(airflow: str, dag_id: str, logical_date: str, conf: dict) -> str:
    """``airflow dags test``, printing one line per task; returns the run's final state."""
    command = [airflow, "dags", "test", dag_id, logical_date, "-c", json.dumps(conf)]
    started: dict[str, float] = {}
    state, task_state = "unknown", "?"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    ) as proc:
        for line in proc.stdout:
            if match := TASK_LINE.search(line):
                phase, task_id, index = match.groups()
                name = task_id if index == "-1" else f"{task_id}[{index}]"
                if phase == "starting":
                    started[name] = time.monotonic()
                    say(f"  ...   {name}")
                else:
                    seconds = time.monotonic() - started.get(name, time.monotonic())
                    say(f"  {task_state:<7} {name:<24} {seconds:6.1f} s")
            elif match := NEW_STATE.search(line):
                task_state = match.group(1)
            elif " error " in line.lower() or ERROR_LINE.search(line):
                say("  " + line.rstrip()[:300])
            elif match := FINISHED.search(line):
                state = match.group(1)
    return state


def raw_file_counts(root: Path) -> list[str]:
    counts = []
    for folder in sorted((root / "raw").glob("*/*")):
        if not folder.name.startswith("_"):
            files = [f for f in folder.rglob("*") if f.is_file() and not f.name.startswith(".")]
            counts.append(f"{folder.parent.name}/{folder.name}: {len(files)} files")
    return counts


def demo_netflix(airflow: str) -> bool:
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
        return timed_run(airflow, "netflix", logical_date, {"force_silver_titles": True})


def demo_formula1(airflow: str) -> bool:
    raw = Path(layer_uri("raw")) / "formula1"
    days = write_formula1_drops(raw)
    say(f"\nFormula 1: generated drops in {raw} ({', '.join(days)}); one DAG run per drop, in order")
    return all(timed_run(airflow, "formula1", day, {}) for day in days)


def timed_run(airflow: str, dag_id: str, logical_date: str, conf: dict) -> bool:
    started = time.monotonic()
    state = run_dag(airflow, dag_id, logical_date, conf)
    say(f"DAG run {dag_id} {logical_date}: {state} in {time.monotonic() - started:.0f} s")
    return state == "success"


def main() -> int:
    bin_dir = Path(sys.executable).parent
    airflow = str(bin_dir / "airflow")
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(settings.REPO_ROOT / "dags"))
    os.environ.setdefault("AIRFLOW_CONN_SPARK_LOCAL", '{"conn_type": "spark", "host": "local[2]"}')
    os.environ.setdefault("LAKE_ROOT", str(settings.REPO_ROOT / ".lake"))
    ensure_airflow_db(airflow)

    ok = demo_netflix(airflow)
    ok = demo_formula1(airflow) and ok

    say("\nRaw files landed: " + ", ".join(raw_file_counts(Path(settings.lake_root()))))
    tables = catalog(settings.lake_root())
    say("\nLake tables (layer / pipeline / table, rows, Delta version):\n")
    say(format_table(tables, ["layer", "pipeline", "table", "rows", "version"]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
