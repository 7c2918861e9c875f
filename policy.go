package main

// The policies every backend obeys. A situation that all schedulers share is
// decided here once; a backend file says only how its scheduler shows it.

import (
	"fmt"
	"strings"
)

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
