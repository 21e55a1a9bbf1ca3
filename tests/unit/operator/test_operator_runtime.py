"""The in-process machinery: the work queue coalesces and serialises per key; wake-ups fire at their time."""

from __future__ import annotations

import asyncio
import time

from leap0_operator.runtime import Key, OrgIds, Wakeups, WorkQueue, WriteTracker


async def test_queue_coalesces_a_burst_and_never_runs_a_key_twice_at_once() -> None:
    running: set[Key] = set()
    overlaps: list[Key] = []
    calls: list[Key] = []

    async def handler(key: Key) -> None:
        if key in running:
            overlaps.append(key)
        running.add(key)
        calls.append(key)
        await asyncio.sleep(0.01)
        running.discard(key)

    queue = WorkQueue(handler, workers=4)
    queue.start()
    for _ in range(10):
        queue.add(("ns", "a"))
    queue.add(("ns", "b"))
    await asyncio.sleep(0)  # workers pick up a and b
    queue.add(("ns", "a"))  # arrives while a is being reconciled: once more, afterwards
    await queue.join()
    await asyncio.sleep(0.05)
    await queue.join()
    await queue.stop()
    assert overlaps == []
    assert calls.count(("ns", "b")) == 1
    assert calls.count(("ns", "a")) == 2


async def test_a_failing_reconcile_does_not_stop_the_workers() -> None:
    seen: list[Key] = []

    async def handler(key: Key) -> None:
        seen.append(key)
        if key[1] == "bad":
            raise RuntimeError("boom")

    queue = WorkQueue(handler, workers=1)
    queue.start()
    queue.add(("ns", "bad"))
    queue.add(("ns", "good"))
    await queue.join()
    await queue.stop()
    assert seen == [("ns", "bad"), ("ns", "good")]


async def test_wakeups_fire_in_time_order_and_rescheduling_replaces() -> None:
    fired: list[tuple[Key, float]] = []
    last_fired = asyncio.Event()

    async def callback(key: Key) -> None:
        fired.append((key, time.time()))
        if key[1] == "late":
            last_fired.set()

    wakeups = Wakeups(callback)
    wakeups.start()
    now = time.time()
    wakeups.schedule(("ns", "late"), now + 0.15)
    wakeups.schedule(("ns", "early"), now + 0.05)
    wakeups.schedule(("ns", "moved"), now + 0.02)
    wakeups.schedule(("ns", "moved"), now + 0.10)  # postponed: fires once, at the new time
    wakeups.schedule(("ns", "cancelled"), now + 0.03)
    wakeups.cancel(("ns", "cancelled"))
    # (until the last one fired, however late a busy machine runs it: a wrong one would have fired before)
    await asyncio.wait_for(last_fired.wait(), 30)
    await wakeups.stop()
    assert [key[1] for key, _ in fired] == ["early", "moved", "late"]
    moved_at = next(at for key, at in fired if key[1] == "moved")
    assert moved_at >= now + 0.10


def test_the_write_tracker_plans_from_our_last_write_until_the_watch_shows_it() -> None:
    writes = WriteTracker()
    key = ("ns", "s")
    writes.status_written(key, {"phase": "Pending"})
    assert writes.status(key, {}) == {"phase": "Pending"}  # the watch lags: plan from what we wrote
    sandbox = {"metadata": {"name": "s"}, "spec": {}, "status": {"phase": "Pending"}}
    assert writes.is_echo(key, sandbox, sandbox)  # the echo of our write: nothing to reconcile
    assert writes.status(key, {"phase": "Running"}) == {"phase": "Running"}
    manifest = {"metadata": {"name": "s"}}
    writes.pod_posted(key, manifest)
    assert writes.pod(key, None) is manifest  # POSTed, not seen yet: not POSTed again
    writes.pod_gone(key)
    assert writes.pod(key, None) is None


async def test_org_ids_are_read_once_per_namespace_for_a_burst() -> None:
    reads: list[str] = []

    async def read_labels(namespace: str) -> dict[str, str]:
        reads.append(namespace)
        await asyncio.sleep(0.01)
        return {"leap0.dev/org-id": "acme"} if namespace == "a" else {}

    org_ids = OrgIds(read_labels, ttl_s=60)
    assert await asyncio.gather(*(org_ids.get("a") for _ in range(20))) == ["acme"] * 20
    assert await org_ids.get("b") == "b"
    assert reads == ["a", "b"]
