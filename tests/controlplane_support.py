"""Helpers of the tests against the real control plane (tests/e2e/controlplane): comparing what the real API
server and the emulator answer, and running the operator as the Helm chart's ServiceAccount."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import yaml
from kubernetes import client
from support import free_port, kubectl, logged_process, subprocess_env

from leap0_dev.controlplane.plan import token_kubeconfig

CHART = Path(__file__).resolve().parent.parent / "charts" / "leap0-operator"

if TYPE_CHECKING:
    from leap0_dev.controlplane import ControlPlane


def answer(call: Callable[[], Any], namespace: str = "") -> dict[str, Any]:
    """What the API server answered ``call()``: ``{"accepted": True}``, or the refusal's code, reason,
    message and causes (field, message), sorted, with ``namespace`` replaced by ``NS`` (the real server and
    the emulator are compared in namespaces of different names)."""
    try:
        call()
    except client.ApiException as exc:
        status = json.loads(exc.body)
        causes = sorted(
            (cause.get("field", ""), cause.get("message", ""))
            for cause in (status.get("details") or {}).get("causes", [])
        )
        message = str(status["message"])
        return {
            "code": status["code"],
            "reason": status["reason"],
            "message": message.replace(namespace, "NS") if namespace else message,
            "causes": causes,
        }
    return {"accepted": True}


class Server(Protocol):
    """The real control plane (``ControlPlane``) or the emulator (``ServerThread``): each makes admin
    clients."""

    def api_client(self) -> client.ApiClient: ...


def new_namespace(server: Server, name: str) -> str:
    """Create the namespace ``name`` on ``server``; its name (for a module's fixture)."""
    with server.api_client() as api_client:
        client.CoreV1Api(api_client).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
        )
    return name


def both_answers(
    real: tuple[Server, str], emulated: tuple[Server, str], call: Callable[[client.ApiClient, str], Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the real API server and the emulator answer (:func:`answer`) to ``call(api_client, namespace)``,
    each given as (server, namespace)."""
    answers = []
    for server, namespace in (real, emulated):
        with server.api_client() as api_client:
            answers.append(
                answer(lambda api_client=api_client, namespace=namespace: call(api_client, namespace))
            )
    return answers[0], answers[1]


def helm(
    plane: ControlPlane, home: Path, *args: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """The built ``helm`` against the control plane as its admin, with its cache, configuration and data
    under ``home`` (nothing of the machine's). A non-zero exit fails the test with helm's output."""
    env = subprocess_env(
        HELM_CACHE_HOME=str(home / "cache"),
        HELM_CONFIG_HOME=str(home / "config"),
        HELM_DATA_HOME=str(home / "data"),
    )
    command = [str(plane.binaries / "helm"), f"--kubeconfig={plane.kubeconfig}", *args]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def service_account_kubeconfig(plane: ControlPlane, namespace: str, name: str, path: Path) -> str:
    """Write a kubeconfig authenticating as the ServiceAccount ``namespace/name`` (a token from ``kubectl
    create token``, valid an hour) and return the user name the API server knows it by."""
    token = kubectl(
        plane.kubeconfig, "create", "token", name, "-n", namespace, "--duration=1h"
    ).stdout.strip()
    user = f"system:serviceaccount:{namespace}:{name}"
    path.write_text(yaml.safe_dump(token_kubeconfig(plane.url, plane.ca_pem, token, user)))
    return user


def deployment_operator_args(deployment: dict[str, Any]) -> list[str]:
    """The operator container's arguments in a Deployment the chart rendered, its fixed ports (liveness,
    metrics) moved to free ones so the operator can run as a local process beside others."""
    (container,) = [
        c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "operator"
    ]
    args: list[str] = []
    for arg in container["args"]:
        if arg.startswith("--liveness="):
            arg = f"--liveness=http://127.0.0.1:{free_port()}/healthz"
        elif arg.startswith("--metrics-port="):
            arg = f"--metrics-port={free_port()}"
        args.append(arg)
    return args


@contextlib.contextmanager
def local_operator(kubeconfig: Path, args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m leap0_operator ARGS`` against ``kubeconfig``, its output added to ``log``
    (``support.logged_process``)."""
    argv = [sys.executable, "-m", "leap0_operator", *args]
    with logged_process(argv, log, subprocess_env(KUBECONFIG=str(kubeconfig)), append=True) as process:
        yield process


@contextlib.contextmanager
def chart_operator(
    plane: ControlPlane,
    work: Path,
    release: str,
    namespace: str,
    values: list[str],
    served: list[str],
    ready: Callable[[], object] | None = None,
) -> Iterator[str]:
    """The chart installed by the built ``helm`` as release ``release`` in ``namespace`` (created) with
    ``values`` (``replicas=0`` among them: its Deployment stays, with no pod), then its operator run here as a
    local process with the Deployment's arguments and a token of its ServiceAccount; yields that account's
    user name once ``ready`` (a probe) says so. On the way out the Sandboxes of the ``served`` namespaces are
    deleted while the operator still runs (it holds finalizers on them), then the release is uninstalled and
    the served namespaces and the release's are deleted."""
    from operator_support import custom
    from support import wait_for

    import leap0_contract as contract

    api = plane.api_client()
    # --take-ownership: the CRDs exist already (applied by kubectl, or kept by an earlier release).
    install = ("install", release, str(CHART), "-n", namespace, "--create-namespace", "--take-ownership")
    helm(plane, work, *install, "--wait", "--timeout=3m", *values)
    if ready is not None:
        wait_for(ready, timeout=60, what=f"release {release} in effect", interval=0.5)
    (deployment,) = json.loads(
        kubectl(plane.kubeconfig, "get", "deployments", "-n", namespace, "-o", "json").stdout
    )["items"]
    kubeconfig = work / "operator.kubeconfig"
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    user = service_account_kubeconfig(plane, namespace, account, kubeconfig)
    with local_operator(kubeconfig, deployment_operator_args(deployment), work / "operator.log"):
        yield user
        for name in served:
            custom(api).delete_collection_namespaced_custom_object(
                contract.GROUP, contract.VERSION, name, contract.SANDBOX_PLURAL
            )
        for name in served:
            wait_for(
                lambda name=name: (
                    not custom(api).list_namespaced_custom_object(
                        contract.GROUP, contract.VERSION, name, contract.SANDBOX_PLURAL
                    )["items"]
                ),
                timeout=90,
                what=f"the Sandboxes of {name} deleted",
                interval=0.5,
            )
    helm(plane, work, "uninstall", release, "-n", namespace, "--wait")
    for name in (*served, namespace):
        client.CoreV1Api(api).delete_namespace(name)
    api.close()
