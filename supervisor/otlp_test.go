package main

import (
	"strings"
	"testing"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/protobuf/proto"
)

// decodeLogs reads an ExportLogsServiceRequest with the official OTLP types (LogsData has the same fields).
func decodeLogs(t testing.TB, body []byte) *logspb.LogsData {
	t.Helper()
	var data logspb.LogsData
	if err := proto.Unmarshal(body, &data); err != nil {
		t.Fatalf("not an OTLP logs request: %v", err)
	}
	return &data
}

func attrs(kvs []*commonpb.KeyValue) map[string]any {
	out := map[string]any{}
	for _, kv := range kvs {
		out[kv.Key] = value(kv.Value)
	}
	return out
}

func value(v *commonpb.AnyValue) any {
	switch x := v.Value.(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return x.IntValue
	case *commonpb.AnyValue_DoubleValue:
		return x.DoubleValue
	case *commonpb.AnyValue_ArrayValue:
		var items []string
		for _, item := range x.ArrayValue.Values {
			items = append(items, item.GetStringValue())
		}
		return strings.Join(items, "|")
	}
	return nil
}

func testProcess() *Process {
	return &Process{Container: "sandbox", PID: 42, Args: []string{"/bin/sh", "-c", "echo hi"}, Exe: "/bin/sh",
		RunID: "0123456789abcdef0123456789abcdef", Service: "svc",
		Extra: map[string]string{"deployment.environment.name": "dev", "process.pid": "spoofed", "service.name": "x"}}
}

func TestLogsRequestDecodesWithTheOfficialTypes(t *testing.T) {
	tc, ok := ParseTraceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	if !ok {
		t.Fatal("traceparent refused")
	}
	enc := NewEncoder(testProcess(), "1.2.3", &tc, 1000)
	events := []Event{StartEvent(5, "/bin/sh", 42), ExitEvent(9, 137, "SIGKILL", 1.5, 3)}
	lines := []Line{{Time: 6, Stream: Stdout, Text: []byte("hi")}, {Time: 7, Stream: Stderr, Partial: true, Text: []byte("bad \xff")}}
	data := decodeLogs(t, enc.Logs(events, lines))
	if len(data.ResourceLogs) != 1 || len(data.ResourceLogs[0].ScopeLogs) != 1 {
		t.Fatalf("shape %v", data)
	}
	rl := data.ResourceLogs[0]
	res := attrs(rl.Resource.Attributes)
	want := map[string]any{"k8s.container.name": "sandbox", "process.pid": int64(42), "process.executable.name": "sh",
		"process.command_args": "/bin/sh|-c|echo hi", "process.run.id": "0123456789abcdef0123456789abcdef",
		"service.name": "svc", "deployment.environment.name": "dev"}
	for k, v := range want {
		if res[k] != v {
			t.Errorf("resource %s = %v, want %v", k, res[k], v)
		}
	}
	if len(res) != len(want) {
		t.Errorf("resource %v", res)
	}
	scope := rl.ScopeLogs[0]
	if scope.Scope.Name != "leap0-supervisor" || scope.Scope.Version != "1.2.3" {
		t.Errorf("scope %v", scope.Scope)
	}
	recs := scope.LogRecords
	if len(recs) != 4 {
		t.Fatalf("%d records", len(recs))
	}
	for _, r := range recs {
		if len(r.TraceId) != 16 || r.TraceId[0] != 0x0a || len(r.SpanId) != 8 || r.SpanId[7] != 0x31 || r.Flags != 1 {
			t.Errorf("trace context %x %x %d", r.TraceId, r.SpanId, r.Flags)
		}
		if r.TimeUnixNano == 0 || r.TimeUnixNano != r.ObservedTimeUnixNano {
			t.Errorf("times %d %d", r.TimeUnixNano, r.ObservedTimeUnixNano)
		}
	}
	start, exit, out, errLine := recs[0], recs[1], recs[2], recs[3]
	if start.EventName != "leap0.process.start" || start.SeverityText != "INFO" || start.Body.GetStringValue() != "started /bin/sh (pid 42)" {
		t.Errorf("start %v", start)
	}
	ea := attrs(exit.Attributes)
	if exit.EventName != "leap0.process.exit" || ea["process.exit.code"] != int64(137) || ea["process.run.duration"] != 1.5 ||
		ea["process.run.dropped"] != int64(3) || !strings.Contains(exit.Body.GetStringValue(), "SIGKILL") {
		t.Errorf("exit %v", exit)
	}
	if out.Body.GetStringValue() != "hi" || out.EventName != "" || out.SeverityNumber != 0 {
		t.Errorf("stdout line %v", out)
	}
	if a := attrs(out.Attributes); a["log.iostream"] != "stdout" || a["logtag"] != "F" || len(a) != 2 {
		t.Errorf("stdout attributes %v", a)
	}
	if errLine.Body.GetStringValue() != "bad \uFFFD" {
		t.Errorf("stderr line %q", errLine.Body.GetStringValue())
	}
	if a := attrs(errLine.Attributes); a["log.iostream"] != "stderr" || a["logtag"] != "P" {
		t.Errorf("stderr attributes %v", a)
	}
}

func TestLogsWithoutTraceContextCarryNone(t *testing.T) {
	enc := NewEncoder(&Process{RunID: "r"}, "v", nil, 0)
	data := decodeLogs(t, enc.Logs(nil, []Line{{Time: 1, Stream: Stdout, Text: []byte("x")}}))
	r := data.ResourceLogs[0].ScopeLogs[0].LogRecords[0]
	if r.TraceId != nil || r.SpanId != nil || r.Flags != 0 {
		t.Fatalf("trace context on a record without one: %v", r)
	}
	if got := attrs(data.ResourceLogs[0].Resource.Attributes); len(got) != 1 || got["process.run.id"] != "r" {
		t.Fatalf("resource %v", got)
	}
}

func TestDroppedMetricDecodesWithTheOfficialTypes(t *testing.T) {
	enc := NewEncoder(testProcess(), "v", nil, 100)
	var data metricspb.MetricsData
	if err := proto.Unmarshal(enc.DroppedMetric(200, 17), &data); err != nil {
		t.Fatal(err)
	}
	m := data.ResourceMetrics[0].ScopeMetrics[0].Metrics[0]
	sum := m.GetSum()
	if m.Name != "leap0.supervisor.lines.dropped" || m.Unit != "{line}" || sum == nil || !sum.IsMonotonic ||
		sum.AggregationTemporality != metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE {
		t.Fatalf("metric %v", m)
	}
	p := sum.DataPoints[0]
	if p.GetAsInt() != 17 || p.StartTimeUnixNano != 100 || p.TimeUnixNano != 200 {
		t.Fatalf("point %v", p)
	}
	if attrs(data.ResourceMetrics[0].Resource.Attributes)["process.pid"] != int64(42) {
		t.Fatal("the metric's resource is not the process")
	}
}

func TestPartialSuccess(t *testing.T) {
	// ExportLogsServiceResponse{partial_success: {rejected_log_records: 5, error_message: "too old"}}
	body := []byte{0x0a, 0x0b, 0x08, 0x05, 0x12, 0x07, 't', 'o', 'o', ' ', 'o', 'l', 'd'}
	if n, msg := PartialSuccess(body); n != 5 || msg != "too old" {
		t.Fatalf("%d %q", n, msg)
	}
	if n, _ := PartialSuccess(nil); n != 0 {
		t.Fatal("empty body")
	}
	if n, _ := PartialSuccess([]byte{0x0a, 0xff}); n != 0 {
		t.Fatal("garbage")
	}
}

func TestTraceparent(t *testing.T) {
	good := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	if tc, ok := ParseTraceparent(good); !ok || tc.Flags != 1 || tc.TraceID[15] != 0x9c || tc.SpanID[0] != 0xb7 {
		t.Fatalf("%v %v", tc, ok)
	}
	for _, bad := range []string{"", "garbage", "00-00000000000000000000000000000000-b7ad6b7169203331-01",
		"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
		"00-0af7651916cd43dd8448eb211c80319z-b7ad6b7169203331-01"} {
		if _, ok := ParseTraceparent(bad); ok {
			t.Errorf("accepted %q", bad)
		}
	}
	// a later version may carry more fields
	if _, ok := ParseTraceparent("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-more"); !ok {
		t.Error("refused a future version")
	}
}

func TestSettingsFromTheEnvironment(t *testing.T) {
	env := map[string]string{}
	get := func(k string) string { return env[k] }
	s := ReadSettings(get)
	if s.LogsURL != "http://127.0.0.1:4318/v1/logs" || s.MetricsURL != "http://127.0.0.1:4318/v1/metrics" || s.Disabled ||
		s.Timeout.Seconds() != 10 || s.BufferBytes != DefaultBufferBytes {
		t.Fatalf("defaults %+v", s)
	}
	env = map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9/base/", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "",
		"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://m/x", "OTEL_EXPORTER_OTLP_TIMEOUT": "250",
		"OTEL_SDK_DISABLED": "TRUE", "LEAP0_SUPERVISOR_BUFFER_BYTES": "1", "OTEL_SERVICE_NAME": " svc ",
		"OTEL_RESOURCE_ATTRIBUTES": "a=1,b=x%2Cy, broken ,=z,c=%zz"}
	s = ReadSettings(get)
	if s.LogsURL != "http://127.0.0.1:9/base/v1/logs" || s.MetricsURL != "http://m/x" || !s.Disabled ||
		s.Timeout.Milliseconds() != 250 || s.BufferBytes != MinBufferBytes || s.Service != "svc" {
		t.Fatalf("%+v", s)
	}
	if len(s.Resource) != 2 || s.Resource["a"] != "1" || s.Resource["b"] != "x,y" {
		t.Fatalf("resource %v", s.Resource)
	}
}
