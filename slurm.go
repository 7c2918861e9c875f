package main

// SLURM through slurmrestd: one batch job per pman job, named by the jid,
// whose script runs the plugin's image with a container runtime on the
// node (slurmscript.go). slurmctld forgets a finished job after MinJobAge,
// so each job keeps a small record under STOREBASE that outlives it
// (slurmrecord.go); pman itself keeps nothing.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// slurmAPIVersions are the slurmrestd API versions pman speaks, oldest
// first: 0.0.38 is SLURM 22.05 (tested on a real cluster), 0.0.39 23.02,
// 0.0.40 23.11 and 0.0.41 24.05 (tested against answers written from their
// published OpenAPI schemas).
var slurmAPIVersions = []string{"0.0.38", "0.0.39", "0.0.40", "0.0.41"}

// slurmRuntimes are the values of SLURM_CONTAINER_RUNTIME.
var slurmRuntimes = []string{"apptainer", "singularity", "podman", "docker"}

// slurmConfig is the configuration of CONTAINER_ENV=slurm.
type slurmConfig struct {
	URL        string // SLURMRESTD_URL: http(s)://host:port or unix:///path
	JWT        string // SLURM_JWT
	JWTFile    string // SLURM_JWT_FILE, read at each request (tokens expire)
	User       string // SLURM_USER, with the token
	APIVersion string // SLURM_API_VERSION; "" detects it from slurmrestd
	Account    string // SLURM_ACCOUNT
	Runtime    string // SLURM_CONTAINER_RUNTIME
}

// loadSlurmConfig reads the variables of CONTAINER_ENV=slurm; str and bad
// are loadConfig's.
func loadSlurmConfig(c *config, str func(name, def string) string, bad func(name, format string, a ...any)) slurmConfig {
	s := slurmConfig{
		URL:        str("SLURMRESTD_URL", ""),
		JWT:        str("SLURM_JWT", ""),
		JWTFile:    str("SLURM_JWT_FILE", ""),
		User:       str("SLURM_USER", ""),
		APIVersion: strings.TrimPrefix(str("SLURM_API_VERSION", ""), "v"),
		Account:    str("SLURM_ACCOUNT", ""),
		Runtime:    str("SLURM_CONTAINER_RUNTIME", "apptainer"),
	}
	u, err := url.Parse(s.URL)
	switch {
	case s.URL == "":
		bad("SLURMRESTD_URL", "required with CONTAINER_ENV=slurm: slurmrestd's http(s)://host:port or unix:///path/to/socket")
	case err != nil || !(u.Scheme == "unix" && u.Path != "" || (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""):
		bad("SLURMRESTD_URL", "%q is not an http(s)://host:port URL or a unix:///path/to/socket", s.URL)
	case u.Scheme != "unix":
		if s.JWT == "" && s.JWTFile == "" {
			bad("SLURM_JWT", "required with an http(s) SLURMRESTD_URL (or SLURM_JWT_FILE): a token from `scontrol token`")
		}
		if s.User == "" {
			bad("SLURM_USER", "required with an http(s) SLURMRESTD_URL: the user the token was made for")
		}
	}
	if s.APIVersion != "" && !slices.Contains(slurmAPIVersions, s.APIVersion) {
		bad("SLURM_API_VERSION", "%q is not one of %s (or empty: ask slurmrestd)", s.APIVersion, strings.Join(slurmAPIVersions, ", "))
	}
	if !slices.Contains(slurmRuntimes, s.Runtime) {
		bad("SLURM_CONTAINER_RUNTIME", "%q is not one of %s", s.Runtime, strings.Join(slurmRuntimes, ", "))
	}
	// The runtimes' bind syntax is src:dst[:opts]; the job's own
	// directories are kept free of ':' and ',' by safeRel.
	if strings.ContainsAny(c.StoreBase, ":,\n") {
		bad("STOREBASE", "%q must not contain ':', ',' or a newline with CONTAINER_ENV=slurm: the container runtimes' bind syntax splits on them", c.StoreBase)
	}
	if s.Runtime == "apptainer" || s.Runtime == "singularity" {
		if c.ContainerUser.UID.Set || c.ContainerUser.GID.Set {
			c.Notes = append(c.Notes, "CONTAINER_USER is ignored with SLURM_CONTAINER_RUNTIME="+s.Runtime+": the job runs as the SLURM user that submitted it")
		}
	}
	return s
}

// slurmSched runs jobs on SLURM through slurmrestd.
type slurmSched struct {
	cfg  *config
	log  *slog.Logger
	base string // request URL prefix: the http(s) URL, or http://slurmrestd for a socket
	http *http.Client
	// records is STOREBASE/.pman/slurm, where each job keeps its record.
	records string

	mu      sync.Mutex
	version string // the API version in use, once known
}

func newSlurm(ctx context.Context, cfg *config, log *slog.Logger) (scheduler, error) {
	u, err := url.Parse(cfg.Slurm.URL)
	if err != nil {
		return nil, fmt.Errorf("SLURMRESTD_URL: %v", err)
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   4,
	}
	records := slurmRecordsDir(cfg.StoreBase)
	// pman reads and writes the records: STOREBASE must be here, at the
	// same path as on the nodes.
	if err := os.MkdirAll(records, 0o755); err != nil {
		return nil, fmt.Errorf("STOREBASE: pman keeps each SLURM job's record in %s: %v", records, err)
	}
	base := strings.TrimRight(cfg.Slurm.URL, "/")
	if u.Scheme == "unix" {
		sock := u.Path
		tr.Proxy = nil
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "unix", sock)
		}
		base = "http://slurmrestd"
	}
	return &slurmSched{
		cfg:  cfg,
		log:  log,
		base: base,
		// slurmrestd waits up to about 10 s for a slurmctld that does not
		// answer before it says so; a whole request stays well under this.
		http:    &http.Client{Timeout: 45 * time.Second, Transport: tr},
		records: records,
		version: cfg.Slurm.APIVersion,
	}, nil
}

// ---- the scheduler interface -----------------------------------------------

func (s *slurmSched) create(ctx context.Context, j *jobSpec) (*job, error) {
	script, err := renderSlurmScript(s.cfg, j, s.records)
	if err != nil {
		return nil, err
	}
	v, err := s.apiVersion(ctx)
	if err != nil {
		return nil, err
	}
	rec := s.record(j.JID)
	// The record directory is made first and atomically: two POSTs of one
	// jid cannot both pass here.
	if err := rec.make(); err != nil {
		return nil, err
	}
	fail := func(err error) (*job, error) {
		rec.removeAll()
		return nil, err
	}
	// A job of that name that SLURM still runs, from a pman whose record
	// is gone (STOREBASE wiped, another pman on the same cluster).
	others, err := s.findByName(ctx, v, j.JID)
	if err != nil {
		return fail(err)
	}
	for _, o := range others {
		if !slurmFinal(o.state()) {
			return fail(errorf(eConflict, "a job with jid %q already exists: SLURM job %d, %s", j.JID, o.JobID, o.state()))
		}
	}
	req := s.submission(v, j, script, rec)
	id, err := s.submit(ctx, v, req)
	if err != nil {
		return fail(err)
	}
	s.log.Info("submitted to SLURM", "jid", j.JID, "slurm_job_id", id)
	meta := slurmJobMeta{SlurmJobID: id, Image: j.Image, Cmd: strings.Join(j.Cmd, " "), MemoryMiB: j.MemoryLimit,
		TimelimitMinutes: s.cfg.TimelimitMinutes, Submitted: time.Now().UTC().Format(time.RFC3339Nano)}
	if s.cfg.IgnoreLimits {
		meta.MemoryMiB = 0
	}
	if err := rec.writeMeta(meta); err != nil {
		// The job runs; without its id a GET finds it by name.
		s.log.Warn("cannot write the job's record", "jid", j.JID, "error", err)
	}
	out := &job{JID: j.JID, Image: j.Image, Cmd: meta.Cmd, Status: statusNotStarted, Message: "submitted to SLURM as job " + strconv.Itoa(id)}
	info, err := s.jobInfo(ctx, v, id)
	if err != nil || info == nil {
		// The job exists from here on: answer what we know, or pfcon's
		// retry of the POST would meet a 409.
		if err != nil {
			s.log.Warn("cannot read the new job back", "jid", j.JID, "slurm_job_id", id, "error", err)
		}
		return out, nil
	}
	st := s.jobStatus(ctx, v, info, meta, rec)
	out.Status, out.Message, out.Timestamp = st.Status, st.Message, st.Timestamp
	return out, nil
}

func (s *slurmSched) get(ctx context.Context, jid string) (*job, error) {
	if checkJID(jid) != "" {
		return nil, errorf(eNotFound, "no job with jid %q", jid)
	}
	rec := s.record(jid)
	meta, err := rec.readMeta()
	if err != nil {
		return nil, err
	}
	j := &job{JID: jid, Image: meta.Image, Cmd: meta.Cmd}
	if ans, ok := rec.readAnswer(); ok {
		// The job is finished and its answer was kept: slurmctld is not
		// asked again, and may have forgotten it long ago.
		j.Status, j.Message, j.Timestamp = ans.Status, ans.Message, ans.Timestamp
	} else {
		st, err := s.status(ctx, rec, meta)
		if err != nil {
			return nil, err
		}
		j.Status, j.Message, j.Timestamp = st.Status, st.Message, st.Timestamp
		if st.Status == statusSuccess || st.Status == statusError {
			if err := rec.writeAnswer(st); err != nil {
				s.log.Warn("cannot keep the job's final answer", "jid", jid, "error", err)
			}
		}
	}
	j.Logs, err = rec.logs(s.cfg.JobLogsTail)
	if err != nil {
		s.log.Warn("cannot read the job's logs", "jid", jid, "error", err)
		j.Logs = logsUnreadable(err)
		j.LogsIncomplete = true
	}
	return j, nil
}

func (s *slurmSched) remove(ctx context.Context, jid string) error {
	if checkJID(jid) != "" {
		return errorf(eNotFound, "no job with jid %q", jid)
	}
	rec := s.record(jid)
	meta, err := rec.readMeta()
	if err != nil {
		return err
	}
	if _, done := rec.readAnswer(); !done {
		v, err := s.apiVersion(ctx)
		if err != nil {
			return err
		}
		id := meta.SlurmJobID
		if id == 0 {
			if id, err = s.idByName(ctx, v, jid); err != nil {
				return err
			}
		}
		if id != 0 {
			if err := s.cancel(ctx, v, id); err != nil {
				return err
			}
		}
	}
	if err := rec.removeAll(); err != nil {
		return errorf(eInternal, "removing the record of job %q: %v", jid, err)
	}
	return nil
}

// ping answers whether slurmrestd and slurmctld answer.
func (s *slurmSched) ping(ctx context.Context) error {
	v, err := s.apiVersion(ctx)
	if err != nil {
		return err
	}
	var ans slurmAnswer
	_, err = s.call(ctx, "ping slurmctld", http.MethodGet, "/slurm/v"+v+"/ping", nil, &ans)
	return err
}

// ---- finding the state -----------------------------------------------------

// status asks SLURM for a job's state, or falls back on the job's own
// record of its end once slurmctld has forgotten it.
func (s *slurmSched) status(ctx context.Context, rec slurmRecord, meta slurmJobMeta) (slurmAnswerRecord, error) {
	v, err := s.apiVersion(ctx)
	if err != nil {
		return slurmAnswerRecord{}, err
	}
	id := meta.SlurmJobID
	if id == 0 {
		// Submitted, but pman stopped before it wrote the id down.
		if id, err = s.idByName(ctx, v, rec.jid); err != nil {
			return slurmAnswerRecord{}, err
		}
		if id == 0 {
			return rec.forgotten(0, meta), nil
		}
	}
	info, err := s.jobInfo(ctx, v, id)
	if err != nil {
		return slurmAnswerRecord{}, err
	}
	if info == nil {
		return rec.forgotten(id, meta), nil
	}
	return s.jobStatus(ctx, v, info, meta, rec), nil
}

// jobStatus maps a job SLURM knows onto pman's status. A job pending for a
// reason that can never clear is cancelled and answered as failed.
func (s *slurmSched) jobStatus(ctx context.Context, v string, info *slurmJobInfo, meta slurmJobMeta, rec slurmRecord) slurmAnswerRecord {
	st := jobStateStatus(info, meta, rec.readEnd())
	if st.Status == statusNotStarted && info.state() == "PENDING" {
		if why := s.neverRuns(ctx, v, info); why != "" {
			if err := s.cancel(ctx, v, info.JobID); err != nil {
				s.log.Warn("cannot cancel a job that can never run", "jid", rec.jid, "slurm_job_id", info.JobID, "error", err)
			}
			st.Status = statusError
			st.Message = fmt.Sprintf("SLURM cannot run job %d: %s", info.JobID, why)
			st.Timestamp = time.Now().UTC().Format(time.RFC3339Nano)
		}
	}
	return st
}

// slurmHopeless are pending reasons that no amount of waiting clears.
var slurmHopeless = map[string]string{
	"PartitionConfig":          "the job's request does not fit its partition's configuration",
	"InvalidAccount":           "the account is not valid",
	"InvalidQOS":               "the QOS is not valid",
	"AccountNotAllowed":        "the account may not use the partition",
	"QOSNotAllowed":            "the QOS may not be used with the partition",
	"BadConstraints":           "no node can satisfy the job's constraints",
	"DependencyNeverSatisfied": "a dependency can never be satisfied",
	"PartitionNodeLimit":       "the job needs more nodes than the partition allows",
	"PartitionTimeLimit":       "the time limit exceeds the partition's",
}

// neverRuns says why a pending job can never run, or "".
func (s *slurmSched) neverRuns(ctx context.Context, v string, info *slurmJobInfo) string {
	reason := info.StateReason
	if msg, ok := slurmHopeless[reason]; ok {
		return reason + ": " + msg + detail(info.StateDescription)
	}
	if reason == "ReqNodeNotAvail" && info.Partition != "" {
		// Hopeless only when the partition has no node at all; nodes that
		// are down may come back.
		n, err := s.partitionNodes(ctx, v, info.Partition)
		if err == nil && n == 0 {
			return fmt.Sprintf("ReqNodeNotAvail: partition %s has no nodes%s", info.Partition, detail(info.StateDescription))
		}
	}
	return ""
}

func detail(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

// ---- slurmrestd calls ---------------------------------------------------------

// slurmAnswer is the part every slurmrestd answer shares.
type slurmAnswer struct {
	Errors   []slurmError `json:"errors"`
	Warnings []struct {
		Description string `json:"description"`
	} `json:"warnings"`
}

// slurmError is one entry of an answer's errors. 0.0.38 calls the number
// error_code in some answers and error_number in others.
type slurmError struct {
	Error       string `json:"error"`
	Number      int    `json:"error_number"`
	Code        int    `json:"error_code"`
	Description string `json:"description"`
}

func (e slurmError) num() int {
	if e.Number != 0 {
		return e.Number
	}
	return e.Code
}

func (e slurmError) String() string {
	msg := e.Error
	if e.Description != "" && e.Description != e.Error {
		if msg != "" {
			msg += ": "
		}
		msg += e.Description
	}
	return msg
}

// messages joins an answer's errors for a person to read.
func (a slurmAnswer) messages() string {
	var m []string
	for _, e := range a.Errors {
		m = append(m, e.String())
	}
	return strings.Join(m, "; ")
}

// unavailable says whether SLURM's own errors mean slurmctld or the
// authentication between the daemons failed, rather than the request:
// SLURM's errno ranges for communication (1000-1099, 1800-1899, sockets
// 5000-5999) and authentication (6000-6999), and -1, what 0.0.38 says when
// slurmrestd cannot load slurmctld's configuration.
func (a slurmAnswer) unavailable() bool {
	for _, e := range a.Errors {
		n := e.num()
		if n == -1 || n >= 1000 && n < 1100 || n >= 1800 && n < 1900 || n >= 5000 && n < 7000 {
			return true
		}
	}
	return false
}

// hasError says whether the answer holds SLURM's error number n.
func (a slurmAnswer) hasError(n int) bool {
	return slices.ContainsFunc(a.Errors, func(e slurmError) bool { return e.num() == n })
}

// SLURM's error numbers that pman reads.
const (
	slurmInvalidJobID = 2017 // ESLURM_INVALID_JOB_ID
	slurmAlreadyDone  = 2021 // ESLURM_ALREADY_DONE
)

// call sends one request and decodes the JSON answer into out (which
// embeds slurmAnswer). A transport error, an authentication refusal or an
// answer that says slurmctld is unreachable is an eUnavailable error naming
// slurmrestd; any other answer is returned with its HTTP code, for the
// caller to judge its errors.
func (s *slurmSched) call(ctx context.Context, what, method, p string, body any, out any) (int, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, errorf(eInternal, "slurmrestd request to %s: %v", what, err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.base+p, r)
	if err != nil {
		return 0, errorf(eInternal, "slurmrestd request to %s: %v", what, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if s.cfg.Slurm.User != "" {
		req.Header.Set("X-SLURM-USER-NAME", s.cfg.Slurm.User)
	}
	if tok, err := s.token(); err != nil {
		return 0, errorf(eUnavailable, "SLURM_JWT_FILE: %v", err)
	} else if tok != "" {
		req.Header.Set("X-SLURM-USER-TOKEN", tok)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, errorf(eUnavailable, "slurmrestd at %s is unreachable (%s): %v", s.cfg.Slurm.URL, what, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return 0, errorf(eUnavailable, "slurmrestd at %s: reading its answer to %s: %v", s.cfg.Slurm.URL, what, err)
	}
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return 0, errorf(eUnavailable, "slurmrestd at %s refused pman's credentials (%s: %s): check SLURM_JWT and SLURM_USER", s.cfg.Slurm.URL, resp.Status, shortBody(raw))
	}
	var ans slurmAnswer
	if err := json.Unmarshal(raw, &ans); err != nil {
		if resp.StatusCode >= 300 {
			return 0, errorf(eUnavailable, "slurmrestd at %s failed to %s: %s: %s", s.cfg.Slurm.URL, what, resp.Status, shortBody(raw))
		}
		return 0, errorf(eUnavailable, "slurmrestd at %s: its answer to %s is not JSON: %v", s.cfg.Slurm.URL, what, err)
	}
	if ans.unavailable() {
		hint := ""
		if req.Header.Get("X-SLURM-USER-TOKEN") != "" {
			// slurmrestd passes the token on to slurmctld, and 22.05 answers
			// its refusal with the same "Unspecified error" as a slurmctld
			// that is down.
			hint = " (slurmctld is down, or it refused pman's token: check SLURM_JWT and SLURM_USER)"
		}
		return 0, errorf(eUnavailable, "slurmrestd at %s could not %s: %s%s", s.cfg.Slurm.URL, what, ans.messages(), hint)
	}
	if resp.StatusCode >= 300 && len(ans.Errors) == 0 {
		return 0, errorf(eUnavailable, "slurmrestd at %s failed to %s: %s: %s", s.cfg.Slurm.URL, what, resp.Status, shortBody(raw))
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return 0, errorf(eUnavailable, "slurmrestd at %s: its answer to %s is not the JSON expected: %v", s.cfg.Slurm.URL, what, err)
		}
	}
	return resp.StatusCode, nil
}

func shortBody(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	if s == "" {
		return "(empty answer)"
	}
	return s
}

// token is the JWT sent with each request: SLURM_JWT_FILE is read each
// time, so that a renewed token needs no restart.
func (s *slurmSched) token() (string, error) {
	if s.cfg.Slurm.JWTFile != "" {
		b, err := os.ReadFile(s.cfg.Slurm.JWTFile)
		if err != nil {
			return "", err
		}
		t := strings.TrimSpace(string(b))
		return strings.TrimPrefix(t, "SLURM_JWT="), nil
	}
	return s.cfg.Slurm.JWT, nil
}

// apiVersion is SLURM_API_VERSION, or the newest version pman speaks among
// those slurmrestd serves, asked once.
func (s *slurmSched) apiVersion(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.version != "" {
		return s.version, nil
	}
	var spec struct {
		Paths map[string]json.RawMessage `json:"paths"`
	}
	code, err := s.call(ctx, "list its API versions", http.MethodGet, "/openapi/v3", nil, &spec)
	if err != nil {
		return "", err
	}
	if code >= 300 {
		return "", errorf(eUnavailable, "slurmrestd at %s does not list its API versions (/openapi/v3 answered %d): set SLURM_API_VERSION", s.cfg.Slurm.URL, code)
	}
	for _, v := range slices.Backward(slurmAPIVersions) {
		if _, ok := spec.Paths["/slurm/v"+v+"/job/submit"]; ok {
			s.version = v
			s.log.Info("slurmrestd API version", "version", v)
			return v, nil
		}
	}
	return "", errorf(eUnavailable, "slurmrestd at %s serves none of the API versions %s (start it with -s openapi/v0.0.38 or newer)", s.cfg.Slurm.URL, strings.Join(slurmAPIVersions, ", "))
}

// submit posts the job and answers its id. SLURM's refusal (bad partition,
// account, resources) is a 400 with SLURM's message; slurmrestd answers it
// with a 500 and the reason in errors.
func (s *slurmSched) submit(ctx context.Context, v string, req any) (int, error) {
	var ans struct {
		slurmAnswer
		JobID         int    `json:"job_id"`
		JobSubmitUser string `json:"job_submit_user_msg"`
	}
	if _, err := s.call(ctx, "submit a job", http.MethodPost, "/slurm/v"+v+"/job/submit", req, &ans); err != nil {
		return 0, err
	}
	if len(ans.Errors) > 0 || ans.JobID == 0 {
		msg := ans.messages()
		if msg == "" {
			msg = "no job id in its answer"
		}
		if ans.JobSubmitUser != "" {
			msg += " (" + ans.JobSubmitUser + ")"
		}
		return 0, refused(http.StatusBadRequest, "SLURM refused the job: %s", msg)
	}
	return ans.JobID, nil
}

// jobInfo answers what slurmctld knows of job id, or nil once it has
// forgotten it.
func (s *slurmSched) jobInfo(ctx context.Context, v string, id int) (*slurmJobInfo, error) {
	var ans struct {
		slurmAnswer
		Jobs []slurmJobInfo `json:"jobs"`
	}
	what := "read job " + strconv.Itoa(id)
	if _, err := s.call(ctx, what, http.MethodGet, "/slurm/v"+v+"/job/"+strconv.Itoa(id), nil, &ans); err != nil {
		return nil, err
	}
	for i := range ans.Jobs {
		if ans.Jobs[i].JobID == id {
			return &ans.Jobs[i], nil
		}
	}
	if len(ans.Errors) == 0 || ans.hasError(slurmInvalidJobID) {
		return nil, nil
	}
	return nil, errorf(eUnavailable, "slurmrestd at %s could not %s: %s", s.cfg.Slurm.URL, what, ans.messages())
}

// findByName lists the jobs slurmctld knows under a name. slurmrestd has
// no filter by name: this reads every job, so only create uses it.
func (s *slurmSched) findByName(ctx context.Context, v, name string) ([]slurmJobInfo, error) {
	var ans struct {
		slurmAnswer
		Jobs []slurmJobInfo `json:"jobs"`
	}
	if _, err := s.call(ctx, "list jobs", http.MethodGet, "/slurm/v"+v+"/jobs", nil, &ans); err != nil {
		return nil, err
	}
	if len(ans.Errors) > 0 {
		return nil, errorf(eUnavailable, "slurmrestd at %s could not list jobs: %s", s.cfg.Slurm.URL, ans.messages())
	}
	var found []slurmJobInfo
	for _, j := range ans.Jobs {
		if j.Name == name {
			found = append(found, j)
		}
	}
	return found, nil
}

// idByName answers the newest job named name, or 0.
func (s *slurmSched) idByName(ctx context.Context, v, name string) (int, error) {
	found, err := s.findByName(ctx, v, name)
	if err != nil {
		return 0, err
	}
	id := 0
	for _, j := range found {
		id = max(id, j.JobID)
	}
	return id, nil
}

// cancel ends a job; one that already ended or that slurmctld forgot is
// not an error.
func (s *slurmSched) cancel(ctx context.Context, v string, id int) error {
	var ans slurmAnswer
	what := "cancel job " + strconv.Itoa(id)
	if _, err := s.call(ctx, what, http.MethodDelete, "/slurm/v"+v+"/job/"+strconv.Itoa(id), nil, &ans); err != nil {
		return err
	}
	if len(ans.Errors) == 0 || ans.hasError(slurmInvalidJobID) || ans.hasError(slurmAlreadyDone) {
		return nil
	}
	return refused(http.StatusBadRequest, "SLURM refused to %s: %s", what, ans.messages())
}

// partitionNodes answers how many nodes a partition has.
func (s *slurmSched) partitionNodes(ctx context.Context, v, name string) (int, error) {
	var ans struct {
		slurmAnswer
		Partitions []struct {
			Name       string          `json:"name"`
			TotalNodes *int            `json:"total_nodes"` // 0.0.38
			Nodes      json.RawMessage `json:"nodes"`       // "a,b" (0.0.38) or {"configured": "a,b", "total": 2}
		} `json:"partitions"`
	}
	if _, err := s.call(ctx, "read partition "+name, http.MethodGet, "/slurm/v"+v+"/partition/"+url.PathEscape(name), nil, &ans); err != nil {
		return 0, err
	}
	for _, p := range ans.Partitions {
		if p.Name != name {
			continue
		}
		if p.TotalNodes != nil {
			return *p.TotalNodes, nil
		}
		var list string
		if json.Unmarshal(p.Nodes, &list) == nil {
			if list == "" {
				return 0, nil
			}
			return 1 + strings.Count(list, ","), nil
		}
		var obj struct {
			Total *int `json:"total"`
		}
		if json.Unmarshal(p.Nodes, &obj) == nil && obj.Total != nil {
			return *obj.Total, nil
		}
	}
	return 0, errors.New("partition not found")
}
