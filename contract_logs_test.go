package main

// The logs' byte bound (JOB_LOGS_MAX_BYTES, fitLogs) against every backend
// of the contract suite: a job that prints one huge line, and one that
// prints a mass of bytes that are not UTF-8. Kept apart from the suite's
// table (contract_test.go), with the same harnesses.

import (
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// logsLast is the last thing each of these jobs prints.
const logsLast = "LAST-OUTPUT"

// logsJobs are the jobs, as sh scripts of the busybox test image, and as
// the text the Cromwell fake's task writes. Each prints 1 MiB, 16 times
// the bound the test sets.
var logsJobs = []struct{ name, script, text string }{
	{"one huge line", `head -c 1048576 /dev/zero | tr '\000' x; echo " ` + logsLast + `"`,
		strings.Repeat("x", 1<<20) + " " + logsLast + "\n"},
	{"invalid bytes", `head -c 1048576 /dev/zero | tr '\000' '\377'; echo; echo ` + logsLast,
		strings.Repeat("\xff", 1<<20) + "\n" + logsLast + "\n"},
}

func TestContractLogsBounded(t *testing.T) {
	const maxBytes = 64 << 10
	for _, b := range contractBackends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			if b.name == "kubernetes" {
				// kwok runs no container: every pod "logs" the same fixed
				// lines (kwokLog). Kubernetes' reading (LimitBytes, then the
				// streamed tail) is tested against a fake API server:
				// TestKubeLogBounds, TestKubeHugeLine.
				t.Skip("kwok runs no container (every pod logs the same fixed lines), so no job can print a huge log; see TestKubeHugeLine")
			}
			for _, job := range logsJobs {
				t.Run(job.name, func(t *testing.T) {
					t.Parallel()
					// A server each: the Cromwell fake's task files are
					// found as the only ones of its store.
					e := b.start(t, map[string]string{"JOB_LOGS_MAX_BYTES": strconv.Itoa(maxBytes)})
					jid := e.newJID(t, "logs")
					body := e.body(t, jid, actSucceed)
					if b.name != "cromwell" {
						body["entrypoint"] = []string{"sh", "-c", job.script, "sh"}
					}
					e.submit(t, body)
					if e.run != nil {
						e.run(t, jid, actSucceed)
						// The fake's task printed its line: it prints this
						// instead, on stderr, which the logs show last.
						writeTaskStderr(t, e.store, job.text)
					}
					e.finish(t, jid)
					checkLogsBounded(t, e.url+"/api/v1/"+jid+"/", maxBytes)
				})
			}
		})
	}
}

// writeTaskStderr replaces the stderr file of the only task under store
// (the Cromwell fake's) with text.
func writeTaskStderr(t *testing.T, store, text string) {
	t.Helper()
	var found []string
	filepath.WalkDir(store, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "stderr" && !d.IsDir() {
			found = append(found, p)
		}
		return nil
	})
	if len(found) != 1 {
		t.Fatalf("task stderr files under %s: %q; want one", store, found)
	}
	if err := os.WriteFile(found[0], []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// checkLogsBounded GETs u and checks its logs: at most maxBytes as they
// are encoded in the answer, valid UTF-8 with no \ufffd escape (an invalid
// byte is the character itself, 3 bytes, not a 6-byte escape), ending with
// the job's last line.
func checkLogsBounded(t *testing.T, u string, maxBytes int) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s = %d %v", u, resp.StatusCode, err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		t.Fatal(err)
	}
	encoded := fields["logs"]
	var logs string
	if err := json.Unmarshal(encoded, &logs); err != nil {
		t.Fatal(err)
	}
	if n := len(encoded) - 2; n > maxBytes {
		t.Errorf("logs take %d bytes in the answer; want at most %d", n, maxBytes)
	}
	if strings.Contains(string(encoded), `\ufffd`) {
		t.Errorf("the answer escapes invalid bytes as \\ufffd (6 bytes each): %.80s...", encoded)
	}
	if !strings.HasSuffix(strings.TrimRight(logs, "\r\n"), logsLast) {
		t.Errorf("logs (%d bytes) end %q; want the job's last output, %q", len(logs), logs[max(0, len(logs)-60):], logsLast)
	}
	if len(logs) < maxBytes/2 {
		t.Errorf("logs of %d bytes; want most of the %d the bound allows (the job printed 1 MiB)", len(logs), maxBytes)
	}
}
