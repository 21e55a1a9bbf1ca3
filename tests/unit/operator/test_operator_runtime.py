"""The in-process machinery: the work queue coalesces and serialises per key; wake-ups fire at their time."""

from __future__ import annotations

import asyncio
import time

from leap0_operator.runtime import Key, Wakeups, WorkQueue


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

    async def callback(key: Key) -> None:
        fired.append((key, time.time()))

    wakeups = Wakeups(callback)
    wakeups.start()
    now = time.time()
    wakeups.schedule(("ns", "late"), now + 0.15)
    wakeups.schedule(("ns", "early"), now + 0.05)
    wakeups.schedule(("ns", "moved"), now + 0.02)
    wakeups.schedule(("ns", "moved"), now + 0.10)  # postponed: fires once, at the new time
    wakeups.schedule(("ns", "cancelled"), now + 0.03)
    wakeups.cancel(("ns", "cancelled"))
    await asyncio.sleep(0.3)
    await wakeups.stop()
    assert [key[1] for key, _ in fired] == ["early", "moved", "late"]
    moved_at = next(at for key, at in fired if key[1] == "moved")
    assert moved_at >= now + 0.10
