"""The export queue: export requests per signal, bounded in bytes (pure bookkeeping plus asyncio wake-ups).

Bytes stay counted until the exporter has finished with them (forwarded or dropped), so the bound covers what
is in flight too; the HTTP receiver reserves a request's bytes here while it receives and decodes it
(``reserve``/``release``), so the sidecar's memory for telemetry, queued, in flight or arriving, stays within
``capacity``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import TypeAlias

from leap0_contract import SIGNALS, Signal

Buffer: TypeAlias = bytes | bytearray | memoryview


class Pieces:
    """A request kept in the pieces whose concatenation it is (views of the bytes it was received in, and
    what the identity stamp rewrote): a large request is never copied whole to join them. ``len`` is its
    size in bytes."""

    __slots__ = ("nbytes", "parts")

    def __init__(self, parts: Sequence[Buffer]) -> None:
        self.parts = parts
        self.nbytes = sum(len(part) for part in parts)

    def __len__(self) -> int:
        return self.nbytes


# A queued export request: serialized bytes, or the pieces of a large one.
Request: TypeAlias = bytes | Pieces


def parts_of(requests: Sequence[Request]) -> list[Buffer]:
    """The pieces whose concatenation is ``requests`` concatenated (one request of their signal)."""
    out: list[Buffer] = []
    for request in requests:
        if isinstance(request, Pieces):
            out.extend(request.parts)
        else:
            out.append(request)
    return out


class ExportQueue:
    def __init__(self, capacity_bytes: int) -> None:
        self.capacity = capacity_bytes
        self.used = 0  # bytes queued or in flight
        self._items: dict[Signal, deque[Request]] = {signal: deque() for signal in SIGNALS}
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

    def reserve(self, nbytes: int) -> bool:
        """Count ``nbytes`` of a request being received; False (nothing counted) when they do not fit."""
        if self.used + nbytes > self.capacity:
            return False
        self.used += nbytes
        if self._empty is not None:
            self._empty.clear()
        return True

    def release(self, nbytes: int) -> None:
        """Bytes reserved earlier are no longer being received (queued with ``offer``, or given up)."""
        self.done(nbytes)

    def offer(self, signal: Signal, data: Request) -> bool:
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

    def take(self, signal: Signal, max_bytes: int) -> list[Request]:
        """Waiting requests of a signal, oldest first, up to ``max_bytes`` together (at least one if any)."""
        items = self._items[signal]
        batch: list[Request] = []
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
