package main

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/client"
)

// needEngine answers a client of a Docker engine that answers a ping, or
// skips (fails under CI) saying what is missing.
func needEngine(t testing.TB) *client.Client {
	t.Helper()
	cli, err := newEngineClient()
	if err != nil {
		needOrSkip(t, "no Docker client: "+err.Error())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx); err != nil {
		needOrSkip(t, "no Docker engine answers (start dockerd, or set DOCKER_HOST): "+err.Error())
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// testImage is the image the end-to-end tests run: FROM scratch with the
// static busybox (Debian's busybox-static) and its applets linked in /bin.
// No registry is reachable, so it is built here, once per test binary.
const testImage = "pman-test-busybox:latest"

var (
	testImageOnce sync.Once
	testImageErr  string
)

func needTestImage(t testing.TB, cli *client.Client) string {
	t.Helper()
	testImageOnce.Do(func() { testImageErr = buildTestImage(cli) })
	if testImageErr != "" {
		needOrSkip(t, testImageErr)
	}
	return testImage
}

// buildTestImage answers "" or why the image could not be built.
func buildTestImage(cli *client.Client) string {
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return "no static busybox to build the test image (apt-get install busybox-static): " + err.Error()
	}
	var ctxTar bytes.Buffer
	tw := tar.NewWriter(&ctxTar)
	add := func(h *tar.Header, body []byte) {
		h.Size = int64(len(body))
		h.ModTime = time.Unix(0, 0)
		tw.WriteHeader(h)
		tw.Write(body)
	}
	add(&tar.Header{Name: "Dockerfile", Mode: 0o644}, []byte("FROM scratch\nCOPY rootfs/ /\n"))
	add(&tar.Header{Name: "rootfs/bin/busybox", Mode: 0o755}, bb)
	for _, applet := range []string{"sh", "cat", "echo", "ls", "sleep", "dd", "id", "env", "touch", "mkdir", "cp", "head", "tail", "seq", "true", "false", "wc", "test"} {
		tw.WriteHeader(&tar.Header{Name: "rootfs/bin/" + applet, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777, ModTime: time.Unix(0, 0)})
	}
	for _, d := range []string{"rootfs/tmp/", "rootfs/share/incoming/", "rootfs/share/outgoing/"} {
		tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o1777, ModTime: time.Unix(0, 0)})
	}
	tw.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resp, err := cli.ImageBuild(ctx, &ctxTar, build.ImageBuildOptions{Tags: []string{testImage}, Remove: true, ForceRemove: true})
	if err != nil {
		return "building the test image: " + err.Error()
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if bytes.Contains(out, []byte(`"error"`)) {
		return "building the test image: " + string(out)
	}
	return ""
}

// ---- pure parts ---------------------------------------------------------------

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
		user string
		// wanted
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
		{name: "user and shm", cfg: config{ShmSizeMiB: 64}, j: base, user: "1001:1002",
			nanoCPUs: 1_500_000_000, memory: 300 << 20, shm: 64 << 20,
			in: "/store/feeds/1/in", out: "/store/feeds/1/out:/share/outgoing:rw"},
		{name: "2022 dirs", j: with(func(j *jobSpec) { j.InputDir, j.OutputDir = "key-chris-jid-7/incoming", "key-chris-jid-7/outgoing" }),
			nanoCPUs: 1_500_000_000, memory: 300 << 20,
			in: "/store/key-chris-jid-7/incoming", out: "/store/key-chris-jid-7/outgoing:/share/outgoing:rw"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.JobLabels = map[string]string{"team": "fnndsc"}
			c, h := containerConfig(&tt.cfg, tt.j, "/store", tt.user)
			if c.Image != tt.j.Image || !slices.Equal(c.Cmd, tt.j.Cmd) || !slices.Equal(c.Env, tt.j.Env) {
				t.Errorf("image, cmd, env = %q, %q, %q; want %q, %q, %q", c.Image, c.Cmd, c.Env, tt.j.Image, tt.j.Cmd, tt.j.Env)
			}
			if c.User != tt.user {
				t.Errorf("User = %q; want %q", c.User, tt.user)
			}
			if c.Labels["org.chrisproject.pman.jid"] != tt.j.JID || c.Labels["team"] != "fnndsc" {
				t.Errorf("Labels = %v; want the jid and JOB_LABELS", c.Labels)
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
	if got := pickUser(nil); got != "" {
		t.Errorf("pickUser(nil) = %q; want \"\" (the image's user)", got)
	}
	r := &idRange{uidLo: 1000, uidHi: 1002, gidLo: 50, gidHi: 50}
	seen := map[string]bool{}
	for range 200 {
		seen[pickUser(r)] = true
	}
	want := map[string]bool{"1000:50": true, "1001:50": true, "1002:50": true}
	if !reflect.DeepEqual(seen, want) {
		t.Errorf("pickUser(1000-1002:50) drew %v; want exactly %v", seen, want)
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
		{"OOM in a shell that exited 0", container.State{Status: "exited", ExitCode: 0, OOMKilled: true}, 8 << 20, statusError, []string{"out of memory"}},
		{"137 under a limit", container.State{Status: "exited", ExitCode: 137}, 16 << 20, statusError, []string{"137", "out of memory"}},
		{"137 without a limit", container.State{Status: "exited", ExitCode: 137}, 0, statusError, []string{"exited with code 137"}},
		{"dead", container.State{Status: "dead", Dead: true, ExitCode: 1}, 0, statusError, []string{"dead"}},
		{"removing", container.State{Status: "removing"}, 0, statusUndefined, []string{"removed"}},
		{"unknown", container.State{Status: "teleporting"}, 0, statusUndefined, []string{"teleporting"}},
	}
	for _, tt := range tests {
		st := tt.state
		st.StartedAt, st.FinishedAt = zeroTime, zeroTime
		c := container.InspectResponse{
			ContainerJSONBase: &container.ContainerJSONBase{Name: "/j", State: &st, HostConfig: &container.HostConfig{Resources: container.Resources{Memory: tt.memory}}},
			Config:            &container.Config{Image: "img:1", Cmd: []string{"sh", "-c", "exit 3"}},
		}
		j := containerJob("j", c)
		if j.Status != tt.status {
			t.Errorf("%s: status = %q (%q); want %q", tt.name, j.Status, j.Message, tt.status)
		}
		for _, want := range tt.contains {
			if !strings.Contains(j.Message, want) {
				t.Errorf("%s: message = %q; want it to contain %q", tt.name, j.Message, want)
			}
		}
		if j.JID != "j" || j.Image != "img:1" || j.Cmd != "sh -c exit 3" {
			t.Errorf("%s: jid, image, cmd = %q, %q, %q; want j, img:1, \"sh -c exit 3\"", tt.name, j.JID, j.Image, j.Cmd)
		}
	}

	// Timestamps: the last state change, never the zero time.
	stamps := []struct {
		created, startedAt, finishedAt, want string
	}{
		{"2024-03-01T11:59:59Z", zeroTime, zeroTime, "2024-03-01T11:59:59Z"},
		{"2024-03-01T11:59:59Z", started, zeroTime, started},
		{"2024-03-01T11:59:59Z", started, finished, finished},
		{"", "", "", ""},
	}
	for _, s := range stamps {
		c := container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{
			Created: s.created, State: &container.State{Status: "running", StartedAt: s.startedAt, FinishedAt: s.finishedAt},
		}}
		if got := containerJob("j", c).Timestamp; got != s.want {
			t.Errorf("timestamp(created %q, started %q, finished %q) = %q; want %q", s.created, s.startedAt, s.finishedAt, got, s.want)
		}
	}

	// A half-empty answer (Podman, or a future engine) must not panic.
	if j := containerJob("j", container.InspectResponse{}); j.Status != statusUndefined {
		t.Errorf("containerJob(empty) status = %q; want %q", j.Status, statusUndefined)
	}
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
		c := container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{ID: "3e78258abc", Name: tt.name}}
		if got := namedJID(c, tt.jid); got != tt.want {
			t.Errorf("namedJID(%q, %q) = %v; want %v", tt.name, tt.jid, got, tt.want)
		}
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
	cfg := &config{ContainerEnv: "docker", StorageType: "host", StoreBase: "/store"}
	d := &dockerSched{cfg: cfg, cli: cli, base: &storeBase{cfg: cfg, cli: cli}}
	tests := []struct {
		name  string
		j     jobSpec
		field string
	}{
		{"two workers", jobSpec{JID: "dk-w", Workers: 2}, "number_of_workers"},
		{"zero workers", jobSpec{JID: "dk-w", Workers: 0}, "number_of_workers"},
		{"not a container name", jobSpec{JID: "dk w", Workers: 1}, "jid"},
		{"one character", jobSpec{JID: "a", Workers: 1}, "jid"},
	}
	for _, tt := range tests {
		_, err := d.create(context.Background(), &tt.j)
		code, body := errorStatus(err)
		m, _ := body.(map[string]any)
		fields, _ := m["message"].(map[string]string)
		if code != 400 || fields[tt.field] == "" {
			t.Errorf("%s: create = %d %v; want 400 naming %s", tt.name, code, body, tt.field)
		}
	}
	// And the engine being down is a 503 that says so.
	_, err = d.get(context.Background(), "dk-any")
	if code, body := errorStatus(err); code != 503 || !strings.Contains(fmt.Sprint(body), "unreachable") {
		t.Errorf("get with no engine = %d %v; want 503 saying unreachable", code, body)
	}
}
