package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// encodedLogs returns how many bytes logs take in an answer (encodeJSON,
// without the quotes).
func encodedLogs(t testing.TB, logs string) int {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(encodeJSON(&job{Logs: logs}), &m); err != nil {
		t.Fatal(err)
	}
	return len(m["logs"]) - 2
}

func TestFitLogs(t *testing.T) {
	for _, tt := range []struct {
		name, in string
		max      int
		want     string
	}{
		{"fits", "a\nb\n", 10, "a\nb\n"},
		{"keeps the end of one huge line", strings.Repeat("x", 100) + "END\n", 10, "xxxxxEND\n"},
		{"keeps a cut line's end", "first\nsecond line\nlast\n", 12, "line\nlast\n"},
		{"invalid bytes become U+FFFD", "\xff\xfeok", 100, "\ufffd\ufffdok"},
		{"invalid bytes cost 3", strings.Repeat("\xff", 10) + "end", 9, "\ufffd\ufffdend"},
		{"escapes count as written", "\x01\x02\"\"", 5, `""`},
		{"no rune is split", "aé", 2, "é"},
		{"zero", "abc", 0, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := fitLogs(tt.in, tt.max)
			if got != tt.want {
				t.Errorf("fitLogs(%q, %d) = %q; want %q", tt.in, tt.max, got, tt.want)
			}
			if n := encodedLogs(t, got); n > tt.max {
				t.Errorf("fitLogs(%q, %d) takes %d bytes in the answer", tt.in, tt.max, n)
			}
			if !utf8.ValidString(got) {
				t.Errorf("fitLogs(%q, %d) = %q is not UTF-8", tt.in, tt.max, got)
			}
		})
	}
}

// TestFitLogsBound: whatever the bytes, the encoded logs stay within the
// bound and use most of it.
func TestFitLogsBound(t *testing.T) {
	var all bytes.Buffer
	for i := range 1 << 16 {
		all.WriteByte(byte(i * 7919 >> 3))
	}
	s := all.String() + "é\u2028end"
	for _, limit := range []int{1, 7, 100, 4096, 1 << 20} {
		got := fitLogs(s, limit)
		if n := encodedLogs(t, got); n > limit || (limit < len(s) && n < limit-6) {
			t.Errorf("fitLogs(64 KiB of every byte, %d) takes %d bytes in the answer; want at most %d, and at least %d", limit, n, limit, limit-6)
		}
		if limit >= 10 && !strings.HasSuffix(got, "end") {
			t.Errorf("fitLogs(..., %d) ends %q; want the end kept", limit, got[max(0, len(got)-10):])
		}
	}
}

func TestLogTail(t *testing.T) {
	for _, limit := range []int{0, 1, 5, 100, 5000} {
		tail := &logTail{max: limit}
		var all strings.Builder
		for i := range 500 {
			chunk := strings.Repeat(strconv.Itoa(i%10), i%37) + "\n"
			tail.Write([]byte(chunk))
			all.WriteString(chunk)
			if len(tail.buf) > limit || cap(tail.buf) > limit {
				t.Fatalf("max %d: the tail holds %d bytes (capacity %d)", limit, len(tail.buf), cap(tail.buf))
			}
		}
		s := all.String()
		if got, want := tail.String(), s[max(0, len(s)-limit):]; got != want {
			t.Errorf("max %d: kept %q; want the last %d bytes, %q", limit, got, limit, want)
		}
	}
}

func TestTailLines(t *testing.T) {
	for _, tt := range []struct {
		in   string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc\n"},
		{"a\nb\nc", 2, "b\nc"},
		{"a\nb\n", 5, "a\nb\n"},
		{"", 3, ""},
		{"\n\n\n", 1, "\n"},
		{"a\n", 0, ""},
	} {
		if got := tailLines(tt.in, tt.n); got != tt.want {
			t.Errorf("tailLines(%q, %d) = %q; want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

// TestKubeHugeLine: a pod that printed one line longer than the bound
// answers that line's end, within the bound: LimitBytes gives the start,
// so pman reads the tail again through logTail.
func TestKubeHugeLine(t *testing.T) {
	huge := strings.Repeat("\xff", 6<<20) + " " + logsLast + "\n"
	k, _ := logJob(t, 1, 1000, func(w http.ResponseWriter, r *http.Request) {
		out := huge
		if limit, err := strconv.Atoi(r.URL.Query().Get("limitBytes")); err == nil {
			out = out[:min(limit, len(out))]
		}
		io.WriteString(w, out)
	})
	j, err := k.get(context.Background(), "chris-jid-7")
	if err != nil {
		t.Fatal(err)
	}
	logs := fitLogs(j.Logs, defaultLogsMaxBytes)
	if n := encodedLogs(t, logs); n > defaultLogsMaxBytes || n < defaultLogsMaxBytes/2 {
		t.Errorf("logs take %d bytes in the answer; want at most %d, most of it", n, defaultLogsMaxBytes)
	}
	if !strings.HasSuffix(logs, logsLast+"\n") {
		t.Errorf("logs end %q; want the line's end", logs[max(0, len(logs)-40):])
	}
}

// muxFrames returns s as the Docker engine's multiplexed log stream
// (stdout frames of at most 16 KiB, as json-file splits a long line).
func muxFrames(s string) []byte {
	var b bytes.Buffer
	for len(s) > 0 {
		n := min(len(s), 16<<10)
		var hdr [8]byte
		hdr[0] = 1
		binary.BigEndian.PutUint32(hdr[4:], uint32(n))
		b.Write(hdr[:])
		b.WriteString(s[:n])
		s = s[n:]
	}
	return b.Bytes()
}

// BenchmarkLogsGET reads a job's log the way a status GET does (the
// engine's stream through readLogs, the bound, the answer's JSON) for a
// job that printed 8 or 64 MiB of bytes that are not UTF-8: bytes allocated
// per GET are a small multiple of JOB_LOGS_MAX_BYTES, the same whatever the
// job printed.
//
//	go test -run '^$' -bench LogsGET -benchmem .
func BenchmarkLogsGET(b *testing.B) {
	for _, printed := range []int{8 << 20, 64 << 20} {
		stream := muxFrames(strings.Repeat("\xff", printed) + "\n" + logsLast + "\n")
		for _, maxBytes := range []int{1 << 20, defaultLogsMaxBytes} {
			b.Run(fmt.Sprintf("printed=%dMiB/max=%dMiB", printed>>20, maxBytes>>20), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					logs, err := readLogs(io.NopCloser(bytes.NewReader(stream)), false, maxBytes)
					if err != nil {
						b.Fatal(err)
					}
					body := encodeJSON(&job{JID: "j", Status: statusSuccess, Logs: fitLogs(logs, maxBytes)})
					if len(body) > maxBytes+200 {
						b.Fatalf("answer of %d bytes", len(body))
					}
				}
			})
		}
	}
}
