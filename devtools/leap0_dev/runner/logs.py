"""A container's output as the kubelet keeps it: each line with the time it was written, and the options of
``kubectl logs`` over it (``--tail``, ``--since``/``--since-time``, ``--timestamps``, ``--limit-bytes``;
``-f`` is the log handler's, reading on from :meth:`ContainerLog.size`).

The output goes to ``<pod dir>/<container>.log`` as it was written (restarts append), and the time of each
line's start is kept beside it in memory: the relay thread reading the container's stdout and stderr stamps
it, as a container runtime stamps CRI log lines. Option semantics are the kubelet's: the last ``tailLines``
lines first, then those at or after the ``since`` time, each with its RFC 3339 timestamp when asked, then at
most ``limitBytes`` bytes.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO


class LogQueryError(ValueError):
    """A ``kubectl logs`` option the kubelet would refuse; the message names it."""


@dataclass(frozen=True)
class LogQuery:
    tail_lines: int | None = None
    since: float | None = None  # unix time
    timestamps: bool = False
    limit_bytes: int | None = None
    follow: bool = False


def _bool(name: str, value: str) -> bool:
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0", ""):
        return False
    raise LogQueryError(f"{name}: expected true or false, got {value!r}")


def _int(name: str, value: str, minimum: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise LogQueryError(f"{name}: expected an integer, got {value!r}") from None
    if number < minimum:
        raise LogQueryError(f"{name}: must be at least {minimum}, got {number}")
    return number


def parse_query(query: Mapping[str, str], now: float) -> LogQuery:
    """The options of a pod ``log`` request (what kubectl sends for ``--tail``, ``--since`` ...)."""
    since: float | None = None
    if "sinceSeconds" in query and "sinceTime" in query:
        raise LogQueryError("at most one of sinceSeconds or sinceTime may be specified")
    if "sinceSeconds" in query:
        since = now - _int("sinceSeconds", query["sinceSeconds"], 1)
    elif "sinceTime" in query:
        try:
            since = datetime.fromisoformat(query["sinceTime"].replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise LogQueryError(f"sinceTime: expected an RFC 3339 time, got {query['sinceTime']!r}") from None
    return LogQuery(
        tail_lines=_int("tailLines", query["tailLines"], 0) if "tailLines" in query else None,
        since=since,
        timestamps=_bool("timestamps", query.get("timestamps", "")),
        limit_bytes=_int("limitBytes", query["limitBytes"], 1) if "limitBytes" in query else None,
        follow=_bool("follow", query.get("follow", "")),
    )


def rfc3339_nano(moment: float) -> str:
    """``2026-12-05T10:11:12.123456789Z``, as the kubelet prefixes lines with ``--timestamps``."""
    whole = datetime.fromtimestamp(int(moment), UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{round((moment % 1) * 1e9):09d}Z"


def render(lines: list[tuple[float, bytes]], query: LogQuery) -> bytes:
    """What the kubelet answers for these (time, line) pairs: the last ``tail_lines``, then those since
    ``since``, timestamped if asked, cut at ``limit_bytes``."""
    if query.tail_lines is not None:
        lines = lines[len(lines) - query.tail_lines :] if query.tail_lines else []
    if query.since is not None:
        lines = [(at, line) for at, line in lines if at >= query.since]
    out = b"".join(
        (rfc3339_nano(at).encode() + b" " + line) if query.timestamps else line for at, line in lines
    )
    return out[: query.limit_bytes] if query.limit_bytes is not None else out


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

    def lines(self, start: int = 0) -> list[tuple[float, bytes]]:
        """(time, line) of every line starting at byte ``start`` of the file or later (the last one may not
        be complete yet)."""
        with self._lock:
            first = bisect.bisect_left(self._starts, start)
            starts, times, size = self._starts[first:], self._times[first:], self._size
        if not starts:
            return []
        try:
            with open(self.path, "rb") as f:
                f.seek(starts[0])
                data = f.read(size - starts[0])
        except OSError:
            return []
        ends = [*starts[1:], size]
        return [
            (at, data[s - starts[0] : e - starts[0]]) for at, s, e in zip(times, starts, ends, strict=True)
        ]

    def size(self) -> int:
        with self._lock:
            return self._size
