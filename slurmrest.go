package main

// The calls pman makes to slurmrestd, and how their answers and errors read.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
)

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

// unavailable reports whether SLURM's own errors mean slurmctld or the
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

// hasError reports whether the answer holds SLURM's error number n.
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
	req, err := http.NewRequestWithContext(ctx, method, s.base.reveal()+p, r)
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
		return 0, errorf(eUnavailable, "slurmrestd at %s is unreachable (%s): %v", s.cfg.Slurm.URL, what, redactErr(err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if tok := req.Header.Get("X-SLURM-USER-TOKEN"); tok != "" {
		// An answer that quotes the token (a proxy's error page) must not
		// carry it into a message: SLURM_JWT_FILE's token is known only
		// here, not to the log's scrubber.
		raw = bytes.ReplaceAll(raw, []byte(tok), []byte(redactedText))
	}
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
	return s.cfg.Slurm.JWT.reveal(), nil
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

// jobInfo returns what slurmctld knows of job id, or nil once it has
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

// findByName lists the jobs pman submitted for jid name that slurmctld
// knows (slurmJobInfo.own): a job someone else submitted under that name
// is never counted, read or cancelled. slurmrestd has no filter by name:
// this reads every job, so a GET uses it only for a job whose id pman
// never learnt.
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
		if j.own(name) {
			found = append(found, j)
		}
	}
	return found, nil
}

// idByName returns the newest job pman submitted for jid name, or 0.
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

// partitionNodes returns how many nodes a partition has.
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
