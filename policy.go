package main

// The policies every backend obeys. A situation that all schedulers share is
// decided here once; a backend file says only how its scheduler shows it.

import (
	"fmt"
	"maps"
	"strings"
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
func tailLines(s string, n int) string {
	if n <= 0 {
		return ""
	}
	trimmed := strings.TrimSuffix(s, "\n")
	lines := strings.Split(trimmed, "\n")
	if len(lines) <= n {
		return s
	}
	out := strings.Join(lines[len(lines)-n:], "\n")
	if len(trimmed) < len(s) {
		out += "\n"
	}
	return out
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
