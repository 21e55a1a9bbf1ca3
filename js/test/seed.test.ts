/**
 * The seed example, verbatim, as an ES module in a child process, against the embedded API server with the
 * real operator (the test plays only the kubelet). The example sets OTEL_EXPORTER_OTLP_ENDPOINT to
 * https://otel.example.com itself; that name is routed to a local OTLP/HTTP receiver with a certificate for
 * it, which decodes what the SDK's own exporters flushed in close().
 */

import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { after, before, test } from "node:test";
import { readFileSync } from "node:fs";
import {
  type ApiServer,
  getSandbox,
  JS_DIR,
  OtlpReceiver,
  runNode,
  standInKubelet,
  startApiServer,
  startOperator,
  tempDir,
} from "./support.js";

const SEED = `import { Leap0Client } from "leap0";

process.env.OTEL_EXPORTER_OTLP_ENDPOINT = "https://otel.example.com";
process.env.OTEL_EXPORTER_OTLP_HEADERS = "x-api-key=abc123";

const client = new Leap0Client({ sdkOtelEnabled: true });
const sandbox = await client.sandboxes.create({
  vcpu: 2,
  memory: 2048,
  timeout: 30,
  otelExport: true,
});

console.log(sandbox.id);
await client.close();
`;

const FIXTURES = join(JS_DIR, "test", "fixtures");
let api: ApiServer;
const dir = tempDir();

before(async () => {
  api = await startApiServer();
});
after(async () => {
  await api.stop();
});

test("the seed example runs unchanged: a Running sandbox, the headers in a Secret, SDK telemetry exported", async () => {
  const operator = await startOperator(api, "default");
  const kubelet = await standInKubelet(api, "default");
  const receiver = await new OtlpReceiver().start({
    key: readFileSync(join(FIXTURES, "otel.example.com.key"), "utf8"),
    cert: readFileSync(join(FIXTURES, "otel.example.com.crt"), "utf8"),
  });
  try {
    const script = join(JS_DIR, "build-test", "seed.mjs");
    writeFileSync(script, SEED);
    const route = pathToFileURL(join(JS_DIR, "build-test", "route-host.js")).href;
    const result = await runNode(["--import", route, script], {
      env: {
        PATH: process.env.PATH ?? "",
        HOME: dir,
        KUBECONFIG: api.kubeconfig,
        LEAP0_TEST_ROUTE: `otel.example.com=127.0.0.1:${receiver.port}`,
        NODE_EXTRA_CA_CERTS: join(FIXTURES, "otel.example.com.crt"),
      },
    });
    assert.equal(result.code, 0, `${result.stderr}\n--- operator log ---\n${operator.log().slice(-3000)}`);
    const id = result.stdout.trim();
    assert.match(id, /^sbx-[a-z0-9]{10}$/);

    const obj = await getSandbox(api, "default", id);
    assert.equal(obj.status.phase, "Running");
    assert.deepEqual([obj.spec.vcpu, obj.spec.memory, obj.spec.timeout], [2, 2048, 30]);
    assert.deepEqual(obj.spec.env, [
      { name: "OTEL_EXPORTER_OTLP_ENDPOINT", value: "https://otel.example.com" },
      {
        name: "OTEL_EXPORTER_OTLP_HEADERS",
        valueFrom: { secretKeyRef: { name: `${id}-otlp`, key: "OTEL_EXPORTER_OTLP_HEADERS" } },
      },
    ]);
    const secret = await api.core.readNamespacedSecret({ name: `${id}-otlp`, namespace: "default" });
    assert.equal(Buffer.from(secret.data!.OTEL_EXPORTER_OTLP_HEADERS!, "base64").toString(), "x-api-key=abc123");
    assert.equal(secret.metadata!.ownerReferences![0]!.uid, obj.metadata.uid);

    // SDK telemetry, decoded from what the SDK's own OTLP/HTTP exporters sent at close()
    const spans = receiver.spans().filter((s) => s.name === "sandboxes.create");
    assert.deepEqual(spans, [
      { name: "sandboxes.create", scope: "leap0-sdk-js", attributes: { "leap0.sandbox.id": id }, status: 1 },
    ]);
    assert.deepEqual(receiver.histograms().sandboxes_create_duration, [
      { attributes: { status: "success" }, count: 1, unit: "ms", scope: "leap0-sdk-js" },
    ]);
    assert.ok(receiver.requests.length >= 2);
    for (const req of receiver.requests) assert.equal(req.headers["x-api-key"], "abc123");
  } finally {
    await receiver.stop();
    kubelet.stop();
    await operator.stop();
  }
});
