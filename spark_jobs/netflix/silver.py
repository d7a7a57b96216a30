"""Netflix silver: the four lookup tables and titles, each from the newest file in bronze."""

from __future__ import annotations

from spark_jobs.common.bronze import empty_files
from spark_jobs.common.job import Job, start
from spark_jobs.netflix import transforms as tf


def build_table(job: Job, table: str, columns: list[str], bronze, newest_empty: str | None = None):
    """Newest file's rows, rescued rows set aside (and counted), then the table's transforms.

    ``newest_empty``: the newest file of the table ingested with no rows (allowed by its source's
    ``allow_empty``); when it is newer than every file in bronze, the table has zero rows.
    """
    from pyspark.sql import functions as F

    snapshot = tf.latest_file(bronze, newest_empty).localCheckpoint(eager=True)
    counts = snapshot.agg(F.count(F.lit(1)).alias("rows"), F.count(tf.RESCUED).alias("rescued")).first()
    rows_in, rescued = counts["rows"], counts["rescued"]
    job.count("silver", table, "rows_in", rows_in)
    job.count("silver", table, "rows_rescued_not_promoted", rescued)
    clean = tf.without_rescued(snapshot)
    if table == job.config["silver"]["titles"]:
        for column, bad in tf.unparsed_counts(clean).items():
            job.count("silver", table, f"unparsed_{column}", bad)
        return tf.clean_titles(clean)
    return tf.clean_lookup(clean, columns)


def main(argv: list[str]) -> None:
    job = start("netflix.silver", argv)
    columns = {source["table"]: source["columns"] for source in job.config["files"]}
    silver = job.config["silver"]

    def refresh(table: str) -> None:
        empty = empty_files(job, table)
        newest_empty = empty[-1] if empty else None
        settings = {"columns": columns[table]}
        if newest_empty:  # a newer empty delivery changes the table as a new file does
            settings["newest_empty_file"] = newest_empty
        job.refresh(
            "silver",
            table,
            {"bronze": job.uri("bronze", table)},
            lambda inputs: build_table(job, table, columns[table], inputs["bronze"], newest_empty),
            settings=settings,
        )

    job.for_each([t for t in [*silver["lookups"], silver["titles"]] if job.wants(t)], refresh)
    job.write_audit()
