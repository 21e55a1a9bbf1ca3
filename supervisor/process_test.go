package main

// Tests of the built binary as a process: what a user of the pod sees (exit codes, signals, output passed
// through byte for byte, records at a receiver). The helpers below run as child processes of the supervisor
// (this test binary started with LEAP0_TEST_HELPER set).

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/protobuf/proto"
)

var binary string // the supervisor, built once by TestMain

func TestMain(m *testing.M) {
	if helper := os.Getenv("LEAP0_TEST_HELPER"); helper != "" {
		runHelper(helper, os.Args[len(os.Args)-1])
		return
	}
	dir, err := os.MkdirTemp("", "leap0-supervisor-test-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "leap0-supervisor")
	build := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-o", binary, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the supervisor: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// runHelper is a child process of the supervisor in the tests.
func runHelper(mode, arg string) {
	switch mode {
	case "flood": // arg lines of 100 bytes, as fast as possible, then wait for a line on stdin
		n, _ := strconv.Atoi(arg)
		w := bufio.NewWriterSize(os.Stdout, 64*1024)
		for i := 0; i < n; i++ {
			fmt.Fprintf(w, "%09d %s\n", i, strings.Repeat("x", 89))
		}
		_ = w.Flush()
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		os.Exit(0)
	case "receiver": // an OTLP receiver in its own process (so that it can be stopped), summing up to stdout
		serveSummaries()
	}
	os.Exit(99)
}

// serveSummaries listens on 127.0.0.1 (the port on its first stdout line) and prints one JSON line per
// request: lines received, the drop records' counts, the exit record's count, the metric's value.
func serveSummaries() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.Exit(98)
	}
	fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	var mu sync.Mutex
	seen := map[string]bool{}
	_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		summary := map[string]int64{}
		if r.URL.Path == "/v1/metrics" {
			var data metricspb.MetricsData
			_ = proto.Unmarshal(body, &data)
			summary["metric"] = data.ResourceMetrics[0].ScopeMetrics[0].Metrics[0].GetSum().DataPoints[0].GetAsInt()
		} else {
			var data logspb.LogsData
			_ = proto.Unmarshal(body, &data)
			for _, rec := range data.ResourceLogs[0].ScopeLogs[0].LogRecords {
				switch rec.EventName {
				case "":
					mu.Lock()
					seen[rec.Body.GetStringValue()] = true
					mu.Unlock()
				case EventDropped:
					summary["dropped"] += attrs(rec.Attributes)[AttrDropped].(int64)
				case EventExit:
					summary["exit_dropped"] = attrs(rec.Attributes)[AttrDropped].(int64)
					summary["exit"] = 1
				}
			}
		}
		mu.Lock()
		summary["unique"] = int64(len(seen))
		out, _ := json.Marshal(summary)
		fmt.Println(string(out))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
}

// receiver is an in-process OTLP/HTTP receiver keeping every decoded request.
type receiver struct {
	*httptest.Server
	mu      sync.Mutex
	logs    []*logspb.LogsData
	metrics []*metricspb.MetricsData
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if req.Header.Get("Content-Type") != "application/x-protobuf" {
			w.WriteHeader(http.StatusUnsupportedMediaType)
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		switch req.URL.Path {
		case "/v1/logs":
			r.logs = append(r.logs, decodeLogs(t, body))
		case "/v1/metrics":
			var data metricspb.MetricsData
			if err := proto.Unmarshal(body, &data); err != nil {
				t.Errorf("metrics: %v", err)
			}
			r.metrics = append(r.metrics, &data)
		default:
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(r.Close)
	return r
}

type record struct {
	resource map[string]any
	rec      *logspb.LogRecord
	attrs    map[string]any
}

func (r *receiver) records() []record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []record
	for _, data := range r.logs {
		for _, rl := range data.ResourceLogs {
			res := attrs(rl.Resource.Attributes)
			for _, sl := range rl.ScopeLogs {
				for _, rec := range sl.LogRecords {
					out = append(out, record{res, rec, attrs(rec.Attributes)})
				}
			}
		}
	}
	return out
}

// lines are the bodies of the line records of one stream.
func lines(records []record, stream string) []string {
	var out []string
	for _, r := range records {
		if r.rec.EventName == "" && r.attrs["log.iostream"] == stream {
			out = append(out, r.rec.Body.GetStringValue())
		}
	}
	return out
}

func event(records []record, name string) *record {
	for i := range records {
		if records[i].rec.EventName == name {
			return &records[i]
		}
	}
	return nil
}

type result struct {
	code           int
	stdout, stderr []byte
}

// supervise runs the supervisor with args, exporting to endpoint ("" for a port nothing listens on), and
// returns what a caller sees.
func supervise(t *testing.T, endpoint string, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, args...)
	if endpoint == "" {
		endpoint = "http://127.0.0.1:1"
	}
	cmd.Env = append(append(os.Environ(), "OTEL_EXPORTER_OTLP_ENDPOINT="+endpoint), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if exit, ok := err.(*exec.ExitError); ok {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, stdout.Bytes(), stderr.Bytes()}
}

func TestExitCodeIsTheCommands(t *testing.T) {
	for _, c := range []struct {
		script string
		code   int
	}{{"exit 0", 0}, {"exit 3", 3}, {"exit 255", 255}, {"kill -KILL $$", 128 + 9}, {"kill -TERM $$", 128 + 15}} {
		if got := supervise(t, "", nil, "exec", "--", "/bin/sh", "-c", c.script); got.code != c.code {
			t.Errorf("%q: exit code %d, want %d", c.script, got.code, c.code)
		}
	}
}

func TestACommandThatCannotStart(t *testing.T) {
	rcv := newReceiver(t)
	got := supervise(t, rcv.URL, nil, "exec", "--flush-timeout=60s", "--", "leap0-no-such-program")
	if got.code != 127 || string(got.stderr) != ExecErrorPrefix+`"leap0-no-such-program": executable file not found in $PATH`+"\n" || len(got.stdout) != 0 {
		t.Fatalf("code %d stderr %q", got.code, got.stderr)
	}
	exit := event(rcv.records(), EventExit)
	if exit == nil || exit.attrs[AttrExitCode] != int64(127) || exit.rec.SeverityText != "ERROR" {
		t.Fatalf("no exit record with code 127: %v", rcv.records())
	}
	if got := supervise(t, "", nil, "exec", "--", "/no/such/file"); got.code != 127 ||
		!strings.Contains(string(got.stderr), "no such file or directory") {
		t.Fatalf("a missing path: %d %q", got.code, got.stderr)
	}
	plain := filepath.Join(t.TempDir(), "not-executable")
	if err := os.WriteFile(plain, []byte("echo hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := supervise(t, "", nil, "exec", "--", plain); got.code != 126 ||
		!strings.Contains(string(got.stderr), "permission denied") {
		t.Fatalf("not executable: %d %q", got.code, got.stderr)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"frobnicate"}, {"exec"}, {"run", "--"}, {"exec", "--nope", "true"}, {"install"}} {
		if got := supervise(t, "", nil, args...); got.code != 2 || !strings.Contains(string(got.stderr), "usage") {
			t.Errorf("%v: code %d stderr %q", args, got.code, got.stderr)
		}
	}
}

func TestOutputPassesThroughAndEveryLineIsARecord(t *testing.T) {
	rcv := newReceiver(t)
	tp := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	script := `printf 'one\ntwo\r\n\n'; printf 'e1\n' >&2; printf 'bad \377\376 utf8\n'; printf 'no newline at the end'; printf 'err tail' >&2; exit 5`
	got := supervise(t, rcv.URL, []string{"OTEL_SERVICE_NAME=my-app"}, "exec", "--flush-timeout=60s", "--container", "sandbox", "--traceparent", tp, "--", "/bin/sh", "-c", script)
	if got.code != 5 {
		t.Fatalf("exit code %d", got.code)
	}
	if string(got.stdout) != "one\ntwo\r\n\nbad \377\376 utf8\nno newline at the end" || string(got.stderr) != "e1\nerr tail" {
		t.Fatalf("output changed: %q %q", got.stdout, got.stderr)
	}
	records := rcv.records()
	if out := lines(records, "stdout"); strings.Join(out, "|") != "one|two||bad \uFFFD\uFFFD utf8|no newline at the end" {
		t.Fatalf("stdout records %q", out)
	}
	if errs := lines(records, "stderr"); strings.Join(errs, "|") != "e1|err tail" {
		t.Fatalf("stderr records %q", errs)
	}
	start, exit := event(records, EventStart), event(records, EventExit)
	if start == nil || exit == nil || exit.attrs[AttrExitCode] != int64(5) || exit.attrs[AttrDropped] != int64(0) {
		t.Fatalf("start %v exit %v", start, exit)
	}
	if d, ok := exit.attrs[AttrRunDuration].(float64); !ok || d <= 0 {
		t.Fatalf("duration %v", exit.attrs[AttrRunDuration])
	}
	runID := records[0].resource[AttrRunID].(string)
	for _, r := range records {
		if fmt.Sprintf("%x-%x-%d", r.rec.TraceId, r.rec.SpanId, r.rec.Flags) != "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1" {
			t.Fatalf("record without the caller's trace: %v", r.rec)
		}
		if r.resource[AttrRunID] != runID || len(runID) != 32 || r.resource[AttrContainerName] != "sandbox" ||
			r.resource[AttrProcessArgs] != "/bin/sh|-c|"+script || r.resource[AttrServiceName] != "my-app" {
			t.Fatalf("resource %v", r.resource)
		}
		if pid, ok := r.resource[AttrProcessPID].(int64); !ok || pid <= 1 {
			t.Fatalf("pid %v", r.resource[AttrProcessPID])
		}
	}
	// a second run is another run
	supervise(t, rcv.URL, nil, "exec", "--flush-timeout=60s", "--", "/bin/true")
	if again := rcv.records(); again[len(again)-1].resource[AttrRunID] == runID {
		t.Fatal("two runs share a run id")
	}
}

func TestLongLinesArriveInPieces(t *testing.T) {
	rcv := newReceiver(t)
	line := strings.Repeat("0123456789", 15*1024) // 150 KiB
	file := filepath.Join(t.TempDir(), "long")
	if err := os.WriteFile(file, []byte(line+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got := supervise(t, rcv.URL, nil, "run", "--flush-timeout=60s", "--", "/bin/cat", file)
	if got.code != 0 || string(got.stdout) != line+"\n" {
		t.Fatalf("code %d, %d bytes out", got.code, len(got.stdout))
	}
	var pieces []string
	var tags []string
	for _, r := range rcv.records() {
		if r.rec.EventName == "" {
			pieces = append(pieces, r.rec.Body.GetStringValue())
			tags = append(tags, r.attrs[AttrLogtag].(string))
		}
	}
	if strings.Join(pieces, "") != line || strings.Join(tags, "") != "PPF" || len(pieces[0]) != MaxLineBytes {
		t.Fatalf("%d pieces tagged %v", len(pieces), tags)
	}
}

func TestOutputWithExportOff(t *testing.T) {
	rcv := newReceiver(t)
	got := supervise(t, rcv.URL, []string{"OTEL_SDK_DISABLED=true"}, "exec", "--", "/bin/sh", "-c", "echo hi; exit 4")
	if got.code != 4 || string(got.stdout) != "hi\n" {
		t.Fatalf("%d %q", got.code, got.stdout)
	}
	if n := len(rcv.records()); n != 0 {
		t.Fatalf("%d records with export off", n)
	}
}

func TestSignalsAreForwarded(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			ready := filepath.Join(dir, "ready")
			script := fmt.Sprintf(`trap 'echo "got %d"; exit 3' %d; touch %s; while :; do sleep 0.05; done`, sig, sig, ready)
			cmd := exec.Command(binary, "run", "--", "/bin/sh", "-c", script)
			cmd.Env = append(os.Environ(), "OTEL_SDK_DISABLED=true")
			var stdout bytes.Buffer
			cmd.Stdout = &stdout
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the command to trap the signal", func() bool { _, err := os.Stat(ready); return err == nil })
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			err := cmd.Wait()
			if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != 3 {
				t.Fatalf("exit %v, want code 3 from the trap", err)
			}
			if stdout.String() != fmt.Sprintf("got %d\n", sig) {
				t.Fatalf("stdout %q", stdout.String())
			}
		})
	}
}

func TestOrphansAreReaped(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "orphan")
	// The subshell exits at once, so its sleep is an orphan: it is reparented to the supervisor (a child
	// subreaper), which must reap it when it ends (else it stays a zombie, whose /proc entry remains).
	script := fmt.Sprintf(`(sleep 3 & echo $! > %s.tmp; mv %s.tmp %s); exec sleep 60`, pidFile, pidFile, pidFile)
	cmd := exec.Command(binary, "run", "--", "/bin/sh", "-c", script)
	cmd.Env = append(os.Environ(), "OTEL_SDK_DISABLED=true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var orphan int
	waitFor(t, "the orphan's pid", func() bool {
		data, err := os.ReadFile(pidFile)
		if err != nil {
			return false
		}
		orphan, _ = strconv.Atoi(strings.TrimSpace(string(data)))
		return orphan > 0
	})
	// once the subshell has exited, the orphan is the supervisor's (init's, were the supervisor no subreaper)
	waitFor(t, "the orphan to become the supervisor's child", func() bool { return parentOf(orphan) == cmd.Process.Pid })
	waitFor(t, "the orphan to be reaped", func() bool {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", orphan))
		return os.IsNotExist(err)
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != 128+15 {
		t.Fatalf("exit %v, want 143 (sleep killed by the forwarded SIGTERM)", err)
	}
}

// As PID 1 of its own PID namespace (a container without a shared process namespace): signals reach the
// command, every orphan is reaped.
func TestAsPID1(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a PID namespace needs root")
	}
	ready := filepath.Join(t.TempDir(), "ready")
	script := fmt.Sprintf(`for i in 1 2 3 4 5; do (true &); done; sleep 0.2; trap 'echo "parent $PPID got TERM"; exit 7' TERM; touch %s; while :; do sleep 0.05; done`, ready)
	cmd := exec.Command(binary, "run", "--", "/bin/sh", "-c", script)
	cmd.Env = append(os.Environ(), "OTEL_SDK_DISABLED=true")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	waitFor(t, "the command to start its orphans", func() bool { _, err := os.Stat(ready); return err == nil })
	waitFor(t, "no zombie left under the supervisor", func() bool { return zombiesOf(cmd.Process.Pid) == 0 })
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != 7 || stdout.String() != "parent 1 got TERM\n" {
		t.Fatalf("exit %v, stdout %q", err, stdout.String())
	}
}

func parentOf(pid int) int {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(data), "\n") {
		if value, ok := strings.CutPrefix(line, "PPid:"); ok {
			ppid, _ := strconv.Atoi(strings.TrimSpace(value))
			return ppid
		}
	}
	return 0
}

func zombiesOf(parent int) int {
	entries, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || parentOf(pid) != parent {
			continue
		}
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if strings.Contains(string(data), "State:\tZ") {
			n++
		}
	}
	return n
}

func TestStdinIsTheCommands(t *testing.T) {
	cmd := exec.Command(binary, "exec", "--", "/bin/sh", "-c", "read line; echo \"read $line\"")
	cmd.Env = append(os.Environ(), "OTEL_SDK_DISABLED=true")
	cmd.Stdin = strings.NewReader("hello\n")
	out, err := cmd.Output()
	if err != nil || string(out) != "read hello\n" {
		t.Fatalf("%v %q", err, out)
	}
}

// A receiver that does not answer (a stopped sidecar) while the command writes as fast as it can: the command
// is never held up (all its output comes through while the receiver is stopped), the supervisor exits with
// its code; once the receiver is back, the lines lost are told by a drop record and the counter.
func TestAStoppedSidecarNeverHoldsTheCommandUp(t *testing.T) {
	recv := exec.Command(os.Args[0], "-test.run=^$", "x")
	recv.Env = append(os.Environ(), "LEAP0_TEST_HELPER=receiver")
	recvOut, err := recv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := recv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = recv.Process.Signal(syscall.SIGCONT); _ = recv.Process.Kill(); _ = recv.Wait() }()
	summaries := bufio.NewScanner(recvOut)
	if !summaries.Scan() {
		t.Fatal("the receiver did not start")
	}
	port := summaries.Text()
	var mu sync.Mutex
	var received []map[string]int64
	go func() {
		for summaries.Scan() {
			var s map[string]int64
			_ = json.Unmarshal(summaries.Bytes(), &s)
			mu.Lock()
			received = append(received, s)
			mu.Unlock()
		}
	}()
	if err := recv.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}

	const n = 300000 // 30 MB, far more than the queue holds
	cmd := exec.Command(binary, "exec", "--flush-timeout", "30s", "--", os.Args[0], "-test.run=^$", strconv.Itoa(n))
	cmd.Env = append(os.Environ(), "LEAP0_TEST_HELPER=flood", "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:"+port,
		"OTEL_EXPORTER_OTLP_TIMEOUT=300")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Every line comes through while the receiver is stopped.
	scanner := bufio.NewScanner(stdout)
	count := 0
	for count < n && scanner.Scan() {
		if want := fmt.Sprintf("%09d %s", count, strings.Repeat("x", 89)); scanner.Text() != want {
			t.Fatalf("line %d is %q", count, scanner.Text())
		}
		count++
	}
	if count != n {
		t.Fatalf("%d of %d lines came through", count, n)
	}
	if err := recv.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	_, _ = stdin.Write([]byte("go on\n")) // the command ends
	_, _ = io.Copy(io.Discard, stdout)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("supervisor: %v", err)
	}
	// A request that timed out may still be read once the receiver is back (then retried): lines are
	// counted once each.
	var lines, dropped, exitDropped, metric, exits int64
	waitFor(t, "the exit record", func() bool {
		mu.Lock()
		defer mu.Unlock()
		lines, dropped, exitDropped, metric, exits = 0, 0, 0, 0, 0
		for _, s := range received {
			lines = max(lines, s["unique"])
			dropped += s["dropped"]
			exits += s["exit"]
			exitDropped = max(exitDropped, s["exit_dropped"])
			metric = max(metric, s["metric"])
		}
		return exits == 1 && metric > 0
	})
	if dropped == 0 || lines+dropped != n || exitDropped != dropped || metric != dropped {
		t.Fatalf("lines %d + dropped %d != %d (exit record %d, metric %d)", lines, dropped, n, exitDropped, metric)
	}
}

func TestInstall(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "copy")
	if got := supervise(t, "", nil, "install", dest); got.code != 0 {
		t.Fatalf("install: %d %s", got.code, got.stderr)
	}
	info, err := os.Stat(dest)
	if err != nil || info.Mode().Perm() != 0o555 {
		t.Fatalf("%v %v", info, err)
	}
	a, _ := os.ReadFile(binary)
	b, _ := os.ReadFile(dest)
	if !bytes.Equal(a, b) {
		t.Fatal("the copy differs")
	}
	if out, err := exec.Command(dest, "version").Output(); err != nil || len(bytes.TrimSpace(out)) == 0 {
		t.Fatalf("the copy does not run: %v", err)
	}
	if got := supervise(t, "", nil, "install", "/nonexistent/dir/x"); got.code != 1 {
		t.Fatalf("install into a missing folder: %d", got.code)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
