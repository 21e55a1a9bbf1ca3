"""Pause and resume in the Python SDK, the pure parts: the new spec fields, the verdicts of a watched pause or
resume, the refusal judged before asking, and the activity annotation."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

import leap0_contract as c
from leap0.models import (
    SandboxRequest,
    activity_patch,
    normalize_workspace,
    pause_refusal,
    pause_verdict,
    records_activity,
    resume_verdict,
    sandbox_fields,
)
from leap0.sandbox import Sandbox


def sandbox(status: dict[str, Any], spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "s", "namespace": "n", "generation": 3},
        "spec": spec or {},
        "status": status,
    }


def test_workspace_idle_timeout_and_on_timeout_go_to_the_spec_as_given() -> None:
    request = SandboxRequest(
        workspace=normalize_workspace({"persistent": True, "storageClassName": "fast"}),
        idle_timeout=600,
        on_timeout="Pause",
    )
    assert request.spec() == {
        "workspace": {"persistent": True, "storageClassName": "fast"},
        "idleTimeout": 600,
        "onTimeout": "Pause",
    }
    assert normalize_workspace(None) is None
    with pytest.raises(TypeError, match="workspace must be a dict"):
        normalize_workspace(True)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="persistent"):
        normalize_workspace({"persistent": "yes"})


def test_the_sandboxs_pause_fields_spec_and_status() -> None:
    obj = sandbox(
        {
            "phase": c.PHASE_PAUSED,
            "pausedAt": "2026-01-01T00:01:00Z",
            "resumedAt": "2026-01-01T00:00:30Z",
            "workspace": {"persistent": True, "claimName": "s-workspace"},
            "idleTimeout": 60,
        },
        {"paused": True, "idleTimeout": 60, "onTimeout": "Pause", "workspace": {"persistent": True}},
    )
    sb = Sandbox.from_object(obj)
    assert sb.is_paused
    assert (sb.paused, sb.idle_timeout, sb.on_timeout) == (True, 60, "Pause")
    assert sb.workspace == {"persistent": True}
    assert sb.effective_workspace == {"persistent": True, "claimName": "s-workspace"}
    assert sb.effective_idle_timeout == 60
    assert sb.paused_at == datetime.datetime(2026, 1, 1, 0, 1, tzinfo=datetime.UTC)
    assert sb.resumed_at == datetime.datetime(2026, 1, 1, 0, 0, 30, tzinfo=datetime.UTC)
    assert not Sandbox.from_object(sandbox({"phase": "Running"})).is_paused
    assert Sandbox.from_object(sandbox({"phase": "Running"}, {"paused": True})).is_paused  # being paused
    assert sandbox_fields(sandbox({}))["workspace"] is None


def test_a_pause_is_done_once_paused_failed_when_refused_judged_from_the_generation_that_asked() -> None:
    assert pause_verdict(sandbox({"phase": "Paused", "observedGeneration": 3}), 3) == "done"
    assert pause_verdict(sandbox({"phase": "Paused", "observedGeneration": 2}), 3) == "pending"
    assert pause_verdict(sandbox({"phase": "Running", "observedGeneration": 3}), 3) == "pending"
    assert pause_verdict(sandbox({"phase": "Expired"}), 3) == "failed"
    refused = {
        "phase": "Running",
        "observedGeneration": 3,
        "conditions": [{"type": "Paused", "status": "False", "reason": "PauseRefused", "message": "why"}],
    }
    assert pause_verdict(sandbox(refused), 3) == "failed"
    assert pause_verdict(sandbox({**refused, "observedGeneration": 2}), 3) == "pending"
    assert Sandbox.from_object(sandbox(refused)).pause_refused == "why"


def test_a_resume_is_done_once_running_after_the_asking_generation_never_on_the_old_status() -> None:
    assert resume_verdict(sandbox({"phase": "Running", "observedGeneration": 2}), 3) == "pending"
    assert resume_verdict(sandbox({"phase": "Pending", "observedGeneration": 3}), 3) == "pending"
    assert resume_verdict(sandbox({"phase": "Running", "observedGeneration": 3}), 3) == "done"
    assert resume_verdict(sandbox({"phase": "Failed", "observedGeneration": 3}), 3) == "failed"


def test_a_pause_is_refused_before_asking_when_the_workspace_is_not_persistent_or_the_sandbox_ended() -> None:
    refusal = pause_refusal(sandbox({"phase": "Running", "workspace": {"persistent": False}}))
    assert refusal is not None
    assert "emptyDir" in refusal
    assert "workspace={'persistent': True}" in refusal
    assert "only a Pending or Running" in (pause_refusal(sandbox({"phase": "Expired"})) or "")
    assert pause_refusal(sandbox({"phase": "Running", "workspace": {"persistent": True}})) is None
    assert pause_refusal(sandbox({})) is None  # not known yet: the operator decides


def test_use_is_recorded_as_rfc3339_seconds_only_for_sandboxes_that_can_go_idle() -> None:
    moment = datetime.datetime(2026, 3, 4, 5, 6, 7, 891000, tzinfo=datetime.UTC)
    assert activity_patch(moment) == {
        "metadata": {"annotations": {c.ANNOTATION_LAST_ACTIVITY: "2026-03-04T05:06:07Z"}}
    }
    assert not records_activity(Sandbox.from_object(sandbox({})))
    assert records_activity(Sandbox.from_object(sandbox({}, {"idleTimeout": 5})))
    assert records_activity(Sandbox.from_object(sandbox({"idleTimeout": 5})))
