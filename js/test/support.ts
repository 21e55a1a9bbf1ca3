/**
 * Helpers of the SDK's tests: the embedded API server (`leap0 dev apiserver`) as a child process, a fresh
 * namespace per test, a stand-in operator and kubelet, the real operator process, and a real OTLP/HTTP
 * receiver. Nothing of the SDK is replaced: the tests drive it against these real components.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer, request as httpRequest, type IncomingMessage, type Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { connect, type AddressInfo, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  Watch,
} from "@kubernetes/client-node";

/** js/ (tests compile from js/test to js/build-test: both one level below). */
export const JS_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const REPO_DIR = resolve(JS_DIR, "..");
/** The repository's Python environment (scripts/test.sh creates it); override with LEAP0_VENV. */
export const VENV = process.env.LEAP0_VENV ?? join(REPO_DIR, ".venv");

export const GROUP = "leap0.dev";
export const VERSION = "v1alpha1";
export const PLURAL = "sandboxes";

export type Json = Record<string, any>;

export function tempDir(prefix = "leap0-js-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Wait for a condition through a real signal source; the tests never time their assertions. */
export async function waitFor<T>(
  check: () => Promise<T | undefined | false>,
  what: string,
  limitMs = 20000,
): Promise<T> {
  const until = Date.now() + limitMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > until) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function waitForLine(proc: ChildProcess, pattern: RegExp, what: string): Promise<RegExpMatchArray> {
  return new Promise((resolvePromise, reject) => {
    let buffer = "";
    const onData = (chunk: Buffer): void => {
      buffer += chunk.toString();
      const match = buffer.match(pattern);
      if (match) {
        proc.stdout?.off("data", onData);
        resolvePromise(match);
      }
    };
    proc.stdout?.on("data", onData);
    proc.stderr?.on("data", (chunk: Buffer) => (buffer += chunk.toString()));
    proc.once("exit", (code) => reject(new Error(`${what} exited (${code}) before it was ready:\n${buffer}`)));
  });
}

async function stopProcess(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once("exit", r));
  proc.kill("SIGTERM");
  const timer = setTimeout(() => proc.kill("SIGKILL"), 10000);
  await exited;
  clearTimeout(timer);
}

export interface ApiServer {
  url: string;
  kubeconfig: string;
  kubeConfig: KubeConfig;
  custom: CustomObjectsApi;
  core: CoreV1Api;
  /** Requests the server has answered so far (its `/leap0/stats`). */
  requests(): Promise<number>;
  stop(): Promise<void>;
}

/** The raw client the tests use to look at what the SDK did (plain http: marked as kubectl needs nothing). */
export function rawKubeConfig(kubeconfig: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  kc.clusters = kc.clusters.map((c) => ({ ...c, skipTLSVerify: true }));
  return kc;
}

/** `leap0 dev apiserver` on a free port, with its kubeconfig in a temp folder. */
export async function startApiServer(): Promise<ApiServer> {
  const dir = tempDir();
  const kubeconfig = join(dir, "kubeconfig");
  const proc = spawn(join(VENV, "bin", "leap0"), ["dev", "apiserver", "--port", "0", "--kubeconfig", kubeconfig], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const [, url] = (await waitForLine(proc, /listening on (http:\/\/\S+)/, "leap0 dev apiserver")) as [string, string];
  await waitFor(async () => readFileSync(kubeconfig, "utf8").includes(url), "the kubeconfig").catch(() => undefined);
  const kubeConfig = rawKubeConfig(kubeconfig);
  return {
    url,
    kubeconfig,
    kubeConfig,
    custom: kubeConfig.makeApiClient(CustomObjectsApi),
    core: kubeConfig.makeApiClient(CoreV1Api),
    async requests() {
      const res = await fetch(`${url}/leap0/stats`);
      return ((await res.json()) as { requests: number }).requests;
    },
    async stop() {
      await stopProcess(proc);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A fresh, uniquely named namespace. */
export async function newNamespace(api: ApiServer): Promise<string> {
  const name = `t-${randomBytes(5).toString("hex")}`;
  await api.core.createNamespace({ body: { metadata: { name } } });
  return name;
}

/** A kubeconfig naming `namespace` as its context's namespace. */
export function kubeconfigFor(api: ApiServer, namespace: string, dir: string): string {
  const text = readFileSync(api.kubeconfig, "utf8").replace(/namespace: \S+/, `namespace: ${namespace}`);
  const path = join(dir, `kubeconfig-${namespace}`);
  writeFileSync(path, text);
  return path;
}

export async function getSandbox(api: ApiServer, namespace: string, name: string): Promise<Json> {
  return (await api.custom.getNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace,
    plural: PLURAL,
    name,
  })) as Json;
}

export async function setSandboxStatus(api: ApiServer, namespace: string, name: string, status: Json): Promise<void> {
  await api.custom.patchNamespacedCustomObjectStatus(
    { group: GROUP, version: VERSION, namespace, plural: PLURAL, name, body: { status } },
    setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
  );
}

export function runningStatus(name: string): Json {
  return {
    phase: "Running",
    reason: "Running",
    podName: name,
    podIP: "127.0.0.1",
    conditions: [{ type: "Ready", status: "True", reason: "Running" }],
  };
}

/** A start that waits, as the operator reports it (a scale-up, a Secret not there yet...). */
export function pendingStatus(reason: string, message: string): Json {
  return {
    phase: "Pending",
    reason,
    message,
    conditions: [{ type: "Ready", status: "False", reason, message }],
  };
}

export function failedStatus(reason: string, message: string): Json {
  return {
    phase: "Failed",
    reason,
    message,
    conditions: [{ type: "Ready", status: "False", reason, message }],
  };
}

/** Reacts to new Sandboxes of a namespace as the operator would: `behaviour(name)` is the status to write
 * (undefined: leave it Pending); a Running one gets its pod. */
export async function standInOperator(
  api: ApiServer,
  namespace: string,
  behaviour: (name: string) => Json | undefined = runningStatus,
  delayMs = 100,
): Promise<{ seen: string[]; stop(): void }> {
  const seen: string[] = [];
  let stopped = false;
  let controller: AbortController | undefined;
  const react = async (name: string): Promise<void> => {
    const status = behaviour(name);
    if (status === undefined || stopped) return;
    if (status.phase === "Running") {
      await api.core
        .createNamespacedPod({
          namespace,
          body: {
            metadata: { name, labels: { "leap0.dev/sandbox-id": name } },
            spec: { containers: [{ name: "sandbox", image: "python:3.12-slim" }] },
          },
        })
        .catch(() => undefined);
    }
    await setSandboxStatus(api, namespace, name, status).catch(() => undefined);
  };
  const start = async (): Promise<void> => {
    if (stopped) return;
    controller = await new Watch(api.kubeConfig).watch(
      `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${PLURAL}`,
      {},
      (type: string, obj: Json) => {
        const name = obj?.metadata?.name as string | undefined;
        if (type !== "ADDED" || name === undefined || seen.includes(name)) return;
        seen.push(name);
        setTimeout(() => void react(name), delayMs);
      },
      () => void start(),
    );
  };
  await start();
  return {
    seen,
    stop() {
      stopped = true;
      controller?.abort();
    },
  };
}

/** The pod status a kubelet writes once every container runs and is ready. */
export function kubeletRunningStatus(pod: Json): Json {
  const statuses = (key: string): Json[] =>
    ((pod.spec?.[key] ?? []) as Json[]).map((ctr) => ({
      name: ctr.name,
      ready: true,
      started: true,
      restartCount: 0,
      image: ctr.image ?? "",
      imageID: "",
      state: { running: { startedAt: "2026-01-01T00:00:02Z" } },
    }));
  return {
    phase: "Running",
    podIP: "10.1.2.3",
    startTime: "2026-01-01T00:00:00Z",
    conditions: [
      { type: "PodScheduled", status: "True" },
      { type: "Ready", status: "True" },
    ],
    initContainerStatuses: statuses("initContainers"),
    containerStatuses: statuses("containers"),
  };
}

/** Plays the kubelet of a namespace: every new pod gets a Running status. */
export async function standInKubelet(api: ApiServer, namespace: string): Promise<{ stop(): void }> {
  const seen = new Set<string>();
  let stopped = false;
  let controller: AbortController | undefined;
  const start = async (): Promise<void> => {
    if (stopped) return;
    controller = await new Watch(api.kubeConfig).watch(
      `/api/v1/namespaces/${namespace}/pods`,
      {},
      (type: string, pod: Json) => {
        const uid = pod?.metadata?.uid as string | undefined;
        if (type === "DELETED" || uid === undefined || seen.has(uid)) return;
        seen.add(uid);
        void api.core
          .patchNamespacedPodStatus(
            { name: pod.metadata.name, namespace, body: { status: kubeletRunningStatus(pod) } },
            setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
          )
          .catch(() => undefined);
      },
      () => void start(),
    );
  };
  await start();
  return {
    stop() {
      stopped = true;
      controller?.abort();
    },
  };
}

/** The real operator (`python -m leap0_operator`) serving one namespace of the server. */
export async function startOperator(
  api: ApiServer,
  namespace: string,
): Promise<{ stop(): Promise<void>; log(): string }> {
  let log = "";
  const proc = spawn(join(VENV, "bin", "python"), ["-m", "leap0_operator", "-n", namespace, "--standalone"], {
    env: { ...process.env, KUBECONFIG: api.kubeconfig },
    stdio: ["ignore", "pipe", "pipe"],
  });
  proc.stdout?.on("data", (d: Buffer) => (log += d.toString()));
  proc.stderr?.on("data", (d: Buffer) => (log += d.toString()));
  return {
    stop: () => stopProcess(proc),
    log: () => log,
  };
}

export interface Received {
  path: string;
  headers: Record<string, string | string[] | undefined>;
  body: Json;
}

/** A real OTLP/HTTP receiver (JSON bodies, as the OTel JS HTTP exporters send them), over http or https. */
export class OtlpReceiver {
  readonly requests: Received[] = [];
  private server: Server | undefined;
  url = "";

  async start(tls?: { key: string; cert: string }): Promise<this> {
    const handler = (req: IncomingMessage, res: import("node:http").ServerResponse): void => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        let body: Json = {};
        try {
          body = JSON.parse(text) as Json;
        } catch {
          body = { unparsed: text };
        }
        this.requests.push({ path: req.url ?? "", headers: req.headers, body });
        res.writeHead(200, { "Content-Type": "application/json" });
        res.end("{}");
      });
    };
    this.server = tls ? createHttpsServer(tls, handler) : createHttpServer(handler);
    await new Promise<void>((r) => this.server!.listen(0, "127.0.0.1", () => r()));
    const port = (this.server.address() as AddressInfo).port;
    this.url = `${tls ? "https" : "http"}://127.0.0.1:${port}`;
    return this;
  }

  get port(): number {
    return (this.server!.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((r) => this.server?.close(r));
  }

  /** Every span received: name, scope, attributes, status code. */
  spans(): { name: string; scope: string; attributes: Json; status: number }[] {
    const out = [];
    for (const { path, body } of this.requests) {
      if (path !== "/v1/traces") continue;
      for (const rs of body.resourceSpans ?? []) {
        for (const ss of rs.scopeSpans ?? []) {
          for (const span of ss.spans ?? []) {
            out.push({
              name: span.name as string,
              scope: ss.scope?.name as string,
              attributes: attributes(span.attributes),
              status: Number(span.status?.code ?? 0),
            });
          }
        }
      }
    }
    return out;
  }

  /** Histogram name -> data points (attributes, count, unit, scope). */
  histograms(): Record<string, { attributes: Json; count: number; unit: string; scope: string }[]> {
    const out: Record<string, { attributes: Json; count: number; unit: string; scope: string }[]> = {};
    for (const { path, body } of this.requests) {
      if (path !== "/v1/metrics") continue;
      for (const rm of body.resourceMetrics ?? []) {
        for (const sm of rm.scopeMetrics ?? []) {
          for (const metric of sm.metrics ?? []) {
            if (!metric.histogram) continue;
            for (const point of metric.histogram.dataPoints ?? []) {
              (out[metric.name] ??= []).push({
                attributes: attributes(point.attributes),
                count: Number(point.count),
                unit: metric.unit,
                scope: sm.scope?.name,
              });
            }
          }
        }
      }
    }
    return out;
  }
}

function attributes(list: Json[] | undefined): Json {
  const out: Json = {};
  for (const { key, value } of list ?? []) {
    const v = value ?? {};
    out[key] =
      v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : undefined) ?? v.boolValue ?? v.doubleValue;
  }
  return out;
}

export interface Proxy {
  url: string;
  /** `METHOD path?query` of every request passed on, in order. */
  requests: string[];
  /** The exec subprotocol the server picked, per upgrade. */
  chosen: string[];
  stop(): Promise<void>;
}

/**
 * A proxy in front of the API server that records the requests passed through it; with `withholdV5` it takes
 * `v5.channel.k8s.io` off the exec upgrade's offered subprotocols, so the server answers with v4: the SDK's v4
 * path, against the same server.
 */
export async function apiProxy(apiUrl: string, opts: { withholdV5?: boolean } = {}): Promise<Proxy> {
  const target = new URL(apiUrl);
  const chosen: string[] = [];
  const requests: string[] = [];
  const sockets = new Set<Socket>();
  const track = (sock: Socket): void => {
    sockets.add(sock);
    sock.on("close", () => sockets.delete(sock));
  };
  const server = createHttpServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    const upstream = httpRequest(
      { host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    req.pipe(upstream);
  });
  server.on("upgrade", (req: IncomingMessage, socket: Socket, head: Buffer) => {
    track(socket);
    requests.push(`${req.method} ${req.url}`);
    const headers = { ...req.headers };
    if (opts.withholdV5) {
      const offered = String(headers["sec-websocket-protocol"] ?? "");
      headers["sec-websocket-protocol"] = offered
        .split(",")
        .map((p) => p.trim())
        .filter((p) => p && p !== "v5.channel.k8s.io")
        .join(", ");
    }
    const upstream = connect(Number(target.port), target.hostname, () => {
      let text = `${req.method} ${req.url} HTTP/1.1\r\n`;
      for (const [k, v] of Object.entries(headers)) text += `${k}: ${String(v)}\r\n`;
      upstream.write(text + "\r\n");
      upstream.write(head);
      // the subprotocol the server picked, from its 101 answer
      upstream.once("data", (chunk: Buffer) => {
        const match = /sec-websocket-protocol:\s*(\S+)/i.exec(chunk.toString("latin1"));
        if (match) chosen.push(match[1]!);
      });
      upstream.pipe(socket);
      socket.pipe(upstream);
    });
    track(upstream);
    upstream.on("error", () => socket.destroy());
    socket.on("error", () => upstream.destroy());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    chosen,
    stop: async () => {
      for (const sock of sockets) sock.destroy();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

/** A kubeconfig whose server is `url` (e.g. a proxy in front of the API server). */
export function kubeconfigWithServer(api: ApiServer, url: string, namespace: string, dir: string): string {
  const text = readFileSync(api.kubeconfig, "utf8")
    .replace(/server: \S+/, `server: ${url}`)
    .replace(/namespace: \S+/, `namespace: ${namespace}`);
  const path = join(dir, `kubeconfig-proxy-${namespace}`);
  writeFileSync(path, text);
  return path;
}

/** Run `node` on a script; resolves with its exit code and output. */
export function runNode(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((r) => {
    const proc = spawn(process.execPath, args, { env: opts.env ?? process.env, cwd: opts.cwd ?? JS_DIR });
    let stdout = "";
    let stderr = "";
    proc.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    proc.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    proc.on("close", (code) => r({ code, stdout, stderr }));
  });
}
