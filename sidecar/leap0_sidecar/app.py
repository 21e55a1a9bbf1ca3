"""The running sidecar: receivers, exporter, metrics loop, health, and the orderly shutdown on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import Any, Protocol

import leap0_contract as contract
from leap0_contract.cli import bind_error, host_port, port_problem
from leap0_sidecar import self_metrics
from leap0_sidecar.config import Config
from leap0_sidecar.exporter import Exporter, HttpClient, UpstreamError
from leap0_sidecar.grpc_receiver import GrpcReceiver
from leap0_sidecar.http_receiver import HttpReceiver
from leap0_sidecar.identity import WireError
from leap0_sidecar.pipeline import Pipeline
from leap0_sidecar.queue import ExportQueue, parts_of
from leap0_sidecar.self_metrics import Counters

log = logging.getLogger("leap0_sidecar")

FINAL_COUNTS_TIMEOUT_S = 2.0  # the last counters, sent after the flush: not worth more of the grace period


class CannotListen(Exception):
    """A receiver cannot listen where it is configured to: the one line saying what to do."""


def listen_problem(name: str, endpoint: Any, variable: str, cause: OSError) -> str:
    """The line for a receiver (``grpc``, ``http``, ``health``) that cannot listen on ``endpoint``."""
    what = {"grpc": "OTLP/gRPC", "http": "OTLP/HTTP", "health": "the health endpoint"}[name]
    where = host_port(endpoint.host, endpoint.port)
    return port_problem(cause, what, where, f"{variable}=host:port")


def taken_endpoint(config: Config) -> str | None:
    """The line for the first configured receiver address that cannot be listened on now, or None (checked
    before anything else starts, so a taken port is all a start says)."""
    endpoints = [
        ("grpc", config.grpc_endpoint, contract.ENV_OTLP_GRPC_ENDPOINT),
        ("http", config.http_endpoint, contract.ENV_OTLP_HTTP_ENDPOINT),
        ("health", config.health_endpoint, contract.ENV_HEALTH_ENDPOINT),
    ]
    for name, endpoint, variable in endpoints:
        if endpoint is not None and (cause := bind_error(endpoint.host, endpoint.port)) is not None:
            return listen_problem(name, endpoint, variable, cause)
    return None


class Listener(Protocol):
    async def start(self, host: str, port: int) -> int: ...


class Sampler(Protocol):
    def sample(self) -> bytes: ...

    def app_running(self) -> bool: ...


class Sidecar:
    def __init__(self, config: Config, sampler: Sampler | None) -> None:
        self.config = config
        self.sampler = sampler
        self.queue = ExportQueue(config.queue_bytes)
        self.counters = Counters()
        self.pipeline = Pipeline(config, self.queue, self.counters)
        self.exporter = Exporter(
            config.upstreams,
            self.queue,
            self.counters,
            retry_initial_s=config.retry_initial_s,
            retry_max_s=config.retry_max_s,
            max_batch_bytes=config.max_request_bytes,
            batch_linger_s=config.batch_linger_s,
        )
        self.http, self.health_http = (
            HttpReceiver(
                self.pipeline,
                otlp_routes=otlp_routes,
                max_body=config.max_request_bytes,
                receive_timeout_s=config.receive_timeout_s,
                health=self.health,
            )
            for otlp_routes in (True, False)
        )
        self.grpc = GrpcReceiver(
            self.pipeline,
            max_message_bytes=config.max_request_bytes,
            receive_timeout_s=config.receive_timeout_s,
        )
        self.ready = False
        self.ports: dict[str, int] = {}
        self._stop = asyncio.Event()
        self._sampler_failed = False

    # --- health -------------------------------------------------------------------------------------

    def health(self, path: str) -> tuple[bool, dict[str, object]]:
        details: dict[str, object] = {
            "export": "on" if self.config.export_enabled else "off",
            "queue_bytes": self.queue.used,
            "queue_capacity": self.queue.capacity,
        }
        if path == contract.SIDECAR_READY_PATH:
            return self.ready and self.pipeline.accepting, details
        return True, details

    # --- metrics ------------------------------------------------------------------------------------

    async def _take_metrics(self, last: bool = False) -> None:
        """A sandbox metrics sample and the sidecar's own counters, as one request. The ``last`` one, at
        shutdown, has no sandbox sample once the sandbox's processes are gone (it would measure nothing:
        the sample before was the last real one)."""
        parts: list[bytes] = []
        if self.sampler is not None:
            try:
                if last and not await asyncio.to_thread(self.sampler.app_running):
                    log.info("no last sandbox metrics sample: the sandbox's processes have ended")
                else:
                    parts.append(await asyncio.to_thread(self.sampler.sample))
            except Exception:
                if not self._sampler_failed:
                    log.exception(
                        "the sandbox metrics sample failed (reported once; the sidecar's own metrics go on)"
                    )
                self._sampler_failed = True
        parts.append(self_metrics.build_request(self.counters, self.queue, ()))
        try:
            self.pipeline.ingest("metrics", b"".join(parts), "sampler", internal=True)
        except WireError as exc:  # our own bytes: a bug, never the app's fault
            log.error("a metrics sample is malformed, dropped: %s", exc)

    async def _metrics_loop(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.config.metrics_interval_s
        next_at = loop.time() + interval
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at = max(next_at + interval, loop.time())
            await self._take_metrics()

    # --- lifecycle ----------------------------------------------------------------------------------

    def request_stop(self, signame: str = "") -> None:
        if not self._stop.is_set():
            log.info("%s received: stopping", signame or "stop")
        self._stop.set()

    async def start(self) -> None:
        c = self.config
        listeners: list[tuple[str, Listener, Any, str]] = [
            ("grpc", self.grpc, c.grpc_endpoint, contract.ENV_OTLP_GRPC_ENDPOINT),
            ("http", self.http, c.http_endpoint, contract.ENV_OTLP_HTTP_ENDPOINT),
        ]
        if c.health_endpoint is not None:
            listeners.append(("health", self.health_http, c.health_endpoint, contract.ENV_HEALTH_ENDPOINT))
        for name, listener, endpoint, variable in listeners:
            try:
                self.ports[name] = await listener.start(endpoint.host, endpoint.port)
            except OSError as exc:  # (grpcio says only "failed to bind": ask the kernel why)
                await asyncio.gather(self.grpc.close(0), self.http.close(), return_exceptions=True)
                cause = bind_error(endpoint.host, endpoint.port) or exc
                raise CannotListen(listen_problem(name, endpoint, variable, cause)) from None
        self.exporter.start()
        self._metrics_task = asyncio.create_task(self._metrics_loop(), name="metrics")
        self.ready = True
        for warning in c.warnings:
            log.warning("%s", warning)
        identity = ", ".join(f"{k}={v}" for k, v in c.identity.attributes())
        log.info(
            "listening: OTLP/gRPC on %s:%d, OTLP/HTTP on %s:%d, health on %s; identity: %s",
            c.grpc_endpoint.host,
            self.ports["grpc"],
            c.http_endpoint.host,
            self.ports["http"],
            f"{c.health_endpoint.host}:{self.ports['health']}" if c.health_endpoint else "off",
            identity,
        )
        if not c.export_enabled:
            log.warning(
                "export is OFF: no %s (nor per-signal endpoint) is set: telemetry is accepted and discarded",
                contract.OTEL_EXPORTER_OTLP_ENDPOINT,
            )
        else:
            for sig, upstream in c.upstreams.items():
                if upstream is None:
                    log.warning(
                        "export of %s is OFF (no endpoint for it): they are accepted and discarded", sig
                    )
                else:
                    log.info(
                        "exporting %s to %s (compression %s, timeout %g s)",
                        sig,
                        upstream.display,
                        "gzip" if upstream.gzip else "none",
                        upstream.timeout_s,
                    )

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT (or request_stop), then shut down; returns the exit code."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop, signal.Signals(signum).name)
        try:
            await self.start()
            await self._stop.wait()
            await self.shutdown()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
        return 0

    async def _send_final_counts(self) -> None:
        """The sidecar's own counters once more, straight to the upstream (not queued: the queue is closed),
        so what the shutdown lost is counted where the rest of its metrics are. Best effort, short."""
        upstream = self.config.upstreams["metrics"]
        if upstream is None:
            return
        request = self.pipeline.stamp_own(self_metrics.build_request(self.counters, self.queue, ()))
        client = HttpClient(upstream)
        try:
            response = await client.post(
                parts_of([request]), timeout_s=min(upstream.timeout_s, FINAL_COUNTS_TIMEOUT_S)
            )
        except UpstreamError as exc:
            log.info("the final counts were not sent: %s", exc)
        else:
            if not 200 <= response.status < 300:
                log.info("the final counts were not accepted: the upstream answered %d", response.status)
        finally:
            client.close()

    async def shutdown(self) -> None:
        """Stop accepting, take a last metrics sample, flush the queue until the deadline, drop the rest."""
        deadline = time.monotonic() + self.config.shutdown_timeout_s
        self.pipeline.accepting = False
        self.ready = False
        self._metrics_task.cancel()
        await asyncio.gather(self.http.close(), self.grpc.close(), return_exceptions=True)
        self.exporter.flush_now()
        await self._take_metrics(last=True)
        queued = self.queue.used
        if queued:
            log.info(
                "flushing %d queued bytes (deadline %g s)", queued, max(0.0, deadline - time.monotonic())
            )
        await self.queue.wait_empty(max(0.0, deadline - time.monotonic()))
        await self.exporter.stop()
        for sig in contract.SIGNALS:
            waiting = self.queue.take(sig, self.queue.capacity)
            if waiting:
                self.counters.dropped(sig, "shutdown", len(waiting))
        lost = sum(
            v
            for (name, _, reason), v in self.counters.counts.items()
            if name == contract.METRIC_SIDECAR_DROPPED and reason == "shutdown"
        )
        unknown = sum(self.exporter.unknown.values())
        if lost:
            log.warning("shutdown deadline passed: %d export request(s) not delivered", lost)
        if unknown:
            log.warning(
                "shutdown deadline passed: %d export request(s) were being sent and got no answer "
                "(the upstream may have them)",
                unknown,
            )
        if not lost and not unknown and queued:
            log.info("flushed everything queued")
        await self._send_final_counts()
        await self.health_http.close()
        log.info("stopped")
