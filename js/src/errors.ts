/** Typed errors of the SDK. Every error it raises on purpose extends {@link Leap0Error}. */

export class Leap0Error extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The local setup is incomplete: no cluster configuration, or `otelExport` without an endpoint. */
export class ConfigurationError extends Leap0Error {}

/** The Kubernetes API answered with an error the SDK has no more specific class for. */
export class ApiError extends Leap0Error {
  readonly status: number | undefined;
  readonly reason: string | undefined;
  constructor(message: string, opts: { status?: number; reason?: string; cause?: unknown } = {}) {
    super(message, { cause: opts.cause });
    this.status = opts.status;
    this.reason = opts.reason;
  }
}

/**
 * The Kubernetes API server gave no answer: the connection was refused, reset or timed out (`status` is
 * undefined). The request may or may not have been carried out: a read or a delete can simply be called again.
 */
export class ApiUnreachableError extends ApiError {}

/** The API rejected the request (HTTP 422); the message is the API server's (schema) message. */
export class SandboxValidationError extends ApiError {}

/** No Sandbox with that id exists in the namespace (or it was deleted while the SDK waited for it). */
export class SandboxNotFoundError extends ApiError {
  readonly sandboxId: string;
  readonly namespace: string;
  constructor(sandboxId: string, namespace: string, message?: string, cause?: unknown) {
    super(message ?? `sandbox '${sandboxId}' not found in namespace '${namespace}'`, { status: 404, cause });
    this.sandboxId = sandboxId;
    this.namespace = namespace;
  }
}

/** Waiting for a sandbox took longer than allowed. The sandbox is left in place. */
export class SandboxTimeoutError extends Leap0Error {
  readonly sandboxId: string | undefined;
  readonly phase: string | undefined;
  readonly reason: string | undefined;
  constructor(message: string, opts: { sandboxId?: string; phase?: string; reason?: string } = {}) {
    super(message);
    this.sandboxId = opts.sandboxId;
    this.phase = opts.phase;
    this.reason = opts.reason;
  }
}

/** A command run with `process.execute(..., { timeout })` did not finish in time. */
export class ProcessTimeoutError extends SandboxTimeoutError {
  readonly stdout: string;
  readonly stderr: string;
  constructor(message: string, opts: { sandboxId?: string; stdout?: string; stderr?: string } = {}) {
    super(message, { sandboxId: opts.sandboxId });
    this.stdout = opts.stdout ?? "";
    this.stderr = opts.stderr ?? "";
  }
}

/** The sandbox went Failed (or Expired) while waiting for it; carries the operator's reason. */
export class SandboxFailedError extends Leap0Error {
  readonly sandboxId: string;
  readonly phase: string;
  readonly reason: string | undefined;
  readonly detail: string | undefined;
  constructor(sandboxId: string, phase: string, reason?: string, message?: string) {
    let text = `sandbox '${sandboxId}' is ${phase}`;
    if (reason) text += `: ${reason}`;
    if (message) text += `: ${message}`;
    super(text);
    this.sandboxId = sandboxId;
    this.phase = phase;
    this.reason = reason;
    this.detail = message;
  }
}

/** A tool call needs the sandbox's pod, but the sandbox has none (not started, failed or expired). */
export class SandboxNotRunningError extends Leap0Error {}

/** The exec call itself failed (a command's non-zero exit is a normal result, not this error). */
export class ProcessError extends Leap0Error {}

/** Reading or writing a file in the sandbox failed; carries the command's exit code and stderr. */
export class FilesystemError extends Leap0Error {
  readonly path: string;
  readonly exitCode: number | undefined;
  readonly stderr: string;
  constructor(message: string, opts: { path: string; exitCode?: number; stderr?: string }) {
    super(message);
    this.path = opts.path;
    this.exitCode = opts.exitCode;
    this.stderr = opts.stderr ?? "";
  }
}
