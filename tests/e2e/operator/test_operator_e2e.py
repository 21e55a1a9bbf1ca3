"""The operator as a process against the embedded API server; the test plays kubectl and the kubelet."""

from __future__ import annotations

import contextlib
import datetime
import signal
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kopf
import operator_support as ops
import pytest
from aiohttp import web
from kubernetes import client
from support import REPO, FreezingProxy, free_port, kubectl, wait_for

import leap0_contract as contract
from leap0_dev.apiserver.routing import parse_resource_path
from leap0_dev.apiserver.server import user_agent_product
from leap0_operator.lifecycle import parse_time

pytestmark = pytest.mark.e2e
EXAMPLES = REPO / "examples"


def wait_until_serving(api: client.ApiClient, namespace: str) -> None:
    """The operator is up and reconciling (for timing-sensitive tests): a probe Sandbox got its pod."""
    ops.create_sandbox(api, namespace, "ready-probe", timeout=600)
    wait_for(
        ops.pod_exists(api, namespace, "ready-probe"),
        timeout=60,
        what="the operator to serve",
        ignore=ops.API_ERRORS,
    )


def test_applied_example_gets_its_pod_and_status_follows_the_kubelet(
    apiserver: Any, api: client.ApiClient, namespace: str, start_operator: Callable[..., ops.Operator]
) -> None:
    start_operator()
    kubectl(apiserver.kubeconfig, "-n", namespace, "apply", "-f", str(EXAMPLES / "sandbox-minimal.yaml"))
    pod = wait_for(
        ops.pod_exists(api, namespace, "minimal"), timeout=20, what="the sandbox pod", ignore=ops.API_ERRORS
    )
    assert pod.metadata.labels[contract.LABEL_SANDBOX_ID] == "minimal"
    assert pod.metadata.labels[contract.LABEL_ORG_ID] == namespace
    (owner,) = pod.metadata.owner_references
    assert (owner.kind, owner.name, owner.controller) == ("Sandbox", "minimal", True)
    assert [c.name for c in pod.spec.containers] == ["sandbox"]
    # the supervisor's copy (sandbox logs, on by default), then the native sidecar
    assert [c.name for c in pod.spec.init_containers] == [contract.SUPERVISOR_INIT_CONTAINER, "telemetry"]
    pending = ops.wait_phase(api, namespace, "minimal", "Pending", timeout=20)
    assert pending["podName"] == "minimal"
    assert pending[contract.STATUS_SUPERVISOR] == contract.SUPERVISOR_PATH
    assert pending["vcpu"] == 1
    assert pending["memory"] == 1024
    assert pending["expiresAt"]

    ops.play_kubelet(api, namespace, "minimal", sandbox_state=ops.RUNNING)
    running = ops.wait_phase(api, namespace, "minimal", "Running", timeout=20)
    assert running["podIP"] == "10.1.2.3"
    assert running["startedAt"] == "2026-01-01T00:00:02Z"
    ready = {c["type"]: c for c in running["conditions"]}[contract.CONDITION_READY]
    assert ready["status"] == "True"

    oom = {"terminated": {"reason": "OOMKilled", "exitCode": 137}}
    ops.play_kubelet(api, namespace, "minimal", sandbox_state=oom)
    failed = ops.wait_phase(api, namespace, "minimal", "Failed", timeout=20)
    assert failed["reason"] == contract.REASON_OOM_KILLED
    assert "out of memory" in failed["message"]
    table = kubectl(apiserver.kubeconfig, "-n", namespace, "get", "sandboxes").stdout
    assert "minimal" in table


def test_deleted_pod_is_recreated_and_deleting_the_sandbox_deletes_it(
    api: client.ApiClient, namespace: str, start_operator: Callable[..., ops.Operator]
) -> None:
    start_operator()
    ops.create_sandbox(api, namespace, "phoenix", timeout=600)
    first = wait_for(
        ops.pod_exists(api, namespace, "phoenix"), timeout=20, what="the pod", ignore=ops.API_ERRORS
    )
    ops.core(api).delete_namespaced_pod("phoenix", namespace)
    second = wait_for(
        lambda: (
            (p := ops.core(api).read_namespaced_pod("phoenix", namespace)).metadata.uid != first.metadata.uid
            and p
        ),
        timeout=20,
        what="a new pod",
        ignore=ops.API_ERRORS,
    )
    assert second.metadata.owner_references[0].name == "phoenix"
    ops.custom(api).delete_namespaced_custom_object(
        contract.GROUP, contract.VERSION, namespace, contract.SANDBOX_PLURAL, "phoenix"
    )
    wait_for(
        ops.pod_gone(api, namespace, "phoenix"),
        timeout=20,
        what="the pod to go with its Sandbox",
        ignore=ops.API_ERRORS,
    )


def test_expiry_deletes_the_pod_and_extending_the_timeout_postpones_it(
    api: client.ApiClient, namespace: str, start_operator: Callable[..., ops.Operator]
) -> None:
    start_operator()
    wait_until_serving(api, namespace)
    ops.create_sandbox(api, namespace, "short", timeout=2)
    ops.create_sandbox(api, namespace, "extended", timeout=3)
    # Extended at once: the patch lands long before the original deadline, however busy the machine.
    ops.custom(api).patch_namespaced_custom_object(
        contract.GROUP,
        contract.VERSION,
        namespace,
        contract.SANDBOX_PLURAL,
        "extended",
        {"spec": {"timeout": 6}},
    )
    wait_for(
        lambda: ops.pod_exists(api, namespace, "short")() and ops.pod_exists(api, namespace, "extended")(),
        timeout=20,
        what="pods",
        ignore=ops.API_ERRORS,
    )
    expired = ops.wait_phase(api, namespace, "short", "Expired", timeout=30)
    assert expired["reason"] == contract.REASON_EXPIRED
    assert ops.pod_gone(api, namespace, "short")()
    # The extended one expires at its new deadline (creation + 6 s), not at the original one (+ 3 s).
    ops.wait_phase(api, namespace, "extended", "Expired", timeout=30)
    assert ops.pod_gone(api, namespace, "extended")()
    extended = ops.sandbox(api, namespace, "extended")
    created = parse_time(extended["metadata"]["creationTimestamp"])
    expires_at = parse_time(extended["status"]["expiresAt"])
    assert expires_at == created + datetime.timedelta(seconds=6)
    # It outlived the original deadline: its Expired Event was posted at the new one, or after.
    listed = ops.core(api).list_namespaced_event(
        namespace, field_selector="involvedObject.kind=Sandbox,involvedObject.name=extended"
    )
    expiry = next(e for e in listed.items if e.reason == contract.REASON_EXPIRED)
    assert expiry.metadata.creation_timestamp >= expires_at

    # Expired Sandboxes are deleted after the retention period (2 s here).
    def expired_ones_deleted() -> bool:
        return not {"short", "extended"} & {
            item["metadata"]["name"] for item in ops.sandboxes(api, namespace)
        }

    wait_for(
        expired_ones_deleted,
        timeout=10,
        what="retention to delete the expired Sandboxes",
        ignore=ops.API_ERRORS,
    )


def test_an_unknown_template_is_waited_for_with_a_clear_message_and_templates_apply(
    apiserver: Any, api: client.ApiClient, namespace: str, start_operator: Callable[..., ops.Operator]
) -> None:
    start_operator()
    ops.create_sandbox(api, namespace, "orphan", template="does-not-exist")
    waiting = ops.wait_phase(api, namespace, "orphan", "Pending", timeout=20)
    assert waiting["reason"] == contract.REASON_TEMPLATE_NOT_FOUND
    assert 'SandboxTemplate "does-not-exist" does not exist' in waiting["message"]
    assert ops.pod_gone(api, namespace, "orphan")()
    # Creating the missing template lets it start (the SDK's create(), waiting for Running, would go on).
    template = {
        "apiVersion": contract.API_VERSION,
        "kind": contract.TEMPLATE_KIND,
        "metadata": {"name": "does-not-exist"},
        "spec": {"vcpu": 3},
    }
    ops.custom(api).create_namespaced_custom_object(
        contract.GROUP, contract.VERSION, namespace, contract.TEMPLATE_PLURAL, template
    )
    late = wait_for(
        ops.pod_exists(api, namespace, "orphan"),
        timeout=20,
        what="the pod once the template exists",
        ignore=ops.API_ERRORS,
    )
    assert late.spec.containers[0].resources.limits["cpu"] == "3"

    kubectl(apiserver.kubeconfig, "-n", namespace, "apply", "-f", str(EXAMPLES / "template.yaml"))
    kubectl(apiserver.kubeconfig, "-n", namespace, "apply", "-f", str(EXAMPLES / "sandbox-telemetry.yaml"))
    ops.create_sandbox(api, namespace, "templated")
    pod = wait_for(
        ops.pod_exists(api, namespace, "templated"),
        timeout=20,
        what="the templated pod",
        ignore=ops.API_ERRORS,
    )
    limits = pod.spec.containers[0].resources.limits
    assert limits == {"cpu": "2", "memory": "2048Mi", "ephemeral-storage": "2048Mi"}
    status = ops.wait_phase(api, namespace, "templated", "Pending", timeout=20)
    assert (status["vcpu"], status["memory"], status["disk"], status["templateId"]) == (
        2,
        2048,
        2048,
        "default",
    )

    telemetry_pod = wait_for(
        ops.pod_exists(api, namespace, "with-telemetry"),
        timeout=20,
        what="the telemetry pod",
        ignore=ops.API_ERRORS,
    )
    (sidecar,) = [c for c in telemetry_pod.spec.init_containers if c.name == contract.TELEMETRY_CONTAINER]
    sidecar_env = {e.name: e for e in sidecar.env}
    assert sidecar_env["OTEL_EXPORTER_OTLP_ENDPOINT"].value == "https://otlp.example.com"
    headers_ref = sidecar_env["OTEL_EXPORTER_OTLP_HEADERS"].value_from.secret_key_ref
    assert (headers_ref.name, headers_ref.key) == ("otlp-credentials", "headers")
    app_env = {e.name: e.value for e in telemetry_pod.spec.containers[0].env}
    assert app_env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:4318"
    assert "OTEL_EXPORTER_OTLP_HEADERS" not in app_env


def test_an_edited_pod_is_reported_not_fought(
    api: client.ApiClient, namespace: str, start_operator: Callable[..., ops.Operator]
) -> None:
    start_operator()
    ops.create_sandbox(api, namespace, "edited", timeout=600)
    pod = wait_for(
        ops.pod_exists(api, namespace, "edited"), timeout=20, what="the pod", ignore=ops.API_ERRORS
    )
    ops.core(api).patch_namespaced_pod(
        "edited", namespace, {"spec": {"containers": [{"name": "sandbox", "image": "evil:1"}]}}
    )

    def drift() -> dict[str, Any] | None:
        conditions = (ops.sandbox(api, namespace, "edited").get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == contract.CONDITION_POD_SPEC_DRIFT), None)

    condition = wait_for(drift, timeout=20, what="the PodSpecDrift condition", ignore=ops.API_ERRORS)
    assert condition["status"] == "True"
    assert "evil:1" in condition["message"]
    time.sleep(0.5)
    now = ops.core(api).read_namespaced_pod("edited", namespace)
    assert now.metadata.uid == pod.metadata.uid  # not recreated
    assert now.spec.containers[0].image == "evil:1"  # not reverted


def test_killing_and_restarting_the_operator_leaves_exactly_one_pod_each(
    api: client.ApiClient, namespace: str, start_operator: Callable[..., ops.Operator]
) -> None:
    names = [f"r{i}" for i in range(15)]
    first = start_operator()
    wait_until_serving(api, namespace)
    for name in names[:8]:
        ops.create_sandbox(api, namespace, name, timeout=600)
    wait_for(
        lambda: ops.core(api).list_namespaced_pod(namespace).items,
        timeout=20,
        what="some pods",
        ignore=ops.API_ERRORS,
    )
    first.stop(signal.SIGKILL)
    for name in names[8:]:
        ops.create_sandbox(api, namespace, name, timeout=600)
    ops.create_sandbox(api, namespace, "expires-while-down", timeout=1)
    time.sleep(1.5)
    start_operator("--expired-retention", "60")

    def all_pods() -> list[str] | None:
        pods = sorted(p.metadata.name for p in ops.core(api).list_namespaced_pod(namespace).items)
        return pods if set(names) <= set(pods) else None

    pods = wait_for(all_pods, timeout=20, what="a pod per Sandbox", ignore=ops.API_ERRORS)
    # One each, none for the Sandbox that expired while the operator was down.
    assert pods == sorted([*names, "ready-probe"])
    ops.wait_phase(api, namespace, "expires-while-down", "Expired", timeout=10)
    for name in names:
        ops.wait_phase(api, namespace, name, "Pending", timeout=20)


def test_two_replicas_with_peering_create_one_pod_per_sandbox(
    api: client.ApiClient, namespace: str, start_operator: Callable[..., ops.Operator]
) -> None:
    peering = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "leap0"}}
    ops.custom(api).create_namespaced_custom_object("kopf.dev", "v1", namespace, "kopfpeerings", peering)
    start_operator("--peering", "leap0", "--priority", "10")
    start_operator("--peering", "leap0", "--priority", "20")
    names = [f"p{i}" for i in range(10)]
    for name in names:
        ops.create_sandbox(api, namespace, name, timeout=600)

    def all_pods() -> list[str] | None:
        pods = [p.metadata.name for p in ops.core(api).list_namespaced_pod(namespace).items]
        return pods if set(names) <= set(pods) else None

    pods = wait_for(all_pods, timeout=30, what="a pod per Sandbox", ignore=ops.API_ERRORS)
    assert sorted(pods) == sorted(names)
    for name in names:
        ops.wait_phase(api, namespace, name, "Pending", timeout=20)


def test_kopf_run_module_reads_its_settings_from_the_environment(
    api: client.ApiClient, namespace: str, start_operator: Callable[..., ops.Operator]
) -> None:
    start_operator("kopf", "--standalone", LEAP0_OPERATOR_SIDECAR_IMAGE="registry.local/sidecar:test")
    ops.create_sandbox(api, namespace, "via-kopf", timeout=600)
    pod = wait_for(
        ops.pod_exists(api, namespace, "via-kopf"), timeout=20, what="the pod", ignore=ops.API_ERRORS
    )
    assert pod.spec.init_containers[0].image == "registry.local/sidecar:test"


def test_a_restarted_operator_writes_nothing_when_nothing_changed(
    apiserver: Any, api: client.ApiClient, namespace: str, start_operator: Callable[..., ops.Operator]
) -> None:
    first = start_operator()
    names = [f"q{i}" for i in range(5)]
    for name in names:
        ops.create_sandbox(api, namespace, name, timeout=600)
    for name in names:
        wait_for(ops.pod_exists(api, namespace, name), timeout=20, what="the pod", ignore=ops.API_ERRORS)
        ops.play_kubelet(api, namespace, name, sandbox_state=ops.RUNNING)
    for name in names:
        ops.wait_phase(api, namespace, name, "Running", timeout=20)
    first.stop()
    before = ops.operator_writes(apiserver)
    second = start_operator()
    wait_for(
        lambda: "leap0 operator:" in second.log.read_text(),
        timeout=20,
        what="the restarted operator's first pass",
        ignore=ops.API_ERRORS,
    )
    time.sleep(2)  # long enough to have seen every Sandbox and pod again
    assert ops.operator_writes(apiserver) == before


class PodPostFaults:
    """Fault injection on the embedded API server: the first pod POSTs of one namespace get the given
    answers ((status, reason, extra headers) each); every POST attempt is recorded with its time."""

    def __init__(self, apiserver: Any, namespace: str, *answers: tuple[int, str, dict[str, str]]) -> None:
        self.server = apiserver.server
        self.path = f"/api/v1/namespaces/{namespace}/pods"
        self.answers = list(answers)
        self.attempts: list[float] = []

    def __call__(self, request: web.Request) -> web.StreamResponse | None:
        if request.method != "POST" or request.path.rstrip("/") != self.path:
            return None
        self.attempts.append(time.monotonic())
        if not self.answers:
            return None
        code, reason, headers = self.answers.pop(0)
        body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason,
                "message": f"injected {reason}: spec.containers[0].image: Invalid value"}  # fmt: skip
        return web.json_response(body, status=code, headers=headers)

    def __enter__(self) -> PodPostFaults:
        self.server.intercept = self
        return self

    def __exit__(self, *_: object) -> None:
        self.server.intercept = None


def test_api_errors_that_may_recover_are_retried_with_backoff(
    apiserver: Any, api: client.ApiClient, namespace: str, start_operator: Callable[..., ops.Operator]
) -> None:
    # A 500, then a 429 asking for 1 s: TemporaryErrors; the third POST succeeds (--retry-delay 1).
    faults = PodPostFaults(
        apiserver, namespace, (500, "InternalError", {}), (429, "TooManyRequests", {"Retry-After": "1"})
    )
    with faults:
        operator = start_operator()
        ops.create_sandbox(api, namespace, "flaky")
        wait_for(
            ops.pod_exists(api, namespace, "flaky"),
            timeout=30,
            what="the pod after two failed POSTs",
            ignore=ops.API_ERRORS,
        )
        status = ops.wait_phase(api, namespace, "flaky", "Pending", timeout=20)
    assert status["reason"] == contract.REASON_POD_CREATED
    first, second, third = faults.attempts  # retried, once per failure, no more
    assert second - first >= 0.9  # the retry delay
    assert third - second >= 1.9  # the second failure in a row waits twice as long (backoff)
    log = operator.log.read_text()
    assert "retry #1 in 1s" in log
    assert "retry #2 in 2s" in log


def test_a_pod_the_api_refuses_as_invalid_fails_the_sandbox_without_retrying(
    apiserver: Any, api: client.ApiClient, namespace: str, start_operator: Callable[..., ops.Operator]
) -> None:
    with PodPostFaults(apiserver, namespace, (422, "Invalid", {})) as faults:
        start_operator()
        ops.create_sandbox(api, namespace, "refused")
        status = ops.wait_phase(api, namespace, "refused", "Failed", timeout=20)
        time.sleep(2.5)  # well past the retry delay (1 s) and its first doubling: nothing is retried
    assert status["reason"] == contract.REASON_INVALID_SPEC
    assert "refused creating pod refused" in status["message"]
    assert "spec.containers[0].image: Invalid value" in status["message"]
    assert len(faults.attempts) == 1
    assert ops.pod_gone(api, namespace, "refused")()


def test_every_call_the_operator_makes_is_in_its_rbac_list(
    apiserver: Any, api: client.ApiClient, namespace: str, start_operator: Callable[..., ops.Operator]
) -> None:
    """API_CALLS (hence operator/rbac.yaml and the chart's RBAC) is checked against the requests the operator
    really sends through a whole life: peering, pod creation, status, recreation, expiry and retention."""
    from leap0_operator.apicalls import permissions

    peering = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "leap0"}}
    ops.custom(api).create_namespaced_custom_object("kopf.dev", "v1", namespace, "kopfpeerings", peering)
    with ops.OperatorCalls(apiserver) as calls:
        start_operator("--peering", "leap0", "--priority", "10")
        ops.create_sandbox(api, namespace, "audited", timeout=600)
        first = wait_for(
            ops.pod_exists(api, namespace, "audited"), timeout=20, what="the pod", ignore=ops.API_ERRORS
        )
        ops.play_kubelet(api, namespace, "audited", sandbox_state=ops.RUNNING)
        ops.wait_phase(api, namespace, "audited", "Running", timeout=20)
        ops.core(api).delete_namespaced_pod("audited", namespace)
        wait_for(
            lambda: ops.pod_exists(api, namespace, "audited")().metadata.uid != first.metadata.uid,
            timeout=20,
            what="the pod recreated",
            ignore=ops.API_ERRORS,
        )
        # (expired now: a timeout already past, set only once the pod was recreated, however long that took)
        ops.custom(api).patch_namespaced_custom_object(
            contract.GROUP,
            contract.VERSION,
            namespace,
            contract.SANDBOX_PLURAL,
            "audited",
            {"spec": {"timeout": 1}},
        )
        ops.wait_phase(api, namespace, "audited", "Expired", timeout=30)
        wait_for(
            lambda: "audited" not in {s["metadata"]["name"] for s in ops.sandboxes(api, namespace)},
            timeout=10,
            what="retention to delete it",
            ignore=ops.API_ERRORS,
        )
    assert calls.seen <= permissions(), sorted(calls.seen - permissions())
    # The test saw the operator's work, not just its start-up.
    assert {
        ("", "pods", "create"),
        ("networking.k8s.io", "networkpolicies", "create"),
        ("", "pods", "delete"),
        (contract.GROUP, "sandboxes/status", "patch"),
        (contract.GROUP, "sandboxes", "delete"),
        ("kopf.dev", "kopfpeerings", "patch"),
        ("", "events", "create"),
    } <= calls.seen


def test_a_namespaced_operator_leaves_other_namespaces_alone(
    api: client.ApiClient, namespace: str, start_operator: Callable[..., ops.Operator]
) -> None:
    """`-n NS` serves NS only: a Sandbox elsewhere gets neither a pod nor a status from this operator."""
    other = f"{namespace}-other"
    ops.core(api).create_namespace({"metadata": {"name": other}})
    try:
        start_operator()
        ops.create_sandbox(api, other, "outsider", timeout=600)
        ops.create_sandbox(api, namespace, "insider", timeout=600)
        wait_for(
            ops.pod_exists(api, namespace, "insider"),
            timeout=20,
            what="the served namespace's pod",
            ignore=ops.API_ERRORS,
        )
        ops.wait_phase(api, namespace, "insider", "Pending", timeout=20)
        time.sleep(1)  # the outsider was created first: had it been seen, its pod would exist by now
        assert ops.pod_gone(api, other, "outsider")()
        assert "status" not in ops.sandbox(api, other, "outsider")
    finally:
        with contextlib.suppress(client.ApiException):
            ops.core(api).delete_namespace(other)


# --- surviving what real clusters do: silent watches, re-lists after 410 Gone, API outages -----------------


def test_a_frozen_connection_delays_nothing_past_the_watch_timeout(
    apiserver: Any,
    api: client.ApiClient,
    namespace: str,
    start_operator: Callable[..., ops.Operator],
    tmp_path: Path,
) -> None:
    """Behind a proxy that freezes every open connection (new ones still work), with --watch-timeout 10, a
    Sandbox created, a pod deleted and a template created during the freeze are all acted on: the silent
    watches of Sandboxes, pods and templates are abandoned and resumed (a frozen watch would never end)."""
    host, port = apiserver.url.removeprefix("http://").split(":")
    with FreezingProxy(host, int(port)) as proxy:
        kubeconfig = tmp_path / "via-proxy.yaml"
        kubeconfig.write_text(apiserver.kubeconfig.read_text().replace(apiserver.url, proxy.url))
        start_operator("--watch-timeout", "10", kubeconfig=kubeconfig)
        ops.create_sandbox(api, namespace, "kept")
        ops.create_sandbox(api, namespace, "waits", template="later")
        old = wait_for(
            ops.pod_exists(api, namespace, "kept"), timeout=20, what="the first pod", ignore=ops.API_ERRORS
        )
        wait_for(
            ops.reason_is(api, namespace, "waits", contract.REASON_TEMPLATE_NOT_FOUND),
            timeout=20,
            what="waiting for its template",
            ignore=ops.API_ERRORS,
        )

        proxy.freeze()
        ops.create_sandbox(api, namespace, "fresh")
        ops.core(api).delete_namespaced_pod("kept", namespace)
        template = {"apiVersion": contract.API_VERSION, "kind": contract.TEMPLATE_KIND,
                    "metadata": {"name": "later"}, "spec": {"memory": 1024}}  # fmt: skip
        ops.custom(api).create_namespaced_custom_object(
            contract.GROUP, contract.VERSION, namespace, contract.TEMPLATE_PLURAL, template
        )
        wait_for(
            ops.pod_exists(api, namespace, "fresh"),
            timeout=30,
            what="the new Sandbox's pod",
            ignore=ops.API_ERRORS,
        )
        wait_for(
            lambda: ops.pod_exists(api, namespace, "kept")().metadata.uid != old.metadata.uid,
            timeout=30,
            what="the deleted pod recreated",
            ignore=ops.API_ERRORS,
        )
        wait_for(
            ops.pod_exists(api, namespace, "waits"),
            timeout=30,
            what="the waiting Sandbox's pod",
            ignore=ops.API_ERRORS,
        )


class WatchOutage:
    """Fault injection: while ``down``, every watch request of the operator (user agent ``kopf``) gets 503;
    ``refused`` collects the resources refused. Lists and other calls go through."""

    def __init__(self, apiserver: Any) -> None:
        self.server = apiserver.server
        self.down = False
        self.refused: set[str] = set()

    def __call__(self, request: web.Request) -> web.StreamResponse | None:
        if not self.down or user_agent_product(request.headers.get("User-Agent", "")) != "kopf":
            return None
        if request.query.get("watch", "").lower() not in ("1", "true"):
            return None
        target = parse_resource_path(request.path)
        self.refused.add(target.plural if target is not None else request.path)
        body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 503,
                "reason": "ServiceUnavailable", "message": "injected: watches are down"}  # fmt: skip
        return web.json_response(body, status=503)

    def __enter__(self) -> WatchOutage:
        self.server.intercept = self
        return self

    def __exit__(self, *_: object) -> None:
        self.server.intercept = None


@pytest.fixture
def short_history_apiserver() -> Iterator[Any]:
    """An API server of this test's own whose watches resume from at most 5 events per resource (older
    resourceVersions get 410 Gone, as after etcd compaction)."""
    from leap0_dev.apiserver import ServerThread

    with ServerThread(history_size=5) as server:
        yield server


def test_after_a_relist_the_operators_view_equals_the_apis(
    short_history_apiserver: Any, tmp_path: Path
) -> None:
    """While the watches are down, pods are deleted and Sandboxes deleted and re-created under the same names;
    the resumed watches get 410 Gone and re-list. The operator (no periodic resync) drops what the list no
    longer shows: the pods are recreated and the re-created Sandboxes get theirs, without a restart."""
    server = short_history_apiserver
    namespace = "relist"
    with server.api_client() as api:
        ops.core(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        operator = ops.Operator(
            server.kubeconfig,
            namespace,
            tmp_path / "operator.log",
            "--watch-timeout",
            "2",
            "--resync-period",
            "0",
        )
        try:
            names = [f"s{i}" for i in range(12)]
            for name in names:
                ops.create_sandbox(api, namespace, name)
            for name in names:
                wait_for(
                    ops.pod_exists(api, namespace, name),
                    timeout=20,
                    what=f"pod {name}",
                    ignore=ops.API_ERRORS,
                )
                ops.play_kubelet(api, namespace, name, sandbox_state=ops.RUNNING)
            for name in names:
                ops.wait_phase(api, namespace, name, "Running", timeout=20)
            before = {name: ops.pod_exists(api, namespace, name)().metadata.uid for name in names}

            with WatchOutage(server) as outage:
                outage.down = True
                wait_for(
                    lambda: {"pods", contract.SANDBOX_PLURAL, contract.TEMPLATE_PLURAL} <= outage.refused,
                    timeout=20,
                    what="every watch to be down",
                    ignore=ops.API_ERRORS,
                )
                for name in names[:9]:  # pods gone while nobody watched
                    ops.core(api).delete_namespaced_pod(name, namespace)
                reused = names[9:]  # Sandboxes deleted and re-created: their old pods go with them
                for name in reused:
                    ops.custom(api).delete_namespaced_custom_object(
                        contract.GROUP, contract.VERSION, namespace, contract.SANDBOX_PLURAL, name
                    )
                for name in reused:
                    wait_for(
                        ops.pod_gone(api, namespace, name),
                        timeout=20,
                        what=f"old pod {name} collected",
                        ignore=ops.API_ERRORS,
                    )
                    ops.create_sandbox(api, namespace, name)
                outage.down = False

                for name in names:
                    wait_for(
                        lambda name=name: ops.pod_exists(api, namespace, name)().metadata.uid != before[name],
                        timeout=40,
                        what=f"a new pod for {name}",
                        ignore=ops.API_ERRORS,
                    )
                for name in names:  # no longer Running on a pod that is gone
                    ops.wait_phase(api, namespace, name, "Pending", timeout=20)
            assert operator.process.poll() is None  # no restart was needed
            assert "resync of pods (after a watch re-list)" in operator.log.read_text()
        finally:
            operator.stop()
            print(operator.tail())


class ApiOutage:
    """Fault injection: while ``down``, every request of the operator (user agent ``kopf``) gets 503."""

    def __init__(self, apiserver: Any) -> None:
        self.server = apiserver.server
        self.down = False
        self.refused = 0

    def __call__(self, request: web.Request) -> web.StreamResponse | None:
        if not self.down or user_agent_product(request.headers.get("User-Agent", "")) != "kopf":
            return None
        self.refused += 1
        body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 503,
                "reason": "ServiceUnavailable", "message": "injected: the API is down"}  # fmt: skip
        return web.json_response(body, status=503)

    def __enter__(self) -> ApiOutage:
        self.server.intercept = self
        return self

    def __exit__(self, *_: object) -> None:
        self.server.intercept = None


def test_the_operator_outlives_an_api_outage_and_converges_after_it(
    apiserver: Any, api: client.ApiClient, namespace: str, start_operator: Callable[..., ops.Operator]
) -> None:
    """Every request of the operator answered 503 for longer than kopf's own retries last (their sum, 54 s,
    after which kopf's watcher gives up and the process exits 1): the operator stays up, its liveness endpoint
    answers, and a Sandbox created during the outage gets its pod once the API is back."""
    kopf_gives_up_after = sum(kopf.OperatorSettings().networking.error_backoffs)  # type: ignore[arg-type]
    outage_s = kopf_gives_up_after + 6
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    operator = start_operator("--watch-timeout", "3", "--liveness", liveness)
    ops.create_sandbox(api, namespace, "before")
    wait_for(
        ops.pod_exists(api, namespace, "before"), timeout=20, what="the first pod", ignore=ops.API_ERRORS
    )
    with ApiOutage(apiserver) as outage:
        outage.down = True
        began = time.monotonic()
        ops.create_sandbox(api, namespace, "during")
        while time.monotonic() - began < outage_s:
            assert operator.process.poll() is None, operator.tail()
            with urllib.request.urlopen(liveness, timeout=30) as response:
                assert response.status == 200
            time.sleep(2)
        assert outage.refused > 0
        assert ops.pod_gone(api, namespace, "during")()
        outage.down = False
        wait_for(
            ops.pod_exists(api, namespace, "during"),
            timeout=40,
            what="the pod of the Sandbox created during the outage",
            ignore=ops.API_ERRORS,
        )
        ops.wait_phase(api, namespace, "during", "Pending", timeout=20)
    assert operator.process.poll() is None


# --- the sandbox's life: scheduling, the startup timeout, kubelet errors, Events --------------------------
SCHEDULER_MESSAGE = (
    "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: "
    "3 No preemption victims found for incoming pod."
)


def write_pod_status(api: client.ApiClient, namespace: str, name: str, status: dict[str, Any]) -> None:
    """Write a pod status as the scheduler or the kubelet would (the whole status, every time)."""
    ops.core(api).patch_namespaced_pod_status(name, namespace, {"status": status})


def unschedulable_status() -> dict[str, Any]:
    return {
        "phase": "Pending",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": SCHEDULER_MESSAGE,
            }
        ],
    }


def waiting_status(telemetry: dict[str, Any], sandbox_state: dict[str, Any]) -> dict[str, Any]:
    return {
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "True"}],
        "initContainerStatuses": [
            {"name": "telemetry", "ready": False, "restartCount": 0, "image": "sidecar", "imageID": "",
             "state": telemetry},
        ],
        "containerStatuses": [
            {"name": "sandbox", "ready": False, "restartCount": 0, "image": "python:3.12-slim", "imageID": "",
             "state": sandbox_state},
        ],
    }  # fmt: skip


def test_unschedulable_waits_pending_then_runs_with_one_event_per_transition(
    apiserver: Any, api: client.ApiClient, namespace: str, start_operator: Callable[..., ops.Operator]
) -> None:
    """A cluster scaling up: Pending/Unschedulable with the scheduler's message (not Failed), then Running.
    `kubectl describe sbx` shows one Event per transition, reported by leap0-operator; reconciles that change
    nothing post nothing, and an idle operator writes nothing."""
    start_operator()
    ops.create_sandbox(api, namespace, "scale-up", timeout=600)
    wait_for(ops.pod_exists(api, namespace, "scale-up"), timeout=20, what="the pod", ignore=ops.API_ERRORS)
    write_pod_status(api, namespace, "scale-up", unschedulable_status())
    waiting = wait_for(
        ops.reason_is(api, namespace, "scale-up", contract.REASON_UNSCHEDULABLE),
        timeout=20,
        what="Unschedulable",
        ignore=ops.API_ERRORS,
    )
    assert waiting["phase"] == contract.PHASE_PENDING
    assert waiting["message"] == SCHEDULER_MESSAGE
    ready = {c["type"]: c for c in waiting["conditions"]}[contract.CONDITION_READY]
    assert (ready["status"], ready["reason"]) == ("False", contract.REASON_UNSCHEDULABLE)

    ops.play_kubelet(api, namespace, "scale-up", sandbox_state=ops.RUNNING)
    running = ops.wait_phase(api, namespace, "scale-up", contract.PHASE_RUNNING, timeout=20)
    assert running["startedAt"] == "2026-01-01T00:00:02Z"
    expected = [
        ("Normal", contract.REASON_UNSCHEDULABLE, SCHEDULER_MESSAGE),
        ("Normal", contract.REASON_RUNNING, "pod scale-up is running"),
    ]
    assert ops.events_once(api, namespace, "scale-up", 2) == expected

    described = kubectl(apiserver.kubeconfig, "-n", namespace, "describe", "sbx", "scale-up").stdout
    described = described.split("Events:", 1)[1]
    assert "Normal  Unschedulable" in described
    assert "leap0-operator  0/3 nodes are available: 3 Insufficient cpu." in described
    assert "Normal  Running" in described

    # Reconciles that change nothing (a label on the Sandbox, the same pod status again) write nothing, post
    # nothing, and an idle operator writes nothing at all.
    before = ops.operator_writes(apiserver)
    ops.custom(api).patch_namespaced_custom_object(
        contract.GROUP, contract.VERSION, namespace, contract.SANDBOX_PLURAL, "scale-up",
        {"metadata": {"labels": {"touched": "yes"}}},
    )  # fmt: skip
    ops.play_kubelet(api, namespace, "scale-up", sandbox_state=ops.RUNNING)
    time.sleep(2)
    assert ops.operator_writes(apiserver) == before
    assert ops.sandbox_events(api, namespace, "scale-up") == expected


def test_startup_timeout_fails_the_sandbox_and_deletes_its_pod(
    apiserver: Any, api: client.ApiClient, namespace: str, start_operator: Callable[..., ops.Operator]
) -> None:
    start_operator("--startup-timeout", "3")
    template = {
        "apiVersion": contract.API_VERSION,
        "kind": contract.TEMPLATE_KIND,
        "metadata": {"name": "patient"},
        "spec": {"startupTimeout": 3600},
    }
    ops.custom(api).create_namespaced_custom_object(
        contract.GROUP, contract.VERSION, namespace, contract.TEMPLATE_PLURAL, template
    )
    ops.create_sandbox(api, namespace, "stuck", timeout=600)
    ops.create_sandbox(api, namespace, "patient", timeout=600, template="patient")
    for name in ("stuck", "patient"):
        wait_for(ops.pod_exists(api, namespace, name), timeout=20, what="the pod", ignore=ops.API_ERRORS)
        write_pod_status(api, namespace, name, unschedulable_status())

    failed = ops.wait_phase(api, namespace, "stuck", contract.PHASE_FAILED, timeout=20)
    assert failed["reason"] == contract.REASON_STARTUP_TIMEOUT
    assert failed["message"].startswith(f"still Unschedulable after 3 s: {SCHEDULER_MESSAGE}")
    wait_for(ops.pod_gone(api, namespace, "stuck"), timeout=20, what="the pod deleted", ignore=ops.API_ERRORS)
    assert [(t, r) for t, r, _ in ops.events_once(api, namespace, "stuck", 2)] == [
        ("Normal", contract.REASON_UNSCHEDULABLE),
        ("Warning", contract.REASON_STARTUP_TIMEOUT),
    ]
    time.sleep(1)  # Failed is final: the pod is not recreated
    assert ops.pod_gone(api, namespace, "stuck")()
    assert ops.sandbox(api, namespace, "stuck")["status"]["reason"] == contract.REASON_STARTUP_TIMEOUT
    # The template's startupTimeout (an hour) wins over the operator's 3 s.
    patient = ops.sandbox(api, namespace, "patient")["status"]
    assert (patient["phase"], patient["reason"]) == (contract.PHASE_PENDING, contract.REASON_UNSCHEDULABLE)
    assert ops.pod_exists(api, namespace, "patient")()


def test_container_config_errors_surface_the_kubelets_reason_and_message(
    api: client.ApiClient, namespace: str, start_operator: Callable[..., ops.Operator]
) -> None:
    """A secretKeyRef to a missing Secret: the kubelet's CreateContainerConfigError and its message (not a
    generic 'waiting for containers'); the sandbox waits (the Secret may come) and runs once it does."""
    start_operator()
    ops.create_sandbox(api, namespace, "no-secret", timeout=600)
    wait_for(ops.pod_exists(api, namespace, "no-secret"), timeout=20, what="the pod", ignore=ops.API_ERRORS)
    missing = 'secret "otlp-credentials" not found'
    config_error = {"waiting": {"reason": "CreateContainerConfigError", "message": missing}}
    write_pod_status(
        api, namespace, "no-secret", waiting_status(config_error, {"waiting": {"reason": "PodInitializing"}})
    )
    status = wait_for(
        ops.reason_is(api, namespace, "no-secret", contract.REASON_CREATE_CONTAINER_CONFIG_ERROR),
        timeout=20,
        what="CreateContainerConfigError",
        ignore=ops.API_ERRORS,
    )
    assert (status["phase"], status["message"]) == (contract.PHASE_PENDING, missing)
    ops.play_kubelet(api, namespace, "no-secret", sandbox_state=ops.RUNNING)
    ops.wait_phase(api, namespace, "no-secret", contract.PHASE_RUNNING, timeout=20)
    assert [(t, r) for t, r, _ in ops.events_once(api, namespace, "no-secret", 2)] == [
        ("Normal", contract.REASON_CREATE_CONTAINER_CONFIG_ERROR),
        ("Normal", contract.REASON_RUNNING),
    ]


def test_a_recreated_pod_says_so_and_keeps_the_sandboxs_resources(
    api: client.ApiClient, namespace: str, start_operator: Callable[..., ops.Operator]
) -> None:
    """After its pod is deleted: status PodDeleted until the new pod runs, `startedAt` the new pod's, and the
    resources the sandbox started with, even if its template was re-created with others meanwhile."""
    start_operator()
    template = {
        "apiVersion": contract.API_VERSION,
        "kind": contract.TEMPLATE_KIND,
        "metadata": {"name": "small"},
        "spec": {"vcpu": 2, "memory": 2048},
    }

    def create_template(spec: dict[str, Any]) -> None:
        ops.custom(api).create_namespaced_custom_object(
            contract.GROUP, contract.VERSION, namespace, contract.TEMPLATE_PLURAL, {**template, "spec": spec}
        )

    create_template({"vcpu": 2, "memory": 2048})
    ops.create_sandbox(api, namespace, "reborn", timeout=600, template="small")
    first = wait_for(
        ops.pod_exists(api, namespace, "reborn"), timeout=20, what="the pod", ignore=ops.API_ERRORS
    )
    ops.play_kubelet(api, namespace, "reborn", sandbox_state=ops.RUNNING)
    ops.wait_phase(api, namespace, "reborn", contract.PHASE_RUNNING, timeout=20)

    ops.custom(api).delete_namespaced_custom_object(
        contract.GROUP, contract.VERSION, namespace, contract.TEMPLATE_PLURAL, "small"
    )
    create_template({"vcpu": 4, "memory": 4096})
    # A new sandbox of that template gets the new resources: the operator has seen the re-created template.
    ops.create_sandbox(api, namespace, "newcomer", timeout=600, template="small")
    newcomer = wait_for(
        ops.pod_exists(api, namespace, "newcomer"),
        timeout=20,
        what="the newcomer's pod",
        ignore=ops.API_ERRORS,
    )
    assert newcomer.spec.containers[0].resources.limits == {"cpu": "4", "memory": "4096Mi"}
    ops.core(api).delete_namespaced_pod("reborn", namespace)
    second = wait_for(
        lambda: (p := ops.pod_exists(api, namespace, "reborn")()).metadata.uid != first.metadata.uid and p,
        timeout=20,
        what="a new pod",
        ignore=ops.API_ERRORS,
    )
    assert second.spec.containers[0].resources.limits == {"cpu": "2", "memory": "2048Mi"}
    deleted = wait_for(
        ops.reason_is(api, namespace, "reborn", contract.REASON_POD_DELETED),
        timeout=20,
        what="PodDeleted",
        ignore=ops.API_ERRORS,
    )
    assert deleted["phase"] == contract.PHASE_PENDING
    assert "startedAt" not in deleted
    assert (deleted["vcpu"], deleted["memory"]) == (2, 2048)
    time.sleep(0.5)  # the new pod's first watch events change nothing: it still says why it is Pending
    assert ops.sandbox(api, namespace, "reborn")["status"]["reason"] == contract.REASON_POD_DELETED

    ops.play_kubelet(
        api, namespace, "reborn", sandbox_state={"running": {"startedAt": "2026-01-01T01:00:00Z"}}
    )
    running = ops.wait_phase(api, namespace, "reborn", contract.PHASE_RUNNING, timeout=20)
    assert running["startedAt"] == "2026-01-01T01:00:00Z"
    assert [r for _, r, _ in ops.events_once(api, namespace, "reborn", 3)] == [
        contract.REASON_RUNNING,
        contract.REASON_POD_DELETED,
        contract.REASON_RUNNING,
    ]


def test_names_longer_than_63_characters_are_refused_at_apply(apiserver: Any, namespace: str) -> None:
    """Sandbox and template names become label values on the pod (at most 63 characters)."""
    for kind, spec in ((contract.SANDBOX_KIND, "{timeout: 60}"), (contract.TEMPLATE_KIND, "{vcpu: 1}")):
        for length, refused in ((63, False), (64, True)):
            manifest = (
                f"apiVersion: {contract.API_VERSION}\nkind: {kind}\nmetadata: {{name: {'a' * length}}}\n"
            )
            result = kubectl(
                apiserver.kubeconfig, "-n", namespace, "apply", "-f", "-",
                input=manifest + f"spec: {spec}\n", check=False,
            )  # fmt: skip
            assert (result.returncode != 0) is refused, (kind, length, result.stderr)
            if refused:
                assert "metadata.name must be at most 63 characters" in result.stderr


class PodDeleteFaults:
    """The first ``count`` pod DELETEs in one namespace answer 500 (fault injection on the emulator)."""

    def __init__(self, apiserver: Any, namespace: str, count: int) -> None:
        self.server = apiserver.server
        self.prefix = f"/api/v1/namespaces/{namespace}/pods/"
        self.left = count

    def __call__(self, request: web.Request) -> web.StreamResponse | None:
        if request.method != "DELETE" or not request.path.startswith(self.prefix) or self.left <= 0:
            return None
        self.left -= 1
        body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500,
                "reason": "InternalError", "message": "injected: etcd is unhappy"}  # fmt: skip
        return web.json_response(body, status=500)

    def __enter__(self) -> PodDeleteFaults:
        self.server.intercept = self
        return self

    def __exit__(self, *_: object) -> None:
        self.server.intercept = None


def test_a_failing_expiry_deletion_is_one_warning_not_one_per_retry(
    apiserver: Any, api: client.ApiClient, namespace: str, start_operator: Callable[..., ops.Operator]
) -> None:
    start_operator("--expired-retention", "600")  # the Expired Sandbox stays for the test to read
    wait_until_serving(api, namespace)
    with PodDeleteFaults(apiserver, namespace, count=2):
        ops.create_sandbox(api, namespace, "sticky", timeout=2)
        wait_for(ops.pod_exists(api, namespace, "sticky"), timeout=20, what="the pod", ignore=ops.API_ERRORS)
        ops.wait_phase(api, namespace, "sticky", "Expired", timeout=20)
    assert ops.pod_gone(api, namespace, "sticky")()
    events = ops.events_once(api, namespace, "sticky", 2)
    assert [(t, r) for t, r, _ in events] == [
        ("Warning", contract.REASON_EXPIRY_DELETION_FAILED),
        ("Normal", contract.REASON_EXPIRED),
    ]
    assert "deleting pod sticky failed" in events[0][2]
    assert "injected: etcd is unhappy" in events[0][2]
