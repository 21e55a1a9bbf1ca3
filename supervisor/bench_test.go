package main

import (
	"fmt"
	"strings"
	"testing"
)

// The reader's work per 64 KiB chunk of 100-byte lines while the queue is full (the sidecar behind): split,
// drop the oldest, copy the new. b.SetBytes: the figure is in MB/s of output.
func BenchmarkFeedFullQueue(b *testing.B) {
	var sb strings.Builder
	for i := 0; sb.Len() < readChunk-100; i++ {
		fmt.Fprintf(&sb, "%09d %s\n", i, strings.Repeat("x", 89))
	}
	chunk := []byte(sb.String())
	q := NewQueue(DefaultBufferBytes, DefaultBatchSize)
	s := NewSplitter(Stdout)
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		q.Lock()
		s.Feed(chunk, int64(i), q.pushLocked)
		q.Unlock()
	}
}

// Encoding a batch of 512 lines of 100 bytes into an export request.
func BenchmarkEncode512Lines(b *testing.B) {
	enc := NewEncoder(&Process{RunID: "r", PID: 1, Args: []string{"app"}}, "v", nil, 0)
	lines := make([]Line, 512)
	for i := range lines {
		lines[i] = Line{Time: int64(i), Stream: Stdout, Text: []byte(fmt.Sprintf("%09d %s", i, strings.Repeat("x", 89)))}
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_ = enc.Logs(nil, lines)
	}
}
