package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
)

// Cromwell runs each job as a one-task WDL workflow that the site's Cromwell
// hands to SLURM. Cromwell is the only state: a job is found again through
// the workflow label jidLabel.
const (
	jidLabel     = "org.chrisproject.pman.name"
	cromwellTask = "ChRISJob.plugin_instance"
	// maxLabelLen is Cromwell's limit on a label key or value (Label.scala,
	// MaxLabelLength = 255, counted in Java chars, i.e. UTF-16 units); it
	// checks nothing else but a non-empty key. Old Cromwells (2017 docs)
	// demanded [a-z0-9-] and 63 characters: our dotted key would fail
	// there, and Cromwell 74 accepted it (see the recordings).
	maxLabelLen = 255
	// shareMount is where the backend mounts the sharedir runtime attribute
	// inside the job.
	shareMount = "/share"
)

type cromwell struct {
	base string // CROMWELL_URL without trailing slash
	http *http.Client
	cfg  *config
	log  *slog.Logger
	// visibleWait bounds how long create waits for the label query to find
	// the new workflow; pollEvery is the pause between queries. Fields so
	// tests can shorten them.
	visibleWait time.Duration
	pollEvery   time.Duration
}

func newCromwell(ctx context.Context, cfg *config, log *slog.Logger) (scheduler, error) {
	if msg := checkShareDir(cfg.StoreBase); msg != "" {
		return nil, fmt.Errorf("STOREBASE %s", msg)
	}
	for k, v := range cfg.JobLabels {
		if msg := checkLabel(k, v); msg != "" {
			return nil, fmt.Errorf("JOB_LABELS: %s (Cromwell label rule)", msg)
		}
	}
	return &cromwell{
		base: strings.TrimRight(cfg.CromwellURL, "/"),
		http: &http.Client{
			// A whole request (the metadata of one workflow is a few KiB)
			// should never take this long; pfcon's own timeout is longer.
			Timeout: 30 * time.Second,
			Transport: &http.Transport{
				Proxy:                 http.ProxyFromEnvironment,
				DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
				TLSHandshakeTimeout:   10 * time.Second,
				ResponseHeaderTimeout: 20 * time.Second,
				IdleConnTimeout:       90 * time.Second,
				MaxIdleConnsPerHost:   4,
			},
		},
		cfg:         cfg,
		log:         log,
		visibleWait: 5 * time.Second,
		pollEvery:   250 * time.Millisecond,
	}, nil
}

// checkLabel says what is wrong with a Cromwell label, or "".
func checkLabel(key, value string) string {
	switch {
	case key == "":
		return "a label key must not be empty"
	case len(utf16.Encode([]rune(key))) > maxLabelLen:
		return fmt.Sprintf("label key %q is longer than %d characters", key, maxLabelLen)
	case len(utf16.Encode([]rune(value))) > maxLabelLen:
		return fmt.Sprintf("label value %q is longer than %d characters", value, maxLabelLen)
	}
	return ""
}

// ---- the scheduler interface -----------------------------------------------

func (c *cromwell) create(ctx context.Context, j *jobSpec) (*job, error) {
	if msg := checkLabel(jidLabel, j.JID); msg != "" {
		return nil, fieldError("jid", msg+": Cromwell cannot label a workflow with it")
	}
	wdl, err := c.renderJob(j)
	if err != nil {
		return nil, err
	}
	found, err := c.query(ctx, j.JID)
	if err != nil {
		return nil, err
	}
	if len(found) > 0 {
		return nil, errorf(eConflict, "a job with jid %q already exists (Cromwell workflow %s, %s)", j.JID, found[0].ID, found[0].Status)
	}
	labels := map[string]string{}
	for k, v := range c.cfg.JobLabels {
		labels[k] = v
	}
	labels[jidLabel] = j.JID
	id, err := c.submit(ctx, wdl, labels)
	if err != nil {
		return nil, err
	}
	c.log.Info("submitted to Cromwell", "jid", j.JID, "workflow", id)

	// Cromwell answers the submit before its query index knows the workflow.
	// Waiting here makes a GET right after our 201 find the job, and lets
	// the POST answer carry Cromwell's status rather than a guess. The job
	// exists from here on: a failure to read it back is logged, not
	// answered, or pfcon's retry of the POST would meet a 409.
	if err := c.awaitVisible(ctx, j.JID); err != nil {
		c.log.Warn("Cromwell's query does not find the new workflow yet", "jid", j.JID, "workflow", id, "error", err)
	}
	md, err := c.metadata(ctx, id)
	if err != nil {
		c.log.Warn("cannot read the new workflow's metadata", "jid", j.JID, "workflow", id, "error", err)
		md = nil
	}
	return c.toJob(j.JID, queryResult{ID: id, Status: "Submitted"}, md, wdl), nil
}

func (c *cromwell) get(ctx context.Context, jid string) (*job, error) {
	w, err := c.find(ctx, jid)
	if err != nil {
		return nil, err
	}
	md, err := c.metadata(ctx, w.ID)
	if err != nil {
		return nil, err
	}
	j := c.toJob(jid, *w, md, "")
	if md != nil && len(md.Calls[cromwellTask]) > 0 {
		j.Logs = c.logs(ctx, w.ID)
	}
	return j, nil
}

func (c *cromwell) remove(ctx context.Context, jid string) error {
	w, err := c.find(ctx, jid)
	if err != nil {
		return err
	}
	switch w.Status {
	case "Succeeded", "Failed", "Aborted", "Aborting":
		// Nothing runs any more, or Cromwell is already stopping it.
		// Cromwell keeps its history and has no delete; an abort would
		// only earn a 403.
		return nil
	}
	resp, err := c.do(ctx, "abort workflow "+w.ID, http.MethodPost, "/api/workflows/v1/"+url.PathEscape(w.ID)+"/abort", "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusForbidden:
		// Cromwell's answer for a workflow already in a terminal state: it
		// finished between our query and the abort.
		return nil
	}
	return refused(resp.StatusCode, "Cromwell refused to abort workflow %s of job %q: %s", w.ID, jid, errorBody(resp))
}

// ---- Cromwell REST calls ----------------------------------------------------

// do sends one request. A transport error or a 5xx is an eUnavailable error
// naming Cromwell and what failed; any other answer is returned open.
func (c *cromwell) do(ctx context.Context, what, method, p, contentType string, body []byte) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+p, r)
	if err != nil {
		return nil, errorf(eInternal, "Cromwell request to %s: %v", what, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, errorf(eUnavailable, "Cromwell at %s is unreachable (%s): %v", c.base, what, err)
	}
	if resp.StatusCode >= 500 {
		defer resp.Body.Close()
		return nil, errorf(eUnavailable, "Cromwell at %s failed to %s: %s: %s", c.base, what, resp.Status, errorBody(resp))
	}
	return resp, nil
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
	if s := strings.TrimSpace(string(b)); s != "" {
		return s
	}
	return "(empty answer)"
}

func decodeAnswer(resp *http.Response, what string, v any) error {
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(v); err != nil {
		return errorf(eUnavailable, "Cromwell's answer to %s is not the JSON expected: %v", what, err)
	}
	return nil
}

func (c *cromwell) submit(ctx context.Context, wdl string, labels map[string]string) (string, error) {
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
	resp, err := c.do(ctx, "submit the workflow", http.MethodPost, "/api/workflows/v1", mw.FormDataContentType(), buf.Bytes())
	if err != nil {
		return "", err
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
	ID         string `json:"id"`
	Status     string `json:"status"`
	Submission string `json:"submission"`
	End        string `json:"end"`
}

// query lists the workflows labelled with jid, newest first.
func (c *cromwell) query(ctx context.Context, jid string) ([]queryResult, error) {
	body, _ := json.Marshal([]map[string]string{{"label": jidLabel + ":" + jid}})
	resp, err := c.do(ctx, "query workflows of job "+jid, http.MethodPost, "/api/workflows/v1/query", "application/json", body)
	if err != nil {
		return nil, err
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
	// Cromwell lists newest first, but nothing documents it: sort by
	// submission time, keeping Cromwell's order where it gives none.
	// (Java prints whole seconds without a fraction: compare times, not
	// text.)
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

// find is the workflow of jid: the newest if pman was ever made to submit
// twice (a lost answer, two pman instances).
func (c *cromwell) find(ctx context.Context, jid string) (*queryResult, error) {
	found, err := c.query(ctx, jid)
	if err != nil {
		return nil, err
	}
	if len(found) == 0 {
		return nil, errorf(eNotFound, "no job with jid %q: Cromwell has no workflow labelled %s=%s", jid, jidLabel, jid)
	}
	if len(found) > 1 {
		ids := make([]string, len(found))
		for i, w := range found {
			ids[i] = w.ID
		}
		c.log.Warn("several Cromwell workflows carry one jid; using the newest", "jid", jid, "workflows", ids)
	}
	return &found[0], nil
}

// awaitVisible polls the label query until it finds jid or visibleWait ends.
func (c *cromwell) awaitVisible(ctx context.Context, jid string) error {
	deadline := time.Now().Add(c.visibleWait)
	for {
		found, err := c.query(ctx, jid)
		if err != nil {
			return err
		}
		if len(found) > 0 {
			return nil
		}
		if time.Now().Add(c.pollEvery).After(deadline) {
			return fmt.Errorf("not found after %v", c.visibleWait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(c.pollEvery):
		}
	}
}

// metadata is what Cromwell knows of a workflow; nil when it does not know
// the id yet (a 404 right after a submit).
type metadata struct {
	ID             string `json:"id"`
	Status         string `json:"status"`
	End            string `json:"end"`
	SubmittedFiles struct {
		Workflow string `json:"workflow"`
	} `json:"submittedFiles"`
	Calls    map[string][]callMetadata `json:"calls"`
	Failures []failure                 `json:"failures"`
}

type callMetadata struct {
	ExecutionStatus string `json:"executionStatus"`
	CommandLine     string `json:"commandLine"`
	JobID           string `json:"jobId"`
	ReturnCode      *int   `json:"returnCode"`
	// Strings in Cromwell 74; any keeps a number from failing the GET.
	RuntimeAttributes map[string]any `json:"runtimeAttributes"`
	Failures          []failure      `json:"failures"`
}

type failure struct {
	Message  string    `json:"message"`
	CausedBy []failure `json:"causedBy"`
}

func (c *cromwell) metadata(ctx context.Context, id string) (*metadata, error) {
	resp, err := c.do(ctx, "read the metadata of workflow "+id, http.MethodGet, "/api/workflows/v1/"+url.PathEscape(id)+"/metadata", "", nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusNotFound {
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

// logs is the tail of the task's stdout and stderr when Cromwell's paths
// for them lie under STOREBASE and can be read here; otherwise it says
// where Cromwell keeps them. It never fails the GET: the status matters more.
func (c *cromwell) logs(ctx context.Context, id string) string {
	if c.cfg.JobLogsTail == 0 {
		return ""
	}
	resp, err := c.do(ctx, "read the log paths of workflow "+id, http.MethodGet, "/api/workflows/v1/"+url.PathEscape(id)+"/logs", "", nil)
	if err != nil {
		return err.Error()
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return fmt.Sprintf("Cromwell gave no log paths for workflow %s: %s: %s", id, resp.Status, errorBody(resp))
	}
	var ans struct {
		Calls map[string][]logPaths `json:"calls"`
	}
	if err := decodeAnswer(resp, "the logs request", &ans); err != nil {
		return err.Error()
	}
	attempts := ans.Calls[cromwellTask]
	if len(attempts) == 0 {
		return fmt.Sprintf("Cromwell has no log paths for workflow %s yet", id)
	}
	last := slices.MaxFunc(attempts, func(a, b logPaths) int { return a.Attempt - b.Attempt })
	var text []byte
	for _, p := range []string{last.Stdout, last.Stderr} {
		if p == "" {
			continue
		}
		b, err := c.readStoreFile(p)
		if err != nil {
			return fmt.Sprintf("Cromwell says the task's logs are at stdout %s, stderr %s on the cluster; pman cannot read them here: %v", last.Stdout, last.Stderr, err)
		}
		text = append(text, b...)
	}
	return tailLines(string(text), c.cfg.JobLogsTail)
}

// logPaths is one attempt of a call in Cromwell's logs answer.
type logPaths struct {
	Stdout  string `json:"stdout"`
	Stderr  string `json:"stderr"`
	Attempt int    `json:"attempt"`
}

// readStoreFile reads p only if it lies under STOREBASE: Cromwell's answer
// must not make pman read any file of this host.
func (c *cromwell) readStoreFile(p string) ([]byte, error) {
	clean := path.Clean(p)
	base := path.Clean(c.cfg.StoreBase)
	if !path.IsAbs(clean) || (clean != base && !strings.HasPrefix(clean, base+"/")) {
		return nil, fmt.Errorf("not under STOREBASE %s", base)
	}
	f, err := os.Open(clean)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// The tail is what counts; a plugin may write gigabytes.
	const maxRead = 8 << 20
	if st, err := f.Stat(); err == nil && st.Size() > maxRead {
		f.Seek(st.Size()-maxRead, io.SeekStart)
	}
	return io.ReadAll(io.LimitReader(f, maxRead))
}

// tailLines is the last n lines of s.
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

// ---- status -----------------------------------------------------------------

// toJob reads a job from its workflow's metadata. md is nil when Cromwell
// has none: just after a submit, or (Cromwell's metadata archiving) long
// after the end; status and end then come from the query's w, so that an
// archived job stays finished. wdl is what we submitted, if we have it.
func (c *cromwell) toJob(jid string, w queryResult, md *metadata, wdl string) *job {
	j := &job{JID: jid, Timestamp: w.End}
	id := w.ID
	var calls []callMetadata
	status := w.Status
	if status == "" {
		status = "Submitted"
	}
	if md != nil {
		if md.SubmittedFiles.Workflow != "" {
			wdl = md.SubmittedFiles.Workflow
		}
		calls = md.Calls[cromwellTask]
		status = md.Status
		j.Timestamp = md.End
	}
	var call *callMetadata
	if len(calls) > 0 {
		call = &calls[len(calls)-1]
	}
	if image, argv, err := parseWDL(wdl); err == nil {
		j.Image, j.Cmd = image, strings.Join(argv, " ")
	} else if call != nil {
		// Not our WDL (or none): take what Cromwell ran.
		j.Image, _ = call.RuntimeAttributes["docker"].(string)
		j.Cmd = call.CommandLine
	}
	j.Status, j.Message = workflowStatus(id, status, call, md)
	return j
}

// workflowStatus maps a Cromwell workflow status to ours, with a message
// saying what Cromwell reports.
func workflowStatus(id, status string, call *callMetadata, md *metadata) (string, string) {
	wf := "Cromwell workflow " + id
	switch status {
	case "Submitted", "On Hold", "Running":
		if call == nil {
			if md == nil {
				return statusNotStarted, wf + " is submitted: waiting for Cromwell to pick it up"
			}
			if status == "On Hold" {
				return statusNotStarted, wf + " is On Hold: waiting for it to be released in Cromwell"
			}
			return statusNotStarted, wf + " is " + status + ": waiting for Cromwell to pick it up"
		}
		if status != "Running" {
			return statusNotStarted, wf + " is " + status
		}
		msg := wf + " is Running; task " + call.ExecutionStatus
		if call.JobID != "" {
			msg += " as SLURM job " + call.JobID
		}
		return statusStarted, msg
	case "Succeeded":
		return statusSuccess, wf + " Succeeded"
	case "Failed", "Aborting", "Aborted":
		msg := wf + " " + map[string]string{"Failed": "Failed", "Aborting": "is being aborted", "Aborted": "was aborted"}[status]
		var why []string
		if call != nil {
			why = failureMessages(call.Failures)
			if len(why) == 0 && call.ReturnCode != nil && *call.ReturnCode != 0 {
				why = []string{"the task exited with return code " + strconv.Itoa(*call.ReturnCode)}
			}
		}
		if len(why) == 0 && md != nil {
			why = failureMessages(md.Failures)
		}
		if len(why) > 0 {
			msg += ": " + strings.Join(why, "; ")
		}
		return statusError, msg
	}
	return statusUndefined, fmt.Sprintf("%s has status %q, which pman does not know", wf, status)
}

// failureMessages are the root causes of Cromwell failures: the leaves of
// their causedBy trees ("Workflow failed" above them says nothing).
func failureMessages(fs []failure) []string {
	var out []string
	for _, f := range fs {
		if len(f.CausedBy) > 0 {
			if sub := failureMessages(f.CausedBy); len(sub) > 0 {
				out = append(out, sub...)
				continue
			}
		}
		if f.Message != "" && !slices.Contains(out, f.Message) {
			out = append(out, f.Message)
		}
	}
	return out
}

// ping answers nil when Cromwell answers its version endpoint (for /readyz).
func (c *cromwell) ping(ctx context.Context) error {
	resp, err := c.do(ctx, "answer its version", "GET", "/engine/v1/version", "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("Cromwell at %s answers its version endpoint with %s: %s", c.base, resp.Status, errorBody(resp))
	}
	return nil
}
