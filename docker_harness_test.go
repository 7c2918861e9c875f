package main

// The Docker backend's test harness: the engines (Docker, Podman) with the
// busybox test image on them, a server on one (dockerEnv), and a proxy in
// front of an engine that records, holds or fails its calls.

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
)

// needEngine returns a client of a Docker engine that answers a ping, or
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

// buildTestImage returns "" or why the image could not be built.
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

// needTestEngine returns the engine named docker (DOCKER_HOST, as the docker
// CLI reads it) or podman (podmanHost), with the test image on it.
func needTestEngine(t testing.TB, name string) *testEngine {
	t.Helper()
	if name == "docker" {
		cli := needEngine(t)
		return &testEngine{name: name, env: map[string]string{}, cli: cli, image: needTestImage(t, cli)}
	}
	host := podmanHost()
	cli, err := newEngineClient(&config{DockerHost: host})
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

// copyImage returns "" or why ref could not be copied from one engine to
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
	jid := "dk-" + randSuffix() + "-" + name
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

// jobBody returns jobRequest(jid) for a job of type typ on e's test image
// that runs shell with sh -c and no arguments: $1 is /share/incoming for a
// ds job, then /share/outgoing.
func (e *dockerEnv) jobBody(jid, typ, shell string) map[string]any {
	body := jobRequest(jid)
	body["image"], body["type"], body["args"] = e.image, typ, []string{}
	body["entrypoint"] = []string{"sh", "-c", shell, "sh"}
	return body
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

// wait polls GET until the job is finished (bounded) and returns it.
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

// take returns the calls recorded since the last take, and forgets them.
func (c *callLog) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.paths
	c.paths = nil
	return p
}

// benchSubmit POSTs a new fs job running shell on the server at url (a
// dockerEnv.jobBody) and returns its jid; the container goes when
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
