"""kubectl logs' options over a container's timestamped lines, as the kubelet applies them (pure), and the
relay that stamps each line of a container's output."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support import wait_for

from leap0_dev.runner.logs import ContainerLog, LogQuery, LogQueryError, parse_query, render, rfc3339_nano

LINES = [(100.0, b"a\n"), (101.5, b"b\n"), (103.0, b"c\n"), (104.0, b"d\n")]


def test_options_as_kubectl_sends_them() -> None:
    assert parse_query({}, now=1000) == LogQuery()
    assert parse_query({"tailLines": "2", "follow": "true", "timestamps": "true"}, now=1000) == LogQuery(
        tail_lines=2, follow=True, timestamps=True
    )
    assert parse_query({"sinceSeconds": "10"}, now=1000).since == 990
    assert parse_query({"sinceTime": "1970-01-01T00:01:40Z"}, now=1000).since == 100
    assert parse_query({"limitBytes": "5"}, now=1000).limit_bytes == 5


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ({"tailLines": "x"}, "tailLines: expected an integer, got 'x'"),
        ({"tailLines": "-1"}, "tailLines: must be at least 0"),
        ({"sinceSeconds": "0"}, "sinceSeconds: must be at least 1"),
        ({"limitBytes": "0"}, "limitBytes: must be at least 1"),
        (
            {"sinceSeconds": "5", "sinceTime": "1970-01-01T00:00:00Z"},
            "at most one of sinceSeconds or sinceTime",
        ),
        ({"sinceTime": "yesterday"}, "sinceTime: expected an RFC 3339 time"),
        ({"follow": "maybe"}, "follow: expected true or false"),
    ],
)
def test_options_the_kubelet_refuses_name_themselves(query: dict[str, str], reason: str) -> None:
    with pytest.raises(LogQueryError, match=reason):
        parse_query(query, now=1000)


def test_tail_then_since_then_timestamps_then_the_byte_limit() -> None:
    assert render(LINES, LogQuery()) == b"a\nb\nc\nd\n"
    assert render(LINES, LogQuery(tail_lines=2)) == b"c\nd\n"
    assert render(LINES, LogQuery(tail_lines=0)) == b""
    assert render(LINES, LogQuery(since=101.5)) == b"b\nc\nd\n"  # at or after
    assert render(LINES, LogQuery(tail_lines=3, since=103.5)) == b"d\n"  # the last three, then since
    assert render(LINES, LogQuery(tail_lines=1, timestamps=True)) == b"1970-01-01T00:01:44.000000000Z d\n"
    assert render(LINES, LogQuery(limit_bytes=3)) == b"a\nb"
    assert rfc3339_nano(1.5) == "1970-01-01T00:00:01.500000000Z"


def test_each_line_is_stamped_when_it_starts_even_when_written_in_pieces(tmp_path: Path) -> None:
    log = ContainerLog(tmp_path / "c.log")
    read, write = os.pipe()
    with open(write, "wb", buffering=0) as out:
        log.relay(open(read, "rb"), "c")  # noqa: SIM115 - the relay reads it to the end and closes it
        out.write(b"one\ntw")
        wait_for(lambda: log.size() == 6, what="the first piece")
        out.write(b"o\nthree\n")
    wait_for(log.drained, what="the relay to finish")
    assert [line for _, line in log.lines()] == [b"one\n", b"two\n", b"three\n"]
    assert (tmp_path / "c.log").read_bytes() == b"one\ntwo\nthree\n"
    assert [line for _, line in log.lines(4)] == [b"two\n", b"three\n"]
    times = [at for at, _ in log.lines()]
    assert times == sorted(times)
