"""The export queue: export requests per signal, bounded in bytes (pure bookkeeping plus asyncio wake-ups).

Bytes stay counted until the exporter has finished with them (forwarded or dropped), so the bound covers what
is in flight too: the sidecar's memory for telemetry never exceeds ``capacity`` plus one request being
received.
"""

from __future__ import annotations

import asyncio
from collections import deque

from leap0_contract import SIGNALS, Signal


class ExportQueue:
    def __init__(self, capacity_bytes: int) -> None:
        self.capacity = capacity_bytes
        self.used = 0  # bytes queued or in flight
        self._items: dict[Signal, deque[bytes]] = {signal: deque() for signal in SIGNALS}
        self._waiting_bytes: dict[Signal, int] = dict.fromkeys(SIGNALS, 0)
        self._wakeups: dict[Signal, asyncio.Event] = {}
        self._empty: asyncio.Event | None = None

    def _wakeup(self, signal: Signal) -> asyncio.Event:
        event = self._wakeups.get(signal)
        if event is None:
            event = self._wakeups[signal] = asyncio.Event()
        return event

    def count(self, signal: Signal | None = None) -> int:
        """Requests waiting (not counting those in flight)."""
        if signal is None:
            return sum(len(d) for d in self._items.values())
        return len(self._items[signal])

    def waiting_bytes(self, signal: Signal) -> int:
        """Bytes of a signal waiting (not in flight)."""
        return self._waiting_bytes[signal]

    def free(self) -> int:
        return self.capacity - self.used

    def offer(self, signal: Signal, data: bytes) -> bool:
        """Queue a request; False (and nothing queued) when it does not fit."""
        if self.used + len(data) > self.capacity:
            return False
        self.used += len(data)
        if self._empty is not None:
            self._empty.clear()
        self._items[signal].append(data)
        self._waiting_bytes[signal] += len(data)
        self._wakeup(signal).set()
        return True

    def take(self, signal: Signal, max_bytes: int) -> list[bytes]:
        """Waiting requests of a signal, oldest first, up to ``max_bytes`` together (at least one if any)."""
        items = self._items[signal]
        batch: list[bytes] = []
        size = 0
        while items and (not batch or size + len(items[0]) <= max_bytes):
            data = items.popleft()
            size += len(data)
            batch.append(data)
        self._waiting_bytes[signal] -= size
        if not items:
            self._wakeup(signal).clear()
        return batch

    def done(self, nbytes: int) -> None:
        """The exporter has finished with ``nbytes`` taken earlier (forwarded or dropped)."""
        self.used -= nbytes
        if self.used == 0 and self._empty is not None:
            self._empty.set()

    async def wait(self, signal: Signal) -> None:
        """Until the signal has a waiting request."""
        await self._wakeup(signal).wait()

    async def wait_empty(self, timeout_s: float) -> bool:
        """Until everything queued has been forwarded or dropped, or the timeout; True if empty."""
        if self.used == 0:
            return True
        if self._empty is None:
            self._empty = asyncio.Event()
        try:
            async with asyncio.timeout(timeout_s):
                await self._empty.wait()
        except TimeoutError:
            return False
        return True
