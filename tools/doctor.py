"""`klikit doctor`: is this stack healthy, and if not, what to do; `klikit doctor signature`: why a signature fails.

Checks read what an operator would look at by hand: the webhook secret, recent rejections by reason, the DLQ, the
queue, the stack's alarms and the last accepted delivery. Each gives one line: ok, warn or FAIL, and the fix.
"""

from __future__ import annotations

import hmac
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from hashlib import sha256
from typing import Any, NamedTuple

from infra import insights
from tools.events import LogSource, short_type
from tools.target import Target

OK, WARN, FAIL, INFO = "ok", "warn", "FAIL", "info"
REJECTIONS_WINDOW = timedelta(hours=24)
LAST_ACCEPTED_WINDOW = timedelta(days=2)
# What the stack's generated placeholder looks like (infra/intake.py: 48 characters, no punctuation).
_GENERATED_PLACEHOLDER = re.compile(r"[A-Za-z0-9]{48}")


class Check(NamedTuple):
    status: str
    name: str
    detail: str

    def render(self) -> str:
        return f"  {self.status:<4}  {self.name:<14} {self.detail}"


def _ago(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    if seconds < 172_800:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86_400} days ago"


def _whitespace(secret: str) -> str | None:
    """What stray whitespace the secret carries, named (never the secret itself), or None."""
    if secret == secret.strip():
        return None
    if secret.endswith("\r\n"):
        return "ends with CRLF (\\r\\n)"
    if secret.endswith("\n"):
        return "ends with a newline (\\n)"
    if secret != secret.rstrip():
        return "ends with whitespace"
    return "starts with whitespace"


def check_secret(target: Target, stack: str | None) -> Check:
    from receiver.secrets import parse_secret_value
    from tools.local.state import LOCAL_DEFAULT_SECRET

    client = target.client("secretsmanager")
    try:
        value = client.get_secret_value(SecretId=target.secret_id)["SecretString"]
    except Exception as exc:  # noqa: BLE001 - any failure reads the same to the operator
        return Check(FAIL, "secret", f"could not read {target.secret_id} ({type(exc).__name__}): check IAM access")
    active = parse_secret_value(value)
    put = (
        f"aws secretsmanager put-secret-value --secret-id {target.secret_id} --secret-string '<klikit secret>'"
        if stack
        else "restart `make local` with KLIKIT_WEBHOOK_SECRET set"
    )
    if not active:
        return Check(FAIL, "secret", f"the secret is empty: every delivery gets 401. Put klikit's: {put}")
    if stack and len(active) == 1 and _GENERATED_PLACEHOLDER.fullmatch(active[0]) and _one_version(client, target):
        return Check(
            FAIL, "secret", f"still the placeholder the stack generated: every delivery gets 401. Put klikit's: {put}"
        )
    for index, secret in enumerate(active, start=1):
        stray = _whitespace(secret)
        if stray:
            which = f"active secret #{index}" if len(active) > 1 else "the secret"
            return Check(
                FAIL,
                "secret",
                f"{which} {stray}: klikit's signatures will not match it. Put it again without it: {put}",
            )
    kind = " (the local default)" if not stack and active == [LOCAL_DEFAULT_SECRET] else ""
    count = f"{len(active)} active secrets (a rotation)" if len(active) > 1 else "1 active secret"
    return Check(OK, "secret", f"{count}{kind}, no stray whitespace")


def _one_version(client: Any, target: Target) -> bool:
    """True when nobody has put a value since the stack created the secret (one version, never replaced)."""
    try:
        versions = client.list_secret_version_ids(SecretId=target.secret_id, IncludeDeprecated=True)["Versions"]
    except Exception:  # noqa: BLE001 - without the history, the shape alone is not enough to call it a placeholder
        return False
    return len(versions) == 1


def check_rejections(source: LogSource, now: datetime) -> Check:
    lines = source.run(insights.rejections(), now - REJECTIONS_WINDOW, now)
    reasons = Counter(
        f"{line.record.get('status', '?')} {str(line.record.get('reason') or line.record.get('outcome'))[:90]}"
        for line in lines
    )
    if not reasons:
        return Check(OK, "rejections", "none in the last 24 h")
    summary = "; ".join(f"{count} x {reason}" for reason, count in reasons.most_common(4))
    hint = ""
    if any(reason.startswith("401") for reason in reasons):
        hint = " (401s: ./klikit doctor signature --body FILE --signature HEX explains a captured one)"
    return Check(WARN, "rejections", f"{sum(reasons.values())} in the last 24 h: {summary}{hint}")


def _queue_counts(sqs: Any, url: str) -> tuple[int, int]:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return int(attributes.get(names[0], 0)), int(attributes.get(names[1], 0))


def check_dlq(target: Target, stack: str | None) -> Check:
    waiting, in_flight = _queue_counts(target.client("sqs"), target.dlq_url)
    if waiting + in_flight == 0:
        return Check(OK, "dead letters", "the DLQ is empty")
    where = f" --stack {stack}" if stack else ""
    return Check(FAIL, "dead letters", f"{waiting + in_flight} in the DLQ: see why with ./klikit dlq list{where}")


def oldest_message_age(cloudwatch: Any, queue_url: str, now: datetime) -> float | None:
    """Seconds, from SQS's CloudWatch metric over the last 15 minutes (the SQS API itself does not say)."""
    datapoints = cloudwatch.get_metric_statistics(
        Namespace="AWS/SQS",
        MetricName="ApproximateAgeOfOldestMessage",
        Dimensions=[{"Name": "QueueName", "Value": queue_url.rstrip("/").rsplit("/", 1)[-1]}],
        StartTime=now - timedelta(minutes=15),
        EndTime=now,
        Period=300,
        Statistics=["Maximum"],
    ).get("Datapoints", [])
    return max((point["Maximum"] for point in datapoints), default=None)


def check_queue(target: Target, now: datetime, age_alarm_seconds: int) -> Check:
    waiting, in_flight = _queue_counts(target.client("sqs"), target.queue_url)
    if target.local is not None:  # SQS publishes the age of its oldest message to CloudWatch only in AWS
        return Check(OK, "queue", f"{waiting} waiting, {in_flight} being processed")
    age = oldest_message_age(target.client("cloudwatch"), target.queue_url, now)
    oldest = "oldest: no CloudWatch data in the last 15 min" if age is None else f"oldest {age:.0f} s"
    detail = f"{waiting} waiting, {in_flight} being processed; {oldest}"
    if age is not None and age >= age_alarm_seconds:
        return Check(FAIL, "queue", f"{detail} (alarm at {age_alarm_seconds} s): ./klikit events --outcome failed")
    return Check(OK, "queue", detail)


def alarms_in_alarm(cloudwatch: Any, stack: str) -> list[str]:
    """Alarms of the stack in ALARM: CloudFormation names them `<stack name>-<logical id>-<suffix>`."""
    names = []
    for page in cloudwatch.get_paginator("describe_alarms").paginate(AlarmNamePrefix=f"{stack}-", StateValue="ALARM"):
        names += [alarm["AlarmName"] for alarm in page.get("MetricAlarms", [])]
    return names


def check_alarms(target: Target, stack: str | None) -> Check:
    if not stack:
        return Check(INFO, "alarms", "the local stack has no CloudWatch alarms (a deployed one: --stack NAME)")
    firing = alarms_in_alarm(target.client("cloudwatch"), stack)
    if not firing:
        return Check(OK, "alarms", "none in ALARM")
    readable = ", ".join(name.removeprefix(f"{stack}-") for name in firing)
    return Check(FAIL, "alarms", f"{len(firing)} in ALARM: {readable} (docs/troubleshooting.md says what each means)")


def check_last_accepted(source: LogSource, now: datetime, silence_hours: int) -> Check:
    lines = source.run(insights.last_accepted(), now - LAST_ACCEPTED_WINDOW, now)
    if not lines:
        return Check(
            FAIL if silence_hours else WARN,
            "last accepted",
            "no delivery accepted in the last 2 days: is the URL registered with klikit, and does the secret "
            "match? (./klikit events --outcome rejected)",
        )
    newest = max(lines, key=lambda line: line.time)
    event = insights.event_id_of(newest.record) or "?"
    detail = f"{_ago(now - newest.time)}: evt {event} ({short_type(str(newest.record.get('event_type') or ''))})"
    if silence_hours and now - newest.time >= timedelta(hours=silence_hours):
        return Check(FAIL, "last accepted", f"{detail}, longer than silence_alarm_hours ({silence_hours} h)")
    return Check(OK, "last accepted", detail)


def run_checks(checks: Iterable[Callable[[], Check]]) -> list[Check]:
    """Every check runs even when one fails: a doctor that stops at the first problem hides the next one."""
    results = []
    for check in checks:
        try:
            results.append(check())
        except Exception as exc:  # noqa: BLE001 - one unreadable source must not hide the other checks
            name = getattr(check, "check_name", "check")
            results.append(Check(FAIL, name, f"could not check ({type(exc).__name__}: {str(exc)[:120]})"))
    return results


def named(name: str, check: Callable[[], Check]) -> Callable[[], Check]:
    check.check_name = name  # type: ignore[attr-defined]  # a label on the function, read back with getattr
    return check


# --- doctor signature -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Diagnosis:
    matches: bool
    verdict: str
    fix: str | None = None


def _hmac(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), body, sha256).hexdigest()


def _normalized_signature(signature: str) -> tuple[str, list[str]]:
    """The signature as klikit sends it (64 lowercase hex), and what had to change to get there."""
    changes = []
    text = signature
    if text != text.strip():
        changes.append("surrounding whitespace")
        text = text.strip()
    if text.lower().startswith("sha256="):
        changes.append("a sha256= prefix")
        text = text[len("sha256=") :]
    if text != text.lower():
        changes.append("uppercase hex")
        text = text.lower()
    return text, changes


def _json_variants(body: bytes) -> list[tuple[bytes, str]]:
    try:
        document = json.loads(body)
    except ValueError:
        return []
    variants = []
    for sort_keys in (False, True):
        for separators, spacing in (((",", ":"), "compact"), ((", ", ": "), "spaced"), (None, "indented")):
            for ensure_ascii in (False, True):
                indent = 2 if separators is None else None
                text = json.dumps(
                    document, sort_keys=sort_keys, separators=separators, indent=indent, ensure_ascii=ensure_ascii
                )
                how = [spacing + " whitespace"]
                if sort_keys:
                    how.append("keys sorted")
                if ensure_ascii:
                    how.append("non-ASCII escaped as \\uXXXX")
                else:
                    how.append("non-ASCII as UTF-8")
                variants.append((text.encode("utf-8"), ", ".join(how)))
    return variants


def _body_variants(body: bytes) -> list[tuple[bytes, str]]:
    """(the bytes the signer may have signed, what happened to them on the way to this file)."""
    variants: list[tuple[bytes, str]] = [(body, "")]
    ending = b"\r\n" if body.endswith(b"\r\n") else b"\n" if body.endswith(b"\n") else b""
    if ending:
        variants.append(
            (
                body[: -len(ending)],
                "a trailing newline was added to the body after signing (an editor, echo, or a capture that "
                "appends one)",
            )
        )
    variants.append((body + b"\n", "a trailing newline was stripped from the body after signing"))
    if b"\r\n" in body:
        variants.append((body.replace(b"\r\n", b"\n"), "LF line endings were turned into CRLF after signing"))
    elif b"\n" in body.rstrip(b"\n"):
        variants.append((body.replace(b"\n", b"\r\n"), "CRLF line endings were turned into LF after signing"))
    for compact, how in _json_variants(body):
        for text in (compact, compact + b"\n"):  # klikit's bytes may or may not have ended in a newline
            if text == body:
                continue
            variants.append(
                (
                    text,
                    f"the body was re-serialized after signing (the signed bytes were JSON with {how}): a "
                    "framework, proxy or WAF parsed the JSON and wrote it again",
                )
            )
    return variants


def _secret_variants(secret: str) -> list[tuple[str, str]]:
    variants = [(secret, "")]
    if secret != secret.rstrip():
        variants.append(
            (secret.rstrip(), "your copy of the secret ends in whitespace/newline that the signer's does not")
        )
    else:
        variants.append((secret + "\n", "the signer's secret has a trailing newline that your copy does not"))
    return variants


def diagnose(body: bytes, signature: str, secrets: Sequence[str]) -> Diagnosis:
    """Does `signature` sign `body` with one of `secrets`; if not, which common mistake explains it."""
    given, changes = _normalized_signature(signature)
    if not re.fullmatch(r"[0-9a-f]{64}", given):
        return Diagnosis(
            False,
            f"the signature is not a hex SHA-256 ({len(given)} characters after trimming): klikit sends 64 "
            "lowercase hex characters in x-klikit-signature",
            "copy the header's value exactly, without quotes or a label",
        )
    tried = [
        (s_how, b_how, _hmac(s, b)) for s, s_how in _secret_variants_all(secrets) for b, b_how in _body_variants(body)
    ]
    for secret_how, body_how, digest in tried:
        if not hmac.compare_digest(digest, given):
            continue
        if not (secret_how or body_how or changes):
            return Diagnosis(True, "the signature matches the raw bytes of the file: the receiver accepts it")
        if not (secret_how or body_how):
            return Diagnosis(
                False,
                f"the HMAC matches, but the signature was sent with {' and '.join(changes)}: the receiver compares "
                "64 lowercase hex characters exactly, as klikit sends them",
                "send the hex digest alone, lowercase (hmac.new(secret, body, sha256).hexdigest())",
            )
        mistakes = [how for how in (body_how, secret_how) if how] + (
            [f"signature sent with {', '.join(changes)}"] if changes else []
        )
        fix = (
            "put the secret again byte for byte (aws secretsmanager put-secret-value --secret-string, not a file)"
            if secret_how
            else "save captures byte for byte (curl --data-binary @file, printf '%s', not echo)"
            if "newline" in body_how or "CRLF" in body_how
            else "verify the exact bytes you received, before any parsing (API Gateway passes them unchanged here)"
        )
        return Diagnosis(
            False, "the signature does not match the file as it is; it matches if " + "; ".join(mistakes), fix
        )
    return Diagnosis(
        False,
        f"no common mistake explains it (tried {len(tried)} combinations of body re-encodings, newlines and "
        "secret whitespace): most likely the secret is not the one klikit signs with",
        "compare the secret byte for byte with the one klikit issued for this environment (./klikit doctor checks "
        "the stack's copy for stray whitespace)",
    )


def _secret_variants_all(secrets: Sequence[str]) -> list[tuple[str, str]]:
    plain = [(secret, "") for secret in secrets]
    odd = [variant for secret in secrets for variant in _secret_variants(secret)[1:]]
    return plain + odd


__all__ = ["Check", "Diagnosis", "diagnose", "run_checks"]
