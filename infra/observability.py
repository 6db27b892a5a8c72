"""Alarms on the pipeline's failure modes, one SNS topic they notify, and one dashboard."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_lambda as lambda_
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


class Observability(Construct):
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
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(self, "AlarmTopic", display_name="klikit webhooks alarms", enforce_ssl=True)
        if config.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))

        def receiver_metric(name: str, label: str | None = None) -> cw.Metric:
            return service_metric(names.RECEIVER_SERVICE, name, label)

        def processor_metric(name: str, label: str | None = None) -> cw.Metric:
            return service_metric(names.PROCESSOR_SERVICE, name, label)

        self.alarms: dict[str, cw.Alarm] = {}
        at_least_one = {"threshold": 1, "evaluation_periods": 1}
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
            "The processor was throttled: its reserved concurrency is too low or the account limit is reached.",
            processor.metric_throttles(period=PERIOD, statistic="Sum"),
            **at_least_one,
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

    def _alarm(
        self, construct_id: str, description: str, metric: cw.IMetric, *, threshold: float, evaluation_periods: int
    ) -> None:
        alarm = cw.Alarm(
            self,
            construct_id,
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            evaluation_periods=evaluation_periods,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(cw_actions.SnsAction(self.topic))
        alarm.add_ok_action(cw_actions.SnsAction(self.topic))
        self.alarms[construct_id] = alarm
