"""The sandbox's seven gauges as one serialized OTLP ``ExportMetricsServiceRequest``.

``MetricsSampler(config).sample()`` reads the sandbox container's cgroup (v2, else v1), or, when it cannot be
read, sums over the sandbox's processes with psutil against the downward-API limits, plus the workspace's
disk use, and returns the protobuf bytes the pipeline enqueues like any ``/v1/metrics`` request. The messages
are built with ``opentelemetry-proto`` directly (the OTel SDK's metrics pipeline costs memory the sidecar's
budget has not got).

Arithmetic (pure functions below):
- CPU utilization = CPU time used since the previous sample / (wall time since then x limit CPUs) x 100,
  clamped to 0-100. The sampler takes a baseline reading when it is created, so the first sample has a
  value; after the source changes (re-discovery) the next sample has no baseline and omits this gauge.
- CPU limit = the cgroup's quota / period; unlimited -> the machine's CPUs.
- Memory usage = the working set as the kubelet computes it (usage minus inactive file, at least 0);
  limit = the cgroup's; unlimited -> the machine's memory. Utilization = usage / limit x 100 (not clamped).
- Filesystem: see ``filesystem.py``; the two filesystem gauges are omitted when no workspace is configured or
  no reading exists yet.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope

import leap0_contract as contract
from leap0_sidecar.cgroups import CgroupReader, CgroupReading, open_cgroup_of
from leap0_sidecar.config import ConfigError, SamplerConfig, load_sampler
from leap0_sidecar.filesystem import WorkspaceProbe
from leap0_sidecar.procs import PsutilSource, sandbox_pids

log = logging.getLogger(__name__)

# While on the psutil source, look for a readable cgroup again at most this often (the sandbox container
# starts after the native sidecar, so the first look may find no process).
REDISCOVER_SECONDS = 10.0


# --- pure arithmetic -------------------------------------------------------------------------------------


def cpu_utilization(cpu_delta_ns: int, interval_ns: int, limit_cpus: float) -> float:
    """CPU used over an interval as a percentage of the limit, clamped to 0-100."""
    if interval_ns <= 0 or limit_cpus <= 0:
        return 0.0
    return min(100.0, max(0.0, cpu_delta_ns / (interval_ns * limit_cpus) * 100.0))


def percent(usage: int, limit: int) -> float:
    """``usage`` as a percentage of ``limit`` (0 when the limit is unknown or zero)."""
    return usage / limit * 100.0 if limit > 0 else 0.0


def parse_cpu_list(text: str) -> int:
    """The number of CPUs in a kernel CPU list such as ``"0-3,6"``."""
    count = 0
    for part in text.strip().split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        count += int(last or first) - int(first) + 1
    return count


def machine_cpus(root: Path) -> int:
    """CPUs online (``<root>/sys/devices/system/cpu/online``), else ``os.cpu_count()``."""
    try:
        return max(1, parse_cpu_list((root / "sys/devices/system/cpu/online").read_text()))
    except (OSError, ValueError):
        return os.cpu_count() or 1


def machine_memory(root: Path) -> int:
    """Memory of the machine (``MemTotal`` of ``<root>/proc/meminfo``) in bytes, 0 if unknown."""
    try:
        for line in (root / "proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


@dataclass(frozen=True)
class SandboxReading:
    """One sample's numbers (None = not known in this sample, the gauge is omitted)."""

    source: str
    time_unix_nano: int
    interval_start_unix_nano: int | None
    cpu_utilization: float | None
    cpu_limit: float
    memory_usage: int
    memory_limit: int
    memory_utilization: float
    filesystem_usage: int | None = None
    filesystem_utilization: float | None = None


# --- encoding ---------------------------------------------------------------------------------------------


class GaugeEncoder:
    """Encodes readings as ``ExportMetricsServiceRequest`` bytes, reusing one request (resource and scope are
    built once; each call replaces the metrics), which costs a third of building the request afresh."""

    def __init__(self, attributes: Mapping[str, str]) -> None:
        self.attributes = dict(attributes)
        self._request = ExportMetricsServiceRequest()
        resource_metrics = self._request.resource_metrics.add()
        for key, value in self.attributes.items():
            resource_metrics.resource.attributes.add(key=key, value=AnyValue(string_value=value))
        scope_metrics = resource_metrics.scope_metrics.add(
            scope=InstrumentationScope(
                name=contract.SIDECAR_SCOPE_NAME, version=contract.SIDECAR_SCOPE_VERSION
            )
        )
        self._metrics = scope_metrics.metrics

    def encode(self, reading: SandboxReading) -> bytes:
        metrics = self._metrics
        del metrics[:]
        now = reading.time_unix_nano
        if reading.cpu_utilization is not None:
            metrics.add(
                name=contract.METRIC_CPU_UTILIZATION, unit=contract.UNIT_PERCENT
            ).gauge.data_points.add(
                start_time_unix_nano=reading.interval_start_unix_nano or 0,
                time_unix_nano=now,
                as_double=reading.cpu_utilization,
            )
        for name, unit, value in (
            (contract.METRIC_CPU_LIMIT, contract.UNIT_CPU, float(reading.cpu_limit)),
            (contract.METRIC_MEMORY_UTILIZATION, contract.UNIT_PERCENT, reading.memory_utilization),
        ):
            metrics.add(name=name, unit=unit).gauge.data_points.add(time_unix_nano=now, as_double=value)
        for name, unit, count in (
            (contract.METRIC_MEMORY_USAGE, contract.UNIT_BYTES, reading.memory_usage),
            (contract.METRIC_MEMORY_LIMIT, contract.UNIT_BYTES, reading.memory_limit),
        ):
            metrics.add(name=name, unit=unit).gauge.data_points.add(time_unix_nano=now, as_int=count)
        if reading.filesystem_utilization is not None and reading.filesystem_usage is not None:
            metrics.add(
                name=contract.METRIC_FILESYSTEM_UTILIZATION, unit=contract.UNIT_PERCENT
            ).gauge.data_points.add(time_unix_nano=now, as_double=reading.filesystem_utilization)
            metrics.add(
                name=contract.METRIC_FILESYSTEM_USAGE, unit=contract.UNIT_BYTES
            ).gauge.data_points.add(time_unix_nano=now, as_int=reading.filesystem_usage)
        return self._request.SerializeToString()


def encode(reading: SandboxReading, attributes: Mapping[str, str]) -> bytes:
    """The reading as a serialized ``ExportMetricsServiceRequest`` (one resource, one scope, gauges)."""
    return GaugeEncoder(attributes).encode(reading)


# --- the sampler ------------------------------------------------------------------------------------------

Source = CgroupReader | PsutilSource


class MetricsSampler:
    """Samples the sandbox container; see the module docstring. ``sample()`` is serialized by a lock, so it
    may be called from worker threads."""

    def __init__(self, config: SamplerConfig) -> None:
        self.config = config
        self._cpu_fallback = config.cpu_limit
        self._memory_fallback = config.memory_limit_bytes
        self._machine_cpus = machine_cpus(config.root)
        self._machine_memory = machine_memory(config.root)
        self._workspace = (
            WorkspaceProbe(config.workspace, config.disk_limit_bytes, config.root, config.walk_interval)
            if config.workspace is not None
            else None
        )
        self._lock = threading.Lock()  # sample() may be called from worker threads (asyncio.to_thread)
        self._source: Source | None = None
        self._encoder: GaugeEncoder | None = None
        self._source_pid: int | None = None
        self._logged_source: str | None = None
        self._next_discovery = 0.0
        self._previous: tuple[int, int, int] | None = None  # (cpu ns, monotonic ns, unix ns)
        self._discover()
        self._read_cpu_baseline()

    # -- source selection

    @property
    def source(self) -> str:
        """The source in use: ``cgroup-v2``, ``cgroup-v1`` or ``psutil``."""
        assert self._source is not None
        return self._source.source

    @property
    def workspace(self) -> WorkspaceProbe | None:
        return self._workspace

    def _find_pid(self) -> int | None:
        if self.config.sandbox_pid is not None:
            return self.config.sandbox_pid
        pids = sandbox_pids(self.config.root, os.getpid())
        return pids[0] if pids else None

    def _open_cgroup(self, pid: int | None) -> CgroupReader | None:
        forced = self.config.force_source
        if pid is None or forced == contract.SOURCE_PSUTIL:
            return None
        versions = {contract.SOURCE_CGROUP_V2: (2,), contract.SOURCE_CGROUP_V1: (1,)}.get(
            forced or "", (2, 1)
        )
        return open_cgroup_of(self.config.root, pid, versions)

    def _discover(self) -> None:
        self._next_discovery = time.monotonic() + REDISCOVER_SECONDS
        pid = self._find_pid()
        reader = self._open_cgroup(pid)
        source: Source = reader or PsutilSource(self.config.root, self.config.sandbox_pid)
        self._set_source(source, pid)

    def _set_source(self, source: Source, pid: int | None) -> None:
        same_cgroup = (
            self._source is not None and source.key is not None and source.key == self._source.key
        )  # e.g. the process we found it by exited but the container runs on: keep the CPU baseline
        if self._source is not None:
            self._source.close()
        self._source, self._source_pid = source, pid
        if not same_cgroup:
            self._previous = None
        if source.source != self._logged_source:
            self._logged_source = source.source
            log.info("sandbox metrics source: %s (%r, sandbox pid %s)", source.source, source, pid)

    def _read_cpu_baseline(self) -> None:
        try:
            self._reading()
        except (OSError, ValueError):
            self._previous = None

    def _maybe_rediscover(self) -> None:
        if isinstance(self._source, PsutilSource):
            if time.monotonic() >= self._next_discovery:
                pid = self._find_pid()
                reader = self._open_cgroup(pid)
                self._next_discovery = time.monotonic() + REDISCOVER_SECONDS
                if reader is not None:
                    self._set_source(reader, pid)
        elif self._source_pid is not None and not os.path.exists(
            self.config.root / "proc" / str(self._source_pid)
        ):
            self._discover()  # the process we found the cgroup by is gone (restart): look again

    # -- reading

    def _reading(self) -> SandboxReading:
        source = self._source
        assert source is not None
        raw = source.read()
        mono, now = time.monotonic_ns(), time.time_ns()
        if isinstance(raw, CgroupReading):  # the cgroup's own limits; unlimited -> the machine's
            cpu_limit = raw.cpu_limit or float(self._machine_cpus)
            memory_limit = raw.memory_limit or self._machine_memory
        else:  # psutil: the downward-API limits, else the machine's
            cpu_limit = self._cpu_fallback or float(self._machine_cpus)
            memory_limit = self._memory_fallback or self._machine_memory
        utilization: float | None = None
        start: int | None = None
        if self._previous is not None:
            previous_cpu, previous_mono, start = self._previous
            utilization = cpu_utilization(raw.cpu_usage_ns - previous_cpu, mono - previous_mono, cpu_limit)
        self._previous = (raw.cpu_usage_ns, mono, now)
        fs_usage: int | None = None
        fs_utilization: float | None = None
        if self._workspace is not None:
            fs = self._workspace.read()
            if fs is not None:
                fs_usage, fs_utilization = fs.usage, percent(fs.usage, fs.limit)
        return SandboxReading(
            source=source.source,
            time_unix_nano=now,
            interval_start_unix_nano=start,
            cpu_utilization=utilization,
            cpu_limit=cpu_limit,
            memory_usage=raw.memory_usage,
            memory_limit=memory_limit,
            memory_utilization=percent(raw.memory_usage, memory_limit),
            filesystem_usage=fs_usage,
            filesystem_utilization=fs_utilization,
        )

    def read(self) -> SandboxReading:
        """One sample's numbers (what ``sample`` encodes). Never raises for a vanished or unreadable cgroup:
        it looks for the cgroup again, and falls back to psutil for this sample if that fails too."""
        self._maybe_rediscover()
        try:
            return self._reading()
        except (OSError, ValueError) as error:
            log.warning("sandbox metrics: %r failed (%s); looking for the cgroup again", self._source, error)
        self._discover()
        try:
            return self._reading()
        except (OSError, ValueError) as error:
            log.warning("sandbox metrics: %r failed too (%s); using psutil", self._source, error)
        self._set_source(PsutilSource(self.config.root, self.config.sandbox_pid), self.config.sandbox_pid)
        return self._reading()

    def app_running(self) -> bool:
        """Whether the sandbox has a process now. A sample taken once its last process has ended measures
        nothing (its cgroup is gone: no CPU interval, memory 0 from the fallback), so the sidecar's last
        sample, at shutdown, is taken only while this holds."""
        with self._lock:
            source = self._source
            if isinstance(source, PsutilSource):
                return bool(source.pids())
            if source is None:
                return False
            try:
                return bool(source.procs_path.read_text().strip())
            except OSError:  # the cgroup is gone with the container
                return False

    def resource_attributes(self) -> dict[str, str]:
        attributes = {contract.ATTR_K8S_CONTAINER: self.config.sandbox_container}
        attributes.update(self.config.resource_attributes)
        attributes[contract.ATTR_METRICS_SOURCE] = self.source
        return attributes

    def sample(self) -> bytes:
        """A serialized OTLP ``ExportMetricsServiceRequest`` with the sandbox's gauges."""
        with self._lock:
            reading = self.read()
            if (
                self._encoder is None
                or self._encoder.attributes[contract.ATTR_METRICS_SOURCE] != reading.source
            ):
                self._encoder = GaugeEncoder(self.resource_attributes())
            return self._encoder.encode(reading)

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
        if self._workspace is not None:
            self._workspace.close()


# --- a look from the command line ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m leap0_sidecar.sandbox_metrics [--count N] [--interval S]``: print samples as OTLP/JSON.

    Configured from the environment like the sidecar (``LEAP0_SANDBOX_PID`` points it at a process on a
    developer's machine). Exit status 2 with the reason for a bad configuration.
    """
    import argparse
    import sys

    from google.protobuf.json_format import MessageToJson

    parser = argparse.ArgumentParser(prog="python -m leap0_sidecar.sandbox_metrics", description=main.__doc__)
    parser.add_argument("--count", type=int, default=1, help="samples to print (default 1)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between samples (default 1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        config = load_sampler(os.environ)
    except ConfigError as error:
        print(f"leap0_sidecar.sandbox_metrics: configuration error: {error}", file=sys.stderr)
        return 2
    sampler = MetricsSampler(config)
    try:
        for index in range(args.count):
            if index:
                time.sleep(args.interval)
            request = ExportMetricsServiceRequest.FromString(sampler.sample())
            print(MessageToJson(request, indent=None), flush=True)
    finally:
        sampler.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
