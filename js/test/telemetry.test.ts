/**
 * SDK telemetry: one span and one duration histogram point per operation, the enablement rules, and "off
 * means no OpenTelemetry module is even loaded" (checked in a child process that lists every module it loaded).
 */

import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { after, before, describe, test } from "node:test";
import { SpanKind, SpanStatusCode } from "@opentelemetry/api";
import {
  AggregationTemporality,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from "@opentelemetry/sdk-metrics";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { Leap0Client, SandboxNotFoundError, VERSION } from "leap0";
import {
  type ApiServer,
  JS_DIR,
  newNamespace,
  OtlpReceiver,
  runNode,
  runningStatus,
  setSandboxStatus,
  startApiServer,
  tempDir,
} from "./support.js";

let api: ApiServer;
const dir = tempDir();

before(async () => {
  api = await startApiServer();
});
after(async () => {
  await api.stop();
});

const ENV_KEYS = ["LEAP0_SDK_OTEL_ENABLED", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS"] as const;

async function withEnv<T>(vars: Partial<Record<string, string>>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(ENV_KEYS.map((k) => [k, process.env[k]]));
  for (const k of ENV_KEYS) delete process.env[k];
  Object.assign(process.env, vars);
  try {
    return await fn();
  } finally {
    for (const k of ENV_KEYS) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  }
}

test("one CLIENT span and one histogram point per operation, error status on failure", async () => {
  const ns = await newNamespace(api);
  const spans = new InMemorySpanExporter();
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] });
  const metrics = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const reader = new PeriodicExportingMetricReader({ exporter: metrics, exportIntervalMillis: 3_600_000 });
  const meterProvider = new MeterProvider({ readers: [reader] });

  const sdk = new Leap0Client({
    namespace: ns,
    kubeconfig: api.kubeconfig,
    sdkOtelEnabled: true,
    tracerProvider,
    meterProvider,
  });
  assert.equal(sdk.sdkOtelEnabled, true);
  const sandbox = await sdk.sandboxes.create({ wait: false });
  await api.core.createNamespacedPod({
    namespace: ns,
    body: { metadata: { name: sandbox.id }, spec: { containers: [{ name: "sandbox", image: "x" }] } },
  });
  await setSandboxStatus(api, ns, sandbox.id, runningStatus(sandbox.id));
  await sdk.sandboxes.get(sandbox.id);
  await sdk.sandboxes.list();
  await sandbox.process.execute("echo hi");
  await sandbox.filesystem.write("f.txt", "x");
  await sandbox.filesystem.read("f.txt");
  await sandbox.setTimeout(100);
  await sandbox.delete();
  await assert.rejects(sdk.sandboxes.get(sandbox.id), SandboxNotFoundError);
  await sdk.close();

  const finished = spans.getFinishedSpans();
  assert.deepEqual(
    finished.map((s) => s.name),
    [
      "sandboxes.create",
      "sandboxes.get",
      "sandboxes.list",
      "sandboxes.get", // inside process.execute: the cached copy had no pod yet, so it is reread once
      "process.execute",
      "filesystem.write",
      "filesystem.read",
      "sandboxes.set_timeout",
      "sandboxes.delete",
      "sandboxes.get",
    ],
  );
  for (const span of finished) {
    assert.equal(span.instrumentationScope.name, "leap0-sdk-js");
    assert.equal(span.instrumentationScope.version, VERSION);
    assert.equal(span.kind, SpanKind.CLIENT);
    if (span.name !== "sandboxes.list") assert.equal(span.attributes["leap0.sandbox.id"], sandbox.id);
  }
  assert.deepEqual(
    finished.slice(0, -1).map((s) => s.status.code),
    Array(finished.length - 1).fill(SpanStatusCode.OK),
  );
  // the reread inside process.execute is its child; the others are roots
  const execute = finished[4]!;
  assert.equal(finished[3]!.parentSpanContext?.spanId, execute.spanContext().spanId);
  assert.equal(finished[3]!.spanContext().traceId, execute.spanContext().traceId);
  assert.deepEqual(
    finished.filter((_, i) => i !== 3).map((s) => s.parentSpanContext),
    Array(finished.length - 1).fill(undefined),
  );
  const failed = finished.at(-1)!;
  assert.equal(failed.status.code, SpanStatusCode.ERROR);
  assert.match(failed.status.message ?? "", /SandboxNotFoundError/);
  assert.deepEqual(
    failed.events.map((e) => e.name),
    ["exception"],
  );

  await reader.forceFlush();
  const histograms = new Map<string, { attributes: Record<string, unknown>; count: number }[]>();
  for (const rm of metrics.getMetrics().slice(-1)) {
    for (const sm of rm.scopeMetrics) {
      assert.equal(sm.scope.name, "leap0-sdk-js");
      for (const metric of sm.metrics) {
        assert.equal(metric.descriptor.unit, "ms");
        histograms.set(
          metric.descriptor.name,
          metric.dataPoints.map((p) => ({ attributes: p.attributes, count: (p.value as { count: number }).count })),
        );
      }
    }
  }
  assert.deepEqual([...histograms.keys()].sort(), [
    "filesystem_read_duration",
    "filesystem_write_duration",
    "process_execute_duration",
    "sandboxes_create_duration",
    "sandboxes_delete_duration",
    "sandboxes_get_duration",
    "sandboxes_list_duration",
    "sandboxes_set_timeout_duration",
  ]);
  const gets = Object.fromEntries(histograms.get("sandboxes_get_duration")!.map((p) => [p.attributes.status, p.count]));
  assert.deepEqual(gets, { success: 2, error: 1 });
  assert.deepEqual(histograms.get("sandboxes_create_duration"), [{ attributes: { status: "success" }, count: 1 }]);
  await tracerProvider.shutdown();
  await meterProvider.shutdown();
});

describe("enablement: option > LEAP0_SDK_OTEL_ENABLED > a local OTEL_EXPORTER_OTLP_ENDPOINT", () => {
  const cases: [string, boolean | undefined, Partial<Record<string, string>>, boolean][] = [
    ["nothing set", undefined, {}, false],
    ["a local endpoint", undefined, { OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:9" }, true],
    ["a blank endpoint", undefined, { OTEL_EXPORTER_OTLP_ENDPOINT: "  " }, false],
    ["the flag on", undefined, { LEAP0_SDK_OTEL_ENABLED: "true" }, true],
    ["the flag as 1", undefined, { LEAP0_SDK_OTEL_ENABLED: "1" }, true],
    [
      "the flag off beats the endpoint",
      undefined,
      { LEAP0_SDK_OTEL_ENABLED: "false", OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:9" },
      false,
    ],
    [
      "an unknown flag is ignored",
      undefined,
      { LEAP0_SDK_OTEL_ENABLED: "maybe", OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:9" },
      true,
    ],
    [
      "the option off beats both",
      false,
      { LEAP0_SDK_OTEL_ENABLED: "true", OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:9" },
      false,
    ],
    ["the option on beats the flag off", true, { LEAP0_SDK_OTEL_ENABLED: "off" }, true],
  ];
  for (const [name, option, env, expected] of cases) {
    test(name, async () => {
      await withEnv(env, async () => {
        const sdk = new Leap0Client({
          kubeconfig: api.kubeconfig,
          ...(option === undefined ? {} : { sdkOtelEnabled: option }),
        });
        assert.equal(sdk.sdkOtelEnabled, expected);
        await sdk.close();
      });
    });
  }
});

/** Runs a client in a child process and lists every module file it loaded (ESM through a load hook, CJS
 * through require.cache). */
async function loadedModules(env: Record<string, string>): Promise<string[]> {
  const log = join(dir, `modules-${Math.random().toString(36).slice(2)}.log`);
  const hooks = join(dir, "hooks.mjs");
  writeFileSync(
    hooks,
    `import { appendFileSync } from "node:fs";
let log;
export function initialize(data) { log = data.log; }
export async function load(url, context, next) {
  if (url.startsWith("file:")) appendFileSync(log, url + "\\n");
  return next(url, context);
}
`,
  );
  const register = join(dir, "register.mjs");
  writeFileSync(
    register,
    `import { register } from "node:module";
register(${JSON.stringify(pathToFileURL(hooks).href)}, { data: { log: process.env.MODULE_LOG } });
`,
  );
  // inside js/, so that `import "leap0"` resolves to this package (self-reference through its exports)
  const script = join(JS_DIR, "build-test", "modules-child.mjs");
  writeFileSync(
    script,
    `import { createRequire } from "node:module";
import { appendFileSync } from "node:fs";
import { Leap0Client } from "leap0";
const client = new Leap0Client({ kubeconfig: process.env.KC });
await client.sandboxes.list();
await client.close();
for (const file of Object.keys(createRequire(import.meta.url).cache)) appendFileSync(process.env.MODULE_LOG, file + "\\n");
console.log(client.sdkOtelEnabled);
`,
  );
  const result = await runNode(["--import", pathToFileURL(register).href, script], {
    env: { PATH: process.env.PATH ?? "", HOME: dir, KC: api.kubeconfig, MODULE_LOG: log, ...env },
  });
  assert.equal(result.code, 0, result.stderr);
  const { readFileSync } = await import("node:fs");
  return readFileSync(log, "utf8").split("\n").filter(Boolean);
}

test("telemetry off loads no OpenTelemetry module; on loads the SDK's", async () => {
  const receiver = await new OtlpReceiver().start();
  try {
    const off = await loadedModules({ LEAP0_SDK_OTEL_ENABLED: "false", OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url });
    assert.ok(
      off.some((m) => m.includes("@kubernetes/client-node")),
      "the listing sees the SDK's modules",
    );
    assert.deepEqual(
      off.filter((m) => m.includes("@opentelemetry")),
      [],
    );
    assert.equal(receiver.requests.length, 0);

    const on = await loadedModules({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url });
    for (const pkg of [
      "api",
      "sdk-trace-base",
      "sdk-metrics",
      "exporter-trace-otlp-http",
      "exporter-metrics-otlp-http",
    ]) {
      assert.ok(
        on.some((m) => m.includes(`@opentelemetry/${pkg}/`)),
        `@opentelemetry/${pkg} loaded when on`,
      );
    }
    assert.deepEqual(
      receiver.spans().map((s) => [s.name, s.scope]),
      [["sandboxes.list", "leap0-sdk-js"]],
    );
  } finally {
    await receiver.stop();
  }
});

test("the application's global providers are used when it registered them, and close() leaves them running", async () => {
  const script = join(JS_DIR, "build-test", "global-child.mjs");
  writeFileSync(
    script,
    `import { metrics, trace } from "@opentelemetry/api";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader } from "@opentelemetry/sdk-metrics";
import { Leap0Client } from "leap0";
const spans = new InMemorySpanExporter();
trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }));
const exported = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
const reader = new PeriodicExportingMetricReader({ exporter: exported, exportIntervalMillis: 3600000 });
metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }));
const client = new Leap0Client({ kubeconfig: process.env.KC, sdkOtelEnabled: true });
await client.sandboxes.list();
await client.close();
trace.getTracer("app").startSpan("after-close").end();
await reader.forceFlush();
const names = exported.getMetrics().flatMap((rm) => rm.scopeMetrics.flatMap((sm) => sm.metrics.map((m) => sm.scope.name + ":" + m.descriptor.name)));
console.log(JSON.stringify({ spans: spans.getFinishedSpans().map((s) => s.instrumentationScope.name + ":" + s.name), metrics: names }));
`,
  );
  const receiver = await new OtlpReceiver().start();
  try {
    const result = await runNode([script], {
      env: { PATH: process.env.PATH ?? "", HOME: dir, KC: api.kubeconfig, OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url },
    });
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(JSON.parse(result.stdout), {
      spans: ["leap0-sdk-js:sandboxes.list", "app:after-close"],
      metrics: ["leap0-sdk-js:sandboxes_list_duration"],
    });
    assert.equal(receiver.requests.length, 0, "the SDK built no exporter of its own");
  } finally {
    await receiver.stop();
  }
});

test("close() resolves when the collector is unreachable (the failure goes to OpenTelemetry's logger)", async () => {
  const receiver = await new OtlpReceiver().start();
  const refused = receiver.url;
  await receiver.stop(); // nothing listens there any more
  const script = join(JS_DIR, "build-test", "unreachable-child.mjs");
  writeFileSync(
    script,
    `import { Leap0Client } from "leap0";
const client = new Leap0Client({ kubeconfig: process.env.KC });
await client.sandboxes.list();
await client.close();
console.log("closed", client.sdkOtelEnabled);
`,
  );
  const result = await runNode([script], {
    env: {
      PATH: process.env.PATH ?? "",
      HOME: dir,
      KC: api.kubeconfig,
      OTEL_EXPORTER_OTLP_ENDPOINT: refused, // (no OTEL_EXPORTER_OTLP_TIMEOUT: the SDK's own 2 s applies)
    },
  });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.trim(), "closed true");
});

test("an operation's traceparent is its span's, for the sandbox's supervisor (none when off)", async () => {
  const { makeTelemetry } = await import("../dist/telemetry.js");
  const spans = new InMemorySpanExporter();
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] });
  const meterProvider = new MeterProvider();
  const on = makeTelemetry(true, {}, tracerProvider, meterProvider);
  const traceparent = await on.operation("process.execute", "s", async (op) => op.traceparent());
  const [span] = spans.getFinishedSpans();
  assert.ok(span);
  const { traceId, spanId, traceFlags } = span.spanContext();
  assert.equal(traceparent, `00-${traceId}-${spanId}-${traceFlags.toString(16).padStart(2, "0")}`);
  const off = makeTelemetry(false, {});
  assert.equal(await off.operation("process.execute", "s", async (op) => op.traceparent()), undefined);
});
