"""The two functions: runtime, architecture, sizing, environment, logs, the Powertools layer and the code asset."""

from __future__ import annotations

import re
from importlib import metadata

import pytest

from infra import spec
from infra.config import REQUIREMENTS_TXT
from infra.layer import locked_layer_requirements
from klikit import observability
from klikit import settings as env
from tests.infra.conftest import Synthesized
from tests.infra.helpers import function, processor, receiver

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("infra")]


def pinned_powertools() -> str:
    (version,) = re.findall(r"^aws-lambda-powertools(?:\[[^\]]*\])?==(\S+)", REQUIREMENTS_TXT.read_text(), re.M)
    return version


@pytest.mark.parametrize("handler", [spec.RECEIVER_HANDLER, spec.PROCESSOR_HANDLER])
def test_functions_run_python313_on_arm64(dev: Synthesized, handler: str) -> None:
    props = function(dev, handler)[1]
    assert props["Runtime"] == "python3.13"
    assert props["Architectures"] == ["arm64"]
    assert "TracingConfig" not in props or props["TracingConfig"]["Mode"] != "Active"


def test_receiver_answers_well_inside_klikits_ten_seconds(each_stage: Synthesized) -> None:
    props = receiver(each_stage)
    assert props["Timeout"] == 7
    assert props["MemorySize"] == each_stage.config.receiver_memory_mb


def test_processor_timeout_and_memory_follow_the_config(each_stage: Synthesized) -> None:
    props = processor(each_stage)
    assert props["Timeout"] == each_stage.config.processor_timeout_seconds
    assert props["MemorySize"] == each_stage.config.processor_memory_mb


def test_no_function_reserves_concurrency_by_default_so_a_new_account_can_deploy(dev: Synthesized) -> None:
    # Lambda refuses any reservation that leaves an account under 10 unreserved executions (a new account has 10)
    for props in (receiver(dev), processor(dev)):
        assert "ReservedConcurrentExecutions" not in props
    (mapping,) = dev.resources("AWS::Lambda::EventSourceMapping").values()
    assert mapping["Properties"]["ScalingConfig"]["MaximumConcurrency"] == 5, "the POS is still capped"


def test_reserved_concurrency_only_when_set_and_independent_of_the_poller_cap(prod: Synthesized) -> None:
    assert processor(prod)["ReservedConcurrentExecutions"] == prod.config.processor_reserved_concurrency == 8
    (mapping,) = prod.resources("AWS::Lambda::EventSourceMapping").values()
    assert mapping["Properties"]["ScalingConfig"]["MaximumConcurrency"] == prod.config.processor_max_concurrency == 6


def test_processor_consumes_the_queue_in_batches_reporting_item_failures(each_stage: Synthesized) -> None:
    (mapping,) = each_stage.resources("AWS::Lambda::EventSourceMapping").values()
    props = mapping["Properties"]
    assert props["FunctionName"] == {"Ref": function(each_stage, spec.PROCESSOR_HANDLER)[0]}
    assert props["BatchSize"] == 10
    # fill batches for up to a second: at ~10 deliveries/s one invocation carries ~10 (cost per delivery)
    assert props["MaximumBatchingWindowInSeconds"] == 1
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # AWS's way to cap an SQS consumer, without taking executions out of the account's pool
    assert props["ScalingConfig"]["MaximumConcurrency"] == each_stage.config.processor_max_concurrency


def test_receiver_environment_names_what_settings_reads(dev: Synthesized) -> None:
    variables = receiver(dev)["Environment"]["Variables"]
    assert set(variables) == {
        env.WEBHOOK_SECRET_ID,
        env.IDEMPOTENCY_TABLE_NAME,
        env.IDEMPOTENCY_TTL_DAYS,
        env.QUEUE_URL,
        env.PAYLOAD_BUCKET_NAME,
        env.SQS_MAX_MESSAGE_BYTES,
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_METRICS_NAMESPACE",
        "POWERTOOLS_LOG_LEVEL",
    }
    assert variables["POWERTOOLS_SERVICE_NAME"] == observability.RECEIVER_SERVICE
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == observability.METRICS_NAMESPACE
    assert variables[env.SQS_MAX_MESSAGE_BYTES] == str(spec.QUEUE_MAX_MESSAGE_BYTES)
    assert variables[env.IDEMPOTENCY_TTL_DAYS] == "30"


def test_processor_environment_names_what_settings_reads(dev: Synthesized, prod: Synthesized) -> None:
    base = {env.ORDERS_TABLE_NAME, env.EFFECTS_TABLE_NAME, env.PAYLOAD_BUCKET_NAME, env.DLQ_URL, env.EFFECTS_TTL_DAYS}
    powertools = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL"}
    assert set(processor(dev)["Environment"]["Variables"]) == base | powertools
    prod_vars = processor(prod)["Environment"]["Variables"]
    assert set(prod_vars) == base | powertools | {env.EVENT_BUS_NAME, env.TRACING_ENABLED}, "fan-out, tracing"
    assert prod_vars["POWERTOOLS_SERVICE_NAME"] == observability.PROCESSOR_SERVICE


def test_fan_out_creates_an_event_bus_only_when_on(dev: Synthesized, prod: Synthesized) -> None:
    assert dev.resources("AWS::Events::EventBus") == {}
    (bus_id,) = prod.resources("AWS::Events::EventBus")
    assert processor(prod)["Environment"]["Variables"][env.EVENT_BUS_NAME] == {"Ref": bus_id}


@pytest.mark.parametrize("handler", [spec.RECEIVER_HANDLER, spec.PROCESSOR_HANDLER])
def test_each_function_logs_to_its_own_group_with_retention(each_stage: Synthesized, handler: str) -> None:
    props = function(each_stage, handler)[1]
    group_id = props["LoggingConfig"]["LogGroup"]["Ref"]
    group = each_stage.template["Resources"][group_id]
    assert group["Properties"]["RetentionInDays"] == each_stage.config.log_retention_days


def test_dependencies_ship_in_a_layer_built_for_arm64_with_no_ssm_lookup(each_stage: Synthesized) -> None:
    # the public Powertools layer parameter does not exist in every region (me-central-1, China, GovCloud)
    parameters = each_stage.template.get("Parameters", {}).values()
    lookups = [value["Default"] for value in parameters if value["Type"].startswith("AWS::SSM::Parameter")]
    assert lookups == ["/cdk-bootstrap/hnb659fds/version"], "only CDK's own bootstrap check"
    (layer_id, layer), *others = each_stage.resources("AWS::Lambda::LayerVersion").items()
    assert others == []
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    for handler in (spec.RECEIVER_HANDLER, spec.PROCESSOR_HANDLER):
        assert function(each_stage, handler)[1]["Layers"] == [{"Ref": layer_id}]


def test_layer_asset_holds_the_pinned_powertools_and_the_aarch64_pydantic_core(dev: Synthesized) -> None:
    (layer,) = dev.resources("AWS::Lambda::LayerVersion").values()
    asset = dev.outdir / f"asset.{layer['Properties']['Content']['S3Key'].removesuffix('.zip')}"
    site = asset / "python"
    version = pinned_powertools()
    assert metadata.version("aws-lambda-powertools") == version, "tests run against the pinned version"
    assert (site / f"aws_lambda_powertools-{version}.dist-info").is_dir()
    extensions = [path.name for path in (site / "pydantic_core").glob("_pydantic_core.*.so")]
    assert extensions == ["_pydantic_core.cpython-313-aarch64-linux-gnu.so"]
    assert not (site / "boto3").exists(), "boto3 is the runtime's"
    installed = {dist.name.removesuffix(".dist-info").replace("_", "-").lower() for dist in site.glob("*.dist-info")}
    locked = {line.split()[0].replace("==", "-").lower() for line in locked_layer_requirements()}
    assert installed == locked, "exactly requirements.lock's versions of the shipped pins and their dependencies"
    assert not {name.rsplit("-", 1)[0] for name in installed} & {"boto3", "botocore", "s3transfer", "urllib3"}
    assert not list(site.rglob("*.pyc")), "no bytecode compiled by the host's Python"


def test_code_asset_is_the_functions_tree_without_caches_or_tests(dev: Synthesized) -> None:
    code = receiver(dev)["Code"]
    asset_hash = code["S3Key"].removesuffix(".zip")
    assert processor(dev)["Code"]["S3Key"] == code["S3Key"], "one asset for both functions"
    asset = dev.outdir / f"asset.{asset_hash}"
    for handler in (spec.RECEIVER_HANDLER, spec.PROCESSOR_HANDLER):
        module = handler.rsplit(".", 1)[0]
        assert (asset / (module.replace(".", "/") + ".py")).is_file(), f"{handler} is in the asset"
    assert (asset / "klikit" / "signature.py").is_file()
    shipped = {path.name for path in asset.rglob("*")}
    assert "__pycache__" not in shipped
    assert "tests" not in shipped
    assert not any(name.endswith(".pyc") for name in shipped)
