"""Benchmark of the sandbox logs supervisor (a documented command, not a test).

    python bench/supervisor.py [--gib 1] [--rate 10000] [--seconds 60] [--cpus 0]

Runs this checkout's supervisor (``leap0 dev supervisor build``) in front of a writer process, with the real
telemetry sidecar (``python -m leap0_sidecar``) as its receiver, and prints in one run:

- **throughput**: a process writing ``--gib`` GiB of 100-byte lines as fast as it can (Python, one buffered
  ``write`` per line: what an app printing lines does), run directly and through the supervisor with logs on,
  each writing into a pipe read by this process (the stand-in for the container runtime); the wall time of
  each, their ratio (goal at most 1.1), and the lines the supervisor dropped (it never holds the writer up:
  what the sidecar cannot take is dropped and counted). The same with a writer of 1 MiB blocks of lines, the
  worst case (no work per line in the writer at all); and the CPU seconds of each run (the writer's, and the
  writer's plus the supervisor's), which other load on the machine changes little. Writer and supervisor are
  pinned to the CPUs of ``--cpus`` (default: CPU 0, a 1-vCPU sandbox; ``--cpus all`` for none), this process
  and the sidecar to the others (the container runtime and the sidecar container have CPU of their own);
- **steady rate**: a process writing ``--rate`` lines per second for ``--seconds`` through the supervisor, the
  sidecar forwarding to a local OTLP receiver: lines lost end to end (written but never received; goal 0),
  the supervisor's CPU seconds per 10,000 lines, and its peak RSS (anonymous and in all).

Figures and goals are recorded in docs/logs.md. Each ratio compares runs of the same session.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

import leap0_contract as c
from leap0_dev.supervisor import build

REPO = Path(__file__).resolve().parent.parent
LINE = 100  # bytes, with the "\n"
WALL_RATIO_GOAL = 1.1

LINES_WRITER = r"""
import sys
n = int(sys.argv[1])
out = sys.stdout.buffer
write = out.write
pad = b"x" * 89
for i in range(n):
    write(b"%09d %s\n" % (i, pad))
out.flush()
"""
BLOCK_WRITER = r"""
import sys
n = int(sys.argv[1])
block = b"".join(b"%09d %s\n" % (i, b"x" * 89) for i in range(10486))  # 1 MiB (1,048,600 bytes)
out = sys.stdout.buffer
for _ in range(n // 10486):
    out.write(block)
out.flush()
"""
PACED_WRITER = r"""
import sys, time
rate, seconds = int(sys.argv[1]), float(sys.argv[2])
tick = 0.01
per_tick = max(1, int(rate * tick))
out = sys.stdout.buffer
pad = b"x" * 89
start = time.monotonic()
i = 0
total = int(rate * seconds)
while i < total:
    for _ in range(min(per_tick, total - i)):
        out.write(b"%09d %s\n" % (i, pad))
        i += 1
    out.flush()
    delay = start + (i / rate) - time.monotonic()
    if delay > 0:
        time.sleep(delay)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class CountingReceiver:
    """An OTLP/HTTP receiver that keeps the numbers of the lines received (each line starts with its number),
    the lines the supervisor said it dropped, and answers at once."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.dropped = 0
        self.exit_dropped: int | None = None
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/v1/logs":
                    request = ExportLogsServiceRequest()
                    request.ParseFromString(body)
                    with lock:
                        receiver.count(request)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def count(self, request: ExportLogsServiceRequest) -> None:
        for resource_logs in request.resource_logs:
            for scope in resource_logs.scope_logs:
                for record in scope.log_records:
                    attrs = {kv.key: kv.value for kv in record.attributes}
                    if record.event_name == c.EVENT_PROCESS_DROPPED:
                        self.dropped += attrs[c.ATTR_PROCESS_RUN_DROPPED].int_value
                    elif record.event_name == c.EVENT_PROCESS_EXIT:
                        self.exit_dropped = attrs[c.ATTR_PROCESS_RUN_DROPPED].int_value
                    elif not record.event_name:
                        self.seen.add(int(record.body.string_value[:9]))

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Sidecar:
    """The real sidecar, receiving on a free port and forwarding to ``upstream`` (None: export off)."""

    def __init__(self, upstream: str | None) -> None:
        self.http = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env.update(
            {
                c.ENV_OTLP_HTTP_ENDPOINT: f"127.0.0.1:{self.http}",
                c.ENV_OTLP_GRPC_ENDPOINT: f"127.0.0.1:{free_port()}",
                c.ENV_HEALTH_ENDPOINT: f"127.0.0.1:{free_port()}",
                c.ENV_SANDBOX_ID: "bench",
                c.ENV_ORG_ID: "bench",
                c.ENV_TEMPLATE_ID: "default",
                c.ENV_K8S_NAMESPACE: "bench",
                c.ENV_K8S_POD_NAME: "bench",
                c.ENV_METRICS_INTERVAL: "3600",
            }
        )
        if upstream:
            env[c.OTEL_EXPORTER_OTLP_ENDPOINT] = upstream
        self.process = subprocess.Popen(
            [sys.executable, "-m", "leap0_sidecar"],
            env=env,
            stderr=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.http)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError("the sidecar did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def pinned(argv: Sequence[str], cpus: str) -> list[str]:
    return list(argv) if cpus == "all" else ["taskset", "-c", cpus, *argv]


def drain(stream: Any) -> int:
    total = 0
    while chunk := stream.read(1 << 20):
        total += len(chunk)
    return total


def timed_run(argv: list[str], env: dict[str, str]) -> tuple[float, int, float]:
    """Wall seconds until the process ended and its stdout (read by this process) closed; bytes read; CPU
    seconds of the process and the children it waited for (the writer, under the supervisor)."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    total = drain(process.stdout)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - started, total, usage.ru_utime + usage.ru_stime


def supervisor_env(endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env[c.OTEL_EXPORTER_OTLP_ENDPOINT] = endpoint
    return env


def throughput(supervisor: Path, gib: float, cpus: str, writer: str, label: str) -> None:
    lines = int(gib * 2**30 / LINE)
    sidecar = Sidecar(None)
    receiver_url = f"http://127.0.0.1:{sidecar.http}"
    try:
        env = supervisor_env(receiver_url)
        direct_argv = pinned([sys.executable, "-c", writer, str(lines)], cpus)
        supervised_argv = pinned(
            [str(supervisor), c.SUPERVISOR_RUN, "--", sys.executable, "-c", writer, str(lines)], cpus
        )
        direct, direct_bytes, direct_cpu = timed_run(direct_argv, env)
        supervised, supervised_bytes, supervised_cpu = timed_run(supervised_argv, env)
    finally:
        sidecar.stop()
    assert direct_bytes == supervised_bytes, (direct_bytes, supervised_bytes)
    ratio = supervised / direct
    verdict = "ok" if ratio <= WALL_RATIO_GOAL else "over the goal"
    print(
        f"throughput, {label}: {direct_bytes / 2**30:.2f} GiB ({lines:,} lines) directly {direct:.2f} s, "
        f"through the supervisor {supervised:.2f} s: wall ratio {ratio:.3f} "
        f"(goal <= {WALL_RATIO_GOAL}: {verdict}); CPU {direct_cpu:.2f} s vs {supervised_cpu:.2f} s with the "
        f"supervisor (ratio {supervised_cpu / direct_cpu:.3f}; the supervisor's own "
        f"{(supervised_cpu - direct_cpu) / lines * 1e9:.0f} ns per line); every byte passed through"
    )


def drops_through(supervisor: Path, gib: float, cpus: str) -> None:
    """How many lines the supervisor dropped in the fast run (told by its drop and exit records)."""
    lines = int(gib * 2**30 / LINE)
    receiver = CountingReceiver()
    sidecar = Sidecar(receiver.url)
    try:
        env = supervisor_env(f"http://127.0.0.1:{sidecar.http}")
        argv = pinned(
            [str(supervisor), c.SUPERVISOR_RUN, "--", sys.executable, "-c", LINES_WRITER, str(lines)], cpus
        )
        wall, _, _ = timed_run(argv, env)
        deadline = time.monotonic() + 60
        while receiver.exit_dropped is None and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        sidecar.stop()
        receiver.stop()
    print(
        f"throughput, drops: of {lines:,} lines written in {wall:.2f} s, {len(receiver.seen):,} became "
        f"records and {receiver.exit_dropped} were dropped and counted "
        f"(drop records told {receiver.dropped:,}; delivered + dropped = "
        f"{len(receiver.seen) + (receiver.exit_dropped or 0):,})"
    )


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_memory(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0])
    return out


def steady_rate(supervisor: Path, rate: int, seconds: float) -> None:
    receiver = CountingReceiver()
    sidecar = Sidecar(receiver.url)
    peak_anon = 0
    try:
        env = supervisor_env(f"http://127.0.0.1:{sidecar.http}")
        argv = [
            str(supervisor),
            c.SUPERVISOR_RUN,
            "--",
            sys.executable,
            "-c",
            PACED_WRITER,
            str(rate),
            str(seconds),
        ]
        process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert process.stdout is not None
        reader = threading.Thread(target=drain, args=(process.stdout,), daemon=True)
        reader.start()
        cpu = 0.0
        peak = 0
        while process.poll() is None:
            try:
                cpu = proc_cpu_seconds(process.pid)
                memory = proc_memory(process.pid)
            except (OSError, IndexError, ValueError):
                break
            peak = max(peak, memory.get("VmHWM", 0))
            peak_anon = max(peak_anon, memory.get("RssAnon", 0))
            time.sleep(0.2)
        reader.join(10)
        total = int(rate * seconds)
        deadline = time.monotonic() + 60
        while receiver.exit_dropped is None and time.monotonic() < deadline:
            time.sleep(0.2)
        lost = total - len(receiver.seen)
    finally:
        sidecar.stop()
        receiver.stop()
    print(
        f"steady rate: {rate:,} lines/s for {seconds:g} s ({total:,} lines): lost end to end {lost:,} "
        f"(goal 0), dropped and counted by the supervisor {receiver.exit_dropped}"
    )
    print(
        f"steady rate: supervisor CPU {cpu:.2f} s = {cpu / total * 10_000 * 1000:.1f} ms per 10,000 lines; "
        f"peak RSS {peak / 1024:.1f} MiB (anonymous {peak_anon / 1024:.1f} MiB, the rest "
        "its binary's pages)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--gib", type=float, default=1.0, help="GiB written in the throughput runs (default 1)"
    )
    parser.add_argument("--rate", type=int, default=10_000, help="lines per second of the steady run")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the steady run")
    parser.add_argument("--cpus", default="0", help="CPUs of the writer and the supervisor (taskset), or all")
    args = parser.parse_args()
    if args.cpus != "all":
        # This process (the container runtime's part: it reads the output) and the sidecar (a container with
        # CPU of its own) run on the other CPUs, as they would in a pod: they do not take the sandbox's CPU.
        pinned_cpus = {int(c) for c in args.cpus.split(",")}
        others = set(os.sched_getaffinity(0)) - pinned_cpus
        if others:
            os.sched_setaffinity(0, others)
    supervisor = build()
    print(
        f"supervisor: {supervisor} ({supervisor.stat().st_size / 2**20:.1f} MiB); "
        f"machine: {os.cpu_count()} CPUs"
    )
    throughput(supervisor, args.gib, args.cpus, LINES_WRITER, "a write per line")
    throughput(supervisor, args.gib, args.cpus, BLOCK_WRITER, "1 MiB writes (worst case)")
    drops_through(supervisor, args.gib, args.cpus)
    steady_rate(supervisor, args.rate, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
