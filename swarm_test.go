package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
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
		t.Run(tt.name, func(t *testing.T) {
			status, msg := taskStatus(tt.task, tt.res, tt.oom)
			if status != tt.wantStatus {
				t.Errorf("taskStatus(%q, %q, %q) status = %q; want %q", tt.task.Status.State, tt.task.Status.Message, tt.task.Status.Err, status, tt.wantStatus)
			}
			for _, w := range tt.wantMessage {
				if !strings.Contains(msg, w) {
					t.Errorf("taskStatus(%q, %q, %q) message = %q; want it to contain %q", tt.task.Status.State, tt.task.Status.Message, tt.task.Status.Err, msg, w)
				}
			}
			if tt.res == nil && strings.Contains(msg, "out of memory") {
				t.Errorf("message = %q; must not claim out of memory without a memory limit", msg)
			}
		})
	}
}

func TestSwarmNewestTask(t *testing.T) {
	t0 := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	mk := func(id string, created time.Time, index uint64) swarm.Task {
		return swarm.Task{ID: id, Meta: swarm.Meta{CreatedAt: created, Version: swarm.Version{Index: index}}}
	}
	tests := []struct {
		name  string
		tasks []swarm.Task
		want  string
	}{
		{"none", nil, ""},
		{"one", []swarm.Task{mk("a", t0, 1)}, "a"},
		{"the last created", []swarm.Task{mk("a", t0, 1), mk("b", t0.Add(time.Second), 2), mk("c", t0.Add(-time.Second), 3)}, "b"},
		{"created together: the higher version", []swarm.Task{mk("a", t0, 5), mk("b", t0, 9)}, "b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ""
			if n := newestTask(tt.tasks); n != nil {
				got = n.ID
			}
			if got != tt.want {
				t.Errorf("newestTask(%d tasks) = %q; want %q", len(tt.tasks), got, tt.want)
			}
		})
	}
}

// ---- through the server -----------------------------------------------------

// swarmDirs makes a job's directories of jobRequest in store, writable by
// any CONTAINER_USER, as pfcon makes them.
func swarmDirs(t *testing.T, store, jid string) {
	t.Helper()
	for _, d := range []string{jid, jid + "/in", jid + "/out"} {
		p := filepath.Join(store, d)
		if err := os.Mkdir(p, 0o777); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, 0o777)
	}
}

// TestSwarmRefusedBeforeEngine: what Swarm cannot run is refused with a
// 400 before the engine is asked.
func TestSwarmRefusedBeforeEngine(t *testing.T) {
	// Nothing listens on this socket: a request that reached the engine
	// would answer 503, not 400.
	store := t.TempDir()
	base := startServer(t, map[string]string{"CONTAINER_ENV": "swarm", "STORAGE_TYPE": "host", "STOREBASE": store,
		"DOCKER_HOST": "unix://" + filepath.Join(t.TempDir(), "none.sock")})
	tests := []struct {
		name, jid string
		workers   int
		field     string
	}{
		{"number_of_workers=2", "sw-workers", 2, "number_of_workers"},
		{"jid that cannot name a service", "has.dot", 1, "jid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			swarmDirs(t, store, tt.jid)
			body := jobRequest(tt.jid)
			body["image"], body["entrypoint"], body["number_of_workers"] = "img", []string{"true"}, tt.workers
			code, m := call(t, "POST", base+"/api/v1/", body)
			if msg, _ := m["message"].(map[string]any); code != 400 || msg[tt.field] == nil {
				t.Errorf("POST %s: %d %v; want 400 naming %s", tt.name, code, m, tt.field)
			}
		})
	}
	for _, method := range []string{"GET", "DELETE"} {
		if code, m := call(t, method, base+"/api/v1/has.dot/", nil); code != 404 || !strings.Contains(fmt.Sprint(m["message"]), "Swarm service") {
			t.Errorf("%s has.dot: %d %v; want 404 saying why", method, code, m)
		}
	}
	// pfcon 2022's layout: the input directory is key-<jid>/incoming.
	body := jobRequest("sw-noinput")
	body["image"], body["entrypoint"] = "img", []string{"true"}
	delete(body, "input_dir")
	delete(body, "output_dir")
	code, m := call(t, "POST", base+"/api/v1/", body)
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
	store := t.TempDir()
	base := startServer(t, map[string]string{"CONTAINER_ENV": "swarm", "STORAGE_TYPE": "host", "STOREBASE": store,
		"DOCKER_HOST": "unix://" + sock})
	jid := "sw-nosuch-" + randSuffix()
	swarmDirs(t, store, jid)
	body := jobRequest(jid)
	body["image"], body["entrypoint"] = "img", []string{"true"}

	code, m := call(t, "GET", base+"/api/v1/"+jid+"/", nil)
	if msg, _ := m["message"].(string); code != 503 || !strings.Contains(msg, "unreachable") {
		t.Errorf("GET with the engine down: %d %v; want 503 saying the engine is unreachable", code, m)
	}
	code, m = call(t, "POST", base+"/api/v1/", body)
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

// randSuffix returns 8 random hex digits, to make names no other test uses.
func randSuffix() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// needSwarm returns an engine client with Swarm active, or skips (fails
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
// server, for what only Swarm shows; what every backend shows is the
// contract suite's (contract_swarm_test.go).
func TestSwarmEndToEnd(t *testing.T) {
	t.Parallel()
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

	// newJob returns a jid and its request for a job that runs script as
	// sh -c script sh --verbose /share/incoming /share/outgoing, its
	// directories made (as pfcon would) when dirs; the service is removed
	// when the test ends, whatever happened.
	newJob := func(t *testing.T, name, script string, dirs bool) (jid string, body map[string]any) {
		jid = "sw-" + suffix + "-" + name
		t.Cleanup(func() { cli.ServiceRemove(context.Background(), jid) })
		if dirs {
			swarmDirs(t, store, jid)
		}
		body = jobRequest(jid)
		body["image"], body["entrypoint"] = image, []string{"sh", "-c", script, "sh"}
		return jid, body
	}
	// finish POSTs the job and polls GET until it is finished*, for at
	// most 90 s: Swarm takes seconds to schedule, prepare and start a task.
	// It fails the test unless the status is want, the message has every
	// one of inMessage and the timestamp is RFC 3339.
	finish := func(t *testing.T, body map[string]any, want string, inMessage ...string) map[string]any {
		t.Helper()
		if code, m := call(t, "POST", base+"/api/v1/", body); code != 201 {
			t.Fatalf("POST %v: %d %v; want 201", body["jid"], code, m)
		}
		m := untilStatus(t, base, fmt.Sprint(body["jid"]), 90*time.Second, statusSuccess, statusError)
		if m["status"] != want {
			t.Errorf("%v: status %v (message %q); want %s", m["jid"], m["status"], m["message"], want)
		}
		msg, _ := m["message"].(string)
		for _, w := range inMessage {
			if !strings.Contains(msg, w) {
				t.Errorf("%v: message %q; want it to contain %q", m["jid"], msg, w)
			}
		}
		if _, err := time.Parse(time.RFC3339Nano, fmt.Sprint(m["timestamp"])); err != nil {
			t.Errorf("%v: timestamp %q is not RFC 3339: %v", m["jid"], m["timestamp"], err)
		}
		return m
	}

	t.Run("an upload folder with ':' and ',' is mounted", func(t *testing.T) {
		t.Parallel()
		jid, body := newJob(t, "colon", `cp "$2/in.txt" "$3/copy.txt"`, true)
		in := filepath.Join(store, jid, "scan 10:30,2")
		if err := os.Mkdir(in, 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(in, "in.txt"), []byte("uploaded\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		body["input_dir"] = jid + "/scan 10:30,2"
		finish(t, body, statusSuccess)
		if got, err := os.ReadFile(filepath.Join(store, jid, "out", "copy.txt")); err != nil || string(got) != "uploaded\n" {
			t.Errorf("copy.txt = %q, %v; want the uploaded input", got, err)
		}
	})

	t.Run("CONTAINER_USER writes its output and cannot write its input", func(t *testing.T) {
		t.Parallel()
		jid, body := newJob(t, "user", `echo "$GREETING $(id -u) $(id -G)" > "$3/out.txt" && if touch "$2/written"; then exit 7; fi`, true)
		m := finish(t, body, statusSuccess)
		out := filepath.Join(store, jid, "out", "out.txt")
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatalf("the job's output file: %v", err)
		}
		// As pman 6: the GID is a supplementary group, the primary one
		// stays the image's (root's, in an image without /etc/passwd).
		if want := "hello 4321 0 8765\n"; string(got) != want {
			t.Errorf("out.txt = %q; want %q (uid, then groups)", got, want)
		}
		if fi, err := os.Stat(out); err == nil {
			if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid {
				t.Errorf("out.txt owned by uid %d; want %d", st.Uid, uid)
			}
		}
		if _, err := os.Stat(filepath.Join(store, jid, "in", "written")); err == nil {
			t.Error("the job wrote into its input directory")
		}
		if logs, _ := m["logs"].(string); !strings.Contains(logs, "Read-only file system") {
			t.Errorf("logs = %q; want touch's Read-only file system error", logs)
		}
	})

	t.Run("missing image", func(t *testing.T) {
		t.Parallel()
		_, body := newJob(t, "noimage", "true", true)
		missing := "pman-test-nosuch-" + suffix + ":latest"
		body["image"] = missing
		// The task fails, not the service: the POST is a 201.
		finish(t, body, statusError, "pman-test-nosuch-"+suffix)
	})

	t.Run("output directory missing on the host", func(t *testing.T) {
		t.Parallel()
		jid, body := newJob(t, "nomount", "true", false)
		// pfcon made the input directory but not the output one.
		if err := os.MkdirAll(filepath.Join(store, jid, "in"), 0o777); err != nil {
			t.Fatal(err)
		}
		finish(t, body, statusError, "bind source path does not exist", filepath.Join(store, jid, "out"))
	})

	t.Run("SHM_SIZE sizes /dev/shm", func(t *testing.T) {
		t.Parallel()
		_, body := newJob(t, "shm", `while read -r dev mnt typ opts rest; do test "$mnt" = /dev/shm && echo "$typ $opts"; done < /proc/mounts; true`, true)
		m := finish(t, body, statusSuccess)
		if logs, _ := m["logs"].(string); !strings.HasPrefix(logs, "tmpfs ") || !strings.Contains(logs, "size=131072k") {
			t.Errorf("/dev/shm mount = %q; want a tmpfs of size=131072k (SHM_SIZE=128)", logs)
		}
	})

	t.Run("gpu_limit where no node has GPUs", func(t *testing.T) {
		t.Parallel()
		_, body := newJob(t, "gpu", "true", true)
		body["gpu_limit"] = 1
		finish(t, body, statusError, "no suitable node")
	})

	t.Run("JOB_LOGS_TAIL", func(t *testing.T) {
		t.Parallel()
		_, body := newJob(t, "logs", "seq 1 10", true)
		m := finish(t, body, statusSuccess)
		if logs, _ := m["logs"].(string); logs != "8\n9\n10\n" {
			t.Errorf("logs = %q; want the last 3 of 10 lines, %q", logs, "8\n9\n10\n")
		}
	})
}
