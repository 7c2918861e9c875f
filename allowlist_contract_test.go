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
// busybox test image: docker.io/library/... on Docker, localhost/... on
// Podman, which names a loaded image so; Kubernetes' fnndsc/pl-*;
// Cromwell's ghcr.io/fnndsc/...) and nothing else.
const contractAllowlist = "docker.io/library/pman-test-*,localhost/pman-test-*,docker.io/fnndsc/pl-*,ghcr.io/fnndsc/*"

// TestImageAllowlist runs, through the handler of every backend, with
// JOB_IMAGE_ALLOWLIST set: images outside it, and one that is an option,
// are a 400 on the image field naming the image, and the scheduler is never
// called (no create in /metrics, nothing held); the harness's own image
// runs, as the full reference that was checked.
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
			if b.name == "podman" {
				body["image"] = "localhost/" + fmt.Sprint(body["image"])
			}
			want := fullImage(t, body["image"])
			code, m := call(t, "POST", e.url+"/api/v1/", body)
			// Swarm's client sends a service's image in Docker's short form
			// (pman-test-busybox:latest): the same reference.
			if code != http.StatusCreated || fullImage(t, m["image"]) != want {
				t.Fatalf("POST image %v = %d %v; want 201, image %s", body["image"], code, m, want)
			}
			if e.run != nil {
				e.run(t, jid, actSucceed)
			}
			if m := e.finish(t, jid); m["status"] != statusSuccess || fullImage(t, m["image"]) != want {
				t.Errorf("GET = %v; want finishedSuccessfully, image %s", m, want)
			}
		})
	}
}

// TestImageAllowlistPodmanShortName is the attack the normalised reference
// stops: Podman resolves a short name to an image it holds locally
// (localhost/pman-test-busybox), where Docker, and the allowlist, read
// docker.io/library/pman-test-busybox. Allowed as the latter, the job must
// never run the local image: Podman is asked for docker.io's, which it does
// not have (and, with no registry here, cannot pull).
func TestImageAllowlistPodmanShortName(t *testing.T) {
	eng := needTestEngine(t, "podman")
	e := dockerContractEnv(startDocker(t, eng, map[string]string{"JOB_IMAGE_ALLOWLIST": "docker.io/library/pman-test-*"}))
	jid := e.newJID(t, "short")
	body := e.body(t, jid, actSucceed)
	if !strings.HasPrefix(fmt.Sprint(body["image"]), "pman-test-") {
		t.Fatalf("the harness image is %v; want the short name pman-test-...", body["image"])
	}
	code, m := call(t, "POST", e.url+"/api/v1/", body)
	if code == http.StatusCreated {
		m = e.finish(t, jid)
		if m["status"] != statusError {
			t.Errorf("GET = %v; want finishedWithError: Podman has no docker.io/library/pman-test-busybox", m)
		}
		return
	}
	if !strings.Contains(fmt.Sprint(m["message"]), "docker.io/library/pman-test-busybox:latest") {
		t.Errorf("POST = %d %v; want 201, or an error about docker.io/library/pman-test-busybox:latest", code, m)
	}
}

// fullImage returns the normalised reference of an image (as the allowlist
// compares it).
func fullImage(t *testing.T, image any) string {
	t.Helper()
	ref, err := reference.ParseNormalizedNamed(fmt.Sprint(image))
	if err != nil {
		t.Fatalf("image %v: %v", image, err)
	}
	return reference.TagNameOnly(ref).String()
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
