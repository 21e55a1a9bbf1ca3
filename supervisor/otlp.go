package main

import (
	"encoding/hex"
	"fmt"
	"math"
	"net/url"
	"path"
	"slices"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
)

// The OTLP protobuf messages are written field by field with protowire (the protobuf module's wire-format
// package) rather than built as go.opentelemetry.io/proto/otlp messages and marshalled: registering those
// types' descriptors costs about 2.5 MiB of resident memory at start, more than everything else the supervisor
// holds, in a process that runs inside the sandbox's own memory limit. The tests decode every request with
// the official OTLP types (otlp_test.go), so the two cannot drift apart.

// Field numbers of opentelemetry/proto/{common,resource,logs,metrics}/v1 and the collector requests.
const (
	fRequestResource = 1 // Export{Logs,Metrics}ServiceRequest.resource_{logs,metrics}

	fResourceXResource = 1 // Resource{Logs,Metrics}.resource
	fResourceXScope    = 2 // Resource{Logs,Metrics}.scope_{logs,metrics}
	fScopeXScope       = 1 // Scope{Logs,Metrics}.scope
	fScopeXItems       = 2 // ScopeLogs.log_records, ScopeMetrics.metrics

	fResourceAttributes = 1
	fScopeName          = 1
	fScopeVersion       = 2

	fKeyValueKey   = 1
	fKeyValueValue = 2
	fAnyString     = 1
	fAnyInt        = 3
	fAnyDouble     = 4
	fAnyArray      = 5
	fArrayValues   = 1

	fLogTime         = 1
	fLogSeverity     = 2
	fLogSeverityText = 3
	fLogBody         = 5
	fLogAttributes   = 6
	fLogFlags        = 8
	fLogTraceID      = 9
	fLogSpanID       = 10
	fLogObserved     = 11
	fLogEventName    = 12

	fMetricName        = 1
	fMetricDescription = 2
	fMetricUnit        = 3
	fMetricSum         = 7
	fSumDataPoints     = 1
	fSumTemporality    = 2
	fSumMonotonic      = 3
	fPointStart        = 2
	fPointTime         = 3
	fPointAsInt        = 6

	temporalityCumulative = 2

	fPartialSuccess         = 1 // Export*ServiceResponse.partial_success
	fPartialSuccessRejected = 1
	fPartialSuccessMessage  = 2
)

// Severity numbers of the log data model.
const (
	SeverityUnspecified = 0
	SeverityInfo        = 9
	SeverityWarn        = 13
	SeverityError       = 17
)

// TraceContext is a W3C trace context: the records of a command carry the trace and span of the call that ran
// it.
type TraceContext struct {
	TraceID [16]byte
	SpanID  [8]byte
	Flags   byte
}

// ParseTraceparent reads a W3C traceparent header value ("00-<trace id>-<span id>-<flags>"). As the W3C
// Trace Context says, a value that is not valid is ignored (ok is false), never an error.
func ParseTraceparent(value string) (tc TraceContext, ok bool) {
	value = strings.TrimSpace(value)
	parts := strings.Split(value, "-")
	if len(parts) < 4 || len(parts[0]) != 2 || len(parts[1]) != 32 || len(parts[2]) != 16 || len(parts[3]) != 2 {
		return tc, false
	}
	for _, p := range parts[:4] {
		if strings.ToLower(p) != p {
			return tc, false
		}
	}
	version, err := hex.DecodeString(parts[0])
	if err != nil || version[0] == 0xff || (version[0] == 0 && len(parts) != 4) {
		return tc, false
	}
	if _, err := hex.Decode(tc.TraceID[:], []byte(parts[1])); err != nil {
		return tc, false
	}
	if _, err := hex.Decode(tc.SpanID[:], []byte(parts[2])); err != nil {
		return tc, false
	}
	flags, err := hex.DecodeString(parts[3])
	if err != nil {
		return tc, false
	}
	tc.Flags = flags[0]
	if tc.TraceID == [16]byte{} || tc.SpanID == [8]byte{} {
		return tc, false
	}
	return tc, true
}

// ParseResourceAttributes reads OTEL_RESOURCE_ATTRIBUTES: "key=value" pairs separated by commas, values
// percent-decoded. A malformed pair is skipped (the OpenTelemetry SDKs discard such values too).
func ParseResourceAttributes(value string) map[string]string {
	out := map[string]string{}
	for _, pair := range strings.Split(value, ",") {
		key, val, found := strings.Cut(pair, "=")
		key = strings.TrimSpace(key)
		if !found || key == "" {
			continue
		}
		decoded, err := url.PathUnescape(strings.TrimSpace(val))
		if err != nil {
			continue
		}
		out[key] = decoded
	}
	return out
}

// Attr is one attribute: a string, an integer, a double or a list of strings.
type Attr struct {
	Key     string
	Str     string
	Int     int64
	Double  float64
	Strings []string
	kind    byte // 's', 'i', 'd', 'a'
}

func StrAttr(key, value string) Attr       { return Attr{Key: key, Str: value, kind: 's'} }
func IntAttr(key string, value int64) Attr { return Attr{Key: key, Int: value, kind: 'i'} }
func DoubleAttr(key string, v float64) Attr {
	return Attr{Key: key, Double: v, kind: 'd'}
}
func StringsAttr(key string, values []string) Attr { return Attr{Key: key, Strings: values, kind: 'a'} }

// appendAnyString appends an AnyValue holding a string (made valid UTF-8).
func appendAnyString(b []byte, s []byte) []byte {
	s = validUTF8Bytes(s)
	b = protowire.AppendTag(b, fAnyString, protowire.BytesType)
	return protowire.AppendBytes(b, s)
}

func appendAnyValue(b []byte, a Attr) []byte {
	switch a.kind {
	case 'i':
		b = protowire.AppendTag(b, fAnyInt, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(a.Int))
	case 'd':
		b = protowire.AppendTag(b, fAnyDouble, protowire.Fixed64Type)
		return protowire.AppendFixed64(b, math.Float64bits(a.Double))
	case 'a':
		var arr []byte
		for _, s := range a.Strings {
			arr = appendMessage(arr, fArrayValues, appendAnyString(nil, []byte(s)))
		}
		return appendMessage(b, fAnyArray, arr)
	}
	return appendAnyString(b, []byte(a.Str))
}

// appendKeyValue appends field num holding a KeyValue.
func appendKeyValue(b []byte, num protowire.Number, a Attr) []byte {
	kv := protowire.AppendTag(nil, fKeyValueKey, protowire.BytesType)
	kv = protowire.AppendString(kv, a.Key)
	kv = appendMessage(kv, fKeyValueValue, appendAnyValue(nil, a))
	return appendMessage(b, num, kv)
}

// appendMessage appends field num holding the encoded message m.
func appendMessage(b []byte, num protowire.Number, m []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, m)
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendFixed64(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, v)
}

// Process is what the records say about the command: it becomes their Resource.
type Process struct {
	Container string
	PID       int
	Args      []string
	Exe       string // the executable's path as run
	RunID     string
	Service   string            // OTEL_SERVICE_NAME
	Extra     map[string]string // OTEL_RESOURCE_ATTRIBUTES
}

// Attributes of the records' resource: OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME (as an OpenTelemetry
// SDK in the app reads them), then the container and the process (which win).
func (p *Process) Attributes() []Attr {
	var attrs []Attr
	own := map[string]bool{AttrContainerName: p.Container != "", AttrProcessPID: p.PID > 0,
		AttrProcessExeName: p.Exe != "", AttrProcessArgs: len(p.Args) > 0, AttrRunID: true,
		AttrServiceName: p.Service != ""}
	keys := make([]string, 0, len(p.Extra))
	for k := range p.Extra {
		if !own[k] {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		attrs = append(attrs, StrAttr(k, p.Extra[k]))
	}
	if p.Service != "" {
		attrs = append(attrs, StrAttr(AttrServiceName, p.Service))
	}
	if p.Container != "" {
		attrs = append(attrs, StrAttr(AttrContainerName, p.Container))
	}
	if p.PID > 0 {
		attrs = append(attrs, IntAttr(AttrProcessPID, int64(p.PID)))
	}
	if p.Exe != "" {
		attrs = append(attrs, StrAttr(AttrProcessExeName, path.Base(p.Exe)))
	}
	if len(p.Args) > 0 {
		attrs = append(attrs, StringsAttr(AttrProcessArgs, p.Args))
	}
	return append(attrs, StrAttr(AttrRunID, p.RunID))
}

// Event is a record that is not a line of output: the start, the exit, or lines dropped.
type Event struct {
	Name     string
	Time     int64
	Body     string
	Severity int
	Attrs    []Attr
}

// StartEvent is the first record of a run (its command line is the resource's process.command_args).
func StartEvent(now int64, exe string, pid int) Event {
	return Event{Name: EventStart, Time: now, Severity: SeverityInfo, Body: fmt.Sprintf("started %s (pid %d)", exe, pid)}
}

// ExitEvent is the last record of a run: its exit code (128+N when killed by signal N), how long it ran, and
// how many lines of its output were lost on the way.
func ExitEvent(now int64, code int, signal string, seconds float64, dropped uint64) Event {
	body := fmt.Sprintf("exited with code %d after %.3f s", code, seconds)
	if signal != "" {
		body = fmt.Sprintf("killed by %s (exit code %d) after %.3f s", signal, code, seconds)
	}
	return Event{Name: EventExit, Time: now, Body: body, Severity: SeverityInfo,
		Attrs: []Attr{IntAttr(AttrExitCode, int64(code)), DoubleAttr(AttrRunDuration, seconds),
			IntAttr(AttrDropped, int64(dropped))}}
}

// ExecFailedEvent is the only record of a command that could not be started.
func ExecFailedEvent(now int64, code int, message string) Event {
	return Event{Name: EventExit, Time: now, Body: message, Severity: SeverityError,
		Attrs: []Attr{IntAttr(AttrExitCode, int64(code)), DoubleAttr(AttrRunDuration, 0), IntAttr(AttrDropped, 0)}}
}

// DroppedEvent says how many lines were lost since the previous such record.
func DroppedEvent(now int64, n uint64) Event {
	return Event{Name: EventDropped, Time: now, Severity: SeverityWarn,
		Body:  fmt.Sprintf("%d lines of output were not delivered (the telemetry sidecar did not take them in time)", n),
		Attrs: []Attr{IntAttr(AttrDropped, int64(n))}}
}

func severityText(n int) string {
	switch n {
	case SeverityInfo:
		return "INFO"
	case SeverityWarn:
		return "WARN"
	case SeverityError:
		return "ERROR"
	}
	return ""
}

// Encoder builds the export requests of one run: the resource, the scope and the trace context are the same
// in every request, so they are encoded once.
type Encoder struct {
	resource []byte // field 1 of Resource{Logs,Metrics}: the Resource
	scope    []byte // field 1 of Scope{Logs,Metrics}: the InstrumentationScope
	trace    []byte // fields 8 (flags), 9 (trace id), 10 (span id) of every record, or nothing
	lineAttr [2][2][]byte
	start    int64
	records  []byte
	scratch  []byte
	out      []byte // the last request: reused (the exporter sends one request at a time)
}

// NewEncoder returns an encoder for the records of process p, carrying tc when it is not nil.
func NewEncoder(p *Process, version string, tc *TraceContext, start int64) *Encoder {
	var res []byte
	for _, a := range p.Attributes() {
		res = appendKeyValue(res, fResourceAttributes, a)
	}
	scope := appendString(nil, fScopeName, ScopeName)
	scope = appendString(scope, fScopeVersion, version)
	e := &Encoder{resource: appendMessage(nil, fResourceXResource, res), scope: appendMessage(nil, fScopeXScope, scope),
		start: start}
	if tc != nil {
		t := protowire.AppendTag(nil, fLogFlags, protowire.Fixed32Type)
		t = protowire.AppendFixed32(t, uint32(tc.Flags))
		t = protowire.AppendTag(t, fLogTraceID, protowire.BytesType)
		t = protowire.AppendBytes(t, tc.TraceID[:])
		t = protowire.AppendTag(t, fLogSpanID, protowire.BytesType)
		e.trace = protowire.AppendBytes(t, tc.SpanID[:])
	}
	for s, stream := range []Stream{Stdout, Stderr} {
		for partial, tag := range []string{"F", "P"} {
			b := appendKeyValue(nil, fLogAttributes, StrAttr(AttrLogIostream, stream.String()))
			e.lineAttr[s][partial] = appendKeyValue(b, fLogAttributes, StrAttr(AttrLogtag, tag))
		}
	}
	return e
}

func (e *Encoder) appendTimes(b []byte, t int64) []byte {
	b = appendFixed64(b, fLogTime, uint64(t))
	b = appendFixed64(b, fLogObserved, uint64(t))
	return append(b, e.trace...)
}

// Logs encodes an ExportLogsServiceRequest (protobuf) with the events first, then the lines. The result is
// valid until the next call.
func (e *Encoder) Logs(events []Event, lines []Line) []byte {
	recs := e.records[:0]
	for _, ev := range events {
		r := e.appendTimes(e.scratch[:0], ev.Time)
		if ev.Severity != SeverityUnspecified {
			r = protowire.AppendTag(r, fLogSeverity, protowire.VarintType)
			r = protowire.AppendVarint(r, uint64(ev.Severity))
			r = appendString(r, fLogSeverityText, severityText(ev.Severity))
		}
		r = appendMessage(r, fLogBody, appendAnyString(nil, []byte(ev.Body)))
		for _, a := range ev.Attrs {
			r = appendKeyValue(r, fLogAttributes, a)
		}
		r = appendString(r, fLogEventName, ev.Name)
		recs = appendMessage(recs, fScopeXItems, r)
		e.scratch = r
	}
	for i := range lines {
		line := &lines[i]
		r := e.appendTimes(e.scratch[:0], line.Time)
		text := validUTF8Bytes(line.Text)
		any := protowire.SizeTag(fAnyString) + protowire.SizeBytes(len(text))
		r = protowire.AppendTag(r, fLogBody, protowire.BytesType)
		r = protowire.AppendVarint(r, uint64(any))
		r = protowire.AppendTag(r, fAnyString, protowire.BytesType)
		r = protowire.AppendBytes(r, text)
		partial := 0
		if line.Partial {
			partial = 1
		}
		r = append(r, e.lineAttr[line.Stream-1][partial]...)
		recs = appendMessage(recs, fScopeXItems, r)
		e.scratch = r
	}
	e.records = recs
	return e.request(recs)
}

// request wraps encoded items (log records or metrics, each already a field 2 of Scope*) in
// Scope* / Resource* / Export*ServiceRequest. The result is valid until the next request.
func (e *Encoder) request(items []byte) []byte {
	scopeLen := len(e.scope) + len(items)
	resourceLen := len(e.resource) + protowire.SizeTag(fResourceXScope) + protowire.SizeBytes(scopeLen)
	out := e.out[:0]
	out = protowire.AppendTag(out, fRequestResource, protowire.BytesType)
	out = protowire.AppendVarint(out, uint64(resourceLen))
	out = append(out, e.resource...)
	out = protowire.AppendTag(out, fResourceXScope, protowire.BytesType)
	out = protowire.AppendVarint(out, uint64(scopeLen))
	out = append(out, e.scope...)
	e.out = append(out, items...)
	return e.out
}

// DroppedMetric encodes an ExportMetricsServiceRequest with the cumulative count of lost lines (valid until
// the next request).
func (e *Encoder) DroppedMetric(now int64, total uint64) []byte {
	point := appendFixed64(nil, fPointStart, uint64(e.start))
	point = appendFixed64(point, fPointTime, uint64(now))
	point = appendFixed64(point, fPointAsInt, total)
	sum := appendMessage(nil, fSumDataPoints, point)
	sum = protowire.AppendTag(sum, fSumTemporality, protowire.VarintType)
	sum = protowire.AppendVarint(sum, temporalityCumulative)
	sum = protowire.AppendTag(sum, fSumMonotonic, protowire.VarintType)
	sum = protowire.AppendVarint(sum, 1)
	metric := appendString(nil, fMetricName, MetricDropped)
	metric = appendString(metric, fMetricDescription, MetricDroppedDescription)
	metric = appendString(metric, fMetricUnit, MetricDroppedUnit)
	metric = appendMessage(metric, fMetricSum, sum)
	return e.request(appendMessage(nil, fScopeXItems, metric))
}

// PartialSuccess reads the partial_success of an Export*ServiceResponse (protobuf): how many records were
// rejected and why.
func PartialSuccess(body []byte) (rejected int64, message string) {
	for len(body) > 0 {
		num, typ, n := protowire.ConsumeTag(body)
		if n < 0 {
			return rejected, message
		}
		body = body[n:]
		if num == fPartialSuccess && typ == protowire.BytesType {
			inner, m := protowire.ConsumeBytes(body)
			if m < 0 {
				return rejected, message
			}
			body = body[m:]
			for len(inner) > 0 {
				fnum, ftyp, k := protowire.ConsumeTag(inner)
				if k < 0 {
					break
				}
				inner = inner[k:]
				switch {
				case fnum == fPartialSuccessRejected && ftyp == protowire.VarintType:
					v, k := protowire.ConsumeVarint(inner)
					if k < 0 {
						return rejected, message
					}
					rejected, inner = int64(v), inner[k:]
				case fnum == fPartialSuccessMessage && ftyp == protowire.BytesType:
					v, k := protowire.ConsumeBytes(inner)
					if k < 0 {
						return rejected, message
					}
					message, inner = string(v), inner[k:]
				default:
					k := protowire.ConsumeFieldValue(fnum, ftyp, inner)
					if k < 0 {
						return rejected, message
					}
					inner = inner[k:]
				}
			}
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, body)
		if m < 0 {
			return rejected, message
		}
		body = body[m:]
	}
	return rejected, message
}
