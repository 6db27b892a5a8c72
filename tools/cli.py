"""klikit: the operator's command line for this project (`./klikit --help`, or `python -m tools.cli`).

Every command works against the local stack (`make local`) by default, and against a deployed stack with
`--stack NAME` (it reads the stack's CloudFormation outputs with the AWS credentials in your environment).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from infra.config import ConfigError
from klikit.formats import json_default
from tools import dlq as dead_letters
from tools import events, sender
from tools.events import OUTCOMES as OUTCOME_CHOICES
from tools.local.state import (
    DEFAULT_PORT,
    FUNCTIONS,
    LOCAL_DEFAULT_SECRET,
    SECRET_ENV,
    STATE_DIR_ENV,
    default_state_dir,
    running_stacks,
)
from tools.target import RECONCILER, CliError, NoCredentials, StackNotRunning, Target, resolve

PROG = "klikit"
EPILOG = (
    "Which stack: the local one on --port (default $PORT, else the one local stack running, else 3000); "
    "a deployed one with --stack NAME (and --region). Docs: docs/local.md"
)


def _port_default() -> int:
    try:
        return int(os.environ.get("PORT") or DEFAULT_PORT)
    except ValueError:
        return DEFAULT_PORT


def _target_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("which stack")
    group.add_argument(
        "--stack",
        metavar="NAME",
        help="a deployed stack (CloudFormation name, e.g. KlikitWebhooks-dev) instead of the local one",
    )
    group.add_argument("--region", help="the deployed stack's region (default: your AWS configuration's)")
    group.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"the local stack's port (default: $PORT, else the one local stack running, else {DEFAULT_PORT})",
    )
    group.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help=f"the local stack's state directory (default: ${STATE_DIR_ENV} or .local)",
    )
    return parent


def _signing_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("where and how to sign")
    group.add_argument("--url", help="POST here instead of the stack's webhook URL")
    group.add_argument(
        "--secret",
        help=f"sign with this secret (default: ${SECRET_ENV}, else the stack's own secret, else the local default)",
    )
    group.add_argument("--tamper", action="store_true", help="send a tampered signature (one hex digit changed)")
    group.add_argument("--wrong-secret", action="store_true", help="sign with a secret the stack does not hold")
    group.add_argument(
        "--without-header",
        action="append",
        default=[],
        metavar="NAME",
        help="leave out a header, e.g. x-klikit-signature (repeatable)",
    )
    group.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the reply (default 15)")
    return parent


def build_parser() -> argparse.ArgumentParser:
    target, signing = _target_options(), _signing_options()
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run the pipeline offline, send signed test deliveries, look at orders, drain the DLQ, tail logs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    local = commands.add_parser(
        "local",
        help="run the whole pipeline offline (moto + the real handlers), in the foreground",
        description="Start moto with the stack's resources, serve POST /webhooks/klikit with the real receiver, "
        "feed the real processor from the queue. Ctrl-C (or SIGTERM) stops everything.",
    )
    local.add_argument("--port", type=int, default=_port_default(), help="the webhook port (default $PORT or 3000)")
    local.add_argument("--host", default="127.0.0.1", help="the address to listen on (default %(default)s)")
    local.add_argument("--moto-port", type=int, default=0, help="moto's port (default: any free port)")
    local.add_argument("--state-dir", type=Path, default=None, help="state and logs (default: .local)")
    local.add_argument(
        "--secret",
        action="append",
        default=[],
        help=f"an active webhook secret (repeatable, to try a rotation); default ${SECRET_ENV} or local-dev-secret",
    )
    local.add_argument(
        "--visibility-timeout", type=int, default=3, help="seconds before a failed record is retried (default 3)"
    )
    local.add_argument(
        "--max-receive-count", type=int, default=None, help="receives before the DLQ (default: cdk.json's)"
    )
    local.add_argument(
        "--receivers",
        type=int,
        default=None,
        metavar="N",
        help="receiver instances at most (processes, started on demand; default 4 per core): above it, a request "
        "is throttled as Lambda and API Gateway do (500)",
    )
    local.add_argument("-v", "--verbose", action="store_true", help="also print the functions' full JSON logs")

    send = commands.add_parser(
        "send",
        parents=[target, signing],
        help="sign and POST a sample delivery (created, status, cart) or a JSON file",
        description="Sign a delivery like klikit does (HMAC-SHA256 of the raw body, lowercase hex) and POST it.",
        epilog=EPILOG,
    )
    send.add_argument("what", help="created | status | cart (the samples in tools/samples/), or a path to a file")
    send.add_argument(
        "--type",
        help="event type, e.g. created or klikit.order.status.updated (a file needs it unless its name says "
        "created, status or cart)",
    )
    send.add_argument("--event-id", help="x-klikit-event-id (default: a fresh cli-<uuid>)")
    send.add_argument("--order-id", type=int, help="renumber the sample's orders from this id")
    send.add_argument("--repeat", type=int, default=1, help="send the same delivery N times (duplicates)")
    send.add_argument(
        "--large", metavar="SIZE", help="pad the body to SIZE with a unit: 900KB, 1.2MB, 2MiB (1.2MB: over SQS's 1 MiB)"
    )
    send.add_argument(
        "--lost",
        action="store_true",
        help="local stack: klikit has the order but this delivery never arrives (only its fake orders API learns "
        "of it; ./klikit reconcile heals it)",
    )

    replay = commands.add_parser(
        "replay",
        parents=[target, signing],
        help="send archived deliveries again: one event id, a time window (--since/--until), or a file",
        description="Read the raw bytes the processor archived, sign them again and POST them through the front "
        "door: one delivery by event id, or every delivery received in a window (--since/--until, optionally "
        "--type/--branch), at --rate per second with progress; Ctrl-C and the same command again resumes, and "
        "the run ends with a summary (sent / duplicate / failed). With the same event id the receiver answers "
        "duplicate-ignored inside its idempotency window (as for klikit's own replays); --as-new sends them "
        "under new event ids (for a window: the same new id on every run) so they are processed again.",
        epilog="Examples: ./klikit replay EVT    ./klikit replay --since 2026-06-25T11:00Z --until "
        "2026-06-25T13:30Z --dry-run. " + EPILOG,
    )
    replay.add_argument("event_id", nargs="?", help="the archived delivery's event id")
    replay.add_argument("--file", type=Path, help="send this file's bytes instead of an archived delivery")
    replay.add_argument("--type", help="event type with --file (unless the file's name says created/status/cart)")
    replay.add_argument("--as-new", action="store_true", help="send under a new event id")
    window = replay.add_argument_group("a time window (instead of an event id)")
    window.add_argument("--since", help="deliveries received from this time (30m, 2h, 1d or ISO-8601)")
    window.add_argument("--until", help="up to this time (same forms; default now)")
    window.add_argument("--branch", metavar="BRANCH_ID", help="only deliveries for this klikit branch id")
    window.add_argument("--rate", type=float, default=5.0, help="deliveries per second (default %(default)g)")
    window.add_argument("--dry-run", action="store_true", help="list what would be sent; send nothing")
    window.add_argument("--restart", action="store_true", help="forget an interrupted run's progress, send all")

    orders = commands.add_parser("orders", help="the order projection", description="The order projection.")
    orders_commands = orders.add_subparsers(dest="orders_command", required=True, metavar="COMMAND")
    get = orders_commands.add_parser(
        "get",
        parents=[target],
        help="one order as JSON",
        description="Print the projection of one order (klikit's order id) as JSON.",
        epilog=EPILOG,
    )
    get.add_argument("order_id", help="klikit's order id, e.g. 7821")

    dlq = commands.add_parser("dlq", help="the dead-letter queue", description="The dead-letter queue.")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True, metavar="COMMAND")
    dlq_list = dlq_commands.add_parser(
        "list",
        parents=[target],
        help="what is in the DLQ and why",
        description="List the DLQ's deliveries with the reason each is there (messages stay in the DLQ).",
        epilog=EPILOG,
    )
    dlq_list.add_argument("--json", action="store_true", help="one JSON object per message")
    dlq_list.add_argument("--limit", type=int, default=dead_letters.DEFAULT_LIMIT, help="at most this many")
    dlq_redrive = dlq_commands.add_parser(
        "redrive",
        parents=[target],
        help="move DLQ deliveries back to the queue (after a fix)",
        description="Move deliveries from the DLQ back to the main queue, without their quarantine reason, "
        "so the processor takes them again. Fix the cause first.",
        epilog=EPILOG,
    )
    dlq_redrive.add_argument("--event-id", action="append", help="only this event id (repeatable)")
    dlq_redrive.add_argument("--limit", type=int, default=dead_letters.DEFAULT_LIMIT, help="at most this many")

    smoke = commands.add_parser(
        "smoke",
        parents=[target],
        help="after a deploy: prove the stack works end to end (signed, duplicate, forged, projection)",
        description="Send a signed sample delivery with a fresh event id to the stack's URL (signed with the secret "
        "the stack holds), check the duplicate answer and a forged delivery's 401, wait for the order projection "
        "to show the order, then remove the test order. The delivery is marked klikit_webhooks_smoke inside its "
        "signed body: the processor runs only the order projection for it, never your handlers or the fan-out. "
        "Exit 0 only when every step passed.",
        epilog=EPILOG,
    )
    smoke.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for the order projection (default %(default)s)"
    )

    account = argparse.ArgumentParser(add_help=False)
    account.add_argument("--region", help="the region to deploy to (default: your AWS configuration's)")
    preflight = commands.add_parser(
        "preflight",
        parents=[account],
        help="before the first deploy: check the AWS account and region (read-only)",
        description="Check, with your AWS credentials, what a first `make deploy` needs: credentials, region, "
        "CDK bootstrap, Lambda concurrency, API Gateway's CloudWatch role, an imported secret. Each line is ok or "
        "a problem with the command that fixes it. Reads cdk.json like the stack does.",
    )
    preflight.add_argument(
        "-c",
        "--context",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a cdk.json context override, as given to make deploy (e.g. -c stage=prod)",
    )
    setup_api_logging = commands.add_parser(
        "setup-api-logging",
        parents=[account],
        help="set API Gateway's CloudWatch role, once per account and region",
        description="Create the role APIGatewayCloudWatchLogs (AWS-managed policy "
        "AmazonAPIGatewayPushToCloudWatchLogs) if needed and make it API Gateway's CloudWatch role in the region. "
        "Leaves an existing setting alone.",
    )
    events_parser = commands.add_parser(
        "events",
        parents=[target],
        help="find deliveries and their whole path (received, rejected and why, processed, ...)",
        description="Every delivery in a time window with its path through the pipeline: received / duplicate / "
        "replayed / rejected and why / processed / stale / quarantined / failed. Read from the local stack's logs, "
        "or with --stack from CloudWatch Logs Insights over both functions' log groups (the stack also saves these "
        "searches as Logs Insights queries for the console).",
        epilog="Examples: ./klikit events --order 7821    ./klikit events --outcome rejected --since 2h    "
        "./klikit events --event-id EVT --json. " + EPILOG,
    )
    events_parser.add_argument("--event-id", help="one delivery, by its x-klikit-event-id (shows every step)")
    events_parser.add_argument("--order", metavar="ORDER_ID", help="deliveries that carried this klikit order id")
    events_parser.add_argument("--type", help="created | status | cart, or a full event type")
    events_parser.add_argument("--branch", metavar="BRANCH_ID", help="deliveries for this klikit branch id")
    events_parser.add_argument(
        "--outcome",
        choices=OUTCOME_CHOICES,
        metavar="WORD",
        help="deliveries with a step of this outcome: " + ", ".join(OUTCOME_CHOICES),
    )
    events_parser.add_argument("--since", default="24h", help="from (30m, 2h, 1d or ISO-8601; default %(default)s)")
    events_parser.add_argument("--until", default=None, help="to (same forms; default now)")
    events_parser.add_argument("--limit", type=int, default=50, help="show the newest N deliveries (default 50)")
    events_parser.add_argument("--steps", action="store_true", help="print every step under each delivery")
    events_parser.add_argument("--json", action="store_true", help="a JSON array, each delivery with its steps")

    doctor = commands.add_parser(
        "doctor",
        parents=[target],
        help="check a stack: secret, rejections, DLQ, queue, alarms, last delivery",
        description="Check a stack the way an operator would by hand: the webhook secret is set (not the generated "
        "placeholder) and has no stray whitespace, recent rejections grouped by reason, the DLQ, the queue's oldest "
        "message, alarms in ALARM, the last accepted delivery. Exit 1 when something needs fixing. "
        "`doctor signature` explains why one signature fails.",
        epilog=EPILOG,
    )
    doctor_commands = doctor.add_subparsers(
        dest="doctor_command", required=False, metavar="[signature]", title="optional command"
    )
    signature = doctor_commands.add_parser(
        "signature",
        parents=[target],
        help="does this signature match this body, and if not, which common mistake explains it",
        description="Check x-klikit-signature against the raw bytes of a file, with the secret (--secret, else "
        f"${SECRET_ENV}, else the stack's active secrets). When it does not match, try the usual mistakes: the "
        "body re-serialized (key order, whitespace, unicode escaping), a trailing newline added or stripped, CRLF "
        "line endings, a secret with or without a trailing newline, uppercase hex, a sha256= prefix.",
        epilog="Example: ./klikit doctor signature --body captured.json --signature 3f5a... " + EPILOG,
    )
    signature.add_argument("--body", type=Path, required=True, metavar="FILE", help="the raw body, as received")
    signature.add_argument("--signature", required=True, metavar="HEX", help="the x-klikit-signature value")
    signature.add_argument("--secret", help="the webhook secret (default: $KLIKIT_WEBHOOK_SECRET, else the stack's)")
    reconcile = commands.add_parser(
        "reconcile",
        parents=[target],
        help="heal orders the webhooks missed, from klikit's orders API",
        description="Walk klikit's orders created in a window (GET /v1/partner/orders, page by page, backing off on "
        "429/5xx), compare each with the order projection, and queue an event for every order missing or behind; "
        "the processor applies it like the webhook it stands in for. The local stack talks to its fake klikit API.",
        epilog=EPILOG,
    )
    reconcile.add_argument(
        "--since", required=True, help="orders created from this time: 30m, 2h, 1d or ISO-8601 (inclusive)"
    )
    reconcile.add_argument("--until", help="to this time (exclusive; default now), same forms as --since")
    reconcile.add_argument("--branch", help="only this klikit branch id")
    reconcile.add_argument("--dry-run", action="store_true", help="report what is missing, queue nothing")
    reconcile.add_argument("--page", type=int, default=1, help="resume a stopped run from this page (default 1)")

    logs = commands.add_parser(
        "logs",
        parents=[target],
        help="tail the receiver and processor logs",
        description="The functions' logs: the local stack's log files, or CloudWatch Logs with --stack.",
        epilog=EPILOG,
    )
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until Ctrl-C")
    logs.add_argument("--since", default=None, help="from this long ago or this time: 30s, 10m, 2h, 1d, ISO-8601")
    logs.add_argument("--filter", default=None, help="only lines containing this text (e.g. an event id)")
    logs.add_argument(
        "--function",
        choices=(*FUNCTIONS, RECONCILER, "all"),
        default="all",
        help="which function (default: %(default)s, the receiver and the processor; the reconciler with --stack)",
    )

    for command, run in (
        (local, cmd_local),
        (send, cmd_send),
        (replay, cmd_replay),
        (get, cmd_orders_get),
        (dlq_list, cmd_dlq_list),
        (dlq_redrive, cmd_dlq_redrive),
        (smoke, cmd_smoke),
        (preflight, cmd_preflight),
        (setup_api_logging, cmd_setup_api_logging),
        (events_parser, cmd_events),
        (doctor, cmd_doctor),
        (signature, cmd_doctor_signature),  # a subcommand's default wins over its parent's
        (reconcile, cmd_reconcile),
        (logs, cmd_logs),
    ):
        command.set_defaults(func=run)
    return parser


# --- helpers ---------------------------------------------------------------------------------------------------


def _say(text: str = "") -> None:
    print(text, flush=True)


def _plural(count: int, one: str, many: str) -> str:
    return f"{count:,} {one if count == 1 else many}"


def _choose_port(args: argparse.Namespace) -> None:
    """--port, else $PORT, else the one local stack running in the state directory, else the default port."""
    if getattr(args, "port", DEFAULT_PORT) is not None or getattr(args, "stack", None):
        return
    if os.environ.get("PORT"):
        args.port = _port_default()
        return
    running = running_stacks(args.state_dir or default_state_dir())
    ports = [state.port for state in running]
    args.port = ports[0] if len(ports) == 1 else DEFAULT_PORT


def _where(args: argparse.Namespace) -> str:
    """The options that aim a printed command at the same stack, so a hint can be pasted as it is."""
    if getattr(args, "stack", None):
        return f" --stack {args.stack}" + (f" --region {args.region}" if args.region else "")
    where = "" if args.port == DEFAULT_PORT else f" --port {args.port}"
    if args.state_dir is not None and args.state_dir.resolve() != default_state_dir().resolve():
        where += f" --state-dir {args.state_dir}"
    return where


def _target(args: argparse.Namespace) -> Target:
    return resolve(args.stack, args.region, args.state_dir, args.port)


def _url_and_secret(args: argparse.Namespace) -> tuple[str, str]:
    """Where to POST and what to sign with: the flags, then $KLIKIT_WEBHOOK_SECRET, then the stack's own secret."""
    explicit = args.secret or os.environ.get(SECRET_ENV)
    if args.stack:
        target = _target(args)
        return args.url or target.webhook_url, explicit or target.signing_secret()
    if args.url:
        return args.url, explicit or LOCAL_DEFAULT_SECRET  # any endpoint: the reply (or the refusal) will say
    local = _target(args)  # no local stack on that port: say how to start one, rather than POST into nothing
    return local.webhook_url, explicit or local.signing_secret()


def _print_reply(reply: sender.Reply, options: sender.SignOptions) -> None:
    _say(f"  -> {reply.status} {reply.text()[:500]}")
    note = sender.hint(reply, options)
    if note:
        _say(f"     {note}")


def _sign_options(args: argparse.Namespace, secret: str) -> sender.SignOptions:
    return sender.SignOptions(
        secret=secret, tamper=args.tamper, wrong_secret=args.wrong_secret, omit=tuple(args.without_header)
    )


def _post_all(url: str, delivery: sender.Delivery, options: sender.SignOptions, repeat: int, timeout: float) -> int:
    size = len(delivery.body)
    _say(f"POST {url}  {delivery.event_type}  evt {delivery.event_id}  {size:,} bytes")
    statuses = []
    for attempt in range(1, repeat + 1):
        if repeat > 1:
            _say(f"  [{attempt}/{repeat}]")
        try:
            reply = sender.send(url, delivery, options, timeout)
        except sender.SendError as exc:
            raise StackNotRunning(
                f"{exc}: start the local stack with `make local` (or pass --url, or --stack for a deployed one)"
            ) from None
        _print_reply(reply, options)
        statuses.append(reply.status)
    return 0 if all(200 <= status < 300 for status in statuses) else 1


def _event_type(what: str, given: str | None, path: Path | None) -> tuple[str, str]:
    """(event type, where it came from): --type, the sample's own, or a sample name in the file's name."""
    if given:
        return sender.event_type_for(given), "--type"
    if path is None:
        return sender.event_type_for(what), "the sample"
    named = [alias for alias in sender.SAMPLES if alias in path.name.lower()]
    if len(named) != 1:
        aliases = "|".join(sender.SAMPLES)
        raise CliError(
            f"which event type is {path}? pass --type ({aliases} or a full type such as "
            f"klikit.order.status.updated), e.g. --type created"
        )
    return sender.event_type_for(named[0]), "from the file name; --type to choose another"


def _order_ids(body: bytes) -> list[str]:
    try:
        return [str(order["id"]) for order in json.loads(body).get("orders", []) if "id" in order]
    except (ValueError, AttributeError, TypeError):
        return []


# --- commands --------------------------------------------------------------------------------------------------


def cmd_local(args: argparse.Namespace) -> int:
    from tools.local.stack import LocalOptions, StartError, run

    options = LocalOptions(
        port=args.port,
        host=args.host,
        moto_port=args.moto_port,
        state_dir=args.state_dir,
        secrets=tuple(args.secret),
        visibility_timeout=args.visibility_timeout,
        max_receive_count=args.max_receive_count,
        receivers=args.receivers,
        verbose=args.verbose,
    )
    try:
        return run(options)
    except (StartError, ConfigError) as exc:  # a bad cdk.json value: its one line, not a traceback
        raise CliError(str(exc)) from None


def cmd_send(args: argparse.Namespace) -> int:
    if args.repeat < 1:
        raise CliError("--repeat must be at least 1")
    if args.what in sender.SAMPLES:
        body = sender.sample_body(args.what, args.order_id)
        event_type, source = _event_type(args.what, args.type, None)
    else:
        path = Path(args.what)
        if not path.is_file():
            raise CliError(f"{args.what!r} is neither a sample ({', '.join(sender.SAMPLES)}) nor a file")
        body = path.read_bytes()
        event_type, source = _event_type(args.what, args.type, path)
    if args.large:
        try:
            size = sender.parse_size(args.large, require_unit=True)
            if size < len(body):
                raise ValueError(f"{args.large} is smaller than the body ({len(body):,} bytes)")
            body = sender.pad_to(body, size)
        except ValueError as exc:
            raise CliError(f"--large: {exc}") from None
    if args.lost:
        return _lose(args, body)
    url, secret = _url_and_secret(args)
    delivery = sender.Delivery(body, args.event_id or sender.new_event_id(), event_type)
    if source != "the sample":
        _say(f"event type {event_type} ({source})")
    if not args.url and not args.stack:
        _klikit_knows(_target(args), body)  # klikit has the order whether or not we take the delivery
    code = _post_all(url, delivery, _sign_options(args, secret), args.repeat, args.timeout)
    ids = _order_ids(body)
    if code == 0 and ids and not args.url:
        where = _where(args)
        _say(f"next: ./klikit orders get {ids[0]}{where}    (or watch it: ./klikit logs --follow{where})")
    return code


def cmd_replay_window(args: argparse.Namespace) -> int:
    """Every archived delivery received in the window, through the front door again (tools/replay.py)."""
    from tools import replay

    if args.event_id or args.file:
        raise CliError("give an event id, --file, or a window (--since/--until), not both")
    if args.rate <= 0:
        raise CliError("--rate must be above 0 (deliveries per second, e.g. --rate 5)")
    since, until = _window(args)
    target = _target(args)
    s3 = target.client("s3")
    event_type = events.event_type_named(args.type) if args.type else None
    listing = replay.list_window(s3, target.bucket, since, until, event_type)
    window = f"received between {events.iso(since)} and {events.iso(until)}"
    named = [f"{name} {value}" for name, value in (("type", event_type), ("branch", args.branch)) if value]
    filters = f" ({', '.join(named)})" if named else ""
    if not listing.deliveries:
        raise CliError(
            f"no archived deliveries{filters} {window} in {target.description}: check the window "
            f"(./klikit events --since {args.since}) and archive_expiry_days"
        )
    total = len(listing.deliveries)
    run = replay.Progress(
        replay.progress_file(
            (args.state_dir or default_state_dir()) / "replays",
            target.description,
            events.iso(since),
            events.iso(until),
            event_type or "",
            args.branch or "",
            "as-new" if args.as_new else "same-id",
        )
    )
    if args.restart:
        run.finish()
        run = replay.Progress(run.path)
    verb = "would replay" if args.dry_run else "replaying"
    _say(f"{verb} {total} archived deliveries{filters} {window} from {target.description}")
    if listing.skipped_replays:
        _say(f"  (left out {listing.skipped_replays} that were themselves replays)")
    if run.done and not args.dry_run:
        _say(f"  resuming an interrupted run: {len(run.done)} already done (--restart sends everything again)")
    url, secret = ("", "") if args.dry_run else _url_and_secret(args)
    options = dataclasses.replace(_sign_options(args, secret), replay=True)
    pacer = replay.Pacer(args.rate)
    summary = replay.Summary()
    bodies = replay.Bodies(s3, target.bucket)
    index = 0
    try:
        for index, item in enumerate(listing.deliveries, start=1):
            kind = events.short_type(item.event_type)
            line = f"  [{index}/{total}] {events.iso(item.received_at)}  evt {item.event_id}  {kind}"
            if item.key in run.done and not args.dry_run:
                summary.count(run.done[item.key])
                continue
            body = bodies.body(item)
            if args.branch and replay.branch_of(body) != args.branch:
                summary.skipped += 1
                continue
            if args.dry_run:
                _say(f"{line}  {len(body):,} bytes")
                summary.count("sent")
                continue
            event_id = replay.replay_id(item.event_id) if args.as_new else item.event_id
            pacer.wait()
            try:
                reply = sender.send(url, sender.Delivery(body, event_id, item.event_type), options, args.timeout)
            except sender.SendError as exc:
                result, said = "failed", str(exc)
            else:
                result, said = replay.outcome_of(reply.status, reply.json()), f"{reply.status} {reply.text()[:100]}"
            summary.count(result)
            if result != "failed":  # a failed one is sent again when the run resumes
                run.record(item.key, result)
            _say(f"{line}  -> {said}")
    except KeyboardInterrupt:
        _say(f"interrupted at {index} of {total}: run the same command again to resume")
        return 130
    if args.dry_run:
        _say(f"dry run: {summary.sent} would be sent, {summary.skipped} of other branches; nothing was sent")
        return 0
    if summary.failed == 0:
        run.finish()
    _say(
        f"replayed {total}: {summary.sent} sent, {summary.duplicate} duplicate, {summary.failed} failed"
        + (f", {summary.skipped} of other branches skipped" if summary.skipped else "")
    )
    if summary.failed:
        _say("run the same command again to resend the failed ones (the others are not sent twice)")
        return 1
    return 0


def _klikit_knows(target: Target, body: bytes) -> None:
    """Tell the local stack's fake klikit API about the orders in `body`, as klikit knows the orders it sends."""
    from tools.fake_klikit import seed

    if target.klikit_api_url:
        try:
            seed(target.klikit_api_url, body)
        except (OSError, ValueError, KeyError):
            _say(f"  (the fake klikit API at {target.klikit_api_url} did not take the orders: reconcile misses them)")


def _lose(args: argparse.Namespace, body: bytes) -> int:
    if args.url or args.stack:
        raise CliError("--lost works on the local stack only: it tells the local fake klikit API about an order")
    target = _target(args)
    if not target.klikit_api_url:
        raise CliError(f"{target.description} runs no fake klikit API: restart it with `make local` from this checkout")
    _klikit_knows(target, body)
    ids = ", ".join(_order_ids(body))
    _say(f"klikit now has order {ids}, and its delivery was lost on the way: nothing was sent to {target.webhook_url}")
    _say(f"next: ./klikit reconcile --since 1h{_where(args)}")
    return 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    from tools import reconcile
    from tools.local.logs import parse_since

    try:
        since = parse_since(args.since)
        until = parse_since(args.until) if args.until else None
    except ValueError as exc:
        raise CliError(f"--since/--until: {exc}") from None
    if args.page < 1:
        raise CliError("--page must be at least 1")
    window = reconcile.window_from(since, until, args.branch)
    return reconcile.run(
        _target(args), window, dry_run=args.dry_run, start_page=args.page, location=_where(args), say=_say
    )


def cmd_replay(args: argparse.Namespace) -> int:
    if args.since is not None or args.until is not None:
        return cmd_replay_window(args)
    if args.branch or args.dry_run or args.restart:
        raise CliError("--branch, --dry-run and --restart go with a window: add --since (e.g. --since 2h)")
    if args.file is not None:
        if not args.file.is_file():
            raise CliError(f"no such file: {args.file}")
        body = args.file.read_bytes()
        event_type, source = _event_type("replay --file", args.type, args.file)
        _say(f"event type {event_type} ({source})")
        event_id = args.event_id or sender.new_event_id()
    else:
        if not args.event_id:
            raise CliError("give the event id of an archived delivery, or --file PATH")
        body, event_type = _archived(args)
        event_id = args.event_id
    if args.as_new:
        event_id = f"{event_id}-replay-{sender.new_event_id()[4:12]}"
    url, secret = _url_and_secret(args)
    options = dataclasses.replace(_sign_options(args, secret), replay=True)
    return _post_all(url, sender.Delivery(body, event_id, event_type), options, 1, args.timeout)


def _archived(args: argparse.Namespace) -> tuple[bytes, str]:
    from infra.config import config_from_cdk_json
    from tools.archive import find_archived

    target = _target(args)
    today = datetime.now(UTC).date()
    oldest = today - timedelta(days=config_from_cdk_json().archive_expiry_days)
    found = find_archived(target.client("s3"), target.bucket, args.event_id, today, oldest)
    if found is None:
        raise CliError(
            f"no archived delivery for event id {args.event_id!r} in {target.description} "
            f"(s3://{target.bucket}/archive/, received {oldest} to {today}): the processor archives a delivery "
            f"when it takes it; check the id with `./klikit logs --filter {args.event_id}{_where(args)}`, "
            f"or list a window's deliveries with `./klikit replay --since 1d --dry-run{_where(args)}`"
        )
    event_type = found.event_type or sender.event_type_for(args.type or "")
    if not event_type:
        raise CliError(f"the archived delivery {args.event_id!r} has no event type: pass --type")
    _say(f"archived delivery {args.event_id}: {event_type}, received {found.received_at or '?'}")
    return found.body, event_type


def cmd_orders_get(args: argparse.Namespace) -> int:
    from boto3.dynamodb.types import TypeDeserializer

    target = _target(args)
    item = (
        target.client("dynamodb")
        .get_item(TableName=target.orders_table, Key={"order_id": {"S": str(args.order_id)}}, ConsistentRead=True)
        .get("Item")
    )
    if not item:
        raise CliError(
            f"no order {args.order_id} in {target.description}: has a delivery for it been processed? "
            f"check with `./klikit logs --filter {args.order_id}{_where(args)}` and `./klikit dlq list{_where(args)}`"
        )
    from processor.cart_storage import readable

    deserialize = TypeDeserializer().deserialize
    order = readable({name: deserialize(value) for name, value in sorted(item.items())})
    _say(json.dumps(order, indent=2, default=json_default, ensure_ascii=False))
    return 0


def cmd_dlq_list(args: argparse.Namespace) -> int:
    target = _target(args)
    letters = dead_letters.list_dead_letters(target.client("sqs"), target.dlq_url, args.limit)
    if args.json:
        for letter in letters:
            _say(json.dumps(letter.summary()))
        return 0
    if not letters:
        _say(f"the DLQ of {target.description} is empty")
        return 0
    _say(f"{_plural(len(letters), 'delivery', 'deliveries')} in the DLQ of {target.description}:")
    for letter in letters:
        summary = letter.summary()
        _say(f"  evt {summary['event_id'] or '-'}  {summary['event_type'] or '-'}  received {summary['received_at']}")
        _say(f"      {letter.reason}")
    _say(f"after fixing the cause: ./klikit dlq redrive{_where(args)}")
    return 0


def cmd_dlq_redrive(args: argparse.Namespace) -> int:
    target = _target(args)
    sqs = target.client("sqs")
    waiting = dead_letters.depth(sqs, target.dlq_url)
    if waiting == 0:
        _say(f"the DLQ of {target.description} is empty: nothing to move")
        return 0
    waiting_text = _plural(waiting, "delivery", "deliveries")
    _say(f"moving up to {min(waiting, args.limit):,} of {waiting_text} from the DLQ back to the queue ...")

    def progress(moved: int) -> None:
        if moved % 10 == 0:
            _say(f"  {moved} moved")

    wanted = set(args.event_id) if args.event_id else None
    moved, came_back = dead_letters.redrive(sqs, target.dlq_url, target.queue_url, wanted, args.limit, progress)
    _say(
        f"moved {_plural(moved, 'delivery', 'deliveries')} back to the queue; the processor takes them again "
        f"(./klikit logs --follow{_where(args)})"
    )
    if came_back:
        _say(
            f"{_plural(came_back, 'delivery', 'deliveries')} came back to the DLQ during this run (quarantined again) "
            f"and {'was' if came_back == 1 else 'were'} not moved twice: fix the cause first, see "
            f"./klikit dlq list{_where(args)}"
        )
    if wanted and moved == 0:
        raise CliError(f"none of {', '.join(sorted(wanted))} is in the DLQ: see ./klikit dlq list{_where(args)}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from tools.local import logs as local_logs

    functions = FUNCTIONS if args.function == "all" else (args.function,)
    try:
        since = local_logs.parse_since(args.since) if args.since else None
    except ValueError as exc:
        raise CliError(f"--since: {exc}") from None
    if args.stack:
        return _cloudwatch_logs(args, functions, since)
    directory = _local_log_dir(args)
    count = local_logs.tail(directory, _say, functions, since, args.filter, follow=args.follow, stop=threading.Event())
    if count == 0 and not args.follow:
        _say(f"(no log lines{' matching ' + repr(args.filter) if args.filter else ''} in {directory})")
    return 0


def _local_log_dir(args: argparse.Namespace) -> Path:
    from tools.local.state import log_file, read_state, stack_dir

    state_dir = args.state_dir or default_state_dir()
    state = read_state(state_dir, args.port)
    directory = Path(state.directory) if state else stack_dir(state_dir, args.port)
    if not any(log_file(directory, function).exists() for function in FUNCTIONS):
        start = "make local" if args.port == DEFAULT_PORT else f"PORT={args.port} make local"
        raise StackNotRunning(
            f"no logs of a local stack on port {args.port} in {directory}: start one with `{start}`, "
            "or pass --port/--state-dir, or --stack NAME for CloudWatch"
        )
    return directory


def _cloudwatch_logs(args: argparse.Namespace, functions: tuple[str, ...], since: datetime | None) -> int:
    from tools import logs as cloudwatch  # the one CloudWatch implementation, shared with `make logs`

    target = _target(args)
    groups = {name: target.log_groups[name] for name in functions if name in target.log_groups}
    if not groups:
        raise CliError(f"stack {args.stack} has no log group outputs: is it up to date? (`make deploy`)")
    return cloudwatch.tail(
        groups, region=args.region, since=since, filter_pattern=args.filter, follow=args.follow, out=_say
    )


def _aws_session(region: str | None) -> Any:
    import boto3

    session = boto3.Session(region_name=region)
    if session.get_credentials() is None:  # named first: without credentials a region does not help
        raise NoCredentials(
            "no AWS credentials: set AWS_PROFILE (after `aws configure sso` or `aws sso login`) or the AWS_* variables"
        )
    if not session.region_name:
        raise CliError("no AWS region: pass --region (e.g. --region me-central-1) or set AWS_REGION")
    return session


def _context_overrides(pairs: list[str]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"-c {pair!r}: expected KEY=VALUE, e.g. -c stage=prod")
        overrides[key.strip()] = value
    return overrides


def cmd_preflight(args: argparse.Namespace) -> int:
    from infra.config import ConfigError, load_config, read_cdk_json_context
    from tools.preflight import NoCredentials as Refused
    from tools.preflight import Preflight

    try:
        config = load_config({**read_cdk_json_context(), **_context_overrides(args.context)})
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    session = _aws_session(args.region)
    preflight = Preflight(session.client, session.region_name, config)
    _say(f"klikit preflight: region {session.region_name}, stack {config.stack_name} (stage {config.stage})")
    problems = 0
    try:
        for check in preflight.run():
            _say(f"  {'ok' if check.ok else 'PROBLEM':8} {check.name:20} {check.detail}")
            if not check.ok:
                problems += 1
                if check.fix:
                    _say(f"  {'':8} {'':20} fix: {check.fix}")
    except Refused as exc:
        raise NoCredentials(f"{exc}: set AWS_PROFILE (or the AWS_* variables) for the account to deploy to") from None
    if problems:
        _say(f"{problems} problem{'s' if problems > 1 else ''}: fix, then run ./klikit preflight again")
        return 1
    _say("ready: make deploy" + (f" AWS_REGION={args.region}" if args.region else ""))
    return 0


def cmd_smoke(args: argparse.Namespace) -> int:
    from tools.smoke import Smoke

    target = _target(args)
    smoke = Smoke(target, projection_timeout=args.timeout)
    _say(f"klikit smoke: {target.description}  POST {target.webhook_url}")
    _say(f"  evt {smoke.event_id}  order {smoke.order_id}")
    steps = failed = 0
    for step in smoke.run():
        steps += 1
        failed += not step.ok
        _say(f"  {'ok' if step.ok else 'FAILED':7} {step.name:11} {step.detail:64} {step.milliseconds:,.0f} ms")
    if failed:
        _say(f"smoke test failed: {failed} of {steps} steps")
        return 1
    _say(f"passed ({steps}/{steps}): signed deliveries are received once, forgeries refused, orders processed")
    return 0


def cmd_setup_api_logging(args: argparse.Namespace) -> int:
    from tools.api_logging import setup_api_logging

    outcome = setup_api_logging(_aws_session(args.region))
    _say(outcome.message)
    return 0


def _window(args: argparse.Namespace) -> tuple[datetime, datetime]:
    """--since/--until as UTC times; a malformed time or an empty window is the user's to fix."""
    from tools.local.logs import parse_since

    now = datetime.now(UTC)
    bounds = []
    for flag, text in (("--since", args.since), ("--until", args.until)):
        try:
            bounds.append(parse_since(text, now) if text else now)
        except ValueError as exc:
            raise CliError(f"{flag}: {exc}") from None
    since, until = bounds
    if since >= until:
        raise CliError(f"empty window: --since {args.since} is not before --until {args.until or 'now'}")
    return since, until


def _log_source(args: argparse.Namespace) -> events.LogSource:
    """The stack's step lines: CloudWatch Logs Insights with --stack, else the local stack's log files."""
    if args.stack:
        target = _target(args)
        if not target.log_groups:
            raise CliError(f"stack {args.stack} has no log group outputs: is it up to date? (`make deploy`)")
        return events.InsightsLogs(target.client("logs"), target.log_groups, f"CloudWatch Logs of {target.description}")
    return events.LocalLogs(_local_log_dir(args), f"the logs of the local stack on port {args.port}")


def cmd_events(args: argparse.Namespace) -> int:
    from infra.insights import searchable

    if args.limit < 1:
        raise CliError("--limit must be at least 1")
    since, until = _window(args)
    try:
        search = events.Search(
            since=since,
            until=until,
            event_id=searchable(args.event_id, "event id") if args.event_id is not None else None,
            order=searchable(args.order, "order id") if args.order is not None else None,
            event_type=events.event_type_named(searchable(args.type, "event type")) if args.type else None,
            branch=searchable(args.branch, "branch id") if args.branch is not None else None,
            outcome=args.outcome,
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    source = _log_source(args)
    found = events.find(source, search)
    window = f"between {events.iso(since)} and {events.iso(until)}"
    if not found:
        if search.event_id:
            raise CliError(
                f"no delivery with event id {search.event_id!r} in {source.description} {window}: check the id "
                f"(./klikit logs --filter ID) or widen --since (logs are kept for log_retention_days)"
            )
        raise CliError(f"no deliveries match ({search.describe()}) in {source.description} {window}: widen --since")
    shown = found[-args.limit :]
    if args.json:
        _say(events.as_json(shown))
        return 0
    for line in events.table(shown, with_steps=args.steps or bool(search.event_id)):
        _say(line)
    more = f"the newest {len(shown)} of {len(found)}; --limit shows more" if len(shown) < len(found) else ""
    count = f"{len(found)} deliveries" if len(found) != 1 else "1 delivery"
    _say(f"({count} {window}{'; ' + more if more else ''})")
    if getattr(source, "truncated", False):
        _say("(a query hit CloudWatch's 10,000-row limit: narrow --since/--until to see every delivery)")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from tools import doctor
    from tools.local.config import stack_config

    target = _target(args)
    source = _log_source(args)
    config = stack_config()
    now = datetime.now(UTC)
    _say(f"klikit doctor: {target.description}")
    checks = doctor.run_checks(
        [
            doctor.named("secret", lambda: doctor.check_secret(target, args.stack)),
            doctor.named("rejections", lambda: doctor.check_rejections(source, now)),
            doctor.named("dead letters", lambda: doctor.check_dlq(target, args.stack)),
            doctor.named("queue", lambda: doctor.check_queue(target, now, config.queue_age_alarm_seconds)),
            doctor.named("alarms", lambda: doctor.check_alarms(target, args.stack)),
            doctor.named("last accepted", lambda: doctor.check_last_accepted(source, now, config.silence_alarm_hours)),
        ]
    )
    for check in checks:
        _say(check.render())
    failed = [check.name for check in checks if check.status == doctor.FAIL]
    if failed:
        _say(f"{len(failed)} to fix: {', '.join(failed)}")
        return 1
    _say("nothing to fix")
    return 0


def cmd_doctor_signature(args: argparse.Namespace) -> int:
    from tools import doctor

    if not args.body.is_file():
        raise CliError(f"no such file: {args.body} (--body is the raw body as received, e.g. a saved capture)")
    explicit = args.secret or os.environ.get(SECRET_ENV)
    if explicit:
        secrets, whose = [explicit], "the given secret"
    else:
        from receiver.secrets import parse_secret_value

        target = _target(args)
        value = target.client("secretsmanager").get_secret_value(SecretId=target.secret_id)["SecretString"]
        secrets, whose = parse_secret_value(value), f"the active secret(s) of {target.description}"
        if not secrets:
            raise CliError(f"{target.description} holds no webhook secret: pass --secret")
    diagnosis = doctor.diagnose(args.body.read_bytes(), args.signature, secrets)
    _say(f"checked {args.body} ({args.body.stat().st_size:,} bytes) against {whose}")
    _say(("MATCH: " if diagnosis.matches else "NO MATCH: ") + diagnosis.verdict)
    if diagnosis.fix:
        _say(f"fix: {diagnosis.fix}")
    return 0 if diagnosis.matches else 1


def _aws_advice(args: argparse.Namespace) -> str:
    if args.command in ("preflight", "setup-api-logging"):
        return "check your AWS credentials (AWS_PROFILE) and --region"
    if getattr(args, "stack", None):
        return f"check your AWS credentials and region, and that stack {args.stack} is deployed and up to date"
    return f"is the local stack on port {args.port} still running, and started from this checkout? (`make local`)"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _choose_port(args)
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except (BotoCoreError, ClientError) as exc:  # say which call failed and what to check
        print(f"{PROG}: an AWS call failed: {exc}\n{_aws_advice(args)}", file=sys.stderr, flush=True)
        return 1
    except BrokenPipeError:  # `./klikit dlq list | head`: the reader left, nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
