"""The sandbox container's cgroup: where it is (from ``/proc``) and what its files say (v2 and v1).

Pure parsers take file text and return numbers; the readers keep the few files they need open and re-read them
with one ``pread`` each per sample. Every path is taken under a root (``/`` in production), so fixture trees
exercise all of it.

File formats follow the kernel's documentation:
- v2 (``Documentation/admin-guide/cgroup-v2.rst``): ``cpu.max`` is ``"$MAX $PERIOD"`` with ``max`` for no
  limit; ``cpu.stat`` is a flat keyed file with ``usage_usec``; ``memory.max`` is bytes or ``max``;
  ``memory.current`` is bytes; ``memory.stat`` is a flat keyed file with ``inactive_file``.
- v1 (``Documentation/admin-guide/cgroup-v1/``): ``cpu.cfs_quota_us`` (``-1`` for no limit) and
  ``cpu.cfs_period_us``; ``cpuacct.usage`` in nanoseconds; ``memory.limit_in_bytes`` (a huge page-rounded
  value such as 9223372036854771712 for no limit); ``memory.usage_in_bytes``; ``memory.stat`` with the
  hierarchical ``total_inactive_file``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import leap0_contract as contract

# v1 reports "no memory limit" as PAGE_COUNTER_MAX * PAGE_SIZE (9223372036854771712 with 4 KiB pages);
# anything this large is no limit a container could have.
V1_UNLIMITED_THRESHOLD = 1 << 62
READ_SIZE = 64 * 1024
# Super options of a v1 cgroup mount that are not controller names (the ones with "=" are skipped as well).
V1_OPTIONS = frozenset({"rw", "ro", "xattr", "noprefix", "clone_children", "cpuset_v2_mode", "favordynmods"})


# --- pure parsers ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CgroupMount:
    """One cgroup filesystem mount from ``/proc/<pid>/mountinfo``."""

    mount_point: str
    root: str  # the cgroup path (within the hierarchy) this mount shows at its mount point
    version: int  # 1 or 2
    controllers: frozenset[str]  # v1 only: the controllers of the hierarchy (e.g. {"cpu", "cpuacct"})


def _unescape_mountinfo(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    if "\\" not in field:
        return field
    out: list[str] = []
    i = 0
    while i < len(field):
        octal = field[i + 1 : i + 4]
        if field[i] == "\\" and len(octal) == 3 and octal.isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class Mount:
    """One line of ``/proc/<pid>/mountinfo`` (the fields this package uses)."""

    mount_point: str
    root: str
    fstype: str
    super_options: tuple[str, ...]


def parse_mountinfo(text: str) -> list[Mount]:
    """All mounts in a ``mountinfo`` file (see ``proc(5)``); malformed lines are skipped."""
    mounts: list[Mount] = []
    for line in text.splitlines():
        fields = line.split()
        try:
            sep = fields.index("-", 6)
            mounts.append(
                Mount(
                    mount_point=_unescape_mountinfo(fields[4]),
                    root=_unescape_mountinfo(fields[3]),
                    fstype=fields[sep + 1],
                    super_options=tuple(fields[sep + 3].split(",")) if len(fields) > sep + 3 else (),
                )
            )
        except (ValueError, IndexError):
            continue
    return mounts


def cgroup_mounts(mounts: Iterable[Mount]) -> list[CgroupMount]:
    """The cgroup (v1) and cgroup2 mounts among ``mounts``."""
    found: list[CgroupMount] = []
    for mount in mounts:
        if mount.fstype == "cgroup2":
            found.append(CgroupMount(mount.mount_point, mount.root, 2, frozenset()))
        elif mount.fstype == "cgroup":
            controllers = frozenset(o for o in mount.super_options if o not in V1_OPTIONS and "=" not in o)
            found.append(CgroupMount(mount.mount_point, mount.root, 1, controllers))
    return found


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """``/proc/<pid>/cgroup`` as controller -> path; the v2 (unified) hierarchy's path is under key ``""``.

    v2 has one line ``0::/path``; v1 has one line per hierarchy, ``N:cpu,cpuacct:/path``.
    """
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            paths[""] = path
        else:
            for controller in controllers.split(","):
                if controller:
                    paths[controller] = path
    return paths


def _first_token(text: str) -> str:
    stripped = text.strip()
    if not stripped:
        raise ValueError("empty cgroup file")
    return stripped.split()[0]


def parse_cpu_max(text: str) -> float | None:
    """v2 ``cpu.max`` (``"max 100000"`` or ``"50000 100000"``) as CPUs, None when unlimited."""
    parts = text.split()
    if not parts:
        raise ValueError("empty cpu.max")
    if parts[0] == "max":
        return None
    period = int(parts[1]) if len(parts) > 1 else 100_000
    return int(parts[0]) / period if period > 0 else None


def parse_cfs_quota(quota_text: str, period_text: str) -> float | None:
    """v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` as CPUs, None when unlimited (quota -1)."""
    quota = int(_first_token(quota_text))
    period = int(_first_token(period_text))
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def parse_memory_max(text: str) -> int | None:
    """v2 ``memory.max`` as bytes, None for ``max``."""
    token = _first_token(text)
    return None if token == "max" else int(token)


def parse_v1_memory_limit(text: str) -> int | None:
    """v1 ``memory.limit_in_bytes`` as bytes, None for the "unlimited" values (-1 or near 2**63)."""
    value = int(_first_token(text))
    return None if value < 0 or value >= V1_UNLIMITED_THRESHOLD else value


def parse_int(text: str) -> int:
    """A single-value file (``memory.current``, ``cpuacct.usage``, ...)."""
    return int(_first_token(text))


def flat_keyed(text: str, key: str) -> int | None:
    """The value of ``key`` in a flat keyed file (``cpu.stat``, ``memory.stat``), None if absent."""
    prefix = key + " "
    for line in text.splitlines():
        if line.startswith(prefix):
            return int(line[len(prefix) :].strip())
    return None


def working_set(usage: int, inactive_file: int | None) -> int:
    """Memory in use the way the kubelet computes the working set: usage minus inactive file, at least 0."""
    return max(0, usage - (inactive_file or 0))


# --- readers --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CgroupReading:
    """One read of a cgroup: cumulative CPU, limits (None = unlimited) and the memory working set."""

    cpu_usage_ns: int
    cpu_limit: float | None
    memory_usage: int
    memory_limit: int | None


class CachedFile:
    """A file kept open and re-read from offset 0 with one ``pread`` (cgroup files regenerate on read)."""

    __slots__ = ("_fd", "path")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def read(self) -> str:
        return os.pread(self._fd, READ_SIZE, 0).decode("ascii", "replace")

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class CgroupV2Reader:
    """Reads a cgroup v2 directory (needs ``cpu.stat`` and ``memory.current``; ``cpu.max`` is optional)."""

    source = contract.SOURCE_CGROUP_V2

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._files: list[CachedFile] = []
        try:
            self._cpu_stat = self._open("cpu.stat")
            self._memory_current = self._open("memory.current")
            self._memory_stat = self._open("memory.stat")
            self._memory_max = self._open("memory.max")
            self._cpu_max = self._open("cpu.max") if (directory / "cpu.max").exists() else None
        except OSError:
            self.close()
            raise

    @property
    def key(self) -> tuple[str, ...]:
        """What this reader reads: equal keys read the same cgroup."""
        return (self.source, str(self.directory))

    @property
    def procs_path(self) -> Path:
        """The cgroup's ``cgroup.procs``: its processes, one pid a line."""
        return self.directory / "cgroup.procs"

    def _open(self, name: str) -> CachedFile:
        cached = CachedFile(self.directory / name)
        self._files.append(cached)
        return cached

    def read(self) -> CgroupReading:
        usage_usec = flat_keyed(self._cpu_stat.read(), "usage_usec")
        if usage_usec is None:
            raise ValueError(f"{self._cpu_stat.path}: no usage_usec line")
        usage = parse_int(self._memory_current.read())
        return CgroupReading(
            cpu_usage_ns=usage_usec * 1000,
            cpu_limit=parse_cpu_max(self._cpu_max.read()) if self._cpu_max is not None else None,
            memory_usage=working_set(usage, flat_keyed(self._memory_stat.read(), "inactive_file")),
            memory_limit=parse_memory_max(self._memory_max.read()),
        )

    def close(self) -> None:
        for cached in self._files:
            cached.close()
        self._files.clear()

    def __repr__(self) -> str:
        return f"CgroupV2Reader({str(self.directory)!r})"


class CgroupV1Reader:
    """Reads cgroup v1 directories: ``cpuacct`` and ``memory`` needed, ``cpu`` (the CFS quota) optional."""

    source = contract.SOURCE_CGROUP_V1

    def __init__(self, cpuacct_dir: Path, memory_dir: Path, cpu_dir: Path | None) -> None:
        self.cpuacct_dir, self.memory_dir, self.cpu_dir = cpuacct_dir, memory_dir, cpu_dir
        self._files: list[CachedFile] = []
        try:
            self._cpuacct_usage = self._open(cpuacct_dir / "cpuacct.usage")
            self._memory_usage = self._open(memory_dir / "memory.usage_in_bytes")
            self._memory_limit = self._open(memory_dir / "memory.limit_in_bytes")
            self._memory_stat = self._open(memory_dir / "memory.stat")
            self._quota: CachedFile | None = None
            self._period: CachedFile | None = None
            if cpu_dir is not None and (cpu_dir / "cpu.cfs_quota_us").exists():
                self._quota = self._open(cpu_dir / "cpu.cfs_quota_us")
                self._period = self._open(cpu_dir / "cpu.cfs_period_us")
        except OSError:
            self.close()
            raise

    @property
    def key(self) -> tuple[str, ...]:
        """What this reader reads: equal keys read the same cgroup."""
        return (self.source, str(self.cpuacct_dir), str(self.memory_dir), str(self.cpu_dir))

    @property
    def procs_path(self) -> Path:
        """The memory cgroup's ``cgroup.procs``: its processes, one pid a line."""
        return self.memory_dir / "cgroup.procs"

    def _open(self, path: Path) -> CachedFile:
        cached = CachedFile(path)
        self._files.append(cached)
        return cached

    def read(self) -> CgroupReading:
        cpu_limit = None
        if self._quota is not None and self._period is not None:
            cpu_limit = parse_cfs_quota(self._quota.read(), self._period.read())
        usage = parse_int(self._memory_usage.read())
        return CgroupReading(
            cpu_usage_ns=parse_int(self._cpuacct_usage.read()),
            cpu_limit=cpu_limit,
            memory_usage=working_set(usage, flat_keyed(self._memory_stat.read(), "total_inactive_file")),
            memory_limit=parse_v1_memory_limit(self._memory_limit.read()),
        )

    def close(self) -> None:
        for cached in self._files:
            cached.close()
        self._files.clear()

    def __repr__(self) -> str:
        return f"CgroupV1Reader({str(self.memory_dir)!r})"


CgroupReader = CgroupV2Reader | CgroupV1Reader


# --- discovery ------------------------------------------------------------------------------------------


def under(root: Path, absolute: str) -> Path:
    """``absolute`` (a path as the kernel reports it) taken under ``root``."""
    return root / absolute.lstrip("/")


def candidate_dirs(base: Path, cgroup_path: str, mounts: Iterable[CgroupMount]) -> list[Path]:
    """Directories showing the cgroup ``cgroup_path`` through ``mounts``, under ``base``.

    A mount shows the hierarchy from its ``root``, so the directory is the mount point plus the path below
    that root. A path with ``/..`` lies outside the cgroup namespace it was read in: not visible.
    """
    found: list[Path] = []
    if "/.." not in cgroup_path:
        for mount in mounts:
            mroot = mount.root.rstrip("/")
            if cgroup_path == mount.root or cgroup_path.startswith(mroot + "/"):
                found.append(under(base, mount.mount_point) / cgroup_path[len(mroot) :].lstrip("/"))
    return found


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


class _Discovery:
    """Where the cgroup of process ``pid`` can be read, best first:

    1. through our own cgroup mounts (``<root>/proc/self/mountinfo``);
    2. through the process's own view, ``<root>/proc/<pid>/root`` plus its mounts (``/proc/<pid>/mountinfo``);
       both need ptrace read access to the process. When the process is in a cgroup namespace of its own (its
       path reads ``/../...`` from ours), its cgroup is the root of its own cgroup2 mount. That guess is taken
       for v2 only, where a root cgroup would fail the probe (no ``memory.current``), never for v1.
    """

    def __init__(self, root: Path, pid: int) -> None:
        self.root = root
        self.pid = pid
        self.ours = cgroup_mounts(parse_mountinfo(_read_text(root / "proc" / "self" / "mountinfo") or ""))
        self.view = root / "proc" / str(pid) / "root"
        text = _read_text(root / "proc" / str(pid) / "mountinfo")
        self.theirs = cgroup_mounts(parse_mountinfo(text)) if text is not None else None

    def dirs(self, cgroup_path: str, version: int, controller: str = "") -> list[Path]:
        def relevant(mounts: Iterable[CgroupMount]) -> list[CgroupMount]:
            return [
                m for m in mounts if m.version == version and (version == 2 or controller in m.controllers)
            ]

        found = candidate_dirs(self.root, cgroup_path, relevant(self.ours))
        if self.theirs is not None:
            found += candidate_dirs(self.view, cgroup_path, relevant(self.theirs))
        if "/.." in cgroup_path and version == 2:
            mounts = relevant(self.theirs) if self.theirs is not None else []
            found += [under(self.view, m.mount_point) for m in mounts if m.root == "/"]
            found.append(self.view / "sys" / "fs" / "cgroup")
        return found


def _is_file(path: Path) -> bool:
    """``path`` is a file we may look at: a path through another process's ``/proc/<pid>/root`` we may not
    follow (its user differs and we lack CAP_SYS_PTRACE: the usual case of a non-root sidecar beside a root
    app) is no file, not an error."""
    try:
        return path.is_file()
    except OSError:
        return False


def open_v2(discovery: _Discovery, cgroup_path: str) -> CgroupV2Reader | None:
    for directory in discovery.dirs(cgroup_path, 2):
        if _is_file(directory / "memory.current") and _is_file(directory / "cpu.stat"):
            try:
                return CgroupV2Reader(directory)
            except OSError:
                continue
    return None


def _v1_dir(discovery: _Discovery, controller: str, paths: dict[str, str], probe: str) -> Path | None:
    path = paths.get(controller)
    if path is None:
        return None
    for directory in discovery.dirs(path, 1, controller):
        if _is_file(directory / probe):
            return directory
    return None


def open_v1(discovery: _Discovery, paths: dict[str, str]) -> CgroupV1Reader | None:
    cpuacct = _v1_dir(discovery, "cpuacct", paths, "cpuacct.usage")
    memory = _v1_dir(discovery, "memory", paths, "memory.usage_in_bytes")
    if cpuacct is None or memory is None:
        return None
    cpu = _v1_dir(discovery, "cpu", paths, "cpu.cfs_quota_us")
    try:
        return CgroupV1Reader(cpuacct, memory, cpu)
    except OSError:
        return None


def open_cgroup_of(root: Path, pid: int, versions: tuple[int, ...] = (2, 1)) -> CgroupReader | None:
    """A reader of process ``pid``'s cgroup (v2 preferred, v1 next), None when neither can be read.

    On a hybrid host the unified hierarchy exists without controllers (no ``memory.current``), so v1 is used.
    """
    text = _read_text(root / "proc" / str(pid) / "cgroup")
    if text is None:
        return None
    paths = parse_proc_cgroup(text)
    discovery = _Discovery(root, pid)
    if "" in paths and 2 in versions:
        reader = open_v2(discovery, paths[""])
        if reader is not None:
            return reader
    return open_v1(discovery, paths) if 1 in versions else None
