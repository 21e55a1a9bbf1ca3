"""The CRDs' fidelity pieces of `leap0 dev apiserver`, seen through kubectl and the kubernetes client:
schema validation and CEL rules (422 with the server's messages), pruning, strict field validation, printer
columns."""

from __future__ import annotations

import functools
import json
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import support
from kubernetes import client

from leap0_dev.apiserver import ServerThread

pytestmark = pytest.mark.e2e

GROUP, VERSION, PLURAL = "leap0.dev", "v1alpha1", "sandboxes"


@pytest.fixture
def kubectl(apiserver: ServerThread) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``support.kubectl`` against the session server; the tests check its exit code themselves."""
    return functools.partial(support.kubectl, apiserver.kubeconfig, check=False)


@pytest.fixture
def custom(apiserver: ServerThread) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(apiserver.api_client())


def sandbox_yaml(name: str, namespace: str, spec: dict[str, Any]) -> str:
    return json.dumps(
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Sandbox",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )


def test_kubectl_apply_of_a_bad_sandbox_fails_with_the_servers_message(kubectl: Any, namespace: str) -> None:
    spec = {
        "vcpu": 9,
        "memory": 513,
        "template": "Not_A_Name",
        "env": [{"name": "A", "value": "x", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
    }
    result = kubectl("apply", "-f", "-", input=sandbox_yaml("bad", namespace, spec))
    assert result.returncode != 0
    assert 'The Sandbox "bad" is invalid:' in result.stderr
    for line in (
        "* spec.vcpu: Invalid value: 9: spec.vcpu in body should be less than or equal to 8",
        "* spec.memory: Invalid value: 513: spec.memory in body should be a multiple of 2",
        '* spec.template: Invalid value: "Not_A_Name": spec.template in body should match',
        "* spec.env[0]: Invalid value: value and valueFrom are mutually exclusive",
    ):
        assert line in result.stderr, result.stderr
    assert kubectl("get", "sandbox", "bad", "-n", namespace).returncode != 0, "nothing was stored"


def test_the_kubernetes_client_gets_a_422_status_with_causes(
    custom: client.CustomObjectsApi, namespace: str
) -> None:
    body = json.loads(sandbox_yaml("bad", namespace, {"vcpu": 9}))
    with pytest.raises(client.ApiException) as err:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    assert err.value.status == 422
    status = json.loads(err.value.body)
    assert status["reason"] == "Invalid"
    assert status["message"] == (
        'Sandbox.leap0.dev "bad" is invalid: spec.vcpu: Invalid value: 9: '
        "spec.vcpu in body should be less than or equal to 8"
    )
    assert status["details"] == {
        "name": "bad",
        "group": GROUP,
        "kind": "Sandbox",
        "causes": [
            {
                "reason": "FieldValueInvalid",
                "message": "Invalid value: 9: spec.vcpu in body should be less than or equal to 8",
                "field": "spec.vcpu",
            }
        ],
    }


def test_plain_kubectl_apply_works_without_validate_false(kubectl: Any, namespace: str) -> None:
    manifests = "\n---\n".join(
        [
            json.dumps(
                {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "otlp"}, "stringData": {"a": "b"}}
            ),
            json.dumps(
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "SandboxTemplate",
                    "metadata": {"name": "default"},
                    "spec": {"image": "python:3.12-slim", "vcpu": 2},
                }
            ),
            sandbox_yaml("good", namespace, {"vcpu": 2, "memory": 2048, "timeout": 300}),
        ]
    )
    result = kubectl("apply", "-n", namespace, "-f", "-", input=manifests)
    assert result.returncode == 0, result.stderr
    assert "secret/otlp created" in result.stdout
    assert "sandboxtemplate.leap0.dev/default created" in result.stdout
    assert "sandbox.leap0.dev/good created" in result.stdout
    assert "Warning" not in result.stderr
    # and again: unchanged, through kubectl's patch path
    again = kubectl("apply", "-n", namespace, "-f", "-", input=manifests)
    assert again.returncode == 0, again.stderr
    assert "sandbox.leap0.dev/good unchanged" in again.stdout


def test_kubectl_apply_namespace(kubectl: Any) -> None:
    name = f"ns-{uuid.uuid4().hex[:8]}"
    doc = json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    result = kubectl("apply", "-f", "-", input=doc)
    assert result.returncode == 0, result.stderr
    assert f"namespace/{name} created" in result.stdout
    assert kubectl("delete", "namespace", name).returncode == 0


def test_kubectl_apply_refuses_unknown_fields_as_a_cluster_does(kubectl: Any, namespace: str) -> None:
    result = kubectl("apply", "-f", "-", input=sandbox_yaml("typo", namespace, {"vcpu": 2, "vpcu": 3}))
    assert result.returncode != 0
    assert (
        'Sandbox in version "v1alpha1" cannot be handled as a Sandbox: strict decoding error: '
        'unknown field "spec.vpcu"'
    ) in result.stderr
    # --validate=false (fieldValidation=Ignore) prunes it instead, as the server does
    ok = kubectl(
        "apply", "--validate=false", "-f", "-", input=sandbox_yaml("typo", namespace, {"vcpu": 2, "vpcu": 3})
    )
    assert ok.returncode == 0, ok.stderr
    stored = json.loads(kubectl("get", "sandbox", "typo", "-n", namespace, "-o", "json").stdout)
    assert stored["spec"] == {"vcpu": 2}


def test_unknown_fields_are_pruned_for_the_client_with_a_warning(
    custom: client.CustomObjectsApi, namespace: str
) -> None:
    body = json.loads(sandbox_yaml("pruned", namespace, {"vcpu": 2, "colour": "blue"}))
    body["extra"] = {"x": 1}
    created, _, headers = custom.create_namespaced_custom_object_with_http_info(
        GROUP, VERSION, namespace, PLURAL, body
    )
    assert created["spec"] == {"vcpu": 2}
    assert "extra" not in created
    assert 'unknown field \\"spec.colour\\"' in headers.get("Warning", "")
    stored = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "pruned")
    assert stored["spec"] == {"vcpu": 2}


def test_spec_is_immutable_except_timeout(
    kubectl: Any, custom: client.CustomObjectsApi, namespace: str
) -> None:
    spec = {"image": "python:3.12-slim", "vcpu": 1, "timeout": 300}
    assert kubectl("apply", "-f", "-", input=sandbox_yaml("live", namespace, spec)).returncode == 0

    changed = kubectl(
        "apply", "-f", "-", input=sandbox_yaml("live", namespace, {**spec, "image": "python:3.13"})
    )
    assert changed.returncode != 0
    assert 'The Sandbox "live" is invalid: spec: Invalid value: spec.image is immutable' in changed.stderr

    longer = kubectl("apply", "-f", "-", input=sandbox_yaml("live", namespace, {**spec, "timeout": 3600}))
    assert longer.returncode == 0, longer.stderr
    assert "sandbox.leap0.dev/live configured" in longer.stdout
    stored = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "live")
    assert stored["spec"]["timeout"] == 3600
    assert stored["spec"]["image"] == "python:3.12-slim"

    with pytest.raises(client.ApiException) as err:
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "live", {"spec": {"vcpu": 4}}
        )
    assert err.value.status == 422
    assert json.loads(err.value.body)["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": "Invalid value: spec.vcpu is immutable",
            "field": "spec",
        }
    ]


def test_status_updates_are_validated_too(custom: client.CustomObjectsApi, namespace: str) -> None:
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, json.loads(sandbox_yaml("s", namespace, {}))
    )
    with pytest.raises(client.ApiException) as err:
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, "s", {"status": {"phase": "Sleeping"}}
        )
    assert err.value.status == 422
    assert 'status.phase: Unsupported value: "Sleeping"' in json.loads(err.value.body)["message"]
    ok = custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        "s",
        {"status": {"phase": "Running", "kopf": {"any": {"thing": 1}}}},
    )
    assert ok["status"] == {"phase": "Running", "kopf": {"any": {"thing": 1}}}


def test_kubectl_get_sbx_shows_the_printer_columns(
    kubectl: Any, custom: client.CustomObjectsApi, namespace: str
) -> None:
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, json.loads(sandbox_yaml("cols", namespace, {"template": "small"}))
    )
    custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        "cols",
        {
            "status": {
                "phase": "Running",
                "vcpu": 2,
                "memory": 2048,
                "expiresAt": "2099-01-01T00:00:00Z",
                "podName": "cols-pod",
            }
        },
    )
    result = kubectl("get", "sbx", "-n", namespace)
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()
    assert header.split() == ["NAME", "PHASE", "VCPU", "MEMORY", "EXPIRES", "AGE"]
    cells = row.split()
    assert cells[:4] == ["cols", "Running", "2", "2048"]
    assert cells[4] == "2099-01-01T00:00:00Z"
    assert cells[5].endswith("s"), "the age, as the server prints date columns"

    wide = kubectl("get", "sbx", "-n", namespace, "-o", "wide")
    assert wide.stdout.splitlines()[0].split() == [
        "NAME",
        "PHASE",
        "VCPU",
        "MEMORY",
        "EXPIRES",
        "AGE",
        "POD",
        "TEMPLATE",
    ]
    assert wide.stdout.splitlines()[1].split()[-2:] == ["cols-pod", "small"]

    labelled = kubectl("get", "sandboxes", "-n", namespace, "--show-labels", "--sort-by", ".metadata.name")
    assert labelled.returncode == 0, labelled.stderr
    assert labelled.stdout.splitlines()[0].split()[-1] == "LABELS"


def test_kubectl_get_core_kinds_uses_their_printers(
    kubectl: Any, apiserver: ServerThread, namespace: str
) -> None:
    core = client.CoreV1Api(apiserver.api_client())
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "creds"}, "stringData": {"a": "1", "b": "2"}}
    )
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "p"},
            "spec": {
                "containers": [{"name": "sandbox", "image": "python"}, {"name": "telemetry", "image": "t"}]
            },
        },
    )
    secrets = kubectl("get", "secrets", "-n", namespace)
    assert secrets.returncode == 0, secrets.stderr
    assert secrets.stdout.splitlines()[0].split() == ["NAME", "TYPE", "DATA", "AGE"]
    assert secrets.stdout.splitlines()[1].split()[:3] == ["creds", "Opaque", "2"]
    pods = kubectl("get", "pods", "-n", namespace)
    assert pods.stdout.splitlines()[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert pods.stdout.splitlines()[1].split()[:4] == ["p", "0/2", "Pending", "0"]
    namespaces = kubectl("get", "namespace", namespace)
    assert namespaces.stdout.splitlines()[0].split() == ["NAME", "STATUS", "AGE"]
    assert namespaces.stdout.splitlines()[1].split()[:2] == [namespace, "Active"]


def test_core_kinds_refuse_unknown_fields_under_strict_and_prune_them_otherwise(
    kubectl: Any, apiserver: ServerThread, namespace: str
) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "typo"}, "stringDat": {"a": "b"}}
    result = kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(secret))
    assert result.returncode != 0
    assert (
        'Secret in version "v1" cannot be handled as a Secret: '
        'strict decoding error: unknown field "stringDat"' in result.stderr
    )
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cm"},
        "data": {"a": "1"},
        "dat": {},
    }
    warned = kubectl("apply", "--validate=warn", "-n", namespace, "-f", "-", input=json.dumps(configmap))
    assert warned.returncode == 0, warned.stderr
    assert 'Warning: unknown field "dat"' in warned.stderr
    stored = client.CoreV1Api(apiserver.api_client()).read_namespaced_config_map("cm", namespace)
    assert stored.data == {"a": "1"}
    raw = json.loads(kubectl("get", "configmap", "cm", "-n", namespace, "-o", "json").stdout)
    assert "dat" not in raw


def test_kubectl_explain_reads_the_crd_schema(kubectl: Any) -> None:
    result = kubectl("explain", "sandboxes.spec.memory")
    assert result.returncode == 0, result.stderr
    assert "Memory limit (and request) in MiB; even." in result.stdout
    assert "<integer>" in result.stdout


def test_server_side_apply_is_validated_too(kubectl: Any, namespace: str) -> None:
    bad = kubectl("apply", "--server-side", "-f", "-", input=sandbox_yaml("ssa", namespace, {"memory": 100}))
    assert bad.returncode != 0
    assert (
        "spec.memory: Invalid value: 100: spec.memory in body should be greater than or equal to 512"
        in bad.stderr
    )
    good = kubectl(
        "apply", "--server-side", "-f", "-", input=sandbox_yaml("ssa", namespace, {"memory": 1024})
    )
    assert good.returncode == 0, good.stderr
    typo = kubectl(
        "apply", "--server-side", "-f", "-", input=sandbox_yaml("ssa2", namespace, {"memroy": 1024})
    )
    assert typo.returncode != 0
    assert 'unknown field "spec.memroy"' in typo.stderr


def test_kubectl_apply_of_the_crds_themselves_works(kubectl: Any) -> None:
    crds = Path(__file__).resolve().parents[3] / "crds"
    result = kubectl("apply", "-f", str(crds))
    assert result.returncode == 0, result.stderr
    assert "customresourcedefinition.apiextensions.k8s.io/sandboxes.leap0.dev" in result.stdout
    again = kubectl("apply", "-f", str(crds / "sandboxes.leap0.dev.yaml"))
    assert "customresourcedefinition.apiextensions.k8s.io/sandboxes.leap0.dev unchanged" in again.stdout


def test_a_bad_name_is_reported_with_the_other_errors(
    custom: client.CustomObjectsApi, namespace: str
) -> None:
    body = json.loads(sandbox_yaml("Bad_Name", namespace, {"vcpu": 20}))
    with pytest.raises(client.ApiException) as err:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    assert err.value.status == 422
    causes = json.loads(err.value.body)["details"]["causes"]
    assert [c["field"] for c in causes] == ["metadata.name", "spec.vcpu"]
    assert causes[0]["message"].endswith(
        "(e.g. 'example.com', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    )
