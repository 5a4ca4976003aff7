import pytest

from eval_pipeline.lakehouse import (
    equality_predicate,
    read_rows,
    replace_rows,
    sql_literal,
    table_version,
)


def test_sql_literal_escapes_quotes():
    assert sql_literal("it's") == "'it\\'s'"
    assert sql_literal("a\\b") == "'a\\\\b'"
    assert sql_literal(3) == "3"
    assert sql_literal(True) == "true"


def test_equality_predicate():
    assert equality_predicate({"a": "x", "b": 2}) == "`a` = 'x' AND `b` = 2"


@pytest.mark.slow
def test_replace_rows_touches_only_matching_rows(spark_resource, tmp_path):
    spark = spark_resource.get_session()
    path = str(tmp_path / "table")
    schema = "key string, value int"
    first = replace_rows(
        spark.createDataFrame([("o'brien", 1), ("o'brien", 2)], schema),
        path,
        {"key": "o'brien"},
        partition_by=["key"],
    )
    replace_rows(spark.createDataFrame([("other", 9)], schema), path, {"key": "other"})
    last = replace_rows(spark.createDataFrame([("o'brien", 3)], schema), path, {"key": "o'brien"})
    rows = sorted(tuple(row) for row in read_rows(spark, path).collect())
    assert rows == [("o'brien", 3), ("other", 9)]
    assert first == 0
    assert last == 2
    assert table_version(spark, path) == 2


@pytest.mark.slow
def test_missing_table_reads_as_none(spark_resource, tmp_path):
    spark = spark_resource.get_session()
    assert read_rows(spark, str(tmp_path / "absent")) is None
    assert table_version(spark, str(tmp_path / "absent")) is None
