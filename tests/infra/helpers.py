"""Readers for the synthesized template: find a function by handler, the statements its role holds."""

from __future__ import annotations

from typing import Any

from infra import spec
from tests.infra.conftest import Synthesized


def logical_id(synth: Synthesized, resource_type: str, path_fragment: str) -> str:
    """The logical id of the one resource of a type whose CDK path contains `path_fragment`."""
    matches = [
        key
        for key, value in synth.resources(resource_type).items()
        if path_fragment in value.get("Metadata", {}).get("aws:cdk:path", key)
    ]
    assert len(matches) == 1, (resource_type, path_fragment, matches)
    return matches[0]


def function(synth: Synthesized, handler: str) -> tuple[str, dict[str, Any]]:
    matches = [
        (key, value["Properties"])
        for key, value in synth.resources("AWS::Lambda::Function").items()
        if value["Properties"].get("Handler") == handler
    ]
    assert len(matches) == 1, handler
    return matches[0]


def receiver(synth: Synthesized) -> dict[str, Any]:
    return function(synth, spec.RECEIVER_HANDLER)[1]


def processor(synth: Synthesized) -> dict[str, Any]:
    return function(synth, spec.PROCESSOR_HANDLER)[1]


def role_statements(synth: Synthesized, handler: str) -> list[dict[str, Any]]:
    """Every IAM statement attached to the function's role (inline policies and AWS::IAM::Policy resources)."""
    role_id = function(synth, handler)[1]["Role"]["Fn::GetAtt"][0]
    role = synth.template["Resources"][role_id]["Properties"]
    assert "ManagedPolicyArns" not in role, "functions get no managed policies"
    statements = [s for policy in role.get("Policies", []) for s in policy["PolicyDocument"]["Statement"]]
    for policy in synth.resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            statements.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return statements


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def grants(statements: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """action -> the resources it is allowed on."""
    allowed: dict[str, list[Any]] = {}
    for statement in statements:
        assert statement["Effect"] == "Allow"
        for action in as_list(statement["Action"]):
            allowed.setdefault(action, []).extend(as_list(statement["Resource"]))
    return allowed


def ref_to(resource: Any) -> str | None:
    """The logical id a Resource entry points at (GetAtt/Ref, or the bucket in an object-ARN join)."""
    if isinstance(resource, dict):
        if "Fn::GetAtt" in resource:
            return str(resource["Fn::GetAtt"][0])
        if "Ref" in resource:
            return str(resource["Ref"])
        if "Fn::Join" in resource:
            return ref_to(resource["Fn::Join"][1][0])
    return None


def object_prefix(resource: Any) -> str | None:
    if isinstance(resource, dict) and "Fn::Join" in resource:
        return str(resource["Fn::Join"][1][1]).lstrip("/")
    return None
