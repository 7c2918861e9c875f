package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
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
		// Read to the end, so that the connection is reused.
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		if err != nil {
			return nil, err
		}
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil || resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s = %d %v %v", jid, resp.StatusCode, m, err)
		}
		return m, nil
	}
	// submit runs shell in a new job and waits until its status is one of want.
	submit := func(b *testing.B, shell string, want ...string) string {
		jid := benchSubmit(b, cli, url, store, img, shell)
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

// TestStatusCacheEndToEnd runs real jobs through run on the real engine,
// through a proxy that counts the engine calls: a finished job is answered
// from memory, concurrent GETs share one set of calls, and DELETE and POST
// make pman forget what it kept.
func TestStatusCacheEndToEnd(t *testing.T) {
	cli := needEngine(t)
	img := needTestImage(t, cli)
	sock := filepath.Join(t.TempDir(), "engine.sock")
	calls := proxyEngine(t, cli, sock)
	store := t.TempDir()
	os.Chmod(store, 0o777)
	e := &dockerEnv{url: startServer(t, map[string]string{"CONTAINER_ENV": "docker", "STORAGE_TYPE": "host",
		"STOREBASE": store, "DOCKER_HOST": "unix://" + sock}), store: store, cli: cli, image: img}
	getRaw := func(t *testing.T, jid string) (int, string) {
		t.Helper()
		resp, err := http.Get(e.url + "/api/v1/" + jid + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	t.Run("a finished job's second GET makes no engine call", func(t *testing.T) {
		jid := e.newJID(t, "cached")
		e.dir(t, jid+"/in", nil)
		e.submit(t, e.jobBody(jid, "fs", "echo done"))
		// The GET that sees it finished asks the engine and keeps the answer.
		calls.take()
		e.wait(t, jid)
		if len(calls.take()) == 0 {
			t.Fatal("the GETs until the job finished made no engine call")
		}
		code, first := getRaw(t, jid)
		if code != 200 || !strings.Contains(first, `"status":"finishedSuccessfully"`) {
			t.Fatalf("GET after the finish = %d %s; want 200 finishedSuccessfully", code, first)
		}
		for range 3 {
			code, again := getRaw(t, jid)
			if code != 200 || again != first {
				t.Errorf("cached GET = %d %q; want 200 %q", code, again, first)
			}
		}
		if c := calls.take(); len(c) != 0 {
			t.Errorf("GETs of a finished job made engine calls %q; want none", c)
		}

		// A POST of that jid still asks the engine, which says it is taken.
		if code, m := e.do(t, "POST", "/api/v1/", e.jobBody(jid, "fs", "echo again")); code != http.StatusConflict {
			t.Errorf("POST of a finished jid = %d %v; want 409 from the engine", code, m)
		}
		if len(calls.take()) == 0 {
			t.Error("POST of a finished jid made no engine call")
		}

		// DELETE evicts: the next GET asks the engine, which has no such job.
		if code, m := e.do(t, "DELETE", "/api/v1/"+jid+"/", nil); code != http.StatusNoContent {
			t.Fatalf("DELETE = %d %v", code, m)
		}
		calls.take()
		if code, body := getRaw(t, jid); code != http.StatusNotFound {
			t.Errorf("GET after DELETE = %d %s; want 404", code, body)
		}
		if len(calls.take()) == 0 {
			t.Error("GET after DELETE made no engine call")
		}
	})

	t.Run("ten concurrent GETs of a running job make one set of calls", func(t *testing.T) {
		jid := e.newJID(t, "shared")
		e.dir(t, jid+"/in", nil)
		e.submit(t, e.jobBody(jid, "fs", "echo up; sleep 300"))
		untilStatus(t, e.url, jid, time.Minute, statusStarted)
		calls.take()
		getRaw(t, jid)
		oneSet := calls.take()
		if len(oneSet) == 0 {
			t.Fatal("a GET of a running job made no engine call")
		}

		misses := func() float64 { return metricValue(t, scrape(t, e.url), "pman_status_cache_misses_total", nil) }
		before := misses()
		release := calls.hold()
		type answer struct {
			code int
			body string
		}
		answers := make(chan answer, 10)
		for range 10 {
			go func() {
				code, body := getRaw(t, jid)
				answers <- answer{code, body}
			}()
		}
		// All ten wait on one call (held at the proxy) once each has
		// counted its miss: it is counted after joining.
		eventually(t, 30*time.Second, "ten GETs waiting", func() bool { return misses()-before >= 10 })
		release()
		var first string
		for i := range 10 {
			a := <-answers
			if a.code != 200 || !strings.Contains(a.body, `"status":"started"`) {
				t.Errorf("concurrent GET = %d %s; want 200 started", a.code, a.body)
			}
			if i == 0 {
				first = a.body
			} else if a.body != first {
				t.Errorf("concurrent GETs answered differently: %s and %s", first, a.body)
			}
		}
		if c := calls.take(); !slices.Equal(c, oneSet) {
			t.Errorf("ten concurrent GETs made engine calls %q; want one set, %q", c, oneSet)
		}
	})
}

// countingSched counts the gets that reach a scheduler.
type countingSched struct {
	scheduler
	gets atomic.Int32
}

func (c *countingSched) get(ctx context.Context, jid string) (*job, error) {
	c.gets.Add(1)
	return c.scheduler.get(ctx, jid)
}

// TestStatusCacheHandler checks what is kept and what makes pman forget it,
// with the scheduler in memory.
func TestStatusCacheHandler(t *testing.T) {
	f := newFakeSched()
	s := &countingSched{scheduler: f}
	cfg := &config{RemoveJobs: false}
	h := testHandler(cfg, s)
	add := func(jid, status string, incomplete bool) {
		f.jobs[jid] = &job{JID: jid, Status: status, Message: "m", LogsIncomplete: incomplete}
	}
	gets := func(jid string, n int) int32 {
		before := s.gets.Load()
		for range n {
			if code, m := callHandler(t, h, "GET", "/api/v1/"+jid+"/", ""); code != 200 {
				t.Fatalf("GET %s = %d %v", jid, code, m)
			}
		}
		return s.gets.Load() - before
	}
	tests := []struct {
		status     string
		incomplete bool
		want       int32 // scheduler gets for three GETs
	}{
		{statusSuccess, false, 1},
		{statusError, false, 1},
		{statusSuccess, true, 3}, // logs not read in full: never kept
		{statusStarted, false, 3},
		{statusNotStarted, false, 3},
		{statusUndefined, false, 3},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s incomplete=%v", tt.status, tt.incomplete), func(t *testing.T) {
			jid := fmt.Sprintf("j-%s-%v", tt.status, tt.incomplete)
			add(jid, tt.status, tt.incomplete)
			if got := gets(jid, 3); got != tt.want {
				t.Errorf("three GETs made %d scheduler gets; want %d", got, tt.want)
			}
		})
	}

	t.Run("DELETE with REMOVE_JOBS=no evicts", func(t *testing.T) {
		add("kept", statusSuccess, false)
		gets("kept", 1)
		if code, _ := callHandler(t, h, "DELETE", "/api/v1/kept/", ""); code != http.StatusNoContent {
			t.Fatalf("DELETE = %d", code)
		}
		if got := gets("kept", 1); got != 1 {
			t.Errorf("GET after DELETE made %d scheduler gets; want 1", got)
		}
	})

	t.Run("a POST accepted for a cached jid evicts", func(t *testing.T) {
		body := validBody()
		body["jid"] = "reused"
		add("reused", statusSuccess, false)
		gets("reused", 1)
		// The scheduler accepts the jid again (as Cromwell may).
		delete(f.jobs, "reused")
		if code, m := callHandler(t, h, "POST", "/api/v1/", string(mustJSON(t, body))); code != http.StatusCreated {
			t.Fatalf("POST = %d %v", code, m)
		}
		if code, m := callHandler(t, h, "GET", "/api/v1/reused/", ""); code != 200 || m["status"] != statusNotStarted {
			t.Errorf("GET after a new POST = %d %v; want the new job, notstarted", code, m)
		}
	})
}

func TestJobCacheBounds(t *testing.T) {
	now := time.Unix(1e9, 0)
	c := newJobCache(3, 100, time.Minute)
	c.now = func() time.Time { return now }
	put := func(jid string, size int) { c.put(jid, statusSuccess, bytes.Repeat([]byte("x"), size), c.mark()) }
	has := func(jid string) bool { _, _, ok := c.get(jid); return ok }

	put("a", 10)
	put("b", 10)
	put("c", 10)
	has("a") // a is now the most recently used
	put("d", 10)
	if has("b") || !has("a") || !has("c") || !has("d") {
		t.Errorf("over 3 entries: b (least recently used) should go, a, c and d stay")
	}
	put("e", 90)
	if n, b := c.size(); b > 100 || !has("e") {
		t.Errorf("over 100 bytes: %d entries, %d bytes, e kept %v; want at most 100 bytes, e kept", n, b, has("e"))
	}
	put("huge", 101)
	if has("huge") {
		t.Error("an answer over the byte bound was kept")
	}

	now = now.Add(time.Minute)
	for _, jid := range []string{"a", "c", "d", "e"} {
		if has(jid) {
			t.Errorf("%s was answered at its expiry", jid)
		}
	}
	if n, b := c.size(); n != 0 || b != 0 {
		t.Errorf("after expiry and reads: %d entries, %d bytes", n, b)
	}

	// An answer read before an eviction is not stored after it.
	epoch := c.mark()
	c.evict("f")
	c.put("f", statusSuccess, []byte("old"), epoch)
	if has("f") {
		t.Error("an answer read before an eviction was stored after it")
	}
}
