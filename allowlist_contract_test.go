package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/distribution/reference"
)

// contractAllowlist admits the images of every contract harness (the
// busybox test image, docker.io/library/...; Kubernetes' fnndsc/pl-*;
// Cromwell's ghcr.io/fnndsc/...) and nothing else.
const contractAllowlist = "docker.io/library/pman-test-*,docker.io/fnndsc/pl-*,ghcr.io/fnndsc/*"

// TestImageAllowlist runs, through the handler of every backend, with
// JOB_IMAGE_ALLOWLIST set: images outside it, and one that is an option,
// are a 400 on the image field naming the image, and the scheduler is never
// called (no create in /metrics, nothing held); the harness's own image,
// sent in its short form, runs as the normalised reference that was checked.
func TestImageAllowlist(t *testing.T) {
	for _, b := range contractBackends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			e := b.start(t, map[string]string{"JOB_IMAGE_ALLOWLIST": contractAllowlist})
			for _, image := range []string{"ghcr.io/evil/pl-x:1", "evil/pl-x", "docker.io/fnndsc/other", "ghcr.io.evil.example/fnndsc/x", "--privileged"} {
				jid := e.newJID(t, "refused")
				body := e.body(t, jid, actSucceed)
				body["image"] = image
				code, m := call(t, "POST", e.url+"/api/v1/", body)
				fields, _ := m["message"].(map[string]any)
				if msg := fmt.Sprint(fields["image"]); code != http.StatusBadRequest || !strings.Contains(msg, fmt.Sprintf("%q", image)) {
					t.Errorf("POST image %s = %d %v; want 400 on image, naming it", image, code, m)
				}
				if e.exists(t, jid) {
					t.Errorf("the scheduler holds %s after a refused image", jid)
				}
			}
			if n := schedulerCreates(t, e.url); n != "" {
				t.Errorf("after refused images, /metrics has %s; want no scheduler create call", n)
			}

			jid := e.newJID(t, "allowed")
			body := e.body(t, jid, actSucceed)
			ref, err := reference.ParseNormalizedNamed(fmt.Sprint(body["image"]))
			if err != nil {
				t.Fatal(err)
			}
			want := reference.TagNameOnly(ref).String()
			code, m := call(t, "POST", e.url+"/api/v1/", body)
			if code != http.StatusCreated || m["image"] != want {
				t.Fatalf("POST image %v = %d %v; want 201, image %s", body["image"], code, m, want)
			}
			if e.run != nil {
				e.run(t, jid, actSucceed)
			}
			if m := e.finish(t, jid); m["status"] != statusSuccess || m["image"] != want {
				t.Errorf("GET = %v; want finishedSuccessfully, image %s", m, want)
			}
		})
	}
}

// schedulerCreates returns the lines of /metrics that count scheduler
// create calls, "" when there are none.
func schedulerCreates(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "pman_scheduler_calls_total{") && strings.Contains(l, `operation="create"`) {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "; ")
}
