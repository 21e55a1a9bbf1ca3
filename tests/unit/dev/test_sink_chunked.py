"""The console sink reading chunked bodies (RFC 9112, section 7.1): pieces, extensions, trailers, bounds."""

from __future__ import annotations

import io

import pytest

from leap0_dev.sink import SinkError, read_chunked


def test_chunks_with_extensions_and_trailers_make_the_body_and_nothing_more_is_read() -> None:
    stream = io.BufferedReader(
        io.BytesIO(b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nx-trailer: 1\r\n\r\nNEXT REQUEST")
    )
    assert read_chunked(stream, 100) == b"hello world"
    assert stream.read() == b"NEXT REQUEST"


@pytest.mark.parametrize(
    ("wire", "status", "reason"),
    [
        (b"zz\r\nhello\r\n0\r\n\r\n", 400, "bad chunk size line"),
        (b"-5\r\nhello\r\n0\r\n\r\n", 400, "bad chunk size line"),
        (b"5\r\nhel", 400, "truncated chunk"),
        (b"5\r\nhelloXX0\r\n\r\n", 400, "truncated chunk"),
        (b"8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n", 413, "body over 10 bytes"),
        (b"", 400, "bad chunk size line"),
    ],
    ids=["not-hex", "negative", "cut-short", "no-crlf", "over-the-limit", "empty"],
)
def test_a_malformed_or_too_large_chunked_body_is_refused_with_the_reason(
    wire: bytes, status: int, reason: str
) -> None:
    with pytest.raises(SinkError, match=reason) as info:
        read_chunked(io.BufferedReader(io.BytesIO(wire)), 10)
    assert info.value.status == status
