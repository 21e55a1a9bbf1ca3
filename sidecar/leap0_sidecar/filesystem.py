"""Disk use of the sandbox's workspace volume, cheaply.

- **statvfs** when it is exact: the workspace is a mount point of a whole filesystem (its ``mountinfo``
  entry has root ``/``), e.g. a tmpfs ``emptyDir`` (medium Memory) or a dedicated volume. Usage is
  ``(f_blocks - f_bfree) * f_frsize``; one syscall per sample.
- **a bounded, cached walk** otherwise (a disk-backed ``emptyDir`` is a bind mount of a directory of the
  node's disk, so statvfs would report the whole node disk). A background thread sums the allocated size
  (``st_blocks * 512``, as ``du`` and the kubelet do; hard links once; without crossing into other
  filesystems) every ``walk_interval`` seconds, stopping at ``max_entries`` entries or ``max_seconds``
  seconds. Samples read the last result and never wait for a walk; until the first walk ends there is no
  filesystem reading. A walk that hits a cap reports what it counted (a lower bound) and logs it once.

The limit is the sandbox's disk limit when known, else the capacity of the filesystem holding the workspace.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from leap0_sidecar.cgroups import Mount, parse_mountinfo
from leap0_sidecar.config import DEFAULT_WALK_INTERVAL_S

log = logging.getLogger(__name__)

DEFAULT_MAX_ENTRIES = 200_000
DEFAULT_MAX_SECONDS = 2.0


@dataclass(frozen=True)
class FilesystemReading:
    usage: int
    limit: int


@dataclass(frozen=True)
class WalkResult:
    usage: int
    entries: int
    complete: bool  # False when a cap stopped the walk (usage is then a lower bound)
    seconds: float


def statvfs_is_exact(mounts: Iterable[Mount], workspace: str) -> bool:
    """True when ``workspace`` is the mount point of a whole filesystem (so statvfs measures exactly it)."""
    exact = False
    for mount in mounts:  # later mounts over the same point hide earlier ones
        if mount.mount_point == workspace:
            exact = mount.root == "/"
    return exact


def walk_usage(
    top: Path, max_entries: int, max_seconds: float, stop: threading.Event | None = None
) -> WalkResult:
    """Allocated bytes under ``top`` (like ``du -sx``), within the entry and time caps, until ``stop``."""
    started = time.monotonic()
    deadline = started + max_seconds
    try:
        top_stat = os.lstat(top)
    except OSError:
        return WalkResult(0, 0, True, 0.0)
    device = top_stat.st_dev
    usage = top_stat.st_blocks * 512
    entries = 1
    seen_links: set[int] = set()
    stack = [str(top)]
    complete = True
    while stack:
        directory = stack.pop()
        try:
            iterator = os.scandir(directory)
        except OSError:
            continue
        with iterator:
            for entry in iterator:
                entries += 1
                if entries > max_entries or (
                    entries & 0x3FF == 0
                    and (time.monotonic() > deadline or (stop is not None and stop.is_set()))
                ):
                    complete = False
                    break
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if info.st_dev != device:
                    continue
                if info.st_nlink > 1 and not stat.S_ISDIR(info.st_mode):
                    if info.st_ino in seen_links:
                        continue
                    seen_links.add(info.st_ino)
                usage += info.st_blocks * 512
                if stat.S_ISDIR(info.st_mode):
                    stack.append(entry.path)
        if not complete:
            break
    return WalkResult(usage, min(entries, max_entries), complete, time.monotonic() - started)


class WorkspaceProbe:
    """Usage of the workspace against its limit; see the module docstring for how."""

    def __init__(
        self,
        workspace: Path,
        limit_bytes: int | None = None,
        root: Path = Path("/"),
        walk_interval: float = DEFAULT_WALK_INTERVAL_S,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_seconds: float = DEFAULT_MAX_SECONDS,
    ) -> None:
        self.workspace = workspace
        self.limit_bytes = limit_bytes
        self.walk_interval = walk_interval
        self.max_entries = max_entries
        self.max_seconds = max_seconds
        try:
            mountinfo = (root / "proc" / "self" / "mountinfo").read_text()
        except OSError:
            mountinfo = ""
        self.exact = statvfs_is_exact(parse_mountinfo(mountinfo), os.path.realpath(workspace))
        self.mode = "statvfs" if self.exact else "walk"
        self._walk: WalkResult | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._warned = False
        self._thread: threading.Thread | None = None
        if not self.exact:
            self._thread = threading.Thread(target=self._walk_loop, name="leap0-workspace-walk", daemon=True)
            self._thread.start()
        log.info("workspace %s: disk usage by %s", workspace, self.mode)

    def _capacity(self) -> int | None:
        try:
            st = os.statvfs(self.workspace)
        except OSError:
            return None
        return st.f_blocks * st.f_frsize

    def walk_now(self) -> WalkResult:
        """One walk, published for the following samples."""
        result = walk_usage(self.workspace, self.max_entries, self.max_seconds, self._stop)
        if not result.complete and not self._warned:
            self._warned = True
            log.warning(
                "workspace %s: walk stopped after %d entries / %.1f s; filesystem usage is a lower bound",
                self.workspace,
                result.entries,
                result.seconds,
            )
        self._walk = result
        self._ready.set()
        return result

    def _walk_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.walk_now()
            except Exception:  # a walk must never kill the thread; the next one retries
                log.exception("workspace %s: walk failed", self.workspace)
            self._stop.wait(self.walk_interval)

    def wait_ready(self, timeout: float) -> bool:
        """Wait until a reading exists (immediately true with statvfs)."""
        return self.exact or self._ready.wait(timeout)

    def read(self) -> FilesystemReading | None:
        """The latest usage and the limit, None while none is known (first walk running, workspace
        missing)."""
        if self.exact:
            try:
                st = os.statvfs(self.workspace)
            except OSError:
                return None
            capacity = st.f_blocks * st.f_frsize
            return FilesystemReading((st.f_blocks - st.f_bfree) * st.f_frsize, self.limit_bytes or capacity)
        walk = self._walk
        if walk is None:
            return None
        limit = self.limit_bytes or self._capacity()
        if limit is None:
            return None
        return FilesystemReading(walk.usage, limit)

    def close(self) -> None:
        """Stop the walk thread (a running walk stops within about 1,000 entries)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
