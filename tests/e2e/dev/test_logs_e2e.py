"""Sandbox logs end to end: kubectl apply → operator → pod (the supervisor's init container, the command as
its child) → local runner → sidecar → the Sandbox's own OTLP endpoint; and ``process.execute`` from each SDK,
whose records carry the SDK span's trace.

One sandbox for the module (its own namespace, operator, runner and upstream receiver): its command writes to
both streams and then waits, and the SDK tests run their commands in it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from support import REPO, kubectl, kubectl_path, operator_process, subprocess_env, wait_for

import leap0_contract as c
from leap0 import Leap0Client, ProcessError
from leap0._exec import build_exec_argv
from leap0_dev.apiserver import ServerThread
from leap0_dev.apiserver.exec import ExecHandler
from leap0_dev.runner import PodExecRunner, Runner, RunnerConfig
from leap0_dev.sink import OtlpSink
from leap0_dev.up import _log_handler as log_handler

pytestmark = pytest.mark.e2e

NAME = "logs"
# Both streams and a line that is not UTF-8; then it waits. (A last line without its "\n" is sent when the
# stream ends, as a container runtime logs it: supervisor/process_test.go.)
APP = r"""
import sys, time
for i in range(20):
    print(f"out {i}", flush=True)
    print(f"err {i}", file=sys.stderr, flush=True)
sys.stdout.buffer.write(b"bytes \xff\xfe end\n")
sys.stdout.flush()
time.sleep(3600)
"""
STDOUT_LINES = [f"out {i}" for i in range(20)] + ["bytes \ufffd\ufffd end"]
STDERR_LINES = [f"err {i}" for i in range(20)]
JS_DIST = REPO / "js" / "dist" / "index.js"


@dataclass
class Chain:
    apiserver: ServerThread
    namespace: str
    upstream: OtlpSink
    tmp: Path

    def records(self, **match: Any) -> list[dict[str, Any]]:
        """Log records at the Sandbox's endpoint whose fields (or attributes) have the given values."""
        out = []
        for record in self.upstream.log_records():
            fields = {**record["attributes"], **record}
            if all(fields.get(k) == v for k, v in match.items()):
                out.append(record)
        return out


@pytest.fixture(scope="module")
def chain(
    apiserver: ServerThread, supervisor_binary: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Chain]:
    tmp = tmp_path_factory.mktemp("logs")
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    with apiserver.api_client() as api_client:
        core = client.CoreV1Api(api_client)
        labels = {c.NAMESPACE_ORG_LABEL: "acme"}
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace, labels=labels)))
        config = RunnerConfig(
            otlp_grpc_port=0,
            otlp_http_port=0,
            health_port=0,
            metrics_interval=600,
            namespace=namespace,
            workdir=tmp / "pods",
            max_grace_seconds=3,
            supervisor=supervisor_binary,
        )
        server = apiserver.server
        assert server is not None
        previous = server.exec_handler, server.log_handler
        with (
            operator_process(apiserver.kubeconfig, namespace, tmp / "operator.log"),
            OtlpSink() as upstream,
            Runner(apiserver.api_client(), config) as runner,
        ):
            # kubectl exec / process.execute and kubectl logs reach the pod's processes, as in dev up.
            server.exec_handler = ExecHandler(PodExecRunner(runner))
            server.log_handler = log_handler(runner)
            sandbox = {
                "apiVersion": c.API_VERSION,
                "kind": c.SANDBOX_KIND,
                "metadata": {"name": NAME, "namespace": namespace},
                "spec": {
                    "memory": 512,
                    "timeout": 900,
                    "env": [{"name": c.OTEL_EXPORTER_OTLP_ENDPOINT, "value": upstream.url}],
                    "command": ["python", "-c", APP],
                },
            }
            kubectl(apiserver.kubeconfig, "apply", "-f", "-", input=yaml.safe_dump(sandbox))
            custom = client.CustomObjectsApi(api_client)

            def status() -> dict[str, Any]:
                obj = custom.get_namespaced_custom_object(
                    c.GROUP, c.VERSION, namespace, c.SANDBOX_PLURAL, NAME
                )
                return dict(obj.get("status") or {})

            wait_for(lambda: status().get("phase") == c.PHASE_RUNNING, 90, "the Sandbox Running")
            assert status()[c.STATUS_SUPERVISOR] == c.SUPERVISOR_PATH
            try:
                yield Chain(apiserver, namespace, upstream, tmp)
            finally:
                server.exec_handler, server.log_handler = previous
        core.delete_namespace(namespace)


def test_every_line_of_the_command_reaches_the_endpoint_with_its_stream_and_identity(chain: Chain) -> None:
    def lines(stream: str) -> list[str]:
        return [str(r["body"]) for r in chain.records(**{c.ATTR_LOG_IOSTREAM: stream})]

    wait_for(lambda: lines("stdout") == STDOUT_LINES, 60, "every stdout line, in order")
    wait_for(lambda: lines("stderr") == STDERR_LINES, 60, "every stderr line, in order")
    main = chain.records(**{c.ATTR_LOG_IOSTREAM: "stdout"})
    resource = main[0]["resource"]
    assert {k: resource.get(k) for k in (c.ATTR_SANDBOX_ID, c.ATTR_ORG_ID, c.ATTR_TEMPLATE_ID)} == {
        c.ATTR_SANDBOX_ID: NAME,
        c.ATTR_ORG_ID: "acme",
        c.ATTR_TEMPLATE_ID: c.DEFAULT_TEMPLATE_ID,
    }
    assert resource[c.ATTR_K8S_CONTAINER] == c.SANDBOX_CONTAINER
    assert resource[c.ATTR_K8S_NAMESPACE] == chain.namespace
    assert resource[c.ATTR_K8S_POD_NAME] == NAME
    assert resource[c.ATTR_PROCESS_COMMAND_ARGS][1:] == ["-c", APP]  # the Sandbox's command, as the child
    assert isinstance(resource[c.ATTR_PROCESS_PID], int)
    run_id = resource[c.ATTR_PROCESS_RUN_ID]
    assert all(r["resource"][c.ATTR_PROCESS_RUN_ID] == run_id for r in main)
    assert all(r["trace_id"] == "" for r in main)  # no caller, no trace
    assert [r["attributes"][c.ATTR_LOGTAG] for r in main] == ["F"] * len(STDOUT_LINES)
    (start,) = chain.records(event_name=c.EVENT_PROCESS_START)
    assert start["resource"][c.ATTR_PROCESS_RUN_ID] == run_id

    # kubectl logs shows what it showed before: the command's own bytes (both streams in the container log).
    kubeconfig = f"--kubeconfig={chain.apiserver.kubeconfig}"
    command = [kubectl_path(), kubeconfig, "-n", chain.namespace, "logs", NAME, "-c", "sandbox"]
    shown = subprocess.run(command, capture_output=True, timeout=60, check=True).stdout
    written = [*(f"out {i}".encode() for i in range(20)), *(e.encode() for e in STDERR_LINES)]
    assert sorted(shown.splitlines()) == sorted([*written, b"bytes \xff\xfe end"])  # the bytes, as written


def test_execute_from_python_is_unchanged_and_its_records_carry_the_sdk_span(chain: Chain) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    kubeconfig = chain.apiserver.kubeconfig
    with Leap0Client(
        chain.namespace, kubeconfig, True, tracer_provider=provider, meter_provider=MeterProvider()
    ) as sdk:
        sandbox = sdk.sandboxes.get(NAME)
        assert sandbox.supervisor == c.SUPERVISOR_PATH
        result = sandbox.process.execute("echo py-out; printf 'py-err\\n' >&2; exit 3")
        assert (result.exit_code, result.stdout, result.stderr) == (3, "py-out\n", "py-err\n")
        # Byte for byte what the same exec gives without the supervisor (bytes that are not UTF-8, no final
        # newline, a signal's exit code).
        for command in (
            "printf 'a\\377b\\nno newline'; printf 'e' >&2",
            "kill -TERM $$",
            ["sh", "-c", "exit 7"],
        ):
            argv = build_exec_argv(command)
            plain, supervised = sandbox._exec(argv), sandbox._exec(argv, supervise=True)
            assert (supervised.stdout, supervised.stderr) == (plain.stdout, plain.stderr)
            assert supervised.status == plain.status
        # A program that does not exist fails as it did.
        with pytest.raises(ProcessError, match="executable file not found"):
            sandbox.process.execute(["leap0-no-such-program"])
    (span,) = [s for s in spans.get_finished_spans() if s.name == c.SDK_OP_PROCESS_EXECUTE][:1]
    trace_id, span_id = f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}"

    def ours() -> list[dict[str, Any]]:
        return chain.records(trace_id=trace_id)

    wait_for(lambda: any(r["event_name"] == c.EVENT_PROCESS_EXIT for r in ours()), 60, "the exit record")
    records = ours()
    assert all(r["span_id"] == span_id for r in records)
    assert [
        (r["attributes"].get(c.ATTR_LOG_IOSTREAM), r["body"]) for r in records if not r["event_name"]
    ] in (
        [("stdout", "py-out"), ("stderr", "py-err")],
        [("stderr", "py-err"), ("stdout", "py-out")],
    )
    (exit_record,) = [r for r in records if r["event_name"] == c.EVENT_PROCESS_EXIT]
    assert exit_record["attributes"][c.ATTR_PROCESS_EXIT_CODE] == 3
    assert exit_record["attributes"][c.ATTR_PROCESS_RUN_DURATION] > 0
    assert [r["event_name"] for r in records if r["event_name"]] == [
        c.EVENT_PROCESS_START,
        c.EVENT_PROCESS_EXIT,
    ]
    assert records[0]["resource"][c.ATTR_SANDBOX_ID] == NAME
    assert len({r["resource"][c.ATTR_PROCESS_RUN_ID] for r in records}) == 1


JS_CHILD = """
import { createRequire } from "node:module";
import { Leap0Client } from %(dist)s;
// the SDK's own OpenTelemetry packages (js/node_modules), spans kept in memory
const require = createRequire(%(package)s);
const trace = require("@opentelemetry/sdk-trace-base");
const { MeterProvider } = require("@opentelemetry/sdk-metrics");
const spans = new trace.InMemorySpanExporter();
const processor = new trace.SimpleSpanProcessor(spans);
const tracerProvider = new trace.BasicTracerProvider({ spanProcessors: [processor] });
const { NS: namespace, KC: kubeconfig } = process.env;
const meterProvider = new MeterProvider();
const sdkOtelEnabled = true;
const client = new Leap0Client({ namespace, kubeconfig, sdkOtelEnabled, tracerProvider, meterProvider });
const sandbox = await client.sandboxes.get(%(name)s);
const result = await sandbox.process.execute("echo js-out; exit 4");
const ids = spans.getFinishedSpans().map((s) => ({ name: s.name, ...s.spanContext() }));
console.log(JSON.stringify({ result, spans: ids }));
await client.close();
"""


def test_execute_from_javascript_carries_its_sdk_span(chain: Chain) -> None:
    node = shutil.which("node")
    assert node is not None, "node (20+) is needed for the JavaScript SDK"
    assert JS_DIST.exists(), "js/dist is missing: run `npm ci` in js/ (scripts/test.sh does)"
    script = chain.tmp / "execute.mjs"
    package = REPO / "js" / "package.json"
    values = {"dist": JS_DIST.as_uri(), "package": str(package), "name": NAME}
    script.write_text(JS_CHILD % {k: json.dumps(v) for k, v in values.items()})
    env = subprocess_env(NS=chain.namespace, KC=str(chain.apiserver.kubeconfig))
    run = subprocess.run(
        [node, str(script)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr
    output = json.loads(run.stdout)
    assert output["result"] == {"exitCode": 4, "stdout": "js-out\n", "stderr": ""}
    (span,) = [s for s in output["spans"] if s["name"] == c.SDK_OP_PROCESS_EXECUTE]
    trace_id, span_id = span["traceId"], span["spanId"]
    wait_for(
        lambda: any(r["event_name"] == c.EVENT_PROCESS_EXIT for r in chain.records(trace_id=trace_id)),
        60,
        "the exit record of the JavaScript SDK's command",
    )
    records = chain.records(trace_id=trace_id)
    assert all(r["span_id"] == span_id for r in records)
    assert [r["body"] for r in records if not r["event_name"]] == ["js-out"]
    (exit_record,) = [r for r in records if r["event_name"] == c.EVENT_PROCESS_EXIT]
    assert exit_record["attributes"][c.ATTR_PROCESS_EXIT_CODE] == 4
