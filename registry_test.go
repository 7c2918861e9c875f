package main

// Image registries for the pull tests, served here over the registry HTTP
// API: no real registry is reachable.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeRegistry serves one image, repo:1, over the registry HTTP API: FROM
// scratch with busybox as sh and echo. Docker pulls from 127.0.0.1 over
// plain HTTP without configuration; Podman because .ci/podman marks
// 127.0.0.1 insecure in registries.conf.d. With brokenLayer the layer's bytes do
// not match its digest, so the pull fails midway, inside the stream.
func fakeRegistry(t *testing.T, repo string, brokenLayer bool) string {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		needOrSkip(t, "no static busybox for the registry's image: "+err.Error())
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	tw.WriteHeader(&tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Unix(0, 0)})
	tw.WriteHeader(&tar.Header{Name: "bin/busybox", Mode: 0o755, Size: int64(len(bb)), ModTime: time.Unix(0, 0)})
	tw.Write(bb)
	for _, a := range []string{"sh", "echo"} {
		tw.WriteHeader(&tar.Header{Name: "bin/" + a, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777, ModTime: time.Unix(0, 0)})
	}
	tw.Close()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(layer.Bytes())
	zw.Close()
	digest := func(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }
	config, _ := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH, "os": "linux", "config": map[string]any{},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{digest(layer.Bytes())}},
	})
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.docker.distribution.manifest.v2+json",
		"config":        map[string]any{"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config), "digest": digest(config)},
		"layers":        []any{map[string]any{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": gz.Len(), "digest": digest(gz.Bytes())}},
	})
	blobs := map[string][]byte{digest(config): config, digest(gz.Bytes()): gz.Bytes()}
	if brokenLayer {
		bad := bytes.Clone(gz.Bytes())
		bad[len(bad)/2] ^= 0xff
		blobs[digest(gz.Bytes())] = bad
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/{$}", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("GET /v2/"+repo+"/manifests/{ref}", func(w http.ResponseWriter, r *http.Request) {
		if ref := r.PathValue("ref"); ref != "1" && ref != digest(manifest) {
			http.Error(w, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/vnd.docker.distribution.manifest.v2+json")
		w.Header().Set("Docker-Content-Digest", digest(manifest))
		w.Write(manifest)
	})
	mux.HandleFunc("GET /v2/"+repo+"/blobs/{digest}", func(w http.ResponseWriter, r *http.Request) {
		b, ok := blobs[r.PathValue("digest")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// slowRegistry serves one image, <repo>:1, over the registry HTTP API, with
// two layers: busybox (sh, echo) and a 2 MiB file of random bytes. The big
// layer is held: its first half is sent, and the rest only once release is
// called. With missingBlob the held layer is answered "blob unknown" instead.
type slowRegistry struct {
	host, image string
	bigDigest   string

	hold      chan struct{}
	release   func()
	cancelled chan struct{} // closed when a held download was abandoned by the engine

	mu               sync.Mutex
	bigGets, tagGets int
}

func newSlowRegistry(t testing.TB, missingBlob bool) *slowRegistry {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		needOrSkip(t, "no static busybox for the registry's image: "+err.Error())
	}
	tarOf := func(files map[string][]byte, links ...string) []byte {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for name, body := range files {
			tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(body)), ModTime: time.Unix(0, 0)})
			tw.Write(body)
		}
		for _, a := range links {
			tw.WriteHeader(&tar.Header{Name: "bin/" + a, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777, ModTime: time.Unix(0, 0)})
		}
		tw.Close()
		return b.Bytes()
	}
	gzipped := func(b []byte) []byte {
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write(b)
		zw.Close()
		return gz.Bytes()
	}
	digest := func(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }
	// The random bytes also make the image unique: no other test's pull
	// shares a layer with it.
	big := make([]byte, 2<<20)
	rand.Read(big)
	tars := [][]byte{tarOf(map[string][]byte{"bin/busybox": bb}, "sh", "echo", "cat"), tarOf(map[string][]byte{"data/big": big})}
	var layers []any
	var diffIDs []string
	blobs := map[string][]byte{}
	for _, tb := range tars {
		gz := gzipped(tb)
		diffIDs = append(diffIDs, digest(tb))
		blobs[digest(gz)] = gz
		layers = append(layers, map[string]any{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(gz), "digest": digest(gz)})
	}
	bigDigest := layers[1].(map[string]any)["digest"].(string)
	config, _ := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH, "os": "linux", "config": map[string]any{},
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	blobs[digest(config)] = config
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.docker.distribution.manifest.v2+json",
		"config":        map[string]any{"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config), "digest": digest(config)},
		"layers":        layers,
	})
	var rb [4]byte
	rand.Read(rb[:])
	repo := fmt.Sprintf("pl-%x/slow", rb)

	r := &slowRegistry{bigDigest: bigDigest, hold: make(chan struct{}), cancelled: make(chan struct{})}
	var once, cancelOnce sync.Once
	r.release = func() { once.Do(func() { close(r.hold) }) }

	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/{$}", func(w http.ResponseWriter, req *http.Request) {})
	mux.HandleFunc("/v2/"+repo+"/manifests/{ref}", func(w http.ResponseWriter, req *http.Request) {
		ref := req.PathValue("ref")
		if ref != "1" && ref != digest(manifest) {
			http.Error(w, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}`, http.StatusNotFound)
			return
		}
		if ref == "1" { // a pull asks the tag once (HEAD or GET), then by digest
			r.mu.Lock()
			r.tagGets++
			r.mu.Unlock()
		}
		w.Header().Set("Content-Type", "application/vnd.docker.distribution.manifest.v2+json")
		w.Header().Set("Docker-Content-Digest", digest(manifest))
		w.Header().Set("Content-Length", strconv.Itoa(len(manifest)))
		if req.Method == http.MethodGet {
			w.Write(manifest)
		}
	})
	mux.HandleFunc("GET /v2/"+repo+"/blobs/{digest}", func(w http.ResponseWriter, req *http.Request) {
		d := req.PathValue("digest")
		b, ok := blobs[d]
		if !ok {
			http.NotFound(w, req)
			return
		}
		if d != bigDigest {
			w.Write(b)
			return
		}
		r.mu.Lock()
		r.bigGets++
		r.mu.Unlock()
		wait := func() bool {
			select {
			case <-r.hold:
				return true
			case <-req.Context().Done():
				cancelOnce.Do(func() { close(r.cancelled) })
				return false
			}
		}
		if missingBlob {
			if wait() {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusNotFound)
				w.Write([]byte(`{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}`))
			}
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.Write(b[:len(b)/2])
		w.(http.Flusher).Flush()
		if wait() {
			w.Write(b[len(b)/2:])
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		r.release()
		srv.CloseClientConnections()
		srv.Close()
	})
	r.host = strings.TrimPrefix(srv.URL, "http://")
	r.image = r.host + "/" + repo + ":1"
	return r
}

func (r *slowRegistry) counts() (bigGets, tagGets int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bigGets, r.tagGets
}
