package main

import (
	"bytes"
	"context"
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
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
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

func TestCheckLabel(t *testing.T) {
	tests := []struct {
		key, value string
		ok         bool
	}{
		{cromwellJIDLabel, "chris-jid-1", true},
		{cromwellJIDLabel, strings.Repeat("a", 255), true},
		{cromwellJIDLabel, strings.Repeat("a", 256), false},
		{cromwellJIDLabel, strings.Repeat("é", 255), true},  // 255 UTF-16 units, 510 bytes
		{cromwellJIDLabel, strings.Repeat("😀", 128), false}, // 256 UTF-16 units
		{"", "v", false},
		{strings.Repeat("k", 256), "v", false},
		{"k", "", true},
	}
	for _, tt := range tests {
		if msg := checkLabel(tt.key, tt.value); (msg == "") != tt.ok {
			t.Errorf("checkLabel(%.20q, %.20q) = %q; want ok=%v", tt.key, tt.value, msg, tt.ok)
		}
	}
}

func TestSplitTail(t *testing.T) {
	tests := []struct {
		stdout, stderr string
		n              int
		want           string
	}{
		{"o1\no2\n", "e1\n", 10, "[pman] stdout:\no1\no2\n[pman] stderr:\ne1\n"},
		{"o1\no2", "", 10, "[pman] stdout:\no1\no2\n[pman] stderr:\n"},
		{"", "e1\n", 10, "[pman] stdout:\n[pman] stderr:\ne1\n"},
		{"", "", 10, ""},
		{"o1\n", "e1\n", 0, ""},
		// A chatty stderr gets half; stdout keeps the rest.
		{"o1\no2\no3\no4\n", "e1\ne2\ne3\ne4\ne5\n", 4,
			"[pman] stdout, last 2 of 4 lines:\no3\no4\n[pman] stderr, last 2 of 5 lines:\ne4\ne5\n"},
		// An odd budget leans to stdout.
		{"o1\no2\no3\n", "e1\ne2\ne3\n", 3,
			"[pman] stdout, last 2 of 3 lines:\no2\no3\n[pman] stderr, last 1 of 3 lines:\ne3\n"},
		// What one stream does not use, the other may.
		{"o1\n", "e1\ne2\ne3\ne4\n", 4, "[pman] stdout:\no1\n[pman] stderr, last 3 of 4 lines:\ne2\ne3\ne4\n"},
		{"o1\no2\no3\no4\n", "e1\n", 4, "[pman] stdout, last 3 of 4 lines:\no2\no3\no4\n[pman] stderr:\ne1\n"},
		{"o1\no2\n", "e1\ne2\n", 1, "[pman] stdout, last 1 of 2 lines:\no2\n[pman] stderr, last 0 of 2 lines:\n"},
	}
	for _, tt := range tests {
		if got := splitTail(tt.stdout, tt.stderr, tt.n); got != tt.want {
			t.Errorf("splitTail(%q, %q, %d) = %q; want %q", tt.stdout, tt.stderr, tt.n, got, tt.want)
		}
	}
}

// ---- status -----------------------------------------------------------------

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
		got, msg := workflowStatus("wf-1", tt.status, tt.call, tt.md, 4000)
		if got != tt.want || !strings.Contains(msg, tt.msgHas) {
			t.Errorf("workflowStatus(%q, %+v) = %q, %q; want %q with %q", tt.status, tt.call, got, msg, tt.want, tt.msgHas)
		}
	}
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
	cfg.CromwellURL = url
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

func TestCromwellCreateSendsWorkflowAndLabels(t *testing.T) {
	const id = "70d639fc-d99c-4af9-9d90-519f32a3dc9d"
	queries := 0
	srv, received := cwRecordingServer(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		switch r.Method + " " + r.URL.Path {
		case "POST /api/workflows/v1/query":
			queries++
			if queries == 1 { // the duplicate check
				w.Write([]byte(`{"results": [], "totalResultsCount": 0}`))
				return
			}
			// The recorded answer, listing the new workflow.
			io.WriteString(w, strings.Replace(string(cwRecorded(t, "query-found.json")), "69bec3cb-c2bc-46d3-96a7-8eb15fca2755", id, 1))
		case "POST /api/workflows/v1":
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, `{"id": %q, "status": "Submitted"}`, id)
		case "GET /api/workflows/v1/" + id + "/metadata":
			w.Write(cwRecorded(t, "metadata-notstarted.json"))
		default:
			http.NotFound(w, r)
		}
	})
	c := testCromwell(t, srv.URL+"/", &config{TimelimitMinutes: 50, JobLabels: map[string]string{"site": "bch"}})
	spec := &jobSpec{JID: "vitamin-d", Image: "ghcr.io/fnndsc/pl-salute-the-sun:latest", Workers: 1, CPULimit: 2000, MemoryLimit: 5678, GPULimit: 2,
		Cmd: []string{"/usr/local/bin/python", "/usr/local/bin/whatsgood", "--day", "sunny day", incomingDir, outgoingDir}, InputDir: "key-vitamin-d/incoming", OutputDir: "key-vitamin-d/outgoing"}
	j, err := c.create(context.Background(), spec)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if j.Status != statusNotStarted || j.JID != "vitamin-d" || j.Image != spec.Image {
		t.Errorf("create = %+v; want notstarted vitamin-d with image %s", j, spec.Image)
	}

	reqs := received()
	var paths []string
	for _, r := range reqs {
		paths = append(paths, r.method+" "+r.path)
	}
	want := []string{"POST /api/workflows/v1/query", "POST /api/workflows/v1", "POST /api/workflows/v1/query", "GET /api/workflows/v1/" + id + "/metadata"}
	if !slices.Equal(paths, want) {
		t.Fatalf("Cromwell received %q; want %q", paths, want)
	}
	var query []map[string]string
	if err := json.Unmarshal(reqs[0].body, &query); err != nil || !reflect.DeepEqual(query, []map[string]string{{"label": "org.chrisproject.pman.name:vitamin-d"}, {"includeSubworkflows": "false"}}) {
		t.Errorf("query body %s (%v); want the jid's label and no subworkflows", reqs[0].body, err)
	}
	if reqs[0].contentType != "application/json" {
		t.Errorf("query Content-Type %q; want application/json", reqs[0].contentType)
	}
	parts := multipartParts(t, reqs[1].contentType, reqs[1].body)
	var labels map[string]string
	if err := json.Unmarshal([]byte(parts["labels"]), &labels); err != nil || !reflect.DeepEqual(labels, map[string]string{cromwellJIDLabel: "vitamin-d", jidLabel: "vitamin-d", "site": "bch"}) {
		t.Errorf("labels part %q (%v); want pman 6's jid label, jobLabels' and JOB_LABELS", parts["labels"], err)
	}
	var options map[string]any
	if err := json.Unmarshal([]byte(parts["workflowOptions"]), &options); err != nil || !reflect.DeepEqual(options, map[string]any{"read_from_cache": false, "write_to_cache": false}) {
		t.Errorf("workflowOptions part %q (%v); want call caching off", parts["workflowOptions"], err)
	}
	if names := slices.Sorted(maps.Keys(parts)); !slices.Equal(names, []string{"labels", "workflowOptions", "workflowSource"}) {
		t.Errorf("submit parts %q; want labels, workflowOptions, workflowSource", names)
	}
	image, argv, err := parseWDL(parts["workflowSource"])
	if err != nil || image != spec.Image || !slices.Equal(argv, spec.Cmd) {
		t.Errorf("submitted WDL reads back as %q, %q (%v); want %q, %q\n%s", image, argv, err, spec.Image, spec.Cmd, parts["workflowSource"])
	}
	if got, want := runtimeSection(t, parts["workflowSource"]), withBindDirs(runtimeSection(t, cwMetadata(t, "metadata-notstarted.json").SubmittedFiles.Workflow), "/storebase/key-vitamin-d", true); got != want {
		t.Errorf("submitted runtime section:\n%s\nwant:\n%s", got, want)
	}
}

func TestCromwellCreateRefusals(t *testing.T) {
	tests := []struct {
		name       string
		query      string // answer to the duplicate check
		submitCode int
		wantKind   errKind
		wantCode   int
		wantSubmit bool
	}{
		{"duplicate jid", strings.Replace(string(cwRecorded(t, "query-found.json")), `"Succeeded"`, `"Running"`, 1), 0, eConflict, 0, false},
		{"duplicate jid, being aborted", strings.Replace(string(cwRecorded(t, "query-found.json")), `"Succeeded"`, `"Aborting"`, 1), 0, eConflict, 0, false},
		{"jid of an ended workflow", string(cwRecorded(t, "query-found.json")), http.StatusCreated, eUnavailable, 0, true}, // submit answers no id
		{"Cromwell's 400", `{"results": []}`, http.StatusBadRequest, eRefused, http.StatusBadRequest, true},
		{"Cromwell's 500", `{"results": []}`, http.StatusInternalServerError, eUnavailable, 0, true},
		{"query's 500", "", 0, eUnavailable, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			submitted := false
			srv, _ := cwRecordingServer(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
				switch r.URL.Path {
				case "/api/workflows/v1/query":
					if tt.query == "" {
						http.Error(w, `{"status": "error", "message": "database down"}`, http.StatusInternalServerError)
						return
					}
					io.WriteString(w, tt.query)
				case "/api/workflows/v1":
					submitted = true
					w.WriteHeader(tt.submitCode)
					io.WriteString(w, `{"status": "fail", "message": "Error(s): Workflow input processing failed"}`)
				default:
					http.NotFound(w, r)
				}
			})
			c := testCromwell(t, srv.URL, nil)
			_, err := c.create(context.Background(), &jobSpec{JID: "j", Image: "img", Workers: 1, Cmd: []string{"x"}, InputDir: "key-j/incoming", OutputDir: "key-j/outgoing"})
			ae, ok := err.(*apiError)
			if !ok || ae.kind != tt.wantKind || tt.wantCode != 0 && ae.code != tt.wantCode {
				t.Fatalf("create = %v; want kind %d code %d", err, tt.wantKind, tt.wantCode)
			}
			if !strings.Contains(ae.msg, "Cromwell") && ae.kind != eConflict {
				t.Errorf("message %q does not name Cromwell", ae.msg)
			}
			if submitted != tt.wantSubmit {
				t.Errorf("submitted = %v; want %v", submitted, tt.wantSubmit)
			}
		})
	}
}

// TestCromwellMissingInput: where pman sees STOREBASE, a missing input
// directory is a 400 on input_dir before Cromwell is asked anything.
func TestCromwellMissingInput(t *testing.T) {
	srv, received := cwRecordingServer(t, func(w http.ResponseWriter, r *http.Request, body []byte) { http.NotFound(w, r) })
	base, c, _ := cwServer(t, srv.URL, nil)
	b := cromwellJobBody("cw-noinput")
	b["input_dir"] = "home/chris/not-there"
	code, m := call(t, "POST", base, b)
	if fields, _ := m["message"].(map[string]any); code != 400 || !strings.Contains(fmt.Sprint(fields["input_dir"]), filepath.Join(c.cfg.StoreBase, "home/chris/not-there")) {
		t.Errorf("POST = %d %v; want 400 on input_dir naming it", code, m)
	}
	if n := len(received()); n != 0 {
		t.Errorf("Cromwell received %d requests; want none", n)
	}
}

func TestCromwellCreateJIDTooLongForALabel(t *testing.T) {
	srv, received := cwRecordingServer(t, func(w http.ResponseWriter, r *http.Request, body []byte) { http.NotFound(w, r) })
	base, _, _ := cwServer(t, srv.URL, nil)
	jid := strings.Repeat("j", 256)
	code, m := call(t, "POST", base, cromwellJobBody(jid))
	// checkJID's bound (253 bytes) lies inside Cromwell's (255 UTF-16
	// units): the common rule refuses it first.
	if fields, _ := m["message"].(map[string]any); code != 400 || fields["jid"] == nil {
		t.Errorf("POST of a 256-char jid = %d %v; want a 400 on jid", code, m)
	}
	for _, method := range []string{"GET", "DELETE"} {
		if code, m := call(t, method, base+jid+"/", nil); code != 404 || !strings.Contains(fmt.Sprint(m["message"]), "no job") {
			t.Errorf("%s of a 256-char jid = %d %v; want a 404 saying why", method, code, m)
		}
	}
	if n := len(received()); n != 0 {
		t.Errorf("Cromwell received %d requests; want none", n)
	}
}

// TestCromwellCreateNotVisible: when Cromwell's query never finds the new
// workflow within the bound, create still answers, from the submitted WDL.
func TestCromwellCreateNotVisible(t *testing.T) {
	queries := 0
	srv, _ := cwRecordingServer(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		switch r.URL.Path {
		case "/api/workflows/v1/query":
			queries++
			io.WriteString(w, `{"results": [], "totalResultsCount": 0}`)
		case "/api/workflows/v1":
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, `{"id": "wf-new", "status": "Submitted"}`)
		default:
			http.NotFound(w, r) // metadata of wf-new: Cromwell does not know it yet
		}
	})
	c := testCromwell(t, srv.URL, nil)
	j, err := c.create(context.Background(), &jobSpec{JID: "j", Image: "img", Workers: 1, Cmd: []string{"prog", "a b", outgoingDir}, InputDir: "key-j/incoming", OutputDir: "key-j/outgoing"})
	if err != nil {
		t.Fatal(err)
	}
	if j.Status != statusNotStarted || j.Image != "img" || j.Cmd != "prog a b /share/outgoing" || !strings.Contains(j.Message, "waiting") {
		t.Errorf("create = %+v; want notstarted from the submitted WDL, waiting", j)
	}
	if queries < 3 {
		t.Errorf("%d queries; want the duplicate check and several polls", queries)
	}
}

func TestCromwellGetAndRemove(t *testing.T) {
	const id = "69bec3cb-c2bc-46d3-96a7-8eb15fca2755"
	metadataFile := "metadata-running.json"
	queryAnswer := string(cwRecorded(t, "query-found.json"))
	srv, received := cwRecordingServer(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		switch r.Method + " " + r.URL.Path {
		case "POST /api/workflows/v1/query":
			io.WriteString(w, queryAnswer)
		case "GET /api/workflows/v1/" + id + "/metadata":
			w.Write(cwRecorded(t, metadataFile))
		case "GET /api/workflows/v1/" + id + "/logs":
			fmt.Fprintf(w, `{"calls": {"ChRISJob.plugin_instance": [{"stdout": "/cromwell-executions/x/stdout", "stderr": "/cromwell-executions/x/stderr", "attempt": 1, "shardIndex": -1}]}, "id": %q}`, id)
		case "POST /api/workflows/v1/" + id + "/abort":
			fmt.Fprintf(w, `{"id": %q, "status": "Aborting"}`, id)
		default:
			http.NotFound(w, r)
		}
	})
	c := testCromwell(t, srv.URL, &config{JobLogsTail: 10})
	j, err := c.get(context.Background(), "example-jid-1234")
	if err != nil {
		t.Fatal(err)
	}
	if j.Status != statusStarted || !strings.HasPrefix(j.Logs, logsUnreadable(nil)[:len("[pman] logs unavailable:")]) || !strings.Contains(j.Logs, "/cromwell-executions/x/stdout") || !j.LogsIncomplete {
		t.Errorf("get = %+v; want started, logs unavailable naming Cromwell's paths, LogsIncomplete", j)
	}

	// The recorded query answer says Succeeded: nothing to abort.
	if err := c.remove(context.Background(), "example-jid-1234"); err != nil {
		t.Fatal(err)
	}
	for _, r := range received() {
		if strings.HasSuffix(r.path, "/abort") {
			t.Errorf("remove of a Succeeded workflow sent %s %s", r.method, r.path)
		}
	}
	queryAnswer = strings.Replace(queryAnswer, `"Succeeded"`, `"Running"`, 1)
	if err := c.remove(context.Background(), "example-jid-1234"); err != nil {
		t.Fatal(err)
	}
	reqs := received()
	if last := reqs[len(reqs)-1]; last.method != "POST" || last.path != "/api/workflows/v1/"+id+"/abort" {
		t.Errorf("remove of a Running workflow ended with %s %s; want POST .../%s/abort", last.method, last.path, id)
	}

	queryAnswer = `{"results": [], "totalResultsCount": 0}`
	for name, err := range map[string]error{"get": func() error { _, err := c.get(context.Background(), "nope"); return err }(), "remove": c.remove(context.Background(), "nope")} {
		if ae, ok := err.(*apiError); !ok || ae.kind != eNotFound {
			t.Errorf("%s(unknown) = %v; want eNotFound", name, err)
		}
	}
}

func TestCromwellFindNewest(t *testing.T) {
	srv, _ := cwRecordingServer(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		io.WriteString(w, `{"results": [
			{"id": "old", "status": "Failed", "submission": "2022-01-23T22:27:11.839Z"},
			{"id": "new", "status": "Running", "submission": "2022-01-24T08:00:00Z"},
			{"id": "nearly", "status": "Running", "submission": "2022-01-24T07:59:59.999Z"},
			{"id": "mid", "status": "Succeeded", "submission": "2022-01-24T07:00:00.000Z"}], "totalResultsCount": 4}`)
	})
	c := testCromwell(t, srv.URL, nil)
	w, err := c.find(context.Background(), "j")
	if err != nil || w.ID != "new" {
		t.Errorf("find = %+v, %v; want the newest, \"new\"", w, err)
	}
}

func TestCromwellLogsFromStore(t *testing.T) {
	store := t.TempDir()
	dir := filepath.Join(store, "cromwell-executions", "ChRISJob", "wf", "call-plugin_instance")
	for _, d := range []string{"attempt-2/execution", "shard-0/execution", "shard-1/execution", "shard-1/attempt-2/execution"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
		os.WriteFile(filepath.Join(dir, d, "stdout"), []byte(d+" out1\n"+d+" out2\n"+d+" out3\n"), 0o644)
		os.WriteFile(filepath.Join(dir, d, "stderr"), []byte(d+" err1\n"), 0o644)
	}
	// The last shard's highest attempt, wherever it is listed.
	at := func(d string) string { return filepath.Join(dir, d) }
	answer := fmt.Sprintf(`{"calls": {"ChRISJob.plugin_instance": [
		{"stdout": "/elsewhere/stdout", "stderr": "/elsewhere/stderr", "shardIndex": 1, "attempt": 1},
		{"stdout": %q, "stderr": %q, "shardIndex": 1, "attempt": 2},
		{"stdout": %q, "stderr": %q, "shardIndex": 0, "attempt": 3}]}}`,
		at("shard-1/attempt-2/execution/stdout"), at("shard-1/attempt-2/execution/stderr"), at("shard-0/execution/stdout"), at("shard-0/execution/stderr"))
	srv, _ := cwRecordingServer(t, func(w http.ResponseWriter, r *http.Request, body []byte) { io.WriteString(w, answer) })
	const d = "shard-1/attempt-2/execution"
	tests := []struct {
		tail int
		want string
	}{
		{2, "[pman] stdout, last 1 of 3 lines:\n" + d + " out3\n[pman] stderr:\n" + d + " err1\n"},
		{100, "[pman] stdout:\n" + d + " out1\n" + d + " out2\n" + d + " out3\n[pman] stderr:\n" + d + " err1\n"},
	}
	for _, tt := range tests {
		c := testCromwell(t, srv.URL, &config{StoreBase: store, JobLogsTail: tt.tail})
		if got, err := c.logs(context.Background(), "wf"); err != nil || got != tt.want {
			t.Errorf("logs with JOB_LOGS_TAIL=%d = %q, %v; want %q", tt.tail, got, err, tt.want)
		}
	}
	// A path outside STOREBASE is named, never read.
	c := testCromwell(t, srv.URL, &config{StoreBase: filepath.Join(store, "other"), JobLogsTail: 10})
	if got, err := c.logs(context.Background(), "wf"); err == nil || strings.Contains(err.Error()+got, "out1") || !strings.Contains(err.Error(), at(d+"/stdout")) {
		t.Errorf("logs outside STOREBASE = %q, %v; want an error naming the paths, not the content", got, err)
	}
	// Files not written yet (SLURM has not started the job) are empty logs.
	answer = fmt.Sprintf(`{"calls": {"ChRISJob.plugin_instance": [{"stdout": %q, "stderr": %q, "shardIndex": -1, "attempt": 1}]}}`, at("none/stdout"), at("none/stderr"))
	c = testCromwell(t, srv.URL, &config{StoreBase: store, JobLogsTail: 10})
	if got, err := c.logs(context.Background(), "wf"); err != nil || got != "" {
		t.Errorf("logs not written yet = %q, %v; want empty", got, err)
	}
}

func TestCromwellUnavailable(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	url := srv.URL
	srv.Close()
	c := testCromwell(t, url, nil)
	_, err := c.get(context.Background(), "j")
	if ae, ok := err.(*apiError); !ok || ae.kind != eUnavailable || !strings.Contains(ae.msg, "Cromwell") || !strings.Contains(ae.msg, "unreachable") {
		t.Errorf("get with Cromwell down = %v; want eUnavailable naming Cromwell", err)
	}
	if err := c.remove(context.Background(), "j"); err == nil || err.(*apiError).kind != eUnavailable {
		t.Errorf("remove with Cromwell down = %v; want eUnavailable", err)
	}
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
	fail500   bool
	// indexLag is how many queries a new workflow stays unlisted for, as
	// Cromwell's summarizer lags behind its submits.
	indexLag int
}

type fakeWorkflow struct {
	id, jid, wdl, status string
	submission           string
	unlisted             int  // queries left before the query lists it
	archived             bool // metadata and logs answer the archive notice
}

func newFakeCromwell(t testing.TB, store string) *fakeCromwell {
	if store != "" {
		makeCromwellInput(t, store)
	}
	f := &fakeCromwell{t: t, store: store}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

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
	if f.fail500 {
		http.Error(w, `{"status": "error", "message": "Cromwell database is down"}`, http.StatusInternalServerError)
		return
	}
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
		wf := &fakeWorkflow{id: fmt.Sprintf("00000000-0000-4000-8000-%012d", len(f.workflows)+1), jid: labels[cromwellJIDLabel], wdl: src, status: "Submitted",
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
		for _, crit := range q {
			if l, ok := crit["label"]; ok {
				k, v, _ = strings.Cut(l, ":")
			}
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
			reply(map[string]any{"id": wf.id, "calls": map[string]any{cromwellTask: []any{
				map[string]any{"stdout": filepath.Join(d, "stdout"), "stderr": filepath.Join(d, "stderr"), "attempt": 1, "shardIndex": -1}}}})
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
// wf's own id, WDL, label and log paths.
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
	md["labels"] = map[string]any{"cromwell-workflow-id": "cromwell-" + wf.id, cromwellJIDLabel: wf.jid}
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
	}
	return md
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

// cromwellInputDir is cromwellJobBody's input directory.
const cromwellInputDir = "home/chris/feeds/feed_7/pl-a_1/data"

// makeCromwellInput makes cromwellInputDir in store: pman refuses a job
// whose input directory it sees missing (missingInput).
func makeCromwellInput(t testing.TB, store string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(store, cromwellInputDir), 0o755); err != nil {
		t.Fatal(err)
	}
}

func cromwellJobBody(jid string) map[string]any {
	return map[string]any{
		"jid": jid, "args": []string{"--greeting", "it's ~{x} ${HOME} >>>"}, "args_path_flags": []string{},
		"auid": "chris", "number_of_workers": 1, "cpu_limit": "1000", "memory_limit": 200, "gpu_limit": 0,
		"image": "fnndsc/pl-simplefsapp:2.0", "entrypoint": []string{"python3", "/usr/local/bin/simplefsapp"}, "type": "fs",
		"input_dir": cromwellInputDir, "output_dir": "home/chris/feeds/feed_7/pl-b_2/data",
	}
}

func TestCromwellEndToEnd(t *testing.T) {
	store := t.TempDir()
	fake := newFakeCromwell(t, store)
	base := startServer(t, map[string]string{
		"CONTAINER_ENV": "cromwell", "CROMWELL_URL": fake.srv.URL, "TIMELIMIT_MINUTES": "30",
		"SLURM_PARTITION": "short", "STOREBASE": store, "JOB_LOGS_TAIL": "2",
	}) + "/api/v1/"

	code, j := call(t, "POST", base, cromwellJobBody("chris-jid-7"))
	wantCmd := "python3 /usr/local/bin/simplefsapp --greeting it's ~{x} ${HOME} >>> /share/outgoing"
	if code != http.StatusCreated || j["status"] != statusNotStarted || j["cmd"] != wantCmd || j["image"] != "fnndsc/pl-simplefsapp:2.0" || j["logs"] != "" {
		t.Fatalf("POST = %d %v; want 201 notstarted with cmd %q", code, j, wantCmd)
	}
	checkJobShape(t, "POST", j)
	fake.mu.Lock()
	wdl := fake.workflows[0].wdl
	fake.mu.Unlock()
	rt := runtimeSection(t, wdl)
	if strings.Contains(rt, "sharedir") {
		t.Errorf("submitted runtime of a 2023+ layout has a sharedir:\n%s", rt)
	}
	for _, line := range []string{"inputdir: '" + store + "/home/chris/feeds/feed_7/pl-a_1/data'", "outputdir: '" + store + "/home/chris/feeds/feed_7/pl-b_2/data'",
		"timelimit: '30'", "slurm_partition: 'short'", "cpu: '1'", "memory: '210M'"} {
		if !strings.Contains(rt, "        "+line+"\n") {
			t.Errorf("submitted runtime lacks %q:\n%s", line, rt)
		}
	}

	code, j = call(t, "GET", base+"chris-jid-7/", nil)
	if code != http.StatusOK || j["status"] != statusNotStarted || j["cmd"] != wantCmd {
		t.Errorf("GET after submit = %d %v; want 200 notstarted", code, j)
	}

	fake.advance("chris-jid-7", "Running")
	fake.mu.Lock()
	d := fake.execDir(fake.workflows[0].id)
	fake.mu.Unlock()
	os.MkdirAll(d, 0o755)
	os.WriteFile(filepath.Join(d, "stdout"), []byte("starting\nworking\n"), 0o644)
	os.WriteFile(filepath.Join(d, "stderr"), []byte("warning: x\n"), 0o644)
	code, j = call(t, "GET", base+"chris-jid-7", nil)
	if code != http.StatusOK || j["status"] != statusStarted || j["logs"] != "[pman] stdout, last 1 of 2 lines:\nworking\n[pman] stderr:\nwarning: x\n" || j["timestamp"] != "" {
		t.Errorf("GET while Running = %d %v; want started, the last log line of each stream, no timestamp", code, j)
	}
	checkJobShape(t, "GET", j)

	fake.advance("chris-jid-7", "Succeeded")
	code, j = call(t, "GET", base+"chris-jid-7/", nil)
	if code != http.StatusOK || j["status"] != statusSuccess || j["timestamp"] != "2022-01-24T06:16:53.374Z" {
		t.Errorf("GET when Succeeded = %d %v; want finishedSuccessfully with the workflow's end", code, j)
	}

	// A finished job: DELETE answers 204 and aborts nothing.
	if code, j = call(t, "DELETE", base+"chris-jid-7/", nil); code != http.StatusNoContent || len(fake.abortedIDs()) != 0 {
		t.Errorf("DELETE of a finished job = %d %v, aborted %v; want 204, no abort", code, j, fake.abortedIDs())
	}

	// Its jid can be used again (a CUBE database reset); GET then answers
	// the new workflow, and the jid is taken while that one runs.
	if code, j = call(t, "POST", base, cromwellJobBody("chris-jid-7")); code != http.StatusCreated || fake.submissions() != 2 {
		t.Fatalf("POST of a finished job's jid = %d %v, %d submissions; want 201 and a second workflow", code, j, fake.submissions())
	}
	fake.mu.Lock()
	id7b := fake.byJID("chris-jid-7").id
	fake.mu.Unlock()
	if code, j = call(t, "GET", base+"chris-jid-7/", nil); code != http.StatusOK || j["status"] != statusNotStarted || !strings.Contains(fmt.Sprint(j["message"]), id7b) {
		t.Errorf("GET after resubmission = %d %v; want notstarted, of workflow %s", code, j, id7b)
	}
	if code, j = call(t, "POST", base, cromwellJobBody("chris-jid-7")); code != http.StatusConflict || fake.submissions() != 2 {
		t.Errorf("POST of a jid whose workflow has not ended = %d %v, %d submissions; want 409 and nothing submitted", code, j, fake.submissions())
	}
	fake.advance("chris-jid-7", "Succeeded")

	// A running job: DELETE aborts its workflow.
	if code, j = call(t, "POST", base, cromwellJobBody("chris-jid-8")); code != http.StatusCreated {
		t.Fatalf("POST chris-jid-8 = %d %v", code, j)
	}
	fake.advance("chris-jid-8", "Running")
	code, j = call(t, "DELETE", base+"chris-jid-8/", nil)
	fake.mu.Lock()
	id8 := fake.byJID("chris-jid-8").id
	fake.mu.Unlock()
	if code != http.StatusNoContent || !slices.Equal(fake.abortedIDs(), []string{id8}) {
		t.Errorf("DELETE of a running job = %d %v, aborted %v; want 204 and %s aborted", code, j, fake.abortedIDs(), id8)
	}
	if code, j = call(t, "GET", base+"chris-jid-8/", nil); code != http.StatusOK || j["status"] != statusError {
		t.Errorf("GET after abort = %d %v; want finishedWithError", code, j)
	}

	// A failing job.
	if code, j = call(t, "POST", base, cromwellJobBody("chris-jid-9")); code != http.StatusCreated {
		t.Fatalf("POST chris-jid-9 = %d %v", code, j)
	}
	fake.advance("chris-jid-9", "Failed")
	code, j = call(t, "GET", base+"chris-jid-9/", nil)
	if msg, _ := j["message"].(string); code != http.StatusOK || j["status"] != statusError || !strings.Contains(msg, "return code 1") {
		t.Errorf("GET of a failed job = %d %v; want finishedWithError saying why", code, j)
	}

	for _, method := range []string{"GET", "DELETE"} {
		if code, j = call(t, method, base+"no-such-jid/", nil); code != http.StatusNotFound {
			t.Errorf("%s of an unknown jid = %d %v; want 404", method, code, j)
		}
	}

	fake.mu.Lock()
	fake.fail500 = true
	fake.mu.Unlock()
	for _, tc := range []struct {
		method, url string
		body        any
	}{{"GET", base + "chris-jid-7/", nil}, {"POST", base, cromwellJobBody("chris-jid-10")}, {"DELETE", base + "chris-jid-9/", nil}} {
		code, j = call(t, tc.method, tc.url, tc.body)
		if msg, _ := j["message"].(string); code != http.StatusServiceUnavailable || !strings.Contains(msg, "Cromwell") || !strings.Contains(msg, "500") {
			t.Errorf("%s with Cromwell answering 500 = %d %v; want 503 naming Cromwell and its 500", tc.method, code, j)
		}
	}

	fake.srv.Close()
	code, j = call(t, "GET", base+"chris-jid-7/", nil)
	if msg, _ := j["message"].(string); code != http.StatusServiceUnavailable || !strings.Contains(msg, "unreachable") {
		t.Errorf("GET with Cromwell down = %d %v; want 503 saying Cromwell is unreachable", code, j)
	}
}

func TestCromwellEndToEndRefused(t *testing.T) {
	fake := newFakeCromwell(t, t.TempDir())
	base := startServer(t, map[string]string{
		"CONTAINER_ENV": "cromwell", "CROMWELL_URL": fake.srv.URL, "TIMELIMIT_MINUTES": "30", "STOREBASE": fake.store,
	}) + "/api/v1/"
	body := cromwellJobBody("bad-image")
	body["image"] = "fnndsc/pl-x ~{oops}"
	code, j := call(t, "POST", base, body)
	msg, _ := j["message"].(map[string]any)
	if code != http.StatusBadRequest || msg["image"] == nil || fake.submissions() != 0 {
		t.Errorf("POST with a bad image = %d %v, %d submissions; want 400 on image and nothing submitted", code, j, fake.submissions())
	}
}

func TestCromwellAbortAnswers(t *testing.T) {
	const cromwellErr = `{"status": "error", "message": "some reason"}`
	tests := []struct {
		code     int
		body     string
		wantKind errKind // -1: no error
		wantCode int
		msgHas   string
	}{
		{http.StatusOK, `{"id": "wf-1", "status": "Aborting"}`, -1, 0, ""},
		// Cromwell's own answers for a workflow that ended between our
		// query (whose index lags) and the abort: 404 since Cromwell 30,
		// 403 before.
		{http.StatusNotFound, `{"status": "error", "message": "Couldn't abort wf-1 because no workflow with that ID is in progress"}`, -1, 0, ""},
		{http.StatusForbidden, `{"status": "error", "message": "Couldn't abort because workflow is in terminal state"}`, -1, 0, ""},
		// The same codes from something else: a deployment mistake.
		{http.StatusNotFound, "<html>Not Found</html>", eUnavailable, 0, "path prefix"},
		{http.StatusForbidden, "<html>Forbidden</html>", eUnavailable, 0, "proxy"},
		{http.StatusBadRequest, cromwellErr, eRefused, http.StatusBadRequest, "some reason"},
		{http.StatusInternalServerError, cromwellErr, eUnavailable, 0, "some reason"},
	}
	for _, tt := range tests {
		aborts := 0
		srv, _ := cwRecordingServer(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
			if strings.HasSuffix(r.URL.Path, "/abort") {
				aborts++
				w.WriteHeader(tt.code)
				io.WriteString(w, tt.body)
				return
			}
			io.WriteString(w, `{"results": [{"id": "wf-1", "status": "Running", "submission": "2026-01-01T00:00:00Z"}]}`)
		})
		err := testCromwell(t, srv.URL, nil).remove(context.Background(), "j")
		ae, _ := err.(*apiError)
		switch {
		case aborts != 1:
			t.Errorf("abort answering %d %s: %d aborts sent; want 1", tt.code, tt.body, aborts)
		case tt.wantKind < 0 && err != nil:
			t.Errorf("remove with abort answering %d %s = %v; want nil", tt.code, tt.body, err)
		case tt.wantKind >= 0 && (ae == nil || ae.kind != tt.wantKind || tt.wantCode != 0 && ae.code != tt.wantCode || !strings.Contains(ae.msg, tt.msgHas)):
			t.Errorf("remove with abort answering %d %s = %v; want kind %d code %d saying %q", tt.code, tt.body, err, tt.wantKind, tt.wantCode, tt.msgHas)
		}
	}
}

func TestNewCromwellRefusesConfig(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, cfg := range []*config{
		{CromwellURL: "http://c", TimelimitMinutes: 5, StoreBase: "/store base"},
		{CromwellURL: "http://c", TimelimitMinutes: 5, StoreBase: "/store/~{x}"},
		{CromwellURL: "http://c", TimelimitMinutes: 5, StoreBase: "/s", JobLabels: map[string]string{"k": strings.Repeat("v", 256)}},
	} {
		if _, err := newCromwell(cfg, log); err == nil {
			t.Errorf("newCromwell(STOREBASE %q, JOB_LABELS %.20v) = nil error; want a configuration error", cfg.StoreBase, cfg.JobLabels)
		}
	}
	if _, err := newCromwell(&config{CromwellURL: "http://c", TimelimitMinutes: 5, StoreBase: "/s", JobLabels: map[string]string{"k": "v"}}, log); err != nil {
		t.Errorf("newCromwell(valid) = %v", err)
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
		j := (&cromwellSched{}).toJob("jid", tt.w, nil, "")
		if j.Status != tt.status || !strings.Contains(j.Message, tt.message) || j.Timestamp != tt.w.End {
			t.Errorf("toJob(%+v, no metadata) = %+v; want %s, message with %q, timestamp %q", tt.w, j, tt.status, tt.message, tt.w.End)
		}
	}
}

// ---- issue 9: what a real deployment meets -----------------------------------

func TestCromwellConfigChecks(t *testing.T) {
	base := []string{"CONTAINER_ENV", "cromwell", "CROMWELL_URL", "http://cromwell:8000", "TIMELIMIT_MINUTES", "5", "STOREBASE", "/sb"}
	for _, p := range []string{"short", "gpu,short"} {
		if c, err := loadConfig(env(append(base, "SLURM_PARTITION", p)...)); err != nil || c.SlurmPartition != p {
			t.Errorf("SLURM_PARTITION=%q: %v; want it taken", p, err)
		}
	}
	for _, p := range []string{"a b", "x;y", "it's", "~{x}", "a,,b"} {
		if _, err := loadConfig(env(append(base, "SLURM_PARTITION", p)...)); err == nil || !strings.Contains(err.Error(), "SLURM_PARTITION") {
			t.Errorf("SLURM_PARTITION=%q: %v; want a configuration error naming it", p, err)
		}
	}
	// A CROMWELL_URL that does not parse is named without its password.
	_, err := loadConfig(env(append(base[:2], "CROMWELL_URL", "http://chris:s3cret@[::1", "TIMELIMIT_MINUTES", "5", "STOREBASE", "/sb")...))
	if err == nil || !strings.Contains(err.Error(), "CROMWELL_URL") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("loadConfig(bad CROMWELL_URL with a password) = %v; want an error naming CROMWELL_URL, not the password", err)
	}
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
	cfg.ContainerEnv, cfg.StorageType, cfg.RemoveJobs, cfg.CromwellURL = "cromwell", "host", true, cromwellURL
	if cfg.StoreBase == "" {
		cfg.StoreBase = t.TempDir()
		makeCromwellInput(t, cfg.StoreBase)
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

// TestCromwellDeploymentMistakes: answers no Cromwell gives on a right
// URL become a 503 naming the likely mistake, for every method; the
// credentials of CROMWELL_URL appear in no answer and no log line.
func TestCromwellDeploymentMistakes(t *testing.T) {
	var followed sync.Mutex
	redirected := 0
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		followed.Lock()
		redirected++
		followed.Unlock()
	}))
	t.Cleanup(target.Close)
	targetURL := strings.Replace(target.URL, "http://", "https://chris:s3cret@", 1)
	tests := []struct {
		name   string
		answer func(w http.ResponseWriter, r *http.Request)
		msgHas []string
	}{
		{"401", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("WWW-Authenticate", `Basic realm="cromwell"`)
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
		}, []string{"401", "proxy"}},
		{"403 of a proxy", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "<html><body>403 Forbidden</body></html>", http.StatusForbidden)
		}, []string{"403", "proxy"}},
		{"404 without prefix", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) },
			[]string{"404", "path prefix", "/api/workflows/v1/query"}},
		{"404 of Cromwell on the query", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, `{"status": "fail", "message": "no such route"}`, http.StatusNotFound)
		}, []string{"404", "path prefix"}},
		{"301 to https", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, targetURL+r.URL.Path, http.StatusMovedPermanently)
		}, []string{"301", "redirecting to https://127.0.0.1:", "set CROMWELL_URL"}},
		{"307", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/cromwell"+r.URL.Path, http.StatusTemporaryRedirect)
		}, []string{"307", "/cromwell/api/workflows/v1/query"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := httptest.NewServer(http.HandlerFunc(tt.answer))
			t.Cleanup(fake.Close)
			cromwellURL := strings.Replace(fake.URL, "http://", "http://chris:s3cret@", 1)
			base, _, logs := cwServer(t, cromwellURL, nil)
			var answers []string
			for _, m := range []struct {
				method, url string
				body        any
			}{{"POST", base, cromwellJobBody("j-1")}, {"GET", base + "j-1/", nil}, {"DELETE", base + "j-1/", nil}} {
				code, j := call(t, m.method, m.url, m.body)
				msg := fmt.Sprint(j["message"])
				answers = append(answers, msg)
				if code != http.StatusServiceUnavailable {
					t.Errorf("%s = %d %v; want 503", m.method, code, j)
				}
				for _, s := range append(tt.msgHas, "Cromwell at http://127.0.0.1:") {
					if !strings.Contains(msg, s) {
						t.Errorf("%s: message %q; want it to say %q", m.method, msg, s)
					}
				}
			}
			for what, text := range map[string]string{"answers": strings.Join(answers, "\n"), "log": logs.String()} {
				if strings.Contains(text, "s3cret") || strings.Contains(text, "chris:") {
					t.Errorf("the %s show CROMWELL_URL's credentials:\n%s", what, text)
				}
			}
		})
	}
	if redirected != 0 {
		t.Errorf("the redirect target got %d requests; want none: pman follows no redirect", redirected)
	}

	// Unreachable, and a deadline: the credentials stay out too.
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	dead := strings.Replace(fake.URL, "http://", "http://chris:s3cret@", 1)
	fake.Close()
	base, _, logs := cwServer(t, dead, nil)
	code, j := call(t, "GET", base+"j-1/", nil)
	if msg := fmt.Sprint(j["message"]); code != http.StatusServiceUnavailable || !strings.Contains(msg, "unreachable") || strings.Contains(msg+logs.String(), "s3cret") {
		t.Errorf("GET with Cromwell down = %d %v; want 503 unreachable without the password (log: %s)", code, j, logs.String())
	}
}

// TestCromwellResubmitAfterAbort: a jid is taken only while its workflow
// has not ended; GET and DELETE act on the newest.
func TestCromwellResubmitAfterAbort(t *testing.T) {
	fake := newFakeCromwell(t, t.TempDir())
	base, _, _ := cwServer(t, fake.srv.URL, &config{StoreBase: fake.store})
	if code, j := call(t, "POST", base, cromwellJobBody("again")); code != http.StatusCreated {
		t.Fatalf("POST = %d %v", code, j)
	}
	fake.advance("again", "Running")
	if code, j := call(t, "POST", base, cromwellJobBody("again")); code != http.StatusConflict || fake.submissions() != 1 {
		t.Errorf("POST while Running = %d %v, %d submissions; want 409", code, j, fake.submissions())
	}
	if code, j := call(t, "DELETE", base+"again/", nil); code != http.StatusNoContent || len(fake.abortedIDs()) != 1 {
		t.Fatalf("DELETE = %d %v, aborted %v", code, j, fake.abortedIDs())
	}
	first := fake.abortedIDs()[0]
	if code, j := call(t, "POST", base, cromwellJobBody("again")); code != http.StatusCreated || fake.submissions() != 2 {
		t.Fatalf("POST after the abort = %d %v, %d submissions; want 201 and a second workflow", code, j, fake.submissions())
	}
	fake.mu.Lock()
	second := fake.byJID("again").id
	fake.mu.Unlock()
	code, j := call(t, "GET", base+"again/", nil)
	if msg := fmt.Sprint(j["message"]); code != http.StatusOK || j["status"] != statusNotStarted || !strings.Contains(msg, second) {
		t.Errorf("GET = %d %v; want the new workflow %s, notstarted", code, j, second)
	}
	fake.advance("again", "Running")
	if code, j := call(t, "DELETE", base+"again/", nil); code != http.StatusNoContent || !slices.Equal(fake.abortedIDs(), []string{first, second}) {
		t.Errorf("DELETE = %d %v, aborted %v; want the new workflow %s aborted", code, j, fake.abortedIDs(), second)
	}
	if code, j := call(t, "GET", base+"again/", nil); code != http.StatusOK || j["status"] != statusError || !strings.Contains(fmt.Sprint(j["message"]), second) {
		t.Errorf("GET after the second abort = %d %v; want finishedWithError of %s", code, j, second)
	}
}

// TestCromwellOneWorkflowPerJID: two POSTs of one jid at once submit one
// workflow, and so does a POST while Cromwell's query does not list the
// first one yet; GET finds the new workflow meanwhile.
func TestCromwellOneWorkflowPerJID(t *testing.T) {
	fake := newFakeCromwell(t, t.TempDir())
	inSubmit, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	fake.before = func(r *http.Request) {
		if r.Method == "POST" && r.URL.Path == "/api/workflows/v1" {
			once.Do(func() {
				close(inSubmit)
				<-release
			})
		}
	}
	fake.mu.Lock()
	fake.indexLag = 1 << 30 // never listed in this test
	fake.mu.Unlock()
	base, _, _ := cwServer(t, fake.srv.URL, &config{StoreBase: fake.store})

	first := make(chan int, 1)
	go func() {
		code, _ := call(t, "POST", base, cromwellJobBody("twice"))
		first <- code
	}()
	<-inSubmit // the first POST is submitting
	code, j := call(t, "POST", base, cromwellJobBody("twice"))
	if msg := fmt.Sprint(j["message"]); code != http.StatusConflict || !strings.Contains(msg, "being submitted") {
		t.Errorf("second POST during the first's submit = %d %v; want 409", code, j)
	}
	close(release)
	if code := <-first; code != http.StatusCreated {
		t.Fatalf("first POST = %d; want 201", code)
	}
	// The query still does not list it: the jid stays taken, and GET
	// answers the workflow submitted here.
	code, j = call(t, "POST", base, cromwellJobBody("twice"))
	if msg := fmt.Sprint(j["message"]); code != http.StatusConflict || !strings.Contains(msg, "does not list it yet") {
		t.Errorf("POST while the query does not list the workflow = %d %v; want 409", code, j)
	}
	fake.mu.Lock()
	id := fake.byJID("twice").id
	fake.mu.Unlock()
	if code, j := call(t, "GET", base+"twice/", nil); code != http.StatusOK || j["status"] != statusNotStarted || !strings.Contains(fmt.Sprint(j["message"]), id) {
		t.Errorf("GET while unlisted = %d %v; want notstarted of %s", code, j, id)
	}
	if n := fake.submissions(); n != 1 {
		t.Errorf("%d workflows submitted; want 1", n)
	}
	// Once listed, its status decides.
	fake.mu.Lock()
	fake.byJID("twice").unlisted = 0
	fake.mu.Unlock()
	fake.advance("twice", "Failed")
	if code, j := call(t, "POST", base, cromwellJobBody("twice")); code != http.StatusCreated || fake.submissions() != 2 {
		t.Errorf("POST once the workflow is listed and Failed = %d %v, %d submissions; want 201", code, j, fake.submissions())
	}
}

// TestCromwellDeadline: a POST ends within its deadline however slow
// Cromwell is. (How long it takes is measured by BenchmarkCromwellSlowPost;
// here the hang guard only tells a bounded POST from one that is not.)
func TestCromwellDeadline(t *testing.T) {
	spec := func() *jobSpec {
		return &jobSpec{JID: "slow", Image: "img", Workers: 1, Cmd: []string{"x", outgoingDir}, InputDir: "key-slow/incoming", OutputDir: "key-slow/outgoing"}
	}
	create := func(c *cromwellSched) (*job, error) {
		type result struct {
			j   *job
			err error
		}
		done := make(chan result, 1)
		go func() {
			j, err := c.create(context.Background(), spec())
			done <- result{j, err}
		}()
		select {
		case r := <-done:
			return r.j, r.err
		case <-time.After(15 * time.Second): // far beyond the deadline, short of the client's 30 s
			t.Fatal("create did not end: the POST is not bounded by its deadline")
			return nil, nil
		}
	}
	// hang holds a request until pman gives up on it. The server notices
	// that only once the body is read; stop ends it when the test does.
	stop := make(chan struct{})
	hang := func(r *http.Request) {
		io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}

	// Cromwell hangs from the start: nothing is submitted, and the 503
	// says why.
	fake := newFakeCromwell(t, t.TempDir())
	fake.before = hang
	t.Cleanup(func() { close(stop) }) // before the fakes close
	c := testCromwell(t, fake.srv.URL, nil)
	c.deadline, c.visibleWait = 300*time.Millisecond, 20*time.Second
	_, err := create(c)
	if ae, ok := err.(*apiError); !ok || ae.kind != eUnavailable || !strings.Contains(ae.msg, "did not answer in time") || fake.submissions() != 0 {
		t.Errorf("create with Cromwell hanging = %v, %d submissions; want a 503 saying it did not answer in time", err, fake.submissions())
	}

	// Cromwell hangs after the submit: the job exists, so the POST
	// answers 201 from the submitted WDL, within the deadline although
	// visibleWait is longer.
	fake = newFakeCromwell(t, t.TempDir())
	fake.before = func(r *http.Request) {
		if fake.submissions() > 0 {
			hang(r)
		}
	}
	c = testCromwell(t, fake.srv.URL, nil)
	c.deadline, c.visibleWait = 300*time.Millisecond, 20*time.Second
	j, err := create(c)
	if err != nil || j.Status != statusNotStarted || j.Cmd != "x /share/outgoing" || fake.submissions() != 1 {
		t.Errorf("create with Cromwell hanging after the submit = %+v, %v, %d submissions; want notstarted from the WDL", j, err, fake.submissions())
	}
}

// BenchmarkCromwellSlowPost measures a POST against a Cromwell that takes
// 100 ms per call and never lists the new workflow: it must end near the
// deadline (here 1 s), not after visibleWait (20 s).
func BenchmarkCromwellSlowPost(b *testing.B) {
	fake := newFakeCromwell(b, b.TempDir())
	fake.indexLag = 1 << 30
	fake.before = func(*http.Request) { time.Sleep(100 * time.Millisecond) }
	s, _ := newCromwell(&config{CromwellURL: fake.srv.URL, StoreBase: "/sb", TimelimitMinutes: 5}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	c := s.(*cromwellSched)
	c.deadline = time.Second
	for i := 0; b.Loop(); i++ {
		jid := fmt.Sprintf("slow-%d", i)
		if _, err := c.create(context.Background(), &jobSpec{JID: jid, Image: "img", Workers: 1, Cmd: []string{"x"}, InputDir: cromwellInputDir, OutputDir: "b"}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCromwellArchivedMetadata: once Cromwell has archived a workflow's
// metadata, GET answers the query's status and end, says why the rest is
// gone, and marks the logs unreadable.
func TestCromwellArchivedMetadata(t *testing.T) {
	fake := newFakeCromwell(t, t.TempDir())
	c := testCromwell(t, fake.srv.URL, &config{StoreBase: fake.store, JobLogsTail: 10})
	for _, st := range []struct{ cromwell, want string }{{"Succeeded", statusSuccess}, {"Failed", statusError}, {"Aborted", statusError}} {
		jid := "archived-" + st.cromwell
		if _, err := c.create(context.Background(), &jobSpec{JID: jid, Image: "img", Workers: 1, Cmd: []string{"x"}, InputDir: cromwellInputDir, OutputDir: "b"}); err != nil {
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
	}
}

// TestCromwellLogSymlinks: a log file is read only where it really lies
// under STOREBASE.
func TestCromwellLogSymlinks(t *testing.T) {
	store, outside := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret"), []byte("root:x:0:0\n"), 0o644)
	fake := newFakeCromwell(t, store)
	c := testCromwell(t, fake.srv.URL, &config{StoreBase: store, JobLogsTail: 10})
	setup := func(jid string, stdout func(dir string)) *job {
		t.Helper()
		if _, err := c.create(context.Background(), &jobSpec{JID: jid, Image: "img", Workers: 1, Cmd: []string{"x"}, InputDir: cromwellInputDir, OutputDir: "b"}); err != nil {
			t.Fatal(err)
		}
		fake.advance(jid, "Running")
		fake.mu.Lock()
		dir := fake.execDir(fake.byJID(jid).id)
		fake.mu.Unlock()
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "stderr"), []byte("err\n"), 0o644)
		stdout(dir)
		j, err := c.get(context.Background(), jid)
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	refused := []struct {
		name   string
		stdout func(dir string)
	}{
		{"file symlink", func(dir string) { os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, "stdout")) }},
		{"relative symlink", func(dir string) {
			rel, _ := filepath.Rel(dir, filepath.Join(outside, "secret"))
			os.Symlink(rel, filepath.Join(dir, "stdout"))
		}},
		{"directory symlink", func(dir string) {
			os.Remove(filepath.Join(dir, "stderr"))
			os.Remove(dir)
			os.Symlink(outside, dir)
			os.Rename(filepath.Join(outside, "secret"), filepath.Join(outside, "stdout"))
			t.Cleanup(func() { os.Rename(filepath.Join(outside, "stdout"), filepath.Join(outside, "secret")) })
		}},
		{"fifo", func(dir string) {
			if err := syscall.Mkfifo(filepath.Join(dir, "stdout"), 0o644); err != nil {
				t.Skip("mkfifo:", err)
			}
		}},
	}
	for i, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			j := setup(fmt.Sprintf("link-%d", i), tt.stdout)
			if j.Status != statusStarted || strings.Contains(j.Logs, "root:x") || !strings.HasPrefix(j.Logs, "[pman] logs unavailable: ") || !j.LogsIncomplete {
				t.Errorf("get = %+v; want started, logs unavailable, nothing of the file outside STOREBASE", j)
			}
		})
	}
	// A symlink that stays inside STOREBASE is fine.
	os.WriteFile(filepath.Join(store, "inside"), []byte("fine\n"), 0o644)
	j := setup("link-inside", func(dir string) { os.Symlink(filepath.Join(store, "inside"), filepath.Join(dir, "stdout")) })
	if j.Logs != "[pman] stdout:\nfine\n[pman] stderr:\nerr\n" || j.LogsIncomplete {
		t.Errorf("get with a symlink inside STOREBASE = %+v; want its content", j)
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
		md := cwMetadata(t, "metadata-running.json")
		md.Calls[cromwellTask] = nil
		for _, i := range order {
			md.Calls[cromwellTask] = append(md.Calls[cromwellTask], calls[i])
		}
		j := (&cromwellSched{}).toJob("jid", queryResult{ID: md.ID, Status: "Running"}, md, "")
		if j.Status != statusStarted || !strings.HasSuffix(j.Message, "SLURM job 77") {
			t.Errorf("toJob(calls in order %v) = %+v; want the running attempt 2 of shard 1, SLURM job 77", order, j)
		}
	}
}
