"""The local runner's pure parts: env resolution from a pod spec, quantities, commands and pod status."""

from __future__ import annotations

import sys
from decimal import Decimal
from typing import Any

import pytest

import leap0_contract as contract
from leap0_dev import podspec
from leap0_dev.podspec import ContainerState, Host, PodSpecError

LABEL_PATH = "metadata.labels['leap0.dev/sandbox-id']"
HOST = Host(cpus=4, memory_bytes=8 * 2**30, ephemeral_bytes=100 * 2**30, name="devbox")


def sandbox_pod() -> dict[str, Any]:
    """A pod shaped like the operator's: a native sidecar wired to the sandbox by the downward API."""
    return {
        "metadata": {
            "name": "demo",
            "namespace": "team-a",
            "uid": "1234-5678",
            "labels": {contract.LABEL_SANDBOX_ID: "demo"},
        },
        "spec": {
            "restartPolicy": "Never",
            "initContainers": [
                {
                    "name": contract.TELEMETRY_CONTAINER,
                    "image": "ghcr.io/leap0-dev/leap0-sidecar:0.1.0",
                    "restartPolicy": "Always",
                    "env": [
                        {"name": contract.ENV_SANDBOX_ID, "value": "demo"},
                        {
                            "name": contract.ENV_SANDBOX_CPU_LIMIT_MILLICORES,
                            "valueFrom": {
                                "resourceFieldRef": {
                                    "containerName": "sandbox",
                                    "resource": "limits.cpu",
                                    "divisor": "1m",
                                }
                            },
                        },
                        {
                            "name": contract.ENV_SANDBOX_MEMORY_LIMIT_BYTES,
                            "valueFrom": {
                                "resourceFieldRef": {"containerName": "sandbox", "resource": "limits.memory"}
                            },
                        },
                        {
                            "name": contract.ENV_K8S_POD_NAME,
                            "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                        },
                        {
                            "name": contract.ENV_K8S_NAMESPACE,
                            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                        },
                        {
                            "name": "SBX_LABEL",
                            "valueFrom": {"fieldRef": {"fieldPath": LABEL_PATH}},
                        },
                        {
                            "name": contract.OTEL_EXPORTER_OTLP_HEADERS,
                            "valueFrom": {"secretKeyRef": {"name": "otlp", "key": "headers"}},
                        },
                        {
                            "name": "MAYBE",
                            "valueFrom": {"secretKeyRef": {"name": "nope", "key": "x", "optional": True}},
                        },
                    ],
                }
            ],
            "containers": [
                {
                    "name": contract.SANDBOX_CONTAINER,
                    "image": "python:3.12-slim",
                    "command": ["python3", "-c", "print($(GREETING))"],
                    "args": ["$$(literal)", "$(UNDEFINED)"],
                    "env": [
                        {"name": "GREETING", "value": "'hi'"},
                        {"name": "DOUBLE", "value": "$(GREETING)$(GREETING)"},
                        {"name": contract.OTEL_EXPORTER_OTLP_ENDPOINT, "value": "http://127.0.0.1:4318"},
                    ],
                    "resources": {
                        "limits": {"cpu": "2", "memory": "1Gi"},
                        "requests": {"cpu": "2", "memory": "1Gi"},
                    },
                }
            ],
        },
    }


def secrets(namespace: str, name: str, key: str) -> str | None:
    return {("team-a", "otlp", "headers"): "x-api-key=s3cret"}.get((namespace, name, key))


def test_quantities_parse_as_kubernetes_does() -> None:
    assert podspec.parse_quantity("500m") == Decimal("0.5")
    assert podspec.parse_quantity("1Gi") == 2**30
    assert podspec.parse_quantity("1G") == 10**9
    assert podspec.parse_quantity("1e3") == 1000
    assert podspec.parse_quantity(2) == 2
    with pytest.raises(PodSpecError, match="invalid quantity"):
        podspec.parse_quantity("lots")


def test_sidecar_env_resolves_downward_api_and_secrets() -> None:
    pod = sandbox_pod()
    env = podspec.resolve_env(pod, pod["spec"]["initContainers"][0], HOST, secrets)
    assert env == {
        contract.ENV_SANDBOX_ID: "demo",
        contract.ENV_SANDBOX_CPU_LIMIT_MILLICORES: "2000",
        contract.ENV_SANDBOX_MEMORY_LIMIT_BYTES: str(2**30),
        contract.ENV_K8S_POD_NAME: "demo",
        contract.ENV_K8S_NAMESPACE: "team-a",
        "SBX_LABEL": "demo",
        contract.OTEL_EXPORTER_OTLP_HEADERS: "x-api-key=s3cret",
    }


def test_unset_limit_resolves_to_the_machine_and_rounds_up() -> None:
    pod = sandbox_pod()
    pod["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "1500m"}}
    sidecar = pod["spec"]["initContainers"][0]
    env = podspec.resolve_env(pod, sidecar, HOST, secrets)
    assert env[contract.ENV_SANDBOX_MEMORY_LIMIT_BYTES] == str(HOST.memory_bytes)
    ref = {"containerName": "sandbox", "resource": "limits.cpu"}
    assert podspec.resource_field_value(pod, ref, "telemetry", HOST) == "2"  # 1.5 CPU, divisor 1: ceil


def test_missing_secret_is_a_config_error_naming_it() -> None:
    pod = sandbox_pod()
    with pytest.raises(PodSpecError, match='secret "otlp" key "headers" not found'):
        podspec.resolve_env(pod, pod["spec"]["initContainers"][0], HOST, lambda *_: None)


def test_dependent_vars_expand_in_order() -> None:
    pod = sandbox_pod()
    env = podspec.resolve_env(pod, pod["spec"]["containers"][0], HOST, secrets)
    assert env["DOUBLE"] == "'hi''hi'"


def test_python_command_runs_with_the_local_interpreter() -> None:
    pod = sandbox_pod()
    container = pod["spec"]["containers"][0]
    env = podspec.resolve_env(pod, container, HOST, secrets)
    assert podspec.local_command(container, env, sys.executable) == [
        sys.executable,
        "-c",
        "print('hi')",
        "$(literal)",
        "$(UNDEFINED)",
    ]


def test_commands_without_a_local_executable_or_without_command_cannot_run() -> None:
    assert podspec.local_command({"name": "x"}, {}, sys.executable) is None
    assert podspec.local_command({"name": "x", "command": ["no-such-tool-here"]}, {}, sys.executable) is None
    assert podspec.local_command({"name": "x", "command": ["sh", "-c", "true"]}, {}, sys.executable) == [
        "sh",
        "-c",
        "true",
    ]


def test_local_endpoints_follow_the_pods_own_ports() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
        "GRPC": "localhost:4317",
        "OTHER": "http://127.0.0.1:43180",
        "REMOTE": "http://collector:4318",
    }
    assert podspec.rewrite_local_endpoints(env, {4317: 5317, 4318: 5318}) == {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:5318",
        "GRPC": "127.0.0.1:5317",
        "OTHER": "http://127.0.0.1:43180",
        "REMOTE": "http://collector:4318",
    }


def test_mount_paths_map_to_local_directories() -> None:
    env = {"W": "/workspace", "F": "/workspace/data/x", "N": "/workspaces", "O": "/tmp"}
    assert podspec.map_paths(env, {"/workspace": "/tmp/pod/volumes/workspace"}) == {
        "W": "/tmp/pod/volumes/workspace",
        "F": "/tmp/pod/volumes/workspace/data/x",
        "N": "/workspaces",
        "O": "/tmp",
    }


def test_paths_under_a_mount_in_a_command_line_map_to_the_volumes_folder() -> None:
    mounts = {"/workspace": "/w/claims/ns_s-workspace_1234"}
    argv = [
        "/bin/sh",
        "-c",
        "cat /workspace/notes.txt > '/workspace/b'; ls /workspace && "
        "echo /workspaces /tmp/workspace x/workspace",
        "leap0-write",
        "/workspace/dir/file",
        "/workspace",
    ]
    assert podspec.map_argv(argv, mounts) == [
        "/bin/sh",
        "-c",
        "cat /w/claims/ns_s-workspace_1234/notes.txt > '/w/claims/ns_s-workspace_1234/b'; "
        "ls /w/claims/ns_s-workspace_1234 && echo /workspaces /tmp/workspace x/workspace",
        "leap0-write",
        "/w/claims/ns_s-workspace_1234/dir/file",
        "/w/claims/ns_s-workspace_1234",
    ]
    assert podspec.map_argv(["cat", "/workspace/x"], {}) == ["cat", "/workspace/x"]


def test_the_claims_a_pod_mounts_and_their_folders() -> None:
    pod = {
        "spec": {
            "volumes": [
                {"name": "workspace", "persistentVolumeClaim": {"claimName": "s-workspace"}},
                {"name": "scratch", "emptyDir": {}},
            ]
        }
    }
    assert podspec.claim_names(pod) == {"workspace": "s-workspace"}
    assert podspec.claim_dir_name("team-a", "s-workspace", "abcdef0123") == "team-a_s-workspace_abcdef01"


def test_exit_reasons() -> None:
    assert podspec.exit_reason(0, False) == (0, "Completed")
    assert podspec.exit_reason(3, False) == (3, "Error")
    assert podspec.exit_reason(-9, True) == (137, "OOMKilled")
    assert podspec.exit_reason(-15, False) == (143, "Error")


def running(name: str, ready: bool = True) -> ContainerState:
    return ContainerState(
        name=name, started_at="t0", running=True, ready=ready, pid=42, waiting_reason=None, image="img"
    )


def test_status_pending_while_containers_are_created() -> None:
    pod = sandbox_pod()
    status = podspec.pod_status(pod, [ContainerState("telemetry")], [ContainerState("sandbox")], "t0", "t1")
    assert status["phase"] == "Pending"
    assert status["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert status["podIP"] == "127.0.0.1"


def test_status_running_and_ready() -> None:
    status = podspec.pod_status(sandbox_pod(), [running("telemetry")], [running("sandbox")], "t0", "t1")
    assert status["phase"] == "Running"
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions["Ready"] == "True"
    assert conditions["Initialized"] == "True"
    main = status["containerStatuses"][0]
    assert main["ready"] is True
    assert main["state"] == {"running": {"startedAt": "t0"}}
    assert main["containerID"] == "local://42"
    assert status["initContainerStatuses"][0]["name"] == "telemetry"
    assert status["qosClass"] == "Burstable"  # the sidecar in this pod sets no resources


def test_status_not_ready_until_the_sidecar_probe_passes() -> None:
    status = podspec.pod_status(
        sandbox_pod(), [running("telemetry", ready=False)], [running("sandbox")], "t0", "t1"
    )
    assert status["phase"] == "Running"
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions["ContainersReady"] == "True"
    assert conditions["Ready"] == "False"


def test_status_failed_with_oomkilled_exit() -> None:
    dead = ContainerState(
        name="sandbox",
        started_at="t0",
        exit_code=137,
        reason="OOMKilled",
        finished_at="t2",
        waiting_reason=None,
    )
    status = podspec.pod_status(sandbox_pod(), [running("telemetry")], [dead], "t0", "t3")
    assert status["phase"] == "Failed"
    terminated = status["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 137
    assert terminated["reason"] == "OOMKilled"


def test_status_succeeded_on_clean_exit_and_restarting_under_always() -> None:
    done = ContainerState("sandbox", started_at="t0", exit_code=0, reason="Completed", waiting_reason=None)
    assert podspec.pod_status(sandbox_pod(), [], [done], "t0", "t1")["phase"] == "Succeeded"
    pod = sandbox_pod()
    pod["spec"]["restartPolicy"] = "Always"
    backing_off = ContainerState(
        name="sandbox", started_at="t0", exit_code=1, waiting_reason="CrashLoopBackOff", restart_count=1
    )
    status = podspec.pod_status(pod, [], [backing_off], "t0", "t1")
    assert status["phase"] == "Running"
    assert status["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff"


def test_guaranteed_qos_when_every_container_has_equal_requests_and_limits() -> None:
    pod = sandbox_pod()
    pod["spec"]["initContainers"][0]["resources"] = {"limits": {"cpu": "100m", "memory": "64Mi"}}
    assert podspec.qos_class(pod) == "Guaranteed"
    pod["spec"]["initContainers"] = []
    pod["spec"]["containers"][0]["resources"] = {}
    assert podspec.qos_class(pod) == "BestEffort"


def test_status_comparison_ignores_transition_times() -> None:
    a = podspec.pod_status(sandbox_pod(), [running("telemetry")], [running("sandbox")], "t0", "t1")
    b = podspec.pod_status(sandbox_pod(), [running("telemetry")], [running("sandbox")], "t0", "t2")
    c = podspec.pod_status(sandbox_pod(), [running("telemetry", False)], [running("sandbox")], "t0", "t2")
    assert podspec.comparable(a) == podspec.comparable(b)
    assert podspec.comparable(a) != podspec.comparable(c)


def test_the_network_policies_selecting_a_pod() -> None:
    from leap0_dev.podspec import describe_policies, selecting_policies

    pod = {"metadata": {"name": "p", "namespace": "a", "labels": {"leap0.dev/sandbox-id": "p", "tier": "x"}}}

    def policy(
        name: str, selector: dict[str, Any], namespace: str = "a", mode: str | None = None
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name, "namespace": namespace}
        if mode:
            meta["annotations"] = {"leap0.dev/network-policy": mode}
        return {"metadata": meta, "spec": {"podSelector": selector}}

    policies = [
        policy("mine", {"matchLabels": {"leap0.dev/sandbox-id": "p"}}, mode="DenyAll"),
        policy("other", {"matchLabels": {"leap0.dev/sandbox-id": "q"}}),
        policy("all", {}),
        policy("elsewhere", {}, namespace="b"),
        policy("expr", {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["x", "y"]}]}),
        policy("not-expr", {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}),
    ]
    selected = selecting_policies(pod, policies)
    assert [p["metadata"]["name"] for p in selected] == ["mine", "all", "expr"]
    assert describe_policies(selected[:1]) == "mine (DenyAll)"
    assert describe_policies(selected) == "mine (DenyAll), all, expr"
    assert describe_policies([]) == "none"


# --- the supervisor (sandbox logs) as the runner runs it ----------------------------------------------
SUPERVISED = [
    "/.leap0/leap0-supervisor",
    "run",
    "--container",
    "sandbox",
    "--",
    "python3.12",
    "-c",
    "print(1)",
]
MOUNTS = {"/.leap0": "/tmp/pod/volumes/leap0-supervisor", "/workspace": "/tmp/pod/volumes/workspace"}


def test_the_supervisor_runs_from_its_volume_and_its_python_child_with_the_local_interpreter() -> None:
    assert podspec.supervisor_child(SUPERVISED) == 5
    assert podspec.local_argv(SUPERVISED, {}, sys.executable, MOUNTS) == [
        "/tmp/pod/volumes/leap0-supervisor/leap0-supervisor",
        "run",
        "--container",
        "sandbox",
        "--",
        sys.executable,
        "-c",
        "print(1)",
    ]
    # a child that is not here: the command cannot run here
    missing = [*SUPERVISED[:5], "no-such-tool-here"]
    assert podspec.local_argv(missing, {}, sys.executable, MOUNTS) is None


def test_the_images_supervisor_is_the_local_build_and_paths_in_volumes_are_local() -> None:
    install = ["/usr/local/bin/leap0-supervisor", "install", "/.leap0/leap0-supervisor"]
    substitutes = {"/usr/local/bin/leap0-supervisor": "/cache/leap0-supervisor-linux-amd64"}
    assert podspec.local_argv(install, {}, sys.executable, MOUNTS, substitutes) == [
        "/cache/leap0-supervisor-linux-amd64",
        "install",
        "/tmp/pod/volumes/leap0-supervisor/leap0-supervisor",
    ]
    assert podspec.local_argv(install, {}, sys.executable, MOUNTS) is None  # not built: not here


def test_without_a_supervisor_the_command_runs_unwrapped() -> None:
    assert podspec.unwrap_supervisor(SUPERVISED) == ["python3.12", "-c", "print(1)"]
    assert podspec.unwrap_supervisor(["sleep", "1"]) == ["sleep", "1"]
    assert podspec.supervisor_child(["sleep", "--", "1"]) is None
    assert podspec.supervisor_child(["/x/leap0-supervisor", "run", "--"]) is None


def test_an_init_container_that_completes_initializes_the_pod() -> None:
    pod = sandbox_pod()
    copying = ContainerState(
        "leap0-supervisor", started_at="t0", running=True, waiting_reason=None, completes=True
    )
    status = podspec.pod_status(pod, [copying, running("telemetry")], [ContainerState("sandbox")], "t0", "t1")
    initialized = next(c for c in status["conditions"] if c["type"] == "Initialized")
    assert initialized["status"] == "False"
    copied = ContainerState(
        "leap0-supervisor",
        started_at="t0",
        exit_code=0,
        reason="Completed",
        waiting_reason=None,
        completes=True,
    )
    status = podspec.pod_status(pod, [copied, running("telemetry")], [running("sandbox")], "t0", "t2")
    assert status["phase"] == "Running"
    assert [c["status"] for c in status["conditions"] if c["type"] in ("Initialized", "Ready")] == [
        "True",
        "True",
    ]
    (done,) = [s for s in status["initContainerStatuses"] if s["name"] == "leap0-supervisor"]
    assert done["ready"] is True
    assert done["state"]["terminated"]["exitCode"] == 0
    failed = ContainerState(
        "leap0-supervisor", started_at="t0", exit_code=1, reason="Error", waiting_reason=None, completes=True
    )
    pod["spec"]["restartPolicy"] = "Never"
    status = podspec.pod_status(pod, [failed, running("telemetry")], [ContainerState("sandbox")], "t0", "t3")
    assert status["phase"] == "Failed"
