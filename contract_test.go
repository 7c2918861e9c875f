package main

// The contract suite: every behaviour of docs/API.md that all backends
// share, written once as a table and run against each backend that can show
// it (TestContract/<backend>/<behaviour>). A backend's own test file says
// only how its scheduler makes a job do something (contract_*_test.go);
// what the answers must be is said here, once.

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// act is what a contract job does.
type act int

const (
	actSucceed act = iota // logs contractEnv.logLine, copies its input file to its output, exits 0
	actFail               // logs contractEnv.logLine, exits 1
	actOOM                // goes over its memory limit and is killed for it
	actSleep              // runs until it is removed
	actHome               // logs "HOME=" and its $HOME, exits 0
)

// contractInput is the file every job's input directory holds; an actSucceed
// job copies it to its output directory, where a backend whose jobs really
// run shows it.
const contractInput = "input.txt"

// contractBackend is one backend under the contract suite.
type contractBackend struct {
	name string
	// start starts pman on the backend, with extra on top of the backend's
	// own environment. It skips the test (fails it under CI) when the
	// backend's scheduler is missing.
	start func(t *testing.T, extra map[string]string) *contractEnv
	// startLogsUnreadable starts pman where the status of a job can be read
	// but not its logs (an engine that fails its log calls, a Role without
	// pods/log...). Every backend has one.
	startLogsUnreadable func(t *testing.T) *contractEnv
}

// contractEnv is one running pman on a backend, and what the suite needs to
// know of that backend to judge its answers.
type contractEnv struct {
	url string
	// newJID returns a jid no other test uses; what the scheduler holds of
	// it is removed when the test ends.
	newJID func(t *testing.T, name string) string
	// body returns a POST body of pfcon 2023 and later (input_dir and
	// output_dir) for a job that does a, its input directory made and
	// holding contractInput.
	body func(t *testing.T, jid string, a act) map[string]any
	// run does the test's part of a submitted job: carries it out on a
	// scheduler that is a test's fake (Cromwell's), or breaks what a row
	// needs broken once the job exists; nil when there is nothing to do.
	run func(t *testing.T, jid string, a act)
	// store is STOREBASE as this process sees it, where job directories are
	// made and outputs read (every harness runs pman where it sees the store,
	// as pfcon's sidecar does).
	store string
	// runs is true when jobs really run their command (so their output
	// files and $HOME can be read back).
	runs bool
	// logLine is a line every actSucceed and actFail job logs.
	logLine string
	// inspect returns the labels and environment the scheduler holds for
	// the job's object.
	inspect func(t *testing.T, jid string) (labels map[string]string, env []string)
	// impossibleJID is a jid the backend's scheduler can never hold (on top
	// of the ones no backend can: contractImpossible).
	impossibleJID string
	// exists reports whether the scheduler still holds anything of jid.
	exists func(t *testing.T, jid string) bool
}

// contractImpossible are jids no job can have on any backend: they cannot
// name a path segment.
var contractImpossible = []string{"a:b", strings.Repeat("j", 254)}

// contractBackends is every backend the suite runs against.
var contractBackends = []contractBackend{
	dockerContract("docker"),
	dockerContract("podman"),
	swarmContract(),
	kubeContract(),
	kubeRealContract(),
	cromwellContract(),
	slurmContract(),
}

// contractRow is one behaviour: what all backends must show.
type contractRow struct {
	name string
	// env is the configuration the behaviour needs; nil runs on the
	// backend's shared server.
	env map[string]string
	// logsUnreadable runs the row on startLogsUnreadable's server.
	logsUnreadable bool
	run            func(t *testing.T, e *contractEnv)
}

var contractRows = []contractRow{
	{name: "job that succeeds", run: contractSucceeds},
	{name: "job that fails", run: contractFails},
	{name: "duplicate jid is 409", run: contractDuplicate},
	{name: "DELETE then 404", run: contractDelete},
	{name: "unknown and impossible jid are 404", run: contractUnknown},
	{name: "missing input directory", run: contractMissingInput},
	{name: "out of memory", run: contractOOM},
	{name: "logs unreadable", logsUnreadable: true, run: contractLogsUnreadable},
	{name: "REMOVE_JOBS=no", env: map[string]string{"REMOVE_JOBS": "no"}, run: contractKeep},
	{name: "JOB_LABELS", env: map[string]string{"JOB_LABELS": "org.chrisproject.test=contract,team=fnndsc"}, run: contractLabels},
	{name: "ENABLE_HOME_WORKAROUND", env: map[string]string{"ENABLE_HOME_WORKAROUND": "yes"}, run: contractHome},
	{name: "pfcon 2022 request", run: contractPfcon2022},
}

func TestContract(t *testing.T) {
	for _, b := range contractBackends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			shared := b.start(t, nil)
			for _, row := range contractRows {
				t.Run(row.name, func(t *testing.T) {
					t.Parallel()
					e := shared
					switch {
					case row.logsUnreadable:
						e = b.startLogsUnreadable(t)
					case row.env != nil:
						e = b.start(t, row.env)
					}
					row.run(t, e)
				})
			}
		})
	}
}

// ---- what a row does with a backend -------------------------------------------

// submit POSTs body and checks the 201 answer: the job object, its jid and
// image, a status that is not undefined, no logs.
func (e *contractEnv) submit(t *testing.T, body map[string]any) map[string]any {
	t.Helper()
	code, m := call(t, "POST", e.url+"/api/v1/", body)
	if code != http.StatusCreated {
		t.Fatalf("POST %v = %d %v; want 201", body["jid"], code, m)
	}
	checkJobShape(t, "POST", m)
	if m["jid"] != body["jid"] || m["image"] != body["image"] || m["logs"] != "" {
		t.Errorf("POST answer = %v; want jid %v, image %v, no logs", m, body["jid"], body["image"])
	}
	// A job may have ended by the time POST answers: a container is
	// started, then inspected, within the request.
	if _, known := statusOrder[m["status"]]; !known {
		t.Errorf("POST status = %v; want notstarted, started or finished*", m["status"])
	}
	return m
}

// start submits a job that does a, and lets a fake scheduler carry it out.
func (e *contractEnv) start(t *testing.T, name string, a act) (jid string, body map[string]any) {
	t.Helper()
	jid = e.newJID(t, name)
	body = e.body(t, jid, a)
	e.submit(t, body)
	if e.run != nil {
		e.run(t, jid, a)
	}
	return jid, body
}

// statusOrder ranks the statuses a job passes through; a job never goes
// back.
var statusOrder = map[any]int{statusNotStarted: 0, statusStarted: 1, statusSuccess: 2, statusError: 2}

// finish polls GET until the job has ended, checking every answer's shape
// and that the status never goes back, and returns the last answer.
func (e *contractEnv) finish(t *testing.T, jid string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	last := statusNotStarted
	for {
		code, m := call(t, "GET", e.url+"/api/v1/"+jid+"/", nil)
		if code != http.StatusOK {
			t.Fatalf("GET %s = %d %v; want 200", jid, code, m)
		}
		checkJobShape(t, "GET", m)
		rank, known := statusOrder[m["status"]]
		if !known {
			t.Fatalf("GET %s: status %v (%v); want notstarted, started or finished*", jid, m["status"], m["message"])
		}
		if rank < statusOrder[last] {
			t.Errorf("GET %s: status went from %s back to %v", jid, last, m["status"])
		}
		last = fmt.Sprint(m["status"])
		if rank == 2 {
			if _, err := time.Parse(time.RFC3339Nano, fmt.Sprint(m["timestamp"])); err != nil {
				t.Errorf("GET %s: finished with timestamp %q; want the end's time in RFC 3339", jid, m["timestamp"])
			}
			// Once finished, always the same answer.
			if _, again := call(t, "GET", e.url+"/api/v1/"+jid+"/", nil); again["status"] != m["status"] || again["message"] != m["message"] {
				t.Errorf("GET %s after %v: %v; want the same answer", jid, m, again)
			}
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: still %v (%v) after 3 min", jid, m["status"], m["message"])
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// until polls GET until the job's status is want.
func (e *contractEnv) until(t *testing.T, jid, want string) map[string]any {
	t.Helper()
	return untilStatus(t, e.url, jid, 3*time.Minute, want)
}

func (e *contractEnv) do(t *testing.T, method, jid string, body any) (int, map[string]any) {
	t.Helper()
	return call(t, method, e.url+"/api/v1/"+jid+"/", body)
}

// mkdir makes a directory in STOREBASE, writable by any user, with files.
func (e *contractEnv) mkdir(t *testing.T, rel string, files map[string]string) {
	t.Helper()
	p := filepath.Join(e.store, rel)
	if err := os.MkdirAll(p, 0o777); err != nil {
		t.Fatal(err)
	}
	for q := p; q != e.store && q != "/"; q = filepath.Dir(q) {
		os.Chmod(q, 0o777)
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(p, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// contractBody returns jobRequest(jid) with the job's directories made in
// STOREBASE, the input holding contractInput. A backend's body sets image and
// entrypoint (and the limits its act needs).
func (e *contractEnv) contractBody(t *testing.T, jid string) map[string]any {
	t.Helper()
	e.mkdir(t, jid+"/in", map[string]string{contractInput: "contract input\n"})
	e.mkdir(t, jid+"/out", nil) // as pfcon makes it
	return jobRequest(jid)
}

// contractLogLine is the line every actSucceed and actFail job logs on a
// backend whose jobs run the busybox test image.
const contractLogLine = "the contract job ran"

// shellScripts are the acts as sh -c scripts of the busybox test image. The
// request's args are ["--verbose"], so $1 is --verbose, $2 /share/incoming
// and $3 /share/outgoing.
var shellScripts = map[act]string{
	actSucceed: `echo "` + contractLogLine + `"; cp "$2/` + contractInput + `" "$3/"`,
	actFail:    `echo "` + contractLogLine + `" >&2; exit 1`, // stderr: the logs hold both streams
	actOOM:     "dd if=/dev/zero of=/dev/null bs=64M count=1",
	actSleep:   "sleep 300",
	actHome:    `echo "HOME=$HOME"`,
}

// shellBody returns contractBody for a job of image (the busybox test
// image) that does a with sh -c.
func (e *contractEnv) shellBody(t *testing.T, jid, image string, a act) map[string]any {
	t.Helper()
	body := e.contractBody(t, jid)
	body["image"] = image
	body["entrypoint"] = []string{"sh", "-c", shellScripts[a], "sh"}
	if a == actOOM {
		body["memory_limit"] = 8 // MiB; dd's 64 MiB buffer does not fit
	}
	return body
}

// jobRequest returns the POST body every test starts from, as pfcon of 2023
// and later sends it: a ds job with one argument, an env entry, and its
// directories under <jid>/ in STOREBASE. A test sets image and entrypoint
// (and whatever else it is about); it is the one body builder of the tests.
func jobRequest(jid string) map[string]any {
	return map[string]any{
		"jid": jid, "args": []string{"--verbose"}, "auid": "chris", "number_of_workers": 1,
		"cpu_limit": 1000, "memory_limit": 64, "gpu_limit": 0, "type": "ds",
		"env":       []string{"GREETING=hello"},
		"input_dir": jid + "/in", "output_dir": jid + "/out",
	}
}

// ---- the rows ------------------------------------------------------------------

func contractSucceeds(t *testing.T, e *contractEnv) {
	jid, body := e.start(t, "ok", actSucceed)
	m := e.finish(t, jid)
	if m["status"] != statusSuccess || m["jid"] != jid || m["image"] != body["image"] {
		t.Errorf("GET = %v; want finishedSuccessfully, jid %s, image %v", m, jid, body["image"])
	}
	if !strings.Contains(fmt.Sprint(m["logs"]), e.logLine) {
		t.Errorf("logs = %q; want the job's line %q", m["logs"], e.logLine)
	}
	if !strings.HasSuffix(fmt.Sprint(m["cmd"]), " /share/incoming /share/outgoing") {
		t.Errorf("cmd = %q; want the command ending in the ds job's two directories", m["cmd"])
	}
	if e.runs {
		out := filepath.Join(e.store, fmt.Sprint(body["output_dir"]), contractInput)
		if b, err := os.ReadFile(out); err != nil || string(b) != "contract input\n" {
			t.Errorf("output %s = %q, %v; want the input copied", out, b, err)
		}
	}
}

func contractFails(t *testing.T, e *contractEnv) {
	jid, _ := e.start(t, "fail", actFail)
	m := e.finish(t, jid)
	if m["status"] != statusError || m["message"] == "" {
		t.Errorf("GET = %v; want finishedWithError with a message", m)
	}
	if !strings.Contains(fmt.Sprint(m["logs"]), e.logLine) {
		t.Errorf("logs = %q; want the job's line %q", m["logs"], e.logLine)
	}
}

func contractDuplicate(t *testing.T, e *contractEnv) {
	jid, body := e.start(t, "dup", actSleep)
	code, m := call(t, "POST", e.url+"/api/v1/", body)
	if code != http.StatusConflict || !strings.Contains(fmt.Sprint(m["message"]), jid) {
		t.Errorf("POST %s again = %d %v; want 409 naming the jid", jid, code, m)
	}
	// The first job is untouched.
	if code, m := e.do(t, "GET", jid, nil); code != http.StatusOK || m["status"] == statusError {
		t.Errorf("GET %s after the duplicate = %d %v; want the first job, not failed", jid, code, m)
	}
}

func contractDelete(t *testing.T, e *contractEnv) {
	jid, _ := e.start(t, "del", actSleep)
	if code, m := e.do(t, "DELETE", jid, nil); code != http.StatusNoContent || m != nil {
		t.Fatalf("DELETE = %d %v; want 204, no body", code, m)
	}
	if code, m := e.do(t, "GET", jid, nil); code != http.StatusNotFound || m["message"] == nil {
		t.Errorf("GET after DELETE = %d %v; want 404 with a message", code, m)
	}
	if code, m := e.do(t, "DELETE", jid, nil); code != http.StatusNotFound || m["message"] == nil {
		t.Errorf("DELETE again = %d %v; want 404 with a message", code, m)
	}
	if e.exists(t, jid) {
		t.Errorf("the scheduler still holds %s after DELETE", jid)
	}
}

func contractUnknown(t *testing.T, e *contractEnv) {
	jids := append([]string{e.newJID(t, "never")}, contractImpossible...)
	if e.impossibleJID != "" {
		jids = append(jids, e.impossibleJID)
	}
	for _, jid := range jids {
		for _, method := range []string{"GET", "DELETE"} {
			code, m := e.do(t, method, jid, nil)
			if code != http.StatusNotFound || m["message"] == nil {
				t.Errorf("%s %.40s = %d %v; want 404 with a message", method, jid, code, m)
			}
		}
	}
}

// contractMissingInput: where pman sees STOREBASE, a job whose input
// directory does not exist is refused with a 400 on input_dir naming the
// directory (missingInput), and nothing is made.
func contractMissingInput(t *testing.T, e *contractEnv) {
	jid := e.newJID(t, "noinput")
	body := e.body(t, jid, actSucceed)
	body["input_dir"] = jid + "/not-there"
	code, m := call(t, "POST", e.url+"/api/v1/", body)
	if fields, _ := m["message"].(map[string]any); code != http.StatusBadRequest || !strings.Contains(fmt.Sprint(fields["input_dir"]), "not-there") {
		t.Errorf("POST with a missing input directory = %d %v; want 400 on input_dir naming it", code, m)
	}
	if e.exists(t, jid) {
		t.Errorf("the scheduler holds %s after a refused POST", jid)
	}
}

func contractOOM(t *testing.T, e *contractEnv) {
	jid, body := e.start(t, "oom", actOOM)
	m := e.finish(t, jid)
	limit := body["memory_limit"]
	if msg := fmt.Sprint(m["message"]); m["status"] != statusError || !strings.Contains(msg, "out of memory") || !strings.Contains(msg, fmt.Sprintf("of %v MiB", limit)) {
		t.Errorf("GET = %v; want finishedWithError with the out-of-memory message of %v MiB (%q or %q)",
			m, limit, outOfMemory(1, true), outOfMemory(1, false))
	}
}

func contractLogsUnreadable(t *testing.T, e *contractEnv) {
	jid, _ := e.start(t, "nologs", actSucceed)
	m := e.finish(t, jid)
	logs := fmt.Sprint(m["logs"])
	if m["status"] != statusSuccess || !strings.HasPrefix(logs, "[pman] logs unavailable: ") && !strings.Contains(logs, "\n[pman] logs unavailable: ") {
		t.Errorf("GET = %v; want finishedSuccessfully and a line saying why the logs are unavailable", m)
	}
}

func contractKeep(t *testing.T, e *contractEnv) {
	jid, _ := e.start(t, "keep", actSucceed)
	e.finish(t, jid)
	if code, m := e.do(t, "DELETE", jid, nil); code != http.StatusNoContent {
		t.Fatalf("DELETE = %d %v; want 204", code, m)
	}
	if code, m := e.do(t, "GET", jid, nil); code != http.StatusOK || m["status"] != statusSuccess {
		t.Errorf("GET after DELETE with REMOVE_JOBS=no = %d %v; want 200, the job kept", code, m)
	}
	if !e.exists(t, jid) {
		t.Errorf("the scheduler no longer holds %s; want it kept", jid)
	}
}

func contractLabels(t *testing.T, e *contractEnv) {
	jid, _ := e.start(t, "labels", actSucceed)
	labels, _ := e.inspect(t, jid)
	for k, v := range map[string]string{"org.chrisproject.test": "contract", "team": "fnndsc"} {
		if labels[k] != v {
			t.Errorf("label %s = %q; want %q (all labels: %v)", k, labels[k], v, labels)
		}
	}
}

func contractHome(t *testing.T, e *contractEnv) {
	jid, _ := e.start(t, "home", actHome)
	_, env := e.inspect(t, jid)
	if !slices.Contains(env, "HOME=/tmp") || !slices.Contains(env, "GREETING=hello") {
		t.Errorf("job environment = %q; want HOME=/tmp and the request's GREETING=hello", env)
	}
	if !e.runs {
		return
	}
	if m := e.finish(t, jid); m["status"] != statusSuccess || !strings.Contains(fmt.Sprint(m["logs"]), "HOME=/tmp") {
		t.Errorf("GET = %v; want finishedSuccessfully, the job saying HOME=/tmp", m)
	}
}

// contractPfcon2022: pfcon of 2022 sends no input_dir or output_dir; the
// job's directories are key-<jid>/incoming and key-<jid>/outgoing.
func contractPfcon2022(t *testing.T, e *contractEnv) {
	jid := e.newJID(t, "pfcon2022")
	body := e.body(t, jid, actSucceed)
	delete(body, "input_dir")
	delete(body, "output_dir")
	e.mkdir(t, "key-"+jid+"/incoming", map[string]string{contractInput: "contract input\n"})
	e.mkdir(t, "key-"+jid+"/outgoing", nil)
	e.submit(t, body)
	if e.run != nil {
		e.run(t, jid, actSucceed)
	}
	if m := e.finish(t, jid); m["status"] != statusSuccess {
		t.Errorf("GET = %v; want finishedSuccessfully", m)
	}
	if e.runs {
		out := filepath.Join(e.store, "key-"+jid, "outgoing", contractInput)
		if b, err := os.ReadFile(out); err != nil || string(b) != "contract input\n" {
			t.Errorf("output %s = %q, %v; want the input copied", out, b, err)
		}
	}
}
