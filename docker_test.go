package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
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
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
)

// needEngine answers a client of a Docker engine that answers a ping, or
// skips (fails under CI) saying what is missing.
func needEngine(t testing.TB) *client.Client {
	t.Helper()
	cfg, err := loadConfig(func(k string) string {
		if k == "STOREBASE" {
			return "/"
		}
		return os.Getenv(k)
	})
	if err != nil {
		t.Fatalf("the Docker variables of this environment: %v", err)
	}
	cli, err := newEngineClient(cfg)
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

// podmanHost is where the tests find Podman's Docker-compatible API:
// .ci/podman starts `podman system service` there. PMAN_TEST_PODMAN_HOST
// moves it.
func podmanHost() string {
	if h := os.Getenv("PMAN_TEST_PODMAN_HOST"); h != "" {
		return h
	}
	return "unix:///run/podman/podman.sock"
}

// testEngine is an engine the Docker backend's end-to-end tests run on.
type testEngine struct {
	name  string            // docker or podman: the subtest's name and CONTAINER_ENV
	env   map[string]string // DOCKER_* that reach it
	cli   *client.Client
	image string // testImage, on this engine
}

// forEachEngine runs f as two subtests, docker and podman, each on its
// engine with the test image on it. An engine that is missing skips its
// subtest (fails it under CI).
func forEachEngine(t *testing.T, f func(t *testing.T, eng *testEngine)) {
	t.Helper()
	for _, name := range []string{"docker", "podman"} {
		t.Run(name, func(t *testing.T) { f(t, needTestEngine(t, name)) })
	}
}

// needTestEngine answers the engine named docker (DOCKER_HOST, as the docker
// CLI reads it) or podman (podmanHost), with the test image on it.
func needTestEngine(t testing.TB, name string) *testEngine {
	t.Helper()
	if name == "docker" {
		cli := needEngine(t)
		return &testEngine{name: name, env: map[string]string{}, cli: cli, image: needTestImage(t, cli)}
	}
	host := podmanHost()
	cli, err := client.NewClientWithOpts(client.WithHost(host), client.WithAPIVersionNegotiation())
	if err != nil {
		needOrSkip(t, "no client for Podman at "+host+": "+err.Error())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx); err != nil {
		needOrSkip(t, "no Podman service answers at "+host+" (run .ci/podman, or set PMAN_TEST_PODMAN_HOST): "+err.Error())
	}
	t.Cleanup(func() { cli.Close() })
	env := map[string]string{"DOCKER_HOST": host, "DOCKER_TLS_VERIFY": "", "DOCKER_CERT_PATH": ""}
	return &testEngine{name: name, env: env, cli: cli, image: needPodmanImage(t, cli)}
}

var (
	podmanImageOnce sync.Once
	podmanImageErr  string
)

// needPodmanImage puts the test image, built on Docker, into Podman, as
// `docker save | podman load` would. Podman names it
// localhost/pman-test-busybox:latest and finds it by the short name too.
func needPodmanImage(t testing.TB, podman *client.Client) string {
	t.Helper()
	docker := needEngine(t)
	needTestImage(t, docker)
	podmanImageOnce.Do(func() { podmanImageErr = copyImage(docker, podman, testImage) })
	if podmanImageErr != "" {
		needOrSkip(t, podmanImageErr)
	}
	return testImage
}

// copyImage answers "" or why ref could not be copied from one engine to
// the other.
func copyImage(from, to *client.Client, ref string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rc, err := from.ImageSave(ctx, []string{ref})
	if err != nil {
		return "saving the test image from Docker: " + err.Error()
	}
	defer rc.Close()
	resp, err := to.ImageLoad(ctx, rc, client.ImageLoadWithQuiet(true))
	if err != nil {
		return "loading the test image into Podman: " + err.Error()
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if bytes.Contains(out, []byte(`"error"`)) {
		return "loading the test image into Podman: " + string(out)
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
		if _, msg := containerStatus(tt.state, 8<<20); msg != tt.want {
			t.Errorf("%s: message = %q; want %q", tt.name, msg, tt.want)
		}
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
			err := mountable(tt.base, tt.podman)
			if code, _ := errorStatus(err); (err == nil) != tt.ok || (err != nil && code != http.StatusServiceUnavailable) {
				t.Errorf("mountable(%q, podman %v) = %v; want ok %v (or a 503)", tt.base, tt.podman, err, tt.ok)
			}
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
		for _, msg := range []string{
			// Docker 20.10 (a 409)
			`Error response from daemon: Conflict. The container name "/j" is already in use by container "1c71ace9". You have to remove (or rename) that container to be able to reuse that name.`,
			// Podman 4.3 (a 500)
			`Error response from daemon: container create: creating container storage: the container name "j" is already in use by 1c71ace9. You have to remove that container to be able to reuse that name: that name is already in use`,
		} {
			if !nameInUse(errors.New(msg)) {
				t.Errorf("nameInUse(%q) = false; want true", msg)
			}
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
		{"two workers", jobSpec{JID: "dk-w", Workers: 2, InputDir: "in"}, "number_of_workers"},
		{"zero workers", jobSpec{JID: "dk-w", Workers: 0, InputDir: "in"}, "number_of_workers"},
		{"missing input directory", jobSpec{JID: "dk-w", Workers: 1, InputDir: "not-there"}, "input_dir"},
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

// ---- end to end, against the real engine ---------------------------------------

// dockerEnv is a test's server: its base URL, its STOREBASE and the engine.
type dockerEnv struct {
	url    string
	store  string
	cli    *client.Client
	image  string
	engine string // docker or podman
}

// newEnv is a dockerEnv on eng, its server not started yet.
func newEnv(eng *testEngine, store string) *dockerEnv {
	return &dockerEnv{store: store, cli: eng.cli, image: eng.image, engine: eng.name}
}

// serverEnv is the environment of a server on eng: CONTAINER_ENV is the
// engine's name, then extra.
func serverEnv(eng *testEngine, extra map[string]string) map[string]string {
	env := maps.Clone(eng.env)
	env["CONTAINER_ENV"] = eng.name
	maps.Copy(env, extra)
	return env
}

// startDocker starts the whole server on eng, with CONTAINER_ENV its name
// (or what extra says) on a fresh STOREBASE that any CONTAINER_USER can
// write.
func startDocker(t *testing.T, eng *testEngine, extra map[string]string) *dockerEnv {
	t.Helper()
	store := t.TempDir()
	if err := os.Chmod(store, 0o777); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"STORAGE_TYPE": "host", "STOREBASE": store}
	maps.Copy(env, extra)
	e := newEnv(eng, store)
	e.url = startServer(t, serverEnv(eng, env))
	return e
}

// newJID is a jid no other test or helper uses; the job's container is
// removed when the test ends, whatever happened.
func (e *dockerEnv) newJID(t *testing.T, name string) string {
	t.Helper()
	var b [4]byte
	rand.Read(b[:])
	jid := fmt.Sprintf("dk-%x-%s", b, name)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		e.cli.ContainerRemove(ctx, jid, container.RemoveOptions{Force: true, RemoveVolumes: true})
	})
	return jid
}

// dir makes a directory in STOREBASE, writable by any user, with files.
func (e *dockerEnv) dir(t *testing.T, rel string, files map[string]string) {
	t.Helper()
	p := filepath.Join(e.store, rel)
	if err := os.MkdirAll(p, 0o777); err != nil {
		t.Fatal(err)
	}
	for q := p; q != e.store; q = filepath.Dir(q) {
		os.Chmod(q, 0o777)
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(p, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// jobBody is a POST body as pfcon of 2023+ sends it; shell runs as sh -c
// with $1 = /share/incoming for ds jobs, then /share/outgoing.
func (e *dockerEnv) jobBody(jid, typ, shell string) map[string]any {
	return map[string]any{
		"jid": jid, "args": []string{}, "auid": "cube", "number_of_workers": 1,
		"cpu_limit": 1000, "memory_limit": 64, "gpu_limit": 0, "image": e.image,
		"entrypoint": []string{"sh", "-c", shell, "sh"}, "type": typ,
		"input_dir": jid + "/in", "output_dir": jid + "/out",
	}
}

func (e *dockerEnv) do(t *testing.T, method, path string, body any) (int, map[string]any) {
	t.Helper()
	return call(t, method, e.url+path, body)
}

// submit POSTs a job and checks the 201 answer has the job object's shape.
func (e *dockerEnv) submit(t *testing.T, body map[string]any) map[string]any {
	t.Helper()
	code, m := e.do(t, "POST", "/api/v1/", body)
	if code != http.StatusCreated {
		t.Fatalf("POST %v = %d %v; want 201", body["jid"], code, m)
	}
	checkJobShape(t, "job", m)
	if m["jid"] != body["jid"] || m["image"] != body["image"] || m["logs"] != "" {
		t.Errorf("POST answer = %v; want jid %v, image %v, empty logs", m, body["jid"], body["image"])
	}
	return m
}

// wait polls GET until the job is finished (bounded) and answers it.
func (e *dockerEnv) wait(t *testing.T, jid string) map[string]any {
	t.Helper()
	return untilStatus(t, e.url, jid, 60*time.Second, statusSuccess, statusError)
}

// noContainer fails if the engine has a container named jid.
func (e *dockerEnv) noContainer(t *testing.T, jid string) {
	t.Helper()
	c, err := e.cli.ContainerInspect(context.Background(), jid)
	if err == nil && namedJID(c, jid) {
		t.Errorf("container %s exists (%s); want none", jid, c.State.Status)
	} else if err != nil && !cerrdefs.IsNotFound(err) {
		t.Errorf("inspecting %s: %v", jid, err)
	}
}

func TestDockerEndToEnd(t *testing.T) {
	forEachEngine(t, testDockerEndToEnd)
}

func testDockerEndToEnd(t *testing.T, eng *testEngine) {
	e := startDocker(t, eng, map[string]string{"JOB_LOGS_TAIL": "3", "JOB_LABELS": "team=fnndsc,purpose=test"})

	t.Run("info", func(t *testing.T) {
		code, m := e.do(t, "GET", "/api/v1/", nil)
		if code != 200 || m["container_env"] != eng.name || m["storage_type"] != "host" {
			t.Errorf("GET /api/v1/ = %d %v; want 200, %s, host", code, m, eng.name)
		}
	})

	t.Run("fs job writes its output into STOREBASE", func(t *testing.T) {
		t.Parallel()
		jid := e.newJID(t, "fs")
		e.dir(t, jid+"/in", nil)
		e.dir(t, jid+"/out", nil)
		body := e.jobBody(jid, "fs", `echo made > "$1/out.txt"`)
		m := e.submit(t, body)
		if want := `sh -c echo made > "$1/out.txt" sh /share/outgoing`; m["cmd"] != want {
			t.Errorf("cmd = %q; want %q", m["cmd"], want)
		}
		done := e.wait(t, jid)
		if done["status"] != statusSuccess {
			t.Fatalf("job = %v; want %s", done, statusSuccess)
		}
		if done["timestamp"] == "" || strings.HasPrefix(done["timestamp"].(string), "0001") {
			t.Errorf("timestamp = %q; want FinishedAt", done["timestamp"])
		}
		got, err := os.ReadFile(filepath.Join(e.store, jid, "out", "out.txt"))
		if err != nil || string(got) != "made\n" {
			t.Errorf("STOREBASE/%s/out/out.txt = %q, %v; want \"made\\n\"", jid, got, err)
		}
		c, err := e.cli.ContainerInspect(context.Background(), jid)
		if err != nil {
			t.Fatal(err)
		}
		if c.Config.Labels["org.chrisproject.pman.jid"] != jid || c.Config.Labels["team"] != "fnndsc" || c.Config.Labels["purpose"] != "test" {
			t.Errorf("labels = %v; want the jid and JOB_LABELS", c.Config.Labels)
		}
		if c.HostConfig.RestartPolicy.Name != "no" || c.HostConfig.NanoCPUs != 1e9 || c.HostConfig.Memory != 64<<20 {
			t.Errorf("restart, NanoCPUs, Memory = %q, %d, %d; want no, 1e9, 64 MiB", c.HostConfig.RestartPolicy.Name, c.HostConfig.NanoCPUs, c.HostConfig.Memory)
		}
	})

	t.Run("ds job reads its input and cannot write to it", func(t *testing.T) {
		t.Parallel()
		jid := e.newJID(t, "ds")
		e.dir(t, jid+"/in", map[string]string{"data.txt": "payload"})
		e.dir(t, jid+"/out", nil)
		e.submit(t, e.jobBody(jid, "ds", `cat "$1/data.txt"; echo; cp "$1/data.txt" "$2/copy.txt"
if touch "$1/intruder" 2>/dev/null; then echo WRITABLE; else echo READONLY; fi`))
		done := e.wait(t, jid)
		if done["status"] != statusSuccess {
			t.Fatalf("job = %v; want %s", done, statusSuccess)
		}
		if logs := done["logs"].(string); !strings.Contains(logs, "payload") || !strings.Contains(logs, "READONLY") {
			t.Errorf("logs = %q; want the input read and READONLY", logs)
		}
		if got, err := os.ReadFile(filepath.Join(e.store, jid, "out", "copy.txt")); string(got) != "payload" {
			t.Errorf("output copy = %q, %v; want payload", got, err)
		}
		if _, err := os.Stat(filepath.Join(e.store, jid, "in", "intruder")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the job wrote into its input: %v", err)
		}
	})

	t.Run("an upload folder with ':' is mounted; ':' in the output is refused", func(t *testing.T) {
		t.Parallel()
		jid := e.newJID(t, "colon")
		e.dir(t, jid+"/scan 10:30", map[string]string{"data.txt": "uploaded"})
		e.dir(t, jid+"/out", nil)
		body := e.jobBody(jid, "ds", `cp "$1/data.txt" "$2/copy.txt"`)
		body["input_dir"] = jid + "/scan 10:30"
		e.submit(t, body)
		if done := e.wait(t, jid); done["status"] != statusSuccess {
			t.Fatalf("job = %v; want %s", done, statusSuccess)
		}
		if got, err := os.ReadFile(filepath.Join(e.store, jid, "out", "copy.txt")); string(got) != "uploaded" {
			t.Errorf("output copy = %q, %v; want uploaded", got, err)
		}
		bad := e.newJID(t, "colonout")
		e.dir(t, bad+"/in", nil)
		body = e.jobBody(bad, "ds", "true")
		body["output_dir"] = bad + "/out 10:30"
		code, m := e.do(t, "POST", "/api/v1/", body)
		if fields, _ := m["message"].(map[string]any); code != 400 || fields["output_dir"] == nil {
			t.Errorf("POST with ':' in output_dir = %d %v; want 400 on output_dir", code, m)
		}
		e.noContainer(t, bad)
	})

	t.Run("failing job", func(t *testing.T) {
		t.Parallel()
		jid := e.newJID(t, "fail")
		e.dir(t, jid+"/in", nil)
		e.submit(t, e.jobBody(jid, "fs", "echo failing >&2; exit 3"))
		done := e.wait(t, jid)
		if done["status"] != statusError || !strings.Contains(done["message"].(string), "3") {
			t.Errorf("job = %v; want %s mentioning 3", done, statusError)
		}
		if !strings.Contains(done["logs"].(string), "failing") {
			t.Errorf("logs = %q; want \"failing\" from stderr", done["logs"])
		}
	})

	t.Run("image that cannot be had", func(t *testing.T) {
		t.Parallel()
		jid := e.newJID(t, "noimage")
		e.dir(t, jid+"/in", nil)
		body := e.jobBody(jid, "fs", "true")
		img := "pman-test-no-such-image-" + jid + ":1"
		body["image"] = img
		code, m := e.do(t, "POST", "/api/v1/", body)
		msg := fmt.Sprint(m["message"])
		if (code < 400 || code > 499) && code != 503 || !strings.Contains(msg, img) {
			t.Errorf("POST with a missing image = %d %v; want a 4xx or 503 naming %s", code, m, img)
		}
		e.noContainer(t, jid)
		if _, err := e.cli.ImageInspect(context.Background(), img); !cerrdefs.IsNotFound(err) {
			t.Errorf("image %s: %v; want not found", img, err)
		}
	})

	t.Run("missing input directory", func(t *testing.T) {
		t.Parallel()
		jid := e.newJID(t, "noinput")
		code, m := e.do(t, "POST", "/api/v1/", e.jobBody(jid, "ds", "true"))
		if fields, _ := m["message"].(map[string]any); code != 400 || !strings.Contains(fmt.Sprint(fields["input_dir"]), filepath.Join(e.store, jid, "in")) {
			t.Errorf("POST with no input directory = %d %v; want 400 on input_dir naming the directory", code, m)
		}
		e.noContainer(t, jid)
	})

	t.Run("a job that cannot start leaves nothing", func(t *testing.T) {
		t.Parallel()
		jid := e.newJID(t, "noprogram")
		e.dir(t, jid+"/in", nil)
		body := e.jobBody(jid, "fs", "true")
		body["entrypoint"] = []string{"/no/such/program"}
		code, m := e.do(t, "POST", "/api/v1/", body)
		if msg := fmt.Sprint(m["message"]); code != http.StatusBadRequest || !strings.Contains(msg, "/no/such/program") || !strings.Contains(msg, jid) {
			t.Errorf("POST of a program the image has not = %d %v; want 400 naming the job and the program", code, m)
		}
		e.noContainer(t, jid)
	})

	t.Run("GPU", func(t *testing.T) {
		t.Parallel()
		jid := e.newJID(t, "gpu")
		e.dir(t, jid+"/in", nil)
		body := e.jobBody(jid, "fs", "true")
		body["gpu_limit"] = 1
		code, m := e.do(t, "POST", "/api/v1/", body)
		if e.engine == "podman" {
			// Podman would run the job without the GPU (podman.go).
			if msg, _ := m["message"].(map[string]any); code != http.StatusBadRequest || msg["gpu_limit"] == nil {
				t.Errorf("POST asking a GPU of Podman = %d %v; want 400 naming gpu_limit", code, m)
			}
			e.noContainer(t, jid)
			return
		}
		if code == http.StatusCreated {
			t.Skip("this engine has GPUs: the start-failure path needs one without")
		}
		if msg := fmt.Sprint(m["message"]); code < 400 || !strings.Contains(msg, "gpu") || !strings.Contains(msg, jid) {
			t.Errorf("POST asking a GPU of an engine without = %d %v; want an error naming the job and the GPU", code, m)
		}
		e.noContainer(t, jid)
	})

	t.Run("killed for memory", func(t *testing.T) {
		t.Parallel()
		jid := e.newJID(t, "oom")
		e.dir(t, jid+"/in", nil)
		body := e.jobBody(jid, "fs", "dd if=/dev/zero of=/dev/null bs=64M count=1")
		body["memory_limit"] = "8" // as a string of digits, as pfcon may send
		e.submit(t, body)
		done := e.wait(t, jid)
		if done["status"] != statusError || !strings.Contains(done["message"].(string), "out of memory") {
			t.Errorf("job = %v; want %s saying out of memory", done, statusError)
		}
	})

	t.Run("logs tail", func(t *testing.T) {
		t.Parallel()
		jid := e.newJID(t, "tail")
		e.dir(t, jid+"/in", nil)
		// stdout only: without a TTY the engine copies stdout and stderr
		// separately, and a loaded engine logs them out of order. The
		// oldest line of the tail is written in two pieces: Podman's own
		// tail (before 4.7) loses the first.
		e.submit(t, e.jobBody(jid, "fs", "seq 1 7; printf eig; sleep 1; echo ht; echo 9; echo 10"))
		done := e.wait(t, jid)
		if done["logs"] != "eight\n9\n10\n" {
			t.Errorf("logs with JOB_LOGS_TAIL=3 = %q; want \"eight\\n9\\n10\\n\"", done["logs"])
		}
	})

	t.Run("DELETE while running, then 404", func(t *testing.T) {
		t.Parallel()
		jid := e.newJID(t, "delete")
		e.dir(t, jid+"/in", nil)
		e.submit(t, e.jobBody(jid, "fs", "sleep 300"))
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			_, m := e.do(t, "GET", "/api/v1/"+jid+"/", nil)
			if m["status"] == statusStarted {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("job never started: %v", m)
			}
		}
		if code, m := e.do(t, "DELETE", "/api/v1/"+jid+"/", nil); code != http.StatusNoContent {
			t.Fatalf("DELETE = %d %v; want 204", code, m)
		}
		e.noContainer(t, jid)
		for _, method := range []string{"GET", "DELETE"} {
			if code, m := e.do(t, method, "/api/v1/"+jid, nil); code != http.StatusNotFound || fmt.Sprint(m["message"]) == "" {
				t.Errorf("%s after DELETE = %d %v; want 404 with a message", method, code, m)
			}
		}
	})

	t.Run("duplicate jid", func(t *testing.T) {
		t.Parallel()
		jid := e.newJID(t, "dup")
		e.dir(t, jid+"/in", nil)
		body := e.jobBody(jid, "fs", "sleep 300")
		e.submit(t, body)
		code, m := e.do(t, "POST", "/api/v1/", body)
		if code != http.StatusConflict || !strings.Contains(fmt.Sprint(m["message"]), jid) {
			t.Errorf("second POST = %d %v; want 409 naming %s", code, m, jid)
		}
		// The first job is untouched.
		if _, m := e.do(t, "GET", "/api/v1/"+jid+"/", nil); m["status"] != statusStarted && m["status"] != statusNotStarted {
			t.Errorf("first job after the duplicate = %v; want it still running", m)
		}
	})

	t.Run("an ID prefix is not a jid", func(t *testing.T) {
		t.Parallel()
		jid := e.newJID(t, "prefix")
		e.dir(t, jid+"/in", nil)
		e.submit(t, e.jobBody(jid, "fs", "sleep 300"))
		c, err := e.cli.ContainerInspect(context.Background(), jid)
		if err != nil {
			t.Fatal(err)
		}
		prefix := c.ID[:16]
		for _, method := range []string{"GET", "DELETE"} {
			if code, m := e.do(t, method, "/api/v1/"+prefix+"/", nil); code != http.StatusNotFound {
				t.Errorf("%s /api/v1/<ID prefix of %s>/ = %d %v; want 404", method, jid, code, m)
			}
		}
		if c2, err := e.cli.ContainerInspect(context.Background(), jid); err != nil || c2.State.Status != "running" {
			t.Errorf("after DELETE of its ID prefix, %s: %v; want still running", jid, err)
		}
	})

	t.Run("2022-style request without input_dir", func(t *testing.T) {
		t.Parallel()
		jid := e.newJID(t, "pfcon2022")
		// pfcon of 2022 unpacks the input into key-<jid>/incoming; here the
		// outgoing directory is left to the engine to create.
		e.dir(t, "key-"+jid+"/incoming", map[string]string{"in.txt": "old pfcon"})
		body := e.jobBody(jid, "ds", `cp "$1/in.txt" "$2/out.txt"`)
		delete(body, "input_dir")
		delete(body, "output_dir")
		e.submit(t, body)
		if done := e.wait(t, jid); done["status"] != statusSuccess {
			t.Fatalf("job = %v; want %s", done, statusSuccess)
		}
		if got, err := os.ReadFile(filepath.Join(e.store, "key-"+jid, "outgoing", "out.txt")); string(got) != "old pfcon" {
			t.Errorf("key-<jid>/outgoing/out.txt = %q, %v; want \"old pfcon\"", got, err)
		}
	})

	t.Run("traversal creates nothing", func(t *testing.T) {
		t.Parallel()
		jid := e.newJID(t, "escape")
		for _, dirs := range [][2]string{{"../../etc", jid + "/out"}, {jid + "/in", "a/../../b"}} {
			body := e.jobBody(jid, "ds", "cat /share/incoming/passwd")
			body["input_dir"], body["output_dir"] = dirs[0], dirs[1]
			code, m := e.do(t, "POST", "/api/v1/", body)
			if code != http.StatusBadRequest {
				t.Errorf("POST with dirs %q = %d %v; want 400", dirs, code, m)
			}
		}
		e.noContainer(t, jid)
		if _, err := os.Stat(filepath.Join(e.store, jid)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("STOREBASE/%s: %v; want nothing created", jid, err)
		}
	})

	t.Run("env reaches the job", func(t *testing.T) {
		t.Parallel()
		jid := e.newJID(t, "env")
		e.dir(t, jid+"/in", nil)
		body := e.jobBody(jid, "fs", `echo "greeting=$GREETING"`)
		body["env"] = []string{"GREETING=hello there"}
		e.submit(t, body)
		if done := e.wait(t, jid); !strings.Contains(done["logs"].(string), "greeting=hello there") {
			t.Errorf("logs = %q; want greeting=hello there", done["logs"])
		}
	})

	t.Run("number_of_workers", func(t *testing.T) {
		t.Parallel()
		jid := e.newJID(t, "workers")
		body := e.jobBody(jid, "fs", "true")
		body["number_of_workers"] = 2
		code, m := e.do(t, "POST", "/api/v1/", body)
		if msg, _ := m["message"].(map[string]any); code != http.StatusBadRequest || msg["number_of_workers"] == nil {
			t.Errorf("POST with 2 workers = %d %v; want 400 naming number_of_workers", code, m)
		}
		e.noContainer(t, jid)
	})
}

// TestDockerUser runs jobs with CONTAINER_USER as pman 6 applied it: the
// UID is the user, the GID a supplementary group, the primary group the
// image's (0 here: the image has no /etc/passwd). On Podman, rootful with
// the host's user namespace, the ids are the host's, as on Docker.
func TestDockerUser(t *testing.T) {
	forEachEngine(t, func(t *testing.T, eng *testEngine) {
		t.Run("UID and GID range with home workaround", func(t *testing.T) {
			e := startDocker(t, eng, map[string]string{"CONTAINER_USER": "1234:2345-2345", "ENABLE_HOME_WORKAROUND": "yes"})
			if code, m := e.do(t, "GET", "/api/v1/", nil); code != 200 || m["container_env"] != eng.name {
				t.Errorf("GET /api/v1/ = %d %v; want container_env %s", code, m, eng.name)
			}
			jid := e.newJID(t, "user")
			e.dir(t, jid+"/in", nil)
			e.dir(t, jid+"/out", nil)
			e.submit(t, e.jobBody(jid, "fs", `echo "uid=$(id -u) gid=$(id -g) groups=$(id -G) home=$HOME"; id -u > "$1/uid"`))
			done := e.wait(t, jid)
			if done["status"] != statusSuccess || !strings.Contains(done["logs"].(string), "uid=1234 gid=0 groups=0 2345 home=/tmp") {
				t.Errorf("job = %v; want success, logs saying uid=1234 gid=0 groups=0 2345 home=/tmp", done)
			}
			wantOwner(t, filepath.Join(e.store, jid, "out", "uid"), 1234)
		})

		// miniChRIS-docker's CONTAINER_USER: a UID and no GID.
		t.Run("1001: ds job", func(t *testing.T) {
			e := startDocker(t, eng, map[string]string{"CONTAINER_USER": "1001:"})
			if code, m := e.do(t, "GET", "/api/v1/", nil); code != 200 || m["container_env"] != eng.name {
				t.Errorf("GET /api/v1/ = %d %v; want container_env %s", code, m, eng.name)
			}
			jid := e.newJID(t, "user1001")
			e.dir(t, jid+"/in", map[string]string{"data.txt": "to be copied"})
			e.dir(t, jid+"/out", nil)
			e.submit(t, e.jobBody(jid, "ds", `id; cp "$1/data.txt" "$2/copy.txt"`))
			done := e.wait(t, jid)
			if done["status"] != statusSuccess || !strings.Contains(done["logs"].(string), "uid=1001 gid=0 groups=0") {
				t.Errorf("job = %v; want success, logs saying uid=1001 gid=0 groups=0", done)
			}
			p := filepath.Join(e.store, jid, "out", "copy.txt")
			if got, err := os.ReadFile(p); string(got) != "to be copied" {
				t.Errorf("%s = %q, %v; want \"to be copied\"", p, got, err)
			}
			wantOwner(t, p, 1001)
		})
	})
}

// wantOwner fails the test unless the file p is owned by uid.
func wantOwner(t *testing.T, p string, uid uint32) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Uid != uid {
		t.Errorf("owner of %s = %+v; want uid %d", p, fi.Sys(), uid)
	}
}

// TestDockerEngineComesBack starts the server against an engine address
// where nothing listens, then puts the engine there: the server answers 503
// first and recovers by itself.
func TestDockerEngineComesBack(t *testing.T) {
	forEachEngine(t, testDockerEngineComesBack)
}

func testDockerEngineComesBack(t *testing.T, eng *testEngine) {
	cli := eng.cli
	sock := filepath.Join(t.TempDir(), "engine.sock")
	e := &dockerEnv{url: startServer(t, serverEnv(eng, map[string]string{"STORAGE_TYPE": "host",
		"STOREBASE": t.TempDir(), "DOCKER_HOST": "unix://" + sock})), cli: cli}

	code, m := e.do(t, "GET", "/api/v1/dk-nobody/", nil)
	if code != http.StatusServiceUnavailable || !strings.Contains(fmt.Sprint(m["message"]), "unreachable") {
		t.Errorf("GET with the engine down = %d %v; want 503 saying unreachable", code, m)
	}

	// The engine "comes back": a proxy to the real one, on that socket.
	proxyEngine(t, cli, sock)
	code, m = e.do(t, "GET", "/api/v1/dk-nobody/", nil)
	if code != http.StatusNotFound {
		t.Errorf("GET once the engine is back = %d %v; want 404 from the engine", code, m)
	}
}

// TestDockerLogsUnreadable runs a job, then asks its status through an
// engine whose logs call fails: the status is answered with the one line
// of logsUnreadable and marked incomplete (policy.go). A logs call that
// says the container is gone is the job gone: 404.
func TestDockerLogsUnreadable(t *testing.T) {
	forEachEngine(t, func(t *testing.T, eng *testEngine) {
		e := startDocker(t, eng, nil)
		jid := e.newJID(t, "nologs")
		e.dir(t, jid+"/in", nil)
		e.submit(t, e.jobBody(jid, "fs", "echo hidden"))
		e.wait(t, jid)

		for _, tt := range []struct {
			code int
			want int // the GET's status
		}{{http.StatusInternalServerError, http.StatusOK}, {http.StatusNotFound, http.StatusNotFound}} {
			t.Run(strconv.Itoa(tt.code), func(t *testing.T) {
				sock := filepath.Join(t.TempDir(), "engine.sock")
				proxyEngineFailing(t, eng.cli, sock, "/logs", tt.code)
				env := serverEnv(eng, map[string]string{"STORAGE_TYPE": "host", "STOREBASE": e.store, "DOCKER_HOST": "unix://" + sock})
				code, m := call(t, "GET", startServer(t, env)+"/api/v1/"+jid+"/", nil)
				if code != tt.want {
					t.Fatalf("GET with the logs call failing %d = %d %v; want %d", tt.code, code, m, tt.want)
				}
				if tt.want != http.StatusOK {
					return
				}
				if m["status"] != statusSuccess || !strings.HasPrefix(fmt.Sprint(m["logs"]), "[pman] logs unavailable: ") {
					t.Errorf("GET = %v; want %s with logs saying they are unavailable", m, statusSuccess)
				}

				// The same through the scheduler: marked incomplete.
				cfg, err := loadConfig(func(k string) string { return env[k] })
				if err != nil {
					t.Fatal(err)
				}
				s, err := newDocker(context.Background(), cfg, slog.New(slog.DiscardHandler))
				if err != nil {
					t.Fatal(err)
				}
				j, err := s.get(context.Background(), jid)
				if err != nil || !j.LogsIncomplete || !strings.HasPrefix(j.Logs, "[pman] logs unavailable: ") || j.Status != statusSuccess {
					t.Errorf("get = %+v, %v; want %s, logs unavailable, LogsIncomplete", j, err, statusSuccess)
				}
			})
		}
	})
}

// BenchmarkDockerGet measures pfcon's polling path, GET (inspect and
// logs), through the whole server against the real engine.
func BenchmarkDockerGet(b *testing.B) {
	for _, name := range []string{"docker", "podman"} {
		b.Run(name, func(b *testing.B) { benchmarkDockerGet(b, needTestEngine(b, name)) })
	}
}

func benchmarkDockerGet(b *testing.B, eng *testEngine) {
	cli, img := eng.cli, eng.image
	store := b.TempDir()
	url := startServer(b, serverEnv(eng, map[string]string{"STORAGE_TYPE": "host", "STOREBASE": store, "JOB_LOGS_TAIL": "1000"}))
	jid := benchSubmit(b, cli, url, store, img, "seq 1 1000; sleep 300")
	time.Sleep(time.Second) // let the 1000 lines reach the log
	b.ResetTimer()
	for range b.N {
		resp, err := http.Get(url + "/api/v1/" + jid + "/")
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("GET: %v %v", resp, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

func TestDockerDrainPull(t *testing.T) {
	tests := []struct {
		name   string
		stream string
		code   int // 0: no error
		msg    string
	}{
		{"complete", `{"status":"Pulling from library/busybox","id":"latest"}
{"status":"Downloading","progressDetail":{"current":1,"total":2},"id":"abc"}
{"status":"Status: Downloaded newer image for busybox:latest"}
`, 0, ""},
		{"empty", "", 0, ""},
		{"failed midway", `{"status":"Pulling fs layer","id":"abc"}
{"errorDetail":{"message":"read: connection reset by peer"},"error":"read: connection reset by peer"}
`, 503, "connection reset"},
		{"refused with a code", `{"errorDetail":{"code":404,"message":"manifest unknown"},"error":"manifest unknown"}
`, 404, "manifest unknown"},
		{"old engine, error only", `{"error":"no space left on device"}
`, 503, "no space left"},
		{"garbage", `{"status":`, 503, "reading"},
	}
	for _, tt := range tests {
		err := drainPull(io.NopCloser(strings.NewReader(tt.stream)), "img:1")
		if tt.code == 0 {
			if err != nil {
				t.Errorf("%s: drainPull = %v; want nil", tt.name, err)
			}
			continue
		}
		code, body := errorStatus(err)
		if msg := fmt.Sprint(body); code != tt.code || !strings.Contains(msg, tt.msg) || !strings.Contains(msg, "img:1") {
			t.Errorf("%s: drainPull = %d %v; want %d naming img:1 and saying %q", tt.name, code, body, tt.code, tt.msg)
		}
	}
}

// TestDockerLocalVolume runs a job with STORAGE_TYPE=docker_local_volume:
// the job's directories are found inside a Docker volume, named by
// VOLUME_NAME or found as the volume pfcon's container (PFCON_SELECTOR)
// mounts at /var/local/storeBase.
func TestDockerLocalVolume(t *testing.T) {
	forEachEngine(t, testDockerLocalVolume)
}

func testDockerLocalVolume(t *testing.T, eng *testEngine) {
	cli, img := eng.cli, eng.image
	for _, how := range []string{"VOLUME_NAME", "PFCON_SELECTOR"} {
		t.Run(how, func(t *testing.T) {
			var b [4]byte
			rand.Read(b[:])
			vol := fmt.Sprintf("dk-%x-store", b)
			v, err := cli.VolumeCreate(context.Background(), volume.CreateOptions{Name: vol})
			if err != nil {
				t.Fatal(err)
			}
			// Registered first, so it runs last: after the containers are gone.
			t.Cleanup(func() { cli.VolumeRemove(context.Background(), vol, true) })
			if _, err := os.Stat(v.Mountpoint); err != nil {
				needOrSkip(t, fmt.Sprintf("the volume's mountpoint is not on this machine (remote engine?): %v", err))
			}
			env := serverEnv(eng, map[string]string{"STORAGE_TYPE": "docker_local_volume"})
			if how == "VOLUME_NAME" {
				env["VOLUME_NAME"] = vol
			} else {
				// A stand-in for pfcon: a running container with the label,
				// mounting the volume where pfcon does.
				label := fmt.Sprintf("org.chrisproject.role=pfcon-%x", b)
				env["PFCON_SELECTOR"] = label
				k, val, _ := strings.Cut(label, "=")
				c, err := cli.ContainerCreate(context.Background(),
					&container.Config{Image: img, Cmd: []string{"sleep", "300"}, Labels: map[string]string{k: val}},
					&container.HostConfig{Mounts: []mount.Mount{{Type: mount.TypeVolume, Source: vol, Target: pfconStoreBase}}},
					nil, nil, fmt.Sprintf("dk-%x-pfcon", b))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() {
					cli.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true})
				})
				if err := cli.ContainerStart(context.Background(), c.ID, container.StartOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			e := newEnv(eng, v.Mountpoint)
			e.url = startServer(t, env)
			jid := e.newJID(t, "volume")
			e.dir(t, jid+"/in", map[string]string{"data.txt": "in a volume"})
			e.submit(t, e.jobBody(jid, "ds", `cp "$1/data.txt" "$2/copy.txt"`))
			if done := e.wait(t, jid); done["status"] != statusSuccess {
				t.Fatalf("job = %v; want %s", done, statusSuccess)
			}
			if got, err := os.ReadFile(filepath.Join(v.Mountpoint, jid, "out", "copy.txt")); string(got) != "in a volume" {
				t.Errorf("volume %s: %s/out/copy.txt = %q, %v; want \"in a volume\"", vol, jid, got, err)
			}
		})
	}
	t.Run("no volume found", func(t *testing.T) {
		url := startServer(t, serverEnv(eng, map[string]string{"STORAGE_TYPE": "docker_local_volume",
			"PFCON_SELECTOR": "org.chrisproject.role=nobody-has-this"}))
		e := newEnv(eng, t.TempDir())
		e.url = url
		jid := e.newJID(t, "novolume")
		code, m := e.do(t, "POST", "/api/v1/", e.jobBody(jid, "fs", "true"))
		if code != http.StatusServiceUnavailable || !strings.Contains(fmt.Sprint(m["message"]), "nobody-has-this") {
			t.Errorf("POST with no pfcon volume = %d %v; want 503 naming the selector", code, m)
		}
		e.noContainer(t, jid)
	})
}

// fakeRegistry serves one image, repo:1, over the registry HTTP API: FROM
// scratch with busybox as sh and echo. Docker pulls from 127.0.0.1 over
// plain HTTP without configuration; Podman because .ci/podman marks
// 127.0.0.1 insecure in registries.conf.d. With brokenLayer the layer's bytes do
// not match its digest, so the pull fails midway, inside the stream.
func fakeRegistry(t *testing.T, repo string, brokenLayer bool) string {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		needOrSkip(t, "no static busybox for the registry's image: "+err.Error())
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	tw.WriteHeader(&tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Unix(0, 0)})
	tw.WriteHeader(&tar.Header{Name: "bin/busybox", Mode: 0o755, Size: int64(len(bb)), ModTime: time.Unix(0, 0)})
	tw.Write(bb)
	for _, a := range []string{"sh", "echo"} {
		tw.WriteHeader(&tar.Header{Name: "bin/" + a, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777, ModTime: time.Unix(0, 0)})
	}
	tw.Close()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(layer.Bytes())
	zw.Close()
	digest := func(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }
	config, _ := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH, "os": "linux", "config": map[string]any{},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{digest(layer.Bytes())}},
	})
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.docker.distribution.manifest.v2+json",
		"config":        map[string]any{"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config), "digest": digest(config)},
		"layers":        []any{map[string]any{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": gz.Len(), "digest": digest(gz.Bytes())}},
	})
	blobs := map[string][]byte{digest(config): config, digest(gz.Bytes()): gz.Bytes()}
	if brokenLayer {
		bad := bytes.Clone(gz.Bytes())
		bad[len(bad)/2] ^= 0xff
		blobs[digest(gz.Bytes())] = bad
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/{$}", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("GET /v2/"+repo+"/manifests/{ref}", func(w http.ResponseWriter, r *http.Request) {
		if ref := r.PathValue("ref"); ref != "1" && ref != digest(manifest) {
			http.Error(w, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/vnd.docker.distribution.manifest.v2+json")
		w.Header().Set("Docker-Content-Digest", digest(manifest))
		w.Write(manifest)
	})
	mux.HandleFunc("GET /v2/"+repo+"/blobs/{digest}", func(w http.ResponseWriter, r *http.Request) {
		b, ok := blobs[r.PathValue("digest")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// TestDockerPull submits jobs whose image the engine does not have: it is
// pulled as `docker run` would, or the job is refused naming the image,
// and nothing is left behind.
func TestDockerPull(t *testing.T) {
	forEachEngine(t, testDockerPull)
}

func testDockerPull(t *testing.T, eng *testEngine) {
	e := startDocker(t, eng, nil)
	var b [4]byte
	rand.Read(b[:])
	repo := fmt.Sprintf("dk-%x/pulled", b)

	t.Run("pulled", func(t *testing.T) {
		img := fakeRegistry(t, repo, false) + "/" + repo + ":1"
		t.Cleanup(func() { e.cli.ImageRemove(context.Background(), img, image.RemoveOptions{Force: true}) })
		jid := e.newJID(t, "pulled")
		e.dir(t, jid+"/in", nil)
		body := e.jobBody(jid, "fs", "echo pulled and ran")
		body["image"] = img
		e.submit(t, body)
		if done := e.wait(t, jid); done["status"] != statusSuccess || done["logs"] != "pulled and ran\n" || done["image"] != img {
			t.Errorf("job = %v; want %s, image %s, logs \"pulled and ran\"", done, statusSuccess, img)
		}
	})

	t.Run("no such tag", func(t *testing.T) {
		img := fakeRegistry(t, repo, false) + "/" + repo + ":2"
		jid := e.newJID(t, "notag")
		e.dir(t, jid+"/in", nil)
		body := e.jobBody(jid, "fs", "true")
		body["image"] = img
		code, m := e.do(t, "POST", "/api/v1/", body)
		t.Logf("POST with a tag the registry has not: %d %v", code, m)
		// Engine 20.10 answers the registry's "manifest unknown" with a
		// 500 (so 503 here), newer ones with a 404.
		if msg := fmt.Sprint(m["message"]); code != http.StatusNotFound && code != http.StatusServiceUnavailable ||
			!strings.Contains(msg, img) || !strings.Contains(msg, "manifest unknown") {
			t.Errorf("POST with a tag the registry has not = %d %v; want 404 or 503 naming %s, saying manifest unknown", code, m, img)
		}
		e.noContainer(t, jid)
	})

	t.Run("layer corrupt", func(t *testing.T) {
		img := fakeRegistry(t, repo, true) + "/" + repo + ":1"
		t.Cleanup(func() { e.cli.ImageRemove(context.Background(), img, image.RemoveOptions{Force: true}) })
		jid := e.newJID(t, "badlayer")
		e.dir(t, jid+"/in", nil)
		body := e.jobBody(jid, "fs", "true")
		body["image"] = img
		code, m := e.do(t, "POST", "/api/v1/", body)
		t.Logf("POST with a corrupt layer: %d %v", code, m)
		if code == http.StatusCreated || !strings.Contains(fmt.Sprint(m["message"]), img) {
			t.Errorf("POST with a corrupt layer = %d %v; want an error naming %s", code, m, img)
		}
		e.noContainer(t, jid)
		if _, err := e.cli.ImageInspect(context.Background(), img); !cerrdefs.IsNotFound(err) {
			t.Errorf("image %s after a failed pull: %v; want not found", img, err)
		}
	})
}

// proxyEngine serves the engine cli talks to on the unix socket sock, and
// records the calls that pass (pings aside).
func proxyEngine(t testing.TB, cli *client.Client, sock string) *callLog {
	t.Helper()
	return proxyEngineFailing(t, cli, sock, "", 0)
}

// proxyEngineFailing is proxyEngine, but answers code, in the engine's
// error form, to every call whose path ends in suffix.
func proxyEngineFailing(t testing.TB, cli *client.Client, sock, suffix string, code int) *callLog {
	t.Helper()
	real, err := client.ParseHostURL(cli.DaemonHost())
	if err != nil || (real.Scheme != "unix" && real.Scheme != "tcp") || os.Getenv("DOCKER_TLS_VERIFY") != "" {
		needOrSkip(t, fmt.Sprintf("the engine at %s is not a plain unix or tcp socket this test can proxy to (%v)", cli.DaemonHost(), err))
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	calls := &callLog{}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			if !strings.HasSuffix(r.In.URL.Path, "/_ping") {
				calls.add(r.In.URL.Path)
			}
			r.SetURL(&url.URL{Scheme: "http", Host: "docker"})
		},
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			// ParseHostURL keeps a unix socket's path in Host.
			return (&net.Dialer{}).DialContext(ctx, real.Scheme, real.Host)
		}},
	}
	handler := http.Handler(proxy)
	if suffix != "" {
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.HasSuffix(r.URL.Path, suffix) {
				proxy.ServeHTTP(w, r)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			fmt.Fprintf(w, `{"message": "made to fail by the test (%d)"}`, code)
		})
	}
	srv := &http.Server{Handler: handler}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	calls.stop = func() { srv.Close() }
	return calls
}

// callLog records the paths of the engine calls that pass a proxy.
type callLog struct {
	mu    sync.Mutex
	paths []string
	gate  chan struct{} // when set, calls wait until it is closed
	stop  func()        // stops the proxy: the engine is "down"
}

func (c *callLog) add(p string) {
	c.mu.Lock()
	c.paths = append(c.paths, p)
	gate := c.gate
	c.mu.Unlock()
	if gate != nil {
		<-gate
	}
}

// hold makes the calls that pass wait until release is called.
func (c *callLog) hold() (release func()) {
	gate := make(chan struct{})
	c.mu.Lock()
	c.gate = gate
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		c.gate = nil
		c.mu.Unlock()
		close(gate)
	}
}

// take answers the calls recorded since the last take, and forgets them.
func (c *callLog) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.paths
	c.paths = nil
	return p
}

// TestTailBuffer: a log read keeps only the last lines of a long log, from
// the start of a line, within twice its bound.
func TestTailBuffer(t *testing.T) {
	tb := &tailBuffer{max: 100}
	for i := range 1000 {
		fmt.Fprintf(tb, "line %d\n", i)
		if len(tb.b) > 200 {
			t.Fatalf("after line %d the buffer holds %d bytes; want at most 200", i, len(tb.b))
		}
	}
	if got := tailLines(string(tb.b), 2); got != "line 998\nline 999\n" {
		t.Errorf("the last 2 lines kept = %q; want lines 998 and 999", got)
	}
	if !strings.HasPrefix(string(tb.b), "line ") {
		t.Errorf("the kept log starts mid-line: %q", tb.b[:10])
	}
}

// benchSubmit POSTs a new fs job running shell on the server at url, as
// dockerEnv.jobBody builds it, and returns its jid; the container goes when
// the benchmark ends.
func benchSubmit(b *testing.B, cli *client.Client, url, store, img, shell string) string {
	b.Helper()
	var rb [4]byte
	rand.Read(rb[:])
	jid := fmt.Sprintf("dk-%x-bench", rb)
	os.MkdirAll(filepath.Join(store, jid, "in"), 0o777)
	b.Cleanup(func() {
		cli.ContainerRemove(context.Background(), jid, container.RemoveOptions{Force: true, RemoveVolumes: true})
	})
	body, _ := json.Marshal((&dockerEnv{image: img}).jobBody(jid, "fs", shell))
	resp, err := http.Post(url+"/api/v1/", "application/json", bytes.NewReader(body))
	if err != nil || resp.StatusCode != http.StatusCreated {
		b.Fatalf("POST: %v %v", resp, err)
	}
	resp.Body.Close()
	return jid
}
