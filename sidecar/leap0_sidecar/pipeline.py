"""What the receivers do with a request: stamp identity, then queue it, push back, or discard it.

The receivers (HTTP and gRPC) only translate transport details; this is the one path every request takes, the
sidecar's own metrics samples included.
"""

from __future__ import annotations

import enum
import logging
import math

from leap0_contract import Signal
from leap0_sidecar.config import Config
from leap0_sidecar.identity import IdentityStamper
from leap0_sidecar.queue import ExportQueue, Pieces, Request
from leap0_sidecar.self_metrics import Counters

log = logging.getLogger("leap0_sidecar")

# Requests up to this size are stamped into one bytes object (cheaper to join than to carry in pieces).
JOIN_UP_TO = 256 * 1024


class Outcome(enum.Enum):
    ACCEPTED = "accepted"
    QUEUE_FULL = "queue_full"  # retryable: the exporter is behind (upstream slow or down)
    SHUTTING_DOWN = "shutting_down"  # retryable elsewhere: the sidecar is stopping


class Pipeline:
    def __init__(self, config: Config, queue: ExportQueue, counters: Counters) -> None:
        self.config = config
        self.queue = queue
        self.counters = counters
        self.stamper = IdentityStamper(config.identity.attributes())
        self.accepting = True

    def retry_after_s(self) -> int:
        """What the receivers suggest to a client they push back on (whole seconds, at least 1)."""
        return max(1, math.ceil(self.config.retry_initial_s))

    def stamp(self, signal: Signal, request: bytes | bytearray) -> Request:
        """The app's request with the identity on every resource and no other ``leap0`` attribute at any
        level (bench/sidecar.py swaps in a naive full decode).

        A large request stays in the pieces the stamp cut it into (views of the received bytes, which they
        keep alive): joining them would hold the request twice, for a moment, beyond the queue's bound."""
        if len(request) <= JOIN_UP_TO:
            return self.stamper.rewrite(request, signal)
        return Pieces(self.stamper.rewrite_pieces(request, signal))

    def stamp_own(self, request: bytes | bytearray) -> bytes:
        """The sidecar's own metrics with the identity on every resource (their ``leap0.*`` are ours)."""
        return self.stamper.rewrite(request)

    def refuse(self, signal: Signal, transport: str, outcome: Outcome = Outcome.QUEUE_FULL) -> None:
        """Count a request pushed back before it was read (its bytes would not fit in the queue, or the
        sidecar is stopping)."""
        self.counters.received(signal, transport)
        self.counters.refused(signal, outcome.value)

    def ingest(
        self, signal: Signal, request: bytes | bytearray, transport: str, *, internal: bool = False
    ) -> Outcome:
        """Take one serialized Export*ServiceRequest; raises identity.WireError when it is malformed.

        ``internal`` is the sidecar's own metrics sample: taken even while stopping, and dropped (counted)
        when the queue is full, since there is nobody to push back on.
        """
        self.counters.received(signal, transport)
        if not self.accepting and not internal:
            self.counters.refused(signal, Outcome.SHUTTING_DOWN.value)
            return Outcome.SHUTTING_DOWN
        stamped = self.stamp_own(request) if internal else self.stamp(signal, request)
        if self.config.upstreams[signal] is None:
            self.counters.dropped(signal, "export_disabled")
            return Outcome.ACCEPTED
        if self.queue.offer(signal, stamped):
            return Outcome.ACCEPTED
        if internal:
            self.counters.dropped(signal, "queue_full")
        else:
            self.counters.refused(signal, Outcome.QUEUE_FULL.value)
        return Outcome.QUEUE_FULL
