"""Status from the pod, expiry arithmetic, drift and the reconcile plan: pure decisions on plain dicts."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

import leap0_contract as contract
from leap0_operator.config import OperatorConfig
from leap0_operator.pod import build_pod
from leap0_operator.reconcile import (
    detect_drift,
    failed,
    format_time,
    plan,
    pod_state,
    status_patch,
    trim_pod,
    trim_sandbox,
)
from leap0_operator.resolve import SpecError, resolve

CONFIG = OperatorConfig(expired_retention_s=60)
CREATED = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)


def at(seconds: float) -> datetime.datetime:
    return CREATED + datetime.timedelta(seconds=seconds)


def sandbox(
    spec: dict[str, Any] | None = None, status: dict[str, Any] | None = None, **meta: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "leap0.dev/v1alpha1",
        "kind": "Sandbox",
        "metadata": {
            "name": "s",
            "namespace": "n",
            "uid": "u-1",
            "generation": 1,
            "creationTimestamp": format_time(CREATED),
            **meta,
        },
        "spec": spec or {},
        "status": status or {},
    }


def pod(status: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    built = build_pod(owner=sandbox(), effective=resolve({}, None, CONFIG), org_id="n", config=CONFIG)
    built["metadata"].update(uid="p-1", **meta)
    built["status"] = status or {}
    return built


def running(ready: bool = True) -> dict[str, Any]:
    return {
        "phase": "Running",
        "podIP": "10.0.0.7",
        "startTime": format_time(at(2)),
        "conditions": [{"type": "PodScheduled", "status": "True"}],
        "initContainerStatuses": [{"name": "telemetry", "ready": ready, "state": {"running": {}}}],
        "containerStatuses": [
            {"name": "sandbox", "ready": ready, "state": {"running": {"startedAt": format_time(at(3))}}}
        ],
    }


def terminated(**state: Any) -> dict[str, Any]:
    return {
        "phase": "Failed",
        "containerStatuses": [{"name": "sandbox", "ready": False, "state": {"terminated": state}}],
    }


# --- pod_state -----------------------------------------------------------------------------------------
def test_a_pod_without_status_is_pending_as_just_created() -> None:
    state = pod_state(pod())
    assert (state.phase, state.reason) == (contract.PHASE_PENDING, contract.REASON_POD_CREATED)


def test_all_containers_ready_is_running_with_ip_and_start_time() -> None:
    state = pod_state(pod(running()))
    assert (state.phase, state.reason, state.ip, state.started_at) == (
        contract.PHASE_RUNNING,
        contract.REASON_RUNNING,
        "10.0.0.7",
        format_time(at(3)),
    )


def test_a_container_not_ready_keeps_it_pending_and_says_which() -> None:
    status = running()
    status["initContainerStatuses"][0]["ready"] = False
    state = pod_state(pod(status))
    assert (state.phase, state.reason) == (contract.PHASE_PENDING, contract.REASON_CONTAINERS_NOT_READY)
    assert "telemetry" in state.message


@pytest.mark.parametrize(
    ("status", "reason", "words"),
    [
        (
            {
                "phase": "Pending",
                "containerStatuses": [
                    {
                        "name": "sandbox",
                        "image": "nope:1",
                        "state": {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}},
                    }
                ],
            },
            contract.REASON_IMAGE_PULL_ERROR,
            "nope:1",
        ),
        (
            {
                "phase": "Pending",
                "containerStatuses": [{"name": "sandbox", "state": {"waiting": {"reason": "ErrImagePull"}}}],
            },
            contract.REASON_IMAGE_PULL_ERROR,
            "cannot pull",
        ),
        (terminated(reason="OOMKilled", exitCode=137), contract.REASON_OOM_KILLED, "out of memory"),
        (
            {
                "phase": "Running",
                "initContainerStatuses": [
                    {"name": "telemetry", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
                ],
            },
            contract.REASON_CRASH_LOOP,
            "telemetry",
        ),
        (terminated(reason="Error", exitCode=3), contract.REASON_CONTAINER_FAILED, "code 3"),
        (terminated(reason="Completed", exitCode=0), contract.REASON_COMPLETED, "code 0"),
        (
            {"phase": "Failed", "reason": "Evicted", "message": "node ran out of disk"},
            contract.REASON_POD_FAILED,
            "out of disk",
        ),
    ],
)
def test_failures_carry_the_reason_a_user_needs(status: dict[str, Any], reason: str, words: str) -> None:
    state = pod_state(pod(status))
    assert state.phase == contract.PHASE_FAILED
    assert state.reason == reason
    assert words in state.message


# --- drift ---------------------------------------------------------------------------------------------
def test_an_untouched_pod_has_no_drift() -> None:
    assert detect_drift(pod()) is None


def test_an_edited_image_is_reported() -> None:
    edited = pod()
    edited["spec"]["containers"][0]["image"] = "evil:latest"
    message = detect_drift(edited)
    assert message is not None
    assert "sandbox" in message
    assert "evil:latest" in message


def test_drift_survives_trimming_for_the_index() -> None:
    edited = pod()
    edited["spec"]["initContainers"][0]["image"] = "other-sidecar"
    assert detect_drift(trim_pod(edited)) == detect_drift(edited)
    assert json.loads(trim_pod(edited)["metadata"]["annotations"][contract.ANNOTATION_POD_IMAGES])


def test_trimmed_pod_gives_the_same_state() -> None:
    for status in (running(), terminated(reason="OOMKilled", exitCode=137), {}):
        assert pod_state(trim_pod(pod(status))) == pod_state(pod(status))


# --- plan: creation, status, recreation ----------------------------------------------------------------
def test_new_sandbox_creates_its_pod_and_becomes_pending() -> None:
    decision = plan(sandbox(), None, None, at(1), CONFIG)
    assert decision.create_pod
    assert decision.effective is not None
    assert not decision.delete_pod
    assert not decision.delete_sandbox
    status = decision.status
    assert status is not None
    assert status["phase"] == contract.PHASE_PENDING
    assert status["podName"] == "s"
    assert status["expiresAt"] == format_time(at(contract.DEFAULT_TIMEOUT_S))
    assert (status["vcpu"], status["memory"], status["templateId"], status["observedGeneration"]) == (
        1,
        1024,
        "default",
        1,
    )
    assert status["conditions"][0]["type"] == contract.CONDITION_READY
    assert status["conditions"][0]["status"] == "False"
    assert decision.wake_at == at(contract.DEFAULT_TIMEOUT_S)


def test_the_pods_first_event_needs_no_second_write() -> None:
    first = plan(sandbox(), None, None, at(1), CONFIG)
    assert first.status is not None
    after = plan(sandbox(status=first.status), None, pod(), at(1.5), CONFIG)
    assert after.status is not None
    assert status_patch(first.status, after.status) == {}


def test_running_pod_makes_the_sandbox_running_and_ready() -> None:
    first = plan(sandbox(), None, None, at(1), CONFIG).status
    decision = plan(sandbox(status=first), None, pod(running()), at(5), CONFIG)
    status = decision.status
    assert status is not None
    assert not decision.create_pod
    assert status["phase"] == contract.PHASE_RUNNING
    assert status["podIP"] == "10.0.0.7"
    assert status["startedAt"] == format_time(at(3))
    ready = status["conditions"][0]
    assert (ready["status"], ready["reason"], ready["lastTransitionTime"]) == (
        "True",
        "Running",
        format_time(at(5)),
    )
    # Nothing changes later: no write, and the transition time stays.
    again = plan(sandbox(status=status), None, pod(running()), at(50), CONFIG)
    assert again.status is not None
    assert status_patch(status, again.status) == {}


def test_oom_killed_pod_fails_the_sandbox() -> None:
    status = plan(sandbox(), None, pod(terminated(reason="OOMKilled", exitCode=137)), at(9), CONFIG).status
    assert status is not None
    assert (status["phase"], status["reason"]) == ("Failed", "OOMKilled")
    assert status["conditions"][0]["status"] == "False"


def test_pod_deleted_while_live_is_recreated() -> None:
    status = plan(sandbox(), None, pod(running()), at(5), CONFIG).status
    decision = plan(sandbox(status=status), None, None, at(10), CONFIG)
    assert decision.create_pod
    assert decision.status is not None
    assert decision.status["reason"] == contract.REASON_POD_DELETED
    assert "podIP" not in decision.status
    assert status is not None
    assert status["startedAt"]
    assert "startedAt" not in decision.status  # it will be the new pod's
    assert [(e.type, e.reason) for e in decision.events] == [("Normal", contract.REASON_POD_DELETED)]


def test_a_terminating_or_foreign_pod_is_waited_for_not_duplicated() -> None:
    going = plan(sandbox(), None, pod(deletionTimestamp=format_time(at(4))), at(5), CONFIG)
    assert not going.create_pod
    assert going.status is not None
    assert going.status["phase"] == "Pending"
    foreign = pod()
    foreign["metadata"]["ownerReferences"] = [{"uid": "someone-else", "controller": True}]
    assert not plan(sandbox(), None, foreign, at(5), CONFIG).create_pod


def test_edited_pod_is_reported_in_a_condition_not_recreated() -> None:
    edited = pod(running())
    edited["spec"]["containers"][0]["image"] = "evil:latest"
    decision = plan(sandbox(), None, edited, at(5), CONFIG)
    assert not decision.create_pod
    assert not decision.delete_pod
    assert decision.status is not None
    drift = [c for c in decision.status["conditions"] if c["type"] == contract.CONDITION_POD_SPEC_DRIFT]
    assert drift
    assert drift[0]["status"] == "True"
    assert "evil:latest" in drift[0]["message"]
    assert decision.status["phase"] == contract.PHASE_RUNNING


def test_an_unknown_template_waits_pending_without_a_pod_until_the_startup_timeout() -> None:
    # A template applied with the Sandbox may reach the operator after it: the Sandbox waits for it (the
    # template's arrival looks at it again), within the startup timeout from its creation.
    config = OperatorConfig(expired_retention_s=60, startup_timeout_s=120)
    decision = plan(sandbox({"template": "missing"}), None, None, at(1), config)
    assert not decision.create_pod
    assert decision.patch == decision.status  # the whole status is new: one write
    assert decision.wake_at == at(120)  # the startup deadline, before the expiry (300 s)
    assert decision.status is not None
    assert (decision.status["phase"], decision.status["reason"]) == (
        contract.PHASE_PENDING,
        contract.REASON_TEMPLATE_NOT_FOUND,
    )
    assert 'SandboxTemplate "missing" does not exist' in decision.status["message"]
    assert [(e.type, e.reason) for e in decision.events] == [("Normal", contract.REASON_TEMPLATE_NOT_FOUND)]
    again = plan(sandbox({"template": "missing"}, decision.status), None, None, at(60), config)
    assert not again.patch  # nothing new to say while it waits
    assert not again.create_pod

    arrived = plan(sandbox({"template": "missing"}, decision.status), {"vcpu": 2}, None, at(61), config)
    assert arrived.create_pod
    assert arrived.status is not None
    assert arrived.status["phase"] == contract.PHASE_PENDING
    assert arrived.status["reason"] != contract.REASON_TEMPLATE_NOT_FOUND

    late = plan(sandbox({"template": "missing"}, decision.status), None, None, at(120), config)
    assert late.status is not None
    assert (late.status["phase"], late.status["reason"]) == (
        contract.PHASE_FAILED,
        contract.REASON_STARTUP_TIMEOUT,
    )
    assert late.status["message"].startswith("still TemplateNotFound after 120 s: SandboxTemplate")
    assert late.wake_at == at(300)  # final; it still expires
    after = plan(sandbox({"template": "missing"}, late.status), None, None, at(121), config)
    assert not after.patch


def test_template_deleted_later_does_not_fail_a_running_sandbox() -> None:
    status = plan(sandbox({"template": "t"}), {"vcpu": 4}, pod(running()), at(5), CONFIG).status
    later = plan(sandbox({"template": "t"}, status), None, pod(running()), at(6), CONFIG)
    assert later.status is not None
    assert later.status["phase"] == "Running"
    assert later.status["vcpu"] == 4


def test_deleting_sandbox_needs_nothing() -> None:
    decision = plan(sandbox(deletionTimestamp=format_time(at(3))), None, pod(), at(4), CONFIG)
    assert decision.status is None
    assert not decision.create_pod
    assert not decision.delete_pod


# --- plan: expiry ----------------------------------------------------------------------------------------
def test_expiry_is_creation_plus_timeout_from_spec_template_or_default() -> None:
    assert plan(sandbox({"timeout": 30}), None, None, at(1), CONFIG).wake_at == at(30)
    assert plan(sandbox(), {"timeout": 90}, None, at(1), CONFIG).wake_at == at(90)
    assert plan(sandbox(), None, None, at(1), CONFIG).wake_at == at(300)


def test_at_expiry_the_pod_is_deleted_and_the_sandbox_expired() -> None:
    status = plan(sandbox({"timeout": 30}), None, pod(running()), at(5), CONFIG).status
    decision = plan(sandbox({"timeout": 30}, status), None, pod(running()), at(30), CONFIG)
    assert decision.delete_pod
    assert not decision.create_pod
    assert not decision.delete_sandbox
    assert decision.status is not None
    assert (decision.status["phase"], decision.status["reason"]) == ("Expired", "Expired")
    assert "podIP" not in decision.status
    assert decision.wake_at == at(30 + CONFIG.expired_retention_s)


def test_an_expired_sandbox_is_never_revived_and_is_deleted_after_retention() -> None:
    expired = plan(sandbox({"timeout": 30}), None, None, at(31), CONFIG).status
    assert expired is not None
    assert expired["phase"] == "Expired"
    quiet = plan(sandbox({"timeout": 30}, expired), None, None, at(40), CONFIG)
    assert not quiet.create_pod
    assert quiet.status is not None
    assert status_patch(expired, quiet.status) == {}
    # Even a later, longer timeout does not bring the pod back.
    assert not plan(sandbox({"timeout": 3000}, expired), None, None, at(40), CONFIG).create_pod
    gone = plan(sandbox({"timeout": 30}, expired), None, None, at(90), CONFIG)
    assert gone.delete_sandbox
    assert gone.wake_at is None


def test_changing_timeout_reschedules_in_both_directions() -> None:
    status = plan(sandbox({"timeout": 100}), None, pod(running()), at(5), CONFIG).status
    longer = plan(sandbox({"timeout": 200}, status, generation=2), None, pod(running()), at(6), CONFIG)
    assert longer.wake_at == at(200)
    assert longer.status is not None
    assert status_patch(status, longer.status) == {
        "expiresAt": format_time(at(200)),
        "timeout": 200,
        "observedGeneration": 2,
        "conditions": longer.status["conditions"],
    }
    shorter = plan(sandbox({"timeout": 10}, status, generation=3), None, pod(running()), at(11), CONFIG)
    assert shorter.delete_pod
    assert shorter.status is not None
    assert shorter.status["phase"] == "Expired"


def test_template_timeout_is_decided_once() -> None:
    status = plan(sandbox(), {"timeout": 100}, None, at(1), CONFIG).status
    assert status is not None
    later = plan(sandbox(status=status), {"timeout": 5000}, pod(), at(2), CONFIG)
    assert later.wake_at == at(100)


def test_status_patch_removes_vanished_fields_and_leaves_kopf_alone() -> None:
    assert status_patch({"phase": "Running", "podIP": "1.2.3.4", "kopf": {"x": 1}}, {"phase": "Running"}) == {
        "podIP": None
    }


def test_trim_sandbox_keeps_what_the_plan_needs() -> None:
    body = sandbox({"timeout": 5}, {"phase": "Pending", "kopf": {"progress": {}}})
    body["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    trimmed = trim_sandbox(body)
    assert "managedFields" not in trimmed["metadata"]
    assert "kopf" not in trimmed["status"]
    assert plan(trimmed, None, None, at(1), CONFIG) == plan(body, None, None, at(1), CONFIG)


def test_template_edits_change_neither_a_live_sandbox_nor_its_recreated_pod() -> None:
    status = plan(sandbox({"template": "t"}), {"vcpu": 2}, None, at(1), CONFIG).status
    assert status is not None
    live = plan(sandbox({"template": "t"}, status), {"vcpu": 2}, pod(running()), at(5), CONFIG).status
    assert live is not None
    edited = plan(sandbox({"template": "t"}, live), {"vcpu": 6}, pod(running()), at(6), CONFIG)
    assert edited.status is not None
    assert status_patch(live, edited.status) == {}
    recreated = plan(sandbox({"template": "t"}, live), {"vcpu": 6}, None, at(7), CONFIG)
    assert recreated.create_pod
    assert recreated.effective is not None
    assert recreated.effective.vcpu == 2  # the resources it was started with
    assert recreated.status is not None
    assert recreated.status["vcpu"] == 2


def test_a_template_created_later_lets_a_failed_sandbox_start() -> None:
    missing = SpecError(contract.REASON_TEMPLATE_NOT_FOUND, "no template late")
    status = failed(sandbox({"template": "late"}), missing, at(1), CONFIG).status
    assert status is not None
    assert status["reason"] == contract.REASON_TEMPLATE_NOT_FOUND
    later = plan(sandbox({"template": "late"}, status), {"memory": 2048}, None, at(2), CONFIG)
    assert later.create_pod
    assert later.status is not None
    assert (later.status["phase"], later.status["memory"]) == ("Pending", 2048)


def test_a_pod_refused_as_invalid_fails_with_the_servers_message() -> None:
    refused = SpecError(
        contract.REASON_INVALID_SPEC,
        "the API server refused creating pod s: spec.containers[0].image: Required",
    )
    status = failed(sandbox(), refused, at(1), CONFIG).status
    assert status is not None
    assert (status["phase"], status["reason"]) == ("Failed", contract.REASON_INVALID_SPEC)
    assert status["message"] == refused.message
    assert status["conditions"][0]["message"] == refused.message


def test_a_permanent_error_does_not_undo_expiry() -> None:
    status = failed(
        sandbox({"timeout": 30}), SpecError(contract.REASON_INVALID_SPEC, "x"), at(31), CONFIG
    ).status
    assert status is not None
    assert status["phase"] == contract.PHASE_EXPIRED


# --- recreated pods, the startup timeout, events ------------------------------------------------------
def unschedulable(message: str = "0/3 nodes are available: 3 Insufficient cpu.") -> dict[str, Any]:
    return {
        "phase": "Pending",
        "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
        ],
    }


def test_a_recreated_pod_keeps_saying_pod_deleted_until_the_kubelet_reports_and_takes_its_own_start() -> None:
    running_status = plan(sandbox(), None, pod(running()), at(5), CONFIG).status
    assert running_status is not None
    recreating = plan(sandbox(status=running_status), None, None, at(10), CONFIG).status
    assert recreating is not None
    fresh_pod = pod(creationTimestamp=format_time(at(10)))
    seen = plan(sandbox(status=recreating), None, fresh_pod, at(11), CONFIG)
    assert seen.patch == {}  # the new pod's first watch event writes nothing
    assert seen.events == ()
    again = running()
    again["containerStatuses"][0]["state"] = {"running": {"startedAt": format_time(at(12))}}
    rerun = plan(
        sandbox(status=recreating), None, pod(again, creationTimestamp=format_time(at(10))), at(13), CONFIG
    )
    assert rerun.status is not None
    assert (rerun.status["reason"], rerun.status["startedAt"]) == (
        contract.REASON_RUNNING,
        format_time(at(12)),
    )


def test_a_recreated_pod_without_its_template_fails_clearly() -> None:
    status = plan(sandbox({"template": "t"}), {"vcpu": 2}, None, at(1), CONFIG).status
    gone = plan(sandbox({"template": "t"}, status), None, None, at(5), CONFIG)
    assert not gone.create_pod
    assert gone.status is not None
    assert (gone.status["phase"], gone.status["reason"]) == ("Failed", contract.REASON_TEMPLATE_NOT_FOUND)
    assert "spec.template cannot be changed" in gone.status["message"]
    assert "unset" not in gone.status["message"]


def test_unschedulable_waits_until_the_startup_timeout_then_fails_and_deletes_the_pod() -> None:
    created = format_time(at(1))
    status = plan(sandbox(), None, None, at(1), CONFIG).status
    waiting = plan(
        sandbox(status=status), None, pod(unschedulable(), creationTimestamp=created), at(2), CONFIG
    )
    assert waiting.status is not None
    assert (waiting.status["phase"], waiting.status["reason"]) == ("Pending", contract.REASON_UNSCHEDULABLE)
    assert waiting.status["message"] == "0/3 nodes are available: 3 Insufficient cpu."
    assert not waiting.delete_pod
    short = OperatorConfig(expired_retention_s=60, startup_timeout_s=100)
    waiting = plan(
        sandbox(status=status), None, pod(unschedulable(), creationTimestamp=created), at(2), short
    )
    assert waiting.wake_at == at(101)  # looked at again at the deadline, before expiry (300 s)
    late = plan(
        sandbox(status=waiting.status), None, pod(unschedulable(), creationTimestamp=created), at(101), short
    )
    assert late.delete_pod
    assert late.status is not None
    assert (late.status["phase"], late.status["reason"]) == ("Failed", contract.REASON_STARTUP_TIMEOUT)
    assert late.status["message"] == (
        "still Unschedulable after 100 s: 0/3 nodes are available: 3 Insufficient cpu.; its pod was deleted"
    )
    assert [(e.type, e.reason) for e in late.events] == [("Warning", contract.REASON_STARTUP_TIMEOUT)]
    # Final: no new pod once it is gone, and nothing more to write.
    after = plan(sandbox(status=late.status), None, None, at(102), short)
    assert not after.create_pod
    assert after.patch == {}
    assert after.events == ()


def test_a_templates_startup_timeout_wins_and_running_once_ends_the_startup() -> None:
    created = format_time(at(1))
    short = OperatorConfig(expired_retention_s=60, startup_timeout_s=10)
    status = plan(sandbox(), None, None, at(1), short).status
    stuck = pod(unschedulable(), creationTimestamp=created)
    patient = plan(sandbox(status=status), {"startupTimeout": 200}, stuck, at(50), short)
    assert not patient.delete_pod
    assert patient.wake_at == at(201)
    ran = plan(sandbox(status=status), None, pod(running(), creationTimestamp=created), at(5), short).status
    assert ran is not None
    flaky = running(ready=False)
    later = plan(sandbox(status=ran), None, pod(flaky, creationTimestamp=created), at(50), short)
    assert not later.delete_pod
    assert later.status is not None
    assert (later.status["phase"], later.status["reason"]) == (
        "Pending",
        contract.REASON_CONTAINERS_NOT_READY,
    )
    assert later.wake_at == at(300)


def test_a_final_failure_is_not_timed_out() -> None:
    created = format_time(at(1))
    short = OperatorConfig(expired_retention_s=60, startup_timeout_s=10)
    ended = plan(
        sandbox(), None, pod(terminated(reason="Error", exitCode=1), creationTimestamp=created), at(50), short
    )
    assert not ended.delete_pod
    assert ended.status is not None
    assert ended.status["reason"] == contract.REASON_CONTAINER_FAILED


def test_a_plan_posts_events_only_with_a_status_write() -> None:
    first = plan(sandbox(), None, None, at(1), CONFIG)
    assert first.patch
    assert first.events == ()  # a new sandbox's first Pending
    running_plan = plan(sandbox(status=first.status), None, pod(running()), at(5), CONFIG)
    assert [e.reason for e in running_plan.events] == [contract.REASON_RUNNING]
    again = plan(sandbox(status=running_plan.status), None, pod(running()), at(6), CONFIG)
    assert (again.patch, again.events) == ({}, ())
    expired = plan(sandbox(status=running_plan.status), None, pod(running()), at(300), CONFIG)
    assert [(e.type, e.reason) for e in expired.events] == [("Normal", contract.REASON_EXPIRED)]


# --- the network, decided with the pod ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "template", "expected"),
    [
        (
            {},
            None,
            {
                "policy": "Internet",
                "source": "default",
                "networkPolicy": "s",
                "message": "Internet: public addresses and the cluster DNS; no private ranges, no metadata "
                "server (NetworkPolicy s)",
            },
        ),
        (
            {},
            {"network": {"policy": "DenyAll"}},
            {
                "policy": "DenyAll",
                "source": "template",
                "networkPolicy": "s",
                "message": "DenyAll: the cluster DNS only (NetworkPolicy s)",
            },
        ),
        (
            # a template may leave the network to its Sandboxes (lockedFields without network)
            {"network": {"policy": "AllowAll"}},
            {"network": {"policy": "DenyAll"}, "lockedFields": []},
            {
                "policy": "AllowAll",
                "source": "sandbox",
                "message": "AllowAll: no NetworkPolicy, the pod's traffic is not restricted",
            },
        ),
    ],
)
def test_the_status_says_which_network_the_pod_got(
    spec: dict[str, Any], template: dict[str, Any] | None, expected: dict[str, Any]
) -> None:
    decision = plan(sandbox(spec), template, None, at(1), CONFIG)
    assert decision.effective is not None
    assert decision.status is not None
    assert decision.status["network"] == expected
    assert decision.effective.network.policy == expected["policy"]


def test_the_network_is_recorded_once_like_the_other_effective_values() -> None:
    first = plan(sandbox(), {"network": {"policy": "DenyAll"}}, None, at(1), CONFIG)
    assert first.status is not None
    # The template changes later: the running pod's recorded network stays.
    later = plan(sandbox(status=first.status), {"network": {"policy": "AllowAll"}}, pod(), at(2), CONFIG)
    assert later.status is not None
    assert later.status["network"]["policy"] == "DenyAll"


def test_a_network_the_operator_cannot_build_fails_the_sandbox() -> None:
    decision = plan(
        sandbox({"network": {"policy": "Internet", "allowDomains": ["x.example"]}}), None, None, at(1), CONFIG
    )
    assert decision.effective is None
    assert decision.status is not None
    assert decision.status["phase"] == "Failed"
    assert decision.status["reason"] == "InvalidSpec"
    assert "allowDomains is not supported" in decision.status["message"]


# --- status.supervisor: what the SDKs run commands through ---------------------------------------------
def test_the_status_names_the_supervisor_of_the_pod() -> None:
    created = plan(sandbox(), None, None, at(1), CONFIG)
    assert created.status is not None
    assert created.status["supervisor"] == "/.leap0/leap0-supervisor"
    seen = plan(sandbox(status=created.status), None, trim_pod(pod(running())), at(5), CONFIG).status
    assert seen is not None
    assert seen["supervisor"] == "/.leap0/leap0-supervisor"


def test_a_pod_without_the_supervisor_leaves_it_out_of_the_status() -> None:
    off = plan(sandbox({"telemetry": {"logs": False}}), None, None, at(1), CONFIG)
    assert off.status is not None
    assert "supervisor" not in off.status
    # A pod from before sandbox logs (no annotation): the SDKs must run commands as before.
    old = pod(running())
    del old["metadata"]["annotations"][contract.ANNOTATION_SUPERVISOR]
    current = {**(off.status or {}), "supervisor": "/.leap0/leap0-supervisor"}
    decision = plan(sandbox(status=current), None, old, at(5), CONFIG)
    assert decision.status is not None
    assert "supervisor" not in decision.status
    assert decision.patch["supervisor"] is None  # removed by the merge patch
