package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// startServer runs the whole server through run, on port 0, with exactly
// the environment given, and answers its base URL ("http://127.0.0.1:N").
// The server stops when the test ends; a start error fails the test.
func startServer(t testing.TB, env map[string]string) string {
	t.Helper()
	url, _ := startStoppable(t, env)
	return url
}

// startStoppable is startServer with a stop of its own, for a restart in
// the middle of a test; the test's end stops it too.
func startStoppable(t testing.TB, env map[string]string) (url string, stop func()) {
	t.Helper()
	env["PORT"] = "0"
	// A developer's engine may be elsewhere than the local socket.
	for _, k := range []string{"DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"} {
		if _, ok := env[k]; !ok {
			env[k] = os.Getenv(k)
		}
	}
	getenv := func(k string) string { return env[k] }
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, getenv, pw)
		pw.CloseWithError(io.EOF)
		done <- err
	}()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<16), 1<<20)
		sent := false
		for sc.Scan() {
			var line struct{ Msg, Addr string }
			if !sent && json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" {
				addr <- line.Addr
				sent = true
			}
			if testing.Verbose() {
				os.Stderr.Write(append(sc.Bytes(), '\n'))
			}
		}
		io.Copy(io.Discard, pr)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
	select {
	case a := <-addr:
		t.Cleanup(stop)
		_, port, _ := net.SplitHostPort(a)
		return "http://127.0.0.1:" + port, stop
	case err := <-done:
		cancel()
		t.Fatalf("run did not start: %v", err)
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatal("run did not log \"listening\" within 60s")
	}
	return "", stop
}

// call sends one request to a running server and decodes its JSON answer
// (nil for an empty body).
func call(t *testing.T, method, u string, body any) (int, map[string]any) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, u, r)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("%s %s: %d, body not JSON: %q", method, u, resp.StatusCode, raw)
		}
	}
	return resp.StatusCode, m
}

// untilStatus polls GET of jid on the server at base until its status is
// one of want, and answers the job object; it fails the test after within.
// Every answer must have the job object's shape.
func untilStatus(t *testing.T, base, jid string, within time.Duration, want ...string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		code, m := call(t, "GET", base+"/api/v1/"+jid+"/", nil)
		if code != http.StatusOK {
			t.Fatalf("GET %s = %d %v; want 200", jid, code, m)
		}
		checkJobShape(t, "GET "+jid, m)
		if slices.Contains(want, fmt.Sprint(m["status"])) {
			t.Logf("GET %s: %s: %q; logs %q", jid, m["status"], m["message"], m["logs"])
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: status %q (%v) after %s; want one of %q", jid, m["status"], m["message"], within, want)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// ciMode is true under CI, where a missing engine or control plane is a
// failure, not a reason to skip.
var ciMode = strings.EqualFold(os.Getenv("CI"), "true") || os.Getenv("CI") == "1"

// needOrSkip skips the test with why on a developer's machine and fails it
// under CI, so CI can never pass by skipping.
func needOrSkip(t testing.TB, why string) {
	t.Helper()
	if ciMode {
		t.Fatalf("CI=true and %s", why)
	}
	t.Skip(why)
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fakeSched is a scheduler in memory, for testing the HTTP layer alone.
type fakeSched struct {
	jobs    map[string]*job
	specs   map[string]*jobSpec
	err     error // answered by every call when set
	removed []string
	calls   int // of create, get and remove
}

// fakeBadName is the fake scheduler's naming rule: no jid that begins with it.
const fakeBadName = "bad-"

func (f *fakeSched) nameProblem(jid string) string {
	if strings.HasPrefix(jid, fakeBadName) {
		return fmt.Sprintf("%q cannot name a fake job", jid)
	}
	return ""
}

func newFakeSched() *fakeSched {
	return &fakeSched{jobs: map[string]*job{}, specs: map[string]*jobSpec{}}
}

func (f *fakeSched) create(ctx context.Context, s *jobSpec) (*job, error) {
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	if _, ok := f.jobs[s.JID]; ok {
		return nil, errorf(eConflict, "job %s exists", s.JID)
	}
	f.specs[s.JID] = s
	f.jobs[s.JID] = &job{JID: s.JID, Image: s.Image, Cmd: strings.Join(s.Cmd, " "), Status: statusNotStarted,
		Message: "created", Timestamp: "2024-03-01T12:00:00Z", Logs: "should not be answered"}
	return f.jobs[s.JID], nil
}

func (f *fakeSched) get(ctx context.Context, jid string) (*job, error) {
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	j, ok := f.jobs[jid]
	if !ok {
		return nil, errorf(eNotFound, "no job %s", jid)
	}
	c := *j
	c.Logs = "line 1\nline 2\n"
	return &c, nil
}

func (f *fakeSched) ping(ctx context.Context) error { return f.err }

func (f *fakeSched) remove(ctx context.Context, jid string) error {
	f.calls++
	if f.err != nil {
		return f.err
	}
	if _, ok := f.jobs[jid]; !ok {
		return errorf(eNotFound, "no job %s", jid)
	}
	delete(f.jobs, jid)
	f.removed = append(f.removed, jid)
	return nil
}

// callHandler sends a request to h and decodes the JSON answer (nil for none).
func callHandler(t *testing.T, h http.Handler, method, path, body string) (int, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
	if rec.Body.Len() == 0 {
		return rec.Code, nil
	}
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("%s %s: answer is not a JSON object: %q", method, path, rec.Body.String())
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q; want application/json", method, path, ct)
	}
	return rec.Code, m
}

func testHandler(cfg *config, s scheduler) http.Handler {
	return newMux(cfg, s, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

var jobKeys = []string{"cmd", "image", "jid", "logs", "message", "status", "timestamp"}

func checkJobShape(t *testing.T, what string, m map[string]any) {
	t.Helper()
	keys := slices.Sorted(maps.Keys(m))
	if !slices.Equal(keys, jobKeys) {
		t.Errorf("%s: keys %q; want %q", what, keys, jobKeys)
	}
	for k, v := range m {
		if _, ok := v.(string); !ok {
			t.Errorf("%s: %s = %#v; want a string", what, k, v)
		}
	}
	switch m["status"] {
	case statusNotStarted, statusStarted, statusSuccess, statusError, statusUndefined:
	default:
		t.Errorf("%s: status %q is not one of API.md's", what, m["status"])
	}
}

func TestAPI(t *testing.T) {
	cfg := &config{ContainerEnv: "swarm", StorageType: "host", RemoveJobs: true}
	f := newFakeSched()
	h := testHandler(cfg, f)

	for _, p := range []string{"/api/v1/", "/api/v1"} {
		code, m := callHandler(t, h, "GET", p, "")
		want := map[string]any{"server_version": version, "container_env": "swarm", "storage_type": "host"}
		if code != 200 || !reflect.DeepEqual(m, want) {
			t.Errorf("GET %s = %d %v; want 200 %v", p, code, m, want)
		}
	}

	code, m := callHandler(t, h, "POST", "/api/v1/", string(mustJSON(t, validBody())))
	if code != 201 {
		t.Fatalf("POST = %d %v; want 201", code, m)
	}
	checkJobShape(t, "POST", m)
	if m["jid"] != "chris-jid-1" || m["logs"] != "" || m["status"] != statusNotStarted ||
		m["cmd"] != "simplefsapp --saveinputmeta --dir /share/incoming /share/outgoing" {
		t.Errorf("POST answer = %v", m)
	}

	b := validBody()
	b["jid"] = "chris-jid-2"
	if code, m := callHandler(t, h, "POST", "/api/v1", string(mustJSON(t, b))); code != 201 {
		t.Errorf("POST without trailing slash = %d %v; want 201", code, m)
	}
	if code, m := callHandler(t, h, "POST", "/api/v1/", string(mustJSON(t, validBody()))); code != 409 || m["message"] == "" {
		t.Errorf("POST duplicate = %d %v; want 409 with a message", code, m)
	}

	for _, p := range []string{"/api/v1/chris-jid-1/", "/api/v1/chris-jid-1"} {
		code, m := callHandler(t, h, "GET", p, "")
		if code != 200 || m["logs"] != "line 1\nline 2\n" || m["jid"] != "chris-jid-1" {
			t.Errorf("GET %s = %d %v", p, code, m)
		}
		checkJobShape(t, "GET", m)
	}
	if code, m := callHandler(t, h, "GET", "/api/v1/nope/", ""); code != 404 || m["message"] != "no job nope" {
		t.Errorf("GET unknown = %d %v; want 404 no job nope", code, m)
	}

	if code, m := callHandler(t, h, "DELETE", "/api/v1/chris-jid-1/", ""); code != 204 || m != nil {
		t.Errorf("DELETE = %d %v; want 204 and no body", code, m)
	}
	if code, _ := callHandler(t, h, "DELETE", "/api/v1/chris-jid-2", ""); code != 204 {
		t.Errorf("DELETE without slash = %d; want 204", code)
	}
	if code, _ := callHandler(t, h, "DELETE", "/api/v1/chris-jid-1/", ""); code != 404 {
		t.Errorf("DELETE again = %d; want 404", code)
	}
	if !slices.Equal(f.removed, []string{"chris-jid-1", "chris-jid-2"}) {
		t.Errorf("removed %q", f.removed)
	}

	if code, m := callHandler(t, h, "GET", "/elsewhere", ""); code != 404 || m["message"] == nil {
		t.Errorf("GET /elsewhere = %d %v; want a JSON 404", code, m)
	}
}

func TestAPIAnswersUnescaped(t *testing.T) {
	b := validBody()
	b["args"] = []string{"--filter", "a<b&c>d"}
	rec := httptest.NewRecorder()
	testHandler(&config{}, newFakeSched()).ServeHTTP(rec, httptest.NewRequest("POST", "/api/v1/", bytes.NewReader(mustJSON(t, b))))
	if !strings.Contains(rec.Body.String(), "a<b&c>d") {
		t.Errorf("POST answer %s; want the argument a<b&c>d as it is, as Flask answered it", rec.Body.String())
	}
}

func TestAPIRemoveJobsNo(t *testing.T) {
	f := newFakeSched()
	h := testHandler(&config{RemoveJobs: false}, f)
	callHandler(t, h, "POST", "/api/v1/", string(mustJSON(t, validBody())))
	if code, _ := callHandler(t, h, "DELETE", "/api/v1/chris-jid-1/", ""); code != 204 {
		t.Errorf("DELETE with REMOVE_JOBS=no = %d; want 204", code)
	}
	if len(f.removed) != 0 || f.jobs["chris-jid-1"] == nil {
		t.Errorf("REMOVE_JOBS=no removed %q", f.removed)
	}
}

func TestAPIErrors(t *testing.T) {
	f := newFakeSched()
	h := testHandler(&config{RemoveJobs: true}, f)

	b := validBody()
	delete(b, "image")
	b["type"] = "xs"
	code, m := callHandler(t, h, "POST", "/api/v1/", string(mustJSON(t, b)))
	want := map[string]any{"image": missing, "type": `"xs" is not a valid choice (ds, fs, ts)`}
	if code != 400 || !reflect.DeepEqual(m["message"], want) {
		t.Errorf("POST bad fields = %d %v; want 400 {message: %v}", code, m, want)
	}
	if code, m := callHandler(t, h, "POST", "/api/v1/", "not json"); code != 400 || m["message"] == "" {
		t.Errorf("POST not JSON = %d %v; want 400", code, m)
	}
	big := `{"jid": "` + strings.Repeat("x", maxBody) + `"}`
	if code, m := callHandler(t, h, "POST", "/api/v1/", big); code != 413 || m["message"] == "" {
		t.Errorf("POST of %d bytes = %d %v; want 413", len(big), code, m)
	}
	// Without a declared length, the read stops at the bound.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/api/v1/", io.MultiReader(strings.NewReader(big), strings.NewReader("}")))
	req.ContentLength = -1
	h.ServeHTTP(rec, req)
	if rec.Code != 413 {
		t.Errorf("chunked POST of %d bytes = %d %s; want 413", len(big)+1, rec.Code, rec.Body)
	}
	if len(f.specs) != 0 {
		t.Errorf("bad requests reached the scheduler: %v", f.specs)
	}

	for _, tt := range []struct {
		name string
		err  error
		code int
	}{
		{"unavailable", errorf(eUnavailable, "engine down"), 503},
		{"refused 403", refused(403, "forbidden by the engine"), 403},
		{"refused without a code", refused(0, "refused without a code"), 400},
		{"refused 502", refused(502, "not a 4xx"), 400},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f.err = tt.err
			for _, r := range [][2]string{{"POST", "/api/v1/"}, {"GET", "/api/v1/x/"}, {"DELETE", "/api/v1/x/"}} {
				code, m := callHandler(t, h, r[0], r[1], string(mustJSON(t, validBody())))
				if code != tt.code || !strings.Contains(fmt.Sprint(m["message"]), tt.err.Error()) {
					t.Errorf("%s %s with %v = %d %v; want %d with its message", r[0], r[1], tt.err, code, m, tt.code)
				}
			}
		})
	}
}

// TestAPIImpossibleJID: a jid no job can have is answered by the handler,
// before the cache and the scheduler: a 400 on jid for a POST, a 404 saying
// why for a GET or DELETE.
func TestAPIImpossibleJID(t *testing.T) {
	tests := []struct {
		name, path string // path: the jid as it goes into the URL
		why        string // what the 404 says
	}{
		{"the scheduler's rule", fakeBadName + "x", "cannot name a fake job"},
		{"checkJID's rule", "a:b", "must not contain"},
		{"a control character", "a%01b", "control characters"},
		{"too long", strings.Repeat("x", 254), "at most 253"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeSched()
			h := testHandler(&config{RemoveJobs: true}, f)
			for _, method := range []string{"GET", "DELETE"} {
				code, m := callHandler(t, h, method, "/api/v1/"+tt.path+"/", "")
				msg, _ := m["message"].(string)
				if code != 404 || !strings.HasPrefix(msg, "no job ") || !strings.Contains(msg, tt.why) {
					t.Errorf("%s = %d %v; want 404 no job ...: ...%s...", method, code, m, tt.why)
				}
			}
			if f.calls != 0 {
				t.Errorf("%d scheduler calls; want none", f.calls)
			}
		})
	}
	t.Run("POST", func(t *testing.T) {
		f := newFakeSched()
		b := validBody()
		b["jid"] = fakeBadName + "x"
		code, m := callHandler(t, testHandler(&config{}, f), "POST", "/api/v1/", string(mustJSON(t, b)))
		fields, _ := m["message"].(map[string]any)
		if why, _ := fields["jid"].(string); code != 400 || !strings.Contains(why, "cannot name a fake job") {
			t.Errorf("POST = %d %v; want 400 {message: {jid: the scheduler's rule}}", code, m)
		}
		if f.calls != 0 {
			t.Errorf("%d scheduler calls; want none", f.calls)
		}
	})
}

// TestAPIDirsWithColon: an upload folder with ':' passes the common rules
// (a backend whose mount syntax cannot carry it refuses it itself).
func TestAPIDirsWithColon(t *testing.T) {
	f := newFakeSched()
	b := validBody()
	b["input_dir"], b["output_dir"] = "home/chris/uploads/scan 10:30", "home/chris/feed_1/out,2"
	if code, m := callHandler(t, testHandler(&config{}, f), "POST", "/api/v1/", string(mustJSON(t, b))); code != 201 {
		t.Fatalf("POST = %d %v; want 201", code, m)
	}
	if s := f.specs["chris-jid-1"]; s.InputDir != "home/chris/uploads/scan 10:30" || s.OutputDir != "home/chris/feed_1/out,2" {
		t.Errorf("spec dirs %q, %q; want them as sent", s.InputDir, s.OutputDir)
	}
}

func TestAPIInternalError(t *testing.T) {
	f := newFakeSched()
	f.err = errors.New("nil pointer in backend")
	var buf bytes.Buffer
	h := newMux(&config{}, f, slog.New(slog.NewJSONHandler(&buf, nil)))
	code, m := callHandler(t, h, "GET", "/api/v1/x/", "")
	if code != 500 || m["message"] != "internal error" {
		t.Errorf("GET with a non-apiError = %d %v; want 500 internal error", code, m)
	}
	if !strings.Contains(buf.String(), "nil pointer in backend") {
		t.Errorf("the log does not carry the error's detail: %s", buf.String())
	}
}

// TestRun starts the real server through run, as a deployment would.
func TestRun(t *testing.T) {
	base := startServer(t, map[string]string{"CONTAINER_ENV": "docker", "STOREBASE": t.TempDir()})
	resp, err := http.Get(base + "/api/v1/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || resp.StatusCode != 200 || m["container_env"] != "docker" {
		t.Errorf("GET /api/v1/ through run = %d %v %v", resp.StatusCode, m, err)
	}
}

func TestRunBadConfig(t *testing.T) {
	err := run(context.Background(), env("CONTAINER_ENV", "nomad"), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "CONTAINER_ENV") {
		t.Errorf("run with CONTAINER_ENV=nomad: %v; want an error naming CONTAINER_ENV", err)
	}
}

// TestRequestLog checks the one structured line per request.
func TestRequestLog(t *testing.T) {
	var buf bytes.Buffer
	h := newMux(&config{}, newFakeSched(), slog.New(slog.NewJSONHandler(&buf, nil)))
	callHandler(t, h, "GET", "/api/v1/some-jid/", "")
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("log line %q: %v", buf.String(), err)
	}
	for k, want := range map[string]any{"msg": "request", "method": "GET", "path": "/api/v1/some-jid/", "jid": "some-jid", "status": 404.0} {
		if line[k] != want {
			t.Errorf("log %s = %v; want %v (line %s)", k, line[k], want, buf.String())
		}
	}
	if _, ok := line["duration"]; !ok {
		t.Errorf("log line has no duration: %s", buf.String())
	}
}

// BenchmarkStatusHandler measures pman's own share of pfcon's polling path:
// routing, logging and encoding around a scheduler that answers at once.
func BenchmarkStatusHandler(b *testing.B) {
	f := newFakeSched()
	spec, _ := decodeJob(mustJSON(b, validBody()), &config{})
	f.create(context.Background(), spec)
	h := newMux(&config{}, f, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	req := httptest.NewRequest("GET", "/api/v1/chris-jid-1/", nil)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatal(rec.Code)
		}
	}
}

// TestGracefulShutdown stops the server while a request is in flight: the
// request must still be answered, and run must return nil (exit 0). The
// Docker engine is a stand-in that answers every call slowly with a 404.
func TestGracefulShutdown(t *testing.T) {
	inFlight := make(chan struct{}, 1)
	engine := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.41")
		if strings.HasSuffix(r.URL.Path, "/_ping") {
			return
		}
		select {
		case inFlight <- struct{}{}:
		default:
		}
		time.Sleep(500 * time.Millisecond)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"message": "No such container: slow-job"}`)
	}))
	defer engine.Close()

	getenv := env("CONTAINER_ENV", "docker", "STOREBASE", t.TempDir(), "PORT", "0",
		"DOCKER_HOST", "tcp://"+engine.Listener.Addr().String())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- run(ctx, getenv, pw); pw.Close() }()
	sc := bufio.NewScanner(pr)
	var addr string
	for addr == "" && sc.Scan() {
		var line struct{ Msg, Addr string }
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" {
			addr = line.Addr
		}
	}
	go io.Copy(io.Discard, pr)
	if addr == "" {
		t.Fatalf("run did not start: %v", <-done)
	}
	_, port, _ := net.SplitHostPort(addr)

	answered := make(chan int, 1)
	go func() {
		resp, err := http.Get("http://127.0.0.1:" + port + "/api/v1/slow-job/")
		if err != nil {
			t.Errorf("in-flight GET: %v", err)
			answered <- 0
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	select {
	case <-inFlight:
	case <-time.After(10 * time.Second):
		t.Fatal("the GET never reached the engine")
	}
	cancel()
	if code := <-answered; code != http.StatusNotFound {
		t.Errorf("in-flight GET answered %d after shutdown began; want the engine's 404", code)
	}
	if err := <-done; err != nil {
		t.Errorf("run after shutdown = %v; want nil", err)
	}
}
