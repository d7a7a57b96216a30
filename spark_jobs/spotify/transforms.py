"""The Spotify transforms, as pure functions of DataFrames.

Silver keeps what the source delivered, cleaned and deduplicated deterministically; gold's
dimensions are a function of silver's history alone, so any batching of the same windows, a
re-run or a late delivery gives the same tables.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

ROW_HASH = "_row_hash"
WINDOW = "_window"
VALID_FROM, VALID_TO, IS_CURRENT = "valid_from", "valid_to", "is_current"
DURATION_BUCKET = "duration_bucket"

SPARK_TYPES = {
    "int": T.IntegerType(),
    "bigint": T.LongType(),
    "string": T.StringType(),
    "date": T.DateType(),
    "timestamp": T.TimestampType(),
}


# -- silver ----------------------------------------------------------------------------------------


def bronze_schema(columns: dict[str, str]) -> T.StructType:
    """The declared columns as a Spark schema (metadata types: int, bigint, string, date, timestamp).

    Bronze timestamps have no time zone; read with this schema, Spark takes them as UTC whatever
    the session's time zone.
    """
    unknown = sorted(f"{c}: {t}" for c, t in columns.items() if t not in SPARK_TYPES)
    if unknown:
        raise ValueError(f"unsupported column type(s) {unknown}; expected one of {sorted(SPARK_TYPES)}")
    return T.StructType([T.StructField(c, SPARK_TYPES[t]) for c, t in columns.items()])


def _bucket_rules(rules: dict) -> list[dict]:
    buckets = rules.get("duration_buckets") or []
    return [buckets] if isinstance(buckets, dict) else list(buckets)


def derived_columns(table: str, rules: dict) -> list[str]:
    """The columns silver's clean-up adds to ``table``."""
    return [DURATION_BUCKET for b in _bucket_rules(rules) if b["table"] == table]


def clean(df: DataFrame, table: str, rules: dict) -> DataFrame:
    """Silver clean-up from ``config['silver']``: upper-case columns, '-' to ' ', duration buckets.

    ``duration_bucket`` is ``low`` below ``low_below`` seconds, ``medium`` below ``medium_below``,
    else ``high``; a NULL duration has a NULL bucket.
    """
    for column in (rules.get("upper_case") or {}).get(table, []):
        df = df.withColumn(column, F.upper(F.col(column)))
    for column in (rules.get("replace_dash_with_space") or {}).get(table, []):
        df = df.withColumn(column, F.translate(F.col(column), "-", " "))
    for bucket in _bucket_rules(rules):
        if bucket["table"] != table:
            continue
        seconds = F.col(bucket["column"])
        df = df.withColumn(
            DURATION_BUCKET,
            F.when(seconds.isNull(), F.lit(None).cast("string"))
            .when(seconds < F.lit(bucket["low_below"]), F.lit("low"))
            .when(seconds < F.lit(bucket["medium_below"]), F.lit("medium"))
            .otherwise(F.lit("high")),
        )
    return df


def _encoded(df: DataFrame, column: str) -> Column:
    """One value as text that no other value (nor NULL) encodes to: 'N', or 'V<length>:<text>'.

    Timestamps as microseconds since the epoch, so the text does not depend on the session's
    time zone.
    """
    data_type = df.schema[column].dataType
    if isinstance(data_type, T.TimestampType | T.TimestampNTZType):
        text = F.unix_micros(F.col(column).cast("timestamp")).cast("string")
    else:
        text = F.col(column).cast("string")
    return F.when(F.col(column).isNull(), F.lit("N")).otherwise(
        F.concat(F.lit("V"), F.length(text).cast("string"), F.lit(":"), text)
    )


def with_row_hash(df: DataFrame, columns: list[str]) -> DataFrame:
    """``_row_hash``: SHA-256 (hex) of ``columns`` in order; NULL and '' hash differently."""
    return df.withColumn(ROW_HASH, F.sha2(F.concat(*[_encoded(df, c) for c in columns]), 256))


def silver_key(spec: dict) -> list[str]:
    """What one silver row stands for: a key's version (SCD2: keys + change column), else a key."""
    if (spec.get("gold") or {}).get("scd") == 2:
        return [*spec["keys"], spec["change_column"]]
    return list(spec["keys"])


def deduplicate(df: DataFrame, key: list[str], change_column: str) -> DataFrame:
    """One row per ``key``: the greatest (change column, ``_row_hash``), NULL change lowest.

    Equal hashes mean equal rows; of those the earliest ``_window`` is kept (when the column is
    there), so the result does not depend on the order rows arrive in.
    """
    order = [F.col(change_column).desc_nulls_last(), F.col(ROW_HASH).desc()]
    if WINDOW in df.columns:
        order.append(F.col(WINDOW).asc())
    ranked = df.withColumn("_rank", F.row_number().over(Window.partitionBy(*key).orderBy(*order)))
    return ranked.filter(F.col("_rank") == 1).drop("_rank")


# -- gold ------------------------------------------------------------------------------------------


def scd2(
    history: DataFrame,
    *,
    keys: list[str],
    change_column: str,
    tracked: list[str],
    surrogate_key: str,
    columns: list[str],
) -> DataFrame:
    """A type 2 dimension from a key's versions (at most one per key and change timestamp).

    Per key, versions ordered by ``change_column``; a version whose ``tracked`` columns all equal
    (NULL-safe) those of the version before it is not a new version, so the earliest of a run of
    equal versions stands for it, with its values and its change time as ``valid_from``.
    ``valid_to`` is the next version's ``valid_from`` (NULL for the current one). The surrogate
    key is ``xxhash64(keys, valid_from)``. Rows with a NULL key or change time are left out.

    Columns: surrogate key, ``keys``, the rest of ``columns``, valid_from, valid_to, is_current.
    """
    by_key = Window.partitionBy(*keys).orderBy(F.col(change_column))
    first = F.lag(F.lit(1)).over(by_key).isNull()
    same = F.lit(True)
    for column in tracked:
        same = same & F.col(column).eqNullSafe(F.lag(F.col(column)).over(by_key))
    not_null = F.lit(True)
    for column in [*keys, change_column]:
        not_null = not_null & F.col(column).isNotNull()
    versions = (
        history.filter(not_null)
        .select(*columns)
        .withColumn("_opens", first | ~same)
        .filter(F.col("_opens"))
        .drop("_opens")
        .withColumn(VALID_FROM, F.col(change_column))
        .withColumn(VALID_TO, F.lead(F.col(VALID_FROM)).over(Window.partitionBy(*keys).orderBy(VALID_FROM)))
        .withColumn(IS_CURRENT, F.col(VALID_TO).isNull())
        .withColumn(surrogate_key, F.xxhash64(*[F.col(k) for k in keys], F.col(VALID_FROM)))
    )
    rest = [c for c in columns if c not in keys]
    return versions.select(surrogate_key, *keys, *rest, VALID_FROM, VALID_TO, IS_CURRENT)


def as_of(
    facts: DataFrame,
    dimension: DataFrame,
    *,
    on: dict[str, str],
    at: str,
    take: dict[str, str],
    before_first: str,
) -> DataFrame:
    """Each fact with columns of the dimension version valid at its ``at`` timestamp.

    ``on`` maps fact columns to the dimension's key columns; ``take`` maps dimension columns to
    the names they get on the fact. The version valid at ``t`` has ``valid_from <= t`` and
    (``valid_to`` NULL or ``t < valid_to``); a fact earlier than the key's first version takes
    the first version and is flagged in the boolean column ``before_first``. A key the dimension
    does not have (or a NULL time) gives NULLs and ``before_first`` false.
    """
    clash = sorted(set(facts.columns) & {*take.values(), before_first})
    if clash:
        raise ValueError(f"as_of would overwrite fact column(s) {clash}")
    keys = list(on.values())
    rank = F.row_number().over(Window.partitionBy(*keys).orderBy(VALID_FROM))
    versions = dimension.select(
        *[F.col(k).alias(f"_d_{k}") for k in keys],
        F.col(VALID_FROM).alias("_d_from"),
        F.col(VALID_TO).alias("_d_to"),
        (rank == 1).alias("_d_first"),
        *[F.col(c).alias(f"_d_take_{i}") for i, c in enumerate(take)],
    )
    at_col, start, end = F.col(at), F.col("_d_from"), F.col("_d_to")
    valid = (start <= at_col) & (end.isNull() | (at_col < end))
    early = F.col("_d_first") & (at_col < start)
    condition = valid | early
    for fact_col, key in on.items():
        condition = (F.col(fact_col) == F.col(f"_d_{key}")) & condition
    joined = facts.join(versions, condition, "left")
    return joined.select(
        *[F.col(c) for c in facts.columns],
        *[F.col(f"_d_take_{i}").alias(name) for i, name in enumerate(take.values())],
        F.coalesce(early, F.lit(False)).alias(before_first),
    )


def same_content(left: DataFrame, right: DataFrame) -> bool:
    """Whether two frames hold the same columns (names and types) and the same rows (as multisets)."""

    def shape(df: DataFrame) -> list[tuple[str, str]]:
        return [(f.name, f.dataType.simpleString()) for f in df.schema.fields]

    if shape(left) != shape(right):
        return False
    side = "_same_content_side"
    both = left.withColumn(side, F.lit(1)).unionByName(right.withColumn(side, F.lit(-1)))
    # Row counts first, in one query with no shuffle: frames of other sizes differ.
    sizes = both.agg(F.count(F.when(F.col(side) == 1, 1)), F.count(F.when(F.col(side) == -1, 1))).first()
    if sizes[0] != sizes[1]:
        return False
    # Then one aggregation over both: per distinct row, its count on the left less its count on
    # the right (GROUP BY takes NULLs as equal, as EXCEPT ALL does); any row off zero differs.
    return both.groupBy(*left.columns).agg(F.sum(side).alias(side)).filter(F.col(side) != 0).isEmpty()
