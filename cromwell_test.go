package main

// Submitting, finding and removing a Cromwell job: the workflow and labels
// pman sends, what Cromwell refuses, one workflow per jid, and removal. What
// every backend shows is the contract suite's (contract_cromwell_test.go);
// the status is cromwell_status_test.go's, the logs cromwell_logs_test.go's,
// a deployment's mistakes cromwell_deploy_test.go's.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
)

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
		t.Run(fmt.Sprintf("%.20s=%.20s", tt.key, tt.value), func(t *testing.T) {
			if msg := checkLabel(tt.key, tt.value); (msg == "") != tt.ok {
				t.Errorf("checkLabel(%.20q, %.20q) = %q; want ok=%v", tt.key, tt.value, msg, tt.ok)
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
	if err := json.Unmarshal([]byte(parts["labels"]), &labels); err != nil || !reflect.DeepEqual(labels, map[string]string{cromwellJIDLabel: "vitamin-d", jidLabel: "vitamin-d", "site": "bch"}) {
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
		{"duplicate jid, being aborted", strings.Replace(string(cwRecorded(t, "query-found.json")), `"Succeeded"`, `"Aborting"`, 1), 0, eConflict, 0, false},
		// Removed by a DELETE (a GET answers 404), but not stopped yet.
		{"removed, being aborted", strings.Replace(string(cwRecorded(t, "query-found.json")), `"status": "Succeeded"`, `"status": "Aborting", "labels": {"org.chrisproject.pman.removed": "yes"}`, 1), 0, eConflict, 0, false},
		{"removed and ended", strings.Replace(string(cwRecorded(t, "query-found.json")), `"status": "Succeeded"`, `"status": "Aborted", "labels": {"org.chrisproject.pman.removed": "yes"}`, 1), http.StatusCreated, eUnavailable, 0, true}, // submit answers no id
		{"jid of an ended workflow", string(cwRecorded(t, "query-found.json")), http.StatusCreated, eUnavailable, 0, true},                                                                                                                  // submit answers no id
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

// TestCromwellRefusedBeforeCromwell: a jid over every bound and a missing
// input directory are answered by pman before Cromwell is asked anything.
func TestCromwellRefusedBeforeCromwell(t *testing.T) {
	srv, received := cwRecordingServer(t, func(w http.ResponseWriter, r *http.Request, body []byte) { http.NotFound(w, r) })
	base, c, _ := cwServer(t, srv.URL, nil)
	body := func(jid string) map[string]any {
		b := jobRequest(jid)
		b["image"], b["entrypoint"] = "img", []string{"x"}
		return b
	}
	t.Run("jid too long for a label", func(t *testing.T) {
		jid := strings.Repeat("j", 256)
		// checkJID's bound (253 bytes) lies inside Cromwell's (255 UTF-16
		// units): the common rule refuses it first.
		code, m := call(t, "POST", base, body(jid))
		if fields, _ := m["message"].(map[string]any); code != 400 || fields["jid"] == nil {
			t.Errorf("POST of a 256-char jid = %d %v; want a 400 on jid", code, m)
		}
		for _, method := range []string{"GET", "DELETE"} {
			if code, m := call(t, method, base+jid+"/", nil); code != 404 || !strings.Contains(fmt.Sprint(m["message"]), "no job") {
				t.Errorf("%s of a 256-char jid = %d %v; want a 404 saying why", method, code, m)
			}
		}
	})
	t.Run("missing input directory", func(t *testing.T) {
		code, m := call(t, "POST", base, body("cw-noinput"))
		if fields, _ := m["message"].(map[string]any); code != 400 || !strings.Contains(fmt.Sprint(fields["input_dir"]), filepath.Join(c.cfg.StoreBase, "cw-noinput/in")) {
			t.Errorf("POST = %d %v; want 400 on input_dir naming it", code, m)
		}
	})
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

// TestCromwellEndToEnd: what a POST submits (the runtime section the
// site's backend reads, a command that survives WDL and the shell), and a
// DELETE of a finished job that aborts nothing. What every backend shows is
// the contract suite's (contract_cromwell_test.go).
func TestCromwellEndToEnd(t *testing.T) {
	store := cwStoreBase(t)
	fake := newFakeCromwell(t, store)
	base := startServer(t, map[string]string{
		"CONTAINER_ENV": "cromwell", "CROMWELL_URL": fake.srv.URL, "TIMELIMIT_MINUTES": "30",
		"SLURM_PARTITION": "short", "STOREBASE": store,
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
	wdl := wf.wdl
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

	fake.advance("chris-jid-7", "Succeeded")

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
