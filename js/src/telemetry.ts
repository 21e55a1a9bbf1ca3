/**
 * The SDK's own OpenTelemetry: a span and a duration histogram per SDK operation.
 *
 * Enablement ({@link resolveEnabled}) is a pure function of the client option and the environment. When it is
 * off, the client holds a {@link NoopTelemetry} and no OpenTelemetry module is even loaded (they are imported
 * dynamically, only when telemetry is on). When on, the application's global providers are used if it
 * registered them; otherwise the SDK builds its own TracerProvider and MeterProvider with OTLP/HTTP exporters
 * configured from the standard `OTEL_EXPORTER_OTLP_*` variables, and flushes and shuts them down in `close()`.
 */

import { AsyncLocalStorage } from "node:async_hooks";
import * as c from "./constants.js";
import { SDK_VERSION } from "./version.js";

const TRUE = new Set(["true", "1", "yes", "on"]);
const FALSE = new Set(["false", "0", "no", "off"]);

/**
 * Is SDK telemetry on? The option wins; then `LEAP0_SDK_OTEL_ENABLED`; then a local OTLP endpoint.
 * `LEAP0_SDK_OTEL_ENABLED=false` turns it off even with `OTEL_EXPORTER_OTLP_ENDPOINT` set; an unrecognised
 * value is ignored (as if unset).
 */
export function resolveEnabled(explicit: boolean | undefined | null, env: Record<string, string | undefined>): boolean {
  if (explicit !== undefined && explicit !== null) return Boolean(explicit);
  const flag = (env[c.ENV_SDK_OTEL_ENABLED] ?? "").trim().toLowerCase();
  if (TRUE.has(flag)) return true;
  if (FALSE.has(flag)) return false;
  return Boolean((env[c.OTEL_EXPORTER_OTLP_ENDPOINT] ?? "").trim());
}

/** The duration histogram of an operation: `sandboxes.create` -> `sandboxes_create_duration` (ms). */
export function histogramName(operation: string): string {
  return operation.replaceAll(".", "_").toLowerCase() + "_duration";
}

export type AttributeValue = string | number | boolean;

export interface Operation {
  setSandboxId(sandboxId: string): void;
  setAttribute(key: string, value: AttributeValue): void;
  /** The W3C `traceparent` of the operation's span (undefined without one): the sandbox's supervisor puts it
   * on the log records of the command the operation runs. */
  traceparent(): string | undefined;
}

export interface Telemetry {
  readonly enabled: boolean;
  operation<T>(name: string, sandboxId: string | undefined, fn: (op: Operation) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

const NOOP_OPERATION: Operation = {
  setSandboxId(): void {},
  setAttribute(): void {},
  traceparent: () => undefined,
};

/** Telemetry off: no OpenTelemetry object exists and no OpenTelemetry module is loaded. */
export class NoopTelemetry implements Telemetry {
  readonly enabled = false;
  operation<T>(_name: string, _sandboxId: string | undefined, fn: (op: Operation) => Promise<T>): Promise<T> {
    return fn(NOOP_OPERATION);
  }
  async close(): Promise<void> {}
}

/** The minimal provider shapes the SDK needs (those of `@opentelemetry/api`). */
export interface TracerProviderLike {
  getTracer(name: string, version?: string): unknown;
}
export interface MeterProviderLike {
  getMeter(name: string, version?: string): unknown;
}

type Api = typeof import("@opentelemetry/api");
type Tracer = import("@opentelemetry/api").Tracer;
type Meter = import("@opentelemetry/api").Meter;
type Histogram = import("@opentelemetry/api").Histogram;
type Span = import("@opentelemetry/api").Span;

interface State {
  api: Api;
  tracer: Tracer;
  meter: Meter;
  owned: { shutdown(): Promise<void> }[];
  propagator: import("@opentelemetry/api").TextMapPropagator;
}

/**
 * The export timeout of the SDK's own exporters (retries included): `OTEL_EXPORTER_OTLP_<SIGNAL>_TIMEOUT` or
 * `OTEL_EXPORTER_OTLP_TIMEOUT` when set (undefined: the exporter reads them itself), else
 * {@link c.SDK_OTEL_EXPORT_TIMEOUT_MS} instead of OpenTelemetry's 10 s, so `close()` is quick when the collector
 * is unreachable.
 */
export function ownExportTimeout(
  signal: "TRACES" | "METRICS",
  env: Record<string, string | undefined>,
): number | undefined {
  const configured = [`OTEL_EXPORTER_OTLP_${signal}_TIMEOUT`, c.OTEL_EXPORTER_OTLP_TIMEOUT].some((name) =>
    Boolean((env[name] ?? "").trim()),
  );
  return configured ? undefined : c.SDK_OTEL_EXPORT_TIMEOUT_MS;
}

async function ownTracerProvider(): Promise<TracerProviderLike & { shutdown(): Promise<void> }> {
  const [{ BasicTracerProvider, BatchSpanProcessor }, { OTLPTraceExporter }, resource] = await Promise.all([
    import("@opentelemetry/sdk-trace-base"),
    import("@opentelemetry/exporter-trace-otlp-http"),
    sdkResource(),
  ]);
  const exporter = new OTLPTraceExporter({ timeoutMillis: ownExportTimeout("TRACES", process.env) });
  return new BasicTracerProvider({ resource, spanProcessors: [new BatchSpanProcessor(exporter)] });
}

async function ownMeterProvider(): Promise<MeterProviderLike & { shutdown(): Promise<void> }> {
  const [{ MeterProvider, PeriodicExportingMetricReader }, { OTLPMetricExporter }, resource] = await Promise.all([
    import("@opentelemetry/sdk-metrics"),
    import("@opentelemetry/exporter-metrics-otlp-http"),
    sdkResource(),
  ]);
  const exporter = new OTLPMetricExporter({ timeoutMillis: ownExportTimeout("METRICS", process.env) });
  return new MeterProvider({ resource, readers: [new PeriodicExportingMetricReader({ exporter })] });
}

async function sdkResource(): Promise<import("@opentelemetry/resources").Resource> {
  const { defaultResource, detectResources, envDetector } = await import("@opentelemetry/resources");
  // the SDK defaults plus OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES, as the Python SDK's Resource.create()
  return defaultResource().merge(detectResources({ detectors: [envDetector] }));
}

function isRegisteredTracerProvider(api: Api): boolean {
  const provider = api.trace.getTracerProvider();
  const delegate = provider instanceof api.ProxyTracerProvider ? provider.getDelegate() : provider;
  return delegate.constructor.name !== "NoopTracerProvider";
}

function isRegisteredMeterProvider(api: Api): boolean {
  return api.metrics.getMeterProvider().constructor.name !== "NoopMeterProvider";
}

/** Telemetry on: spans and duration histograms from the `leap0-sdk-js` tracer and meter. */
export class OtelTelemetry implements Telemetry {
  readonly enabled = true;
  private readonly state: Promise<State>;
  private readonly histograms = new Map<string, Histogram>();
  // The SDK's own span in progress, so a call made inside another (the reread inside `execute`) is its child
  // even when the application registered no context manager.
  private readonly current = new AsyncLocalStorage<Span>();

  constructor(tracerProvider?: TracerProviderLike, meterProvider?: MeterProviderLike) {
    this.state = OtelTelemetry.init(tracerProvider, meterProvider);
    this.state.catch(() => {}); // reported by the first operation or close()
  }

  private static async init(tracerProvider?: TracerProviderLike, meterProvider?: MeterProviderLike): Promise<State> {
    const [api, { W3CTraceContextPropagator }] = await Promise.all([
      import("@opentelemetry/api"),
      import("@opentelemetry/core"),
    ]);
    const owned: State["owned"] = [];
    let tp = tracerProvider;
    if (tp === undefined) {
      if (isRegisteredTracerProvider(api)) {
        tp = api.trace.getTracerProvider();
      } else {
        const own = await ownTracerProvider();
        owned.push(own);
        tp = own;
      }
    }
    let mp = meterProvider;
    if (mp === undefined) {
      if (isRegisteredMeterProvider(api)) {
        mp = api.metrics.getMeterProvider();
      } else {
        const own = await ownMeterProvider();
        owned.push(own);
        mp = own;
      }
    }
    const tracer = tp.getTracer(c.SDK_INSTRUMENTATION_NAME, SDK_VERSION) as Tracer;
    const meter = mp.getMeter(c.SDK_INSTRUMENTATION_NAME, SDK_VERSION) as Meter;
    return { api, tracer, meter, owned, propagator: new W3CTraceContextPropagator() };
  }

  private histogram(state: State, operation: string): Histogram {
    let hist = this.histograms.get(operation);
    if (hist === undefined) {
      hist = state.meter.createHistogram(histogramName(operation), {
        unit: "ms",
        description: `Duration of the SDK operation ${operation}`,
      });
      this.histograms.set(operation, hist);
    }
    return hist;
  }

  async operation<T>(name: string, sandboxId: string | undefined, fn: (op: Operation) => Promise<T>): Promise<T> {
    const state = await this.state;
    const { api } = state;
    const histogram = this.histogram(state, name);
    const started = performance.now();
    const outer = this.current.getStore();
    const parent = outer === undefined ? api.context.active() : api.trace.setSpan(api.context.active(), outer);
    const span = state.tracer.startSpan(name, { kind: api.SpanKind.CLIENT }, parent);
    const op: Operation = {
      setSandboxId: (id) => span.setAttribute(c.ATTR_SANDBOX_ID, id),
      setAttribute: (key, value) => span.setAttribute(key, value),
      traceparent: () => {
        const carrier: Record<string, string> = {};
        state.propagator.inject(api.trace.setSpan(api.ROOT_CONTEXT, span), carrier, api.defaultTextMapSetter);
        return carrier.traceparent;
      },
    };
    if (sandboxId) op.setSandboxId(sandboxId);
    const run = async (): Promise<T> => {
      try {
        const result = await fn(op);
        span.setStatus({ code: api.SpanStatusCode.OK });
        histogram.record(performance.now() - started, { [c.SDK_ATTR_STATUS]: c.SDK_STATUS_SUCCESS });
        return result;
      } catch (err) {
        const error = err instanceof Error ? err : new Error(String(err));
        span.recordException(error);
        span.setStatus({ code: api.SpanStatusCode.ERROR, message: `${error.name}: ${error.message}` });
        histogram.record(performance.now() - started, { [c.SDK_ATTR_STATUS]: c.SDK_STATUS_ERROR });
        throw err;
      } finally {
        span.end();
      }
    };
    // active for the application's own instrumentation too (when it registered a context manager)
    return this.current.run(span, () => api.context.with(api.trace.setSpan(parent, span), run));
  }

  /** Flush and shut down the providers the SDK built itself (never the application's). */
  async close(): Promise<void> {
    const state = await this.state;
    const owned = state.owned.splice(0);
    // both at once: each exports what is pending (spans) or a last collection (metrics)
    const results = await Promise.allSettled(owned.map((provider) => provider.shutdown()));
    for (const result of results) {
      if (result.status === "rejected") {
        // an unreachable collector must not fail the application: reported through OpenTelemetry's own logger
        state.api.diag.warn(`leap0 SDK telemetry: the last export at close() failed: ${String(result.reason)}`);
      }
    }
  }
}

export function makeTelemetry(
  explicit: boolean | undefined | null,
  env: Record<string, string | undefined>,
  tracerProvider?: TracerProviderLike,
  meterProvider?: MeterProviderLike,
): Telemetry {
  if (!resolveEnabled(explicit, env)) return new NoopTelemetry();
  return new OtelTelemetry(tracerProvider, meterProvider);
}
