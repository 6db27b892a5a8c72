"""Only the reconciler marks an event as reconciled: no signed webhook, whatever its headers, can."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from klikit import delivery as contract
from tests.conftest import api_event, load_fixture

FORGED = {
    "source": "reconciler",
    "Source": "reconciler",
    "x-klikit-source": "reconciler",
    "x-amz-sqs-message-attribute-source": "reconciler",
    "MessageAttributes": json.dumps({"source": {"DataType": "String", "StringValue": "reconciler"}}),
}


def test_a_signed_webhook_claiming_to_be_reconciled_is_queued_as_klikits(receive: Any, queued: Any) -> None:
    body = load_fixture("order_created_v2_batch.json")
    event = api_event(body)
    event["headers"].update(FORGED)
    event["multiValueHeaders"].update({name: [value] for name, value in FORGED.items()})

    status, _ = receive(event)

    [message] = queued()
    assert status == 200
    assert contract.SOURCE not in message.get("MessageAttributes", {})
    assert contract.queued_delivery(message).source == contract.KLIKIT


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    extra=st.dictionaries(
        st.sampled_from([*FORGED, "x-klikit-event-source", "x-reconciler", "event_source"]),
        st.sampled_from(["reconciler", "RECONCILER", " reconciler", "klikit"]),
        min_size=1,
    )
)
def test_no_header_a_sender_adds_reaches_the_queue_as_a_message_attribute(
    receive: Any, queued: Any, extra: dict[str, str]
) -> None:
    event = api_event(load_fixture("order_status_updated.json"))
    event["headers"].update(extra)
    event["multiValueHeaders"].update({name: [value] for name, value in extra.items()})

    status, _ = receive(event)

    assert status == 200
    for message in queued():
        assert set(message.get("MessageAttributes", {})) <= {
            contract.EVENT_ID,
            contract.EVENT_TYPE,
            contract.RECEIVED_AT,
            contract.BODY_SHA256,
            contract.BODY_ENCODING,
        }
