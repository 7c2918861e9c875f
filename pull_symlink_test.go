package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDockerPullSymlinkSwap: a job accepted while its image is pulled has
// its directories checked again when its container is made. Its input
// directory is swapped for a link out of STOREBASE during the pull, as a
// job that can write its parent could: the job ends finishedWithError
// naming the link, and no container is made.
func TestDockerPullSymlinkSwap(t *testing.T) {
	shortPullWait(t)
	forEachEngine(t, func(t *testing.T, eng *testEngine) {
		e := startDocker(t, eng, nil)
		reg, jid, body := e.pendingJob(t, "swap", "cat /share/incoming/secret", false)
		if m := e.submit(t, body); m["status"] != statusNotStarted {
			t.Fatalf("POST = %v; want %s", m, statusNotStarted)
		}
		outside := t.TempDir()
		if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("not the job's\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		in := filepath.Join(e.store, jid, "in")
		if err := os.Rename(in, in+"-before"); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(outside, in); err != nil {
			t.Fatal(err)
		}
		reg.release()
		done := e.wait(t, jid)
		if msg := fmt.Sprint(done["message"]); done["status"] != statusError || !strings.Contains(msg, "leads out of STOREBASE through the symlink "+jid+"/in -> "+outside) {
			t.Errorf("job = %v; want %s naming the link", done, statusError)
		}
		e.noContainer(t, jid)
	})
}
