"""The orders table keeps the cart compressed: each write of an order item is billed on its whole size."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3
from boto3.dynamodb.types import TypeSerializer

from bench.prices import item_bytes, write_units
from klikit.events import ORDER_CREATED
from tests.conftest import load_json
from tests.integration.processor.helpers import delivery, failed_ids, order_item, sqs_event, sqs_record
from tools.local.resources import LocalResources


def test_the_stored_cart_is_one_compressed_attribute_that_reads_back_whole(
    processor: Callable[[dict[str, Any]], dict[str, Any]], aws: LocalResources
) -> None:
    document = load_json("order_created_v2_batch.json")
    lines = document["orders"][0]["cart"]
    document["orders"][0]["cart"] = [dict(line, item_id=9000 + n) for n, line in enumerate(lines * 2)]  # 4 lines
    body = json.dumps(document).encode()
    response = processor(sqs_event(sqs_record(delivery(body, ORDER_CREATED))))
    assert failed_ids(response) == []

    raw = boto3.client("dynamodb").get_item(TableName=aws.orders_table, Key={"order_id": {"S": "7821"}})["Item"]
    assert set(raw["cart"]) == {"B"}
    item = order_item(aws, "7821")  # what `./klikit orders get` shows
    assert item is not None
    as_list = {**raw, "cart": TypeSerializer().serialize(item["cart"])}
    assert (write_units(item_bytes(raw), 0), write_units(item_bytes(as_list), 0)) == (2, 3)
    assert [line["klikit_sku_id"] for line in item["cart"]] == ["CBA001", "CBA014", "CBA001", "CBA014"]
    assert item["cart"][0]["title_v2"] == {"en": "Nasi Goreng"}  # every key klikit sent is kept
