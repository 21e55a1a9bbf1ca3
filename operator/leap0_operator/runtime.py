"""The operator's in-process machinery: one reconcile per Sandbox at a time, wake-ups, and write avoidance.

Nothing here is the source of truth: every decision is recomputed from what the API says (kopf's indexes of
Sandboxes, their pods and templates), so killing the operator loses nothing. What lives here only avoids
needless calls: a pod just POSTed but not yet seen on the watch is not POSTed again, a status just written but
not yet seen is not written again, and one timer task wakes Sandboxes at their expiry (no periodic writes, no
per-object timers).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import heapq
import logging
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any

import kopf

import leap0_contract as contract

from . import k8s
from .config import OperatorConfig
from .pod import build_pod, pod_name
from .reconcile import failed, owned_status, plan, status_patch

Key = tuple[str, str]  # (namespace, sandbox name)
Lookup = Callable[[Key], Mapping[str, Any] | None]

logger = logging.getLogger("leap0_operator")

# Reconciles running at once (each makes its API calls in sequence): bounds connections and memory in bursts.
RECONCILE_WORKERS = 32
# A pod POSTed but not yet seen on the watch is trusted to exist for this long.
POSTED_TTL_S = 30.0
# A reconcile failing again and again with TemporaryErrors waits twice as long each time, up to this.
MAX_RETRY_DELAY_S = 60.0


def retry_delay(delay: float | None, attempt: int) -> float:
    """The wait before retrying after the ``attempt``-th TemporaryError in a row whose delay is ``delay``:
    the delay itself the first time, doubling on repeats, never more than ``MAX_RETRY_DELAY_S`` (unless the
    error itself asks for longer, e.g. a server's ``Retry-After``)."""
    base = max(0.0, float(delay or 0.0))
    return max(base, min(base * 2.0 ** (attempt - 1), MAX_RETRY_DELAY_S))


class Wakeups:
    """One task sleeping until the earliest scheduled key is due, then calling back (one time per key)."""

    def __init__(self, callback: Callable[[Key], Coroutine[Any, Any, None]]) -> None:
        self._callback = callback
        self._due: dict[Key, float] = {}  # key -> wall-clock time (epoch seconds)
        self._heap: list[tuple[float, Key]] = []
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    def schedule(self, key: Key, when: float | None) -> None:
        if when is None:
            self._due.pop(key, None)
            return
        if self._due.get(key) == when:
            return
        self._due[key] = when
        heapq.heappush(self._heap, (when, key))
        self._changed.set()

    def cancel(self, key: Key) -> None:
        self._due.pop(key, None)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="leap0-wakeups")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            # Drop stale heap entries (rescheduled or cancelled keys).
            while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
                heapq.heappop(self._heap)
            self._changed.clear()
            timeout = max(0.0, self._heap[0][0] - time.time()) if self._heap else None
            if timeout is None or timeout > 0:
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout=timeout)
                    continue  # something was (re)scheduled: look again
                except TimeoutError:
                    pass
            if not self._heap:
                continue
            when, key = heapq.heappop(self._heap)
            if self._due.get(key) != when:
                continue
            del self._due[key]
            task = asyncio.create_task(self._callback(key))
            self._running.add(task)
            task.add_done_callback(self._running.discard)


class WorkQueue:
    """Keys to reconcile, drained by a fixed number of workers; a key is queued at most once and never
    reconciled by two workers at a time (an event arriving meanwhile queues it again afterwards).

    kopf's handlers only add keys here and return, so a burst of events holds no kopf machinery while waiting
    for the API, and several events for one Sandbox coalesce into one reconcile of its latest state.
    """

    def __init__(self, handler: Callable[[Key], Coroutine[Any, Any, None]], workers: int) -> None:
        self._handler = handler
        self._workers = workers
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._active: set[Key] = set()
        self._again: set[Key] = set()
        self._tasks: list[asyncio.Task[None]] = []

    def add(self, key: Key) -> None:
        if key in self._active:
            self._again.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._work(), name=f"leap0-reconcile-{i}") for i in range(self._workers)
            ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def join(self) -> None:
        """Wait until every queued key was reconciled (tests)."""
        await self._queue.join()

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._active.add(key)
            try:
                await self._handler(key)
            except Exception:
                logger.exception("Sandbox %s/%s: reconcile failed", *key)
            finally:
                self._active.discard(key)
                self._queue.task_done()
                if key in self._again:
                    self._again.discard(key)
                    self.add(key)


@dataclasses.dataclass
class Sources:
    """Read access to the Sandboxes and kopf's indexes of pods and templates (set by the first handler)."""

    sandbox: Lookup
    pod: Lookup
    template: Lookup


class Runtime:
    def __init__(self, config: OperatorConfig, settings: kopf.OperatorSettings) -> None:
        self.config = config
        self.api = k8s.Api(settings, logger, retry_delay=config.retry_delay_s)
        self.sources: Sources | None = None
        self.sandboxes: dict[Key, dict[str, Any]] = {}  # trimmed Sandboxes, kept by the Sandbox event handler
        self.queue = WorkQueue(self.reconcile, RECONCILE_WORKERS)
        self.wakeups = Wakeups(self._wake)
        self._posted: dict[Key, tuple[dict[str, Any], float]] = {}
        self._written: dict[Key, dict[str, Any]] = {}
        self._org_ids: dict[str, tuple[str, float]] = {}
        self._org_fetches: dict[str, asyncio.Future[str]] = {}
        self._failures: dict[Key, int] = {}  # TemporaryErrors in a row, per Sandbox (backoff)

    # --- bookkeeping -----------------------------------------------------------------------------
    def forget(self, key: Key) -> None:
        """The Sandbox is gone: drop everything about it."""
        self.sandboxes.pop(key, None)
        self._posted.pop(key, None)
        self._written.pop(key, None)
        self._failures.pop(key, None)
        self.wakeups.cancel(key)

    def remember(self, key: Key, sandbox: dict[str, Any]) -> bool:
        """Keep the Sandbox's latest state; False when the change is only the echo of our own status write
        (nothing to reconcile: the spec and metadata are as before, the status is what we wrote)."""
        previous = self.sandboxes.get(key)
        self.sandboxes[key] = sandbox
        written = self._written.get(key)
        if (
            previous is not None
            and written is not None
            and sandbox["status"] == written
            and sandbox["spec"] == previous["spec"]
            and sandbox["metadata"] == previous["metadata"]
        ):
            del self._written[key]  # the watch caught up with our last write
            return False
        return True

    def pod_deleted(self, key: Key) -> None:
        self._posted.pop(key, None)

    async def _org_id(self, namespace: str) -> str:
        """The namespace's org-id label, else its name; one read per namespace per cache period, shared by
        every reconcile that needs it meanwhile (a burst of new Sandboxes costs one GET, not one each)."""
        cached = self._org_ids.get(namespace)
        if cached is not None and time.monotonic() - cached[1] < self.config.namespace_cache_s:
            return cached[0]
        fetching = self._org_fetches.get(namespace)
        if fetching is None:
            fetching = asyncio.ensure_future(self._fetch_org_id(namespace))
            self._org_fetches[namespace] = fetching
            fetching.add_done_callback(lambda _: self._org_fetches.pop(namespace, None))
        return await asyncio.shield(fetching)

    async def _fetch_org_id(self, namespace: str) -> str:
        labels = await self.api.namespace_labels(namespace)
        org = labels.get(contract.NAMESPACE_ORG_LABEL) or namespace
        self._org_ids[namespace] = (org, time.monotonic())
        return org

    # --- the reconcile --------------------------------------------------------------------------------
    def start(self) -> None:
        self.queue.start()
        self.wakeups.start()

    async def stop(self) -> None:
        await self.wakeups.stop()
        await self.queue.stop()

    async def _wake(self, key: Key) -> None:
        self.queue.add(key)

    async def reconcile(self, key: Key) -> None:
        """Bring one Sandbox's pod and status in line with the API's state (called by the queue's workers).

        kopf's error vocabulary, translated exactly: a ``kopf.PermanentError`` (a spec that can never work,
        a pod the API refuses as invalid) makes the Sandbox ``Failed`` with the error's message and is not
        retried; a ``kopf.TemporaryError`` (an API error that may recover) retries the reconcile after the
        error's delay, doubling on repeats (``retry_delay``). A retry recomputes everything from the latest
        state, so it never replays a stale request.
        """
        try:
            try:
                await self._reconcile(key)
            except kopf.PermanentError as exc:
                logger.warning("Sandbox %s/%s: %s (permanent: not retried)", *key, exc)
                await self._reconcile(key, permanent=exc)
        except kopf.TemporaryError as exc:
            attempt = self._failures.get(key, 0) + 1
            self._failures[key] = attempt
            delay = retry_delay(exc.delay, attempt)
            logger.warning("Sandbox %s/%s: %s; retry #%d in %gs", *key, exc, attempt, delay)
            self.wakeups.schedule(key, time.time() + delay)
        else:
            self._failures.pop(key, None)

    async def _reconcile(self, key: Key, permanent: kopf.PermanentError | None = None) -> None:
        if self.sources is None:
            return
        namespace, name = key
        sandbox = self.sources.sandbox(key)
        if sandbox is None:
            self.forget(key)
            return
        observed = owned_status(sandbox.get("status"))
        written = self._written.get(key)
        if written is not None:
            if written == observed:
                del self._written[key]  # the watch caught up with our last write
            else:
                sandbox = {**sandbox, "status": written}  # our write is newer than the index
                observed = written
        pod = self.sources.pod(key)
        posted = self._posted.get(key)
        if pod is not None:
            self._posted.pop(key, None)
        elif posted is not None and time.monotonic() - posted[1] < POSTED_TTL_S:
            pod = posted[0]  # created a moment ago; the watch has not shown it yet
        template_id = (sandbox.get("spec") or {}).get("template") or contract.DEFAULT_TEMPLATE_ID
        template = self.sources.template((namespace, str(template_id)))
        now = datetime.datetime.now(datetime.UTC)
        if permanent is None:
            decision = plan(sandbox, template, pod, now, self.config)
        else:
            decision = failed(sandbox, permanent, now, self.config)

        if decision.create_pod and decision.effective is not None:
            manifest = build_pod(
                owner=sandbox,
                effective=decision.effective,
                org_id=await self._org_id(namespace),
                config=self.config,
            )
            created = await self.api.create_pod(manifest)
            self._posted[key] = (manifest, time.monotonic())
            logger.debug(
                "Sandbox %s/%s: %s pod %s", namespace, name, "created" if created else "found", pod_name(name)
            )
        if decision.delete_pod and pod is not None:
            await self.api.delete_pod(namespace, str(pod["metadata"]["name"]))
            self._posted.pop(key, None)
            logger.info("Sandbox %s/%s expired: deleted its pod", namespace, name)
        if decision.delete_sandbox:
            if await self.api.delete_sandbox(namespace, name):
                logger.info("Sandbox %s/%s: deleted after its retention period", namespace, name)
            self.forget(key)
            return
        if decision.status is not None:
            patch = status_patch(observed, decision.status)
            if patch:
                if patch.get("reason"):
                    phase = decision.status.get("phase")
                    level = {
                        contract.PHASE_FAILED: logging.WARNING,
                        contract.PHASE_EXPIRED: logging.INFO,
                    }.get(str(phase), logging.DEBUG)
                    logger.log(
                        level,
                        "Sandbox %s/%s: %s (%s) %s",
                        namespace,
                        name,
                        decision.status.get("phase"),
                        decision.status.get("reason"),
                        decision.status.get("message"),
                    )
                if await self.api.patch_sandbox_status(namespace, name, patch):
                    self._written[key] = decision.status
        self.wakeups.schedule(key, decision.wake_at.timestamp() if decision.wake_at else None)


def first(values: Iterable[Mapping[str, Any]] | None, name: str | None = None) -> Mapping[str, Any] | None:
    """The value named ``name`` among an index store's values (any value when ``name`` is None)."""
    for value in values or ():
        if name is None or (value.get("metadata") or {}).get("name") == name:
            return value
    return None
