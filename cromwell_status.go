package main

// The status of a Cromwell job: what Cromwell's metadata says of a
// workflow and its task, and how pman maps it to a job. Kept apart from
// cromwell.go, the REST side, as wdl.go is.

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// metadata is what Cromwell knows of a workflow; nil when it does not know
// the id yet (a 404 right after a submit).
type metadata struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	End    string `json:"end"`
	// MetadataArchiveStatus and Message are all, with ID, that Cromwell
	// answers once its archiver has deleted the metadata
	// (ArchivedAndDeleted).
	MetadataArchiveStatus string `json:"metadataArchiveStatus"`
	Message               string `json:"message"`
	SubmittedFiles        struct {
		Workflow string `json:"workflow"`
	} `json:"submittedFiles"`
	Calls    map[string][]callMetadata `json:"calls"`
	Failures []failure                 `json:"failures"`
}

// archived reports whether Cromwell answered its archive notice instead of
// the metadata: no status then, and nothing else to read.
func (md *metadata) archived() bool {
	return md.Status == ""
}

type callMetadata struct {
	ExecutionStatus string `json:"executionStatus"`
	CommandLine     string `json:"commandLine"`
	JobID           string `json:"jobId"`
	ReturnCode      *int   `json:"returnCode"`
	ShardIndex      int    `json:"shardIndex"`
	Attempt         int    `json:"attempt"`
	// Strings in Cromwell 74; any keeps a number from failing the GET.
	RuntimeAttributes map[string]any `json:"runtimeAttributes"`
	Failures          []failure      `json:"failures"`
}

type failure struct {
	Message  string    `json:"message"`
	CausedBy []failure `json:"causedBy"`
}

// lastCall is the index of the call that speaks for the task: the highest
// attempt of the last shard (a retried or, were it ever scattered, a
// sharded task has several). -1 when there is none. toJob and logs both
// pick with it, so that the status and the logs are of one run.
func lastCall[T any](calls []T, key func(T) (shard, attempt int)) int {
	best := -1
	var bs, ba int
	for i, x := range calls {
		s, a := key(x)
		if best < 0 || s > bs || s == bs && a >= ba {
			best, bs, ba = i, s, a
		}
	}
	return best
}

// toJob reads a job from its workflow's metadata. md is nil when Cromwell
// has none yet, just after a submit; when Cromwell has archived it, md
// carries no status. In both cases status and end come from the query's
// w, so that an archived job stays finished. wdl is what we submitted, if
// we have it.
func (c *cromwellSched) toJob(jid string, w queryResult, md *metadata, wdl string) *job {
	j := &job{JID: jid, Timestamp: w.End}
	id := w.ID
	var calls []callMetadata
	status := w.Status
	if status == "" {
		status = "Submitted"
	}
	if md != nil && !md.archived() {
		if md.SubmittedFiles.Workflow != "" {
			wdl = md.SubmittedFiles.Workflow
		}
		calls = md.Calls[cromwellTask]
		status = md.Status
		j.Timestamp = md.End
	}
	var call *callMetadata
	if i := lastCall(calls, func(c callMetadata) (int, int) { return c.ShardIndex, c.Attempt }); i >= 0 {
		call = &calls[i]
	}
	if image, argv, err := parseWDL(wdl); err == nil {
		j.Image, j.Cmd = image, strings.Join(argv, " ")
	} else if call != nil {
		// Not our WDL (or none): take what Cromwell ran.
		j.Image, _ = call.RuntimeAttributes["docker"].(string)
		j.Cmd = call.CommandLine
	}
	mdForStatus := md
	if md != nil && md.archived() {
		mdForStatus = &metadata{}
	}
	j.Status, j.Message = workflowStatus(id, status, call, mdForStatus, wdlMemoryMiB(wdl))
	if md != nil && md.archived() {
		j.Message += fmt.Sprintf(" (Cromwell has archived its metadata, %s: the image, command and logs are no longer known)", md.MetadataArchiveStatus)
	}
	return j
}

// workflowStatus maps a Cromwell workflow status to ours, with a message
// saying what Cromwell reports.
// memMiB is the job's memory limit, 0 if unknown: a return code of 137
// (SIGKILL) is then said the way every backend says out of memory.
func workflowStatus(id, status string, call *callMetadata, md *metadata, memMiB int) (string, string) {
	wf := "Cromwell workflow " + id
	switch status {
	case "Submitted", "On Hold", "Running":
		if call == nil {
			if md == nil {
				return statusNotStarted, wf + " is submitted: waiting for Cromwell to pick it up"
			}
			if status == "On Hold" {
				return statusNotStarted, wf + " is On Hold: waiting for it to be released in Cromwell"
			}
			return statusNotStarted, wf + " is " + status + ": waiting for Cromwell to pick it up"
		}
		if status != "Running" {
			return statusNotStarted, wf + " is " + status
		}
		msg := wf + " is Running; task " + call.ExecutionStatus
		if call.JobID != "" {
			msg += " as SLURM job " + call.JobID
		}
		return statusStarted, msg
	case "Succeeded":
		return statusSuccess, wf + " Succeeded"
	case "Failed", "Aborting", "Aborted":
		msg := wf + " " + map[string]string{"Failed": "Failed", "Aborting": "is being aborted", "Aborted": "was aborted"}[status]
		var why []string
		if call != nil {
			why = failureMessages(call.Failures)
			if rc := call.ReturnCode; rc != nil && *rc == 137 {
				why = append([]string{"the task was " + outOfMemory(memMiB, false)}, why...)
			} else if len(why) == 0 && rc != nil && *rc != 0 {
				why = []string{"the task exited with return code " + strconv.Itoa(*rc)}
			}
		}
		if len(why) == 0 && md != nil {
			why = failureMessages(md.Failures)
		}
		if len(why) > 0 {
			msg += ": " + strings.Join(why, "; ")
		}
		return statusError, msg
	}
	return statusUndefined, fmt.Sprintf("%s has status %q, which pman does not know", wf, status)
}

// failureMessages are the root causes of Cromwell failures: the leaves of
// their causedBy trees ("Workflow failed" above them says nothing).
func failureMessages(fs []failure) []string {
	var out []string
	for _, f := range fs {
		if len(f.CausedBy) > 0 {
			if sub := failureMessages(f.CausedBy); len(sub) > 0 {
				out = append(out, sub...)
				continue
			}
		}
		if f.Message != "" && !slices.Contains(out, f.Message) {
			out = append(out, f.Message)
		}
	}
	return out
}
