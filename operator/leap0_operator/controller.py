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

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import os
import socket
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import kopf

import leap0_contract as contract

from . import k8s, lifecycle, objects, secrets
from .config import OperatorConfig
from .network import trim_policy
from .objects import Key
from .pod import build_pod, build_workspace_claim, claim_conflict, claim_name, pod_name
from .reconcile import (
    Plan,
    failed,
    plan,
    secrets_refused,
    trim_pod,
    trim_sandbox,
    waiting_for_secrets,
)
from .resolve import SpecError, template_key
from .runtime import OrgIds, Wakeups, WorkQueue, WriteTracker, retry_delay
from .stores import Store

if TYPE_CHECKING:
    from .metrics import Metrics

logger = logging.getLogger("leap0_operator")

# Reconciles running at once (each makes its API calls in sequence): bounds connections and memory in bursts.
RECONCILE_WORKERS = 32
# After a watch re-listed, wait this long (the re-list's own events arrive meanwhile), then resync that kind.
RELIST_SETTLE_S = 1.0
# A pause the operator decided met a Sandbox changed meanwhile (409): decide again this soon.
CONFLICT_RETRY_S = 1.0


def _own_key(obj: objects.Obj) -> Key | None:
    return objects.namespace(obj), objects.name(obj)


def _pod_key(obj: objects.Obj) -> Key | None:
    """A sandbox pod's key is its Sandbox's: (namespace, the leap0.dev/sandbox-id label)."""
    sandbox_id = objects.labels(obj).get(contract.LABEL_SANDBOX_ID)
    return (objects.namespace(obj), str(sandbox_id)) if sandbox_id else None


def _template_spec(obj: objects.Obj) -> dict[str, Any]:
    return dict(objects.spec(obj))


@dataclasses.dataclass(frozen=True)
class Kind:
    """One kind the operator watches and keeps a store of: where to list it, its key and trimmed value."""

    plural: str
    api: str  # "/api/v1" or "/apis/<group>/<version>"
    label_selector: str | None
    key: Callable[[objects.Obj], Key | None]
    trim: Callable[[objects.Obj], dict[str, Any]]

    def url(self, namespace: str | None) -> str:
        where = f"/namespaces/{namespace}" if namespace is not None else ""
        return f"{self.api}{where}/{self.plural}"


CRD_API = f"/apis/{contract.GROUP}/{contract.VERSION}"
SANDBOXES = Kind(contract.SANDBOX_PLURAL, CRD_API, None, _own_key, trim_sandbox)
PODS = Kind("pods", "/api/v1", contract.LABEL_SANDBOX_ID, _pod_key, trim_pod)
TEMPLATES = Kind(contract.TEMPLATE_PLURAL, CRD_API, None, _own_key, _template_spec)
POLICIES = Kind(
    "networkpolicies", "/apis/networking.k8s.io/v1", contract.LABEL_SANDBOX_ID, _pod_key, trim_policy
)
KINDS = {kind.plural: kind for kind in (SANDBOXES, PODS, TEMPLATES, POLICIES)}


@dataclasses.dataclass(frozen=True)
class Observed:
    """One Sandbox's world as the operator sees it, the planner's input."""

    key: Key
    sandbox: Mapping[str, Any]  # its status: what we last wrote, if the watch has not shown it yet
    template: Mapping[str, Any] | None
    pod: Mapping[str, Any] | None
    now: datetime.datetime
    policy: Mapping[str, Any] | None = None  # its NetworkPolicy, trimmed (network.trim_policy)


class Controller:
    """Reconciles Sandboxes: the work queue's handler, with the pieces it uses (the stores of what the watches
    show, the write tracker, org ids, wake-ups) and the resyncs that keep the stores equal to the API."""

    def __init__(
        self, config: OperatorConfig, api: k8s.Api, clusterwide: bool = False, metrics: Metrics | None = None
    ) -> None:
        self.config = config
        self.api = api
        self.metrics = metrics
        self.clusterwide = clusterwide  # resyncs list cluster-wide, else each namespace the stores hold
        self.sandboxes = Store()  # trimmed Sandboxes
        self.pods = Store()  # trimmed sandbox pods, by their Sandbox's key
        self.templates = Store()  # template specs
        self.policies = Store()  # trimmed sandbox NetworkPolicies (name, version, digest), by Sandbox key
        self.stores = {
            SANDBOXES.plural: self.sandboxes,
            PODS.plural: self.pods,
            TEMPLATES.plural: self.templates,
            POLICIES.plural: self.policies,
        }
        self.writes = WriteTracker()
        self.org_ids = OrgIds(api.namespace_labels, config.namespace_cache_s)
        self.queue = WorkQueue(self.reconcile, RECONCILE_WORKERS)
        self.wakeups = Wakeups(self._wake)
        self._failures: dict[Key, int] = {}  # TemporaryErrors in a row, per Sandbox (backoff)
        # reportingInstance of the Events we post: the operator's pod (its host name).
        self.instance = os.environ.get("HOSTNAME") or socket.gethostname()
        self._started = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._resync_locks: dict[str, asyncio.Lock] = {}
        self._relists: set[str] = set()  # kinds with a resync pending after a re-list
        self._seen: dict[Key, float] = {}  # first seen without a pod yet (the pod-create histogram)
        self._pausing: dict[Key, float] = {}  # pause decided, its pod not gone yet (the pause histogram)
        self._resuming: dict[Key, float] = {}  # resume decided, not Running yet (the resume histogram)
        if metrics is not None:
            metrics.watch(self.phase_counts, self.queue.depth)

    # --- what the watches report ------------------------------------------------------------------------
    def sandbox_seen(self, key: Key, sandbox: dict[str, Any]) -> None:
        """Keep the Sandbox's latest state and reconcile it, unless the event only echoes our status write."""
        previous = self.sandboxes.put(key, sandbox)
        if previous is None and self.metrics is not None:
            self._seen[key] = time.monotonic()
        if not self.writes.is_echo(key, previous, sandbox):
            self.queue.add(key)

    def sandbox_deleted(self, key: Key) -> None:
        """The Sandbox is gone: drop everything about it."""
        self.sandboxes.delete(key)
        self.writes.forget(key)
        self._failures.pop(key, None)
        self._seen.pop(key, None)
        self._pausing.pop(key, None)
        self._resuming.pop(key, None)
        self.wakeups.cancel(key)

    def pod_seen(self, key: Key, pod: dict[str, Any] | None) -> None:
        """The Sandbox's pod as a watch shows it (None: deleted)."""
        if pod is None:
            self.pods.delete(key)
            self.writes.pod_gone(key)
            self._paused(key)
        else:
            self.pods.put(key, pod)
        self.queue.add(key)

    def policy_seen(self, key: Key, policy: dict[str, Any] | None) -> None:
        """The Sandbox's NetworkPolicy as a watch shows it (None: deleted): a live sandbox gets it back. The
        echo of the operator's own write (the same spec as stored) is not reconciled."""
        if policy is None:
            self.policies.delete(key)
        else:
            previous = self.policies.put(key, policy)
            if previous is not None and previous.get("digest") == policy.get("digest"):
                return
        if key in self.sandboxes:
            self.queue.add(key)

    def template_seen(self, key: Key, spec: dict[str, Any] | None) -> None:
        """A template as a watch shows it (None: deleted). One that appears or changes lets the Sandboxes that
        failed for want of it start (they are looked at again)."""
        if spec is None:
            self.templates.delete(key)
            return
        self.templates.put(key, spec)
        self._template_changed(key)

    def _template_changed(self, key: Key) -> None:
        for sandbox_key, sandbox in self.sandboxes.items():
            if (
                template_key(sandbox) == key
                and objects.status(sandbox).get("reason") == contract.REASON_TEMPLATE_NOT_FOUND
            ):
                self.queue.add(sandbox_key)

    def phase_counts(self) -> dict[str, int]:
        """Sandboxes per phase in the operator's view (read by the metrics server's thread at a scrape;
        ``Store.items`` copies first, so the loop may change the store meanwhile)."""
        from .metrics import phase_counts

        return phase_counts(objects.status(s).get("phase") for _, s in self.sandboxes.items())

    def watch_relisted(self, plural: str) -> None:
        """A watch of ``plural`` restarted from a fresh list (after 410 Gone): resync that kind soon."""
        if plural not in KINDS or plural in self._relists or not self._started:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # not from the operator's loop (kopf logs from it): nothing to schedule on
            return
        self._relists.add(plural)
        self._spawn(self._resync_after_relist(plural))

    # --- lifecycle --------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the workers, the wake-ups and the periodic resync (from the first kopf handler call: kopf has
        listed the pods and templates by then, so no Sandbox is reconciled without knowing its pod)."""
        if not self._started:
            self._started = True
            self.queue.start()
            self.wakeups.start()
            if self.config.resync_period_s > 0:
                self._spawn(self._resync_periodically())

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.wakeups.stop()
        await self.queue.stop()

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _wake(self, key: Key) -> None:
        self.queue.add(key)

    # --- resync: the stores against fresh lists ---------------------------------------------------------
    async def _resync_after_relist(self, plural: str) -> None:
        try:
            await asyncio.sleep(RELIST_SETTLE_S)
        finally:
            self._relists.discard(plural)
        with contextlib.suppress(kopf.TemporaryError):  # logged; the periodic resync tries again
            await self.resync(KINDS[plural], "after a watch re-list")

    async def _resync_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.config.resync_period_s)
            for kind in KINDS.values():
                with contextlib.suppress(kopf.TemporaryError):
                    await self.resync(kind, "periodic")

    async def resync(self, kind: Kind, why: str) -> int:
        """List ``kind`` and correct its store: objects that differ take the listed state, objects the list
        does not show are dropped; each Sandbox affected is reconciled. Returns the number of corrections."""
        lock = self._resync_locks.setdefault(kind.plural, asyncio.Lock())
        async with lock:
            store = self.stores[kind.plural]
            since = store.mark()
            scopes: list[str | None] = [None] if self.clusterwide else [*sorted(store.namespaces())]
            listed: list[Key] = []
            changed: list[Key] = []
            try:
                for namespace in scopes:
                    async for chunk in self.api.list_objects(kind.url(namespace), kind.label_selector):
                        for obj in chunk:
                            key = kind.key(obj)
                            if key is None:
                                continue
                            listed.append(key)
                            if store.correct(key, kind.trim(obj), since):
                                changed.append(key)
            except kopf.TemporaryError as exc:
                logger.warning("resync of %s (%s) failed: %s", kind.plural, why, exc)
                raise
            gone = store.prune(listed, since)
        for key in changed:
            self._corrected(kind, key, present=True)
        for key in gone:
            self._corrected(kind, key, present=False)
        if changed or gone:
            logger.info(
                "resync of %s (%s): %d stale in the operator's view, %d gone; corrected",
                kind.plural,
                why,
                len(changed),
                len(gone),
            )
        return len(changed) + len(gone)

    def _corrected(self, kind: Kind, key: Key, present: bool) -> None:
        if kind is SANDBOXES:
            if present:
                self.queue.add(key)
            else:
                self.sandbox_deleted(key)
        elif kind is PODS:
            if not present:
                self.writes.pod_gone(key)
            self.queue.add(key)
        elif kind is POLICIES:
            if key in self.sandboxes:
                self.queue.add(key)
        elif present:
            self._template_changed(key)

    # --- the reconcile ----------------------------------------------------------------------------------
    async def reconcile(self, key: Key) -> None:
        """Bring one Sandbox's pod and status in line with the API's state (the work queue's handler)."""
        observed = self.observe(key)
        if observed is None:
            self.sandbox_deleted(key)
            return
        result = contract.RECONCILE_FAILED  # unless it ends otherwise: an exception propagating is a failure
        try:
            decision = plan(
                observed.sandbox, observed.template, observed.pod, observed.now, self.config, observed.policy
            )
            result = await self.execute(observed, decision)
        except asyncio.CancelledError:
            result = ""  # the operator is stopping: not a reconcile result
            raise
        except kopf.TemporaryError as exc:
            result = contract.RECONCILE_RETRY
            attempt = self._failures.get(key, 0) + 1
            self._failures[key] = attempt
            delay = retry_delay(exc.delay, attempt)
            logger.warning("Sandbox %s/%s: %s; retry #%d in %gs", *key, exc, attempt, delay)
            self.wakeups.schedule(key, time.time() + delay)
        else:
            self._failures.pop(key, None)
        finally:
            if self.metrics is not None and result:
                self.metrics.count_reconcile(result)

    def observe(self, key: Key) -> Observed | None:
        """The planner's input for ``key``; None when the Sandbox is gone."""
        sandbox = self.sandboxes.get(key)
        if sandbox is None:
            return None
        status = self.writes.status(key, objects.status(sandbox))
        return Observed(
            key=key,
            sandbox={**sandbox, "status": status},
            template=self.templates.get(template_key(sandbox)),
            pod=self.writes.pod(key, self.pods.get(key)),
            now=datetime.datetime.now(datetime.UTC),
            policy=self.policies.get(key),
        )

    async def _claim(self, observed: Observed, claim: dict[str, Any], expected: bool) -> None:
        """Create the workspace claim, or make sure the one of that name is the Sandbox's own (a
        ``kopf.PermanentError`` otherwise: the sandbox fails without a pod). A claim created where one was
        expected (a resume, a recreated pod) was deleted meanwhile: a Warning says the workspace is new."""
        namespace, name = observed.key
        cname = claim_name(name)
        if await self.api.create_workspace_claim(claim):
            if expected:
                lost = lifecycle.workspace_lost_event(cname)
                logger.warning("Sandbox %s/%s: %s", namespace, name, lost.message)
                await self.post_events(observed, (lost,))
            return
        existing = await self.api.read_workspace_claim(namespace, cname)
        conflict = claim_conflict(existing, observed.sandbox) if existing is not None else None
        if conflict is not None:
            raise k8s.Refused(conflict, contract.REASON_WORKSPACE_CONFLICT)

    def _paused(self, key: Key) -> None:
        """The pod of a sandbox being paused is gone: the pause is complete."""
        began = self._pausing.pop(key, None)
        if began is not None and self.metrics is not None:
            self.metrics.observe_pause(time.monotonic() - began)

    async def execute(self, observed: Observed, decision: Plan) -> str:
        """Carry out ``decision`` (API calls in the plan's order), then schedule the next look. Returns the
        reconcile's result for the metrics: ``failed`` when it made the Sandbox Failed, ``retry`` when the
        Sandbox changed under a pause the operator decided, else ``ok``."""
        key = observed.key
        namespace, name = key
        if observed.pod is not None:
            self._seen.pop(key, None)
        # The operator's own pause (idle, timeout) goes to spec.paused first, conditional on the Sandbox being
        # as it was decided from: a use or a resume meanwhile wins, and the next look decides again.
        if decision.sandbox_patch is not None and not await self.api.patch_sandbox(
            namespace, name, decision.sandbox_patch
        ):
            logger.info("Sandbox %s/%s changed while being paused: deciding again", namespace, name)
            self.wakeups.schedule(key, time.time() + CONFLICT_RETRY_S)
            return contract.RECONCILE_RETRY
        if decision.effective is not None:
            decision = await self._judge_secrets(observed, decision)
        if decision.network_policy is not None and decision.effective is None:
            await self._write_policy(observed, decision.network_policy, decision.policy_version)
        if decision.effective is not None:
            # The NetworkPolicy first (none for AllowAll), so the pod never runs unrestricted; then the
            # workspace claim, which the pod mounts.
            claim = build_workspace_claim(owner=observed.sandbox, effective=decision.effective)
            manifest = build_pod(
                owner=observed.sandbox,
                effective=decision.effective,
                org_id=await self.org_ids.get(namespace),
                config=self.config,
            )
            try:
                if decision.network_policy is not None:
                    await self._write_policy(observed, decision.network_policy, decision.policy_version)
                if claim is not None:
                    await self._claim(observed, claim, decision.claim_expected)
                created = await self.api.create_pod(manifest)
            except kopf.PermanentError as exc:  # refused for good (by the API, or a claim not its own)
                logger.warning("Sandbox %s/%s: %s (permanent: not retried)", namespace, name, exc)
                refused = SpecError(getattr(exc, "reason", contract.REASON_INVALID_SPEC), str(exc))
                decision = failed(observed.sandbox, refused, observed.now, self.config)
            else:
                self.writes.pod_posted(key, manifest)
                seen = self._seen.pop(key, None)
                if created and seen is not None and self.metrics is not None:
                    self.metrics.observe_pod_created(time.monotonic() - seen)
                logger.debug(
                    "Sandbox %s/%s: %s pod %s",
                    namespace,
                    name,
                    "created" if created else "found",
                    pod_name(name),
                )
        expiring = decision.status is not None and decision.status.get("phase") == contract.PHASE_EXPIRED
        was = objects.status(observed.sandbox).get("phase")
        now_phase = decision.status.get("phase") if decision.status is not None else None
        if now_phase == contract.PHASE_PAUSED and was != contract.PHASE_PAUSED:
            self._pausing[key] = time.monotonic()
            self._resuming.pop(key, None)
        elif was == contract.PHASE_PAUSED and now_phase not in (None, contract.PHASE_PAUSED):
            self._resuming[key] = time.monotonic()
        if decision.delete_pod and observed.pod is not None:
            pod = objects.name(observed.pod)
            deleted = await self._deleting(
                observed, f"pod {pod}", self.api.delete_pod(namespace, pod), expiring
            )
            self.writes.pod_gone(key)
            if deleted and expiring and self.metrics is not None:
                expires_at = (decision.status or objects.status(observed.sandbox)).get("expiresAt")
                self.metrics.observe_expiry(expires_at, datetime.datetime.now(datetime.UTC))
            why = {contract.PHASE_EXPIRED: "expired", contract.PHASE_PAUSED: "paused"}.get(
                str(now_phase), "did not start in time"
            )
            logger.info("Sandbox %s/%s %s: deleted its pod", namespace, name, why)
        elif now_phase == contract.PHASE_PAUSED and observed.pod is None:
            self._paused(key)  # no pod to wait for
        if decision.delete_sandbox:
            deleting = self.api.delete_sandbox(namespace, name)
            if await self._deleting(observed, f"Sandbox {name}", deleting, expiring):
                logger.info("Sandbox %s/%s: deleted after its retention period", namespace, name)
            self.sandbox_deleted(key)
            return contract.RECONCILE_OK
        result = contract.RECONCILE_OK
        if decision.status is not None and decision.patch:
            if decision.patch.get("reason"):
                self._log_transition(key, decision.status)
            if await self.api.patch_sandbox_status(namespace, name, decision.patch):
                self.writes.status_written(key, decision.status)
                result = self._phase_changed(observed, decision.status.get("phase"))
                await self.post_events(observed, decision.events)
        self.wakeups.schedule(key, decision.wake_at.timestamp() if decision.wake_at else None)
        return result

    async def _judge_secrets(self, observed: Observed, decision: Plan) -> Plan:
        """Before a pod is created: every Secret its env references must be one the Sandbox may have (owned by
        it, or labelled leap0.dev/sandbox-env). Reads their metadata only."""
        assert decision.effective is not None
        refs = secrets.secret_refs(decision.effective.env)
        if not refs:
            return decision
        namespace = observed.key[0]
        found = {name: await self.api.secret_metadata(namespace, name) for name in {r.secret for r in refs}}
        verdict = secrets.check(refs, found, objects.uid(observed.sandbox))
        if verdict.refused:
            message = secrets.refused_message(verdict.refused)
            logger.warning("Sandbox %s/%s: %s", *observed.key, message)
            return secrets_refused(observed.sandbox, message, observed.now, self.config)
        if verdict.missing:
            return waiting_for_secrets(
                observed.sandbox, decision.effective, verdict.missing, observed.now, self.config
            )
        return decision

    async def _write_policy(self, observed: Observed, policy: dict[str, Any], version: str | None) -> None:
        """Create the Sandbox's NetworkPolicy, or put it back over a live one that was edited (``version``).
        One of its name the watch does not show (its labels were edited, or someone made it first) is replaced
        whole. A sandbox that had a pod already gets a Warning Event: its isolation was tampered with."""
        key = observed.key
        namespace, name = key
        policy_name = str(policy["metadata"]["name"])
        what = "deleted" if version is None else "edited"
        if version is None:
            written = await self.api.create_network_policy(policy)
            if written is None:  # 409: it exists, but not as the watch shows ours
                live = await self.api.get_network_policy(namespace, policy_name)
                if live is not None:
                    version = str(objects.metadata(live).get("resourceVersion") or "")
                    written = await self.api.replace_network_policy(policy, version)
        else:
            written = await self.api.replace_network_policy(policy, version)
            if written is None:  # 404: deleted meanwhile
                written = await self.api.create_network_policy(policy)
        if written is not None:
            self.policies.put(key, trim_policy(written))
        if written is not None and objects.status(observed.sandbox).get("podName"):
            message = f"NetworkPolicy {policy_name} was {what} while the sandbox lives; restored it"
            logger.warning("Sandbox %s/%s: %s", namespace, name, message)
            event = lifecycle.SandboxEvent(
                contract.EVENT_TYPE_WARNING, contract.REASON_NETWORK_POLICY_RESTORED, message
            )
            await self.post_events(observed, (event,))

    def _phase_changed(self, observed: Observed, phase: Any) -> str:
        """After a status write: a new Running phase is a startup (creation to now) or the end of a resume; a
        new Failed phase makes the reconcile ``failed``."""
        if objects.status(observed.sandbox).get("phase") == phase:
            return contract.RECONCILE_OK
        resumed = self._resuming.pop(observed.key, None) if phase != contract.PHASE_PENDING else None
        if phase == contract.PHASE_RUNNING and self.metrics is not None:
            now = datetime.datetime.now(datetime.UTC)
            before = objects.status(observed.sandbox)
            if resumed is not None:
                self.metrics.observe_resume(time.monotonic() - resumed)
            elif before.get("reason") == contract.REASON_RESUMING and before.get("resumedAt"):
                # resumed before a restart of the operator: from the recorded time
                self.metrics.observe_resumed(str(before["resumedAt"]), now)
            else:
                created = objects.metadata(observed.sandbox).get("creationTimestamp")
                self.metrics.observe_running(created, now)
        return contract.RECONCILE_FAILED if phase == contract.PHASE_FAILED else contract.RECONCILE_OK

    async def _deleting(
        self, observed: Observed, what: str, call: Coroutine[Any, Any, bool], expiring: bool
    ) -> bool:
        """Await a DELETE of the expiry path; when it fails (a TemporaryError, retried with backoff), post a
        Warning Event the first time of a run of failures, not on every retry."""
        try:
            return await call
        except kopf.TemporaryError as exc:
            if expiring and not self._failures.get(observed.key):
                await self.post_events(observed, (lifecycle.deletion_failed_event(what, str(exc)),))
            raise

    async def post_events(self, observed: Observed, events: Sequence[lifecycle.SandboxEvent]) -> None:
        """POST each Event (core/v1) about the Sandbox. Events are auxiliary: one that cannot be posted is
        logged and dropped, never retried (a retry would repeat the reconcile's other calls)."""
        for i, event in enumerate(events):
            body = lifecycle.event_body(
                observed.sandbox, event, observed.now, time.time_ns() + i, self.instance
            )
            try:
                await self.api.create_event(body)
            except kopf.TemporaryError as exc:
                logger.warning(
                    "Sandbox %s/%s: could not post the %s event: %s", *observed.key, event.reason, exc
                )

    @staticmethod
    def _log_transition(key: Key, status: Mapping[str, Any]) -> None:
        phase = str(status.get("phase"))
        level = {contract.PHASE_FAILED: logging.WARNING, contract.PHASE_EXPIRED: logging.INFO}.get(
            phase, logging.DEBUG
        )
        logger.log(
            level, "Sandbox %s/%s: %s (%s) %s", *key, phase, status.get("reason"), status.get("message")
        )
