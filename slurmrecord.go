package main

// Each SLURM job's record: a directory STOREBASE/.pman/slurm/<jid>/ that
// pman makes at submission. It outlives slurmctld's memory of the job
// (MinJobAge, 300 s by default, and no accounting database needed), so
// that a finished job answers the same for as long as its files stay,
// whether pman restarted or not. It lies beside the job directories, never
// inside the plugin's output, and the container does not see it.
//
//	job.json      pman, after the submission: SLURM's job id, image, command, limits
//	answer.json   pman, once it has seen the job finished: the answer it gave
//	run/job.log   SLURM: the batch script's stdout and stderr, the container's included
//	run/end.json  the batch script, when the container ends: SLURM job id, exit code, OOM kill, times
//
// Nobody but pman can write the record (issue 17): .pman, .pman/slurm and
// each <jid> are pman's, mode 0755, and pman reaches them only through the
// directory it checked and opened at start (os.Root), never through the
// path again, so a .pman renamed or swapped for a link later leads pman
// nowhere. pman writes a file under a random temporary name it creates
// exclusively, then renames it; it reads job.json and answer.json only when
// they are its own. The job may run as another user (the SLURM user of the
// token): that user owns run/ and nothing else, and pman believes its
// end.json only when the file is that user's, has one name, is writable by
// no one else and names the job's own SLURM job id. A report that does not
// check out is logged and ignored, and the job's status is SLURM's.

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// slurmRecordsDir is the directory of every job's record.
func slurmRecordsDir(storeBase string) string {
	return filepath.Join(storeBase, pmanDir, "slurm")
}

// slurmKeeper is the records' directory as pman checked and opened it at
// start, and who may write what in it.
type slurmKeeper struct {
	root   *os.Root // STOREBASE/.pman/slurm: every record operation goes through it
	uid    int      // pman's effective uid: the owner of every file pman writes
	jobUID int      // the user the jobs run as, who owns each run/
	jobGID int
	log    *slog.Logger
}

// openSlurmRecords makes STOREBASE/.pman/slurm, pman's own (0755), or
// checks the one there, and returns it opened. A directory on the way that
// is a symlink or another user's is refused: pman would keep its records
// where someone else decides. jobs are run as uid:gid.
func openSlurmRecords(storeBase string, uid, gid int, log *slog.Logger) (*slurmKeeper, error) {
	me := os.Geteuid()
	for _, d := range []string{filepath.Join(storeBase, pmanDir), slurmRecordsDir(storeBase)} {
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		if err := ownDir(d, me); err != nil {
			return nil, err
		}
	}
	dir := slurmRecordsDir(storeBase)
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	// What was opened is what was checked, not a directory swapped in since.
	opened, err1 := root.Stat(".")
	checked, err2 := os.Lstat(dir)
	if err := errors.Join(err1, err2); err != nil || !os.SameFile(opened, checked) {
		root.Close()
		return nil, fmt.Errorf("%s changed while pman opened it (%v)", dir, err)
	}
	if fi, err := os.Stat(storeBase); err == nil && fi.Mode()&0o002 != 0 && fi.Mode()&fs.ModeSticky == 0 {
		// Anyone can rename .pman away then: pman's open directory stays
		// safe, but the jobs' paths (SLURM's log, the script's end.json)
		// would lead to the stranger's.
		log.Warn("STOREBASE is writable by every user and not sticky (chmod +t): another user can rename .pman, and SLURM jobs submitted after that write their logs and end reports where that user chose", "storebase", storeBase)
	}
	return &slurmKeeper{root: root, uid: me, jobUID: uid, jobGID: gid, log: log}, nil
}

// ownDir returns nil when d is a directory (not a link) owned by uid, made
// writable by its owner only; else why it cannot hold pman's records.
func ownDir(d string, uid int) error {
	fi, err := os.Lstat(d)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%s is a symlink: pman keeps its records only in a directory of its own", d)
	case !fi.IsDir():
		return fmt.Errorf("%s is not a directory", d)
	case !ok || int(st.Uid) != uid:
		return fmt.Errorf("%s belongs to uid %d, not to pman (uid %d): pman keeps its records only in a directory of its own", d, st.Uid, uid)
	case fi.Mode().Perm()&0o022 != 0:
		// Ours, from an older pman that made it writable by all.
		return os.Chmod(d, 0o755)
	}
	return nil
}

// slurmJobUser returns the uid and gid SLURM runs pman's jobs as: pman's
// own over a unix socket (rest_auth/local authenticates the connecting
// process), else SLURM_USER's. pman gives that user a directory of each
// record (run/), which only root can give another user: SLURM_USER must be
// a user here, and pman root or that user.
func slurmJobUser(sc slurmConfig) (uid, gid int, err error) {
	me := os.Geteuid()
	if sc.Socket != "" {
		return me, os.Getegid(), nil
	}
	u, err := user.Lookup(sc.User)
	if err != nil {
		return 0, 0, fmt.Errorf("SLURM_USER=%q: pman gives the jobs of that user a directory only that user can write in, and needs its uid: %v", sc.User, err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	if uid != me && me != 0 {
		return 0, 0, fmt.Errorf("SLURM_USER=%q is uid %d, and pman runs as uid %d: pman can give that user's jobs a directory only they can write in only when it runs as root or as that user", sc.User, uid, me)
	}
	return uid, gid, nil
}

type slurmRecord struct {
	jid  string
	dir  string // its path, as SLURM and the batch script name it
	keep *slurmKeeper
}

func (s *slurmSched) record(jid string) slurmRecord {
	return slurmRecord{jid: jid, dir: filepath.Join(s.records, jid), keep: s.keep}
}

// slurmJobMeta is job.json.
type slurmJobMeta struct {
	SlurmJobID       int    `json:"slurm_job_id"`
	Image            string `json:"image"`
	Cmd              string `json:"cmd"`
	MemoryMiB        int    `json:"memory_mib,omitempty"` // 0: no limit
	TimelimitMinutes int    `json:"timelimit_minutes,omitempty"`
	Submitted        string `json:"submitted"`
}

// runDir is the directory the job writes in: its working directory, log
// and end report.
func (r slurmRecord) runDir() string { return filepath.Join(r.dir, "run") }

func (r slurmRecord) logPath() string { return filepath.Join(r.runDir(), "job.log") }

// make creates the record directory, pman's, and its run/, the job's
// user's; a record that exists is the jid taken.
func (r slurmRecord) make() error {
	k := r.keep
	if err := k.root.Mkdir(r.jid, 0o755); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return errorf(eConflict, "a job with jid %q already exists (its record is %s)", r.jid, r.dir)
		}
		return errorf(eInternal, "making the record of job %q: %v", r.jid, err)
	}
	run := filepath.Join(r.jid, "run")
	err := errors.Join(k.root.Chmod(r.jid, 0o755), k.root.Mkdir(run, 0o755), k.root.Chmod(run, 0o755))
	if err == nil && k.jobUID != k.uid {
		err = k.root.Chown(run, k.jobUID, k.jobGID)
	}
	if err != nil {
		r.removeAll()
		return errorf(eInternal, "making the record of job %q: %v", r.jid, err)
	}
	return nil
}

func (r slurmRecord) removeAll() error { return r.keep.root.RemoveAll(r.jid) }

// writeFile replaces a file of the record at once, so that no reader sees
// half of it. The temporary file has a random name and is created
// exclusively without following a link, in a directory only pman can write.
func (r slurmRecord) writeFile(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	root := r.keep.root
	tmp := filepath.Join(r.jid, "."+name+"."+rand.Text()+".tmp")
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if err = errors.Join(err, f.Close()); err == nil {
		err = root.Rename(tmp, filepath.Join(r.jid, name))
	}
	if err != nil {
		root.Remove(tmp)
	}
	return err
}

func (r slurmRecord) writeMeta(m slurmJobMeta) error { return r.writeFile("job.json", m) }

// readMeta returns job.json. A missing directory is no such job; a
// directory without job.json (or with one that is not pman's) is a job
// whose submission pman did not see end (Submitted is then empty, and the
// job is found by its name).
func (r slurmRecord) readMeta() (slurmJobMeta, error) {
	var m slurmJobMeta
	if _, err := r.keep.root.Stat(r.jid); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return m, errorf(eNotFound, "no job with jid %q", r.jid)
		}
		return m, errorf(eInternal, "reading the record of job %q: %v", r.jid, err)
	}
	b, err := r.read("job.json", slurmMetaBytes, r.keep.uid)
	if errors.Is(err, fs.ErrNotExist) {
		return m, nil
	}
	if errors.Is(err, errNotTrusted) {
		r.keep.log.Warn("ignoring a job record pman did not write", "jid", r.jid, "error", err)
		return m, nil
	}
	if err == nil {
		err = json.Unmarshal(b, &m)
	}
	if err != nil {
		return m, errorf(eInternal, "reading the record of job %q: %v", r.jid, err)
	}
	return m, nil
}

func (r slurmRecord) writeAnswer(a slurmAnswerRecord) error { return r.writeFile("answer.json", a) }

func (r slurmRecord) readAnswer() (slurmAnswerRecord, bool) {
	var a slurmAnswerRecord
	b, err := r.read("answer.json", slurmMetaBytes, r.keep.uid)
	if errors.Is(err, errNotTrusted) {
		r.keep.log.Warn("ignoring an answer pman did not write", "jid", r.jid, "error", err)
	}
	if err != nil || json.Unmarshal(b, &a) != nil || a.Status == "" {
		return a, false
	}
	return a, true
}

// readEnd returns run/end.json of the job SLURM numbers id, or nil when the
// script wrote none (yet), or one pman does not believe: not the job's
// user's, or another job's (id 0: pman does not know the number).
func (r slurmRecord) readEnd(id int) *slurmEnd {
	b, err := r.read(filepath.Join("run", "end.json"), slurmMetaBytes, r.keep.jobUID, r.keep.uid)
	if errors.Is(err, errNotTrusted) {
		r.keep.log.Warn("ignoring an end report", "jid", r.jid, "error", err)
	}
	if err != nil {
		return nil
	}
	var e slurmEnd
	if json.Unmarshal(b, &e) != nil {
		return nil
	}
	if id != 0 && e.SlurmJobID != id {
		r.keep.log.Warn("ignoring an end report of another SLURM job", "jid", r.jid, "slurm_job_id", id, "report_slurm_job_id", e.SlurmJobID)
		return nil
	}
	return &e
}

// forgotten returns a job that slurmctld no longer knows (id 0: whose id
// pman never learnt), from what the script recorded of its end.
func (r slurmRecord) forgotten(id int, meta slurmJobMeta) slurmAnswerRecord {
	end := r.readEnd(id)
	if end == nil {
		if id == 0 {
			if fi, err := r.keep.root.Stat(r.jid); err == nil && time.Since(fi.ModTime()) < 2*time.Minute {
				return slurmAnswerRecord{Status: statusNotStarted, Message: "being submitted to SLURM"}
			}
			return slurmAnswerRecord{Status: statusError, Message: fmt.Sprintf("SLURM knows no job named %q: its submission failed while pman stopped", r.jid)}
		}
		return slurmAnswerRecord{Status: statusError, Message: fmt.Sprintf(
			"SLURM no longer knows job %d, and the job recorded no end: it was stopped before its container ended (cancelled, out of time, or its node failed)", id)}
	}
	a := slurmAnswerRecord{Timestamp: end.End}
	switch {
	case end.Signal != "":
		a.Status, a.Message = statusError, fmt.Sprintf("stopped by SLURM (SIG%s): cancelled, out of time or preempted; SLURM no longer knows job %d to say which", end.Signal, id)
	case end.ExitCode == 0:
		a.Status, a.Message = statusSuccess, "finished"
	default:
		a.Status, a.Message = statusError, exitMessage(end.ExitCode, 0, meta, end)
	}
	return a
}

// logs returns the last n lines of the job's log, read from its last
// maxBytes (fitLogs's bound); "" before SLURM made it.
func (r slurmRecord) logs(n, maxBytes int) (string, error) {
	if n <= 0 {
		return "", nil
	}
	b, err := r.read(filepath.Join("run", "job.log"), int64(maxBytes))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return tailLines(string(b), n), nil
}

// slurmMetaBytes bounds a record's JSON files: a few hundred bytes each.
const slurmMetaBytes = 1 << 20

// errNotTrusted is read's answer for a file that is not whose it must be.
var errNotTrusted = errors.New("not trusted")

// read returns the tail (at most maxRead bytes) of the record's file name.
// It opens the file through the records' root, never through a symlink
// (a link in run/ is the job's user's doing), and only a regular file with
// one name. With owners, the file must also be one of theirs and writable
// by nobody else, or read answers errNotTrusted: anyone who could have
// written it might have.
func (r slurmRecord) read(name string, maxRead int64, owners ...int) ([]byte, error) {
	// O_NONBLOCK: a FIFO planted there must not hang the GET.
	p := filepath.Join(r.jid, name)
	f, err := r.keep.root.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	// os.Root follows a last link that stays inside it, O_NOFOLLOW or
	// not: the name itself must be the file opened.
	named, err := r.keep.root.Lstat(p)
	if err != nil {
		return nil, err
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	switch {
	case named.Mode()&fs.ModeSymlink != 0 || !os.SameFile(named, fi):
		return nil, fmt.Errorf("%s: %w: a symlink", name, errNotTrusted)
	case !fi.Mode().IsRegular() || st == nil:
		return nil, fmt.Errorf("%s: %w: not a regular file", name, errNotTrusted)
	case st.Nlink != 1:
		return nil, fmt.Errorf("%s: %w: it has %d names (a hard link)", name, errNotTrusted, st.Nlink)
	case len(owners) > 0 && !slices.Contains(owners, int(st.Uid)):
		return nil, fmt.Errorf("%s: %w: it belongs to uid %d", name, errNotTrusted, st.Uid)
	case len(owners) > 0 && fi.Mode().Perm()&0o022 != 0:
		return nil, fmt.Errorf("%s: %w: others may write it (mode %v)", name, errNotTrusted, fi.Mode().Perm())
	}
	if fi.Size() > maxRead {
		if _, err := f.Seek(fi.Size()-maxRead, io.SeekStart); err != nil {
			return nil, err
		}
	}
	return io.ReadAll(io.LimitReader(f, maxRead))
}
