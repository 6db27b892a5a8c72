"""Admit each klikit event id once: Powertools Idempotency on DynamoDB wrapped around the enqueue.

First delivery: the enqueue runs and its result is stored. A repeat after success gets the stored result back
(marked as a duplicate) and enqueues nothing. A repeat while the first is still running is refused (klikit retries
later). When the enqueue fails, Powertools deletes the in-progress record, so klikit's retry goes through.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyInconsistentStateError,
    IdempotencyPersistenceLayerError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from klikit.delivery import Delivery
from klikit.errors import DeliveryInProgress, EnqueueFailed
from receiver.queue import Enqueued

# Pinned so that renaming the function, the module or the Lambda never resets the keys already stored.
KEY_PREFIX = "klikit-delivery"


class Admission(NamedTuple):
    duplicate: bool
    message_id: str
    offloaded_to_s3: bool
    body_differs: bool = False  # a repeat whose body hash differs from the first one's


def _mark_duplicate(response: Any, idempotent_data: DataRecord) -> Any:
    return {**response, "duplicate": True} if isinstance(response, dict) else response


class DeliveryAdmission:
    def __init__(
        self,
        persistence: DynamoDBPersistenceLayer,
        ttl_seconds: int,
        enqueue: Callable[[Delivery], Enqueued],
    ) -> None:
        self._config = IdempotencyConfig(
            event_key_jmespath="event_id",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=ttl_seconds,
            response_hook=_mark_duplicate,
        )
        self._enqueue = enqueue

        # The key is the event id only (from `delivery`, the metadata); `verified` rides along unhashed.
        @idempotent_function(
            data_keyword_argument="delivery",
            persistence_store=persistence,
            config=self._config,
            key_prefix=KEY_PREFIX,
        )
        def enqueue_once(delivery: dict[str, str], verified: Delivery) -> dict[str, Any]:
            enqueued = self._enqueue(verified)
            return {
                "message_id": enqueued.message_id,
                "offloaded_to_s3": enqueued.offloaded_to_s3,
                "body_sha256": verified.body_sha256,
            }

        self._enqueue_once = enqueue_once

    def admit(self, delivery: Delivery, context: LambdaContext | None) -> Admission:
        if context is not None:
            # lets Powertools expire an in-progress record when this invocation times out, so a retry can run
            self._config.register_lambda_context(context)
        metadata = {
            "event_id": delivery.event_id,
            "event_type": delivery.event_type,
            "received_at": delivery.received_at,
            "body_sha256": delivery.body_sha256,
        }
        try:
            result = self._enqueue_once(delivery=metadata, verified=delivery)
        except IdempotencyAlreadyInProgressError as exc:
            raise DeliveryInProgress(f"event {delivery.event_id} is being admitted by another request") from exc
        except (IdempotencyPersistenceLayerError, IdempotencyInconsistentStateError) as exc:
            raise EnqueueFailed(f"idempotency store failed: {type(exc).__name__}") from exc
        duplicate = bool(result.get("duplicate"))
        return Admission(
            duplicate=duplicate,
            message_id=str(result.get("message_id", "")),
            offloaded_to_s3=bool(result.get("offloaded_to_s3")),
            body_differs=duplicate and result.get("body_sha256") != delivery.body_sha256,
        )
