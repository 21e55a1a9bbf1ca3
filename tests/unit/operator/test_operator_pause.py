"""Pause and resume, decided from plain data: the persistent workspace (claim and volume), spec.paused, the
refusal without a persistent workspace, the timeout while paused and after a resume, onTimeout Pause,
idleTimeout from the activity annotation, a template's pausedRetention, restarts mid-way."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

import leap0_contract as contract
from leap0_operator.config import OperatorConfig
from leap0_operator.lifecycle import format_time, idle_deadline, last_activity, transition_events
from leap0_operator.pod import build_pod, build_workspace_claim, claim_conflict
from leap0_operator.reconcile import Plan, plan, trim_sandbox
from leap0_operator.resolve import pause_policy, resolve, resolve_workspace
from leap0_operator.runtime import WriteTracker

CONFIG = OperatorConfig(expired_retention_s=60)
CREATED = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
PERSISTENT = {"workspace": {"persistent": True}}


def at(seconds: float) -> datetime.datetime:
    return CREATED + datetime.timedelta(seconds=seconds)


def sandbox(spec: dict[str, Any], status: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": contract.API_VERSION,
        "kind": contract.SANDBOX_KIND,
        "metadata": {
            "name": "s",
            "namespace": "n",
            "uid": "u-1",
            "generation": 1,
            "resourceVersion": "41",
            "creationTimestamp": format_time(CREATED),
            **meta,
        },
        "spec": spec,
        "status": status or {},
    }


def running(started: float = 3) -> dict[str, Any]:
    return {
        "phase": "Running",
        "podIP": "10.0.0.7",
        "initContainerStatuses": [{"name": "telemetry", "ready": True, "state": {"running": {}}}],
        "containerStatuses": [
            {"name": "sandbox", "ready": True, "state": {"running": {"startedAt": format_time(at(started))}}}
        ],
    }


def pod_of(spec: dict[str, Any], status: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    own = {k: v for k, v in spec.items() if k != "template"}
    built = build_pod(owner=sandbox(own), effective=resolve(own, None, CONFIG), org_id="n", config=CONFIG)
    built["metadata"].update({"uid": "p-1", "creationTimestamp": format_time(at(1)), **meta})
    built["status"] = status or {}
    return built


def step(
    spec: dict[str, Any],
    status: dict[str, Any] | None,
    pod: dict[str, Any] | None,
    now: float,
    template: dict[str, Any] | None = None,
    **meta: Any,
) -> Plan:
    return plan(sandbox(spec, status, **meta), template, pod, at(now), CONFIG)


def running_status(spec: dict[str, Any], template: dict[str, Any] | None = None) -> dict[str, Any]:
    """The status of a sandbox that started and runs (its pod created at 1 s, Running from 3 s)."""
    first = step(spec, None, None, 0, template)
    assert first.create_pod
    assert first.status is not None
    second = step(spec, first.status, pod_of(spec, running()), 4, template)
    assert second.status is not None
    assert second.status["phase"] == contract.PHASE_RUNNING
    return second.status


def paused_status(spec: dict[str, Any], at_s: float = 10) -> dict[str, Any]:
    status = running_status(spec)
    paused = step({**spec, "paused": True}, status, pod_of(spec, running()), at_s)
    assert paused.status is not None
    assert paused.status["phase"] == contract.PHASE_PAUSED
    return paused.status


def condition(status: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions", []) if c["type"] == ctype), None)


# --- the workspace ------------------------------------------------------------------------------------------
def test_a_persistent_workspace_is_a_claim_owned_by_the_sandbox_mounted_where_the_empty_dir_was() -> None:
    spec = {"workspace": {"persistent": True, "storageClassName": "fast"}, "disk": 2048}
    effective = resolve(spec, None, CONFIG)
    pod = build_pod(owner=sandbox(spec), effective=effective, org_id="n", config=CONFIG)
    workspaces = [v for v in pod["spec"]["volumes"] if v["name"] == contract.WORKSPACE_VOLUME]
    assert workspaces == [{"name": "workspace", "persistentVolumeClaim": {"claimName": "s-workspace"}}]
    mounts = [m for c in pod["spec"]["containers"] + pod["spec"]["initContainers"] for m in c["volumeMounts"]]
    assert {m["mountPath"] for m in mounts if m["name"] == contract.WORKSPACE_VOLUME} == {
        contract.WORKSPACE_PATH
    }
    claim = build_workspace_claim(owner=sandbox(spec), effective=effective)
    assert claim is not None
    assert claim["metadata"]["name"] == "s-workspace"
    assert claim["metadata"]["labels"][contract.LABEL_SANDBOX_ID] == "s"
    assert claim["metadata"]["ownerReferences"] == [
        {
            "apiVersion": contract.API_VERSION,
            "kind": contract.SANDBOX_KIND,
            "name": "s",
            "uid": "u-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "2048Mi"}},
        "storageClassName": "fast",
    }


def test_without_disk_or_storage_class_the_claim_takes_the_default_size_and_the_clusters_class() -> None:
    effective = resolve(PERSISTENT, None, CONFIG)
    claim = build_workspace_claim(owner=sandbox(PERSISTENT), effective=effective)
    assert claim is not None
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": f"{contract.DEFAULT_PERSISTENT_WORKSPACE_MIB}Mi"}},
    }


def test_the_default_workspace_stays_an_empty_dir_with_no_claim() -> None:
    effective = resolve({"disk": 100}, None, CONFIG)
    assert build_workspace_claim(owner=sandbox({}), effective=effective) is None
    pod = build_pod(owner=sandbox({}), effective=effective, org_id="n", config=CONFIG)
    workspaces = [v for v in pod["spec"]["volumes"] if v["name"] == contract.WORKSPACE_VOLUME]
    assert workspaces == [{"name": "workspace", "emptyDir": {"sizeLimit": "100Mi"}}]
    assert not any("persistentVolumeClaim" in v for v in pod["spec"]["volumes"])


def test_the_workspace_comes_field_by_field_from_the_sandbox_then_its_template() -> None:
    template = {"workspace": {"persistent": True, "storageClassName": "standard"}}
    assert resolve_workspace({}, template).persistent
    assert resolve_workspace({}, template).storage_class == "standard"
    assert resolve_workspace({"workspace": {"storageClassName": "fast"}}, template).storage_class == "fast"
    assert not resolve_workspace({"workspace": {"persistent": False}}, template).persistent
    assert resolve_workspace({"workspace": {"persistent": False}}, template).storage_class is None


def test_the_workspace_is_recorded_with_the_first_pod_and_a_template_edit_changes_nothing() -> None:
    template = {"workspace": {"persistent": True}}
    first = step({}, None, None, 0, template)
    assert first.status is not None
    assert first.status["workspace"] == {"persistent": True, "claimName": "s-workspace"}
    # the template drops the persistent workspace; the pod is deleted: the recreated pod keeps its claim
    again = step({}, first.status, None, 5, {})
    assert again.effective is not None
    assert again.effective.workspace.persistent
    assert again.claim_expected


def test_the_pause_policy_sandbox_first_retention_from_the_template_only() -> None:
    template = {"idleTimeout": 600, "onTimeout": "Pause", "pausedRetention": 3600}
    policy = pause_policy({"idleTimeout": 60, "pausedRetention": 1}, template)
    assert (policy.idle_timeout, policy.on_timeout, policy.paused_retention) == (60, "Pause", 3600)
    assert pause_policy({}, None).on_timeout == contract.ON_TIMEOUT_DELETE
    assert pause_policy({"onTimeout": "Later", "idleTimeout": True}, None).idle_timeout is None


# --- pausing ------------------------------------------------------------------------------------------------
def test_pausing_deletes_the_pod_and_shows_paused_with_when_and_why_and_no_expiry() -> None:
    status = running_status(PERSISTENT)
    decision = step({**PERSISTENT, "paused": True}, status, pod_of(PERSISTENT, running()), 10)
    assert decision.delete_pod
    assert not decision.create_pod
    assert not decision.delete_sandbox
    assert decision.sandbox_patch is None  # the user's own spec.paused: nothing to write there
    paused = decision.status
    assert paused is not None
    assert (paused["phase"], paused["reason"]) == (contract.PHASE_PAUSED, contract.REASON_PAUSED)
    assert paused["pausedAt"] == format_time(at(10))
    assert "s-workspace" in paused["message"]
    assert "spec.paused to false" in paused["message"]
    for gone in ("expiresAt", "podIP", "podName", "startedAt"):
        assert gone not in paused
        assert decision.patch[gone] is None
    ready = condition(paused, contract.CONDITION_READY)
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("False", contract.REASON_PAUSED)
    cond = condition(paused, contract.CONDITION_PAUSED)
    assert cond is not None
    assert (cond["status"], cond["reason"]) == ("True", contract.REASON_PAUSED)
    assert [(e.type, e.reason) for e in decision.events] == [("Normal", contract.REASON_PAUSED)]
    assert decision.wake_at is None  # no expiry while paused, no retention without a template's


def test_a_paused_sandbox_stays_paused_writes_nothing_and_never_expires() -> None:
    paused = paused_status(PERSISTENT)
    spec = {**PERSISTENT, "paused": True}
    # long past its 300 s timeout: still Paused, nothing to write, no pod created
    for now in (20, 400, 10_000):
        decision = step(spec, paused, None, now)
        assert decision.patch == {}
        assert not decision.create_pod
        assert not decision.delete_pod
        assert decision.wake_at is None
        assert not decision.delete_sandbox


def test_a_pod_deleted_by_someone_else_while_paused_is_not_recreated_and_a_leftover_pod_goes() -> None:
    paused = paused_status(PERSISTENT)
    spec = {**PERSISTENT, "paused": True}
    assert not step(spec, paused, None, 20).create_pod
    assert step(spec, paused, pod_of(PERSISTENT, running()), 20).delete_pod
    going = pod_of(PERSISTENT, running(), deletionTimestamp=format_time(at(10)))
    assert not step(spec, paused, going, 20).delete_pod


def test_a_paused_sandbox_is_deleted_after_its_templates_paused_retention() -> None:
    template = {"workspace": {"persistent": True}, "pausedRetention": 100}
    status = running_status({}, template)
    paused = step({"paused": True}, status, pod_of(PERSISTENT, running()), 10, template)
    assert paused.wake_at == at(110)
    assert paused.status is not None
    later = step({"paused": True}, paused.status, None, 50, template)
    assert later.wake_at == at(110)
    assert not later.delete_sandbox
    assert step({"paused": True}, paused.status, None, 110, template).delete_sandbox


# --- resuming -----------------------------------------------------------------------------------------------
def test_resuming_creates_a_pod_on_the_same_claim_and_the_timeout_counts_from_the_resume() -> None:
    spec = {**PERSISTENT, "timeout": 100, "vcpu": 2}
    paused = paused_status(spec)
    decision = step(spec, paused, None, 1000)
    assert decision.effective is not None
    assert decision.effective.workspace.persistent
    assert decision.effective.vcpu == 2
    assert decision.claim_expected
    status = decision.status
    assert status is not None
    assert (status["phase"], status["reason"]) == (contract.PHASE_PENDING, contract.REASON_RESUMING)
    assert status["resumedAt"] == format_time(at(1000))
    assert status["expiresAt"] == format_time(at(1100))
    assert decision.wake_at == at(1100)
    assert decision.patch["pausedAt"] is None
    cond = condition(status, contract.CONDITION_PAUSED)
    assert cond is not None
    assert (cond["status"], cond["reason"]) == ("False", contract.REASON_RESUMED)
    assert [(e.type, e.reason) for e in decision.events] == [("Normal", contract.REASON_RESUMING)]
    # the new pod: Resuming until the kubelet reports, then Running with a new startedAt
    new_pod = {"creationTimestamp": format_time(at(1000)), "uid": "p-2"}
    created = step(spec, status, pod_of(spec, {}, **new_pod), 1001)
    assert created.patch == {}
    up = step(spec, status, pod_of(spec, running(started=1002), **new_pod), 1003)
    assert up.status is not None
    assert up.status["phase"] == contract.PHASE_RUNNING
    assert up.status["startedAt"] == format_time(at(1002))
    assert [e.reason for e in up.events] == [contract.REASON_RUNNING]
    cond = condition(up.status, contract.CONDITION_PAUSED)
    assert cond is not None
    assert cond["reason"] == contract.REASON_RESUMED
    # and it expires 100 s after the resume, not after its creation
    assert step(spec, up.status, pod_of(spec, running(started=1002)), 1099).status["phase"] == "Running"  # type: ignore[index]
    assert step(spec, up.status, pod_of(spec, running(started=1002)), 1100).delete_pod


def test_resuming_waits_for_the_paused_pod_to_be_gone() -> None:
    paused = paused_status(PERSISTENT)
    going = pod_of(PERSISTENT, running(), deletionTimestamp=format_time(at(10)))
    decision = step(PERSISTENT, paused, going, 11)
    assert not decision.create_pod
    assert not decision.delete_pod
    assert decision.status is not None
    assert decision.status["reason"] == contract.REASON_RESUMING
    assert "to stop first" in decision.status["message"]


def test_a_pod_created_for_a_resume_before_a_restart_is_carried_on_with() -> None:
    paused = paused_status(PERSISTENT)
    # the operator created the pod, then died before writing the status: the pod is the resumed one
    decision = step(PERSISTENT, paused, pod_of(PERSISTENT, {}), 30)
    assert not decision.create_pod
    assert not decision.delete_pod
    status = decision.status
    assert status is not None
    assert (status["phase"], status["reason"]) == (contract.PHASE_PENDING, contract.REASON_RESUMING)
    assert status["resumedAt"] == format_time(at(30))


def test_a_resume_whose_template_is_gone_fails_clearly() -> None:
    template = {"workspace": {"persistent": True}}
    status = running_status({"template": "t"}, template)
    paused = step({"template": "t", "paused": True}, status, pod_of(PERSISTENT, running()), 10, template)
    assert paused.status is not None
    decision = step({"template": "t"}, paused.status, None, 20, None)
    assert decision.status is not None
    assert decision.status["reason"] == contract.REASON_TEMPLATE_NOT_FOUND
    assert not decision.create_pod


# --- refusals -----------------------------------------------------------------------------------------------
def test_a_pause_without_a_persistent_workspace_is_refused_with_how_to_get_one() -> None:
    status = running_status({})
    decision = step({"paused": True}, status, pod_of({}, running()), 10)
    assert not decision.delete_pod
    refused = decision.status
    assert refused is not None
    assert refused["phase"] == contract.PHASE_RUNNING
    cond = condition(refused, contract.CONDITION_PAUSED)
    assert cond is not None
    assert (cond["status"], cond["reason"]) == ("False", contract.REASON_PAUSE_REFUSED)
    assert "emptyDir" in cond["message"]
    assert "spec.workspace.persistent: true" in cond["message"]
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", contract.REASON_PAUSE_REFUSED)]
    # said once; gone when spec.paused is unset again
    assert step({"paused": True}, refused, pod_of({}, running()), 11).patch == {}
    cleared = step({}, refused, pod_of({}, running()), 12)
    assert cleared.status is not None
    assert condition(cleared.status, contract.CONDITION_PAUSED) is None


def test_a_failed_sandbox_cannot_be_paused() -> None:
    status = running_status(PERSISTENT)
    ended = step(PERSISTENT, status, pod_of(PERSISTENT, {"phase": "Failed"}), 5).status
    assert ended is not None
    assert ended["phase"] == contract.PHASE_FAILED
    decision = step({**PERSISTENT, "paused": True}, ended, pod_of(PERSISTENT, {"phase": "Failed"}), 6)
    assert decision.status is not None
    assert decision.status["phase"] == contract.PHASE_FAILED
    cond = condition(decision.status, contract.CONDITION_PAUSED)
    assert cond is not None
    assert "Failed sandbox cannot be paused" in cond["message"]


# --- the timeout --------------------------------------------------------------------------------------------
def test_on_timeout_pause_pauses_at_the_timeout_through_spec_paused_with_the_version_decided_from() -> None:
    spec = {**PERSISTENT, "timeout": 60, "onTimeout": "Pause"}
    status = running_status(spec)
    decision = step(spec, status, pod_of(spec, running()), 60)
    assert decision.sandbox_patch == {"spec": {"paused": True}, "metadata": {"resourceVersion": "41"}}
    assert decision.delete_pod
    assert decision.status is not None
    assert (decision.status["phase"], decision.status["reason"]) == (
        contract.PHASE_PAUSED,
        contract.REASON_TIMEOUT_PAUSED,
    )
    # spec.paused is true now: it stays paused for the same reason
    again = step({**spec, "paused": True}, decision.status, None, 61)
    assert again.patch == {}
    assert again.status is not None
    assert again.status["reason"] == contract.REASON_TIMEOUT_PAUSED


def test_on_timeout_pause_without_a_persistent_workspace_expires_and_says_why() -> None:
    spec = {"timeout": 60, "onTimeout": "Pause"}
    status = running_status(spec)
    decision = step(spec, status, pod_of(spec, running()), 60)
    assert decision.sandbox_patch is None
    assert decision.delete_pod
    assert decision.status is not None
    assert decision.status["phase"] == contract.PHASE_EXPIRED
    assert "expired instead of pausing" in decision.status["message"]
    assert "not persistent" in decision.status["message"]


def test_on_timeout_delete_is_the_default() -> None:
    status = running_status(PERSISTENT)
    decision = step(PERSISTENT, status, pod_of(PERSISTENT, running()), 300)
    assert decision.status is not None
    assert decision.status["phase"] == contract.PHASE_EXPIRED


# --- idleness -----------------------------------------------------------------------------------------------
def test_an_unused_running_sandbox_is_paused_after_its_idle_timeout() -> None:
    spec = {**PERSISTENT, "idleTimeout": 60}
    status = running_status(spec)  # Running from 3 s
    quiet = step(spec, status, pod_of(spec, running()), 30)
    assert quiet.patch == {}
    assert quiet.wake_at == at(63)
    idle = step(spec, status, pod_of(spec, running()), 63)
    assert idle.status is not None
    assert idle.status["reason"] == contract.REASON_IDLE_PAUSED
    assert "60s without use" in idle.status["message"]
    assert idle.sandbox_patch == {"spec": {"paused": True}, "metadata": {"resourceVersion": "41"}}
    assert idle.delete_pod


def test_use_recorded_in_the_activity_annotation_moves_the_idle_pause() -> None:
    spec = {**PERSISTENT, "idleTimeout": 60}
    status = running_status(spec)
    used = {"annotations": {contract.ANNOTATION_LAST_ACTIVITY: format_time(at(50))}}
    decision = step(spec, status, pod_of(spec, running()), 63, **used)
    assert decision.patch == {}
    assert decision.wake_at == at(110)
    assert step(spec, status, pod_of(spec, running()), 110, **used).sandbox_patch is not None


def test_the_activity_time_forged_into_the_future_is_ignored_and_a_slightly_fast_clock_counts_as_now() -> (
    None
):
    now = at(100)
    far = {contract.ANNOTATION_LAST_ACTIVITY: format_time(at(100 + contract.ACTIVITY_CLOCK_SKEW_S + 1))}
    near = {contract.ANNOTATION_LAST_ACTIVITY: format_time(at(130))}
    assert last_activity(far, now) is None
    assert last_activity(near, now) == now
    assert last_activity({contract.ANNOTATION_LAST_ACTIVITY: "yesterday"}, now) is None
    assert last_activity({}, now) is None
    # so a sandbox claiming use in the year 2100 is still paused when its idle time is up
    spec = {**PERSISTENT, "idleTimeout": 60}
    status = running_status(spec)
    forged = {"annotations": {contract.ANNOTATION_LAST_ACTIVITY: "2100-01-01T00:00:00Z"}}
    assert step(spec, status, pod_of(spec, running()), 63, **forged).sandbox_patch is not None


def test_idleness_counts_from_the_start_on_the_pod_so_a_resumed_sandbox_is_not_paused_at_once() -> None:
    assert idle_deadline(format_time(at(1000)), at(50), 60) == at(1060)
    assert idle_deadline(format_time(at(10)), at(50), 60) == at(110)
    assert idle_deadline(None, at(50), 60) is None


def test_idle_timeout_does_nothing_without_a_persistent_workspace_or_before_running() -> None:
    spec = {"idleTimeout": 60}
    status = running_status(spec)
    decision = step(spec, status, pod_of(spec, running()), 200)
    assert decision.sandbox_patch is None
    assert not decision.delete_pod
    pending = step({**PERSISTENT, "idleTimeout": 1}, None, None, 100)
    assert pending.status is not None
    assert pending.status["phase"] == contract.PHASE_PENDING


# --- bookkeeping --------------------------------------------------------------------------------------------
def test_the_operator_keeps_the_resource_version_and_activity_and_a_status_echo_is_still_an_echo() -> None:
    body = sandbox(PERSISTENT, annotations={contract.ANNOTATION_LAST_ACTIVITY: "t", "other": "x"})
    trimmed = trim_sandbox(body)
    assert trimmed["metadata"]["resourceVersion"] == "41"
    assert trimmed["metadata"]["annotations"] == {contract.ANNOTATION_LAST_ACTIVITY: "t"}
    tracker = WriteTracker()
    tracker.status_written(("n", "s"), {"phase": "Running"})
    echo = {
        **trimmed,
        "metadata": {**trimmed["metadata"], "resourceVersion": "42"},
        "status": {"phase": "Running"},
    }
    assert tracker.is_echo(("n", "s"), trimmed, echo)


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ({}, {"phase": "Paused", "reason": "IdlePaused"}, [("Normal", "IdlePaused")]),
        (
            {"phase": "Paused", "reason": "Paused"},
            {"phase": "Pending", "reason": "Resuming"},
            [("Normal", "Resuming")],
        ),
        (
            {"phase": "Pending", "reason": "Resuming"},
            {"phase": "Pending", "reason": "ContainersNotReady"},
            [],
        ),
        (
            {"phase": "Running", "reason": "Running"},
            {
                "phase": "Running",
                "reason": "Running",
                "conditions": [
                    {"type": "Paused", "status": "False", "reason": "PauseRefused", "message": "m"}
                ],
            },
            [("Warning", "PauseRefused")],
        ),
    ],
)
def test_the_events_of_pause_and_resume(
    before: dict[str, Any], after: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    assert [(e.type, e.reason) for e in transition_events(before, after)] == expected


def test_a_claim_of_the_workspaces_name_that_is_not_the_sandboxs_is_never_mounted() -> None:
    """Naming a Sandbox after someone else's claim (``db`` for ``db-workspace``) must not hand that volume to
    the sandbox's author."""
    effective = resolve(PERSISTENT, None, CONFIG)
    own = build_workspace_claim(owner=sandbox(PERSISTENT), effective=effective)
    assert own is not None
    assert claim_conflict(own, sandbox(PERSISTENT)) is None
    foreign = {"metadata": {"name": "s-workspace", "ownerReferences": [{"uid": "other", "controller": True}]}}
    message = claim_conflict(foreign, sandbox(PERSISTENT))
    assert message is not None
    assert "is not this Sandbox's" in message
    assert claim_conflict({"metadata": {"name": "s-workspace"}}, sandbox(PERSISTENT)) is not None


def test_a_template_can_lock_the_pause_fields() -> None:
    template = {
        "workspace": {"persistent": True},
        "idleTimeout": 600,
        "lockedFields": ["idleTimeout", "workspace"],
    }
    # a live Sandbox changed to a day of idleness: the template's 10 minutes apply
    assert pause_policy({"idleTimeout": 86400}, template).idle_timeout == 600
    # a new one asking otherwise gets no pod
    refused = step({"idleTimeout": 86400}, None, None, 0, template)
    assert refused.status is not None
    assert refused.status["reason"] == contract.REASON_FIELD_LOCKED
    assert not refused.create_pod
    no_volume = step({"workspace": {"persistent": False}}, None, None, 0, template)
    assert no_volume.status is not None
    assert no_volume.status["reason"] == contract.REASON_FIELD_LOCKED
    assert step({}, None, None, 0, template).create_pod
