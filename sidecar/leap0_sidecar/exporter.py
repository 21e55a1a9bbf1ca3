"""Forwarding: one worker per signal sends queued requests to the upstream as OTLP/HTTP protobuf.

The HTTP/1.1 client writes the request itself (a fixed head, Content-Length framing) and parses the answer
with httptools, on asyncio streams with one keep-alive connection per signal: the same parser as the receiver,
so no extra dependency, and cheaper than aiohttp, urllib3 in a thread, or h11 for one request at a time. Retry
policy (pure functions below): 429, 502, 503, 504, connection errors and timeouts are retried with exponential
backoff and jitter, or after ``Retry-After`` when the upstream sends it; every other status is permanent and
the data is dropped and counted. Retries go on while the data is queued (the queue's byte bound, and the
receivers' pushback when it is full, keep that finite); at shutdown they stop at the deadline.

A batch (several received requests sent as one) refused with 400 or 413 is split in halves and each half
sent again, down to single requests: a request the upstream cannot parse (the receivers check the outer
levels of the protobuf, not every span) is dropped alone instead of taking the rest of its batch with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import httptools

from leap0_contract import Signal
from leap0_sidecar.config import Upstream
from leap0_sidecar.otlp import RESPONSE_TYPES
from leap0_sidecar.queue import Buffer, ExportQueue, Request, parts_of
from leap0_sidecar.self_metrics import Counters
from leap0_sidecar.token import BearerToken

log = logging.getLogger("leap0_sidecar.exporter")

RETRYABLE_STATUS: Final = frozenset({429, 502, 503, 504})
USER_AGENT: Final = "leap0-sidecar"
SHUTDOWN_RETRY_S: Final = 1.0  # the longest wait between attempts while flushing at shutdown
IN_FLIGHT_GRACE_S: Final = 1.0  # at the shutdown deadline, how long an attempt under way may still finish
SPLIT_STATUS: Final = frozenset({400, 413})  # a batch refused with these is sent again in halves
_WRITE_SLICE: Final = 64 * 1024  # a large request body is written in slices, waiting for each to leave
_WRITE_WHOLE: Final = 512 * 1024  # a body up to this size is written in one piece (one send)
_MAX_RESPONSE_BODY: Final = 64 * 1024
_RESERVED_HEADERS: Final = frozenset(
    {"host", "content-length", "content-type", "content-encoding", "connection"}
)


# --- Pure policy --------------------------------------------------------------------------------


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date); None if absent or invalid."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    import email.utils  # only here: the module costs memory and HTTP dates are rare

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def backoff_delay(attempt: int, initial: float, maximum: float, rand: float) -> float:
    """Exponential backoff, +-50% jitter: ``initial * 2**attempt`` up to ``maximum``; ``rand`` in [0, 1)."""
    base: float = min(maximum, initial * (2.0 ** min(attempt, 32)))
    return base * (0.5 + rand)


def is_retryable(status: int) -> bool:
    return status in RETRYABLE_STATUS


# --- The HTTP client ------------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


class UpstreamError(Exception):
    """The request could not be delivered (connection refused or reset, timeout, protocol error)."""


if TYPE_CHECKING:
    import ssl


def _ssl_context(upstream: Upstream) -> ssl.SSLContext | None:
    if upstream.scheme != "https":
        return None
    import ssl  # only for https upstreams: see __main__.py

    context = ssl.create_default_context(cafile=upstream.ca_file)
    if upstream.client_cert:
        context.load_cert_chain(upstream.client_cert, upstream.client_key)
    return context


class _Collector:
    """httptools callbacks for one response."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.size = 0
        self.head_done = False
        self.done = False
        self.keep_alive = False
        self.parser: httptools.HttpResponseParser | None = None

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.head_done = True
        # (llhttp resets its flags once the message is complete: ask now)
        self.keep_alive = self.parser is not None and self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        if self.size < _MAX_RESPONSE_BODY:
            self.body.append(body)
            self.size += len(body)

    def on_message_complete(self) -> None:
        self.done = True


_CLIENT_ERRORS = (OSError, EOFError, httptools.HttpParserError)


class HttpClient:
    """POSTs to one upstream URL over a kept-alive HTTP/1.1 connection."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self._ssl = _ssl_context(upstream)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        default_port = 443 if upstream.scheme == "https" else 80
        host = f"[{upstream.host}]" if ":" in upstream.host else upstream.host
        host_header = host if upstream.port == default_port else f"{host}:{upstream.port}"
        # The platform's token, when the operator gave one, is the request's only Authorization.
        self._token = BearerToken(upstream.token_file) if upstream.token_file else None
        reserved = _RESERVED_HEADERS | ({"authorization"} if self._token else set())
        headers = [
            ("host", host_header),
            ("user-agent", USER_AGENT),
            ("content-type", "application/x-protobuf"),
            *[(k, v) for k, v in upstream.headers if k not in reserved],
        ]
        if upstream.gzip:
            headers.append(("content-encoding", "gzip"))
        lines = [f"POST {upstream.target} HTTP/1.1", *(f"{k}: {v}" for k, v in headers)]
        self._head = ("\r\n".join(lines) + "\r\n").encode("latin-1")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def post(self, body: list[Buffer], timeout_s: float | None = None) -> Response:
        """One request whose body is the concatenation of ``body``; raises UpstreamError when no response
        arrives within the timeout (the upstream's, or ``timeout_s``)."""
        timeout = timeout_s or self.upstream.timeout_s
        try:
            async with asyncio.timeout(timeout):
                reused = self._writer is not None
                try:
                    return await self._post(body)
                except _CLIENT_ERRORS:
                    if not reused:
                        raise
                    # The server may have closed the idle kept-alive connection: once more, on a fresh one.
                    self.close()
                    return await self._post(body)
        except TimeoutError:
            self.close()
            raise UpstreamError(f"no response within {timeout:g} s") from None
        except _CLIENT_ERRORS as exc:
            self.close()
            raise UpstreamError(str(exc) or type(exc).__name__) from None

    async def _post(self, body: list[Buffer]) -> Response:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(
                self.upstream.host,
                self.upstream.port,
                ssl=self._ssl,
                server_hostname=self.upstream.host if self._ssl else None,
            )
        reader, writer = self._reader, self._writer
        assert reader is not None
        size = sum(len(part) for part in body)
        token = self._token.header_line() if self._token else b""
        head = self._head + token + b"content-length: %d\r\n\r\n" % size
        if size <= _WRITE_WHOLE:
            writer.write(b"".join([head, *body]))
            await writer.drain()
        else:
            # In slices of about _WRITE_SLICE, each handed over once the previous one left: the transport
            # never holds a copy of a whole large batch.
            for piece in _slices(head, body, _WRITE_SLICE):
                writer.write(piece)
                await writer.drain()
        collector = _Collector()
        parser = collector.parser = httptools.HttpResponseParser(collector)
        while not collector.done:
            data = await reader.read(65536)
            if not data:
                if collector.head_done:  # a body delimited by the end of the connection
                    self.close()
                    break
                raise EOFError("connection closed by the upstream before a complete response")
            parser.feed_data(data)
        if not collector.keep_alive:
            self.close()
        return Response(parser.get_status_code(), collector.headers, b"".join(collector.body))


def _slices(head: bytes, parts: list[Buffer], size: int) -> Iterator[Buffer]:
    """``head`` and ``parts`` as consecutive pieces of about ``size`` bytes: small parts joined, large ones
    cut (as views)."""
    waiting: list[Buffer] = [head]
    waiting_bytes = len(head)
    for part in parts:
        view = memoryview(part)
        for start in range(0, len(part), size):
            piece = view[start : start + size]
            waiting.append(piece)
            waiting_bytes += len(piece)
            if waiting_bytes >= size:
                yield waiting[0] if len(waiting) == 1 else b"".join(waiting)
                waiting, waiting_bytes = [], 0
    if waiting:
        yield waiting[0] if len(waiting) == 1 else b"".join(waiting)


# --- Workers --------------------------------------------------------------------------------------


class Exporter:
    """Drains the queue of each configured signal to its upstream."""

    def __init__(
        self,
        upstreams: dict[Signal, Upstream | None],
        queue: ExportQueue,
        counters: Counters,
        *,
        retry_initial_s: float,
        retry_max_s: float,
        max_batch_bytes: int,
        batch_linger_s: float = 0.0,
        batch_target_bytes: int = 256 * 1024,
    ) -> None:
        self.upstreams = upstreams
        self.queue = queue
        self.counters = counters
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.max_batch_bytes = max_batch_bytes
        self.batch_linger_s = batch_linger_s
        self.batch_target_bytes = batch_target_bytes
        self.stopping = False  # shutdown: flush without lingering
        self._stopping_event = asyncio.Event()
        self.closing = False  # the shutdown deadline: no more attempts
        self._closing_event = asyncio.Event()
        self.inflight: dict[Signal, int] = {}
        self.attempting: dict[Signal, int] = dict.fromkeys(upstreams, 0)
        # Requests whose attempt was cut off at the deadline: the upstream may or may not have them.
        self.unknown: dict[Signal, int] = dict.fromkeys(upstreams, 0)
        self._tasks: list[asyncio.Task[None]] = []
        self._clients: list[HttpClient] = []

    def start(self) -> None:
        for signal, upstream in self.upstreams.items():
            if upstream is not None:
                client = HttpClient(upstream)
                self._clients.append(client)
                self._tasks.append(asyncio.create_task(self._run(signal, client), name=f"export-{signal}"))

    def flush_now(self) -> None:
        """No more lingering: send what is queued at once (shutdown)."""
        self.stopping = True
        self._stopping_event.set()  # cut short the backoff sleeps: try now, then often

    async def stop(self) -> None:
        """Stop the workers (the shutdown deadline). A worker waiting to retry stops at once, and its data is
        counted as dropped (reason ``shutdown``); an attempt under way gets IN_FLIGHT_GRACE_S to finish, and
        if it does not, its data is counted in ``unknown`` (the upstream may have it), not as dropped."""
        self.flush_now()
        self.closing = True
        self._closing_event.set()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=IN_FLIGHT_GRACE_S)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for client in self._clients:
            client.close()

    async def _run(self, signal: Signal, client: HttpClient) -> None:
        while not self.closing:
            await self.queue.wait(signal)
            if (
                self.batch_linger_s
                and not self.stopping
                and self.queue.waiting_bytes(signal) < self.batch_target_bytes
            ):
                # Let more requests of the signal arrive: one upstream request for many received ones.
                await asyncio.sleep(self.batch_linger_s)
            if self.closing:
                return
            batch = self.queue.take(signal, self.max_batch_bytes)
            if not batch:
                continue
            nbytes = sum(len(b) for b in batch)
            self.inflight[signal] = len(batch)
            try:
                await self._deliver_batch(signal, client, batch)
            finally:
                # Freed before it is counted free (held while waiting for the next batch, it would be
                # beyond the queue's bound).
                del batch
                self.inflight[signal] = 0
                self.queue.done(nbytes)

    async def _deliver_batch(self, signal: Signal, client: HttpClient, batch: list[Request]) -> None:
        """Deliver requests sent as one; refused with 400 or 413, the batch is sent again in halves."""
        if not await self._deliver(signal, client, batch, split=len(batch) > 1):
            return
        log.info(
            "%s: %s refused a %d-request batch (as malformed or too large): sending it again in halves",
            signal,
            client.upstream.display,
            len(batch),
        )
        half = len(batch) // 2
        await self._deliver_batch(signal, client, batch[:half])
        await self._deliver_batch(signal, client, batch[half:])

    async def _deliver(
        self, signal: Signal, client: HttpClient, batch: list[Request], *, split: bool
    ) -> bool:
        """Deliver requests as one, retrying as needed; True if the batch should be split (a 400 or 413 and
        ``split``). Counts what is forwarded and dropped, at the deadline too."""
        requests = len(batch)
        if self.closing:  # (the second half of a split batch, at the deadline)
            self.counters.dropped(signal, "shutdown", requests)
            return False
        size = sum(len(request) for request in batch)
        payload: list[Buffer] = parts_of(batch)
        if client.upstream.gzip:
            compressor = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip, level 1
            payload = [*(compressor.compress(part) for part in payload), compressor.flush()]
        attempt = 0
        url = client.upstream.display  # for the logs: no credentials, no query string
        while True:
            retry_after: float | None = None
            try:
                self.attempting[signal] = requests
                response = await client.post(payload)
            except UpstreamError as exc:
                reason = f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc)
            except asyncio.CancelledError:
                self.unknown[signal] += requests  # cancelled while the upstream may have had it
                raise
            else:
                if 200 <= response.status < 300:
                    self.counters.forwarded(signal, requests)
                    if attempt:
                        log.info("%s: delivered to %s after %d retries", signal, url, attempt)
                    _log_partial_success(signal, response)
                    return False
                if response.status in SPLIT_STATUS and split:
                    return True
                if not is_retryable(response.status):
                    self.counters.dropped(signal, "permanent_error", requests)
                    log.warning(
                        "%s: %s answered %d, a permanent error: dropped %d request(s) (%d bytes): %s",
                        signal,
                        url,
                        response.status,
                        requests,
                        size,
                        response.body[:300].decode("utf-8", "replace"),
                    )
                    return False
                reason = f"HTTP {response.status}"
                retry_after = parse_retry_after(response.headers.get("retry-after"), time.time())
            finally:
                self.attempting[signal] = 0
            delay = (
                retry_after
                if retry_after is not None
                else backoff_delay(attempt, self.retry_initial_s, self.retry_max_s, random.random())
            )
            self.counters.retried(signal)
            (log.warning if attempt == 0 else log.debug)(
                "%s: %s failed (%s); retrying in %.1f s (queue: %d bytes)",
                signal,
                url,
                reason,
                delay,
                self.queue.used,
            )
            attempt += 1
            if self.stopping:
                delay = min(delay, SHUTDOWN_RETRY_S)
            with contextlib.suppress(TimeoutError):  # (a shutdown ends the wait early)
                await asyncio.wait_for(
                    (self._closing_event if self.stopping else self._stopping_event).wait(), delay
                )
            if self.closing:  # the deadline passed while waiting to retry: this data is lost
                self.counters.dropped(signal, "shutdown", requests)
                return False


def _log_partial_success(signal: Signal, response: Response) -> None:
    if not response.body or "protobuf" not in response.headers.get("content-type", ""):
        return
    try:
        message = RESPONSE_TYPES[signal].FromString(response.body)
    except Exception:  # an unparseable success body changes nothing: the data was accepted
        return
    partial = message.partial_success  # type: ignore[attr-defined]
    rejected = sum(
        getattr(partial, f, 0) for f in ("rejected_spans", "rejected_data_points", "rejected_log_records")
    )
    if rejected or partial.error_message:
        log.warning("%s: the upstream rejected %d item(s): %s", signal, rejected, partial.error_message)
