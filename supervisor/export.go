package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// ExporterConfig says where and how the records go.
type ExporterConfig struct {
	LogsURL    string
	MetricsURL string
	Timeout    time.Duration // one request (OTEL_EXPORTER_OTLP_TIMEOUT)
	Linger     time.Duration // the longest a line waits for a batch to fill
	BatchSize  int           // lines in one request at most
	BatchBytes int           // text in one request at most (beyond its first line)
	UserAgent  string
}

const (
	retryInitial = 100 * time.Millisecond
	retryMax     = 2 * time.Second
	maxReplyBody = 64 * 1024
)

// Exporter sends the queued lines, and the events, as OTLP/HTTP protobuf requests from its own goroutine, so
// the pipe readers never wait for it. It retries what the receiver asks to be retried (429, 502, 503, 504,
// and a connection that failed, honouring Retry-After), one request at a time; whatever cannot be sent is
// counted, told in a drop record with the next batch that goes through, and in the counter MetricDropped.
type Exporter struct {
	cfg    ExporterConfig
	q      *Queue
	enc    *Encoder
	client *http.Client
	ctx    context.Context
	cancel context.CancelFunc
	flush  chan struct{}
	done   chan struct{}

	mu         sync.Mutex
	events     []Event
	lost       uint64 // lines in requests that failed for good (or were rejected)
	reported   uint64 // lost lines already told in a drop record
	metricSent uint64 // the total last sent as MetricDropped
	batch      []Line
}

// NewExporter returns an exporter of q's lines; Start runs it.
func NewExporter(cfg ExporterConfig, q *Queue, enc *Encoder) *Exporter {
	ctx, cancel := context.WithCancel(context.Background())
	transport := &http.Transport{Proxy: nil, DisableCompression: true, MaxIdleConns: 1, MaxIdleConnsPerHost: 1,
		IdleConnTimeout: 30 * time.Second, ForceAttemptHTTP2: false}
	return &Exporter{cfg: cfg, q: q, enc: enc, client: &http.Client{Transport: transport}, ctx: ctx, cancel: cancel,
		flush: make(chan struct{}), done: make(chan struct{})}
}

// Start runs the export loop in its own goroutine.
func (x *Exporter) Start() { go x.run() }

// Add queues an event (start, exit); events are never dropped for lack of room (there are at most three).
func (x *Exporter) Add(ev Event) {
	x.mu.Lock()
	x.events = append(x.events, ev)
	x.mu.Unlock()
}

// Lost is the number of lines lost so far: dropped from the full queue or in requests that failed for good.
func (x *Exporter) Lost() uint64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.q.Dropped() + x.lost
}

// Shutdown exports what is left, giving up after timeout (a receiver that does not answer must not hold the
// command's exit for longer), and stops the loop.
func (x *Exporter) Shutdown(timeout time.Duration) {
	deadline := time.AfterFunc(timeout, x.cancel)
	defer deadline.Stop()
	close(x.flush)
	<-x.done
	x.cancel()
}

func (x *Exporter) flushing() bool {
	select {
	case <-x.flush:
		return true
	default:
		return false
	}
}

func (x *Exporter) run() {
	defer close(x.done)
	timer := time.NewTimer(x.cfg.Linger)
	defer timer.Stop()
	for {
		select {
		case <-x.q.Ready():
		case <-timer.C:
		case <-x.flush:
			x.exportAll()
			x.sendMetric()
			return
		}
		x.exportAll()
		timer.Reset(x.cfg.Linger)
	}
}

// exportAll sends batches until the queue and the events are empty (or the context is done).
func (x *Exporter) exportAll() {
	for x.ctx.Err() == nil {
		x.mu.Lock()
		events := x.events
		x.events = nil
		lines, dropped := x.q.Take(x.batch[:0], x.cfg.BatchSize, x.cfg.BatchBytes)
		unreported := dropped + x.lost - x.reported
		x.mu.Unlock()
		if unreported > 0 {
			events = append([]Event{DroppedEvent(time.Now().UnixNano(), unreported)}, events...)
		}
		if len(events) == 0 && len(lines) == 0 {
			x.batch = lines
			return
		}
		err := x.sendLogs(events, lines)
		x.mu.Lock()
		if err != nil { // refused for good, or the shutdown's deadline passed: these lines are lost
			x.lost += uint64(len(lines))
		} else {
			x.reported += unreported
		}
		x.mu.Unlock()
		x.q.Recycle(lines)
		x.batch = lines[:0]
		if err == nil && unreported > 0 {
			x.sendMetric()
		}
		if err != nil {
			return
		}
	}
}

func (x *Exporter) sendLogs(events []Event, lines []Line) error {
	rejected, err := x.send(x.cfg.LogsURL, x.enc.Logs(events, lines))
	if err == nil && rejected > 0 {
		x.mu.Lock()
		x.lost += uint64(min(rejected, int64(len(lines))))
		x.mu.Unlock()
	}
	return err
}

// sendMetric sends the lost-lines counter when it changed (once, no retry: the next change or the exit sends
// it again).
func (x *Exporter) sendMetric() {
	total := x.Lost()
	x.mu.Lock()
	changed := total > x.metricSent
	x.mu.Unlock()
	if !changed || x.ctx.Err() != nil {
		return
	}
	if _, err := x.post(x.cfg.MetricsURL, x.enc.DroppedMetric(time.Now().UnixNano(), total)); err == nil {
		x.mu.Lock()
		x.metricSent = total
		x.mu.Unlock()
	}
}

type retryable struct {
	after      time.Duration
	connection bool // no answer at all (refused, reset, timed out)
	err        error
}

func (r *retryable) Error() string { return r.err.Error() }

// send posts body, retrying what may be retried until the exporter's context ends; it returns how many records
// the receiver said it rejected.
func (x *Exporter) send(url string, body []byte) (int64, error) {
	wait := retryInitial
	for {
		rejected, err := x.post(url, body)
		var r *retryable
		if err == nil || !errors.As(err, &r) {
			return rejected, err
		}
		if r.connection && x.flushing() {
			return 0, err // at the exit, a sidecar that is not there is not waited for
		}
		delay := wait
		if r.after > 0 {
			delay = r.after
		}
		wait = min(wait*2, retryMax)
		timer := time.NewTimer(delay)
		select {
		case <-timer.C:
		case <-x.ctx.Done():
			timer.Stop()
			return 0, x.ctx.Err()
		}
	}
}

func (x *Exporter) post(url string, body []byte) (int64, error) {
	ctx, cancel := context.WithTimeout(x.ctx, x.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("User-Agent", x.cfg.UserAgent)
	resp, err := x.client.Do(req)
	if err != nil {
		if x.ctx.Err() != nil {
			return 0, x.ctx.Err()
		}
		return 0, &retryable{connection: true, err: err} // refused, reset, timed out: it may be back soon
	}
	reply, _ := io.ReadAll(io.LimitReader(resp.Body, maxReplyBody))
	_ = resp.Body.Close()
	switch code := resp.StatusCode; {
	case code >= 200 && code <= 299:
		rejected, _ := PartialSuccess(reply)
		return rejected, nil
	case code == http.StatusTooManyRequests || code == http.StatusBadGateway ||
		code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout:
		after := time.Duration(0)
		if seconds, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && seconds > 0 {
			after = time.Duration(seconds) * time.Second
		}
		return 0, &retryable{after: after, err: fmt.Errorf("%s answered %s", url, resp.Status)}
	default:
		return 0, fmt.Errorf("%s answered %s", url, resp.Status)
	}
}
