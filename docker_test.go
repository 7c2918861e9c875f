package main

// The Docker backend's parts that need no engine; docker_e2e_test.go runs
// it on Docker and Podman.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/client"
)

func TestDockerContainerConfig(t *testing.T) {
	base := &jobSpec{
		JID: "chris-jid-7", Image: "fnndsc/pl-app:1.0", Type: "ds", Workers: 1,
		CPULimit: 1500, MemoryLimit: 300, GPULimit: 0,
		Env:      []string{"A=1", "HOME=/tmp"},
		Cmd:      []string{"app", "/share/incoming", "/share/outgoing"},
		InputDir: "feeds/1/in", OutputDir: "feeds/1/out",
	}
	with := func(f func(j *jobSpec)) *jobSpec {
		j := *base
		f(&j)
		return &j
	}
	tests := []struct {
		name string
		cfg  config
		j    *jobSpec
		// wanted
		user             string
		groups           []string
		nanoCPUs, memory int64
		gpus             int
		shm              int64
		in, out          string
	}{
		{name: "limits", j: base, nanoCPUs: 1_500_000_000, memory: 300 << 20,
			in: "/store/feeds/1/in", out: "/store/feeds/1/out:/share/outgoing:rw"},
		{name: "IGNORE_LIMITS", cfg: config{IgnoreLimits: true}, j: base,
			in: "/store/feeds/1/in", out: "/store/feeds/1/out:/share/outgoing:rw"},
		{name: "no memory limit asked", j: with(func(j *jobSpec) { j.MemoryLimit = 0 }), nanoCPUs: 1_500_000_000,
			in: "/store/feeds/1/in", out: "/store/feeds/1/out:/share/outgoing:rw"},
		{name: "GPU", j: with(func(j *jobSpec) { j.GPULimit = 2 }), nanoCPUs: 1_500_000_000, memory: 300 << 20, gpus: 2,
			in: "/store/feeds/1/in", out: "/store/feeds/1/out:/share/outgoing:rw"},
		{name: "GPU with IGNORE_LIMITS", cfg: config{IgnoreLimits: true}, j: with(func(j *jobSpec) { j.GPULimit = 1 }), gpus: 1,
			in: "/store/feeds/1/in", out: "/store/feeds/1/out:/share/outgoing:rw"},
		{name: "user and shm", cfg: config{ShmSizeMiB: 64, ContainerUser: userSpec{idRange{true, 1001, 1001}, idRange{true, 1002, 1002}}},
			j: base, user: "1001", groups: []string{"1002"},
			nanoCPUs: 1_500_000_000, memory: 300 << 20, shm: 64 << 20,
			in: "/store/feeds/1/in", out: "/store/feeds/1/out:/share/outgoing:rw"},
		{name: "2022 dirs", j: with(func(j *jobSpec) { j.InputDir, j.OutputDir = "key-chris-jid-7/incoming", "key-chris-jid-7/outgoing" }),
			nanoCPUs: 1_500_000_000, memory: 300 << 20,
			in: "/store/key-chris-jid-7/incoming", out: "/store/key-chris-jid-7/outgoing:/share/outgoing:rw"},
		// The input is a Mount, an API struct: ':' is a character like any other.
		{name: "':' in the input", j: with(func(j *jobSpec) { j.InputDir = "home/chris/uploads/scan 10:30" }),
			nanoCPUs: 1_500_000_000, memory: 300 << 20,
			in: "/store/home/chris/uploads/scan 10:30", out: "/store/feeds/1/out:/share/outgoing:rw"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.JobLabels = map[string]string{"team": "fnndsc"}
			c, h := containerConfig(&tt.cfg, tt.j, "/store")
			if c.Image != tt.j.Image || !slices.Equal(c.Cmd, tt.j.Cmd) || !slices.Equal(c.Env, tt.j.Env) {
				t.Errorf("image, cmd, env = %q, %q, %q; want %q, %q, %q", c.Image, c.Cmd, c.Env, tt.j.Image, tt.j.Cmd, tt.j.Env)
			}
			if c.User != tt.user || !slices.Equal(h.GroupAdd, tt.groups) {
				t.Errorf("User, GroupAdd = %q, %q; want %q, %q (pman 6: the GID is a supplementary group)", c.User, h.GroupAdd, tt.user, tt.groups)
			}
			if c.Labels["org.chrisproject.pman.jid"] != tt.j.JID || c.Labels["team"] != "fnndsc" || c.Labels[imageLabel] != tt.j.Image {
				t.Errorf("Labels = %v; want the jid, the image and JOB_LABELS", c.Labels)
			}
			if c.Tty || len(c.Entrypoint) != 0 {
				t.Errorf("Tty, Entrypoint = %v, %q; want false and the image's", c.Tty, c.Entrypoint)
			}
			if h.RestartPolicy.Name != container.RestartPolicyDisabled {
				t.Errorf("RestartPolicy = %q; want no", h.RestartPolicy.Name)
			}
			if h.NanoCPUs != tt.nanoCPUs || h.Memory != tt.memory || h.MemorySwap != tt.memory {
				t.Errorf("NanoCPUs, Memory, MemorySwap = %d, %d, %d; want %d, %d, %d", h.NanoCPUs, h.Memory, h.MemorySwap, tt.nanoCPUs, tt.memory, tt.memory)
			}
			if h.ShmSize != tt.shm {
				t.Errorf("ShmSize = %d; want %d", h.ShmSize, tt.shm)
			}
			gpus := 0
			for _, dr := range h.DeviceRequests {
				if len(dr.Capabilities) == 1 && slices.Equal(dr.Capabilities[0], []string{"gpu"}) {
					gpus += dr.Count
				}
			}
			if gpus != tt.gpus || (tt.gpus == 0 && len(h.DeviceRequests) != 0) {
				t.Errorf("DeviceRequests = %+v; want %d GPUs", h.DeviceRequests, tt.gpus)
			}
			wantMount := mount.Mount{Type: mount.TypeBind, Source: tt.in, Target: "/share/incoming", ReadOnly: true}
			if len(h.Mounts) != 1 || !reflect.DeepEqual(h.Mounts[0], wantMount) {
				t.Errorf("Mounts = %+v; want [%+v]", h.Mounts, wantMount)
			}
			if !slices.Equal(h.Binds, []string{tt.out}) {
				t.Errorf("Binds = %q; want [%q]", h.Binds, tt.out)
			}
		})
	}
}

func TestDockerPickUser(t *testing.T) {
	tests := []struct {
		spec       string
		wantUsers  []string
		wantGroups []string
	}{
		{"", []string{""}, nil},
		{"1001:", []string{"1001"}, nil},
		{":0", []string{""}, []string{"0"}},
		{"1000-1002:50", []string{"1000", "1001", "1002"}, []string{"50"}},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			u, err := parseUserSpec(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			users := map[string]bool{}
			for range 200 {
				user, groups := pickUser(u)
				users[user] = true
				if !reflect.DeepEqual(groups, tt.wantGroups) {
					t.Fatalf("pickUser(%q) groups = %q; want %q", tt.spec, groups, tt.wantGroups)
				}
			}
			want := map[string]bool{}
			for _, w := range tt.wantUsers {
				want[w] = true
			}
			if !reflect.DeepEqual(users, want) {
				t.Errorf("pickUser(%q) drew users %v; want exactly %v", tt.spec, users, want)
			}
		})
	}
}

const zeroTime = "0001-01-01T00:00:00Z"

func TestDockerContainerStatus(t *testing.T) {
	started, finished := "2024-03-01T12:00:00.123456789Z", "2024-03-01T12:05:00.5Z"
	tests := []struct {
		name     string
		state    container.State
		memory   int64
		status   string
		contains []string
	}{
		{"created", container.State{Status: "created"}, 0, statusNotStarted, []string{"created"}},
		{"running", container.State{Status: "running", Running: true}, 0, statusStarted, []string{"running"}},
		{"paused", container.State{Status: "paused", Running: true, Paused: true}, 0, statusStarted, []string{"paused"}},
		{"restarting", container.State{Status: "restarting", Restarting: true}, 0, statusStarted, []string{"restarting"}},
		{"exited 0", container.State{Status: "exited"}, 0, statusSuccess, []string{"0"}},
		{"exited 3", container.State{Status: "exited", ExitCode: 3}, 0, statusError, []string{"exited with code 3"}},
		{"exited 127 with error", container.State{Status: "exited", ExitCode: 127, Error: "exec: \"nope\": not found"}, 0, statusError, []string{"127", "not found"}},
		{"OOM-killed", container.State{Status: "exited", ExitCode: 137, OOMKilled: true}, 8 << 20, statusError, []string{"out of memory", "8 MiB"}},
		{"running after a child was OOM-killed", container.State{Status: "running", Running: true, OOMKilled: true}, 8 << 20, statusStarted, []string{"running", "memory"}},
		{"OOM in a shell that exited 0", container.State{Status: "exited", ExitCode: 0, OOMKilled: true}, 8 << 20, statusError, []string{"out of memory"}},
		{"137 under a limit", container.State{Status: "exited", ExitCode: 137}, 16 << 20, statusError, []string{"137", "out of memory"}},
		{"137 without a limit", container.State{Status: "exited", ExitCode: 137}, 0, statusError, []string{"exited with code 137"}},
		{"dead", container.State{Status: "dead", Dead: true, ExitCode: 1}, 0, statusError, []string{"dead"}},
		{"removing", container.State{Status: "removing"}, 0, statusUndefined, []string{"removed"}},
		{"unknown", container.State{Status: "teleporting"}, 0, statusUndefined, []string{"teleporting"}},
		// Podman's states beside Docker's.
		{"podman stopped 0", container.State{Status: "stopped"}, 0, statusSuccess, []string{"exited with code 0"}},
		{"podman stopped 3", container.State{Status: "stopped", ExitCode: 3}, 0, statusError, []string{"exited with code 3"}},
		{"podman stopped 137 under a limit", container.State{Status: "stopped", ExitCode: 137}, 8 << 20, statusError, []string{"out of memory"}},
		{"podman configured", container.State{Status: "configured"}, 0, statusNotStarted, []string{"created"}},
		{"podman initialized", container.State{Status: "initialized"}, 0, statusNotStarted, []string{"created"}},
		{"podman stopping", container.State{Status: "stopping", Running: true}, 0, statusStarted, []string{"stopping"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := tt.state
			st.StartedAt, st.FinishedAt = zeroTime, zeroTime
			c := container.InspectResponse{
				ContainerJSONBase: &container.ContainerJSONBase{Name: "/j", State: &st, HostConfig: &container.HostConfig{Resources: container.Resources{Memory: tt.memory}}},
				Config:            &container.Config{Image: "img:1", Cmd: []string{"sh", "-c", "exit 3"}},
			}
			j := containerJob("j", c)
			if j.Status != tt.status {
				t.Errorf("status = %q (%q); want %q", j.Status, j.Message, tt.status)
			}
			for _, want := range tt.contains {
				if !strings.Contains(j.Message, want) {
					t.Errorf("message = %q; want it to contain %q", j.Message, want)
				}
			}
			if j.JID != "j" || j.Image != "img:1" || j.Cmd != "sh -c exit 3" {
				t.Errorf("jid, image, cmd = %q, %q, %q; want j, img:1, \"sh -c exit 3\"", j.JID, j.Image, j.Cmd)
			}
		})
	}

	// Out of memory says it in the words every backend uses (policy.go).
	oom := []struct {
		name  string
		state container.State
		want  string
	}{
		{"OOMKilled", container.State{Status: "exited", ExitCode: 137, OOMKilled: true}, outOfMemory(8, true)},
		{"137 without OOMKilled", container.State{Status: "exited", ExitCode: 137}, outOfMemory(8, false)},
		{"running", container.State{Status: "running", OOMKilled: true}, "running; one of its processes: " + outOfMemory(8, true)},
	}
	for _, tt := range oom {
		t.Run("out of memory/"+tt.name, func(t *testing.T) {
			if _, msg := containerStatus(tt.state, 8<<20); msg != tt.want {
				t.Errorf("message = %q; want %q", msg, tt.want)
			}
		})
	}

	// The image as the job named it, not as Podman answers it.
	c := container.InspectResponse{Config: &container.Config{Image: "localhost/pl-app:1", Labels: map[string]string{imageLabel: "pl-app:1"}}}
	if got := containerJob("j", c).Image; got != "pl-app:1" {
		t.Errorf("image with the label = %q; want pl-app:1", got)
	}
	c.Config.Labels = nil
	if got := containerJob("j", c).Image; got != "localhost/pl-app:1" {
		t.Errorf("image without the label (a container of an older pman) = %q; want Config.Image", got)
	}

	// Timestamps: the last state change, never the zero time.
	stamps := []struct {
		name                                 string
		created, startedAt, finishedAt, want string
	}{
		{"created", "2024-03-01T11:59:59Z", zeroTime, zeroTime, "2024-03-01T11:59:59Z"},
		{"started", "2024-03-01T11:59:59Z", started, zeroTime, started},
		{"finished", "2024-03-01T11:59:59Z", started, finished, finished},
		{"none", "", "", "", ""},
	}
	for _, s := range stamps {
		t.Run("timestamp/"+s.name, func(t *testing.T) {
			c := container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{
				Created: s.created, State: &container.State{Status: "running", StartedAt: s.startedAt, FinishedAt: s.finishedAt},
			}}
			if got := containerJob("j", c).Timestamp; got != s.want {
				t.Errorf("timestamp(created %q, started %q, finished %q) = %q; want %q", s.created, s.startedAt, s.finishedAt, got, s.want)
			}
		})
	}
	// Podman: a short job's StartedAt (recorded when the start call
	// returned) after its FinishedAt. The job ended: FinishedAt.
	podmanEnded := container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{
		Created: "2026-11-25T19:21:39.5Z",
		State:   &container.State{Status: "exited", StartedAt: "2026-11-25T19:21:39.743188373Z", FinishedAt: "2026-11-25T19:21:39.74272306Z"},
	}}
	if got := containerJob("j", podmanEnded).Timestamp; got != "2026-11-25T19:21:39.74272306Z" {
		t.Errorf("timestamp of an ended job started (per Podman) after it finished = %q; want its FinishedAt", got)
	}

	// A half-empty answer (Podman, or a future engine) must not panic.
	if j := containerJob("j", container.InspectResponse{}); j.Status != statusUndefined {
		t.Errorf("containerJob(empty) status = %q; want %q", j.Status, statusUndefined)
	}
}

func TestDockerPodmanQuirks(t *testing.T) {
	t.Run("mountable", func(t *testing.T) {
		tests := []struct {
			base   string
			podman bool
			ok     bool
		}{
			{"/var/lib/storeBase", false, true},
			{"/var/lib/storeBase", true, true},
			{"/data/a,b", false, true},
			{"/data/a,b", true, false},
			{"/data/a:b", false, false},
			{"/data/a:b", true, false},
		}
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s podman=%v", path.Base(tt.base), tt.podman), func(t *testing.T) {
				err := mountable(tt.base, tt.podman)
				if code, _ := errorStatus(err); (err == nil) != tt.ok || (err != nil && code != http.StatusServiceUnavailable) {
					t.Errorf("mountable(%q, podman %v) = %v; want ok %v (or a 503)", tt.base, tt.podman, err, tt.ok)
				}
			})
		}
	})
	t.Run("dirsProblem", func(t *testing.T) {
		tests := []struct {
			name, in, out string
			podman        bool
			field         string // "" for none
		}{
			{"plain", "h/in", "h/out", false, ""},
			{"':' in the input, a Mount", "home/chris/uploads/scan 10:30", "h/out", false, ""},
			{"':' in the input on Podman", "home/chris/uploads/scan 10:30", "h/out", true, ""},
			{"',' in the output, a Binds source", "h/in", "h/a,b", true, ""},
			{"':' in the output splits the bind", "h/in", "h/a:b", false, "output_dir"},
			{"':' in the output on Podman", "h/in", "h/a:b", true, "output_dir"},
			{"',' in the input on Docker", "h/a,b", "h/out", false, ""},
			{"',' in the input on Podman breaks --mount", "h/a,b", "h/out", true, "input_dir"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				err := dirsProblem(&jobSpec{InputDir: tt.in, OutputDir: tt.out}, tt.podman)
				var ae *apiError
				switch {
				case tt.field == "" && err != nil:
					t.Errorf("dirsProblem(%q, %q, podman %v) = %v; want nil", tt.in, tt.out, tt.podman, err)
				case tt.field != "" && (!errors.As(err, &ae) || ae.kind != eInvalid || ae.fields[tt.field] == ""):
					t.Errorf("dirsProblem(%q, %q, podman %v) = %v; want a field error on %s", tt.in, tt.out, tt.podman, err, tt.field)
				}
			})
		}
	})
	t.Run("nameInUse", func(t *testing.T) {
		for engine, msg := range map[string]string{
			"Docker 20.10": `Error response from daemon: Conflict. The container name "/j" is already in use by container "1c71ace9". You have to remove (or rename) that container to be able to reuse that name.`,                                        // a 409
			"Podman 4.3":   `Error response from daemon: container create: creating container storage: the container name "j" is already in use by 1c71ace9. You have to remove that container to be able to reuse that name: that name is already in use`, // a 500
		} {
			t.Run(engine, func(t *testing.T) {
				if !nameInUse(errors.New(msg)) {
					t.Errorf("nameInUse(%q) = false; want true", msg)
				}
			})
		}
		if nameInUse(errors.New("Error response from daemon: no space left on device")) || nameInUse(nil) {
			t.Error("nameInUse of another error or nil = true; want false")
		}
	})
}

func TestDockerNamedJID(t *testing.T) {
	tests := []struct {
		name, jid string
		want      bool
	}{
		{"/chris-jid-1", "chris-jid-1", true},
		{"/chris-jid-10", "chris-jid-1", false},
		{"/other", "3e7825", false}, // found by ID prefix
	}
	for _, tt := range tests {
		t.Run("jid "+tt.jid+" container "+strings.TrimPrefix(tt.name, "/"), func(t *testing.T) {
			c := container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{ID: "3e78258abc", Name: tt.name}}
			if got := namedJID(c, tt.jid); got != tt.want {
				t.Errorf("namedJID(%q, %q) = %v; want %v", tt.name, tt.jid, got, tt.want)
			}
		})
	}
}

// TestDockerRefusesBeforeEngine proves a bad request is answered without
// the engine: the client here points at a port nothing listens on, so any
// engine call would answer 503 instead.
func TestDockerRefusesBeforeEngine(t *testing.T) {
	cli, err := client.NewClientWithOpts(client.WithHost("tcp://127.0.0.1:1"), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	store := t.TempDir()
	if err := os.MkdirAll(filepath.Join(store, "in"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := &config{ContainerEnv: "docker", StorageType: "host", StoreBase: store, RemoveJobs: true}
	d := &dockerSched{cfg: cfg, cli: cli, base: &storeBase{cfg: cfg, cli: cli}}
	tests := []struct {
		name  string
		j     jobSpec
		field string
	}{
		{"two workers", jobSpec{JID: "dk-w", Workers: 2, InputDir: "in", OutputDir: "out"}, "number_of_workers"},
		{"zero workers", jobSpec{JID: "dk-w", Workers: 0, InputDir: "in", OutputDir: "out"}, "number_of_workers"},
		{"missing input directory", jobSpec{JID: "dk-w", Workers: 1, InputDir: "not-there", OutputDir: "out"}, "input_dir"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := d.create(context.Background(), &tt.j)
			code, body := errorStatus(err)
			m, _ := body.(map[string]any)
			fields, _ := m["message"].(map[string]string)
			if code != 400 || fields[tt.field] == "" {
				t.Errorf("create = %d %v; want 400 naming %s", code, body, tt.field)
			}
		})
	}
	// A jid no container can have is not looked up (the client would put
	// it into the request path as it is): the handler answers first.
	h := testHandler(cfg, d)
	b := validBody()
	b["jid"] = "dk w"
	if code, m := callHandler(t, h, "POST", "/api/v1/", string(mustJSON(t, b))); code != 400 || !strings.Contains(fmt.Sprint(m["message"]), "Docker container name") {
		t.Errorf("POST of jid %q with no engine = %d %v; want 400 naming the rule", b["jid"], code, m)
	}
	for _, jid := range []string{"x%2F..%2F..%2Fimages%2Fbusybox", "a", "dk%20w", "x%3Fall=1"} {
		for _, method := range []string{"GET", "DELETE"} {
			if code, m := callHandler(t, h, method, "/api/v1/"+jid+"/", ""); code != 404 || !strings.HasPrefix(fmt.Sprint(m["message"]), "no job ") {
				t.Errorf("%s %s with no engine = %d %v; want 404 no job, without asking the engine", method, jid, code, m)
			}
		}
	}
	// And the engine being down is a 503 that says so.
	_, err = d.get(context.Background(), "dk-any")
	if code, body := errorStatus(err); code != 503 || !strings.Contains(fmt.Sprint(body), "unreachable") {
		t.Errorf("get with no engine = %d %v; want 503 saying unreachable", code, body)
	}
}
