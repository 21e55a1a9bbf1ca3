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
from leap0_sidecar.queue import ExportQueue
from leap0_sidecar.stats import Stats

log = logging.getLogger("leap0_sidecar")


class Outcome(enum.Enum):
    ACCEPTED = "accepted"
    QUEUE_FULL = "queue_full"  # retryable: the exporter is behind (upstream slow or down)
    SHUTTING_DOWN = "shutting_down"  # retryable elsewhere: the sidecar is stopping


class Pipeline:
    def __init__(self, config: Config, queue: ExportQueue, stats: Stats) -> None:
        self.config = config
        self.queue = queue
        self.stats = stats
        self.stamper = IdentityStamper(config.identity.attributes())
        self.accepting = True

    def retry_after_s(self) -> int:
        """What the receivers suggest to a client they push back on (whole seconds, at least 1)."""
        return max(1, math.ceil(self.config.retry_initial_s))

    def stamp(self, signal: Signal, request: bytes) -> bytes:
        """The request with the identity on every resource (bench/sidecar.py swaps in a naive full decode)."""
        return self.stamper.rewrite(request)

    def ingest(self, signal: Signal, request: bytes, transport: str, *, internal: bool = False) -> Outcome:
        """Take one serialized Export*ServiceRequest; raises identity.WireError when it is malformed.

        ``internal`` is the sidecar's own metrics sample: taken even while stopping, and dropped (counted)
        when the queue is full, since there is nobody to push back on.
        """
        self.stats.received(signal, transport)
        if not self.accepting and not internal:
            self.stats.refused(signal, Outcome.SHUTTING_DOWN.value)
            return Outcome.SHUTTING_DOWN
        stamped = self.stamp(signal, request)
        if self.config.upstreams[signal] is None:
            self.stats.dropped(signal, "export_disabled")
            return Outcome.ACCEPTED
        if self.queue.offer(signal, stamped):
            return Outcome.ACCEPTED
        if internal:
            self.stats.dropped(signal, "queue_full")
        else:
            self.stats.refused(signal, Outcome.QUEUE_FULL.value)
        return Outcome.QUEUE_FULL
