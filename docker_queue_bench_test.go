package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/client"
)

// BenchmarkDockerQueueMixed runs 20 mixed jobs from 3 users on a small
// host, with and without admission, and reports the wall time from the
// first POST to the last job's end, how many jobs were killed for memory
// and the host's peak memory. The small host is a cgroup of this machine
// (512 MiB; the machine has 2 CPUs) that
// every job container is put under (a proxy in front of the engine adds
// CgroupParent to each create): the memory the jobs use together is then
// bounded as a host's is, without risking the machine's own. It needs root
// and cgroup v1 with Docker's cgroupfs driver.
//
//	go test -run '^$' -bench BenchmarkDockerQueueMixed -benchtime 1x .
func BenchmarkDockerQueueMixed(b *testing.B) {
	eng := needTestEngine(b, "docker")
	const hostMiB = 512
	parent := "pman-bench-" + randSuffix()
	mem := filepath.Join("/sys/fs/cgroup/memory", parent)
	if err := os.Mkdir(mem, 0o755); err != nil {
		needOrSkip(b, "the benchmark's small host is a memory cgroup (cgroup v1, as root): "+err.Error())
	}
	b.Cleanup(func() {
		for _, c := range []string{"memory", "cpu", "cpuacct", "cpu,cpuacct", "pids", "blkio", "devices", "freezer", "cpuset", "net_cls", "perf_event", "hugetlb", "systemd", "unified"} {
			os.Remove(filepath.Join("/sys/fs/cgroup", c, parent))
		}
	})
	if err := os.WriteFile(filepath.Join(mem, "memory.limit_in_bytes"), []byte(strconv.Itoa(hostMiB<<20)), 0o644); err != nil {
		b.Fatal(err)
	}
	sock := filepath.Join(b.TempDir(), "engine.sock")
	cgroupProxy(b, eng.cli, sock, "/"+parent)
	for _, admission := range []string{"off", "on"} {
		b.Run("admission="+admission, func(b *testing.B) {
			for range b.N {
				// The peak is the host's since here.
				os.WriteFile(filepath.Join(mem, "memory.max_usage_in_bytes"), []byte("0"), 0o644)
				store := b.TempDir()
				os.Chmod(store, 0o777)
				env := serverEnv(eng, map[string]string{"STORAGE_TYPE": "host", "STOREBASE": store, "DOCKER_HOST": "unix://" + sock})
				if admission == "on" {
					env["JOB_CAPACITY"] = fmt.Sprintf("cpu=2,memory=%dMi", hostMiB)
				}
				wall, killed, failed := runMixed(b, eng, startServer(b, env), store)
				b.ReportMetric(wall.Seconds(), "wall-s")
				b.ReportMetric(float64(killed), "oom-killed")
				b.ReportMetric(float64(failed), "other-failures")
				if peak, err := os.ReadFile(filepath.Join(mem, "memory.max_usage_in_bytes")); err == nil {
					n, _ := strconv.ParseInt(strings.TrimSpace(string(peak)), 10, 64)
					b.ReportMetric(float64(n>>20), "host-peak-MiB")
				}
			}
		})
	}
}

// mixedJobs are the benchmark's jobs by size: what they ask, and the MiB
// their dd copies count times (about a second of one CPU), then holds for
// 4 s (a dd blocked writing into a pipe that is read only after a sleep).
var mixedJobs = []struct {
	cpu, memory, useMiB, count int
}{
	{500, 96, 48, 80},    // small
	{1000, 160, 96, 40},  // medium
	{1000, 256, 192, 20}, // large
}

// mixedScript is the shell a job of size runs; pipefail makes a dd killed
// for memory the job's failure.
func mixedScript(useMiB, count int) string {
	return fmt.Sprintf("set -o pipefail; dd if=/dev/zero of=/dev/null bs=%[1]dM count=%[2]d && dd if=/dev/zero bs=%[1]dM count=1 | (sleep 4; cat >/dev/null)", useMiB, count)
}

// runMixed POSTs 20 jobs of 3 users (alice 10, bob 6, carol 4; sizes
// turning small, medium, large) to the server at base and waits for all;
// it returns the wall time, the jobs killed for memory and the other
// failures.
func runMixed(b *testing.B, eng *testEngine, base, store string) (wall time.Duration, killed, failed int) {
	users := []string{"alice", "alice", "bob", "alice", "carol", "bob", "alice", "alice", "bob", "carol",
		"alice", "bob", "alice", "carol", "alice", "bob", "alice", "carol", "bob", "alice"}
	start := time.Now()
	var jids []string
	for i, user := range users {
		size := mixedJobs[i%len(mixedJobs)]
		jid := fmt.Sprintf("dk-%s-mix%d", randSuffix(), i)
		os.MkdirAll(filepath.Join(store, jid, "in"), 0o777)
		b.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "DELETE", base+"/api/v1/"+jid+"/", nil)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		})
		body := (&dockerEnv{image: eng.image}).jobBody(jid, "fs", mixedScript(size.useMiB, size.count))
		body["auid"], body["cpu_limit"], body["memory_limit"] = user, size.cpu, size.memory
		raw, _ := json.Marshal(body)
		resp, err := http.Post(base+"/api/v1/", "application/json", bytes.NewReader(raw))
		if err != nil || resp.StatusCode != http.StatusCreated {
			b.Fatalf("POST %s: %v %v", jid, resp, err)
		}
		resp.Body.Close()
		jids = append(jids, jid)
	}
	left := map[string]bool{}
	for _, jid := range jids {
		left[jid] = true
	}
	for deadline := time.Now().Add(10 * time.Minute); len(left) > 0; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("%d jobs not finished after 10 minutes", len(left))
		}
		for jid := range left {
			resp, err := http.Get(base + "/api/v1/" + jid + "/")
			if err != nil {
				b.Fatal(err)
			}
			var j job
			json.NewDecoder(resp.Body).Decode(&j)
			resp.Body.Close()
			switch {
			case j.Status == statusSuccess:
			case j.Status == statusError && strings.Contains(j.Message, "memory"):
				killed++
			case j.Status == statusError:
				failed++
				b.Logf("job %s failed: %s", jid, j.Message)
			default:
				continue
			}
			delete(left, jid)
		}
	}
	return time.Since(start), killed, failed
}

// cgroupProxy serves the engine cli talks to on the unix socket sock, and
// puts every container created through it under the cgroup parent.
func cgroupProxy(b *testing.B, cli *client.Client, sock, parent string) {
	real, err := client.ParseHostURL(cli.DaemonHost())
	if err != nil || real.Scheme != "unix" {
		needOrSkip(b, fmt.Sprintf("the engine at %s is not a unix socket this benchmark can proxy to (%v)", cli.DaemonHost(), err))
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(&url.URL{Scheme: "http", Host: "docker"})
			if r.In.Method != http.MethodPost || !strings.HasSuffix(r.In.URL.Path, "/containers/create") {
				return
			}
			raw, _ := io.ReadAll(r.In.Body)
			var body map[string]any
			if json.Unmarshal(raw, &body) == nil {
				hc, _ := body["HostConfig"].(map[string]any)
				if hc == nil {
					hc = map[string]any{}
					body["HostConfig"] = hc
				}
				hc["CgroupParent"] = parent
				raw, _ = json.Marshal(body)
			}
			r.Out.Body = io.NopCloser(bytes.NewReader(raw))
			r.Out.ContentLength = int64(len(raw))
			r.Out.Header.Set("Content-Length", strconv.Itoa(len(raw)))
		},
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", real.Host)
		}},
	}
	srv := &http.Server{Handler: proxy}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
}
