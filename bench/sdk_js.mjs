// Benchmark: what the JavaScript SDK adds on top of @kubernetes/client-node, with SDK telemetry off and on,
// and what `import "leap0"` costs with telemetry off.
//
//     (cd js && npm ci) && node bench/sdk_js.mjs [--calls 200] [--execs 30]
//
// Against a fresh embedded API server (`.venv/bin/leap0 dev apiserver`, which answers exec by running the
// command locally), measures per call, in one run with interleaved rounds (median round):
// - sandboxes create (wait: false), get, list, delete: the raw CustomObjectsApi calls (the baseline) vs the SDK
//   with telemetry off and on (in-memory span exporter and metric reader);
// - process.execute("true"): the raw client's Exec (baseline) vs sandbox.process.execute.
// Goal: SDK per call at most 1.2x the raw client with telemetry off, at most 1.5x with telemetry on.
// Then, in fresh node processes (median of 5): the import time and the number of modules loaded by
// `import "leap0"` (telemetry off: no OpenTelemetry module may load) beside `import "@kubernetes/client-node"`.

import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { PassThrough, Writable } from "node:stream";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const JS = join(REPO, "js");
const jsRequire = createRequire(join(JS, "package.json"));
const load = (name) => import(pathToFileURL(jsRequire.resolve(name)).href);
const k8s = await load("@kubernetes/client-node");
const { Leap0Client } = await import(
  pathToFileURL(join(JS, "dist", "index.js")).href
);
const { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } =
  await load("@opentelemetry/sdk-trace-base");
const {
  MeterProvider,
  PeriodicExportingMetricReader,
  InMemoryMetricExporter,
  AggregationTemporality,
} = await load("@opentelemetry/sdk-metrics");

const { values: opts } = parseArgs({
  options: {
    calls: { type: "string", default: "200" },
    execs: { type: "string", default: "30" },
  },
});
const CALLS = Number(opts.calls);
const EXECS = Number(opts.execs);
const ROUNDS = 5;
const GROUP = "leap0.dev";
const VERSION = "v1alpha1";
const PLURAL = "sandboxes";

async function startApiServer(dir) {
  const kubeconfig = join(dir, "kubeconfig");
  const proc = spawn(
    join(REPO, ".venv", "bin", "leap0"),
    ["dev", "apiserver", "--port", "0", "--kubeconfig", kubeconfig],
    {
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  await new Promise((ok, fail) => {
    let out = "";
    proc.stdout.on("data", (d) => {
      out += d;
      if (out.includes("kubeconfig written")) ok();
    });
    proc.once("exit", (code) =>
      fail(new Error(`leap0 dev apiserver exited (${code})`)),
    );
  });
  return { kubeconfig, stop: () => proc.kill("SIGTERM") };
}

/** ms per call of each variant: interleaved rounds (load and warm-up hit all alike), median round. */
async function perCall(variants, n) {
  for (const fn of variants) await fn(); // warm up
  const rounds = variants.map(() => []);
  const per = Math.max(1, Math.floor(n / ROUNDS));
  for (let r = 0; r < ROUNDS; r++) {
    for (const [i, fn] of variants.entries()) {
      const started = performance.now();
      for (let k = 0; k < per; k++) await fn();
      rounds[i].push((performance.now() - started) / per);
    }
  }
  return rounds.map((r) => r.sort((a, b) => a - b)[Math.floor(r.length / 2)]);
}

class Sink extends Writable {
  _write(_chunk, _enc, done) {
    done();
  }
}

async function rawExec(kc, namespace, pod) {
  const handlerStreams = {
    stdin: new PassThrough(),
    stdout: new Sink(),
    stderr: new Sink(),
  };
  const exec = new k8s.Exec(
    kc,
    new (await wsHandler())(kc, undefined, handlerStreams),
  );
  let status;
  const ws = await exec.exec(
    namespace,
    pod,
    "sandbox",
    ["true"],
    handlerStreams.stdout,
    handlerStreams.stderr,
    null,
    false,
    (s) => {
      status = s;
    },
  );
  await new Promise((r) => ws.on("close", r));
  if (status?.status !== "Success")
    throw new Error(`raw exec failed: ${JSON.stringify(status)}`);
}
let WebSocketHandler;
async function wsHandler() {
  WebSocketHandler ??= (
    await import(
      pathToFileURL(
        join(
          JS,
          "node_modules/@kubernetes/client-node/dist/web-socket-handler.js",
        ),
      ).href
    )
  ).WebSocketHandler;
  return WebSocketHandler;
}

/** Import cost in a fresh process: ms for the import and the module files loaded (ESM hook + require.cache). */
function importCost(dir, specifierUrl, label) {
  const hooks = join(dir, "hooks.mjs");
  writeFileSync(
    hooks,
    `let n; export function initialize(d) { n = d.port; }
export async function load(url, ctx, next) { if (url.startsWith("file:")) n.postMessage(url); return next(url, ctx); }
`,
  );
  const child = join(dir, `import-${label}.mjs`);
  writeFileSync(
    child,
    `import { register, createRequire } from "node:module";
import { MessageChannel } from "node:worker_threads";
const { port1, port2 } = new MessageChannel();
const esm = new Set();
port1.on("message", (u) => esm.add(u));
port1.unref();
register(${JSON.stringify(pathToFileURL(hooks).href)}, { data: { port: port2 }, transferList: [port2] });
const t0 = performance.now();
await import(${JSON.stringify(specifierUrl)});
const ms = performance.now() - t0;
await new Promise((r) => setTimeout(r, 50));
const cjs = Object.keys(createRequire(import.meta.url).cache).map((f) => "file://" + f);
const all = [...new Set([...esm, ...cjs])];
console.log(JSON.stringify({ ms, modules: all.length, otel: all.filter((m) => m.includes("@opentelemetry")).length }));
`,
  );
  const runs = [];
  for (let i = 0; i < 5; i++) {
    const res = spawnSync(process.execPath, [child], { encoding: "utf8" });
    if (res.status !== 0) throw new Error(res.stderr);
    runs.push(JSON.parse(res.stdout));
  }
  runs.sort((a, b) => a.ms - b.ms);
  return runs[2];
}

const ratio = (x, base) => (x / base).toFixed(2) + "x";

async function main() {
  const dir = mkdtempSync(join(tmpdir(), "leap0-bench-js-"));
  const server = await startApiServer(dir);
  try {
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(server.kubeconfig);
    kc.clusters = kc.clusters.map((c) => ({ ...c, skipTLSVerify: true })); // plain http, as the SDK allows
    const custom = kc.makeApiClient(k8s.CustomObjectsApi);
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const ns = "default";
    const off = new Leap0Client({
      kubeconfig: server.kubeconfig,
      sdkOtelEnabled: false,
    });
    const tracerProvider = new BasicTracerProvider({
      spanProcessors: [new SimpleSpanProcessor(new InMemorySpanExporter())],
    });
    const meterProvider = new MeterProvider({
      readers: [
        new PeriodicExportingMetricReader({
          exporter: new InMemoryMetricExporter(
            AggregationTemporality.CUMULATIVE,
          ),
          exportIntervalMillis: 3_600_000,
        }),
      ],
    });
    const on = new Leap0Client({
      kubeconfig: server.kubeconfig,
      sdkOtelEnabled: true,
      tracerProvider,
      meterProvider,
    });

    // a fixed population for get and list
    const population = [];
    for (let i = 0; i < 20; i++)
      population.push(
        (await off.sandboxes.create({ labels: { bench: "list" }, wait: false }))
          .id,
      );
    const target = population[0];
    const crd = {
      group: GROUP,
      version: VERSION,
      namespace: ns,
      plural: PLURAL,
    };
    let counter = 0;
    const fresh = () => `bench-${process.pid}-${counter++}`;
    const body = (name) => ({
      apiVersion: `${GROUP}/${VERSION}`,
      kind: "Sandbox",
      metadata: { name, namespace: ns },
      spec: { vcpu: 1 },
    });

    const rows = [];
    const [rawCd, offCd, onCd] = await perCall(
      [
        async () => {
          const name = fresh();
          await custom.createNamespacedCustomObject({
            ...crd,
            body: body(name),
          });
          await custom.deleteNamespacedCustomObject({ ...crd, name });
        },
        async () => {
          const s = await off.sandboxes.create({
            vcpu: 1,
            wait: false,
            name: fresh(),
          });
          await off.sandboxes.delete(s.id);
        },
        async () => {
          const s = await on.sandboxes.create({
            vcpu: 1,
            wait: false,
            name: fresh(),
          });
          await on.sandboxes.delete(s.id);
        },
      ],
      CALLS,
    );
    rows.push(["create + delete", rawCd, offCd, onCd]);
    const [rawGet, offGet, onGet] = await perCall(
      [
        () => custom.getNamespacedCustomObject({ ...crd, name: target }),
        () => off.sandboxes.get(target),
        () => on.sandboxes.get(target),
      ],
      CALLS,
    );
    rows.push(["get", rawGet, offGet, onGet]);
    const [rawList, offList, onList] = await perCall(
      [
        () =>
          custom.listNamespacedCustomObject({
            ...crd,
            labelSelector: "bench=list",
          }),
        () => off.sandboxes.list("bench=list"),
        () => on.sandboxes.list("bench=list"),
      ],
      CALLS,
    );
    rows.push(["list (20 items)", rawList, offList, onList]);

    // execute: a Running sandbox with its pod (the emulator runs the command locally)
    const sb = await off.sandboxes.create({ wait: false });
    await core.createNamespacedPod({
      namespace: ns,
      body: {
        metadata: { name: sb.id },
        spec: { containers: [{ name: "sandbox", image: "x" }] },
      },
    });
    await custom.patchNamespacedCustomObjectStatus(
      {
        ...crd,
        name: sb.id,
        body: { status: { phase: "Running", podName: sb.id } },
      },
      k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch),
    );
    const sbOff = await off.sandboxes.get(sb.id);
    const sbOn = await on.sandboxes.get(sb.id);
    const [rawExecMs, offExec, onExec] = await perCall(
      [
        () => rawExec(kc, ns, sb.id),
        () => sbOff.process.execute(["true"]),
        () => sbOn.process.execute(["true"]),
      ],
      EXECS,
    );
    rows.push(["process.execute", rawExecMs, offExec, onExec]);
    await off.close();
    await on.close();

    console.log(
      `leap0 JS SDK vs @kubernetes/client-node, ms per call (median of ${ROUNDS} interleaved rounds)`,
    );
    console.log(
      "| call | raw client | SDK, telemetry off | ratio (goal ≤ 1.2x) | SDK, telemetry on | ratio (goal ≤ 1.5x) |",
    );
    console.log("|---|---|---|---|---|---|");
    let met = true;
    for (const [name, raw, o, n] of rows) {
      met &&= o / raw <= 1.2 && n / raw <= 1.5;
      console.log(
        `| ${name} | ${raw.toFixed(2)} | ${o.toFixed(2)} | ${ratio(o, raw)} | ${n.toFixed(2)} | ${ratio(n, raw)} |`,
      );
    }
    console.log(`per-call goals ${met ? "met" : "NOT met"}`);

    const leap0 = importCost(
      dir,
      pathToFileURL(join(JS, "dist", "index.js")).href,
      "leap0",
    );
    const base = importCost(
      dir,
      pathToFileURL(jsRequire.resolve("@kubernetes/client-node")).href,
      "k8s",
    );
    console.log("\nimport cost in a fresh node process (median of 5)");
    console.log("| import | ms | modules | OpenTelemetry modules |");
    console.log("|---|---|---|---|");
    console.log(
      `| @kubernetes/client-node (baseline) | ${base.ms.toFixed(0)} | ${base.modules} | ${base.otel} |`,
    );
    console.log(
      `| leap0 (telemetry off) | ${leap0.ms.toFixed(0)} | ${leap0.modules} | ${leap0.otel} |`,
    );
    console.log(
      `import goal (no OpenTelemetry module) ${leap0.otel === 0 ? "met" : "NOT met"}; ratio ${ratio(leap0.ms, base.ms)}`,
    );
  } finally {
    server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
