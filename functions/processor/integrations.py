"""YOUR CODE GOES HERE: send klikit orders to your POS, KDS, ERP... (see docs/handlers.md).

Decorate a function with `@on(<event type>)` and it runs for every order of every delivery of that type, at most
once per effect key (handler name, order id and the order as klikit signed it; a new order's handlers once per
order), after the order projection; status and cart handlers only for news. Raise to have it retried.

The handler below is a worked example: it turns each new order into a kitchen ticket and logs it (no customer
data). Replace its last line with a call to your POS, or delete it.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from klikit.events import ORDER_CREATED
from klikit.observability import PROCESSOR_SERVICE
from processor.models import OrderEvent
from processor.registry import on

logger = Logger(service=PROCESSOR_SERVICE, child=True)


def kitchen_ticket(event: OrderEvent) -> dict[str, Any]:
    """What a kitchen needs to cook the order: ids and lines, no customer data."""
    order = event.order
    return {
        "order_id": order.id,
        "external_id": order.external_id,
        "brand_id": event.brand_id,
        "branch_id": event.branch_id,
        "lines": [
            {"sku": line.klikit_sku_id, "title": line.title, "quantity": str(line.quantity)}
            for line in order.cart or []
        ],
    }


@on(ORDER_CREATED, name="example.kitchen-ticket")
def print_kitchen_ticket(event: OrderEvent) -> None:
    ticket = kitchen_ticket(event)
    # Your POS call goes here, e.g. pos_client.create_ticket(ticket), with a timeout well under the Lambda's.
    logger.info("kitchen ticket", ticket=ticket)
