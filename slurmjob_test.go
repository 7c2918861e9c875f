package main

// The state mapping of slurmjob.go, on recorded slurmrestd answers.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// slurmRecorded reads testdata/slurm/v<v>/<name>. v0.0.38 holds answers of
// the real SLURM 22.05 of .ci/slurm (written-* files excepted); the later
// versions hold answers written from their OpenAPI schemas (written.py).
func slurmRecorded(t testing.TB, v, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "slurm", "v"+v, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func slurmRecordedJob(t *testing.T, v, name string) *slurmJobInfo {
	t.Helper()
	var ans struct {
		Jobs []slurmJobInfo `json:"jobs"`
	}
	if err := json.Unmarshal(slurmRecorded(t, v, name), &ans); err != nil {
		t.Fatalf("%s/%s: %v", v, name, err)
	}
	if len(ans.Jobs) != 1 {
		t.Fatalf("%s/%s: %d jobs; want 1", v, name, len(ans.Jobs))
	}
	return &ans.Jobs[0]
}

func TestSlurmJobStatusRecorded(t *testing.T) {
	type row struct {
		file, status string
		msg          []string
	}
	common := []row{
		{"job-running.json", statusStarted, []string{"running"}},
		{"job-completed.json", statusSuccess, []string{"finished"}},
		{"job-failed.json", statusError, []string{"exit code 3"}},
		{"job-cancelled.json", statusError, []string{"cancelled"}},
	}
	tests := map[string][]row{
		"0.0.38": append(slices.Clone(common),
			row{"job-signal.json", statusError, []string{"signal 9", "JobLaunchFailure"}},
			row{"job-pending-held.json", statusNotStarted, []string{"pending", "JobHeldUser"}},
			row{"job-timeout.json", statusError, []string{"time limit of 1 minutes"}},
			row{"written-job-oom.json", statusError, []string{outOfMemory(512, true)}},
			row{"written-job-nodefail.json", statusError, []string{"NODE_FAIL", "NodeDown", "vm not responding"}},
			row{"written-job-completing.json", statusStarted, []string{"completing"}},
			row{"written-job-pending-partitionconfig.json", statusNotStarted, []string{"PartitionConfig"}},
		),
	}
	for _, v := range []string{"0.0.39", "0.0.40", "0.0.41"} {
		completing := row{"job-completing.json", statusSuccess, []string{"finished"}} // ["COMPLETED", "COMPLETING"]
		if v == "0.0.39" {
			completing = row{"job-completing.json", statusStarted, []string{"completing"}}
		}
		tests[v] = append(slices.Clone(common), completing,
			row{"job-oom.json", statusError, []string{outOfMemory(512, true)}},
			row{"job-timeout.json", statusError, []string{"time limit of 60 minutes"}},
			row{"job-nodefail.json", statusError, []string{"NODE_FAIL", "n01 not responding"}},
			row{"job-pending.json", statusNotStarted, []string{"pending: Resources"}},
			row{"job-pending-partitionconfig.json", statusNotStarted, []string{"PartitionConfig"}},
		)
	}
	for v, rows := range tests {
		for _, tt := range rows {
			t.Run(v+"/"+tt.file, func(t *testing.T) {
				info := slurmRecordedJob(t, v, tt.file)
				a := jobStateStatus(info, slurmJobMeta{MemoryMiB: 512, TimelimitMinutes: 60}, nil)
				if a.Status != tt.status {
					t.Errorf("status = %q (%q); want %q", a.Status, a.Message, tt.status)
				}
				for _, m := range tt.msg {
					if !strings.Contains(a.Message, m) {
						t.Errorf("message = %q; want it to contain %q", a.Message, m)
					}
				}
				if a.Status != statusNotStarted && a.Timestamp == "" {
					t.Errorf("timestamp empty for a %s job", a.Status)
				}
			})
		}
	}
}

// TestSlurmUnnamedEndState: an end state the mapping does not name still
// ends the job, in error.
func TestSlurmUnnamedEndState(t *testing.T) {
	for state, want := range map[string]string{"SPECIAL_EXIT": statusError, "REVOKED": statusError} {
		t.Run(state, func(t *testing.T) {
			info := slurmRecordedJob(t, "0.0.38", "job-running.json")
			info.JobState = []string{state}
			if a := jobStateStatus(info, slurmJobMeta{}, nil); a.Status != want || !strings.Contains(a.Message, state) {
				t.Errorf("state %s: %q (%q); want %s naming it", state, a.Status, a.Message, want)
			}
		})
	}
}

func TestSlurmExitDecoding(t *testing.T) {
	tests := []struct {
		in         string
		code, sig  int
		wantFailed bool
	}{
		{`768`, 3, 0, false},
		{`15`, 0, 15, false},
		{`{"set": true, "infinite": false, "number": 35072}`, 137, 0, false},
		{`{"status": ["SIGNALED"], "return_code": {"set": true, "number": 0}, "signal": {"id": {"set": true, "number": 9}, "name": "KILL"}}`, 0, 9, false},
		{`{"status": "SIGNALED", "return_code": 0, "signal": {"signal_id": 9, "name": "KILL"}}`, 0, 9, false},
		{`{"status": ["ERROR"], "return_code": {"set": true, "number": 2}, "signal": {"id": {"set": false, "number": 0}}}`, 2, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var e slurmExit
			if err := json.Unmarshal([]byte(tt.in), &e); err != nil {
				t.Fatalf("exit_code %s: %v", tt.in, err)
			}
			if e.Code != tt.code || e.Signal != tt.sig {
				t.Errorf("exit_code %s = code %d, signal %d; want %d, %d", tt.in, e.Code, e.Signal, tt.code, tt.sig)
			}
		})
	}
}
