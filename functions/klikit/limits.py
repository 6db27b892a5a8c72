"""How large a delivery body can be on its way through API Gateway to the receiver, computed once.

The API hands every body to Lambda base64-encoded (binaryMediaTypes */*), inside the REST proxy event, and
Lambda's synchronous invocation payload is at most 6,291,456 bytes. A body whose event does not fit never reaches
the receiver: API Gateway answers 413 {"message": "Request Too Long"} itself. The receiver refuses, with its own
413, anything above MAX_BODY_BYTES, which leaves room for the largest rest of the event.
"""

from __future__ import annotations

LAMBDA_INVOKE_PAYLOAD_BYTES = 6_291_456  # 6 MB: the whole synchronous Invoke request, event JSON included
API_GATEWAY_MAX_BODY_BYTES = 10 * 1024 * 1024  # above it API Gateway refuses before looking at the route
# The rest of the proxy event: REST API headers are capped at 10,240 bytes and appear twice (headers and
# multiValueHeaders), plus the request context, path and JSON quoting: 64 KiB bounds it with room to spare.
PROXY_EVENT_ALLOWANCE_BYTES = 64 * 1024


def base64_size(size: int) -> int:
    return 4 * ((size + 2) // 3)


# The largest body whose base64 form still fits next to the rest of the event: 4,669,440 bytes (~4.45 MiB).
MAX_BODY_BYTES = (LAMBDA_INVOKE_PAYLOAD_BYTES - PROXY_EVENT_ALLOWANCE_BYTES) // 4 * 3
