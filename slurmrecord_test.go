package main

import (
	"os"
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
		{`{"exit_code":0,"oom_killed":false,"signal":"","start":"a","end":"2026-01-01T00:00:09Z"}`, statusSuccess, "finished"},
		{`{"exit_code":3,"oom_killed":false,"signal":"","start":"a","end":"b"}`, statusError, "exit code 3"},
		{`{"exit_code":137,"oom_killed":true,"signal":"","start":"a","end":"b"}`, statusError, outOfMemory(64, true)},
		{`{"exit_code":137,"oom_killed":false,"signal":"","start":"a","end":"b"}`, statusError, outOfMemory(64, false)},
		{`{"exit_code":143,"oom_killed":false,"signal":"TERM","start":"a","end":"b"}`, statusError, "SIGTERM"},
		{`{"exit_code":125,"oom_killed":false,"signal":"","start":"a","end":"b"}`, statusError, "could not start the container"},
	}
	for _, tt := range tests {
		t.Run(tt.msg, func(t *testing.T) {
			rec := slurmRecord{jid: "j", dir: t.TempDir()}
			if tt.end != "" {
				os.WriteFile(filepath.Join(rec.dir, "end.json"), []byte(tt.end), 0o644)
			}
			a := rec.forgotten(7, meta)
			if a.Status != tt.status || !strings.Contains(a.Message, tt.msg) {
				t.Errorf("end.json %s: %q %q; want %q with %q", tt.end, a.Status, a.Message, tt.status, tt.msg)
			}
		})
	}
}
