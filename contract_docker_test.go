package main

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
)

// dockerContract returns the Docker backend on engine (docker or podman)
// under the contract suite: pman on the engine with STORAGE_TYPE=host, its
// jobs sh -c scripts in the busybox test image.
func dockerContract(engine string) contractBackend {
	return contractBackend{
		name: engine,
		start: func(t *testing.T, extra map[string]string) *contractEnv {
			eng := needTestEngine(t, engine)
			return dockerContractEnv(startDocker(t, eng, extra))
		},
		startLogsUnreadable: func(t *testing.T) *contractEnv {
			eng := needTestEngine(t, engine)
			sock := filepath.Join(t.TempDir(), "engine.sock")
			proxyEngineFailing(t, eng.cli, sock, "/logs", http.StatusInternalServerError)
			return dockerContractEnv(startDocker(t, eng, map[string]string{"DOCKER_HOST": "unix://" + sock}))
		},
	}
}

// dockerScripts are the contract's acts as sh -c scripts. The request's
// args are ["--verbose"], so $1 is --verbose, $2 /share/incoming and $3
// /share/outgoing.
var dockerScripts = map[act]string{
	actSucceed: `echo "` + dockerLogLine + `"; cp "$2/` + contractInput + `" "$3/"`,
	actFail:    `echo "` + dockerLogLine + `" >&2; exit 1`, // stderr: the logs hold both streams
	actOOM:     "dd if=/dev/zero of=/dev/null bs=64M count=1",
	actSleep:   "sleep 300",
	actHome:    `echo "HOME=$HOME"`,
}

const dockerLogLine = "the contract job ran"

// dockerContractEnv returns the contract's view of the server e.
func dockerContractEnv(e *dockerEnv) *contractEnv {
	ce := &contractEnv{url: e.url, newJID: e.newJID, store: e.store, runs: true, logLine: dockerLogLine, impossibleJID: "_x"}
	ce.body = func(t *testing.T, jid string, a act) map[string]any {
		body := ce.contractBody(t, jid)
		body["image"] = e.image
		body["entrypoint"] = []string{"sh", "-c", dockerScripts[a], "sh"}
		if a == actOOM {
			body["memory_limit"] = 8 // MiB; dd's 64 MiB buffer does not fit
		}
		return body
	}
	ce.inspect = func(t *testing.T, jid string) (map[string]string, []string) {
		t.Helper()
		c, err := e.cli.ContainerInspect(context.Background(), jid)
		if err != nil || !namedJID(c, jid) || c.Config == nil {
			t.Fatalf("inspecting container %s: %v", jid, err)
		}
		return c.Config.Labels, c.Config.Env
	}
	ce.exists = func(t *testing.T, jid string) bool {
		t.Helper()
		c, err := e.cli.ContainerInspect(context.Background(), jid)
		// Podman answers an inspect racing a removal with a 500 saying
		// "no such container" (docker.go).
		if err != nil && !cerrdefs.IsNotFound(err) && !strings.Contains(err.Error(), "no such container") {
			t.Fatalf("inspecting container %s: %v", jid, err)
		}
		return err == nil && namedJID(c, jid)
	}
	return ce
}
