/** Types of the SDK and the pure functions that build and read API objects (no network here). */

import { randomInt } from "node:crypto";
import * as c from "./constants.js";
import { ConfigurationError } from "./errors.js";

export type JsonObject = Record<string, unknown>;

/** A Kubernetes EnvVar: a plain `value`, or `valueFrom` (e.g. `secretKeyRef`). */
export interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: JsonObject;
}

/** `envVars`: the hosted SDK's `{ NAME: "value" }` object, or a list of Kubernetes EnvVars. */
export type EnvInput = Record<string, string> | readonly EnvVar[];

/** `spec.network` of a Sandbox, passed through as given. */
export interface NetworkSpec {
  policy?: string;
  allowCidrs?: string[];
  [key: string]: unknown;
}

/** `spec.workspace` of a Sandbox: `persistent` (kept while paused) and `storageClassName`. */
export interface WorkspaceSpec {
  persistent?: boolean;
  storageClassName?: string;
  [key: string]: unknown;
}

/** What the API says about one Sandbox: its spec as written and the operator's status. */
export interface SandboxData {
  /** The sandbox id: the Sandbox's `metadata.name`. */
  id: string;
  namespace: string;
  uid: string | undefined;
  resourceVersion: string | undefined;
  createdAt: string | undefined;
  labels: Record<string, string>;
  // spec as requested (undefined: from the template, else the operator's default)
  template: string | undefined;
  image: string | undefined;
  vcpu: number | undefined;
  /** Memory limit in MiB. */
  memory: number | undefined;
  /** Workspace size in MiB. */
  disk: number | undefined;
  /** Lifetime in seconds from creation. */
  timeout: number | undefined;
  env: EnvVar[];
  command: string[] | undefined;
  args: string[] | undefined;
  network: NetworkSpec | undefined;
  workspace: WorkspaceSpec | undefined;
  /** `spec.paused`: the sandbox is asked to be paused. */
  paused: boolean | undefined;
  /** Seconds without an SDK or MCP operation before the sandbox is paused. */
  idleTimeout: number | undefined;
  /** `Delete` or `Pause` when the timeout is reached. */
  onTimeout: string | undefined;
  // status, written by the operator
  phase: string | undefined;
  reason: string | undefined;
  message: string | undefined;
  templateId: string | undefined;
  effectiveVcpu: number | undefined;
  effectiveMemory: number | undefined;
  podName: string | undefined;
  podIP: string | undefined;
  /** The leap0 supervisor in the sandbox container (sandbox logs on): `process.execute` runs through it. */
  supervisor: string | undefined;
  startedAt: string | undefined;
  expiresAt: string | undefined;
  pausedAt: string | undefined;
  resumedAt: string | undefined;
  effectiveWorkspace: JsonObject | undefined;
  effectiveIdleTimeout: number | undefined;
  observedGeneration: number | undefined;
  conditions: JsonObject[];
}

/** What a command run in the sandbox gave back (a non-zero exit code is a result, not an error). */
export interface ProcessResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

function obj(value: unknown): JsonObject {
  return value !== null && typeof value === "object" && !Array.isArray(value) ? (value as JsonObject) : {};
}

function str(value: unknown): string | undefined {
  return typeof value === "string" ? value : undefined;
}

function num(value: unknown): number | undefined {
  return typeof value === "number" ? value : undefined;
}

function strList(value: unknown): string[] | undefined {
  return Array.isArray(value) ? value.map(String) : undefined;
}

export function readyCondition(status: JsonObject): JsonObject | undefined {
  return condition(status, c.CONDITION_READY);
}

export function condition(status: JsonObject, type: string): JsonObject | undefined {
  const conditions = Array.isArray(status.conditions) ? status.conditions : [];
  return conditions.map(obj).find((cond) => cond.type === type);
}

/** The {@link SandboxData} fields of a Sandbox object as the API returns it. */
export function sandboxFields(raw: JsonObject): SandboxData {
  const meta = obj(raw.metadata);
  const spec = obj(raw.spec);
  const status = obj(raw.status);
  let reason = str(status.reason);
  let message = str(status.message);
  const ready = readyCondition(status);
  if (ready !== undefined) {
    reason = reason || str(ready.reason);
    message = message || str(ready.message);
  }
  return {
    id: str(meta.name) ?? "",
    namespace: str(meta.namespace) ?? "",
    uid: str(meta.uid),
    resourceVersion: str(meta.resourceVersion),
    createdAt: str(meta.creationTimestamp),
    labels: { ...(obj(meta.labels) as Record<string, string>) },
    template: str(spec.template),
    image: str(spec.image),
    vcpu: num(spec.vcpu),
    memory: num(spec.memory),
    disk: num(spec.disk),
    timeout: num(spec.timeout),
    env: Array.isArray(spec.env) ? (spec.env as EnvVar[]).map((e) => ({ ...e })) : [],
    command: strList(spec.command),
    args: strList(spec.args),
    network: spec.network === undefined ? undefined : ({ ...obj(spec.network) } as NetworkSpec),
    workspace: spec.workspace === undefined ? undefined : ({ ...obj(spec.workspace) } as WorkspaceSpec),
    paused: typeof spec.paused === "boolean" ? spec.paused : undefined,
    idleTimeout: num(spec.idleTimeout),
    onTimeout: str(spec.onTimeout),
    phase: str(status.phase),
    reason,
    message,
    templateId: str(status.templateId),
    effectiveVcpu: num(status.vcpu),
    effectiveMemory: num(status.memory),
    podName: str(status.podName),
    podIP: str(status.podIP),
    supervisor: str(status[c.STATUS_SUPERVISOR]),
    startedAt: str(status.startedAt),
    expiresAt: str(status.expiresAt),
    pausedAt: str(status.pausedAt),
    resumedAt: str(status.resumedAt),
    effectiveWorkspace: status.workspace === undefined ? undefined : { ...obj(status.workspace) },
    effectiveIdleTimeout: num(status.idleTimeout),
    observedGeneration: num(status.observedGeneration),
    conditions: Array.isArray(status.conditions) ? status.conditions.map(obj) : [],
  };
}

export type Verdict = "done" | "failed" | "pending";

/** `done` (Running), `failed` (Failed or Expired) or `pending`: where a watched Sandbox stands. */
export function waitVerdict(raw: JsonObject): Verdict {
  const phase = str(obj(raw.status).phase);
  if (phase === c.PHASE_RUNNING) return "done";
  if (phase !== undefined && c.TERMINAL_PHASES.includes(phase)) return "failed";
  return "pending";
}

function seen(status: JsonObject, generation: number | undefined): boolean {
  return generation === undefined || (num(status.observedGeneration) ?? 0) >= generation;
}

/**
 * `done` (Paused), `failed` (the operator refused the pause, or the sandbox ended) or `pending`, judged only
 * from a status that has seen the `generation` asking for the pause.
 */
export function pauseVerdict(raw: JsonObject, generation: number | undefined): Verdict {
  const status = obj(raw.status);
  const phase = str(status.phase);
  if (phase !== undefined && c.TERMINAL_PHASES.includes(phase)) return "failed";
  if (!seen(status, generation)) return "pending";
  if (phase === c.PHASE_PAUSED) return "done";
  if (condition(status, c.CONDITION_PAUSED)?.reason === c.REASON_PAUSE_REFUSED) return "failed";
  return "pending";
}

/**
 * `done` (Running again), `failed` (Failed or Expired) or `pending`, judged only from a status that has
 * seen the `generation` asking for the resume (a pause still being carried out is not the resumed sandbox).
 */
export function resumeVerdict(raw: JsonObject, generation: number | undefined): Verdict {
  const status = obj(raw.status);
  const phase = str(status.phase);
  if (phase !== undefined && c.TERMINAL_PHASES.includes(phase)) return "failed";
  if (!seen(status, generation)) return "pending";
  return phase === c.PHASE_RUNNING ? "done" : "pending";
}

/**
 * Why a Sandbox cannot be paused, judged before asking (undefined: ask the operator): it ended, or the
 * operator recorded a workspace that is not persistent (a pause would lose its files).
 */
export function pauseRefusal(raw: JsonObject): string | undefined {
  const name = str(obj(raw.metadata).name) ?? "";
  const status = obj(raw.status);
  const phase = str(status.phase);
  if (phase !== undefined && c.TERMINAL_PHASES.includes(phase)) {
    return `sandbox '${name}' is ${phase}: only a Pending or Running sandbox can be paused`;
  }
  if (status.workspace !== undefined && obj(status.workspace).persistent === false) {
    return (
      `sandbox '${name}' cannot be paused: its workspace is an emptyDir, whose files a pause would lose. ` +
      "Create it with workspace: { persistent: true } (or from a template with workspace.persistent: true) " +
      "to be able to pause it"
    );
  }
  return undefined;
}

/** Why the operator refused to pause it (its `Paused` condition says `PauseRefused`), or undefined. */
export function pauseRefused(data: SandboxData): string | undefined {
  const cond = condition({ conditions: data.conditions }, c.CONDITION_PAUSED);
  return cond?.reason === c.REASON_PAUSE_REFUSED ? String(cond.message ?? "") : undefined;
}

/** The merge patch recording use of a sandbox now (`leap0.dev/last-activity`, RFC 3339 in UTC). */
export function activityPatch(now: Date): JsonObject {
  const stamp = now.toISOString().replace(/\.\d{3}Z$/, "Z");
  return { metadata: { annotations: { [c.ANNOTATION_LAST_ACTIVITY]: stamp } } };
}

/** Using the sandbox is worth recording only when it can go idle (its own or its template's idleTimeout). */
export function recordsActivity(data: SandboxData): boolean {
  return data.idleTimeout !== undefined || data.effectiveIdleTimeout !== undefined;
}

const NAME_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";

/** A fresh sandbox id: `sbx-` and 10 random characters. */
export function generateSandboxName(): string {
  let out = c.SDK_SANDBOX_NAME_PREFIX;
  for (let i = 0; i < 10; i++) out += NAME_ALPHABET[randomInt(NAME_ALPHABET.length)];
  return out;
}

export function otelSecretName(sandboxName: string): string {
  return sandboxName + c.SDK_OTEL_SECRET_SUFFIX;
}

/** User env as a list of EnvVars: an object `{ NAME: "value" }`, or EnvVars passed through as given. */
export function normalizeEnv(envVars: EnvInput | undefined | null): EnvVar[] {
  if (envVars === undefined || envVars === null) return [];
  if (Array.isArray(envVars)) {
    return (envVars as readonly EnvVar[]).map((item) => {
      if (item === null || typeof item !== "object" || typeof item.name !== "string") {
        throw new TypeError(`envVars entries must be EnvVar objects with a 'name'; got ${JSON.stringify(item)}`);
      }
      return { ...item };
    });
  }
  if (typeof envVars !== "object") {
    throw new TypeError("envVars must be an object of names to values or a list of EnvVars");
  }
  return Object.entries(envVars as Record<string, unknown>).map(([name, value]) => {
    if (typeof value !== "string") {
      throw new TypeError(`envVars must map names to strings; got ${name}: ${JSON.stringify(value)}`);
    }
    return { name, value };
  });
}

/** `first` overridden by `then` on equal names, in first-seen order (env is keyed by name). */
export function mergeEnv(first: readonly EnvVar[], then: readonly EnvVar[]): EnvVar[] {
  const merged = new Map<string, EnvVar>();
  for (const item of [...first, ...then]) merged.set(item.name, item);
  return [...merged.values()];
}

/**
 * The sandbox env entries for `otelExport: true` and the Secret data (undefined: no Secret needed).
 * The endpoint goes in as a plain value; the headers go into a Secret referenced by `secretKeyRef`.
 */
export function otelExportEnv(
  localEnv: Record<string, string | undefined>,
  secretName: string,
): [EnvVar[], Record<string, string> | undefined] {
  const endpoint = (localEnv[c.OTEL_EXPORTER_OTLP_ENDPOINT] ?? "").trim();
  if (!endpoint) {
    throw new ConfigurationError(
      `otelExport: true needs ${c.OTEL_EXPORTER_OTLP_ENDPOINT} set in the local environment ` +
        "(the OTLP/HTTP endpoint the sandbox's telemetry is forwarded to)",
    );
  }
  const env: EnvVar[] = [{ name: c.OTEL_EXPORTER_OTLP_ENDPOINT, value: endpoint }];
  const headers = (localEnv[c.OTEL_EXPORTER_OTLP_HEADERS] ?? "").trim();
  if (!headers) return [env, undefined];
  env.push({
    name: c.OTEL_EXPORTER_OTLP_HEADERS,
    valueFrom: { secretKeyRef: { name: secretName, key: c.SDK_OTEL_SECRET_KEY } },
  });
  return [env, { [c.SDK_OTEL_SECRET_KEY]: headers }];
}

export interface CreateArgsInput {
  template?: string | undefined;
  templateName?: string | undefined;
  vcpu?: number | undefined;
  memory?: number | undefined;
  memoryMib?: number | undefined;
  timeout?: number | undefined;
  timeoutMin?: number | undefined;
}

/**
 * (template, vcpu, memory MiB, timeout s) from the contract's names and the hosted SDK's aliases:
 * `templateName` = `template`, `memoryMib` = `memory`, `timeoutMin` = `timeout` in minutes.
 * Both spellings with different values is a TypeError (an ambiguous call).
 */
export function resolveCreateArgs(input: CreateArgsInput): {
  template: string | undefined;
  vcpu: number | undefined;
  memory: number | undefined;
  timeout: number | undefined;
} {
  function pick<T>(name: string, value: T | undefined, alias: string, aliasValue: T | undefined): T | undefined {
    if (value !== undefined && aliasValue !== undefined && value !== aliasValue) {
      throw new TypeError(`give either ${name}=${String(value)} or ${alias}=${String(aliasValue)}, not both`);
    }
    return value !== undefined ? value : aliasValue;
  }
  const template = pick("template", input.template, "templateName", input.templateName);
  const memory = pick("memory", input.memory, "memoryMib", input.memoryMib);
  if (input.timeoutMin !== undefined && !Number.isInteger(input.timeoutMin)) {
    throw new TypeError("timeoutMin must be an integer number of minutes");
  }
  const timeout = pick(
    "timeout",
    input.timeout,
    "timeoutMin",
    input.timeoutMin === undefined ? undefined : input.timeoutMin * 60,
  );
  for (const [label, value] of [
    ["vcpu", input.vcpu],
    ["memory", memory],
    ["timeout", timeout],
  ] as const) {
    if (value !== undefined && !Number.isInteger(value)) {
      throw new TypeError(`${label} must be an integer, got ${JSON.stringify(value)}`);
    }
  }
  return { template, vcpu: input.vcpu, memory, timeout };
}

export interface SandboxBodyInput {
  name: string;
  namespace: string;
  template?: string | undefined;
  image?: string | undefined;
  vcpu?: number | undefined;
  memory?: number | undefined;
  disk?: number | undefined;
  timeout?: number | undefined;
  env?: readonly EnvVar[];
  command?: readonly string[] | undefined;
  args?: readonly string[] | undefined;
  telemetry?: boolean | undefined;
  telemetryLogs?: boolean | undefined;
  network?: NetworkSpec | undefined;
  workspace?: WorkspaceSpec | undefined;
  idleTimeout?: number | undefined;
  onTimeout?: string | undefined;
  labels?: Record<string, string> | undefined;
  annotations?: Record<string, string> | undefined;
}

/** The Sandbox object to POST. Only given fields are set, so a template's values still apply. */
export function buildSandboxBody(input: SandboxBodyInput): JsonObject {
  const spec: JsonObject = {};
  for (const key of ["template", "image", "vcpu", "memory", "disk", "timeout"] as const) {
    const value = input[key];
    if (value !== undefined && value !== null) spec[key] = value;
  }
  if (input.env && input.env.length > 0) spec.env = input.env.map((e) => ({ ...e }));
  if (input.command !== undefined && input.command !== null) spec.command = [...input.command];
  if (input.args !== undefined && input.args !== null) spec.args = [...input.args];
  const telemetry: JsonObject = {};
  if (input.telemetry !== undefined && input.telemetry !== null) telemetry.enabled = input.telemetry;
  if (input.telemetryLogs !== undefined && input.telemetryLogs !== null) telemetry.logs = input.telemetryLogs;
  if (Object.keys(telemetry).length > 0) spec.telemetry = telemetry;
  if (input.network !== undefined && input.network !== null) spec.network = { ...input.network };
  if (input.workspace !== undefined && input.workspace !== null) spec.workspace = { ...input.workspace };
  if (input.idleTimeout !== undefined && input.idleTimeout !== null) spec.idleTimeout = input.idleTimeout;
  if (input.onTimeout !== undefined && input.onTimeout !== null) spec.onTimeout = input.onTimeout;
  const metadata: JsonObject = { name: input.name, namespace: input.namespace };
  if (input.labels && Object.keys(input.labels).length > 0) metadata.labels = { ...input.labels };
  if (input.annotations && Object.keys(input.annotations).length > 0) {
    metadata.annotations = { ...input.annotations };
  }
  return { apiVersion: c.API_VERSION, kind: c.SANDBOX_KIND, metadata, spec };
}

export function sandboxOwnerReference(sandboxName: string, uid: string): JsonObject {
  return { apiVersion: c.API_VERSION, kind: c.SANDBOX_KIND, name: sandboxName, uid, blockOwnerDeletion: true };
}

/**
 * The Secret with the OTLP headers of an `otelExport` sandbox, owned by the Sandbox (`ownerUid`): the operator lets
 * a sandbox reference only a Secret its Sandbox owns (or one labelled for sandboxes).
 */
export function buildOtelSecret(input: {
  name: string;
  namespace: string;
  sandboxName: string;
  data: Record<string, string>;
  ownerUid?: string;
}): JsonObject {
  const metadata: JsonObject = {
    name: input.name,
    namespace: input.namespace,
    labels: { [c.LABEL_SANDBOX_ID]: input.sandboxName, [c.LABEL_MANAGED_BY]: c.SDK_MANAGED_BY },
  };
  if (input.ownerUid !== undefined) {
    metadata.ownerReferences = [sandboxOwnerReference(input.sandboxName, input.ownerUid)];
  }
  return { apiVersion: "v1", kind: "Secret", type: "Opaque", metadata, stringData: { ...input.data } };
}

function statusBody(body: unknown): JsonObject | undefined {
  if (typeof body === "string") {
    try {
      return obj(JSON.parse(body));
    } catch {
      return undefined;
    }
  }
  if (body instanceof Uint8Array) return statusBody(Buffer.from(body).toString("utf8"));
  return body !== null && typeof body === "object" ? obj(body) : undefined;
}

/** The `message` of a metav1.Status error body (the schema's message for a 422), else `fallback`. */
export function apiErrorMessage(body: unknown, fallback: string): string {
  const data = statusBody(body);
  if (data === undefined) {
    return typeof body === "string" && body.trim() ? body.trim() : fallback;
  }
  return typeof data.message === "string" && data.message ? data.message : fallback;
}

export function apiErrorReason(body: unknown): string | undefined {
  const data = statusBody(body);
  return data !== undefined && typeof data.reason === "string" ? data.reason : undefined;
}
