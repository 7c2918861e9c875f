package main

// How pman judges a Kubernetes Job: from its conditions, its pods and, where
// neither tells, its events. Pure functions of what the API server answered
// (and the time), so that every case can be tested without a cluster.

import (
	"fmt"
	"slices"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
)

// kubeGraces are how long each trouble that can pass may last before pman
// ends the job as finishedWithError. Each is measured from the pod's own times
// (or, with no pod yet, the Job's), as pman keeps no state. Without them
// a job that can never run would wait for activeDeadlineSeconds, a week, and
// pfcon with it (API.md forbids that).
type kubeGraces struct {
	// Pull: ErrImagePull, ImagePullBackOff, ErrImageNeverPull. The kubelet
	// retries with back-off up to 5 minutes, and a registry hiccup or rate
	// limit can pass.
	Pull time.Duration
	// Container: CreateContainerConfigError, CreateContainerError,
	// RunContainerError. Mostly a Secret or ConfigMap the pod names that does
	// not exist (yet: an operator may be creating it); the kubelet retries.
	Container time.Duration
	// Creating: a pod that stays in ContainerCreating with no image pull under
	// way, i.e. a volume that does not mount (NFS export missing, PVC not
	// attachable). The kubelet itself gives up a mount after about 2 minutes
	// and retries; attaching a cloud disk can take minutes.
	Creating time.Duration
	// Quota: the Job controller cannot create the pods for a reason that can
	// heal: a ResourceQuota exceeded (other jobs will finish), or an error of
	// the API server or a webhook. Refusals that cannot heal (Pod Security,
	// a LimitRange, a webhook that denies) end the job at once.
	Quota time.Duration
	// Unschedulable: a pod that no node can ever take (a PVC that does not
	// exist, a node selector no node matches). Long enough for a cluster
	// autoscaler to say it adds a node (its TriggeredScaleUp event).
	Unschedulable time.Duration
}

// kubeGrace holds the defaults that README.md states. No setting changes
// them; tests shorten them (the only reason this is a variable).
var kubeGrace = kubeGraces{
	Pull:          3 * time.Minute,
	Container:     time.Minute,
	Creating:      5 * time.Minute,
	Quota:         5 * time.Minute,
	Unschedulable: 30 * time.Second,
}

// pullFailures are the waiting reasons of a container whose image cannot be
// pulled. InvalidImageName never heals and ends the job at once.
var pullFailures = map[string]bool{
	"ErrImagePull":      true,
	"ImagePullBackOff":  true,
	"InvalidImageName":  true,
	"ErrImageNeverPull": true,
}

// kubeVerdict is what a GET answers about a Job.
type kubeVerdict struct {
	status, msg string
	at          time.Time // when it finished; zero until then
	// own is set when pman itself declares the Job failed, on evidence the
	// Job controller does not act on: the Job must then be stopped (stop).
	own bool
}

// jobStatus judges a Job from its conditions and counters, and from its pods
// and events where the Job alone hides the truth: it says Failed without
// saying the container ran out of memory, and says nothing at all of an
// image that cannot be pulled, a pod that cannot be scheduled or created,
// or a volume that does not mount. events is asked only in those cases.
func jobStatus(kj *batchv1.Job, pods []corev1.Pod, now time.Time, g kubeGraces, events eventLister) (kubeVerdict, error) {
	// pman's own verdict, once given, is final.
	if msg, ok := kj.Annotations[kubeFailedAnnotation]; ok {
		at, _ := time.Parse(time.RFC3339Nano, kj.Annotations[kubeFailedAtAnnotation])
		return kubeVerdict{status: statusError, msg: msg, at: at}, nil
	}
	// Kubernetes 1.33 adds SuccessCriteriaMet (FailureTarget) as soon as
	// the outcome is known and Complete (Failed) only once every pod has
	// terminated; either is the end for pfcon.
	if c := conditionOf(kj, batchv1.JobComplete, batchv1.JobSuccessCriteriaMet); c != nil {
		at := finishTime(kj, batchv1.JobComplete, batchv1.JobSuccessCriteriaMet)
		// On cgroup v1 the kernel kills only the process that went over the
		// limit: a shell around it may exit 0, the pod succeeds, and the
		// kubelet still says OOMKilled. The job did not do its work, as on
		// Docker (out of memory comes first).
		var oom []string
		for i := range pods {
			if msg, _, ok := podOOM(&pods[i]); ok {
				oom = append(oom, msg)
			}
		}
		if len(oom) > 0 {
			return kubeVerdict{status: statusError, msg: joinNotes(oom), at: at}, nil
		}
		return kubeVerdict{status: statusSuccess, msg: conditionText(c, "completed"), at: at}, nil
	}
	var fatal, notes []string
	var fatalAt time.Time
	own := true // every fatal note is pman's own evidence
	started, unscheduled := false, 0
	for i := range pods {
		n, err := inspectPod(&pods[i], now, g, events)
		if err != nil {
			return kubeVerdict{}, err
		}
		started = started || n.started
		if n.unscheduled {
			unscheduled++
		}
		switch {
		case n.text == "":
		case n.fatal:
			fatal = append(fatal, n.text)
			own = own && n.own
			if n.at.After(fatalAt) {
				fatalAt = n.at
			}
		default:
			notes = append(notes, n.text)
		}
	}
	if c := conditionOf(kj, batchv1.JobFailed, batchv1.JobFailureTarget); c != nil {
		return kubeVerdict{status: statusError, msg: joinNotes(append(fatal, conditionText(c, "failed"))),
			at: finishTime(kj, batchv1.JobFailed, batchv1.JobFailureTarget)}, nil
	}
	if len(fatal) > 0 {
		// With backoffLimit 0, one failed pod fails the Job: say so now,
		// with the reason the Job's condition will not carry. A pod that
		// cannot start does not fail the Job: pman does (own).
		v := kubeVerdict{status: statusError, msg: joinNotes(fatal), at: fatalAt, own: own}
		if own || v.at.IsZero() {
			v.at = now
		}
		return v, nil
	}
	st := kj.Status
	switch {
	case st.Succeeded > 0 || st.Failed > 0 || started:
		if len(notes) == 0 {
			return kubeVerdict{status: statusStarted, msg: "running"}, nil
		}
		return kubeVerdict{status: statusStarted, msg: "running; " + joinNotes(notes)}, nil
	case len(pods) > 0 && unscheduled == len(pods):
		return kubeVerdict{status: statusNotStarted, msg: joinNotes(notes)}, nil
	case len(pods) == 0 && st.Active > 0:
		// Pods not looked at (or gone): the Job's word, as pman 6 took it.
		return kubeVerdict{status: statusStarted, msg: "running"}, nil
	case len(notes) > 0:
		return kubeVerdict{status: statusNotStarted, msg: joinNotes(notes)}, nil
	case len(pods) > 0:
		return kubeVerdict{status: statusNotStarted, msg: "pods created, waiting to start"}, nil
	}
	return createTrouble(kj, now, g, events)
}

// createTrouble judges a Job with no pod, no counter and no condition. Right
// after creation that is a job about to start, not an unknown state
// (pman#225 reported such jobs as undefined). Later it is a Job controller
// that cannot create the pods, which only its FailedCreate events say:
// refused by Pod Security admission, a LimitRange, a webhook, a quota.
func createTrouble(kj *batchv1.Job, now time.Time, g kubeGraces, events eventLister) (kubeVerdict, error) {
	evs, err := events(kj)
	if err != nil {
		return kubeVerdict{}, err
	}
	var last *corev1.Event
	for i := range evs {
		if evs[i].Reason == "FailedCreate" {
			last = &evs[i]
		}
	}
	if last == nil {
		return kubeVerdict{status: statusNotStarted, msg: "submitted, waiting for the Job controller"}, nil
	}
	why := strings.TrimPrefix(strings.TrimSpace(last.Message), "Error creating: ")
	if createCanHeal(why) {
		if d := now.Sub(kj.CreationTimestamp.Time); d < g.Quota {
			return kubeVerdict{status: statusNotStarted, msg: fmt.Sprintf(
				"the Job controller cannot create pods yet: %s (the job fails if this lasts %s)", why, g.Quota)}, nil
		}
		return kubeVerdict{status: statusError, at: now, own: true, msg: fmt.Sprintf(
			"the Job controller could not create pods for %s: %s", now.Sub(kj.CreationTimestamp.Time).Round(time.Second), why)}, nil
	}
	return kubeVerdict{status: statusError, at: now, own: true, msg: "the Job controller cannot create pods: " + why}, nil
}

// createCanHeal reports whether msg is a refusal that may pass (a quota
// exceeded, an API server or webhook that failed) from one that never will: the
// API server's "forbidden" (Pod Security, a LimitRange, a quota that requires
// limits the job lacks), "invalid", or a webhook's denial.
func createCanHeal(msg string) bool {
	if strings.Contains(msg, "exceeded quota") {
		return true
	}
	for _, never := range []string{" is forbidden: ", " is invalid: ", " denied the request"} {
		if strings.Contains(msg, never) {
			return false
		}
	}
	return true
}

// podNote is what one pod says about the job.
type podNote struct {
	text        string
	fatal       bool      // the job cannot succeed any more
	own         bool      // ...on evidence only pman acts on (see kubeVerdict)
	at          time.Time // when a fatal end happened, if known
	started     bool      // a container of it ran (or runs)
	unscheduled bool
}

// containerNeverCreated are the waiting reasons of a container the kubelet
// could not create or start.
var containerNeverCreated = map[string]bool{
	"CreateContainerConfigError": true,
	"CreateContainerError":       true,
	"RunContainerError":          true,
}

func inspectPod(p *corev1.Pod, now time.Time, g kubeGraces, events eventLister) (podNote, error) {
	n := podNote{started: containerStarted(p) || p.Status.Phase == corev1.PodRunning ||
		p.Status.Phase == corev1.PodSucceeded}
	since := podSince(p)
	if msg, at, ok := podOOM(p); ok {
		n.text, n.fatal, n.at = msg, true, at
		return n, nil
	}
	for _, cs := range p.Status.ContainerStatuses {
		if t := cs.State.Terminated; t != nil && t.ExitCode != 0 {
			n.fatal, n.at = true, t.FinishedAt.Time
			if limit := memoryLimitMiB(p); t.ExitCode == 137 && limit > 0 {
				// Killed by SIGKILL under a memory limit, and the kubelet
				// did not say OOMKilled: most likely the memory all the same.
				n.text = fmt.Sprintf("pod %s: %s", p.Name, outOfMemory(limit, false))
				return n, nil
			}
			n.text = fmt.Sprintf("pod %s: the container exited with code %d", p.Name, t.ExitCode)
			if t.Reason != "" {
				n.text += " (" + t.Reason + ")"
			}
			if t.Message != "" {
				n.text += ": " + strings.TrimSpace(t.Message)
			}
			return n, nil
		}
		w := cs.State.Waiting
		if w == nil {
			continue
		}
		var grace time.Duration
		switch {
		case w.Reason == "InvalidImageName":
			// Never heals: no grace.
			n.text = fmt.Sprintf("pod %s: cannot pull image %s: %s", p.Name, cs.Image, reasonText(w.Reason, w.Message))
		case pullFailures[w.Reason]:
			n.text = fmt.Sprintf("pod %s: cannot pull image %s: %s", p.Name, cs.Image, reasonText(w.Reason, w.Message))
			grace = g.Pull
		case containerNeverCreated[w.Reason]:
			n.text = fmt.Sprintf("pod %s: the container cannot be created: %s", p.Name, reasonText(w.Reason, w.Message))
			grace = g.Container
		default:
			continue
		}
		waited := now.Sub(since)
		if grace > 0 && (since.IsZero() || waited < grace) {
			n.text += fmt.Sprintf(" (the job fails if this lasts %s)", grace)
			return n, nil
		}
		if grace > 0 {
			n.text += fmt.Sprintf(" (for %s)", waited.Round(time.Second))
		}
		n.fatal, n.own = true, true
		return n, nil
	}
	if p.Status.Phase == corev1.PodFailed {
		n.text = fmt.Sprintf("pod %s failed: %s", p.Name, reasonText(p.Status.Reason, p.Status.Message))
		n.fatal = true
		return n, nil
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			n.unscheduled = true
			n.text = fmt.Sprintf("pod %s cannot be scheduled: %s", p.Name, reasonText(c.Reason, c.Message))
			if !neverSchedulable(c.Message) || now.Sub(c.LastTransitionTime.Time) < g.Unschedulable {
				return n, nil
			}
			evs, err := events(p)
			if err != nil {
				return n, err
			}
			for _, e := range evs {
				if e.Reason == "TriggeredScaleUp" {
					n.text += " (the cluster autoscaler is adding a node: " + strings.TrimSpace(e.Message) + ")"
					return n, nil
				}
			}
			n.fatal, n.own = true, true
			return n, nil
		}
	}
	if !n.started {
		w := waitingReason(p)
		if w != "" {
			n.text = fmt.Sprintf("pod %s: %s", p.Name, w)
		}
		if w == "ContainerCreating" && !since.IsZero() && now.Sub(since) >= g.Creating {
			return stuckCreating(p, n, now.Sub(since), events)
		}
	}
	return n, nil
}

// podOOM returns what to say of a pod whose container the kubelet reports
// OOMKilled, and when that container ended; ok is false for any other pod.
func podOOM(p *corev1.Pod) (msg string, at time.Time, ok bool) {
	for _, cs := range p.Status.ContainerStatuses {
		for _, t := range []*corev1.ContainerStateTerminated{cs.State.Terminated, cs.LastTerminationState.Terminated} {
			if t != nil && t.Reason == "OOMKilled" {
				return fmt.Sprintf("pod %s: %s (OOMKilled, exit code %d)", p.Name, outOfMemory(memoryLimitMiB(p), true), t.ExitCode), t.FinishedAt.Time, true
			}
		}
	}
	return "", time.Time{}, false
}

// stuckCreating judges a pod that has been in ContainerCreating longer than
// its grace. While an image is being pulled (the kubelet mounts the volumes
// first) it may go on: a big image takes its time. Otherwise a volume does
// not mount, and its FailedMount event, when there is one, says why.
func stuckCreating(p *corev1.Pod, n podNote, waited time.Duration, events eventLister) (podNote, error) {
	evs, err := events(p)
	if err != nil {
		return n, err
	}
	pulling, why := false, ""
	for _, e := range evs {
		switch e.Reason {
		case "Pulling":
			pulling = true
		case "Pulled", "Failed", "BackOff":
			pulling = false
		case "FailedMount", "FailedAttachVolume", "FailedMapVolume":
			why = e.Reason + ": " + strings.TrimSpace(e.Message)
		}
	}
	if pulling {
		n.text += " (pulling the image)"
		return n, nil
	}
	if why == "" {
		why = "no event says why"
	}
	n.text = fmt.Sprintf("pod %s: stuck in ContainerCreating for %s: %s", p.Name, waited.Round(time.Second), why)
	n.fatal, n.own = true, true
	return n, nil
}

// neverSchedulable reports whether msg is a scheduler's message that no wait
// can change from one where resources may free up or be added (Insufficient
// cpu): a PVC that does not exist, or every node refusing the pod for a
// reason of its own that stays (finalNodeReason), whatever the mix.
//
//	0/3 nodes are available: persistentvolumeclaim "x" not found. preemption: ...
//	0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. preemption: ...
//	0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {k: v}. preemption: ...
func neverSchedulable(msg string) bool {
	_, rest, ok := strings.Cut(msg, "nodes are available: ")
	if !ok {
		return false
	}
	rest, _, _ = strings.Cut(rest, " preemption:")
	rest = strings.TrimSuffix(strings.TrimSpace(rest), ".")
	if strings.HasPrefix(rest, "persistentvolumeclaim \"") && strings.HasSuffix(rest, "\" not found") {
		return true
	}
	for _, r := range strings.Split(rest, ", ") {
		if !finalNodeReason(r) {
			return false
		}
	}
	return true
}

// transientTaints are the taint keys that Kubernetes and the cluster
// autoscaler put on a node and take off again by themselves (a node not
// ready yet, cordoned, under pressure, being removed), by prefix.
var transientTaints = []string{
	"node.kubernetes.io/",
	"node.cloudprovider.kubernetes.io/",
	"ToBeDeletedByClusterAutoscaler",
	"DeletionCandidateOfClusterAutoscaler",
}

// finalNodeReason reports whether r, one "N node(s) ..." part of a
// scheduler's message, is a refusal that stays: labels that do not match
// the pod's node selector, or a taint the pod does not tolerate that an
// operator put there (a control-plane node's, a reserved pool's). pman's
// pods carry no tolerations, so only the operator can lift such a taint;
// the scheduler names just the first filter a node fails, so a tainted node
// that would not match the selector either says only "taint".
func finalNodeReason(r string) bool {
	if strings.HasSuffix(r, "node(s) didn't match Pod's node affinity/selector") {
		return true
	}
	_, taint, ok := strings.Cut(r, "node(s) had untolerated taint {")
	if !ok {
		return false
	}
	key, _, _ := strings.Cut(taint, ":")
	for _, p := range transientTaints {
		if strings.HasPrefix(key, p) {
			return false
		}
	}
	return true
}

// podSince is when the pod began trying: the kubelet's start of it, or its
// creation. Measured from the pod's own times, as pman keeps no state.
func podSince(p *corev1.Pod) time.Time {
	if p.Status.StartTime != nil {
		return p.Status.StartTime.Time
	}
	return p.CreationTimestamp.Time
}

// memoryLimitMiB is the memory limit of the pod's container in MiB, or 0.
func memoryLimitMiB(p *corev1.Pod) int {
	if len(p.Spec.Containers) == 0 {
		return 0
	}
	q, ok := p.Spec.Containers[0].Resources.Limits[corev1.ResourceMemory]
	if !ok {
		return 0
	}
	return int(q.Value() >> 20)
}

// containerStarted is true when the pod's container has run, so it may
// have logs.
func containerStarted(p *corev1.Pod) bool {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.State.Running != nil || cs.State.Terminated != nil || cs.LastTerminationState.Terminated != nil {
			return true
		}
	}
	return false
}

// waitingReason is why a pod's container is not running yet, or "".
func waitingReason(p *corev1.Pod) string {
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && w.Reason != "" {
			return reasonText(w.Reason, w.Message)
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			return "not scheduled: " + reasonText(c.Reason, c.Message)
		}
	}
	return ""
}

// waitingText is the log part of a pod that has no log yet.
func waitingText(p *corev1.Pod) string {
	w := waitingReason(p)
	if w == "" {
		w = "pod " + strings.ToLower(string(p.Status.Phase))
		if p.Status.Phase == "" {
			w = "pod created"
		}
	}
	return "(no logs yet: " + w + ")\n"
}

func reasonText(reason, message string) string {
	message = strings.TrimSpace(message)
	switch {
	case reason == "":
		return message
	case message == "":
		return reason
	}
	return reason + ": " + message
}

// joinNotes keeps a message readable when many pods say the same.
func joinNotes(notes []string) string {
	const most = 3
	if len(notes) > most {
		return strings.Join(notes[:most], "; ") + fmt.Sprintf("; and %d more", len(notes)-most)
	}
	return strings.Join(notes, "; ")
}

// conditionOf is the first of the Job's conditions of these types that is
// True, or nil.
func conditionOf(kj *batchv1.Job, types ...batchv1.JobConditionType) *batchv1.JobCondition {
	for i, c := range kj.Status.Conditions {
		if c.Status == corev1.ConditionTrue && slices.Contains(types, c.Type) {
			return &kj.Status.Conditions[i]
		}
	}
	return nil
}

func conditionText(c *batchv1.JobCondition, def string) string {
	if t := reasonText(c.Reason, c.Message); t != "" {
		return t
	}
	return def
}

// finishTime is when the first of these conditions that is True was set.
func finishTime(kj *batchv1.Job, kinds ...batchv1.JobConditionType) time.Time {
	for _, t := range kinds {
		if c := conditionOf(kj, t); c != nil {
			return c.LastTransitionTime.Time
		}
	}
	return time.Time{}
}

// kubeTimestamp is the answer's timestamp: when the job finished, or "".
func kubeTimestamp(at time.Time) string {
	if at.IsZero() {
		return ""
	}
	return at.UTC().Format(time.RFC3339Nano)
}
