/**
 * leap0: sandboxes on Kubernetes, the JavaScript/TypeScript SDK.
 *
 * `import { Leap0Client } from "leap0"`. Importing loads `@kubernetes/client-node` only; the OpenTelemetry
 * SDK is loaded when SDK telemetry is on.
 */

export { Leap0Client, SandboxesClient, DEFAULT_WAIT_TIMEOUT_S } from "./client.js";
export type { CreateSandboxOptions, Leap0ClientOptions, WaitOptions } from "./client.js";
export { Sandbox, ProcessClient, FilesystemClient } from "./sandbox.js";
export type { ExecOptions } from "./exec.js";
export type { EnvInput, EnvVar, NetworkSpec, ProcessResult, SandboxData, WorkspaceSpec } from "./models.js";
export type { MeterProviderLike, TracerProviderLike } from "./telemetry.js";
export {
  ApiError,
  ApiUnreachableError,
  ConfigurationError,
  FilesystemError,
  Leap0Error,
  ProcessError,
  ProcessTimeoutError,
  SandboxFailedError,
  SandboxNotFoundError,
  SandboxNotRunningError,
  SandboxTimeoutError,
  SandboxValidationError,
} from "./errors.js";
export { SDK_VERSION as VERSION } from "./version.js";
