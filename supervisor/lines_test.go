package main

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"
)

type got struct {
	text    string
	partial bool
}

func feed(t *testing.T, chunks ...string) []got {
	t.Helper()
	s := NewSplitter(Stderr)
	var out []got
	emit := func(l Line) {
		if l.Stream != Stderr || l.Time != 7 {
			t.Fatalf("line %+v: wrong stream or time", l)
		}
		out = append(out, got{string(l.Text), l.Partial})
	}
	for _, c := range chunks {
		s.Feed([]byte(c), 7, emit)
	}
	s.Flush(7, emit)
	return out
}

func TestSplitterLines(t *testing.T) {
	cases := []struct {
		name   string
		chunks []string
		want   []got
	}{
		{"one line", []string{"hello\n"}, []got{{"hello", false}}},
		{"several in one chunk", []string{"a\nb\n\nc\n"}, []got{{"a", false}, {"b", false}, {"", false}, {"c", false}}},
		{"a line across chunks", []string{"hel", "lo wor", "ld\nnext\n"}, []got{{"hello world", false}, {"next", false}}},
		{"CRLF", []string{"dos\r\n", "cr\r", "\n"}, []got{{"dos", false}, {"cr", false}}},
		{"a lone CR inside stays", []string{"a\rb\n"}, []got{{"a\rb", false}}},
		{"partial last line", []string{"a\nb"}, []got{{"a", false}, {"b", false}}},
		{"partial last line with CR", []string{"last\r"}, []got{{"last", false}}},
		{"nothing", nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if out := feed(t, c.chunks...); !equal(out, c.want) {
				t.Fatalf("got %+v, want %+v", out, c.want)
			}
		})
	}
}

func equal(a, b []got) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSplitterCutsLongLinesInPiecesOf64KiB(t *testing.T) {
	long := strings.Repeat("x", 2*MaxLineBytes+10)
	for _, chunks := range [][]string{{long + "\nafter\n"}, {long[:1000], long[1000:70000], long[70000:], "\nafter\n"}} {
		out := feed(t, chunks...)
		want := []got{{long[:MaxLineBytes], true}, {long[MaxLineBytes : 2*MaxLineBytes], true}, {long[2*MaxLineBytes:], false}, {"after", false}}
		if !equal(out, want) {
			t.Fatalf("pieces %d, want 4", len(out))
		}
	}
	// A line of exactly 64 KiB is one record; a long line that ends without "\n" ends with a whole piece.
	if out := feed(t, strings.Repeat("y", MaxLineBytes)+"\n"); len(out) != 1 || out[0].partial {
		t.Fatalf("a 64 KiB line: %d records", len(out))
	}
	if out := feed(t, strings.Repeat("z", MaxLineBytes+1)); len(out) != 2 || !out[0].partial || out[1].text != "z" {
		t.Fatalf("an unfinished long line: %d records", len(out))
	}
}

func TestLongLinesAreNotCutInsideACharacter(t *testing.T) {
	line := strings.Repeat("a", MaxLineBytes-1) + "€" + strings.Repeat("b", 10) // € is 3 bytes, across the limit
	out := feed(t, line+"\n")
	if len(out) != 2 || out[0].text != strings.Repeat("a", MaxLineBytes-1) || out[1].text != "€"+strings.Repeat("b", 10) {
		t.Fatalf("cut at %d, want before the euro sign", len(out[0].text))
	}
	if !utf8.ValidString(out[0].text) || !utf8.ValidString(out[1].text) {
		t.Fatal("a piece is not valid UTF-8")
	}
	// Bytes that are not UTF-8 at all are cut at the limit.
	junk := bytes.Repeat([]byte{0x80}, MaxLineBytes+5)
	if out := feed(t, string(junk)); len(out[0].text) != MaxLineBytes {
		t.Fatalf("junk cut at %d", len(out[0].text))
	}
}

// The replacements Python's bytes.decode("utf-8", "replace") and Node's Buffer.toString("utf8") make.
func TestValidUTF8ReplacesEachMaximalSubpartOnce(t *testing.T) {
	cases := map[string]string{
		"\xe2\x82":         "\uFFFD",
		"\xff\xfe":         "\uFFFD\uFFFD",
		"a\xed\xa0\x80b":   "a\uFFFD\uFFFD\uFFFDb",
		"\xf0\x90\x80":     "\uFFFD",
		"\xf4\x90\x80\x80": "\uFFFD\uFFFD\uFFFD\uFFFD",
		"\xc0\xaf":         "\uFFFD\uFFFD",
		"\xe0\x80\xaf":     "\uFFFD\uFFFD\uFFFD",
		"ok\xe2\x82\xacok": "ok€ok",
		"\xf0\x9f\x98":     "\uFFFD",
		"\x80":             "\uFFFD",
		"plain":            "plain",
		"":                 "",
	}
	for in, want := range cases {
		if got := ValidUTF8([]byte(in)); got != want {
			t.Errorf("ValidUTF8(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzValidUTF8(f *testing.F) {
	f.Add([]byte("a\xed\xa0\x80b"))
	f.Fuzz(func(t *testing.T, b []byte) {
		out := ValidUTF8(b)
		if !utf8.ValidString(out) {
			t.Fatalf("%q gave invalid %q", b, out)
		}
		if utf8.Valid(b) && out != string(b) {
			t.Fatalf("valid %q changed to %q", b, out)
		}
	})
}
