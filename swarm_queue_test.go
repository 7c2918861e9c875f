package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"
)

func TestSwarmReserve(t *testing.T) {
	j := &jobSpec{JID: "j", Image: "img", CPULimit: 1500, MemoryLimit: 256, Workers: 1}
	for _, c := range []struct {
		name     string
		capacity *capacitySetting
		ignore   bool
		want     *swarm.Resources
	}{
		{"no JOB_CAPACITY: no reservations", nil, false, nil},
		{"JOB_CAPACITY: reservations equal to the limits", &capacitySetting{Auto: true}, false, &swarm.Resources{NanoCPUs: 1_500_000_000, MemoryBytes: 256 << 20}},
		{"with IGNORE_LIMITS: what the job asks all the same", &capacitySetting{Auto: true}, true, &swarm.Resources{NanoCPUs: 1_500_000_000, MemoryBytes: 256 << 20}},
	} {
		t.Run(c.name, func(t *testing.T) {
			spec := serviceSpec(&config{Capacity: c.capacity, IgnoreLimits: c.ignore}, j, "/store")
			res := spec.TaskTemplate.Resources
			if got := res.Reservations; fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("reservations = %+v; want %+v", got, c.want)
			}
			if !c.ignore && (res.Limits == nil || res.Limits.NanoCPUs != 1_500_000_000 || res.Limits.MemoryBytes != 256<<20) {
				t.Errorf("limits = %+v; want 1.5 CPUs and 256 MiB", res.Limits)
			}
		})
	}
}

func TestSwarmQueued(t *testing.T) {
	pending := func(err string) *swarm.Task {
		return &swarm.Task{Status: swarm.TaskStatus{State: swarm.TaskStatePending, Message: "pending task scheduling", Err: err}}
	}
	on := &config{Capacity: &capacitySetting{Auto: true}}
	for _, c := range []struct {
		name       string
		cfg        *config
		task       *swarm.Task
		wantStatus string
		inMessage  string
	}{
		{"waiting for room: queued", on, pending("no suitable node (insufficient resources on 1 node)"), statusNotStarted, "queued by Swarm until a node has the resources free: pending task scheduling: no suitable node (insufficient resources on 1 node)"},
		{"without JOB_CAPACITY: as before", &config{}, pending("no suitable node (insufficient resources on 1 node)"), statusError, "cannot be scheduled"},
		{"constraints nobody meets: as before", on, pending("no suitable node (scheduling constraints not satisfied on 1 node)"), statusError, "cannot be scheduled"},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, msg := taskStatus(c.task, nil, nil)
			status, msg = swarmQueued(c.cfg, c.task, status, msg)
			if status != c.wantStatus || !strings.Contains(msg, c.inMessage) {
				t.Errorf("status = %s, %q; want %s with %q", status, msg, c.wantStatus, c.inMessage)
			}
		})
	}
}

// TestSwarmQueue runs JOB_CAPACITY=auto on the one-node swarm: a job that
// does not fit beside a running one waits, notstarted with Swarm's
// reason, and runs once the first ends; one bigger than the node is a 400.
func TestSwarmQueue(t *testing.T) {
	cli := needSwarm(t)
	image := needTestImage(t, cli)
	info, err := cli.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cpus := info.NCPU * 1000 // the node's, in millicores
	store := t.TempDir()
	os.Chmod(store, 0o777)
	base := startServer(t, map[string]string{"CONTAINER_ENV": "swarm", "STORAGE_TYPE": "host", "STOREBASE": store, "JOB_CAPACITY": "auto"})
	suffix := randSuffix()
	newJob := func(name, script string, cpu int) (string, map[string]any) {
		jid := "sw-" + suffix + "-" + name
		t.Cleanup(func() { cli.ServiceRemove(context.Background(), jid) })
		swarmDirs(t, store, jid)
		body := jobRequest(jid)
		body["image"], body["entrypoint"], body["cpu_limit"] = image, []string{"sh", "-c", script, "sh"}, cpu
		return jid, body
	}

	big, body := newJob("big", "true", cpus+1000)
	code, m := call(t, "POST", base+"/api/v1/", body)
	if msg, _ := m["message"].(map[string]any); code != http.StatusBadRequest || !strings.Contains(fmt.Sprint(msg["cpu_limit"]), "largest Swarm node") {
		t.Errorf("POST of a job asking more CPUs than the node has = %d %v; want 400 on cpu_limit", code, m)
	}
	if swarmService(t, cli, big) != nil {
		t.Errorf("service %s exists; want none", big)
	}

	// The first takes all but half a CPU, the second asks one.
	first, body := newJob("first", "while ! test -e $2/go; do sleep 0.1; done", cpus-500)
	if code, m := call(t, "POST", base+"/api/v1/", body); code != http.StatusCreated {
		t.Fatalf("POST first = %d %v", code, m)
	}
	untilStatus(t, base, first, 90*time.Second, statusStarted)
	svc := swarmService(t, cli, first)
	if r := svc.Spec.TaskTemplate.Resources; r == nil || r.Reservations == nil || r.Limits == nil || r.Reservations.NanoCPUs != r.Limits.NanoCPUs || r.Reservations.MemoryBytes != r.Limits.MemoryBytes || r.Reservations.NanoCPUs == 0 {
		t.Errorf("service %s resources = %+v; want reservations equal to its limits", first, r)
	}
	second, body := newJob("second", "echo second", 1000)
	if code, m := call(t, "POST", base+"/api/v1/", body); code != http.StatusCreated {
		t.Fatalf("POST second = %d %v", code, m)
	}
	var got map[string]any
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		_, got = call(t, "GET", base+"/api/v1/"+second+"/", nil)
		if strings.Contains(fmt.Sprint(got["message"]), "insufficient resources") || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("GET %s while the first runs: %s: %q", second, got["status"], got["message"])
	if got["status"] != statusNotStarted || !strings.HasPrefix(fmt.Sprint(got["message"]), "queued by Swarm") {
		t.Errorf("GET of the job that does not fit = %v; want %s, queued with Swarm's \"insufficient resources\"", got, statusNotStarted)
	}
	if err := os.WriteFile(filepath.Join(store, first, "in", "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if m := untilStatus(t, base, first, 90*time.Second, statusSuccess, statusError); m["status"] != statusSuccess {
		t.Errorf("first = %v; want %s", m, statusSuccess)
	}
	if m := untilStatus(t, base, second, 90*time.Second, statusSuccess, statusError); m["status"] != statusSuccess || m["logs"] != "second\n" {
		t.Errorf("second = %v; want %s, logs \"second\"", m, statusSuccess)
	}
}
