"""The Netflix transforms, as pure functions of DataFrames (unit-tested on small frames)."""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from spark_jobs.common.files import RESCUED

LINEAGE = ["_source_file", "_ingested_at"]


def latest_file(bronze: DataFrame, newest_empty: str | None = None) -> DataFrame:
    """Bronze keeps every landed version of a file; silver is built from the newest one.

    Raw file names start with their landing time, so the newest file has the greatest name; not
    the greatest path, which also holds the lake's root (a lake moved or copied to a root that sorts
    first keeps its older files' paths). ``newest_empty`` names the newest file that was ingested
    with no rows: when it is newer than every file with rows, the newest delivery is empty, and so
    is the result.
    """
    name = F.element_at(F.split(F.col("_source_file"), "/"), -1)
    newest = bronze.agg(F.max(F.struct(name.alias("name"), F.col("_source_file").alias("path")))).first()[0]
    if newest_empty and (newest is None or newest_empty > newest["name"]):
        return bronze.limit(0)
    return bronze.filter(F.col("_source_file") == F.lit(newest["path"] if newest else None))


def without_rescued(df: DataFrame) -> DataFrame:
    """Rows whose text did not fit the declared columns stay in bronze and are not promoted."""
    return df.filter(F.col(RESCUED).isNull()).drop(RESCUED)


def clean_lookup(df: DataFrame, columns: list[str]) -> DataFrame:
    """A lookup table (cast, category, countries, directors): trimmed text, blanks as NULL."""
    return df.select(
        *[F.nullif(F.trim(F.col(c)), F.lit("")).alias(c) for c in columns],
        *LINEAGE,
    )


def _int(column: str):
    return F.col(column).try_cast("int")


def clean_titles(df: DataFrame) -> DataFrame:
    """The original notebook's silver titles transforms.

    Missing durations become 0 minutes or 1 season; short title is the text before ':'; rating
    is the text before '-'; type flag is 1 for Movie, 2 for TV Show, else 0; duration_ranking is
    the dense rank of duration in minutes, longest first.
    """
    return (
        df.withColumn("duration_minutes", F.coalesce(_int("duration_minutes"), F.lit(0)))
        .withColumn("duration_seasons", F.coalesce(_int("duration_seasons"), F.lit(1)))
        .withColumn("release_year", _int("release_year"))
        .withColumn("date_added", F.to_date(F.try_to_timestamp(F.trim("date_added"), F.lit("M/d/yyyy"))))
        .withColumn("show_id", F.nullif(F.trim("show_id"), F.lit("")))
        .withColumn("short_title", F.split(F.col("title"), ":").getItem(0))
        .withColumn("rating", F.split(F.col("rating"), "-").getItem(0))
        .withColumn(
            "type_flag",
            F.when(F.col("type") == "Movie", 1).when(F.col("type") == "TV Show", 2).otherwise(0),
        )
        .withColumn("duration_ranking", F.dense_rank().over(Window.orderBy(F.desc("duration_minutes"))))
    )


def unparsed_counts(raw: DataFrame) -> dict[str, int]:
    """How many non-blank values a cast could not read (they became NULL or a default)."""
    checks = {
        "duration_minutes": _int("duration_minutes"),
        "duration_seasons": _int("duration_seasons"),
        "release_year": _int("release_year"),
        "date_added": F.try_to_timestamp(F.trim("date_added"), F.lit("M/d/yyyy")),
    }
    blank = {c: F.nullif(F.trim(F.col(c)), F.lit("")).isNull() for c in checks}
    row = raw.agg(
        *[F.sum(F.when(~blank[c] & expr.isNull(), 1).otherwise(0)).alias(c) for c, expr in checks.items()]
    ).first()
    return {c: int(row[c] or 0) for c in checks}
