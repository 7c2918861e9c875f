package main

import (
	"strconv"
	"strings"
	"testing"
)

const testDigest = "sha256:7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa"

func TestParseImageAllowlist(t *testing.T) {
	good := []string{"ghcr.io/fnndsc/*", "docker.io/fnndsc/pl-*:*", "docker.io/library/busybox:1.*", "localhost/pl-*",
		"localhost:5000/fnndsc/*", "*/fnndsc/*", "registry.example.org:443/a/b/c@sha256:*", "quay.io/fnndsc/pl-[a-m]*"}
	l, errs := parseImageAllowlist(good)
	if len(errs) != 0 || len(l) != len(good) {
		t.Errorf("parseImageAllowlist(%q) = %v, %v; want every pattern", good, l, errs)
	}
	bad := []struct{ pattern, want string }{
		{"fnndsc/pl-*", "not a registry"},
		{"pl-*", "names no registry"},
		{"docker.io/ubuntu", "docker.io/library/ubuntu"},
		{"index.docker.io/fnndsc/*", "written docker.io"},
		{"ghcr.io/FNNDSC/*", "lowercase"},
		{"ghcr.io/fnndsc/[", "not a pattern"},
		{"ghcr.io/", "names no registry"},
	}
	for _, tt := range bad {
		_, errs := parseImageAllowlist([]string{tt.pattern})
		if len(errs) != 1 || !strings.Contains(errs[0].Error(), tt.pattern) || !strings.Contains(errs[0].Error(), tt.want) {
			t.Errorf("parseImageAllowlist(%q) errors %v; want one naming the pattern and %q", tt.pattern, errs, tt.want)
		}
	}
}

func TestCheckImage(t *testing.T) {
	allow, errs := parseImageAllowlist([]string{"docker.io/fnndsc/pl-*", "ghcr.io/fnndsc/*", "docker.io/library/busybox:1.*"})
	if errs != nil {
		t.Fatal(errs)
	}
	allowed := []struct{ image, runs string }{
		{"fnndsc/pl-dircopy", "docker.io/fnndsc/pl-dircopy:latest"},
		{"fnndsc/pl-dircopy:2.1.1", "docker.io/fnndsc/pl-dircopy:2.1.1"},
		{"docker.io/fnndsc/pl-dircopy:2.1.1", "docker.io/fnndsc/pl-dircopy:2.1.1"},
		{"index.docker.io/fnndsc/pl-dircopy", "docker.io/fnndsc/pl-dircopy:latest"},
		{"fnndsc/pl-dircopy@" + testDigest, "docker.io/fnndsc/pl-dircopy@" + testDigest},
		{"ghcr.io/fnndsc/pl-x:1.0", "ghcr.io/fnndsc/pl-x:1.0"},
		{"busybox:1.36", "docker.io/library/busybox:1.36"},
		{"docker.io/library/busybox:1.36", "docker.io/library/busybox:1.36"},
	}
	for _, tt := range allowed {
		if runs, why := checkImage(allow, tt.image); why != "" || runs != tt.runs {
			t.Errorf("checkImage(%q) = %q, %q; want allowed, run as %q", tt.image, runs, why, tt.runs)
		}
	}
	// Each of these is another image than the patterns name, or no image,
	// however it is spelled.
	refused := []string{
		"fnndsc/other",                       // docker.io/fnndsc/other
		"evil/pl-dircopy",                    // another user's pl-*
		"docker.io/evil/fnndsc/pl-x",         // a path that only contains the pattern
		"ghcr.io/fnndsc/sub/pl-x",            // '*' does not cross '/'
		"ghcr.io.evil.example/fnndsc/pl-x",   // a registry named like one allowed
		"ghcr.io:443/fnndsc/pl-x",            // the same host, another reference
		"GHCR.IO/fnndsc/pl-x",                // a domain in capitals is compared as written
		"localhost/fnndsc/pl-x",              // a local image, not the registry's
		"busybox",                            // busybox:latest, not 1.*
		"busybox:latest",                     //
		"pl-dircopy",                         // docker.io/library/pl-dircopy
		"sha256:" + testDigest[7:],           // Docker would take it for an image ID; it is docker.io/library/sha256:...
		testDigest[7:],                       // an image ID
		"fnndsc/PL-dircopy",                  // not a reference
		" fnndsc/pl-dircopy",                 // nor this
		"fnndsc/pl-dircopy\n",                //
		"docker://fnndsc/pl-dircopy",         // apptainer's transports are not images
		"oras://ghcr.io/fnndsc/pl-x:1",       //
		"--privileged",                       // an option on a command line
		"",                                   //
		"docker.io/fnndsc/pl-x/../../evil/x", // not a reference
	}
	for _, image := range refused {
		runs, why := checkImage(allow, image)
		if why == "" || runs != image || !strings.Contains(why, strconv.Quote(image)) {
			t.Errorf("checkImage(%q) = %q, %q; want refused, naming the image", image, runs, why)
		}
	}
}

// TestCheckImageWithoutAllowlist: without JOB_IMAGE_ALLOWLIST the image goes
// to the scheduler as it was sent (the wire contract echoes it).
func TestCheckImageWithoutAllowlist(t *testing.T) {
	for _, image := range []string{"fnndsc/pl-dircopy", "localhost/x", "docker://x", "anything goes"} {
		if runs, why := checkImage(nil, image); why != "" || runs != image {
			t.Errorf("checkImage(nil, %q) = %q, %q; want it unchanged", image, runs, why)
		}
	}
}

// TestDecodeJobImage: the image's problem is a field problem, answered with
// the others, and an allowed image is the normalised one in the jobSpec.
func TestDecodeJobImage(t *testing.T) {
	allow, _ := parseImageAllowlist([]string{"docker.io/fnndsc/*"})
	cfg := &config{ImageAllowlist: allow}
	body := `{"jid":"j1","image":"evil/x","args":[],"auid":"a","number_of_workers":1,"cpu_limit":1,"memory_limit":1,"gpu_limit":0,"entrypoint":["x"],"type":"nope"}`
	_, err := decodeJob([]byte(body), cfg)
	ae, ok := err.(*apiError)
	if !ok || ae.kind != eInvalid || !strings.Contains(ae.fields["image"], `"evil/x"`) || ae.fields["type"] == "" {
		t.Errorf("decodeJob = %v; want 400 with problems on image (naming it) and type", err)
	}
	body = strings.Replace(strings.Replace(body, "evil/x", "fnndsc/pl-x", 1), `"nope"`, `"fs"`, 1)
	j, err := decodeJob([]byte(body), cfg)
	if err != nil || j.Image != "docker.io/fnndsc/pl-x:latest" {
		t.Errorf("decodeJob = %+v, %v; want image docker.io/fnndsc/pl-x:latest", j, err)
	}
}
