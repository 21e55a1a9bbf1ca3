package main

import "sync"

// recordOverhead is what one queued line costs beside its text (the Line itself and its slot), counted
// against the queue's byte bound so that many empty lines are bounded too.
const recordOverhead = 64

// Free line buffers kept for reuse: at most this many, each of at most this capacity.
const (
	freeBuffers    = 256
	freeBufferSize = 1024
)

// Queue holds the lines read but not yet exported, bounded in bytes. Pushing never blocks and never fails:
// when a line does not fit, the oldest lines are dropped (and counted), as OpenTelemetry's Python batch processor
// does, so what is kept is the most recent output (where a crash's last words are). The pipe readers push
// (holding the lock for a whole chunk), the exporter takes batches.
type Queue struct {
	mu       sync.Mutex
	lines    []Line // lines[head:] are queued, oldest first
	head     int
	bytes    int
	maxBytes int
	batch    int           // the exporter is woken when this many lines are queued
	dropped  uint64        // lines dropped because the queue was full, since the start
	kick     chan struct{} // capacity 1: a batch is ready
	free     [][]byte      // buffers of lines dropped or exported, reused for new lines
}

// NewQueue returns a queue holding at most maxBytes (text plus recordOverhead per line) that wakes its
// consumer through Ready when batch lines are queued.
func NewQueue(maxBytes, batch int) *Queue {
	return &Queue{maxBytes: maxBytes, batch: batch, kick: make(chan struct{}, 1)}
}

// Ready is signalled (without blocking the producer) when a batch is ready.
func (q *Queue) Ready() <-chan struct{} { return q.kick }

// Lock and Unlock bracket pushLocked calls: a reader pushes all the lines of one chunk under one lock.
func (q *Queue) Lock()   { q.mu.Lock() }
func (q *Queue) Unlock() { q.mu.Unlock() }

// pushLocked copies line into the queue (the caller holds the lock), dropping the oldest lines until it fits.
func (q *Queue) pushLocked(line Line) {
	cost := len(line.Text) + recordOverhead
	if cost > q.maxBytes { // can only happen with a bound below MaxLineBytes: keep what fits
		line.Text = line.Text[:q.maxBytes-recordOverhead]
		cost = q.maxBytes
	}
	for q.bytes+cost > q.maxBytes && q.head < len(q.lines) {
		old := &q.lines[q.head]
		q.bytes -= len(old.Text) + recordOverhead
		q.recycle(old.Text)
		*old = Line{}
		q.head++
		q.dropped++
	}
	var buf []byte
	if n := len(q.free); n > 0 && cap(q.free[n-1]) >= len(line.Text) {
		buf = q.free[n-1][:0]
		q.free = q.free[:n-1]
	} else {
		buf = make([]byte, 0, len(line.Text))
	}
	line.Text = append(buf, line.Text...)
	if q.head > 0 && q.head >= len(q.lines)/2 { // slide down instead of growing
		n := copy(q.lines, q.lines[q.head:])
		clear(q.lines[n:])
		q.lines = q.lines[:n]
		q.head = 0
	}
	q.lines = append(q.lines, line)
	q.bytes += cost
	if len(q.lines)-q.head == q.batch {
		select {
		case q.kick <- struct{}{}:
		default:
		}
	}
}

// Push queues one line (taking the lock).
func (q *Queue) Push(line Line) {
	q.mu.Lock()
	q.pushLocked(line)
	q.mu.Unlock()
}

// Take moves the oldest lines into out (appended), at most max of them and, beyond the first, at most
// maxBytes of text, and returns it with how many lines have been dropped since the start.
func (q *Queue) Take(out []Line, max, maxBytes int) ([]Line, uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := min(max, len(q.lines)-q.head)
	size := 0
	for i := 0; i < n; i++ {
		line := q.lines[q.head]
		size += len(line.Text)
		if i > 0 && size > maxBytes {
			break
		}
		q.lines[q.head] = Line{}
		q.head++
		q.bytes -= len(line.Text) + recordOverhead
		out = append(out, line)
	}
	if q.head == len(q.lines) {
		q.lines = q.lines[:0]
		q.head = 0
	}
	return out, q.dropped
}

// Len is the number of lines queued.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.lines) - q.head
}

// Dropped is the number of lines dropped because the queue was full, since the start.
func (q *Queue) Dropped() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.dropped
}

// Recycle hands the buffers of exported lines back for reuse.
func (q *Queue) Recycle(lines []Line) {
	q.mu.Lock()
	for i := range lines {
		q.recycle(lines[i].Text)
		lines[i] = Line{}
	}
	q.mu.Unlock()
}

func (q *Queue) recycle(buf []byte) {
	if cap(buf) > 0 && cap(buf) <= freeBufferSize && len(q.free) < freeBuffers {
		q.free = append(q.free, buf)
	}
}
