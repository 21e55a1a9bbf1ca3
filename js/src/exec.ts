/**
 * Tool calls through the Kubernetes exec API (`pods/exec`, websocket channel protocols v5 and v4).
 *
 * The pure part builds the command line and reads the status channel; the thin part drives
 * `@kubernetes/client-node`'s `Exec` (its websocket handler speaks the channel protocol).
 */

import { PassThrough, Writable } from "node:stream";
import { Exec, type KubeConfig } from "@kubernetes/client-node";
// The handler is built with the call's own streams: its default (process.stdin/stdout/stderr) would let a
// channel-close frame end the application's stdout.
import { WebSocketHandler } from "@kubernetes/client-node/dist/web-socket-handler.js";
import * as c from "./constants.js";

/** Exit codes of coreutils `timeout`: 124 after TERM, 137 (128+9) when it had to KILL. */
export const TIMEOUT_EXIT_CODES: readonly number[] = [124, 137];
/** Seconds after `timeout` before the SDK gives up on the stream itself (`timeout -k 1` kills 1 s after TERM). */
export const CLIENT_GRACE_S = 5;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const STDIN_CHUNK = 64 * 1024;
const V5_PROTOCOL = "v5.channel.k8s.io";

/** POSIX shell quoting, as Python's `shlex.quote` does it. */
export function shellQuote(value: string): string {
  if (value === "") return "''";
  if (/^[\w@%+=:,./-]+$/.test(value) && /^[\x00-\x7f]*$/.test(value)) return value;
  return "'" + value.replaceAll("'", `'"'"'`) + "'";
}

/** A number as Python's `%g` writes it (6 significant digits, no trailing zeros). */
export function formatSeconds(value: number): string {
  if (value === 0) return "0";
  const rounded = Number(value.toPrecision(6));
  const exp = Math.floor(Math.log10(Math.abs(rounded)));
  if (exp < -4 || exp >= 6) {
    const [mantissa = "", e = "0"] = rounded.toExponential(5).split("e");
    const n = Number(e);
    const m = mantissa.includes(".") ? mantissa.replace(/\.?0+$/, "") : mantissa;
    return `${m}e${n < 0 ? "-" : "+"}${String(Math.abs(n)).padStart(2, "0")}`;
  }
  return String(rounded);
}

/**
 * `argv` run through the sandbox's leap0 supervisor (sandbox logs): it passes the output through as it is and
 * sends each line as a log record carrying the caller's trace context (a W3C `traceparent`).
 */
export function supervisedArgv(argv: readonly string[], supervisor: string, traceparent?: string): string[] {
  const flags: string[] = [c.SUPERVISOR_FLAG_CONTAINER, c.SANDBOX_CONTAINER];
  if (traceparent) flags.push(c.SUPERVISOR_FLAG_TRACEPARENT, traceparent);
  return [supervisor, c.SUPERVISOR_EXEC, ...flags, "--", ...argv];
}

/**
 * The supervisor's message when it could not start the command (exit code 127 or 126, its one line on stderr,
 * nothing on stdout), else undefined: the caller then fails as an exec of a missing program fails.
 */
export function supervisorExecError(exitCode: number | undefined, stdout: Buffer, stderr: Buffer): string | undefined {
  if ((exitCode !== 126 && exitCode !== 127) || stdout.length > 0) return undefined;
  const text = stderr.toString("utf8");
  if (!text.startsWith(c.SUPERVISOR_EXEC_ERROR_PREFIX) || !text.endsWith("\n") || text.split("\n").length !== 2) {
    return undefined;
  }
  return text.slice(c.SUPERVISOR_EXEC_ERROR_PREFIX.length).trim();
}

export interface ExecOptions {
  /** Working directory of the command. */
  cwd?: string | undefined;
  /** Environment variables added for the command. */
  env?: Record<string, string> | undefined;
  /** Seconds: the command is stopped when it runs longer and `ProcessTimeoutError` is raised. */
  timeout?: number | undefined;
}

/**
 * The argv to exec in the sandbox container.
 *
 * A string is a shell command run by `/bin/sh -c`; a list is an argv run as is. `cwd`, `env` and `timeout` are
 * applied by a small POSIX sh prologue; the user's command is passed as positional arguments, never spliced
 * into the script, so it needs no quoting. `timeout` uses coreutils `timeout` when the image has it.
 */
export function buildExecArgv(command: string | readonly string[], options: ExecOptions = {}): string[] {
  let inner: string[];
  if (typeof command === "string") {
    if (!command.trim()) throw new RangeError("command must not be empty");
    inner = ["/bin/sh", "-c", command];
  } else {
    inner = command.map(String);
    if (inner.length === 0) throw new RangeError("command must not be empty");
  }
  const { cwd, env, timeout } = options;
  if (env !== undefined && (env === null || typeof env !== "object" || Array.isArray(env))) {
    throw new TypeError("env must be an object of variable names to values");
  }
  if (timeout !== undefined && (typeof timeout !== "number" || Number.isNaN(timeout))) {
    throw new TypeError(`timeout must be a number of seconds, not ${typeof timeout}`);
  }
  const envEntries = Object.entries(env ?? {});
  if (cwd === undefined && envEntries.length === 0 && timeout === undefined) return inner;
  const lines: string[] = [];
  for (const [name, value] of envEntries) {
    if (!ENV_NAME.test(name)) throw new RangeError(`invalid environment variable name '${name}'`);
    lines.push(`export ${name}=${shellQuote(String(value))}`);
  }
  if (cwd !== undefined) lines.push(`cd -- ${shellQuote(cwd)} || exit 1`);
  if (timeout !== undefined) {
    if (timeout <= 0) throw new RangeError("timeout must be positive");
    const secs = formatSeconds(timeout);
    lines.push(`if command -v timeout >/dev/null 2>&1; then exec timeout -k 1 ${secs} "$@"; fi`);
  }
  lines.push('exec "$@"');
  return ["/bin/sh", "-c", lines.join("\n"), "leap0-exec", ...inner];
}

/** The status channel's verdict: an exit code, or an error the exec itself hit. */
export interface ExecStatus {
  exitCode: number | undefined;
  error?: string;
}

/**
 * Read the metav1.Status sent on channel 3 when the command ends: `Success` is exit code 0; `Failure` with
 * reason `NonZeroExitCode` carries the code in `details.causes[ExitCode].message`; any other Failure
 * (command not found, container gone) is an error.
 */
export function parseExecStatus(raw: unknown): ExecStatus {
  let data: unknown = raw;
  if (raw === undefined || raw === null || ((typeof raw === "string" || Buffer.isBuffer(raw)) && !String(raw).trim())) {
    return { exitCode: undefined, error: "the exec stream closed without a status" };
  }
  if (typeof raw === "string" || Buffer.isBuffer(raw)) {
    try {
      data = JSON.parse(String(raw));
    } catch {
      return { exitCode: undefined, error: `unreadable exec status: ${String(raw).slice(0, 200)}` };
    }
  }
  if (data === null || typeof data !== "object" || Array.isArray(data)) {
    return { exitCode: undefined, error: `unreadable exec status: ${JSON.stringify(data)}` };
  }
  const status = data as Record<string, unknown>;
  if (status.status === "Success") return { exitCode: 0 };
  const details = (status.details ?? {}) as { causes?: unknown };
  for (const cause of Array.isArray(details.causes) ? details.causes : []) {
    if (cause && typeof cause === "object" && (cause as Record<string, unknown>).reason === "ExitCode") {
      const code = Number.parseInt(String((cause as Record<string, unknown>).message ?? ""), 10);
      if (Number.isInteger(code)) return { exitCode: code };
      break;
    }
  }
  const message = status.message || status.reason || "exec failed";
  return { exitCode: undefined, error: String(message) };
}

export interface ExecOutcome {
  stdout: Buffer;
  stderr: Buffer;
  /** undefined: the client-side deadline passed before the command ended. */
  status: ExecStatus | undefined;
  /** Seconds from the start of the call. */
  elapsed: number;
}

class Collector extends Writable {
  readonly chunks: Buffer[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.chunks.push(Buffer.from(chunk));
    done();
  }
  bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

/** Run `argv` in the pod's container through the exec API and collect its output and status. */
export async function runExec(
  kubeConfig: KubeConfig,
  target: { namespace: string; pod: string; container: string },
  argv: readonly string[],
  opts: { stdin?: Buffer | undefined; deadlineS?: number | undefined } = {},
): Promise<ExecOutcome> {
  const started = performance.now();
  const stdout = new Collector();
  const stderr = new Collector();
  const stdin = opts.stdin !== undefined ? new PassThrough() : null;
  const handler = new WebSocketHandler(kubeConfig, undefined, {
    stdin: stdin ?? new PassThrough(),
    stdout,
    stderr,
  });
  let status: unknown;
  const exec = new Exec(kubeConfig, handler);
  const ws = await exec.exec(
    target.namespace,
    target.pod,
    target.container,
    [...argv],
    stdout,
    stderr,
    stdin,
    false,
    (s) => {
      status = s;
    },
  );
  let timedOut = false;
  const closed = new Promise<void>((resolve) => {
    if (ws.readyState === ws.CLOSED) {
      resolve();
      return;
    }
    ws.on("close", () => resolve());
    ws.on("error", () => resolve());
  });
  let timer: NodeJS.Timeout | undefined;
  if (opts.deadlineS !== undefined) {
    timer = setTimeout(
      () => {
        timedOut = true;
        ws.terminate(); // no closing handshake with a command that is still running: the server ends it
      },
      Math.max(0, opts.deadlineS * 1000 - (performance.now() - started)),
    );
  }
  try {
    if (stdin !== null && opts.stdin !== undefined) {
      for (let start = 0; start < opts.stdin.length; start += STDIN_CHUNK) {
        stdin.write(opts.stdin.subarray(start, start + STDIN_CHUNK));
      }
      // v5 can close the stdin channel (EOF); on v4, ending stdin would close the whole websocket, so the
      // write script stops after exactly N bytes instead.
      if (ws.protocol === V5_PROTOCOL) stdin.end();
    }
    await closed;
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
  const elapsed = (performance.now() - started) / 1000;
  if (timedOut && status === undefined) {
    return { stdout: stdout.bytes(), stderr: stderr.bytes(), status: undefined, elapsed };
  }
  return { stdout: stdout.bytes(), stderr: stderr.bytes(), status: parseExecStatus(status), elapsed };
}
