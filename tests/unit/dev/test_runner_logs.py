"""kubectl logs' options as the kubelet takes them (nodespec.parse_log_query), and the timestamped output the
runner keeps of each container (runner/logs.py): lines stamped when they start, found by time, stamped in."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support import wait_for

from leap0_dev import nodespec
from leap0_dev.runner.logs import ContainerLog, rfc3339_nano, stamped


def test_since_and_timestamps_as_kubectl_sends_them() -> None:
    assert nodespec.parse_log_query({"sinceSeconds": "10"}, now=1000).since == 990
    assert nodespec.parse_log_query({"sinceTime": "1970-01-01T00:01:40Z"}).since == 100
    assert nodespec.parse_log_query({"timestamps": "true"}).timestamps
    assert nodespec.parse_log_query({}).since is None


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ({"sinceSeconds": "0"}, "sinceSeconds: must be greater than 0"),
        ({"sinceSeconds": "soon"}, "sinceSeconds: 'soon' is not an integer"),
        (
            {"sinceSeconds": "5", "sinceTime": "1970-01-01T00:00:00Z"},
            "at most one of sinceSeconds or sinceTime",
        ),
        ({"sinceTime": "yesterday"}, "sinceTime: 'yesterday' is not an RFC 3339 time"),
    ],
)
def test_since_options_the_kubelet_refuses_name_themselves(query: dict[str, str], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        nodespec.parse_log_query(query, now=1000)


def test_lines_are_stamped_where_they_start_in_a_block() -> None:
    assert rfc3339_nano(1.5) == "1970-01-01T00:00:01.500000000Z"
    # the block holds the end of a line (from offset 8) and two lines starting at 10 and 13
    block = b"ne\nb\nc\n"
    assert stamped(block, 8, [(11, 1.0), (13, 2.0)]) == (
        b"ne\n1970-01-01T00:00:01.000000000Z b\n1970-01-01T00:00:02.000000000Z c\n"
    )
    assert stamped(block, 8, []) == block


def test_each_line_is_stamped_when_it_starts_even_when_written_in_pieces(tmp_path: Path) -> None:
    log = ContainerLog(tmp_path / "c.log")
    read, write = os.pipe()
    with open(write, "wb", buffering=0) as out:
        log.relay(open(read, "rb"), "c")  # noqa: SIM115 - the relay reads it to the end and closes it
        out.write(b"one\ntw")
        wait_for(lambda: log.size() == 6, what="the first piece")
        out.write(b"o\nthree\n")
    wait_for(log.drained, what="the relay to finish")
    assert (tmp_path / "c.log").read_bytes() == b"one\ntwo\nthree\n"
    starts = log.starts_between(0, log.size())
    assert [offset for offset, _ in starts] == [0, 4, 8]  # "tw" + "o\n" is one line, stamped once
    times = [moment for _, moment in starts]
    assert times[0] == times[1] <= times[2]  # (one and tw came in one write)
    assert log.offset_since(times[0]) == 0
    assert log.offset_since(times[2]) == (8 if times[2] > times[1] else 0)
    assert log.offset_since(times[-1] + 1) == log.size()  # nothing started since: the end
    assert log.starts_between(4, 8) == starts[1:2]
