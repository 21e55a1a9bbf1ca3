"""The operator's in-process machinery, each piece on its own: the work queue (one reconcile per Sandbox
at a time), the wake-ups (one timer task), the write tracker (our writes the watch has not shown yet) and the
org-id cache. The controller (``controller.py``) puts them together.

Nothing here is the source of truth: every decision is recomputed from what the API says, so killing the
operator loses nothing. What lives here only avoids needless calls: a pod just POSTed but not yet seen on the
watch is not POSTed again, a status just written but not yet seen is not written again, a namespace is read
once a minute, and one timer task wakes Sandboxes at their expiry (no periodic writes, no per-object timers).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

import leap0_contract as contract

from .objects import Key
from .reconcile import owned_status

logger = logging.getLogger("leap0_operator")

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

    def depth(self) -> int:
        """Keys waiting for a worker."""
        return self._queue.qsize()

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


class WriteTracker:
    """The operator's own writes that the watches have not shown yet, per Sandbox.

    A pod POSTed but not yet seen is trusted to exist for ``POSTED_TTL_S`` (not POSTed again); a status
    written but not yet seen is what the next plan starts from (not written again), and the watch event that
    merely echoes it is not reconciled. Losing all of this (a restart) costs at most a 409.
    """

    def __init__(self, posted_ttl_s: float = POSTED_TTL_S) -> None:
        self._posted_ttl_s = posted_ttl_s
        self._posted: dict[Key, tuple[Mapping[str, Any], float]] = {}
        self._written: dict[Key, dict[str, Any]] = {}

    def pod_posted(self, key: Key, manifest: Mapping[str, Any]) -> None:
        self._posted[key] = (manifest, time.monotonic())

    def pod_gone(self, key: Key) -> None:
        """The pod was deleted (by us, or seen deleted on the watch): trust nothing POSTed before."""
        self._posted.pop(key, None)

    def pod(self, key: Key, seen: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        """The pod to plan with: the one the watch shows, else the one just POSTed (not shown yet)."""
        if seen is not None:
            self._posted.pop(key, None)
            return seen
        posted = self._posted.get(key)
        if posted is not None and time.monotonic() - posted[1] < self._posted_ttl_s:
            return posted[0]
        return None

    def status_written(self, key: Key, status: dict[str, Any]) -> None:
        self._written[key] = status

    def status(self, key: Key, seen: Mapping[str, Any] | None) -> dict[str, Any]:
        """The owned status to plan from: our last write while the watch has not caught up, else ``seen``."""
        observed = owned_status(seen)
        written = self._written.get(key)
        if written is None:
            return observed
        if written == observed:
            del self._written[key]  # the watch caught up with our last write
            return observed
        return written

    def is_echo(self, key: Key, previous: Mapping[str, Any] | None, sandbox: Mapping[str, Any]) -> bool:
        """The Sandbox event only echoes our last status write (same spec and metadata as before but for the
        resourceVersion the write moved, the status we wrote): nothing to reconcile."""
        written = self._written.get(key)
        if (
            previous is not None
            and written is not None
            and sandbox["status"] == written
            and sandbox["spec"] == previous["spec"]
            and _without_version(sandbox["metadata"]) == _without_version(previous["metadata"])
        ):
            del self._written[key]  # the watch caught up with our last write
            return True
        return False

    def forget(self, key: Key) -> None:
        self._posted.pop(key, None)
        self._written.pop(key, None)


def _without_version(meta: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if k != "resourceVersion"}


class OrgIds:
    """A namespace's org id: its ``leap0.dev/org-id`` label, else its name. One read per namespace per
    ``ttl_s``, shared by every reconcile that needs it meanwhile (a burst of new Sandboxes costs one GET)."""

    def __init__(self, read_labels: Callable[[str], Awaitable[Mapping[str, str]]], ttl_s: float) -> None:
        self._read_labels = read_labels
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[str, float]] = {}
        self._fetches: dict[str, asyncio.Future[str]] = {}

    async def get(self, namespace: str) -> str:
        cached = self._cache.get(namespace)
        if cached is not None and time.monotonic() - cached[1] < self._ttl_s:
            return cached[0]
        fetching = self._fetches.get(namespace)
        if fetching is None:
            fetching = asyncio.ensure_future(self._fetch(namespace))
            self._fetches[namespace] = fetching
            fetching.add_done_callback(lambda _: self._fetches.pop(namespace, None))
        return await asyncio.shield(fetching)

    async def _fetch(self, namespace: str) -> str:
        labels = await self._read_labels(namespace)
        org = labels.get(contract.NAMESPACE_ORG_LABEL) or namespace
        self._cache[namespace] = (org, time.monotonic())
        return org
