package main

// The logs of a Cromwell job (cromwell_logs.go): sharing JOB_LOGS_TAIL
// between stdout and stderr, and reading only what lies under STOREBASE.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestSplitTail(t *testing.T) {
	tests := []struct {
		stdout, stderr string
		n              int
		want           string
	}{
		{"o1\no2\n", "e1\n", 10, "[pman] stdout:\no1\no2\n[pman] stderr:\ne1\n"},
		{"o1\no2", "", 10, "[pman] stdout:\no1\no2\n[pman] stderr:\n"},
		{"", "e1\n", 10, "[pman] stdout:\n[pman] stderr:\ne1\n"},
		{"", "", 10, ""},
		{"o1\n", "e1\n", 0, ""},
		// A chatty stderr gets half; stdout keeps the rest.
		{"o1\no2\no3\no4\n", "e1\ne2\ne3\ne4\ne5\n", 4,
			"[pman] stdout, last 2 of 4 lines:\no3\no4\n[pman] stderr, last 2 of 5 lines:\ne4\ne5\n"},
		// An odd budget leans to stdout.
		{"o1\no2\no3\n", "e1\ne2\ne3\n", 3,
			"[pman] stdout, last 2 of 3 lines:\no2\no3\n[pman] stderr, last 1 of 3 lines:\ne3\n"},
		// What one stream does not use, the other may.
		{"o1\n", "e1\ne2\ne3\ne4\n", 4, "[pman] stdout:\no1\n[pman] stderr, last 3 of 4 lines:\ne2\ne3\ne4\n"},
		{"o1\no2\no3\no4\n", "e1\n", 4, "[pman] stdout, last 3 of 4 lines:\no2\no3\no4\n[pman] stderr:\ne1\n"},
		{"o1\no2\n", "e1\ne2\n", 1, "[pman] stdout, last 1 of 2 lines:\no2\n[pman] stderr, last 0 of 2 lines:\n"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d out %d err %d", lineCount(tt.stdout), lineCount(tt.stderr), tt.n), func(t *testing.T) {
			if got := splitTail(tt.stdout, tt.stderr, tt.n); got != tt.want {
				t.Errorf("splitTail(%q, %q, %d) = %q; want %q", tt.stdout, tt.stderr, tt.n, got, tt.want)
			}
		})
	}
}

func TestCromwellLogsFromStore(t *testing.T) {
	store := t.TempDir()
	dir := filepath.Join(store, "cromwell-executions", "ChRISJob", "wf", "call-plugin_instance")
	for _, d := range []string{"attempt-2/execution", "shard-0/execution", "shard-1/execution", "shard-1/attempt-2/execution"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
		os.WriteFile(filepath.Join(dir, d, "stdout"), []byte(d+" out1\n"+d+" out2\n"+d+" out3\n"), 0o644)
		os.WriteFile(filepath.Join(dir, d, "stderr"), []byte(d+" err1\n"), 0o644)
	}
	// The last shard's highest attempt, wherever it is listed.
	at := func(d string) string { return filepath.Join(dir, d) }
	answer := fmt.Sprintf(`{"calls": {"ChRISJob.plugin_instance": [
		{"stdout": "/elsewhere/stdout", "stderr": "/elsewhere/stderr", "shardIndex": 1, "attempt": 1},
		{"stdout": %q, "stderr": %q, "shardIndex": 1, "attempt": 2},
		{"stdout": %q, "stderr": %q, "shardIndex": 0, "attempt": 3}]}}`,
		at("shard-1/attempt-2/execution/stdout"), at("shard-1/attempt-2/execution/stderr"), at("shard-0/execution/stdout"), at("shard-0/execution/stderr"))
	srv, _ := cwRecordingServer(t, func(w http.ResponseWriter, r *http.Request, body []byte) { io.WriteString(w, answer) })
	const d = "shard-1/attempt-2/execution"
	tests := []struct {
		tail int
		want string
	}{
		{2, "[pman] stdout, last 1 of 3 lines:\n" + d + " out3\n[pman] stderr:\n" + d + " err1\n"},
		{100, "[pman] stdout:\n" + d + " out1\n" + d + " out2\n" + d + " out3\n[pman] stderr:\n" + d + " err1\n"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint("JOB_LOGS_TAIL=", tt.tail), func(t *testing.T) {
			c := testCromwell(t, srv.URL, &config{StoreBase: store, JobLogsTail: tt.tail})
			if got, err := c.logs(context.Background(), "wf"); err != nil || got != tt.want {
				t.Errorf("logs with JOB_LOGS_TAIL=%d = %q, %v; want %q", tt.tail, got, err, tt.want)
			}
		})
	}
	// A path outside STOREBASE is named, never read.
	c := testCromwell(t, srv.URL, &config{StoreBase: filepath.Join(store, "other"), JobLogsTail: 10})
	if got, err := c.logs(context.Background(), "wf"); err == nil || strings.Contains(err.Error()+got, "out1") || !strings.Contains(err.Error(), at(d+"/stdout")) {
		t.Errorf("logs outside STOREBASE = %q, %v; want an error naming the paths, not the content", got, err)
	}
	// Files not written yet (SLURM has not started the job) are empty logs.
	answer = fmt.Sprintf(`{"calls": {"ChRISJob.plugin_instance": [{"stdout": %q, "stderr": %q, "shardIndex": -1, "attempt": 1}]}}`, at("none/stdout"), at("none/stderr"))
	c = testCromwell(t, srv.URL, &config{StoreBase: store, JobLogsTail: 10})
	if got, err := c.logs(context.Background(), "wf"); err != nil || got != "" {
		t.Errorf("logs not written yet = %q, %v; want empty", got, err)
	}
}

// TestCromwellLogSymlinks: a log file is read only where it really lies
// under STOREBASE.
func TestCromwellLogSymlinks(t *testing.T) {
	store, outside := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret"), []byte("root:x:0:0\n"), 0o644)
	fake := newFakeCromwell(t, store)
	c := testCromwell(t, fake.srv.URL, &config{StoreBase: store, JobLogsTail: 10})
	setup := func(jid string, stdout func(dir string)) *job {
		t.Helper()
		if _, err := c.create(context.Background(), &jobSpec{JID: jid, Image: "img", Workers: 1, Cmd: []string{"x"}, InputDir: fakeInput, OutputDir: "b"}); err != nil {
			t.Fatal(err)
		}
		fake.advance(jid, "Running")
		fake.mu.Lock()
		dir := fake.execDir(fake.byJID(jid).id)
		fake.mu.Unlock()
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "stderr"), []byte("err\n"), 0o644)
		stdout(dir)
		j, err := c.get(context.Background(), jid)
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	refused := []struct {
		name   string
		stdout func(dir string)
	}{
		{"file symlink", func(dir string) { os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, "stdout")) }},
		{"relative symlink", func(dir string) {
			rel, _ := filepath.Rel(dir, filepath.Join(outside, "secret"))
			os.Symlink(rel, filepath.Join(dir, "stdout"))
		}},
		{"directory symlink", func(dir string) {
			os.Remove(filepath.Join(dir, "stderr"))
			os.Remove(dir)
			os.Symlink(outside, dir)
			os.Rename(filepath.Join(outside, "secret"), filepath.Join(outside, "stdout"))
			t.Cleanup(func() { os.Rename(filepath.Join(outside, "stdout"), filepath.Join(outside, "secret")) })
		}},
		{"fifo", func(dir string) {
			if err := syscall.Mkfifo(filepath.Join(dir, "stdout"), 0o644); err != nil {
				t.Skip("mkfifo:", err)
			}
		}},
	}
	for i, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			j := setup(fmt.Sprintf("link-%d", i), tt.stdout)
			if j.Status != statusStarted || strings.Contains(j.Logs, "root:x") || !strings.HasPrefix(j.Logs, "[pman] logs unavailable: ") || !j.LogsIncomplete {
				t.Errorf("get = %+v; want started, logs unavailable, nothing of the file outside STOREBASE", j)
			}
		})
	}
	// A symlink that stays inside STOREBASE is fine.
	os.WriteFile(filepath.Join(store, "inside"), []byte("fine\n"), 0o644)
	j := setup("link-inside", func(dir string) { os.Symlink(filepath.Join(store, "inside"), filepath.Join(dir, "stdout")) })
	if j.Logs != "[pman] stdout:\nfine\n[pman] stderr:\nerr\n" || j.LogsIncomplete {
		t.Errorf("get with a symlink inside STOREBASE = %+v; want its content", j)
	}
}
