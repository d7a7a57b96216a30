"""The snake_case rule of lake table names and gold columns (spark_jobs/common/naming.py)."""

from __future__ import annotations

import pytest

from spark_jobs.common.errors import BadInputError
from spark_jobs.common.naming import NameCollisionError, lake_name, snake_case, snake_columns


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # the examples
        ("AddressID", "address_id"),
        ("SalesOrderID", "sales_order_id"),
        ("rowguid", "rowguid"),
        ("ProductModelID", "product_model_id"),
        # acronyms: the last capital before a lower-case letter starts the next word
        ("HTTPServer2Name", "http_server2_name"),
        ("XMLData", "xml_data"),
        ("ID", "id"),
        ("ProductIDs", "product_ids"),  # an acronym's plural stays one word
        ("ASales", "a_sales"),
        # digits stay with what precedes them; a capital after digits starts a word
        ("Line2", "line2"),
        ("AddressLine1", "address_line1"),
        ("HTTP2Server", "http2_server"),
        ("SKU2B", "sku2_b"),
        ("x2y", "x2y"),
        ("2ndLine", "2nd_line"),
        ("2024", "2024"),
        # existing underscores, spaces and other separators
        ("already_snake", "already_snake"),
        ("Mixed_Case Name", "mixed_case_name"),
        ("Order Qty", "order_qty"),
        ("Order  Qty", "order_qty"),
        (" padded ", "padded"),
        ("__x__", "x"),
        ("a-b.c", "a_b_c"),
        ("Unit Price (USD)", "unit_price_usd"),
        ("ALL_CAPS_NAME", "all_caps_name"),
        ("camelCase", "camel_case"),
        ("iPhone", "i_phone"),
        # non-ASCII: accents dropped, anything else separates words
        ("café_Name", "cafe_name"),
        ("NaïveÉtat", "naive_etat"),
        ("Größe", "gro_e"),
        ("名前", ""),
        ("", ""),
    ],
)
def test_snake_case(name, expected):
    assert snake_case(name) == expected
    assert snake_case(expected) == expected  # idempotent


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("SalesOrderHeader", "sales_order_header"),
        ("Product Model", "product_model"),
        ("2ndTable", None),  # must start with a letter
        ("名前", None),
        ("__", None),
        ("A" * 63, "a" * 63),
        ("A" * 64, None),  # at most 63 characters
        ("Robert'); DROP TABLE x;--", "robert_drop_table_x"),
        ("../etc/passwd", "etc_passwd"),
    ],
)
def test_lake_name(name, expected):
    assert lake_name(name) == expected


def test_snake_columns_renames_and_keeps():
    assert snake_columns(["SalesOrderID", "Order Qty", "_load_id"], keep=["_load_id"]) == {
        "SalesOrderID": "sales_order_id",
        "Order Qty": "order_qty",
        "_load_id": "_load_id",
    }


@pytest.mark.parametrize(
    ("columns", "first", "second"),
    [
        (["OrderID", "order_id"], "OrderID", "order_id"),
        (["Order Qty", "OrderQty"], "Order Qty", "OrderQty"),
        (["a", "ProductID", "product__id"], "ProductID", "product__id"),
    ],
)
def test_a_collision_after_snake_case_names_the_table_and_both_columns(columns, first, second):
    with pytest.raises(NameCollisionError) as caught:
        snake_columns(columns, where="gold.sales_order_detail")
    message = str(caught.value)
    assert message.startswith("gold.sales_order_detail: ")
    assert repr(first) in message
    assert repr(second) in message
    assert isinstance(caught.value, BadInputError)  # not retried: the same input fails the same way


def test_ingestion_columns_stay_apart_from_source_columns_of_similar_names():
    assert snake_columns(["_run_id", "RunID", "__Load_ID"], keep=["_run_id"]) == {
        "_run_id": "_run_id",
        "RunID": "run_id",
        "__Load_ID": "load_id",
    }


def test_a_column_with_nothing_to_name_it_by_fails_naming_it():
    with pytest.raises(BadInputError, match="t: column '名前'"):
        snake_columns(["id", "名前"], where="t")
