package main

import (
	"strconv"
	"strings"
	"time"
)

// Defaults where the environment says nothing.
const (
	DefaultEndpoint    = "http://127.0.0.1:4318" // the telemetry sidecar's OTLP/HTTP receiver
	DefaultTimeout     = 10 * time.Second        // one export request (the OTLP exporter default)
	DefaultBufferBytes = 1 << 20                 // lines waiting for export, text plus 64 bytes a line
	MinBufferBytes     = 4 << 10
	MaxBufferBytes     = 64 << 20
	// The exporter is woken when this many lines are queued (the OpenTelemetry batch processor's batch size)
	// and then sends what is queued, up to twice as many lines (fewer requests when the command floods)
	// and 1 MiB of text in one request (the sidecar takes requests of up to 4 MiB).
	DefaultBatchSize  = 512
	DefaultBatchLines = 2 * DefaultBatchSize
	DefaultBatchBytes = 1 << 20
	DefaultLinger     = 200 * time.Millisecond
	// After the command exits: how long its pipes may stay open (a background process it left may hold
	// them), then how long the last records may take to be sent.
	DefaultDrainTimeout    = 2 * time.Second
	DefaultRunFlushTimeout = 5 * time.Second // the main process: within the pod's termination grace period
	// A command run through the SDKs: the caller waits for the supervisor's exit, so a sidecar that does not
	// answer delays it by at most this.
	DefaultExecFlushTimeout = time.Second
)

// The environment variables the supervisor reads (beside the standard OTEL_* ones).
const (
	EnvBufferBytes = "LEAP0_SUPERVISOR_BUFFER_BYTES"
)

// Settings is what the environment says about exporting.
type Settings struct {
	Disabled    bool
	LogsURL     string
	MetricsURL  string
	Timeout     time.Duration
	BufferBytes int
	Service     string
	Resource    map[string]string
}

// ReadSettings reads the OpenTelemetry exporter variables as an OTLP/HTTP exporter does: the per-signal
// endpoint is used as is, the general one gets /v1/logs (or /v1/metrics) appended; OTEL_SDK_DISABLED=true
// turns export off (the output is still passed through).
func ReadSettings(getenv func(string) string) Settings {
	s := Settings{
		Disabled:    strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true"),
		Timeout:     DefaultTimeout,
		BufferBytes: DefaultBufferBytes,
		Service:     strings.TrimSpace(getenv("OTEL_SERVICE_NAME")),
		Resource:    ParseResourceAttributes(getenv("OTEL_RESOURCE_ATTRIBUTES")),
	}
	base := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_ENDPOINT"))
	if base == "" {
		base = DefaultEndpoint
	}
	base = strings.TrimRight(base, "/")
	s.LogsURL = firstNonEmpty(getenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"), base+"/v1/logs")
	s.MetricsURL = firstNonEmpty(getenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"), base+"/v1/metrics")
	for _, name := range []string{"OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"} {
		if ms, err := strconv.Atoi(strings.TrimSpace(getenv(name))); err == nil && ms > 0 {
			s.Timeout = time.Duration(ms) * time.Millisecond
			break
		}
	}
	if n, err := strconv.Atoi(strings.TrimSpace(getenv(EnvBufferBytes))); err == nil {
		s.BufferBytes = min(max(n, MinBufferBytes), MaxBufferBytes)
	}
	return s
}

func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v = strings.TrimSpace(v); v != "" {
			return v
		}
	}
	return ""
}
