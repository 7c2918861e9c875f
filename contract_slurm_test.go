package main

// The contract suite on SLURM: the one-node cluster of .ci/slurm, whose
// jobs run their container with the Docker engine (SLURM_CONTAINER_RUNTIME=
// docker), each job's record under STOREBASE/.pman/slurm/<jid>/.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
)

// slurmContract returns the SLURM backend of the contract suite. Its
// logs-unreadable server is the shared kind, whose jobs' logs the test
// turns into a symlink out of STOREBASE as soon as SLURM has made them
// (logOutOfStore, run as the job's "carry out" step): SLURM itself cannot
// be made to fail reading a file pman reads.
func slurmContract() contractBackend {
	return contractBackend{
		name: "slurm",
		start: func(t *testing.T, extra map[string]string) *contractEnv {
			return startSlurm(t, "", extra).contractEnv
		},
		startLogsUnreadable: func(t *testing.T) *contractEnv {
			e := startSlurm(t, "", nil)
			e.run = e.logOutOfStore
			return e.contractEnv
		},
	}
}

// slurmEnv is a server on the test cluster: what the contract suite knows
// of it, and the engine its jobs' containers run on.
type slurmEnv struct {
	*contractEnv
	cli   *client.Client
	image string
}

// startSlurm starts the whole server with CONTAINER_ENV=slurm on the test
// cluster, its jobs run with the Docker engine, on store (a fresh one when
// ""), with extra on top of its environment.
func startSlurm(t *testing.T, store string, extra map[string]string) *slurmEnv {
	t.Helper()
	needSlurm(t)
	cli := needEngine(t)
	img := needTestImage(t, cli)
	if store == "" {
		store = t.TempDir()
		os.Chmod(store, 0o777)
	}
	env := map[string]string{"CONTAINER_ENV": "slurm", "STORAGE_TYPE": "host", "STOREBASE": store,
		"SLURMRESTD_URL": "unix://" + slurmSocket, "SLURM_CONTAINER_RUNTIME": "docker", "JOB_LOGS_TAIL": "50"}
	maps.Copy(env, extra)
	e := &slurmEnv{cli: cli, image: img}
	e.contractEnv = &contractEnv{
		url:     startServer(t, env),
		store:   store,
		runs:    true,
		logLine: contractLogLine,
		newJID:  e.newJID,

		inspect: e.inspect,
		exists:  e.exists,
	}
	e.contractEnv.body = func(t *testing.T, jid string, a act) map[string]any { return e.shellBody(t, jid, e.image, a) }
	return e
}

// job returns a POST body (jobRequest) of a job of the test image that
// runs script with sh, its input directory made: $1 is --verbose, $2
// /share/incoming and $3 /share/outgoing.
func (e *slurmEnv) job(t *testing.T, jid, script string) map[string]any {
	t.Helper()
	body := e.shellBody(t, jid, e.image, actSucceed)
	body["entrypoint"] = []string{"sh", "-c", script, "sh"}
	return body
}

// newJID returns a jid no other test uses; when the test ends, SLURM's
// job of that name is cancelled and its container removed.
func (e *slurmEnv) newJID(t *testing.T, name string) string {
	t.Helper()
	jid := "sl-" + randSuffix() + "-" + name
	t.Cleanup(func() {
		if out, err := exec.Command("scancel", "--name="+jid).CombinedOutput(); err != nil {
			t.Logf("scancel --name=%s: %v %s", jid, err, out)
		}
		// The script removes the container when SLURM signals it; what
		// it could not (a container made as it was cancelled) goes here.
		e.waitGone(t, jid, 30*time.Second)
		for _, c := range e.containers(t, jid) {
			e.cli.ContainerRemove(context.Background(), c, container.RemoveOptions{Force: true})
		}
	})
	return jid
}

// containers returns the names of the containers of jid's SLURM jobs.
func (e *slurmEnv) containers(t *testing.T, jid string) []string {
	t.Helper()
	tag := slurmContainerTag(jid)
	list, err := e.cli.ContainerList(context.Background(), container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("name", tag))})
	if err != nil {
		t.Errorf("listing the containers of %s: %v", jid, err)
		return nil
	}
	var names []string
	for _, c := range list {
		for _, n := range c.Names {
			if n = strings.TrimPrefix(n, "/"); strings.HasPrefix(n, "pman-slurm-") && strings.HasSuffix(n, "-"+tag) {
				names = append(names, n)
			}
		}
	}
	return names
}

// slurmActive returns the states of the jobs named jid that slurmctld has
// not finished (pending, running, completing...).
func slurmActive(t *testing.T, jid string) string {
	t.Helper()
	out, err := exec.Command("squeue", "--noheader", "--name="+jid, "--format=%T").CombinedOutput()
	if err != nil {
		t.Fatalf("squeue --name=%s: %v %s", jid, err, out)
	}
	return strings.TrimSpace(string(out))
}

// waitGone waits, up to within, until no job named jid is active in SLURM
// and no container of it remains; it returns what remains.
func (e *slurmEnv) waitGone(t *testing.T, jid string, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		left := ""
		if s := slurmActive(t, jid); s != "" {
			left = "SLURM job " + s
		} else if c := e.containers(t, jid); len(c) > 0 {
			left = "container " + strings.Join(c, ", ")
		}
		if left == "" || time.Now().After(deadline) {
			return left
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// exists returns whether anything of jid remains: its record, a SLURM job
// not finished, or its container. SLURM stops a cancelled job, and the
// script removes its container, within KillWait (5 s on .ci/slurm): that
// much is waited for.
func (e *slurmEnv) exists(t *testing.T, jid string) bool {
	t.Helper()
	if _, err := os.Stat(filepath.Join(slurmRecordsDir(e.store), jid)); err == nil {
		return true
	}
	left := e.waitGone(t, jid, 30*time.Second)
	if left != "" {
		t.Logf("%s: %s remains", jid, left)
	}
	return left != ""
}

// inspect returns the labels and environment the job's container is run
// with: the --label and -e words of the docker command of the batch
// script slurmctld holds for the job, as the shell reads them.
func (e *slurmEnv) inspect(t *testing.T, jid string) (map[string]string, []string) {
	t.Helper()
	id := slurmJobID(t, e.store, jid)
	script, err := exec.Command("scontrol", "write", "batch_script", fmt.Sprint(id), "-").Output()
	if err != nil {
		t.Fatalf("scontrol write batch_script %d: %v", id, err)
	}
	var run string
	for _, line := range strings.Split(string(script), "\n") {
		if strings.HasPrefix(line, "docker run ") {
			run = strings.TrimSuffix(line, " &")
		}
	}
	if run == "" {
		t.Fatalf("no docker run in the batch script of %s:\n%s", jid, script)
	}
	// The shell splits the command into the words docker gets.
	out, err := exec.Command("sh", "-c", `printf '%s\0' `+strings.TrimPrefix(run, "docker ")).Output()
	if err != nil {
		t.Fatalf("the docker command of %s: %v\n%s", jid, err, run)
	}
	words := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	labels := map[string]string{}
	var env []string
	for i := 0; i+1 < len(words) && words[i] != "--entrypoint"; i++ {
		switch words[i] {
		case "--label":
			k, v, _ := strings.Cut(words[i+1], "=")
			labels[k] = v
		case "-e":
			env = append(env, words[i+1])
		}
	}
	return labels, env
}

// logOutOfStore makes the log of jid's job unreadable to pman, its status
// still readable: once SLURM has made the log in the job's record, the log
// is replaced with a symlink that leads out of STOREBASE, which pman
// refuses to follow (anyone who can write in the record, the job's SLURM
// user included, could plant one to have pman read a file of its own).
func (e *slurmEnv) logOutOfStore(t *testing.T, jid string, _ act) {
	t.Helper()
	log := slurmRecord{dir: filepath.Join(slurmRecordsDir(e.store), jid)}.logPath()
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if _, err := os.Lstat(log); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) || time.Now().After(deadline) {
			t.Fatalf("SLURM made no log %s: %v", log, err)
		}
	}
	outside := filepath.Join(t.TempDir(), "not-the-job.log")
	if err := os.WriteFile(outside, []byte("a file out of STOREBASE\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := log + ".link"
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(link, log); err != nil {
		t.Fatal(err)
	}
}

// slurmJobID returns the SLURM job id of a job of the server on store,
// from its record.
func slurmJobID(t *testing.T, store, jid string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(slurmRecordsDir(store), jid, "job.json"))
	if err != nil {
		t.Fatalf("the record of %s: %v", jid, err)
	}
	var m slurmJobMeta
	if err := json.Unmarshal(b, &m); err != nil || m.SlurmJobID == 0 {
		t.Fatalf("the record of %s: %s, %v", jid, b, err)
	}
	return m.SlurmJobID
}
