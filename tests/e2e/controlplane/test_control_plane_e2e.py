"""The real control plane itself (leap0_dev.controlplane): built from source, it reports its real version,
signs service-account tokens, enforces RBAC and PodSecurity, collects garbage and schedules; and the
`leap0 dev control-plane` commands build, run and stop it leaving nothing behind."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import support
import yaml
from kubernetes import client

from leap0_dev.controlplane import BINARIES, ControlPlane
from leap0_dev.controlplane.build import CACHE_ENV
from leap0_dev.controlplane.plan import token_kubeconfig

pytestmark = [pytest.mark.e2e, pytest.mark.realk8s]


def test_the_api_server_reports_its_real_version(control_plane: ControlPlane) -> None:
    with control_plane.api_client() as api_client:
        version = client.VersionApi(api_client).get_code()
    assert (version.git_version, version.major, version.minor) == ("v1.36.3", "1", "36")
    assert version.git_tree_state == "clean"


def test_a_service_account_token_authenticates_and_rbac_refuses_what_it_was_not_granted(
    control_plane: ControlPlane, k8s_namespace: str, tmp_path: Path
) -> None:
    token = support.kubectl(
        control_plane.kubeconfig, "create", "token", "default", "-n", k8s_namespace
    ).stdout
    kubeconfig = tmp_path / "sa.kubeconfig"
    user = f"system:serviceaccount:{k8s_namespace}:default"
    kubeconfig.write_text(
        yaml.safe_dump(token_kubeconfig(control_plane.url, control_plane.ca_pem, token.strip(), user))
    )
    whoami = json.loads(support.kubectl(kubeconfig, "auth", "whoami", "-o", "json").stdout)
    assert whoami["status"]["userInfo"]["username"] == user
    refused = support.kubectl(kubeconfig, "get", "secrets", "-n", k8s_namespace, check=False)
    assert refused.returncode != 0
    assert f'User "{user}" cannot list resource "secrets"' in refused.stderr
    # The audit log saw it: what the chart's RBAC tests rely on to catch any 403 of the operator.
    assert f"list {k8s_namespace}/secrets: 403" in control_plane.forbidden(user)


def test_the_controller_manager_collects_garbage(control_plane: ControlPlane, k8s_namespace: str) -> None:
    with control_plane.api_client() as api_client:
        core = client.CoreV1Api(api_client)
        owner = core.create_namespaced_config_map(
            k8s_namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
        )
        reference = client.V1OwnerReference(
            api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
        )
        core.create_namespaced_config_map(
            k8s_namespace,
            client.V1ConfigMap(metadata=client.V1ObjectMeta(name="dependent", owner_references=[reference])),
        )
        core.delete_namespaced_config_map("owner", k8s_namespace)
        names = lambda: {item.metadata.name for item in core.list_namespaced_config_map(k8s_namespace).items}  # noqa: E731
        support.wait_for(
            lambda: "dependent" not in names(), timeout=60, what="the dependent collected", interval=0.5
        )


def test_the_scheduler_reports_a_pod_no_node_can_take(
    control_plane: ControlPlane, k8s_namespace: str
) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "nowhere"},
        "spec": {
            "nodeSelector": {"leap0.dev/no-such-node": "true"},
            "containers": [{"name": "c", "image": "busybox"}],
        },
    }
    with control_plane.api_client() as api_client:
        core = client.CoreV1Api(api_client)
        core.create_namespaced_pod(k8s_namespace, pod)

        def unschedulable() -> bool:
            conditions = core.read_namespaced_pod("nowhere", k8s_namespace).status.conditions or []
            return any(c.type == "PodScheduled" and c.reason == "Unschedulable" for c in conditions)

        support.wait_for(
            unschedulable, timeout=60, what="the scheduler's Unschedulable condition", interval=0.5
        )


def test_podsecurity_admission_enforces_the_namespaces_level(
    control_plane: ControlPlane, k8s_namespace: str
) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "privileged"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": True}}]},
    }
    with control_plane.api_client() as api_client:
        core = client.CoreV1Api(api_client)
        core.patch_namespace(
            k8s_namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "baseline"}}}
        )
        with pytest.raises(client.ApiException) as refused:
            core.create_namespaced_pod(k8s_namespace, pod)
    assert refused.value.status == 403
    assert json.loads(refused.value.body)["message"] == (
        'pods "privileged" is forbidden: violates PodSecurity "baseline:latest": privileged (container "c" '
        "must not set securityContext.privileged=true)"
    )


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "leap0.cli", "dev", "control-plane", *args]


def test_build_prints_the_folder_holding_the_five_binaries(control_plane: ControlPlane) -> None:
    result = subprocess.run(
        _command("build"),
        capture_output=True,
        text=True,
        env=support.subprocess_env(),
        timeout=120,
        check=True,
    )
    (line,) = result.stdout.splitlines()
    folder = Path(line)
    assert folder == control_plane.binaries
    assert all((folder / name).is_file() for name in BINARIES)
    assert not folder.is_relative_to(support.REPO)


def test_build_without_go_or_assets_exits_2_saying_what_to_install(tmp_path: Path) -> None:
    env = support.subprocess_env(PATH=str(tmp_path), **{CACHE_ENV: str(tmp_path / "cache")})
    env.pop("KUBEBUILDER_ASSETS", None)
    result = subprocess.run(
        _command("build"), capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert "install Go 1.26 or newer" in result.stderr
    assert "KUBEBUILDER_ASSETS" in result.stderr


def test_up_serves_until_sigterm_and_leaves_no_process_behind(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig.yaml"
    process = subprocess.Popen(
        _command("up", "--port", "0", "--kubeconfig", str(kubeconfig), "--data-dir", str(tmp_path / "data")),
        env=support.subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        support.wait_for(kubeconfig.exists, timeout=240, what="the admin kubeconfig", interval=0.5)
        nodes = support.kubectl(kubeconfig, "get", "--raw", "/readyz")
        assert nodes.stdout == "ok"
        wanted = {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}

        def all_four() -> list[psutil.Process]:
            children = psutil.Process(process.pid).children(recursive=True)
            return children if wanted <= {child.name() for child in children} else []

        components = support.wait_for(all_four, timeout=240, what="the four components", interval=0.5)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        support.stop_process_tree(process)
    assert process.returncode == 0, stderr
    assert "control-plane: stopped" in stderr
    assert [child for child in components if support.alive(child)] == []
