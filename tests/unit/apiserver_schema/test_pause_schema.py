"""The pause fields of the CRDs (spec.workspace, paused, idleTimeout, onTimeout; a template's
pausedRetention), checked the way kube-apiserver checks them: the schema's ranges and enums, and the CEL rules
refusing a pause of a Sandbox or template that says its workspace is not persistent."""

from __future__ import annotations

from typing import Any

import pytest

from leap0_dev.apiserver.schema import ResourceSchema
from leap0_dev.crds import load_crds

CRDS = {c["spec"]["names"]["kind"]: c for c in load_crds()}
SANDBOX = ResourceSchema(CRDS["Sandbox"], "v1alpha1")
TEMPLATE = ResourceSchema(CRDS["SandboxTemplate"], "v1alpha1")


def obj(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "leap0.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": "x", "namespace": "team-a"},
        "spec": spec,
    }


def errors(schema: ResourceSchema, new: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    return [str(e) for e in schema.prepare(new, old)[1]]


@pytest.mark.parametrize(
    "spec",
    [
        {"workspace": {"persistent": True}, "paused": True},
        {"workspace": {"persistent": True, "storageClassName": "fast-ssd"}, "idleTimeout": 1},
        {"workspace": {"persistent": True}, "onTimeout": "Pause", "idleTimeout": 86400},
        # the template may give the persistent workspace: the operator decides then
        {"paused": True, "idleTimeout": 900, "onTimeout": "Pause"},
        {"workspace": {"persistent": False}, "onTimeout": "Delete", "paused": False},
    ],
)
def test_valid_sandboxes(spec: dict[str, Any]) -> None:
    assert errors(SANDBOX, obj("Sandbox", spec)) == []


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        (
            {"workspace": {"persistent": False}, "paused": True},
            "spec.paused: Invalid value: spec.paused needs a persistent workspace, and this "
            "sandbox's is not: create the sandbox with spec.workspace.persistent: true (or from a template "
            "that sets it) to pause it",
        ),
        ({"workspace": {}, "idleTimeout": 60}, "spec.idleTimeout: Invalid value"),
        ({"workspace": {"persistent": False}, "onTimeout": "Pause"}, "spec.onTimeout: Invalid value"),
        ({"workspace": {"storageClassName": "fast"}}, "spec.workspace.storageClassName: Invalid value"),
        (
            {"workspace": {"persistent": True, "storageClassName": "Not_A_Name"}},
            "spec.workspace.storageClassName",
        ),
        (
            {"idleTimeout": 0},
            "spec.idleTimeout: Invalid value: 0: spec.idleTimeout in body should be greater",
        ),
        ({"idleTimeout": 86401}, "spec.idleTimeout: Invalid value: 86401"),
        ({"onTimeout": "Hibernate"}, 'spec.onTimeout: Unsupported value: "Hibernate"'),
        ({"paused": "yes"}, "spec.paused: Invalid value"),
    ],
)
def test_refused_sandboxes_name_the_field(spec: dict[str, Any], error: str) -> None:
    found = errors(SANDBOX, obj("Sandbox", spec))
    assert any(e.startswith(error) for e in found), found


def test_paused_idle_timeout_and_on_timeout_may_change_the_workspace_may_not() -> None:
    old = obj("Sandbox", {"workspace": {"persistent": True}, "timeout": 60})
    assert errors(SANDBOX, obj("Sandbox", {**old["spec"], "paused": True}), old) == []
    changed = {**old["spec"], "idleTimeout": 30, "onTimeout": "Pause", "paused": False}
    assert errors(SANDBOX, obj("Sandbox", changed), old) == []
    other = obj("Sandbox", {"workspace": {"persistent": True, "storageClassName": "b"}, "timeout": 60})
    assert errors(SANDBOX, other, old) == ["spec: Invalid value: spec.workspace is immutable"]
    # a spec-less Sandbox may get paused later, not a workspace
    bare = obj("Sandbox", {})
    del bare["spec"]
    assert errors(SANDBOX, obj("Sandbox", {"paused": True}), bare) == []
    assert errors(SANDBOX, obj("Sandbox", {"workspace": {"persistent": True}}), bare) != []


def test_templates_take_the_pause_fields_and_a_retention() -> None:
    good = {
        "workspace": {"persistent": True},
        "idleTimeout": 900,
        "onTimeout": "Pause",
        "pausedRetention": 86400,
    }
    assert errors(TEMPLATE, obj("SandboxTemplate", good)) == []
    refused = errors(
        TEMPLATE, obj("SandboxTemplate", {"workspace": {"persistent": False}, "onTimeout": "Pause"})
    )
    assert refused == [
        "spec.onTimeout: Invalid value: onTimeout Pause needs a persistent workspace: set "
        "workspace.persistent: true, or use onTimeout Delete"
    ]
    assert errors(TEMPLATE, obj("SandboxTemplate", {"pausedRetention": 0})) != []


def test_the_pause_fields_are_lockable_but_paused_is_not() -> None:
    locks = {"lockedFields": ["workspace", "idleTimeout", "onTimeout"]}
    assert errors(TEMPLATE, obj("SandboxTemplate", locks)) == []
    found = errors(TEMPLATE, obj("SandboxTemplate", {"lockedFields": ["paused"]}))
    assert found[0].startswith('spec.lockedFields[0]: Unsupported value: "paused"')
