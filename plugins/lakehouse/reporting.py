"""What a run did, read back from the lake: row counts, expectation results, table versions.

The Airflow side runs no JVM, so it reads Delta tables with delta-rs. Tables written by Spark have
deletion vectors (Databricks' default, and the local server's), which delta-rs's pyarrow dataset
cannot apply; its DataFusion query engine can, so rows are read through a query (``read_rows``).
"""

from __future__ import annotations

from lakehouse import settings
from lakehouse.storage import table_uri


def _delta(uri: str, version: int | None = None):
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(uri, storage_options=settings.delta_storage_options()):
        return None
    return DeltaTable(uri, version=version, storage_options=settings.delta_storage_options())


def read_arrow(uri: str, columns: list[str] | None = None, version: int | None = None):
    """A Delta table (at ``version``) as a pyarrow Table, deletion vectors applied; None if missing."""
    from deltalake import QueryBuilder

    delta = _delta(uri, version)
    if delta is None:
        return None
    names = {field.name for field in delta.schema().fields}
    wanted = columns or [field.name for field in delta.schema().fields]
    unknown = sorted(set(wanted) - names)
    if unknown:
        raise ValueError(f"{uri} has no column(s) {unknown}")
    import pyarrow as pa

    select = ", ".join('"' + name.replace('"', '""') + '"' for name in wanted)
    table = pa.table(QueryBuilder().register("t", delta).execute(f"SELECT {select} FROM t").read_all())
    # DataFusion answers with view types; plain ones are what pyarrow's compute and readers expect
    plain = {pa.types.is_string_view: pa.string(), pa.types.is_binary_view: pa.binary()}
    fields = [
        next((pa.field(f.name, t, f.nullable) for test, t in plain.items() if test(f.type)), f)
        for f in table.schema
    ]
    return table.cast(pa.schema(fields))


def read_rows(uri: str, columns: list[str] | None = None, version: int | None = None) -> list[dict]:
    """A Delta table's rows as dicts (none when it is missing)."""
    table = read_arrow(uri, columns, version)
    return [] if table is None else table.to_pylist()


def rows_for_run(pipeline: str, table: str, run_id: str) -> list[dict]:
    """Rows of ``gold/<pipeline>/<table>`` (an ops table: _audit or _quality) for one run."""
    import pyarrow.compute as pc

    found = read_arrow(table_uri("gold", pipeline, table))
    if found is None:
        return []
    rows = found.filter(pc.equal(found["run_id"], run_id)).to_pylist()
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
                    "rows": table.count(),  # deletion vectors applied
                    "version": table.version(),
                }
            )
    return found
