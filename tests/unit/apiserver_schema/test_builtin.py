"""Unknown fields of built-in kinds, found and pruned from the Kubernetes 1.37 schemas."""

from __future__ import annotations

from leap0_dev.apiserver.builtin import BuiltinSchema


def test_pod_unknown_fields_are_found_and_pruned() -> None:
    schema = BuiltinSchema.for_kind("", "v1", "Pod")
    assert schema is not None
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "labels": {"any": "label"}, "bogus": 1},
        "spec": {
            "containers": [
                {"name": "c", "image": "x", "imagePullPolice": "x", "resources": {"limits": {"cpu": "1"}}},
            ],
            "volumes": [{"name": "v", "emptyDir": {"sizeLimit": "1Gi"}}],
        },
        "status": {"phase": "Pending", "weird": 1},
    }
    assert schema.unknown_fields(pod) == [
        "metadata.bogus",
        "spec.containers[0].imagePullPolice",
        "status.weird",
    ]
    pruned = schema.prune(pod)
    assert schema.unknown_fields(pruned) == []
    assert pruned["metadata"] == {"name": "p", "labels": {"any": "label"}}
    assert pruned["spec"]["containers"][0] == {
        "name": "c",
        "image": "x",
        "resources": {"limits": {"cpu": "1"}},
    }
    assert pod["metadata"]["bogus"] == 1, "the caller's object is left alone"


def test_secret_and_lease() -> None:
    secret = BuiltinSchema.for_kind("", "v1", "Secret")
    assert secret is not None
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "data": {"k": "eA=="},
        "bogus": 1,
    }
    assert secret.unknown_fields(body) == ["bogus"]
    lease = BuiltinSchema.for_kind("coordination.k8s.io", "v1", "Lease")
    assert lease is not None
    assert (
        lease.unknown_fields({"spec": {"holderIdentity": "me", "renewTime": "2026-01-01T00:00:00.000000Z"}})
        == []
    )


def test_kinds_not_served_are_not_checked() -> None:
    assert BuiltinSchema.for_kind("apiextensions.k8s.io", "v1", "CustomResourceDefinition") is None
    assert BuiltinSchema.for_kind("apps", "v1", "Deployment") is None
