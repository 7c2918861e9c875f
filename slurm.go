package main

// SLURM through slurmrestd: one batch job per pman job, named by the jid,
// whose script runs the plugin's image with a container runtime on the
// node (slurmscript.go). slurmctld forgets a finished job after MinJobAge,
// so each job keeps a small record under STOREBASE that outlives it
// (slurmrecord.go); pman itself keeps nothing. The REST calls are in
// slurmrest.go, the shapes of each API version in slurmjob.go.

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
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
	URL        secretURL // SLURMRESTD_URL: http(s)://host:port or unix:///path; printed redacted
	Socket     string    // the path of a unix:///path SLURMRESTD_URL; "" with http(s)
	JWT        secret    // SLURM_JWT; printed redacted
	JWTFile    string    // SLURM_JWT_FILE, read at each request (tokens expire)
	User       string    // SLURM_USER, with the token
	APIVersion string    // SLURM_API_VERSION; "" detects it from slurmrestd
	Account    string    // SLURM_ACCOUNT
	Runtime    string    // SLURM_CONTAINER_RUNTIME
}

// loadSlurmConfig returns the variables of CONTAINER_ENV=slurm, read by
// loadConfig's e; c holds the common ones.
func loadSlurmConfig(e *envReader, c *config) slurmConfig {
	s := slurmConfig{
		URL:        secretURL(e.str("SLURMRESTD_URL", "")),
		JWT:        secret(e.str("SLURM_JWT", "")),
		JWTFile:    e.str("SLURM_JWT_FILE", ""),
		User:       e.str("SLURM_USER", ""),
		APIVersion: strings.TrimPrefix(e.str("SLURM_API_VERSION", ""), "v"),
		Account:    e.str("SLURM_ACCOUNT", ""),
		Runtime:    e.oneOf("SLURM_CONTAINER_RUNTIME", "apptainer", slurmRuntimes),
	}
	u, err := url.Parse(s.URL.reveal())
	switch {
	case s.URL == "":
		e.bad("SLURMRESTD_URL", "required with CONTAINER_ENV=slurm: slurmrestd's http(s)://host:port or unix:///path/to/socket")
	case err != nil || !(u.Scheme == "unix" && u.Path != "" || (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""):
		e.bad("SLURMRESTD_URL", "%q is not an http(s)://host:port URL or a unix:///path/to/socket", s.URL)
	case urlQueryProblem(u) != "":
		e.bad("SLURMRESTD_URL", "%q %s", s.URL, urlQueryProblem(u))
	case u.Scheme == "unix":
		s.Socket = u.Path
	default:
		if s.JWT == "" && s.JWTFile == "" {
			e.bad("SLURM_JWT", "required with an http(s) SLURMRESTD_URL (or SLURM_JWT_FILE): a token from `scontrol token`")
		}
		if s.User == "" {
			e.bad("SLURM_USER", "required with an http(s) SLURMRESTD_URL: the user the token was made for")
		}
	}
	if s.APIVersion != "" && !slices.Contains(slurmAPIVersions, s.APIVersion) {
		e.bad("SLURM_API_VERSION", "%q is not one of %s (or empty: ask slurmrestd)", s.APIVersion, strings.Join(slurmAPIVersions, ", "))
	}
	// The runtimes' bind syntax is src:dst[:opts]; the job's own
	// directories are kept free of ':' and ',' by safeRel.
	if strings.ContainsAny(c.StoreBase, ":,\n") {
		e.bad("STOREBASE", "%q must not contain ':', ',' or a newline with CONTAINER_ENV=slurm: the container runtimes' bind syntax splits on them", c.StoreBase)
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
	base secretURL // request URL prefix: the http(s) URL, or http://slurmrestd for a socket; reveal for requests only
	http *http.Client
	// records is STOREBASE/.pman/slurm, where each job keeps its record,
	// as SLURM and the batch script name it; keep is that directory as
	// pman opened it, and how it judges what it reads there.
	records string
	keep    *slurmKeeper

	mu      sync.Mutex
	version string // the API version in use, once known
}

func newSlurm(cfg *config, log *slog.Logger) (scheduler, error) {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   4,
	}
	records := slurmRecordsDir(cfg.StoreBase)
	uid, gid, err := slurmJobUser(cfg.Slurm)
	if err != nil {
		return nil, err
	}
	// pman reads and writes the records: STOREBASE must be here, at the
	// same path as on the nodes.
	keep, err := openSlurmRecords(cfg.StoreBase, uid, gid, log)
	if err != nil {
		return nil, fmt.Errorf("STOREBASE: pman keeps each SLURM job's record in %s: %v", records, err)
	}
	base := secretURL(strings.TrimRight(cfg.Slurm.URL.reveal(), "/"))
	if sock := cfg.Slurm.Socket; sock != "" {
		tr.Proxy = nil
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "unix", sock)
		}
		base = "http://slurmrestd"
	}
	// The URL and the token are secrets: this line shows them redacted.
	log.Info("slurmrestd", "url", cfg.Slurm.URL, "user", cfg.Slurm.User, "token", cfg.Slurm.JWT)
	return &slurmSched{
		cfg:  cfg,
		log:  log,
		base: base,
		// slurmrestd waits up to about 10 s for a slurmctld that does not
		// answer before it says so; a whole request stays well under this.
		http:    &http.Client{Timeout: 45 * time.Second, Transport: tr},
		records: records,
		keep:    keep,
		version: cfg.Slurm.APIVersion,
	}, nil
}

// ---- the scheduler interface -----------------------------------------------

// nameProblem returns "": SLURM names a job with any jid checkJID passes.
func (s *slurmSched) nameProblem(jid string) string { return "" }

func (s *slurmSched) create(ctx context.Context, j *jobSpec) (*job, error) {
	j, err := resolveJobDirs(s.cfg.StoreBase, j)
	if err != nil {
		return nil, err
	}
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
	// A job of that jid that SLURM still runs, from a pman whose record
	// is gone (STOREBASE wiped, another pman on the same cluster). A job
	// someone else submitted under that name is no obstacle (SLURM's
	// names are not unique) and is left alone: pman's job runs beside it.
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
	if isKind(err, eUnavailable) {
		// No answer is not a refusal: slurmctld may have queued the job.
		// The record stays, so that a GET finds the job by name, or says
		// that its submission failed once SLURM knows none (forgotten).
		if found, ferr := s.findByName(ctx, v, j.JID); ferr == nil && len(found) == 0 {
			return fail(err)
		}
		s.log.Warn("the submission's outcome is unknown: the record stays", "jid", j.JID, "error", err)
		return nil, err
	}
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
	if st.Status == statusSuccess || st.Status == statusError {
		// A job that can never run was cancelled just now: later GETs must
		// say why, not merely "cancelled".
		if err := rec.writeAnswer(st); err != nil {
			s.log.Warn("cannot keep the job's final answer", "jid", j.JID, "error", err)
		}
	}
	return out, nil
}

func (s *slurmSched) get(ctx context.Context, jid string) (*job, error) {
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
	j.Logs, err = rec.logs(s.cfg.JobLogsTail, s.cfg.logsMaxBytes())
	if err != nil {
		s.log.Warn("cannot read the job's logs", "jid", jid, "error", err)
		j.Logs = logsUnreadable(err)
		j.LogsIncomplete = true
	}
	return j, nil
}

func (s *slurmSched) remove(ctx context.Context, jid string) error {
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
			// Only the job pman submitted: a recorded id that slurmctld
			// has since given to someone else's job (ids wrap, a cluster
			// is reinstalled) is not cancelled.
			info, err := s.ownInfo(ctx, v, id, jid)
			if err != nil {
				return err
			}
			if info != nil {
				if err := s.cancel(ctx, v, id); err != nil {
					return err
				}
			}
		}
	}
	if err := rec.removeAll(); err != nil {
		return errorf(eInternal, "removing the record of job %q: %v", jid, err)
	}
	return nil
}

// ping returns nil when slurmrestd and slurmctld answer, else why not.
func (s *slurmSched) ping(ctx context.Context) error {
	v, err := s.apiVersion(ctx)
	if err != nil {
		return err
	}
	var ans slurmAnswer
	code, err := s.call(ctx, "ping slurmctld", http.MethodGet, "/slurm/v"+v+"/ping", nil, &ans)
	if err == nil && code >= 300 {
		// call lets through a refusal with SLURM's errors, for its caller
		// to judge: to a ping, any refusal is "not ready".
		return errorf(eUnavailable, "slurmrestd at %s answered its ping with %d: %s", s.cfg.Slurm.URL, code, ans.messages())
	}
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
	info, err := s.ownInfo(ctx, v, id, rec.jid)
	if err != nil {
		return slurmAnswerRecord{}, err
	}
	if info == nil {
		return rec.forgotten(id, meta), nil
	}
	return s.jobStatus(ctx, v, info, meta, rec), nil
}

// ownInfo returns what slurmctld knows of job id if it is pman's job jid
// (slurmJobInfo.own), or nil: slurmctld forgot it, or the id now names a
// job someone else submitted, whose state pman never reads or answers.
func (s *slurmSched) ownInfo(ctx context.Context, v string, id int, jid string) (*slurmJobInfo, error) {
	info, err := s.jobInfo(ctx, v, id)
	if err != nil || info == nil {
		return nil, err
	}
	if !info.own(jid) {
		s.log.Warn("the SLURM job id of a job's record names a job pman did not submit: taken as forgotten", "jid", jid, "slurm_job_id", id, "name", info.Name)
		return nil, nil
	}
	return info, nil
}

// jobStatus maps a job SLURM knows onto pman's status. A job pending for a
// reason that can never clear is cancelled and answered as failed.
func (s *slurmSched) jobStatus(ctx context.Context, v string, info *slurmJobInfo, meta slurmJobMeta, rec slurmRecord) slurmAnswerRecord {
	st := jobStateStatus(info, meta, rec.readEnd(info.JobID))
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

// neverRuns returns why a pending job can never run, or "".
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
