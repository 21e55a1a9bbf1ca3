"""The controller: reads one Sandbox's world, asks the pure planner what to do, and does it (thin I/O).

For each key taken off the work queue: :meth:`Controller.observe` gathers the Sandbox (with the status we last
wrote if the watch has not shown it yet), its pod (or the one just POSTed) and its template;
``reconcile.plan`` decides; :meth:`Controller.execute` makes the API calls of the plan in order (create the
pod, delete the pod, delete the Sandbox, patch the status) and schedules the next look.

kopf's error vocabulary, translated exactly: a ``kopf.PermanentError`` from the API (a pod refused as invalid)
makes the Sandbox ``Failed`` with the server's message and is not retried; a ``kopf.TemporaryError`` (an API
error that may recover) retries the whole reconcile after the error's delay, doubling on repeats
(``runtime.retry_delay``). A retry recomputes everything from the latest state, so it never replays a stale
request.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import kopf

import leap0_contract as contract

from . import k8s, objects
from .config import OperatorConfig
from .network import build_network_policy
from .objects import Key
from .pod import build_pod, pod_name
from .reconcile import Plan, failed, plan
from .resolve import SpecError, template_key
from .runtime import OrgIds, Wakeups, WorkQueue, WriteTracker, retry_delay

Lookup = Callable[[Key], Mapping[str, Any] | None]

logger = logging.getLogger("leap0_operator")

# Reconciles running at once (each makes its API calls in sequence): bounds connections and memory in bursts.
RECONCILE_WORKERS = 32


@dataclasses.dataclass
class Sources:
    """Read access to the operator's view of the API: Sandboxes, their pods and templates, by key."""

    sandbox: Lookup
    pod: Lookup  # by the Sandbox's key
    template: Lookup


@dataclasses.dataclass(frozen=True)
class Observed:
    """One Sandbox's world as the operator sees it, the planner's input."""

    key: Key
    sandbox: Mapping[str, Any]  # its status: what we last wrote, if the watch has not shown it yet
    template: Mapping[str, Any] | None
    pod: Mapping[str, Any] | None
    now: datetime.datetime


class Controller:
    """Reconciles Sandboxes: the work queue's handler, with the pieces it uses (write tracker, org ids,
    wake-ups) and the Sandboxes seen on the watch (trimmed, by key)."""

    def __init__(self, config: OperatorConfig, api: k8s.Api) -> None:
        self.config = config
        self.api = api
        self.sources: Sources | None = None  # set by the first kopf handler (kopf's indexes live there)
        self.sandboxes: dict[Key, dict[str, Any]] = {}  # trimmed Sandboxes, kept by the Sandbox event handler
        self.writes = WriteTracker()
        self.org_ids = OrgIds(api.namespace_labels, config.namespace_cache_s)
        self.queue = WorkQueue(self.reconcile, RECONCILE_WORKERS)
        self.wakeups = Wakeups(self._wake)
        self._failures: dict[Key, int] = {}  # TemporaryErrors in a row, per Sandbox (backoff)

    # --- what the watches report ------------------------------------------------------------------------
    def sandbox_seen(self, key: Key, sandbox: dict[str, Any]) -> None:
        """Keep the Sandbox's latest state and reconcile it, unless the event only echoes our status write."""
        previous = self.sandboxes.get(key)
        self.sandboxes[key] = sandbox
        if not self.writes.is_echo(key, previous, sandbox):
            self.queue.add(key)

    def sandbox_deleted(self, key: Key) -> None:
        """The Sandbox is gone: drop everything about it."""
        self.sandboxes.pop(key, None)
        self.writes.forget(key)
        self._failures.pop(key, None)
        self.wakeups.cancel(key)

    def pod_seen(self, key: Key, deleted: bool = False) -> None:
        if deleted:
            self.writes.pod_gone(key)
        self.queue.add(key)

    def template_seen(self, key: Key) -> None:
        """A template appeared or changed: the Sandboxes that failed for want of it are looked at again."""
        for sandbox_key, sandbox in list(self.sandboxes.items()):
            if (
                template_key(sandbox) == key
                and objects.status(sandbox).get("reason") == contract.REASON_TEMPLATE_NOT_FOUND
            ):
                self.queue.add(sandbox_key)

    # --- lifecycle --------------------------------------------------------------------------------------
    def start(self, sources: Sources) -> None:
        if self.sources is None:
            self.sources = sources
            self.queue.start()
            self.wakeups.start()

    async def stop(self) -> None:
        await self.wakeups.stop()
        await self.queue.stop()

    async def _wake(self, key: Key) -> None:
        self.queue.add(key)

    # --- the reconcile ----------------------------------------------------------------------------------
    async def reconcile(self, key: Key) -> None:
        """Bring one Sandbox's pod and status in line with the API's state (the work queue's handler)."""
        observed = self.observe(key)
        if observed is None:
            self.sandbox_deleted(key)
            return
        try:
            await self.execute(
                observed, plan(observed.sandbox, observed.template, observed.pod, observed.now, self.config)
            )
        except kopf.TemporaryError as exc:
            attempt = self._failures.get(key, 0) + 1
            self._failures[key] = attempt
            delay = retry_delay(exc.delay, attempt)
            logger.warning("Sandbox %s/%s: %s; retry #%d in %gs", *key, exc, attempt, delay)
            self.wakeups.schedule(key, time.time() + delay)
        else:
            self._failures.pop(key, None)

    def observe(self, key: Key) -> Observed | None:
        """The planner's input for ``key``; None when the Sandbox is gone."""
        sources = self.sources
        sandbox = sources.sandbox(key) if sources is not None else None
        if sources is None or sandbox is None:
            return None
        status = self.writes.status(key, objects.status(sandbox))
        return Observed(
            key=key,
            sandbox={**sandbox, "status": status},
            template=sources.template(template_key(sandbox)),
            pod=self.writes.pod(key, sources.pod(key)),
            now=datetime.datetime.now(datetime.UTC),
        )

    async def execute(self, observed: Observed, decision: Plan) -> None:
        """Carry out ``decision`` (API calls in the plan's order), then schedule the next look."""
        key = observed.key
        namespace, name = key
        if decision.effective is not None:
            # The NetworkPolicy first (none for AllowAll), so the pod never runs unrestricted; it exists
            # already (409) when the pod is recreated.
            policy = build_network_policy(
                owner=observed.sandbox, network=decision.effective.network, settings=self.config.network
            )
            manifest = build_pod(
                owner=observed.sandbox,
                effective=decision.effective,
                org_id=await self.org_ids.get(namespace),
                config=self.config,
            )
            try:
                if policy is not None:
                    await self.api.create_network_policy(policy)
                created = await self.api.create_pod(manifest)
            except kopf.PermanentError as exc:  # the API refused it as invalid: Failed, not retried
                logger.warning("Sandbox %s/%s: %s (permanent: not retried)", namespace, name, exc)
                refused = SpecError(contract.REASON_INVALID_SPEC, str(exc))
                decision = failed(observed.sandbox, refused, observed.now, self.config)
            else:
                self.writes.pod_posted(key, manifest)
                logger.debug(
                    "Sandbox %s/%s: %s pod %s",
                    namespace,
                    name,
                    "created" if created else "found",
                    pod_name(name),
                )
        if decision.delete_pod and observed.pod is not None:
            await self.api.delete_pod(namespace, objects.name(observed.pod))
            self.writes.pod_gone(key)
            logger.info("Sandbox %s/%s expired: deleted its pod", namespace, name)
        if decision.delete_sandbox:
            if await self.api.delete_sandbox(namespace, name):
                logger.info("Sandbox %s/%s: deleted after its retention period", namespace, name)
            self.sandbox_deleted(key)
            return
        if decision.status is not None and decision.patch:
            if decision.patch.get("reason"):
                self._log_transition(key, decision.status)
            if await self.api.patch_sandbox_status(namespace, name, decision.patch):
                self.writes.status_written(key, decision.status)
        self.wakeups.schedule(key, decision.wake_at.timestamp() if decision.wake_at else None)

    @staticmethod
    def _log_transition(key: Key, status: Mapping[str, Any]) -> None:
        phase = str(status.get("phase"))
        level = {contract.PHASE_FAILED: logging.WARNING, contract.PHASE_EXPIRED: logging.INFO}.get(
            phase, logging.DEBUG
        )
        logger.log(
            level, "Sandbox %s/%s: %s (%s) %s", *key, phase, status.get("reason"), status.get("message")
        )
