"""Every Kubernetes API call the operator makes, kept next to the code that makes them.

The RBAC manifest and the Helm chart's RBAC are checked against this list by tests, so a new call added to the
operator without its permission fails CI instead of failing in a cluster.

Where the calls are made: ``k8s.py`` (our own calls, the resync lists among them), the indexers and event
handlers in ``handlers.py`` (kopf's list/watch of what we serve), and kopf itself (resource discovery,
namespace globs, peering).
"""

from __future__ import annotations

from typing import NamedTuple

import leap0_contract as contract


class ApiCall(NamedTuple):
    group: str  # API group; "" is the core group
    resource: str  # plural resource, subresources as "pods/status"
    verbs: tuple[str, ...]  # get, list, watch, create, update, patch, delete
    why: str


API_CALLS: list[ApiCall] = [
    # --- ours (k8s.py) ---
    ApiCall("", "pods", ("create",), "k8s.Api.create_pod: the sandbox pod of each Sandbox"),
    ApiCall(
        "networking.k8s.io",
        "networkpolicies",
        ("create",),
        "k8s.Api.create_network_policy: each Sandbox's NetworkPolicy, before its pod",
    ),
    ApiCall(
        "",
        "persistentvolumeclaims",
        ("create",),
        "k8s.Api.create_workspace_claim: a persistent workspace's claim, before its pod",
    ),
    ApiCall(
        "",
        "persistentvolumeclaims",
        ("get",),
        "k8s.Api.read_workspace_claim: an existing claim's owner, checked before it is mounted",
    ),
    ApiCall(
        contract.GROUP,
        "sandboxes",
        ("patch",),
        "k8s.Api.patch_sandbox: spec.paused when idleTimeout or onTimeout Pause pauses a sandbox",
    ),
    ApiCall(
        "networking.k8s.io",
        "networkpolicies",
        ("get", "update"),
        "k8s.Api.get_network_policy / replace_network_policy: restore one deleted or edited by hand",
    ),
    ApiCall(
        "",
        "secrets",
        ("get",),
        "k8s.Api.secret_metadata: whether a Secret in a sandbox's env is owned by it or labelled "
        "leap0.dev/sandbox-env (metadata only; RBAC cannot grant less than get)",
    ),
    ApiCall("", "pods", ("delete",), "k8s.Api.delete_pod: the pod of an expired or paused Sandbox"),
    ApiCall(contract.GROUP, "sandboxes/status", ("patch",), "k8s.Api.patch_sandbox_status: the status"),
    ApiCall(contract.GROUP, "sandboxes", ("delete",), "k8s.Api.delete_sandbox: after retention"),
    ApiCall("", "namespaces", ("get",), "k8s.Api.namespace_labels: the org id label leap0.dev/org-id"),
    ApiCall("", "events", ("create",), "k8s.Api.create_event: an Event per Sandbox status transition"),
    # --- kopf's list/watch for our indexers and event handlers (handlers.py); our resync lists (k8s.py) ---
    ApiCall(contract.GROUP, "sandboxes", ("list", "watch"), "handlers.sandbox_event; Controller.resync"),
    ApiCall("", "pods", ("list", "watch"), "handlers.pod_index / pod_event (selector sandbox-id); resync"),
    ApiCall(contract.GROUP, "sandboxtemplates", ("list", "watch"), "handlers.template_index / event; resync"),
    ApiCall(
        "networking.k8s.io",
        "networkpolicies",
        ("list", "watch"),
        "handlers.policy_index / policy_event (selector sandbox-id): drift repair; resync",
    ),
    # --- kopf's own needs ---
    ApiCall(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        ("list", "watch"),
        "kopf: discover the served resources and follow CRD changes",
    ),
    ApiCall("", "namespaces", ("list", "watch"), "kopf: follow namespaces matching --namespace globs"),
    ApiCall("kopf.dev", "kopfpeerings", ("get", "list", "watch", "patch"), "kopf: peering, namespaced mode"),
    ApiCall("kopf.dev", "clusterkopfpeerings", ("get", "list", "watch", "patch"), "kopf: peering, cluster"),
]


def permissions() -> set[tuple[str, str, str]]:
    """Every (group, resource, verb) the operator needs."""
    return {(call.group, call.resource, verb) for call in API_CALLS for verb in call.verbs}


def rbac_rules() -> list[dict[str, list[str]]]:
    """ClusterRole rules granting exactly :func:`permissions`, one rule per (group, resource)."""
    verbs: dict[tuple[str, str], set[str]] = {}
    for group, resource, verb in permissions():
        verbs.setdefault((group, resource), set()).add(verb)
    order = ["get", "list", "watch", "create", "update", "patch", "delete"]
    return [
        {"apiGroups": [group], "resources": [resource], "verbs": sorted(v, key=order.index)}
        for (group, resource), v in sorted(verbs.items())
    ]
