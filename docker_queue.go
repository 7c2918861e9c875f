package main

// Admission on one Docker or Podman engine (JOB_CAPACITY; the rule is in
// queue.go).
//
// The queue lives in the engine, not here: a queued job is the pending
// record pull.go already keeps for a job waiting for its image (the volume
// "pman-pending-<hash>" carrying the spec), with two labels more: its
// arrival (labelQueued) and JOB_LABELS, so that a deployment's queue is
// its own. A restarted pman, a second replica or an upgraded one reads the
// same records and the same order. What runs is what the engine lists:
// the job containers (by jidLabel and JOB_LABELS) that are created or
// running, each counted by what it asked (its asks labels).
//
// A job is admitted by the steps pull.go runs for a pulled job, with a
// check between them:
//
//  1. create the container named jid. Names are unique in the engine, so
//     of two replicas admitting the same job one gets a conflict and backs
//     off: that create is the claim, and only the creator ever starts the
//     container it created.
//  2. list the job containers again, this one now among them, and count
//     every created or running one. Over the total: remove the container
//     (never started, and removed without force, so never a running one),
//     and try again at a later pass.
//  3. start it, then remove the record (startAndClaim).
//
// Step 2 is what keeps two replicas from overcommitting: each counts after
// its own create, so of any jobs running together, the one whose count came
// last counted all the others (each was created before that count, and is
// created or running at it). No lock and no lease: the engine's create and
// list are the whole protocol. Two replicas admitting at once may both back
// off; each pass's next try comes after a random part of queueTick, so they
// drift apart.
//
// What a crash leaves: a pman killed between 1 and 3 leaves a created
// container; a later pass removes it (without force) once it is older than
// staleCreated, and the job, whose record is still there, is admitted
// again. One killed between the start and the record's removal leaves a
// record beside a started container: the record is left alone (removing
// it could race the starter's own claim, which would then take it for a
// DELETE), the job is not in line as it has a container, and the job's
// DELETE removes both.
//
// Queued jobs start without anyone asking: a pass runs every queueTick
// (a random part of it, above), at once after a POST (synchronously: a job
// that fits answers started), after a DELETE and after each GET of a queued
// job.

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"
	"github.com/prometheus/client_golang/prometheus"
)

// Labels of admission: on a record, its arrival; on a container, what the
// job asked (an operator can sum them with docker ps) and its auid.
const (
	labelQueued = "org.chrisproject.pman.queued" // UnixNano when accepted
	labelAuid   = "org.chrisproject.pman.auid"
	labelCPU    = "org.chrisproject.pman.cpu_limit"    // millicores
	labelMemory = "org.chrisproject.pman.memory_limit" // MiB
	labelGPU    = "org.chrisproject.pman.gpu_limit"
)

// queueTick is the longest time between two passes of a server's queue,
// read when a server starts; tests shorten it before they start one.
var queueTick = 2 * time.Second

// staleCreated is how old a created, never started job container must be
// before a pass takes it for the leftover of a pman killed while admitting
// it. Admission takes milliseconds; a minute is far beyond a slow engine.
// Read when a server starts.
var staleCreated = time.Minute

// passTimeout bounds one pass. Its steps run to their end even when the
// server stops: a stop between create and start would leave a created
// container for staleCreated.
const passTimeout = 2 * time.Minute

// dockerQueue is one server's admission. It holds no queue: the totals,
// once known, and what the last pass saw, for /metrics.
type dockerQueue struct {
	d       *dockerSched
	setting *capacitySetting
	tick    time.Duration // queueTick
	stale   time.Duration // staleCreated
	kickc   chan struct{}
	passMu  sync.Mutex // one pass at a time in this process

	mu    sync.Mutex
	total *resources // resolved at the first pass that could ask the engine
	seen  queueSeen
}

// queueSeen is what the last pass saw, for /metrics.
type queueSeen struct {
	ok          bool
	total, used resources
	byUser      map[string]int // queued jobs by auid
}

// newDockerQueue returns the admission of d, running its passes until ctx
// ends; nil when JOB_CAPACITY is not set.
func newDockerQueue(ctx context.Context, d *dockerSched) *dockerQueue {
	if d.cfg.Capacity == nil {
		return nil
	}
	q := &dockerQueue{d: d, setting: d.cfg.Capacity, tick: queueTick, stale: staleCreated, kickc: make(chan struct{}, 1)}
	go q.loop(ctx)
	return q
}

// loop runs a pass at once (a restarted pman resumes the queue), then at
// each kick or at most queueTick apart.
func (q *dockerQueue) loop(ctx context.Context) {
	for {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), passTimeout)
		q.pass(pctx)
		cancel()
		t := time.NewTimer(q.tick/2 + rand.N(q.tick/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-q.kickc:
			// Every GET of a queued job kicks: passes run at most ten a
			// second however many poll.
			time.Sleep(100 * time.Millisecond)
		case <-t.C:
		}
		t.Stop()
	}
}

// kick asks for a pass soon, without waiting for it; nil-safe.
func (q *dockerQueue) kick() {
	if q == nil {
		return
	}
	select {
	case q.kickc <- struct{}{}:
	default:
	}
}

// queueLabels returns the labels that put j's record in the queue, nil
// when JOB_CAPACITY is not set.
func (d *dockerSched) queueLabels(j *jobSpec) map[string]string {
	if d.queue == nil {
		return nil
	}
	l := maps.Clone(d.cfg.JobLabels)
	if l == nil {
		l = map[string]string{}
	}
	l[labelQueued] = strconv.FormatInt(time.Now().UnixNano(), 10)
	l[labelAuid] = j.Auid
	return l
}

// pulled runs a job whose image was just pulled: at once without
// JOB_CAPACITY, else in its turn (its record is in the queue already).
func (d *dockerSched) pulled(ctx context.Context, j *jobSpec) error {
	if d.queue == nil {
		return d.finish(ctx, j)
	}
	d.queue.pass(ctx)
	return nil
}

// capacity returns the totals: JOB_CAPACITY's, and for auto the engine's
// CPUs, memory and the NVIDIA GPUs it advertises (daemon.json's
// node-generic-resources; an engine that advertises none leaves GPUs
// uncounted). Asked once; an engine that does not answer is asked again.
func (q *dockerQueue) capacity(ctx context.Context) (resources, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.total != nil {
		return *q.total, nil
	}
	t := q.setting.Given
	if q.setting.Auto {
		info, err := q.d.cli.Info(ctx)
		if err != nil {
			return resources{}, engineError(err, "asking the engine for its CPUs and memory (JOB_CAPACITY=auto)")
		}
		if t.CPU == uncounted {
			t.CPU = int64(info.NCPU) * 1000
		}
		if t.Memory == uncounted {
			t.Memory = info.MemTotal >> 20
		}
		if t.GPU == uncounted {
			var gpus int64
			for _, r := range info.GenericResources {
				switch {
				case r.DiscreteResourceSpec != nil && r.DiscreteResourceSpec.Kind == gpuResource:
					gpus += r.DiscreteResourceSpec.Value
				case r.NamedResourceSpec != nil && r.NamedResourceSpec.Kind == gpuResource:
					gpus++
				}
			}
			if gpus > 0 {
				t.GPU = gpus
			}
		}
	}
	q.total = &t
	q.d.log.Info("admission", "cpu_millicores", t.CPU, "memory_mib", t.Memory, "gpus", t.GPU, "uncounted", uncounted)
	return t, nil
}

// neverFits returns the 400 of a job that asks more than the total;
// nil-safe (no admission: nil).
func (q *dockerQueue) neverFits(ctx context.Context, j *jobSpec) error {
	if q == nil {
		return nil
	}
	total, err := q.capacity(ctx)
	if err != nil {
		return err
	}
	return neverFits(total, jobAsks(j), "JOB_CAPACITY="+q.d.cfg.rawCapacity())
}

// create queues j, whose image the engine has, runs a pass, and returns the
// job: started if its turn came, else queued with why it waits.
func (q *dockerQueue) create(ctx context.Context, j *jobSpec) (*job, error) {
	created, err := q.d.createRecord(ctx, j)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), passTimeout)
	q.pass(pctx)
	cancel()
	if c, err := q.d.inspect(ctx, j.JID); err == nil {
		return containerJob(j.JID, c), nil
	}
	return q.answer(ctx, &record{spec: j, created: created}), nil
}

// answer returns the job object of the queued job rec, its message saying
// why it waits, and asks for a pass.
func (q *dockerQueue) answer(ctx context.Context, rec *record) *job {
	q.kick()
	j := rec.spec
	out := &job{JID: j.JID, Image: j.Image, Cmd: strings.Join(j.Cmd, " "), Status: statusNotStarted, Timestamp: rec.created}
	if have, err := q.d.haveImage(ctx, j.Image); err == nil && !have {
		q.d.track(j, false)
		return pendingAnswer(j, q.d.trackedPull(j.JID), rec.created)
	}
	total, err := q.capacity(ctx)
	var v *queueView
	if err == nil {
		v, err = q.look(ctx, false)
	}
	if err != nil {
		out.Message = "queued (its place is unknown for now: " + err.Error() + ")"
		return out
	}
	ahead := -1
	for i, l := range v.line {
		if l.spec.JID == j.JID {
			ahead = i
			break
		}
	}
	if ahead < 0 {
		out.Message = "queued: being started"
		return out
	}
	var first resources
	if ahead > 0 {
		first = shortfall(total, v.used, jobAsks(v.line[0].spec))
	}
	out.Message = queueMessage(ahead, total, v.used, shortfall(total, v.used, jobAsks(j)), first)
	return out
}

// queueView is the queue and what runs, as the engine has them now.
type queueView struct {
	line  []queuedJob                  // fair order; jobs without a container
	used  resources                    // by created and running job containers
	conts map[string]container.Summary // job containers by jid
}

// look returns the queue and what runs. With tidy, it removes the created
// containers a killed pman left (see the file's comment).
func (q *dockerQueue) look(ctx context.Context, tidy bool) (*queueView, error) {
	recs, err := q.records(ctx)
	if err != nil {
		return nil, err
	}
	used, conts, err := q.running(ctx)
	if err != nil {
		return nil, err
	}
	v := &queueView{used: used, conts: conts}
	byUser := map[string]int{}
	for _, c := range conts {
		if holds(c.State) {
			byUser[c.Labels[labelAuid]]++
		}
	}
	for _, r := range recs {
		c, ok := conts[r.spec.JID]
		switch {
		case !ok:
			v.line = append(v.line, r)
		case tidy && notStarted(c.State) && time.Since(time.Unix(c.Created, 0)) > q.stale:
			// Without force: a container that started after all stays.
			if err := q.d.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{}); err == nil {
				q.d.log.Warn("removed a job container a stopped pman created and never started; the job waits for its turn again", "jid", r.spec.JID)
			}
		}
	}
	v.line = fairOrder(v.line, byUser)
	return v, nil
}

// records returns the queued jobs of this deployment (JOB_LABELS) that
// have not failed, in no order.
func (q *dockerQueue) records(ctx context.Context) ([]queuedJob, error) {
	list, err := q.d.cli.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("label", labelPending))})
	if err != nil {
		return nil, engineError(err, "listing the queued jobs")
	}
	failed := map[string]bool{}
	for _, v := range list.Volumes {
		if _, ok := v.Labels[labelFailed]; ok {
			failed[v.Labels[labelPending]] = true
		}
	}
	var out []queuedJob
	for _, v := range list.Volumes {
		jid := v.Labels[labelPending]
		if v.Name != recordName(jid) || failed[jid] || !hasLabels(v.Labels, q.d.cfg.JobLabels) {
			continue
		}
		spec, err := recordSpec(v)
		if err != nil {
			q.d.log.Warn("a queued job's record is unreadable; it is left out of the queue", "volume", v.Name, "error", err)
			continue
		}
		arrival, err := strconv.ParseInt(v.Labels[labelQueued], 10, 64)
		if err != nil {
			// Recorded while its image was pulled, before JOB_CAPACITY
			// was set: it arrived when its record was made.
			t, _ := time.Parse(time.RFC3339Nano, v.CreatedAt)
			arrival = t.UnixNano()
		}
		out = append(out, queuedJob{spec: spec, arrival: arrival, created: v.CreatedAt})
	}
	return out, nil
}

// recordSpec returns the job a record v carries.
func recordSpec(v *volume.Volume) (*jobSpec, error) {
	var s jobSpec
	if err := json.Unmarshal([]byte(v.Labels[labelSpec]), &s); err != nil {
		return nil, err
	}
	if s.JID != v.Labels[labelPending] {
		return nil, fmt.Errorf("its spec is of job %q, its label of %q", s.JID, v.Labels[labelPending])
	}
	return &s, nil
}

// running returns what the job containers of this deployment that are
// created or running ask together, and every job container by jid.
func (q *dockerQueue) running(ctx context.Context) (resources, map[string]container.Summary, error) {
	f := filters.NewArgs(filters.Arg("label", jidLabel))
	for k, v := range q.d.cfg.JobLabels {
		f.Add("label", k+"="+v)
	}
	list, err := q.d.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return resources{}, nil, engineError(err, "listing the job containers")
	}
	var used resources
	conts := make(map[string]container.Summary, len(list))
	for _, c := range list {
		conts[c.Labels[jidLabel]] = c
		if !holds(c.State) {
			continue
		}
		used = used.add(q.asked(ctx, c))
	}
	return used, conts, nil
}

// asked returns what a job container asked: its labels, or for one started
// without admission (before JOB_CAPACITY was set) the limits it runs with.
func (q *dockerQueue) asked(ctx context.Context, c container.Summary) resources {
	if _, ok := c.Labels[labelCPU]; ok {
		n := func(k string) int64 { v, _ := strconv.ParseInt(c.Labels[k], 10, 64); return v }
		return resources{CPU: n(labelCPU), Memory: n(labelMemory), GPU: n(labelGPU)}
	}
	in, err := q.d.cli.ContainerInspect(ctx, c.ID)
	if err != nil || in.ContainerJSONBase == nil || in.HostConfig == nil {
		return resources{}
	}
	r := resources{CPU: in.HostConfig.NanoCPUs / 1_000_000, Memory: in.HostConfig.Memory >> 20}
	for _, d := range in.HostConfig.DeviceRequests {
		r.GPU += int64(max(d.Count, 0))
	}
	return r
}

// holds reports whether a container in state s holds what its job asked:
// any state but ended (Docker's exited and dead, Podman's stopped).
func holds(s container.ContainerState) bool {
	switch s {
	case container.StateExited, container.StateDead, "stopped":
		return false
	}
	return true
}

// notStarted reports whether a container in state s was never started
// (Docker's created, Podman's configured and initialized too).
func notStarted(s container.ContainerState) bool {
	return s == container.StateCreated || s == "configured" || s == "initialized"
}

// hasLabels reports whether l has every label of want.
func hasLabels(l, want map[string]string) bool {
	for k, v := range want {
		if l[k] != v {
			return false
		}
	}
	return true
}

// pass admits, in fair order, the queued jobs that fit, and stops at the
// first that does not (strict order). A job whose image is not there yet
// has its pull started, and does not hold up the line.
func (q *dockerQueue) pass(ctx context.Context) {
	q.passMu.Lock()
	defer q.passMu.Unlock()
	total, err := q.capacity(ctx)
	if err != nil {
		q.d.log.Warn("admission: the engine does not answer", "error", err)
		return
	}
	v, err := q.look(ctx, true)
	if err != nil {
		q.d.log.Warn("admission: the engine does not answer", "error", err)
		return
	}
	used := v.used
	images := map[string]bool{}
	waiting := map[string]int{}
	for _, j := range v.line {
		waiting[j.spec.Auid]++
	}
	defer func() { q.saw(total, used, waiting) }()
	for _, j := range v.line {
		have, known := images[j.spec.Image]
		if !known {
			if have, err = q.d.haveImage(ctx, j.spec.Image); err != nil {
				// Not a reason to pull: a pull that fails marks the job failed.
				q.d.log.Warn("admission: asking the engine for an image", "image", j.spec.Image, "error", err)
				return
			}
			images[j.spec.Image] = have
		}
		if !have {
			q.d.track(j.spec, false)
			continue
		}
		ask := jobAsks(j.spec)
		if !shortfall(total, used, ask).zero() {
			return
		}
		switch q.admit(ctx, total, j.spec) {
		case admitted:
			used = used.add(ask)
			waiting[j.spec.Auid]--
		case admitFailed:
			waiting[j.spec.Auid]--
		case admitLost:
			return
		}
	}
}

// admitOutcome is how one admission ended.
type admitOutcome int

const (
	admitted    admitOutcome = iota
	admitFailed              // the job can never run: its record says why
	admitLost                // another replica, a DELETE or the engine came between: the next pass looks again
)

// admit runs the three steps of the file's comment for the job j.
func (q *dockerQueue) admit(ctx context.Context, total resources, j *jobSpec) admitOutcome {
	d := q.d
	base, err := d.base.get(ctx)
	if err != nil {
		d.log.Warn("admission: the job store", "error", err)
		return admitLost
	}
	// Checked again, as finish does: a job may queue for hours, and the
	// directories the POST resolved may have been swapped for symlinks.
	rj, err := resolveJobDirs(base, j)
	if err != nil {
		d.markFailed(ctx, j.JID, err)
		return admitFailed
	}
	j = rj
	cfg, hostCfg := containerConfig(d.cfg, j, base)
	ask := jobAsks(j)
	cfg.Labels[labelCPU] = strconv.FormatInt(ask.CPU, 10)
	cfg.Labels[labelMemory] = strconv.FormatInt(ask.Memory, 10)
	cfg.Labels[labelGPU] = strconv.FormatInt(ask.GPU, 10)
	cfg.Labels[labelAuid] = j.Auid
	created, err := d.cli.ContainerCreate(ctx, cfg, hostCfg, nil, nil, j.JID)
	switch {
	case cerrdefs.IsConflict(err) || nameInUse(err):
		// Someone else's container of that name, made while the job
		// queued, would hold the jid for ever: the job can never run.
		if d.foreignHolds(ctx, j.JID) {
			d.markFailed(ctx, j.JID, nameTaken(j.JID, "container"))
			return admitFailed
		}
		return admitLost // another replica admits it
	case err != nil && isKind(engineError(err, ""), eUnavailable):
		d.log.Warn("admission: creating a job's container", "jid", j.JID, "error", err)
		return admitLost
	case err != nil:
		// The engine refuses the job's container (a 4xx): it never will take it.
		d.markFailed(ctx, j.JID, engineError(err, "creating container "+j.JID))
		return admitFailed
	}
	used, _, err := q.running(ctx)
	if err == nil && !over(total, used) {
		err = d.startAndClaim(ctx, j.JID, created.ID)
		switch {
		case err == nil:
			return admitted
		case isKind(err, eNotFound) || transient(err):
			// Removed under it (a DELETE, or a pass that took it for a
			// leftover), or the engine failed: the record says what is next.
			d.log.Warn("admission: starting a job", "jid", j.JID, "error", err)
			return admitLost
		}
		d.markFailed(ctx, j.JID, err)
		return admitFailed
	}
	// Another replica admitted at the same time, or the count failed: this
	// one backs off. Without force: it never started.
	if rmErr := d.cli.ContainerRemove(ctx, created.ID, container.RemoveOptions{}); rmErr != nil {
		d.log.Warn("admission: removing a container that was not started", "jid", j.JID, "error", rmErr)
	}
	return admitLost
}

// over reports whether used is more than total of a counted resource.
func over(total, used resources) bool {
	return total.CPU != uncounted && used.CPU > total.CPU ||
		total.Memory != uncounted && used.Memory > total.Memory ||
		total.GPU != uncounted && used.GPU > total.GPU
}

// saw keeps what a pass saw, for /metrics.
func (q *dockerQueue) saw(total, used resources, waiting map[string]int) {
	byUser := map[string]int{}
	for u, n := range waiting {
		if n > 0 {
			byUser[u] = n
		}
	}
	q.mu.Lock()
	q.seen = queueSeen{ok: true, total: total, used: used, byUser: byUser}
	q.mu.Unlock()
}

// rawCapacity returns JOB_CAPACITY as the operator wrote it, for messages.
func (c *config) rawCapacity() string {
	if c.Capacity == nil {
		return ""
	}
	return c.Capacity.String()
}

// String returns the setting in JOB_CAPACITY's syntax.
func (s *capacitySetting) String() string {
	var out string
	add := func(p string) {
		if out != "" {
			out += ","
		}
		out += p
	}
	if s.Auto {
		add("auto")
	}
	if s.Given.CPU != uncounted {
		add("cpu=" + cpuNum(s.Given.CPU))
	}
	if s.Given.Memory != uncounted {
		add(fmt.Sprintf("memory=%dMi", s.Given.Memory))
	}
	if s.Given.GPU != uncounted {
		add(fmt.Sprintf("gpu=%d", s.Given.GPU))
	}
	return out
}

// seenNow returns what the last pass saw; ok is false before the first.
func (q *dockerQueue) seenNow() queueSeen {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.seen
}

// ---- /metrics -----------------------------------------------------------------

// queueCollector reports a server's admission on /metrics, from what its
// last pass saw (README: Metrics).
type queueCollector struct {
	q                         *dockerQueue
	jobs, users, byUser       *prometheus.Desc
	cpus, memoryBytes, gpuNum *prometheus.Desc
}

// registerQueue adds the admission's metrics to m when sched admits by
// JOB_CAPACITY.
func registerQueue(m *metrics, sched scheduler) {
	d, ok := sched.(*dockerSched)
	if !ok || d.queue == nil {
		return
	}
	kind := []string{"kind"}
	m.reg.MustRegister(&queueCollector{
		q:           d.queue,
		jobs:        prometheus.NewDesc("pman_queue_jobs", "Jobs waiting for their turn (JOB_CAPACITY), as the last pass saw them.", nil, nil),
		users:       prometheus.NewDesc("pman_queue_users", "Users (auid) with jobs waiting for their turn.", nil, nil),
		byUser:      prometheus.NewDesc("pman_queue_jobs_by_user", "Jobs waiting for their turn, by auid.", []string{"auid"}, nil),
		cpus:        prometheus.NewDesc("pman_admission_cpus", "CPUs the admission counts: total (JOB_CAPACITY) and in_use (asked by created and running jobs).", kind, nil),
		memoryBytes: prometheus.NewDesc("pman_admission_memory_bytes", "Memory the admission counts, in bytes: total and in_use.", kind, nil),
		gpuNum:      prometheus.NewDesc("pman_admission_gpus", "GPUs the admission counts: total and in_use.", kind, nil),
	})
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.jobs, c.users, c.byUser, c.cpus, c.memoryBytes, c.gpuNum} {
		ch <- d
	}
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.q.seenNow()
	if !s.ok {
		return
	}
	n := 0
	for u, k := range s.byUser {
		n += k
		ch <- prometheus.MustNewConstMetric(c.byUser, prometheus.GaugeValue, float64(k), u)
	}
	ch <- prometheus.MustNewConstMetric(c.jobs, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(c.users, prometheus.GaugeValue, float64(len(s.byUser)))
	pair := func(d *prometheus.Desc, total, used int64, unit float64) {
		if total != uncounted {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(total)*unit, "total")
		}
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(used)*unit, "in_use")
	}
	pair(c.cpus, s.total.CPU, s.used.CPU, 1e-3)
	pair(c.memoryBytes, s.total.Memory, s.used.Memory, 1<<20)
	pair(c.gpuNum, s.total.GPU, s.used.GPU, 1)
}
