package main

import (
	"strings"
	"testing"
)

func TestQueueDropsTheOldestLinesAndCountsThem(t *testing.T) {
	q := NewQueue(10*(recordOverhead+10), 100)
	for i := 0; i < 25; i++ {
		q.Push(Line{Stream: Stdout, Text: []byte(strings.Repeat(string(rune('a'+i)), 10))})
	}
	if q.Len() != 10 || q.Dropped() != 15 {
		t.Fatalf("len %d dropped %d, want 10 and 15", q.Len(), q.Dropped())
	}
	lines, dropped := q.Take(nil, 4, 1<<20)
	if dropped != 15 || len(lines) != 4 || string(lines[0].Text) != strings.Repeat("p", 10) {
		t.Fatalf("took %d lines starting %q (dropped %d): want the newest ten kept, from p", len(lines), lines[0].Text, dropped)
	}
	q.Recycle(lines)
	rest, _ := q.Take(nil, 100, 1<<20)
	if len(rest) != 6 || string(rest[5].Text) != strings.Repeat("y", 10) || q.Len() != 0 {
		t.Fatalf("rest %d", len(rest))
	}
}

func TestQueueCopiesTheLine(t *testing.T) {
	q := NewQueue(1<<20, 100)
	buf := []byte("original")
	q.Push(Line{Text: buf})
	copy(buf, "XXXXXXXX")
	lines, _ := q.Take(nil, 1, 1<<20)
	if string(lines[0].Text) != "original" {
		t.Fatalf("the queue kept the reader's buffer: %q", lines[0].Text)
	}
}

func TestQueueSignalsAFullBatchWithoutBlocking(t *testing.T) {
	q := NewQueue(1<<20, 3)
	for i := 0; i < 100; i++ { // far more batches than the channel holds: Push must not block
		q.Push(Line{Text: []byte("x")})
	}
	select {
	case <-q.Ready():
	default:
		t.Fatal("no signal after a full batch")
	}
}

func TestQueueBoundHoldsUnderManyEmptyLines(t *testing.T) {
	q := NewQueue(64*1024, 512)
	for i := 0; i < 100000; i++ {
		q.Push(Line{})
	}
	if q.Len() != 64*1024/recordOverhead {
		t.Fatalf("%d empty lines kept", q.Len())
	}
	if q.Dropped() != uint64(100000-q.Len()) {
		t.Fatalf("dropped %d", q.Dropped())
	}
}

func TestQueueTakesBatchesBoundedInBytes(t *testing.T) {
	q := NewQueue(1<<20, 100)
	for i := 0; i < 10; i++ {
		q.Push(Line{Text: []byte(strings.Repeat("x", 1000))})
	}
	lines, _ := q.Take(nil, 100, 2500)
	if len(lines) != 2 {
		t.Fatalf("%d lines of 1000 bytes in a batch of at most 2500", len(lines))
	}
	// a line longer than the bound still goes, alone
	big, _ := q.Take(nil, 100, 10)
	if len(big) != 1 {
		t.Fatalf("%d lines", len(big))
	}
}
