package main

// The shapes of a SLURM job in each slurmrestd API version: the submission
// pman sends, the job it reads back, and how SLURM's job states map onto
// pman's statuses.

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// slurmJobPath is the PATH of the batch script (slurmrestd requires an
// environment; the job's own env goes to the container, not here).
const slurmJobPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// noVal is SLURM's "integer with flags" of API 0.0.39 and later.
type noVal struct {
	Set      bool `json:"set"`
	Infinite bool `json:"infinite"`
	Number   int  `json:"number"`
}

// submission is the body of POST /slurm/v<v>/job/submit for job j.
//
// Resources: number_of_workers tasks of ceil(cpu_limit/1000) CPUs each,
// all on one node, because the script runs one container that gets them
// all; memory_limit is the job's memory on that node (SLURM counts in MiB).
// requeue is off: pman's job must not silently run twice.
func (s *slurmSched) submission(v string, j *jobSpec, script string, rec slurmRecord) any {
	cpus := max(1, ceilDiv(j.CPULimit, 1000))
	job := map[string]any{
		"name":                      j.JID,
		"comment":                   slurmMark(j.JID),
		"current_working_directory": rec.runDir(),
		// SLURM expands %-patterns in these paths; %% is a literal %.
		"standard_output": strings.ReplaceAll(rec.logPath(), "%", "%%"),
		"tasks":           j.Workers,
		"requeue":         false,
	}
	if !s.cfg.IgnoreLimits {
		job["cpus_per_task"] = cpus
	}
	if s.cfg.SlurmPartition != "" {
		job["partition"] = s.cfg.SlurmPartition
	}
	if s.cfg.Slurm.Account != "" {
		job["account"] = s.cfg.Slurm.Account
	}
	mem, limit := j.MemoryLimit, s.cfg.TimelimitMinutes
	if s.cfg.IgnoreLimits {
		mem = 0
	}
	if v == "0.0.38" {
		job["environment"] = map[string]string{"PATH": slurmJobPath}
		job["nodes"] = []int{1, 1}
		if mem > 0 {
			job["memory_per_node"] = mem
		}
		if limit > 0 {
			job["time_limit"] = limit
		}
		if j.GPULimit > 0 {
			job["gres"] = "gpu:" + strconv.Itoa(j.GPULimit)
		}
	} else {
		job["environment"] = []string{"PATH=" + slurmJobPath}
		job["minimum_nodes"] = 1
		job["maximum_nodes"] = 1
		if mem > 0 {
			job["memory_per_node"] = noVal{Set: true, Number: mem}
		}
		if limit > 0 {
			job["time_limit"] = noVal{Set: true, Number: limit}
		}
		if j.GPULimit > 0 {
			job["tres_per_node"] = "gres/gpu:" + strconv.Itoa(j.GPULimit)
		}
	}
	return map[string]any{"script": script, "job": job}
}

// slurmJobInfo is a job as slurmrestd answers it, in any version.
type slurmJobInfo struct {
	JobID            int        `json:"job_id"`
	Name             string     `json:"name"`
	JobState         slurmState `json:"job_state"`
	StateReason      string     `json:"state_reason"`
	StateDescription string     `json:"state_description"`
	ExitCode         slurmExit  `json:"exit_code"`
	SubmitTime       flexNum    `json:"submit_time"`
	StartTime        flexNum    `json:"start_time"`
	EndTime          flexNum    `json:"end_time"`
	TimeLimit        flexNum    `json:"time_limit"`
	Partition        string     `json:"partition"`
	Comment          slurmText  `json:"comment"`
}

func (i *slurmJobInfo) state() string { return i.JobState.base() }

// slurmMark returns the comment pman gives the SLURM job of jid: jidLabel
// as a label pair. SLURM jobs have no labels, and their names are neither
// unique nor pman's to give (anyone may submit a job named like a jid).
func slurmMark(jid string) string { return jidLabel + "=" + jid }

// labels returns the job's labels as slurmMark writes them into its
// comment: one pair, or none.
func (i *slurmJobInfo) labels() map[string]string {
	k, v, ok := strings.Cut(string(i.Comment), "=")
	if !ok {
		return nil
	}
	return map[string]string{k: v}
}

// own reports whether the job is pman's job jid (policy.go): named jid and
// marked with it. pman 6 had no SLURM backend: nothing else is.
func (i *slurmJobInfo) own(jid string) bool {
	return i.Name == jid && ownJob(i.labels(), jid, nil)
}

// slurmText is a string field, which a later API version may hand over as
// an object of parts ({"job": ...}, as accounting does for comments): the
// job's own part is taken then.
type slurmText string

func (t *slurmText) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		*t = slurmText(s)
		return nil
	}
	var parts struct {
		Job string `json:"job"`
	}
	if err := json.Unmarshal(b, &parts); err != nil {
		return fmt.Errorf("neither a string nor {job}: %s", b)
	}
	*t = slurmText(parts.Job)
	return nil
}

// flexNum is a number as 0.0.38 writes it (42) or as later versions do
// ({"set": true, "infinite": false, "number": 42}); unset is 0.
type flexNum int64

func (n *flexNum) UnmarshalJSON(b []byte) error {
	var i int64
	if json.Unmarshal(b, &i) == nil {
		*n = flexNum(i)
		return nil
	}
	var nv struct {
		Set    bool  `json:"set"`
		Number int64 `json:"number"`
	}
	if err := json.Unmarshal(b, &nv); err != nil {
		return fmt.Errorf("neither a number nor {set, number}: %s", b)
	}
	*n = 0
	if nv.Set {
		*n = flexNum(nv.Number)
	}
	return nil
}

// time returns a Unix time as the API's timestamps, or "" when unset.
func (n flexNum) time() string {
	if n <= 0 {
		return ""
	}
	return time.Unix(int64(n), 0).UTC().Format(time.RFC3339Nano)
}

// slurmState is job_state: a string up to 0.0.39, a list of a base state
// and flags from 0.0.40 on.
type slurmState []string

func (s *slurmState) UnmarshalJSON(b []byte) error {
	var one string
	if json.Unmarshal(b, &one) == nil {
		*s = slurmState{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("job_state is neither a string nor a list: %s", b)
	}
	*s = many
	return nil
}

// slurmBaseStates are the states a job is in; every other word of a
// job_state list is a flag on one of these.
var slurmBaseStates = []string{"PENDING", "RUNNING", "SUSPENDED", "COMPLETED", "CANCELLED", "FAILED",
	"TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE", "OUT_OF_MEMORY"}

// base returns the job's base state. 0.0.38 names some flags instead
// (COMPLETING, CONFIGURING), which are kept as they are.
func (s slurmState) base() string {
	for _, w := range s {
		if slices.Contains(slurmBaseStates, w) {
			return w
		}
	}
	if len(s) > 0 {
		return s[0]
	}
	return ""
}

// slurmFinal reports whether a state is a job's end.
func slurmFinal(state string) bool {
	switch state {
	case "PENDING", "RUNNING", "SUSPENDED", "COMPLETING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD",
		"REQUEUE_FED", "RESV_DEL_HOLD", "POWER_UP_NODE", "STAGE_OUT", "SIGNALING", "RESIZING", "STOPPED", "":
		return false
	}
	return true
}

// slurmExit is exit_code: a wait(2) status in 0.0.38 (and early 0.0.39,
// as {set, number}), or {status, return_code, signal} later.
type slurmExit struct {
	Code   int
	Signal int
	Set    bool
}

func (e *slurmExit) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var obj map[string]json.RawMessage
	_ = json.Unmarshal(b, &obj)
	_, verbose := obj["return_code"]
	var raw flexNum
	if !verbose && raw.UnmarshalJSON(b) == nil {
		// A wait status: the low 7 bits are the signal, the next 8 the code.
		*e = slurmExit{Code: int(raw>>8) & 0xff, Signal: int(raw) & 0x7f, Set: true}
		return nil
	}
	var v struct {
		ReturnCode flexNum         `json:"return_code"`
		Signal     json.RawMessage `json:"signal"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("exit_code: %v", err)
	}
	*e = slurmExit{Code: int(v.ReturnCode), Set: true}
	// The signal's number is "id" from 0.0.40 on, "signal_id" in 0.0.39.
	var sig struct {
		ID       flexNum `json:"id"`
		SignalID flexNum `json:"signal_id"`
	}
	if len(v.Signal) > 0 && json.Unmarshal(v.Signal, &sig) == nil {
		e.Signal = int(max(sig.ID, sig.SignalID))
	}
	return nil
}

// slurmAnswerRecord is pman's answer about a job: status, message and
// timestamp. A finished job's is kept in its record and answered again.
type slurmAnswerRecord struct {
	Status    string `json:"status"`
	Message   string `json:"message"`
	Timestamp string `json:"timestamp"`
}

// slurmEnd is what the batch script writes when the container ends.
type slurmEnd struct {
	SlurmJobID int    `json:"slurm_job_id"` // $SLURM_JOB_ID: pman believes only its own job's report
	ExitCode   int    `json:"exit_code"`
	OOMKilled  bool   `json:"oom_killed"`
	Signal     string `json:"signal"` // the signal that stopped the script, if one did
	Start      string `json:"start"`
	End        string `json:"end"`
}

// jobStateStatus maps a job SLURM knows onto pman's status. end is the
// script's own record, when it wrote one: it alone knows that the runtime
// killed the container for its memory.
func jobStateStatus(info *slurmJobInfo, meta slurmJobMeta, end *slurmEnd) slurmAnswerRecord {
	state := info.state()
	why := ""
	if r := info.StateReason; r != "" && r != "None" {
		why = r + detail(info.StateDescription)
	}
	a := slurmAnswerRecord{Timestamp: info.EndTime.time()}
	switch state {
	case "PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "POWER_UP_NODE":
		a.Status, a.Message, a.Timestamp = statusNotStarted, "pending", info.SubmitTime.time()
		if why != "" {
			a.Message += ": " + why
		}
	case "RUNNING", "COMPLETING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "RESIZING", "STOPPED":
		a.Status, a.Message, a.Timestamp = statusStarted, strings.ToLower(state), info.StartTime.time()
	case "COMPLETED":
		a.Status, a.Message = statusSuccess, "finished"
	case "FAILED":
		a.Status, a.Message = statusError, exitMessage(info.ExitCode.Code, info.ExitCode.Signal, meta, end)
		if why != "" && info.StateReason != "NonZeroExitCode" {
			a.Message += " (" + why + ")"
		}
	case "OUT_OF_MEMORY":
		a.Status, a.Message = statusError, outOfMemory(meta.MemoryMiB, true)
	case "TIMEOUT":
		limit := int(info.TimeLimit)
		if limit == 0 {
			limit = meta.TimelimitMinutes
		}
		a.Status, a.Message = statusError, fmt.Sprintf("stopped by SLURM: it exceeded its time limit of %d minutes", limit)
	case "CANCELLED":
		a.Status, a.Message = statusError, "cancelled"
		if why != "" {
			a.Message += ": " + why
		}
	case "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE":
		a.Status, a.Message = statusError, "ended by SLURM: "+state
		if why != "" {
			a.Message += ": " + why
		}
	default:
		a.Status, a.Message = statusUndefined, "SLURM job state "+strings.Join(info.JobState, ",")
		if slurmFinal(state) {
			// An end this table does not name (SPECIAL_EXIT, REVOKED): it
			// still ended, and not as asked.
			a.Status, a.Message = statusError, "ended by SLURM: "+strings.Join(info.JobState, ",")
		}
	}
	return a
}

// exitMessage returns how a job's container ended with a non-zero code.
func exitMessage(code, signal int, meta slurmJobMeta, end *slurmEnd) string {
	switch {
	case end != nil && end.OOMKilled:
		return outOfMemory(meta.MemoryMiB, true)
	case code == 137 && meta.MemoryMiB > 0:
		return outOfMemory(meta.MemoryMiB, false)
	case signal != 0:
		return fmt.Sprintf("killed by signal %d", signal)
	case code == 125:
		return "the container runtime could not start the container (exit code 125): see the logs"
	case code == 126 || code == 127:
		return fmt.Sprintf("the command could not be run (exit code %d): see the logs", code)
	}
	return fmt.Sprintf("failed with exit code %d", code)
}
