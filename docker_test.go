package main

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/client"
)

// needEngine answers a client of a Docker engine that answers a ping, or
// skips (fails under CI) saying what is missing.
func needEngine(t testing.TB) *client.Client {
	t.Helper()
	cli, err := newEngineClient()
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

// buildTestImage answers "" or why the image could not be built.
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
