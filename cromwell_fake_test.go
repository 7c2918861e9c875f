package main

// The fake Cromwells of the tests: a server that records what pman sends
// and answers as a test says, and a stateful one that keeps workflows and
// answers with the recorded responses of a real Cromwell (testdata/cromwell).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ---- recorded responses ---------------------------------------------------

func cwRecorded(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "cromwell", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func cwMetadata(t testing.TB, name string) *metadata {
	t.Helper()
	var md metadata
	if err := json.Unmarshal(cwRecorded(t, name), &md); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return &md
}

// ---- a fake Cromwell fed with the recordings ---------------------------------

// cwRequest is what the fake received.
type cwRequest struct {
	method, path, contentType string
	body                      []byte
}

func cwRecordingServer(t *testing.T, h func(w http.ResponseWriter, r *http.Request, body []byte)) (*httptest.Server, func() []cwRequest) {
	var mu sync.Mutex
	var got []cwRequest
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, cwRequest{r.Method, r.URL.Path, r.Header.Get("Content-Type"), b})
		mu.Unlock()
		h(w, r, b)
	}))
	t.Cleanup(srv.Close)
	return srv, func() []cwRequest {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}
}

func testCromwell(t *testing.T, url string, cfg *config) *cromwellSched {
	t.Helper()
	if cfg == nil {
		cfg = &config{}
	}
	cfg.CromwellURL = secretURL(url)
	if cfg.StoreBase == "" {
		cfg.StoreBase = "/storebase"
	}
	if cfg.TimelimitMinutes == 0 {
		cfg.TimelimitMinutes = 5
	}
	s, err := newCromwell(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	c := s.(*cromwellSched)
	c.visibleWait, c.pollEvery = 200*time.Millisecond, 10*time.Millisecond
	return c
}

// multipartParts reads a submit body into its parts.
func multipartParts(t *testing.T, contentType string, body []byte) map[string]string {
	t.Helper()
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/form-data" {
		t.Fatalf("submit Content-Type %q: want multipart/form-data (%v)", contentType, err)
	}
	parts := map[string]string{}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("multipart: %v", err)
		}
		if p.FileName() == "" {
			t.Errorf("part %q is not a file part", p.FormName())
		}
		b, _ := io.ReadAll(p)
		parts[p.FormName()] = string(b)
	}
	return parts
}

// ---- a stateful fake Cromwell, end to end through run ------------------------

// fakeCromwell keeps workflows and answers with the recorded responses,
// patched with each workflow's id, status, WDL and labels.
type fakeCromwell struct {
	t     testing.TB
	store string // where the fake's executions write stdout/stderr
	srv   *httptest.Server

	// before, when set, runs before each request is served (outside mu):
	// a slow or hanging Cromwell.
	before func(r *http.Request)

	mu        sync.Mutex
	workflows []*fakeWorkflow
	aborted   []string
	// indexLag is how many queries a new workflow stays unlisted for, as
	// Cromwell's summarizer lags behind its submits.
	indexLag int
	// logsAt, when set, is the directory the logs answer puts every
	// task's stdout and stderr in, instead of its execution directory: a
	// Cromwell whose execution root pman cannot read.
	logsAt string
}

type fakeWorkflow struct {
	id, jid, wdl, status string
	labels               map[string]string
	submission           string
	unlisted             int  // queries left before the query lists it
	archived             bool // metadata and logs answer the archive notice
}

// newFakeCromwell returns a fake Cromwell whose executions lie in store;
// store holds fakeInput, the input directory of the tests' own jobSpecs.
func newFakeCromwell(t testing.TB, store string) *fakeCromwell {
	if store != "" {
		if err := os.MkdirAll(filepath.Join(store, fakeInput), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f := &fakeCromwell{t: t, store: store}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// fakeInput is the input directory of jobSpecs that tests give create
// directly.
const fakeInput = "a"

func (f *fakeCromwell) byJID(jid string) *fakeWorkflow {
	for i := len(f.workflows) - 1; i >= 0; i-- {
		if f.workflows[i].jid == jid {
			return f.workflows[i]
		}
	}
	return nil
}

// advance moves jid's workflow to status, as Cromwell and SLURM would.
func (f *fakeCromwell) advance(jid, status string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := f.byJID(jid)
	if w == nil {
		f.t.Fatalf("fake Cromwell has no workflow for %s", jid)
	}
	w.status = status
}

func (f *fakeCromwell) execDir(id string) string {
	return filepath.Join(f.store, "cromwell-executions", "ChRISJob", id, "call-plugin_instance", "execution")
}

func (f *fakeCromwell) serve(w http.ResponseWriter, r *http.Request) {
	if f.before != nil {
		f.before(r)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	reply := func(v any) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(v)
	}
	p := strings.TrimPrefix(r.URL.Path, "/api/workflows/v1")
	switch {
	case r.Method == "POST" && p == "":
		if err := r.ParseMultipartForm(1 << 20); err != nil {
			http.Error(w, `{"status": "fail", "message": "not multipart"}`, http.StatusBadRequest)
			return
		}
		src, lab := cwFormFile(r, "workflowSource"), cwFormFile(r, "labels")
		var labels map[string]string
		if src == "" || json.Unmarshal([]byte(lab), &labels) != nil || labels[cromwellJIDLabel] == "" {
			http.Error(w, `{"status": "fail", "message": "Error(s): no workflowSource or bad labels"}`, http.StatusBadRequest)
			return
		}
		wf := &fakeWorkflow{id: fmt.Sprintf("00000000-0000-4000-8000-%012d", len(f.workflows)+1), jid: labels[cromwellJIDLabel], labels: labels, wdl: src, status: "Submitted",
			submission: fmt.Sprintf("2026-01-01T00:00:%02d.000Z", len(f.workflows)), unlisted: f.indexLag}
		f.workflows = append(f.workflows, wf)
		w.WriteHeader(http.StatusCreated)
		reply(map[string]string{"id": wf.id, "status": "Submitted"})
	case r.Method == "POST" && p == "/query":
		var q []map[string]string
		if err := json.NewDecoder(r.Body).Decode(&q); err != nil {
			http.Error(w, `{"status": "fail", "message": "bad query"}`, http.StatusBadRequest)
			return
		}
		var k, v string
		withLabels := false
		for _, crit := range q {
			if l, ok := crit["label"]; ok {
				k, v, _ = strings.Cut(l, ":")
			}
			withLabels = withLabels || crit["additionalQueryResultFields"] == "labels"
		}
		var ans map[string]any
		json.Unmarshal(cwRecorded(f.t, "query-found.json"), &ans)
		template := ans["results"].([]any)[0].(map[string]any)
		results := []any{}
		for _, wf := range f.workflows {
			if wf.unlisted > 0 {
				wf.unlisted--
				continue
			}
			if k == cromwellJIDLabel && wf.jid == v {
				res := maps.Clone(template)
				res["id"], res["status"], res["submission"] = wf.id, wf.status, wf.submission
				if withLabels {
					res["labels"] = f.labelsOf(wf)
				}
				results = append([]any{res}, results...)
			}
		}
		ans["results"], ans["totalResultsCount"] = results, len(results)
		reply(ans)
	default:
		parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
		var wf *fakeWorkflow
		for _, x := range f.workflows {
			if len(parts) == 2 && x.id == parts[0] {
				wf = x
			}
		}
		if wf == nil {
			http.Error(w, `{"status": "fail", "message": "Unrecognized workflow ID"}`, http.StatusNotFound)
			return
		}
		if wf.archived && r.Method == "GET" {
			// Cromwell's answer once its archiver deleted the metadata
			// (MetadataRouteSupport.processMetadataArchivedResponse).
			reply(map[string]string{"id": wf.id, "metadataArchiveStatus": "ArchivedAndDeleted",
				"message": "Cromwell has archived this workflow's metadata according to the lifecycle policy. The workflow completed at 2026-01-01T01:00:00Z, which was 2592000000 milliseconds ago. It is available in the archive bucket, or via a support request in the case of a managed instance."})
			return
		}
		switch r.Method + " " + parts[1] {
		case "GET metadata":
			reply(f.metadataOf(wf))
		case "GET logs":
			d := f.execDir(wf.id)
			if f.logsAt != "" {
				d = f.logsAt
			}
			reply(map[string]any{"id": wf.id, "calls": map[string]any{cromwellTask: []any{
				map[string]any{"stdout": filepath.Join(d, "stdout"), "stderr": filepath.Join(d, "stderr"), "attempt": 1, "shardIndex": -1}}}})
		case "PATCH labels":
			var add map[string]string
			if r.Header.Get("Content-Type") != "application/json" || json.NewDecoder(r.Body).Decode(&add) != nil || len(add) == 0 {
				http.Error(w, `{"status": "fail", "message": "Invalid labels"}`, http.StatusBadRequest)
				return
			}
			maps.Copy(wf.labels, add)
			reply(map[string]any{"id": wf.id, "labels": f.labelsOf(wf)})
		case "POST abort":
			if wf.status == "Succeeded" || wf.status == "Failed" || wf.status == "Aborted" {
				// Cromwell 30 and later (WorkflowStoreEngineActor).
				http.Error(w, fmt.Sprintf(`{"status": "error", "message": "Couldn't abort %s because no workflow with that ID is in progress"}`, wf.id), http.StatusNotFound)
				return
			}
			f.aborted = append(f.aborted, wf.id)
			wf.status = "Aborted"
			reply(map[string]string{"id": wf.id, "status": "Aborting"})
		default:
			http.NotFound(w, r)
		}
	}
}

func cwFormFile(r *http.Request, name string) string {
	fh := r.MultipartForm.File[name]
	if len(fh) != 1 {
		return ""
	}
	fd, err := fh[0].Open()
	if err != nil {
		return ""
	}
	defer fd.Close()
	b, _ := io.ReadAll(fd)
	return string(b)
}

// metadataOf is the recorded metadata of a workflow in wf's status, with
// wf's own id, WDL, labels and log paths, and the return code its task
// wrote to the rc file of its execution directory, as Cromwell reads it.
func (f *fakeCromwell) metadataOf(wf *fakeWorkflow) map[string]any {
	file := map[string]string{
		"Submitted": "metadata-notstarted.json",
		"Running":   "metadata-running.json",
		"Succeeded": "metadata-done.json",
		"Failed":    "metadata-failed.json",
		"Aborted":   "metadata-running.json",
	}[wf.status]
	var md map[string]any
	if err := json.Unmarshal(cwRecorded(f.t, file), &md); err != nil {
		f.t.Fatal(err)
	}
	md["id"], md["status"] = wf.id, wf.status
	md["labels"] = f.labelsOf(wf)
	md["submittedFiles"].(map[string]any)["workflow"] = wf.wdl
	if wf.status == "Aborted" {
		md["end"] = "2026-01-01T01:00:00.000Z"
	}
	if calls, ok := md["calls"].(map[string]any)[cromwellTask].([]any); ok {
		d := f.execDir(wf.id)
		c := calls[0].(map[string]any)
		c["stdout"], c["stderr"] = filepath.Join(d, "stdout"), filepath.Join(d, "stderr")
		if wf.status == "Aborted" {
			c["executionStatus"] = "Aborted"
		}
		if b, err := os.ReadFile(filepath.Join(d, "rc")); err == nil && wf.status != "Running" {
			rc, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				f.t.Errorf("rc file of %s: %v", wf.id, err)
			}
			c["returnCode"] = rc
			if wf.status == "Failed" {
				c["failures"] = []any{map[string]any{"causedBy": []any{}, "message": fmt.Sprintf(
					"Job ChRISJob.plugin_instance:NA:1 exited with return code %d which has not been declared as a valid return code. See 'continueOnReturnCode' runtime attribute for more details.", rc)}}
			}
		}
	}
	return md
}

// labelsOf returns wf's labels as Cromwell answers them: those submitted or
// added, and the one Cromwell gives every workflow.
func (f *fakeCromwell) labelsOf(wf *fakeWorkflow) map[string]string {
	labels := maps.Clone(wf.labels)
	labels["cromwell-workflow-id"] = "cromwell-" + wf.id
	return labels
}

func (f *fakeCromwell) abortedIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.aborted)
}

func (f *fakeCromwell) submissions() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.workflows)
}

// lockedBuffer is a log destination tests can read while the server writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// cwServer serves the API over c, as run does, logging into the buffer.
func cwServer(t *testing.T, cromwellURL string, cfg *config) (string, *cromwellSched, *lockedBuffer) {
	t.Helper()
	var logs lockedBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	if cfg == nil {
		cfg = &config{}
	}
	cfg.ContainerEnv, cfg.StorageType, cfg.RemoveJobs, cfg.CromwellURL = "cromwell", "host", true, secretURL(cromwellURL)
	if cfg.StoreBase == "" {
		cfg.StoreBase = t.TempDir()
	}
	cfg.TimelimitMinutes = 5
	s, err := newCromwell(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	c := s.(*cromwellSched)
	c.visibleWait, c.pollEvery = 200*time.Millisecond, 10*time.Millisecond
	srv := httptest.NewServer(newMux(cfg, c, log))
	t.Cleanup(srv.Close)
	return srv.URL + "/api/v1/", c, &logs
}
