"""The OTLP/HTTP receiver (and the health endpoint): HTTP/1.1 with keep-alive on an asyncio Protocol.

Requests are parsed by httptools (llhttp, the parser of Node.js, as uvicorn uses it): a request costs a few
microseconds of parsing and no coroutine switch, since handling a request is synchronous (stamp and queue).
Answers are short fixed responses written here. Routes and answers, as the OTLP/HTTP specification says:

- ``POST /v1/traces``, ``/v1/metrics``, ``/v1/logs`` with ``application/x-protobuf`` or ``application/json``
  bodies, optionally ``Content-Encoding: gzip``: 200 with an empty ``Export*ServiceResponse`` in the request's
  encoding (nothing is partially rejected: the sidecar forwards everything it accepts).
- 400 with a ``google.rpc.Status`` (in the request's encoding) saying the parser's reason for malformed data;
  415 for another content type or content encoding; 413 for a body over the limit, compressed or decompressed
  (inflating stops at the limit, so a gzip bomb costs nothing); 503 with ``Retry-After`` when the queue is
  full or the sidecar is stopping (the OTel SDKs retry); 404 for other paths, 405 for other methods; 408 when
  a request is not received completely within the receive timeout (slow or stuck clients); 400 for bad HTTP.
- ``GET /healthz`` (alive) and ``GET /readyz`` (receivers up and accepting), JSON bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import httptools

import leap0_contract as contract
from leap0_contract import Signal
from leap0_sidecar import otlp
from leap0_sidecar.identity import WireError
from leap0_sidecar.pipeline import Outcome, Pipeline

log = logging.getLogger("leap0_sidecar.http")

MAX_HEAD_BYTES: Final = 64 * 1024
DISCARD_S: Final = 2.0
_PATH_SIGNALS: Final[dict[str, Signal]] = {path: signal for signal, path in contract.SIGNAL_PATHS.items()}
_HEALTH_PATHS: Final = (contract.SIDECAR_HEALTH_PATH, contract.SIDECAR_READY_PATH)
_REASONS: Final = {status.value: status.phrase for status in http.HTTPStatus}
_HEADERS_USED: Final = frozenset({b"content-type", b"content-encoding", b"content-length", b"expect"})


class BodyTooLarge(Exception):
    pass


class GzipError(ValueError):
    pass


def gunzip_limited(data: bytes, limit: int) -> bytes:
    """Inflate a gzip body (one or more members); BodyTooLarge as soon as it exceeds ``limit`` bytes."""
    out: list[bytes] = []
    size = 0
    while data:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            chunk = inflater.decompress(data, limit - size + 1)
        except zlib.error as exc:
            raise GzipError(f"invalid gzip body: {exc}") from None
        size += len(chunk)
        if size > limit or inflater.unconsumed_tail:
            raise BodyTooLarge(f"the decompressed body exceeds the limit of {limit} bytes")
        out.append(chunk)
        if not inflater.eof:
            raise GzipError("invalid gzip body: truncated")
        data = inflater.unused_data
    return b"".join(out)


@dataclass
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()
    close: bool = False

    def encode(self, keep_alive: bool) -> bytes:
        lines = [
            f"HTTP/1.1 {self.status} {_REASONS.get(self.status, '')}",
            f"content-type: {self.content_type}",
            f"content-length: {len(self.body)}",
            *(f"{k}: {v}" for k, v in self.headers),
        ]
        if not keep_alive:
            lines.append("connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


def _text(
    status: int, message: str, *, headers: tuple[tuple[str, str], ...] = (), close: bool = False
) -> Reply:
    return Reply(status, (message + "\n").encode(), headers=headers, close=close)


HealthCheck = Callable[[str], tuple[bool, dict[str, object]]]


class HttpReceiver:
    """One listening socket; ``otlp_routes=False`` serves only the health paths (the pod-IP listener)."""

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        otlp_routes: bool,
        max_body: int,
        receive_timeout_s: float,
        idle_timeout_s: float = 60.0,
        health: HealthCheck | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.otlp_routes = otlp_routes
        self.max_body = max_body
        self.receive_timeout_s = receive_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.health = health
        self.server: asyncio.Server | None = None
        self.connections: set[_Connection] = set()
        self.closing = False
        self._sweeper: asyncio.Task[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    async def start(self, host: str, port: int) -> int:
        self.loop = asyncio.get_running_loop()
        self.server = await self.loop.create_server(
            lambda: _Connection(self), host, port, reuse_address=True, start_serving=True
        )
        self._sweeper = asyncio.create_task(self._sweep(), name=f"http-sweep-{port}")
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening, close idle kept-alive connections (a request being received is answered first)."""
        self.closing = True
        if self.server is not None:
            self.server.close()
        for connection in list(self.connections):
            if connection.busy_since is None:
                connection.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self.server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)

    async def _sweep(self) -> None:
        """Time out slow requests (408) and idle connections, without a timer per request."""
        assert self.loop is not None
        tick = min(1.0, self.receive_timeout_s / 4)
        while True:
            await asyncio.sleep(tick)
            now = self.loop.time()
            for connection in list(self.connections):
                connection.check_timeouts(now)

    # --- routing (pure, given the request) ---------------------------------------------------------

    def route(
        self, method: str, path: str, headers: dict[bytes, bytes]
    ) -> tuple[Reply | None, Signal | None]:
        """An answer decided from the head alone, or the signal of an OTLP request to read the body of."""
        if path in _HEALTH_PATHS and self.health is not None:
            if method != "GET":
                return _text(405, f"{path} accepts GET", headers=(("allow", "GET"),)), None
            ok, details = self.health(path)
            body = json.dumps({"status": "ok" if ok else "unavailable", **details}).encode()
            return Reply(200 if ok else 503, body, "application/json"), None
        signal = _PATH_SIGNALS.get(path) if self.otlp_routes else None
        if signal is None:
            return _text(404, f"no such path: {path}"), None
        if method != "POST":
            return _text(405, f"{path} accepts POST", headers=(("allow", "POST"),)), None
        content_type = headers.get(b"content-type", b"").decode("latin-1").split(";", 1)[0].strip().lower()
        if content_type not in (otlp.CONTENT_PROTOBUF, otlp.CONTENT_JSON):
            return _text(
                415,
                f"unsupported content type {content_type or '(none)'!r}: "
                f"use {otlp.CONTENT_PROTOBUF} or {otlp.CONTENT_JSON}",
            ), None
        encoding = headers.get(b"content-encoding", b"identity").decode("latin-1").strip().lower()
        if encoding not in ("identity", "gzip"):
            return _text(415, f"unsupported content encoding {encoding!r}: use gzip or none"), None
        return None, signal

    def handle_otlp(self, signal: Signal, body: bytes, json_encoding: bool, gzipped: bool) -> Reply:
        content_type = otlp.CONTENT_JSON if json_encoding else otlp.CONTENT_PROTOBUF

        def bad(reason: str) -> Reply:
            return Reply(400, otlp.status_body(otlp.INVALID_ARGUMENT, reason, json_encoding), content_type)

        try:
            if gzipped:
                body = gunzip_limited(body, self.max_body)
            if json_encoding:
                body = otlp.json_to_protobuf(signal, body)
            outcome = self.pipeline.ingest(signal, body, "http")
        except BodyTooLarge as exc:
            return _text(413, str(exc), close=True)
        except (GzipError, otlp.JsonError) as exc:
            return bad(str(exc))
        except WireError as exc:
            return bad(f"invalid protobuf: {exc}")
        if outcome is Outcome.ACCEPTED:
            return Reply(200, otlp.success_body(json_encoding), content_type)
        delay = self.pipeline.retry_after_s()
        if outcome is Outcome.QUEUE_FULL:
            message = "the sidecar's export queue is full (the upstream is slow or unreachable): retry later"
        else:
            message = "the sidecar is shutting down"
        return Reply(
            503,
            otlp.status_body(otlp.UNAVAILABLE, message, json_encoding, retry_delay_s=delay),
            content_type,
            headers=(("retry-after", str(delay)),),
            close=outcome is Outcome.SHUTTING_DOWN,
        )


class _Connection(asyncio.Protocol):
    """One client connection: httptools calls the ``on_*`` methods while data is fed to it."""

    def __init__(self, receiver: HttpReceiver) -> None:
        self.receiver = receiver
        assert receiver.loop is not None
        self.loop = receiver.loop
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.busy_since: float | None = None  # when the current request's first byte arrived
        self.last_active = self.loop.time()
        self.discarding_until: float | None = None
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.head_size = 0
        self.body: list[bytes] = []
        self.size = 0
        self.early: Reply | None = None
        self.signal: Signal | None = None

    # --- asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.receiver.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.receiver.connections.discard(self)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self.discarding_until is not None or self.transport is None:
            return
        if self.busy_since is None:
            self.busy_since = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, BodyTooLarge):
                self._answer(_text(413, str(cause), close=True), discard=True)
            else:
                log.error("unexpected error handling an HTTP request", exc_info=cause)
                self._answer(_text(500, "internal error", close=True))
        except httptools.HttpParserUpgrade:
            self._answer(_text(400, "protocol upgrades are not supported", close=True))
        except httptools.HttpParserError as exc:
            self._answer(_text(400, f"bad HTTP request: {exc}", close=True))

    def eof_received(self) -> bool:
        return False  # close when the client does

    # --- httptools callbacks -----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._reset()
        if self.busy_since is None:
            self.busy_since = self.loop.time()

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_size += len(url)
        if self.head_size > MAX_HEAD_BYTES:
            raise BodyTooLarge(f"the request head exceeds {MAX_HEAD_BYTES} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value)
        if self.head_size > MAX_HEAD_BYTES:
            raise BodyTooLarge(f"the request head exceeds {MAX_HEAD_BYTES} bytes")
        name = name.lower()
        if name in _HEADERS_USED:
            self.headers[name] = value

    def on_headers_complete(self) -> None:
        method = self.parser.get_method().decode("latin-1")
        path = self.url.split(b"?", 1)[0].decode("latin-1")
        self.early, self.signal = self.receiver.route(method, path, self.headers)
        declared = self.headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.receiver.max_body:
            raise BodyTooLarge(
                f"the body ({int(declared)} bytes) exceeds the limit of {self.receiver.max_body} bytes"
            )
        if (
            self.early is None
            and self.headers.get(b"expect", b"").lower() == b"100-continue"
            and self.transport
        ):
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # (curl asks before sending a body)

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.receiver.max_body:
            raise BodyTooLarge(f"the body exceeds the limit of {self.receiver.max_body} bytes")
        if self.early is None:
            self.body.append(body)

    def on_message_complete(self) -> None:
        reply = self.early
        if reply is None:
            assert self.signal is not None
            body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
            content_type = self.headers.get(b"content-type", b"").lower()
            gzipped = self.headers.get(b"content-encoding", b"").strip().lower() == b"gzip"
            reply = self.receiver.handle_otlp(self.signal, body, b"json" in content_type, gzipped)
        self._answer(reply)
        self._reset()

    # --- answers and timeouts ----------------------------------------------------------------------

    def _answer(self, reply: Reply, *, discard: bool = False) -> None:
        transport = self.transport
        if transport is None:
            return
        keep_alive = not reply.close and not self.receiver.closing and self.parser.should_keep_alive()
        transport.write(reply.encode(keep_alive))
        self.busy_since = None
        self.last_active = self.loop.time()
        if keep_alive:
            return
        if discard and transport.can_write_eof():
            # The client may still be sending the body we refused: read and ignore it for a moment, so it
            # gets to read the answer instead of a connection reset.
            transport.write_eof()
            self.discarding_until = self.loop.time() + DISCARD_S
        else:
            transport.close()

    def check_timeouts(self, now: float) -> None:
        if self.transport is None:
            return
        if self.discarding_until is not None:
            if now > self.discarding_until:
                self.close()
        elif self.busy_since is not None:
            if now - self.busy_since > self.receiver.receive_timeout_s:
                timeout = self.receiver.receive_timeout_s
                self._answer(_text(408, f"request not received completely within {timeout:g} s", close=True))
        elif now - self.last_active > self.receiver.idle_timeout_s:
            self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
