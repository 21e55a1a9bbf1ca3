"""The OTLP/HTTP receiver (and the health endpoint): HTTP/1.1 with keep-alive, h11 on asyncio streams.

h11 is the HTTP/1.1 state machine (parsing, framing, keep-alive, chunked bodies); this module only routes and
answers as the OTLP/HTTP specification says:

- ``POST /v1/traces``, ``/v1/metrics``, ``/v1/logs`` with ``application/x-protobuf`` or ``application/json``
  bodies, optionally ``Content-Encoding: gzip``: 200 with an empty ``Export*ServiceResponse`` in the request's
  encoding (nothing is partially rejected: the sidecar forwards everything it accepts).
- 400 with a ``google.rpc.Status`` (in the request's encoding) saying the parser's reason for malformed data;
  415 for another content type or content encoding; 413 for a body over the limit, compressed or decompressed
  (inflating stops at the limit, so a gzip bomb costs nothing); 503 with ``Retry-After`` when the queue is
  full or the sidecar is stopping (the OTel SDKs retry); 404 for other paths, 405 for other methods; 408 when
  a request is not received completely within the receive timeout (slow or stuck clients).
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

import h11

from leap0_sidecar import otlp
from leap0_sidecar import settings as s
from leap0_sidecar.identity import WireError
from leap0_sidecar.pipeline import Outcome, Pipeline
from leap0_sidecar.settings import Signal

log = logging.getLogger("leap0_sidecar.http")

READ_SIZE: Final = 65536
MAX_HEAD_BYTES: Final = 64 * 1024
_PATH_SIGNALS: Final[dict[str, Signal]] = {path: signal for signal, path in s.SIGNAL_PATHS.items()}
_HEALTH_PATHS: Final = (s.SIDECAR_HEALTH_PATH, s.SIDECAR_READY_PATH)
_REASONS: Final = {status.value: status.phrase.encode() for status in http.HTTPStatus}


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


def _text(status: int, message: str, **kwargs: object) -> Reply:
    return Reply(status, (message + "\n").encode(), **kwargs)  # type: ignore[arg-type]


class HttpReceiver:
    """One listening socket; ``otlp=False`` serves only the health paths (the pod-IP health listener)."""

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        otlp_routes: bool,
        max_body: int,
        receive_timeout_s: float,
        idle_timeout_s: float = 60.0,
        health: Callable[[str], tuple[bool, dict[str, object]]] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.otlp_routes = otlp_routes
        self.max_body = max_body
        self.receive_timeout_s = receive_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.health = health
        self.server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self.closing = False

    async def start(self, host: str, port: int) -> int:
        self.server = await asyncio.start_server(self._serve, host, port, limit=READ_SIZE, reuse_address=True)
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening, close idle kept-alive connections (a request being handled is answered first)."""
        self.closing = True
        if self.server is not None:
            self.server.close()
        for writer in list(self._connections):
            writer.close()
        if self.server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)

    # --- connection loop -------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self._connections.add(writer)
        try:
            while not self.closing:
                if not conn.trailing_data[0]:
                    try:
                        data = await asyncio.wait_for(reader.read(READ_SIZE), self.idle_timeout_s)
                    except TimeoutError:
                        return
                    if not data:
                        return
                    conn.receive_data(data)
                self._connections.discard(writer)  # busy: not closed by close() until answered
                try:
                    async with asyncio.timeout(self.receive_timeout_s):
                        reply = await self._one_request(conn, reader)
                except TimeoutError:
                    reply = _text(
                        408,
                        f"request not received completely within {self.receive_timeout_s:g} s",
                        close=True,
                    )
                except h11.RemoteProtocolError as exc:
                    reply = _text(exc.error_status_hint, f"bad HTTP request: {exc}", close=True)
                except BodyTooLarge as exc:
                    reply = _text(413, str(exc), close=True)
                if reply is None:
                    return
                if self.closing:
                    reply.close = True
                if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
                    return
                self._send(conn, writer, reply)
                await writer.drain()
                state: object = conn.our_state  # (changed by _send; a fresh read for the type checker)
                if reply.close or state is not h11.DONE or conn.their_state is not h11.DONE:
                    if reply.status == 413:
                        await self._discard(reader, writer)
                    return
                conn.start_next_cycle()
                self._connections.add(writer)
        except (ConnectionError, OSError, h11.LocalProtocolError):
            pass
        except Exception:  # a bug must not take the receiver down: log it, drop the connection
            log.exception("unexpected error handling an HTTP connection")
        finally:
            self._connections.discard(writer)
            writer.close()

    async def _discard(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """After answering early, read (and ignore) what the client still sends, so it sees the answer."""
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()
            async with asyncio.timeout(2):
                received = 0
                while received < 4 * self.max_body:
                    chunk = await reader.read(READ_SIZE)
                    if not chunk:
                        break
                    received += len(chunk)

    @staticmethod
    def _send(conn: h11.Connection, writer: asyncio.StreamWriter, reply: Reply) -> None:
        headers = [
            ("content-type", reply.content_type),
            ("content-length", str(len(reply.body))),
            *reply.headers,
        ]
        if reply.close:
            headers.append(("connection", "close"))
        reason = _REASONS.get(reply.status, b"")
        # One write (one syscall, one segment) for head and body.
        writer.writelines(
            [
                conn.send(h11.Response(status_code=reply.status, headers=headers, reason=reason)) or b"",
                conn.send(h11.Data(data=reply.body)) or b"",
                conn.send(h11.EndOfMessage()) or b"",
            ]
        )

    @staticmethod
    async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> h11.Event | type[h11.PAUSED]:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            conn.receive_data(await reader.read(READ_SIZE))

    async def _read_body(self, conn: h11.Connection, reader: asyncio.StreamReader) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await self._next_event(conn, reader)
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > self.max_body:
                    raise BodyTooLarge(f"the body exceeds the limit of {self.max_body} bytes")
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
            else:  # ConnectionClosed mid-body
                raise ConnectionResetError("client closed the connection mid-body")

    # --- routing ----------------------------------------------------------------------------------

    async def _one_request(self, conn: h11.Connection, reader: asyncio.StreamReader) -> Reply | None:
        event = await self._next_event(conn, reader)
        if not isinstance(event, h11.Request):
            return None  # ConnectionClosed
        method = event.method.decode("ascii", "replace")
        path = event.target.decode("ascii", "replace").split("?", 1)[0]
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in event.headers}

        if path in _HEALTH_PATHS and self.health is not None:
            await self._skip_body(conn, reader, headers)
            if method not in ("GET", "HEAD"):
                return _text(405, f"{path} accepts GET", headers=(("allow", "GET, HEAD"),))
            ok, details = self.health(path)
            body = json.dumps({"status": "ok" if ok else "unavailable", **details}).encode()
            return Reply(200 if ok else 503, body, "application/json")

        signal = _PATH_SIGNALS.get(path) if self.otlp_routes else None
        if signal is None:
            await self._skip_body(conn, reader, headers)
            return _text(404, f"no such path: {path}")
        if method != "POST":
            await self._skip_body(conn, reader, headers)
            return _text(405, f"{path} accepts POST", headers=(("allow", "POST"),))

        content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type not in (otlp.CONTENT_PROTOBUF, otlp.CONTENT_JSON):
            await self._skip_body(conn, reader, headers)
            return _text(
                415,
                f"unsupported content type {content_type or '(none)'!r}: "
                f"use {otlp.CONTENT_PROTOBUF} or {otlp.CONTENT_JSON}",
            )
        json_encoding = content_type == otlp.CONTENT_JSON
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("identity", "gzip"):
            await self._skip_body(conn, reader, headers)
            return _text(415, f"unsupported content encoding {encoding!r}: use gzip or none")
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            raise BodyTooLarge(f"the body ({declared} bytes) exceeds the limit of {self.max_body} bytes")

        body = await self._read_body(conn, reader)
        return self._handle_otlp(signal, body, json_encoding, encoding == "gzip")

    def _handle_otlp(self, signal: Signal, body: bytes, json_encoding: bool, gzipped: bool) -> Reply:
        content_type = otlp.CONTENT_JSON if json_encoding else otlp.CONTENT_PROTOBUF

        def bad(reason: str) -> Reply:
            return Reply(400, otlp.status_body(otlp.INVALID_ARGUMENT, reason, json_encoding), content_type)

        try:
            if gzipped:
                body = gunzip_limited(body, self.max_body)
            if json_encoding:
                body = otlp.json_to_protobuf(signal, body)
            outcome = self.pipeline.ingest(signal, body, "http")
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

    async def _skip_body(
        self, conn: h11.Connection, reader: asyncio.StreamReader, headers: dict[str, str]
    ) -> None:
        """Read and ignore a request body we answer without using, so the connection can be kept alive."""
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            raise BodyTooLarge(f"the body ({declared} bytes) exceeds the limit of {self.max_body} bytes")
        await self._read_body(conn, reader)
