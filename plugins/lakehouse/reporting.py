"""What a run did, read back from the lake: row counts, expectation results, table versions.

The Airflow side runs no JVM, so it reads Delta tables with delta-rs. Tables written by Spark have
deletion vectors (Databricks' default, and the local server's), which delta-rs's pyarrow dataset
cannot apply; its DataFusion query engine can, so rows are read through a query (``read_rows``).

Every read here goes through that query engine (``read_arrow``), never through pyarrow's dataset
scanner (``DeltaTable.to_pyarrow_table``/``to_pyarrow_dataset``): the scanner starts pyarrow's
thread pools, whose threads can outlive the interpreter's teardown and abort the process at exit
("terminate called without an active exception", apache/arrow#34314, delta-io/delta-rs#2184),
turning finished work into a failure. DataFusion's threads are Rust threads, which do not; a
test reads Delta tables in fresh interpreters under CPU load and requires every exit code 0.

Gold tables are read as of the pipeline's newest release (``gold/<pipeline>/_releases``, written
by the gold job once all its tables are written; see ``spark_jobs/common/release.py``), so a
reader never sees one table of a run and another of the run before.
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
    table = _query(delta, f"SELECT {select} FROM t")
    # DataFusion answers with view types; plain ones are what pyarrow's compute and readers expect
    plain = {pa.types.is_string_view: pa.string(), pa.types.is_binary_view: pa.binary()}
    fields = [
        next((pa.field(f.name, t, f.nullable) for test, t in plain.items() if test(f.type)), f)
        for f in table.schema
    ]
    return table.cast(pa.schema(fields))


def _query(delta, sql: str):
    """``sql`` over ``delta`` registered as ``t``, through delta-rs's DataFusion engine."""
    import pyarrow as pa
    from deltalake import QueryBuilder

    return pa.table(QueryBuilder().register("t", delta).execute(sql).read_all())


RELEASES = "_releases"


def released(pipeline: str) -> dict | None:
    """The pipeline's newest gold release: ``{"release", "run_id", "tables": {table: version}}``,
    or None before the first one."""
    delta = _delta(table_uri("gold", pipeline, RELEASES))
    if delta is None:
        return None
    rows = _query(delta, "SELECT release, run_id, tables FROM t ORDER BY release DESC LIMIT 1").to_pylist()
    if not rows:
        return None
    row = rows[0]
    tables = row["tables"] or []
    return {
        "release": int(row["release"]),
        "run_id": row["run_id"],
        "tables": {k: int(v) for k, v in (tables.items() if isinstance(tables, dict) else tables)},
    }


def released_versions(pipeline: str) -> dict[str, int]:
    """The newest release's gold table -> Delta version (empty before the first release)."""
    found = released(pipeline)
    return found["tables"] if found else {}


def gold_version(pipeline: str, table: str) -> int | None:
    """The version of a gold table readers should see: its released version, or (a table no
    release holds yet, or a pipeline without releases) its current one."""
    version = released_versions(pipeline).get(table)
    return version if version is not None else table_version("gold", pipeline, table)


def read_gold(pipeline: str, table: str, columns: list[str] | None = None) -> list[dict]:
    """A gold table's rows as of the pipeline's newest release."""
    return read_rows(table_uri("gold", pipeline, table), columns, released_versions(pipeline).get(table))


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
    """Every Delta table under a local lake root: layer, pipeline, table, rows, version; a gold
    table as of its pipeline's newest release (rows counted with deletion vectors applied)."""
    from pathlib import Path

    from deltalake import DeltaTable

    base = Path(root or settings.lake_root())
    found = []
    for layer in settings.LAYERS:
        releases: dict[str, dict[str, int]] = {}
        for log_dir in sorted((base / layer).glob("*/*/_delta_log")):
            pipeline, name = log_dir.parent.parent.name, log_dir.parent.name
            version = None
            if layer == "gold":
                if pipeline not in releases:
                    path = log_dir.parent.parent / RELEASES
                    releases[pipeline] = _released_at(str(path)) if (path / "_delta_log").exists() else {}
                version = releases[pipeline].get(name)
            table = DeltaTable(str(log_dir.parent), version=version)
            rows = _query(table, "SELECT COUNT(*) AS n FROM t").column("n")[0].as_py()
            found.append(
                {
                    "layer": layer,
                    "pipeline": pipeline,
                    "table": name,
                    "rows": rows,
                    "version": table.version(),
                }
            )
    return found


def _released_at(uri: str) -> dict[str, int]:
    from deltalake import DeltaTable

    rows = _query(DeltaTable(uri), "SELECT tables FROM t ORDER BY release DESC LIMIT 1").to_pylist()
    tables = rows[0]["tables"] if rows else None
    return {k: int(v) for k, v in (tables.items() if isinstance(tables, dict) else tables or [])}
