package main

// How pman reads a Cromwell job's status: the recorded metadata, the status
// mapping, the call that speaks for the task, and archived metadata.

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

func TestToJobRecorded(t *testing.T) {
	tests := []struct {
		file, status, timestamp, image string
		msgHas                         []string
	}{
		{"metadata-notstarted.json", statusNotStarted, "", "ghcr.io/fnndsc/pl-salute-the-sun:latest", []string{"Submitted", "waiting"}},
		{"metadata-queued.json", statusStarted, "", "internal.gitlab:5678/fnndsc/pl-fruit:1.2.3", []string{"QueuedInCromwell"}},
		{"metadata-running.json", statusStarted, "", "docker.io/fnndsc/pl-office-convert:0.0.1", []string{"Running", "SLURM job 1866268"}},
		{"metadata-failed.json", statusError, "2022-01-24T00:19:36.143Z", "ghcr.io/fnndsc/pl-office-convert:0.0.2", []string{"Failed", "exited with return code 1"}},
		{"metadata-done.json", statusSuccess, "2022-01-24T06:16:53.374Z", "ghcr.io/fnndsc/pl-office-convert:0.0.2", []string{"Succeeded"}},
	}
	c := &cromwellSched{}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			md := cwMetadata(t, tt.file)
			j := c.toJob("jid", queryResult{ID: md.ID, Status: "Submitted"}, md, "")
			if j.Status != tt.status || j.Timestamp != tt.timestamp || j.Image != tt.image || j.JID != "jid" || j.Cmd == "" {
				t.Errorf("toJob(%s) = %+v; want status %s, timestamp %q, image %q, a command", tt.file, j, tt.status, tt.timestamp, tt.image)
			}
			for _, s := range append(tt.msgHas, md.ID) {
				if !strings.Contains(j.Message, s) {
					t.Errorf("toJob(%s).Message = %q; want it to mention %q", tt.file, j.Message, s)
				}
			}
		})
	}
}

func TestWorkflowStatus(t *testing.T) {
	running := &callMetadata{ExecutionStatus: "Running", JobID: "42"}
	rc, rc2 := 137, 2
	killed := &callMetadata{ExecutionStatus: "Failed", ReturnCode: &rc}
	exited := &callMetadata{ExecutionStatus: "Failed", ReturnCode: &rc2}
	tests := []struct {
		status string
		call   *callMetadata
		md     *metadata
		want   string
		msgHas string
	}{
		{"Submitted", nil, nil, statusNotStarted, "waiting for Cromwell to pick it up"},
		{"Submitted", nil, &metadata{}, statusNotStarted, "waiting"},
		{"On Hold", nil, &metadata{}, statusNotStarted, "On Hold"},
		{"Running", nil, &metadata{}, statusNotStarted, "waiting"},
		{"Running", running, &metadata{}, statusStarted, "SLURM job 42"},
		{"Succeeded", running, &metadata{}, statusSuccess, "Succeeded"},
		{"Failed", killed, &metadata{}, statusError, outOfMemory(4000, false)},
		{"Failed", exited, &metadata{}, statusError, "return code 2"},
		{"Failed", nil, &metadata{Failures: []failure{{Message: "Workflow input processing failed", CausedBy: []failure{{Message: "bad runtime attribute"}}}}}, statusError, "bad runtime attribute"},
		{"Aborting", running, &metadata{}, statusError, "being aborted"},
		{"Aborted", nil, &metadata{}, statusError, "aborted"},
		{"Exploded", nil, &metadata{}, statusUndefined, "Exploded"},
	}
	for _, tt := range tests {
		t.Run(tt.status+" "+tt.msgHas, func(t *testing.T) {
			got, msg := workflowStatus("wf-1", tt.status, tt.call, tt.md, 4000)
			if got != tt.want || !strings.Contains(msg, tt.msgHas) {
				t.Errorf("workflowStatus(%q, %+v) = %q, %q; want %q with %q", tt.status, tt.call, got, msg, tt.want, tt.msgHas)
			}
		})
	}
}

// TestToJobForeignWDL: a workflow whose WDL is not one we can read back
// (another tool's) still shows what Cromwell ran.
func TestToJobForeignWDL(t *testing.T) {
	md := cwMetadata(t, "metadata-running.json")
	md.SubmittedFiles.Workflow = "version 1.0\nworkflow W {}\n"
	j := (&cromwellSched{}).toJob("jid", queryResult{ID: md.ID, Status: "Running"}, md, "")
	if j.Image != "docker.io/fnndsc/pl-office-convert:0.0.1" || j.Cmd != "office_convert /share/incoming /share/outgoing" || j.Status != statusStarted {
		t.Errorf("toJob(foreign WDL) = %+v; want image and command from the call's runtimeAttributes and commandLine", j)
	}
}

// TestToJobWithoutMetadata: with no metadata (just submitted, or archived
// by Cromwell) the query's status decides, so a finished job stays finished.
func TestToJobWithoutMetadata(t *testing.T) {
	tests := []struct {
		w               queryResult
		status, message string
	}{
		{queryResult{ID: "wf", Status: "Submitted"}, statusNotStarted, "waiting"},
		{queryResult{ID: "wf"}, statusNotStarted, "waiting"},
		{queryResult{ID: "wf", Status: "Succeeded", End: "2026-01-01T00:00:00Z"}, statusSuccess, "Succeeded"},
		{queryResult{ID: "wf", Status: "Failed", End: "2026-01-01T00:00:00Z"}, statusError, "Failed"},
	}
	for _, tt := range tests {
		t.Run(tt.w.Status, func(t *testing.T) {
			j := (&cromwellSched{}).toJob("jid", tt.w, nil, "")
			if j.Status != tt.status || !strings.Contains(j.Message, tt.message) || j.Timestamp != tt.w.End {
				t.Errorf("toJob(%+v, no metadata) = %+v; want %s, message with %q, timestamp %q", tt.w, j, tt.status, tt.message, tt.w.End)
			}
		})
	}
}

// TestToJobLastCall: the call that speaks for the task is the highest
// attempt of the last shard, wherever Cromwell lists it.
func TestToJobLastCall(t *testing.T) {
	rc := 1
	calls := []callMetadata{
		{ShardIndex: 0, Attempt: 2, ExecutionStatus: "Running", JobID: "wrong-shard"},
		{ShardIndex: 1, Attempt: 2, ExecutionStatus: "Running", JobID: "77"},
		{ShardIndex: 1, Attempt: 1, ExecutionStatus: "Failed", ReturnCode: &rc, JobID: "old-attempt"},
	}
	for _, order := range [][]int{{0, 1, 2}, {2, 1, 0}, {1, 0, 2}} {
		t.Run(fmt.Sprint(order), func(t *testing.T) {
			md := cwMetadata(t, "metadata-running.json")
			md.Calls[cromwellTask] = nil
			for _, i := range order {
				md.Calls[cromwellTask] = append(md.Calls[cromwellTask], calls[i])
			}
			j := (&cromwellSched{}).toJob("jid", queryResult{ID: md.ID, Status: "Running"}, md, "")
			if j.Status != statusStarted || !strings.HasSuffix(j.Message, "SLURM job 77") {
				t.Errorf("toJob(calls in order %v) = %+v; want the running attempt 2 of shard 1, SLURM job 77", order, j)
			}
		})
	}
}

// TestCromwellArchivedMetadata: once Cromwell has archived a workflow's
// metadata, GET answers the query's status and end, says why the rest is
// gone, and marks the logs unreadable.
func TestCromwellArchivedMetadata(t *testing.T) {
	fake := newFakeCromwell(t, t.TempDir())
	c := testCromwell(t, fake.srv.URL, &config{StoreBase: fake.store, JobLogsTail: 10})
	for _, st := range []struct{ cromwell, want string }{{"Succeeded", statusSuccess}, {"Failed", statusError}, {"Aborted", statusError}} {
		t.Run(st.cromwell, func(t *testing.T) {
			jid := "archived-" + st.cromwell
			if _, err := c.create(context.Background(), &jobSpec{JID: jid, Image: "img", Workers: 1, Cmd: []string{"x"}, InputDir: fakeInput, OutputDir: "b"}); err != nil {
				t.Fatal(err)
			}
			fake.advance(jid, st.cromwell)
			fake.mu.Lock()
			fake.byJID(jid).archived = true
			fake.mu.Unlock()
			j, err := c.get(context.Background(), jid)
			if err != nil {
				t.Fatal(err)
			}
			// query-found.json's end, which the fake answers for every workflow.
			if j.Status != st.want || j.Timestamp != "2022-01-23T22:27:58.740Z" || !strings.Contains(strings.ToLower(j.Message), strings.ToLower(st.cromwell)) || !strings.Contains(j.Message, "ArchivedAndDeleted") ||
				!strings.HasPrefix(j.Logs, "[pman] logs unavailable: ") || !strings.Contains(j.Logs, "archived") || !j.LogsIncomplete {
				t.Errorf("get(%s, archived) = %+v; want %s at the query's end, saying it is archived, logs unavailable", st.cromwell, j, st.want)
			}
		})
	}
}
