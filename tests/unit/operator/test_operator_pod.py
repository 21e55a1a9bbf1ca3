"""The pod builder and template resolution: the pod is exactly what the contract describes."""

from __future__ import annotations

import json
from typing import Any

import pytest

import leap0_contract as contract
from leap0_operator.config import OperatorConfig
from leap0_operator.pod import build_pod
from leap0_operator.resolve import SpecError, resolve

CONFIG = OperatorConfig(sidecar_image="sidecar:test", sidecar_cpu="100m", sidecar_memory="64Mi")


def owner(name: str = "sbx-1", namespace: str = "team-a", **labels: str) -> dict[str, Any]:
    """A Sandbox body as the operator holds it."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": f"uid-{name}"}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": contract.API_VERSION, "kind": contract.SANDBOX_KIND, "metadata": meta}


def _pod(spec: dict[str, Any], template: dict[str, Any] | None = None, org: str = "acme") -> dict[str, Any]:
    return build_pod(owner=owner(), effective=resolve(spec, template, CONFIG), org_id=org, config=CONFIG)


def _container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    spec = pod["spec"]
    (found,) = [c for c in [*spec.get("initContainers", []), *spec["containers"]] if c["name"] == name]
    return found


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {v["name"]: v.get("value", v.get("valueFrom")) for v in container.get("env", [])}


def test_minimal_sandbox_gets_the_defaults_and_a_native_sidecar() -> None:
    pod = _pod({})
    assert pod["metadata"]["name"] == "sbx-1"
    assert pod["metadata"]["namespace"] == "team-a"
    assert pod["metadata"]["labels"] == {
        contract.LABEL_SANDBOX_ID: "sbx-1",
        contract.LABEL_ORG_ID: "acme",
        contract.LABEL_TEMPLATE_ID: "default",
        "app.kubernetes.io/managed-by": "leap0-operator",
    }
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["shareProcessNamespace"] is True
    assert spec["automountServiceAccountToken"] is False
    sandbox = _container(pod, "sandbox")
    assert sandbox["image"] == contract.DEFAULT_IMAGE
    assert sandbox["resources"] == {
        "limits": {"cpu": "1", "memory": "1024Mi"},
        "requests": {"cpu": "1", "memory": "1024Mi"},
    }
    assert "command" not in sandbox
    assert "args" not in sandbox
    assert sandbox["stdin"] is True  # python3 (the default image's command) waits instead of exiting
    telemetry = _container(pod, "telemetry")
    # the supervisor's copy first (sandbox logs are on by default), then the native sidecar
    assert [c["name"] for c in spec["initContainers"]] == ["leap0-supervisor", "telemetry"]
    assert telemetry["restartPolicy"] == "Always"
    assert telemetry["image"] == "sidecar:test"
    assert telemetry["resources"] == {
        "limits": {"cpu": "100m", "memory": "64Mi"},
        "requests": {"cpu": "100m", "memory": "64Mi"},
    }
    assert spec["volumes"] == [
        {"name": "workspace", "emptyDir": {}},
        {"name": "leap0-supervisor", "emptyDir": {"sizeLimit": "32Mi"}},
    ]
    for container in (sandbox, telemetry):
        assert {"name": "workspace", "mountPath": "/workspace"}.items() <= container["volumeMounts"][
            0
        ].items()


def test_sidecar_is_locked_down_and_probed_on_its_health_port() -> None:
    telemetry = _container(_pod({}), "telemetry")
    security = telemetry["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 65532
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    for probe, path in (
        ("startupProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/healthz"),
    ):
        assert telemetry[probe]["httpGet"] == {"path": path, "port": contract.SIDECAR_HEALTH_PORT}


def test_identity_and_downward_api_limits_reach_the_sidecar() -> None:
    env = _env(_container(_pod({"template": "gpu", "disk": 2048}, template={}), "telemetry"))
    assert env[contract.ENV_SANDBOX_ID] == "sbx-1"
    assert env[contract.ENV_ORG_ID] == "acme"
    assert env[contract.ENV_TEMPLATE_ID] == "gpu"
    assert env[contract.ENV_WORKSPACE] == "/workspace"
    assert env[contract.ENV_K8S_NAMESPACE] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env[contract.ENV_K8S_POD_NAME] == {"fieldRef": {"fieldPath": "metadata.name"}}
    ref = {"containerName": "sandbox"}
    assert env[contract.ENV_SANDBOX_CPU_LIMIT_MILLICORES] == {
        "resourceFieldRef": {**ref, "resource": "limits.cpu", "divisor": "1m"}
    }
    assert env[contract.ENV_SANDBOX_MEMORY_LIMIT_BYTES] == {
        "resourceFieldRef": {**ref, "resource": "limits.memory", "divisor": "1"}
    }
    assert env[contract.ENV_SANDBOX_DISK_LIMIT_BYTES] == {
        "resourceFieldRef": {**ref, "resource": "limits.ephemeral-storage", "divisor": "1"}
    }


def test_disk_limits_ephemeral_storage_and_the_workspace() -> None:
    pod = _pod({"vcpu": 2, "memory": 2048, "disk": 512})
    limits = _container(pod, "sandbox")["resources"]["limits"]
    assert limits == {"cpu": "2", "memory": "2048Mi", "ephemeral-storage": "512Mi"}
    assert pod["spec"]["volumes"][0] == {"name": "workspace", "emptyDir": {"sizeLimit": "512Mi"}}
    assert contract.ENV_SANDBOX_DISK_LIMIT_BYTES not in _env(_container(_pod({}), "telemetry"))


def test_upstream_otlp_settings_go_to_the_sidecar_only_and_the_app_points_at_it() -> None:
    secret_ref = {"secretKeyRef": {"name": "otlp", "key": "headers"}}
    pod = _pod(
        {
            "env": [
                {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "https://otel.example.com"},
                {"name": "OTEL_EXPORTER_OTLP_HEADERS", "valueFrom": secret_ref},
                {
                    "name": "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "value": "https://traces.example.com/v1/traces",
                },
                {"name": "OTEL_SERVICE_NAME", "value": "agent"},
                {"name": "MODE", "value": "fast"},
            ]
        }
    )
    app = _env(_container(pod, "sandbox"))
    assert app == {
        "OTEL_SERVICE_NAME": "agent",
        "MODE": "fast",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    }
    sidecar = _env(_container(pod, "telemetry"))
    assert sidecar["OTEL_EXPORTER_OTLP_ENDPOINT"] == "https://otel.example.com"
    assert sidecar["OTEL_EXPORTER_OTLP_HEADERS"] == secret_ref  # valueFrom stays valueFrom
    assert sidecar["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == "https://traces.example.com/v1/traces"
    assert "MODE" not in sidecar
    assert "OTEL_SERVICE_NAME" not in sidecar


def test_telemetry_disabled_means_no_sidecar_and_nothing_pointing_at_it() -> None:
    pod = _pod(
        {
            "telemetry": {"enabled": False},
            "env": [{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://x"}],
        }
    )
    assert "initContainers" not in pod["spec"]
    assert _env(_container(pod, "sandbox")) == {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}


def test_platform_default_endpoint_applies_only_when_the_user_gave_none() -> None:
    config = OperatorConfig(default_otlp_endpoint="http://platform:4318")
    bare = build_pod(owner=owner("a", "n"), effective=resolve({}, None, config), org_id="n", config=config)
    assert _env(_container(bare, "telemetry"))["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://platform:4318"
    own = {"env": [{"name": "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "value": "http://mine/v1/metrics"}]}
    mine = build_pod(owner=owner("a", "n"), effective=resolve(own, None, config), org_id="n", config=config)
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in _env(_container(mine, "telemetry"))


def test_command_and_args_override_the_entrypoint() -> None:
    sandbox = _container(
        _pod({"command": ["sleep"], "args": ["infinity"], "telemetry": {"logs": False}}), "sandbox"
    )
    assert sandbox["command"] == ["sleep"]
    assert sandbox["args"] == ["infinity"]


def test_template_supplies_defaults_and_placement_and_the_sandbox_wins() -> None:
    template = {
        "image": "ghcr.io/acme/agent:1",
        "vcpu": 4,
        "memory": 4096,
        "disk": 100,
        "timeout": 600,
        "env": [{"name": "A", "value": "template"}, {"name": "B", "value": "template"}],
        "runtimeClassName": "gvisor",
        "nodeSelector": {"sandboxes": "yes"},
        "tolerations": [{"key": "sandbox", "operator": "Exists", "effect": "NoSchedule"}],
    }
    effective = resolve(
        {"template": "agent", "vcpu": 2, "env": [{"name": "B", "value": "mine"}]}, template, CONFIG
    )
    assert (effective.image, effective.vcpu, effective.memory, effective.disk, effective.timeout) == (
        "ghcr.io/acme/agent:1",
        2,
        4096,
        100,
        600,
    )
    pod = build_pod(owner=owner("s", "n"), effective=effective, org_id="n", config=CONFIG)
    assert _env(_container(pod, "sandbox"))["A"] == "template"
    assert _env(_container(pod, "sandbox"))["B"] == "mine"
    assert pod["spec"]["runtimeClassName"] == "gvisor"
    assert pod["spec"]["nodeSelector"] == {"sandboxes": "yes"}
    assert pod["spec"]["tolerations"] == template["tolerations"]
    assert pod["metadata"]["labels"][contract.LABEL_TEMPLATE_ID] == "agent"


def test_missing_default_template_is_fine_but_a_named_one_is_a_permanent_error() -> None:
    assert resolve({}, None, CONFIG).template_id == "default"
    with pytest.raises(SpecError) as raised:
        resolve({"template": "nope"}, None, CONFIG)
    assert raised.value.reason == contract.REASON_TEMPLATE_NOT_FOUND
    assert '"nope"' in raised.value.message


def test_no_image_anywhere_is_a_permanent_error() -> None:
    with pytest.raises(SpecError) as raised:
        resolve({}, None, OperatorConfig(default_image=""))
    assert raised.value.reason == contract.REASON_INVALID_SPEC
    assert "image" in raised.value.message


def test_out_of_range_template_values_are_rejected() -> None:
    with pytest.raises(SpecError, match="vcpu"):
        resolve({}, {"vcpu": 64}, CONFIG)


def test_the_sandbox_adopts_its_pod_as_controller_without_lending_it_its_labels() -> None:
    pod = build_pod(
        owner=owner("s", "n", team="x", **{contract.LABEL_SANDBOX_ID: "forged"}),
        effective=resolve({}, None, CONFIG),
        org_id="n",
        config=CONFIG,
    )
    assert pod["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "leap0.dev/v1alpha1",
            "kind": "Sandbox",
            "name": "s",
            "uid": "uid-s",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert (pod["metadata"]["name"], pod["metadata"]["namespace"]) == ("s", "n")
    assert "generateName" not in pod["metadata"]
    assert pod["metadata"]["labels"] == {
        contract.LABEL_SANDBOX_ID: "s",
        contract.LABEL_ORG_ID: "n",
        contract.LABEL_TEMPLATE_ID: "default",
        contract.LABEL_MANAGED_BY: contract.MANAGED_BY,
    }


KUBERNETES_DEFAULT_GRACE_S = 30  # a pod's terminationGracePeriodSeconds when its spec leaves it unset
APP_EXIT_BUDGET_S = 5  # what must be left for the app, which Kubernetes stops before the native sidecar


def test_the_pods_grace_period_leaves_the_sidecar_time_to_flush() -> None:
    """Kubernetes stops the app, then the native sidecar, within one grace period; the sidecar's flush
    deadline (SIGTERM → flush the queue → exit 0) must fit in it, or its last telemetry is SIGKILLed away."""
    from leap0_sidecar import config as sidecar_config

    for built in (
        _pod({}),
        _pod({"env": [{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://x"}]}),
    ):
        grace = built["spec"].get("terminationGracePeriodSeconds", KUBERNETES_DEFAULT_GRACE_S)
        sidecar_env = _env(_container(built, "telemetry"))
        deadline = float(
            sidecar_env.get(contract.ENV_SIDECAR_SHUTDOWN_TIMEOUT, sidecar_config.DEFAULT_SHUTDOWN_TIMEOUT_S)
        )
        assert deadline + APP_EXIT_BUDGET_S <= grace, (deadline, grace)


def test_pod_names_are_the_contracts_letter_for_letter() -> None:
    """Literal names (the documented contract), so a renamed constant cannot silently move them."""
    pod = _pod({"template": "gpu"}, template={})
    assert {
        "leap0.dev/sandbox-id": "sbx-1",
        "leap0.dev/org-id": "acme",
        "leap0.dev/template-id": "gpu",
    }.items() <= (pod["metadata"]["labels"].items())
    assert [c["name"] for c in pod["spec"]["containers"]] == ["sandbox"]
    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["leap0-supervisor", "telemetry"]
    sidecar = _env(_container(pod, "telemetry"))
    assert (sidecar["LEAP0_SANDBOX_ID"], sidecar["LEAP0_ORG_ID"], sidecar["LEAP0_TEMPLATE_ID"]) == (
        "sbx-1",
        "acme",
        "gpu",
    )


# --- sandbox logs: the supervisor ----------------------------------------------------------------------
SUPERVISOR_MOUNT = {"name": "leap0-supervisor", "mountPath": "/.leap0", "readOnly": True}


def test_with_logs_a_command_runs_as_the_supervisors_child() -> None:
    pod = _pod({"command": ["python", "-c", "print('$(MODE)')"], "args": ["--x", "$(MODE)"]})
    sandbox = _container(pod, "sandbox")
    # the Sandbox's command after "--", its args untouched (the kubelet expands $(VAR) in both as before)
    assert sandbox["command"] == [
        "/.leap0/leap0-supervisor",
        "run",
        "--container",
        "sandbox",
        "--",
        "python",
        "-c",
        "print('$(MODE)')",
    ]
    assert sandbox["args"] == ["--x", "$(MODE)"]
    assert SUPERVISOR_MOUNT in sandbox["volumeMounts"]
    copy = _container(pod, "leap0-supervisor")
    assert copy == {
        "name": "leap0-supervisor",
        "image": "sidecar:test",  # the sidecar image ships the binary
        "command": ["/usr/local/bin/leap0-supervisor", "install", "/.leap0/leap0-supervisor"],
        "resources": {
            "limits": {"cpu": "100m", "memory": "64Mi"},
            "requests": {"cpu": "100m", "memory": "64Mi"},
        },
        "volumeMounts": [{"name": "leap0-supervisor", "mountPath": "/.leap0"}],
        "securityContext": _container(pod, "telemetry")["securityContext"],
    }
    assert "restartPolicy" not in copy  # runs to completion, before the sidecar starts
    assert {"name": "leap0-supervisor", "emptyDir": {"sizeLimit": "32Mi"}} in pod["spec"]["volumes"]
    assert pod["metadata"]["annotations"][contract.ANNOTATION_SUPERVISOR] == "/.leap0/leap0-supervisor"
    images = json.loads(pod["metadata"]["annotations"][contract.ANNOTATION_POD_IMAGES])
    assert images["leap0-supervisor"] == "sidecar:test"


def test_with_logs_and_no_command_the_image_entrypoint_runs_as_it_is() -> None:
    """The operator cannot know the image's entrypoint: only SDK commands go through the supervisor then."""
    pod = _pod({"args": ["--serve"]})
    sandbox = _container(pod, "sandbox")
    assert "command" not in sandbox
    assert sandbox["args"] == ["--serve"]
    assert SUPERVISOR_MOUNT in sandbox["volumeMounts"]
    assert pod["metadata"]["annotations"][contract.ANNOTATION_SUPERVISOR] == "/.leap0/leap0-supervisor"


@pytest.mark.parametrize(
    ("spec", "template", "on"),
    [
        ({}, None, True),
        ({"telemetry": {"logs": False}}, None, False),
        ({}, {"telemetry": {"logs": False}}, False),
        ({"telemetry": {"logs": True}}, {"telemetry": {"logs": False}}, True),  # the Sandbox's own field wins
        ({"telemetry": {"logs": False}}, {"telemetry": {"logs": True}}, False),
        ({"telemetry": {"enabled": False}}, None, False),  # never without the sidecar
        ({"telemetry": {"enabled": False, "logs": True}}, {"telemetry": {"logs": True}}, False),
    ],
)
def test_logs_switch(spec: dict[str, Any], template: dict[str, Any] | None, on: bool) -> None:
    spec = {**spec, "command": ["sleep", "60"]}
    pod = _pod(spec, template)
    names = [c["name"] for c in pod["spec"].get("initContainers", [])]
    sandbox = _container(pod, "sandbox")
    assert ("leap0-supervisor" in names) is on
    assert (sandbox["command"][0] == "/.leap0/leap0-supervisor") is on
    assert (SUPERVISOR_MOUNT in sandbox["volumeMounts"]) is on
    assert (contract.ANNOTATION_SUPERVISOR in pod["metadata"]["annotations"]) is on
    assert any(v["name"] == "leap0-supervisor" for v in pod["spec"]["volumes"]) is on
    if not on:
        assert sandbox["command"] == ["sleep", "60"]


def test_a_template_that_locks_telemetry_makes_its_logs_choice_final() -> None:
    template = {"telemetry": {"logs": True}, "lockedFields": ["telemetry"]}
    with pytest.raises(SpecError) as caught:
        resolve({"telemetry": {"logs": False}}, template, CONFIG)
    assert caught.value.reason == contract.REASON_FIELD_LOCKED
    assert "spec.telemetry" in caught.value.message
    pod = _pod({"command": ["sleep", "60"]}, template)
    assert _container(pod, "sandbox")["command"][0] == contract.SUPERVISOR_PATH
