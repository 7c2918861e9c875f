package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
)

// shortPullWait makes the POSTs of this test wait 1 s for a pull instead of
// postPullWait (read when a server starts; top-level tests run one by one).
func shortPullWait(t *testing.T) {
	old := postPullWait
	postPullWait = time.Second
	t.Cleanup(func() { postPullWait = old })
}

// pendingJID is newJID whose pending records are also removed at the end.
func (e *dockerEnv) pendingJID(t *testing.T, name string) string {
	jid := e.newJID(t, name)
	t.Cleanup(func() {
		for _, v := range []string{recordName(jid), failedName(jid)} {
			e.cli.VolumeRemove(context.Background(), v, true)
		}
	})
	return jid
}

// noRecords fails if the engine keeps a pending record of jid.
func (e *dockerEnv) noRecords(t *testing.T, jid string) {
	t.Helper()
	for _, v := range []string{recordName(jid), failedName(jid)} {
		if _, err := e.cli.VolumeInspect(context.Background(), v); !cerrdefs.IsNotFound(err) {
			t.Errorf("volume %s of %s: %v; want none", v, jid, err)
		}
	}
}

func removeImage(t *testing.T, e *dockerEnv, img string) {
	t.Cleanup(func() { e.cli.ImageRemove(context.Background(), img, image.RemoveOptions{Force: true}) })
}

// progressRE is how a pending job's message says how far the pull is.
var progressRE = regexp.MustCompile(`(\d+) of (\d+) layers done(?:, ([0-9.]+) MiB of ([0-9.]+) MiB downloaded)?`)

// pendingJob returns a registry serving a new image whose big layer it
// holds until released (missingBlob: a layer it never has), not on the
// engine, and the jid and body of an fs job of that image running shell.
func (e *dockerEnv) pendingJob(t *testing.T, name, shell string, missingBlob bool) (*slowRegistry, string, map[string]any) {
	t.Helper()
	reg := newSlowRegistry(t, missingBlob)
	removeImage(t, e, reg.image)
	jid := e.pendingJID(t, name)
	e.dir(t, jid+"/in", nil)
	body := e.jobBody(jid, "fs", shell)
	body["image"] = reg.image
	return reg, jid, body
}

// untilProgress polls GET until the pull has downloaded some bytes (on
// Podman, whose stream gives no sizes: finished a layer), and returns the
// job; it must stay notstarted meanwhile.
func untilProgress(t *testing.T, e *dockerEnv, jid string) map[string]any {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		code, m := e.do(t, "GET", "/api/v1/"+jid+"/", nil)
		if code != http.StatusOK || m["status"] != statusNotStarted {
			t.Fatalf("GET %s while its image is held = %d %v; want 200 %s", jid, code, m, statusNotStarted)
		}
		checkJobShape(t, "GET "+jid, m)
		if p := progressRE.FindStringSubmatch(fmt.Sprint(m["message"])); p != nil && (p[3] != "" && p[3] != "0.0" || e.engine == "podman" && p[1] != "0") {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: message %q after 60s; want the pull's progress", jid, m["message"])
		}
	}
}

// TestDockerPullDetached runs jobs whose image is pulled from a registry
// that holds a layer until the test releases it: the POST answers before
// the pull ends, by construction.
func TestDockerPullDetached(t *testing.T) {
	shortPullWait(t)
	forEachEngine(t, testDockerPullDetached)
}

func testDockerPullDetached(t *testing.T, eng *testEngine) {
	e := startDocker(t, eng, nil)

	t.Run("slow pull", func(t *testing.T) {
		reg, jid, body := e.pendingJob(t, "slow", "echo ran after the pull; cat /data/big | wc -c", false)
		m := e.submit(t, body)
		if msg := fmt.Sprint(m["message"]); m["status"] != statusNotStarted || !strings.Contains(msg, "pulling image "+reg.image) {
			t.Fatalf("POST = %v; want %s, saying it pulls %s", m, statusNotStarted, reg.image)
		}
		if m["cmd"] != "sh -c echo ran after the pull; cat /data/big | wc -c sh /share/outgoing" || m["timestamp"] == "" {
			t.Errorf("POST answer cmd, timestamp = %q, %q; want the job's command and the record's time", m["cmd"], m["timestamp"])
		}
		if code, m := e.do(t, "POST", "/api/v1/", body); code != http.StatusConflict || !strings.Contains(fmt.Sprint(m["message"]), jid) {
			t.Errorf("second POST while pulling = %d %v; want 409 naming %s", code, m, jid)
		}
		m = untilProgress(t, e, jid)
		t.Logf("GET while held: %q", m["message"])
		e.noContainer(t, jid)
		reg.release()
		done := e.wait(t, jid)
		if done["status"] != statusSuccess || done["logs"] != "ran after the pull\n2097152\n" {
			t.Errorf("job = %v; want %s with logs \"ran after the pull\\n2097152\\n\"", done, statusSuccess)
		}
		e.noRecords(t, jid)
	})

	t.Run("pulled, but the container will not start", func(t *testing.T) {
		reg, jid, body := e.pendingJob(t, "nostart", "true", false)
		body["entrypoint"] = []string{"/no/such/program"}
		if m := e.submit(t, body); m["status"] != statusNotStarted {
			t.Fatalf("POST = %v; want %s", m, statusNotStarted)
		}
		reg.release()
		// The job was accepted: it must end, saying why, not vanish.
		done := e.wait(t, jid)
		if msg := fmt.Sprint(done["message"]); done["status"] != statusError || !strings.Contains(msg, "/no/such/program") {
			t.Errorf("job = %v; want %s naming the program that is not there", done, statusError)
		}
		if code, m := e.do(t, "DELETE", "/api/v1/"+jid+"/", nil); code != http.StatusNoContent {
			t.Fatalf("DELETE = %d %v; want 204", code, m)
		}
		e.noRecords(t, jid)
	})

	t.Run("failed pull", func(t *testing.T) {
		reg, jid, body := e.pendingJob(t, "pullfails", "true", true)
		if m := e.submit(t, body); m["status"] != statusNotStarted {
			t.Fatalf("POST = %v; want %s", m, statusNotStarted)
		}
		reg.release()
		done := e.wait(t, jid)
		if msg := fmt.Sprint(done["message"]); done["status"] != statusError || !strings.Contains(msg, reg.image) || !strings.Contains(msg, "unknown blob") && !strings.Contains(msg, "404") {
			// Docker rewords the registry's BLOB_UNKNOWN; Podman names the 404.
			t.Errorf("job = %v; want %s naming %s with the registry's BLOB_UNKNOWN (\"unknown blob\", or its 404)", done, statusError, reg.image)
		}
		e.noContainer(t, jid)
		if code, m := e.do(t, "DELETE", "/api/v1/"+jid+"/", nil); code != http.StatusNoContent {
			t.Fatalf("DELETE = %d %v; want 204", code, m)
		}
		if code, m := e.do(t, "GET", "/api/v1/"+jid+"/", nil); code != http.StatusNotFound {
			t.Errorf("GET after DELETE = %d %v; want 404", code, m)
		}
		e.noRecords(t, jid)
	})

	t.Run("DELETE mid-pull", func(t *testing.T) {
		reg, jid, body := e.pendingJob(t, "cancel", "true", false)
		e.submit(t, body)
		untilProgress(t, e, jid)
		if code, m := e.do(t, "DELETE", "/api/v1/"+jid+"/", nil); code != http.StatusNoContent {
			t.Fatalf("DELETE = %d %v; want 204", code, m)
		}
		// The engine may go on with the download it started (Docker 20.10
		// does): let it end, then nothing of the job may appear.
		reg.release()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if _, err := e.cli.ImageInspect(context.Background(), reg.image); err == nil {
				break
			}
			select {
			case <-reg.cancelled:
				deadline = time.Now()
			default:
			}
		}
		time.Sleep(time.Second) // what a pull that was not cancelled would do next
		for _, method := range []string{"GET", "DELETE"} {
			if code, m := e.do(t, method, "/api/v1/"+jid+"/", nil); code != http.StatusNotFound {
				t.Errorf("%s after DELETE = %d %v; want 404", method, code, m)
			}
		}
		e.noContainer(t, jid)
		e.noRecords(t, jid)
	})

	t.Run("two jobs share one pull", func(t *testing.T) {
		reg := newSlowRegistry(t, false)
		removeImage(t, e, reg.image)
		var jids []string
		for _, name := range []string{"share1", "share2"} {
			jid := e.pendingJID(t, name)
			e.dir(t, jid+"/in", nil)
			body := e.jobBody(jid, "fs", "echo "+name)
			body["image"] = reg.image
			if m := e.submit(t, body); m["status"] != statusNotStarted {
				t.Fatalf("POST %s = %v; want %s", jid, m, statusNotStarted)
			}
			jids = append(jids, jid)
		}
		reg.release()
		for i, jid := range jids {
			if done := e.wait(t, jid); done["status"] != statusSuccess || done["logs"] != fmt.Sprintf("share%d\n", i+1) {
				t.Errorf("job %s = %v; want %s", jid, done, statusSuccess)
			}
		}
		if big, tags := reg.counts(); big != 1 || tags != 1 {
			t.Errorf("the registry served the big layer %d times and the tag %d times; want 1 and 1 (one pull)", big, tags)
		}
	})

	t.Run("pman restarts mid-pull", func(t *testing.T) {
		reg := newSlowRegistry(t, false)
		removeImage(t, e, reg.image)
		env := serverEnv(eng, map[string]string{"STORAGE_TYPE": "host", "STOREBASE": e.store})
		url1, stop := startStoppable(t, env)
		first := newEnv(eng, e.store)
		first.url = url1
		jid := first.pendingJID(t, "restart")
		first.dir(t, jid+"/in", nil)
		body := first.jobBody(jid, "fs", "echo survived")
		body["image"] = reg.image
		first.submit(t, body)
		untilProgress(t, first, jid)
		stop()
		select {
		case <-reg.cancelled:
		case <-time.After(5 * time.Second):
			t.Logf("the engine may go on with the first pull after pman stopped")
		}
		e.noContainer(t, jid)
		reg.release()
		// A new pman knows nothing but what the engine keeps.
		second := newEnv(eng, e.store)
		second.url = startServer(t, serverEnv(eng, map[string]string{"STORAGE_TYPE": "host", "STOREBASE": e.store}))
		if done := second.wait(t, jid); done["status"] != statusSuccess || done["logs"] != "survived\n" {
			t.Errorf("job after the restart = %v; want %s with logs \"survived\"", done, statusSuccess)
		}
		second.noRecords(t, jid)
	})
}

func TestPullProgress(t *testing.T) {
	p := &pull{ref: "reg:5000/pl-app:1.2", layers: map[string]*layerProgress{}}
	if got := p.progress(); got != "starting" {
		t.Errorf("progress before any layer = %q; want starting", got)
	}
	stream := `{"status":"Pulling from pl-app","id":"1.2"}
{"status":"Pulling fs layer","progressDetail":{},"id":"aaa"}
{"status":"Pulling fs layer","progressDetail":{},"id":"bbb"}
{"status":"Already exists","progressDetail":{},"id":"ccc"}
{"status":"Downloading","progressDetail":{"current":1048576,"total":4194304},"id":"aaa"}
{"status":"Downloading","progressDetail":{"current":524288,"total":1048576},"id":"bbb"}
{"status":"Download complete","progressDetail":{},"id":"bbb"}
`
	if err := drainPull(io.NopCloser(strings.NewReader(stream)), p.ref, p.observe); err != nil {
		t.Fatal(err)
	}
	if got, want := p.progress(), "2 of 3 layers done, 2.0 MiB of 5.0 MiB downloaded"; got != want {
		t.Errorf("progress = %q; want %q", got, want)
	}
}

// BenchmarkDockerPostDuringPull measures a POST whose image is being pulled
// from a registry that holds a layer: each POST waits postPullWait and
// answers notstarted. One registry, one held pull, a new job per POST.
func BenchmarkDockerPostDuringPull(b *testing.B) {
	cli := needEngine(b)
	needTestImage(b, cli)
	store := b.TempDir()
	os.Chmod(store, 0o777)
	url := startServer(b, map[string]string{"CONTAINER_ENV": "docker", "STORAGE_TYPE": "host", "STOREBASE": store})
	reg := newSlowRegistry(b, false)
	b.Cleanup(func() { cli.ImageRemove(context.Background(), reg.image, image.RemoveOptions{Force: true}) })
	var jids []string
	b.Cleanup(func() {
		for _, jid := range jids {
			http.DefaultClient.Do(must(http.NewRequest("DELETE", url+"/api/v1/"+jid+"/", nil)))
		}
	})
	b.ResetTimer()
	for i := range b.N {
		jid := fmt.Sprintf("dk-%d-%d-benchpull", time.Now().UnixNano(), i)
		os.MkdirAll(store+"/"+jid+"/in", 0o777)
		jids = append(jids, jid)
		req := jobRequest(jid)
		req["image"], req["entrypoint"] = reg.image, []string{"true"}
		body, _ := json.Marshal(req)
		resp, err := http.Post(url+"/api/v1/", "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated || m["status"] != statusNotStarted {
			b.Fatalf("POST = %d %v; want 201 %s", resp.StatusCode, m, statusNotStarted)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
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
		t.Run(tt.name, func(t *testing.T) {
			err := drainPull(io.NopCloser(strings.NewReader(tt.stream)), "img:1")
			if tt.code == 0 {
				if err != nil {
					t.Errorf("drainPull = %v; want nil", err)
				}
				return
			}
			code, body := errorStatus(err)
			if msg := fmt.Sprint(body); code != tt.code || !strings.Contains(msg, tt.msg) || !strings.Contains(msg, "img:1") {
				t.Errorf("drainPull = %d %v; want %d naming img:1 and saying %q", code, body, tt.code, tt.msg)
			}
		})
	}
}

// TestDockerPull submits jobs whose image the engine does not have: it is
// pulled as `docker run` would, or the job is refused naming the image,
// and nothing is left behind.
func TestDockerPull(t *testing.T) {
	forEachEngine(t, testDockerPull)
}

func testDockerPull(t *testing.T, eng *testEngine) {
	e := startDocker(t, eng, nil)
	repo := "dk-" + randSuffix() + "/pulled"

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
