package main

// The Docker backend end to end, through the whole server on each engine
// (Docker and Podman): what only this backend does. What every backend does
// is the contract suite's (contract_docker_test.go).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/volume"
)

func TestDockerEndToEnd(t *testing.T) {
	forEachEngine(t, testDockerEndToEnd)
}

// testDockerEndToEnd runs what only the Docker backend does, through the
// whole server on eng; what every backend does is the contract suite's
// (contract_docker_test.go).
func testDockerEndToEnd(t *testing.T, eng *testEngine) {
	e := startDocker(t, eng, map[string]string{"JOB_LOGS_TAIL": "3"})

	t.Run("info", func(t *testing.T) {
		code, m := e.do(t, "GET", "/api/v1/", nil)
		if code != 200 || m["container_env"] != eng.name || m["storage_type"] != "host" {
			t.Errorf("GET /api/v1/ = %d %v; want 200, %s, host", code, m, eng.name)
		}
	})

	t.Run("the container as the engine holds it", func(t *testing.T) {
		t.Parallel()
		jid := e.newJID(t, "config")
		e.dir(t, jid+"/in", nil)
		e.submit(t, e.jobBody(jid, "ds", `if touch "$1/intruder" 2>/dev/null; then echo WRITABLE; else echo READONLY; fi`))
		done := e.wait(t, jid)
		if done["status"] != statusSuccess || !strings.Contains(fmt.Sprint(done["logs"]), "READONLY") {
			t.Errorf("job = %v; want %s, its input read-only", done, statusSuccess)
		}
		if _, err := os.Stat(filepath.Join(e.store, jid, "in", "intruder")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the job wrote into its input: %v", err)
		}
		if ts := fmt.Sprint(done["timestamp"]); ts == "" || strings.HasPrefix(ts, "0001") {
			t.Errorf("timestamp = %q; want FinishedAt", ts)
		}
		c, err := e.cli.ContainerInspect(context.Background(), jid)
		if err != nil {
			t.Fatal(err)
		}
		if c.HostConfig.RestartPolicy.Name != "no" || c.HostConfig.NanoCPUs != 1e9 || c.HostConfig.Memory != 64<<20 {
			t.Errorf("restart, NanoCPUs, Memory = %q, %d, %d; want no, 1e9, 64 MiB", c.HostConfig.RestartPolicy.Name, c.HostConfig.NanoCPUs, c.HostConfig.Memory)
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

// TestDockerLogsCallFails asks the scheduler the status of a job that ran,
// through an engine whose logs call fails: a 500 is logs unreadable, the
// answer marked incomplete so it is never cached (policy.go; the wire
// answer is the contract suite's); a 404 is the container removed between
// the inspect and the logs call: the job is gone.
func TestDockerLogsCallFails(t *testing.T) {
	forEachEngine(t, func(t *testing.T, eng *testEngine) {
		e := startDocker(t, eng, nil)
		jid := e.newJID(t, "nologs")
		e.dir(t, jid+"/in", nil)
		e.submit(t, e.jobBody(jid, "fs", "echo hidden"))
		e.wait(t, jid)

		for _, code := range []int{http.StatusInternalServerError, http.StatusNotFound} {
			t.Run(strconv.Itoa(code), func(t *testing.T) {
				sock := filepath.Join(t.TempDir(), "engine.sock")
				proxyEngineFailing(t, eng.cli, sock, "/logs", code)
				env := serverEnv(eng, map[string]string{"STORAGE_TYPE": "host", "STOREBASE": e.store, "DOCKER_HOST": "unix://" + sock})
				cfg, err := loadConfig(func(k string) string { return env[k] })
				if err != nil {
					t.Fatal(err)
				}
				s, err := newDocker(context.Background(), cfg, slog.New(slog.DiscardHandler))
				if err != nil {
					t.Fatal(err)
				}
				j, err := s.get(context.Background(), jid)
				if code == http.StatusNotFound {
					if !isKind(err, eNotFound) {
						t.Errorf("get with the logs call answering 404 = %+v, %v; want not found", j, err)
					}
					return
				}
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
			suffix := randSuffix()
			vol := "dk-" + suffix + "-store"
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
				label := "org.chrisproject.role=pfcon-" + suffix
				env["PFCON_SELECTOR"] = label
				k, val, _ := strings.Cut(label, "=")
				c, err := cli.ContainerCreate(context.Background(),
					&container.Config{Image: img, Cmd: []string{"sleep", "300"}, Labels: map[string]string{k: val}},
					&container.HostConfig{Mounts: []mount.Mount{{Type: mount.TypeVolume, Source: vol, Target: pfconStoreBase}}},
					nil, nil, "dk-"+suffix+"-pfcon")
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
