"""The few API calls the operator makes itself, through kopf's own authenticated session.

**A private kopf API, on purpose, isolated here.** kopf already holds an aiohttp session with the cluster's
credentials (its own service-account/kubeconfig loaders, re-authentication on 401s). Reusing it keeps the
operator within its memory goal: the public alternative, ``kubernetes_asyncio``, was measured with
``bench/operator_bench.py`` at 1,000 sandboxes at 138-139 MiB peak RSS (importing it alone costs ~40 MiB:
its ~800 generated model classes) against 100-106 MiB with kopf's session; the goal is 110 MiB. The price is
a dependency on ``kopf._cogs.clients``, which kopf does not promise to keep. So:

- every private kopf import of the operator is in this module, and only here;
- :func:`check_kopf_private_api` verifies what this module relies on; the operator calls it at startup and
  ``tests/unit/operator/test_operator_k8s.py`` calls it in CI, so a kopf release that moves it fails loudly,
  with a message saying what moved, instead of failing on the first API call in a cluster;
- kopf is pinned to the minor versions checked (``pyproject.toml``, the ``operator`` extra).

**Errors** are translated into kopf's public vocabulary for the reconcile worker (``runtime.py``):
``kopf.TemporaryError(delay=...)`` for what may recover (5xx, 429 with its ``Retry-After``, 403 during
upgrades and quota, connection errors, timeouts), :class:`Refused` (a ``kopf.PermanentError``) when the API
refuses the pod for good: as invalid (400/422), or by the namespace's PodSecurity admission (a 403 saying
``violates PodSecurity``): the same manifest will never be accepted (:func:`refusal_reason`). kopf's own
in-request retries are off for these calls (``backoffs=()``): the worker retries the whole reconcile from the
latest state, with backoff, without holding a worker while it waits. Each call has its entry in
``apicalls.py``.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import sys
import urllib.parse
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import kopf

import leap0_contract as contract

from . import objects

try:  # kopf's private client API (see the module docstring): the only place the operator imports it
    from kopf._cogs.clients import api as _kopf_api
    from kopf._cogs.clients import errors as _kopf_errors
except ImportError as _missing:  # pragma: no cover - only with an unsupported kopf
    _kopf_api = _kopf_errors = None  # type: ignore[assignment]
    _IMPORT_ERROR: ImportError | None = _missing
else:
    _IMPORT_ERROR = None

Logger = logging.Logger | logging.LoggerAdapter[Any]
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}
# A GET answered with the object's metadata only (meta.k8s.io/v1 PartialObjectMetadata): a Secret's labels and
# owners without its data.
METADATA_ONLY = {"Accept": "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"}
NETWORK_POLICIES = "/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies"

# kopf's session has no connection limit: a burst of 1,000 new Sandboxes could open ~1,000 connections at once
# (memory in both processes, and no faster). Our calls share this many in flight; kopf's watches are apart.
MAX_IN_FLIGHT = 32
# Objects per page when the operator lists a kind itself (a resync): bounds the memory a big list takes.
LIST_CHUNK = 500
# Statuses meaning "this request, as written, will never succeed" (for the pod POST: the spec is invalid).
INVALID_STATUSES = frozenset({400, 422})
# What PodSecurity admission says when it refuses a pod (403 Forbidden, as RBAC and quotas do; only this one
# is final): 'pods "x" is forbidden: violates PodSecurity "restricted:latest": ...'.
POD_SECURITY_REFUSAL = "violates PodSecurity"


class Refused(kopf.PermanentError):
    """The API server refused an object for good; ``reason`` is the Sandbox's reason to report."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def refusal_reason(status: int | None, message: str) -> str | None:
    """The Sandbox's reason when the API server's answer to a create is final, else None (retried): 400/422
    (invalid) is ``InvalidSpec``; a 403 of PodSecurity admission is ``PodSecurityViolation``; any other 403
    (RBAC while permissions roll out, an exhausted quota) may pass later."""
    if status in INVALID_STATUSES:
        return contract.REASON_INVALID_SPEC
    if status == 403 and POD_SECURITY_REFUSAL in message:
        return contract.REASON_POD_SECURITY_VIOLATION
    return None


# kopf says nothing public when a watch restarts from a fresh list after "410 Gone": it logs it, at debug
# level, on this logger, with this message. WatchRelists listens there (checked by check_kopf_private_api).
KOPF_WATCHING_LOGGER = "kopf._cogs.clients.watching"
KOPF_RELIST_MESSAGE = "Restarting the watch-stream for "


class WatchRelists(logging.Filter):
    """Calls ``callback(plural)`` each time a kopf watch restarts from a fresh list (410 Gone), so the
    operator can resync that kind. Installed on kopf's watching logger (set to DEBUG for this); the debug
    records themselves are dropped unless ``show_debug``."""

    def __init__(self, callback: Callable[[str], None], show_debug: bool = False) -> None:
        super().__init__()
        self._callback = callback
        self._show_debug = show_debug

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith(KOPF_RELIST_MESSAGE):
            resource = message[len(KOPF_RELIST_MESSAGE) :].split(" ", 1)[0]  # e.g. "pods.v1"
            self._callback(resource.split(".", 1)[0])
        return self._show_debug or record.levelno > logging.DEBUG

    def install(self) -> None:
        watching = logging.getLogger(KOPF_WATCHING_LOGGER)
        watching.setLevel(logging.DEBUG)
        watching.addFilter(self)


class KopfPrivateApiMoved(RuntimeError):
    """The installed kopf no longer has the private client API this module uses."""


def check_kopf_private_api() -> None:
    """Raise :class:`KopfPrivateApiMoved` naming what is missing, if kopf's private client API moved."""
    where = f"kopf {getattr(kopf, '__version__', '?')}"
    advice = (
        "leap0_operator/k8s.py makes its API calls through kopf's private client API; "
        "install a kopf version the operator extra of pyproject.toml allows, or port k8s.py"
    )
    if _IMPORT_ERROR is not None:
        raise KopfPrivateApiMoved(f"{where}: cannot import kopf._cogs.clients ({_IMPORT_ERROR}); {advice}")
    request = getattr(_kopf_api, "request", None)
    if request is None or not callable(request):
        raise KopfPrivateApiMoved(f"{where}: kopf._cogs.clients.api.request is gone; {advice}")
    parameters = inspect.signature(request).parameters
    needed = ("method", "url", "settings", "payload", "headers", "backoffs", "logger")
    missing = [name for name in needed if name not in parameters]
    if missing:
        raise KopfPrivateApiMoved(
            f"{where}: kopf._cogs.clients.api.request lost its parameters {', '.join(missing)}; {advice}"
        )
    watching = sys.modules.get(KOPF_WATCHING_LOGGER) or importlib.import_module(KOPF_WATCHING_LOGGER)
    if KOPF_RELIST_MESSAGE not in inspect.getsource(watching):
        raise KopfPrivateApiMoved(f"{where}: {KOPF_WATCHING_LOGGER} no longer logs re-lists; {advice}")
    for name in ("APIError", "APINotFoundError", "APIConflictError", "APITooManyRequestsError"):
        cls = getattr(_kopf_errors, name, None)
        if not (isinstance(cls, type) and issubclass(cls, Exception)):
            raise KopfPrivateApiMoved(f"{where}: kopf._cogs.clients.errors.{name} is gone; {advice}")
        if not isinstance(getattr(cls, "status", None), property):
            raise KopfPrivateApiMoved(f"{where}: kopf._cogs.clients.errors.{name}.status is gone; {advice}")


def retry_after(headers: Any, default: float) -> float:
    """The server's ``Retry-After`` in seconds (a 429's), else ``default``."""
    value = (headers or {}).get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else default
    except ValueError:
        return default


def _sandbox_url(namespace: str, name: str, subresource: str = "") -> str:
    base = f"/apis/{contract.GROUP}/{contract.VERSION}/namespaces/{namespace}"
    url = f"{base}/{contract.SANDBOX_PLURAL}/{name}"
    return f"{url}/{subresource}" if subresource else url


class Api:
    """The operator's own API calls. ``retry_delay`` is the delay of the ``TemporaryError``s raised here
    (unless the server asks for another with ``Retry-After``)."""

    def __init__(
        self,
        settings: kopf.OperatorSettings,
        logger: Logger,
        retry_delay: float,
        on_request: Callable[[str, str, int | None], None] | None = None,
    ) -> None:
        self.settings = settings
        self.logger = logger
        self.retry_delay = retry_delay
        # Told of every request: (method, url, HTTP status or None when no answer came) — the metrics.
        self.on_request = on_request
        self._gate: asyncio.Semaphore | None = None

    async def _call(
        self,
        method: str,
        url: str,
        what: str,
        *,
        payload: Any = None,
        headers: dict[str, str] | None = None,
        absent: int | None = None,
        invalid_is_permanent: bool = False,
        read: bool = False,
    ) -> tuple[bool, Any]:
        """(done, body): ``done`` is False when the answer was the ``absent`` status (404 or 409)."""
        if self._gate is None:
            self._gate = asyncio.Semaphore(MAX_IN_FLIGHT)
        try:
            async with self._gate:
                response = await _kopf_api.request(
                    method,
                    url,
                    payload=payload,
                    headers=headers,
                    backoffs=(),  # no retries inside the call: the worker retries the reconcile
                    settings=self.settings,
                    logger=self.logger,
                )
                if self.on_request is not None:
                    self.on_request(method, url, response.status)
                async with response:
                    return True, (await response.json() if read else None)
        except _kopf_errors.APIError as exc:
            if self.on_request is not None:
                self.on_request(method, url, exc.status)
            if exc.status == absent:
                return False, None
            detail = exc.message or str(exc) or f"HTTP {exc.status}"
            reason = refusal_reason(exc.status, detail) if invalid_is_permanent else None
            if reason is not None:
                raise Refused(f"the API server refused {what}: {detail}", reason) from exc
            delay = retry_after(exc.headers, self.retry_delay) if exc.status == 429 else self.retry_delay
            raise kopf.TemporaryError(f"{what}: HTTP {exc.status}: {detail}", delay=delay) from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            if self.on_request is not None:
                self.on_request(method, url, None)
            raise kopf.TemporaryError(f"{what}: {exc!r}", delay=self.retry_delay) from exc

    async def _create(
        self, collection: str, body: dict[str, Any], what: str, invalid_is_permanent: bool
    ) -> bool:
        """POST ``body`` to ``collection`` (a namespaced path under the API root, ``{namespace}`` filled from
        the body); False when an object of that name exists (409: fine, names are deterministic)."""
        done, _ = await self._call(
            "post",
            collection.format(namespace=body["metadata"]["namespace"]),
            what,
            payload=body,
            absent=409,
            invalid_is_permanent=invalid_is_permanent,
        )
        return done

    async def create_pod(self, pod: dict[str, Any]) -> bool:
        """POST the pod; False when a pod of that name exists."""
        what = f"creating pod {pod['metadata']['name']}"
        return await self._create("/api/v1/namespaces/{namespace}/pods", pod, what, invalid_is_permanent=True)

    async def create_network_policy(self, policy: dict[str, Any]) -> dict[str, Any] | None:
        """POST the Sandbox's NetworkPolicy (before its pod): the created object, or None when one of that
        name exists."""
        done, body = await self._call(
            "post",
            NETWORK_POLICIES.format(namespace=policy["metadata"]["namespace"]),
            f"creating NetworkPolicy {policy['metadata']['name']}",
            payload=policy,
            absent=409,
            invalid_is_permanent=True,
            read=True,
        )
        return dict(body) if done and isinstance(body, dict) else None

    async def get_network_policy(self, namespace: str, name: str) -> dict[str, Any] | None:
        """GET a NetworkPolicy (one of the Sandbox's name the watch does not show: its labels were edited)."""
        url = NETWORK_POLICIES.format(namespace=namespace) + f"/{name}"
        done, body = await self._call("get", url, f"reading NetworkPolicy {name}", absent=404, read=True)
        return dict(body) if done and isinstance(body, dict) else None

    async def replace_network_policy(
        self, policy: dict[str, Any], resource_version: str
    ) -> dict[str, Any] | None:
        """PUT the Sandbox's NetworkPolicy over the live one of ``resource_version`` (a whole replacement: an
        edit cannot survive it as it could a merge patch); None when it is gone (404). A newer version (409)
        is a TemporaryError: the reconcile is retried from the latest state."""
        meta = policy["metadata"]
        url = NETWORK_POLICIES.format(namespace=meta["namespace"]) + f"/{meta['name']}"
        body = {**policy, "metadata": {**meta, "resourceVersion": resource_version}}
        done, answer = await self._call(
            "put", url, f"restoring NetworkPolicy {meta['name']}", payload=body, absent=404, read=True
        )
        return dict(answer) if done and isinstance(answer, dict) else None

    async def secret_metadata(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A Secret's metadata (labels, ownerReferences), never its data; None when it does not exist."""
        url = f"/api/v1/namespaces/{namespace}/secrets/{name}"
        done, body = await self._call(
            "get", url, f"reading the metadata of Secret {name}", headers=METADATA_ONLY, absent=404, read=True
        )
        return {"metadata": dict(objects.metadata(body))} if done else None

    async def create_workspace_claim(self, claim: dict[str, Any]) -> bool:
        """POST a Sandbox's persistent workspace claim (before its pod); False when it exists already."""
        return await self._create(
            "/api/v1/namespaces/{namespace}/persistentvolumeclaims",
            claim,
            f"creating PersistentVolumeClaim {claim['metadata']['name']}",
            invalid_is_permanent=True,
        )

    async def read_workspace_claim(self, namespace: str, name: str) -> dict[str, Any] | None:
        """GET a workspace claim that exists already (its owner is checked before it is mounted); None when
        it went meanwhile."""
        url = f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}"
        done, body = await self._call(
            "get", url, f"reading PersistentVolumeClaim {name}", absent=404, read=True
        )
        return dict(body) if done and isinstance(body, dict) else None

    async def patch_sandbox(self, namespace: str, name: str, patch: dict[str, Any]) -> bool:
        """Merge-patch the Sandbox itself (``spec.paused`` when the operator pauses it), with the
        resourceVersion precondition the patch carries: False on a conflict (409: it changed meanwhile)."""
        done, _ = await self._call(
            "patch",
            _sandbox_url(namespace, name),
            f"pausing Sandbox {name}",
            payload=patch,
            headers=MERGE_PATCH,
            absent=409,
        )
        return done

    async def delete_pod(self, namespace: str, name: str) -> bool:
        """DELETE the pod; False when it is already gone (404)."""
        url = f"/api/v1/namespaces/{namespace}/pods/{name}"
        done, _ = await self._call("delete", url, f"deleting pod {name}", absent=404)
        return done

    async def patch_sandbox_status(self, namespace: str, name: str, status: dict[str, Any]) -> bool:
        """Merge-patch the Sandbox's status subresource; False when the Sandbox is gone."""
        done, _ = await self._call(
            "patch",
            _sandbox_url(namespace, name, "status"),
            f"writing the status of Sandbox {name}",
            payload={"status": status},
            headers=MERGE_PATCH,
            absent=404,
        )
        return done

    async def delete_sandbox(self, namespace: str, name: str) -> bool:
        """DELETE an expired Sandbox after its retention (its pod goes with it through the ownerReference)."""
        url = _sandbox_url(namespace, name)
        done, _ = await self._call("delete", url, f"deleting Sandbox {name}", absent=404)
        return done

    async def create_event(self, event: dict[str, Any]) -> bool:
        """POST a core/v1 Event (``lifecycle.event_body``); False when one of that name exists."""
        what = f"posting event {event.get('reason')} on Sandbox {event['involvedObject']['name']}"
        return await self._create(
            "/api/v1/namespaces/{namespace}/events", event, what, invalid_is_permanent=False
        )

    async def list_objects(
        self, url: str, label_selector: str | None = None, chunk: int = LIST_CHUNK
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """LIST ``url`` in chunks of ``chunk`` objects (``limit``/``continue``), yielding each chunk's items:
        a list of thousands of pods is never held whole."""
        params: dict[str, str] = {"limit": str(chunk)}
        if label_selector:
            params["labelSelector"] = label_selector
        while True:
            _, body = await self._call(
                "get", f"{url}?{urllib.parse.urlencode(params)}", f"listing {url}", read=True
            )
            yield [dict(item) for item in objects.items(body, "items")]
            token = objects.metadata(body).get("continue")
            if not token:
                return
            params["continue"] = str(token)

    async def namespace_labels(self, namespace: str) -> dict[str, str]:
        """The namespace's labels (for the org id); empty when the namespace cannot be found."""
        url = f"/api/v1/namespaces/{namespace}"
        done, body = await self._call("get", url, f"reading namespace {namespace}", absent=404, read=True)
        labels = objects.labels(body) if done else objects.EMPTY
        return {str(k): str(v) for k, v in labels.items()}
