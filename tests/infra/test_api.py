"""The REST API: one route to the receiver, everything else answered by API Gateway, throttled, logged, optionally
limited to klikit's source IPs."""

from __future__ import annotations

import json

import pytest

from infra import spec
from tests.infra.conftest import Synthesized
from tests.infra.helpers import function, logical_id

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("infra")]


def test_only_post_webhooks_klikit_reaches_the_receiver(each_stage: Synthesized) -> None:
    methods = list(each_stage.resources("AWS::ApiGateway::Method").values())
    assert len(methods) == 1, "any other method or path is answered by API Gateway, never by the Lambda"
    method = methods[0]["Properties"]
    assert method["HttpMethod"] == "POST"
    resources = {r["Properties"]["PathPart"] for r in each_stage.resources("AWS::ApiGateway::Resource").values()}
    assert resources == {"webhooks", "klikit"}
    klikit = logical_id(each_stage, "AWS::ApiGateway::Resource", "/webhooks/klikit")
    assert method["ResourceId"] == {"Ref": klikit}
    integration = method["Integration"]
    assert integration["Type"] == "AWS_PROXY"
    receiver_id = function(each_stage, spec.RECEIVER_HANDLER)[0]
    assert {"Fn::GetAtt": [receiver_id, "Arn"]} in integration["Uri"]["Fn::Join"][1]


def test_unknown_routes_get_a_gateway_404(dev: Synthesized) -> None:
    dev.assertions.has_resource_properties(
        "AWS::ApiGateway::GatewayResponse", {"ResponseType": "MISSING_AUTHENTICATION_TOKEN", "StatusCode": "404"}
    )


def test_api_is_regional_and_passes_every_body_through_as_bytes(dev: Synthesized) -> None:
    (api,) = dev.resources("AWS::ApiGateway::RestApi").values()
    assert api["Properties"]["EndpointConfiguration"] == {"Types": ["REGIONAL"]}
    # the HMAC is over the raw bytes: API Gateway must hand them over base64-encoded, never re-encoded text
    assert api["Properties"]["BinaryMediaTypes"] == ["*/*"]


@pytest.mark.parametrize(("stage", "rate", "burst"), [("dev", 1000, 2000), ("prod", 25, 40)])
def test_stage_throttling_follows_the_config(stage: str, rate: int, burst: int, request: pytest.FixtureRequest) -> None:
    synth: Synthesized = request.getfixturevalue(stage)
    (api_stage,) = synth.resources("AWS::ApiGateway::Stage").values()
    assert api_stage["Properties"]["StageName"] == stage
    settings = api_stage["Properties"]["MethodSettings"]
    expected = {"HttpMethod": "*", "ResourcePath": "/*", "ThrottlingRateLimit": rate, "ThrottlingBurstLimit": burst}
    assert expected.items() <= settings[0].items()


def test_access_logs_are_json_without_bodies_or_headers(dev: Synthesized) -> None:
    (api_stage,) = dev.resources("AWS::ApiGateway::Stage").values()
    access_log = api_stage["Properties"]["AccessLogSetting"]
    access_group = logical_id(dev, "AWS::Logs::LogGroup", "AccessLogs")
    assert {"Ref": access_group} in access_log["DestinationArn"]["Fn::Join"][1]
    fields = json.loads(access_log["Format"])
    assert {"requestId", "sourceIp", "httpMethod", "resourcePath", "status", "responseLatencyMs"} <= set(fields)
    variables = " ".join(fields.values())
    for leaked in ("$input", "body", "$method.request.header", "signature"):
        assert leaked not in variables
    assert not api_stage["Properties"]["MethodSettings"][0].get("DataTraceEnabled", False)


def test_open_api_has_no_resource_policy_when_no_cidrs_are_allowed(dev: Synthesized) -> None:
    (api,) = dev.resources("AWS::ApiGateway::RestApi").values()
    assert "Policy" not in api["Properties"]


def test_allowed_cidrs_deny_every_other_source_ip(prod: Synthesized) -> None:
    (api,) = prod.resources("AWS::ApiGateway::RestApi").values()
    statements = api["Properties"]["Policy"]["Statement"]
    deny = [s for s in statements if s["Effect"] == "Deny"]
    assert len(deny) == 1
    assert deny[0]["Action"] == "execute-api:Invoke"
    assert deny[0]["Condition"] == {"NotIpAddress": {"aws:SourceIp": ["203.0.113.0/24", "2001:db8::/32"]}}
    assert any(s["Effect"] == "Allow" and s["Action"] == "execute-api:Invoke" for s in statements)


def test_webhook_url_output_is_https_on_the_webhook_path(dev: Synthesized) -> None:
    url = dev.template["Outputs"][spec.OUTPUT_WEBHOOK_URL]["Value"]["Fn::Join"][1]
    assert url[0] == "https://"
    assert url[-1].endswith("/webhooks/klikit")


def test_stack_leaves_the_account_wide_api_gateway_cloudwatch_role_alone(each_stage: Synthesized) -> None:
    # one setting per account and region: set once by `./klikit setup-api-logging`, checked by `./klikit preflight`
    assert each_stage.resources("AWS::ApiGateway::Account") == {}
    for role in each_stage.resources("AWS::IAM::Role").values():
        assert "apigateway.amazonaws.com" not in json.dumps(role["Properties"]["AssumeRolePolicyDocument"])


def test_default_throttle_carries_a_few_hundred_branches(dev: Synthesized) -> None:
    # klikit: "a few requests per second per branch"; 300 branches at ~3 rps each is ~1,000 rps
    (api_stage,) = dev.resources("AWS::ApiGateway::Stage").values()
    (settings,) = api_stage["Properties"]["MethodSettings"]
    assert settings["ThrottlingRateLimit"] >= 1000
    assert settings["ThrottlingBurstLimit"] >= 2 * settings["ThrottlingRateLimit"]


def test_stack_is_named_after_its_stage(dev: Synthesized, prod: Synthesized) -> None:
    assert dev.stack.stack_name == "KlikitWebhooks-dev"
    assert prod.stack.stack_name == "KlikitWebhooks-prod"
