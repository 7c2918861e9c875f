package main

import (
	"strings"
	"testing"
)

func TestParseCapacity(t *testing.T) {
	const u = uncounted
	for _, c := range []struct {
		in   string
		auto bool
		want resources
	}{
		{"auto", true, resources{u, u, u}},
		{"cpu=8,memory=16Gi,gpu=1", false, resources{8000, 16384, 1}},
		{"cpu=1.5", false, resources{1500, u, u}},
		{"cpu=500m, memory=512Mi", false, resources{500, 512, u}},
		{"memory=2G", false, resources{u, 1907, u}},
		{"memory=1073741824", false, resources{u, 1024, u}},
		{"auto,memory=12Gi", true, resources{u, 12288, u}},
		{"gpu=0", false, resources{u, u, 0}},
	} {
		t.Run(c.in, func(t *testing.T) {
			s, err := parseCapacity(c.in)
			if err != nil || s.Auto != c.auto || s.Given != c.want {
				t.Errorf("parseCapacity(%q) = %+v, %v; want auto %v, %+v", c.in, s, err, c.auto, c.want)
			}
		})
	}
	for _, bad := range []string{"cpu", "cpu=0", "cpu=-1", "cpu=x", "memory=0", "memory=512Ki", "memory=lots", "gpu=-1", "gpu=1.5", "disk=1", "cpu=1,cpu=2"} {
		t.Run(bad, func(t *testing.T) {
			if s, err := parseCapacity(bad); err == nil {
				t.Errorf("parseCapacity(%q) = %+v; want an error", bad, s)
			}
		})
	}
}

// TestCapacityConfig checks that JOB_CAPACITY stops the start where it
// cannot hold, naming the variable.
func TestCapacityConfig(t *testing.T) {
	for _, c := range []struct {
		env, capacity, want string // want "": accepted
	}{
		{"docker", "auto", ""},
		{"podman", "cpu=2,memory=4Gi", ""},
		{"swarm", "auto", ""},
		{"swarm", "cpu=2", "only auto"},
		{"kubernetes", "auto", "queues jobs itself"},
		{"slurm", "auto", "queues jobs itself"},
		{"docker", "cpu=two", "is not a number of CPUs"},
	} {
		t.Run(c.env+" "+c.capacity, func(t *testing.T) {
			env := map[string]string{"CONTAINER_ENV": c.env, "JOB_CAPACITY": c.capacity, "STORAGE_TYPE": "host", "STOREBASE": "/tmp",
				"CROMWELL_URL": "http://c", "TIMELIMIT_MINUTES": "5", "SLURMRESTD_URL": "http://s:6820", "SLURM_JWT": "x", "SLURM_USER": "chris"}
			cfg, err := loadConfig(func(k string) string { return env[k] })
			switch {
			case c.want == "" && (err != nil || cfg.Capacity == nil):
				t.Errorf("JOB_CAPACITY=%s with %s: %v; want it accepted", c.capacity, c.env, err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), "JOB_CAPACITY: ") || !strings.Contains(err.Error(), c.want)):
				t.Errorf("JOB_CAPACITY=%s with %s: %v; want an error on JOB_CAPACITY saying %q", c.capacity, c.env, err, c.want)
			}
		})
	}
	cfg, err := loadConfig(func(k string) string { return map[string]string{"STORAGE_TYPE": "host", "STOREBASE": "/tmp"}[k] })
	if err != nil || cfg.Capacity != nil {
		t.Errorf("no JOB_CAPACITY: %+v, %v; want admission off", cfg.Capacity, err)
	}
}

func TestFairOrder(t *testing.T) {
	job := func(jid, auid string, arrival int64) queuedJob {
		return queuedJob{spec: &jobSpec{JID: jid, Auid: auid}, arrival: arrival}
	}
	for _, c := range []struct {
		name    string
		in      []queuedJob
		running map[string]int
		want    string
	}{
		{"one user keeps arrival order", []queuedJob{job("a2", "a", 2), job("a1", "a", 1), job("a3", "a", 3)}, nil, "a1 a2 a3"},
		{"a burst waits behind the others' next job", []queuedJob{job("a1", "a", 1), job("a2", "a", 2), job("a3", "a", 3), job("b1", "b", 4), job("c1", "c", 5), job("b2", "b", 6)}, nil, "a1 b1 c1 a2 b2 a3"},
		{"who runs more waits", []queuedJob{job("a3", "a", 3), job("a4", "a", 4), job("b1", "b", 9), job("b2", "b", 10)}, map[string]int{"a": 2}, "b1 b2 a3 a4"},
		{"same arrival: by jid", []queuedJob{job("y", "a", 1), job("x", "b", 1)}, nil, "x y"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			for _, j := range fairOrder(c.in, c.running) {
				got = append(got, j.spec.JID)
			}
			if strings.Join(got, " ") != c.want {
				t.Errorf("fairOrder = %q; want %q", strings.Join(got, " "), c.want)
			}
			if c.running != nil && (len(c.running) != 1 || c.running["a"] != 2) {
				t.Errorf("fairOrder changed the running counts it was given: %v", c.running)
			}
		})
	}
}

func TestQueueMessage(t *testing.T) {
	total := resources{8000, 16384, 1}
	used := resources{6000, 14336, 1}
	for _, c := range []struct {
		ahead      int
		own, first resources
		want       string
	}{
		{3, resources{CPU: 2000}, resources{}, "queued: 3 jobs ahead; waiting for 2 CPUs (6 of 8 in use)"},
		{1, resources{}, resources{CPU: 1000}, "queued: 1 job ahead, the first waiting for 1 CPU (6 of 8 in use)"},
		{0, resources{Memory: 4096, GPU: 1}, resources{}, "queued: next in line; waiting for 4096 MiB of memory (14336 of 16384 MiB in use) and 1 GPU (1 of 1 in use)"},
		{0, resources{}, resources{}, "queued: next in line, starting"},
		{2, resources{CPU: 500}, resources{}, "queued: 2 jobs ahead; waiting for 0.5 CPUs (6 of 8 in use)"},
	} {
		if got := queueMessage(c.ahead, total, used, c.own, c.first); got != c.want {
			t.Errorf("queueMessage(%d, %+v, %+v) = %q; want %q", c.ahead, c.own, c.first, got, c.want)
		}
	}
}

func TestShortfallAndNeverFits(t *testing.T) {
	total := resources{2000, 1024, uncounted}
	if got := shortfall(total, resources{1000, 512, 3}, resources{1500, 512, 9}); got != (resources{500, 0, 0}) {
		t.Errorf("shortfall = %+v; want 500 millicores only (memory fits exactly, GPUs are not counted)", got)
	}
	if err := neverFits(total, resources{2000, 1024, 4}, "JOB_CAPACITY=cpu=2"); err != nil {
		t.Errorf("neverFits of exactly the total = %v; want nil", err)
	}
	err := neverFits(total, resources{2001, 1025, 0}, "JOB_CAPACITY=cpu=2")
	ae, _ := err.(*apiError)
	if ae == nil || ae.kind != eInvalid || !strings.Contains(ae.fields["cpu_limit"], "2001 millicores") || !strings.Contains(ae.fields["memory_limit"], "1025 MiB") {
		t.Errorf("neverFits over the total = %v; want a 400 on cpu_limit and memory_limit", err)
	}
}
