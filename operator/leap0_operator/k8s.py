"""The few API calls the operator makes itself, through kopf's own authenticated session.

kopf already holds an aiohttp session with the cluster's credentials (re-authenticating on 401s, retrying 5xx,
429 and connection errors with backoff), so these calls reuse it instead of loading a second Kubernetes client
(``kubernetes_asyncio``'s models alone cost ~60 MiB of RSS). Each call here has its entry in ``apicalls.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from kopf._cogs.clients import api, errors
from kopf._cogs.configs.configuration import OperatorSettings

from leap0 import constants

Logger = logging.Logger | logging.LoggerAdapter[Any]
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}
NotFound = errors.APINotFoundError
Conflict = errors.APIConflictError
ApiError = errors.APIError


# kopf's session has no connection limit: a burst of 1,000 new Sandboxes could open ~1,000 connections at once
# (memory in both processes, and no faster). Our calls share this many in flight; kopf's watches are apart.
# (The reconcile workers bound it already; this keeps the bound for any other caller.)
MAX_IN_FLIGHT = 32
_gate: asyncio.Semaphore | None = None


@contextlib.asynccontextmanager
async def _in_flight() -> AsyncIterator[None]:
    global _gate
    if _gate is None:
        _gate = asyncio.Semaphore(MAX_IN_FLIGHT)
    async with _gate:
        yield


def _sandbox_url(namespace: str, name: str, subresource: str = "") -> str:
    base = f"/apis/{constants.GROUP}/{constants.VERSION}/namespaces/{namespace}"
    url = f"{base}/{constants.SANDBOX_PLURAL}/{name}"
    return f"{url}/{subresource}" if subresource else url


async def create_pod(settings: OperatorSettings, logger: Logger, pod: dict[str, Any]) -> bool:
    """POST the pod; False when a pod of that name exists (409), which is fine: names are deterministic."""
    namespace = pod["metadata"]["namespace"]
    try:
        async with _in_flight():
            await api.post(
                f"/api/v1/namespaces/{namespace}/pods", payload=pod, settings=settings, logger=logger
            )
    except Conflict:
        return False
    return True


async def delete_pod(settings: OperatorSettings, logger: Logger, namespace: str, name: str) -> bool:
    """DELETE the pod; False when it is already gone (404)."""
    try:
        async with _in_flight():
            await api.delete(f"/api/v1/namespaces/{namespace}/pods/{name}", settings=settings, logger=logger)
    except NotFound:
        return False
    return True


async def patch_sandbox_status(
    settings: OperatorSettings, logger: Logger, namespace: str, name: str, status: dict[str, Any]
) -> bool:
    """Merge-patch the Sandbox's status subresource; False when the Sandbox is gone."""
    try:
        async with _in_flight():
            await api.patch(
                _sandbox_url(namespace, name, "status"),
                payload={"status": status},
                headers=MERGE_PATCH,
                settings=settings,
                logger=logger,
            )
    except NotFound:
        return False
    return True


async def delete_sandbox(settings: OperatorSettings, logger: Logger, namespace: str, name: str) -> bool:
    """DELETE an expired Sandbox after its retention (its pod goes with it through the ownerReference)."""
    try:
        async with _in_flight():
            await api.delete(_sandbox_url(namespace, name), settings=settings, logger=logger)
    except NotFound:
        return False
    return True


async def namespace_labels(settings: OperatorSettings, logger: Logger, namespace: str) -> dict[str, str]:
    """The namespace's labels (for the org id); empty when the namespace cannot be read."""
    try:
        async with _in_flight():
            body = await api.get(f"/api/v1/namespaces/{namespace}", settings=settings, logger=logger)
    except NotFound:
        return {}
    labels = (body.get("metadata") or {}).get("labels") or {}
    return {str(k): str(v) for k, v in labels.items()}
