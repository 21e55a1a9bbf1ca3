"""Sandboxes through the SDK against the embedded API server (operator played by ``stand_in_operator``)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from sdk_support import failed_status, pending_status, running_status, set_status, start_pod
from support import dead_kubeconfig, wait_for

import leap0_contract as c
from leap0 import (
    ApiUnreachableError,
    ConfigurationError,
    Leap0Client,
    Leap0Error,
    SandboxFailedError,
    SandboxNotFoundError,
    SandboxTimeoutError,
    SandboxValidationError,
)
from leap0_dev.apiserver import ServerThread

pytestmark = pytest.mark.e2e


def _raw(apiserver: ServerThread, namespace: str, name: str) -> dict[str, Any]:
    api = client.CustomObjectsApi(apiserver.api_client())
    obj: dict[str, Any] = api.get_namespaced_custom_object(
        c.GROUP, c.VERSION, namespace, c.SANDBOX_PLURAL, name
    )
    return obj


def test_create_without_wait_get_list_delete(
    sdk: Leap0Client, apiserver: ServerThread, namespace: str
) -> None:
    sandbox = sdk.sandboxes.create(vcpu=2, memory=2048, timeout=30, wait=False)
    assert sandbox.id.startswith("sbx-")
    assert sandbox.namespace == namespace
    assert sandbox.phase is None
    assert _raw(apiserver, namespace, sandbox.id)["spec"] == {"vcpu": 2, "memory": 2048, "timeout": 30}

    got = sdk.sandboxes.get(sandbox.id)
    assert (got.id, got.vcpu, got.memory, got.timeout, got.uid) == (sandbox.id, 2, 2048, 30, sandbox.uid)
    other = sdk.sandboxes.create(wait=False)
    assert sorted(s.id for s in sdk.sandboxes.list()) == sorted([sandbox.id, other.id])

    sandbox.delete()
    with pytest.raises(SandboxNotFoundError):
        sdk.sandboxes.get(sandbox.id)
    with pytest.raises(SandboxNotFoundError):
        sdk.sandboxes.delete(sandbox.id)
    sdk.sandboxes.delete(other)
    assert sdk.sandboxes.list() == []


def test_unset_values_are_left_to_the_template(
    sdk: Leap0Client, apiserver: ServerThread, namespace: str
) -> None:
    sandbox = sdk.sandboxes.create(wait=False)
    assert _raw(apiserver, namespace, sandbox.id)["spec"] == {}


def test_hosted_sdk_spellings(sdk: Leap0Client, apiserver: ServerThread, namespace: str) -> None:
    sandbox = sdk.sandboxes.create(
        template_name="python", memory_mib=2048, timeout_min=2, env_vars={"A": "1"}, wait=False
    )
    assert _raw(apiserver, namespace, sandbox.id)["spec"] == {
        "template": "python",
        "memory": 2048,
        "timeout": 120,
        "env": [{"name": "A", "value": "1"}],
    }


def test_create_waits_until_running_by_watching(
    sdk: Leap0Client, apiserver: ServerThread, namespace: str, stand_in_operator: Any
) -> None:
    stand_in_operator(namespace, delay=1.0)
    assert apiserver.server is not None
    before = apiserver.server.requests
    sandbox = sdk.sandboxes.create(vcpu=2, memory=2048, timeout=30)
    assert sandbox.phase == c.PHASE_RUNNING  # the stand-in writes it a second after the create
    assert sandbox.pod_name == sandbox.id
    assert sandbox.reason == c.REASON_RUNNING
    # One create and one watch from the SDK (a poll loop would show dozens); the stand-in made a few more.
    assert apiserver.server.requests - before < 10


def test_wait_timeout_raises_and_keeps_the_sandbox(
    sdk: Leap0Client, apiserver: ServerThread, namespace: str
) -> None:
    with pytest.raises(SandboxTimeoutError, match=r"not Running after 0\.5 s") as info:
        sdk.sandboxes.create(wait_timeout=0.5)
    assert info.value.sandbox_id is not None
    assert sdk.sandboxes.get(info.value.sandbox_id).phase is None


def test_failed_sandbox_raises_with_the_operators_reason(
    sdk: Leap0Client, namespace: str, stand_in_operator: Any
) -> None:
    message = 'Back-off pulling image "nope:latest"'
    stand_in_operator(namespace, lambda name: failed_status(c.REASON_IMAGE_PULL_ERROR, message))
    with pytest.raises(SandboxFailedError) as info:
        sdk.sandboxes.create(image="nope:latest", wait_timeout=10)
    assert info.value.reason == c.REASON_IMAGE_PULL_ERROR
    assert info.value.message == message
    assert info.value.phase == c.PHASE_FAILED
    assert "ImagePullError" in str(info.value)
    assert message in str(info.value)


WAITING = [
    (c.REASON_UNSCHEDULABLE, "0/3 nodes are available: 3 Insufficient cpu."),
    (c.REASON_CREATE_CONTAINER_CONFIG_ERROR, 'secret "otlp-credentials" not found'),
]


def test_create_keeps_waiting_through_a_start_that_waits_then_returns_running(
    sdk: Leap0Client, apiserver: ServerThread, namespace: str, stand_in_operator: Any
) -> None:
    """Pending because of a scale-up, then a Secret not there yet: not failures; create() returns Running."""
    api = apiserver.api_client()

    def wait_then_run(name: str) -> dict[str, Any]:
        for reason, message in WAITING:
            set_status(api, namespace, name, pending_status(reason, message))
        return running_status(name)

    stand_in_operator(namespace, wait_then_run)
    assert sdk.sandboxes.create(wait_timeout=30).phase == c.PHASE_RUNNING


@pytest.mark.parametrize(("reason", "message"), WAITING)
def test_a_start_that_keeps_waiting_ends_at_the_wait_timeout_with_its_reason(
    sdk: Leap0Client, namespace: str, stand_in_operator: Any, reason: str, message: str
) -> None:
    stand_in_operator(namespace, lambda name: pending_status(reason, message), delay=0)
    with pytest.raises(
        SandboxTimeoutError, match=rf"not Running after 3 s \(phase Pending, {reason}\)"
    ) as info:
        sdk.sandboxes.create(wait_timeout=3)
    assert (info.value.phase, info.value.reason) == (c.PHASE_PENDING, reason)
    assert info.value.sandbox_id is not None
    assert sdk.sandboxes.get(info.value.sandbox_id).reason == reason  # kept, still waiting


def test_deleted_while_waiting_is_not_found(sdk: Leap0Client, namespace: str, stand_in_operator: Any) -> None:
    def delete_it(name: str) -> None:
        sdk.sandboxes.delete(name)

    stand_in_operator(namespace, delete_it)
    with pytest.raises(SandboxNotFoundError, match="deleted while starting"):
        sdk.sandboxes.create(wait_timeout=10)


def test_refresh_and_set_timeout(sdk: Leap0Client, apiserver: ServerThread, namespace: str) -> None:
    sandbox = sdk.sandboxes.create(timeout=30, wait=False)
    start_pod(apiserver.api_client(), namespace, sandbox.id)
    set_status(apiserver.api_client(), namespace, sandbox.id, running_status(sandbox.id))
    assert sandbox.phase is None
    assert sandbox.refresh().phase == c.PHASE_RUNNING
    sandbox.set_timeout(600)
    assert sandbox.timeout == 600
    assert sdk.sandboxes.get(sandbox.id).timeout == 600


def test_invalid_values_come_back_with_the_schema_message(sdk: Leap0Client, apiserver: ServerThread) -> None:
    with pytest.raises(SandboxValidationError, match=r"spec\.vcpu") as info:
        sdk.sandboxes.create(vcpu=9, wait=False)
    assert info.value.status == 422
    with pytest.raises(SandboxValidationError, match=r"spec\.memory"):
        sdk.sandboxes.create(memory=1023, wait=False)
    assert sdk.sandboxes.list() == []


def test_network_reaches_spec_network_and_bad_cidrs_come_back_naming_the_field(
    sdk: Leap0Client, apiserver: ServerThread, namespace: str
) -> None:
    network = {"policy": "Custom", "allowCidrs": ["203.0.113.0/24", "2001:db8::/32"]}
    sandbox = sdk.sandboxes.create(network=network, wait=False)
    assert _raw(apiserver, namespace, sandbox.id)["spec"]["network"] == network
    plain = sdk.sandboxes.create(wait=False)
    assert "network" not in _raw(apiserver, namespace, plain.id)["spec"]  # the template's, else the default
    with pytest.raises(SandboxValidationError, match=r"spec\.network\.allowCidrs\[0\]") as info:
        sdk.sandboxes.create(network={"policy": "Custom", "allowCidrs": ["not-a-cidr"]}, wait=False)
    assert "CIDR" in str(info.value)
    with pytest.raises(SandboxValidationError, match="allowDomains is not supported"):
        sdk.sandboxes.create(network={"policy": "Internet", "allowDomains": ["example.com"]}, wait=False)
    assert {s.id for s in sdk.sandboxes.list()} == {sandbox.id, plain.id}


def test_otel_export_keeps_headers_out_of_the_sandbox_and_gc_deletes_the_secret(
    sdk: Leap0Client, apiserver: ServerThread, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "https://otel.example.com")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=abc123secret")
    sandbox = sdk.sandboxes.create(vcpu=2, memory=2048, timeout=30, otel_export=True, wait=False)

    raw = _raw(apiserver, namespace, sandbox.id)
    assert "abc123secret" not in json.dumps(raw)
    secret_name = f"{sandbox.id}-otlp"
    assert raw["spec"]["env"] == [
        {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "https://otel.example.com"},
        {
            "name": "OTEL_EXPORTER_OTLP_HEADERS",
            "valueFrom": {"secretKeyRef": {"name": secret_name, "key": "OTEL_EXPORTER_OTLP_HEADERS"}},
        },
    ]
    core = client.CoreV1Api(apiserver.api_client())
    secret = core.read_namespaced_secret(secret_name, namespace)
    assert base64.b64decode(secret.data["OTEL_EXPORTER_OTLP_HEADERS"]) == b"x-api-key=abc123secret"
    (owner,) = secret.metadata.owner_references
    assert (owner.kind, owner.name, owner.uid) == ("Sandbox", sandbox.id, sandbox.uid)

    sandbox.delete()

    def secret_gone() -> bool:
        try:
            core.read_namespaced_secret(secret_name, namespace)
        except client.ApiException as exc:
            return exc.status == 404
        return False

    wait_for(secret_gone, timeout=30)


def test_otel_export_user_env_wins_and_no_headers_means_no_secret(
    sdk: Leap0Client, apiserver: ServerThread, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_HEADERS", raising=False)
    sandbox = sdk.sandboxes.create(otel_export=True, env_vars={"APP": "x"}, wait=False)
    assert _raw(apiserver, namespace, sandbox.id)["spec"]["env"] == [
        {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://collector:4318"},
        {"name": "APP", "value": "x"},
    ]
    secrets = client.CoreV1Api(apiserver.api_client()).list_namespaced_secret(namespace).items
    assert [s.metadata.name for s in secrets] == []


def test_otel_export_without_local_endpoint_fails_before_creating_anything(
    sdk: Leap0Client, apiserver: ServerThread, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=abc")
    with pytest.raises(ConfigurationError, match="OTEL_EXPORTER_OTLP_ENDPOINT"):
        sdk.sandboxes.create(otel_export=True)
    assert sdk.sandboxes.list() == []
    assert client.CoreV1Api(apiserver.api_client()).list_namespaced_secret(namespace).items == []


def test_closed_client_refuses_calls(apiserver: ServerThread, namespace: str) -> None:
    sdk = Leap0Client(namespace=namespace, kubeconfig=apiserver.kubeconfig, sdk_otel_enabled=False)
    sdk.close()
    sdk.close()  # idempotent
    with pytest.raises(Exception, match="closed"):
        sdk.sandboxes.list()


def test_namespace_comes_from_the_kubeconfig_context(
    apiserver: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(apiserver.kubeconfig))  # set after `import kubernetes`: still read
    with Leap0Client(sdk_otel_enabled=False) as sdk:
        assert sdk.namespace == "default"
        assert sdk._configuration.host == apiserver.url
    with Leap0Client(namespace="other", sdk_otel_enabled=False) as sdk:
        assert sdk.namespace == "other"


def test_hosted_telemetry_alias_and_the_sidecar_switch(
    sdk: Leap0Client, apiserver: ServerThread, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_HEADERS", raising=False)
    exported = sdk.sandboxes.create(telemetry=True, wait=False, http_timeout=10)
    assert _raw(apiserver, namespace, exported.id)["spec"]["env"] == [
        {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://collector:4318"}
    ]
    quiet = sdk.sandboxes.create(telemetry_sidecar=False, wait=False)
    assert _raw(apiserver, namespace, quiet.id)["spec"] == {"telemetry": {"enabled": False}}
    with pytest.raises(TypeError, match="otel_export or telemetry"):
        sdk.sandboxes.create(otel_export=True, telemetry=False, wait=False)


def test_an_api_server_that_does_not_answer_is_a_typed_error(apiserver: ServerThread, tmp_path: Path) -> None:
    # A kubeconfig naming a port nobody listens on: every call raises ApiUnreachableError (a Leap0Error and a
    # ConnectionError) saying so, never the HTTP library's own exception.
    kubeconfig, port = dead_kubeconfig(apiserver.kubeconfig, tmp_path)
    with Leap0Client(namespace="nowhere", kubeconfig=kubeconfig, sdk_otel_enabled=False) as sdk:
        for call in (
            lambda: sdk.sandboxes.get("x"),
            lambda: sdk.sandboxes.list(),
            lambda: sdk.sandboxes.create(wait=False),
            lambda: sdk.sandboxes.delete("x"),
            lambda: sdk.sandboxes.set_timeout("x", 60),
        ):
            with pytest.raises(ApiUnreachableError) as caught:
                call()
            assert isinstance(caught.value, Leap0Error)
            assert isinstance(caught.value, ConnectionError)
            assert caught.value.status is None
            assert str(caught.value).startswith("cannot reach the Kubernetes API server (")
            assert f"port={port}" in str(caught.value) or f":{port}" in str(caught.value)
