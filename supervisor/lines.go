package main

import (
	"bytes"
	"unicode/utf8"
)

// MaxLineBytes is the longest body a record gets: a longer line is cut into pieces of at most this many bytes
// (never inside a UTF-8 sequence), each its own record.
const MaxLineBytes = 64 * 1024

// Stream says which output a line came from.
type Stream uint8

const (
	Stdout Stream = 1
	Stderr Stream = 2
)

func (s Stream) String() string {
	if s == Stderr {
		return "stderr"
	}
	return "stdout"
}

// Line is one line of output (without its "\n" and a "\r" before it), or a piece of a longer one.
type Line struct {
	Time    int64 // when it was read, Unix nanoseconds
	Stream  Stream
	Partial bool // a piece of a line longer than MaxLineBytes that goes on in the next record
	Text    []byte
}

// Splitter turns the chunks read from one pipe into lines. It keeps the start of a line that has not ended yet
// (at most MaxLineBytes); it is used by one goroutine only.
type Splitter struct {
	stream  Stream
	pending []byte
}

// NewSplitter returns a splitter for lines of the given stream.
func NewSplitter(stream Stream) *Splitter {
	return &Splitter{stream: stream}
}

// Feed splits chunk into lines, calling emit for each complete line (and for each MaxLineBytes piece of a
// longer one). The Text given to emit is only valid during the call.
func (s *Splitter) Feed(chunk []byte, now int64, emit func(Line)) {
	for len(chunk) > 0 {
		i := bytes.IndexByte(chunk, '\n')
		if i < 0 {
			s.pending = append(s.pending, chunk...)
			s.cutLong(now, emit)
			return
		}
		var text []byte
		if len(s.pending) == 0 {
			text = chunk[:i]
		} else {
			s.pending = append(s.pending, chunk[:i]...)
			text = s.pending
		}
		chunk = chunk[i+1:]
		if n := len(text); n > 0 && text[n-1] == '\r' {
			text = text[:n-1]
		}
		for len(text) > MaxLineBytes {
			cut := safeCut(text, MaxLineBytes)
			emit(Line{Time: now, Stream: s.stream, Partial: true, Text: text[:cut]})
			text = text[cut:]
		}
		emit(Line{Time: now, Stream: s.stream, Text: text})
		s.pending = s.pending[:0]
	}
}

// cutLong emits full MaxLineBytes pieces of a line still going on, keeping the rest pending.
func (s *Splitter) cutLong(now int64, emit func(Line)) {
	if len(s.pending) <= MaxLineBytes {
		return
	}
	text := s.pending
	for len(text) > MaxLineBytes {
		cut := safeCut(text, MaxLineBytes)
		emit(Line{Time: now, Stream: s.stream, Partial: true, Text: text[:cut]})
		text = text[cut:]
	}
	s.pending = append(s.pending[:0], text...)
}

// Flush emits the last line when the stream ended without a final "\n".
func (s *Splitter) Flush(now int64, emit func(Line)) {
	if len(s.pending) == 0 {
		return
	}
	text := s.pending
	if n := len(text); text[n-1] == '\r' {
		text = text[:n-1]
	}
	emit(Line{Time: now, Stream: s.stream, Text: text})
	s.pending = s.pending[:0]
}

// safeCut returns where to cut text (longer than limit) at most limit bytes in: limit, moved back at most three
// bytes to the start of a UTF-8 sequence so that none is split in two.
func safeCut(text []byte, limit int) int {
	for p := limit; p > limit-utf8.UTFMax && p > 0; p-- {
		if utf8.RuneStart(text[p]) {
			return p
		}
	}
	return limit
}

// ValidUTF8 returns text as a valid UTF-8 string: each ill-formed sequence becomes U+FFFD, one per maximal
// subpart (the Unicode standard's practice, and what Python's errors="replace" and the WHATWG decoder of
// Node.js do), so a record's body reads as the SDKs decode the same bytes.
func ValidUTF8(text []byte) string {
	return string(validUTF8Bytes(text))
}

// validUTF8Bytes is ValidUTF8 as bytes: text itself when it is valid.
func validUTF8Bytes(text []byte) []byte {
	if utf8.Valid(text) {
		return text
	}
	out := make([]byte, 0, len(text)+8)
	for i := 0; i < len(text); {
		b := text[i]
		if b < 0x80 {
			out = append(out, b)
			i++
			continue
		}
		size, need, lo, hi := 1, 0, byte(0x80), byte(0xBF)
		switch {
		case b >= 0xC2 && b <= 0xDF:
			need = 1
		case b == 0xE0:
			need, lo = 2, 0xA0
		case b >= 0xE1 && b <= 0xEC, b == 0xEE, b == 0xEF:
			need = 2
		case b == 0xED:
			need, hi = 2, 0x9F
		case b == 0xF0:
			need, lo = 3, 0x90
		case b >= 0xF1 && b <= 0xF3:
			need = 3
		case b == 0xF4:
			need, hi = 3, 0x8F
		}
		ok := need > 0
		for k := 0; k < need; k++ {
			j := i + 1 + k
			if j >= len(text) || text[j] < lo || text[j] > hi {
				ok = false
				break
			}
			size++
			lo, hi = 0x80, 0xBF
		}
		if ok {
			out = append(out, text[i:i+size]...)
		} else {
			out = utf8.AppendRune(out, utf8.RuneError)
		}
		i += size
	}
	return out
}
