"""Put a verified delivery on SQS, or in S3 with a pointer on SQS when it is bigger than a message can be."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from botocore.exceptions import BotoCoreError, ClientError

from klikit.delivery import Delivery, claim_check_key, sqs_message, sqs_message_size
from klikit.errors import EnqueueFailed

if TYPE_CHECKING:  # boto3-stubs' client types, for mypy only
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient


class Enqueued(NamedTuple):
    message_id: str
    offloaded_to_s3: bool


class DeliveryQueue:
    def __init__(
        self,
        sqs: SQSClient,
        s3: Callable[[], S3Client],
        queue_url: str,
        bucket: str,
        max_message_bytes: int,
    ) -> None:
        self._sqs = sqs
        self._s3 = s3  # created on first use: most deliveries never need S3, and the client costs cold-start time
        self._queue_url = queue_url
        self._bucket = bucket
        self._max_message_bytes = max_message_bytes

    def enqueue(self, delivery: Delivery) -> Enqueued:
        body, attributes = sqs_message(delivery)
        offloaded = sqs_message_size(body, attributes) > self._max_message_bytes
        try:
            if offloaded:
                key = claim_check_key(delivery)
                self._s3().put_object(
                    Bucket=self._bucket,
                    Key=key,
                    Body=delivery.body,
                    ContentType="application/octet-stream",
                    ChecksumAlgorithm="SHA256",
                )
                body, attributes = sqs_message(delivery, body_s3_uri=f"s3://{self._bucket}/{key}")
            sent = self._sqs.send_message(QueueUrl=self._queue_url, MessageBody=body, MessageAttributes=attributes)
        except (ClientError, BotoCoreError) as exc:
            where = "S3" if offloaded else "SQS"
            raise EnqueueFailed(f"{where} refused the delivery: {type(exc).__name__}") from exc
        return Enqueued(message_id=sent["MessageId"], offloaded_to_s3=offloaded)
