package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// ---- configuration -------------------------------------------------------------

func TestSlurmConfig(t *testing.T) {
	base := map[string]string{"CONTAINER_ENV": "slurm", "STOREBASE": "/store", "SLURMRESTD_URL": "unix:///run/slurmrestd.sock"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	load := func(env map[string]string) (*config, error) {
		return loadConfig(func(k string) string { return env[k] })
	}
	c, err := load(base)
	if err != nil {
		t.Fatalf("loadConfig(%v): %v", base, err)
	}
	if c.StorageType != "host" || c.Slurm.Runtime != "apptainer" || c.Slurm.APIVersion != "" {
		t.Errorf("defaults: storage %q, runtime %q, version %q; want host, apptainer, \"\" (ask slurmrestd)", c.StorageType, c.Slurm.Runtime, c.Slurm.APIVersion)
	}
	c, err = load(with("SLURMRESTD_URL", "https://hpc.example.org:6820", "SLURM_JWT", "tok", "SLURM_USER", "chris",
		"SLURM_API_VERSION", "v0.0.40", "SLURM_ACCOUNT", "lab", "SLURM_PARTITION", "short", "SLURM_CONTAINER_RUNTIME", "docker", "STORAGE_TYPE", "nfs"))
	if err != nil {
		t.Fatalf("https with a token: %v", err)
	}
	if c.Slurm.APIVersion != "0.0.40" || c.Slurm.Account != "lab" || c.SlurmPartition != "short" || c.Slurm.Runtime != "docker" {
		t.Errorf("config = %+v", c.Slurm)
	}

	bad := []struct {
		env  map[string]string
		want string
	}{
		{with("SLURMRESTD_URL", ""), "SLURMRESTD_URL: required"},
		{with("SLURMRESTD_URL", "hpc:6820"), "SLURMRESTD_URL"},
		{with("SLURMRESTD_URL", "unix://"), "SLURMRESTD_URL"},
		{with("SLURMRESTD_URL", "http://hpc:6820", "SLURM_USER", "u"), "SLURM_JWT: required"},
		{with("SLURMRESTD_URL", "http://hpc:6820", "SLURM_JWT", "t"), "SLURM_USER: required"},
		{with("SLURM_API_VERSION", "0.0.37"), "SLURM_API_VERSION"},
		{with("SLURM_CONTAINER_RUNTIME", "runc"), "SLURM_CONTAINER_RUNTIME"},
		{with("STOREBASE", "/a:b"), "STOREBASE"},
		{with("STORAGE_TYPE", "docker_local_volume"), "STORAGE_TYPE"},
		{with("STOREBASE", ""), "STOREBASE"},
	}
	for _, tt := range bad {
		if _, err := load(tt.env); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("loadConfig(%v) = %v; want an error with %q", tt.env, err, tt.want)
		}
	}
}

// ---- recorded answers: state mapping ---------------------------------------

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
		var e slurmExit
		if err := json.Unmarshal([]byte(tt.in), &e); err != nil {
			t.Errorf("exit_code %s: %v", tt.in, err)
			continue
		}
		if e.Code != tt.code || e.Signal != tt.sig {
			t.Errorf("exit_code %s = code %d, signal %d; want %d, %d", tt.in, e.Code, e.Signal, tt.code, tt.sig)
		}
	}
}

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
		rec := slurmRecord{jid: "j", dir: t.TempDir()}
		if tt.end != "" {
			os.WriteFile(filepath.Join(rec.dir, "end.json"), []byte(tt.end), 0o644)
		}
		a := rec.forgotten(7, meta)
		if a.Status != tt.status || !strings.Contains(a.Message, tt.msg) {
			t.Errorf("end.json %s: %q %q; want %q with %q", tt.end, a.Status, a.Message, tt.status, tt.msg)
		}
	}
}

// ---- the script, through a real shell with stand-in runtimes -------------------

// fakeRuntime puts an executable named rt first in PATH that writes its
// arguments, NUL-separated, to args, and the values of APPTAINERENV_ and
// SINGULARITYENV_ HOME and WEIRD to env; "inspect" answers "false".
func fakeRuntime(t *testing.T, rt string) (path, args, env string) {
	t.Helper()
	bin := t.TempDir()
	args, env = filepath.Join(bin, "args"), filepath.Join(bin, "env")
	script := fmt.Sprintf(`#!/bin/sh
case "$1" in
inspect) echo false; exit 0;;
rm) exit 0;;
esac
for a; do printf '%%s\0' "$a"; done >%s
printf '%%s\0' "${APPTAINERENV_HOME-unset}" "${APPTAINERENV_WEIRD-unset}" "${SINGULARITYENV_HOME-unset}" "${SINGULARITYENV_WEIRD-unset}" >%s
exit 0
`, shQuote(args), shQuote(env))
	if err := os.WriteFile(filepath.Join(bin, rt), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin + ":" + os.Getenv("PATH"), args, env
}

// runScript runs a job's batch script with sh as SLURM would, and answers
// the runtime's argument list.
func runScript(t *testing.T, script, path, argsFile string) []string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "script")
	os.WriteFile(f, []byte(script), 0o755)
	cmd := exec.Command("sh", f)
	cmd.Env = []string{"PATH=" + path, "SLURM_JOB_ID=7", "HOME=/nonexistent"}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the script failed: %v\n%s\nscript:\n%s", err, out, script)
	}
	b, err := os.ReadFile(argsFile)
	if err != nil {
		t.Fatalf("the runtime was not run: %v\nscript:\n%s", err, script)
	}
	words := strings.Split(string(b), "\x00")
	return words[:len(words)-1]
}

// hostileStore is a STOREBASE and directories that the shell would
// mangle if they were not quoted.
func hostileStore(t *testing.T) (store, in, out string) {
	store = filepath.Join(t.TempDir(), `st ore $(id) 'q' "dq" $HOME `+"`id`")
	in, out = `feed $1/in 'x'`, `feed $1/out "y" ;rm`
	for _, d := range []string{in, out} {
		if err := os.MkdirAll(filepath.Join(store, d), 0o777); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(slurmRecordsDir(store), 0o777)
	return store, in, out
}

func TestSlurmScriptHostileArgs(t *testing.T) {
	for _, rt := range slurmRuntimes {
		t.Run(rt, func(t *testing.T) {
			path, argsFile, envFile := fakeRuntime(t, rt)
			store, in, out := hostileStore(t)
			cfg := &config{StoreBase: store, Slurm: slurmConfig{Runtime: rt}}
			for _, arg := range wdlHostileArgs {
				jid := "j " + arg
				if checkJID(jid) != "" {
					jid = "j"
				}
				rec := slurmRecord{jid: jid, dir: filepath.Join(slurmRecordsDir(store), jid)}
				os.MkdirAll(rec.dir, 0o777)
				cmd := []string{"/usr/local/bin/plugin", "--opt", arg, arg + arg, outgoingDir}
				j := &jobSpec{JID: jid, Image: "fnndsc/pl-x:1.0", Cmd: cmd, Env: []string{"WEIRD=" + arg, "HOME=/tmp"},
					InputDir: in, OutputDir: out, Workers: 1, CPULimit: 1000, MemoryLimit: 64}
				got := runScript(t, slurmScript(cfg, j, rec), path, argsFile)

				var wantCmd []string
				switch rt {
				case "docker", "podman":
					i := slices.Index(got, "--entrypoint")
					if i < 0 || len(got) < i+2 {
						t.Fatalf("no --entrypoint in %q", got)
					}
					wantCmd = append([]string{got[i+1]}, got[i+3:]...)
					if got[i+2] != j.Image {
						t.Errorf("arg %q: image %q; want %q", arg, got[i+2], j.Image)
					}
					for _, e := range j.Env {
						if k := slices.Index(got, e); k < 1 || got[k-1] != "-e" {
							t.Errorf("arg %q: no -e %q in %q", arg, e, got)
						}
					}
				default:
					k := slices.Index(got, "docker://"+j.Image)
					if k < 0 {
						t.Fatalf("no image in %q", got)
					}
					wantCmd = got[k+1:]
					env, _ := os.ReadFile(envFile)
					want := "/tmp\x00" + arg + "\x00unset\x00unset\x00"
					if rt == "singularity" {
						want = "unset\x00unset\x00/tmp\x00" + arg + "\x00"
					}
					if string(env) != want {
						t.Errorf("arg %q: the runtime's HOME, WEIRD = %q; want %q", arg, env, want)
					}
				}
				if !slices.Equal(wantCmd, cmd) {
					t.Errorf("arg %q: the container runs %q; want %q", arg, wantCmd, cmd)
				}
				for _, bind := range []string{filepath.Join(store, in) + ":" + incomingDir + ":ro", filepath.Join(store, out) + ":" + outgoingDir + ":rw"} {
					if !slices.Contains(got, bind) {
						t.Errorf("arg %q: no bind %q in %q", arg, bind, got)
					}
				}
				if b, err := os.ReadFile(filepath.Join(rec.dir, "end.json")); err != nil || !bytes.Contains(b, []byte(`"exit_code":0`)) {
					t.Errorf("arg %q: end.json = %s, %v; want exit code 0", arg, b, err)
				}
				os.RemoveAll(rec.dir)
			}
		})
	}
}

func TestSlurmScriptDockerFlags(t *testing.T) {
	cfg := &config{StoreBase: "/store", ShmSizeMiB: 128, JobLabels: map[string]string{"team": "fnndsc"},
		ContainerUser: userSpec{UID: idRange{Set: true, Lo: 1001, Hi: 1001}, GID: idRange{Set: true}}, Slurm: slurmConfig{Runtime: "docker"}}
	j := &jobSpec{JID: "j", Image: "img", Cmd: []string{"run"}, Workers: 2, CPULimit: 1500, MemoryLimit: 100, GPULimit: 1, InputDir: "a", OutputDir: "b"}
	got := strings.Join(dockerArgs(cfg, j), " ")
	for _, want := range []string{"--memory 100m --memory-swap 100m", "--cpus 3", "--shm-size 128m", `--gpus "$gpus"`, "--user 1001", "--group-add 0", "--label 'org.chrisproject.pman.jid=j' --label 'team=fnndsc'"} {
		if !strings.Contains(got, want) {
			t.Errorf("docker command %s; want %q in it", got, want)
		}
	}
	cfg.IgnoreLimits = true
	if got := strings.Join(dockerArgs(cfg, j), " "); strings.Contains(got, "--memory") || strings.Contains(got, "--cpus") {
		t.Errorf("IGNORE_LIMITS: docker command %s; want no --memory, no --cpus", got)
	}
}

func TestRenderSlurmScriptRefuses(t *testing.T) {
	ok := jobSpec{JID: "j", Image: "img", Cmd: []string{"run"}, InputDir: "a", OutputDir: "b", Workers: 1}
	tests := []struct {
		name    string
		runtime string
		field   string // "" when the job is accepted
		edit    func(j *jobSpec)
	}{
		{"image", "docker", "image", func(j *jobSpec) { j.Image = "img; rm -rf /" }},
		{"env name", "docker", "env", func(j *jobSpec) { j.Env = []string{"A-B=1"} }},
		{"env NUL", "docker", "env", func(j *jobSpec) { j.Env = []string{"A=x\x00y"} }},
		{"args NUL", "docker", "args", func(j *jobSpec) { j.Cmd = []string{"a\x00b"} }},
		{"line break", "docker", "output_dir", func(j *jobSpec) { j.OutputDir = "a\nb" }},
		// -v and --bind are "source:target:ro": a ':' splits them.
		{"':' with docker", "docker", "input_dir", func(j *jobSpec) { j.InputDir = "home/chris/uploads/scan 10:30" }},
		{"':' with apptainer", "apptainer", "output_dir", func(j *jobSpec) { j.OutputDir = "a:b" }},
		// --bind is a comma-separated list; docker's -v is not.
		{"',' with apptainer", "apptainer", "input_dir", func(j *jobSpec) { j.InputDir = "a,b" }},
		{"',' with docker", "docker", "", func(j *jobSpec) { j.InputDir = "a,b" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &config{StoreBase: "/store", Slurm: slurmConfig{Runtime: tt.runtime}}
			j := ok
			tt.edit(&j)
			_, err := renderSlurmScript(cfg, &j, "/store/.pman/slurm")
			if tt.field == "" {
				if err != nil {
					t.Errorf("%+v: %v; want it accepted", j, err)
				}
				return
			}
			var ae *apiError
			if !errors.As(err, &ae) || ae.kind != eInvalid || ae.fields[tt.field] == "" {
				t.Errorf("%+v: %v; want a 400 on %s", j, err, tt.field)
			}
		})
	}
}

// ---- the REST client, against a stand-in slurmrestd serving recorded answers --

// fakeSlurmrestd serves one API version's recorded answers. Each route's
// answer can be replaced; every request is kept.
type fakeSlurmrestd struct {
	t    *testing.T
	v    string
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []fakeReq
	// answers maps "METHOD /path" (the path after /slurm/v<v>) to a status
	// and a recorded file.
	answers map[string]fakeAnswer
}

type fakeReq struct {
	Method, Path string
	Header       http.Header
	Body         map[string]any
}

type fakeAnswer struct {
	code int
	file string
}

func newFakeSlurmrestd(t *testing.T, v string) *fakeSlurmrestd {
	f := &fakeSlurmrestd{t: t, v: v, answers: map[string]fakeAnswer{
		"GET /ping":        {200, "cancel-ok.json"},
		"POST /job/submit": {200, "submit-ok.json"},
		"GET /jobs":        {200, "jobs.json"},
		"DELETE /job/ID":   {200, "cancel-ok.json"},
		"GET /job/ID":      {200, "job-pending.json"},
	}}
	if v == "0.0.38" {
		f.answers["GET /job/ID"] = fakeAnswer{200, "job-pending-held.json"}
		f.answers["GET /jobs"] = fakeAnswer{200, "written-jobs.json"}
	}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		b, _ := io.ReadAll(r.Body)
		json.Unmarshal(b, &body)
		f.mu.Lock()
		f.reqs = append(f.reqs, fakeReq{r.Method, r.URL.Path, r.Header.Clone(), body})
		f.mu.Unlock()
		if r.URL.Path == "/openapi/v3" {
			if v == "0.0.38" {
				w.Write([]byte(`{"paths": {"/slurm/v0.0.38/job/submit": {}}}`))
			} else {
				w.Write(slurmRecorded(t, v, "openapi-paths.json"))
			}
			return
		}
		key := r.Method + " " + slurmIDPath.ReplaceAllString(strings.TrimPrefix(r.URL.Path, "/slurm/v"+v), "/job/ID")
		f.mu.Lock()
		a, ok := f.answers[key]
		f.mu.Unlock()
		if !ok {
			http.Error(w, "no route "+key, 404)
			return
		}
		w.WriteHeader(a.code)
		if a.file != "" {
			b := slurmRecorded(t, v, a.file)
			if strings.Contains(key, "/job/") {
				// The real recordings are of jobs with many ids.
				b = slurmJobIDField.ReplaceAll(b, []byte(`"job_id": 4242`))
			}
			w.Write(b)
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

var (
	slurmIDPath     = regexp.MustCompile(`/job/[0-9]+$`)
	slurmJobIDField = regexp.MustCompile(`"job_id": *[0-9]+`)
)

func (f *fakeSlurmrestd) answer(route string, code int, file string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers[route] = fakeAnswer{code, file}
}

func (f *fakeSlurmrestd) requests(method, path string) []fakeReq {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []fakeReq
	for _, r := range f.reqs {
		if r.Method == method && slurmIDPath.ReplaceAllString(r.Path, "/job/ID") == "/slurm/v"+f.v+path {
			out = append(out, r)
		}
	}
	return out
}

// newFakeSlurmSched is a slurmSched talking to f with a token, on a fresh
// STOREBASE that holds fakeJob's input directory.
func newFakeSlurmSched(t *testing.T, f *fakeSlurmrestd, extra ...string) (*slurmSched, string) {
	t.Helper()
	store := t.TempDir()
	if err := os.MkdirAll(filepath.Join(store, fakeJob("").InputDir), 0o755); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"CONTAINER_ENV": "slurm", "STOREBASE": store, "SLURMRESTD_URL": f.srv.URL,
		"SLURM_JWT": "tok-123", "SLURM_USER": "chris", "SLURM_PARTITION": "batch", "TIMELIMIT_MINUTES": "30", "JOB_LOGS_TAIL": "2"}
	for i := 0; i < len(extra); i += 2 {
		env[extra[i]] = extra[i+1]
	}
	cfg, err := loadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	s, err := newSlurm(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return s.(*slurmSched), store
}

func fakeJob(jid string) *jobSpec {
	return &jobSpec{JID: jid, Image: "fnndsc/pl-x:1.0", Type: "ds", Workers: 2, CPULimit: 1500, MemoryLimit: 300, GPULimit: 1,
		Cmd: []string{"x", incomingDir, outgoingDir}, Env: []string{"A=1"}, InputDir: "f/in", OutputDir: "f/out"}
}

func TestSlurmFakeCreateAndGet(t *testing.T) {
	for _, v := range slurmAPIVersions {
		t.Run(v, func(t *testing.T) {
			f := newFakeSlurmrestd(t, v)
			s, store := newFakeSlurmSched(t, f)
			ctx := context.Background()
			j, err := s.create(ctx, fakeJob("jid-1"))
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			if j.Status != statusNotStarted || !strings.Contains(j.Message, "pending") || j.Image != "fnndsc/pl-x:1.0" {
				t.Errorf("create = %+v; want notstarted, pending", j)
			}
			subs := f.requests("POST", "/job/submit")
			if len(subs) != 1 {
				t.Fatalf("%d submissions; want 1", len(subs))
			}
			h := subs[0].Header
			if h.Get("X-SLURM-USER-TOKEN") != "tok-123" || h.Get("X-SLURM-USER-NAME") != "chris" {
				t.Errorf("headers %v; want the token and the user", h)
			}
			job, _ := subs[0].Body["job"].(map[string]any)
			js, _ := json.Marshal(job)
			want := map[string]any{"name": "jid-1", "partition": "batch", "tasks": 2.0, "cpus_per_task": 2.0, "requeue": false,
				"current_working_directory": filepath.Join(store, ".pman/slurm/jid-1")}
			if v == "0.0.38" {
				want["time_limit"], want["memory_per_node"], want["gres"] = 30.0, 300.0, "gpu:1"
				want["environment"] = map[string]any{"PATH": slurmJobPath}
			} else {
				want["time_limit"] = map[string]any{"set": true, "infinite": false, "number": 30.0}
				want["memory_per_node"] = map[string]any{"set": true, "infinite": false, "number": 300.0}
				want["tres_per_node"] = "gres/gpu:1"
				want["environment"] = []any{"PATH=" + slurmJobPath}
			}
			for k, w := range want {
				if g := job[k]; fmt.Sprint(g) != fmt.Sprint(w) {
					t.Errorf("job[%q] = %v; want %v\n%s", k, g, w, js)
				}
			}
			if s, _ := subs[0].Body["script"].(string); !strings.HasPrefix(s, "#!/bin/sh\n") {
				t.Errorf("script = %q", s)
			}

			// Running, then finished and forgotten: the answer stays.
			f.answer("GET /job/ID", 200, "job-running.json")
			if j, err := s.get(ctx, "jid-1"); err != nil || j.Status != statusStarted {
				t.Errorf("get = %+v, %v; want started", j, err)
			}
			f.answer("GET /job/ID", 200, "job-failed.json")
			os.WriteFile(filepath.Join(store, ".pman/slurm/jid-1/job.log"), []byte("a\nb\nc\n"), 0o644)
			first, err := s.get(ctx, "jid-1")
			if err != nil || first.Status != statusError || !strings.Contains(first.Message, "exit code 3") || first.Logs != "b\nc\n" {
				t.Errorf("get = %+v, %v; want finishedWithError, exit code 3, logs b c", first, err)
			}
			f.answer("GET /job/ID", 500, "job-unknown.json")
			n := len(f.requests("GET", "/job/ID"))
			again, err := s.get(ctx, "jid-1")
			if err != nil || *again != *first {
				t.Errorf("get once SLURM forgot = %+v, %v; want %+v", again, err, first)
			}
			if len(f.requests("GET", "/job/ID")) != n {
				t.Errorf("a finished job's GET asked slurmrestd again")
			}

			// DELETE of a finished job asks SLURM nothing and removes the record.
			if err := s.remove(ctx, "jid-1"); err != nil {
				t.Errorf("remove: %v", err)
			}
			if _, err := s.get(ctx, "jid-1"); !isKind(err, eNotFound) {
				t.Errorf("get after remove: %v; want not found", err)
			}
		})
	}
}

func TestSlurmFakeErrors(t *testing.T) {
	for _, v := range slurmAPIVersions {
		t.Run(v, func(t *testing.T) {
			refusal, down := "submit-refused.json", ""
			if v == "0.0.38" {
				refusal, down = "submit-bad-partition.json", "submit-ctld-down.json"
			}
			f := newFakeSlurmrestd(t, v)
			s, store := newFakeSlurmSched(t, f)
			ctx := context.Background()

			f.answer("POST /job/submit", 500, refusal)
			_, err := s.create(ctx, fakeJob("jid-2"))
			if code, body := errorStatus(err); code != 400 || !strings.Contains(fmt.Sprint(body), "Invalid partition name specified") {
				t.Errorf("refused submission: %d %v; want 400 with SLURM's message", code, body)
			}
			if _, err := os.Stat(filepath.Join(store, ".pman/slurm/jid-2")); !os.IsNotExist(err) {
				t.Errorf("a refused job left its record: %v", err)
			}

			if v == "0.0.38" {
				// What 22.05 answers a bad token: slurmctld refused it.
				f.answer("GET /jobs", 500, "jobs-bad-token.json")
				_, err = s.create(ctx, fakeJob("jid-3"))
				if code, body := errorStatus(err); code != 503 || !strings.Contains(fmt.Sprint(body), "refused pman's token") {
					t.Errorf("token refused by slurmctld: %d %v; want 503 naming the token", code, body)
				}
				f.answer("GET /jobs", 200, "written-jobs.json")
			}
			if down != "" {
				f.answer("POST /job/submit", 500, down)
				_, err = s.create(ctx, fakeJob("jid-3"))
				if code, body := errorStatus(err); code != 503 || !strings.Contains(fmt.Sprint(body), "Unable to contact slurm controller") {
					t.Errorf("slurmctld down: %d %v; want 503 saying so", code, body)
				}
			}

			f.answer("POST /job/submit", 401, "")
			_, err = s.create(ctx, fakeJob("jid-4"))
			if code, body := errorStatus(err); code != 503 || !strings.Contains(fmt.Sprint(body), "refused pman's credentials") || !strings.Contains(fmt.Sprint(body), "SLURM_JWT") {
				t.Errorf("token rejected: %d %v; want 503 naming the token", code, body)
			}

			// A job pending for a reason that never clears ends, and is cancelled.
			f.answer("POST /job/submit", 200, "submit-ok.json")
			pc := "job-pending-partitionconfig.json"
			if v == "0.0.38" {
				pc = "written-job-pending-partitionconfig.json"
			}
			f.answer("GET /job/ID", 200, pc)
			j, err := s.create(ctx, fakeJob("jid-5"))
			if err != nil || j.Status != statusError || !strings.Contains(j.Message, "PartitionConfig") {
				t.Errorf("hopeless job = %+v, %v; want finishedWithError naming PartitionConfig", j, err)
			}
			if len(f.requests("DELETE", "/job/ID")) == 0 {
				t.Errorf("a job that can never run was not cancelled")
			}
			f.answer("GET /job/ID", 200, "job-cancelled.json")
			if again, err := s.get(ctx, "jid-5"); err != nil || again.Status != j.Status || again.Message != j.Message {
				t.Errorf("GET after = %+v, %v; want the POST's answer %q", again, err, j.Message)
			}

			// A duplicate jid: the record is there, or SLURM runs a job of
			// that name; a finished one of that name is no obstacle.
			if _, err := s.create(ctx, fakeJob("jid-5")); !isKind(err, eConflict) {
				t.Errorf("second create of jid-5: %v; want a conflict", err)
			}
			_, err = s.create(ctx, fakeJob("jid-taken"))
			if code, body := errorStatus(err); code != 409 || !strings.Contains(fmt.Sprint(body), "4100") {
				t.Errorf("create of a jid SLURM runs: %d %v; want 409 naming its job 4100", code, body)
			}
			if _, err := s.create(ctx, fakeJob("jid-old")); err != nil {
				t.Errorf("create of a jid whose SLURM job is finished: %v", err)
			}
		})
	}
}

// TestSlurmFakeMissingInput: STOREBASE is always visible to a SLURM pman
// (it keeps its records there), so a missing input directory is a 400 on
// input_dir before slurmrestd is asked anything.
func TestSlurmFakeMissingInput(t *testing.T) {
	f := newFakeSlurmrestd(t, slurmAPIVersions[0])
	s, store := newFakeSlurmSched(t, f)
	j := fakeJob("jid-noinput")
	j.InputDir = "f/not-there"
	_, err := s.create(context.Background(), j)
	var ae *apiError
	if !errors.As(err, &ae) || ae.kind != eInvalid || !strings.Contains(ae.fields["input_dir"], filepath.Join(store, "f/not-there")) {
		t.Errorf("create = %v; want a 400 on input_dir naming it", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) != 0 {
		t.Errorf("requests %v; want none", f.reqs)
	}
}

func TestSlurmUnreachable(t *testing.T) {
	store := t.TempDir()
	if err := os.MkdirAll(filepath.Join(store, fakeJob("").InputDir), 0o755); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"CONTAINER_ENV": "slurm", "STOREBASE": store, "SLURMRESTD_URL": "unix://" + filepath.Join(store, "no.sock")}
	cfg, err := loadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	s, err := newSlurm(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.create(context.Background(), fakeJob("j"))
	if code, body := errorStatus(err); code != 503 || !strings.Contains(fmt.Sprint(body), "slurmrestd at unix://") || !strings.Contains(fmt.Sprint(body), "unreachable") {
		t.Errorf("create with no slurmrestd: %d %v; want 503 naming slurmrestd", code, body)
	}
	if err := s.(*slurmSched).ping(context.Background()); err == nil {
		t.Errorf("ping with no slurmrestd: nil; want an error")
	}
}

// ---- end to end, on the real cluster of .ci/slurm -------------------------------

// slurmSocket is where .ci/slurm/start serves slurmrestd with local auth.
const slurmSocket = "/run/pman-slurm/slurmrestd.sock"

// needSlurm skips (fails under CI) unless the test cluster answers.
func needSlurm(t *testing.T) {
	t.Helper()
	c := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", slurmSocket)
		}}}
	resp, err := c.Get("http://slurmrestd/slurm/v0.0.38/ping")
	if err != nil {
		needOrSkip(t, "no SLURM test cluster (bash .ci/slurm/start): "+err.Error())
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		needOrSkip(t, fmt.Sprintf("the SLURM test cluster does not answer a ping (bash .ci/slurm/start): %s %s", resp.Status, b))
	}
}

// startSlurm starts the whole server with CONTAINER_ENV=slurm on the test
// cluster, its jobs run with the Docker engine, on a fresh STOREBASE.
func startSlurm(t *testing.T, store string, extra map[string]string) *dockerEnv {
	t.Helper()
	needSlurm(t)
	cli := needEngine(t)
	img := needTestImage(t, cli)
	if store == "" {
		store = t.TempDir()
		os.Chmod(store, 0o777)
	}
	env := map[string]string{"CONTAINER_ENV": "slurm", "STORAGE_TYPE": "host", "STOREBASE": store,
		"SLURMRESTD_URL": "unix://" + slurmSocket, "SLURM_CONTAINER_RUNTIME": "docker", "JOB_LOGS_TAIL": "50"}
	for k, v := range extra {
		env[k] = v
	}
	return &dockerEnv{url: startServer(t, env), store: store, cli: cli, image: img}
}

// slurmJobID is the SLURM job id of a job of the server's, from its record.
func slurmJobID(t *testing.T, e *dockerEnv, jid string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(slurmRecordsDir(e.store), jid, "job.json"))
	if err != nil {
		t.Fatalf("the record of %s: %v", jid, err)
	}
	var m slurmJobMeta
	if err := json.Unmarshal(b, &m); err != nil || m.SlurmJobID == 0 {
		t.Fatalf("the record of %s: %s, %v", jid, b, err)
	}
	return m.SlurmJobID
}

// slurmctldKnows asks the test cluster whether it still knows job id.
func slurmctldKnows(t *testing.T, id int) bool {
	t.Helper()
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", slurmSocket)
		}}}
	resp, err := c.Get(fmt.Sprintf("http://slurmrestd/slurm/v0.0.38/job/%d", id))
	if err != nil {
		t.Fatalf("asking slurmrestd about job %d: %v", id, err)
	}
	defer resp.Body.Close()
	var ans struct {
		slurmAnswer
		Jobs []slurmJobInfo `json:"jobs"`
	}
	json.NewDecoder(resp.Body).Decode(&ans)
	if ans.hasError(slurmInvalidJobID) {
		return false
	}
	if len(ans.Jobs) == 0 {
		t.Fatalf("slurmrestd on job %d: %d %+v", id, resp.StatusCode, ans)
	}
	return true
}

// noSlurmContainer waits until the container of jid's SLURM job id is gone.
func noSlurmContainer(t *testing.T, e *dockerEnv, id int, jid string) {
	t.Helper()
	name := fmt.Sprintf("pman-slurm-%d-%s", id, slurmContainerTag(jid))
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := e.cli.ContainerInspect(context.Background(), name)
		if err != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("container %s still exists 60 s after its job ended", name)
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func TestSlurmEndToEnd(t *testing.T) {
	e := startSlurm(t, "", nil)

	t.Run("info", func(t *testing.T) {
		code, m := e.do(t, "GET", "/api/v1/", nil)
		if code != 200 || m["container_env"] != "slurm" || m["storage_type"] != "host" {
			t.Errorf("GET /api/v1/ = %d %v; want 200, slurm, host", code, m)
		}
	})

	t.Run("ds job reads its input and writes its output", func(t *testing.T) {
		t.Parallel()
		jid := e.newJID(t, "ds")
		e.dir(t, jid+"/in", map[string]string{"a.txt": "hello from the input\n"})
		e.submit(t, e.jobBody(jid, "ds", `cat "$1/a.txt"; cp "$1/a.txt" "$2/b.txt"; echo "$2" > "$2/where"; if touch "$1/x" 2>/dev/null; then echo input-writable; fi`))
		done := e.wait(t, jid)
		if done["status"] != statusSuccess {
			t.Fatalf("job = %v; want %s", done, statusSuccess)
		}
		if b, err := os.ReadFile(filepath.Join(e.store, jid, "out", "b.txt")); err != nil || string(b) != "hello from the input\n" {
			t.Errorf("output b.txt = %q, %v; want the input's text", b, err)
		}
		logs := done["logs"].(string)
		if !strings.Contains(logs, "hello from the input") || strings.Contains(logs, "input-writable") {
			t.Errorf("logs = %q; want the input's text, and the input read-only", logs)
		}
		rec := filepath.Join(slurmRecordsDir(e.store), jid)
		for _, f := range []string{"job.json", "job.log", "end.json", "answer.json"} {
			if _, err := os.Stat(filepath.Join(rec, f)); err != nil {
				t.Errorf("record %s: %v", f, err)
			}
		}
		if _, err := os.Stat(filepath.Join(e.store, jid, "out", ".pman")); err == nil {
			t.Errorf("the record is inside the output directory")
		}
	})

	t.Run("fs job writes its output", func(t *testing.T) {
		t.Parallel()
		jid := e.newJID(t, "fs")
		e.dir(t, jid+"/in", nil)
		e.submit(t, e.jobBody(jid, "fs", `echo made > "$1/c.txt"; echo fs-done`))
		done := e.wait(t, jid)
		if done["status"] != statusSuccess || !strings.Contains(done["logs"].(string), "fs-done") {
			t.Errorf("job = %v; want %s with fs-done in the logs", done, statusSuccess)
		}
		if b, err := os.ReadFile(filepath.Join(e.store, jid, "out", "c.txt")); err != nil || string(b) != "made\n" {
			t.Errorf("output c.txt = %q, %v; want \"made\\n\"", b, err)
		}
	})

	t.Run("failing job", func(t *testing.T) {
		t.Parallel()
		jid := e.newJID(t, "fail")
		e.dir(t, jid+"/in", nil)
		e.submit(t, e.jobBody(jid, "fs", "echo failing >&2; exit 3"))
		done := e.wait(t, jid)
		if done["status"] != statusError || !strings.Contains(done["message"].(string), "exit code 3") || !strings.Contains(done["logs"].(string), "failing") {
			t.Errorf("job = %v; want %s, exit code 3, \"failing\" in the logs", done, statusError)
		}
	})

	t.Run("killed for memory", func(t *testing.T) {
		t.Parallel()
		jid := e.newJID(t, "oom")
		e.dir(t, jid+"/in", nil)
		body := e.jobBody(jid, "fs", "dd if=/dev/zero of=/dev/null bs=64M count=1")
		body["memory_limit"] = 8
		e.submit(t, body)
		done := e.wait(t, jid)
		if done["status"] != statusError || done["message"] != outOfMemory(8, true) {
			t.Errorf("job = %v; want %s, %q", done, statusError, outOfMemory(8, true))
		}
	})

	t.Run("hostile arguments, env, jid and directories reach the plugin unchanged", func(t *testing.T) {
		t.Parallel()
		jid := e.newJID(t, `x %j %% 'q' "dq" $(id) ;`)
		in, out := jid+`/in $1 'x' $(id)`, jid+`/out "y" ;`
		e.dir(t, in, nil)
		args := slices.Clone(wdlHostileArgs)
		body := e.jobBody(jid, "fs", `for a; do printf '%s\0' "$a"; done > /share/outgoing/argv; printf '%s\0' "$WEIRD" "$ODD" > /share/outgoing/env`)
		body["entrypoint"] = append(body["entrypoint"].([]string), args...)
		body["input_dir"], body["output_dir"] = in, out
		weird := strings.Join(wdlHostileArgs, " ")
		body["env"] = []string{"WEIRD=" + weird, "ODD=a=b,c d'e"}
		e.submit(t, body)
		done := untilStatus(t, e.url, url.PathEscape(jid), time.Minute, statusSuccess, statusError)
		if done["status"] != statusSuccess || done["jid"] != jid {
			t.Fatalf("job = %v; want %s", done, statusSuccess)
		}
		read := func(name string) []string {
			b, err := os.ReadFile(filepath.Join(e.store, out, name))
			if err != nil {
				t.Fatalf("output %s: %v", name, err)
			}
			w := strings.Split(string(b), "\x00")
			return w[:len(w)-1]
		}
		if got, want := read("argv"), append(args, outgoingDir); !slices.Equal(got, want) {
			t.Errorf("the plugin got %q; want %q", got, want)
		}
		if got, want := read("env"), []string{weird, "a=b,c d'e"}; !slices.Equal(got, want) {
			t.Errorf("the plugin's env = %q; want %q", got, want)
		}
	})

	t.Run("DELETE while running", func(t *testing.T) {
		t.Parallel()
		jid := e.newJID(t, "del")
		e.dir(t, jid+"/in", nil)
		e.submit(t, e.jobBody(jid, "fs", "echo up; sleep 300"))
		untilStatus(t, e.url, jid, 60*time.Second, statusStarted)
		id := slurmJobID(t, e, jid)
		// The container is there under its name, so that its absence
		// below means it was removed.
		name := fmt.Sprintf("pman-slurm-%d-%s", id, slurmContainerTag(jid))
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			if _, err := e.cli.ContainerInspect(context.Background(), name); err == nil {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("container %s of the running job: %v", name, err)
			}
		}
		if code, m := e.do(t, "DELETE", "/api/v1/"+jid+"/", nil); code != http.StatusNoContent {
			t.Fatalf("DELETE = %d %v; want 204", code, m)
		}
		if code, m := e.do(t, "GET", "/api/v1/"+jid+"/", nil); code != http.StatusNotFound {
			t.Errorf("GET after DELETE = %d %v; want 404", code, m)
		}
		noSlurmContainer(t, e, id, jid)
	})

	t.Run("duplicate jid", func(t *testing.T) {
		t.Parallel()
		jid := e.newJID(t, "dup")
		e.dir(t, jid+"/in", nil)
		e.submit(t, e.jobBody(jid, "fs", "sleep 300"))
		code, m := e.do(t, "POST", "/api/v1/", e.jobBody(jid, "fs", "true"))
		if code != http.StatusConflict || !strings.Contains(fmt.Sprint(m["message"]), jid) {
			t.Errorf("second POST = %d %v; want 409 naming the jid", code, m)
		}
		id := slurmJobID(t, e, jid)
		e.do(t, "DELETE", "/api/v1/"+jid+"/", nil)
		noSlurmContainer(t, e, id, jid)
	})

	t.Run("pman restarted mid-job", func(t *testing.T) {
		t.Parallel()
		jid := e.newJID(t, "restart")
		e.dir(t, jid+"/in", nil)
		t.Run("first pman", func(t *testing.T) {
			// This server stops when the subtest ends.
			first := startSlurm(t, e.store, nil)
			first.submit(t, first.jobBody(jid, "fs", `sleep 4; echo survived > "$1/r.txt"`))
			untilStatus(t, first.url, jid, 60*time.Second, statusStarted)
		})
		second := startSlurm(t, e.store, nil)
		done := second.wait(t, jid)
		if done["status"] != statusSuccess || done["image"] != e.image || !strings.Contains(done["cmd"].(string), "survived") {
			t.Errorf("job after the restart = %v; want %s with its image and command", done, statusSuccess)
		}
		if b, _ := os.ReadFile(filepath.Join(e.store, jid, "out", "r.txt")); string(b) != "survived\n" {
			t.Errorf("output r.txt = %q; want \"survived\\n\"", b)
		}
	})

	t.Run("finished jobs after slurmctld forgot them", func(t *testing.T) {
		t.Parallel()
		seen, unseen := e.newJID(t, "seen"), e.newJID(t, "unseen")
		for _, jid := range []string{seen, unseen} {
			e.dir(t, jid+"/in", nil)
			e.submit(t, e.jobBody(jid, "fs", "echo done-"+jid))
		}
		// seen is polled to its end; unseen is not asked again until
		// slurmctld has forgotten it.
		before := e.wait(t, seen)
		for _, jid := range []string{seen, unseen} {
			id := slurmJobID(t, e, jid)
			// MinJobAge of .ci/slurm is 10 s, and slurmctld purges about once a minute.
			deadline := time.Now().Add(3 * time.Minute)
			for slurmctldKnows(t, id) {
				if time.Now().After(deadline) {
					t.Fatalf("slurmctld still knows job %d after 3 minutes (MinJobAge of .ci/slurm/start?)", id)
				}
				time.Sleep(2 * time.Second)
			}
		}
		_, after := e.do(t, "GET", "/api/v1/"+seen+"/", nil)
		if !reflect.DeepEqual(after, before) {
			t.Errorf("job once forgotten = %v; want what it answered before: %v", after, before)
		}
		_, late := e.do(t, "GET", "/api/v1/"+unseen+"/", nil)
		if late["status"] != statusSuccess || !strings.Contains(late["logs"].(string), "done-"+unseen) || late["timestamp"] == "" {
			t.Errorf("job first asked after slurmctld forgot it = %v; want %s with its logs and a timestamp", late, statusSuccess)
		}
	})

	t.Run("time limit", func(t *testing.T) {
		t.Parallel()
		// SLURM's smallest time limit is a minute, and slurmctld checks it
		// every 30 s: this job takes 1 to 2 minutes.
		slow := startSlurm(t, e.store, map[string]string{"TIMELIMIT_MINUTES": "1"})
		jid := e.newJID(t, "timeout")
		e.dir(t, jid+"/in", nil)
		slow.submit(t, slow.jobBody(jid, "fs", "sleep 600"))
		done := untilStatus(t, slow.url, jid, 4*time.Minute, statusSuccess, statusError)
		if done["status"] != statusError || !strings.Contains(done["message"].(string), "time limit of 1 minutes") {
			t.Errorf("job = %v; want %s saying it exceeded its time limit of 1 minutes", done, statusError)
		}
		noSlurmContainer(t, e, slurmJobID(t, slow, jid), jid)
	})

	t.Run("a partition that does not exist", func(t *testing.T) {
		t.Parallel()
		nowhere := startSlurm(t, e.store, map[string]string{"SLURM_PARTITION": "no-such-partition"})
		jid := e.newJID(t, "nopart")
		e.dir(t, jid+"/in", nil)
		code, m := nowhere.do(t, "POST", "/api/v1/", nowhere.jobBody(jid, "fs", "true"))
		if code != http.StatusBadRequest || !strings.Contains(fmt.Sprint(m["message"]), "Invalid partition name specified") {
			t.Errorf("POST = %d %v; want 400 with SLURM's message", code, m)
		}
		if code, m := nowhere.do(t, "GET", "/api/v1/"+jid+"/", nil); code != http.StatusNotFound {
			t.Errorf("GET of the refused job = %d %v; want 404", code, m)
		}
	})
}

// slurmJWT is the token .ci/slurm/start made for root.
func slurmJWT(t *testing.T) string {
	dir := os.Getenv("PMAN_CI_LOGS")
	if dir == "" {
		dir = "/tmp/pman-ci"
	}
	p := filepath.Join(dir, "slurm-jwt")
	if _, err := os.Stat(p); err != nil {
		needOrSkip(t, "no JWT of the SLURM test cluster (bash .ci/slurm/start): "+err.Error())
	}
	return p
}

func TestSlurmJWTEndToEnd(t *testing.T) {
	needSlurm(t)
	tokenFile := slurmJWT(t)
	e := startSlurm(t, "", map[string]string{"SLURMRESTD_URL": "http://127.0.0.1:6820", "SLURM_JWT_FILE": tokenFile, "SLURM_USER": "root"})
	jid := e.newJID(t, "jwt")
	e.dir(t, jid+"/in", nil)
	e.submit(t, e.jobBody(jid, "fs", "echo through-jwt"))
	if done := e.wait(t, jid); done["status"] != statusSuccess || !strings.Contains(done["logs"].(string), "through-jwt") {
		t.Errorf("job = %v; want %s", done, statusSuccess)
	}

	bad := startSlurm(t, e.store, map[string]string{"SLURMRESTD_URL": "http://127.0.0.1:6820", "SLURM_JWT": "not-a-token", "SLURM_USER": "root", "SLURM_API_VERSION": "0.0.38"})
	jid2 := e.newJID(t, "badjwt")
	e.dir(t, jid2+"/in", nil)
	code, m := bad.do(t, "POST", "/api/v1/", bad.jobBody(jid2, "fs", "true"))
	// SLURM 22.05's slurmrestd passes the token on to slurmctld, whose
	// refusal it answers as "Unspecified error", as when slurmctld is down.
	if msg := fmt.Sprint(m["message"]); code != http.StatusServiceUnavailable || !strings.Contains(msg, "slurmrestd at http://127.0.0.1:6820") || !strings.Contains(msg, "SLURM_JWT") {
		t.Errorf("POST with a bad token = %d %v; want 503 naming slurmrestd and the credentials", code, m)
	}
}
