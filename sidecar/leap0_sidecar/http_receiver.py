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

Memory stays bounded whatever a client sends: a request's bytes are reserved in the export queue's byte bound
from its head on (503 with ``Retry-After`` at once when they do not fit, the body then read and discarded);
data is parsed in slices of ``FEED_BYTES`` and a connection is not read while its unsent answers exceed
``WRITE_BUFFER_HIGH`` (a client that pipelines requests without reading the answers stops being read);
OTLP/JSON is converted in a worker thread, one request at a time, one span (metric, log record) at a time
(otlp.json_to_protobuf), while its connection waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import httptools

import leap0_contract as contract
from leap0_contract import Signal
from leap0_sidecar import otlp
from leap0_sidecar.identity import WireError
from leap0_sidecar.pipeline import Outcome, Pipeline
from leap0_sidecar.queue import ExportQueue

log = logging.getLogger("leap0_sidecar.http")

MAX_HEAD_BYTES: Final = 64 * 1024
DISCARD_S: Final = 2.0
# Data is handed to the parser in slices of this size, so that reading stops soon after the unsent answers
# pass WRITE_BUFFER_HIGH (a slice of pipelined GETs makes at most about ten times its size in answers).
FEED_BYTES: Final = 64 * 1024
WRITE_BUFFER_HIGH: Final = 64 * 1024
# A body of known length above this is filled in place (one copy of it in memory, not pieces and their join).
FILL_IN_PLACE_BYTES: Final = 256 * 1024
_PATH_SIGNALS: Final[dict[str, Signal]] = {path: signal for signal, path in contract.SIGNAL_PATHS.items()}
_HEALTH_PATHS: Final = (contract.SIDECAR_HEALTH_PATH, contract.SIDECAR_READY_PATH)
_REASONS: Final = {status.value: status.phrase for status in http.HTTPStatus}
_JSON_MEDIA_TYPE: Final = otlp.CONTENT_JSON.encode()
_HEADERS_USED: Final = frozenset({b"content-type", b"content-encoding", b"content-length", b"expect"})


class BodyTooLarge(Exception):
    pass


class GzipError(ValueError):
    pass


def gunzip_limited(data: bytes | bytearray, limit: int) -> bytes:
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
        self._json_slot = asyncio.Semaphore(1)  # OTLP/JSON conversions at once

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
            if connection.busy_since is None and connection.job is None:
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
        """An answer decided from the head alone, or the signal of an OTLP request to read the body of.

        JSON or protobuf is decided by the media type alone (``application/x-protobuf; profile=json`` is
        protobuf)."""
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
        content_type = otlp.media_type(headers.get(b"content-type", b"").decode("latin-1"))
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

    def refuse(self, signal: Signal, json_encoding: bool) -> Reply:
        """503 for a request whose bytes do not fit in the queue's bound (counted as refused)."""
        self.pipeline.refuse(signal, "http")
        return self._unavailable(Outcome.QUEUE_FULL, json_encoding)

    def _unavailable(self, outcome: Outcome, json_encoding: bool) -> Reply:
        delay = self.pipeline.retry_after_s()
        if outcome is Outcome.QUEUE_FULL:
            message = "the sidecar's export queue is full (the upstream is slow or unreachable): retry later"
        else:
            message = "the sidecar is shutting down"
        return Reply(
            503,
            otlp.status_body(otlp.UNAVAILABLE, message, json_encoding, retry_delay_s=delay),
            _content_type(json_encoding),
            headers=(("retry-after", str(delay)),),
            close=outcome is Outcome.SHUTTING_DOWN,
        )

    def _bad(self, reason: str, json_encoding: bool) -> Reply:
        return Reply(
            400, otlp.status_body(otlp.INVALID_ARGUMENT, reason, json_encoding), _content_type(json_encoding)
        )

    def inflate(self, request: _Request) -> Reply | None:
        """Decompress a gzip body in place (its inflated bytes reserved too); an answer if that fails."""
        if not request.gzipped:
            return None
        try:
            inflated = gunzip_limited(request.body, self.max_body)
        except BodyTooLarge as exc:
            return _text(413, str(exc), close=True)
        except GzipError as exc:
            return self._bad(str(exc), request.json_encoding)
        if not self.pipeline.queue.reserve(len(inflated)):
            return self.refuse(request.signal, request.json_encoding)
        request.reserved += len(inflated)
        request.body = inflated
        return None

    def ingest(self, signal: Signal, protobuf: bytes | bytearray, json_encoding: bool) -> Reply:
        """Stamp and queue a protobuf request (its reservation released just before: the queue takes over)."""
        try:
            outcome = self.pipeline.ingest(signal, protobuf, "http")
        except WireError as exc:
            return self._bad(f"invalid protobuf: {exc}", json_encoding)
        if outcome is Outcome.ACCEPTED:
            return _OK_JSON if json_encoding else _OK_PROTOBUF
        return self._unavailable(outcome, json_encoding)

    def handle_protobuf(self, request: _Request) -> Reply:
        try:
            reply = self.inflate(request)
            if reply is not None:
                return reply
            request.release(self.pipeline.queue)
            return self.ingest(request.signal, request.body, request.json_encoding)
        finally:
            request.release(self.pipeline.queue)

    async def handle_json(self, request: _Request) -> Reply:
        """Convert OTLP/JSON in a worker thread (one request at a time), then ingest it."""
        try:
            reply = self.inflate(request)
            if reply is not None:
                return reply
            async with self._json_slot:
                try:
                    protobuf = await asyncio.to_thread(otlp.json_to_protobuf, request.signal, request.body)
                except otlp.JsonTooLarge as exc:
                    return Reply(
                        413,
                        otlp.status_body(otlp.INVALID_ARGUMENT, str(exc), True),
                        otlp.CONTENT_JSON,
                    )
                except otlp.JsonError as exc:
                    return self._bad(str(exc), True)
            request.body = b""
            request.release(self.pipeline.queue)
            return self.ingest(request.signal, protobuf, True)
        finally:
            request.release(self.pipeline.queue)


def _content_type(json_encoding: bool) -> str:
    return otlp.CONTENT_JSON if json_encoding else otlp.CONTENT_PROTOBUF


_OK_PROTOBUF: Final = Reply(200, otlp.success_body(False), otlp.CONTENT_PROTOBUF)
_OK_JSON: Final = Reply(200, otlp.success_body(True), otlp.CONTENT_JSON)


@dataclass(slots=True)
class _Request:
    """A complete OTLP request waiting to be handled, with the queue bytes reserved for it."""

    signal: Signal
    body: bytes | bytearray
    json_encoding: bool
    gzipped: bool
    reserved: int

    def release(self, queue: ExportQueue) -> None:
        if self.reserved:
            queue.release(self.reserved)
            self.reserved = 0


class _Connection(asyncio.Protocol):
    """One client connection: httptools calls the ``on_*`` methods while data is fed to it.

    Requests are answered in order. A JSON request is converted in a worker thread (``job``); requests that
    complete meanwhile wait in ``backlog``, and no more data is parsed until the job is done. Unparsed data
    waits in ``pending`` (at most one read) while parsing is held back, and the connection is not read.
    """

    def __init__(self, receiver: HttpReceiver) -> None:
        self.receiver = receiver
        assert receiver.loop is not None
        self.loop = receiver.loop
        self.queue = receiver.pipeline.queue
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.busy_since: float | None = None  # when the current request's first byte arrived
        self.last_active = self.loop.time()
        self.discarding_until: float | None = None
        self.pending = b""
        self.pending_at = 0
        self.writing_paused = False
        self.reading_paused = False
        self.job: asyncio.Task[None] | None = None
        self.backlog: deque[_Request | Reply] = deque()
        self.reserved = 0
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.head_size = 0
        self.body: list[bytes] = []  # a chunked body's pieces
        self.buffer: bytearray | None = None  # a body of known length, filled in place
        self.size = 0
        self.early: Reply | None = None
        self.signal: Signal | None = None
        self.json_encoding = False
        self.declared: int | None = None

    def _release(self) -> None:
        if self.reserved:
            self.queue.release(self.reserved)
            self.reserved = 0

    # --- asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)
        self.receiver.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.receiver.connections.discard(self)
        self.transport = None
        self.pending = b""
        self.body, self.buffer = [], None
        self._release()
        for waiting in self.backlog:
            if isinstance(waiting, _Request):
                waiting.release(self.queue)
        self.backlog.clear()

    def pause_writing(self) -> None:
        self.writing_paused = True  # (the next _feed stops reading)

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._feed()

    def data_received(self, data: bytes) -> None:
        if self.discarding_until is not None or self.transport is None:
            return
        if self.busy_since is None:
            self.busy_since = self.loop.time()
        if self.pending_at < len(self.pending):
            self.pending = self.pending[self.pending_at :] + data
        else:
            self.pending = data
        self.pending_at = 0
        self._feed()

    def _feed(self) -> None:
        """Parse pending data, a slice at a time, while answers are being read and no job runs."""
        if self.transport is None:
            return
        pending = self.pending
        size = len(pending)
        if self.pending_at == 0 and size <= FEED_BYTES and not self.writing_paused and self.job is None:
            self.pending_at = size  # (the common case: one small read, parsed whole)
            if not self._parse(pending):
                return
        while self.pending_at < size and not self.writing_paused and self.job is None:
            start = self.pending_at
            step = FEED_BYTES
            if self.declared is not None:  # the rest of a body answers nothing: it goes in one piece
                step += self.declared - self.size
            self.pending_at = min(size, start + step)
            chunk = (
                pending
                if start == 0 and self.pending_at == size
                else memoryview(pending)[start : self.pending_at]
            )
            if not self._parse(chunk) or self.transport is None or self.transport.is_closing():
                return
            if self.discarding_until is not None:
                return
        if self.pending_at >= size:
            self.pending, self.pending_at = b"", 0
        if self.transport is not None and (self.writing_paused or self.job is not None):
            self.transport.pause_reading()
            self.reading_paused = True
        elif self.reading_paused and self.transport is not None:
            self.transport.resume_reading()
            self.reading_paused = False

    def _parse(self, data: bytes | memoryview) -> bool:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, BodyTooLarge):
                self._answer(_text(413, str(cause), close=True), discard=True)
            else:
                log.error("unexpected error handling an HTTP request", exc_info=cause)
                self._answer(_text(500, "internal error", close=True))
            return False
        except httptools.HttpParserUpgrade:
            self._answer(_text(400, "protocol upgrades are not supported", close=True))
            return False
        except httptools.HttpParserError as exc:
            self._answer(_text(400, f"bad HTTP request: {exc}", close=True))
            return False
        return True

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
        if declared.isdigit():
            self.declared = int(declared)
            if self.declared > self.receiver.max_body:
                raise BodyTooLarge(
                    f"the body ({self.declared} bytes) exceeds the limit of {self.receiver.max_body} bytes"
                )
        if self.early is not None or self.signal is None:
            return
        content_type = self.headers.get(b"content-type", b"")
        self.json_encoding = content_type.split(b";", 1)[0].strip().lower() == _JSON_MEDIA_TYPE
        if self.declared is not None:
            if not self.queue.reserve(self.declared):
                self.early = self.receiver.refuse(self.signal, self.json_encoding)
                return
            self.reserved = self.declared
            if self.declared > FILL_IN_PLACE_BYTES:  # (not worth it for small bodies)
                self.buffer = bytearray(self.declared)
        if self.headers.get(b"expect", b"").lower() == b"100-continue" and self.transport:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # (curl asks before sending a body)

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.receiver.max_body:
            raise BodyTooLarge(f"the body exceeds the limit of {self.receiver.max_body} bytes")
        if self.early is not None:
            return  # read and discarded
        if self.declared is not None:
            if self.buffer is not None:  # (llhttp delivers exactly Content-Length bytes)
                self.buffer[self.size - len(body) : self.size] = body
            else:
                self.body.append(body)
            return
        if self.size > self.reserved:  # a chunked body: reserve as it arrives
            if not self.queue.reserve(self.size - self.reserved):
                assert self.signal is not None
                self._release()
                self.body, self.buffer = [], None
                self.early = self.receiver.refuse(self.signal, self.json_encoding)
                return
            self.reserved = self.size
        if self.buffer is not None:
            self.buffer += body  # (a large buffer grows in place: realloc maps more pages, copies none)
        elif self.size > FILL_IN_PLACE_BYTES:
            # A large chunked body grows in one buffer: joining its pieces at the end would hold it twice.
            self.buffer = bytearray().join([*self.body, body])
            self.body = []
        else:
            self.body.append(body)

    def on_message_complete(self) -> None:
        waiting: _Request | Reply
        if self.early is not None:
            waiting = self.early
            self._release()
        else:
            assert self.signal is not None
            if self.buffer is not None:
                body: bytes | bytearray = self.buffer
            else:
                body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
            self.body, self.buffer = [], None
            gzipped = self.headers.get(b"content-encoding", b"").strip().lower() == b"gzip"
            if not gzipped and not self.json_encoding and self.job is None and not self.backlog:
                # The common case, handled at once: plain protobuf, nothing waiting before it.
                signal = self.signal
                self._release()
                self._reset()
                self._answer(self.receiver.ingest(signal, body, False))
                return
            waiting = _Request(self.signal, body, self.json_encoding, gzipped, self.reserved)
            self.reserved = 0  # (the request holds the reservation now)
        self._reset()
        if self.job is not None or self.backlog:
            self.backlog.append(waiting)
        else:
            self._handle(waiting)

    # --- handling, answers and timeouts -------------------------------------------------------------

    def _handle(self, waiting: _Request | Reply) -> None:
        if isinstance(waiting, Reply):
            self._answer(waiting)
        elif waiting.json_encoding:
            self.busy_since = None
            self.job = self.loop.create_task(self._convert(waiting))
        else:
            self._answer(self.receiver.handle_protobuf(waiting))

    async def _convert(self, request: _Request) -> None:
        try:
            reply = await self.receiver.handle_json(request)
        except Exception:  # (a bug: answered, logged, and the connection goes on)
            log.exception("unexpected error converting an OTLP/JSON request")
            reply = _text(500, "internal error", close=True)
        self.job = None
        self._answer(reply)
        while self.backlog and self.job is None and self.transport is not None:
            self._handle(self.backlog.popleft())
        if self.job is None:
            self._feed()

    def _answer(self, reply: Reply, *, discard: bool = False) -> None:
        transport = self.transport
        if transport is None or transport.is_closing() or self.discarding_until is not None:
            return  # (requests pipelined after one answered with "connection: close" are not answered)
        keep_alive = not reply.close and not self.receiver.closing and self.parser.should_keep_alive()
        transport.write(reply.encode(keep_alive))
        self.busy_since = None
        self.last_active = self.loop.time()
        if keep_alive:
            return
        self.pending = b""
        self.body, self.buffer = [], None
        self._release()
        if discard and transport.can_write_eof():
            # The client may still be sending the body we refused: read and ignore it for a moment, so it
            # gets to read the answer instead of a connection reset.
            transport.write_eof()
            transport.resume_reading()
            self.discarding_until = self.loop.time() + DISCARD_S
        else:
            transport.close()

    def check_timeouts(self, now: float) -> None:
        if self.transport is None or self.job is not None:
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
