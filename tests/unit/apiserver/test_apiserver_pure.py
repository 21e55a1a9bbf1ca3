"""Pure pieces of the embedded API server: selectors, patches, URL parsing."""

from __future__ import annotations

from typing import Any

import pytest

from leap0_dev.apiserver.patching import PatchError, json_patch, merge_patch, strategic_merge_patch
from leap0_dev.apiserver.routing import Target, parse_resource_path
from leap0_dev.apiserver.selectors import SelectorError, field_matcher, label_matcher

G = "leap0.dev"


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("a=b", {"a": "b"}, True),
        ("a=b", {"a": "c"}, False),
        ("a==b", {"a": "b"}, True),
        ("a!=b", {}, True),
        ("a!=b", {"a": "b"}, False),
        ("a in (b, c)", {"a": "c"}, True),
        ("a in (b,c)", {}, False),
        ("a notin (b,c)", {}, True),
        ("a notin (b,c)", {"a": "b"}, False),
        ("a", {"a": ""}, True),
        ("!a", {"a": ""}, False),
        ("a=b,c in (d),!e", {"a": "b", "c": "d"}, True),
        ("example.com/x=y", {"example.com/x": "y"}, True),
    ],
)
def test_label_selectors(selector: str, labels: dict[str, str], expected: bool) -> None:
    matcher = label_matcher(selector)
    assert matcher is not None
    assert matcher(labels) is expected


def test_empty_selector_selects_everything() -> None:
    assert label_matcher("") is None
    assert field_matcher(None, ()) is None


@pytest.mark.parametrize("bad", ["a in ()", "a=(b", "in (a"])
def test_malformed_label_selector_raises(bad: str) -> None:
    with pytest.raises(SelectorError):
        label_matcher(bad)


def test_field_selector_checks_supported_labels() -> None:
    matcher = field_matcher("metadata.name=x,status.phase!=Running", ("status.phase",))
    assert matcher is not None
    assert matcher({"metadata": {"name": "x"}, "status": {"phase": "Pending"}})
    assert not matcher({"metadata": {"name": "x"}, "status": {"phase": "Running"}})
    with pytest.raises(SelectorError, match="not supported"):
        field_matcher("spec.image=x", ())


def test_merge_patch_follows_rfc_7386_and_leaves_inputs_alone() -> None:
    target: dict[str, Any] = {"a": {"b": 1, "c": 2}, "l": [1, 2]}
    patched = merge_patch(target, {"a": {"b": None, "d": 3}, "l": [3]})
    assert patched == {"a": {"c": 2, "d": 3}, "l": [3]}
    assert target == {"a": {"b": 1, "c": 2}, "l": [1, 2]}


def test_json_patch_test_failure_is_422() -> None:
    with pytest.raises(PatchError) as err:
        json_patch({"a": 1}, [{"op": "test", "path": "/a", "value": 2}])
    assert err.value.code == 422
    assert json_patch({"a": 1}, [{"op": "add", "path": "/b", "value": 2}]) == {"a": 1, "b": 2}


def test_strategic_merge_patch_directives() -> None:
    target = {
        "metadata": {"finalizers": ["a"]},
        "spec": {
            "containers": [{"name": "x", "image": "1", "ports": [{"containerPort": 80}]}, {"name": "y"}]
        },
        "tolerations": [{"key": "t"}],
    }
    patch = {
        "metadata": {"finalizers": ["b"]},
        "spec": {
            "$setElementOrder/containers": [{"name": "x"}],
            "containers": [{"name": "x", "image": "2"}, {"name": "y", "$patch": "delete"}, {"name": "z"}],
        },
        "tolerations": [{"key": "u"}],
    }
    result = strategic_merge_patch(target, patch)
    assert result["metadata"]["finalizers"] == ["a", "b"]
    assert result["spec"]["containers"] == [
        {"name": "x", "image": "2", "ports": [{"containerPort": 80}]},
        {"name": "z"},
    ]
    assert result["tolerations"] == [{"key": "u"}]  # lists without a merge key are replaced
    removed = strategic_merge_patch(result, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}})
    assert removed["metadata"]["finalizers"] == ["b"]
    replaced = strategic_merge_patch(result, {"spec": {"$patch": "replace", "x": 1}})
    assert replaced["spec"] == {"x": 1}


def test_strategic_merge_list_item_without_merge_key_is_rejected() -> None:
    with pytest.raises(PatchError):
        strategic_merge_patch({"spec": {"containers": []}}, {"spec": {"containers": [{"image": "x"}]}})


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("/api/v1/pods", Target("", "v1", "pods")),
        ("/api/v1/namespaces", Target("", "v1", "namespaces")),
        ("/api/v1/namespaces/ns1", Target("", "v1", "namespaces", name="ns1")),
        ("/api/v1/namespaces/ns1/status", Target("", "v1", "namespaces", name="ns1", subresource="status")),
        ("/api/v1/namespaces/ns1/pods", Target("", "v1", "pods", namespace="ns1")),
        ("/api/v1/namespaces/ns1/pods/p/exec", Target("", "v1", "pods", "ns1", "p", "exec")),
        ("/apis/leap0.dev/v1alpha1/namespaces/n/sandboxes/s", Target(G, "v1alpha1", "sandboxes", "n", "s")),
        ("/apis/apps/v1/deployments", Target("apps", "v1", "deployments")),
        ("/api/v1", None),
        ("/apis/leap0.dev/v1alpha1", None),
        ("/version", None),
        ("/api/v1/namespaces/n/pods/p/exec/extra", None),
    ],
)  # fmt: skip
def test_resource_paths(path: str, target: Target | None) -> None:
    assert parse_resource_path(path) == target
