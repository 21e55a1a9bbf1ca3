"""Every Kubernetes API call the operator makes, kept next to the code that makes them.

The RBAC manifest and the Helm chart's RBAC are checked against this list by tests, so a new call added to the
operator without its permission fails CI instead of failing in a cluster.
"""

from __future__ import annotations

from typing import NamedTuple


class ApiCall(NamedTuple):
    group: str  # API group; "" is the core group
    resource: str  # plural resource, subresources as "pods/status"
    verbs: tuple[str, ...]  # get, list, watch, create, update, patch, delete
    why: str


# Filled in by the operator's implementation (issue: Operator). Keep entries minimal: least privilege.
API_CALLS: list[ApiCall] = []
