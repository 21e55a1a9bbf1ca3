"""A container's output as the kubelet keeps it, and ``kubectl logs`` over it: one implementation for the
kubelet endpoint (``--control-plane real``) and the embedded API server's log hook (``leap0 dev up``).

The output goes to ``<pod dir>/<container>.log`` as it was written (restarts append), and the time each line
started is kept beside it in memory: the relay thread reading the container's stdout and stderr stamps it, as
a container runtime stamps CRI log lines. The options are the kubelet's (``nodespec.LogQuery``), in its
order: the last ``tailLines`` lines, of those the ones started at or after ``since`` (``--since``,
``--since-time``), each after its RFC 3339 time with ``timestamps``, at most ``limitBytes`` bytes; with
``follow``, what the container writes next too, until it stops or its pod goes. The file is streamed a block
at a time, so memory stays one block whatever is asked.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING

from leap0_dev import nodespec

if TYPE_CHECKING:
    from aiohttp import web

    from .processes import Container

BLOCK = 64 * 1024
FOLLOW_POLL_S = 0.25


def rfc3339_nano(moment: float) -> str:
    """``2026-12-05T10:11:12.123456789Z``, as the kubelet prefixes lines with ``--timestamps``."""
    whole = datetime.fromtimestamp(int(moment), UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{round((moment % 1) * 1e9):09d}Z"


def stamped(block: bytes, position: int, starts: list[tuple[int, float]]) -> bytes:
    """``block`` (the file's bytes from offset ``position``) with each line that starts in it (``starts``:
    offset and time) after its RFC 3339 time and a space."""
    pieces: list[bytes] = []
    cut = 0
    for offset, moment in starts:
        index = offset - position
        pieces += [block[cut:index], rfc3339_nano(moment).encode(), b" "]
        cut = index
    pieces.append(block[cut:])
    return b"".join(pieces)


def tail_start(path: Path, lines: int) -> int:
    """The offset where the last ``lines`` lines of the file start, reading it backwards a block at a time."""
    with open(path, "rb") as file:
        size = file.seek(0, 2)
        position = size
        needed = lines
        while position > 0:
            read = min(BLOCK, position)
            position -= read
            file.seek(position)
            found, index = nodespec.line_starts_back(file.read(read), needed, position + read == size)
            if index is not None:
                return position + index
            needed -= found
        return 0


class ContainerLog:
    """A container's output file and the time each of its lines started (every run of the container)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._starts: list[int] = []  # byte offset of each line in the file
        self._times: list[float] = []
        self._size = path.stat().st_size if path.exists() else 0  # (lines from before are not indexed)
        self._lock = threading.Lock()
        self._relays: list[threading.Thread] = []

    def relay(self, stream: IO[bytes], name: str) -> None:
        """Copy ``stream`` (a run's stdout and stderr) to the file in a thread, stamping each line."""
        thread = threading.Thread(target=self._copy, args=(stream,), name=f"log-{name}", daemon=True)
        self._relays.append(thread)
        thread.start()

    def _copy(self, stream: IO[bytes]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        read = getattr(stream, "read1", stream.read)  # what is there now, a partial line too
        at_line_start = True
        with stream, open(self.path, "ab") as out:
            while chunk := read(65536):
                now = time.time()
                with self._lock:
                    out.write(chunk)
                    out.flush()
                    pos = 0
                    while pos < len(chunk):
                        if at_line_start:
                            self._starts.append(self._size + pos)
                            self._times.append(now)
                        newline = chunk.find(b"\n", pos)
                        at_line_start = newline != -1
                        if newline == -1:
                            break
                        pos = newline + 1
                    self._size += len(chunk)

    def drained(self) -> bool:
        """True once every run's output has been copied (its writers have all closed it)."""
        return not any(thread.is_alive() for thread in self._relays)

    def size(self) -> int:
        with self._lock:
            return self._size

    def offset_since(self, moment: float) -> int:
        """Where the first line started at or after ``moment`` starts (the end when none did)."""
        with self._lock:
            index = bisect.bisect_left(self._times, moment)  # (times only grow)
            return self._starts[index] if index < len(self._starts) else self._size

    def starts_between(self, start: int, end: int) -> list[tuple[int, float]]:
        """(offset, time) of the lines starting in ``[start, end)``."""
        with self._lock:
            first = bisect.bisect_left(self._starts, start)
            last = bisect.bisect_left(self._starts, end)
            return list(zip(self._starts[first:last], self._times[first:last], strict=True))


def _status(message: str, code: int) -> web.Response:
    from aiohttp import web

    body = json.dumps(nodespec.log_status_error(message, code))
    return web.Response(status=code, text=body, content_type="application/json")


async def serve(
    request: web.Request, container: Container, pod: str, pod_present: Callable[[], bool]
) -> web.StreamResponse:
    """Answer a ``containerLogs`` (or pod ``log``) request for ``container`` of pod ``pod``; ``pod_present``
    says whether the pod still runs here (a follow ends when it goes)."""
    from aiohttp import web

    try:
        query = nodespec.parse_log_query(request.query, time.time())
    except ValueError as exc:
        return _status(str(exc), 400)
    name = container.spec["name"]
    if query.previous and container.state.restart_count == 0:
        return _status(f'previous terminated container "{name}" in pod "{pod}" not found', 400)
    output = container.output
    start = 0
    if query.tail_lines is not None and output.path.exists():
        start = await asyncio.to_thread(tail_start, output.path, query.tail_lines)
    if query.since is not None:
        start = max(start, output.offset_since(query.since))
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await response.prepare(request)
    if not output.path.exists():  # spawning a container creates its log: nothing was written yet
        await response.write_eof()
        return response
    file = await asyncio.to_thread(open, output.path, "rb")
    try:
        file.seek(start)
        await _stream(response, file, start, query, container, pod_present)
    except ConnectionError:
        return response  # the client went away
    finally:
        file.close()
    await response.write_eof()
    return response


async def _stream(
    response: web.StreamResponse,
    file: IO[bytes],
    position: int,
    query: nodespec.LogQuery,
    container: Container,
    pod_present: Callable[[], bool],
) -> None:
    """Copy the file from ``position`` (stamped with ``timestamps``), at most ``limitBytes``; with ``follow``,
    what the container writes next too, until it stops (or its pod goes)."""
    budget = query.limit_bytes
    stopped_reads = 0
    while budget is None or budget > 0:
        data = await asyncio.to_thread(file.read, BLOCK)
        if data:
            end = position + len(data)
            if query.timestamps:
                data = stamped(data, position, container.output.starts_between(position, end))
            position = end
            chunk = data if budget is None else data[:budget]
            await response.write(chunk)
            budget = None if budget is None else budget - len(chunk)
            continue
        if not query.follow or not pod_present():
            return
        if container.process is None and container.output.drained():
            stopped_reads += 1  # it stopped and its output is all in: one more read takes what it wrote last
            if stopped_reads > 1:
                return
            continue
        await asyncio.sleep(FOLLOW_POLL_S)
