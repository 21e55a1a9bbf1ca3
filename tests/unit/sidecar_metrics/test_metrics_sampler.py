"""MetricsSampler against fixture trees: decode its OTLP bytes and check what a backend would see."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from sidecar_metrics_fixtures import (
    GIB,
    MIB,
    SANDBOX_CGROUP,
    V1_UNLIMITED,
    process,
    set_v2_usage,
    v1_pod,
    v2_cgroup,
    v2_pod,
    write,
)
from support import subprocess_env

import leap0_contract as contract
from leap0_sidecar import sandbox_metrics as metrics
from leap0_sidecar.config import ConfigError, SamplerConfig, load, load_sampler
from leap0_sidecar.sandbox_metrics import MetricsSampler

IDENTITY = {"leap0.sandbox.id": "sbx-1", "leap0.org.id": "acme", "leap0.template.id": "default"}


def decode(data: bytes) -> tuple[dict[str, str], dict[str, Metric], ExportMetricsServiceRequest]:
    request = ExportMetricsServiceRequest.FromString(data)
    (resource_metrics,) = request.resource_metrics
    attributes = {kv.key: kv.value.string_value for kv in resource_metrics.resource.attributes}
    (scope_metrics,) = resource_metrics.scope_metrics
    assert scope_metrics.scope.name == "leap0-sidecar"
    assert scope_metrics.scope.version
    return attributes, {m.name: m for m in scope_metrics.metrics}, request


def value(metric: Metric) -> float:
    (point,) = metric.gauge.data_points
    assert point.time_unix_nano > 0
    return point.as_double if point.WhichOneof("value") == "as_double" else point.as_int


# --- pure arithmetic and configuration --------------------------------------------------------------------


def test_cpu_utilization_arithmetic() -> None:
    # 0.25 CPU-s over 1 s against a 0.5 CPU limit: 50 %
    assert metrics.cpu_utilization(250_000_000, 1_000_000_000, 0.5) == pytest.approx(50.0)
    assert metrics.cpu_utilization(2_000_000_000, 1_000_000_000, 0.5) == 100.0  # clamped
    assert metrics.cpu_utilization(-5, 1_000_000_000, 1.0) == 0.0
    assert metrics.cpu_utilization(5, 0, 1.0) == 0.0
    assert metrics.percent(256 * MIB, 1024 * MIB) == 25.0
    assert metrics.percent(5, 0) == 0.0


def test_cpu_list() -> None:
    assert metrics.parse_cpu_list("0-3\n") == 4
    assert metrics.parse_cpu_list("0,2-3,8") == 4
    assert metrics.parse_cpu_list("0") == 1


def test_load_sampler() -> None:
    config = load_sampler(
        {
            "LEAP0_SANDBOX_ID": "sbx-1",
            "LEAP0_ORG_ID": "acme",
            "LEAP0_TEMPLATE_ID": "default",
            "LEAP0_K8S_POD_NAME": "sbx-1-pod",
            "LEAP0_K8S_NAMESPACE": "team-a",
            "LEAP0_SANDBOX_CPU_LIMIT_MILLICORES": "1500",
            "LEAP0_SANDBOX_MEMORY_LIMIT_BYTES": str(2 * GIB),
            "LEAP0_SANDBOX_DISK_LIMIT_BYTES": str(10 * GIB),
            "LEAP0_WORKSPACE": "/workspace",
            "LEAP0_METRICS_ROOT": "/host",
            "UNRELATED": "x",
        }
    )
    assert config.resource_attributes == {
        **IDENTITY,
        "k8s.pod.name": "sbx-1-pod",
        "k8s.namespace.name": "team-a",
    }
    assert (config.cpu_limit, config.memory_limit_bytes) == (1.5, 2 * GIB)
    assert config.disk_limit_bytes == 10 * GIB
    assert config.workspace == Path("/workspace")
    assert config.root == Path("/host")
    assert config.sandbox_container == "sandbox"
    empty = load_sampler({"LEAP0_SANDBOX_CPU_LIMIT_MILLICORES": ""})
    assert empty == SamplerConfig()


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("LEAP0_SANDBOX_CPU_LIMIT_MILLICORES", "1.5"),
        ("LEAP0_SANDBOX_CPU_LIMIT_MILLICORES", "0"),
        ("LEAP0_SANDBOX_MEMORY_LIMIT_BYTES", "1Gi"),
        ("LEAP0_SANDBOX_DISK_LIMIT_BYTES", "-1"),
        ("LEAP0_SANDBOX_PID", "self"),
        ("LEAP0_METRICS_SOURCE", "cgroup-v3"),
    ],
)
def test_bad_sampler_values_are_configuration_errors_naming_them(name: str, bad: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_sampler({name: bad})
    # The sidecar's one configuration path reports them the same way.
    identity = {"LEAP0_SANDBOX_ID": "s", "LEAP0_ORG_ID": "o", "LEAP0_TEMPLATE_ID": "t"}
    with pytest.raises(ConfigError, match=name):
        load({**identity, name: bad})


def test_the_sidecars_config_carries_the_sampler_config() -> None:
    config = load(
        {
            "LEAP0_SANDBOX_ID": "sbx-1",
            "LEAP0_ORG_ID": "acme",
            "LEAP0_TEMPLATE_ID": "default",
            "LEAP0_SANDBOX_MEMORY_LIMIT_BYTES": str(GIB),
        }
    )
    assert config.sampler.resource_attributes == IDENTITY
    assert config.sampler.memory_limit_bytes == GIB


# --- the sampler on fixture trees ------------------------------------------------------------------------


def test_v2_sample(tmp_path: Path) -> None:
    directory = v2_pod(
        tmp_path,
        cpu_max="50000 100000",
        usage_usec=10_000_000,
        memory_max=str(1 * GIB),
        memory_current=300 * MIB,
        inactive_file=44 * MIB,
    )
    sampler = MetricsSampler(SamplerConfig(root=tmp_path, resource_attributes=dict(IDENTITY)))
    assert sampler.source == "cgroup-v2"
    before_first = time.monotonic_ns()
    attributes, gauges, _ = decode(sampler.sample())
    after_first = time.monotonic_ns()
    assert attributes == {**IDENTITY, "k8s.container.name": "sandbox", "leap0.metrics.source": "cgroup-v2"}
    assert list(gauges) == list(contract.SANDBOX_METRICS)[:5]  # no workspace configured: no filesystem gauges
    assert {n: m.unit for n, m in gauges.items()} == {n: contract.SANDBOX_METRICS[n] for n in gauges}
    assert value(gauges["leap0.sandbox.cpu.utilization"]) == 0.0  # no CPU used since the baseline
    assert value(gauges["leap0.sandbox.cpu.limit"]) == 0.5
    assert gauges["leap0.sandbox.cpu.limit"].gauge.data_points[0].WhichOneof("value") == "as_double"
    assert value(gauges["leap0.sandbox.memory.usage"]) == 256 * MIB
    assert gauges["leap0.sandbox.memory.usage"].gauge.data_points[0].WhichOneof("value") == "as_int"
    assert value(gauges["leap0.sandbox.memory.limit"]) == 1 * GIB
    assert value(gauges["leap0.sandbox.memory.utilization"]) == 25.0

    # 0.05 CPU-s used over at least 0.2 s of wall time against 0.5 CPU: at most 50 %
    time.sleep(0.2)
    set_v2_usage(directory, 10_050_000)
    before_second = time.monotonic_ns()
    _, gauges, _ = decode(sampler.sample())
    after_second = time.monotonic_ns()
    shortest, longest = before_second - after_first, after_second - before_first
    utilization = value(gauges["leap0.sandbox.cpu.utilization"])
    assert 0.05e9 / (longest * 0.5) * 100 <= utilization <= 0.05e9 / (shortest * 0.5) * 100
    point = gauges["leap0.sandbox.cpu.utilization"].gauge.data_points[0]
    assert 0 < point.start_time_unix_nano < point.time_unix_nano  # the interval the value covers

    set_v2_usage(directory, 60_000_000)  # 50 CPU-s in an instant: clamped
    _, gauges, _ = decode(sampler.sample())
    assert value(gauges["leap0.sandbox.cpu.utilization"]) == 100.0
    sampler.close()


def test_unlimited_means_the_machine(tmp_path: Path) -> None:
    v2_pod(tmp_path, cpu_max="max 100000", memory_max="max", memory_current=4 * GIB)
    sampler = MetricsSampler(SamplerConfig(root=tmp_path))
    _, gauges, _ = decode(sampler.sample())
    assert value(gauges["leap0.sandbox.cpu.limit"]) == 4.0  # the fixture machine: CPUs 0-3
    assert value(gauges["leap0.sandbox.memory.limit"]) == 16 * GIB  # MemTotal
    assert value(gauges["leap0.sandbox.memory.utilization"]) == 25.0
    sampler.close()


def test_v1_sample(tmp_path: Path) -> None:
    v1_pod(tmp_path, usage=200 * MIB, total_inactive_file=72 * MIB)
    sampler = MetricsSampler(SamplerConfig(root=tmp_path))
    attributes, gauges, _ = decode(sampler.sample())
    assert sampler.source == attributes["leap0.metrics.source"] == "cgroup-v1"
    assert value(gauges["leap0.sandbox.cpu.limit"]) == 0.5
    assert value(gauges["leap0.sandbox.memory.limit"]) == 256 * MIB
    assert value(gauges["leap0.sandbox.memory.usage"]) == 128 * MIB
    assert value(gauges["leap0.sandbox.memory.utilization"]) == 50.0
    sampler.close()


def test_v1_unlimited(tmp_path: Path) -> None:
    v1_pod(tmp_path, quota=-1, limit=V1_UNLIMITED)
    sampler = MetricsSampler(SamplerConfig(root=tmp_path))
    _, gauges, _ = decode(sampler.sample())
    assert value(gauges["leap0.sandbox.cpu.limit"]) == 4.0
    assert value(gauges["leap0.sandbox.memory.limit"]) == 16 * GIB
    sampler.close()


def test_falls_back_to_downward_api_limits(tmp_path: Path) -> None:
    v2_pod(tmp_path)
    shutil.rmtree(tmp_path / "sys/fs/cgroup")  # cgroup not readable from the sidecar
    config = SamplerConfig(root=tmp_path, cpu_limit=1.5, memory_limit_bytes=2 * GIB)
    sampler = MetricsSampler(config)
    attributes, gauges, _ = decode(sampler.sample())
    assert sampler.source == attributes["leap0.metrics.source"] == "psutil"
    assert value(gauges["leap0.sandbox.cpu.limit"]) == 1.5
    assert value(gauges["leap0.sandbox.memory.limit"]) == 2 * GIB
    sampler.close()


def test_forced_psutil_source(tmp_path: Path) -> None:
    v2_pod(tmp_path)
    sampler = MetricsSampler(SamplerConfig(root=tmp_path, force_source="psutil"))
    assert sampler.source == "psutil"
    sampler.close()


def test_rediscovers_after_the_sandbox_restarts(tmp_path: Path) -> None:
    v2_pod(tmp_path, memory_current=10 * MIB)
    sampler = MetricsSampler(SamplerConfig(root=tmp_path))
    _, gauges, _ = decode(sampler.sample())
    assert value(gauges["leap0.sandbox.memory.usage"]) == 10 * MIB
    # the container restarts: its processes are gone, a new one runs in a new cgroup
    shutil.rmtree(tmp_path / "proc/42")
    shutil.rmtree(tmp_path / "proc/43")
    new_cgroup = SANDBOX_CGROUP.replace("5a1c0ffee", "b0b0")
    process(tmp_path, 77, f"0::{new_cgroup}\n")
    v2_cgroup(tmp_path, new_cgroup, memory_current=3 * MIB, memory_max=str(1 * GIB))
    _, gauges, _ = decode(sampler.sample())
    assert value(gauges["leap0.sandbox.memory.usage"]) == 3 * MIB
    assert "leap0.sandbox.cpu.utilization" not in gauges  # no baseline for the new cgroup yet
    _, gauges, _ = decode(sampler.sample())
    assert "leap0.sandbox.cpu.utilization" in gauges
    sampler.close()


def test_sandbox_not_started_yet_then_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    v2_pod(tmp_path)
    shutil.rmtree(tmp_path / "proc/42")
    shutil.rmtree(tmp_path / "proc/43")
    monkeypatch.setattr(metrics, "REDISCOVER_SECONDS", 0.0)  # look again at every sample
    sampler = MetricsSampler(SamplerConfig(root=tmp_path))
    assert sampler.source == "psutil"  # the native sidecar starts before the sandbox container
    attributes, _, _ = decode(sampler.sample())
    assert attributes["leap0.metrics.source"] == "psutil"
    process(tmp_path, 42, f"0::{SANDBOX_CGROUP}\n")
    attributes, _, _ = decode(sampler.sample())
    assert attributes["leap0.metrics.source"] == "cgroup-v2"
    sampler.close()


def test_workspace_gauges(tmp_path: Path) -> None:
    v2_pod(tmp_path / "root", memory_current=1 * MIB)
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "data.bin").write_bytes(b"\1" * (4 * MIB))
    config = SamplerConfig(root=tmp_path / "root", workspace=workspace, disk_limit_bytes=16 * MIB)
    sampler = MetricsSampler(config)
    assert sampler.workspace is not None
    assert sampler.workspace.mode == "walk"  # a plain directory: not its own filesystem
    assert sampler.workspace.wait_ready(5.0)
    _, gauges, _ = decode(sampler.sample())
    assert list(gauges) == list(contract.SANDBOX_METRICS)
    usage = value(gauges["leap0.sandbox.filesystem.usage"])
    assert 4 * MIB <= usage <= 4 * MIB + 64 * 1024
    assert value(gauges["leap0.sandbox.filesystem.utilization"]) == pytest.approx(usage / (16 * MIB) * 100)
    sampler.close()


def test_sample_is_a_valid_request_for_any_reading() -> None:
    reading = metrics.SandboxReading(
        source="psutil",
        time_unix_nano=1,
        interval_start_unix_nano=None,
        cpu_utilization=None,
        cpu_limit=2.0,
        memory_usage=0,
        memory_limit=0,
        memory_utilization=0.0,
    )
    _, gauges, request = decode(metrics.encode(reading, {"a": "b"}))
    assert list(gauges) == [
        "leap0.sandbox.cpu.limit",
        "leap0.sandbox.memory.utilization",
        "leap0.sandbox.memory.usage",
        "leap0.sandbox.memory.limit",
    ]
    assert request.resource_metrics[0].resource.attributes[0].key == "a"


def test_unreadable_cgroup_never_breaks_a_sample(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    directory = v2_pod(tmp_path, memory_current=10 * MIB)
    sampler = MetricsSampler(SamplerConfig(root=tmp_path, memory_limit_bytes=GIB))
    assert sampler.source == "cgroup-v2"
    (directory / "memory.current").write_text("garbage\n")
    attributes, gauges, _ = decode(sampler.sample())
    assert attributes["leap0.metrics.source"] == "psutil"
    assert value(gauges["leap0.sandbox.memory.limit"]) == GIB
    assert "failed too" in caplog.text
    sampler.close()


def test_source_is_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    v2_pod(tmp_path)
    caplog.set_level("INFO", logger="leap0_sidecar.sandbox_metrics")
    sampler = MetricsSampler(SamplerConfig(root=tmp_path))
    for _ in range(3):
        sampler.sample()
    assert [r.getMessage() for r in caplog.records].count(caplog.records[0].getMessage()) == 1
    assert "sandbox metrics source: cgroup-v2" in caplog.records[0].getMessage()
    assert len([r for r in caplog.records if "metrics source" in r.getMessage()]) == 1
    sampler.close()


def test_keeps_the_cpu_baseline_when_only_the_process_changes(tmp_path: Path) -> None:
    # The process the cgroup was found by exits, another of the same container runs on: same cgroup, so the
    # next sample still has CPU utilization.
    v2_pod(tmp_path)
    sampler = MetricsSampler(SamplerConfig(root=tmp_path))
    sampler.sample()
    shutil.rmtree(tmp_path / "proc/42")  # pid 43 is in the same cgroup
    _, gauges, _ = decode(sampler.sample())
    assert "leap0.sandbox.cpu.utilization" in gauges
    sampler.close()


def test_command_line_prints_otlp_json(tmp_path: Path) -> None:
    v2_pod(tmp_path, cpu_max="150000 100000", memory_current=3 * MIB)
    env = subprocess_env(LEAP0_METRICS_ROOT=str(tmp_path), LEAP0_SANDBOX_ID="sbx-cli")
    command = [sys.executable, "-m", "leap0_sidecar.sandbox_metrics", "--count", "2", "--interval", "0.05"]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True, timeout=60)
    first, second = (json.loads(line) for line in out.stdout.splitlines())
    resource = second["resourceMetrics"][0]
    attributes = {a["key"]: a["value"]["stringValue"] for a in resource["resource"]["attributes"]}
    assert attributes["leap0.sandbox.id"] == "sbx-cli"
    gauges = {m["name"]: m for m in resource["scopeMetrics"][0]["metrics"]}
    assert gauges["leap0.sandbox.cpu.limit"]["gauge"]["dataPoints"][0]["asDouble"] == 1.5
    assert gauges["leap0.sandbox.memory.usage"]["gauge"]["dataPoints"][0]["asInt"] == str(3 * MIB)
    assert "sandbox metrics source: cgroup-v2" in out.stderr
    assert first["resourceMetrics"][0]["resource"] == resource["resource"]


def test_command_line_rejects_bad_config() -> None:
    env = subprocess_env(LEAP0_SANDBOX_MEMORY_LIMIT_BYTES="1Gi")
    command = [sys.executable, "-m", "leap0_sidecar.sandbox_metrics"]
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "configuration error: LEAP0_SANDBOX_MEMORY_LIMIT_BYTES='1Gi'" in out.stderr


def test_the_app_runs_while_its_cgroup_has_a_process(tmp_path: Path) -> None:
    """What the sidecar asks before its last sample, at shutdown: after the sandbox's last process, a sample
    would measure nothing."""
    directory = v2_pod(tmp_path)
    sampler = MetricsSampler(SamplerConfig(root=tmp_path))
    write(directory / "cgroup.procs", "42\n43\n")
    assert sampler.app_running()
    write(directory / "cgroup.procs", "")  # the processes ended; the cgroup not removed yet
    assert not sampler.app_running()
    shutil.rmtree(directory)  # the container is gone, and its cgroup with it
    assert not sampler.app_running()
    sampler.close()


def test_the_app_runs_while_its_v1_memory_cgroup_has_a_process(tmp_path: Path) -> None:
    _, memory = v1_pod(tmp_path)
    sampler = MetricsSampler(SamplerConfig(root=tmp_path))
    write(memory / "cgroup.procs", "42\n")
    assert sampler.app_running()
    write(memory / "cgroup.procs", "")
    assert not sampler.app_running()
    sampler.close()


def test_the_app_runs_while_its_process_does_with_psutil(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        config = SamplerConfig(root=tmp_path, force_source="psutil", sandbox_pid=child.pid)
        sampler = MetricsSampler(config)
        assert sampler.app_running()
    finally:
        child.kill()
        child.wait()
    assert not sampler.app_running()
    sampler.close()
