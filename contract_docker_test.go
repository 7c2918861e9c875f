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

// dockerContractEnv returns the contract's view of the server e.
func dockerContractEnv(e *dockerEnv) *contractEnv {
	ce := &contractEnv{url: e.url, newJID: e.newJID, store: e.store, runs: true, logLine: contractLogLine, impossibleJID: "_x"}
	ce.body = func(t *testing.T, jid string, a act) map[string]any { return ce.shellBody(t, jid, e.image, a) }
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
