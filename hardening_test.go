package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/versions"
)

func TestLoadPidsLimit(t *testing.T) {
	tests := []struct {
		v    string
		want int
	}{
		{"", defaultPidsLimit},
		{"64", 64},
		{" 100000 ", 100000},
		{"off", 0},
		{"OFF", 0},
		{"0", 0},
	}
	for _, tt := range tests {
		t.Run(tt.v, func(t *testing.T) {
			c, err := loadConfig(env("STORAGE_TYPE", "host", "STOREBASE", "/s", "JOB_PIDS_LIMIT", tt.v))
			if err != nil || c.PidsLimit != tt.want {
				t.Errorf("JOB_PIDS_LIMIT=%q: PidsLimit %v, %v; want %d", tt.v, c, err, tt.want)
			}
		})
	}
	for _, bad := range []string{"-1", "x", "1.5", "unlimited"} {
		t.Run(bad, func(t *testing.T) {
			_, err := loadConfig(env("STORAGE_TYPE", "host", "STOREBASE", "/s", "JOB_PIDS_LIMIT", bad))
			if err == nil || !strings.Contains(err.Error(), "JOB_PIDS_LIMIT: ") || !strings.Contains(err.Error(), "or off") {
				t.Errorf("JOB_PIDS_LIMIT=%q: %v; want an error naming JOB_PIDS_LIMIT and what it accepts", bad, err)
			}
		})
	}
}

// TestLoadConfigEveryBadSecurityVariable: the new variables are read in the
// same pass as the others, so one start reports every bad one.
func TestLoadConfigEveryBadSecurityVariable(t *testing.T) {
	_, err := loadConfig(env("STORAGE_TYPE", "host", "STOREBASE", "/s", "PORT", "x",
		"JOB_PIDS_LIMIT", "-5", "JOB_IMAGE_ALLOWLIST", "fnndsc/*,ghcr.io/fnndsc/*,docker.io/ubuntu"))
	if err == nil {
		t.Fatal("loadConfig accepted bad variables")
	}
	for _, want := range []string{"PORT: ", `JOB_PIDS_LIMIT: "-5"`, `JOB_IMAGE_ALLOWLIST: "fnndsc/*"`, `JOB_IMAGE_ALLOWLIST: "docker.io/ubuntu"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("loadConfig error:\n%v\nwant %q in it", err, want)
		}
	}
	if strings.Contains(err.Error(), "ghcr.io/fnndsc/*") {
		t.Errorf("loadConfig error:\n%v\nnames the good pattern ghcr.io/fnndsc/*", err)
	}
}

func TestPidsLimitNotes(t *testing.T) {
	c, err := loadConfig(env("CONTAINER_ENV", "kubernetes", "STOREBASE", "/s", "JOB_PIDS_LIMIT", "100"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Notes) != 1 || !strings.Contains(c.Notes[0], "podPidsLimit") {
		t.Errorf("notes %q; want one saying the kubelet's podPidsLimit applies", c.Notes)
	}
}

func TestContainerConfigHardening(t *testing.T) {
	j := &jobSpec{JID: "j", Image: "img", Cmd: []string{"run"}, Workers: 1, InputDir: "a", OutputDir: "b"}
	for _, ignore := range []bool{false, true} {
		_, h := containerConfig(&config{PidsLimit: 64, IgnoreLimits: ignore}, j, "/store")
		if !slices.Contains(h.SecurityOpt, "no-new-privileges") {
			t.Errorf("SecurityOpt = %q; want no-new-privileges", h.SecurityOpt)
		}
		if h.PidsLimit == nil || *h.PidsLimit != 64 {
			t.Errorf("IGNORE_LIMITS %v: PidsLimit = %v; want 64 (it is no resource request)", ignore, h.PidsLimit)
		}
	}
	_, h := containerConfig(&config{}, j, "/store")
	if h.PidsLimit != nil || !slices.Contains(h.SecurityOpt, "no-new-privileges") {
		t.Errorf("JOB_PIDS_LIMIT=off: PidsLimit %v, SecurityOpt %q; want no limit (the engine's default), no-new-privileges", h.PidsLimit, h.SecurityOpt)
	}
}

func TestHardenService(t *testing.T) {
	j := &jobSpec{JID: "j", Image: "img", Cmd: []string{"run"}, Workers: 1, InputDir: "a", OutputDir: "b", CPULimit: 1000, MemoryLimit: 64}
	tests := []struct {
		api     string
		ignore  bool
		wantNNP bool
	}{
		{"1.41", false, false},
		{"1.45", true, false},
		{"1.46", false, true},
		{"1.51", true, true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s ignore %v", tt.api, tt.ignore), func(t *testing.T) {
			cfg := &config{PidsLimit: 64, IgnoreLimits: tt.ignore}
			spec := serviceSpec(cfg, j, "/store")
			note := hardenService(cfg, &spec, tt.api)
			res := spec.TaskTemplate.Resources
			if res == nil || res.Limits == nil || res.Limits.Pids != 64 {
				t.Errorf("Resources = %+v; want Limits.Pids 64", res)
			}
			if !tt.ignore && (res.Limits.MemoryBytes != 64<<20 || res.Limits.NanoCPUs != 1e9) {
				t.Errorf("Limits = %+v; want the job's memory and CPU kept", res.Limits)
			}
			p := spec.TaskTemplate.ContainerSpec.Privileges
			if got := p != nil && p.NoNewPrivileges; got != tt.wantNNP {
				t.Errorf("API %s: NoNewPrivileges %v; want %v", tt.api, got, tt.wantNNP)
			}
			if (note != "") == tt.wantNNP || !tt.wantNNP && !strings.Contains(note, tt.api) {
				t.Errorf("API %s: note %q; want one naming the version exactly when no-new-privileges cannot be set", tt.api, note)
			}
		})
	}
	spec := serviceSpec(&config{}, j, "/store")
	hardenService(&config{}, &spec, "1.46")
	if spec.TaskTemplate.Resources.Limits.Pids != 0 {
		t.Errorf("JOB_PIDS_LIMIT=off: Pids %d; want 0 (none)", spec.TaskTemplate.Resources.Limits.Pids)
	}
}

func TestSharedAPIVersion(t *testing.T) {
	for _, tt := range []struct{ engine, client, want string }{
		{"1.41", "1.51", "1.41"},
		{"1.52", "1.51", "1.51"},
		{"", "1.51", "1.24"},
	} {
		if got := sharedAPIVersion(tt.engine, tt.client); got != tt.want {
			t.Errorf("sharedAPIVersion(%q, %q) = %q; want %q", tt.engine, tt.client, got, tt.want)
		}
	}
}

func TestSlurmScriptDockerHardening(t *testing.T) {
	j := &jobSpec{JID: "j", Image: "img", Cmd: []string{"run"}, Workers: 1, InputDir: "a", OutputDir: "b"}
	cfg := &config{PidsLimit: 64, IgnoreLimits: true, Slurm: slurmConfig{Runtime: "podman"}}
	got := strings.Join(dockerArgs(cfg, j), " ")
	if !strings.Contains(got, "--security-opt no-new-privileges --pids-limit 64") {
		t.Errorf("podman command %s; want --security-opt no-new-privileges --pids-limit 64", got)
	}
	// The options come before the image: after it they would be the command's.
	if strings.Index(got, "--pids-limit") > strings.Index(got, "'img'") {
		t.Errorf("podman command %s; want the options before the image", got)
	}
	cfg.PidsLimit = 0
	if got := strings.Join(dockerArgs(cfg, j), " "); strings.Contains(got, "--pids-limit") || !strings.Contains(got, "no-new-privileges") {
		t.Errorf("JOB_PIDS_LIMIT=off: %s; want no --pids-limit, still no-new-privileges", got)
	}
}

// hardeningScript prints the job's /proc/self/status, then tries to start
// 100 processes at once; a shell that cannot fork says "can't fork" and
// exits, one that can says "spawned 100".
const hardeningScript = `cat /proc/self/status; i=0; while [ $i -lt 100 ]; do sleep 60 & i=$((i+1)); done; echo spawned $i`

// TestJobHardening runs, on every backend whose jobs run containers here
// (Docker, Podman, Swarm, SLURM with docker), a job that reads its
// no_new_privs flag and forks 100 sleeps under JOB_PIDS_LIMIT=32: the flag
// is set and the fork bomb stops at the limit. The same job under
// JOB_PIDS_LIMIT=off spawns all 100, so the limit is what stops it.
func TestJobHardening(t *testing.T) {
	for _, b := range contractBackends {
		if !slices.Contains([]string{"docker", "podman", "swarm", "slurm"}, b.name) {
			continue // Kubernetes (kwok) and Cromwell (a fake) run no container here
		}
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			wantNNP := true
			if b.name == "swarm" {
				api := swarmAPIVersion(t)
				if versions.LessThan(api, swarmNoNewPrivsAPI) {
					wantNNP = false
					t.Logf("the engine speaks API %s < %s: Swarm cannot set no-new-privileges, not checked", api, swarmNoNewPrivsAPI)
				}
			}
			for _, limit := range []string{"32", "off"} {
				t.Run("JOB_PIDS_LIMIT="+limit, func(t *testing.T) {
					t.Parallel()
					e := b.start(t, map[string]string{"JOB_PIDS_LIMIT": limit})
					jid := e.newJID(t, "pids")
					body := e.body(t, jid, actSucceed)
					body["entrypoint"] = []string{"sh", "-c", hardeningScript, "sh"}
					e.submit(t, body)
					logs := fmt.Sprint(e.finish(t, jid)["logs"])
					if wantNNP && !strings.Contains(logs, "NoNewPrivs:\t1") {
						t.Errorf("logs:\n%s\nwant NoNewPrivs:\t1", logs)
					}
					forkFailed := strings.Contains(logs, "can't fork")
					spawned := strings.Contains(logs, "spawned 100")
					if limit == "32" && (!forkFailed || spawned) {
						t.Errorf("JOB_PIDS_LIMIT=32, logs:\n%s\nwant the fork bomb stopped (can't fork), not spawned 100", logs)
					}
					if limit == "off" && (forkFailed || !spawned) {
						t.Errorf("JOB_PIDS_LIMIT=off, logs:\n%s\nwant spawned 100", logs)
					}
				})
			}
		})
	}
}

// swarmAPIVersion returns the API version the Swarm engine here and pman's
// client share.
func swarmAPIVersion(t *testing.T) string {
	cli := needSwarm(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ping, err := cli.Ping(ctx)
	if err != nil {
		t.Fatalf("pinging the engine: %v", err)
	}
	return sharedAPIVersion(ping.APIVersion, cli.ClientVersion())
}

// TestSwarmHardenAsksOnce: the engine's API version is asked at the first
// job only, from an engine stub that speaks 1.41; an engine that does not
// answer is an error, not a job without its options.
func TestSwarmHardenAsksOnce(t *testing.T) {
	var pings atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/_ping") {
			pings.Add(1)
		}
		w.Header().Set("Api-Version", "1.41")
		w.Write([]byte("OK"))
	}))
	defer srv.Close()
	cfg := &config{PidsLimit: 10, DockerHost: "tcp://" + strings.TrimPrefix(srv.URL, "http://")}
	cli, err := newEngineClient(cfg) // it pings, to agree on a version
	if err != nil {
		t.Fatal(err)
	}
	s := &swarmSched{cfg: cfg, cli: cli, log: slog.New(slog.DiscardHandler)}
	before := pings.Load()
	for range 3 {
		spec := swarm.ServiceSpec{TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{}}}
		if err := s.harden(context.Background(), &spec); err != nil {
			t.Fatal(err)
		}
		if spec.TaskTemplate.Resources.Limits.Pids != 10 || spec.TaskTemplate.ContainerSpec.Privileges != nil {
			t.Errorf("spec on API 1.41 = %+v; want Pids 10, no Privileges", spec.TaskTemplate)
		}
	}
	if n := pings.Load() - before; n != 1 {
		t.Errorf("%d pings for 3 jobs; want 1", n)
	}

	srv.Close()
	down := &swarmSched{cfg: cfg, cli: cli, log: slog.New(slog.DiscardHandler)}
	spec := swarm.ServiceSpec{TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{}}}
	if err := down.harden(context.Background(), &spec); !isKind(err, eUnavailable) {
		t.Errorf("harden with the engine down: %v; want an eUnavailable error", err)
	}
}
