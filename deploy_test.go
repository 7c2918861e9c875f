package main

// One test per deployment of ../shared/deployments/README.md: the built
// binary, started the way each deployment starts the pman image, with
// exactly that deployment's environment, runs a job end to end.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// pmanBinary builds the server into the test's temporary directory, as the
// image's build does, with a link named gunicorn beside it; it answers the
// directory.
func pmanBinary(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	// With the test binary's own -race, so that the packages come from the
	// build cache instead of a second compile of every dependency.
	args := []string{"build", "-o", filepath.Join(dir, "pman")}
	if bi, ok := debug.ReadBuildInfo(); ok && slices.Contains(bi.Settings, debug.BuildSetting{Key: "-race", Value: "true"}) {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if err := os.Symlink("pman", filepath.Join(dir, "gunicorn")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// pmanProcess is the built server running, and the log lines it wrote.
type pmanProcess struct {
	url string // http://127.0.0.1:PORT of its first address
	mu  sync.Mutex
	log []map[string]any
}

// logged answers the log lines whose msg starts with msg.
func (p *pmanProcess) logged(msg string) []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []map[string]any
	for _, l := range p.log {
		if m, _ := l["msg"].(string); strings.HasPrefix(m, msg) {
			out = append(out, l)
		}
	}
	return out
}

// startProcess runs program (a file of dir) with args and exactly env, and
// answers once it logs "listening". It is stopped with SIGTERM, and must
// exit 0, when the test ends.
func startProcess(t *testing.T, dir, program string, args []string, env map[string]string) *pmanProcess {
	t.Helper()
	cmd := exec.Command(filepath.Join(dir, program), args...)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &pmanProcess{}
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			var l map[string]any
			if json.Unmarshal(sc.Bytes(), &l) != nil {
				continue
			}
			p.mu.Lock()
			p.log = append(p.log, l)
			p.mu.Unlock()
			if a, _ := l["addr"].(string); !sent && l["msg"] == "listening" {
				addr <- a
				sent = true
			}
		}
		done <- cmd.Wait()
	}()
	select {
	case a := <-addr:
		t.Cleanup(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			if err := <-done; err != nil {
				t.Errorf("%s %q: %v; stderr %s", program, args, err, stderr.String())
			}
		})
		_, port, _ := net.SplitHostPort(a)
		p.url = "http://127.0.0.1:" + port
		return p
	case err := <-done:
		t.Fatalf("%s %q did not start: %v\n%s", program, args, err, stderr.String())
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("%s %q did not log \"listening\" within 60s", program, args)
	}
	return nil
}

// needPort5010 skips (fails under CI) when pman's port is taken here: the
// deployments' own command lines listen on it.
func needPort5010(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", ":5010")
	if err != nil {
		needOrSkip(t, "port 5010, which the deployments' command lines bind, is taken: "+err.Error())
		return
	}
	ln.Close()
}

// withEngine adds the variables that say where the Docker engine is, when
// this machine's environment sets them: a deployment mounts the socket.
func withEngine(env map[string]string) map[string]string {
	for _, k := range []string{"DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"} {
		if v := os.Getenv(k); v != "" {
			env[k] = v
		}
	}
	return env
}

// TestGunicornCommandLine starts the built binary the ways deployments
// start the pman image, and asks each for GET /api/v1/ where it was told
// to listen.
func TestGunicornCommandLine(t *testing.T) {
	dir := pmanBinary(t)
	// The Helm chart's environment; its API server need not answer for
	// pman to start.
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600)
	helmEnv := map[string]string{
		"CONTAINER_ENV": "kubernetes", "STORAGE_TYPE": "kubernetes_pvc", "VOLUME_NAME": "chris-store",
		"JOB_NAMESPACE": "chris", "JOB_LABELS": "chrisproject.org/job=plugininstance",
		"ENABLE_HOME_WORKAROUND": "yes", "REMOVE_JOBS": "yes", "IGNORE_LIMITS": "no",
		"GUNICORN_CMD_ARGS": "--workers=4 --timeout=30", "SECRET_KEY": "x8Jz0qL2", "CONTAINER_USER": "1001:0",
		"KUBECONFIG": kubeconfig,
	}
	info := func(t *testing.T, p *pmanProcess, env string) {
		t.Helper()
		code, m := call(t, "GET", p.url+"/api/v1/", nil)
		if code != http.StatusOK || m["container_env"] != env {
			t.Errorf("GET %s/api/v1/ = %d %v; want 200, container_env %s", p.url, code, m, env)
		}
	}

	t.Run("Helm chart: gunicorn -b 0.0.0.0:5010 pman.wsgi:application", func(t *testing.T) {
		needPort5010(t)
		p := startProcess(t, dir, "gunicorn", []string{"-b", "0.0.0.0:5010", "pman.wsgi:application"}, helmEnv)
		if l := p.logged("listening"); len(l) != 1 || l[0]["addr"] != "0.0.0.0:5010" {
			t.Errorf("listening on %v; want 0.0.0.0:5010 only", l)
		}
		info(t, p, "kubernetes")
		want := []any{"pman.wsgi:application", "--workers=4 (GUNICORN_CMD_ARGS)", "--timeout=30 (GUNICORN_CMD_ARGS)"}
		l := p.logged("gunicorn options ignored")
		var got []any
		if len(l) == 1 {
			got, _ = l[0]["ignored"].([]any)
		}
		if len(l) != 1 || !slices.Equal(got, want) {
			t.Errorf("log lines on ignored options = %v; want one naming %q", l, want)
		}
	})
	t.Run("entrypoint pman, command gunicorn --bind", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		// PORT is what a plain pman listens on; --bind wins, as in gunicorn.
		p := startProcess(t, dir, "pman", []string{"gunicorn", "--bind", addr, "-w", "4", "--reload", "pman.wsgi:application"},
			map[string]string{"PORT": "1"})
		if l := p.logged("listening"); len(l) != 1 || l[0]["addr"] != addr {
			t.Errorf("listening on %v; want %s only", l, addr)
		}
		info(t, p, "docker")
	})
	t.Run("an argument gunicorn would refuse stops the start", func(t *testing.T) {
		for _, args := range [][]string{{"--port", "5010"}, {"-b", "0.0.0.0:5010", "app:app"}} {
			out, err := exec.Command(filepath.Join(dir, "gunicorn"), args...).CombinedOutput()
			if err == nil || !strings.Contains(string(out), args[len(args)-2]) && !strings.Contains(string(out), args[len(args)-1]) {
				t.Errorf("gunicorn %q = %v, %q; want an error naming the argument", args, err, out)
			}
		}
	})
}

// pfconSelector is the default PFCON_SELECTOR, miniChRIS-docker's label of
// its pfcon container.
const pfconSelector = "org.chrisproject.role=pfcon"

// onlyPfcon skips the test (fails it under CI) when a container labelled
// pfconSelector runs on cli's engine: the test's pfcon must be the only
// one, since pman takes the store from the one it finds.
func onlyPfcon(t *testing.T, cli *client.Client) {
	t.Helper()
	f := filters.NewArgs(filters.Arg("label", pfconSelector))
	others, err := cli.ContainerList(context.Background(), container.ListOptions{Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	if len(others) > 0 {
		needOrSkip(t, fmt.Sprintf("%d other containers labelled %s run on this engine (%v)", len(others), pfconSelector, others[0].Names))
	}
}

// pfconStandIn starts a stand-in for pfcon, named name: a container
// labelled pfconSelector that mounts a new volume vol at pfconStoreBase.
// It returns the volume's mountpoint; both go when the test ends.
func pfconStandIn(t *testing.T, cli *client.Client, img, vol, name string) string {
	t.Helper()
	ctx := context.Background()
	v, err := cli.VolumeCreate(ctx, volume.CreateOptions{Name: vol})
	if err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs last: after the container is gone.
	t.Cleanup(func() { cli.VolumeRemove(context.Background(), vol, true) })
	if _, err := os.Stat(v.Mountpoint); err != nil {
		needOrSkip(t, fmt.Sprintf("the volume's mountpoint is not on this machine (remote engine?): %v", err))
	}
	k, val, _ := strings.Cut(pfconSelector, "=")
	c, err := cli.ContainerCreate(ctx,
		&container.Config{Image: img, Cmd: []string{"sleep", "600"}, Labels: map[string]string{k: val}},
		&container.HostConfig{Mounts: []mount.Mount{{Type: mount.TypeVolume, Source: vol, Target: pfconStoreBase}}},
		nil, nil, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true}) })
	if err := cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	return v.Mountpoint
}

// TestDeployMiniChRISDocker is miniChRIS-docker: CONTAINER_ENV=docker and
// neither STORAGE_TYPE nor STOREBASE, so the store is the volume that the
// container labelled org.chrisproject.role=pfcon mounts at
// /var/local/storeBase; the image's default command.
func TestDeployMiniChRISDocker(t *testing.T) {
	cli := needEngine(t)
	img := needTestImage(t, cli)
	needPort5010(t)
	ctx := context.Background()
	onlyPfcon(t, cli)

	e := &dockerEnv{cli: cli, image: img}
	pfcon := func(t *testing.T, name string) (string, string) {
		vol := e.newJID(t, name)
		return vol, pfconStandIn(t, cli, img, vol, vol+"-pfcon")
	}
	vol, mountpoint := pfcon(t, "chris_files")
	e.store = mountpoint

	dir := pmanBinary(t)
	p := startProcess(t, dir, "pman", nil, withEngine(map[string]string{
		"CONTAINER_ENV": "docker", "CONTAINER_USER": "1001:", "ENABLE_HOME_WORKAROUND": "yes",
		"JOB_LABELS": "org.chrisproject.miniChRIS=plugininstance", "SECRET_KEY": "secret", "REMOVE_JOBS": "yes",
	}))
	e.url = p.url
	if l := p.logged("listening"); len(l) != 1 || !strings.HasSuffix(fmt.Sprint(l[0]["addr"]), ":5010") {
		t.Errorf("listening on %v; want port 5010", l)
	}
	if code, m := e.do(t, "GET", "/api/v1/", nil); code != http.StatusOK || m["container_env"] != "docker" || m["storage_type"] != "docker_local_volume" {
		t.Errorf("GET /api/v1/ = %d %v; want docker, docker_local_volume", code, m)
	}

	jid := e.newJID(t, "minichris")
	e.dir(t, jid+"/in", map[string]string{"data.txt": "from pfcon's volume"})
	e.dir(t, jid+"/out", nil)
	e.submit(t, e.jobBody(jid, "ds", `id; echo "HOME=$HOME"; cp "$1/data.txt" "$2/copy.txt"`))
	done := e.wait(t, jid)
	logs := fmt.Sprint(done["logs"])
	t.Logf("the job's log: %q", logs)
	if done["status"] != statusSuccess || !strings.Contains(logs, "uid=1001 gid=0") || !strings.Contains(logs, "HOME=/tmp") {
		t.Errorf("job = %v; want finishedSuccessfully, run as uid 1001 with the image's group 0, HOME=/tmp", done)
	}
	out := filepath.Join(mountpoint, jid, "out", "copy.txt")
	got, err := os.ReadFile(out)
	if string(got) != "from pfcon's volume" {
		t.Errorf("volume %s: %s/out/copy.txt = %q, %v; want the input's copy", vol, jid, got, err)
	}
	if fi, err := os.Stat(out); err == nil {
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 1001 {
			t.Errorf("%s is owned by uid %d; want 1001", out, st.Uid)
		}
	}
	c, err := cli.ContainerInspect(ctx, jid)
	if err != nil {
		t.Fatal(err)
	}
	if c.Config.User != "1001" || len(c.HostConfig.GroupAdd) != 0 || c.Config.Labels["org.chrisproject.miniChRIS"] != "plugininstance" {
		t.Errorf("container: user %q, groups %q, labels %v; want 1001, none, JOB_LABELS", c.Config.User, c.HostConfig.GroupAdd, c.Config.Labels)
	}
	if code, _ := e.do(t, "DELETE", "/api/v1/"+jid+"/", nil); code != http.StatusNoContent {
		t.Errorf("DELETE = %d; want 204", code)
	}
	e.noContainer(t, jid)

	t.Run("two pfcon containers with different stores", func(t *testing.T) {
		other, _ := pfcon(t, "other_files")
		url := startServer(t, withEngine(map[string]string{"CONTAINER_ENV": "docker"}))
		jid := e.newJID(t, "twopfcon")
		code, m := call(t, "POST", url+"/api/v1/", e.jobBody(jid, "fs", "true"))
		if msg := fmt.Sprint(m["message"]); code != http.StatusServiceUnavailable || !strings.Contains(msg, vol+"-pfcon") || !strings.Contains(msg, other+"-pfcon") {
			t.Errorf("POST = %d %v; want 503 naming both pfcon containers", code, m)
		}
		e.noContainer(t, jid)
	})
}

// TestDeployHelmChart is the FNNDSC Helm chart: its environment and its
// gunicorn command, on the test control plane, with its storebase PVC and
// the Role of deploy/kubernetes.yaml (credentials through KUBECONFIG: the
// test is not in a pod).
func TestDeployHelmChart(t *testing.T) {
	adminRC, admin := kubeAdmin(t)
	needPort5010(t)
	ns := kubeNamespace(t, admin)
	sa, role, rb := manifestRBAC(t)
	kubeconfig := kubeconfigAs(t, adminRC, admin, ns, sa, role, rb)
	boundPVC(t, admin, ns, "storebase")

	dir := pmanBinary(t)
	p := startProcess(t, dir, "gunicorn", []string{"-b", "0.0.0.0:5010", "pman.wsgi:application"}, map[string]string{
		"CONTAINER_ENV": "kubernetes", "STORAGE_TYPE": "kubernetes_pvc", "VOLUME_NAME": "storebase",
		"JOB_NAMESPACE": ns, "JOB_LABELS": "chrisproject.org/job=plugininstance",
		"ENABLE_HOME_WORKAROUND": "yes", "REMOVE_JOBS": "yes", "IGNORE_LIMITS": "no",
		"GUNICORN_CMD_ARGS": "--workers=4 --timeout=30", "SECRET_KEY": randSuffix(), "CONTAINER_USER": "1001:0",
		"KUBECONFIG": kubeconfig,
		// Not the chart's: the test control plane has a real node too, and
		// fnndsc/pl-succeed is a kwok image (TestKubeRealChart runs the chart
		// on the real node).
		"NODE_SELECTOR": "type=kwok",
	})
	// The chart's readiness probe.
	if code, m := call(t, "GET", p.url+"/api/v1/", nil); code != http.StatusOK || m["storage_type"] != "kubernetes_pvc" {
		t.Errorf("GET /api/v1/ = %d %v; want 200, kubernetes_pvc", code, m)
	}
	jid := "helm-" + randSuffix()
	body := jobRequest(jid)
	body["image"], body["entrypoint"] = "fnndsc/pl-succeed", []string{"app"}
	if code, m := call(t, "POST", p.url+"/api/v1/", body); code != http.StatusCreated {
		t.Fatalf("POST = %d %v; want 201", code, m)
	}
	if m := untilStatus(t, p.url, jid, time.Minute, statusSuccess, statusError); m["status"] != statusSuccess {
		t.Errorf("GET = %v; want finishedSuccessfully", m)
	}
	kj, err := admin.BatchV1().Jobs(ns).Get(context.Background(), jid, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod := kj.Spec.Template.Spec
	sc := pod.Containers[0].SecurityContext
	if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 1001 || sc.RunAsGroup == nil || *sc.RunAsGroup != 0 {
		t.Errorf("securityContext = %+v; want runAsUser 1001, runAsGroup 0", sc)
	}
	if kj.Labels["chrisproject.org/job"] != "plugininstance" || len(pod.Volumes) != 1 || pod.Volumes[0].PersistentVolumeClaim == nil ||
		pod.Volumes[0].PersistentVolumeClaim.ClaimName != "storebase" || !slices.ContainsFunc(pod.Containers[0].Env, func(e corev1.EnvVar) bool { return e.Name == "HOME" && e.Value == "/tmp" }) {
		t.Errorf("job: labels %v, volumes %+v, env %+v; want JOB_LABELS, the PVC storebase, HOME=/tmp", kj.Labels, pod.Volumes, pod.Containers[0].Env)
	}
	if code, _ := call(t, "DELETE", p.url+"/api/v1/"+jid+"/", nil); code != http.StatusNoContent {
		t.Errorf("DELETE = %d; want 204", code)
	}
}

// TestDeployPfconSwarm is pfcon's swarm deployments: STORAGE_TYPE=host,
// STOREBASE, CONTAINER_ENV=swarm and the image's default command. pfcon of
// 2023 and later names the job's directories; pfcon of 2022 does not.
func TestDeployPfconSwarm(t *testing.T) {
	cli := needSwarm(t)
	img := needTestImage(t, cli)
	needPort5010(t)
	store := t.TempDir()
	if err := os.Chmod(store, 0o777); err != nil {
		t.Fatal(err)
	}
	dir := pmanBinary(t)
	p := startProcess(t, dir, "pman", nil, withEngine(map[string]string{
		"STORAGE_TYPE": "host", "STOREBASE": store, "SECRET_KEY": "secret", "CONTAINER_ENV": "swarm",
	}))
	for _, named := range []bool{true, false} {
		jid := "sw-" + randSuffix() + "-deploy"
		t.Cleanup(func() { cli.ServiceRemove(context.Background(), jid) })
		body := jobRequest(jid)
		body["image"], body["entrypoint"] = img, []string{"sh", "-c", `cat /share/incoming/data.txt > /share/outgoing/copy.txt`}
		in, out := jid+"/in", jid+"/out"
		if !named {
			delete(body, "input_dir")
			delete(body, "output_dir")
			in, out = "key-"+jid+"/incoming", "key-"+jid+"/outgoing"
		}
		for _, d := range []string{in, out} {
			if err := os.MkdirAll(filepath.Join(store, d), 0o777); err != nil {
				t.Fatal(err)
			}
		}
		os.WriteFile(filepath.Join(store, in, "data.txt"), []byte(jid), 0o644)
		if code, m := call(t, "POST", p.url+"/api/v1/", body); code != http.StatusCreated {
			t.Fatalf("POST %s = %d %v; want 201", jid, code, m)
		}
		if m := untilStatus(t, p.url, jid, 90*time.Second, statusSuccess, statusError); m["status"] != statusSuccess {
			t.Errorf("GET %s = %v; want finishedSuccessfully", jid, m)
		}
		if got, err := os.ReadFile(filepath.Join(store, out, "copy.txt")); string(got) != jid {
			t.Errorf("%s/copy.txt = %q, %v; want %q", out, got, err, jid)
		}
		if code, _ := call(t, "DELETE", p.url+"/api/v1/"+jid+"/", nil); code != http.StatusNoContent {
			t.Errorf("DELETE %s = %d; want 204", jid, code)
		}
	}
}
