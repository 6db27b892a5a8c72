"""AWS faults for tests, injected at the botocore layer where moto cannot produce them.

`Faults` arms hooks on the default boto3 session (the one the functions' clients come from): fail an operation
with an AWS error code or a transport error, throttle it on the wire (so botocore's own retries are exercised),
lose its response, hold it, or crash the Lambda just before or just after it. `Crash` is a BaseException: the
Lambda runtime killing an invocation (timeout, OOM) runs no `except Exception`, no cleanup, no reply.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import boto3
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from moto.core.models import botocore_stubber

S3_MAX_KEY_BYTES = 1024
S3_MAX_METADATA_BYTES = 2048


class Crash(BaseException):  # not an Exception: the code under test must not be able to catch it
    """The Lambda runtime ended the invocation here (timeout or crash): no except-clause, no cleanup, no reply."""


Predicate = Callable[[dict[str, Any]], bool]


@dataclass
class Rule:
    operation: str  # "sqs.SendMessage"
    action: str  # fail | crash_before | crash_after | throttle | lose_response | hold
    times: int  # -1: every matching call
    when: Predicate | None = None
    code: str = "InternalError"
    error: Exception | None = None
    hold: Callable[[], None] | None = None
    fired: int = 0


def _operation(event_name: str) -> str:
    # "<event>.<service-id>.<Operation>": secrets-manager -> secretsmanager
    _event, service, operation = event_name.split(".", 2)
    return f"{service.replace('-', '')}.{operation}"


class Faults:
    """botocore hooks on the default boto3 session: the functions' clients are created after it is armed."""

    _PARAMS = "reliability.api_params"

    def __init__(self) -> None:
        self.rules: list[Rule] = []
        self.calls: Counter[str] = Counter()
        self.attempts: Counter[str] = Counter()  # wire attempts, including botocore's own retries
        self.put_keys: list[tuple[str, str]] = []  # (table, id) of every idempotency record the functions wrote
        self.sent: list[dict[str, Any]] = []  # every SendMessage, shaped like a received message
        self._lock = threading.Lock()
        self._current = threading.local()

    # --- arming ------------------------------------------------------------------------------------------

    def fail(
        self,
        operation: str,
        *,
        times: int = 1,
        code: str = "InternalError",
        error: Exception | None = None,
        when: Predicate | None = None,
    ) -> Rule:
        """The call raises ClientError(code), or `error`, as if every retry botocore made had failed."""
        return self._add(Rule(operation, "fail", times, when, code=code, error=error))

    def crash_before(self, operation: str, *, times: int = 1, when: Predicate | None = None) -> Rule:
        return self._add(Rule(operation, "crash_before", times, when))

    def crash_after(self, operation: str, *, times: int = 1, when: Predicate | None = None) -> Rule:
        """The call reached AWS and took effect; the Lambda died before it saw the answer."""
        return self._add(Rule(operation, "crash_after", times, when))

    def throttle(self, operation: str, *, times: int = 1, when: Predicate | None = None) -> Rule:
        """AWS answers HTTP 400 ThrottlingException on the wire: botocore's retry policy sees it and retries."""
        return self._add(Rule(operation, "throttle", times, when))

    def lose_response(self, operation: str, *, times: int = 1, when: Predicate | None = None) -> Rule:
        """AWS takes the request but its answer is lost (HTTP 500 or a read timeout): botocore sends it again."""
        return self._add(Rule(operation, "lose_response", times, when))

    def hold(
        self, operation: str, callback: Callable[[], None], *, times: int = 1, when: Predicate | None = None
    ) -> Rule:
        return self._add(Rule(operation, "hold", times, when, hold=callback))

    def enforce_s3_limits(self) -> None:
        """S3's limits that moto does not enforce: keys of at most 1,024 bytes of UTF-8, 2 KB of user metadata."""

        def key_too_long(params: dict[str, Any]) -> bool:
            return len(str(params.get("Key", "")).encode("utf-8")) > S3_MAX_KEY_BYTES

        def metadata_too_large(params: dict[str, Any]) -> bool:
            metadata = params.get("Metadata") or {}
            return sum(len(k.encode()) + len(v.encode()) for k, v in metadata.items()) > S3_MAX_METADATA_BYTES

        for operation in ("s3.PutObject", "s3.GetObject", "s3.HeadObject"):
            self.fail(operation, code="KeyTooLongError", times=-1, when=key_too_long)
        self.fail("s3.PutObject", code="MetadataTooLarge", times=-1, when=metadata_too_large)

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def _add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def _take(self, operation: str, actions: tuple[str, ...], context: dict[str, Any] | None) -> Rule | None:
        params = (context or {}).get(self._PARAMS, {})
        with self._lock:
            for rule in self.rules:
                if rule.operation != operation or rule.action not in actions or rule.times == 0:
                    continue
                if rule.when is not None and not rule.when(params):
                    continue
                if rule.times > 0:
                    rule.times -= 1
                rule.fired += 1
                return rule
        return None

    # --- botocore hooks ----------------------------------------------------------------------------------

    def _remember_params(self, event_name: str, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context[self._PARAMS] = params
        self._current.params = params  # before-send has no context: it runs on this thread, right after
        operation = _operation(event_name)
        with self._lock:
            if operation == "dynamodb.PutItem" and "id" in params.get("Item", {}):
                self.put_keys.append((params["TableName"], params["Item"]["id"]["S"]))
            elif operation == "sqs.SendMessage":
                self.sent.append({"Body": params["MessageBody"], "MessageAttributes": params["MessageAttributes"]})

    def _before_call(self, event_name: str, context: dict[str, Any] | None = None, **_: Any) -> None:
        operation = _operation(event_name)
        with self._lock:
            self.calls[operation] += 1
        rule = self._take(operation, ("hold",), context)
        if rule is not None and rule.hold is not None:
            rule.hold()
        rule = self._take(operation, ("fail", "crash_before"), context)
        if rule is None:
            return
        if rule.action == "crash_before":
            raise Crash(f"crashed before {operation}")
        if rule.error is not None:
            raise rule.error
        raise ClientError({"Error": {"Code": rule.code, "Message": f"injected {operation} failure"}}, operation)

    def _after_call(self, event_name: str, context: dict[str, Any] | None = None, **_: Any) -> None:
        operation = _operation(event_name)
        if self._take(operation, ("crash_after",), context) is not None:
            raise Crash(f"crashed after {operation}")

    def _before_send(self, event_name: str, request: Any, **_: Any) -> AWSResponse | None:
        operation = _operation(event_name)
        with self._lock:
            self.attempts[operation] += 1
        context = {self._PARAMS: getattr(self._current, "params", {})}
        rule = self._take(operation, ("throttle", "lose_response"), context)
        if rule is None:
            return None
        if rule.action == "throttle":
            # botocore calls every before-send handler: keep moto's from taking the request this once
            botocore_stubber.enabled = False
            self._current.stubber_off = True
            if operation.startswith("s3."):
                body = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
                return _response(request.url, 503, {"Content-Type": "application/xml"}, body)
            code = (
                "ProvisionedThroughputExceededException" if operation.startswith("dynamodb.") else "ThrottlingException"
            )
            body = json.dumps({"__type": code, "message": "Rate exceeded"}).encode()
            headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-query-error": f"{code};Sender"}
            return _response(request.url, 400, headers, body)
        # lose_response: moto (AWS) takes the request after us; its answer is lost and botocore retries
        if operation.startswith("s3."):
            body = b"<Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>"
            return _response(request.url, 500, {"Content-Type": "application/xml"}, body)
        body = json.dumps({"__type": "InternalServerError", "message": "response lost"}).encode()
        headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-query-error": "InternalError;Receiver"}
        return _response(request.url, 500, headers, body)

    def _needs_retry(self, **_: Any) -> None:
        if getattr(self._current, "stubber_off", False):
            botocore_stubber.enabled = True
            self._current.stubber_off = False

    def install(self, session: boto3.Session) -> None:
        events = session.events
        events.register("before-parameter-build", self._remember_params)
        events.register("before-call", self._before_call)
        events.register("after-call", self._after_call)
        events.register_first("before-send", cast(Any, self._before_send))  # ahead of moto's responder
        events.register_first("needs-retry", self._needs_retry)

    def uninstall(self, session: boto3.Session) -> None:
        events = session.events
        events.unregister("before-parameter-build", self._remember_params)
        events.unregister("before-call", self._before_call)
        events.unregister("after-call", self._after_call)
        events.unregister("before-send", cast(Any, self._before_send))
        events.unregister("needs-retry", self._needs_retry)


def _response(url: str, status: int, headers: dict[str, str], body: bytes) -> AWSResponse:
    return AWSResponse(url, status, cast(Any, headers), cast(Any, _RawBody(body)))


class _RawBody:
    """The urllib3-like raw stream AWSResponse reads its content from."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body

    def read(self, *_: Any) -> bytes:
        body, self._body = self._body, b""
        return body
