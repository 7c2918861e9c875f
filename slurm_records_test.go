package main

// Issue 17, finding 2: the SLURM records under STOREBASE/.pman/slurm can be
// written by nobody but pman (and run/ by the job's own user), and what
// pman reads there it believes only from whom it must come. Tried by the
// unprivileged local users .ci/slurm/start makes: pmanci-other, any user of
// a node, and pmanci-job, the SLURM user whose jobs run as another user
// than pman.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// Users of .ci/slurm/start.
const (
	otherUser = "pmanci-other"
	jobUser   = "pmanci-job"
)

// needUser returns the uid and gid of the local user name, or skips (fails
// under CI) without it, or without root to act as it.
func needUser(t *testing.T, name string) (uid, gid int) {
	t.Helper()
	if os.Geteuid() != 0 {
		needOrSkip(t, "acting as another user needs root")
	}
	u, err := user.Lookup(name)
	if err != nil {
		needOrSkip(t, fmt.Sprintf("no local user %s (bash .ci/slurm/start): %v", name, err))
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}

// asUser runs script with sh as the local user name, with no other
// group, and returns its output and error (nil: the attempt succeeded).
func asUser(t *testing.T, name, script string) (string, error) {
	t.Helper()
	out, err := exec.Command("setpriv", "--reuid="+name, "--regid="+name, "--clear-groups", "--", "sh", "-c", script).CombinedOutput()
	return string(out), err
}

// sharedStore returns a fresh STOREBASE that every local user can reach
// (t.TempDir's parent is the test's alone), with mode.
func sharedStore(t *testing.T, mode os.FileMode) string {
	t.Helper()
	d, err := os.MkdirTemp("", "pman-records-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, mode); err != nil {
		t.Fatal(err)
	}
	return d
}

// precious returns a file of root's that a planted link points at, and a
// check that it is unchanged.
func precious(t *testing.T) (string, func()) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "precious")
	if err := os.WriteFile(p, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p, func() {
		t.Helper()
		if b, err := os.ReadFile(p); err != nil || string(b) != "precious\n" {
			t.Errorf("%s = %q, %v: pman wrote through a planted link", p, b, err)
		}
	}
}

// TestSlurmRecordAttacks: another local user, on a STOREBASE every user
// can write (as ChRIS stores often are), tries to forge a running job's
// answer, clobber a job's job.json so that DELETE cancels a stranger's SLURM
// job, plant links at pman's temporary names, write the job's run/, and
// squat a jid. Each attempt fails; then the user renames .pman away and
// plants a whole forged tree, which the store's mode allows: pman, which
// reaches its records only through the directory it opened, still answers
// the truth.
func TestSlurmRecordAttacks(t *testing.T) {
	needUser(t, otherUser)
	store := sharedStore(t, 0o777)
	e := startSlurm(t, store, nil)
	done := e.newJID(t, "done")
	e.submit(t, e.job(t, done, "echo the-real-job"))
	if m := e.finish(t, done); m["status"] != statusSuccess {
		t.Fatalf("GET %s = %v; want finishedSuccessfully", done, m)
	}
	running := e.newJID(t, "running")
	e.submit(t, e.body(t, running, actSleep))
	e.until(t, running, statusStarted)
	records := slurmRecordsDir(store)
	recDone, recRun := filepath.Join(records, done), filepath.Join(records, running)
	idBefore := slurmJobID(t, store, running)
	target, unchanged := precious(t)

	forged := `{"status":"finishedSuccessfully","message":"forged","timestamp":"2020-01-01T00:00:00Z"}`
	attacks := []struct{ name, script string }{
		{"forge the running job's answer.json", fmt.Sprintf("printf '%%s' '%s' >%s/answer.json", forged, recRun)},
		{"clobber job.json", fmt.Sprintf(`printf '{"slurm_job_id":1}' >%s/job.json`, recRun)},
		{"replace job.json by a rename", fmt.Sprintf(`printf '{"slurm_job_id":1}' >/tmp/pman-forged-$$ && mv -f /tmp/pman-forged-$$ %s/job.json`, recDone)},
		{"plant .answer.json.tmp", fmt.Sprintf("ln -s %s %s/.answer.json.tmp", target, recRun)},
		{"plant .job.json.tmp", fmt.Sprintf("ln -s %s %s/.job.json.tmp", target, recRun)},
		{"plant answer.json as a link", fmt.Sprintf("ln -sf %s %s/answer.json", target, recRun)},
		{"forge the job's end.json", fmt.Sprintf(`printf '{"slurm_job_id":%d,"exit_code":0}' >%s/run/end.json`, idBefore, recRun)},
		{"plant run/.end.json.tmp", fmt.Sprintf("ln -s %s %s/run/.end.json.tmp", target, recRun)},
		{"squat a jid's record", fmt.Sprintf("mkdir %s/%s-squat", records, running)},
		{"remove a record", fmt.Sprintf("rm -rf %s", recDone)},
		{"rename a record", fmt.Sprintf("mv %s %s-moved", recDone, recDone)},
	}
	for _, a := range attacks {
		if out, err := asUser(t, otherUser, a.script); err == nil {
			t.Errorf("%s as %s: succeeded (%s); want refused", a.name, otherUser, out)
		} else {
			t.Logf("%s as %s: refused: %s", a.name, otherUser, strings.TrimSpace(out))
		}
	}
	for _, d := range []string{store + "/.pman", records, recRun, recRun + "/run"} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm()&0o022 != 0 {
			t.Errorf("%s: %v, %v; want writable by its owner alone", d, fi.Mode(), err)
		}
	}
	if code, m := e.do(t, "GET", running, nil); code != http.StatusOK || m["status"] != statusStarted {
		t.Errorf("GET %s after the attacks = %d %v; want still started", running, code, m)
	}
	if id := slurmJobID(t, store, running); id != idBefore {
		t.Errorf("job.json of %s names SLURM job %d; want %d", running, id, idBefore)
	}
	if code, _ := e.do(t, "DELETE", running, nil); code != http.StatusNoContent {
		t.Errorf("DELETE %s = %d; want 204", running, code)
	}
	unchanged()

	// The store is writable by all and not sticky: .pman itself can be
	// renamed, and a forged tree put in its place.
	rename := fmt.Sprintf(`mv %[1]s/.pman %[1]s/.pman-moved && mkdir -p %[1]s/.pman/slurm/%[2]s && printf '%%s' '%[3]s' >%[1]s/.pman/slurm/%[2]s/answer.json`,
		store, done, strings.Replace(forged, "finishedSuccessfully", "finishedWithError", 1))
	if out, err := asUser(t, otherUser, rename); err != nil {
		t.Fatalf("renaming .pman as %s: %v %s (the store is 0777: it should be allowed)", otherUser, err, out)
	}
	if code, m := e.do(t, "GET", done, nil); code != http.StatusOK || m["status"] != statusSuccess || m["message"] == "forged" {
		t.Errorf("GET %s after .pman was swapped = %d %v; want its true answer, finishedSuccessfully", done, code, m)
	}
}

// TestSlurmJobAsOtherUser: jobs of a token for pmanci-job run as that user.
// pman gives that user the job's run/ and nothing else: the user's log and
// end report land there, and it cannot write pman's files of its own job,
// nor can another user write its run/.
func TestSlurmJobAsOtherUser(t *testing.T) {
	needSlurm(t)
	uid, _ := needUser(t, jobUser)
	needUser(t, otherUser)
	out, err := exec.Command("scontrol", "token", "username="+jobUser, "lifespan=3600").Output()
	if err != nil {
		t.Fatalf("scontrol token username=%s: %v", jobUser, err)
	}
	tokenFile := filepath.Join(t.TempDir(), "jwt")
	if err := os.WriteFile(tokenFile, out, 0o600); err != nil {
		t.Fatal(err)
	}
	store := sharedStore(t, 0o755)
	e := startSlurm(t, store, map[string]string{"SLURMRESTD_URL": "http://127.0.0.1:6820", "SLURM_JWT_FILE": tokenFile, "SLURM_USER": jobUser})
	jid := e.newJID(t, "asuser")
	// The job's user cannot reach the Docker engine: the container does
	// not run, and the script reports that end. What matters here is who
	// wrote what.
	e.submit(t, e.job(t, jid, "echo hello"))
	m := e.finish(t, jid)
	t.Logf("the job of %s: %s, %q", jobUser, m["status"], m["message"])
	rec := filepath.Join(slurmRecordsDir(store), jid)
	owner := func(p string) (int, os.FileMode) {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			return -1, 0
		}
		return int(fi.Sys().(*syscall.Stat_t).Uid), fi.Mode()
	}
	for p, want := range map[string]int{rec: 0, rec + "/job.json": 0, rec + "/answer.json": 0,
		rec + "/run": uid, rec + "/run/job.log": uid, rec + "/run/end.json": uid} {
		if got, mode := owner(p); got != want || mode.Perm()&0o022 != 0 {
			t.Errorf("%s: uid %d, mode %v; want uid %d, writable by its owner alone", p, got, mode, want)
		}
	}
	var end slurmEnd
	if b, err := os.ReadFile(rec + "/run/end.json"); err != nil || json.Unmarshal(b, &end) != nil || end.SlurmJobID != slurmJobID(t, store, jid) {
		t.Errorf("run/end.json = %+v, %v; want the report of SLURM job %d", end, err, slurmJobID(t, store, jid))
	}
	if end.ExitCode != 0 && m["status"] != statusError || end.ExitCode == 0 && m["status"] != statusSuccess {
		t.Errorf("GET = %v; want the status of the end report %+v", m, end)
	}
	target, unchanged := precious(t)
	for _, a := range []struct{ who, name, script string }{
		{jobUser, "forge answer.json", fmt.Sprintf(`printf '{"status":"finishedSuccessfully"}' >%s/answer.json`, rec)},
		{jobUser, "clobber job.json", fmt.Sprintf(`printf '{"slurm_job_id":1}' >%s/job.json`, rec)},
		{jobUser, "plant .answer.json.tmp", fmt.Sprintf("ln -s %s %s/.answer.json.tmp", target, rec)},
		{jobUser, "replace its run/", fmt.Sprintf("mv %[1]s/run %[1]s/run-moved", rec)},
		{otherUser, "forge the job's end.json", fmt.Sprintf(`printf '{"exit_code":0}' >%s/run/end.json`, rec)},
		{otherUser, "plant run/.end.json.tmp", fmt.Sprintf("ln -s %s %s/run/.end.json.tmp", target, rec)},
	} {
		if out, err := asUser(t, a.who, a.script); err == nil {
			t.Errorf("%s as %s: succeeded (%s); want refused", a.name, a.who, out)
		} else {
			t.Logf("%s as %s: refused: %s", a.name, a.who, strings.TrimSpace(out))
		}
	}
	if _, again := e.do(t, "GET", jid, nil); again["status"] != m["status"] || again["message"] != m["message"] {
		t.Errorf("GET after the attempts = %v; want %v", again, m)
	}
	unchanged()
}

// TestSlurmEndTrust: pman believes run/end.json only when it is a regular
// file of the job's user (or pman's), with one name, writable by nobody
// else, naming the job's SLURM id; anything else is ignored, and the job's
// status is SLURM's.
func TestSlurmEndTrust(t *testing.T) {
	if os.Geteuid() != 0 {
		needOrSkip(t, "giving files to other users needs root")
	}
	const jobUID, strangerUID = 4242, 4343
	store := t.TempDir()
	keep, err := openSlurmRecords(store, jobUID, jobUID, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer keep.root.Close()
	good := `{"slurm_job_id":7,"exit_code":0,"end":"2026-01-01T00:00:00Z"}`
	tests := []struct {
		name  string
		plant func(t *testing.T, p string)
		ok    bool
	}{
		{"the job's user's", func(t *testing.T, p string) { writeAs(t, p, good, jobUID, 0o644) }, true},
		{"pman's own", func(t *testing.T, p string) { writeAs(t, p, good, 0, 0o644) }, true},
		{"a stranger's", func(t *testing.T, p string) { writeAs(t, p, good, strangerUID, 0o644) }, false},
		{"writable by others", func(t *testing.T, p string) { writeAs(t, p, good, jobUID, 0o666) }, false},
		{"writable by the group", func(t *testing.T, p string) { writeAs(t, p, good, jobUID, 0o664) }, false},
		{"another SLURM job's", func(t *testing.T, p string) {
			writeAs(t, p, strings.Replace(good, ":7,", ":8,", 1), jobUID, 0o644)
		}, false},
		{"a symlink", func(t *testing.T, p string) {
			q := filepath.Join(filepath.Dir(p), "real")
			writeAs(t, q, good, jobUID, 0o644)
			os.Symlink("real", p)
		}, false},
		{"a hard link", func(t *testing.T, p string) {
			writeAs(t, p, good, jobUID, 0o644)
			os.Link(p, filepath.Join(filepath.Dir(p), "second-name"))
		}, false},
		{"a FIFO", func(t *testing.T, p string) { syscall.Mkfifo(p, 0o644); os.Chown(p, jobUID, jobUID) }, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jid := "j" + strconv.Itoa(i)
			rec := slurmRecord{jid: jid, dir: filepath.Join(slurmRecordsDir(store), jid), keep: keep}
			if err := rec.make(); err != nil {
				t.Fatal(err)
			}
			if fi, err := os.Stat(rec.runDir()); err != nil || int(fi.Sys().(*syscall.Stat_t).Uid) != jobUID {
				t.Fatalf("run/ of a job of uid %d: %v", jobUID, err)
			}
			tt.plant(t, filepath.Join(rec.runDir(), "end.json"))
			end := rec.readEnd(7)
			if got := end != nil; got != tt.ok {
				t.Errorf("readEnd = %+v; believed %v, want %v", end, got, tt.ok)
			}
			a := rec.forgotten(7, slurmJobMeta{SlurmJobID: 7})
			if want := map[bool]string{true: statusSuccess, false: statusError}[tt.ok]; a.Status != want {
				t.Errorf("forgotten = %+v; want %s", a, want)
			}
		})
	}
}

func writeAs(t *testing.T, p, body string, uid int, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(os.Chmod(p, mode), os.Chown(p, uid, uid)); err != nil {
		t.Fatal(err)
	}
}

// TestSlurmRecordWrites: pman's writes follow no link planted in the
// record (at any temporary name, or at the file's own), and leave files of
// pman's own, writable by it alone.
func TestSlurmRecordWrites(t *testing.T) {
	rec := testRecord(t, t.TempDir(), "j")
	target, unchanged := precious(t)
	for _, name := range []string{".answer.json.tmp", "answer.json", ".job.json.tmp", "job.json"} {
		if err := os.Symlink(target, filepath.Join(rec.dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := rec.writeAnswer(slurmAnswerRecord{Status: statusSuccess, Message: "finished"}); err != nil {
		t.Fatal(err)
	}
	if err := rec.writeMeta(slurmJobMeta{SlurmJobID: 7}); err != nil {
		t.Fatal(err)
	}
	unchanged()
	for _, name := range []string{"answer.json", "job.json"} {
		fi, err := os.Lstat(filepath.Join(rec.dir, name))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: %v, %v; want a regular file, 0644", name, fi.Mode(), err)
		}
	}
	if a, ok := rec.readAnswer(); !ok || a.Status != statusSuccess {
		t.Errorf("readAnswer = %+v, %v; want what was written", a, ok)
	}
	if m, err := rec.readMeta(); err != nil || m.SlurmJobID != 7 {
		t.Errorf("readMeta = %+v, %v; want what was written", m, err)
	}
	// A file pman did not write is not believed, even where it could be.
	if os.Geteuid() == 0 {
		writeAs(t, filepath.Join(rec.dir, "answer.json"), `{"status":"finishedWithError"}`, 4343, 0o644)
		if a, ok := rec.readAnswer(); ok {
			t.Errorf("readAnswer of a stranger's answer.json = %+v; want ignored", a)
		}
	}
}

// TestSlurmRecordsDirChecked: pman keeps its records only in a directory of
// its own: a .pman that is a symlink or another user's stops the start, and
// one of its own that all could write is made its alone.
func TestSlurmRecordsDirChecked(t *testing.T) {
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	t.Run("a symlink", func(t *testing.T) {
		store := t.TempDir()
		os.Symlink(t.TempDir(), filepath.Join(store, pmanDir))
		if _, err := openSlurmRecords(store, 0, 0, discard); err == nil || !strings.Contains(err.Error(), "symlink") {
			t.Errorf("openSlurmRecords with .pman a symlink = %v; want refused", err)
		}
	})
	t.Run("another user's", func(t *testing.T) {
		if os.Geteuid() != 0 {
			needOrSkip(t, "giving a directory to another user needs root")
		}
		store := t.TempDir()
		os.Mkdir(filepath.Join(store, pmanDir), 0o755)
		os.Chown(filepath.Join(store, pmanDir), 4343, 4343)
		if _, err := openSlurmRecords(store, 0, 0, discard); err == nil || !strings.Contains(err.Error(), "uid 4343") {
			t.Errorf("openSlurmRecords with another user's .pman = %v; want refused", err)
		}
	})
	t.Run("writable by all", func(t *testing.T) {
		store := t.TempDir()
		os.MkdirAll(slurmRecordsDir(store), 0o777)
		os.Chmod(filepath.Join(store, pmanDir), 0o777)
		os.Chmod(slurmRecordsDir(store), 0o777)
		k, err := openSlurmRecords(store, 0, 0, discard)
		if err != nil {
			t.Fatal(err)
		}
		k.root.Close()
		for _, d := range []string{filepath.Join(store, pmanDir), slurmRecordsDir(store)} {
			if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o755 {
				t.Errorf("%s: %v, %v; want 0755", d, fi.Mode(), err)
			}
		}
	})
}
