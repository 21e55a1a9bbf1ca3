/** The pure functions under the SDK: request bodies, argument aliases, the exec prologue and status. */

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  buildExecArgv,
  formatSeconds,
  parseExecStatus,
  shellQuote,
  supervisedArgv,
  supervisorExecError,
} from "../dist/exec.js";
import { buildSandboxBody, normalizeEnv, resolveCreateArgs, sandboxFields } from "../dist/models.js";
import { histogramName, ownExportTimeout, resolveEnabled } from "../dist/telemetry.js";

test("the body carries only the values given; network passes through to spec.network", () => {
  assert.deepEqual(buildSandboxBody({ name: "s", namespace: "n" }), {
    apiVersion: "leap0.dev/v1alpha1",
    kind: "Sandbox",
    metadata: { name: "s", namespace: "n" },
    spec: {},
  });
  const body = buildSandboxBody({
    name: "s",
    namespace: "n",
    vcpu: 2,
    network: { policy: "restricted", allowCidrs: ["10.0.0.0/8"] },
    labels: { a: "b" },
  });
  assert.deepEqual(body.spec, { vcpu: 2, network: { policy: "restricted", allowCidrs: ["10.0.0.0/8"] } });
  assert.deepEqual((body.metadata as Record<string, unknown>).labels, { a: "b" });
});

test("hosted-SDK aliases, and ambiguous or non-integer values are TypeErrors", () => {
  assert.deepEqual(resolveCreateArgs({ templateName: "t", memoryMib: 1024, timeoutMin: 5 }), {
    template: "t",
    vcpu: undefined,
    memory: 1024,
    timeout: 300,
  });
  assert.deepEqual(resolveCreateArgs({ memory: 1024, memoryMib: 1024 }).memory, 1024);
  assert.throws(() => resolveCreateArgs({ template: "a", templateName: "b" }), TypeError);
  assert.throws(() => resolveCreateArgs({ timeout: 60, timeoutMin: 2 }), TypeError);
  assert.throws(() => resolveCreateArgs({ vcpu: 1.5 }), TypeError);
  assert.throws(() => resolveCreateArgs({ timeoutMin: 0.5 }), TypeError);
  assert.throws(() => normalizeEnv({ A: 1 as unknown as string }), TypeError);
  assert.throws(() => normalizeEnv([{ value: "x" } as unknown as { name: string }]), TypeError);
});

test("the exec prologue quotes nothing of the user's command and applies cwd, env, timeout", () => {
  assert.deepEqual(buildExecArgv("echo hi"), ["/bin/sh", "-c", "echo hi"]);
  assert.deepEqual(buildExecArgv(["ls", "-l"]), ["ls", "-l"]);
  assert.deepEqual(buildExecArgv(["ls"], { cwd: "/tmp/a b", env: { X: "it's" }, timeout: 2.5 }), [
    "/bin/sh",
    "-c",
    "export X='it'\"'\"'s'\ncd -- '/tmp/a b' || exit 1\n" +
      'if command -v timeout >/dev/null 2>&1; then exec timeout -k 1 2.5 "$@"; fi\nexec "$@"',
    "leap0-exec",
    "ls",
  ]);
  assert.throws(() => buildExecArgv("  "), RangeError);
  assert.throws(() => buildExecArgv(["x"], { timeout: 0 }), RangeError);
  assert.equal(shellQuote(""), "''");
  assert.equal(shellQuote("a-b_c/d.e"), "a-b_c/d.e");
  assert.deepEqual(["5", "0.5", "1e-05", "1.23457e+06"], [5, 0.5, 0.00001, 1234567].map(formatSeconds));
});

test("the exec status channel: success, an exit code, or an error", () => {
  assert.deepEqual(parseExecStatus({ status: "Success" }), { exitCode: 0 });
  assert.deepEqual(
    parseExecStatus(
      '{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"7"}]}}',
    ),
    { exitCode: 7 },
  );
  assert.deepEqual(parseExecStatus({ status: "Failure", message: "container not found" }), {
    exitCode: undefined,
    error: "container not found",
  });
  assert.equal(parseExecStatus(undefined).error, "the exec stream closed without a status");
});

test("sandbox fields fall back to the Ready condition's reason and message", () => {
  const fields = sandboxFields({
    metadata: { name: "s", namespace: "n" },
    status: { phase: "Pending", conditions: [{ type: "Ready", status: "False", reason: "PodPending", message: "m" }] },
  });
  assert.deepEqual([fields.reason, fields.message, fields.phase], ["PodPending", "m", "Pending"]);
});

test("enablement and histogram names", () => {
  assert.equal(resolveEnabled(undefined, { OTEL_EXPORTER_OTLP_ENDPOINT: "http://x" }), true);
  assert.equal(
    resolveEnabled(undefined, { LEAP0_SDK_OTEL_ENABLED: "no", OTEL_EXPORTER_OTLP_ENDPOINT: "http://x" }),
    false,
  );
  assert.equal(histogramName("sandboxes.set_timeout"), "sandboxes_set_timeout_duration");
});

test("the SDK's own exporters give up after 2 s unless the OTLP timeout variables say otherwise", () => {
  assert.equal(ownExportTimeout("TRACES", {}), 2000);
  assert.equal(ownExportTimeout("METRICS", { OTEL_EXPORTER_OTLP_TIMEOUT: " " }), 2000);
  assert.equal(ownExportTimeout("TRACES", { OTEL_EXPORTER_OTLP_TIMEOUT: "10000" }), undefined);
  assert.equal(ownExportTimeout("METRICS", { OTEL_EXPORTER_OTLP_METRICS_TIMEOUT: "500" }), undefined);
  assert.equal(ownExportTimeout("TRACES", { OTEL_EXPORTER_OTLP_METRICS_TIMEOUT: "500" }), 2000);
});

test("sandbox logs: the command runs as the supervisor's child with the caller's trace", () => {
  const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  const argv = buildExecArgv("echo hi", { cwd: "/tmp" });
  assert.deepEqual(supervisedArgv(argv, "/.leap0/leap0-supervisor", tp), [
    "/.leap0/leap0-supervisor",
    "exec",
    "--container",
    "sandbox",
    "--traceparent",
    tp,
    "--",
    ...argv,
  ]);
  assert.deepEqual(supervisedArgv(["ls"], "/s"), ["/s", "exec", "--container", "sandbox", "--", "ls"]);
  const line = (text: string) => Buffer.from(text);
  assert.equal(
    supervisorExecError(127, line(""), line('leap0-supervisor: exec: "x": executable file not found in $PATH\n')),
    '"x": executable file not found in $PATH',
  );
  assert.equal(supervisorExecError(127, line(""), line("sh: 1: x: not found\n")), undefined);
  assert.equal(supervisorExecError(127, line("out"), line('leap0-supervisor: exec: "x": no\n')), undefined);
  assert.equal(supervisorExecError(1, line(""), line('leap0-supervisor: exec: "x": no\n')), undefined);
  assert.equal(supervisorExecError(127, line(""), line('leap0-supervisor: exec: "x": no\nmore\n')), undefined);
});

test("sandbox logs: telemetryLogs is spec.telemetry.logs, status.supervisor is read", () => {
  assert.deepEqual(buildSandboxBody({ name: "s", namespace: "n", telemetryLogs: false }).spec, {
    telemetry: { logs: false },
  });
  assert.deepEqual(buildSandboxBody({ name: "s", namespace: "n", telemetry: true, telemetryLogs: true }).spec, {
    telemetry: { enabled: true, logs: true },
  });
  const fields = sandboxFields({ metadata: { name: "s" }, status: { supervisor: "/.leap0/leap0-supervisor" } });
  assert.equal(fields.supervisor, "/.leap0/leap0-supervisor");
  assert.equal(sandboxFields({ metadata: { name: "s" } }).supervisor, undefined);
});
