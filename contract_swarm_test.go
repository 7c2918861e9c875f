package main

import (
	"context"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
)

// swarmContract returns the contract suite's harness for CONTAINER_ENV=swarm:
// pman on the one-node swarm here, whose services really run the jobs, with
// STOREBASE on this host.
func swarmContract() contractBackend {
	return contractBackend{
		name: "swarm",
		start: func(t *testing.T, extra map[string]string) *contractEnv {
			return startSwarmContract(t, extra, false)
		},
		// The engine behind a proxy that fails every log call and passes
		// the rest: the task, and so the status, can be read.
		startLogsUnreadable: func(t *testing.T) *contractEnv {
			return startSwarmContract(t, nil, true)
		},
	}
}

// startSwarmContract starts pman with CONTAINER_ENV=swarm and host storage
// on a fresh STOREBASE that any CONTAINER_USER can write, extra on top; with
// logsFail, pman talks to the engine through a proxy whose log calls fail.
func startSwarmContract(t *testing.T, extra map[string]string, logsFail bool) *contractEnv {
	t.Helper()
	cli := needSwarm(t)
	image := needTestImage(t, cli)
	store := t.TempDir()
	if err := os.Chmod(store, 0o777); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"CONTAINER_ENV": "swarm", "STORAGE_TYPE": "host", "STOREBASE": store}
	if logsFail {
		sock := filepath.Join(t.TempDir(), "engine.sock")
		proxyEngineFailing(t, cli, sock, "/logs", http.StatusInternalServerError)
		env["DOCKER_HOST"] = "unix://" + sock
	}
	maps.Copy(env, extra)
	e := &contractEnv{
		url:           startServer(t, env),
		store:         store,
		runs:          true,
		logLine:       contractLogLine,
		impossibleJID: "a.b", // checkJID takes it; no Swarm service can be named so
	}
	e.newJID = func(t *testing.T, name string) string {
		jid := "sw-" + randSuffix() + "-" + name
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cli.ServiceRemove(ctx, jid)
		})
		return jid
	}
	e.body = func(t *testing.T, jid string, a act) map[string]any { return e.shellBody(t, jid, image, a) }
	e.inspect = func(t *testing.T, jid string) (map[string]string, []string) {
		svc := swarmService(t, cli, jid)
		if svc == nil {
			t.Fatalf("no service %s", jid)
		}
		// The labels on both the service and its containers: a label on
		// one of them only is missing from the answer.
		cs := svc.Spec.TaskTemplate.ContainerSpec
		labels := map[string]string{}
		for k, v := range svc.Spec.Labels {
			if cs.Labels[k] == v {
				labels[k] = v
			}
		}
		return labels, cs.Env
	}
	e.exists = func(t *testing.T, jid string) bool { return swarmService(t, cli, jid) != nil }
	return e
}

// swarmService returns the service named jid, or nil when there is none.
func swarmService(t *testing.T, cli *client.Client, jid string) *swarm.Service {
	t.Helper()
	svc, _, err := cli.ServiceInspectWithRaw(context.Background(), jid, swarm.ServiceInspectOptions{})
	if cerrdefs.IsNotFound(err) || err == nil && svc.Spec.Name != jid {
		return nil
	}
	if err != nil {
		t.Fatalf("inspecting service %s: %v", jid, err)
	}
	return &svc
}
