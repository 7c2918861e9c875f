package main

// The logs of a Cromwell job: where Cromwell says they are, reading them
// only inside STOREBASE, and sharing JOB_LOGS_TAIL between stdout and
// stderr. Kept apart from cromwell.go, the REST side and the status.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// logPaths is one attempt of a call in Cromwell's logs answer.
type logPaths struct {
	Stdout     string `json:"stdout"`
	Stderr     string `json:"stderr"`
	ShardIndex int    `json:"shardIndex"`
	Attempt    int    `json:"attempt"`
}

// logs is the tail of the task's stdout and stderr, each introduced by a
// line naming it, read from the paths Cromwell gives when they lie under
// STOREBASE. JOB_LOGS_TAIL lines are shared out by splitTail. An error
// says why they cannot be read here.
func (c *cromwell) logs(ctx context.Context, id string) (string, error) {
	resp, err := c.do(ctx, "read the log paths of workflow "+id, http.MethodGet, "/api/workflows/v1/"+url.PathEscape(id)+"/logs", "", nil)
	if err != nil {
		return "", err
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return "", fmt.Errorf("Cromwell gave no log paths for workflow %s: %s: %s", id, resp.Status, errorBody(resp))
	}
	var ans struct {
		Calls map[string][]logPaths `json:"calls"`
	}
	if err := decodeAnswer(resp, "the logs request", &ans); err != nil {
		return "", err
	}
	attempts := ans.Calls[cromwellTask]
	i := lastCall(attempts, func(l logPaths) (int, int) { return l.ShardIndex, l.Attempt })
	if i < 0 {
		return "", fmt.Errorf("Cromwell has no log paths for workflow %s yet", id)
	}
	last := attempts[i]
	var text [2]string
	for k, p := range []string{last.Stdout, last.Stderr} {
		if p == "" {
			continue
		}
		b, err := c.readStoreFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue // not written yet: SLURM has not started the job
		}
		if err != nil {
			return "", fmt.Errorf("Cromwell keeps the task's logs at %s and %s on the cluster; pman cannot read them here: %w", last.Stdout, last.Stderr, err)
		}
		text[k] = string(b)
	}
	return splitTail(text[0], text[1], c.cfg.JobLogsTail), nil
}

// splitTail is the last lines of stdout and of stderr, n in all, each
// under a line naming it ("" when both are empty). stderr gets at most
// half of n unless stdout leaves more unused, so a chatty stderr cannot
// push all of stdout out; stdout likewise takes what stderr leaves.
func splitTail(stdout, stderr string, n int) string {
	if n <= 0 || stdout == "" && stderr == "" {
		return ""
	}
	out, errs := logLines(stdout), logLines(stderr)
	ne := min(len(errs), n/2)
	no := min(len(out), n-ne)
	ne = min(len(errs), n-no)
	var b strings.Builder
	for _, s := range []struct {
		name  string
		lines []string
		keep  int
	}{{"stdout", out, no}, {"stderr", errs, ne}} {
		if s.keep < len(s.lines) {
			fmt.Fprintf(&b, "[pman] %s, last %d of %d lines:\n", s.name, s.keep, len(s.lines))
		} else {
			fmt.Fprintf(&b, "[pman] %s:\n", s.name)
		}
		for _, l := range s.lines[len(s.lines)-s.keep:] {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// logLines splits a log into its lines, without their newlines.
func logLines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// readStoreFile reads the tail of file p only if it lies under STOREBASE,
// also once its symlinks are resolved: Cromwell's answer, or a plugin that
// made its stdout a symlink, must not make pman read any other file of
// this host. The resolved path is opened with O_NOFOLLOW, so a last
// component swapped for a symlink in between fails; a directory above it
// swapped in between is not caught (that needs openat2's RESOLVE_BENEATH).
func (c *cromwell) readStoreFile(p string) ([]byte, error) {
	base := filepath.Clean(c.cfg.StoreBase)
	clean := filepath.Clean(p)
	if !filepath.IsAbs(clean) || !within(base, clean) {
		return nil, fmt.Errorf("%s is not under STOREBASE %s", p, base)
	}
	realBase, err := filepath.EvalSymlinks(base)
	if err != nil {
		return nil, fmt.Errorf("STOREBASE: %w", err)
	}
	real, err := filepath.EvalSymlinks(clean)
	if err != nil {
		return nil, err
	}
	if !within(realBase, real) {
		return nil, fmt.Errorf("%s leads out of STOREBASE %s through a symlink", p, base)
	}
	// O_NONBLOCK: a FIFO planted there must not hang the GET.
	f, err := os.OpenFile(real, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", p)
	}
	// The tail is what counts; a plugin may write gigabytes.
	const maxRead = 8 << 20
	if st.Size() > maxRead {
		if _, err := f.Seek(st.Size()-maxRead, io.SeekStart); err != nil {
			return nil, err
		}
	}
	return io.ReadAll(io.LimitReader(f, maxRead))
}

// within says whether path p is dir or lies below it; both are clean.
func within(dir, p string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}
