"""`./klikit smoke`: prove a deployed stack (or the local one) works end to end, in under a minute.

One signed sample delivery with a fresh event id goes to the stack's real URL, signed with the secret the stack
holds in Secrets Manager; the same delivery again must be answered as a duplicate, a forged one must get 401, and the
order projection must show the order. The delivery carries `klikit_webhooks_smoke: true` inside the signed body, so
the processor runs only its built-in projection for it: no user handler (no POS call), no EventBridge fan-out. The
test order is removed at the end.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass

from klikit.events import ORDER_CREATED, SMOKE_MARKER
from tools import sender
from tools.target import CliError, Target

PROJECTION_TIMEOUT_SECONDS = 60.0
CLOUDFORMATION_STACK_TAG = "aws:cloudformation:stack-name"  # CloudFormation tags every resource it creates


@dataclass(frozen=True)
class Step:
    name: str
    ok: bool
    detail: str
    milliseconds: float


class PlaceholderSecret(CliError):
    """The stack's secret still holds the value CloudFormation generated: no klikit delivery can verify."""


def smoke_body(order_id: int) -> bytes:
    """The created sample cut to one order with a fresh id, marked as a smoke delivery."""
    document = json.loads(sender.sample_body("created"))
    document["orders"] = document["orders"][:1]
    document["orders"][0]["id"] = order_id
    document[SMOKE_MARKER] = True
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def refuse_placeholder(target: Target) -> None:
    """A secret the stack created (CloudFormation's tags) with a single version was never given klikit's value."""
    if target.local is not None:
        return
    client = target.client("secretsmanager")
    tags = {tag["Key"] for tag in client.describe_secret(SecretId=target.secret_id).get("Tags", [])}
    if CLOUDFORMATION_STACK_TAG not in tags:
        return  # imported with webhook_secret: its value is the user's own
    versions = client.list_secret_version_ids(SecretId=target.secret_id, IncludeDeprecated=True)["Versions"]
    if len(versions) <= 1:
        raise PlaceholderSecret(
            f"the webhook secret of {target.description} is still the placeholder the stack generated, so nothing "
            "klikit signs can verify: put klikit's secret in first (docs/deploy.md, section 4): "
            f'aws secretsmanager put-secret-value --secret-id {target.secret_id} --secret-string "$KLIKIT_SECRET"'
        )


def stored_secret(target: Target) -> str:
    """The first active secret the stack holds: the smoke test proves the stored value, not one passed in."""
    from receiver.secrets import parse_secret_value

    value = target.client("secretsmanager").get_secret_value(SecretId=target.secret_id)["SecretString"]
    active = parse_secret_value(value)
    if not active:
        raise CliError(f"the webhook secret of {target.description} is empty: put klikit's secret in first")
    return active[0]


class Smoke:
    def __init__(
        self,
        target: Target,
        *,
        timeout: float = 15.0,
        projection_timeout: float = PROJECTION_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.projection_timeout = projection_timeout
        self._clock = clock
        self._sleep = sleep
        self.order_id = 9_000_000_000 + secrets.randbelow(1_000_000_000)  # far from real klikit order ids
        self.event_id = f"smoke-{uuid.uuid4()}"
        self.delivery = sender.Delivery(smoke_body(self.order_id), self.event_id, ORDER_CREATED)

    def run(self) -> Iterator[Step]:
        started = self._clock()
        refuse_placeholder(self.target)
        secret = stored_secret(self.target)
        yield Step("secret", True, "read from Secrets Manager", self._ms(started))
        received = yield from self._post("delivery", sender.SignOptions(secret), self.delivery, 200, "received")
        if received:
            yield from self._post("duplicate", sender.SignOptions(secret), self.delivery, 200, "duplicate-ignored")
        forged = sender.Delivery(self.delivery.body, f"{self.event_id}-forged", ORDER_CREATED)
        yield from self._post("forged", sender.SignOptions(secret, wrong_secret=True), forged, 401, None)
        if received:
            yield self._projection()
        yield self._cleanup()

    def _post(
        self, name: str, options: sender.SignOptions, delivery: sender.Delivery, status: int, answer: str | None
    ) -> Generator[Step, None, bool]:
        started = self._clock()
        try:
            reply = sender.send(self.target.webhook_url, delivery, options, self.timeout)
        except sender.SendError as exc:
            yield Step(name, False, str(exc), self._ms(started))
            return False
        document = reply.json() if isinstance(reply.json(), dict) else {}
        ok = reply.status == status and (answer is None or document.get("status") == answer)
        shown = document.get("status") or document.get("error") or document.get("message") or reply.text()[:120]
        detail = f"{reply.status} {shown}" + ("" if ok else f" (expected {status}{' ' + answer if answer else ''})")
        yield Step(name, ok, detail, self._ms(started))
        return ok

    def _projection(self) -> Step:
        started = self._clock()
        table = self.target.client("dynamodb")
        key = {"order_id": {"S": str(self.order_id)}}
        while True:
            item = table.get_item(TableName=self.target.orders_table, Key=key, ConsistentRead=True).get("Item")
            if item and item.get("last_event_id", {}).get("S") == self.event_id:
                return Step("projection", True, f"order {self.order_id} stored by the processor", self._ms(started))
            if self._clock() - started > self.projection_timeout:
                return Step(
                    "projection",
                    False,
                    f"order {self.order_id} not in the orders table after {self.projection_timeout:g} s: "
                    f"see ./klikit logs --filter {self.event_id} and ./klikit dlq list",
                    self._ms(started),
                )
            self._sleep(0.25)

    def _cleanup(self) -> Step:
        started = self._clock()
        self.target.client("dynamodb").delete_item(
            TableName=self.target.orders_table, Key={"order_id": {"S": str(self.order_id)}}
        )
        return Step("cleanup", True, f"test order {self.order_id} removed", self._ms(started))

    def _ms(self, started: float) -> float:
        return (self._clock() - started) * 1000


def describe(target: Target) -> str:
    return f"{target.description}  {target.webhook_url}"


__all__ = ["PlaceholderSecret", "Smoke", "Step", "describe", "smoke_body"]
