"""What a run did, read back from the lake: row counts, expectation results, table versions."""

from __future__ import annotations

from lakehouse import settings
from lakehouse.storage import table_uri


def _delta(uri: str):
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(uri, storage_options=settings.delta_storage_options()):
        return None
    return DeltaTable(uri, storage_options=settings.delta_storage_options())


def rows_for_run(pipeline: str, table: str, run_id: str) -> list[dict]:
    """Rows of ``gold/<pipeline>/<table>`` (an ops table: _audit or _quality) for one run."""
    delta = _delta(table_uri("gold", pipeline, table))
    if delta is None:
        return []
    rows = delta.to_pyarrow_table(filters=[("run_id", "=", run_id)]).to_pylist()
    for row in rows:
        row.pop("recorded_at", None)
    return sorted(rows, key=lambda r: tuple(str(v) for v in r.values()))


def table_version(layer: str, pipeline: str, table: str) -> int | None:
    delta = _delta(table_uri(layer, pipeline, table))
    return None if delta is None else delta.version()


def format_table(rows: list[dict], columns: list[str]) -> str:
    """A plain-text table for logs and the terminal."""
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)), line]
    out += [
        "  ".join(v.rjust(w) if v.isdigit() else v.ljust(w) for v, w in zip(r, widths, strict=True))
        for r in cells
    ]
    return "\n".join(out)


def catalog(root: str | None = None) -> list[dict]:
    """Every Delta table under a local lake root: layer, pipeline, table, rows, version."""
    from pathlib import Path

    from deltalake import DeltaTable

    base = Path(root or settings.lake_root())
    found = []
    for layer in settings.LAYERS:
        for log_dir in sorted((base / layer).glob("*/*/_delta_log")):
            table = DeltaTable(str(log_dir.parent))
            found.append(
                {
                    "layer": layer,
                    "pipeline": log_dir.parent.parent.name,
                    "table": log_dir.parent.name,
                    "rows": table.count(),
                    "version": table.version(),
                }
            )
    return found
