"""Pod state → the Sandbox's phase, reason and message; the startup timeout; the Events per transition."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

import leap0_contract as contract
from leap0_operator.lifecycle import (
    MAX_EVENT_MESSAGE,
    PodState,
    SandboxEvent,
    deletion_failed_event,
    event_body,
    pod_state,
    startup_deadline,
    startup_timed_out,
    startup_timeout,
    startup_timeout_message,
    transition_events,
)

CREATED = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
P, R, F = contract.PHASE_PENDING, contract.PHASE_RUNNING, contract.PHASE_FAILED
SCHEDULER = "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available."
SECRET = 'secret "otlp-headers" not found'


def at(seconds: float) -> datetime.datetime:
    return CREATED + datetime.timedelta(seconds=seconds)


def pod(
    phase: str = "Pending",
    *,
    sandbox: dict[str, Any] | None = None,
    telemetry: dict[str, Any] | None = None,
    supervisor: dict[str, Any] | None = None,
    scheduled: dict[str, Any] | None = None,
    sandbox_ready: bool = False,
    telemetry_ready: bool = False,
    last: dict[str, Any] | None = None,
    **status: Any,
) -> dict[str, Any]:
    """A sandbox pod with the given container states (``None``: the kubelet has not reported it)."""
    body: dict[str, Any] = {
        "metadata": {"name": "s", "creationTimestamp": "2026-01-01T12:00:00Z"},
        "spec": {
            "initContainers": [
                {"name": contract.SUPERVISOR_INIT_CONTAINER},  # runs to completion: copies the supervisor
                {"name": "telemetry", "restartPolicy": "Always"},  # the native sidecar
            ],
            "containers": [{"name": "sandbox"}],
        },
        "status": {"phase": phase, **status},
    }
    if scheduled is not None:
        body["status"]["conditions"] = [{"type": "PodScheduled", **scheduled}]
    init: list[dict[str, Any]] = []
    if supervisor is not None:  # a completed init container is not ready (nor does it need to be)
        init.append(
            {
                "name": contract.SUPERVISOR_INIT_CONTAINER,
                "image": "sidecar:1",
                "ready": False,
                "state": supervisor,
            }
        )
    if telemetry is not None:
        init.append({"name": "telemetry", "image": "sidecar:1", "ready": telemetry_ready, "state": telemetry})
    if init:
        body["status"]["initContainerStatuses"] = init
    if sandbox is not None:
        cs = {"name": "sandbox", "image": "python:3.12-slim", "ready": sandbox_ready, "state": sandbox}
        if last is not None:
            cs["lastState"] = last
        body["status"]["containerStatuses"] = [cs]
    return body


RUNNING = {"running": {"startedAt": "2026-01-01T12:00:05Z"}}


def waiting(reason: str, message: str = "") -> dict[str, Any]:
    return {"waiting": {"reason": reason, **({"message": message} if message else {})}}


# (pod, phase, reason, words in the message, final)
CASES: list[tuple[str, dict[str, Any], str, str, str, bool]] = [
    ("just created", pod(), P, contract.REASON_POD_CREATED, "created, waiting", False),
    (
        "unschedulable: the scheduler's message",
        pod(scheduled={"status": "False", "reason": "Unschedulable", "message": SCHEDULER}),
        P,
        contract.REASON_UNSCHEDULABLE,
        SCHEDULER,
        False,
    ),
    (
        "unschedulable without a message",
        pod(scheduled={"status": "False", "reason": "Unschedulable"}),
        P,
        contract.REASON_UNSCHEDULABLE,
        "pod s cannot be scheduled",
        False,
    ),
    (
        "scheduled, containers creating",
        pod(
            scheduled={"status": "True"},
            telemetry=waiting("ContainerCreating"),
            sandbox=waiting("PodInitializing"),
        ),
        P,
        contract.REASON_CONTAINERS_NOT_READY,
        "sandbox, telemetry",
        False,
    ),
    (
        "sidecar up, app initialising",
        pod(telemetry=RUNNING, telemetry_ready=True, sandbox=waiting("PodInitializing")),
        P,
        contract.REASON_CONTAINERS_NOT_READY,
        "waiting for sandbox to be ready",
        False,
    ),
    (
        "missing Secret: the kubelet's reason and message",
        pod(
            telemetry=waiting(contract.REASON_CREATE_CONTAINER_CONFIG_ERROR, SECRET),
            sandbox=waiting("PodInitializing"),
        ),
        P,
        contract.REASON_CREATE_CONTAINER_CONFIG_ERROR,
        SECRET,
        False,
    ),
    (
        "container cannot be created",
        pod(
            telemetry=RUNNING,
            telemetry_ready=True,
            sandbox=waiting(contract.REASON_CREATE_CONTAINER_ERROR, "failed to reserve container name"),
        ),
        P,
        contract.REASON_CREATE_CONTAINER_ERROR,
        "failed to reserve container name",
        False,
    ),
    (
        "container cannot be run",
        pod(
            telemetry=waiting(
                contract.REASON_RUN_CONTAINER_ERROR,
                'exec: "leap0-sidecar": executable file not found in $PATH',
            ),
            sandbox=waiting("PodInitializing"),
        ),
        P,
        contract.REASON_RUN_CONTAINER_ERROR,
        "executable file not found",
        False,
    ),
    (
        "setup error without a message",
        pod(sandbox=waiting(contract.REASON_CREATE_CONTAINER_ERROR)),
        P,
        contract.REASON_CREATE_CONTAINER_ERROR,
        "container sandbox cannot start",
        False,
    ),
    (
        "image pull: Failed at once, not final (the kubelet retries)",
        pod(sandbox=waiting("ErrImagePull", "pull access denied")),
        F,
        contract.REASON_IMAGE_PULL_ERROR,
        "cannot pull python:3.12-slim (ErrImagePull): pull access denied",
        False,
    ),
    (
        "image pull back-off",
        pod(sandbox=waiting("ImagePullBackOff", 'Back-off pulling image "x"')),
        F,
        contract.REASON_IMAGE_PULL_ERROR,
        "ImagePullBackOff",
        False,
    ),
    (
        "invalid image name",
        pod(sandbox=waiting("InvalidImageName")),
        F,
        contract.REASON_IMAGE_PULL_ERROR,
        "InvalidImageName",
        False,
    ),
    (
        "sidecar crash loop",
        pod("Running", telemetry=waiting("CrashLoopBackOff"), sandbox=RUNNING),
        F,
        contract.REASON_CRASH_LOOP,
        "telemetry keeps crashing",
        False,
    ),
    (
        "running",
        pod("Running", telemetry=RUNNING, telemetry_ready=True, sandbox=RUNNING, sandbox_ready=True),
        R,
        contract.REASON_RUNNING,
        "is running",
        False,
    ),
    (
        "running, the supervisor copied",
        pod(
            "Running",
            supervisor={"terminated": {"reason": "Completed", "exitCode": 0}},
            telemetry=RUNNING,
            telemetry_ready=True,
            sandbox=RUNNING,
            sandbox_ready=True,
        ),
        R,
        contract.REASON_RUNNING,
        "is running",
        False,
    ),
    (
        "copying the supervisor",
        pod(scheduled={"status": "True"}, supervisor=RUNNING, sandbox=waiting("PodInitializing")),
        P,
        contract.REASON_CONTAINERS_NOT_READY,
        "waiting for sandbox, telemetry",
        False,
    ),
    (
        "the supervisor could not be copied",
        pod(
            "Failed",
            supervisor={"terminated": {"reason": "Error", "exitCode": 1}},
            sandbox=waiting("PodInitializing"),
        ),
        F,
        contract.REASON_CONTAINER_FAILED,
        "init container leap0-supervisor exited with code 1 (Error)",
        True,
    ),
    (
        "OOM killed",
        pod("Failed", sandbox={"terminated": {"reason": "OOMKilled", "exitCode": 137}}),
        F,
        contract.REASON_OOM_KILLED,
        "out of memory",
        True,
    ),
    (
        "exit 1",
        pod("Failed", sandbox={"terminated": {"reason": "Error", "exitCode": 1}}),
        F,
        contract.REASON_CONTAINER_FAILED,
        "exited with code 1",
        True,
    ),
    (
        "start error ends as exit 128",
        pod("Failed", sandbox={"terminated": {"reason": "StartError", "exitCode": 128}}),
        F,
        contract.REASON_CONTAINER_FAILED,
        "code 128 (StartError)",
        True,
    ),
    (
        "exit 0",
        pod("Succeeded", sandbox={"terminated": {"reason": "Completed", "exitCode": 0}}),
        F,
        contract.REASON_COMPLETED,
        "code 0",
        True,
    ),
    (
        "evicted",
        pod("Failed", reason="Evicted", message="The node was low on resource: memory."),
        F,
        contract.REASON_POD_FAILED,
        "low on resource",
        True,
    ),
    (
        "a setup error loses to an ended container",
        pod(
            "Failed",
            telemetry=waiting("CreateContainerError", "x"),
            sandbox={"terminated": {"reason": "Error", "exitCode": 2}},
        ),
        F,
        contract.REASON_CONTAINER_FAILED,
        "code 2",
        True,
    ),
]


@pytest.mark.parametrize(
    ("case", "body", "phase", "reason", "words", "final"), CASES, ids=[c[0] for c in CASES]
)
def test_pod_state(case: str, body: dict[str, Any], phase: str, reason: str, words: str, final: bool) -> None:
    state = pod_state(body)
    assert (state.phase, state.reason, state.final) == (phase, reason, final), state
    assert words in state.message


# --- startup timeout ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (None, 600),
        ({}, 600),
        ({"startupTimeout": 30}, 30),
        ({"startupTimeout": 0}, 600),
        ({"startupTimeout": True}, 600),
    ],
)
def test_a_templates_startup_timeout_wins_over_the_operators(template: Any, expected: int) -> None:
    assert startup_timeout(template, 600) == expected


def test_the_deadline_counts_from_the_pods_creation() -> None:
    assert startup_deadline(pod(), 600) == at(600)
    assert startup_deadline({"metadata": {"name": "s"}}, 600) is None  # POSTed, not yet seen: no stamp


UNSCHEDULABLE = PodState(P, contract.REASON_UNSCHEDULABLE, SCHEDULER)


@pytest.mark.parametrize(
    ("state", "started", "now", "expected"),
    [
        (UNSCHEDULABLE, False, at(599), False),
        (UNSCHEDULABLE, False, at(600), True),
        (PodState(P, contract.REASON_CONTAINERS_NOT_READY, "waiting"), False, at(601), True),
        (
            PodState(F, contract.REASON_IMAGE_PULL_ERROR, "cannot pull"),
            False,
            at(601),
            True,
        ),  # retried: not final
        (PodState(F, contract.REASON_CONTAINER_FAILED, "exit 1", final=True), False, at(601), False),
        (PodState(R, contract.REASON_RUNNING, "running"), False, at(601), False),
        (
            PodState(P, contract.REASON_CONTAINERS_NOT_READY, "waiting"),
            True,
            at(601),
            False,
        ),  # was Running once
    ],
)
def test_startup_timed_out(state: PodState, started: bool, now: datetime.datetime, expected: bool) -> None:
    assert startup_timed_out(state, started, at(600), now) is expected
    assert startup_timed_out(state, started, None, now) is False


def test_the_startup_timeout_message_names_the_last_pod_reason() -> None:
    assert startup_timeout_message(UNSCHEDULABLE, 600) == (
        f"still Unschedulable after 600 s: {SCHEDULER}; its pod was deleted"
    )


# --- events ---------------------------------------------------------------------------------------------
def status(
    phase: str | None, reason: str | None, message: str = "m", drift: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"phase": phase, "reason": reason, "message": message} if phase else {}
    if drift is not None:
        body["conditions"] = [{"type": contract.CONDITION_POD_SPEC_DRIFT, "status": "True", "message": drift}]
    return body


N, W = contract.EVENT_TYPE_NORMAL, contract.EVENT_TYPE_WARNING
EVENT_CASES: list[tuple[str, dict[str, Any], dict[str, Any], list[tuple[str, str]]]] = [
    ("a new sandbox's first Pending posts nothing", {}, status(P, contract.REASON_POD_CREATED), []),
    (
        "ordinary progress within Pending posts nothing",
        status(P, contract.REASON_POD_CREATED),
        status(P, contract.REASON_CONTAINERS_NOT_READY),
        [],
    ),
    (
        "the same status twice posts nothing",
        status(R, contract.REASON_RUNNING),
        status(R, contract.REASON_RUNNING),
        [],
    ),
    (
        "Pending → Running",
        status(P, contract.REASON_CONTAINERS_NOT_READY),
        status(R, contract.REASON_RUNNING),
        [(N, contract.REASON_RUNNING)],
    ),
    (
        "Pending → Unschedulable",
        status(P, contract.REASON_POD_CREATED),
        status(P, contract.REASON_UNSCHEDULABLE),
        [(N, contract.REASON_UNSCHEDULABLE)],
    ),
    (
        "Unschedulable → scheduled, creating",
        status(P, contract.REASON_UNSCHEDULABLE),
        status(P, contract.REASON_CONTAINERS_NOT_READY),
        [],
    ),
    (
        "a missing Secret",
        status(P, contract.REASON_CONTAINERS_NOT_READY),
        status(P, contract.REASON_CREATE_CONTAINER_CONFIG_ERROR),
        [(N, contract.REASON_CREATE_CONTAINER_CONFIG_ERROR)],
    ),
    (
        "Running → Failed",
        status(R, contract.REASON_RUNNING),
        status(F, contract.REASON_OOM_KILLED),
        [(W, contract.REASON_OOM_KILLED)],
    ),
    (
        "a new sandbox straight to Failed",
        {},
        status(F, contract.REASON_TEMPLATE_NOT_FOUND),
        [(W, contract.REASON_TEMPLATE_NOT_FOUND)],
    ),
    (
        "Failed → Failed with another reason",
        status(F, contract.REASON_IMAGE_PULL_ERROR),
        status(F, contract.REASON_STARTUP_TIMEOUT),
        [(W, contract.REASON_STARTUP_TIMEOUT)],
    ),
    (
        "Running → Pending: the pod was deleted",
        status(R, contract.REASON_RUNNING),
        status(P, contract.REASON_POD_DELETED),
        [(N, contract.REASON_POD_DELETED)],
    ),
    (
        "Running → not ready any more",
        status(R, contract.REASON_RUNNING),
        status(P, contract.REASON_CONTAINERS_NOT_READY),
        [(N, contract.REASON_CONTAINERS_NOT_READY)],
    ),
    (
        "Running → Expired",
        status(R, contract.REASON_RUNNING),
        status(contract.PHASE_EXPIRED, contract.REASON_EXPIRED),
        [(N, contract.REASON_EXPIRED)],
    ),
    (
        "drift appears",
        status(R, contract.REASON_RUNNING),
        status(R, contract.REASON_RUNNING, drift="image changed"),
        [(W, contract.REASON_POD_SPEC_DRIFT)],
    ),
    (
        "drift unchanged",
        status(R, contract.REASON_RUNNING, drift="a"),
        status(R, contract.REASON_RUNNING, drift="a"),
        [],
    ),
    (
        "drift changes, with a transition",
        status(R, contract.REASON_RUNNING, drift="a"),
        status(F, contract.REASON_CONTAINER_FAILED, drift="b"),
        [(W, contract.REASON_CONTAINER_FAILED), (W, contract.REASON_POD_SPEC_DRIFT)],
    ),
]


@pytest.mark.parametrize(
    ("case", "before", "after", "expected"), EVENT_CASES, ids=[c[0] for c in EVENT_CASES]
)
def test_transition_events(
    case: str, before: dict[str, Any], after: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    events = transition_events(before, after)
    assert [(e.type, e.reason) for e in events] == expected
    for event in events:
        assert event.message  # the status message (or the drift's)


def test_a_deletion_failure_is_a_warning() -> None:
    event = deletion_failed_event("pod s", "HTTP 500: boom")
    assert (event.type, event.reason) == (W, contract.REASON_EXPIRY_DELETION_FAILED)
    assert "pod s" in event.message
    assert "HTTP 500: boom" in event.message


def test_the_event_body_is_a_core_v1_event_on_the_sandbox() -> None:
    sandbox = {"apiVersion": "leap0.dev/v1alpha1", "kind": "Sandbox",
               "metadata": {"name": "s", "namespace": "n", "uid": "u-1"}}  # fmt: skip
    body = event_body(sandbox, SandboxEvent(W, "OOMKilled", "x" * 5000), at(1), 0x1F, "operator-pod-1")
    assert body["metadata"] == {"name": "s.1f", "namespace": "n"}
    assert body["involvedObject"] == {
        "apiVersion": "leap0.dev/v1alpha1", "kind": "Sandbox", "name": "s", "namespace": "n", "uid": "u-1"
    }  # fmt: skip
    assert (body["type"], body["reason"], body["count"]) == (W, "OOMKilled", 1)
    assert len(body["message"]) == MAX_EVENT_MESSAGE
    assert "..." in body["message"]
    assert body["source"] == {"component": "leap0-operator"}
    assert (body["reportingComponent"], body["reportingInstance"]) == ("leap0-operator", "operator-pod-1")
    assert body["firstTimestamp"] == body["lastTimestamp"] == "2026-01-01T12:00:01Z"
