package main

// pfcon's polling path on Swarm, GET: what one GET costs the engine and what
// it answers where the cheap path cannot be taken (swarm.go: get, jobTask,
// getService, logs).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
)

// TestSwarmGetEngineCalls counts the engine calls of pfcon's polling path
// through a proxy in front of the engine: a GET of a job whose task has a
// container costs the task list and the container's own logs, never the
// service (the task carries its spec) nor the log broker (the container is
// on this engine's node). It also checks that the answers stay right where
// that path cannot be taken: a jid that is only the ID prefix of a job's
// service, and logs that cannot be read.
func TestSwarmGetEngineCalls(t *testing.T) {
	t.Parallel()
	cli := needSwarm(t)
	image := needTestImage(t, cli)
	sock := filepath.Join(t.TempDir(), "engine.sock")
	calls := proxyEngine(t, cli, sock)
	store := t.TempDir()
	env := map[string]string{"CONTAINER_ENV": "swarm", "STORAGE_TYPE": "host", "STOREBASE": store,
		"DOCKER_HOST": "unix://" + sock}
	base := startServer(t, env)
	suffix := randSuffix()
	submit := func(name, script string) string {
		jid := "sw-" + suffix + "-" + name
		t.Cleanup(func() { cli.ServiceRemove(context.Background(), jid) })
		swarmDirs(t, store, jid)
		body := jobRequest(jid)
		body["image"], body["entrypoint"] = image, []string{"sh", "-c", script, "sh"}
		if code, m := call(t, "POST", base+"/api/v1/", body); code != 201 {
			t.Fatalf("POST %s: %d %v; want 201", jid, code, m)
		}
		return jid
	}
	done, running, gone := submit("done", "echo done"), submit("running", "echo up; sleep 300"), submit("gone", "echo gone")
	// Another server, straight on the engine, waits for them: the counted
	// one keeps a finished answer (cache.go), so its first GET of each job
	// must be the counted one.
	watch := startServer(t, map[string]string{"CONTAINER_ENV": "swarm", "STORAGE_TYPE": "host", "STOREBASE": store})
	untilStatus(t, watch, done, 90*time.Second, statusSuccess)
	untilStatus(t, watch, gone, 90*time.Second, statusSuccess)
	untilStatus(t, watch, running, 90*time.Second, statusStarted)
	// The counted server asks the engine its node once, at its first log
	// read: a GET of the running job (never kept) does that here.
	call(t, "GET", base+"/api/v1/"+running+"/", nil)

	// get returns the job and the engine calls of one GET.
	get := func(jid string) (map[string]any, []string) {
		t.Helper()
		calls.reset()
		code, m := call(t, "GET", base+"/api/v1/"+jid+"/", nil)
		got := calls.get()
		if code != 200 {
			t.Fatalf("GET %s: %d %v; want 200", jid, code, m)
		}
		checkJobShape(t, "GET "+jid, m)
		t.Logf("GET %s: engine calls %q", jid, got)
		return m, got
	}
	wantCalls := func(what string, got, want []string) {
		t.Helper()
		ok := len(got) == len(want)
		for i := 0; ok && i < len(want); i++ {
			ok = matchCall(want[i], got[i])
		}
		if !ok {
			t.Errorf("engine calls of one GET of %s = %q; want %q", what, got, want)
		}
	}
	local := []string{"/tasks", "/containers/*/logs"}

	t.Run("finished job: its container's logs", func(t *testing.T) {
		m, got := get(done)
		if m["status"] != statusSuccess || m["logs"] != "done\n" || m["image"] != image || m["cmd"] != "sh -c echo done sh --verbose /share/incoming /share/outgoing" {
			t.Errorf("GET %s: %v; want finishedSuccessfully, logs \"done\\n\", image %s, cmd of the service", done, m, image)
		}
		wantCalls("a finished job", got, local)
	})

	t.Run("running job: two engine calls", func(t *testing.T) {
		m, got := get(running)
		if m["status"] != statusStarted || m["logs"] != "up\n" {
			t.Errorf("GET %s: %v; want started with logs \"up\\n\"", running, m)
		}
		wantCalls("a running job", got, local)
	})

	t.Run("an ID prefix of a job's service is not a jid", func(t *testing.T) {
		svc, _, err := cli.ServiceInspectWithRaw(context.Background(), running, swarm.ServiceInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		prefix := svc.ID[:12]
		for _, method := range []string{"GET", "DELETE"} {
			if code, m := call(t, method, base+"/api/v1/"+prefix+"/", nil); code != 404 {
				t.Errorf("%s /api/v1/<ID prefix of %s>/ = %d %v; want 404", method, running, code, m)
			}
		}
		if m, _ := get(running); m["status"] != statusStarted {
			t.Errorf("after DELETE of its ID prefix, %s: %v; want still started", running, m)
		}
	})

	t.Run("task on another node: its logs through the broker", func(t *testing.T) {
		// One node here: pretend the engine is another node, as it would
		// be to a task that ran elsewhere.
		cfg, err := loadConfig(func(k string) string { return env[k] })
		if err != nil {
			t.Fatal(err)
		}
		sched, err := newSwarm(cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		s := sched.(*swarmSched)
		s.nodeID = "not-this-one"
		calls.reset()
		j, err := s.get(context.Background(), done)
		got := calls.get()
		if err != nil || j.Status != statusSuccess || j.Logs != "done\n" || j.LogsIncomplete {
			t.Errorf("get(%s) = %+v, %v; want finishedSuccessfully with logs \"done\\n\", complete", done, j, err)
		}
		wantCalls("a task on another node", got, []string{"/tasks", "/tasks/*/logs"})
	})

	t.Run("log stream that stalls: cut, status with a note", func(t *testing.T) {
		// A proxy that passes the engine's logs and then holds the stream
		// open, as the log broker does when it stalls.
		stall := filepath.Join(t.TempDir(), "stall.sock")
		stallEngine(t, sock, stall)
		cfg, err := loadConfig(func(k string) string {
			if k == "DOCKER_HOST" {
				return "unix://" + stall
			}
			return env[k]
		})
		if err != nil {
			t.Fatal(err)
		}
		sched, err := newSwarm(cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		s := sched.(*swarmSched)
		s.logTimeout = time.Second
		j, err := s.get(context.Background(), done)
		want := "done\n" + logsUnreadable(errors.New("the engine sent no end of the logs within 1s"))
		if err != nil || j.Status != statusSuccess || j.Logs != want || !j.LogsIncomplete {
			t.Errorf("get(%s) = %+v, %v; want finishedSuccessfully, logs %q, LogsIncomplete", done, j, err, want)
		}
	})

	t.Run("container removed behind pman's back: status with a note", func(t *testing.T) {
		ctx := context.Background()
		tasks, err := cli.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", gone))})
		if err != nil || len(tasks) != 1 || tasks[0].Status.ContainerStatus == nil {
			t.Fatalf("the tasks of %s: %+v, %v; want one with a container", gone, tasks, err)
		}
		if err := cli.ContainerRemove(ctx, tasks[0].Status.ContainerStatus.ContainerID, container.RemoveOptions{Force: true}); err != nil {
			t.Fatal(err)
		}
		m, got := get(gone)
		logs, _ := m["logs"].(string)
		if m["status"] != statusSuccess || !strings.HasPrefix(logs, "[pman] logs unavailable: ") || !strings.Contains(logs, "No such container") {
			t.Errorf("GET %s: %v; want finishedSuccessfully, logs saying why they are unavailable", gone, m)
		}
		wantCalls("a job whose container is gone", got, local)

		// The answer must never count as final: the flag is not on the wire.
		cfg, err := loadConfig(func(k string) string { return env[k] })
		if err != nil {
			t.Fatal(err)
		}
		sched, err := newSwarm(cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		j, err := sched.get(ctx, gone)
		if err != nil || !j.LogsIncomplete || j.Logs != logs {
			t.Errorf("get(%s) = %+v, %v; want LogsIncomplete and the same logs", gone, j, err)
		}
	})
}

// stallEngine serves at sock a proxy to the engine at engine (a socket
// path) that holds every log stream open after the engine has ended it.
func stallEngine(t *testing.T, engine, sock string) {
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(&url.URL{Scheme: "http", Host: "docker"}) },
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", engine)
		}},
		FlushInterval: -1,
		ModifyResponse: func(r *http.Response) error {
			if strings.HasSuffix(r.Request.URL.Path, "/logs") {
				r.Body = &stalledBody{r.Body, r.Request.Context()}
			}
			return nil
		},
	}
	srv := &http.Server{Handler: proxy}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// stalledBody reads its body, then blocks instead of ending until ctx ends.
type stalledBody struct {
	io.ReadCloser
	ctx context.Context
}

func (b *stalledBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		if n > 0 {
			return n, nil
		}
		<-b.ctx.Done()
		return 0, b.ctx.Err()
	}
	return n, err
}

// matchCall returns whether an engine path ("/v1.41/services/x/logs") is the
// pattern ("/services/*/logs"), version prefix aside.
func matchCall(pattern, p string) bool {
	if i := strings.Index(p[1:], "/"); strings.HasPrefix(p, "/v1.") && i > 0 {
		p = p[i+1:]
	}
	ps, ws := strings.Split(p, "/"), strings.Split(pattern, "/")
	if len(ps) != len(ws) {
		return false
	}
	for i := range ws {
		if ws[i] != "*" && ws[i] != ps[i] {
			return false
		}
	}
	return true
}

func (c *callLog) reset() { c.mu.Lock(); c.paths = nil; c.mu.Unlock() }
func (c *callLog) get() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string{}, c.paths...)
}

// BenchmarkSwarmGetFinished measures what pfcon's polling costs once many
// jobs have finished on one node: it runs PMAN_BENCH_SWARM_JOBS (default
// 300) short jobs as services, waits for all to finish, then GETs them in
// turn and reports the latency distribution of one GET (p50, p99, max) and
// the share of answers whose logs are not the job's whole output. Making
// the services takes minutes, so this is a benchmark, not a test:
//
//	go test -run '^$' -bench SwarmGetFinished -benchtime 600x .
//
// It removes every service it made, whatever happens.
func BenchmarkSwarmGetFinished(b *testing.B) {
	cli := needSwarm(b)
	image := needTestImage(b, cli)
	n := 300
	if v := os.Getenv("PMAN_BENCH_SWARM_JOBS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("PMAN_BENCH_SWARM_JOBS=%q: want a positive number", v)
		}
	}
	ctx := context.Background()
	store := b.TempDir()
	run := randSuffix()
	cfg := &config{JobLabels: map[string]string{"org.chrisproject.pman.bench": run}}
	jids := make([]string, n)
	b.Cleanup(func() {
		start := time.Now()
		for _, jid := range jids {
			if jid != "" {
				cli.ServiceRemove(ctx, jid)
			}
		}
		b.Logf("removed %d services in %s", n, time.Since(start).Round(time.Millisecond))
	})
	start := time.Now()
	for i := range jids {
		jid := fmt.Sprintf("swb-%s-%03d", run, i)
		j := &jobSpec{JID: jid, Image: image, Workers: 1, CPULimit: 1000, MemoryLimit: 64,
			Cmd: []string{"echo", jid, "done"}, InputDir: jid + "/in", OutputDir: jid + "/out"}
		for _, d := range []string{jid, j.InputDir, j.OutputDir} {
			if err := os.Mkdir(filepath.Join(store, d), 0o777); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := cli.ServiceCreate(ctx, serviceSpec(cfg, j, store), swarm.ServiceCreateOptions{}); err != nil {
			b.Fatalf("creating service %d of %d: %v", i+1, n, err)
		}
		jids[i] = jid
	}
	created := time.Since(start)
	for {
		tasks, err := cli.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(
			filters.Arg("label", "org.chrisproject.pman.bench="+run))})
		if err != nil {
			b.Fatal(err)
		}
		done := 0
		for _, t := range tasks {
			switch t.Status.State {
			case swarm.TaskStateComplete:
				done++
			case swarm.TaskStateFailed, swarm.TaskStateRejected, swarm.TaskStateShutdown, swarm.TaskStateOrphaned:
				b.Fatalf("task %s of service %s: %s %s", t.ID, t.ServiceID, t.Status.State, t.Status.Err)
			}
		}
		if done == n {
			break
		}
		if time.Since(start) > 15*time.Minute {
			b.Fatalf("%d of %d jobs finished after %s", done, n, time.Since(start))
		}
		time.Sleep(2 * time.Second)
	}
	b.Logf("%d services created in %s, all finished after %s", n, created.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

	base := startServer(b, map[string]string{"CONTAINER_ENV": "swarm", "STORAGE_TYPE": "host", "STOREBASE": store})
	var next atomic.Int64
	// get GETs the next job in turn and returns how long that took and
	// whether the logs were the job's whole output. It may run on
	// RunParallel's goroutines, so it reports with Errorf, not Fatal.
	get := func(b *testing.B) (time.Duration, bool) {
		jid := jids[int(next.Add(1))%n]
		t0 := time.Now()
		resp, err := http.Get(base + "/api/v1/" + jid + "/")
		if err != nil {
			b.Error(err)
			return time.Since(t0), false
		}
		var j job
		err = json.NewDecoder(resp.Body).Decode(&j)
		resp.Body.Close()
		d := time.Since(t0)
		if err != nil || resp.StatusCode != http.StatusOK || j.Status != statusSuccess {
			b.Errorf("GET %s: %d %+v %v; want 200 finishedSuccessfully", jid, resp.StatusCode, j, err)
		}
		return d, j.Logs == jid+" done\n"
	}
	report := func(b *testing.B, lat []time.Duration, partial int) {
		slices.Sort(lat)
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
		b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
		b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
		b.ReportMetric(float64(partial)/float64(len(lat)), "partial-logs/op")
	}
	b.Run("GET", func(b *testing.B) {
		lat := make([]time.Duration, 0, b.N)
		partial := 0
		for i := 0; i < b.N; i++ {
			d, whole := get(b)
			lat = append(lat, d)
			if !whole {
				partial++
			}
		}
		report(b, lat, partial)
	})
	// pfcon polls its jobs from several workers at once.
	b.Run("GET-16-clients", func(b *testing.B) {
		var mu sync.Mutex
		lat := make([]time.Duration, 0, b.N)
		partial := 0
		b.SetParallelism((16 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				d, whole := get(b)
				mu.Lock()
				lat = append(lat, d)
				if !whole {
					partial++
				}
				mu.Unlock()
			}
		})
		report(b, lat, partial)
	})
}
