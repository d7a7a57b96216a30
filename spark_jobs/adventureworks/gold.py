"""AdventureWorks gold: each silver table with lower snake_case column names.

``gold/<pipeline>/<table>`` is ``silver/<pipeline>/<table>`` with every source column renamed by
``spark_jobs.common.naming.snake_case`` (AddressID -> address_id, rowguid -> rowguid); the
ingestion columns (``_load_id``, ``_source_table``, ``_run_id``) keep their names. A table is
rebuilt only when its silver table's version (or the naming rule) changed since its last build
(``Job.refresh`` stamps). Two columns that give the same name fail the table, naming both; the
other tables are still built.

The tables are those with bronze load manifests (``bronze/<pipeline>/_loads/<table>/``) and a
silver table (one whose loads silver refused has none yet, and is skipped with a warning); a table
dropped from the source keeps its silver and gold tables, which stay as they are.
"""

from __future__ import annotations

import logging

from spark_jobs.adventureworks.silver import INGESTION_COLUMNS, manifest_paths, quoted
from spark_jobs.common.job import Job, start
from spark_jobs.common.naming import snake_columns

log = logging.getLogger(__name__)

# Part of every table's stamp: a change to the naming rule's version rebuilds every gold table.
SETTINGS = {"columns": "snake_case", "rule": 1}


def gold_frame(table: str, silver):
    """``silver`` with snake_case column names; fails naming the table and both columns of a collision."""
    renamed = snake_columns(silver.columns, keep=INGESTION_COLUMNS, where=f"gold.{table}")
    return silver.select(*[quoted(old).alias(new) for old, new in renamed.items()])


def build_table(job: Job, table: str) -> int | None:
    """Rebuild ``gold.<table>`` if its silver table changed; the rows written, or None when skipped."""
    return job.refresh(
        "gold",
        table,
        {"silver": job.uri("silver", table)},
        lambda inputs: gold_frame(table, inputs["silver"]),
        settings=SETTINGS,
    )


def main(argv: list[str]) -> None:
    """Every table side by side; a table that fails does not stop the others, then the first
    failure is raised."""
    job = start("adventureworks.gold", argv)
    tables = []
    for table in sorted(t for t in manifest_paths(job) if job.wants(t)):
        if job.engine.exists(job.uri("silver", table)):
            tables.append(table)
        else:  # its loads failed silver (which said why): nothing to build from yet
            log.warning("gold.%s: no silver table yet: skipped", table)

    def attempt(table: str):
        try:
            return build_table(job, table), None
        except Exception as exc:  # raised below once the others are done
            log.error("gold.%s failed: %s", table, exc)
            return None, exc

    outcomes = job.for_each(tables, attempt)
    built = sum(1 for written, _ in outcomes if written is not None)
    log.info("gold: %s of %s table(s) rebuilt", built, len(tables))
    job.write_audit()
    failures = [exc for _, exc in outcomes if exc is not None]
    if failures:
        for extra in failures[1:]:
            log.error("gold: also failed: %s", extra)
        raise failures[0]
