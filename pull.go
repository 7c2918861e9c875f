package main

// Pulls that outlive the POST (Docker and Podman backends).
//
// pfcon gives a POST 100 s; a multi-GB plugin image takes longer to pull.
// So a POST whose image the engine lacks waits at most postPullWait for the
// pull, then answers 201 notstarted, and the job is created and started
// when the pull ends, whoever asks or not.
//
// pman keeps no state and may restart at any moment, so the accepted job
// must live in the engine, not here. Its record is a Docker volume,
// "pman-pending-<hash of the jid>", labelled with the jid and carrying the
// job's whole spec as JSON in a label. A volume was chosen because it is the
// one engine object that needs no image (a placeholder container would need
// one), costs an empty directory (a network would take a subnet from the
// pool) and has labels on Docker and on Podman's compatible API alike. It is
// found by an exact label match, never by an ID prefix, and the container
// named jid is always looked up first.
//
// The life of a pending job:
//   - POST creates the record. The engine answers a second create of the
//     same name with the volume that exists, labels and all, so a nonce
//     label tells the creator from a second POST of the jid (a 409).
//   - A tracked job (pendingJob) joins the one pull of its image that this
//     process runs (pull), and when the pull ends, creates the container
//     named jid, removes the record, and starts the container (finish).
//     Name uniqueness makes the create safe between replicas; the record's
//     removal, which only one caller can win, is the claim that lets the
//     creator start it. A record gone by then was removed by DELETE: the
//     container just created is removed again.
//   - A failed pull (or a create the engine refuses) leaves the record and
//     adds a second volume, "pman-failed-<hash>", whose label is the
//     message: GET answers finishedWithError with it, on any replica, after
//     any restart, until DELETE.
//   - A record nobody in this process tracks (pman restarted, or another
//     replica accepted the job) is resumed at its first GET: pfcon polls
//     every job until it ends.
//   - With JOB_CAPACITY the record is also the job's place in the queue:
//     a pulled job waits for its turn instead (docker_queue.go).

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/pkg/jsonmessage"
)

// postPullWait is how long a POST waits for a pull before it answers
// notstarted. A pull done by then runs the job at once, and a pull that
// fails by then is answered as the POST's error, as before pulls were
// detached. Far below pfcon's 100 s, and below the 30 s a POST promises
// with the engine calls around it. Read once per server (newDocker); tests
// shorten it before they start one.
var postPullWait = 10 * time.Second

// maxPull bounds one pull: a registry that stalls or trickles must not keep
// a job notstarted for ever. Three hours moves 10 GB at 8 Mbit/s.
const maxPull = 3 * time.Hour

// pullStarted and pullEnded are the one place where a pull begins and ends;
// they keep the gauge pman_image_pulls_in_progress (metrics.go).
func pullStarted(ref string) { pullsInProgress.Inc() }

func pullEnded(ref string, err error) { pullsInProgress.Dec() }

// Labels of the pending records.
const (
	labelPending = "org.chrisproject.pman.pending" // the jid, on the record and the failure
	labelSpec    = "org.chrisproject.pman.spec"    // the jobSpec as JSON
	labelNonce   = "org.chrisproject.pman.nonce"   // who created the record
	labelFailed  = "org.chrisproject.pman.failed"  // why the job can never run
)

// recordName and failedName are the volumes of a pending job: hashed,
// because a jid may be longer than a volume's directory name may be.
func recordName(jid string) string { return "pman-pending-" + jidHash(jid) }
func failedName(jid string) string { return "pman-failed-" + jidHash(jid) }

func jidHash(jid string) string {
	h := sha256.Sum256([]byte(jid))
	return hex.EncodeToString(h[:16])
}

// ---- the pulls --------------------------------------------------------------

// pull is one ImagePull of an image, shared by every job that waits for it.
type pull struct {
	ref    string
	cancel context.CancelFunc
	done   chan struct{} // closed when the pull ended; err is set then
	err    error

	mu      sync.Mutex
	waiters int // jobs that joined and did not leave
	layers  map[string]*layerProgress
	order   []string
}

type layerProgress struct {
	current, total int64
	done           bool
}

// observe records one message of the pull's progress stream.
func (p *pull) observe(m *jsonmessage.JSONMessage) {
	if m.ID == "" || strings.HasPrefix(m.Status, "Pulling from") {
		return // the image's lines, not a layer's: its tag is the ID
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.layers[m.ID]
	if l == nil {
		l = &layerProgress{}
		p.layers[m.ID] = l
		p.order = append(p.order, m.ID)
	}
	switch {
	case m.Status == "Downloading" && m.Progress != nil:
		l.current, l.total = m.Progress.Current, m.Progress.Total
	case m.Status == "Download complete", m.Status == "Pull complete", m.Status == "Already exists",
		strings.HasPrefix(m.Status, "Extracting"), strings.HasPrefix(m.Status, "Verifying"):
		l.done = true
		if l.total > 0 {
			l.current = l.total
		}
	}
}

// progress returns how far the pull is: layers done of those announced, and
// bytes downloaded of those known (a layer's size is known once it starts).
func (p *pull) progress() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.layers) == 0 {
		return "starting"
	}
	var done int
	var cur, total int64
	for _, l := range p.layers {
		if l.done {
			done++
		}
		cur += l.current
		total += l.total
	}
	if total == 0 {
		// Podman's pull stream names the layers but never their sizes.
		return fmt.Sprintf("%d of %d layers done", done, len(p.layers))
	}
	return fmt.Sprintf("%d of %d layers done, %s of %s downloaded", done, len(p.layers), mib(cur), mib(total))
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// joinPull returns the running pull of ref, starting one if none runs; the
// caller holds d.mu. The pull runs under the server's context, not the
// request's: it outlives the POST. The caller must leavePull when it no
// longer waits.
func (d *dockerSched) joinPull(ref string) *pull {
	if p := d.pulls[ref]; p != nil {
		p.mu.Lock()
		p.waiters++
		p.mu.Unlock()
		return p
	}
	ctx, cancel := context.WithTimeout(d.bg, maxPull)
	p := &pull{ref: ref, cancel: cancel, done: make(chan struct{}), waiters: 1, layers: map[string]*layerProgress{}}
	d.pulls[ref] = p
	go func() {
		pullStarted(ref)
		d.log.Info("pulling image", "image", ref)
		start := time.Now()
		err := d.pullImage(ctx, p)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = errorf(eUnavailable, "pulling image %q: not done after %s, pman gave up", ref, maxPull)
		}
		pullEnded(ref, err)
		if err != nil {
			d.log.Warn("pulling image failed", "image", ref, "duration", time.Since(start).String(), "error", err)
		} else {
			d.log.Info("image pulled", "image", ref, "duration", time.Since(start).String())
		}
		d.mu.Lock()
		if d.pulls[ref] == p {
			delete(d.pulls, ref)
		}
		d.mu.Unlock()
		p.err = err
		close(p.done)
		cancel()
	}()
	return p
}

// leavePull records that a job no longer waits for p; the last one to leave a
// pull that is still running cancels it (DELETE of its only job), and a job
// that comes later starts a new one.
func (d *dockerSched) leavePull(p *pull) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p.mu.Lock()
	p.waiters--
	last := p.waiters == 0
	p.mu.Unlock()
	if last {
		if d.pulls[p.ref] == p {
			delete(d.pulls, p.ref)
		}
		p.cancel()
	}
}

func (d *dockerSched) pullImage(ctx context.Context, p *pull) error {
	rc, err := d.cli.ImagePull(ctx, p.ref, image.PullOptions{})
	if err != nil {
		// An unreachable registry is the engine's 500: a 503, retryable.
		return engineError(err, fmt.Sprintf("pulling image %q (not on the engine)", p.ref))
	}
	return drainPull(rc, p.ref, p.observe)
}

// haveImage reports whether the engine has the image; ContainerCreate itself
// never pulls.
func (d *dockerSched) haveImage(ctx context.Context, ref string) (bool, error) {
	_, err := d.cli.ImageInspect(ctx, ref)
	switch {
	case err == nil:
		return true, nil
	case cerrdefs.IsInvalidArgument(err):
		return false, fieldError("image", fmt.Sprintf("%q: %v", ref, err))
	case !cerrdefs.IsNotFound(err):
		return false, engineError(err, fmt.Sprintf("inspecting image %q", ref))
	}
	return false, nil
}

// ---- the pending jobs -------------------------------------------------------

// pendingJob is a job of this process that waits for its image.
type pendingJob struct {
	spec   *jobSpec
	ctx    context.Context // cancelled by DELETE
	pull   *pull
	cancel context.CancelFunc
	done   chan struct{} // closed when the job left the pending state, however

	mu          sync.Mutex
	postWaiting bool  // the POST still waits: a failure is its answer
	err         error // the failure handed to the waiting POST
}

// record is a pending job as the engine keeps it.
type record struct {
	spec      *jobSpec
	created   string
	failed    bool
	failure   string
	failStamp string
}

// findRecord returns the pending record of jid, or nil.
func (d *dockerSched) findRecord(ctx context.Context, jid string) (*record, error) {
	list, err := d.cli.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("label", labelPending+"="+jid))})
	if err != nil {
		return nil, engineError(err, "listing the pending records of "+jid)
	}
	var rec record
	found := false
	for _, v := range list.Volumes {
		switch v.Name {
		case recordName(jid):
			var s jobSpec
			if err := json.Unmarshal([]byte(v.Labels[labelSpec]), &s); err != nil || s.JID != jid {
				return nil, errorf(eInternal, "volume %s: the job's spec is unreadable: %v", v.Name, err)
			}
			rec.spec, rec.created, found = &s, v.CreatedAt, true
		case failedName(jid):
			rec.failed, rec.failure, rec.failStamp = true, v.Labels[labelFailed], v.CreatedAt
		}
	}
	if !found {
		return nil, nil
	}
	return &rec, nil
}

// createPending records j in the engine, starts (or joins) its image's
// pull, and answers within postPullWait: the job's container if the pull
// ended by then, the pull's error if it failed by then (the job is then not
// accepted, and nothing is left), or else notstarted with the progress.
func (d *dockerSched) createPending(ctx context.Context, j *jobSpec) (*job, error) {
	created, err := d.createRecord(ctx, j)
	if err != nil {
		return nil, err
	}
	pj := d.track(j, true)
	if pj == nil {
		// Our record (the nonce is ours) was resumed by a GET between its
		// creation and now: the job is accepted, and followed.
		return pendingAnswer(j, d.trackedPull(j.JID), created), nil
	}
	timer := time.NewTimer(d.postWait)
	defer timer.Stop()
	select {
	case <-pj.done:
	case <-timer.C:
	case <-ctx.Done():
	}
	pj.mu.Lock()
	pj.postWaiting = false
	failure := pj.err
	pj.mu.Unlock()
	if failure != nil {
		rmCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		d.removeRecords(rmCtx, j.JID)
		return nil, failure
	}
	select {
	case <-pj.done:
		if c, err := d.inspect(ctx, j.JID); err == nil {
			return containerJob(j.JID, c), nil
		}
		if d.queue != nil {
			// Pulled, and waiting for its turn (docker_queue.go).
			return d.queue.answer(ctx, &record{spec: j, created: created}), nil
		}
	default:
	}
	return pendingAnswer(j, pj.pull, created), nil
}

// createRecord records j in the engine (with its place in the queue when
// JOB_CAPACITY is set) and returns the record's creation time; a record of
// the jid already there is an eConflict error.
func (d *dockerSched) createRecord(ctx context.Context, j *jobSpec) (created string, err error) {
	spec, err := json.Marshal(j)
	if err != nil {
		return "", errorf(eInternal, "encoding the job: %v", err)
	}
	nonce := rand.Text()
	labels := map[string]string{labelPending: j.JID, labelSpec: string(spec), labelNonce: nonce}
	maps.Copy(labels, d.queueLabels(j))
	v, err := d.cli.VolumeCreate(ctx, volume.CreateOptions{Name: recordName(j.JID), Labels: labels})
	if err != nil {
		return "", engineError(err, "recording job "+j.JID+" while it waits for its image or its turn")
	}
	if v.Labels[labelNonce] != nonce {
		return "", errorf(eConflict, "a job named %q already exists (waiting for its image or its turn)", j.JID)
	}
	return v.CreatedAt, nil
}

// pendingAnswer is the job object of a job waiting for its image.
func pendingAnswer(j *jobSpec, p *pull, created string) *job {
	msg := fmt.Sprintf("waiting for image %s to be pulled", j.Image)
	if p != nil {
		msg = fmt.Sprintf("pulling image %s: %s", j.Image, p.progress())
	}
	return &job{JID: j.JID, Image: j.Image, Cmd: strings.Join(j.Cmd, " "), Status: statusNotStarted, Message: msg, Timestamp: created}
}

// getPending returns a job that has no container: pending, failed, or
// unknown (eNotFound). A pending job nobody here tracks is resumed.
func (d *dockerSched) getPending(ctx context.Context, jid string) (*job, error) {
	rec, err := d.findRecord(ctx, jid)
	if err != nil {
		return nil, err
	}
	if rec == nil {
		return nil, errorf(eNotFound, "no job %q", jid)
	}
	if rec.failed {
		return &job{JID: jid, Image: rec.spec.Image, Cmd: strings.Join(rec.spec.Cmd, " "),
			Status: statusError, Message: rec.failure, Timestamp: rec.failStamp}, nil
	}
	if d.queue != nil {
		return d.queue.answer(ctx, rec), nil
	}
	d.track(rec.spec, false)
	return pendingAnswer(rec.spec, d.trackedPull(jid), rec.created), nil
}

// trackedPull returns the pull that this process follows for jid, or nil.
func (d *dockerSched) trackedPull(jid string) *pull {
	d.mu.Lock()
	defer d.mu.Unlock()
	if pj := d.jobs[jid]; pj != nil {
		return pj.pull
	}
	return nil
}

// track starts following j's pull in this process, unless it already does
// (then nil). A job DELETE cancelled may still wind down: it is replaced.
func (d *dockerSched) track(j *jobSpec, postWaiting bool) *pendingJob {
	d.mu.Lock()
	if pj := d.jobs[j.JID]; pj != nil && pj.ctx.Err() == nil {
		d.mu.Unlock()
		return nil
	}
	ctx, cancel := context.WithCancel(d.bg)
	pj := &pendingJob{spec: j, ctx: ctx, cancel: cancel, done: make(chan struct{}), postWaiting: postWaiting}
	// Set before pj is seen: trackedPull reads it under d.mu.
	pj.pull = d.joinPull(j.Image)
	d.jobs[j.JID] = pj
	d.mu.Unlock()
	go d.await(ctx, pj)
	return pj
}

// await waits for pj's pull and then runs the job, or records why it
// cannot run.
func (d *dockerSched) await(ctx context.Context, pj *pendingJob) {
	jid := pj.spec.JID
	defer func() {
		d.mu.Lock()
		if d.jobs[jid] == pj {
			delete(d.jobs, jid)
		}
		d.mu.Unlock()
		pj.cancel()
		close(pj.done)
	}()
	select {
	case <-pj.pull.done:
	case <-ctx.Done():
		// DELETE, or the server stops: the record stays for the next one.
		d.leavePull(pj.pull)
		return
	}
	d.leavePull(pj.pull)
	err := pj.pull.err
	if err == nil {
		// The create, claim and start run to their end even when the
		// server stops: stopping between them would leave a created
		// container that nobody starts.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		err = d.pulled(fctx, pj.spec)
		if transient(err) {
			// The engine failed, not the job: the record stays, and the
			// next GET follows it again (the image is there by now).
			d.log.Warn("running a job whose image was pulled (the next GET tries again)", "jid", jid, "error", err)
			return
		}
	}
	if err == nil || ctx.Err() != nil {
		return
	}
	pj.mu.Lock()
	defer pj.mu.Unlock()
	if pj.postWaiting {
		pj.err = err
		return
	}
	d.log.Warn("a pending job can never run", "jid", jid, "image", pj.spec.Image, "error", err)
	d.markFailed(ctx, jid, err)
}

// finish creates the job's container, claims the record and starts it.
// A container another replica created first is left to it (nil).
func (d *dockerSched) finish(ctx context.Context, j *jobSpec) error {
	base, err := d.base.get(ctx)
	if err != nil {
		return err
	}
	// Checked again: a pull may take hours, and the directories the POST
	// resolved may have been swapped for symlinks since.
	if j, err = resolveJobDirs(base, j); err != nil {
		return err
	}
	config, hostConfig := containerConfig(d.cfg, j, base)
	created, err := d.cli.ContainerCreate(ctx, config, hostConfig, nil, nil, j.JID)
	if cerrdefs.IsConflict(err) || nameInUse(err) {
		// Someone else's container of that name (made during the pull)
		// would hold the jid for ever: the job can never run.
		if d.foreignHolds(ctx, j.JID) {
			return nameTaken(j.JID, "container")
		}
		return nil
	}
	if err != nil {
		return engineError(err, "creating container "+j.JID)
	}
	return d.startAndClaim(ctx, j.JID, created.ID)
}

// startAndClaim starts the container id of the pending job jid, then
// claims its record: only one caller removes it, and one that finds it
// gone lost it to a DELETE, so the container goes too. The start comes
// first: a start that fails leaves the record, which then carries the
// failure (markFailed), instead of a job that vanished.
func (d *dockerSched) startAndClaim(ctx context.Context, jid, id string) error {
	if err := d.start(ctx, jid, id); err != nil {
		return startFailure{err}
	}
	// Never with force: the engine answers a forced removal of a volume
	// that is not there with success.
	if err := d.cli.VolumeRemove(ctx, recordName(jid), false); err != nil {
		if rmErr := d.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true}); rmErr != nil {
			d.log.Warn("removing the container of a job deleted while it started", "jid", jid, "error", rmErr)
		}
		if cerrdefs.IsNotFound(err) {
			return nil
		}
		return engineError(err, "removing the pending record of "+jid)
	}
	d.log.Info("started a job that waited for its image or its turn", "jid", jid)
	return nil
}

// startFailure is a container of a pulled job that would not start. The
// engine words most such failures as its 500 (no GPU driver, a bad mount),
// but they are the job's: retrying them would keep it notstarted for ever.
type startFailure struct{ err error }

func (e startFailure) Error() string { return e.err.Error() }
func (e startFailure) Unwrap() error { return e.err }

// transient reports whether err, from running a pulled job, is the engine's
// passing failure rather than the job's: the record then stays for the
// next GET to try again.
func transient(err error) bool {
	return isKind(err, eUnavailable) && !errors.As(err, new(startFailure))
}

// markFailed records in the engine why the pending job jid can never run.
func (d *dockerSched) markFailed(ctx context.Context, jid string, why error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	_, err := d.cli.VolumeCreate(ctx, volume.CreateOptions{
		Name:   failedName(jid),
		Labels: map[string]string{labelPending: jid, labelFailed: why.Error()},
	})
	if err != nil {
		d.log.Warn("recording a failed pull (the next GET pulls again)", "jid", jid, "error", err)
		return
	}
	// A DELETE between the failure and now removed the record: the mark
	// goes too.
	if _, err := d.cli.VolumeInspect(ctx, recordName(jid)); cerrdefs.IsNotFound(err) {
		d.cli.VolumeRemove(ctx, failedName(jid), false)
	}
}

// removePending cancels jid's pull if this process follows it and removes
// its records; found says whether there was a record.
func (d *dockerSched) removePending(ctx context.Context, jid string) (found bool, err error) {
	d.mu.Lock()
	if pj := d.jobs[jid]; pj != nil {
		pj.cancel()
	}
	d.mu.Unlock()
	return d.removeRecords(ctx, jid)
}

func (d *dockerSched) removeRecords(ctx context.Context, jid string) (found bool, err error) {
	for _, name := range []string{recordName(jid), failedName(jid)} {
		switch err := d.cli.VolumeRemove(ctx, name, false); {
		case err == nil:
			found = true
		case !cerrdefs.IsNotFound(err):
			return found, engineError(err, "removing the pending record of "+jid)
		}
	}
	return found, nil
}
