package main

import (
	"io"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
)

func TestSlurmForgottenAnswers(t *testing.T) {
	meta := slurmJobMeta{SlurmJobID: 7, MemoryMiB: 64}
	tests := []struct {
		end    string // end.json, "" for none
		status string
		msg    string
	}{
		{"", statusError, "recorded no end"},
		{`{"slurm_job_id":7,"exit_code":0,"oom_killed":false,"signal":"","start":"a","end":"2026-01-01T00:00:09Z"}`, statusSuccess, "finished"},
		{`{"slurm_job_id":7,"exit_code":3,"oom_killed":false,"signal":"","start":"a","end":"b"}`, statusError, "exit code 3"},
		{`{"slurm_job_id":7,"exit_code":137,"oom_killed":true,"signal":"","start":"a","end":"b"}`, statusError, outOfMemory(64, true)},
		{`{"slurm_job_id":7,"exit_code":137,"oom_killed":false,"signal":"","start":"a","end":"b"}`, statusError, outOfMemory(64, false)},
		{`{"slurm_job_id":7,"exit_code":143,"oom_killed":false,"signal":"TERM","start":"a","end":"b"}`, statusError, "SIGTERM"},
		{`{"slurm_job_id":7,"exit_code":125,"oom_killed":false,"signal":"","start":"a","end":"b"}`, statusError, "could not start the container"},
	}
	for _, tt := range tests {
		t.Run(tt.msg, func(t *testing.T) {
			rec := testRecord(t, t.TempDir(), "j")
			if tt.end != "" {
				os.WriteFile(filepath.Join(rec.runDir(), "end.json"), []byte(tt.end), 0o644)
			}
			a := rec.forgotten(7, meta)
			if a.Status != tt.status || !strings.Contains(a.Message, tt.msg) {
				t.Errorf("end.json %s: %q %q; want %q with %q", tt.end, a.Status, a.Message, tt.status, tt.msg)
			}
		})
	}
}

// testUser returns the name of the user the tests run as: a SLURM_USER
// pman can give a job's run/ to.
func testUser(t *testing.T) string {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return u.Username
}

// testRecord returns the record of jid in a fresh records directory under
// store, made as create makes it, its jobs run as the test's user.
func testRecord(t *testing.T, store, jid string) slurmRecord {
	t.Helper()
	keep, err := openSlurmRecords(store, os.Geteuid(), os.Getegid(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { keep.root.Close() })
	rec := slurmRecord{jid: jid, dir: filepath.Join(slurmRecordsDir(store), jid), keep: keep}
	if err := rec.make(); err != nil {
		t.Fatal(err)
	}
	return rec
}
