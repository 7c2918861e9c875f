package main

// The policies every backend obeys. A situation that all schedulers share is
// decided here once; a backend file says only how its scheduler shows it.

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"unicode/utf8"
)

// jidLabel is the label key that carries the jid on every object pman makes
// for a job, on every backend, so an operator can find them.
const jidLabel = "org.chrisproject.pman.jid"

// jobLabels returns the labels every backend puts on a job's objects:
// JOB_LABELS, and jidLabel with the jid. A fresh map each call.
func jobLabels(cfg *config, jid string) map[string]string {
	l := make(map[string]string, len(cfg.JobLabels)+1)
	maps.Copy(l, cfg.JobLabels)
	l[jidLabel] = jid
	return l
}

// impossibleJID returns the 404 of a GET or DELETE of a jid no job can have
// (one checkJID refuses, or one the backend's scheduler cannot name), nil for
// any other jid. The handlers call it before the cache and the scheduler, so
// the backends' get and remove only ever see a jid they could have created.
func impossibleJID(sched scheduler, jid string) error {
	why := checkJID(jid)
	if why == "" {
		why = sched.nameProblem(jid)
	}
	if why == "" {
		return nil
	}
	return errorf(eNotFound, "no job %q: %s", jid, why)
}

// logsUnreadable returns the one line a status answer's logs carry when the
// job's status is known but its logs could not be read. The status is still
// answered (never a 5xx for the logs alone), the backend logs a warning, and
// the answer is marked LogsIncomplete so that it is never cached as final.
func logsUnreadable(err error) string {
	return fmt.Sprintf("[pman] logs unavailable: %v\n", err)
}

// outOfMemory returns the message of a job killed for its memory. certain is
// true when the scheduler says so (OOMKilled); exit code 137 under a memory
// limit without that flag is "most likely". limitMiB 0 means no known limit.
func outOfMemory(limitMiB int, certain bool) string {
	msg := "killed (exit code 137), most likely out of memory"
	if certain {
		msg = "out of memory: killed for exceeding the memory limit"
	}
	if limitMiB > 0 {
		msg += fmt.Sprintf(" of %d MiB", limitMiB)
	}
	return msg
}

// tailLines returns the last n lines of s, keeping a final newline; the
// JOB_LOGS_TAIL cut for backends whose scheduler cannot cut logs itself.
// It returns a part of s: it allocates nothing, however many lines s has.
func tailLines(s string, n int) string {
	if n <= 0 {
		return ""
	}
	i := len(strings.TrimSuffix(s, "\n"))
	for range n {
		j := strings.LastIndexByte(s[:i], '\n')
		if j < 0 {
			return s
		}
		i = j
	}
	return s[i+1:]
}

// defaultLogsMaxBytes is JOB_LOGS_MAX_BYTES's default: the bound of an
// answer's logs, in bytes of their JSON encoding.
const defaultLogsMaxBytes = 4 << 20

// logsMaxBytes returns JOB_LOGS_MAX_BYTES, the bound of an answer's logs in
// bytes (fitLogs); a config made in code without it has the default.
func (c *config) logsMaxBytes() int {
	if c.JobLogsMaxSize <= 0 {
		return defaultLogsMaxBytes
	}
	return c.JobLogsMaxSize
}

// fitLogs returns the logs an answer carries: the end of s whose JSON
// encoding (as encodeJSON writes it, without the quotes) takes at most
// maxBytes, each byte that is not UTF-8 replaced by U+FFFD. So an invalid
// byte costs 3 bytes in the answer, as a valid character can, not the 6 of
// JSON's \ufffd. A cut inside a line keeps that line's end (as tail -c):
// dropping it could drop all but the last line, or everything of one huge
// line. This is the byte bound of every backend; JOB_LOGS_TAIL's lines are cut
// before, by the scheduler or tailLines.
func fitLogs(s string, maxBytes int) string {
	start, cost := len(s), 0
	for start > 0 {
		r, size := utf8.DecodeLastRuneInString(s[:start])
		c := jsonCost(r, size)
		if cost+c > maxBytes {
			break
		}
		cost += c
		start -= size
	}
	kept := s[start:]
	if utf8.ValidString(kept) {
		return kept
	}
	var b strings.Builder
	b.Grow(cost)
	for _, r := range kept {
		b.WriteRune(r) // an invalid byte ranges as utf8.RuneError, U+FFFD
	}
	return b.String()
}

// jsonCost returns how many bytes encodeJSON writes for rune r, read as
// size bytes of a string (an invalid byte is RuneError of size 1, written
// as U+FFFD once fitLogs replaced it).
func jsonCost(r rune, size int) int {
	switch {
	case r == utf8.RuneError && size == 1:
		return utf8.RuneLen(utf8.RuneError)
	case r == '"', r == '\\', r == '\n', r == '\r', r == '\t', r == '\b', r == '\f':
		return 2
	case r < 0x20, r == '\u2028', r == '\u2029':
		return 6
	}
	return size
}

// logTail is a writer that keeps the last max bytes written to it, in a
// buffer that never grows past max: a log stream of any length is read
// through it in bounded memory. Its zero max keeps nothing.
type logTail struct {
	max int
	buf []byte // len <= max; once len == max, a ring whose oldest byte is at pos
	pos int
}

func (t *logTail) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) > t.max {
		p = p[len(p)-t.max:]
	}
	if room := t.max - len(t.buf); room > 0 {
		k := min(room, len(p))
		if len(t.buf)+k > cap(t.buf) {
			// Grown by doubling, but never past max.
			grown := make([]byte, len(t.buf), min(t.max, max(2*cap(t.buf), len(t.buf)+k, 4096)))
			copy(grown, t.buf)
			t.buf = grown
		}
		t.buf = append(t.buf, p[:k]...)
		p = p[k:]
	}
	for len(p) > 0 {
		k := copy(t.buf[t.pos:], p)
		t.pos = (t.pos + k) % t.max
		p = p[k:]
	}
	return n, nil
}

// String returns the bytes kept, oldest first.
func (t *logTail) String() string {
	var b strings.Builder
	b.Grow(len(t.buf))
	b.Write(t.buf[t.pos:])
	b.Write(t.buf[:t.pos])
	return b.String()
}

// logsBound applies fitLogs to every job the scheduler it wraps answers:
// the one place where the byte bound is kept, whatever the backend read.
// Each backend still reads at most maxBytes of a log (logTail, a byte
// limit of its API, or the tail of a file), so that a GET's memory is
// bounded by the setting, not by what the job printed.
type logsBound struct {
	scheduler
	maxBytes int
}

func (s *logsBound) get(ctx context.Context, jid string) (*job, error) {
	jb, err := s.scheduler.get(ctx, jid)
	if jb != nil {
		jb.Logs = fitLogs(jb.Logs, s.maxBytes)
	}
	return jb, err
}

// ownJob reports whether an object of the scheduler that carries labels is
// pman's job jid, the only kind of object GET, DELETE, the duplicate check
// of POST and every later call may read or touch. It is when it carries
// jidLabel=jid. An object without jidLabel is a job of pman 6 when it
// carries every pair of pman6, the labels pman 6 gave every job on this
// backend, and pman6 is not empty: JOB_LABELS on Docker, Podman, Swarm and
// Kubernetes (pman6Labels), Cromwell's own name label there. Anything else
// (no label, or jidLabel with another jid) is some other object that
// happens to hold the name: pman answers foreignJob or nameTaken, and
// leaves it untouched.
func ownJob(labels map[string]string, jid string, pman6 map[string]string) bool {
	if v, ok := labels[jidLabel]; ok {
		return v == jid
	}
	if len(pman6) == 0 {
		return false
	}
	for k, v := range pman6 {
		if w, ok := labels[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// pman6Labels returns the labels by which ownJob knows a job of pman 6 on
// an engine or Kubernetes: JOB_LABELS, which pman 6 (6.3.1) put on its
// Docker and Podman containers and on its Kubernetes Jobs' pods, and on
// nothing else. Its Swarm services carried no label at all: one is a job
// only if it carries them (so, in practice, not across the upgrade).
func pman6Labels(cfg *config) map[string]string { return cfg.JobLabels }

// foreignJob returns the 404 of a GET or DELETE of jid whose name the
// scheduler gives an object that is not pman's job (what names the kind:
// "container", "Swarm service"). Nothing of that object is read past its labels, nothing
// is changed, and its logs are never answered.
func foreignJob(jid, what string) error {
	return errorf(eNotFound, "no job %q: the %s of that name was not made by pman (it lacks the label %s=%s), and pman leaves it alone", jid, what, jidLabel, jid)
}

// nameTaken returns the 409 of a POST of jid when the scheduler, whose
// names are unique (Docker, Podman, Swarm, Kubernetes), holds an object of
// that name that is not pman's job: the scheduler would refuse the job's
// object, and pman neither uses nor replaces that one. Where names are not
// unique (SLURM, Cromwell), a foreign object is no obstacle and the job is
// submitted beside it.
func nameTaken(jid, what string) error {
	return errorf(eConflict, "jid %q cannot be used: a %s of that name exists that pman did not make (it lacks the label %s=%s), and pman leaves it alone", jid, what, jidLabel, jid)
}
