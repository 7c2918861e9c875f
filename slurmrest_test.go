package main

// The REST client of slurmrest.go, against a stand-in slurmrestd serving
// recorded answers.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

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
	// foreign names the jobs that someone else submitted: mark leaves
	// them without pman's mark.
	foreign map[string]bool
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
			w.Write(f.mark(b, strings.Contains(key, "/job/")))
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// mark returns the recorded answer b with its jobs made pman's, as pman
// submits them (slurmJobInfo.own): a job read by id (byID) is named as the
// last submission was, and every job is marked with its name, unless the
// name is one of f.foreign (a job someone else submitted under that name).
func (f *fakeSlurmrestd) mark(b []byte, byID bool) []byte {
	var ans map[string]any
	if json.Unmarshal(b, &ans) != nil {
		return b
	}
	jobs, _ := ans["jobs"].([]any)
	if len(jobs) == 0 {
		return b
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	last := ""
	for _, r := range f.reqs {
		if job, ok := r.Body["job"].(map[string]any); ok && r.Method == "POST" {
			last, _ = job["name"].(string)
		}
	}
	for _, j := range jobs {
		job, _ := j.(map[string]any)
		if job == nil {
			continue
		}
		if byID && last != "" {
			job["name"] = last
		}
		name, _ := job["name"].(string)
		if !f.foreign[name] {
			job["comment"] = slurmMark(name)
		}
	}
	out, err := json.Marshal(ans)
	if err != nil {
		return b
	}
	return out
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
// STOREBASE.
func newFakeSlurmSched(t *testing.T, f *fakeSlurmrestd, extra ...string) (*slurmSched, string) {
	t.Helper()
	store := fakeStore(t)
	env := map[string]string{"CONTAINER_ENV": "slurm", "STOREBASE": store, "SLURMRESTD_URL": f.srv.URL,
		"SLURM_JWT": "tok-123", "SLURM_USER": testUser(t), "SLURM_PARTITION": "batch", "TIMELIMIT_MINUTES": "30", "JOB_LOGS_TAIL": "2"}
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

// fakeStore returns a fresh STOREBASE that holds fakeJob's input
// directory, so that a create gets as far as slurmrestd.
func fakeStore(t *testing.T) string {
	t.Helper()
	store := t.TempDir()
	if err := os.MkdirAll(filepath.Join(store, "f", "in"), 0o777); err != nil {
		t.Fatal(err)
	}
	return store
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
			if h.Get("X-SLURM-USER-TOKEN") != "tok-123" || h.Get("X-SLURM-USER-NAME") != testUser(t) {
				t.Errorf("headers %v; want the token and the user", h)
			}
			job, _ := subs[0].Body["job"].(map[string]any)
			js, _ := json.Marshal(job)
			want := map[string]any{"name": "jid-1", "comment": jidLabel + "=jid-1", "partition": "batch", "tasks": 2.0, "cpus_per_task": 2.0, "requeue": false,
				"current_working_directory": filepath.Join(store, ".pman/slurm/jid-1/run")}
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
			os.WriteFile(filepath.Join(store, ".pman/slurm/jid-1/run/job.log"), []byte("a\nb\nc\n"), 0o644)
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
				t.Fatalf("hopeless job = %+v, %v; want finishedWithError naming PartitionConfig", j, err)
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
	store := fakeStore(t)
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
