"""What to do about one Sandbox, decided from plain data (pure): the pod's state, expiry, drift, the status.

:func:`plan` takes the Sandbox, its template, its pod (or None) and the time, and returns a :class:`Plan`:
the pod to create (the builder's input), whether to delete the pod or the Sandbox (retention after expiry),
the status the Sandbox should show and the merge patch that gets it there, and when to look again. A spec
that can never work gives a plan too (``Failed``, no pod), not an exception. The controller
(``controller.py``) only carries plans out. Everything here is unit-tested without a server.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Mapping, Sequence
from typing import Any

import leap0_contract as contract

from . import lifecycle, objects, secrets
from .config import OperatorConfig
from .lifecycle import PodState, SandboxEvent, created_message, format_time, parse_time, pod_state
from .network import Network, build_network_policy, network_from_status, network_status, policy_digest
from .pod import created_images, pod_name
from .resolve import Effective, SpecError, resolve, template_id

# The status fields the operator owns (status.kopf, if any, belongs to kopf).
STATUS_FIELDS = (
    "phase",
    "reason",
    "message",
    "conditions",
    "podName",
    "podIP",
    "startedAt",
    "expiresAt",
    "observedGeneration",
    "vcpu",
    "memory",
    "disk",
    "templateId",
    "network",
    contract.STATUS_SUPERVISOR,
)
# Effective values recorded when the pod is created (a later template or setting change does not alter them).
RECORDED_FIELDS = ("vcpu", "memory", "disk", "templateId", "network")

# Re-exported: the pod-state classification and the time helpers live in lifecycle.py.
__all__ = ["PodState", "created_message", "format_time", "parse_time", "pod_state"]


def detect_drift(pod: Mapping[str, Any]) -> str | None:
    """A message when the pod's containers differ from how the operator created them, else None.

    Edits are reported (status condition ``PodSpecDrift``), never reverted: fighting a human or another
    controller in a loop helps no one.
    """
    raw = objects.annotations(pod).get(contract.ANNOTATION_POD_IMAGES)
    if not raw:
        return None
    try:
        created = json.loads(raw)
    except ValueError:
        return f"annotation {contract.ANNOTATION_POD_IMAGES} was edited"
    live = created_images(pod)
    changes = []
    for name in sorted(set(created) | set(live)):
        before, after = created.get(name), live.get(name)
        if before != after:
            if before is None:
                changes.append(f"container {name} was added")
            elif after is None:
                changes.append(f"container {name} was removed")
            else:
                changes.append(f"container {name} image changed from {before} to {after}")
    return "; ".join(changes) if changes else None


@dataclasses.dataclass(frozen=True)
class Plan:
    """What to do about one Sandbox, carried out in this order: create the pod (built from ``effective``),
    delete the pod, delete the Sandbox, write ``patch`` to its status; then look again at ``wake_at``."""

    status: dict[str, Any] | None  # the desired status (owned fields), None when the Sandbox is going away
    patch: dict[str, Any] = dataclasses.field(default_factory=dict)  # observed -> status; empty: no write
    effective: Effective | None = None  # the pod to create (the builder's input); None: create none
    delete_pod: bool = False
    delete_sandbox: bool = False
    wake_at: datetime.datetime | None = None  # look again then (expiry, retention), even if nothing happens
    # Kubernetes Events to post once ``patch`` is written (one per transition; none without a status write).
    events: tuple[SandboxEvent, ...] = ()
    # The sandbox's NetworkPolicy to create (``policy_version`` None) or to put back in place of the live one
    # (its resourceVersion): it was deleted or edited while the sandbox lives. None: nothing to do.
    network_policy: dict[str, Any] | None = None
    policy_version: str | None = None

    @property
    def create_pod(self) -> bool:
        return self.effective is not None


def owned_status(status: Mapping[str, Any] | None) -> dict[str, Any]:
    """The operator's part of a status (without ``kopf``, ``None`` values dropped)."""
    return {k: v for k, v in (status or {}).items() if k in STATUS_FIELDS and v is not None}


def _condition(
    current: Mapping[str, Any],
    ctype: str,
    status: str,
    reason: str,
    message: str,
    now: datetime.datetime,
    generation: Any,
) -> dict[str, Any]:
    previous = next((c for c in objects.items(current, "conditions") if c.get("type") == ctype), None)
    if previous is not None and previous.get("status") == status and previous.get("lastTransitionTime"):
        since = previous["lastTransitionTime"]
    else:
        since = format_time(now)
    condition = {
        "type": ctype,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition


def expiry(sandbox: Mapping[str, Any], effective: Effective | None) -> tuple[datetime.datetime, int | None]:
    """(expiresAt, timeout): creation + ``spec.timeout`` when set (so changing it reschedules, both ways),
    else the expiry recorded at the first reconcile (template and default timeouts are decided once), else
    creation + the template's or default timeout."""
    spec = objects.spec(sandbox)
    created = parse_time(str(objects.metadata(sandbox)["creationTimestamp"]))
    if isinstance(spec.get("timeout"), int):
        return created + datetime.timedelta(seconds=spec["timeout"]), int(spec["timeout"])
    recorded = objects.status(sandbox).get("expiresAt")
    if recorded:
        moment = parse_time(str(recorded))
        return moment, int((moment - created).total_seconds())
    timeout = effective.timeout if effective is not None else contract.DEFAULT_TIMEOUT_S
    return created + datetime.timedelta(seconds=timeout), timeout


def plan(
    sandbox: Mapping[str, Any],
    template: Mapping[str, Any] | None,
    pod: Mapping[str, Any] | None,
    now: datetime.datetime,
    config: OperatorConfig,
    policy: Mapping[str, Any] | None = None,
) -> Plan:
    """Decide from the Sandbox (its status = what the operator last wrote or saw), its template's spec (None
    if absent), its pod (None if absent) and the time.

    A pod that must be created from a spec that can never work (a missing explicit template, no image,
    values out of range) makes the plan ``Failed`` with the reason and no pod (not retried; it still
    expires). A pod that exists already is not judged again (a template deleted later changes nothing).
    """
    try:
        effective: Effective | SpecError = resolve(objects.spec(sandbox), template, config)
    except SpecError as exc:
        effective = exc
    startup_s = lifecycle.startup_timeout(template, config.startup_timeout_s)
    return _plan(sandbox, pod, now, config, effective, startup_s, policy)


def failed(
    sandbox: Mapping[str, Any], error: SpecError, now: datetime.datetime, config: OperatorConfig
) -> Plan:
    """The plan when creating the pod failed for good (the API refused it as invalid): ``Failed`` with the
    error's reason and message and no pod, not retried (only woken at ``expiresAt``: a failed Sandbox still
    expires and is cleaned up after its retention)."""
    return _plan(sandbox, None, now, config, error, config.startup_timeout_s, None)


def waiting_for_secrets(
    sandbox: Mapping[str, Any],
    effective: Effective,
    missing: Sequence[secrets.SecretRef],
    now: datetime.datetime,
    config: OperatorConfig,
) -> Plan:
    """The plan when a Secret the pod references does not exist yet: ``Pending`` (``SecretNotFound``), no pod,
    looked at again soon (after 1 s, then less often as the Sandbox ages, at most every 30 s). Not ``Running``
    within the startup timeout from the Sandbox's creation: ``Failed`` (``StartupTimeout``), for good."""
    created = parse_time(str(objects.metadata(sandbox)["creationTimestamp"]))
    age = max(0.0, (now - created).total_seconds())
    if age >= config.startup_timeout_s:
        error = SpecError(
            contract.REASON_STARTUP_TIMEOUT,
            secrets.missing_timeout_message(missing, config.startup_timeout_s),
        )
        return _plan(sandbox, None, now, config, error, config.startup_timeout_s, None)
    message = secrets.missing_message(missing)
    base = _plan(sandbox, None, now, config, effective, config.startup_timeout_s, None)
    if base.status is None or base.status.get("phase") != contract.PHASE_PENDING:
        return dataclasses.replace(base, effective=None, network_policy=None)  # expired meanwhile
    status = dict(base.status)
    status.update(reason=contract.REASON_SECRET_NOT_FOUND, message=message)
    status.pop("podName", None)
    status["conditions"] = [
        {**c, "reason": contract.REASON_SECRET_NOT_FOUND, "message": message}
        if c.get("type") == contract.CONDITION_READY
        else c
        for c in status.get("conditions", [])
    ]
    current = owned_status(objects.status(sandbox))
    patch = status_patch(current, status)
    wake = now + datetime.timedelta(seconds=min(30.0, max(1.0, age / 2)))
    return Plan(
        status=status,
        patch=patch,
        events=tuple(lifecycle.transition_events(current, status)) if patch else (),
        wake_at=min(wake, base.wake_at) if base.wake_at else wake,
    )


def secrets_refused(
    sandbox: Mapping[str, Any], message: str, now: datetime.datetime, config: OperatorConfig
) -> Plan:
    """The plan when the pod would reference a Secret the Sandbox may not have: ``Failed``
    (``SecretNotAllowed``), no pod, not retried."""
    return failed(sandbox, SpecError(contract.REASON_SECRET_NOT_ALLOWED, message), now, config)


def recreated_message(pod: str) -> str:
    return f"pod {pod} was deleted while the sandbox is live; recreated it"


def kept_resources(effective: Effective, recorded: Mapping[str, Any]) -> Effective:
    """``effective`` with the vcpu, memory and disk the sandbox was started with (recorded in its status),
    so a recreated pod never silently takes a re-created or edited template's other resources."""
    if "vcpu" not in recorded or "memory" not in recorded:
        return effective
    disk = recorded.get("disk")
    network = network_from_status(recorded)
    return dataclasses.replace(
        effective,
        vcpu=int(recorded["vcpu"]),
        memory=int(recorded["memory"]),
        disk=int(disk) if disk is not None else None,
        network=network if network is not None else effective.network,
    )


def policy_action(
    sandbox: Mapping[str, Any],
    network: Network,
    observed: Mapping[str, Any] | None,
    config: OperatorConfig,
) -> tuple[dict[str, Any] | None, str | None]:
    """(the NetworkPolicy to write, the live one's resourceVersion to replace or None to create): nothing when
    the live policy's spec is the one ``network`` gives (same digest), or for ``AllowAll``."""
    desired = build_network_policy(owner=sandbox, network=network, settings=config.network)
    if desired is None:
        return None, None
    if observed is None:
        return desired, None
    if observed.get("digest") == policy_digest(desired):
        return None, None
    return desired, str(objects.metadata(observed).get("resourceVersion") or "") or None


def _plan(
    sandbox: Mapping[str, Any],
    pod: Mapping[str, Any] | None,
    now: datetime.datetime,
    config: OperatorConfig,
    resolved: Effective | SpecError,
    startup_s: int,
    policy: Mapping[str, Any] | None,
) -> Plan:
    meta = objects.metadata(sandbox)
    spec = objects.spec(sandbox)
    current = owned_status(objects.status(sandbox))
    if objects.terminating(sandbox):
        return Plan(status=None)
    name = objects.name(sandbox)
    generation = meta.get("generation")
    pod_going = pod is not None and objects.terminating(pod)
    effective = resolved if isinstance(resolved, Effective) else None

    desired: dict[str, Any] = {"observedGeneration": generation} if generation is not None else {}
    # The effective values describe the pod: decided when it is created (a later template edit changes
    # neither the pod nor what the status says about it), refreshed when a pod is (re)created.
    fresh: dict[str, Any] = {"templateId": template_id(spec)}
    if effective is not None:
        fresh.update(vcpu=effective.vcpu, memory=effective.memory, templateId=effective.template_id)
        if effective.disk is not None:
            fresh["disk"] = effective.disk
        fresh["network"] = network_status(effective.network, name)
    recorded: dict[str, Any] = {k: current[k] for k in RECORDED_FIELDS if k in current}
    desired.update(recorded if "vcpu" in recorded else fresh)
    expires_at, timeout = expiry(sandbox, effective)
    desired["expiresAt"] = format_time(expires_at)
    for key in ("podName", "startedAt"):
        if key in current:
            desired[key] = current[key]

    def finish(phase: str, reason: str, message: str, **fields: Any) -> dict[str, Any]:
        desired.update(phase=phase, reason=reason, message=message)
        desired.update({k: v for k, v in fields.items() if v is not None})
        desired["conditions"] = [
            _condition(
                current,
                contract.CONDITION_READY,
                "True" if phase == contract.PHASE_RUNNING else "False",
                reason,
                message,
                now,
                generation,
            )
        ]
        return desired

    def decided(status: dict[str, Any], **actions: Any) -> Plan:
        patch = status_patch(current, status)
        events = tuple(lifecycle.transition_events(current, status)) if patch else ()
        return Plan(status=status, patch=patch, events=events, **actions)

    retention = datetime.timedelta(seconds=config.expired_retention_s)
    pod_present = pod is not None and not pod_going
    if current.get("phase") == contract.PHASE_EXPIRED or now >= expires_at:
        # Expired is final: the pod goes, the Sandbox stays for the retention period (for kubectl, the SDK).
        if current.get("phase") == contract.PHASE_EXPIRED:
            status = dict(current)
            status.pop("podIP", None)
            if generation is not None:
                status["observedGeneration"] = generation
            expired_at = parse_time(str(current.get("expiresAt", desired["expiresAt"])))
        else:
            expired_at = expires_at
            status = finish(
                contract.PHASE_EXPIRED,
                contract.REASON_EXPIRED,
                f"the sandbox reached its timeout of {timeout}s at {format_time(expires_at)}; "
                "its pod was deleted",
            )
        delete_at = expired_at + retention
        return decided(
            status,
            delete_pod=pod_present,
            delete_sandbox=now >= delete_at,
            wake_at=None if now >= delete_at else delete_at,
        )

    if (
        current.get("phase") == contract.PHASE_FAILED
        and current.get("reason") == contract.REASON_STARTUP_TIMEOUT
    ):
        # Final: its pod was deleted and is not recreated (it still expires and is cleaned up).
        status = dict(current)
        status.pop("podIP", None)
        if generation is not None:
            status["observedGeneration"] = generation
        return decided(status, delete_pod=pod_present, wake_at=expires_at)

    if pod is None:
        if effective is None:
            assert isinstance(resolved, SpecError)
            failure = finish(contract.PHASE_FAILED, resolved.reason, resolved.message)
            return decided(failure, wake_at=expires_at)
        pname = pod_name(name)
        desired["podName"] = pname
        recreated = bool(current.get("podName"))
        if recreated:
            # A sandbox keeps the resources it was started with; startedAt will be the new pod's.
            effective = kept_resources(effective, recorded)
            desired.pop("startedAt", None)
        else:
            for key in RECORDED_FIELDS:
                desired.pop(key, None)
            desired.update(fresh)
        if effective.telemetry and effective.logs:  # the pod about to be created has it (the builder's rule)
            desired[contract.STATUS_SUPERVISOR] = contract.SUPERVISOR_PATH
        reason = contract.REASON_POD_DELETED if recreated else contract.REASON_POD_CREATED
        message = recreated_message(pname) if recreated else created_message(pname)
        desired.pop("podIP", None)
        network_policy, version = policy_action(sandbox, effective.network, policy, config)
        return decided(
            finish(contract.PHASE_PENDING, reason, message),
            effective=effective,
            wake_at=expires_at,
            network_policy=network_policy,
            policy_version=version,
        )

    pname = objects.name(pod)
    desired["podName"] = pname
    owners = objects.controller_uids(pod)
    uid = objects.uid(sandbox)
    if pod_going or (owners and uid and uid not in owners):
        status = finish(
            contract.PHASE_PENDING,
            contract.REASON_POD_DELETED,
            f"waiting for the old pod {pname} to go away before creating a new one",
        )
        return decided(status, wake_at=expires_at)

    supervisor = objects.annotations(pod).get(contract.ANNOTATION_SUPERVISOR)
    if supervisor:  # observed on the pod: its sandbox container has the supervisor (the SDKs use it)
        desired[contract.STATUS_SUPERVISOR] = str(supervisor)
    state = pod_state(pod)
    if state.reason == contract.REASON_POD_CREATED and current.get("reason") == contract.REASON_POD_DELETED:
        # A recreated pod the kubelet has not reported on yet: the status keeps saying why it is Pending.
        state = dataclasses.replace(
            state, reason=contract.REASON_POD_DELETED, message=recreated_message(pname)
        )
    was_running = bool(desired.get("startedAt"))
    deadline = lifecycle.startup_deadline(pod, startup_s)
    if lifecycle.startup_timed_out(state, was_running, deadline, now):
        desired.pop("podIP", None)
        message = lifecycle.startup_timeout_message(state, startup_s)
        status = finish(contract.PHASE_FAILED, contract.REASON_STARTUP_TIMEOUT, message)
        return decided(status, delete_pod=True, wake_at=expires_at)
    started = desired.get("startedAt") or (
        state.started_at if state.phase == contract.PHASE_RUNNING else None
    )
    status = finish(state.phase, state.reason, state.message, podIP=state.ip, startedAt=started)
    wake_at = expires_at
    starting = not was_running and not state.final and state.phase != contract.PHASE_RUNNING
    if starting and deadline is not None:
        wake_at = min(expires_at, deadline)
    drift = detect_drift(pod)
    if drift is not None:
        status["conditions"].append(
            _condition(
                current,
                contract.CONDITION_POD_SPEC_DRIFT,
                "True",
                contract.REASON_POD_SPEC_DRIFT,
                f"{drift}; the operator reports edits and does not revert them",
                now,
                generation,
            )
        )
    # The NetworkPolicy is the sandbox's isolation, not its workload: deleted or edited while the pod lives,
    # it is put back as recorded when the pod was created (a pod that ended needs none).
    network_policy, version = None, None
    recorded_network = network_from_status(desired)
    if recorded_network is not None and not state.final:
        network_policy, version = policy_action(sandbox, recorded_network, policy, config)
    return decided(status, wake_at=wake_at, network_policy=network_policy, policy_version=version)


def status_patch(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch taking the owned part of ``current`` to ``desired`` (empty when nothing changed);
    fields that should disappear are set to None."""
    have = owned_status(current)
    patch: dict[str, Any] = {}
    for key in STATUS_FIELDS:
        if have.get(key) != desired.get(key):
            patch[key] = desired.get(key)
    return patch


def trim_sandbox(body: Mapping[str, Any]) -> dict[str, Any]:
    """What the operator keeps of a Sandbox in memory (its index): identity, spec, the owned status."""
    meta = objects.metadata(body)
    keep = ("name", "namespace", "uid", "generation", "creationTimestamp", "deletionTimestamp")
    return {
        "apiVersion": body.get("apiVersion", contract.API_VERSION),
        "kind": body.get("kind", contract.SANDBOX_KIND),
        "metadata": {k: meta[k] for k in keep if meta.get(k) is not None},
        "spec": dict(objects.spec(body)),
        "status": owned_status(objects.status(body)),
    }


def trim_pod(body: Mapping[str, Any]) -> dict[str, Any]:
    """What the operator keeps of a pod in memory: enough for :func:`pod_state` and :func:`detect_drift`."""
    meta = objects.metadata(body)
    spec = objects.spec(body)
    status = objects.status(body)
    annotations = objects.annotations(body)

    def containers(key: str) -> list[dict[str, Any]]:
        keep = (
            "name",
            "image",
            "restartPolicy",
        )  # restartPolicy: a native sidecar or a run-to-completion one
        return [{k: c[k] for k in keep if k in c} for c in objects.items(spec, key)]

    def statuses(key: str) -> list[dict[str, Any]]:
        keep = ("name", "ready", "image", "state", "lastState")
        return [{k: cs[k] for k in keep if k in cs} for cs in objects.items(status, key)]

    kept = ("name", "uid", "creationTimestamp", "deletionTimestamp")  # creation: the startup deadline
    trimmed_meta: dict[str, Any] = {k: meta[k] for k in kept if meta.get(k)}
    trimmed_meta["ownerReferences"] = [
        {"uid": r.get("uid"), "controller": r.get("controller")}
        for r in objects.items(meta, "ownerReferences")
    ]
    kept_annotations = {
        k: annotations[k]
        for k in (contract.ANNOTATION_POD_IMAGES, contract.ANNOTATION_SUPERVISOR)
        if k in annotations
    }
    if kept_annotations:
        trimmed_meta["annotations"] = kept_annotations
    trimmed_status: dict[str, Any] = {
        k: status[k] for k in ("phase", "podIP", "startTime", "reason", "message") if status.get(k)
    }
    conditions = [
        {k: c[k] for k in ("type", "status", "reason", "message") if k in c}
        for c in objects.items(status, "conditions")
        if c.get("type") in ("PodScheduled", "Ready")
    ]
    if conditions:
        trimmed_status["conditions"] = conditions
    for key in ("initContainerStatuses", "containerStatuses"):
        if status.get(key):
            trimmed_status[key] = statuses(key)
    return {
        "metadata": trimmed_meta,
        "spec": {"containers": containers("containers"), "initContainers": containers("initContainers")},
        "status": trimmed_status,
    }
