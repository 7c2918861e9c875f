package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// scrape reads the server's /metrics with the Prometheus text parser.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics = %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return fams
}

// labelsOf answers a metric's labels as a map.
func labelsOf(m *dto.Metric) map[string]string {
	l := map[string]string{}
	for _, p := range m.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return l
}

// metricValue sums the samples of family name whose labels include want.
func metricValue(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("/metrics has no %s", name)
	}
	var sum float64
	for _, m := range f.GetMetric() {
		l := labelsOf(m)
		match := true
		for k, v := range want {
			match = match && l[k] == v
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

// TestMetricsEndToEnd runs a job through run on the real engine and reads
// /metrics: every family with its label names, the counts that the requests
// made, and no jid in any label value.
func TestMetricsEndToEnd(t *testing.T) {
	e := startDocker(t, needTestEngine(t, "docker"), nil)
	jid := e.newJID(t, "metrics")
	e.dir(t, jid+"/in", nil)
	e.submit(t, e.jobBody(jid, "fs", "echo done"))
	e.wait(t, jid)
	// wait's last GET stored the finished answer: these two come from memory.
	e.do(t, "GET", "/api/v1/"+jid+"/", nil)
	e.do(t, "GET", "/api/v1/"+jid, nil)
	e.do(t, "GET", "/api/v1/dk-no-such-job/", nil)
	e.do(t, "GET", "/healthz", nil)
	e.do(t, "GET", "/readyz", nil)
	e.do(t, "GET", "/metrics/", nil) // 404: no such endpoint
	fams := scrape(t, e.url)

	families := map[string][]string{
		"pman_http_requests_total":             {"code", "route"},
		"pman_http_request_duration_seconds":   {"route"},
		"pman_scheduler_calls_total":           {"backend", "operation", "outcome"},
		"pman_scheduler_call_duration_seconds": {"backend", "operation"},
		"pman_jobs_submitted_total":            nil,
		"pman_status_answers_total":            {"status"},
		"pman_status_cache_hits_total":         nil,
		"pman_status_cache_misses_total":       nil,
		"pman_status_cache_entries":            nil,
		"pman_status_cache_bytes":              nil,
		"pman_image_pulls_in_progress":         nil,
		"go_goroutines":                        nil,
		"go_memstats_alloc_bytes":              nil,
		"process_resident_memory_bytes":        nil,
	}
	for name, want := range families {
		f, ok := fams[name]
		if !ok {
			t.Errorf("/metrics has no %s", name)
			continue
		}
		for _, m := range f.GetMetric() {
			l := labelsOf(m)
			if got := slices.Sorted(maps.Keys(l)); !slices.Equal(got, want) && !(len(got) == 0 && want == nil) {
				t.Errorf("%s labels %v; want %v", name, got, want)
			}
		}
	}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			for _, v := range labelsOf(m) {
				if strings.Contains(v, "dk-") {
					t.Errorf("%s has a label value %q that names a job", name, v)
				}
			}
		}
	}

	checks := []struct {
		name   string
		labels map[string]string
		min    float64
	}{
		{"pman_http_requests_total", map[string]string{"route": "POST /api/v1/{$}", "code": "201"}, 1},
		{"pman_http_requests_total", map[string]string{"route": "GET /api/v1/{jid}/{$}", "code": "200"}, 2},
		{"pman_http_requests_total", map[string]string{"route": "GET /api/v1/{jid}", "code": "200"}, 1},
		{"pman_http_requests_total", map[string]string{"route": "GET /api/v1/{jid}/{$}", "code": "404"}, 1},
		{"pman_http_requests_total", map[string]string{"route": "GET /healthz", "code": "200"}, 1},
		{"pman_http_requests_total", map[string]string{"route": "GET /readyz", "code": "200"}, 1},
		{"pman_http_requests_total", map[string]string{"route": "/", "code": "404"}, 1},
		{"pman_http_request_duration_seconds", map[string]string{"route": "GET /api/v1/{jid}/{$}"}, 3},
		{"pman_scheduler_calls_total", map[string]string{"backend": "docker", "operation": "create", "outcome": "ok"}, 1},
		{"pman_scheduler_calls_total", map[string]string{"backend": "docker", "operation": "get", "outcome": "ok"}, 1},
		{"pman_scheduler_calls_total", map[string]string{"backend": "docker", "operation": "get", "outcome": "not_found"}, 1},
		{"pman_scheduler_calls_total", map[string]string{"backend": "docker", "operation": "ping", "outcome": "ok"}, 1},
		{"pman_scheduler_call_duration_seconds", map[string]string{"backend": "docker", "operation": "get"}, 2},
		{"pman_jobs_submitted_total", nil, 1},
		{"pman_status_answers_total", map[string]string{"status": statusSuccess}, 3},
		{"pman_status_cache_hits_total", nil, 2},
		{"pman_status_cache_misses_total", nil, 2},
		{"pman_status_cache_entries", nil, 1},
	}
	for _, c := range checks {
		if got := metricValue(t, fams, c.name, c.labels); got < c.min {
			t.Errorf("%s%v = %v; want at least %v", c.name, c.labels, got, c.min)
		}
	}
	// The GET answered from memory made no scheduler call: every GET but
	// that one reached the engine.
	gets := metricValue(t, fams, "pman_scheduler_calls_total", map[string]string{"operation": "get"})
	answered := metricValue(t, fams, "pman_http_requests_total", map[string]string{"route": "GET /api/v1/{jid}/{$}"}) +
		metricValue(t, fams, "pman_http_requests_total", map[string]string{"route": "GET /api/v1/{jid}"})
	if hits := metricValue(t, fams, "pman_status_cache_hits_total", nil); gets != answered-hits {
		t.Errorf("scheduler gets %v, GETs %v, cache hits %v; want gets = GETs - hits", gets, answered, hits)
	}
}

// TestProbesNotLogged checks that the operator's paths are counted but not
// logged at info level, and the API's requests still are.
func TestProbesNotLogged(t *testing.T) {
	var buf bytes.Buffer
	h := newMux(&config{}, newFakeSched(), slog.New(slog.NewJSONHandler(&buf, nil)))
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if code, _ := callProbe(h, p); code != 200 {
			t.Errorf("GET %s = %d; want 200", p, code)
		}
	}
	if buf.Len() != 0 {
		t.Errorf("probes logged at info level: %s", buf.String())
	}
	callHandler(t, h, "GET", "/api/v1/", "")
	if !strings.Contains(buf.String(), `"path":"/api/v1/"`) {
		t.Errorf("GET /api/v1/ not logged: %q", buf.String())
	}
	_, body := callProbe(h, "/metrics")
	if !strings.Contains(body, `pman_http_requests_total{code="200",route="GET /healthz"} 1`) {
		t.Errorf("/metrics does not count the probe:\n%s", body)
	}
}

func callProbe(h http.Handler, path string) (int, string) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec.Code, rec.Body.String()
}

// untilReady polls /readyz until it answers want, and answers its body.
func untilReady(t *testing.T, base string, want int) map[string]any {
	t.Helper()
	var code int
	var m map[string]any
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, m = call(t, "GET", base+"/readyz", nil)
		if code == want {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz = %d %v after 30s; want %d", code, m, want)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// TestReadyzDockerEngine: /readyz follows the engine, stopped and started
// again (a proxy to the real engine stands for it: the real one is shared).
func TestReadyzDockerEngine(t *testing.T) {
	cli := needEngine(t)
	sock := filepath.Join(t.TempDir(), "engine.sock")
	base := startServer(t, map[string]string{"CONTAINER_ENV": "docker", "STORAGE_TYPE": "host",
		"STOREBASE": t.TempDir(), "DOCKER_HOST": "unix://" + sock})
	check503 := func() {
		t.Helper()
		m := untilReady(t, base, http.StatusServiceUnavailable)
		if msg := fmt.Sprint(m["message"]); !strings.Contains(msg, "Docker engine") || !strings.Contains(msg, sock) {
			t.Errorf("/readyz message %q; want it to name the Docker engine at %s", msg, sock)
		}
	}
	check503()
	calls := proxyEngine(t, cli, sock)
	untilReady(t, base, http.StatusOK)
	calls.stop()
	check503()
	proxyEngine(t, cli, sock)
	untilReady(t, base, http.StatusOK)
	if code, _ := call(t, "GET", base+"/healthz", nil); code != 200 {
		t.Errorf("/healthz = %d; want 200", code)
	}
}

// TestReadyzSwarm: the test engine is a Swarm manager, so pman is ready.
func TestReadyzSwarm(t *testing.T) {
	needEngine(t)
	base := startServer(t, map[string]string{"CONTAINER_ENV": "swarm", "STORAGE_TYPE": "host", "STOREBASE": t.TempDir()})
	if code, m := call(t, "GET", base+"/readyz", nil); code != 200 {
		t.Errorf("/readyz on a Swarm manager = %d %v; want 200", code, m)
	}
}

// TestReadyzKube pings the test control plane with only the manifest's
// ServiceAccount token: /readyz needs no permission beyond the Role's.
func TestReadyzKube(t *testing.T) {
	adminRC, admin := kubeAdmin(t)
	ns := kubeNamespace(t, admin)
	sa, role, rb := manifestRBAC(t)
	base := startServer(t, map[string]string{"CONTAINER_ENV": "kubernetes", "JOB_NAMESPACE": ns, "STORAGE_TYPE": "host",
		"STOREBASE": "/s", "KUBECONFIG": kubeconfigAs(t, adminRC, admin, ns, sa, role, rb)})
	if code, m := call(t, "GET", base+"/readyz", nil); code != 200 {
		t.Errorf("/readyz with the Role's token = %d %v; want 200", code, m)
	}
}

// TestReadyzKubeUnreachable: an API server that does not answer is named.
func TestReadyzKubeUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	os.WriteFile(kc, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://%s", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`, addr)), 0o600)
	base := startServer(t, map[string]string{"CONTAINER_ENV": "kubernetes", "STORAGE_TYPE": "host", "STOREBASE": "/s", "KUBECONFIG": kc})
	code, m := call(t, "GET", base+"/readyz", nil)
	if code != http.StatusServiceUnavailable || !strings.Contains(fmt.Sprint(m["message"]), "Kubernetes API server https://"+addr) {
		t.Errorf("/readyz with no API server = %d %v; want 503 naming the API server", code, m)
	}
}

// TestReadyzCromwell asks Cromwell's version endpoint.
func TestReadyzCromwell(t *testing.T) {
	up := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/engine/v1/version" || !up {
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, `{"status": "error", "message": "down"}`)
			return
		}
		io.WriteString(w, `{"cromwell": "74"}`)
	}))
	defer srv.Close()
	sched, err := newCromwell(&config{CromwellURL: secretURL(srv.URL), StoreBase: "/s"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := sched.ping(t.Context()); err != nil {
		t.Errorf("ping = %v; want nil", err)
	}
	up = false
	if err := sched.ping(t.Context()); err == nil || !strings.Contains(err.Error(), "Cromwell at "+srv.URL) {
		t.Errorf("ping of a failing Cromwell = %v; want an error naming Cromwell at %s", err, srv.URL)
	}
}

// TestTooLargeBodyAnswered sends a 20 MiB POST from a raw client that writes
// the whole body before it reads anything (as Python's requests does): it
// must read the 413, not a connection reset.
func TestTooLargeBodyAnswered(t *testing.T) {
	base := startServer(t, map[string]string{"CONTAINER_ENV": "docker", "STORAGE_TYPE": "host", "STOREBASE": t.TempDir()})
	addr := strings.TrimPrefix(base, "http://")
	body := bytes.Repeat([]byte("x"), 20<<20)
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(2 * time.Minute))
			w := bufio.NewWriterSize(conn, 64<<10)
			fmt.Fprintf(w, "POST /api/v1/ HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n", addr)
			if chunked {
				fmt.Fprintf(w, "Transfer-Encoding: chunked\r\n\r\n")
				for b := body; len(b) > 0; b = b[min(len(b), 1<<20):] {
					n := min(len(b), 1<<20)
					fmt.Fprintf(w, "%x\r\n", n)
					w.Write(b[:n])
					io.WriteString(w, "\r\n")
				}
				io.WriteString(w, "0\r\n\r\n")
			} else {
				fmt.Fprintf(w, "Content-Length: %d\r\n\r\n", len(body))
				w.Write(body)
			}
			if err := w.Flush(); err != nil {
				t.Fatalf("sending the body: %v", err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("reading the answer: %v", err)
			}
			defer resp.Body.Close()
			var m map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge || m["message"] == nil {
				t.Errorf("answer = %d %v %v; want 413 with a message", resp.StatusCode, m, err)
			}
		})
	}
}

// TestManifestProbes: the Deployment probes /healthz (liveness) and /readyz
// (readiness) on the port pman serves. TestKubeManifest has the API server
// validate the whole Deployment.
func TestManifestProbes(t *testing.T) {
	raw, err := os.ReadFile("deploy/kubernetes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
	for {
		doc, err := r.Read()
		if err == io.EOF {
			t.Fatal("deploy/kubernetes.yaml has no Deployment")
		}
		if err != nil {
			t.Fatal(err)
		}
		var tm metav1.TypeMeta
		utilyaml.Unmarshal(doc, &tm)
		if tm.Kind != "Deployment" {
			continue
		}
		var dep appsv1.Deployment
		if err := utilyaml.Unmarshal(doc, &dep); err != nil {
			t.Fatal(err)
		}
		c := dep.Spec.Template.Spec.Containers[0]
		for what, p := range map[string]string{"liveness": "/healthz", "readiness": "/readyz"} {
			probe := c.LivenessProbe
			if what == "readiness" {
				probe = c.ReadinessProbe
			}
			if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != p || probe.HTTPGet.Port.String() != "http" {
				t.Errorf("%s probe = %+v; want GET %s on port http", what, probe, p)
			}
		}
		return
	}
}
