"""Alarms on the pipeline's failure modes (one table, ALARMS, one row per alarm), one SNS topic they notify, and one
dashboard. The table also feeds docs/troubleshooting.md's list of alarms (tests/infra/test_alarms_doc.py)."""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Callable, Iterable
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import StackConfig
from klikit import observability as names

PERIOD = cdk.Duration.minutes(5)

MetricSource = Callable[[str, str, cdk.Duration], cw.Metric]
"""(metric name, statistic, period) -> the metric one publisher (a queue, a function, a Powertools service) emits."""


@dataclasses.dataclass(frozen=True)
class AlarmRow:
    """One alarm: what it watches, when it fires, what it means and where the operator reads next."""

    name: str  # the construct id: the alarm's logical id and name; renaming one replaces users' deployed alarm
    source: str  # the publisher of the metric: a key of the sources add_alarms is given (SOURCES says what each is)
    metric: str
    meaning: str  # the alarm's description; `$key` is replaced by that cdk.json value
    runbook: str  # docs/<page>.md#<section>: what to do beyond the alarm's one line
    statistic: str = "Sum"
    threshold: float | str = 1  # a number, or the cdk.json key that sets it
    period_minutes: int = 5
    evaluation_periods: int | str = 1  # a number, or the cdk.json key that sets it (0 turns the alarm off)
    # Fires below the threshold instead of at or above it; then a missing datapoint counts as breaching, since a
    # silent metric publishes no datapoint at all.
    below: bool = False

    @property
    def condition(self) -> str:
        """When it fires, as the docs show it: e.g. "receiver `Errors` ≥ 1 (Sum over 5 min)"."""

        def value(setting: float | str) -> str:
            return f"`{setting}`" if isinstance(setting, str) else f"{setting:g}"

        period = f"{self.period_minutes // 60} h" if self.period_minutes % 60 == 0 else f"{self.period_minutes} min"
        comparison = "<" if self.below else "≥"
        metric = f"{SOURCES[self.source]} `{self.metric}`"
        text = f"{metric} {comparison} {value(self.threshold)} ({self.statistic} over {period})"
        if self.evaluation_periods != 1:
            text += f" for {value(self.evaluation_periods)} periods"
        return text


# The publisher each row's `source` names, as the docs say it before the metric ("receiver `Errors`").
SOURCES = {
    "dead_letter_queue": "DLQ",
    "queue": "queue",
    "api_stage": "API stage",
    "api_access_log": "API access log",
    "receiver": "receiver",
    "processor": "processor",
    "reconciler": "reconciler",
    names.RECEIVER_SERVICE: "receiver",
    names.PROCESSOR_SERVICE: "processor",
    names.RECONCILER_SERVICE: "reconciler",
}

_CAPACITY = "docs/deploy.md#capacity"
_ROTATE = "docs/deploy.md#7-rotate-the-secret-with-two-active-secrets"
_SYMPTOMS = "docs/troubleshooting.md#klikits-own-troubleshooting-topics"
_RECONCILIATION = "docs/reconciliation.md#seeing-it-work"

# In the order the stack creates them (the dashboard's alarm widget lists them in this order).
PIPELINE_ALARMS = (
    AlarmRow(
        "DeadLetterQueueNotEmpty",
        "dead_letter_queue",
        "ApproximateNumberOfMessagesVisible",
        "Deliveries are parked in the DLQ: inspect and redrive them (docs/deploy.md).",
        "docs/troubleshooting.md#recovering-after-an-outage",
        statistic="Maximum",
    ),
    AlarmRow(
        "QueueBacklogAge",
        "queue",
        "ApproximateAgeOfOldestMessage",
        "The oldest queued delivery is getting old: the processor is failing, throttled or too slow.",
        _CAPACITY,
        statistic="Maximum",
        threshold="queue_age_alarm_seconds",
    ),
    AlarmRow(
        "ReceiverErrors",
        "receiver",
        "Errors",
        "The receiver crashed or timed out: klikit got no 2xx and will retry.",
        _SYMPTOMS,
    ),
    AlarmRow(
        "Api5xx",
        "api_stage",
        "5XXError",
        "API Gateway answered 5xx: klikit deliveries are failing and being retried.",
        _SYMPTOMS,
    ),
    AlarmRow(
        "ApiThrottled",
        "api_access_log",
        names.API_THROTTLED,
        "API Gateway refused deliveries with 429 (throttled): klikit retries them late; raise "
        "throttle_rate_limit / throttle_burst_limit (docs/deploy.md, Capacity).",
        _CAPACITY,
    ),
    AlarmRow(
        "SignatureRejectionSpike",
        names.RECEIVER_SERVICE,
        names.REJECTED_SIGNATURE,
        "Many deliveries failed the HMAC check: a wrong or rotated secret, or someone probing the endpoint.",
        _ROTATE,
        threshold="signature_rejection_alarm_threshold",
    ),
    AlarmRow(
        "EnqueueFailures",
        names.RECEIVER_SERVICE,
        names.ENQUEUE_FAILURES,
        "The receiver could not put admitted deliveries on the queue (klikit is told to retry).",
        "docs/architecture.md#failure-handling",
    ),
    AlarmRow(
        "WebhookSecretMisconfigured",
        names.RECEIVER_SERVICE,
        names.SECRET_MISCONFIGURED,
        "The webhook secret's value is malformed rotation JSON: deliveries get 503 (or the last good secret, "
        'for its grace period). Put {"active": ["<new>", "<old>"]} or the plain secret (docs/deploy.md).',
        _ROTATE,
    ),
    AlarmRow(
        "ProcessorErrors",
        "processor",
        "Errors",
        "The processor invocation crashed or timed out; failing records alarm as ProcessingFailures.",
        "docs/handlers.md#failures-and-retries",
    ),
    AlarmRow(
        "ProcessingFailures",
        names.PROCESSOR_SERVICE,
        names.PROCESSING_FAILED,
        "Records failed processing and will be retried, then land in the DLQ.",
        "docs/handlers.md#failures-and-retries",
    ),
    AlarmRow(
        "ReceiverThrottles",
        "receiver",
        "Throttles",
        "The receiver was throttled: klikit deliveries got 5xx (raise the account's concurrency).",
        _CAPACITY,
    ),
    AlarmRow(
        "ProcessorThrottles",
        "processor",
        "Throttles",
        "The processor was throttled: the account's concurrency limit is reached (or its reserved concurrency).",
        _CAPACITY,
    ),
    AlarmRow(
        "DeliveriesSilent",
        names.RECEIVER_SERVICE,
        names.ENQUEUED,
        "No delivery accepted for $silence_alarm_hours h: klikit stopped sending, the URL was de-registered, or a "
        "rotated secret turns every delivery into a 401 (./klikit doctor).",
        _SYMPTOMS,
        period_minutes=60,
        evaluation_periods="silence_alarm_hours",
        below=True,
    ),
)
# Created by infra/reconciliation.py beside the reconciler, on this construct's topic.
RECONCILER_ALARMS = (
    AlarmRow(
        "OrdersHealed",
        names.RECONCILER_SERVICE,
        names.ORDERS_HEALED,
        "The reconciler found orders klikit never delivered or we never took, and queued them: check the "
        "receiver's rejections and klikit's delivery failures (docs/reconciliation.md).",
        _RECONCILIATION,
    ),
    AlarmRow(
        "ReconcileAuthFailures",
        names.RECONCILER_SERVICE,
        names.RECONCILE_AUTH_FAILURES,
        "klikit refused the partner credentials (or the secret is unreadable): the reconciler cannot see "
        "klikit's orders. ./klikit preflight names the fix.",
        "docs/reconciliation.md#turning-it-on",
    ),
    AlarmRow(
        "ReconcileFailures",
        names.RECONCILER_SERVICE,
        names.RECONCILE_FAILURES,
        "A reconciliation run stopped early (klikit's API down or rate limiting past every retry); the next "
        "run resumes from its checkpoint.",
        _RECONCILIATION,
    ),
    AlarmRow(
        "ReconcilerErrors",
        "reconciler",
        "Errors",
        "The reconciler crashed or timed out (an AWS call failed past its retries).",
        _RECONCILIATION,
    ),
)
ALARMS = PIPELINE_ALARMS + RECONCILER_ALARMS


def service_metric(service: str, metric_name: str, label: str | None = None) -> cw.Metric:
    """A Powertools custom metric: namespace KlikitWebhooks, dimension service (added by Powertools)."""
    return cw.Metric(
        namespace=names.METRICS_NAMESPACE,
        metric_name=metric_name,
        dimensions_map={"service": service},
        statistic="Sum",
        period=PERIOD,
        label=label,
    )


def metrics_of(resource: sqs.IQueue | lambda_.IFunction | apigw.Stage) -> MetricSource:
    """The AWS metrics a queue, a function or an API stage publishes (CloudWatch adds the resource's dimensions)."""
    return lambda name, statistic, period: resource.metric(name, statistic=statistic, period=period)


def _metrics_of_service(service: str) -> MetricSource:
    return lambda name, statistic, period: service_metric(service, name).with_(statistic=statistic, period=period)


SERVICE_METRICS = {
    service: _metrics_of_service(service)
    for service in (names.RECEIVER_SERVICE, names.PROCESSOR_SERVICE, names.RECONCILER_SERVICE)
}


class ObservabilityConstruct(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        api_stage: apigw.Stage,
        receiver: lambda_.IFunction,
        processor: lambda_.IFunction,
        queue: sqs.IQueue,
        dead_letter_queue: sqs.IQueue,
        access_log_group: logs.ILogGroup,
    ) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        self.topic = sns.Topic(self, "AlarmTopic", display_name="klikit webhooks alarms", enforce_ssl=True)
        # The TLS-only policy replaces SNS's default one: without this, CloudWatch may not publish the alarms.
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsOfThisAccount",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={"StringEquals": {"aws:SourceAccount": cdk.Aws.ACCOUNT_ID}},
            )
        )
        if config.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))

        # API Gateway publishes no 429 metric (4XXError also counts forged 401s and 404 probes): count the access
        # log lines whose gateway response is THROTTLED, i.e. the stage (or account) throttle refused the request.
        logs.MetricFilter(
            self,
            "ApiThrottledFilter",
            log_group=access_log_group,
            filter_pattern=logs.FilterPattern.string_value("$.errorType", "=", "THROTTLED"),
            metric_namespace=names.METRICS_NAMESPACE,
            metric_name=names.API_THROTTLED,
            metric_value="1",
            dimensions={"stage": "$.stage"},
        )

        def access_log_metrics(name: str, statistic: str, period: cdk.Duration) -> cw.Metric:
            return cw.Metric(
                namespace=names.METRICS_NAMESPACE,
                metric_name=name,
                dimensions_map={"stage": config.stage},
                statistic=statistic,
                period=period,
            )

        self.alarms: dict[str, cw.Alarm] = {}
        self.add_alarms(
            PIPELINE_ALARMS,
            dead_letter_queue=metrics_of(dead_letter_queue),
            queue=metrics_of(queue),
            api_stage=metrics_of(api_stage),
            api_access_log=access_log_metrics,
            receiver=metrics_of(receiver),
            processor=metrics_of(processor),
        )
        self.dashboard = cw.Dashboard(self, "Dashboard", default_interval=cdk.Duration.hours(3))
        self._dashboard(
            api_stage=api_stage,
            api_throttled=access_log_metrics(names.API_THROTTLED, "Sum", PERIOD),
            receiver=receiver,
            processor=processor,
            queue=queue,
            dead_letter_queue=dead_letter_queue,
        )

    def add_alarms(self, rows: Iterable[AlarmRow], **sources: MetricSource) -> list[cw.Alarm]:
        """One alarm per row on the stack's topic (ALARM and OK), its metric from `sources` or a Powertools service.

        A row whose evaluation periods come from a cdk.json key set to 0 is off. Returns the alarms created."""
        settings = dataclasses.asdict(self.config)

        def setting(value: float | str) -> Any:
            return settings[value] if isinstance(value, str) else value

        metrics = {**SERVICE_METRICS, **sources}
        created = []
        for row in rows:
            if not setting(row.evaluation_periods):
                continue
            alarm = cw.Alarm(
                self,
                row.name,
                alarm_description=string.Template(row.meaning).substitute(settings),
                metric=metrics[row.source](row.metric, row.statistic, cdk.Duration.minutes(row.period_minutes)),
                threshold=setting(row.threshold),
                evaluation_periods=setting(row.evaluation_periods),
                comparison_operator=(
                    cw.ComparisonOperator.LESS_THAN_THRESHOLD
                    if row.below
                    else cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
                ),
                treat_missing_data=cw.TreatMissingData.BREACHING if row.below else cw.TreatMissingData.NOT_BREACHING,
            )
            alarm.add_alarm_action(cw_actions.SnsAction(self.topic))
            alarm.add_ok_action(cw_actions.SnsAction(self.topic))
            self.alarms[row.name] = alarm
            created.append(alarm)
        return created

    def _dashboard(
        self,
        *,
        api_stage: apigw.Stage,
        api_throttled: cw.Metric,
        receiver: lambda_.IFunction,
        processor: lambda_.IFunction,
        queue: sqs.IQueue,
        dead_letter_queue: sqs.IQueue,
    ) -> None:
        """Alarm status, then API, receiver, queue, processor and functions graphs (the reconciler adds its row)."""

        def receiver_metric(name: str, label: str) -> cw.Metric:
            return service_metric(names.RECEIVER_SERVICE, name, label)

        def processor_metric(name: str, label: str) -> cw.Metric:
            return service_metric(names.PROCESSOR_SERVICE, name, label)

        self.dashboard.add_widgets(
            cw.AlarmStatusWidget(title="Alarms", alarms=list(self.alarms.values()), width=24, height=3),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="API: requests and errors",
                left=[
                    api_stage.metric_count(period=PERIOD, statistic="Sum", label="requests"),
                    api_stage.metric_client_error(period=PERIOD, statistic="Sum", label="4xx"),
                    api_stage.metric_server_error(period=PERIOD, statistic="Sum", label="5xx"),
                    api_throttled.with_(label="throttled (429)"),
                ],
                width=8,
            ),
            cw.GraphWidget(
                title="API: latency (p99)",
                left=[
                    api_stage.metric_latency(period=PERIOD, statistic="p99", label="latency"),
                    api_stage.metric_integration_latency(period=PERIOD, statistic="p99", label="receiver"),
                ],
                width=8,
            ),
            cw.GraphWidget(
                title="Receiver: outcomes",
                left=[
                    receiver_metric(names.RECEIVED, "received"),
                    receiver_metric(names.ENQUEUED, "enqueued"),
                    receiver_metric(names.DUPLICATES, "duplicates"),
                    receiver_metric(names.OFFLOADED_TO_S3, "claim checks"),
                    receiver_metric(names.REJECTED_SIGNATURE, "bad signature"),
                    receiver_metric(names.ENQUEUE_FAILURES, "enqueue failures"),
                    receiver_metric(names.SECRET_GRACE_USED, "last good secret used"),
                    receiver_metric(names.SECRET_MISCONFIGURED, "secret misconfigured"),
                ],
                width=8,
            ),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Queue: depth and age",
                left=[
                    queue.metric_approximate_number_of_messages_visible(period=PERIOD, label="queued"),
                    dead_letter_queue.metric_approximate_number_of_messages_visible(period=PERIOD, label="DLQ"),
                ],
                right=[queue.metric_approximate_age_of_oldest_message(period=PERIOD, label="oldest (s)")],
                width=8,
            ),
            cw.GraphWidget(
                title="Processor: outcomes",
                left=[
                    processor_metric(names.PROCESSED, "processed"),
                    processor_metric(names.PROCESSING_FAILED, "failed"),
                    processor_metric(names.QUARANTINED, "quarantined"),
                    processor_metric(names.STALE_IGNORED, "stale"),
                    processor_metric(names.REPLAYED_UNDER_NEW_ID, "replayed under a new id"),
                    processor_metric(names.ARCHIVE_FAILED, "archive failures"),
                ],
                width=8,
            ),
            cw.GraphWidget(
                title="Functions: errors, throttles, duration (p99)",
                left=[
                    receiver.metric_errors(period=PERIOD, label="receiver errors"),
                    processor.metric_errors(period=PERIOD, label="processor errors"),
                    receiver.metric_throttles(period=PERIOD, label="receiver throttles"),
                    processor.metric_throttles(period=PERIOD, label="processor throttles"),
                ],
                right=[
                    receiver.metric_duration(period=PERIOD, statistic="p99", label="receiver ms"),
                    processor.metric_duration(period=PERIOD, statistic="p99", label="processor ms"),
                ],
                width=8,
            ),
        )
