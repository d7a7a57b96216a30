"""The Formula 1 transforms, as pure functions of DataFrames."""

from __future__ import annotations

import re

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from spark_jobs.common.files import RESCUED


def snake_case(name: str) -> str:
    """circuitId -> circuit_id, fastestLapSpeed -> fastest_lap_speed."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def processed(df: DataFrame, spec: dict, null_markers: list[str]) -> DataFrame:
    """Delivered rows to processed rows: NULL markers removed, casts, snake_case, derived columns."""
    df = df.filter(F.col(RESCUED).isNull()).drop(RESCUED)
    for column, data_type in (spec.get("casts") or {}).items():
        value = F.col(column)
        for marker in null_markers:
            value = F.when(value == F.lit(marker), F.lit(None)).otherwise(value)
        df = df.withColumn(column, value.try_cast(data_type))
    renames = spec.get("rename") or {}
    df = df.select(*[F.col(c).alias(renames.get(c, snake_case(c))) for c in df.columns])
    df = DERIVED.get(spec["table"], lambda frame: frame)(df)
    return df.drop(*(snake_case(c) for c in spec.get("drop_columns") or []))


def race_timestamp(races: DataFrame) -> DataFrame:
    """date and time (HH:mm:ss, or \\N when unknown: midnight) as one timestamp."""
    time = F.when(F.col("time").rlike(r"^\d{2}:\d{2}:\d{2}$"), F.col("time")).otherwise(F.lit("00:00:00"))
    return races.withColumn(
        "race_timestamp",
        F.try_to_timestamp(F.concat_ws(" ", F.col("date"), time), F.lit("yyyy-MM-dd HH:mm:ss")),
    ).drop("date", "time")


def driver_name(drivers: DataFrame) -> DataFrame:
    """name = forename + ' ' + surname."""
    return drivers.withColumn("name", F.concat_ws(" ", F.col("name.forename"), F.col("name.surname")))


DERIVED = {"races": race_timestamp, "drivers": driver_name}


def tie_break_order(order_by: list[str]) -> list:
    """``["points desc", "time"]`` as sort columns (NULLs last either way)."""
    columns = []
    for item in order_by:
        name, _, direction = item.strip().partition(" ")
        direction = direction.strip().lower() or "asc"
        if direction not in ("asc", "desc"):
            raise ValueError(f"tie_break order_by {item!r}: the direction must be asc or desc")
        columns.append(F.col(name).desc_nulls_last() if direction == "desc" else F.col(name).asc_nulls_last())
    return columns


def deduplicate(
    df: DataFrame, keys: list[str], order_by: list[str] | None = None
) -> tuple[DataFrame, DataFrame]:
    """One row per key, never chosen by chance: ``(kept, conflicting)``.

    Exact duplicates (every column equal) are one row. Distinct rows sharing a key conflict: with
    ``order_by`` (the source's declared tie-break, e.g. ``["points desc"]``) the first row by it
    is kept, when it alone is first; every other conflicting key keeps none of its rows, and they
    are all returned in ``conflicting`` (with ``_key``, the key as JSON), for the caller to fail
    on or to quarantine.
    """
    distinct = df.dropDuplicates()
    by_key = Window.partitionBy(*keys)
    counted = distinct.withColumn("_n", F.count(F.lit(1)).over(by_key))
    if order_by:
        ranked = Window.partitionBy(*keys).orderBy(*tie_break_order(order_by))
        counted = counted.withColumn("_rank", F.rank().over(ranked))
        counted = counted.withColumn("_top", F.sum(F.when(F.col("_rank") == 1, 1).otherwise(0)).over(by_key))
        resolved = (F.col("_n") == 1) | (F.col("_top") == 1)
        kept = counted.filter(resolved & (F.col("_rank") == 1))
        conflicting = counted.filter(~resolved)
    else:
        kept = counted.filter(F.col("_n") == 1)
        conflicting = counted.filter(F.col("_n") > 1)
    helpers = ["_n", "_rank", "_top"]
    conflicting = conflicting.drop(*helpers).withColumn(
        "_key", F.to_json(F.struct(*[F.col(k) for k in keys]))
    )
    return kept.drop(*helpers), conflicting


def with_drop(df: DataFrame, file_date: str) -> DataFrame:
    return df.withColumn("file_date", F.to_date(F.lit(file_date))).withColumn(
        "ingestion_date", F.current_timestamp()
    )


# -- presentation --------------------------------------------------------------------------------


def race_results(results, races, circuits, drivers, constructors) -> DataFrame:
    """Each result with its race, circuit, driver and constructor (the original's race_results)."""
    r, ra, c, d, k = (
        x.alias(n)
        for x, n in ((results, "r"), (races, "ra"), (circuits, "c"), (drivers, "d"), (constructors, "k"))
    )
    return (
        r.join(ra, F.col("r.race_id") == F.col("ra.race_id"))
        .join(c, F.col("ra.circuit_id") == F.col("c.circuit_id"))
        .join(d, F.col("r.driver_id") == F.col("d.driver_id"))
        .join(k, F.col("r.constructor_id") == F.col("k.constructor_id"))
        .select(
            F.col("r.result_id"),
            F.col("r.race_id"),
            F.col("ra.race_year"),
            F.col("ra.name").alias("race_name"),
            F.col("ra.race_timestamp").alias("race_date"),
            F.col("c.location").alias("circuit_location"),
            F.col("d.name").alias("driver_name"),
            F.col("d.number").alias("driver_number"),
            F.col("d.nationality").alias("driver_nationality"),
            F.col("k.name").alias("team"),
            F.col("r.grid"),
            F.col("r.fastest_lap"),
            F.col("r.time").alias("race_time"),
            F.col("r.points"),
            F.col("r.position"),
            F.col("r.file_date").alias("result_file_date"),
        )
    )


def _standings(race_results_df: DataFrame, by: list[str]) -> DataFrame:
    totals = race_results_df.groupBy("race_year", *by).agg(
        F.sum("points").alias("total_points"),
        F.count(F.when(F.col("position") == 1, True)).alias("wins"),
    )
    rank = Window.partitionBy("race_year").orderBy(F.desc("total_points"), F.desc("wins"))
    return totals.withColumn("rank", F.rank().over(rank))


def driver_standings(race_results_df: DataFrame) -> DataFrame:
    """Per race year and driver: total points, wins, rank by points then wins."""
    return _standings(race_results_df, ["driver_name", "driver_nationality"])


def constructor_standings(race_results_df: DataFrame) -> DataFrame:
    """Per race year and team: total points, wins, rank by points then wins."""
    return _standings(race_results_df, ["team"])


def calculated_race_results(race_results_df: DataFrame) -> DataFrame:
    """Results in positions 1 to 10 with points recalculated as 11 - position."""
    return race_results_df.filter(F.col("position").between(1, 10)).withColumn(
        "calculated_points", (F.lit(11) - F.col("position")).cast("int")
    )
