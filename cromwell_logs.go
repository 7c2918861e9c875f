package main

// The logs of a Cromwell job: where Cromwell says they are, reading them
// only inside STOREBASE, and sharing JOB_LOGS_TAIL between stdout and
// stderr. Kept apart from cromwell.go, the REST side and the status.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
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
// STOREBASE, each from its last JOB_LOGS_MAX_BYTES (fitLogs's bound).
// JOB_LOGS_TAIL lines are shared out by splitTail. An error says why they
// cannot be read here.
func (c *cromwellSched) logs(ctx context.Context, id string) (string, error) {
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
		b, err := readStoreFile(c.cfg.StoreBase, p, int64(c.cfg.logsMaxBytes()))
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
	// Counted, not split: a log of millions of short lines must not cost
	// a string header each.
	nOut, nErr := lineCount(stdout), lineCount(stderr)
	ne := min(nErr, n/2)
	no := min(nOut, n-ne)
	ne = min(nErr, n-no)
	var b strings.Builder
	for _, s := range []struct {
		name        string
		text        string
		total, keep int
	}{{"stdout", stdout, nOut, no}, {"stderr", stderr, nErr, ne}} {
		if s.keep < s.total {
			fmt.Fprintf(&b, "[pman] %s, last %d of %d lines:\n", s.name, s.keep, s.total)
		} else {
			fmt.Fprintf(&b, "[pman] %s:\n", s.name)
		}
		kept := tailLines(s.text, s.keep)
		b.WriteString(kept)
		if kept != "" && !strings.HasSuffix(kept, "\n") {
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// lineCount returns how many lines a log has; a last line may lack its newline.
func lineCount(s string) int {
	if s == "" {
		return 0
	}
	return strings.Count(strings.TrimSuffix(s, "\n"), "\n") + 1
}
