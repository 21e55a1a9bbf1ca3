/** Names shared with the operator and the Python SDK (the same values, letter for letter). */

export const GROUP = "leap0.dev";
export const VERSION = "v1alpha1";
export const API_VERSION = `${GROUP}/${VERSION}`;
export const SANDBOX_KIND = "Sandbox";
export const SANDBOX_PLURAL = "sandboxes";
export const SANDBOX_CONTAINER = "sandbox";

export const PHASE_RUNNING = "Running";
export const PHASE_FAILED = "Failed";
export const PHASE_EXPIRED = "Expired";
export const PHASE_PAUSED = "Paused";
export const TERMINAL_PHASES: readonly string[] = [PHASE_FAILED, PHASE_EXPIRED];
export const CONDITION_READY = "Ready";
export const CONDITION_PAUSED = "Paused";
export const REASON_PAUSE_REFUSED = "PauseRefused";

export const LABEL_SANDBOX_ID = "leap0.dev/sandbox-id";
export const LABEL_MANAGED_BY = "app.kubernetes.io/managed-by";
/** When an SDK or MCP operation last used a sandbox (for its idleTimeout); written at most this often. */
export const ANNOTATION_LAST_ACTIVITY = "leap0.dev/last-activity";
export const ACTIVITY_WRITE_INTERVAL_S = 30;
export const ATTR_SANDBOX_ID = "leap0.sandbox.id";

export const ENV_SDK_OTEL_ENABLED = "LEAP0_SDK_OTEL_ENABLED";
export const OTEL_EXPORTER_OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT";
export const OTEL_EXPORTER_OTLP_HEADERS = "OTEL_EXPORTER_OTLP_HEADERS";
export const OTEL_EXPORTER_OTLP_TIMEOUT = "OTEL_EXPORTER_OTLP_TIMEOUT";

/** Tracer and meter name of the SDK's own telemetry. */
export const SDK_INSTRUMENTATION_NAME = "leap0-sdk-js";
export const SDK_OP_SANDBOXES_CREATE = "sandboxes.create";
export const SDK_OP_SANDBOXES_GET = "sandboxes.get";
export const SDK_OP_SANDBOXES_LIST = "sandboxes.list";
export const SDK_OP_SANDBOXES_DELETE = "sandboxes.delete";
export const SDK_OP_SANDBOXES_SET_TIMEOUT = "sandboxes.set_timeout";
export const SDK_OP_SANDBOXES_PAUSE = "sandboxes.pause";
export const SDK_OP_SANDBOXES_RESUME = "sandboxes.resume";
export const SDK_OP_PROCESS_EXECUTE = "process.execute";
export const SDK_OP_FILESYSTEM_READ = "filesystem.read";
export const SDK_OP_FILESYSTEM_WRITE = "filesystem.write";
export const SDK_ATTR_STATUS = "status";
export const SDK_STATUS_SUCCESS = "success";
export const SDK_STATUS_ERROR = "error";

/** Sandbox logs: `process.execute` runs through the pod's supervisor when `status.supervisor` names it. */
export const STATUS_SUPERVISOR = "supervisor";
export const SUPERVISOR_EXEC = "exec";
export const SUPERVISOR_FLAG_CONTAINER = "--container";
export const SUPERVISOR_FLAG_TRACEPARENT = "--traceparent";
export const SUPERVISOR_EXEC_ERROR_PREFIX = "leap0-supervisor: exec: ";

export const SDK_SANDBOX_NAME_PREFIX = "sbx-";
export const SDK_OTEL_SECRET_SUFFIX = "-otlp";
export const SDK_OTEL_SECRET_KEY = OTEL_EXPORTER_OTLP_HEADERS;
export const SDK_MANAGED_BY = "leap0-sdk";
/** The SDK's own exporters give up on an export (retries included) after this long, unless
 * `OTEL_EXPORTER_OTLP_[SIGNAL_]TIMEOUT` says otherwise: `close()` is quick when the collector is unreachable. */
export const SDK_OTEL_EXPORT_TIMEOUT_MS = 2000;
