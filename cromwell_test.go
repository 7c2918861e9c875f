package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
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

func TestCheckLabel(t *testing.T) {
	tests := []struct {
		key, value string
		ok         bool
	}{
		{jidLabel, "chris-jid-1", true},
		{jidLabel, strings.Repeat("a", 255), true},
		{jidLabel, strings.Repeat("a", 256), false},
		{jidLabel, strings.Repeat("é", 255), true},  // 255 UTF-16 units, 510 bytes
		{jidLabel, strings.Repeat("😀", 128), false}, // 256 UTF-16 units
		{"", "v", false},
		{strings.Repeat("k", 256), "v", false},
		{"k", "", true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%.20s=%.20s", tt.key, tt.value), func(t *testing.T) {
			if msg := checkLabel(tt.key, tt.value); (msg == "") != tt.ok {
				t.Errorf("checkLabel(%.20q, %.20q) = %q; want ok=%v", tt.key, tt.value, msg, tt.ok)
			}
		})
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
		t.Run(fmt.Sprintf("%d out %d err %d", len(logLines(tt.stdout)), len(logLines(tt.stderr)), tt.n), func(t *testing.T) {
			if got := splitTail(tt.stdout, tt.stderr, tt.n); got != tt.want {
				t.Errorf("splitTail(%q, %q, %d) = %q; want %q", tt.stdout, tt.stderr, tt.n, got, tt.want)
			}
		})
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
	if err := json.Unmarshal(reqs[0].body, &query); err != nil || !reflect.DeepEqual(query, []map[string]string{{"label": "org.chrisproject.pman.name:vitamin-d"}, {"includeSubworkflows": "false"}, {"additionalQueryResultFields": "labels"}}) {
		t.Errorf("query body %s (%v); want the jid's label, no subworkflows, their labels", reqs[0].body, err)
	}
	if reqs[0].contentType != "application/json" {
		t.Errorf("query Content-Type %q; want application/json", reqs[0].contentType)
	}
	parts := multipartParts(t, reqs[1].contentType, reqs[1].body)
	var labels map[string]string
	if err := json.Unmarshal([]byte(parts["labels"]), &labels); err != nil || !reflect.DeepEqual(labels, map[string]string{jidLabel: "vitamin-d", "site": "bch"}) {
		t.Errorf("labels part %q (%v); want the jid label and JOB_LABELS", parts["labels"], err)
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

func TestCromwellCreateJIDTooLongForALabel(t *testing.T) {
	srv, received := cwRecordingServer(t, func(w http.ResponseWriter, r *http.Request, body []byte) { http.NotFound(w, r) })
	c := testCromwell(t, srv.URL, nil)
	_, err := c.create(context.Background(), &jobSpec{JID: strings.Repeat("j", 256), Image: "img", Workers: 1, Cmd: []string{"x"}, InputDir: "a/in", OutputDir: "a/out"})
	if ae, ok := err.(*apiError); !ok || ae.kind != eInvalid || ae.fields["jid"] == "" {
		t.Errorf("create(256-char jid) = %v; want a 400 on jid", err)
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
		t.Run(fmt.Sprint("JOB_LOGS_TAIL=", tt.tail), func(t *testing.T) {
			c := testCromwell(t, srv.URL, &config{StoreBase: store, JobLogsTail: tt.tail})
			if got, err := c.logs(context.Background(), "wf"); err != nil || got != tt.want {
				t.Errorf("logs with JOB_LOGS_TAIL=%d = %q, %v; want %q", tt.tail, got, err, tt.want)
			}
		})
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

// TestCromwellEndToEnd: what a POST submits (the runtime section the
// site's backend reads, a command that survives WDL and the shell), a
// running task's logs cut by JOB_LOGS_TAIL, a finished workflow's end as
// the timestamp, and a DELETE of a finished job that aborts nothing. What
// every backend shows is the contract suite's (contract_cromwell_test.go).
func TestCromwellEndToEnd(t *testing.T) {
	store := cwStoreBase(t)
	fake := newFakeCromwell(t, store)
	base := startServer(t, map[string]string{
		"CONTAINER_ENV": "cromwell", "CROMWELL_URL": fake.srv.URL, "TIMELIMIT_MINUTES": "30",
		"SLURM_PARTITION": "short", "STOREBASE": store, "JOB_LOGS_TAIL": "2",
	}) + "/api/v1/"
	body := jobRequest("chris-jid-7")
	body["image"], body["entrypoint"], body["type"] = "fnndsc/pl-simplefsapp:2.0", []string{"python3", "/usr/local/bin/simplefsapp"}, "fs"
	body["args"], body["cpu_limit"], body["memory_limit"] = []string{"--greeting", "it's ~{x} ${HOME} >>>"}, "1000", 200
	body["input_dir"], body["output_dir"] = "home/chris/feeds/feed_7/pl-a_1/data", "home/chris/feeds/feed_7/pl-b_2/data"
	os.MkdirAll(filepath.Join(store, "home/chris/feeds/feed_7/pl-a_1/data"), 0o755)

	code, j := call(t, "POST", base, body)
	wantCmd := "python3 /usr/local/bin/simplefsapp --greeting it's ~{x} ${HOME} >>> /share/outgoing"
	if code != http.StatusCreated || j["cmd"] != wantCmd || j["image"] != "fnndsc/pl-simplefsapp:2.0" {
		t.Fatalf("POST = %d %v; want 201 with cmd %q", code, j, wantCmd)
	}
	fake.mu.Lock()
	wf := fake.byJID("chris-jid-7")
	wdl, d := wf.wdl, fake.execDir(wf.id)
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

	fake.advance("chris-jid-7", "Running")
	os.MkdirAll(d, 0o755)
	os.WriteFile(filepath.Join(d, "stdout"), []byte("starting\nworking\n"), 0o644)
	os.WriteFile(filepath.Join(d, "stderr"), []byte("warning: x\n"), 0o644)
	code, j = call(t, "GET", base+"chris-jid-7/", nil)
	if code != http.StatusOK || j["status"] != statusStarted || j["logs"] != "[pman] stdout, last 1 of 2 lines:\nworking\n[pman] stderr:\nwarning: x\n" || j["timestamp"] != "" {
		t.Errorf("GET while Running = %d %v; want started, the last log line of each stream, no timestamp", code, j)
	}

	fake.advance("chris-jid-7", "Succeeded")
	code, j = call(t, "GET", base+"chris-jid-7/", nil)
	if code != http.StatusOK || j["status"] != statusSuccess || j["timestamp"] != "2022-01-24T06:16:53.374Z" {
		t.Errorf("GET when Succeeded = %d %v; want finishedSuccessfully with the workflow's end", code, j)
	}

	// A finished job: DELETE aborts nothing, labels the workflow removed.
	if code, j = call(t, "DELETE", base+"chris-jid-7/", nil); code != http.StatusNoContent || len(fake.abortedIDs()) != 0 {
		t.Errorf("DELETE of a finished job = %d %v, aborted %v; want 204, no abort", code, j, fake.abortedIDs())
	}
	fake.mu.Lock()
	removed := fake.byJID("chris-jid-7").labels[removedLabel]
	fake.mu.Unlock()
	if code, j = call(t, "GET", base+"chris-jid-7/", nil); code != http.StatusNotFound || removed != "yes" {
		t.Errorf("GET after DELETE = %d %v, label %s=%q; want 404, the workflow labelled removed", code, j, removedLabel, removed)
	}
}

func TestCromwellEndToEndRefused(t *testing.T) {
	fake := newFakeCromwell(t, cwStoreBase(t))
	base := startServer(t, map[string]string{
		"CONTAINER_ENV": "cromwell", "CROMWELL_URL": fake.srv.URL, "TIMELIMIT_MINUTES": "30", "STOREBASE": fake.store,
	}) + "/api/v1/"
	body := jobRequest("bad-image")
	body["image"], body["entrypoint"] = "fnndsc/pl-x ~{oops}", []string{"prog"}
	os.MkdirAll(filepath.Join(fake.store, "bad-image/in"), 0o755)
	code, j := call(t, "POST", base, body)
	msg, _ := j["message"].(map[string]any)
	if code != http.StatusBadRequest || msg["image"] == nil || fake.submissions() != 0 {
		t.Errorf("POST with a bad image = %d %v, %d submissions; want 400 on image and nothing submitted", code, j, fake.submissions())
	}
}

func TestCromwellAbortAnswers(t *testing.T) {
	const cromwellErr = `{"status": "error", "message": "some reason"}`
	tests := []struct {
		name     string
		code     int
		body     string
		wantKind errKind // -1: no error
		wantCode int
		msgHas   string
	}{
		{"accepted", http.StatusOK, `{"id": "wf-1", "status": "Aborting"}`, -1, 0, ""},
		// Cromwell's own answers for a workflow that ended between our
		// query (whose index lags) and the abort: 404 since Cromwell 30,
		// 403 before.
		{"404 no longer in progress", http.StatusNotFound, `{"status": "error", "message": "Couldn't abort wf-1 because no workflow with that ID is in progress"}`, -1, 0, ""},
		{"403 terminal state", http.StatusForbidden, `{"status": "error", "message": "Couldn't abort because workflow is in terminal state"}`, -1, 0, ""},
		// The same codes from something else: a deployment mistake.
		{"404 not Cromwell's", http.StatusNotFound, "<html>Not Found</html>", eUnavailable, 0, "path prefix"},
		{"403 not Cromwell's", http.StatusForbidden, "<html>Forbidden</html>", eUnavailable, 0, "proxy"},
		{"400", http.StatusBadRequest, cromwellErr, eRefused, http.StatusBadRequest, "some reason"},
		{"500", http.StatusInternalServerError, cromwellErr, eUnavailable, 0, "some reason"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, received := cwRecordingServer(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
				switch {
				case strings.HasSuffix(r.URL.Path, "/abort"):
					w.WriteHeader(tt.code)
					io.WriteString(w, tt.body)
				case strings.HasSuffix(r.URL.Path, "/labels"):
					io.WriteString(w, `{"id": "wf-1", "labels": {"org.chrisproject.pman.removed": "yes"}}`)
				default:
					io.WriteString(w, `{"results": [{"id": "wf-1", "status": "Running", "submission": "2026-01-01T00:00:00Z"}]}`)
				}
			})
			err := testCromwell(t, srv.URL, nil).remove(context.Background(), "j")
			var sent []string
			for _, r := range received()[1:] { // after the query
				sent = append(sent, r.method+" "+r.path)
			}
			// Labelled removed only once the abort is done: a workflow
			// labelled while its abort failed would run on unseen.
			wantSent := []string{"POST /api/workflows/v1/wf-1/abort", "PATCH /api/workflows/v1/wf-1/labels"}
			if tt.wantKind >= 0 {
				wantSent = wantSent[:1]
			}
			if !slices.Equal(sent, wantSent) {
				t.Errorf("remove sent %q; want %q", sent, wantSent)
			}
			ae, _ := err.(*apiError)
			switch {
			case tt.wantKind < 0 && err != nil:
				t.Errorf("remove = %v; want nil", err)
			case tt.wantKind >= 0 && (ae == nil || ae.kind != tt.wantKind || tt.wantCode != 0 && ae.code != tt.wantCode || !strings.Contains(ae.msg, tt.msgHas)):
				t.Errorf("remove = %v; want kind %d code %d saying %q", err, tt.wantKind, tt.wantCode, tt.msgHas)
			}
		})
	}
}

// TestCromwellRemoveLabelRefused: a DELETE whose label Cromwell refuses
// fails (503), so that pfcon's retry labels it; the abort done is not
// sent again.
func TestCromwellRemoveLabelRefused(t *testing.T) {
	status := "Running"
	srv, received := cwRecordingServer(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/abort"):
			status = "Aborting"
			io.WriteString(w, `{"id": "wf-1", "status": "Aborting"}`)
		case strings.HasSuffix(r.URL.Path, "/labels"):
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"status": "fail", "message": "Invalid label"}`)
		default:
			fmt.Fprintf(w, `{"results": [{"id": "wf-1", "status": %q, "submission": "2026-01-01T00:00:00Z"}]}`, status)
		}
	})
	c := testCromwell(t, srv.URL, nil)
	for range 2 {
		err := c.remove(context.Background(), "j")
		if ae, ok := err.(*apiError); !ok || ae.kind != eUnavailable || !strings.Contains(ae.msg, "Invalid label") {
			t.Errorf("remove with the label refused = %v; want a 503 saying why", err)
		}
	}
	aborts := 0
	for _, r := range received() {
		if strings.HasSuffix(r.path, "/abort") {
			aborts++
		}
	}
	if aborts != 1 {
		t.Errorf("%d aborts sent; want 1, the second DELETE finding the workflow Aborting", aborts)
	}
}

func TestNewCromwellRefusesConfig(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, cfg := range []*config{
		{CromwellURL: "http://c", TimelimitMinutes: 5, StoreBase: "/store base"},
		{CromwellURL: "http://c", TimelimitMinutes: 5, StoreBase: "/store/~{x}"},
		{CromwellURL: "http://c", TimelimitMinutes: 5, StoreBase: "/s", JobLabels: map[string]string{"k": strings.Repeat("v", 256)}},
	} {
		t.Run(fmt.Sprintf("%s %.20v", cfg.StoreBase, cfg.JobLabels), func(t *testing.T) {
			if _, err := newCromwell(cfg, log); err == nil {
				t.Errorf("newCromwell(STOREBASE %q, JOB_LABELS %.20v) = nil error; want a configuration error", cfg.StoreBase, cfg.JobLabels)
			}
		})
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
		t.Run(tt.w.Status, func(t *testing.T) {
			j := (&cromwellSched{}).toJob("jid", tt.w, nil, "")
			if j.Status != tt.status || !strings.Contains(j.Message, tt.message) || j.Timestamp != tt.w.End {
				t.Errorf("toJob(%+v, no metadata) = %+v; want %s, message with %q, timestamp %q", tt.w, j, tt.status, tt.message, tt.w.End)
			}
		})
	}
}

// ---- issue 9: what a real deployment meets -----------------------------------

func TestCromwellConfigChecks(t *testing.T) {
	base := []string{"CONTAINER_ENV", "cromwell", "CROMWELL_URL", "http://cromwell:8000", "TIMELIMIT_MINUTES", "5", "STOREBASE", "/sb"}
	for _, tt := range []struct {
		partition string
		ok        bool
	}{{"short", true}, {"gpu,short", true}, {"a b", false}, {"x;y", false}, {"it's", false}, {"~{x}", false}, {"a,,b", false}} {
		t.Run("SLURM_PARTITION="+tt.partition, func(t *testing.T) {
			c, err := loadConfig(env(append(base, "SLURM_PARTITION", tt.partition)...))
			switch {
			case tt.ok && (err != nil || c.SlurmPartition != tt.partition):
				t.Errorf("SLURM_PARTITION=%q: %v; want it taken", tt.partition, err)
			case !tt.ok && (err == nil || !strings.Contains(err.Error(), "SLURM_PARTITION")):
				t.Errorf("SLURM_PARTITION=%q: %v; want a configuration error naming it", tt.partition, err)
			}
		})
	}
	// A CROMWELL_URL that does not parse is named without its password.
	_, err := loadConfig(env(append(base[:2], "CROMWELL_URL", "http://chris:s3cret@[::1", "TIMELIMIT_MINUTES", "5", "STOREBASE", "/sb")...))
	if err == nil || !strings.Contains(err.Error(), "CROMWELL_URL") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("loadConfig(bad CROMWELL_URL with a password) = %v; want an error naming CROMWELL_URL, not the password", err)
	}
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
		// Not a mistake of the deployment's, but a 503 all the same.
		{"Cromwell's 500", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, `{"status": "error", "message": "Cromwell database is down"}`, http.StatusInternalServerError)
		}, []string{"500", "Cromwell database is down"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := httptest.NewServer(http.HandlerFunc(tt.answer))
			t.Cleanup(fake.Close)
			cromwellURL := strings.Replace(fake.URL, "http://", "http://chris:s3cret@", 1)
			store := cwStoreBase(t)
			os.MkdirAll(filepath.Join(store, "j-1/in"), 0o755)
			base, _, logs := cwServer(t, cromwellURL, &config{StoreBase: store})
			body := jobRequest("j-1")
			body["image"], body["entrypoint"] = "img", []string{"prog"}
			var answers []string
			for _, m := range []struct {
				method, url string
				body        any
			}{{"POST", base, body}, {"GET", base + "j-1/", nil}, {"DELETE", base + "j-1/", nil}} {
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
// has not ended; a DELETE removes the workflow (its jid answers 404 until
// it is submitted again), and GET and DELETE act on the newest.
func TestCromwellResubmitAfterAbort(t *testing.T) {
	fake := newFakeCromwell(t, cwStoreBase(t))
	base, _, _ := cwServer(t, fake.srv.URL, &config{StoreBase: fake.store})
	body := jobRequest("again")
	body["image"], body["entrypoint"] = "img", []string{"prog"}
	os.MkdirAll(filepath.Join(fake.store, "again/in"), 0o755)
	if code, j := call(t, "POST", base, body); code != http.StatusCreated {
		t.Fatalf("POST = %d %v", code, j)
	}
	fake.advance("again", "Running")
	if code, j := call(t, "DELETE", base+"again/", nil); code != http.StatusNoContent || len(fake.abortedIDs()) != 1 {
		t.Fatalf("DELETE = %d %v, aborted %v", code, j, fake.abortedIDs())
	}
	first := fake.abortedIDs()[0]
	if code, j := call(t, "POST", base, body); code != http.StatusCreated || fake.submissions() != 2 {
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

	// A jid whose workflow ended is free again without a DELETE (a CUBE
	// database reset): the newest workflow is the job.
	if code, j := call(t, "POST", base, body); code != http.StatusCreated || fake.submissions() != 3 {
		t.Fatalf("POST after the second abort = %d %v, %d submissions; want 201", code, j, fake.submissions())
	}
	fake.advance("again", "Succeeded")
	if code, j := call(t, "POST", base, body); code != http.StatusCreated || fake.submissions() != 4 {
		t.Fatalf("POST of a Succeeded job's jid = %d %v, %d submissions; want 201 and a fourth workflow", code, j, fake.submissions())
	}
	fake.mu.Lock()
	fourth := fake.byJID("again").id
	fake.mu.Unlock()
	if code, j := call(t, "GET", base+"again/", nil); code != http.StatusOK || j["status"] != statusNotStarted || !strings.Contains(fmt.Sprint(j["message"]), fourth) {
		t.Errorf("GET after the resubmission = %d %v; want notstarted, of workflow %s", code, j, fourth)
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
	body := jobRequest("twice")
	body["image"], body["entrypoint"] = "img", []string{"prog"}
	os.MkdirAll(filepath.Join(fake.store, "twice/in"), 0o755)

	first := make(chan int, 1)
	go func() {
		code, _ := call(t, "POST", base, body)
		first <- code
	}()
	<-inSubmit // the first POST is submitting
	code, j := call(t, "POST", base, body)
	if msg := fmt.Sprint(j["message"]); code != http.StatusConflict || !strings.Contains(msg, "being submitted") {
		t.Errorf("second POST during the first's submit = %d %v; want 409", code, j)
	}
	close(release)
	if code := <-first; code != http.StatusCreated {
		t.Fatalf("first POST = %d; want 201", code)
	}
	// The query still does not list it: the jid stays taken, and GET
	// answers the workflow submitted here.
	code, j = call(t, "POST", base, body)
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
	if code, j := call(t, "POST", base, body); code != http.StatusCreated || fake.submissions() != 2 {
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
		if _, err := c.create(context.Background(), &jobSpec{JID: jid, Image: "img", Workers: 1, Cmd: []string{"x"}, InputDir: "a", OutputDir: "b"}); err != nil {
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
		t.Run(st.cromwell, func(t *testing.T) {
			jid := "archived-" + st.cromwell
			if _, err := c.create(context.Background(), &jobSpec{JID: jid, Image: "img", Workers: 1, Cmd: []string{"x"}, InputDir: "a", OutputDir: "b"}); err != nil {
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

// TestCromwellLogSymlinks: a log file is read only where it really lies
// under STOREBASE.
func TestCromwellLogSymlinks(t *testing.T) {
	store, outside := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret"), []byte("root:x:0:0\n"), 0o644)
	fake := newFakeCromwell(t, store)
	c := testCromwell(t, fake.srv.URL, &config{StoreBase: store, JobLogsTail: 10})
	setup := func(jid string, stdout func(dir string)) *job {
		t.Helper()
		if _, err := c.create(context.Background(), &jobSpec{JID: jid, Image: "img", Workers: 1, Cmd: []string{"x"}, InputDir: "a", OutputDir: "b"}); err != nil {
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
