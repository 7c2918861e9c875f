package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
)

// BenchmarkStatusGet measures pfcon's polling path through the whole server
// against the real engine, through a proxy that counts the engine calls: a
// running job and a finished one, one client at a time ("serial") and 16 at
// once ("parallel"). calls/op is engine calls per GET; allocs/op counts the
// client's and the server's allocations (they share the process).
func BenchmarkStatusGet(b *testing.B) {
	cli := needEngine(b)
	img := needTestImage(b, cli)
	sock := filepath.Join(b.TempDir(), "engine.sock")
	calls := proxyEngine(b, cli, sock)
	store := b.TempDir()
	url := startServer(b, map[string]string{"CONTAINER_ENV": "docker", "STORAGE_TYPE": "host", "STOREBASE": store,
		"JOB_LOGS_TAIL": "1000", "DOCKER_HOST": "unix://" + sock})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	get := func(jid string) (map[string]any, error) {
		resp, err := client.Get(url + "/api/v1/" + jid + "/")
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s = %d %v %v", jid, resp.StatusCode, m, err)
		}
		return m, nil
	}
	// submit runs shell in a new job and waits until its status is one of want.
	submit := func(b *testing.B, shell string, want ...string) string {
		var rb [4]byte
		rand.Read(rb[:])
		jid := fmt.Sprintf("dk-%x-bench", rb)
		os.MkdirAll(filepath.Join(store, jid, "in"), 0o777)
		b.Cleanup(func() {
			cli.ContainerRemove(context.Background(), jid, container.RemoveOptions{Force: true, RemoveVolumes: true})
		})
		body, _ := json.Marshal(map[string]any{
			"jid": jid, "args": []string{}, "auid": "cube", "number_of_workers": 1,
			"cpu_limit": 1000, "memory_limit": 64, "gpu_limit": 0, "image": img,
			"entrypoint": []string{"sh", "-c", shell, "sh"}, "type": "fs",
			"input_dir": jid + "/in", "output_dir": jid + "/out",
		})
		resp, err := http.Post(url+"/api/v1/", "application/json", bytes.NewReader(body))
		if err != nil || resp.StatusCode != http.StatusCreated {
			b.Fatalf("POST: %v %v", resp, err)
		}
		resp.Body.Close()
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
			m, err := get(jid)
			if err != nil {
				b.Fatal(err)
			}
			if slices.Contains(want, fmt.Sprint(m["status"])) {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("job %s: %v after a minute; want %q", jid, m, want)
			}
		}
		time.Sleep(time.Second) // let the 1000 lines reach the log
		return jid
	}
	jobs := map[string]string{
		"running":  submit(b, "seq 1 1000; sleep 300", statusStarted),
		"finished": submit(b, "seq 1 1000", statusSuccess),
	}
	for _, state := range []string{"running", "finished"} {
		jid := jobs[state]
		b.Run(state+"/serial", func(b *testing.B) {
			get(jid) // the first GET after a change may fill what later ones use
			calls.take()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := get(jid); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(len(calls.take()))/float64(b.N), "calls/op")
		})
		b.Run(state+"/parallel", func(b *testing.B) {
			get(jid)
			calls.take()
			b.ReportAllocs()
			b.SetParallelism(8) // 16 clients on 2 cores, as pfcon's measure
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := get(jid); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(len(calls.take()))/float64(b.N), "calls/op")
		})
	}
}
