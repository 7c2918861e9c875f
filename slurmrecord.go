package main

// Each SLURM job's record: a directory STOREBASE/.pman/slurm/<jid>/ that
// pman makes at submission and the job writes into. It outlives slurmctld's
// memory of the job (MinJobAge, 300 s by default, and no accounting
// database needed), so that a finished job answers the same for as long
// as its files stay, whether pman restarted or not. It lies beside the
// job directories, never inside the plugin's output, and the container
// does not see it.
//
//	job.json     pman, after the submission: SLURM's job id, image, command, limits
//	job.log      SLURM: the batch script's stdout and stderr, the container's included
//	end.json     the batch script, when the container ends: exit code, OOM kill, times
//	answer.json  pman, once it has seen the job finished: the answer it gave

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// slurmRecordsDir is the directory of every job's record.
func slurmRecordsDir(storeBase string) string {
	return filepath.Join(storeBase, pmanDir, "slurm")
}

type slurmRecord struct {
	jid string
	dir string
}

func (s *slurmSched) record(jid string) slurmRecord {
	return slurmRecord{jid: jid, dir: filepath.Join(s.records, jid)}
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

func (r slurmRecord) logPath() string { return filepath.Join(r.dir, "job.log") }

// make creates the record directory; one that exists is the jid taken. The
// job may run as another user than pman (the SLURM user of the token), so
// the directory is writable by all, like the job directories it lies
// beside.
func (r slurmRecord) make() error {
	if err := os.Mkdir(r.dir, 0o777); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return errorf(eConflict, "a job with jid %q already exists (its record is %s)", r.jid, r.dir)
		}
		return errorf(eInternal, "making the record of job %q: %v", r.jid, err)
	}
	if err := os.Chmod(r.dir, 0o777); err != nil {
		r.removeAll()
		return errorf(eInternal, "making the record of job %q: %v", r.jid, err)
	}
	return nil
}

func (r slurmRecord) removeAll() error { return os.RemoveAll(r.dir) }

// writeFile replaces a file of the record at once, so that no reader sees
// half of it.
func (r slurmRecord) writeFile(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := filepath.Join(r.dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(r.dir, name))
}

func (r slurmRecord) writeMeta(m slurmJobMeta) error { return r.writeFile("job.json", m) }

// readMeta returns job.json. A missing directory is no such job; a
// directory without job.json is a job whose submission pman did not see
// end (Submitted is then empty).
func (r slurmRecord) readMeta() (slurmJobMeta, error) {
	var m slurmJobMeta
	if _, err := os.Stat(r.dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return m, errorf(eNotFound, "no job with jid %q", r.jid)
		}
		return m, errorf(eInternal, "reading the record of job %q: %v", r.jid, err)
	}
	b, err := r.read("job.json", slurmMetaBytes)
	if errors.Is(err, fs.ErrNotExist) {
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
	b, err := r.read("answer.json", slurmMetaBytes)
	if err != nil || json.Unmarshal(b, &a) != nil || a.Status == "" {
		return a, false
	}
	return a, true
}

// readEnd returns end.json, or nil when the script wrote none (yet).
func (r slurmRecord) readEnd() *slurmEnd {
	b, err := r.read("end.json", slurmMetaBytes)
	if err != nil {
		return nil
	}
	var e slurmEnd
	if json.Unmarshal(b, &e) != nil {
		return nil
	}
	return &e
}

// forgotten returns a job that slurmctld no longer knows (id 0: whose id
// pman never learnt), from what the script recorded of its end.
func (r slurmRecord) forgotten(id int, meta slurmJobMeta) slurmAnswerRecord {
	end := r.readEnd()
	if end == nil {
		if id == 0 {
			if fi, err := os.Stat(r.dir); err == nil && time.Since(fi.ModTime()) < 2*time.Minute {
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
	b, err := readStoreFile(r.dir, r.logPath(), int64(maxBytes))
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

// read returns the record's file name. The job's script writes in the
// record, and a job may run as anyone: the file is read only if it is a
// regular file inside the record, never through a symlink.
func (r slurmRecord) read(name string, maxRead int64) ([]byte, error) {
	return readStoreFile(r.dir, filepath.Join(r.dir, name), maxRead)
}
