"""The kubelet mode's pure parts: the Node, its Lease, the final delete of a pod, the containerLogs query."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from leap0_dev import nodespec
from leap0_dev.nodespec import LogQuery, NodeInfo, NodeSpecError
from leap0_dev.podspec import Host

HOST = Host(cpus=2, memory_bytes=24 * 2**30, ephemeral_bytes=100 * 2**30, name="devbox")
INFO = NodeInfo(kubelet_version="v1.36.3", runtime_version="leap0-local-runner://0.1.0", machine="x86_64")
NOW = datetime(2026, 3, 1, 12, 0, 5, 123456, tzinfo=UTC)


def test_a_lease_time_has_exactly_six_fractional_digits_in_utc() -> None:
    assert nodespec.micro_time(NOW) == "2026-03-01T12:00:05.123456Z"
    assert nodespec.micro_time(NOW.replace(microsecond=0)) == "2026-03-01T12:00:05.000000Z"
    paris = NOW.astimezone(timezone(timedelta(hours=1)))
    assert nodespec.micro_time(paris) == "2026-03-01T12:00:05.123456Z"
    assert nodespec.rfc3339(NOW) == "2026-03-01T12:00:05Z"


def test_the_capacity_is_the_machines_unless_given() -> None:
    assert nodespec.capacity(HOST) == {
        "cpu": "2",
        "memory": f"{24 * 2**20}Ki",
        "pods": "110",
        "ephemeral-storage": f"{100 * 2**20}Ki",
    }
    sized = nodespec.capacity(HOST, cpu="6", memory="16Gi", pods=20)
    assert (sized["cpu"], sized["memory"], sized["pods"]) == ("6", "16Gi", "20")


@pytest.mark.parametrize(
    ("cpu", "memory", "pods", "error"),
    [
        ("four", None, 110, "--node-cpu 'four': not a Kubernetes quantity"),
        ("0", None, 110, "--node-cpu '0': must be more than 0"),
        (None, "-1Gi", 110, "--node-memory '-1Gi': must be more than 0"),
        (None, None, 0, "--node-pods 0: must be at least 1"),
    ],
)
def test_a_bad_size_is_refused_naming_the_option(
    cpu: str | None, memory: str | None, pods: int, error: str
) -> None:
    with pytest.raises(NodeSpecError, match=error):
        nodespec.capacity(HOST, cpu=cpu, memory=memory, pods=pods)


def test_the_node_name_is_the_host_name_in_lower_case_when_valid() -> None:
    assert nodespec.node_name("DevBox.local") == "devbox.local"
    assert nodespec.node_name("dev_box") == "leap0-node"
    assert nodespec.check_node_name("node-1") == "node-1"
    with pytest.raises(NodeSpecError, match="--node-name 'Node_1'"):
        nodespec.check_node_name("Node_1")


def test_the_registered_node_is_ready_with_its_address_port_and_size() -> None:
    resources = nodespec.capacity(HOST, cpu="4", memory="8Gi")
    node = nodespec.node_manifest("devbox", resources, 40123, INFO, NOW)
    assert node["metadata"]["name"] == "devbox"
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "devbox"
    assert node["metadata"]["labels"]["kubernetes.io/arch"] == "amd64"
    assert node["spec"] == {}  # no taints of its own: schedulable once Ready
    status = node["status"]
    assert status["capacity"] == status["allocatable"] == resources
    assert status["addresses"] == [{"type": "InternalIP", "address": "127.0.0.1"}]
    assert status["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 40123}}
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "KubeletReady")
    pressures = [c for c in status["conditions"] if c["type"].endswith("Pressure")]
    assert {c["type"] for c in pressures} == {"MemoryPressure", "DiskPressure", "PIDPressure"}
    assert all(c["status"] == "False" for c in pressures)
    assert status["nodeInfo"]["kubeletVersion"] == "v1.36.3"
    assert status["nodeInfo"]["operatingSystem"] == "linux"


def test_a_heartbeat_moves_the_heartbeat_time_not_the_transition_time() -> None:
    later = NOW + timedelta(minutes=3)
    status = nodespec.node_status(nodespec.capacity(HOST), 1, INFO, later, NOW)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["lastHeartbeatTime"] == "2026-03-01T12:03:05Z"
    assert ready["lastTransitionTime"] == "2026-03-01T12:00:05Z"


def test_the_lease_is_owned_by_the_node_and_renewed_with_microseconds() -> None:
    lease = nodespec.lease_manifest("devbox", "uid-1", NOW)
    assert lease["metadata"]["namespace"] == "kube-node-lease"
    assert lease["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Node", "name": "devbox", "uid": "uid-1"}
    ]
    assert lease["spec"] == {
        "holderIdentity": "devbox",
        "leaseDurationSeconds": 40,
        "renewTime": "2026-03-01T12:00:05.123456Z",
    }
    later = NOW + timedelta(seconds=10, microseconds=1)
    assert nodespec.lease_renewal("devbox", later)["spec"]["renewTime"] == "2026-03-01T12:00:15.123457Z"


def test_a_stopped_pod_is_deleted_at_once_and_only_that_pod() -> None:
    assert nodespec.final_delete_options("uid-7") == {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "gracePeriodSeconds": 0,
        "preconditions": {"uid": "uid-7"},
    }


@pytest.mark.parametrize(
    ("metadata", "spec", "expected"),
    [
        ({}, {}, 5.0),  # the default 30 s, capped
        ({}, {"terminationGracePeriodSeconds": 2}, 2.0),
        ({"deletionGracePeriodSeconds": 1}, {"terminationGracePeriodSeconds": 20}, 1.0),  # --grace-period
        ({"deletionGracePeriodSeconds": 0}, {}, 0.0),
    ],
)
def test_the_grace_of_a_deleted_pod_is_the_deletions(
    metadata: dict[str, int], spec: dict[str, int], expected: float
) -> None:
    assert nodespec.stop_grace_seconds({"metadata": metadata, "spec": spec}, cap=5.0) == expected


def test_the_log_query() -> None:
    assert nodespec.parse_log_query({}) == LogQuery()
    assert nodespec.parse_log_query(
        {"follow": "true", "previous": "1", "tailLines": "10", "limitBytes": "100", "timestamps": "true"}
    ) == LogQuery(follow=True, previous=True, tail_lines=10, limit_bytes=100, timestamps=True)
    assert nodespec.parse_log_query({"tailLines": "0"}).tail_lines == 0
    with pytest.raises(ValueError, match="tailLines: 'x' is not an integer"):
        nodespec.parse_log_query({"tailLines": "x"})
    with pytest.raises(ValueError, match="limitBytes: must be greater than 0"):
        nodespec.parse_log_query({"limitBytes": "0"})
    with pytest.raises(ValueError, match="tailLines: must be at least 0"):
        nodespec.parse_log_query({"tailLines": "-1"})


@pytest.mark.parametrize(
    ("block", "needed", "file_end", "expected"),
    [
        (b"a\nb\nc\n", 1, True, (1, 4)),  # the last line, "c"
        (b"a\nb\nc\n", 2, True, (2, 2)),
        (b"a\nb\nc", 1, True, (1, 4)),  # a last line without its newline still counts
        (b"a\nb\nc\n", 3, True, (2, None)),  # "a" starts before this block (or at the file's start)
        (b"x\ny\n", 1, False, (1, 4)),  # not the file's end: the final newline ends a line of a later block
        (b"abc", 1, False, (0, None)),
        (b"a\nb\n", 0, True, (0, 4)),
    ],
)
def test_tail_lines_are_found_backwards_one_block_at_a_time(
    block: bytes, needed: int, file_end: bool, expected: tuple[int, int | None]
) -> None:
    assert nodespec.line_starts_back(block, needed, file_end) == expected


def test_os_image_is_the_pretty_name() -> None:
    assert nodespec.os_image('NAME="Debian"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n') == (
        "Debian GNU/Linux 12 (bookworm)"
    )
    assert nodespec.os_image("") == "Linux"


def test_tail_start_reads_a_large_file_from_its_end(tmp_path: Path) -> None:
    from leap0_dev.runner.logs import tail_start

    log = tmp_path / "sandbox.log"
    lines = [f"line {i} {'x' * 100}\n".encode() for i in range(5000)]  # about 550 KB: many blocks
    log.write_bytes(b"".join(lines))
    data = log.read_bytes()
    assert data[tail_start(log, 3) :] == b"".join(lines[-3:])
    assert data[tail_start(log, 4321) :] == b"".join(lines[-4321:])  # across block boundaries
    assert tail_start(log, 10_000) == 0
    assert tail_start(log, 0) == len(data)
    log.write_bytes(b"only line, no newline")
    assert tail_start(log, 1) == 0
