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
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import leap0_contract as contract

from . import lifecycle, objects, secrets
from .config import OperatorConfig
from .lifecycle import PodState, SandboxEvent, created_message, format_time, parse_time, pod_state
from .network import Network, build_network_policy, network_from_status, network_status, policy_digest
from .pod import claim_name, created_images, pod_name
from .resolve import (
    Effective,
    PausePolicy,
    SpecError,
    Workspace,
    pause_policy,
    resolve,
    resolve_workspace,
    template_id,
)

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
    "timeout",
    "idleTimeout",
    "pausedAt",
    "resumedAt",
    "observedGeneration",
    "vcpu",
    "memory",
    "disk",
    "templateId",
    "network",
    "workspace",
    contract.STATUS_SUPERVISOR,
)
# Effective values recorded when the pod is created (a later template or setting change does not alter them).
RECORDED_FIELDS = ("vcpu", "memory", "disk", "templateId", "network", "workspace")

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
    """What to do about one Sandbox, carried out in this order: patch the Sandbox (``sandbox_patch``), create
    the pod (built from ``effective``; its NetworkPolicy and workspace claim first), delete the pod, delete
    the Sandbox, write ``patch`` to its status; then look again at ``wake_at``."""

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
    # A merge patch of the Sandbox itself, made first: ``spec.paused: true`` when the operator pauses a
    # sandbox (idle, or at its timeout), with the resourceVersion it decided from (a conflict: decide again).
    sandbox_patch: dict[str, Any] | None = None
    # The pod to create resumes a paused sandbox: its workspace claim should exist already.
    claim_expected: bool = False

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


def expiry(sandbox: Mapping[str, Any], effective: Effective | None) -> tuple[datetime.datetime, int]:
    """(expiresAt, timeout): the timeout counts from creation, or from the last resume (``resumedAt``: a
    paused sandbox does not expire, and its timeout starts again when it resumes). The timeout is
    ``spec.timeout`` when set (so changing it reschedules, both ways), else the one recorded at the first
    reconcile
    (``status.timeout``; before that field existed, the recorded ``expiresAt`` minus creation: template and
    default timeouts are decided once), else the template's or the default."""
    spec = objects.spec(sandbox)
    status = objects.status(sandbox)
    created = parse_time(str(objects.metadata(sandbox)["creationTimestamp"]))
    resumed = status.get("resumedAt")
    base = parse_time(str(resumed)) if resumed else created
    if isinstance(spec.get("timeout"), int):
        timeout = int(spec["timeout"])
    elif isinstance(status.get("timeout"), int):
        timeout = int(status["timeout"])
    elif status.get("expiresAt") and not resumed:
        timeout = int((parse_time(str(status["expiresAt"])) - created).total_seconds())
    else:
        timeout = effective.timeout if effective is not None else contract.DEFAULT_TIMEOUT_S
    return base + datetime.timedelta(seconds=timeout), timeout


def recorded_workspace(current: Mapping[str, Any], resolved: Workspace) -> Workspace:
    """The workspace the sandbox has: as recorded when its first pod was created, else as resolved now."""
    recorded = objects.section(current, "workspace")
    if "persistent" not in recorded:
        return resolved
    storage = recorded.get("storageClassName")
    return Workspace(
        persistent=recorded.get("persistent") is True, storage_class=str(storage) if storage else None
    )


def workspace_status(name: str, workspace: Workspace) -> dict[str, Any]:
    """``status.workspace``: persistent or not, and the claim (with its storage class) when persistent."""
    if not workspace.persistent:
        return {"persistent": False}
    out: dict[str, Any] = {"persistent": True, "claimName": claim_name(name)}
    if workspace.storage_class:
        out["storageClassName"] = workspace.storage_class
    return out


def pause_refusal(workspace: Workspace, current: Mapping[str, Any], why: str) -> str | None:
    """Why the sandbox cannot be paused (None: it can). A pause deletes the pod; without a persistent
    workspace that would lose its files, and a Failed sandbox has nothing to resume."""
    if not workspace.persistent:
        return (
            f"{why}, but this sandbox cannot be paused: its workspace is an emptyDir, whose files a pause "
            "would lose. Create the sandbox with spec.workspace.persistent: true (or from a template with "
            "workspace.persistent: true) to be able to pause it"
        )
    if current.get("phase") == contract.PHASE_FAILED:
        return (
            f"{why}, but a Failed sandbox cannot be paused ({current.get('reason')}): delete it and create a "
            "new one"
        )
    return None


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
    spec = objects.spec(sandbox)
    return _plan(
        sandbox,
        pod,
        now,
        config,
        effective,
        startup_s,
        policy,
        pause_policy(spec, template),
        resolve_workspace(spec, template),
    )


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
    """``effective`` with the vcpu, memory, disk and workspace the sandbox was started with (recorded in its
    status), so a recreated or resumed pod never silently takes a re-created or edited template's other
    resources, nor another workspace."""
    if "vcpu" not in recorded or "memory" not in recorded:
        return effective
    disk = recorded.get("disk")
    network = network_from_status(recorded)
    return dataclasses.replace(
        effective,
        vcpu=int(recorded["vcpu"]),
        memory=int(recorded["memory"]),
        disk=int(disk) if disk is not None else None,
        workspace=recorded_workspace(recorded, effective.workspace),
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


def expect_supervisor(desired: dict[str, Any], effective: Effective) -> None:
    """The status of a pod about to be created: ``supervisor`` as the pod will have it (the builder's rule:
    telemetry and logs on), so the pod's first event writes nothing; absent for a pod without it."""
    if effective.telemetry and effective.logs:
        desired[contract.STATUS_SUPERVISOR] = contract.SUPERVISOR_PATH
    else:
        desired.pop(contract.STATUS_SUPERVISOR, None)


def _waiting_for_template(
    sandbox: Mapping[str, Any],
    missing: SpecError,
    startup_s: int,
    expires_at: datetime.datetime,
    now: datetime.datetime,
    finish: Callable[..., dict[str, Any]],
    decided: Callable[..., Plan],
) -> Plan:
    """A new Sandbox naming a template that does not exist (yet): ``Pending`` (``TemplateNotFound``) with no
    pod, as for a missing Secret, since a template applied with the Sandbox (or a moment after it) may reach
    the operator after it; the template's arrival looks at the Sandbox again. Not there within the startup
    timeout from the Sandbox's creation: ``Failed`` (``StartupTimeout``), for good."""
    deadline = lifecycle.startup_deadline(sandbox, startup_s)
    if deadline is not None and now >= deadline:
        failure = finish(
            contract.PHASE_FAILED,
            contract.REASON_STARTUP_TIMEOUT,
            f"still {contract.REASON_TEMPLATE_NOT_FOUND} after {startup_s} s: {missing.message}",
        )
        return decided(failure, wake_at=expires_at)
    waiting = finish(contract.PHASE_PENDING, missing.reason, missing.message)
    return decided(waiting, wake_at=min(expires_at, deadline) if deadline is not None else expires_at)


def _plan(
    sandbox: Mapping[str, Any],
    pod: Mapping[str, Any] | None,
    now: datetime.datetime,
    config: OperatorConfig,
    resolved: Effective | SpecError,
    startup_s: int,
    policy: Mapping[str, Any] | None,
    pause: PausePolicy | None = None,
    resolved_workspace: Workspace | None = None,
) -> Plan:
    meta = objects.metadata(sandbox)
    spec = objects.spec(sandbox)
    current = owned_status(objects.status(sandbox))
    if objects.terminating(sandbox):
        return Plan(status=None)
    name = objects.name(sandbox)
    generation = meta.get("generation")
    pod_going = pod is not None and objects.terminating(pod)
    owners = objects.controller_uids(pod)
    uid = objects.uid(sandbox)
    ours = pod is not None and not (owners and uid and uid not in owners)
    effective = resolved if isinstance(resolved, Effective) else None
    if pause is None:
        pause = pause_policy(spec, None)
    if resolved_workspace is None:
        resolved_workspace = effective.workspace if effective is not None else Workspace()

    desired: dict[str, Any] = {"observedGeneration": generation} if generation is not None else {}
    # The effective values describe the pod: decided when it is created (a later template edit changes
    # neither the pod nor what the status says about it), refreshed when a pod is (re)created.
    fresh: dict[str, Any] = {"templateId": template_id(spec)}
    if effective is not None:
        fresh.update(vcpu=effective.vcpu, memory=effective.memory, templateId=effective.template_id)
        if effective.disk is not None:
            fresh["disk"] = effective.disk
        fresh["network"] = network_status(effective.network, name)
        fresh["workspace"] = workspace_status(name, effective.workspace)
    recorded: dict[str, Any] = {k: current[k] for k in RECORDED_FIELDS if k in current}
    desired.update(recorded if "vcpu" in recorded else fresh)
    workspace = recorded_workspace(current, resolved_workspace)
    expires_at, timeout = expiry(sandbox, effective)
    desired["timeout"] = timeout
    if pause.idle_timeout is not None and workspace.persistent:
        # Effective (spec, else template): the SDKs record use only for sandboxes that can go idle.
        desired["idleTimeout"] = pause.idle_timeout
    desired["expiresAt"] = format_time(expires_at)
    for key in ("podName", "startedAt", "resumedAt"):
        if key in current:
            desired[key] = current[key]
    # The Paused condition, once a sandbox was paused, stays (False, Resumed) after it resumed.
    previous_paused = next(
        (c for c in objects.items(current, "conditions") if c.get("type") == contract.CONDITION_PAUSED), None
    )
    paused_condition: tuple[str, str, str] | None = None
    if previous_paused is not None and previous_paused.get("reason") == contract.REASON_RESUMED:
        paused_condition = ("False", contract.REASON_RESUMED, str(previous_paused.get("message") or ""))

    def finish(
        phase: str,
        reason: str,
        message: str,
        paused: tuple[str, str, str] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
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
        paused = paused or paused_condition
        if paused is not None:
            desired["conditions"].append(
                _condition(current, contract.CONDITION_PAUSED, *paused, now, generation)
            )
        return desired

    def decided(status: dict[str, Any], **actions: Any) -> Plan:
        patch = status_patch(current, status)
        events = tuple(lifecycle.transition_events(current, status)) if patch else ()
        return Plan(status=status, patch=patch, events=events, **actions)

    retention = datetime.timedelta(seconds=config.expired_retention_s)
    pod_present = pod is not None and not pod_going

    def expired(status: dict[str, Any], expired_at: datetime.datetime) -> Plan:
        """Expired: the pod goes; the Sandbox is deleted once the retention after ``expired_at`` has passed
        (woken then)."""
        delete_at = expired_at + retention
        return decided(
            status,
            delete_pod=pod_present,
            delete_sandbox=now >= delete_at,
            wake_at=None if now >= delete_at else delete_at,
        )

    asked = spec.get("paused") is True
    phase_now = current.get("phase")
    if phase_now == contract.PHASE_EXPIRED:
        # Expired is final: the pod goes, the Sandbox stays for the retention period (for kubectl, the SDK).
        status = dict(current)
        status.pop("podIP", None)
        if generation is not None:
            status["observedGeneration"] = generation
        return expired(status, parse_time(str(current.get("expiresAt", desired["expiresAt"]))))

    if phase_now == contract.PHASE_PAUSED and asked:
        # Paused, and meant to stay so: no pod (one deleted meanwhile is not recreated, one still there goes),
        # no expiry; deleted after the template's pausedRetention, if it sets one.
        status = dict(current)
        status["timeout"] = timeout
        if generation is not None:
            status["observedGeneration"] = generation
        paused_at = parse_time(str(current["pausedAt"])) if current.get("pausedAt") else now
        kept_until = (
            paused_at + datetime.timedelta(seconds=pause.paused_retention)
            if pause.paused_retention is not None
            else None
        )
        if kept_until is not None and now >= kept_until:
            return decided(status, delete_sandbox=True)
        return decided(status, delete_pod=pod_present and ours, wake_at=kept_until)

    resuming = phase_now == contract.PHASE_PAUSED
    if resuming:
        # spec.paused turned false: a new pod on the same workspace; the timeout counts again from now.
        pname = pod_name(name)
        desired["podName"] = pname
        desired.pop("podIP", None)
        desired.pop("startedAt", None)
        resumed = ("False", contract.REASON_RESUMED, f"resumed at {format_time(now)}")
        if pod is not None and (pod_going or not ours):
            status = finish(
                contract.PHASE_PENDING,
                contract.REASON_RESUMING,
                f"resuming: waiting for the paused sandbox's pod {pname} to stop first",
                paused=resumed,
            )
            return decided(status)
        paused_condition = resumed
        desired["resumedAt"] = format_time(now)
        expires_at = now + datetime.timedelta(seconds=timeout)
        desired["expiresAt"] = format_time(expires_at)
        if pod is None:
            if effective is None:
                assert isinstance(resolved, SpecError)
                failure = finish(contract.PHASE_FAILED, resolved.reason, resolved.message)
                return decided(failure, wake_at=expires_at)
            kept = kept_resources(effective, recorded)
            expect_supervisor(desired, kept)
            claim = f" on its workspace {claim_name(name)}" if kept.workspace.persistent else ""
            status = finish(
                contract.PHASE_PENDING, contract.REASON_RESUMING, f"resuming: pod {pname} created{claim}"
            )
            network_policy, version = policy_action(sandbox, kept.network, policy, config)
            return decided(
                status,
                effective=kept,
                wake_at=expires_at,
                claim_expected=kept.workspace.persistent,
                network_policy=network_policy,
                policy_version=version,
            )
        # A pod of ours that is not going: created for this resume before a restart; carry on with it.

    due = now >= expires_at
    timeout_refusal = (
        pause_refusal(workspace, current, "onTimeout is Pause")
        if pause.on_timeout == contract.ON_TIMEOUT_PAUSE
        else ""
    )
    if due and timeout_refusal is not None:
        # Reached the timeout (onTimeout Delete, or Pause that cannot be): Expired is final.
        instead = ""
        if timeout_refusal:
            what = "its workspace is not persistent" if not workspace.persistent else "it had Failed"
            instead = f" and expired instead of pausing (onTimeout is Pause, but {what})"
        status = finish(
            contract.PHASE_EXPIRED,
            contract.REASON_EXPIRED,
            f"the sandbox reached its timeout of {timeout}s at {format_time(expires_at)}{instead}; "
            "its pod was deleted",
        )
        return expired(status, expires_at)

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

    # Pauses: asked (spec.paused), at the timeout (onTimeout Pause), or after idleTimeout without use.
    idle_at = None
    if (
        phase_now == contract.PHASE_RUNNING
        and pause.idle_timeout is not None
        and workspace.persistent
        and pod_present
        and not resuming
    ):
        activity = lifecycle.last_activity(objects.annotations(sandbox), now)
        idle_at = lifecycle.idle_deadline(current.get("startedAt"), activity, pause.idle_timeout)
    pause_reason: str | None = None
    if asked and not resuming:
        pause_reason = contract.REASON_PAUSED
    elif due:
        pause_reason = contract.REASON_TIMEOUT_PAUSED
    elif idle_at is not None and now >= idle_at:
        pause_reason = contract.REASON_IDLE_PAUSED
    if pause_reason is not None:
        refusal = pause_refusal(workspace, current, "spec.paused is true")
        if refusal is None:
            return _pause(
                sandbox, pause_reason, timeout, pause, now, desired, finish, decided, pod_present and ours
            )
        paused_condition = ("False", contract.REASON_PAUSE_REFUSED, refusal)

    if pod is None:
        if effective is None:
            assert isinstance(resolved, SpecError)
            if resolved.reason == contract.REASON_TEMPLATE_NOT_FOUND and not current.get("podName"):
                return _waiting_for_template(sandbox, resolved, startup_s, expires_at, now, finish, decided)
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
        expect_supervisor(desired, effective)
        reason = contract.REASON_POD_DELETED if recreated else contract.REASON_POD_CREATED
        message = recreated_message(pname) if recreated else created_message(pname)
        desired.pop("podIP", None)
        network_policy, version = policy_action(sandbox, effective.network, policy, config)
        return decided(
            finish(contract.PHASE_PENDING, reason, message),
            effective=effective,
            wake_at=expires_at,
            claim_expected=recreated and effective.workspace.persistent,
            network_policy=network_policy,
            policy_version=version,
        )

    pname = objects.name(pod)
    desired["podName"] = pname
    if pod_going or not ours:
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
    if state.reason == contract.REASON_POD_CREATED and (
        resuming or current.get("reason") in (contract.REASON_POD_DELETED, contract.REASON_RESUMING)
    ):
        # A recreated or resumed pod the kubelet has not reported on yet: the status keeps saying why it is
        # Pending.
        if resuming or current.get("reason") == contract.REASON_RESUMING:
            claim = f" on its workspace {claim_name(name)}" if workspace.persistent else ""
            state = dataclasses.replace(
                state, reason=contract.REASON_RESUMING, message=f"resuming: pod {pname} created{claim}"
            )
        else:
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
    if idle_at is not None:
        wake_at = min(wake_at, idle_at)
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


def _pause(
    sandbox: Mapping[str, Any],
    reason: str,
    timeout: int,
    policy: PausePolicy,
    now: datetime.datetime,
    desired: dict[str, Any],
    finish: Any,
    decided: Any,
    delete_pod: bool,
) -> Plan:
    """The plan pausing a sandbox: its pod deleted (gracefully: the app gets SIGTERM, the sidecar flushes),
    its workspace claim, NetworkPolicy and Secrets kept, phase Paused with why, and no expiry while paused.
    A pause the operator decides itself (idle, timeout) is written to ``spec.paused`` first, with the
    resourceVersion it was decided from, so that a use or a resume meanwhile wins (a conflict: decide
    again)."""
    name = objects.name(sandbox)
    why = {
        contract.REASON_PAUSED: "paused (spec.paused)",
        contract.REASON_IDLE_PAUSED: f"paused after {policy.idle_timeout}s without use (idleTimeout)",
        contract.REASON_TIMEOUT_PAUSED: f"paused at its timeout of {timeout}s (onTimeout Pause)",
    }[reason]
    message = (
        f"{why}: its pod is deleted and its workspace kept in PersistentVolumeClaim {claim_name(name)}; set "
        "spec.paused to false, or use it through the SDK, to resume it"
    )
    for key in ("podIP", "podName", "startedAt", "expiresAt"):
        desired.pop(key, None)
    status = finish(
        contract.PHASE_PAUSED, reason, message, paused=("True", reason, message), pausedAt=format_time(now)
    )
    sandbox_patch = None
    if reason != contract.REASON_PAUSED:
        sandbox_patch = {"spec": {"paused": True}}
        version = objects.metadata(sandbox).get("resourceVersion")
        if version:
            sandbox_patch["metadata"] = {"resourceVersion": version}
    delete_at = (
        now + datetime.timedelta(seconds=policy.paused_retention)
        if policy.paused_retention is not None
        else None
    )
    plan_: Plan = decided(status, delete_pod=delete_pod, sandbox_patch=sandbox_patch, wake_at=delete_at)
    return plan_


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
    """What the operator keeps of a Sandbox in memory (its index): identity, spec, the owned status, the
    resourceVersion (the precondition of the operator's own pause) and the activity annotation (idleness)."""
    meta = objects.metadata(body)
    keep = (
        "name",
        "namespace",
        "uid",
        "generation",
        "resourceVersion",
        "creationTimestamp",
        "deletionTimestamp",
    )
    trimmed_meta: dict[str, Any] = {k: meta[k] for k in keep if meta.get(k) is not None}
    activity = objects.annotations(body).get(contract.ANNOTATION_LAST_ACTIVITY)
    if activity is not None:
        trimmed_meta["annotations"] = {contract.ANNOTATION_LAST_ACTIVITY: activity}
    return {
        "apiVersion": body.get("apiVersion", contract.API_VERSION),
        "kind": body.get("kind", contract.SANDBOX_KIND),
        "metadata": trimmed_meta,
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
