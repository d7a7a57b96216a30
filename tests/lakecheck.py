"""Read a local lake back for assertions: every Delta table's version and content."""

from __future__ import annotations

import csv
from pathlib import Path

from deltalake import DeltaTable

from lakehouse.reporting import read_rows

LAYERS = ("bronze", "silver", "gold")


def tables(root: Path) -> dict[str, DeltaTable]:
    found = {}
    for layer in LAYERS:
        for log_dir in sorted((root / layer).glob("*/*/_delta_log")):
            found[f"{layer}.{log_dir.parent.name}"] = DeltaTable(str(log_dir.parent))
    return found


def versions(root: Path) -> dict[str, int]:
    return {name: table.version() for name, table in tables(root).items()}


def rows(root: Path, name: str, drop: tuple[str, ...] = ()) -> list[dict]:
    layer, table = name.split(".")
    data = read_rows(str(root / layer / "netflix" / table))
    for row in data:
        for column in drop:
            row.pop(column, None)
    return sorted(data, key=lambda r: repr(sorted(r.items())))


def snapshot(root: Path) -> dict[str, tuple[int, list[dict]]]:
    """Version and sorted content of every table: equal snapshots mean an untouched lake."""
    return {name: (table.version(), rows(root, name)) for name, table in tables(root).items()}


def count(root: Path, name: str) -> int:
    layer, table = name.split(".")
    return DeltaTable(str(root / layer / "netflix" / table)).count()


def audit(root: Path, run_id: str | None = None) -> dict[tuple[str, str, str], int]:
    """{(layer, table, metric): value} of one run (or all runs) from gold/netflix/_audit."""
    result = {}
    for row in rows(root, "gold._audit"):
        if run_id is None or row["run_id"] == run_id:
            result[(row["layer"], row["table"], row["metric"])] = row["value"]
    return result


def csv_rows(path: Path) -> list[dict]:
    """An independent parse of a source file, for counting what each layer should hold."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def raw_files(root: Path, table: str) -> list[Path]:
    folder = root / "raw" / "netflix" / table
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".")) if folder.exists() else []
