"""The OTLP/gRPC receiver: TraceService, MetricsService and LogsService ``Export`` on grpcio's asyncio server.

Generic handlers take the request as bytes (no deserializer): the pipeline rewrites the resources without
decoding the spans, which measured about a third cheaper than generated stubs. Answers follow the OTLP
specification: an empty ``Export*ServiceResponse``; ``INVALID_ARGUMENT`` with the parser's reason for
malformed data; ``RESOURCE_EXHAUSTED`` with ``RetryInfo`` when the queue is full (in
``grpc-status-details-bin`` as the specification says, and in ``google.rpc.retryinfo-bin``, where the
OpenTelemetry Python exporter reads it); ``UNAVAILABLE`` while shutting down.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable

import grpc
import grpc.aio

import leap0_contract as contract
from leap0_contract import Signal
from leap0_sidecar import otlp
from leap0_sidecar.identity import WireError
from leap0_sidecar.pipeline import Outcome, Pipeline

log = logging.getLogger("leap0_sidecar.grpc")


# Calls whose message may be received at once (one per signal: an app's SDK exports the three concurrently).
MAX_RECEIVING = len(contract.SIGNALS)
# How long a call's reservation lasts if its handler never runs (at most the time to receive a message).
RESERVATION_S = 10.0


class BindError(OSError):
    pass


class GrpcReceiver:
    """The three Export methods. A call's message is read only once the largest a message can be is reserved
    in the queue's bound (grpcio reads a unary message whole before the handler runs); when that does not
    fit, the call is refused unread."""

    def __init__(self, pipeline: Pipeline, *, max_message_bytes: int) -> None:
        self.pipeline = pipeline
        self.max_message_bytes = max_message_bytes
        self.server: grpc.aio.Server | None = None

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

    def _handler(self, signal: Signal, received: Callable[[], None]) -> grpc.RpcMethodHandler:
        pipeline = self.pipeline

        async def export(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            received()
            try:
                outcome = pipeline.ingest(signal, request, "grpc")
            except WireError as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid protobuf: {exc}")
            if outcome is not Outcome.ACCEPTED:
                await self._refuse(context, outcome)
            return b""

        return grpc.unary_unary_rpc_method_handler(export)

    def _refusing_handler(self, signal: Signal) -> grpc.RpcMethodHandler:
        """A handler that refuses without reading the message (client-streaming: the same wire format as
        unary, but the message is read only if asked for)."""

        async def refuse(
            requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]
        ) -> bytes:
            self.pipeline.refuse(signal, "grpc")
            await self._refuse(context, Outcome.QUEUE_FULL)
            return b""

        return grpc.stream_unary_rpc_method_handler(refuse)

    async def start(self, host: str, port: int) -> int:
        self.server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", self.max_message_bytes),
                # Fail when the port is taken instead of sharing it with another process.
                ("grpc.so_reuseport", 0),
                # Memory: grpcio receives a message whole before the handler runs. Without BDP probing the
                # HTTP/2 window stays small, and with one stream per connection (more wait on the client,
                # not refused) concurrent large messages are not all taken at once (twelve concurrent 4 MB
                # calls: 58 MiB RSS instead of 115 MiB).
                ("grpc.http2.bdp_probe", 0),
                ("grpc.max_concurrent_streams", 1),
            ]
        )
        self.server.add_generic_rpc_handlers((_Router(self),))
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


class _Router(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Chooses each call's handler before its message is read: the reading one, with the largest message
    reserved in the queue's bound until the handler runs, or, when that does not fit, the refusing one.

    grpcio says nothing when a call ends before its handler runs (a client gone mid-message), so each
    reservation also lapses after RESERVATION_S; the handlers release the oldest (all are the same size).
    """

    def __init__(self, receiver: GrpcReceiver) -> None:
        self.receiver = receiver
        self.queue = receiver.pipeline.queue
        self.size = receiver.max_message_bytes
        self.reservations: deque[asyncio.TimerHandle] = deque()
        self.handlers = {
            f"/{service}/Export": (
                receiver._handler(signal, self.received),
                receiver._refusing_handler(signal),
            )
            for signal, service in contract.GRPC_SERVICES.items()
        }

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handlers = self.handlers.get(handler_call_details.method)
        if handlers is None:
            return None
        accept, refuse = handlers
        if not self.receiver.pipeline.accepting:
            return accept  # (answered UNAVAILABLE)
        # At most MAX_RECEIVING messages are received at a time: what grpcio holds while receiving one (the
        # message, then its bytes for the handler) costs about twice its size, beyond the queue's bound.
        if len(self.reservations) >= MAX_RECEIVING or not self.queue.reserve(self.size):
            return refuse
        self.reservations.append(asyncio.get_running_loop().call_later(RESERVATION_S, self._lapse))
        return accept

    def received(self) -> None:
        """A message was read (its handler runs): one reservation less."""
        if self.reservations:
            self.reservations.popleft().cancel()
            self.queue.release(self.size)

    def _lapse(self) -> None:
        # (timers of equal delay fire in the order they were set: the oldest reservation is this one)
        if self.reservations:
            self.reservations.popleft()
            self.queue.release(self.size)
