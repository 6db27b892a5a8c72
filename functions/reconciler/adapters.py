"""Everything the reconciler does with AWS: read the projection, queue heals, keep its checkpoint, read credentials.

boto3 lives here only; each adapter takes its client so tests hand in moto's.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import BotoCoreError, ClientError

from klikit.delivery import RECONCILER, sqs_message
from klikit.errors import CredentialsUnavailable
from processor import cart_storage
from reconciler.logic import Heal, Stored, Window
from reconciler.partner_api import Credentials

if TYPE_CHECKING:  # boto3-stubs' client types, for mypy only
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient

BATCH_GET_LIMIT = 100  # DynamoDB BatchGetItem keys per call
# The projection attributes the comparison needs (processor.projection writes them).
COMPARED = ("order_id", "status", "status_at_ms", "cart", "total", "currency", "cart_at_ms")
# The reconciler's one item in the idempotency table; its role may touch no other key (IAM LeadingKeys).
CHECKPOINT_KEY = "reconciler#checkpoint"
CHECKPOINT_TTL_SECONDS = 7 * 86_400


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


class DynamoProjection:
    def __init__(self, dynamodb: DynamoDBClient, table_name: str) -> None:
        self._dynamodb = dynamodb
        self._table = table_name
        self._deserialize = TypeDeserializer().deserialize

    def stored(self, order_ids: list[str]) -> dict[str, Stored]:
        found: dict[str, Stored] = {}
        unique = list(dict.fromkeys(order_ids))
        for start in range(0, len(unique), BATCH_GET_LIMIT):
            pending: dict[str, Any] | None = {
                self._table: {
                    "Keys": [{"order_id": {"S": order_id}} for order_id in unique[start : start + BATCH_GET_LIMIT]],
                    "ProjectionExpression": ", ".join(f"#a{i}" for i in range(len(COMPARED))),
                    "ExpressionAttributeNames": {f"#a{i}": name for i, name in enumerate(COMPARED)},
                    "ConsistentRead": True,
                }
            }
            while pending:  # botocore retries throttling; UnprocessedKeys are asked for again until none are left
                response = self._dynamodb.batch_get_item(RequestItems=pending)
                for item in response.get("Responses", {}).get(self._table, []):
                    # the cart is stored packed (processor.cart_storage): compare klikit's copy with the list itself
                    values = cart_storage.readable({name: self._deserialize(value) for name, value in item.items()})
                    found[values["order_id"]] = self._stored(values)
                pending = response.get("UnprocessedKeys") or None
        return found

    @staticmethod
    def _stored(values: dict[str, Any]) -> Stored:
        has_cart = "cart_at_ms" in values or "cart" in values
        return Stored(
            status=values.get("status"),
            status_at_ms=_int(values.get("status_at_ms")),
            cart={name: values.get(name) for name in ("cart", "total", "currency")} if has_cart else None,
            cart_at_ms=_int(values.get("cart_at_ms")),
        )


class ReconciledQueue:
    """Puts each heal on the processing queue exactly as the receiver would, plus `source: reconciler`."""

    def __init__(self, sqs: SQSClient, queue_url: str) -> None:
        self._sqs = sqs
        self._queue_url = queue_url

    def put(self, heal: Heal) -> None:
        body, attributes = sqs_message(heal.delivery, source=RECONCILER)
        self._sqs.send_message(QueueUrl=self._queue_url, MessageBody=body, MessageAttributes=attributes)


class Checkpoint(NamedTuple):
    window: Window
    next_page: int


class DynamoCheckpoints:
    """One small item in the idempotency table: the window being walked and the next page.

    That table already has TTL, and a checkpoint is the same kind of short-lived marker; a table of its own would
    hold one item.
    """

    def __init__(self, dynamodb: DynamoDBClient, table_name: str) -> None:
        self._dynamodb = dynamodb
        self._table = table_name

    def load(self) -> Checkpoint | None:
        item = self._dynamodb.get_item(
            TableName=self._table, Key={"id": {"S": CHECKPOINT_KEY}}, ConsistentRead=True
        ).get("Item")
        if not item:
            return None
        try:
            window = Window(
                datetime.fromisoformat(item["since"]["S"]),
                datetime.fromisoformat(item["until"]["S"]),
                item["branch_id"]["S"] if "branch_id" in item else None,
            )
            return Checkpoint(window, int(item["next_page"]["N"]))
        except (KeyError, ValueError):
            return None  # unreadable: start a fresh window

    def save(self, checkpoint: Checkpoint, now_epoch: int) -> None:
        item = {
            "id": {"S": CHECKPOINT_KEY},
            "since": {"S": checkpoint.window.since.isoformat()},
            "until": {"S": checkpoint.window.until.isoformat()},
            "next_page": {"N": str(checkpoint.next_page)},
            "expiration": {"N": str(now_epoch + CHECKPOINT_TTL_SECONDS)},
        }
        if checkpoint.window.branch_id:
            item["branch_id"] = {"S": checkpoint.window.branch_id}
        self._dynamodb.put_item(TableName=self._table, Item=item)

    def clear(self) -> None:
        self._dynamodb.delete_item(TableName=self._table, Key={"id": {"S": CHECKPOINT_KEY}})


class SecretCredentials:
    """The partner credentials, read from Secrets Manager once per run (a fixed secret is used by the next run)."""

    def __init__(self, secretsmanager: SecretsManagerClient, secret_id: str) -> None:
        self._secretsmanager = secretsmanager
        self.secret_id = secret_id
        self._value: Credentials | None = None

    def __call__(self) -> Credentials:
        if self._value is None:
            self._value = read_credentials(self._secretsmanager, self.secret_id)
        return self._value

    def refresh(self) -> None:
        self._value = None


def read_credentials(secretsmanager: SecretsManagerClient, secret_id: str) -> Credentials:
    """`{"partner_key": ..., "secret_key": ...}` from Secrets Manager; the message never holds the value."""
    try:
        value = secretsmanager.get_secret_value(SecretId=secret_id)["SecretString"]
    except (ClientError, BotoCoreError) as error:
        raise CredentialsUnavailable(
            f"could not read the partner credentials secret {secret_id}: {type(error).__name__}"
        ) from None
    try:
        document = json.loads(value)
    except ValueError:
        document = None
    keys = ("partner_key", "secret_key")
    if not isinstance(document, dict) or not all(isinstance(document.get(k), str) and document[k] for k in keys):
        raise CredentialsUnavailable(
            f'the partner credentials secret {secret_id} is not JSON {{"partner_key": "...", "secret_key": "..."}}'
        )
    return Credentials(document["partner_key"], document["secret_key"])
