package main

// The contract suite's Cromwell: pman against the stateful fake Cromwell
// (cromwell_fake_test.go). Nothing executes the WDL: run plays the task the
// way Cromwell and SLURM would show it, writing its stdout, stderr and rc
// into its execution directory and moving the workflow on.

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

func cromwellContract() contractBackend {
	return contractBackend{
		name: "cromwell",
		start: func(t *testing.T, extra map[string]string) *contractEnv {
			return startCromwellContract(t, extra, false)
		},
		startLogsUnreadable: func(t *testing.T) *contractEnv {
			return startCromwellContract(t, nil, true)
		},
	}
}

// cwStoreBase returns a fresh STOREBASE that Cromwell's rule takes (no
// whitespace or shell characters, which t.TempDir keeps from a test's name).
func cwStoreBase(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "pman-cromwell-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// startCromwellContract starts pman on a fresh fake Cromwell. With
// logsElsewhere, the fake's logs answer puts the task's stdout and stderr
// outside STOREBASE, where pman refuses to read.
func startCromwellContract(t *testing.T, extra map[string]string, logsElsewhere bool) *contractEnv {
	t.Helper()
	store := cwStoreBase(t)
	fake := newFakeCromwell(t, store)
	if logsElsewhere {
		fake.logsAt = filepath.Join(cwStoreBase(t), "cromwell-executions")
	}
	env := map[string]string{"CONTAINER_ENV": "cromwell", "CROMWELL_URL": fake.srv.URL, "TIMELIMIT_MINUTES": "30", "STOREBASE": store}
	maps.Copy(env, extra)
	e := &contractEnv{url: startServer(t, env), store: store, logLine: "cromwell contract job says hello"}
	var n atomic.Int64
	e.newJID = func(t *testing.T, name string) string {
		return fmt.Sprintf("cw-%s-%d", name, n.Add(1))
	}
	e.body = func(t *testing.T, jid string, a act) map[string]any {
		b := e.contractBody(t, jid)
		b["image"] = "ghcr.io/fnndsc/pl-contract:1.0"
		b["entrypoint"] = []string{"/usr/local/bin/contract-job"}
		return b
	}
	e.run = func(t *testing.T, jid string, a act) { cwPlay(t, fake, jid, a, e.logLine) }
	e.inspect = func(t *testing.T, jid string) (map[string]string, []string) {
		fake.mu.Lock()
		defer fake.mu.Unlock()
		w := fake.byJID(jid)
		if w == nil {
			t.Fatalf("the fake Cromwell has no workflow of %s", jid)
		}
		return maps.Clone(w.labels), wdlEnv(t, w.wdl)
	}
	e.exists = func(t *testing.T, jid string) bool {
		fake.mu.Lock()
		defer fake.mu.Unlock()
		for _, w := range fake.workflows {
			if w.jid == jid && w.status != "Aborted" && w.status != "Aborting" {
				return true
			}
		}
		return false
	}
	// Every jid checkJID takes (253 bytes at most) fits Cromwell's label
	// value (255 UTF-16 units): none is impossible on Cromwell alone.
	e.impossibleJID = ""
	return e
}

// cwPlay carries jid's workflow out as Cromwell and SLURM would: the task
// writes its stdout, stderr and rc into its execution directory, and the
// workflow goes through Running to Succeeded or Failed. actOOM is a task
// SLURM killed for its memory: return code 137 (SIGKILL), Failed. actSleep
// stays Running.
func cwPlay(t *testing.T, fake *fakeCromwell, jid string, a act, logLine string) {
	t.Helper()
	fake.mu.Lock()
	w := fake.byJID(jid)
	if w == nil {
		fake.mu.Unlock()
		t.Fatalf("the fake Cromwell has no workflow of %s", jid)
	}
	dir := fake.execDir(w.id)
	fake.mu.Unlock()
	stdout, rc, end := logLine+"\n", 0, "Succeeded"
	switch a {
	case actFail:
		rc, end = 1, "Failed"
	case actOOM:
		stdout, rc, end = "allocating\n", 137, "Failed"
	case actHome:
		stdout = "HOME=/tmp\n"
	}
	fake.advance(jid, "Running")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{"stdout": stdout, "stderr": ""} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if a == actSleep {
		return
	}
	if err := os.WriteFile(filepath.Join(dir, "rc"), []byte(fmt.Sprintln(rc)), 0o644); err != nil {
		t.Fatal(err)
	}
	fake.advance(jid, end)
}

// wdlEnv returns the environment a submitted WDL gives its task: the
// export lines renderWDL writes before the command.
func wdlEnv(t *testing.T, wdl string) []string {
	t.Helper()
	_, body, ok := strings.Cut(wdl, "command <<<")
	body, _, ok2 := strings.Cut(body, ">>>")
	lines, err := shellWords(body)
	if !ok || !ok2 || err != nil {
		t.Fatalf("the submitted WDL has no command section to read (%v):\n%s", err, wdl)
	}
	var env []string
	for _, l := range lines {
		if len(l) == 2 && l[0] == "export" {
			env = append(env, l[1])
		}
	}
	return env
}
