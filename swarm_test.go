package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
)

// ---- pure parts -------------------------------------------------------------

func TestSwarmServiceSpec(t *testing.T) {
	j := &jobSpec{
		JID: "chris-jid-7", Image: "fnndsc/pl-simplefsapp:latest", Type: "fs",
		Workers: 1, CPULimit: 1500, MemoryLimit: 300,
		Env:      []string{"A=1", "HOME=/tmp"},
		Cmd:      []string{"simplefsapp", "/share/outgoing"},
		InputDir: "key-chris-jid-7/incoming", OutputDir: "key-chris-jid-7/outgoing",
	}
	wantMounts := []mount.Mount{
		{Type: mount.TypeBind, Source: "/store/key-chris-jid-7/incoming", Target: "/share/incoming", ReadOnly: true},
		{Type: mount.TypeBind, Source: "/store/key-chris-jid-7/outgoing", Target: "/share/outgoing"},
	}
	shm := mount.Mount{Type: mount.TypeTmpfs, Target: "/dev/shm", TmpfsOptions: &mount.TmpfsOptions{SizeBytes: 128 << 20}}
	tests := []struct {
		name       string
		cfg        config
		gpus       int
		wantLimits *swarm.Limit
		wantUser   string
		wantGroups []string
		wantMounts []mount.Mount
		wantLabels map[string]string
		wantGPUs   int64
	}{
		{
			name:       "limits",
			wantLimits: &swarm.Limit{NanoCPUs: 1_500_000_000, MemoryBytes: 300 << 20},
			wantMounts: wantMounts,
			wantLabels: map[string]string{"org.chrisproject.pman.jid": "chris-jid-7"},
		},
		{
			name:       "IGNORE_LIMITS",
			cfg:        config{IgnoreLimits: true},
			wantMounts: wantMounts,
			wantLabels: map[string]string{"org.chrisproject.pman.jid": "chris-jid-7"},
		},
		{
			name:       "CONTAINER_USER, SHM_SIZE, JOB_LABELS",
			cfg:        config{ContainerUser: userSpec{idRange{true, 1001, 1001}, idRange{true, 2002, 2002}}, ShmSizeMiB: 128, JobLabels: map[string]string{"team": "fnndsc"}},
			wantLimits: &swarm.Limit{NanoCPUs: 1_500_000_000, MemoryBytes: 300 << 20},
			wantUser:   "1001",
			wantGroups: []string{"2002"},
			wantMounts: append(append([]mount.Mount{}, wantMounts...), shm),
			wantLabels: map[string]string{"org.chrisproject.pman.jid": "chris-jid-7", "team": "fnndsc"},
		},
		{
			name:       "GPUs",
			gpus:       2,
			wantLimits: &swarm.Limit{NanoCPUs: 1_500_000_000, MemoryBytes: 300 << 20},
			wantMounts: wantMounts,
			wantLabels: map[string]string{"org.chrisproject.pman.jid": "chris-jid-7"},
			wantGPUs:   2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jj := *j
			jj.GPULimit = tt.gpus
			s := serviceSpec(&tt.cfg, &jj, "/store")
			cs := s.TaskTemplate.ContainerSpec
			if s.Name != "chris-jid-7" {
				t.Errorf("name = %q; want chris-jid-7", s.Name)
			}
			if cs.Image != j.Image || !reflect.DeepEqual(cs.Command, j.Cmd) || !reflect.DeepEqual(cs.Env, j.Env) {
				t.Errorf("image, command, env = %q %q %q; want %q %q %q", cs.Image, cs.Command, cs.Env, j.Image, j.Cmd, j.Env)
			}
			if !cs.TTY {
				t.Error("TTY = false; want true")
			}
			if rp := s.TaskTemplate.RestartPolicy; rp == nil || rp.Condition != swarm.RestartPolicyConditionNone {
				t.Errorf("restart policy = %+v; want condition none", rp)
			}
			if m := s.Mode.Replicated; m == nil || m.Replicas == nil || *m.Replicas != 1 {
				t.Errorf("mode = %+v; want replicated, 1 replica", s.Mode)
			}
			if got := s.TaskTemplate.Resources.Limits; !reflect.DeepEqual(got, tt.wantLimits) {
				t.Errorf("limits = %+v; want %+v", got, tt.wantLimits)
			}
			if cs.User != tt.wantUser || !slices.Equal(cs.Groups, tt.wantGroups) {
				t.Errorf("user, groups = %q, %q; want %q, %q", cs.User, cs.Groups, tt.wantUser, tt.wantGroups)
			}
			if !reflect.DeepEqual(cs.Mounts, tt.wantMounts) {
				t.Errorf("mounts = %+v; want %+v", cs.Mounts, tt.wantMounts)
			}
			if !reflect.DeepEqual(s.Labels, tt.wantLabels) || !reflect.DeepEqual(cs.Labels, tt.wantLabels) {
				t.Errorf("labels = %v, container labels = %v; want %v", s.Labels, cs.Labels, tt.wantLabels)
			}
			var gpus int64
			if r := s.TaskTemplate.Resources.Reservations; r != nil {
				for _, g := range r.GenericResources {
					if g.DiscreteResourceSpec != nil && g.DiscreteResourceSpec.Kind == "NVIDIA-GPU" {
						gpus += g.DiscreteResourceSpec.Value
					}
				}
			}
			if gpus != tt.wantGPUs {
				t.Errorf("NVIDIA-GPU reserved = %d; want %d", gpus, tt.wantGPUs)
			}
		})
	}
}

// TestSwarmServiceSpecDirs: a mount of a service is an API struct, so a
// directory with ':' or ',' (an upload folder "scan 10:30") is its source
// as it is.
func TestSwarmServiceSpecDirs(t *testing.T) {
	j := &jobSpec{JID: "chris-jid-8", Image: "img", Workers: 1, InputDir: "home/chris/uploads/scan 10:30", OutputDir: "home/chris/feed_8/out,2"}
	want := []mount.Mount{
		{Type: mount.TypeBind, Source: "/store/home/chris/uploads/scan 10:30", Target: "/share/incoming", ReadOnly: true},
		{Type: mount.TypeBind, Source: "/store/home/chris/feed_8/out,2", Target: "/share/outgoing"},
	}
	if got := serviceSpec(&config{}, j, "/store").TaskTemplate.ContainerSpec.Mounts; !reflect.DeepEqual(got, want) {
		t.Errorf("mounts = %+v; want %+v", got, want)
	}
}

func TestSwarmTaskStatus(t *testing.T) {
	mem := &swarm.ResourceRequirements{Limits: &swarm.Limit{MemoryBytes: 16 << 20}}
	yes, no := true, false
	task := func(state swarm.TaskState, msg, err string, exit int) *swarm.Task {
		t := &swarm.Task{Status: swarm.TaskStatus{State: state, Message: msg, Err: err}}
		if exit >= 0 {
			t.Status.ContainerStatus = &swarm.ContainerStatus{ContainerID: "c1", ExitCode: exit}
		}
		return t
	}
	tests := []struct {
		name        string
		task        *swarm.Task
		res         *swarm.ResourceRequirements
		oom         *bool
		wantStatus  string
		wantMessage []string // each must appear in the message
	}{
		{"new", task("new", "created", "", -1), nil, nil, statusNotStarted, []string{"created"}},
		{"allocated", task("allocated", "allocated", "", -1), nil, nil, statusNotStarted, []string{"allocated"}},
		{"pending", task("pending", "pending task scheduling", "", -1), nil, nil, statusNotStarted, []string{"pending task scheduling"}},
		{"assigned", task("assigned", "scheduler assigned task to node", "", -1), nil, nil, statusNotStarted, []string{"assigned"}},
		{"accepted", task("accepted", "accepted", "", -1), nil, nil, statusNotStarted, []string{"accepted"}},
		{"preparing", task("preparing", "preparing", "", -1), nil, nil, statusNotStarted, []string{"preparing"}},
		{"ready", task("ready", "prepared", "", -1), nil, nil, statusNotStarted, []string{"prepared"}},
		{"starting", task("starting", "starting", "", -1), nil, nil, statusNotStarted, []string{"starting"}},
		{"running", task("running", "started", "", 0), nil, nil, statusStarted, []string{"started"}},
		{"complete", task("complete", "finished", "", 0), nil, nil, statusSuccess, []string{"finished"}},
		{"failed", task("failed", "started", "task: non-zero exit (3)", 3), nil, nil, statusError, []string{"non-zero exit (3)"}},
		{"shutdown", task("shutdown", "shutdown", "", 0), nil, nil, statusError, []string{"shutdown"}},
		{"rejected", task("rejected", "preparing", "invalid mount config for type \"bind\": bind source path does not exist: /x", -1), nil, nil, statusError, []string{"bind source path does not exist: /x"}},
		{"remove", task("remove", "removed", "", -1), nil, nil, statusError, []string{"remove", "removed"}},
		{"orphaned", task("orphaned", "node down", "", -1), nil, nil, statusError, []string{"orphaned", "node down"}},
		{"unknown state", task("dreaming", "zzz", "", -1), nil, nil, statusUndefined, []string{"dreaming"}},
		{"pending with error", task("pending", "pending task scheduling", "no suitable node (insufficient resources on 1 node)", -1), nil, nil, statusError, []string{"no suitable node (insufficient resources on 1 node)"}},
		{"OOM killed", task("failed", "started", "task: non-zero exit (137)", 137), mem, &yes, statusError, []string{outOfMemory(16, true)}},
		{"exit 137 under a limit, container gone", task("failed", "started", "task: non-zero exit (137)", 137), mem, nil, statusError, []string{outOfMemory(16, false)}},
		// OOMKilled may not be set yet when the task has failed.
		{"exit 137 under a limit, OOMKilled not (yet) set", task("failed", "started", "task: non-zero exit (137)", 137), mem, &no, statusError, []string{outOfMemory(16, false)}},
		{"exit 137 without a limit", task("failed", "started", "task: non-zero exit (137)", 137), nil, nil, statusError, []string{"non-zero exit (137)"}},
	}
	for _, tt := range tests {
		status, msg := taskStatus(tt.task, tt.res, tt.oom)
		if status != tt.wantStatus {
			t.Errorf("%s: taskStatus(%q, %q, %q) status = %q; want %q", tt.name, tt.task.Status.State, tt.task.Status.Message, tt.task.Status.Err, status, tt.wantStatus)
		}
		for _, w := range tt.wantMessage {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: taskStatus(%q, %q, %q) message = %q; want it to contain %q", tt.name, tt.task.Status.State, tt.task.Status.Message, tt.task.Status.Err, msg, w)
			}
		}
		if tt.res == nil && strings.Contains(msg, "out of memory") {
			t.Errorf("%s: message = %q; must not claim out of memory without a memory limit", tt.name, msg)
		}
	}
}

func TestSwarmNewestTask(t *testing.T) {
	t0 := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	mk := func(id string, created time.Time, index uint64) swarm.Task {
		return swarm.Task{ID: id, Meta: swarm.Meta{CreatedAt: created, Version: swarm.Version{Index: index}}}
	}
	tests := []struct {
		tasks []swarm.Task
		want  string
	}{
		{nil, ""},
		{[]swarm.Task{mk("a", t0, 1)}, "a"},
		{[]swarm.Task{mk("a", t0, 1), mk("b", t0.Add(time.Second), 2), mk("c", t0.Add(-time.Second), 3)}, "b"},
		{[]swarm.Task{mk("a", t0, 5), mk("b", t0, 9)}, "b"},
	}
	for _, tt := range tests {
		got := ""
		if n := newestTask(tt.tasks); n != nil {
			got = n.ID
		}
		if got != tt.want {
			t.Errorf("newestTask(%d tasks) = %q; want %q", len(tt.tasks), got, tt.want)
		}
	}
}

// ---- through the server -----------------------------------------------------

// swarmJob is a POST body the way pfcon sends it.
func swarmJob(jid, image string, script string) map[string]any {
	return map[string]any{
		"jid": jid, "image": image, "type": "fs", "auid": "cube",
		"entrypoint": []string{"sh", "-c", script}, "args": []string{},
		"number_of_workers": 1, "cpu_limit": 1000, "memory_limit": 64, "gpu_limit": 0,
	}
}

func TestSwarmRefusedBeforeEngine(t *testing.T) {
	// Nothing listens on this socket: a request that reached the engine
	// would answer 503, not 400.
	store := t.TempDir()
	base := startServer(t, map[string]string{"CONTAINER_ENV": "swarm", "STORAGE_TYPE": "host", "STOREBASE": store,
		"DOCKER_HOST": "unix://" + filepath.Join(t.TempDir(), "none.sock")})
	j := swarmJob("sw-workers", "img", "true")
	j["number_of_workers"] = 2
	code, m := call(t, "POST", base+"/api/v1/", j)
	if msg, _ := m["message"].(map[string]any); code != 400 || msg["number_of_workers"] == nil {
		t.Errorf("POST number_of_workers=2: %d %v; want 400 naming number_of_workers", code, m)
	}
	code, m = call(t, "POST", base+"/api/v1/", swarmJob("has.dot", "img", "true"))
	if msg, _ := m["message"].(map[string]any); code != 400 || msg["jid"] == nil {
		t.Errorf("POST jid has.dot: %d %v; want 400 naming jid", code, m)
	}
	for _, method := range []string{"GET", "DELETE"} {
		if code, m := call(t, method, base+"/api/v1/has.dot/", nil); code != 404 || !strings.Contains(fmt.Sprint(m["message"]), "Swarm service") {
			t.Errorf("%s has.dot: %d %v; want 404 saying why", method, code, m)
		}
	}
	// pfcon 2022's layout: the input directory is key-<jid>/incoming.
	code, m = call(t, "POST", base+"/api/v1/", swarmJob("sw-noinput", "img", "true"))
	if msg, _ := m["message"].(map[string]any); code != 400 || !strings.Contains(fmt.Sprint(msg["input_dir"]), filepath.Join(store, "key-sw-noinput/incoming")) {
		t.Errorf("POST with no input directory: %d %v; want 400 on input_dir naming it", code, m)
	}
}

// TestSwarmEngineRecovers starts the server while no engine answers at
// DOCKER_HOST, then brings one up there: the server answers 503, then
// works, without a restart.
func TestSwarmEngineRecovers(t *testing.T) {
	cli := needEngine(t)
	sock := filepath.Join(t.TempDir(), "engine.sock")
	base := startServer(t, map[string]string{"CONTAINER_ENV": "swarm", "STORAGE_TYPE": "host", "STOREBASE": t.TempDir(),
		"DOCKER_HOST": "unix://" + sock})
	jid := "sw-nosuch-" + randSuffix()

	code, m := call(t, "GET", base+"/api/v1/"+jid+"/", nil)
	if msg, _ := m["message"].(string); code != 503 || !strings.Contains(msg, "unreachable") {
		t.Errorf("GET with the engine down: %d %v; want 503 saying the engine is unreachable", code, m)
	}
	code, m = call(t, "POST", base+"/api/v1/", swarmJob(jid, "img", "true"))
	if _, ok := m["message"].(string); code != 503 || !ok {
		t.Errorf("POST with the engine down: %d %v; want 503 with a message", code, m)
	}

	// The engine "comes back".
	proxyEngine(t, cli, sock)
	code, m = call(t, "GET", base+"/api/v1/"+jid+"/", nil)
	if code != 404 {
		t.Errorf("GET an unknown jid once the engine is back: %d %v; want 404", code, m)
	}
}

// TestSwarmGetEngineCalls counts the engine calls of pfcon's polling path
// through a proxy in front of the engine: a GET of a job whose task has a
// container costs the task list and the container's own logs, never the
// service (the task carries its spec) nor the log broker (the container is
// on this engine's node). It also checks that the answers stay right where
// that path cannot be taken: a jid that is only the ID prefix of a job's
// service, and logs that cannot be read.
func TestSwarmGetEngineCalls(t *testing.T) {
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
		for _, d := range []string{"key-" + jid, "key-" + jid + "/incoming", "key-" + jid + "/outgoing"} {
			if err := os.Mkdir(filepath.Join(store, d), 0o777); err != nil {
				t.Fatal(err)
			}
		}
		if code, m := call(t, "POST", base+"/api/v1/", swarmJob(jid, image, script)); code != 201 {
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

	// get answers the job and the engine calls of one GET.
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
		if m["status"] != statusSuccess || m["logs"] != "done\n" || m["image"] != image || m["cmd"] != "sh -c echo done /share/outgoing" {
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

// matchCall says whether an engine path ("/v1.41/services/x/logs") is the
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

func randSuffix() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// needSwarm answers an engine client with Swarm active, or skips (fails
// under CI) saying why.
func needSwarm(t testing.TB) *client.Client {
	t.Helper()
	cli := needEngine(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := cli.Info(ctx)
	if err != nil {
		needOrSkip(t, "docker info: "+err.Error())
	}
	if info.Swarm.LocalNodeState != swarm.LocalNodeStateActive || !info.Swarm.ControlAvailable {
		needOrSkip(t, "Swarm is not active on this engine as a manager (docker swarm init --advertise-addr 127.0.0.1); state: "+string(info.Swarm.LocalNodeState))
	}
	return cli
}

// TestSwarmEndToEnd runs real jobs as Swarm services through the whole
// server, as pfcon would: it makes the job directories, POSTs, polls GET
// until the job finishes, and looks at what the job left in STOREBASE.
func TestSwarmEndToEnd(t *testing.T) {
	cli := needSwarm(t)
	image := needTestImage(t, cli)
	store := t.TempDir()
	// A job running as CONTAINER_USER (not root) must be able to write.
	if err := os.Chmod(store, 0o777); err != nil {
		t.Fatal(err)
	}
	const uid = 4321
	base := startServer(t, map[string]string{
		"CONTAINER_ENV": "swarm", "STORAGE_TYPE": "host", "STOREBASE": store,
		"JOB_LOGS_TAIL": "3", "CONTAINER_USER": "4321:8765", "SHM_SIZE": "128",
	})
	suffix := randSuffix()

	// newJob makes the job's directories as pfcon would, and removes the
	// service when the test ends, whatever happened.
	newJob := func(t *testing.T, name, script string, dirs bool) (jid string, body map[string]any, in, out string) {
		jid = "sw-" + suffix + "-" + name
		t.Cleanup(func() { cli.ServiceRemove(context.Background(), jid) })
		in, out = filepath.Join(store, jid, "incoming"), filepath.Join(store, jid, "outgoing")
		if dirs {
			for _, d := range []string{filepath.Join(store, jid), in, out} {
				if err := os.Mkdir(d, 0o777); err != nil {
					t.Fatal(err)
				}
				os.Chmod(d, 0o777)
			}
		}
		body = swarmJob(jid, image, script)
		body["input_dir"] = jid + "/incoming"
		body["output_dir"] = jid + "/outgoing"
		return jid, body, in, out
	}
	submit := func(t *testing.T, body map[string]any) {
		t.Helper()
		code, m := call(t, "POST", base+"/api/v1/", body)
		if code != 201 {
			t.Fatalf("POST %v: %d %v; want 201", body["jid"], code, m)
		}
		if m["jid"] != body["jid"] || m["image"] != image || m["logs"] != "" {
			t.Errorf("POST answered %v; want jid %v, image %s, empty logs", m, body["jid"], image)
		}
	}
	// finished polls GET until the job is finished*, for at most 90 s:
	// Swarm takes seconds to schedule, prepare and start a task.
	finished := func(t *testing.T, jid string) map[string]any {
		t.Helper()
		return untilStatus(t, base, jid, 90*time.Second, statusSuccess, statusError)
	}
	wantStatus := func(t *testing.T, m map[string]any, status string, inMessage ...string) {
		t.Helper()
		if m["status"] != status {
			t.Errorf("%v: status %v (message %q); want %s", m["jid"], m["status"], m["message"], status)
		}
		msg, _ := m["message"].(string)
		for _, w := range inMessage {
			if !strings.Contains(msg, w) {
				t.Errorf("%v: message %q; want it to contain %q", m["jid"], msg, w)
			}
		}
		if ts, _ := m["timestamp"].(string); ts == "" {
			t.Errorf("%v: empty timestamp", m["jid"])
		} else if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
			t.Errorf("%v: timestamp %q is not RFC 3339: %v", m["jid"], ts, err)
		}
	}

	t.Run("fs job writes its output as CONTAINER_USER with its env", func(t *testing.T) {
		t.Parallel()
		jid, body, _, out := newJob(t, "fs", `echo "$GREETING $(id -u) $(id -G)" > "$0/out.txt"`, true)
		body["env"] = []string{"GREETING=hej"}
		submit(t, body)
		m := finished(t, jid)
		wantStatus(t, m, statusSuccess)
		if m["cmd"] != `sh -c echo "$GREETING $(id -u) $(id -G)" > "$0/out.txt" /share/outgoing` {
			t.Errorf("cmd = %q; want the service's command joined", m["cmd"])
		}
		got, err := os.ReadFile(filepath.Join(out, "out.txt"))
		if err != nil {
			t.Fatalf("the job's output file: %v", err)
		}
		// As pman 6: the GID is a supplementary group, the primary one
		// stays the image's (root's, in an image without /etc/passwd).
		if want := "hej 4321 0 8765\n"; string(got) != want {
			t.Errorf("out.txt = %q; want %q (uid, then groups)", got, want)
		}
		if fi, err := os.Stat(filepath.Join(out, "out.txt")); err == nil {
			if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid {
				t.Errorf("out.txt owned by uid %d; want %d", st.Uid, uid)
			}
		}
	})

	t.Run("an upload folder with ':' and ',' is mounted", func(t *testing.T) {
		t.Parallel()
		jid, body, _, out := newJob(t, "colon", `cp "$0/in.txt" "$1/copy.txt"`, true)
		in := filepath.Join(store, jid, "scan 10:30,2")
		if err := os.Mkdir(in, 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(in, "in.txt"), []byte("uploaded\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		body["type"], body["input_dir"] = "ds", jid+"/scan 10:30,2"
		submit(t, body)
		wantStatus(t, finished(t, jid), statusSuccess)
		if got, err := os.ReadFile(filepath.Join(out, "copy.txt")); err != nil || string(got) != "uploaded\n" {
			t.Errorf("copy.txt = %q, %v; want the uploaded input", got, err)
		}
	})

	t.Run("ds job reads its input and cannot write to it", func(t *testing.T) {
		t.Parallel()
		jid, body, in, out := newJob(t, "ds", `cp "$0/in.txt" "$1/copy.txt" && if touch "$0/written"; then exit 7; fi`, true)
		body["type"] = "ds"
		if err := os.WriteFile(filepath.Join(in, "in.txt"), []byte("input data\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		submit(t, body)
		m := finished(t, jid)
		wantStatus(t, m, statusSuccess)
		if got, err := os.ReadFile(filepath.Join(out, "copy.txt")); err != nil || string(got) != "input data\n" {
			t.Errorf("copy.txt = %q, %v; want the input's content", got, err)
		}
		if _, err := os.Stat(filepath.Join(in, "written")); err == nil {
			t.Error("the job wrote into its input directory")
		}
		if logs, _ := m["logs"].(string); !strings.Contains(logs, "Read-only file system") {
			t.Errorf("logs = %q; want touch's Read-only file system error", logs)
		}
	})

	t.Run("failing job", func(t *testing.T) {
		t.Parallel()
		jid, body, _, _ := newJob(t, "fail", "exit 3", true)
		submit(t, body)
		wantStatus(t, finished(t, jid), statusError, "(3)")
	})

	t.Run("missing image", func(t *testing.T) {
		t.Parallel()
		jid, body, _, _ := newJob(t, "noimage", "true", true)
		missing := "pman-test-nosuch-" + suffix + ":latest"
		body["image"] = missing
		code, m := call(t, "POST", base+"/api/v1/", body)
		if code != 201 {
			t.Fatalf("POST: %d %v; want 201 (the task fails, not the service)", code, m)
		}
		wantStatus(t, finished(t, jid), statusError, "pman-test-nosuch-"+suffix)
	})

	t.Run("output directory missing on the host", func(t *testing.T) {
		t.Parallel()
		jid, body, in, out := newJob(t, "nomount", "true", false)
		// pfcon made the input directory but not the output one.
		if err := os.MkdirAll(in, 0o777); err != nil {
			t.Fatal(err)
		}
		submit(t, body)
		wantStatus(t, finished(t, jid), statusError, "bind source path does not exist", out)
	})

	t.Run("killed for memory", func(t *testing.T) {
		t.Parallel()
		// dd fills a 256 MiB buffer from /dev/zero: far over 16 MiB.
		jid, body, _, _ := newJob(t, "oom", "dd if=/dev/zero of=/dev/null bs=256M count=1", true)
		body["memory_limit"] = 16
		submit(t, body)
		// Either "out of memory: killed" (the container's OOMKilled was
		// already set) or "most likely out of memory" (not yet).
		wantStatus(t, finished(t, jid), statusError, "out of memory")
	})

	t.Run("SHM_SIZE sizes /dev/shm", func(t *testing.T) {
		t.Parallel()
		jid, body, _, _ := newJob(t, "shm", `while read -r dev mnt typ opts rest; do test "$mnt" = /dev/shm && echo "$typ $opts"; done < /proc/mounts; true`, true)
		submit(t, body)
		m := finished(t, jid)
		wantStatus(t, m, statusSuccess)
		if logs, _ := m["logs"].(string); !strings.HasPrefix(logs, "tmpfs ") || !strings.Contains(logs, "size=131072k") {
			t.Errorf("/dev/shm mount = %q; want a tmpfs of size=131072k (SHM_SIZE=128)", logs)
		}
	})

	t.Run("gpu_limit where no node has GPUs", func(t *testing.T) {
		t.Parallel()
		jid, body, _, _ := newJob(t, "gpu", "true", true)
		body["gpu_limit"] = 1
		submit(t, body)
		wantStatus(t, finished(t, jid), statusError, "no suitable node")
	})

	t.Run("logs tail", func(t *testing.T) {
		t.Parallel()
		jid, body, _, _ := newJob(t, "logs", "seq 1 10", true)
		submit(t, body)
		m := finished(t, jid)
		wantStatus(t, m, statusSuccess)
		if logs, _ := m["logs"].(string); logs != "8\n9\n10\n" {
			t.Errorf("logs = %q; want the last 3 of 10 lines, %q", logs, "8\n9\n10\n")
		}
	})

	t.Run("DELETE while running, then 404", func(t *testing.T) {
		t.Parallel()
		jid, body, _, _ := newJob(t, "delete", "sleep 300", true)
		submit(t, body)
		deadline := time.Now().Add(90 * time.Second)
		for {
			_, m := call(t, "GET", base+"/api/v1/"+jid+"/", nil)
			if m["status"] == statusStarted {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET %s: %v after 90s; want started", jid, m)
			}
			time.Sleep(time.Second)
		}
		if code, m := call(t, "DELETE", base+"/api/v1/"+jid+"/", nil); code != 204 {
			t.Fatalf("DELETE %s: %d %v; want 204", jid, code, m)
		}
		if code, m := call(t, "GET", base+"/api/v1/"+jid+"/", nil); code != 404 {
			t.Errorf("GET after DELETE: %d %v; want 404", code, m)
		}
		if code, m := call(t, "DELETE", base+"/api/v1/"+jid, nil); code != 404 {
			t.Errorf("DELETE again: %d %v; want 404", code, m)
		}
	})

	t.Run("duplicate jid", func(t *testing.T) {
		t.Parallel()
		jid, body, _, _ := newJob(t, "dup", "sleep 30", true)
		submit(t, body)
		code, m := call(t, "POST", base+"/api/v1/", body)
		if msg, _ := m["message"].(string); code != 409 || !strings.Contains(msg, jid) {
			t.Errorf("second POST of %s: %d %v; want 409 naming the jid", jid, code, m)
		}
	})

	t.Run("2022 request without input_dir and output_dir", func(t *testing.T) {
		t.Parallel()
		jid := "sw-" + suffix + "-old"
		t.Cleanup(func() { cli.ServiceRemove(context.Background(), jid) })
		key := filepath.Join(store, "key-"+jid)
		for _, d := range []string{key, filepath.Join(key, "incoming"), filepath.Join(key, "outgoing")} {
			if err := os.Mkdir(d, 0o777); err != nil {
				t.Fatal(err)
			}
			os.Chmod(d, 0o777)
		}
		submit(t, swarmJob(jid, image, `echo old > "$0/old.txt"`))
		wantStatus(t, finished(t, jid), statusSuccess)
		if got, err := os.ReadFile(filepath.Join(key, "outgoing", "old.txt")); err != nil || string(got) != "old\n" {
			t.Errorf("key-<jid>/outgoing/old.txt = %q, %v; want %q", got, err, "old\n")
		}
	})
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
	// get GETs the next job in turn and answers how long that took and
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
