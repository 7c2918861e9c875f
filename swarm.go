package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
)

// swarmSched runs each job as a Docker Swarm service named by its jid, as
// pman did (CONTAINER_ENV=swarm).
type swarmSched struct {
	cfg  *config
	log  *slog.Logger
	cli  *client.Client
	base *storeBase

	logTimeout time.Duration // logReadTimeout; a test shortens it

	nodeMu sync.Mutex
	nodeID string // the engine's own Swarm node, asked on first use

	apiMu sync.Mutex
	api   string // the engine's API version, asked on first use (hardening.go)
}

func newSwarm(cfg *config, log *slog.Logger) (scheduler, error) {
	cli, err := newEngineClient(cfg)
	if err != nil {
		return nil, err
	}
	return &swarmSched{cfg: cfg, log: log, cli: cli, base: &storeBase{cfg: cfg, cli: cli}, logTimeout: logReadTimeout}, nil
}

// gpuResource is the generic resource a Swarm node advertises for its
// NVIDIA GPUs (daemon.json "node-generic-resources": ["NVIDIA-GPU=..."]),
// the name Docker's documentation and nvidia-container-runtime use.
const gpuResource = "NVIDIA-GPU"

// serviceName is Swarm's rule for service names (swarmkit's
// validateAnnotations): a DNS label of at most 63 characters, '-' and '_'
// only between letters and digits.
var serviceName = regexp.MustCompile(`^[a-zA-Z0-9](?:[-_]*[A-Za-z0-9]+)*$`)

// nameProblem returns why jid cannot name a Swarm service, or "".
func (s *swarmSched) nameProblem(jid string) string {
	if len(jid) > 63 || !serviceName.MatchString(jid) {
		return fmt.Sprintf("%q cannot name a Swarm service: letters, digits, '-' and '_' (not first or last), at most 63 characters", jid)
	}
	return ""
}

// serviceSpec returns the service a job runs as. base is STOREBASE on the nodes.
func serviceSpec(cfg *config, j *jobSpec, base string) swarm.ServiceSpec {
	labels := jobLabels(cfg, j.JID)
	cs := &swarm.ContainerSpec{
		Image:   j.Image,
		Labels:  labels,
		Command: j.Cmd,
		Env:     j.Env,
		// pman gave jobs a TTY: a plugin's stdout is then line-buffered, so
		// its logs show while it runs instead of when it exits.
		TTY: true,
		Mounts: []mount.Mount{
			{Type: mount.TypeBind, Source: hostPath(base, j.InputDir), Target: incomingDir, ReadOnly: true},
			{Type: mount.TypeBind, Source: hostPath(base, j.OutputDir), Target: outgoingDir},
		},
	}
	cs.User, cs.Groups = pickUser(cfg.ContainerUser)
	if cfg.ShmSizeMiB > 0 {
		// A service has no ShmSize; the engine leaves out its own /dev/shm
		// when a mount targets it, so a sized tmpfs takes its place.
		cs.Mounts = append(cs.Mounts, mount.Mount{
			Type: mount.TypeTmpfs, Target: "/dev/shm",
			TmpfsOptions: &mount.TmpfsOptions{SizeBytes: int64(cfg.ShmSizeMiB) << 20},
		})
	}
	res := &swarm.ResourceRequirements{}
	if !cfg.IgnoreLimits {
		res.Limits = &swarm.Limit{
			NanoCPUs:    int64(j.CPULimit) * 1e6,
			MemoryBytes: int64(j.MemoryLimit) << 20,
		}
	}
	if j.GPULimit > 0 {
		// Swarm has no device requests; a service asks for GPUs by reserving
		// the generic resource the nodes advertise. On a cluster whose nodes
		// advertise none the task stays pending with "no suitable node",
		// which get reports as finishedWithError with that text: the job
		// fails visibly instead of running without the GPUs it asked for.
		res.Reservations = &swarm.Resources{GenericResources: []swarm.GenericResource{{
			DiscreteResourceSpec: &swarm.DiscreteGenericResource{Kind: gpuResource, Value: int64(j.GPULimit)},
		}}}
	}
	swarmReserve(cfg, res, j) // swarm_queue.go
	one := uint64(1)
	return swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: j.JID, Labels: labels},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: cs,
			Resources:     res,
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionNone},
		},
		Mode: swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &one}},
	}
}

func (s *swarmSched) create(ctx context.Context, j *jobSpec) (*job, error) {
	if j.Workers != 1 {
		return nil, fieldError("number_of_workers", fmt.Sprintf("must be 1 with CONTAINER_ENV=swarm (one service task per job), not %d", j.Workers))
	}
	base, err := s.base.get(ctx)
	if err != nil {
		return nil, err
	}
	if j, err = resolveJobDirs(base, j); err != nil {
		return nil, err
	}
	if err := s.neverFits(ctx, j); err != nil {
		return nil, err
	}
	spec := serviceSpec(s.cfg, j, base)
	if err := s.harden(ctx, &spec); err != nil {
		return nil, err
	}
	// No registry may be reachable (an air-gapped cluster, or images built
	// on the node): asking one for the image's digest would only add a
	// delay and a warning. Each node then uses its own copy or pulls it.
	resp, err := s.cli.ServiceCreate(ctx, spec, swarm.ServiceCreateOptions{QueryRegistry: false})
	if err != nil {
		err = engineError(err, "creating service "+j.JID)
		if isKind(err, eConflict) {
			// The name is taken: by the job, or by a service pman did not
			// make, which the answer then names.
			if svc, ierr := s.named(ctx, j.JID); ierr == nil && !s.own(svc.Spec.Labels, j.JID) {
				return nil, nameTaken(j.JID, "Swarm service")
			}
		}
		return nil, err
	}
	out := serviceJob(j.JID, spec.TaskTemplate.ContainerSpec, time.Now())
	// The service exists now: failing the POST would make pfcon retry into
	// a 409. A task list that fails only leaves the first answer vaguer.
	if _, err := s.withTask(ctx, out, resp.ID, spec.TaskTemplate.Resources); err != nil {
		s.log.Warn("listing tasks after create", "jid", j.JID, "error", err)
	}
	return out, nil
}

// serviceJob is the answer for a service before its task is looked at.
func serviceJob(jid string, cs *swarm.ContainerSpec, updated time.Time) *job {
	return &job{
		JID:       jid,
		Image:     cs.Image,
		Cmd:       strings.Join(cs.Command, " "),
		Status:    statusNotStarted,
		Message:   "task not available yet",
		Timestamp: updated.UTC().Format(time.RFC3339Nano),
	}
}

// withTask sets out's status, message and timestamp from the service's
// newest task, and answers that task (nil while there is none).
func (s *swarmSched) withTask(ctx context.Context, out *job, serviceID string, res *swarm.ResourceRequirements) (*swarm.Task, error) {
	tasks, err := s.cli.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", serviceID))})
	if err != nil {
		return nil, err
	}
	t := newestTask(tasks)
	if t != nil {
		s.applyTask(ctx, out, t, res)
	}
	return t, nil
}

// applyTask sets out's status, message and timestamp from the task t.
func (s *swarmSched) applyTask(ctx context.Context, out *job, t *swarm.Task, res *swarm.ResourceRequirements) {
	out.Status, out.Message = taskStatus(t, res, s.oomKilled(ctx, t, res))
	out.Status, out.Message = swarmQueued(s.cfg, t, out.Status, out.Message)
	out.Timestamp = t.Status.Timestamp.UTC().Format(time.RFC3339Nano)
}

// inspect returns the service of job jid: the service named jid, if pman
// made it (ownJob, by the service's labels); eNotFound (foreignJob) for
// one someone else made.
func (s *swarmSched) inspect(ctx context.Context, jid string) (*swarm.Service, error) {
	svc, err := s.named(ctx, jid)
	if err == nil && !s.own(svc.Spec.Labels, jid) {
		return nil, foreignJob(jid, "Swarm service")
	}
	return svc, err
}

// own reports whether an object with labels is pman's job jid (policy.go).
func (s *swarmSched) own(labels map[string]string, jid string) bool {
	return ownJob(labels, jid, pman6Labels(s.cfg))
}

// named returns the service named jid, whoever made it. The engine also
// matches a service by ID or ID prefix; a jid that happens to be the
// prefix of another service's ID must not reach it.
func (s *swarmSched) named(ctx context.Context, jid string) (*swarm.Service, error) {
	svc, _, err := s.cli.ServiceInspectWithRaw(ctx, jid, swarm.ServiceInspectOptions{})
	if err == nil && svc.Spec.Name != jid {
		return nil, errorf(eNotFound, "no job %q", jid)
	}
	if cerrdefs.IsNotFound(err) {
		return nil, errorf(eNotFound, "no job %q", jid)
	}
	if err != nil {
		return nil, engineError(err, "inspecting service "+jid)
	}
	return &svc, nil
}

// get returns the job's state from its task alone when there is one: the task
// carries its spec (image, command, TTY, limits), its status and where its
// container is, so a GET costs the task list and the log read. pfcon polls
// every job, so this is the hot path.
func (s *swarmSched) get(ctx context.Context, jid string) (*job, error) {
	t, err := s.jobTask(ctx, jid)
	if err != nil {
		return nil, err
	}
	if t == nil {
		return s.getService(ctx, jid)
	}
	out := serviceJob(jid, t.Spec.ContainerSpec, t.Status.Timestamp)
	s.applyTask(ctx, out, t, t.Spec.Resources)
	s.logs(ctx, out, t)
	return out, nil
}

// jobTask returns the newest task of the service named jid, or nil when it
// has none that carries the job's labels (ownJob). The engine resolves the
// service filter as it does a service lookup, by name and also by ID
// prefix: the label check keeps a jid that is only the ID prefix of
// another service, or the name of a service pman did not make, from
// reaching it. (Filtering by the label instead would make the engine
// copy and scan every task of the swarm: 3 ms a call with 300 finished jobs,
// against 1 ms by service, measured with BenchmarkSwarmGetFinished.)
func (s *swarmSched) jobTask(ctx context.Context, jid string) (*swarm.Task, error) {
	tasks, err := s.cli.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", jid))})
	if cerrdefs.IsNotFound(err) {
		return nil, errorf(eNotFound, "no job %q", jid)
	}
	if err != nil {
		return nil, engineError(err, "listing the tasks of service "+jid)
	}
	t := newestTask(tasks)
	if t == nil || t.Spec.ContainerSpec == nil || !s.own(t.Spec.ContainerSpec.Labels, jid) {
		return nil, nil
	}
	return t, nil
}

// getService returns a job whose task jobTask cannot vouch for: one whose
// service was just created and has no task yet; a service pman did not
// make, or a jid that only matched another service's ID prefix, is
// eNotFound. It costs the service and its task list.
func (s *swarmSched) getService(ctx context.Context, jid string) (*job, error) {
	svc, err := s.inspect(ctx, jid)
	if err != nil {
		return nil, err
	}
	cs := svc.Spec.TaskTemplate.ContainerSpec
	if cs == nil {
		return nil, errorf(eNotFound, "service %q is not a job: it runs no container", jid)
	}
	out := serviceJob(jid, cs, svc.UpdatedAt)
	t, err := s.withTask(ctx, out, svc.ID, svc.Spec.TaskTemplate.Resources)
	if err != nil {
		return nil, engineError(err, "listing the tasks of service "+jid)
	}
	if t != nil {
		if t.Spec.ContainerSpec == nil {
			t.Spec.ContainerSpec = cs
		}
		s.logs(ctx, out, t)
	}
	return out, nil
}

// oomKilled asks the engine whether the task's container was killed for
// memory, only when that is in question (exit 137 under a memory limit).
// nil means unknown: the container ran on another node or is gone.
func (s *swarmSched) oomKilled(ctx context.Context, t *swarm.Task, res *swarm.ResourceRequirements) *bool {
	cst := t.Status.ContainerStatus
	if cst == nil || cst.ExitCode != 137 || cst.ContainerID == "" || memLimit(res) == 0 {
		return nil
	}
	c, err := s.cli.ContainerInspect(ctx, cst.ContainerID)
	if err != nil || c.State == nil {
		return nil
	}
	return &c.State.OOMKilled
}

// logReadTimeout bounds one read of a job's logs. pfcon waits 100 s for a
// GET; Swarm's log broker can stall for longer than that under load
// (issue 12 saw 20 s), and the status must not wait with it.
const logReadTimeout = 5 * time.Second

// logs sets out's logs to the tail of the task's. A container on this
// engine's node is read directly: that answers in milliseconds, where the
// task's logs go through the manager's log broker to the node's agent.
// Only a task on another node is read through the broker. A read that
// fails or is cut answers the status all the same, with whatever was read
// and the note of logsUnreadable, and marks out.LogsIncomplete.
func (s *swarmSched) logs(ctx context.Context, out *job, t *swarm.Task) {
	cst := t.Status.ContainerStatus
	if cst == nil || cst.ContainerID == "" || s.cfg.JobLogsTail == 0 {
		// A task that never got a container (pending, rejected) has no
		// logs, and JOB_LOGS_TAIL=0 asks for none: a call for nothing.
		return
	}
	ctx, cancel := context.WithTimeout(ctx, s.logTimeout)
	defer cancel()
	opts := container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: strconv.Itoa(s.cfg.JobLogsTail)}
	var rc io.ReadCloser
	var err error
	from := "container " + cst.ContainerID
	if s.onThisNode(ctx, t) {
		rc, err = s.cli.ContainerLogs(ctx, cst.ContainerID, opts)
	} else {
		// The task's logs, not the service's: a task rescheduled after its
		// node was lost would otherwise mix in its predecessor's.
		from = "task " + t.ID + " on node " + t.NodeID
		rc, err = s.cli.TaskLogs(ctx, t.ID, opts)
	}
	var logs string
	if err == nil {
		// A service pman made has a TTY, so the stream is raw, not
		// multiplexed.
		logs, err = readLogs(rc, t.Spec.ContainerSpec != nil && t.Spec.ContainerSpec.TTY, s.cfg.logsMaxBytes())
	}
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			err = fmt.Errorf("the engine sent no end of the logs within %s", s.logTimeout)
		}
		s.log.Warn("reading a job's logs", "jid", out.JID, "from", from, "error", err)
		if logs != "" && !strings.HasSuffix(logs, "\n") {
			logs += "\n"
		}
		out.Logs = logs + logsUnreadable(err)
		out.LogsIncomplete = true
		return
	}
	out.Logs = logs
}

// onThisNode reports whether the task's container is on the node of the engine
// pman talks to. The node ID is asked once: it lasts as long as the node is
// in the swarm, and the services with it. When it cannot be had, the task
// is read through the broker, which works from any node.
func (s *swarmSched) onThisNode(ctx context.Context, t *swarm.Task) bool {
	s.nodeMu.Lock()
	defer s.nodeMu.Unlock()
	if s.nodeID == "" {
		info, err := s.cli.Info(ctx)
		if err != nil {
			s.log.Warn("asking the engine for its Swarm node", "error", err)
			return false
		}
		s.nodeID = info.Swarm.NodeID
	}
	return t.NodeID == s.nodeID
}

func (s *swarmSched) remove(ctx context.Context, jid string) error {
	svc, err := s.inspect(ctx, jid)
	if err != nil {
		return err
	}
	// Removing the service makes the engine stop and remove its tasks'
	// containers.
	err = s.cli.ServiceRemove(ctx, svc.ID)
	if cerrdefs.IsNotFound(err) {
		return errorf(eNotFound, "no job %q", jid)
	}
	return engineError(err, "removing service "+jid)
}

// newestTask is the task that says how the job is doing. With restart
// condition none there is one; should the engine have made more (a node
// lost and the task rescheduled), the last one created is current.
func newestTask(tasks []swarm.Task) *swarm.Task {
	var newest *swarm.Task
	for i := range tasks {
		t := &tasks[i]
		if newest == nil || t.CreatedAt.After(newest.CreatedAt) ||
			(t.CreatedAt.Equal(newest.CreatedAt) && t.Version.Index > newest.Version.Index) {
			newest = t
		}
	}
	return newest
}

func memLimit(res *swarm.ResourceRequirements) int64 {
	if res == nil || res.Limits == nil {
		return 0
	}
	return res.Limits.MemoryBytes
}

// taskStatus maps a task to the job's status and message, as pman 6 did,
// with corrections: pman answered undefined for a task the engine rejected,
// shut down or orphaned, and notstarted forever for one no node could take;
// pfcon polls until finished*, so those are errors here, with the engine's
// own words. oomKilled is what the task's container says, nil if unknown.
func taskStatus(t *swarm.Task, res *swarm.ResourceRequirements, oomKilled *bool) (status, message string) {
	st := t.Status
	message = st.Message
	if st.Err != "" {
		if message == "" {
			message = st.Err
		} else {
			message += ": " + st.Err
		}
	}
	switch st.State {
	case swarm.TaskStateNew, swarm.TaskStateAllocated, swarm.TaskStatePending,
		swarm.TaskStateAssigned, swarm.TaskStateAccepted, swarm.TaskStatePreparing,
		swarm.TaskStateReady, swarm.TaskStateStarting:
		// The scheduler keeps a task pending, with Err saying why ("no
		// suitable node (insufficient resources on 1 node)"), for as long
		// as no node fits: it would never finish.
		if st.State == swarm.TaskStatePending && st.Err != "" {
			return statusError, "cannot be scheduled: " + message
		}
		return statusNotStarted, message
	case swarm.TaskStateRunning:
		return statusStarted, message
	case swarm.TaskStateComplete:
		return statusSuccess, message
	case swarm.TaskStateFailed:
		if lim := memLimit(res); lim > 0 && st.ContainerStatus != nil && st.ContainerStatus.ExitCode == 137 {
			// The engine reports only "non-zero exit (137)"; the container
			// knows whether the kernel's OOM killer sent the SIGKILL. Its
			// OOMKilled comes from a separate event that can land after the
			// task has failed, so a false read then proves nothing (seen in
			// about one run in five here): only true is conclusive.
			return statusError, outOfMemory(int(lim>>20), oomKilled != nil && *oomKilled)
		}
		return statusError, message
	case swarm.TaskStateRejected:
		return statusError, "rejected by the engine: " + message
	case swarm.TaskStateShutdown, swarm.TaskStateRemove, swarm.TaskStateOrphaned:
		return statusError, fmt.Sprintf("task %s before finishing: %s", st.State, message)
	}
	return statusUndefined, fmt.Sprintf("unknown task state %q: %s", st.State, message)
}

// ping returns nil when the engine answers its ping and is a Swarm manager
// (for /readyz): only a manager can create services.
func (s *swarmSched) ping(ctx context.Context) error {
	p, err := s.cli.Ping(ctx)
	if err != nil {
		return fmt.Errorf("the Docker engine at %s does not answer: %w", s.cli.DaemonHost(), err)
	}
	// Engines since API 1.39 say it in the ping; older ones say nothing.
	if p.SwarmStatus != nil && (p.SwarmStatus.NodeState != swarm.LocalNodeStateActive || !p.SwarmStatus.ControlAvailable) {
		return fmt.Errorf("the Docker engine at %s is not a Swarm manager (node state %q)", s.cli.DaemonHost(), p.SwarmStatus.NodeState)
	}
	return nil
}

// harden applies hardenService to a job's service spec, for the engine's
// API version. That version is asked once (a ping), on the first job: the
// client's own is its newest when the engine did not answer at start, and an
// engine older than the fields it is sent ignores them silently. (The
// client is not made to agree again: requests under way read its version.)
// What the engine cannot apply is logged once.
func (s *swarmSched) harden(ctx context.Context, spec *swarm.ServiceSpec) error {
	s.apiMu.Lock()
	defer s.apiMu.Unlock()
	first := s.api == ""
	if first {
		ping, err := s.cli.Ping(ctx)
		if err != nil {
			return engineError(err, "asking the engine's API version")
		}
		s.api = sharedAPIVersion(ping.APIVersion, s.cli.ClientVersion())
	}
	if note := hardenService(s.cfg, spec, s.api); note != "" && first {
		s.log.Warn(note)
	}
	return nil
}
