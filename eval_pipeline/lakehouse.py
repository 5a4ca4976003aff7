"""Delta Lake reads and writes shared by the Bronze, Silver and Gold assets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession


def sql_literal(value: object) -> str:
    """Quote a Python value as a Spark SQL literal (strings have `'` and `\\` escaped)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def equality_predicate(match: Mapping[str, object]) -> str:
    """Return `a = 'x' AND b = 'y'` for the given column values."""
    return " AND ".join(f"`{column}` = {sql_literal(value)}" for column, value in match.items())


def table_exists(spark: SparkSession, path: str) -> bool:
    return DeltaTable.isDeltaTable(spark, path)


def table_version(spark: SparkSession, path: str) -> int | None:
    """Return the latest Delta version of the table at `path`, or None when there is none."""
    if not table_exists(spark, path):
        return None
    return DeltaTable.forPath(spark, path).history(1).collect()[0]["version"]


def read_rows(
    spark: SparkSession,
    path: str,
    match: Mapping[str, object] | None = None,
    version: int | None = None,
):
    """Return the table's rows matching `match` (at Delta `version` when given).

    Returns None when the table does not exist yet.
    """
    if not table_exists(spark, path):
        return None
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    frame = reader.load(path)
    return frame.where(equality_predicate(match)) if match else frame


def replace_rows(
    frame: DataFrame,
    path: str,
    match: Mapping[str, object],
    partition_by: Sequence[str] = (),
) -> int:
    """Replace exactly the rows matching `match` with `frame`; return the new Delta version.

    The predicate runs as Delta's `replaceWhere`, so rows outside it are untouched and a
    re-run writes no duplicates. Partitioning on the matched columns lets concurrent writers of
    different partitions commit without conflicts.
    """
    spark = frame.sparkSession
    writer = frame.write.format("delta")
    if table_exists(spark, path):
        writer = writer.mode("overwrite").option("replaceWhere", equality_predicate(match))
    else:
        writer = writer.mode("errorifexists")
        if partition_by:
            writer = writer.partitionBy(*partition_by)
    writer.save(path)
    return table_version(spark, path)


def append_rows(frame: DataFrame, path: str, partition_by: Sequence[str] = ()) -> int:
    """Append `frame` to the table; return the new Delta version."""
    writer = frame.write.format("delta").mode("append")
    if partition_by and not table_exists(frame.sparkSession, path):
        writer = writer.partitionBy(*partition_by)
    writer.save(path)
    return table_version(frame.sparkSession, path)
