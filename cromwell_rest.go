package main

// Cromwell's REST API: the calls pman makes and how it reads their answers.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime/multipart"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// do sends one request. A transport error, a 5xx, a redirect, and the
// answers of something other than Cromwell's API (401, and 403 or 404
// without Cromwell's error body) are eUnavailable errors that name
// Cromwell and what failed; any other answer is returned open.
func (c *cromwellSched) do(ctx context.Context, what, method, p, contentType string, body []byte) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base.reveal()+p, r)
	if err != nil {
		return nil, errorf(eInternal, "Cromwell request to %s: %v", what, redactErr(err))
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, errorf(eUnavailable, "Cromwell at %s did not answer in time to %s: pman gives a request %v in all, inside pfcon's timeout", c.where, what, c.deadline)
		}
		return nil, errorf(eUnavailable, "Cromwell at %s is unreachable (%s): %v", c.where, what, redactErr(err))
	}
	code := resp.StatusCode
	switch {
	case code >= 500:
		defer resp.Body.Close()
		return nil, errorf(eUnavailable, "Cromwell at %s failed to %s: %s: %s", c.where, what, resp.Status, errorBody(resp))
	case code >= 300 && code < 400:
		resp.Body.Close()
		loc := "nowhere (no Location)"
		if u, err := resp.Location(); err == nil {
			loc = redactURL(u.String())
		}
		return nil, errorf(eUnavailable, "Cromwell at %s answered %s to %s, redirecting to %s: pman follows no redirect (it would turn a POST into a GET); set CROMWELL_URL to where Cromwell's API really is", c.where, resp.Status, what, loc)
	case code == http.StatusUnauthorized:
		resp.Body.Close()
		return nil, c.notCromwell(resp, what)
	case code == http.StatusForbidden || code == http.StatusNotFound:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if !cromwellError(b) {
			return nil, c.notCromwell(resp, what)
		}
		resp.Body = io.NopCloser(bytes.NewReader(b))
	}
	return resp, nil
}

// notCromwell is the 503 for an answer that Cromwell's API does not give
// on a right URL: a wrong CROMWELL_URL, a missing path prefix, or an
// authenticating proxy in front of Cromwell. Passed on, pfcon would read
// a 404 as "no such job" and a 401 or 403 as its own login failing.
func (c *cromwellSched) notCromwell(resp *http.Response, what string) error {
	why := "CROMWELL_URL points at something other than Cromwell's API, or lacks the path prefix it is served under"
	if resp.StatusCode != http.StatusNotFound {
		why = "an authenticating proxy stands in front of Cromwell, or CROMWELL_URL points at the wrong server (pman sends no credentials but those in CROMWELL_URL)"
	}
	return errorf(eUnavailable, "Cromwell at %s answered %s to %s (%s %s): most likely %s", c.where, resp.Status, what, resp.Request.Method, resp.Request.URL.Path, why)
}

// cromwellError reports whether b is Cromwell's own error answer,
// {"status": "fail" or "error", "message": "..."}.
func cromwellError(b []byte) bool {
	var e struct{ Status, Message string }
	return json.Unmarshal(b, &e) == nil && (e.Status == "fail" || e.Status == "error") && e.Message != ""
}

// redactErr is err's text without the URL Go's client puts in it (it may
// carry CROMWELL_URL's credentials): callers name Cromwell themselves.
func redactErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// errorBody is the message of a Cromwell error answer
// ({"status": "fail", "message": "..."}) or the start of its body.
func errorBody(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var e struct {
		Message string   `json:"message"`
		Errors  []string `json:"errors"`
	}
	if json.Unmarshal(b, &e) == nil && e.Message != "" {
		if len(e.Errors) > 0 {
			return e.Message + ": " + strings.Join(e.Errors, "; ")
		}
		return e.Message
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "(empty answer)"
	}
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

func decodeAnswer(resp *http.Response, what string, v any) error {
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(v); err != nil {
		return errorf(eUnavailable, "Cromwell's answer to %s is not the JSON expected: %v", what, err)
	}
	return nil
}

func (c *cromwellSched) submit(ctx context.Context, wdl string, labels map[string]string) (string, error) {
	lj, err := json.Marshal(labels)
	if err != nil {
		return "", errorf(eInternal, "labels: %v", err)
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range []struct{ name, file, content string }{
		{"workflowSource", "workflow.wdl", wdl},
		{"labels", "labels.json", string(lj)},
		// A job must run each time it is submitted: with call caching on
		// in the server, a plugin run again with the same image, command
		// and directories would "succeed" at once with the old outputs.
		{"workflowOptions", "options.json", `{"read_from_cache": false, "write_to_cache": false}`},
	} {
		fw, err := mw.CreateFormFile(p.name, p.file)
		if err != nil {
			return "", errorf(eInternal, "multipart: %v", err)
		}
		io.WriteString(fw, p.content)
	}
	if err := mw.Close(); err != nil {
		return "", errorf(eInternal, "multipart: %v", err)
	}
	const what = "submit the workflow"
	resp, err := c.do(ctx, what, http.MethodPost, "/api/workflows/v1", mw.FormDataContentType(), buf.Bytes())
	if err != nil {
		return "", err
	}
	if resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusNotFound {
		// Not a workflow's URL: no answer of Cromwell's means "no such job".
		resp.Body.Close()
		return "", c.notCromwell(resp, what)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return "", refused(resp.StatusCode, "Cromwell refused the workflow: %s", errorBody(resp))
	}
	var ans struct{ ID, Status string }
	if err := decodeAnswer(resp, "the submit", &ans); err != nil {
		return "", err
	}
	if ans.ID == "" {
		return "", errorf(eUnavailable, "Cromwell accepted the workflow but answered no workflow id")
	}
	return ans.ID, nil
}

// queryResult is one workflow of a query answer.
type queryResult struct {
	ID         string            `json:"id"`
	Status     string            `json:"status"`
	Submission string            `json:"submission"`
	End        string            `json:"end"`
	Labels     map[string]string `json:"labels"`
}

// removed returns whether a DELETE removed w's job (removedLabel).
func (w queryResult) removed() bool {
	return w.Labels[removedLabel] != ""
}

// own reports whether w, a workflow the query listed for jid, is pman's
// job jid (policy.go). The query lists only workflows labelled
// cromwellJIDLabel=jid, the label by which pman 6 knew its workflows (and
// a workflow it does not list is never seen at all); one that also carries
// jidLabel must carry it with jid.
func (w queryResult) own(jid string) bool {
	labels := map[string]string{cromwellJIDLabel: jid} // what the query matched
	maps.Copy(labels, w.Labels)
	return ownJob(labels, jid, map[string]string{cromwellJIDLabel: jid})
}

// query lists the workflows of job jid (queryResult.own), newest first,
// with their labels.
func (c *cromwellSched) query(ctx context.Context, jid string) ([]queryResult, error) {
	// Each element is one criterion; several are ANDed. Our workflows
	// have no subworkflows, but Cromwell lists them by default.
	body, _ := json.Marshal([]map[string]string{{"label": cromwellJIDLabel + ":" + jid}, {"includeSubworkflows": "false"}, {"additionalQueryResultFields": "labels"}})
	what := "query the workflows of job " + jid
	resp, err := c.do(ctx, what, http.MethodPost, "/api/workflows/v1/query", "application/json", body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusNotFound {
		resp.Body.Close()
		return nil, c.notCromwell(resp, what)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, refused(resp.StatusCode, "Cromwell refused the query for job %q: %s", jid, errorBody(resp))
	}
	var ans struct {
		Results []queryResult `json:"results"`
	}
	if err := decodeAnswer(resp, "the query", &ans); err != nil {
		return nil, err
	}
	ans.Results = slices.DeleteFunc(ans.Results, func(w queryResult) bool { return !w.own(jid) })
	// Cromwell lists newest first (by its summary table's row id, which is
	// the order it indexed them in): sort by submission time, keeping
	// Cromwell's order where it gives none. (Java prints whole seconds
	// without a fraction: compare times, not text.)
	slices.SortStableFunc(ans.Results, func(a, b queryResult) int {
		ta, ea := time.Parse(time.RFC3339Nano, a.Submission)
		tb, eb := time.Parse(time.RFC3339Nano, b.Submission)
		if ea != nil || eb != nil {
			return 0
		}
		return tb.Compare(ta)
	})
	return ans.Results, nil
}

// find is the newest workflow of jid that no DELETE removed: jids are
// used again once their workflow has ended, and Cromwell keeps them all. A
// workflow submitted here that the query does not list yet is the newest.
func (c *cromwellSched) find(ctx context.Context, jid string) (*queryResult, error) {
	found, err := c.query(ctx, jid)
	if err != nil {
		return nil, err
	}
	if s, ok := c.unlistedOf(jid, found); ok {
		return &queryResult{ID: s.id, Status: "Submitted"}, nil
	}
	found = slices.DeleteFunc(found, queryResult.removed)
	if len(found) == 0 {
		return nil, errorf(eNotFound, "no job with jid %q: Cromwell has no workflow labelled %s=%s that a DELETE has not removed", jid, cromwellJIDLabel, jid)
	}
	var running []string
	for _, w := range found {
		if !ended(w.Status) {
			running = append(running, w.ID)
		}
	}
	if len(running) > 1 {
		// Two pman replicas each took one POST of the jid at once.
		c.log.Warn("several unfinished Cromwell workflows carry one jid; using the newest", "jid", jid, "workflows", running)
	}
	return &found[0], nil
}

// awaitListed polls the label query until it lists workflow id of jid, or
// visibleWait ends, and then forgets id as unlisted.
func (c *cromwellSched) awaitListed(ctx context.Context, jid, id string) error {
	ctx, cancel := context.WithTimeout(ctx, c.visibleWait)
	defer cancel()
	for {
		found, err := c.query(ctx, jid)
		if err != nil {
			return err
		}
		if slices.ContainsFunc(found, func(w queryResult) bool { return w.ID == id }) {
			c.unlistedOf(jid, found)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not listed after %v", c.visibleWait)
		case <-time.After(c.pollEvery):
		}
	}
}

// metadata returns what Cromwell knows of workflow id (see the type), or
// nil when it does not know the id yet.
func (c *cromwellSched) metadata(ctx context.Context, id string) (*metadata, error) {
	resp, err := c.do(ctx, "read the metadata of workflow "+id, http.MethodGet, "/api/workflows/v1/"+url.PathEscape(id)+"/metadata", "", nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusNotFound {
		// Cromwell's own "Unrecognized workflow ID" (do let through no
		// other 404): it does not know the new workflow yet.
		resp.Body.Close()
		return nil, nil
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, refused(resp.StatusCode, "Cromwell refused the metadata of workflow %s: %s", id, errorBody(resp))
	}
	var md metadata
	if err := decodeAnswer(resp, "the metadata request", &md); err != nil {
		return nil, err
	}
	return &md, nil
}
