"""A Sandbox's life from plain data (pure): what its pod's state means, when a start that never finishes
ends, and which Kubernetes Event each status change posts.

- :func:`pod_state` classifies a pod into the Sandbox's phase, reason and message. A state is *final* when
  nothing will change it (a container or the pod ended); a ``Pending`` state waits, and so do an image pull
  error and a crash loop (reported ``Failed`` at once, but the kubelet keeps retrying), until the startup
  timeout.
- :func:`startup_deadline` and :func:`startup_timeout_message`: a sandbox not Running within the startup
  timeout after its pod was created fails with ``StartupTimeout`` and a message naming the last pod reason.
- :func:`transition_events` lists the Events one status change posts (one per transition, none when the
  status is unchanged) and :func:`event_body` builds each core/v1 Event.
- :func:`last_activity` and :func:`idle_deadline`: when a Running sandbox with ``idleTimeout`` counts as idle
  (from the activity annotation the SDKs and the MCP server write, or its start).

Everything here is unit-tested without a server (``tests/unit/operator/test_operator_lifecycle.py``).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any

import leap0_contract as contract

from . import objects

# The kubelet's waiting reasons of an image that cannot be pulled (any container).
IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
# The kubelet's waiting reasons of a container it cannot create or start; surfaced as they are. The kubelet
# retries them, and they may recover (a Secret or ConfigMap created a moment later, a passing runtime error).
CONTAINER_SETUP_REASONS = frozenset(
    {
        contract.REASON_CREATE_CONTAINER_CONFIG_ERROR,
        contract.REASON_CREATE_CONTAINER_ERROR,
        contract.REASON_RUN_CONTAINER_ERROR,
    }
)
# Pending reasons of the ordinary path to Running: entering them posts no Event.
ROUTINE_PENDING_REASONS = frozenset({contract.REASON_POD_CREATED, contract.REASON_CONTAINERS_NOT_READY})
# Kubernetes keeps Event messages short (kopf cuts them at 1 KiB too).
MAX_EVENT_MESSAGE = 1024


def parse_time(value: str) -> datetime.datetime:
    moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def format_time(moment: datetime.datetime) -> str:
    """RFC 3339 in UTC with second precision, as Kubernetes writes timestamps."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass(frozen=True)
class PodState:
    """The Sandbox's view of its pod: a phase, a reason a user can act on, and a message.

    ``final``: nothing will change it any more (a container or the pod ended); otherwise a state that is not
    Running waits for the startup timeout."""

    phase: str
    reason: str
    message: str
    ip: str | None = None
    started_at: str | None = None
    final: bool = False


def created_message(pod: str) -> str:
    return f"pod {pod} created, waiting for it to start"


def _state(container_status: Mapping[str, Any], key: str, which: str) -> Mapping[str, Any]:
    """``state.waiting``, ``lastState.terminated``...: a container status's state detail, or empty."""
    return objects.section(objects.section(container_status, key), which)


def pod_state(pod: Mapping[str, Any]) -> PodState:
    """Pending → Running (all containers ready) → Failed with the reason a user needs.

    In order: an image that cannot be pulled and a crash loop (only the sidecar restarts) are ``Failed`` but
    not final (the kubelet retries); OOM kills and ended containers or pods are ``Failed`` and final;
    a container the kubelet cannot create or start (``Pending`` with the kubelet's reason and message); a pod
    the scheduler cannot place (``Pending``/``Unschedulable`` with the scheduler's message); every container
    ready (``Running``); else ``Pending`` while the containers start.
    """
    status = objects.status(pod)
    name = objects.name(pod)
    ip = status.get("podIP") or None
    statuses = objects.container_statuses(pod)

    def failed(reason: str, message: str, *, final: bool = True) -> PodState:
        return PodState(contract.PHASE_FAILED, reason, message, ip, final=final)

    setup: PodState | None = None
    for cs in statuses:
        waiting = _state(cs, "state", "waiting")
        why = waiting.get("reason")
        if why in IMAGE_PULL_REASONS:
            image = cs.get("image") or "the image"
            detail = f": {waiting['message']}" if waiting.get("message") else ""
            return failed(
                contract.REASON_IMAGE_PULL_ERROR,
                f"container {cs.get('name')} cannot pull {image} ({why}){detail}",
                final=False,
            )
        if why == "CrashLoopBackOff":
            return failed(
                contract.REASON_CRASH_LOOP,
                f"container {cs.get('name')} keeps crashing (CrashLoopBackOff)",
                final=False,
            )
        if why in CONTAINER_SETUP_REASONS and setup is None:
            message = str(waiting.get("message") or f"container {cs.get('name')} cannot start ({why})")
            setup = PodState(contract.PHASE_PENDING, str(why), message, ip)
    for cs in statuses:
        for state_key in ("state", "lastState"):
            terminated = _state(cs, state_key, "terminated")
            if terminated.get("reason") == "OOMKilled" and (
                state_key == "state" or cs.get("name") == contract.SANDBOX_CONTAINER
            ):
                return failed(
                    contract.REASON_OOM_KILLED,
                    f"container {cs.get('name')} ran out of memory and was killed (OOMKilled)",
                )
    for cs in statuses:
        if cs.get("name") != contract.SANDBOX_CONTAINER:
            continue
        terminated = _state(cs, "state", "terminated")
        if terminated:
            code = terminated.get("exitCode", 0)
            if code == 0:
                return failed(
                    contract.REASON_COMPLETED,
                    "the sandbox process exited with code 0; the sandbox has ended",
                )
            reason = terminated.get("reason") or "Error"
            return failed(
                contract.REASON_CONTAINER_FAILED, f"the sandbox process exited with code {code} ({reason})"
            )
    completing = {
        str(c.get("name"))
        for c in objects.items(objects.spec(pod), "initContainers")
        if c.get("restartPolicy") != "Always"
    }
    for cs in objects.items(status, "initContainerStatuses"):
        terminated = _state(cs, "state", "terminated")
        if cs.get("name") in completing and terminated and terminated.get("exitCode", 0) != 0:
            reason = terminated.get("reason") or "Error"
            return failed(
                contract.REASON_CONTAINER_FAILED,
                f"init container {cs.get('name')} exited with code {terminated.get('exitCode')} ({reason})",
            )
    if status.get("phase") in ("Failed", "Succeeded"):
        detail = status.get("message") or status.get("reason") or f"pod phase {status.get('phase')}"
        return failed(contract.REASON_POD_FAILED, f"pod {name} ended: {detail}")
    if setup is not None:
        return setup
    conditions = {c.get("type"): c for c in objects.items(status, "conditions")}
    scheduled = conditions.get("PodScheduled") or objects.EMPTY
    if scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        message = str(scheduled.get("message") or f"pod {name} cannot be scheduled")
        return PodState(contract.PHASE_PENDING, contract.REASON_UNSCHEDULABLE, message, ip)
    # Every container that keeps running must be ready; an init container that runs to completion (the
    # supervisor's copy) has completed once the pod runs its containers.
    pod_spec = objects.spec(pod)
    expected = {
        str(c.get("name"))
        for c in [*objects.items(pod_spec, "initContainers"), *objects.items(pod_spec, "containers")]
        if c in objects.items(pod_spec, "containers") or c.get("restartPolicy") == "Always"
    }
    ready = {str(cs.get("name")) for cs in statuses if cs.get("ready")}
    if status.get("phase") == "Running" and expected and expected <= ready:
        started = None
        for cs in statuses:
            if cs.get("name") == contract.SANDBOX_CONTAINER:
                started = _state(cs, "state", "running").get("startedAt")
        return PodState(
            contract.PHASE_RUNNING,
            contract.REASON_RUNNING,
            f"pod {name} is running",
            ip,
            started or status.get("startTime"),
        )
    if statuses:
        waiting_for = ", ".join(sorted(expected - ready)) or "containers"
        return PodState(
            contract.PHASE_PENDING,
            contract.REASON_CONTAINERS_NOT_READY,
            f"waiting for {waiting_for} to be ready",
            ip,
        )
    # Same reason and message as right after creation, so the pod's first watch event causes no status write.
    return PodState(contract.PHASE_PENDING, contract.REASON_POD_CREATED, created_message(name), ip)


# --- startup timeout ------------------------------------------------------------------------------------
def startup_timeout(template: Mapping[str, Any] | None, default_s: int) -> int:
    """The template's ``startupTimeout`` when it sets one, else the operator's ``--startup-timeout``."""
    value = (template or {}).get("startupTimeout")
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return default_s


def startup_deadline(pod: Mapping[str, Any], timeout_s: int) -> datetime.datetime | None:
    """When a pod created at its ``creationTimestamp`` must be Running (None before the API stamped it)."""
    created = objects.metadata(pod).get("creationTimestamp")
    if not created:
        return None
    return parse_time(str(created)) + datetime.timedelta(seconds=timeout_s)


def startup_timed_out(
    state: PodState, started: bool, deadline: datetime.datetime | None, now: datetime.datetime
) -> bool:
    """A start that never finished: not Running, not ended on its own, never Running on this pod
    (``started``), and past its deadline."""
    return (
        deadline is not None
        and now >= deadline
        and not started
        and not state.final
        and state.phase != contract.PHASE_RUNNING
    )


def startup_timeout_message(state: PodState, timeout_s: int) -> str:
    """``still Unschedulable after 600 s: 0/3 nodes are available: ...``."""
    return f"still {state.reason} after {timeout_s} s: {state.message}; its pod was deleted"


# --- idleness ------------------------------------------------------------------------------------------
def last_activity(annotations: Mapping[str, Any], now: datetime.datetime) -> datetime.datetime | None:
    """The ``leap0.dev/last-activity`` time, or None when absent, unreadable, or more than the allowed clock
    skew in the future (a forged far-future time would otherwise keep a sandbox from its idle pause for
    ever). A time slightly ahead (another machine's clock) counts as now."""
    raw = annotations.get(contract.ANNOTATION_LAST_ACTIVITY)
    if not isinstance(raw, str) or not raw:
        return None
    try:
        moment = parse_time(raw)
    except ValueError:
        return None
    if moment > now + datetime.timedelta(seconds=contract.ACTIVITY_CLOCK_SKEW_S):
        return None
    return min(moment, now)


def idle_deadline(
    started_at: str | None, activity: datetime.datetime | None, idle_timeout_s: int
) -> datetime.datetime | None:
    """When a Running sandbox becomes idle: ``idle_timeout_s`` after the later of its start on this pod
    (``startedAt``, so a resumed sandbox is not paused again at once) and its last activity; None without a
    start."""
    if not started_at:
        return None
    try:
        base = parse_time(started_at)
    except ValueError:
        return None
    if activity is not None and activity > base:
        base = activity
    return base + datetime.timedelta(seconds=idle_timeout_s)


# --- Events ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SandboxEvent:
    """One Kubernetes Event to post on a Sandbox."""

    type: str  # Normal or Warning
    reason: str
    message: str


def _condition(status: Mapping[str, Any], ctype: str) -> Mapping[str, Any] | None:
    return next((c for c in objects.items(status, "conditions") if c.get("type") == ctype), None)


def transition_events(previous: Mapping[str, Any], desired: Mapping[str, Any]) -> list[SandboxEvent]:
    """The Events a status change from ``previous`` to ``desired`` posts (both the operator's status fields).

    A change of phase, or of reason (``Pending``/``Unschedulable`` → ``CreateContainerConfigError``,
    ``Failed``/``ImagePullError`` → ``StartupTimeout``), posts one Event whose reason is the status reason;
    ``Warning`` for ``Failed``, ``Normal`` otherwise (``Paused``, ``IdlePaused``, ``TimeoutPaused``,
    ``Resuming`` included). Not posted: the first ``Pending`` of a new Sandbox and its ordinary progress
    within ``Pending`` (``PodCreated``, ``ContainersNotReady``), which the status shows and which would only
    add a write per sandbox. A ``PodSpecDrift`` condition, or a ``Paused`` condition saying
    ``PauseRefused``, that appears or changes posts a ``Warning``. The same status twice posts nothing.
    """
    events: list[SandboxEvent] = []
    before = (previous.get("phase"), previous.get("reason"))
    phase, reason = desired.get("phase"), desired.get("reason")
    if phase and reason and before != (phase, reason):
        routine = (
            phase == contract.PHASE_PENDING
            and reason in ROUTINE_PENDING_REASONS
            and before[0] in (None, contract.PHASE_PENDING)
        )
        if not routine:
            kind = (
                contract.EVENT_TYPE_WARNING if phase == contract.PHASE_FAILED else contract.EVENT_TYPE_NORMAL
            )
            events.append(SandboxEvent(kind, str(reason), str(desired.get("message") or "")))
    refused = _condition(desired, contract.CONDITION_PAUSED)
    if refused is not None and refused.get("reason") == contract.REASON_PAUSE_REFUSED:
        known = _condition(previous, contract.CONDITION_PAUSED)
        if (
            known is None
            or known.get("reason") != refused.get("reason")
            or known.get("message") != refused.get("message")
        ):
            events.append(
                SandboxEvent(
                    contract.EVENT_TYPE_WARNING,
                    contract.REASON_PAUSE_REFUSED,
                    str(refused.get("message") or ""),
                )
            )
    drift = _condition(desired, contract.CONDITION_POD_SPEC_DRIFT)
    if drift is not None and drift.get("status") == "True":
        known = _condition(previous, contract.CONDITION_POD_SPEC_DRIFT)
        if known is None or known.get("status") != "True" or known.get("message") != drift.get("message"):
            events.append(
                SandboxEvent(
                    contract.EVENT_TYPE_WARNING,
                    contract.REASON_POD_SPEC_DRIFT,
                    str(drift.get("message") or ""),
                )
            )
    return events


def workspace_lost_event(claim: str) -> SandboxEvent:
    """The Warning posted when a resume found the workspace's claim gone and created a new, empty one."""
    return SandboxEvent(
        contract.EVENT_TYPE_WARNING,
        contract.REASON_WORKSPACE_LOST,
        f"PersistentVolumeClaim {claim} was deleted while the sandbox was paused: the sandbox resumed on a "
        "new, empty workspace",
    )


def deletion_failed_event(what: str, error: str) -> SandboxEvent:
    """The Warning posted when deleting an expired sandbox's pod, or the Sandbox after its retention, fails
    (once per run of failures, not per retry)."""
    return SandboxEvent(
        contract.EVENT_TYPE_WARNING,
        contract.REASON_EXPIRY_DELETION_FAILED,
        f"deleting {what} failed: {error}; retrying with backoff",
    )


def _shorten(message: str) -> str:
    if len(message) <= MAX_EVENT_MESSAGE:
        return message
    half = (MAX_EVENT_MESSAGE - 3) // 2
    return f"{message[:half]}...{message[-(MAX_EVENT_MESSAGE - 3 - half) :]}"


def event_body(
    sandbox: Mapping[str, Any],
    event: SandboxEvent,
    now: datetime.datetime,
    serial: int,
    instance: str,
) -> dict[str, Any]:
    """The core/v1 Event about ``sandbox`` (what ``kubectl describe sbx`` lists): named ``<sandbox>.<serial
    in hex>`` as client-go names its events (``serial`` = the time in nanoseconds, unique per event), reported
    by ``leap0-operator`` (``source.component``, the "From" column) from ``instance`` (the operator's pod)."""
    name = objects.name(sandbox)
    namespace = objects.namespace(sandbox)
    involved: dict[str, Any] = {
        "apiVersion": sandbox.get("apiVersion", contract.API_VERSION),
        "kind": sandbox.get("kind", contract.SANDBOX_KIND),
        "name": name,
        "namespace": namespace,
    }
    uid = objects.uid(sandbox)
    if uid:
        involved["uid"] = uid
    stamp = format_time(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{name}.{serial:x}", "namespace": namespace},
        "involvedObject": involved,
        "type": event.type,
        "reason": event.reason,
        "message": _shorten(event.message),
        "count": 1,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "source": {"component": contract.EVENT_REPORTING_COMPONENT},
        "reportingComponent": contract.EVENT_REPORTING_COMPONENT,
        "reportingInstance": instance[:128],
    }
