"""Benchmark: what the SDK adds on top of the raw ``kubernetes`` client, with SDK telemetry off and on.

    python bench/sdk.py [--gets 300] [--execs 40]

Against a fresh embedded API server (in a background thread of this process) with the emulator's exec
endpoint, measures per call:
- ``sandboxes.get``: the raw ``CustomObjectsApi.get_namespaced_custom_object`` (the baseline, interleaved
  in the same run) vs ``client.sandboxes.get`` with telemetry off and on (in-memory exporter and reader);
- ``process.execute("true")``: the raw ``kubernetes.stream`` exec (baseline) vs ``sandbox.process.execute``.
Prints each figure beside its baseline with the ratio. Goal: telemetry-off overhead within 1.5x of raw for
``get`` and 1.2x for exec; telemetry on costs little more than off.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kubernetes import client
from kubernetes.stream import stream

import leap0_contract as c
from leap0 import Leap0Client
from leap0_dev.apiserver import ServerThread
from leap0_dev.apiserver.exec import ExecHandler

ROUNDS = 5


def per_call(variants: list[Callable[[], Any]], n: int) -> list[float]:
    """ms per call of each variant: interleaved rounds (so load and warm-up hit all alike), median round."""
    for fn in variants:
        fn()  # warm up
    rounds: list[list[float]] = [[] for _ in variants]
    for _ in range(ROUNDS):
        for i, fn in enumerate(variants):
            started = time.perf_counter()
            for _ in range(max(1, n // ROUNDS)):
                fn()
            rounds[i].append((time.perf_counter() - started) / max(1, n // ROUNDS) * 1000.0)
    return [sorted(r)[len(r) // 2] for r in rounds]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gets", type=int, default=300)
    parser.add_argument("--execs", type=int, default=40)
    args = parser.parse_args(argv)

    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    with ServerThread() as srv:
        assert srv.server is not None
        srv.server.exec_handler = ExecHandler()
        api = srv.api_client()
        custom = client.CustomObjectsApi(api)
        core = client.CoreV1Api(api)
        off = Leap0Client(kubeconfig=srv.kubeconfig, sdk_otel_enabled=False)
        tp = TracerProvider()
        tp.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
        on = Leap0Client(
            kubeconfig=srv.kubeconfig,
            sdk_otel_enabled=True,
            tracer_provider=tp,
            meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]),
        )
        sandbox = off.sandboxes.create(wait=False)
        pod = {"metadata": {"name": sandbox.id}, "spec": {"containers": [{"name": "sandbox", "image": "x"}]}}
        core.create_namespaced_pod("default", pod)
        custom.patch_namespaced_custom_object_status(
            c.GROUP,
            c.VERSION,
            "default",
            c.SANDBOX_PLURAL,
            sandbox.id,
            {"status": {"phase": "Running", "podName": sandbox.id}},
            _content_type="application/merge-patch+json",
        )
        sandbox.refresh()
        sandbox_on = on.sandboxes.get(sandbox.id)

        def raw_get_call() -> None:
            custom.get_namespaced_custom_object(c.GROUP, c.VERSION, "default", c.SANDBOX_PLURAL, sandbox.id)

        raw_get, off_get, on_get = per_call(
            [raw_get_call, lambda: off.sandboxes.get(sandbox.id), lambda: on.sandboxes.get(sandbox.id)],
            args.gets,
        )

        def raw_exec() -> None:
            with client.ApiClient(api.configuration) as exec_api:
                stream(
                    client.CoreV1Api(exec_api).connect_get_namespaced_pod_exec,
                    sandbox.id,
                    "default",
                    command=["true"],
                    container="sandbox",
                    stderr=True,
                    stdout=True,
                    stdin=False,
                    tty=False,
                )

        raw_ex, off_ex, on_ex = per_call(
            [
                raw_exec,
                lambda: sandbox.process.execute(["true"]),
                lambda: sandbox_on.process.execute(["true"]),
            ],
            args.execs,
        )
        off.close()
        on.close()

    print(f"sandboxes.get    raw {raw_get:7.2f} ms | sdk off {off_get:7.2f} ms ({off_get / raw_get:.2f}x)"
          f" | sdk on {on_get:7.2f} ms ({on_get / raw_get:.2f}x)")  # fmt: skip
    print(f"process.execute  raw {raw_ex:7.2f} ms | sdk off {off_ex:7.2f} ms ({off_ex / raw_ex:.2f}x)"
          f" | sdk on {on_ex:7.2f} ms ({on_ex / raw_ex:.2f}x)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
