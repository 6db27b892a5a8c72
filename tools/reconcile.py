"""`./klikit reconcile`: walk a window of klikit's orders API and heal what the stack's projection is missing.

The same code as the scheduled reconciler (functions/reconciler), run from your machine against the local stack
(its fake klikit API) or a deployed one (`--stack`: klikit's API URL and the credentials secret from its outputs).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from klikit.errors import CredentialsUnavailable, PartnerAuthError, PartnerRequestRejected
from reconciler.adapters import DynamoProjection, ReconciledQueue, read_credentials
from reconciler.app import failure_line
from reconciler.logic import Heal, Report, Window, WindowError, reconcile
from reconciler.partner_api import Credentials, PartnerApi, iso
from tools.target import CliError, Target


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def resume_command(window: Window, page: int, location: str, dry_run: bool) -> str:
    command = f"./klikit reconcile --since {iso(window.since)} --until {iso(window.until)} --page {page}"
    if window.branch_id:
        command += f" --branch {window.branch_id}"
    return command + (" --dry-run" if dry_run else "") + location


def run(
    target: Target,
    window: Window,
    *,
    dry_run: bool,
    start_page: int,
    location: str,
    say: Callable[[str], None],
) -> int:
    if not target.partner_secret_id or not target.klikit_api_url:
        raise CliError(
            f"{target.description} has no reconciler outputs (PartnerCredentialsSecretArn, KlikitApiUrl): "
            "deploy this version first (make deploy)"
        )
    secretsmanager = target.client("secretsmanager")
    cached: list[Credentials] = []

    def credentials() -> Credentials:
        if not cached:
            cached.append(read_credentials(secretsmanager, target.partner_secret_id))
        return cached[0]

    def backing_off(why: str, delay: float) -> None:
        say(f"  klikit asked us to back off ({why}): retrying in {delay:.1f} s")

    def healed(heal: Heal) -> None:
        verb = "would heal" if dry_run else "healed"
        event = f"{heal.event_type:<28} {heal.behind}"
        say(f"  {verb:<10} order {heal.order_id:<8} {event}   [evt {heal.delivery.event_id}]")

    api = PartnerApi(target.klikit_api_url, credentials, on_retry=backing_off)
    dynamodb = target.client("dynamodb")
    branch = f"branch {window.branch_id}" if window.branch_id else "all branches"
    say(f"reconciling {target.description} with klikit's orders API at {target.klikit_api_url}")
    dry = ", dry run: nothing is queued" if dry_run else ""
    say(f"  orders created from {iso(window.since)} to {iso(window.until)}, {branch}{dry}")
    report = reconcile(
        window,
        api,
        DynamoProjection(dynamodb, target.orders_table),
        None if dry_run else ReconciledQueue(target.client("sqs"), target.queue_url),
        start_page=start_page,
        on_heal=healed,
    )
    return _conclude(report, target, location, say)


def _conclude(report: Report, target: Target, location: str, say: Callable[[str], None]) -> int:
    orders = {heal.order_id for heal in report.heals}
    up_to_date = report.checked - len(orders) - len(report.skipped)
    say(
        f"checked {_plural(report.checked, 'order')} on {_plural(report.pages, 'page')}: "
        f"{len(orders)} {'to heal' if report.dry_run else 'healed'}, {up_to_date} up to date"
        + (f", {len(report.skipped)} not usable (see the ids above)" if report.skipped else "")
    )
    if report.skipped:
        say(f"  not usable: {', '.join(report.skipped[:20])}")
    if report.failure is not None:
        if isinstance(report.failure, PartnerAuthError | CredentialsUnavailable):
            raise CliError(failure_line(report.failure, target.partner_secret_id))
        if isinstance(report.failure, PartnerRequestRejected):
            raise CliError(f"{report.failure}: check --since/--until/--branch")
        page = report.next_page or 1
        raise CliError(
            f"{report.failure}; stopped before page {page}, nothing after it was skipped: "
            f"resume with {resume_command(report.window, page, location, report.dry_run)}"
        )
    if report.dry_run:
        if orders:
            say("nothing was queued (--dry-run): run it again without --dry-run to heal them")
    elif orders:
        first = sorted(orders)[0]
        say(
            "queued for the processor, which applies each like the webhook it stands in for; "
            f"next: ./klikit orders get {first}{location}"
        )
    return 0


def window_from(since: datetime, until: datetime | None, branch: str | None) -> Window:
    try:
        # "until now" includes the current second: the window's bounds are whole seconds
        return Window.of(since, until or datetime.now(UTC) + timedelta(seconds=1), branch)
    except WindowError as error:
        raise CliError(str(error)) from None
