"""Alarms on the pipeline's failure modes, one SNS topic they notify, and one dashboard."""

from __future__ import annotations

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

        def receiver_metric(name: str, label: str | None = None) -> cw.Metric:
            return service_metric(names.RECEIVER_SERVICE, name, label)

        def processor_metric(name: str, label: str | None = None) -> cw.Metric:
            return service_metric(names.PROCESSOR_SERVICE, name, label)

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
        api_throttled = cw.Metric(
            namespace=names.METRICS_NAMESPACE,
            metric_name=names.API_THROTTLED,
            dimensions_map={"stage": config.stage},
            statistic="Sum",
            period=PERIOD,
        )

        self.alarms: dict[str, cw.Alarm] = {}
        at_least_one: dict[str, Any] = {"threshold": 1, "evaluation_periods": 1}
        self._alarm(
            "DeadLetterQueueNotEmpty",
            "Deliveries are parked in the DLQ: inspect and redrive them (docs/deploy.md).",
            dead_letter_queue.metric_approximate_number_of_messages_visible(statistic="Maximum", period=PERIOD),
            **at_least_one,
        )
        self._alarm(
            "QueueBacklogAge",
            "The oldest queued delivery is getting old: the processor is failing, throttled or too slow.",
            queue.metric_approximate_age_of_oldest_message(statistic="Maximum", period=PERIOD),
            threshold=config.queue_age_alarm_seconds,
            evaluation_periods=1,
        )
        self._alarm(
            "ReceiverErrors",
            "The receiver crashed or timed out: klikit got no 2xx and will retry.",
            receiver.metric_errors(period=PERIOD, statistic="Sum"),
            **at_least_one,
        )
        self._alarm(
            "Api5xx",
            "API Gateway answered 5xx: klikit deliveries are failing and being retried.",
            api_stage.metric_server_error(period=PERIOD, statistic="Sum"),
            **at_least_one,
        )
        self._alarm(
            "ApiThrottled",
            "API Gateway refused deliveries with 429 (throttled): klikit retries them late; raise "
            "throttle_rate_limit / throttle_burst_limit (docs/deploy.md, Capacity).",
            api_throttled,
            **at_least_one,
        )
        self._alarm(
            "SignatureRejectionSpike",
            "Many deliveries failed the HMAC check: a wrong or rotated secret, or someone probing the endpoint.",
            receiver_metric(names.REJECTED_SIGNATURE),
            threshold=config.signature_rejection_alarm_threshold,
            evaluation_periods=1,
        )
        self._alarm(
            "EnqueueFailures",
            "The receiver could not put admitted deliveries on the queue (klikit is told to retry).",
            receiver_metric(names.ENQUEUE_FAILURES),
            **at_least_one,
        )
        self._alarm(
            "WebhookSecretMisconfigured",
            "The webhook secret's value is malformed rotation JSON: deliveries get 503 (or the last good secret, "
            'for its grace period). Put {"active": ["<new>", "<old>"]} or the plain secret (docs/deploy.md).',
            receiver_metric(names.SECRET_MISCONFIGURED),
            **at_least_one,
        )
        self._alarm(
            "ProcessorErrors",
            "The processor invocation crashed or timed out; failing records alarm as ProcessingFailures.",
            processor.metric_errors(period=PERIOD, statistic="Sum"),
            **at_least_one,
        )
        self._alarm(
            "ProcessingFailures",
            "Records failed processing and will be retried, then land in the DLQ.",
            processor_metric(names.PROCESSING_FAILED),
            **at_least_one,
        )
        self._alarm(
            "ReceiverThrottles",
            "The receiver was throttled: klikit deliveries got 5xx (raise the account's concurrency).",
            receiver.metric_throttles(period=PERIOD, statistic="Sum"),
            **at_least_one,
        )
        self._alarm(
            "ProcessorThrottles",
            "The processor was throttled: the account's concurrency limit is reached (or its reserved concurrency).",
            processor.metric_throttles(period=PERIOD, statistic="Sum"),
            **at_least_one,
        )

        if config.silence_alarm_hours:
            hours = config.silence_alarm_hours
            self._alarm(
                "DeliveriesSilent",
                f"No delivery accepted for {hours} h: klikit stopped sending, the URL was de-registered, or a "
                "rotated secret turns every delivery into a 401 (./klikit doctor).",
                service_metric(names.RECEIVER_SERVICE, names.ENQUEUED).with_(period=cdk.Duration.hours(1)),
                threshold=1,
                evaluation_periods=hours,
                comparison=cw.ComparisonOperator.LESS_THAN_THRESHOLD,
                missing=cw.TreatMissingData.BREACHING,  # no accepted delivery publishes no datapoint at all
            )

        self.dashboard = cw.Dashboard(self, "Dashboard", default_interval=cdk.Duration.hours(3))
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

    def add_alarm(
        self, construct_id: str, description: str, metric: cw.IMetric, *, threshold: float, evaluation_periods: int
    ) -> cw.Alarm:
        """An alarm on the stack's topic, for constructs built beside this one (e.g. the reconciler's)."""
        self._alarm(construct_id, description, metric, threshold=threshold, evaluation_periods=evaluation_periods)
        return self.alarms[construct_id]

    def _alarm(
        self,
        construct_id: str,
        description: str,
        metric: cw.IMetric,
        *,
        threshold: float,
        evaluation_periods: int,
        comparison: cw.ComparisonOperator = cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        missing: cw.TreatMissingData = cw.TreatMissingData.NOT_BREACHING,
    ) -> None:
        alarm = cw.Alarm(
            self,
            construct_id,
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            evaluation_periods=evaluation_periods,
            comparison_operator=comparison,
            treat_missing_data=missing,
        )
        alarm.add_alarm_action(cw_actions.SnsAction(self.topic))
        alarm.add_ok_action(cw_actions.SnsAction(self.topic))
        self.alarms[construct_id] = alarm
