package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-connections/tlsconfig"
)

// dockerSched runs each job as one container on a Docker engine (or
// Podman's Docker-compatible API), named by the jid. Every answer comes
// from the engine; what it holds besides the client are the pulls it runs
// for jobs whose record is in the engine (pull.go).
type dockerSched struct {
	cfg  *config
	cli  *client.Client
	base *storeBase
	log  *slog.Logger

	engine engineKind // Docker or Podman (podman.go)

	bg       context.Context // the server's life: pulls outlive requests
	postWait time.Duration   // postPullWait
	mu       sync.Mutex
	pulls    map[string]*pull       // by image reference
	jobs     map[string]*pendingJob // by jid

	queue *dockerQueue // JOB_CAPACITY's admission (docker_queue.go); nil: off
}

func newDocker(ctx context.Context, cfg *config, log *slog.Logger) (scheduler, error) {
	cli, err := newEngineClient(cfg)
	if err != nil {
		return nil, err
	}
	d := &dockerSched{cfg: cfg, cli: cli, base: &storeBase{cfg: cfg, cli: cli}, log: log,
		bg: ctx, postWait: postPullWait, pulls: map[string]*pull{}, jobs: map[string]*pendingJob{}}
	d.queue = newDockerQueue(ctx, d)
	return d, nil
}

// containerName is the engine's rule for container names (it refuses
// others with a 400 only at create, after a pull).
var containerName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// nameProblem returns why jid cannot name a container, or "". A jid that
// passed it also goes into the engine's request paths as it is: the client
// does not escape them.
func (d *dockerSched) nameProblem(jid string) string {
	if !containerName.MatchString(jid) {
		return fmt.Sprintf("%q is not a Docker container name ([a-zA-Z0-9][a-zA-Z0-9_.-]+)", jid)
	}
	return ""
}

func (d *dockerSched) create(ctx context.Context, j *jobSpec) (*job, error) {
	if j.Workers != 1 {
		return nil, fieldError("number_of_workers", fmt.Sprintf("must be 1 with CONTAINER_ENV=%s (one container per job), not %d", d.cfg.ContainerEnv, j.Workers))
	}
	base, err := d.base.get(ctx)
	if err != nil {
		return nil, err
	}
	if j, err = resolveJobDirs(base, j); err != nil {
		return nil, err
	}
	// A taken jid is answered before a pull that may take minutes, and
	// before a pending record: a container of that name that pman did not
	// make would otherwise block the job's container for ever.
	if c, err := d.named(ctx, j.JID); err == nil {
		return nil, d.taken(c, j.JID)
	} else if !isKind(err, eNotFound) {
		return nil, err
	}
	if rec, err := d.findRecord(ctx, j.JID); err != nil {
		return nil, err
	} else if rec != nil {
		return nil, errorf(eConflict, "a job named %q already exists (waiting for its image)", j.JID)
	}
	if err := d.podmanChecks(ctx, j, base); err != nil {
		return nil, err
	}
	if err := d.queue.neverFits(ctx, j); err != nil {
		return nil, err
	}
	if have, err := d.haveImage(ctx, j.Image); err != nil {
		return nil, err
	} else if !have {
		return d.createPending(ctx, j)
	} else if d.queue != nil {
		return d.queue.create(ctx, j)
	}
	config, hostConfig := containerConfig(d.cfg, j, base)
	created, err := d.cli.ContainerCreate(ctx, config, hostConfig, nil, nil, j.JID)
	if cerrdefs.IsConflict(err) || nameInUse(err) {
		// Made since the look above, by a second POST or by someone else.
		if c, ierr := d.named(ctx, j.JID); ierr == nil {
			return nil, d.taken(c, j.JID)
		}
		return nil, errorf(eConflict, "a job named %q already exists", j.JID)
	}
	if err != nil {
		return nil, engineError(err, "creating container "+j.JID)
	}
	if err := d.start(ctx, j.JID, created.ID); err != nil {
		return nil, err
	}
	c, err := d.inspect(ctx, j.JID)
	if err != nil {
		// The job runs; only its first state is unknown. pfcon's next
		// GET will tell.
		d.log.Warn("inspecting a container just started", "jid", j.JID, "error", err)
		return &job{JID: j.JID, Image: j.Image, Cmd: strings.Join(j.Cmd, " "), Status: statusStarted, Message: "started"}, nil
	}
	return containerJob(j.JID, c), nil
}

// start starts the container id of job jid, or removes it, so the jid can
// be submitted again; the removal must happen even if the request was
// cancelled.
func (d *dockerSched) start(ctx context.Context, jid, id string) error {
	err := d.cli.ContainerStart(ctx, id, container.StartOptions{})
	if err == nil {
		return nil
	}
	rmCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if rmErr := d.cli.ContainerRemove(rmCtx, id, container.RemoveOptions{Force: true, RemoveVolumes: true}); rmErr != nil {
		d.log.Warn("removing a container that did not start", "jid", jid, "error", rmErr)
	}
	return startError(err, "starting container "+jid)
}

// resumeCreated returns the container c of jid after finishing what a pman
// stopped between creating and starting a pulled job's container left
// undone (its pending record still there, nobody here following it);
// otherwise c as it is. An error means the container could not start and
// the record now says why.
func (d *dockerSched) resumeCreated(ctx context.Context, jid string, c container.InspectResponse) (container.InspectResponse, error) {
	if d.trackedPull(jid) != nil || d.queue != nil {
		// With JOB_CAPACITY only the admission that created a container
		// starts it (docker_queue.go).
		return c, nil
	}
	if rec, err := d.findRecord(ctx, jid); err != nil || rec == nil || rec.failed {
		return c, nil
	}
	if err := d.startAndClaim(ctx, jid, c.ID); err != nil {
		if transient(err) {
			return c, nil // the next GET tries again
		}
		d.markFailed(ctx, jid, err)
		return c, err
	}
	if started, err := d.inspect(ctx, jid); err == nil {
		return started, nil
	}
	return c, nil
}

func (d *dockerSched) get(ctx context.Context, jid string) (*job, error) {
	c, err := d.inspect(ctx, jid)
	if isKind(err, eNotFound) {
		// No container: a job waiting for its image, or none. The
		// container may have been created between the two looks.
		jb, perr := d.getPending(ctx, jid)
		if !isKind(perr, eNotFound) {
			return jb, perr
		}
		c, err = d.inspect(ctx, jid)
	}
	if err != nil {
		return nil, err
	}
	if c.State != nil && c.State.Status == "created" {
		if c, err = d.resumeCreated(ctx, jid, c); err != nil {
			// It could not start: its record now says why.
			return d.getPending(ctx, jid)
		}
	}
	jb := containerJob(jid, c)
	if d.cfg.JobLogsTail == 0 {
		return jb, nil
	}
	logs, err := d.logs(ctx, c)
	if cerrdefs.IsNotFound(err) {
		// Removed since the inspect: the job is gone.
		return nil, errorf(eNotFound, "no job %q", jid)
	}
	if err != nil {
		// The status is known: it is answered, without the logs.
		d.log.Warn("reading the logs of a container", "jid", jid, "error", err)
		jb.Logs, jb.LogsIncomplete = logsUnreadable(err), true
		return jb, nil
	}
	jb.Logs = logs
	return jb, nil
}

// logs returns the last JOB_LOGS_TAIL lines of the container's logs.
func (d *dockerSched) logs(ctx context.Context, c container.InspectResponse) (string, error) {
	n := d.cfg.JobLogsTail
	tail := strconv.Itoa(n)
	podman := d.onPodman(ctx)
	if podman {
		// Podman's own tail loses pieces of lines (podman.go): all, cut here.
		tail = "all"
	}
	rc, err := d.cli.ContainerLogs(ctx, c.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: tail})
	if err != nil {
		return "", err
	}
	logs, err := readLogs(rc, c.Config != nil && c.Config.Tty, d.cfg.logsMaxBytes())
	if err != nil {
		return "", err
	}
	if podman {
		logs = tailLines(logs, n)
	}
	return logs, nil
}

func (d *dockerSched) remove(ctx context.Context, jid string) error {
	defer d.queue.kick() // what the job held may let the next one start
	// The record first: a pull that ends now then finds it gone, and
	// removes the container it may have just created.
	pending, err := d.removePending(ctx, jid)
	if err != nil {
		return err
	}
	c, err := d.inspect(ctx, jid)
	if pending && isKind(err, eNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	// By ID: the name may be reused by a new job between the two calls.
	err = d.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
	if cerrdefs.IsNotFound(err) && pending {
		return nil
	}
	if cerrdefs.IsNotFound(err) {
		return errorf(eNotFound, "no job %q", jid)
	}
	if err != nil && strings.Contains(err.Error(), "is already in progress") {
		// The engine removes it already (a container that would not start
		// is removed by pman itself): the DELETE's end is reached.
		return nil
	}
	return engineError(err, "removing container "+jid)
}

// inspect returns the container of job jid: the container named jid, if
// pman made it (ownJob, by its labels); eNotFound (foreignJob) for one
// that someone else made, such as CUBE's database beside pman in
// miniChRIS. The labels come with the inspect: no call more.
func (d *dockerSched) inspect(ctx context.Context, jid string) (container.InspectResponse, error) {
	c, err := d.named(ctx, jid)
	if err == nil && !d.own(c, jid) {
		return container.InspectResponse{}, foreignJob(jid, "container")
	}
	return c, err
}

// own reports whether the container c is pman's job jid (policy.go).
func (d *dockerSched) own(c container.InspectResponse, jid string) bool {
	return c.Config != nil && ownJob(c.Config.Labels, jid, pman6Labels(d.cfg))
}

// foreignHolds reports whether a container named jid exists that pman did
// not make: it holds the job's name for ever, so a job that waited for its
// image or its turn can never get its container.
func (d *dockerSched) foreignHolds(ctx context.Context, jid string) bool {
	c, err := d.named(ctx, jid)
	return err == nil && !d.own(c, jid)
}

// taken returns the 409 of a POST of jid whose name the container c
// holds: the job exists, or (nameTaken) someone else's container has it.
func (d *dockerSched) taken(c container.InspectResponse, jid string) error {
	if !d.own(c, jid) {
		return nameTaken(jid, "container")
	}
	return errorf(eConflict, "a job named %q already exists", jid)
}

// named returns the container named jid, whoever made it. The engine also
// resolves an ID or a unique ID prefix; a container found that way is some
// other container, not the job, and must never be answered or removed.
func (d *dockerSched) named(ctx context.Context, jid string) (container.InspectResponse, error) {
	c, err := d.cli.ContainerInspect(ctx, jid)
	// Podman answers an inspect that races the container's removal with
	// its 500 "does not exist in database: no such container".
	if cerrdefs.IsNotFound(err) || err != nil && strings.Contains(err.Error(), "no such container") || (err == nil && !namedJID(c, jid)) {
		return container.InspectResponse{}, errorf(eNotFound, "no job %q", jid)
	}
	if err != nil {
		return container.InspectResponse{}, engineError(err, "inspecting container "+jid)
	}
	return c, nil
}

func namedJID(c container.InspectResponse, jid string) bool {
	return c.ContainerJSONBase != nil && strings.TrimPrefix(c.Name, "/") == jid
}

func isKind(err error, kind errKind) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.kind == kind
}

// drainPull reads a pull's progress stream to its end: the pull is done
// only then, and a failure midway is reported only inside the stream. Each
// message goes to the observers (pull.observe).
func drainPull(rc io.ReadCloser, ref string, observers ...func(*jsonmessage.JSONMessage)) error {
	defer rc.Close()
	dec := json.NewDecoder(rc)
	for {
		var m jsonmessage.JSONMessage
		if err := dec.Decode(&m); err == io.EOF {
			return nil
		} else if err != nil {
			return errorf(eUnavailable, "pulling image %q: reading the engine's answer: %v", ref, err)
		}
		// ErrorMessage is the older, deprecated field; engines still send it
		// beside errorDetail, and a compatible API (Podman) may send only it.
		if m.Error != nil || m.ErrorMessage != "" {
			msg, code := m.ErrorMessage, 0
			if m.Error != nil {
				msg, code = m.Error.Message, m.Error.Code
			}
			if code >= 400 && code < 500 {
				return refused(code, "pulling image %q: %s", ref, msg)
			}
			return errorf(eUnavailable, "pulling image %q: %s", ref, msg)
		}
		for _, o := range observers {
			o(&m)
		}
	}
}

// pickUser returns CONTAINER_USER drawn for one job, applied as pman 6
// applied it to a container: the UID is the user, the GID a supplementary
// group, and the primary group stays the image's. Unset sides are "" and nil.
func pickUser(u userSpec) (user string, groups []string) {
	uid, gid := u.pick()
	if uid != nil {
		user = strconv.Itoa(*uid)
	}
	if gid != nil {
		groups = []string{strconv.Itoa(*gid)}
	}
	return user, groups
}

// containerConfig returns what ContainerCreate gets for a job; base is STOREBASE
// on the engine's host.
//
// Input and output are mounted differently, on purpose:
//   - the input is a bind Mount: the engine refuses to create the container
//     when its source is missing (where pman sees the store, missingInput
//     has refused the job before). Every pfcon fills the input directory
//     before it submits the job, so a missing one is an error worth
//     answering, not an empty directory to run the plugin on.
//   - the output is a Binds entry: the engine creates a missing source
//     (owned by root), as `docker run -v` and pman 6 did. pfcon of 2022
//     creates key-<jid>/outgoing itself, but a pfcon that names output_dir
//     may leave it to the engine, and a Mount would then fail every job.
//     dirsProblem keeps ':' out of the path, so the entry parses.
//
// No TTY, as pman 6's Docker backend: stdout and stderr stay two streams.
// The engine copies them separately, so under load their lines can reach
// the log out of order, and a program that buffers stdout when it is not
// a terminal (Python) shows its output late. Swarm jobs have a TTY.
func containerConfig(cfg *config, j *jobSpec, base string) (*container.Config, *container.HostConfig) {
	user, groups := pickUser(cfg.ContainerUser)
	c := &container.Config{
		Image:  j.Image,
		Cmd:    j.Cmd,
		Env:    j.Env,
		Labels: jobLabels(cfg, j.JID),
		User:   user,
	}
	c.Labels[imageLabel] = j.Image
	h := &container.HostConfig{
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
		Mounts: []mount.Mount{{
			Type:     mount.TypeBind,
			Source:   hostPath(base, j.InputDir),
			Target:   incomingDir,
			ReadOnly: true,
		}},
		Binds:    []string{hostPath(base, j.OutputDir) + ":" + outgoingDir + ":rw"},
		GroupAdd: groups,
	}
	if !cfg.IgnoreLimits {
		h.NanoCPUs = int64(j.CPULimit) * 1_000_000
		if j.MemoryLimit > 0 {
			// Memory and swap together: a job over its limit is killed,
			// it does not swap.
			h.Memory = int64(j.MemoryLimit) << 20
			h.MemorySwap = h.Memory
		}
	}
	if j.GPULimit > 0 {
		h.DeviceRequests = []container.DeviceRequest{{Count: j.GPULimit, Capabilities: [][]string{{"gpu"}}}}
	}
	if cfg.ShmSizeMiB > 0 {
		h.ShmSize = int64(cfg.ShmSizeMiB) << 20
	}
	hardenContainer(cfg, h)
	return c, h
}

// containerJob is the job object for an inspected container, logs aside.
func containerJob(jid string, c container.InspectResponse) *job {
	j := &job{JID: jid}
	if c.Config != nil {
		j.Image = c.Config.Image
		if img := c.Config.Labels[imageLabel]; img != "" {
			j.Image = img
		}
		j.Cmd = strings.Join(c.Config.Cmd, " ")
	}
	var memory int64
	if c.ContainerJSONBase != nil && c.HostConfig != nil {
		memory = c.HostConfig.Memory
	}
	var s container.State
	if c.ContainerJSONBase != nil && c.State != nil {
		s = *c.State
		j.Timestamp = lastChange(c.Created, s.StartedAt, s.FinishedAt)
	}
	j.Status, j.Message = containerStatus(s, memory)
	if (j.Status == statusSuccess || j.Status == statusError) && lastChange(s.FinishedAt) != "" {
		// An ended job's time is its end. Podman records StartedAt once
		// its start call returns, which for a short job can be after the
		// FinishedAt that conmon recorded.
		j.Timestamp = s.FinishedAt
	}
	return j
}

// containerStatus maps a container's state to a job status and message;
// memory is the container's limit in bytes (0: none). The states are
// Docker's, and Podman's beside them (podman.go).
func containerStatus(s container.State, memory int64) (status, message string) {
	withError := func(msg string) (string, string) {
		if s.Error != "" {
			msg += ": " + s.Error
		}
		return statusError, msg
	}
	limitMiB := int(memory >> 20)
	state := s.Status
	switch state {
	case "stopped":
		// Podman: the process exited, the cleanup has not run yet. The
		// exit code is known.
		state = container.StateExited
	case "configured", "initialized":
		// Podman: created in its database, or set up, not yet started.
		state = container.StateCreated
	}
	switch {
	// A running job stays started even when one of its processes was
	// killed for memory (the engine sets OOMKilled at once): pfcon stops
	// polling a finished job and collects its output.
	case state == container.StateRunning, state == container.StatePaused, state == container.StateRestarting, state == "stopping":
		if s.OOMKilled {
			return statusStarted, s.Status + "; one of its processes: " + outOfMemory(limitMiB, true)
		}
		return statusStarted, s.Status
	// Once it ended, OOMKilled comes first: a process killed for memory
	// inside a shell that still exits 0 is a job that did not do its work.
	case s.OOMKilled:
		return withError(outOfMemory(limitMiB, true))
	case s.Dead || state == container.StateDead:
		return withError(fmt.Sprintf("dead: the engine could not stop or remove the container (exit code %d)", s.ExitCode))
	case state == container.StateCreated:
		return statusNotStarted, "created, not started"
	case state == container.StateExited && s.ExitCode == 0:
		return statusSuccess, "exited with code 0"
	case state == container.StateExited && s.ExitCode == 137 && memory > 0:
		// The kernel's OOM killer sometimes leaves OOMKilled false when
		// it picked a child (Docker), and Podman 4.3 never sets it on
		// cgroup v1: SIGKILL under a memory limit is most likely it.
		return withError(outOfMemory(limitMiB, false))
	case state == container.StateExited:
		return withError(fmt.Sprintf("exited with code %d", s.ExitCode))
	case state == container.StateRemoving:
		return statusUndefined, "being removed"
	}
	return statusUndefined, fmt.Sprintf("unknown container state %q", s.Status)
}

// lastChange is the latest of the container's times, skipping the zero
// time the engine reports for what has not happened yet
// ("0001-01-01T00:00:00Z"). While a job runs that is StartedAt, once it
// ended FinishedAt, before it started its creation.
func lastChange(times ...string) string {
	var best string
	var bestT time.Time
	for _, s := range times {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil || t.Year() <= 1 {
			continue
		}
		if best == "" || t.After(bestT) {
			best, bestT = s, t
		}
	}
	return best
}

// ---- shared by the Docker and Swarm backends --------------------------------

// newEngineClient talks to the engine at DOCKER_HOST (default: the local
// socket), over TLS with the keys in DOCKER_CERT_PATH when that is set,
// checking the engine's certificate when DOCKER_TLS_VERIFY is set: the docker
// CLI's rules. It negotiates the API version on first use (Debian's engine
// speaks 1.41; the client library defaults to a newer one the engine would
// refuse) and does not contact the engine: pman starts, and recovers, while
// the engine is down.
func newEngineClient(cfg *config) (*client.Client, error) {
	opts := []client.Opt{client.WithAPIVersionNegotiation()}
	if cfg.DockerCertPath != "" {
		tlsc, err := tlsconfig.Client(tlsconfig.Options{
			CAFile:             filepath.Join(cfg.DockerCertPath, "ca.pem"),
			CertFile:           filepath.Join(cfg.DockerCertPath, "cert.pem"),
			KeyFile:            filepath.Join(cfg.DockerCertPath, "key.pem"),
			InsecureSkipVerify: !cfg.DockerTLSVerify,
		})
		if err != nil {
			return nil, fmt.Errorf("DOCKER_CERT_PATH=%s: %w", cfg.DockerCertPath, err)
		}
		opts = append(opts, client.WithHTTPClient(&http.Client{
			Transport:     &http.Transport{TLSClientConfig: tlsc},
			CheckRedirect: client.CheckRedirect,
		}))
	}
	if cfg.DockerHost != "" {
		opts = append(opts, client.WithHost(cfg.DockerHost))
	}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("DOCKER_HOST=%s: %w", cfg.DockerHost, err)
	}
	// The client agrees on an API version with the engine on its first
	// call, but some calls (ContainerList with filters, ServiceCreate) read
	// that version before they agree on it: two first calls at once race.
	// Agreed on here, it is settled before any request. An engine that does
	// not answer now is agreed with on its first call, as before.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cli.NegotiateAPIVersion(ctx)
	return cli, nil
}

// engineError turns a Docker client error into an apiError; what says what
// pman was doing ("creating service chris-jid-1").
func engineError(err error, what string) error {
	if err == nil {
		return nil
	}
	var ae *apiError
	if errors.As(err, &ae) {
		return err
	}
	msg := fmt.Sprintf("%s: %v", what, err)
	switch {
	case client.IsErrConnectionFailed(err):
		return errorf(eUnavailable, "%s: Docker engine unreachable: %v", what, err)
	case cerrdefs.IsNotFound(err):
		return errorf(eNotFound, "%s", msg)
	case cerrdefs.IsConflict(err), cerrdefs.IsAlreadyExists(err):
		return errorf(eConflict, "%s", msg)
	case cerrdefs.IsUnauthorized(err):
		return refused(http.StatusUnauthorized, "%s", msg)
	case cerrdefs.IsPermissionDenied(err):
		return refused(http.StatusForbidden, "%s", msg)
	case cerrdefs.IsInvalidArgument(err):
		return refused(http.StatusBadRequest, "%s", msg)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return errorf(eUnavailable, "%s: Docker engine did not answer in time: %v", what, err)
	}
	return errorf(eUnavailable, "%s: Docker engine failed: %v", what, err)
}

// readLogs reads a log stream to its end, keeping its last max bytes
// (logTail), so a GET's memory is bounded whatever the job printed.
// Without a TTY the engine multiplexes stdout and stderr in frames; with
// one it sends raw bytes. A TTY ends lines with \r\n: they become \n.
func readLogs(rc io.ReadCloser, tty bool, max int) (string, error) {
	defer rc.Close()
	buf := &logTail{max: max}
	var err error
	if tty {
		_, err = io.Copy(buf, rc)
	} else {
		_, err = stdcopy.StdCopy(buf, buf, rc)
	}
	return strings.ReplaceAll(buf.String(), "\r\n", "\n"), err
}

// ping returns nil when the engine answers its ping (for /readyz).
func (d *dockerSched) ping(ctx context.Context) error {
	if _, err := d.cli.Ping(ctx); err != nil {
		return fmt.Errorf("the Docker engine at %s does not answer: %w", d.cli.DaemonHost(), err)
	}
	return nil
}
