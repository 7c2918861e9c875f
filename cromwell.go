package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf16"
)

// Cromwell runs each job as a one-task WDL workflow that the site's Cromwell
// hands to SLURM. Cromwell is the only state: a job is found again through
// the workflow label cromwellJIDLabel, pman 6's key, so that the workflows a
// pman 6 started are found across an upgrade; the workflow carries
// jobLabels (jidLabel with the same jid) too, as every backend's objects do.
const (
	cromwellJIDLabel = "org.chrisproject.pman.name"
	cromwellTask     = "ChRISJob.plugin_instance"
	// removedLabel marks a workflow whose job a DELETE removed. Cromwell
	// keeps every workflow and has no delete: a workflow so marked is no
	// job any more, and GET and DELETE of its jid answer 404.
	removedLabel = "org.chrisproject.pman.removed"
	// maxLabelLen is Cromwell's limit on a label key or value (Label.scala,
	// MaxLabelLength = 255, counted in Java chars, i.e. UTF-16 units); it
	// checks nothing else but a non-empty key. Old Cromwells (2017 docs)
	// demanded [a-z0-9-] and 63 characters: our dotted key would fail
	// there, and Cromwell 74 accepted it (see the recordings).
	maxLabelLen = 255
)

type cromwellSched struct {
	base  secretURL // CROMWELL_URL without trailing slash: its reveal is for requests only
	where string    // base without credentials: for messages and logs
	http  *http.Client
	cfg   *config
	log   *slog.Logger
	// deadline bounds each request of pfcon's, all its Cromwell calls
	// together, well inside pfcon's own 100 s. visibleWait bounds how long
	// create waits for the label query to find the new workflow, as pman 6
	// did; pollEvery is the pause between queries. Fields so tests can
	// shorten them.
	deadline    time.Duration
	visibleWait time.Duration
	pollEvery   time.Duration

	mu sync.Mutex
	// inFlight holds the jids whose POST is being handled here.
	inFlight map[string]bool
	// unlisted holds the jids submitted here whose workflow Cromwell's
	// query did not list yet: until it does, the jid is taken, and GET and
	// DELETE find the workflow through it.
	unlisted map[string]submission
}

// submission is a workflow create submitted, and when.
type submission struct {
	id string
	at time.Time
}

// unlistedTTL bounds how long a submitted workflow the query never lists
// holds its jid: Cromwell indexes within seconds, and a workflow it lost
// must not block the jid for ever.
const unlistedTTL = 10 * time.Minute

func newCromwell(cfg *config, log *slog.Logger) (scheduler, error) {
	if msg := checkShareDir(cfg.StoreBase); msg != "" {
		return nil, fmt.Errorf("STOREBASE %s", msg)
	}
	for k, v := range cfg.JobLabels {
		if msg := checkLabel(k, v); msg != "" {
			return nil, fmt.Errorf("JOB_LABELS: %s (Cromwell label rule)", msg)
		}
	}
	if _, ok := cfg.JobLabels[removedLabel]; ok {
		return nil, fmt.Errorf("JOB_LABELS: %s is the label pman gives a workflow it removed; set on every workflow it would hide them all", removedLabel)
	}
	// The URL is a secretURL: this line shows it redacted.
	log.Info("Cromwell", "url", cfg.CromwellURL)
	return &cromwellSched{
		base:  secretURL(strings.TrimRight(cfg.CromwellURL.reveal(), "/")),
		where: strings.TrimRight(cfg.CromwellURL.String(), "/"),
		http: &http.Client{
			// One call should never take this long; the request's deadline
			// bounds them all together.
			Timeout: 30 * time.Second,
			Transport: &http.Transport{
				Proxy:                 http.ProxyFromEnvironment,
				DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
				TLSHandshakeTimeout:   10 * time.Second,
				ResponseHeaderTimeout: 20 * time.Second,
				IdleConnTimeout:       90 * time.Second,
				MaxIdleConnsPerHost:   4,
			},
			// An http->https 301 would turn the submit's POST into a GET:
			// do answers every redirect as a deployment mistake instead.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		cfg:         cfg,
		log:         log,
		deadline:    60 * time.Second,
		visibleWait: 20 * time.Second,
		pollEvery:   250 * time.Millisecond,
		inFlight:    map[string]bool{},
		unlisted:    map[string]submission{},
	}, nil
}

// checkLabel returns what is wrong with a Cromwell label, or "".
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

// ended reports whether a workflow status is final: only then may its jid be
// used again.
func ended(status string) bool {
	return status == "Succeeded" || status == "Failed" || status == "Aborted"
}

// nameProblem returns why jid cannot be the value of a workflow's labels
// (cromwellJIDLabel and jidLabel), or "".
func (c *cromwellSched) nameProblem(jid string) string {
	if msg := checkLabel(cromwellJIDLabel, jid); msg != "" {
		return msg + ": Cromwell cannot label a workflow with it"
	}
	return ""
}

func (c *cromwellSched) create(ctx context.Context, j *jobSpec) (*job, error) {
	j, err := resolveJobDirs(c.cfg.StoreBase, j)
	if err != nil {
		return nil, err
	}
	wdl, err := c.renderJob(j)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.deadline)
	defer cancel()
	// Two POSTs of one jid at once submit one workflow: the second is a
	// 409 until the first has submitted and the query lists its workflow
	// (or visibleWait ended; unlisted covers the rest).
	if !c.claim(j.JID) {
		return nil, errorf(eConflict, "a job with jid %q is being submitted to Cromwell right now", j.JID)
	}
	defer c.release(j.JID)

	found, err := c.query(ctx, j.JID)
	if err != nil {
		return nil, err
	}
	for _, w := range found {
		if !ended(w.Status) && w.removed() {
			return nil, errorf(eConflict, "the job with jid %q was removed, but Cromwell is still stopping its workflow %s (%s); the jid can be used again once the workflow has ended", j.JID, w.ID, w.Status)
		}
		if !ended(w.Status) {
			return nil, errorf(eConflict, "a job with jid %q already exists (Cromwell workflow %s, %s); the jid can be used again once the workflow has ended", j.JID, w.ID, w.Status)
		}
	}
	if s, ok := c.unlistedOf(j.JID, found); ok {
		return nil, errorf(eConflict, "a job with jid %q already exists (Cromwell workflow %s, submitted %s ago; Cromwell's query does not list it yet)", j.JID, s.id, time.Since(s.at).Round(time.Second))
	}
	labels := jobLabels(c.cfg, j.JID)
	labels[cromwellJIDLabel] = j.JID
	id, err := c.submit(ctx, wdl, labels)
	if err != nil {
		return nil, err
	}
	c.log.Info("submitted to Cromwell", "jid", j.JID, "workflow", id)
	c.mu.Lock()
	for k, s := range c.unlisted {
		if time.Since(s.at) > unlistedTTL {
			delete(c.unlisted, k) // never asked about again
		}
	}
	c.unlisted[j.JID] = submission{id: id, at: time.Now()}
	c.mu.Unlock()

	// Cromwell answers the submit before its query index knows the workflow.
	// Waiting here makes a GET right after our 201 find the job, and lets
	// the POST answer carry Cromwell's status rather than a guess. The job
	// exists from here on: a failure to read it back is logged, not
	// answered, or pfcon's retry of the POST would meet a 409.
	if err := c.awaitListed(ctx, j.JID, id); err != nil {
		c.log.Warn("Cromwell's query does not list the new workflow yet", "jid", j.JID, "workflow", id, "error", err)
	}
	md, err := c.metadata(ctx, id)
	if err != nil {
		c.log.Warn("cannot read the new workflow's metadata", "jid", j.JID, "workflow", id, "error", err)
		md = nil
	}
	return c.toJob(j.JID, queryResult{ID: id, Status: "Submitted"}, md, wdl), nil
}

// claim marks jid's POST as being handled here; false if one already is.
func (c *cromwellSched) claim(jid string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inFlight[jid] {
		return false
	}
	c.inFlight[jid] = true
	return true
}

func (c *cromwellSched) release(jid string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.inFlight, jid)
}

// unlistedOf is the workflow submitted here for jid that the query's
// answer found does not list yet. One it lists, or one older than
// unlistedTTL, is forgotten.
func (c *cromwellSched) unlistedOf(jid string, found []queryResult) (submission, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.unlisted[jid]
	if !ok {
		return submission{}, false
	}
	if time.Since(s.at) > unlistedTTL || slices.ContainsFunc(found, func(w queryResult) bool { return w.ID == s.id }) {
		delete(c.unlisted, jid)
		return submission{}, false
	}
	return s, true
}

func (c *cromwellSched) get(ctx context.Context, jid string) (*job, error) {
	ctx, cancel := context.WithTimeout(ctx, c.deadline)
	defer cancel()
	w, err := c.find(ctx, jid)
	if err != nil {
		return nil, err
	}
	md, err := c.metadata(ctx, w.ID)
	if err != nil {
		return nil, err
	}
	j := c.toJob(jid, *w, md, "")
	switch {
	case md == nil:
		// Just submitted: nothing ran, nothing to read.
	case md.archived():
		c.logsFailed(j, jid, w.ID, fmt.Errorf("Cromwell has archived workflow %s's metadata (%s), the paths of its logs with it", w.ID, md.MetadataArchiveStatus))
	case len(md.Calls[cromwellTask]) > 0:
		if c.cfg.JobLogsTail == 0 {
			break
		}
		logs, err := c.logs(ctx, w.ID)
		if err != nil {
			c.logsFailed(j, jid, w.ID, err)
			break
		}
		j.Logs = logs
	}
	return j, nil
}

// logsFailed returns j's status without its logs, as policy.go says.
func (c *cromwellSched) logsFailed(j *job, jid, id string, err error) {
	c.log.Warn("cannot read the job's logs", "jid", jid, "workflow", id, "error", err)
	j.Logs = logsUnreadable(err)
	j.LogsIncomplete = true
}

// remove aborts jid's workflow unless it has ended or is being aborted,
// and then marks it removedLabel. Labelled first, a workflow whose abort
// failed would run on unseen.
func (c *cromwellSched) remove(ctx context.Context, jid string) error {
	ctx, cancel := context.WithTimeout(ctx, c.deadline)
	defer cancel()
	w, err := c.find(ctx, jid)
	if err != nil {
		return err
	}
	if !ended(w.Status) && w.Status != "Aborting" {
		if err := c.abort(ctx, jid, w.ID); err != nil {
			return err
		}
	}
	if err := c.markRemoved(ctx, jid, w.ID); err != nil {
		return err
	}
	c.mu.Lock()
	delete(c.unlisted, jid) // or find would still return it until the query lists it
	c.mu.Unlock()
	return nil
}

// markRemoved labels workflow id of jid with removedLabel.
func (c *cromwellSched) markRemoved(ctx context.Context, jid, id string) error {
	body, _ := json.Marshal(map[string]string{removedLabel: "yes"})
	what := "label workflow " + id + " removed"
	resp, err := c.do(ctx, what, http.MethodPatch, "/api/workflows/v1/"+url.PathEscape(id)+"/labels", "application/json", body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		// Even Cromwell's own 404 here is no "no such job": the query has
		// just listed the workflow.
		return errorf(eUnavailable, "Cromwell at %s refused to %s of job %q: %s: %s", c.where, what, jid, resp.Status, errorBody(resp))
	}
	return nil
}

// abort asks Cromwell to abort workflow id of jid.
func (c *cromwellSched) abort(ctx context.Context, jid, id string) error {
	resp, err := c.do(ctx, "abort workflow "+id, http.MethodPost, "/api/workflows/v1/"+url.PathEscape(id)+"/abort", "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK, http.StatusCreated, http.StatusAccepted:
		return nil
	case http.StatusNotFound, http.StatusForbidden:
		// do let through only Cromwell's own answers: "no workflow with
		// that ID is in progress" (404, Cromwell 30 and later) or "in
		// terminal state" (403, older). Either way it ended between our
		// query, whose index lags, and the abort.
		c.log.Info("Cromwell says the workflow is no longer running; nothing to abort", "jid", jid, "workflow", id, "answer", errorBody(resp))
		return nil
	}
	return refused(resp.StatusCode, "Cromwell refused to abort workflow %s of job %q: %s", id, jid, errorBody(resp))
}

// ping returns nil when Cromwell answers its version endpoint (for /readyz).
func (c *cromwellSched) ping(ctx context.Context) error {
	resp, err := c.do(ctx, "answer its version", "GET", "/engine/v1/version", "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("Cromwell at %s answers its version endpoint with %s: %s", c.where, resp.Status, errorBody(resp))
	}
	return nil
}
