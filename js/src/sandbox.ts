/** `Sandbox` objects and their tool calls (`sandbox.process`, `sandbox.filesystem`). */

import type { Leap0Client, WaitOptions } from "./client.js";
import * as c from "./constants.js";
import { FilesystemError, ProcessError, ProcessTimeoutError, SandboxNotRunningError } from "./errors.js";
import {
  buildExecArgv,
  CLIENT_GRACE_S,
  type ExecOptions,
  type ExecOutcome,
  runExec,
  supervisedArgv,
  supervisorExecError,
  TIMEOUT_EXIT_CODES,
} from "./exec.js";
import type { ProcessResult, SandboxData } from "./models.js";

// Writes go through stdin to `head -c N`, which stops after exactly N bytes: no end-of-input signal is
// needed, so it works on the v4 channel protocol (which cannot half-close stdin) as well as on v5.
const WRITE_SCRIPT = 'd=$(dirname -- "$1") && mkdir -p -- "$d" && head -c "$2" > "$1"';
// While a command runs, its sandbox's use is recorded again this often (the write itself is throttled).
const RECORD_USE_EVERY_MS = 5000;

/**
 * One sandbox: the Sandbox object's fields plus the calls that act on it. `id` is the Sandbox's
 * `metadata.name`; status fields are as of the last read, `refresh()` rereads.
 */
// The Sandbox object's fields are SandboxData's, declared once (models.ts) and merged into the class.
export interface Sandbox extends SandboxData {}
export class Sandbox {
  readonly #client: Leap0Client | undefined;

  constructor(data: SandboxData, client?: Leap0Client) {
    Object.assign(this, data);
    this.#client = client;
  }

  get isRunning(): boolean {
    return this.phase === c.PHASE_RUNNING;
  }

  get isTerminal(): boolean {
    return this.phase !== undefined && c.TERMINAL_PHASES.includes(this.phase);
  }

  /** Paused, or asked to be (`spec.paused`): an operation needs a resume first. */
  get isPaused(): boolean {
    return this.phase === c.PHASE_PAUSED || this.paused === true;
  }

  /** @internal */
  bound(): Leap0Client {
    if (this.#client === undefined) throw new Error("this Sandbox is not bound to a Leap0Client");
    return this.#client;
  }

  #updateFrom(other: SandboxData): void {
    const fields: SandboxData = { ...other };
    Object.assign(this, fields);
  }

  /** Reread the Sandbox from the API (updates this object in place and returns it). */
  async refresh(): Promise<this> {
    this.#updateFrom(await this.bound().sandboxes.get(this.id));
    return this;
  }

  /** Delete the sandbox (its pod and its OTLP Secret go with it, through owner references). */
  async delete(): Promise<void> {
    await this.bound().sandboxes.delete(this.id);
  }

  /** Set the sandbox's lifetime to `timeout` seconds counted from its creation, or its last resume. */
  async setTimeout(timeout: number): Promise<this> {
    this.#updateFrom(await this.bound().sandboxes.setTimeout(this.id, timeout));
    return this;
  }

  /** Pause the sandbox: its processes stop, its persistent workspace is kept (`client.sandboxes.pause`). */
  async pause(options: WaitOptions = {}): Promise<this> {
    this.#updateFrom(await this.bound().sandboxes.pause(this.id, options));
    return this;
  }

  /** Resume the paused sandbox on its workspace (`client.sandboxes.resume`). */
  async resume(options: WaitOptions = {}): Promise<this> {
    this.#updateFrom(await this.bound().sandboxes.resume(this.id, options));
    return this;
  }

  get process(): ProcessClient {
    return new ProcessClient(this);
  }

  get filesystem(): FilesystemClient {
    return new FilesystemClient(this);
  }

  /**
   * @internal The name of the sandbox's running pod, rereading the Sandbox once if the status lacks it; a
   * paused sandbox is resumed first when the client's `autoResume` is on.
   */
  async pod(): Promise<string> {
    if (!this.podName || this.phase !== c.PHASE_RUNNING || this.paused) await this.refresh();
    if (this.isPaused) {
      const client = this.bound();
      if (!client.autoResume) {
        throw new SandboxNotRunningError(
          `sandbox '${this.id}' is paused: call sandbox.resume() first, or create the client with autoResume: true`,
        );
      }
      this.#updateFrom(await client.sandboxes.resume(this.id));
    }
    if (this.isTerminal || !this.podName) {
      let detail = `phase ${this.phase || "unknown"}`;
      if (this.reason) detail += `, ${this.reason}`;
      throw new SandboxNotRunningError(`sandbox '${this.id}' has no running pod (${detail})`);
    }
    return this.podName;
  }

  /**
   * @internal Run `argv` in the sandbox container; `supervise`: through its supervisor when its pod has one
   * (`status.supervisor`), so the output also becomes log records of the caller's trace.
   */
  async exec(
    argv: readonly string[],
    opts: { stdin?: Buffer; deadlineS?: number; supervise?: boolean; traceparent?: string | undefined } = {},
  ): Promise<ExecOutcome> {
    const client = this.bound();
    const pod = await this.pod();
    await client.recordUse(this);
    // A long command keeps recording the use (at most once per ACTIVITY_WRITE_INTERVAL_S): it is not idle.
    const beat = setInterval(() => void client.recordUse(this), RECORD_USE_EVERY_MS);
    if (opts.supervise && this.supervisor) argv = supervisedArgv(argv, this.supervisor, opts.traceparent);
    try {
      return await runExec(
        client.kubeConfig,
        { namespace: this.namespace, pod, container: c.SANDBOX_CONTAINER },
        argv,
        opts,
      );
    } catch (err) {
      const detail = err instanceof Error ? err.message : String(err);
      throw new ProcessError(`exec in sandbox '${this.id}' (pod ${pod}) failed: ${detail}`, { cause: err });
    } finally {
      clearInterval(beat);
    }
  }

  toString(): string {
    return `Sandbox(id=${this.id}, namespace=${this.namespace}, phase=${this.phase})`;
  }
}

/** Run commands in the sandbox's `sandbox` container through the Kubernetes exec API. */
export class ProcessClient {
  readonly #sandbox: Sandbox;

  constructor(sandbox: Sandbox) {
    this.#sandbox = sandbox;
  }

  /**
   * Run `command` and wait for it: a string runs under `/bin/sh -c`, a list is run as an argv. Resolves to
   * the exit code, stdout and stderr (a non-zero exit is a result, not an error). With `timeout` (seconds)
   * the command is stopped when it runs longer and `ProcessTimeoutError` is raised.
   */
  async execute(command: string | readonly string[], options: ExecOptions = {}): Promise<ProcessResult> {
    const sandbox = this.#sandbox;
    return sandbox.bound().telemetry.operation(c.SDK_OP_PROCESS_EXECUTE, sandbox.id, async (op) => {
      const argv = buildExecArgv(command, options);
      const { timeout } = options;
      const outcome = await sandbox.exec(argv, {
        supervise: true,
        traceparent: op.traceparent(),
        ...(timeout === undefined ? {} : { deadlineS: timeout + CLIENT_GRACE_S }),
      });
      const stdout = outcome.stdout.toString("utf8");
      const stderr = outcome.stderr.toString("utf8");
      const timedOut =
        outcome.status === undefined ||
        (timeout !== undefined &&
          outcome.status.exitCode !== undefined &&
          TIMEOUT_EXIT_CODES.includes(outcome.status.exitCode) &&
          outcome.elapsed >= timeout);
      if (timedOut) {
        throw new ProcessTimeoutError(`command in sandbox '${sandbox.id}' did not finish within ${timeout} s`, {
          sandboxId: sandbox.id,
          stdout,
          stderr,
        });
      }
      const status = outcome.status!;
      if (status.exitCode === undefined) {
        throw new ProcessError(`exec in sandbox '${sandbox.id}' failed: ${status.error}`);
      }
      const cannotStart = supervisorExecError(status.exitCode, outcome.stdout, outcome.stderr);
      if (cannotStart !== undefined) {
        // as an exec of a missing program fails without the supervisor
        throw new ProcessError(`exec in sandbox '${sandbox.id}' failed: ${cannotStart}`);
      }
      return { exitCode: status.exitCode, stdout, stderr };
    });
  }
}

/** Read and write files in the sandbox, built on the exec API (`cat` and `head -c`). */
export class FilesystemClient {
  readonly #sandbox: Sandbox;

  constructor(sandbox: Sandbox) {
    this.#sandbox = sandbox;
  }

  /** Write `data` to `path` (parents created, file replaced); a string is written as UTF-8. */
  async write(path: string, data: string | Uint8Array): Promise<void> {
    const payload = typeof data === "string" ? Buffer.from(data, "utf8") : Buffer.from(data);
    const sandbox = this.#sandbox;
    await sandbox.bound().telemetry.operation(c.SDK_OP_FILESYSTEM_WRITE, sandbox.id, async (op) => {
      op.setAttribute("leap0.filesystem.bytes", payload.length);
      const argv = ["/bin/sh", "-c", WRITE_SCRIPT, "leap0-write", path, String(payload.length)];
      const outcome = await sandbox.exec(argv, { stdin: payload });
      check(outcome, path, "write");
    });
  }

  /** The bytes of the file at `path`. */
  async read(path: string): Promise<Buffer> {
    const sandbox = this.#sandbox;
    return sandbox.bound().telemetry.operation(c.SDK_OP_FILESYSTEM_READ, sandbox.id, async (op) => {
      const outcome = await sandbox.exec(["cat", "--", path]);
      check(outcome, path, "read");
      op.setAttribute("leap0.filesystem.bytes", outcome.stdout.length);
      return outcome.stdout;
    });
  }

  /** The file at `path` decoded as text. */
  async readText(path: string, encoding: BufferEncoding = "utf8"): Promise<string> {
    return (await this.read(path)).toString(encoding);
  }

  // The hosted Leap0 SDK's spellings, so code written for it runs unchanged.
  async writeFile(args: { path: string; content: string }): Promise<void> {
    await this.write(args.path, args.content);
  }

  async writeBytes(args: { path: string; content: Uint8Array }): Promise<void> {
    await this.write(args.path, args.content);
  }

  async readFile(args: { path: string }): Promise<string> {
    return this.readText(args.path);
  }

  async readBytes(args: { path: string }): Promise<Buffer> {
    return this.read(args.path);
  }
}

function check(outcome: ExecOutcome, path: string, verb: string): void {
  if (outcome.status === undefined) {
    throw new FilesystemError(`${verb} '${path}': the exec stream did not finish`, { path });
  }
  const stderr = outcome.stderr.toString("utf8").trim();
  if (outcome.status.exitCode === undefined) {
    throw new FilesystemError(`${verb} '${path}' failed: ${outcome.status.error}`, { path, stderr });
  }
  if (outcome.status.exitCode !== 0) {
    throw new FilesystemError(`${verb} '${path}' failed (exit code ${outcome.status.exitCode}): ${stderr}`, {
      path,
      exitCode: outcome.status.exitCode,
      stderr,
    });
  }
}
