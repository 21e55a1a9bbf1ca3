/** `Leap0Client`: sandboxes through the cluster's Kubernetes API (kubeconfig or in-cluster configuration). */

import {
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  Watch,
} from "@kubernetes/client-node";
import * as c from "./constants.js";
import {
  ApiError,
  ApiUnreachableError,
  Leap0Error,
  SandboxFailedError,
  SandboxNotFoundError,
  SandboxNotRunningError,
  SandboxTimeoutError,
  SandboxValidationError,
} from "./errors.js";
import { loadKubeConfig, resolveNamespace } from "./kube.js";
import {
  activityPatch,
  apiErrorMessage,
  apiErrorReason,
  buildOtelSecret,
  buildSandboxBody,
  type EnvInput,
  type EnvVar,
  generateSandboxName,
  type JsonObject,
  mergeEnv,
  type NetworkSpec,
  normalizeEnv,
  otelExportEnv,
  otelSecretName,
  pauseRefusal,
  pauseRefused,
  pauseVerdict,
  recordsActivity,
  resolveCreateArgs,
  resumeVerdict,
  type SandboxData,
  sandboxFields,
  type Verdict,
  waitVerdict,
  type WorkspaceSpec,
} from "./models.js";
import { Sandbox } from "./sandbox.js";
import { makeTelemetry, type MeterProviderLike, type Telemetry, type TracerProviderLike } from "./telemetry.js";

/** Seconds `create` waits for Running by default. */
export const DEFAULT_WAIT_TIMEOUT_S = 180;
const NAME_ATTEMPTS = 3;
const RECONNECT_PAUSE_MS = 250;

export interface Leap0ClientOptions {
  /** The namespace to work in (default: the kubeconfig context's, or the pod's, else `default`). */
  namespace?: string;
  /** A kubeconfig file (default: `$KUBECONFIG`, else `~/.kube/config`, else the in-cluster service account). */
  kubeconfig?: string;
  /** The SDK's own spans and metrics on or off (default: `LEAP0_SDK_OTEL_ENABLED`, else on with a local
   * `OTEL_EXPORTER_OTLP_ENDPOINT`). */
  sdkOtelEnabled?: boolean;
  /** Providers used when SDK telemetry is on (default: the application's global ones, else the SDK's own). */
  tracerProvider?: TracerProviderLike;
  meterProvider?: MeterProviderLike;
  /** An operation on a paused sandbox resumes it first and waits until it is Running (default true); false
   * rejects with `SandboxNotRunningError` instead. */
  autoResume?: boolean;
}

export interface WaitOptions {
  /** Wait until the sandbox is Paused (pause) or Running (resume); default true. */
  wait?: boolean;
  /** Seconds to wait (default 180). */
  waitTimeout?: number;
}

export interface CreateSandboxOptions {
  /** A SandboxTemplate name (hosted-SDK spelling: `templateName`). */
  template?: string;
  templateName?: string;
  /** vCPUs, 1-8. */
  vcpu?: number;
  /** MiB, 512-8192, even (hosted-SDK spelling: `memoryMib`). */
  memory?: number;
  memoryMib?: number;
  /** Lifetime in seconds from creation, 1-28800 (hosted-SDK spelling: `timeoutMin`, in minutes). */
  timeout?: number;
  timeoutMin?: number;
  /** `{ NAME: "value" }` or a list of Kubernetes EnvVars. */
  envVars?: EnvInput;
  /** Forward telemetry produced inside the sandbox to the local `OTEL_EXPORTER_OTLP_ENDPOINT`
   * (hosted-SDK spelling: `telemetry`). */
  otelExport?: boolean;
  telemetry?: boolean;
  /** Wait until the sandbox is Running (default true). */
  wait?: boolean;
  /** Seconds to wait for Running (default 180). */
  waitTimeout?: number;
  image?: string;
  /** Workspace size in MiB. */
  disk?: number;
  command?: string[];
  args?: string[];
  /** The telemetry sidecar on or off (`spec.telemetry.enabled`). */
  telemetrySidecar?: boolean;
  /** Sandbox logs on or off (`spec.telemetry.logs`): the output of the sandbox's command and of
   * `process.execute` as OTLP log records (unset: the template's, else on with the sidecar). */
  telemetryLogs?: boolean;
  /** `spec.network`, passed through as given. */
  network?: NetworkSpec;
  /** `spec.workspace`: `{ persistent: true }` puts /workspace on a PersistentVolumeClaim kept while paused. */
  workspace?: WorkspaceSpec;
  /** Seconds without an SDK or MCP operation before the sandbox is paused (needs a persistent workspace). */
  idleTimeout?: number;
  /** `Delete` (default) or `Pause` when the timeout is reached. */
  onTimeout?: string;
  /** The sandbox id (default: `sbx-` and random characters). */
  name?: string;
  labels?: Record<string, string>;
}

/** @internal The status code and body of a `@kubernetes/client-node` error, if it is an HTTP one. */
function httpError(err: unknown): { code: number; body: unknown; message: string } | undefined {
  if (err !== null && typeof err === "object") {
    const e = err as { code?: unknown; statusCode?: unknown; body?: unknown; message?: unknown };
    const code = typeof e.code === "number" ? e.code : typeof e.statusCode === "number" ? e.statusCode : undefined;
    if (code !== undefined) return { code, body: e.body, message: String(e.message ?? "") };
  }
  return undefined;
}

/** @internal Whether `err` says no answer came: node-fetch's `FetchError` of type `system` (a refused, reset
 * or timed-out connection, with its errno `code`), or an aborted request. */
function transportError(err: unknown): err is Error {
  if (!(err instanceof Error)) return false;
  const e = err as Error & { type?: unknown; code?: unknown };
  return (e.name === "FetchError" && e.type === "system") || e.name === "AbortError" || typeof e.code === "string";
}

/** Translate a Kubernetes API error into the SDK's typed errors (other errors pass through). */
function raiseApi(err: unknown, sandboxId: string | undefined, namespace: string): never {
  const http = httpError(err);
  if (http === undefined) {
    if (transportError(err) && !(err instanceof Leap0Error)) {
      throw new ApiUnreachableError(
        `cannot reach the Kubernetes API server (${err.message.replace(/\?\S*/g, "?<redacted>")}); ` +
          "is the cluster up, and is it the one the kubeconfig names?",
        { cause: err },
      );
    }
    throw err;
  }
  const message = apiErrorMessage(http.body, `${http.message || "API error"} (HTTP ${http.code})`);
  const reason = apiErrorReason(http.body);
  if (http.code === 404 && sandboxId !== undefined)
    throw new SandboxNotFoundError(sandboxId, namespace, undefined, err);
  if (http.code === 422) {
    throw new SandboxValidationError(message, { status: http.code, ...(reason ? { reason } : {}), cause: err });
  }
  throw new ApiError(message, { status: http.code, ...(reason ? { reason } : {}), cause: err });
}

/** Entry point of the SDK: `new Leap0Client({ namespace?, kubeconfig?, sdkOtelEnabled? })`. */
export class Leap0Client {
  readonly namespace: string;
  readonly sandboxes: SandboxesClient;
  /** @internal */
  readonly kubeConfig: KubeConfig;
  /** @internal */
  readonly custom: CustomObjectsApi;
  /** @internal */
  readonly core: CoreV1Api;
  /** @internal */
  readonly telemetry: Telemetry;
  readonly autoResume: boolean;
  #closed = false;
  /** When this client last recorded the use of each sandbox (ms, monotonic). */
  readonly #activity = new Map<string, number>();

  constructor(options: Leap0ClientOptions = {}) {
    const env = { ...process.env };
    const { kubeConfig, namespace } = loadKubeConfig(options.kubeconfig, env);
    this.kubeConfig = kubeConfig;
    this.namespace = resolveNamespace(options.namespace, namespace);
    this.custom = kubeConfig.makeApiClient(CustomObjectsApi);
    this.core = kubeConfig.makeApiClient(CoreV1Api);
    this.telemetry = makeTelemetry(options.sdkOtelEnabled, env, options.tracerProvider, options.meterProvider);
    this.autoResume = options.autoResume ?? true;
    this.sandboxes = new SandboxesClient(this);
  }

  /**
   * @internal Record that a sandbox is being used (for its idleTimeout): the `leap0.dev/last-activity`
   * annotation, at most once per `ACTIVITY_WRITE_INTERVAL_S` per sandbox from this client, and only for
   * sandboxes that can go idle. Best effort: a failed write is ignored, the operation goes on.
   */
  async recordUse(data: SandboxData): Promise<void> {
    if (!recordsActivity(data)) return;
    const namespace = data.namespace || this.namespace;
    const key = `${namespace}/${data.id}`;
    const now = performance.now();
    const last = this.#activity.get(key);
    if (last !== undefined && now - last < c.ACTIVITY_WRITE_INTERVAL_S * 1000) return;
    this.#activity.set(key, now);
    try {
      await this.custom.patchNamespacedCustomObject(
        {
          group: c.GROUP,
          version: c.VERSION,
          namespace,
          plural: c.SANDBOX_PLURAL,
          name: data.id,
          body: activityPatch(new Date()),
        },
        setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
      );
    } catch {
      this.#activity.delete(key);
    }
  }

  /** Whether the SDK's own telemetry is on. */
  get sdkOtelEnabled(): boolean {
    return this.telemetry.enabled;
  }

  /** The API server's URL. */
  get host(): string {
    return this.kubeConfig.getCurrentCluster()?.server ?? "";
  }

  /** Flush and shut down the SDK's own telemetry providers. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.telemetry.close();
  }

  /** @internal */
  checkOpen(): void {
    if (this.#closed) throw new Leap0Error("this Leap0Client is closed");
  }
}

interface WatchResult {
  kind: "verdict" | "deleted" | "expired" | "ended" | "deadline" | "error";
  error?: unknown;
}

/** `client.sandboxes`: create, get, list, delete Sandbox objects in the client's namespace. */
export class SandboxesClient {
  readonly #client: Leap0Client;

  constructor(client: Leap0Client) {
    this.#client = client;
  }

  get #ns(): string {
    return this.#client.namespace;
  }

  #crd(): { group: string; version: string; namespace: string; plural: string } {
    return { group: c.GROUP, version: c.VERSION, namespace: this.#ns, plural: c.SANDBOX_PLURAL };
  }

  async #getObj(sandboxId: string): Promise<JsonObject> {
    try {
      return (await this.#client.custom.getNamespacedCustomObject({ ...this.#crd(), name: sandboxId })) as JsonObject;
    } catch (err) {
      raiseApi(err, sandboxId, this.#ns);
    }
  }

  #bind(obj: JsonObject): Sandbox {
    return new Sandbox(sandboxFields(obj), this.#client);
  }

  /**
   * Create a sandbox and (`wait`, the default) resolve once it is Running.
   *
   * Values left out are not sent, so the template's (else the operator's defaults) apply. The API validates
   * ranges; its message comes back as `SandboxValidationError`. Rejects with `SandboxFailedError` (with the
   * operator's reason) if the sandbox fails, `SandboxTimeoutError` if it is not Running within `waitTimeout`
   * seconds (the sandbox is kept).
   */
  async create(options: CreateSandboxOptions = {}): Promise<Sandbox> {
    this.#client.checkOpen();
    const args = resolveCreateArgs(options);
    if (
      options.otelExport !== undefined &&
      options.telemetry !== undefined &&
      options.otelExport !== options.telemetry
    ) {
      throw new TypeError("give either otelExport or telemetry (its hosted-SDK alias), not both");
    }
    const otelExport = Boolean(options.otelExport ?? options.telemetry);
    const waitTimeout = options.waitTimeout ?? DEFAULT_WAIT_TIMEOUT_S;
    return this.#client.telemetry.operation(c.SDK_OP_SANDBOXES_CREATE, undefined, async (op) => {
      const userEnv = normalizeEnv(options.envVars);
      const obj = await this.#createObj(options, args, userEnv, otelExport);
      const name = (obj.metadata as JsonObject).name as string;
      op.setSandboxId(name);
      if (options.wait === false) return this.#bind(obj);
      return this.#bind(await this.#wait(obj, waitTimeout, waitVerdict, "Running", "starting"));
    });
  }

  async #createObj(
    options: CreateSandboxOptions,
    args: ReturnType<typeof resolveCreateArgs>,
    userEnv: EnvVar[],
    otelExport: boolean,
  ): Promise<JsonObject> {
    const ns = this.#ns;
    const attempts = options.name !== undefined ? 1 : NAME_ATTEMPTS;
    for (let attempt = 0; attempt < attempts; attempt++) {
      const sandboxName = options.name ?? generateSandboxName();
      const secretName = otelSecretName(sandboxName);
      let env = userEnv;
      let secretData: Record<string, string> | undefined;
      if (otelExport) {
        const [otelEnv, data] = otelExportEnv(process.env, secretName);
        env = mergeEnv(otelEnv, userEnv); // the user's own envVars win on equal names
        secretData = data;
      }
      const body = buildSandboxBody({
        name: sandboxName,
        namespace: ns,
        template: args.template,
        image: options.image,
        vcpu: args.vcpu,
        memory: args.memory,
        disk: options.disk,
        timeout: args.timeout,
        env,
        command: options.command,
        args: options.args,
        telemetry: options.telemetrySidecar,
        telemetryLogs: options.telemetryLogs,
        network: options.network,
        workspace: options.workspace,
        idleTimeout: options.idleTimeout,
        onTimeout: options.onTimeout,
        labels: options.labels,
      });
      let obj: JsonObject;
      try {
        obj = (await this.#client.custom.createNamespacedCustomObject({ ...this.#crd(), body })) as JsonObject;
      } catch (err) {
        if (httpError(err)?.code === 409 && attempt + 1 < attempts) continue;
        raiseApi(err, undefined, ns);
      }
      if (secretData === undefined) return obj;
      // The Secret after the Sandbox, owned by it from the start: the operator references only Secrets owned by
      // the Sandbox (or labelled for sandboxes), and waits for one that does not exist yet.
      const ownerUid = (obj.metadata as JsonObject).uid as string;
      const secret = buildOtelSecret({ name: secretName, namespace: ns, sandboxName, data: secretData, ownerUid });
      try {
        await this.#client.core.createNamespacedSecret({ namespace: ns, body: secret });
      } catch (err) {
        // Without its Secret the sandbox would wait for nothing: take it back.
        try {
          await this.#client.custom.deleteNamespacedCustomObject({ ...this.#crd(), name: sandboxName });
        } catch {
          // already gone
        }
        if (httpError(err)?.code === 409 && attempt + 1 < attempts) continue;
        raiseApi(err, undefined, ns);
      }
      return obj;
    }
    throw new ApiError("could not find a free sandbox name", { status: 409 });
  }

  /**
   * Watch the Sandbox (field selector on its name, from `obj`'s resourceVersion) until `verdict` says `done`
   * (`goal` and `doing` name it in the errors: `Running`, `starting`); `failed` rejects with the operator's
   * reason.
   */
  async #wait(
    obj: JsonObject,
    waitTimeout: number,
    verdict: (raw: JsonObject) => Verdict,
    goal: string,
    doing: string,
  ): Promise<JsonObject> {
    const meta = obj.metadata as JsonObject;
    const name = meta.name as string;
    const ns = this.#ns;
    const deadline = performance.now() + waitTimeout * 1000;
    let latest = obj;
    let resourceVersion = meta.resourceVersion as string | undefined;
    for (;;) {
      const where = verdict(latest);
      if (where === "done") return latest;
      const sb = sandboxFields(latest);
      if (where === "failed") {
        throw new SandboxFailedError(name, sb.phase ?? c.PHASE_FAILED, sb.reason, sb.message);
      }
      const remaining = (deadline - performance.now()) / 1000;
      if (remaining <= 0) {
        throw new SandboxTimeoutError(
          `sandbox '${name}' not ${goal} after ${waitTimeout} s ` +
            `(phase ${sb.phase || "none yet"}${sb.reason ? ", " + sb.reason : ""})`,
          { sandboxId: name, ...(sb.phase ? { phase: sb.phase } : {}), ...(sb.reason ? { reason: sb.reason } : {}) },
        );
      }
      const result = await new Promise<WatchResult>((resolve) => {
        let settled = false;
        let controller: AbortController | undefined;
        const finish = (r: WatchResult): void => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          controller?.abort();
          resolve(r);
        };
        // the client-side deadline ends the watch even if the server is late to
        const timer = setTimeout(() => finish({ kind: "deadline" }), Math.max(50, remaining * 1000));
        const watch = new Watch(this.#client.kubeConfig);
        const path = `/apis/${c.GROUP}/${c.VERSION}/namespaces/${encodeURIComponent(ns)}/${c.SANDBOX_PLURAL}`;
        const params: Record<string, string | number | boolean> = {
          fieldSelector: `metadata.name=${name}`,
          allowWatchBookmarks: true,
          timeoutSeconds: Math.max(1, Math.ceil(remaining)),
        };
        if (resourceVersion) params.resourceVersion = resourceVersion;
        watch
          .watch(
            path,
            params,
            (type: string, object: JsonObject) => {
              if (settled) return;
              if (type === "ERROR") {
                finish(
                  object.code === 410
                    ? { kind: "expired" }
                    : { kind: "error", error: { code: object.code, body: object } },
                );
                return;
              }
              const objMeta = (object?.metadata ?? {}) as JsonObject;
              if (typeof objMeta.resourceVersion === "string" && objMeta.resourceVersion) {
                resourceVersion = objMeta.resourceVersion;
              }
              if (type === "BOOKMARK") return;
              if (type === "DELETED") {
                finish({ kind: "deleted" });
                return;
              }
              if (objMeta.name !== name) return;
              latest = object;
              if (verdict(latest) !== "pending") finish({ kind: "verdict" });
            },
            (err: unknown) => finish(err ? { kind: "error", error: err } : { kind: "ended" }),
          )
          .then(
            (ctrl) => {
              controller = ctrl;
              if (settled) ctrl.abort();
            },
            (err: unknown) => finish({ kind: "error", error: err }),
          );
      });
      if (result.kind === "deleted") {
        throw new SandboxNotFoundError(name, ns, `sandbox '${name}' was deleted while ${doing}`);
      }
      if (result.kind === "expired" || (result.kind === "error" && httpError(result.error)?.code === 410)) {
        // too old: start again from the current object
        latest = await this.#getObj(name);
        resourceVersion = (latest.metadata as JsonObject).resourceVersion as string | undefined;
        continue;
      }
      if (result.kind === "error") {
        if (httpError(result.error) !== undefined) raiseApi(result.error, name, ns);
        // a dropped or refused connection: a short pause, then the loop checks the deadline and watches again
        const left = deadline - performance.now();
        if (left > 0) await new Promise((r) => setTimeout(r, Math.min(RECONNECT_PAUSE_MS, left)));
      }
    }
  }

  /** The sandbox with this id (`SandboxNotFoundError` if there is none). */
  async get(sandboxId: string): Promise<Sandbox> {
    this.#client.checkOpen();
    return this.#client.telemetry.operation(c.SDK_OP_SANDBOXES_GET, sandboxId, async () =>
      this.#bind(await this.#getObj(sandboxId)),
    );
  }

  /** Every sandbox in the client's namespace (optionally filtered by a label selector). */
  async list(labelSelector?: string): Promise<Sandbox[]> {
    this.#client.checkOpen();
    return this.#client.telemetry.operation(c.SDK_OP_SANDBOXES_LIST, undefined, async (op) => {
      let result: JsonObject;
      try {
        result = (await this.#client.custom.listNamespacedCustomObject({
          ...this.#crd(),
          ...(labelSelector ? { labelSelector } : {}),
        })) as JsonObject;
      } catch (err) {
        raiseApi(err, undefined, this.#ns);
      }
      const items = (Array.isArray(result.items) ? result.items : []).map((item) => this.#bind(item as JsonObject));
      op.setAttribute("leap0.sandbox.count", items.length);
      return items;
    });
  }

  /** Delete a sandbox by id or object (`SandboxNotFoundError` if it does not exist). */
  async delete(sandbox: string | Sandbox): Promise<void> {
    this.#client.checkOpen();
    const sandboxId = typeof sandbox === "string" ? sandbox : sandbox.id;
    await this.#client.telemetry.operation(c.SDK_OP_SANDBOXES_DELETE, sandboxId, async () => {
      try {
        await this.#client.custom.deleteNamespacedCustomObject({ ...this.#crd(), name: sandboxId });
      } catch (err) {
        raiseApi(err, sandboxId, this.#ns);
      }
    });
  }

  async #patchSpec(sandboxId: string, spec: JsonObject): Promise<JsonObject> {
    try {
      return (await this.#client.custom.patchNamespacedCustomObject(
        { ...this.#crd(), name: sandboxId, body: { spec } },
        setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
      )) as JsonObject;
    } catch (err) {
      raiseApi(err, sandboxId, this.#ns);
    }
  }

  /**
   * Pause a sandbox (`spec.paused: true`): its pod is deleted gracefully (the app gets SIGTERM) and its
   * persistent workspace kept; with `wait` (the default), resolve once it is Paused. A sandbox without a
   * persistent workspace cannot be paused: `SandboxValidationError` (reason `PauseRefused`) says how to get
   * one, and nothing is changed. Pausing a paused sandbox does nothing.
   */
  async pause(sandbox: string | Sandbox, options: WaitOptions = {}): Promise<Sandbox> {
    this.#client.checkOpen();
    const sandboxId = typeof sandbox === "string" ? sandbox : sandbox.id;
    return this.#client.telemetry.operation(c.SDK_OP_SANDBOXES_PAUSE, sandboxId, async () => {
      let obj = await this.#getObj(sandboxId);
      const refusal = pauseRefusal(obj);
      if (refusal !== undefined) throw new SandboxValidationError(refusal, { reason: c.REASON_PAUSE_REFUSED });
      if ((obj.spec as JsonObject | undefined)?.paused !== true)
        obj = await this.#patchSpec(sandboxId, { paused: true });
      if (options.wait === false) return this.#bind(obj);
      const generation = (obj.metadata as JsonObject).generation as number | undefined;
      try {
        return this.#bind(
          await this.#wait(
            obj,
            options.waitTimeout ?? DEFAULT_WAIT_TIMEOUT_S,
            (raw) => pauseVerdict(raw, generation),
            "Paused",
            "pausing",
          ),
        );
      } catch (err) {
        if (!(err instanceof SandboxFailedError)) throw err;
        const latest = sandboxFields(await this.#getObj(sandboxId));
        if (latest.phase !== undefined && c.TERMINAL_PHASES.includes(latest.phase)) throw err;
        // The operator refused it (the workspace came from the template): take the ask back.
        try {
          await this.#patchSpec(sandboxId, { paused: false });
        } catch {
          // gone meanwhile
        }
        throw new SandboxValidationError(pauseRefused(latest) || err.message, { reason: c.REASON_PAUSE_REFUSED });
      }
    });
  }

  /**
   * Resume a paused sandbox (`spec.paused: false`): a new pod on the same workspace, the same identity, a new
   * `startedAt`, and its timeout counted again from now; with `wait` (the default), resolve once it is Running.
   * Resuming a running sandbox does nothing.
   */
  async resume(sandbox: string | Sandbox, options: WaitOptions = {}): Promise<Sandbox> {
    this.#client.checkOpen();
    const sandboxId = typeof sandbox === "string" ? sandbox : sandbox.id;
    return this.#client.telemetry.operation(c.SDK_OP_SANDBOXES_RESUME, sandboxId, async () => {
      let obj = await this.#getObj(sandboxId);
      const phase = (obj.status as JsonObject | undefined)?.phase as string | undefined;
      if (phase !== undefined && c.TERMINAL_PHASES.includes(phase)) {
        throw new SandboxNotRunningError(`sandbox '${sandboxId}' is ${phase}: it cannot be resumed`);
      }
      if ((obj.spec as JsonObject | undefined)?.paused === true)
        obj = await this.#patchSpec(sandboxId, { paused: false });
      if (options.wait === false) return this.#bind(obj);
      const generation = (obj.metadata as JsonObject).generation as number | undefined;
      return this.#bind(
        await this.#wait(
          obj,
          options.waitTimeout ?? DEFAULT_WAIT_TIMEOUT_S,
          (raw) => resumeVerdict(raw, generation),
          "Running",
          "resuming",
        ),
      );
    });
  }

  /** Set `spec.timeout` (lifetime in seconds from creation, or from the last resume; the API checks 1-28800). */
  async setTimeout(sandbox: string | Sandbox, timeout: number): Promise<Sandbox> {
    this.#client.checkOpen();
    if (typeof timeout !== "number" || !Number.isInteger(timeout)) {
      throw new TypeError(`timeout must be an integer number of seconds, got ${JSON.stringify(timeout)}`);
    }
    const sandboxId = typeof sandbox === "string" ? sandbox : sandbox.id;
    return this.#client.telemetry.operation(c.SDK_OP_SANDBOXES_SET_TIMEOUT, sandboxId, async () => {
      let obj: JsonObject;
      try {
        obj = (await this.#client.custom.patchNamespacedCustomObject(
          { ...this.#crd(), name: sandboxId, body: { spec: { timeout } } },
          setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
        )) as JsonObject;
      } catch (err) {
        raiseApi(err, sandboxId, this.#ns);
      }
      return this.#bind(obj);
    });
  }
}
