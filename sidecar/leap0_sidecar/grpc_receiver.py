"""The OTLP/gRPC receiver: TraceService, MetricsService and LogsService ``Export`` on grpcio's asyncio server.

Generic handlers take the request as bytes (no deserializer): the pipeline rewrites the resources without
decoding the spans, which measured about a third cheaper than generated stubs. Answers follow the OTLP
specification: an empty ``Export*ServiceResponse``; ``INVALID_ARGUMENT`` with the parser's reason for
malformed data; ``RESOURCE_EXHAUSTED`` with ``RetryInfo`` when the queue is full (in
``grpc-status-details-bin`` as the specification says, and in ``google.rpc.retryinfo-bin``, where the
OpenTelemetry Python exporter reads it); ``UNAVAILABLE`` while shutting down.

Memory: grpcio reads a unary handler's message whole before the handler runs, and holds it three times over
while handing it to Python (its buffer, a bytes copy of each received slice, their concatenation). So each
method is served by a client-streaming handler, which runs *before* the message is read (the wire format is
the same as unary: one message, then the end of the stream) and decides when to read it: one call at a time,
once three times the largest message fits in the queue's bound. Calls waiting for their turn hold only what
HTTP/2 flow control lets a client send unasked (one stream window); past ``MAX_WAITING`` of them, a call is
refused unread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc
import grpc.aio

import leap0_contract as contract
from leap0_contract import Signal
from leap0_sidecar import malloc, otlp
from leap0_sidecar.identity import WireError
from leap0_sidecar.pipeline import Outcome, Pipeline

log = logging.getLogger("leap0_sidecar.grpc")

# What receiving one message may cost at most, in multiples of the largest message: grpcio's buffer, a copy of
# each of its slices, then their concatenation handed to the handler (reserved in the queue's bound while the
# message is received; measured: 11.2 MiB for a 3.7 MiB message).
RECEIVE_COST = 3
# Calls that may wait for their turn to be received; one more is refused unread (RESOURCE_EXHAUSTED with
# RetryInfo, which the OTel SDKs retry). An app's SDK exports its three signals concurrently, at most.
MAX_WAITING = 16
# After receiving a message this large, the heap's freed pages are given back (see malloc.trim).
TRIM_FROM = 256 * 1024


class BindError(OSError):
    pass


class GrpcReceiver:
    """The three Export methods. A message is read only in its turn (one at a time) and once its reservation
    (``RECEIVE_COST`` times the largest message) fits in the queue's bound; otherwise the call is refused
    unread."""

    def __init__(self, pipeline: Pipeline, *, max_message_bytes: int, receive_timeout_s: float) -> None:
        self.pipeline = pipeline
        self.max_message_bytes = max_message_bytes
        self.receive_timeout_s = receive_timeout_s
        # (a queue smaller than that still takes a message when it is empty; see docs/sidecar.md)
        self.reservation = min(RECEIVE_COST * max_message_bytes, pipeline.queue.capacity)
        self.server: grpc.aio.Server | None = None
        self.waiting = 0  # calls admitted and not yet received (waiting for their turn, or receiving)
        self._turn = asyncio.Lock()

    async def _refuse(self, context: grpc.aio.ServicerContext[bytes, bytes], outcome: Outcome) -> None:
        """Abort with RESOURCE_EXHAUSTED (queue full) or UNAVAILABLE (stopping), both with RetryInfo."""
        delay = self.pipeline.retry_after_s()
        if outcome is Outcome.QUEUE_FULL:
            code, message = (
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "the sidecar's export queue is full (the upstream is slow or unreachable): retry later",
            )
        else:
            code, message = grpc.StatusCode.UNAVAILABLE, "the sidecar is shutting down"
        status = otlp.status(code.value[0], message, retry_delay_s=delay)
        await context.abort(
            code,
            message,
            trailing_metadata=(
                ("grpc-status-details-bin", status.SerializeToString()),
                ("google.rpc.retryinfo-bin", otlp.retry_info(delay).SerializeToString()),
            ),
        )

    def _refused(self, signal: Signal, outcome: Outcome) -> Outcome:
        self.pipeline.refuse(signal, "grpc", outcome)
        return outcome

    async def _take(self, signal: Signal, context: grpc.aio.ServicerContext[bytes, bytes]) -> Outcome:
        """Receive the call's message in its turn, with its reservation held, and hand it to the pipeline;
        or refuse it unread."""
        if not self.pipeline.accepting:
            return self._refused(signal, Outcome.SHUTTING_DOWN)
        if self.waiting >= MAX_WAITING:
            return self._refused(signal, Outcome.QUEUE_FULL)
        queue = self.pipeline.queue
        self.waiting += 1
        try:
            async with self._turn:
                if not self.pipeline.accepting:
                    return self._refused(signal, Outcome.SHUTTING_DOWN)
                if not queue.reserve(self.reservation):
                    return self._refused(signal, Outcome.QUEUE_FULL)
                try:
                    async with asyncio.timeout(self.receive_timeout_s):
                        message = await context.read()
                except TimeoutError:
                    await context.abort(
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        f"the request was not received within {self.receive_timeout_s:g} s",
                    )
                finally:
                    queue.release(self.reservation)
        finally:
            self.waiting -= 1
        if not isinstance(message, bytes):  # (EOF: the client ended the call without a message)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the call ended without a request message")
        if len(message) >= TRIM_FROM:
            malloc.trim()
        try:
            return self.pipeline.ingest(signal, message, "grpc")
        except WireError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid protobuf: {exc}")
            raise  # (abort raises)

    def _handler(self, signal: Signal) -> grpc.RpcMethodHandler:
        async def export(
            requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]
        ) -> bytes:
            outcome = await self._take(signal, context)
            if outcome is not Outcome.ACCEPTED:
                await self._refuse(context, outcome)
            return b""

        return grpc.stream_unary_rpc_method_handler(export)

    async def start(self, host: str, port: int) -> int:
        self.server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", self.max_message_bytes),
                # Fail when the port is taken instead of sharing it with another process.
                ("grpc.so_reuseport", 0),
                # Memory: without BDP probing the HTTP/2 window stays small, so a call waiting for its turn
                # holds little; one stream per connection (a client's further calls wait on its side).
                ("grpc.http2.bdp_probe", 0),
                ("grpc.max_concurrent_streams", 1),
            ]
        )
        self.server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(service, {"Export": self._handler(signal)})
                for signal, service in contract.GRPC_SERVICES.items()
            )
        )
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            bound = self.server.add_insecure_port(address)
        except RuntimeError as exc:
            raise BindError(f"cannot listen on {address} (OTLP/gRPC): {exc}") from None
        if not bound:
            raise BindError(f"cannot listen on {address} (OTLP/gRPC)")
        await self.server.start()
        return int(bound)

    async def close(self, grace_s: float = 1.0) -> None:
        if self.server is not None:
            await self.server.stop(grace_s)
