"""Pure builders and readers of the SDK: request bodies, aliases, otel_export env, API errors, status."""

from __future__ import annotations

import json
from typing import Any

import pytest

import leap0_contract as c
from leap0.exceptions import ConfigurationError
from leap0.models import (
    SandboxRequest,
    api_error_message,
    api_error_subject,
    build_otel_secret,
    build_sandbox_body,
    generate_sandbox_name,
    merge_env,
    normalize_env,
    normalize_network,
    otel_export_env,
    resolve_create_args,
    sandbox_fields,
)
from leap0.sandbox import Sandbox


def _args(**kw: object) -> tuple[object, ...]:
    base: dict[str, object] = dict.fromkeys(
        ("template", "template_name", "vcpu", "memory", "memory_mib", "timeout", "timeout_min")
    )
    base.update(kw)
    return resolve_create_args(**base)  # type: ignore[arg-type]


def test_contract_names_pass_through() -> None:
    assert _args(template="py", vcpu=2, memory=2048, timeout=30) == ("py", 2, 2048, 30)


def test_hosted_sdk_aliases_map_to_the_contract_names() -> None:
    assert _args(template_name="py", memory_mib=2048, timeout_min=5) == ("py", None, 2048, 300)


def test_unset_values_stay_unset_so_the_template_applies() -> None:
    assert _args() == (None, None, None, None)


@pytest.mark.parametrize(
    "kw",
    [
        {"memory": 1024, "memory_mib": 2048},
        {"template": "a", "template_name": "b"},
        {"timeout": 60, "timeout_min": 2},
        {"vcpu": "2"},
        {"vcpu": True},
        {"timeout_min": 1.5},
    ],
)
def test_ambiguous_or_mistyped_arguments_are_type_errors(kw: dict[str, object]) -> None:
    with pytest.raises(TypeError):
        _args(**kw)


def test_same_value_under_both_spellings_is_accepted() -> None:
    assert _args(timeout=120, timeout_min=2) == (None, None, None, 120)


def test_body_sets_only_given_fields() -> None:
    body = build_sandbox_body(SandboxRequest(vcpu=2, memory=2048, timeout=30), name="sbx-1", namespace="ns")
    assert body == {
        "apiVersion": "leap0.dev/v1alpha1",
        "kind": "Sandbox",
        "metadata": {"name": "sbx-1", "namespace": "ns"},
        "spec": {"vcpu": 2, "memory": 2048, "timeout": 30},
    }


def test_body_carries_env_command_sidecar_switch_and_labels() -> None:
    request = SandboxRequest(
        image="alpine:3",
        env=({"name": "A", "value": "1"},),
        command=("sleep",),
        args=("inf",),
        telemetry_sidecar=False,
        labels={"team": "x"},
    )
    body = build_sandbox_body(request, name="s", namespace="ns")
    assert body["spec"] == {
        "image": "alpine:3",
        "env": [{"name": "A", "value": "1"}],
        "command": ["sleep"],
        "args": ["inf"],
        "telemetry": {"enabled": False},
    }
    assert body["metadata"]["labels"] == {"team": "x"}


def test_network_goes_to_spec_network_only_when_given() -> None:
    assert "network" not in SandboxRequest().spec()
    network = {"policy": "Custom", "allowCidrs": ["203.0.113.0/24", "2001:db8::/32"]}
    request = SandboxRequest(network=normalize_network(network))
    body = build_sandbox_body(request, name="s", namespace="ns")
    assert body["spec"] == {"network": network}
    network["allowCidrs"].append("10.0.0.0/8")  # the caller's dict is not the request's
    assert body["spec"]["network"]["allowCidrs"] == ["203.0.113.0/24", "2001:db8::/32"]
    assert normalize_network({"policy": "DenyAll", "allowCidrs": ("10.0.0.0/8",)}) == {
        "policy": "DenyAll",
        "allowCidrs": ["10.0.0.0/8"],
    }


@pytest.mark.parametrize(
    "network", ["DenyAll", {"policy": "Custom", "allowCidrs": "10.0.0.0/8"}, {"allowCidrs": [1]}]
)
def test_a_network_of_the_wrong_shape_is_a_type_error(network: Any) -> None:
    with pytest.raises(TypeError, match="network"):
        normalize_network(network)


def test_env_dict_and_envvar_list_forms() -> None:
    assert normalize_env({"A": "1", "B": "2"}) == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    ref = {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
    assert normalize_env([ref]) == [ref]
    assert normalize_env(None) == []
    with pytest.raises(TypeError):
        normalize_env({"A": 1})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        normalize_env([{"value": "no name"}])


def test_merge_env_later_wins_by_name() -> None:
    merged = merge_env(
        [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}], [{"name": "A", "value": "x"}]
    )
    assert merged == [{"name": "A", "value": "x"}, {"name": "B", "value": "2"}]


def test_otel_export_puts_endpoint_in_env_and_headers_in_a_secret_ref() -> None:
    env, secret = otel_export_env(
        {
            c.OTEL_EXPORTER_OTLP_ENDPOINT: "https://otel.example.com",
            c.OTEL_EXPORTER_OTLP_HEADERS: "x-api-key=abc",
        },
        "sbx-1-otlp",
    )
    assert env == [
        {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "https://otel.example.com"},
        {
            "name": "OTEL_EXPORTER_OTLP_HEADERS",
            "valueFrom": {"secretKeyRef": {"name": "sbx-1-otlp", "key": "OTEL_EXPORTER_OTLP_HEADERS"}},
        },
    ]
    assert secret == {"OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=abc"}
    assert "abc" not in json.dumps(env)


def test_otel_export_without_headers_needs_no_secret() -> None:
    env, secret = otel_export_env({c.OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318"}, "s")
    assert secret is None
    assert env == [{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://collector:4318"}]


@pytest.mark.parametrize(
    "env", [{}, {c.OTEL_EXPORTER_OTLP_ENDPOINT: "  "}, {c.OTEL_EXPORTER_OTLP_HEADERS: "a=b"}]
)
def test_otel_export_without_a_local_endpoint_is_a_configuration_error(env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match="OTEL_EXPORTER_OTLP_ENDPOINT"):
        otel_export_env(env, "s")


def test_secret_is_owned_by_the_sandbox_when_its_uid_is_known() -> None:
    secret = build_otel_secret(
        name="s-otlp", namespace="ns", sandbox_name="s", data={"K": "v"}, owner_uid="u1"
    )
    assert secret["stringData"] == {"K": "v"}
    assert secret["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "leap0.dev/v1alpha1",
            "kind": "Sandbox",
            "name": "s",
            "uid": "u1",
            "blockOwnerDeletion": True,
        }
    ]
    assert secret["metadata"]["labels"][c.LABEL_SANDBOX_ID] == "s"


def test_generated_names_are_valid_and_distinct() -> None:
    names = {generate_sandbox_name() for _ in range(200)}
    assert len(names) == 200
    for name in names:
        assert name.startswith("sbx-")
        assert name == name.lower()
        assert len(name) <= 63


def test_api_error_subject_is_the_status_details_kind_and_name() -> None:
    body = json.dumps(
        {
            "kind": "Status",
            "code": 404,
            "reason": "NotFound",
            "details": {"name": "agents", "kind": "namespaces"},
        }
    )
    assert api_error_subject(body) == ("namespaces", "agents")
    assert api_error_subject(json.dumps({"kind": "Status", "code": 500})) == (None, None)
    assert api_error_subject("plain text") == (None, None)
    assert api_error_subject(None) == (None, None)


def test_api_error_message_is_the_status_message() -> None:
    body = json.dumps(
        {"kind": "Status", "message": 'Sandbox.leap0.dev "x" is invalid: spec.vcpu: Invalid value'}
    )
    assert api_error_message(body, "fallback") == 'Sandbox.leap0.dev "x" is invalid: spec.vcpu: Invalid value'
    assert api_error_message(None, "fallback") == "fallback"
    assert api_error_message("plain text", "fallback") == "plain text"


def test_sandbox_reads_spec_status_and_ready_condition() -> None:
    obj = {
        "metadata": {
            "name": "sbx-1",
            "namespace": "ns",
            "uid": "u",
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {"vcpu": 2, "memory": 2048, "timeout": 30},
        "status": {
            "phase": "Failed",
            "podName": "sbx-1",
            "podIP": "10.0.0.1",
            "expiresAt": "2026-01-01T00:00:30Z",
            "conditions": [{"type": "Ready", "status": "False", "reason": "ImagePullError", "message": "no"}],
        },
    }
    sb = Sandbox.from_object(obj)
    assert (sb.id, sb.namespace, sb.vcpu, sb.memory, sb.timeout) == ("sbx-1", "ns", 2, 2048, 30)
    assert (sb.phase, sb.reason, sb.message) == ("Failed", "ImagePullError", "no")
    assert (sb.pod_name, sb.pod_ip) == ("sbx-1", "10.0.0.1")
    assert sb.expires_at is not None
    assert sb.expires_at.year == 2026
    assert sb.is_terminal
    assert not sb.is_running
    assert sandbox_fields({})["id"] == ""
