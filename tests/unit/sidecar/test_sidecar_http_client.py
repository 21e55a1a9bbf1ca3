"""The forwarder's HTTP client against raw HTTP/1.1 servers answering in the ways real upstreams do."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from leap0_sidecar.config import load
from leap0_sidecar.exporter import HttpClient, UpstreamError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def serve(handler: Handler) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def client(port: int, **env: str) -> HttpClient:
    config = load(
        {
            "LEAP0_SANDBOX_ID": "s",
            "LEAP0_ORG_ID": "o",
            "LEAP0_TEMPLATE_ID": "t",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}/base",
            **env,
        }
    )
    upstream = config.upstreams["traces"]
    assert upstream is not None
    return HttpClient(upstream)


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    return head, await reader.readexactly(length)


async def test_request_format_and_keep_alive() -> None:
    seen: list[tuple[bytes, bytes]] = []
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                seen.append(await read_request(reader))
            except asyncio.IncompleteReadError:
                return
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")

    server, port = await serve(handler)
    http = client(port, OTEL_EXPORTER_OTLP_HEADERS="x-api-key=k%201", OTEL_EXPORTER_OTLP_COMPRESSION="gzip")
    for i in range(3):
        response = await http.post([b"body%d" % i])
        assert response.status == 200
    http.close()
    server.close()
    assert connections == 1
    head = seen[0][0]
    assert head.startswith(b"POST /base/v1/traces HTTP/1.1\r\n")
    lines = head.lower().split(b"\r\n")
    assert f"host: 127.0.0.1:{port}".encode() in lines
    assert b"x-api-key: k 1" in lines
    assert b"content-type: application/x-protobuf" in lines
    assert b"content-encoding: gzip" in lines
    assert [b for _, b in seen] == [b"body0", b"body1", b"body2"]


async def test_chunked_answer_and_connection_close() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 3\r\ntransfer-encoding: chunked\r\n"
            b"connection: close\r\n\r\n5\r\nbusy!\r\n0\r\n\r\n"
        )
        await writer.drain()
        writer.close()

    server, port = await serve(handler)
    http = client(port)
    response = await http.post([b"x"])
    assert (response.status, response.headers["retry-after"], response.body) == (503, "3", b"busy!")
    response = await http.post([b"y"])  # a new connection, since the server closed the last one
    assert response.status == 503
    http.close()
    server.close()


async def test_body_until_close_and_stale_keep_alive_connection() -> None:
    calls = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal calls
        calls += 1
        await read_request(reader)
        if calls == 1:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
            writer.close()  # closes the kept-alive connection behind the client's back
            return
        writer.write(b"HTTP/1.0 200 OK\r\n\r\nuntil-close")
        await writer.drain()
        writer.close()

    server, port = await serve(handler)
    http = client(port)
    assert (await http.post([b"a"])).status == 200
    await asyncio.sleep(0.05)
    response = await http.post([b"b"])  # the stale connection fails; retried once on a new one
    assert (response.status, response.body) == (200, b"until-close")
    http.close()
    server.close()


async def test_timeout_and_refused_connection_raise_upstream_error() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(600)  # (never answers)

    server, port = await serve(silent)
    http = client(port, OTEL_EXPORTER_OTLP_TIMEOUT="200")
    with pytest.raises(UpstreamError, match=r"no response within 0\.2 s"):
        await http.post([b"x"])
    server.close()
    http.close()
    refused = client(port)  # nothing listens any more
    await asyncio.sleep(0.05)
    with pytest.raises(UpstreamError):
        await refused.post([b"x"])
