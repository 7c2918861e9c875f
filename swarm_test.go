package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

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
		{"OOM killed", task("failed", "started", "task: non-zero exit (137)", 137), mem, &yes, statusError, []string{"out of memory", "16 MiB"}},
		{"exit 137 under a limit, container gone", task("failed", "started", "task: non-zero exit (137)", 137), mem, nil, statusError, []string{"out of memory", "16 MiB", "(137)"}},
		// OOMKilled may not be set yet when the task has failed.
		{"exit 137 under a limit, OOMKilled not (yet) set", task("failed", "started", "task: non-zero exit (137)", 137), mem, &no, statusError, []string{"most likely out of memory", "16 MiB", "(137)"}},
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

func TestSwarmCheckServiceName(t *testing.T) {
	tests := []struct {
		jid string
		ok  bool
	}{
		{"chris-jid-1", true},
		{"a", true},
		{"job_2", true},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{"-lead", false},
		{"trail-", false},
		{"has.dot", false},
		{"has space", false},
	}
	for _, tt := range tests {
		if err := checkServiceName(tt.jid); (err == nil) != tt.ok {
			t.Errorf("checkServiceName(%q) = %v; want ok=%v", tt.jid, err, tt.ok)
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
	base := startServer(t, map[string]string{"CONTAINER_ENV": "swarm", "STORAGE_TYPE": "host", "STOREBASE": t.TempDir(),
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

// TestSwarmGetEngineCalls counts the engine calls of pfcon's polling path:
// a GET of a finished job needs the service, its tasks and its logs.
func TestSwarmGetEngineCalls(t *testing.T) {
	cli := needSwarm(t)
	image := needTestImage(t, cli)
	sock := filepath.Join(t.TempDir(), "engine.sock")
	calls := proxyEngine(t, cli, sock)
	store := t.TempDir()
	base := startServer(t, map[string]string{"CONTAINER_ENV": "swarm", "STORAGE_TYPE": "host", "STOREBASE": store,
		"DOCKER_HOST": "unix://" + sock})
	jid := "sw-" + randSuffix() + "-calls"
	t.Cleanup(func() { cli.ServiceRemove(context.Background(), jid) })
	for _, d := range []string{"key-" + jid, "key-" + jid + "/incoming", "key-" + jid + "/outgoing"} {
		if err := os.Mkdir(filepath.Join(store, d), 0o777); err != nil {
			t.Fatal(err)
		}
	}
	if code, m := call(t, "POST", base+"/api/v1/", swarmJob(jid, image, "echo done")); code != 201 {
		t.Fatalf("POST: %d %v; want 201", code, m)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		calls.reset()
		_, m := call(t, "GET", base+"/api/v1/"+jid+"/", nil)
		if s, _ := m["status"].(string); strings.HasPrefix(s, "finished") {
			if s != statusSuccess || m["logs"] != "done\n" {
				t.Errorf("GET: %v; want finishedSuccessfully with logs \"done\\n\"", m)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v after 90s; want finished*", jid, m)
		}
		time.Sleep(time.Second)
	}
	got := calls.get()
	t.Logf("engine calls of one GET: %q", got)
	want := []string{"/services/" + jid, "/tasks", "/services/*/logs"}
	ok := len(got) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = matchCall(want[i], got[i])
	}
	if !ok {
		t.Errorf("engine calls of one GET = %q; want %q", got, want)
	}
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
func needSwarm(t *testing.T) *client.Client {
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
	const uid = 4321 // CONTAINER_USER 4321:8765: 8765 is a supplementary group
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
		jid, body, _, out := newJob(t, "fs", `echo "$GREETING $(id -u):$(id -g) $(id -G)" > "$0/out.txt"`, true)
		body["env"] = []string{"GREETING=hej"}
		submit(t, body)
		m := finished(t, jid)
		wantStatus(t, m, statusSuccess)
		if m["cmd"] != `sh -c echo "$GREETING $(id -u):$(id -g) $(id -G)" > "$0/out.txt" /share/outgoing` {
			t.Errorf("cmd = %q; want the service's command joined", m["cmd"])
		}
		got, err := os.ReadFile(filepath.Join(out, "out.txt"))
		if err != nil {
			t.Fatalf("the job's output file: %v", err)
		}
		// The GID is a supplementary group; the primary group stays the
		// image's (0), so the file keeps the group it had under pman 6.
		if want := "hej 4321:0 0 8765\n"; string(got) != want {
			t.Errorf("out.txt = %q; want %q (uid:gid groups)", got, want)
		}
		if fi, err := os.Stat(filepath.Join(out, "out.txt")); err == nil {
			if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid || st.Gid != 0 {
				t.Errorf("out.txt owned by %d:%d; want %d:0", st.Uid, st.Gid, uid)
			}
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
