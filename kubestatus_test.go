package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func cond(typ batchv1.JobConditionType, status corev1.ConditionStatus, reason, msg string) batchv1.JobCondition {
	return batchv1.JobCondition{Type: typ, Status: status, Reason: reason, Message: msg, LastTransitionTime: metav1.NewTime(t0)}
}

func kjob(st batchv1.JobStatus) *batchv1.Job {
	return &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "chris-jid-7", Labels: map[string]string{jidLabel: "chris-jid-7"}, CreationTimestamp: metav1.NewTime(t0)}, Status: st}
}

// kpod is a pod started at t0 with the given phase and container state.
func kpod(name string, phase corev1.PodPhase, state corev1.ContainerState) corev1.Pod {
	p := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{jidLabel: "chris-jid-7"}, CreationTimestamp: metav1.NewTime(t0)},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: kubeContainer,
			Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{"memory": resource.MustParse("100Mi")}}}}},
		Status: corev1.PodStatus{Phase: phase, StartTime: new(metav1.NewTime(t0))},
	}
	if state != (corev1.ContainerState{}) {
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: kubeContainer, Image: "fnndsc/pl-x", State: state}}
	}
	return p
}

func waiting(reason, msg string) corev1.ContainerState {
	return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}
}

func terminated(code int32, reason string) corev1.ContainerState {
	return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason}}
}

var running = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(t0)}}

func unschedulable(name string) corev1.Pod {
	return unschedulableFor(name, "0/1 nodes are available: 1 Insufficient memory. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.")
}

// The kube-scheduler's messages, as 1.33 wrote them on the test cluster.
const (
	pvcMissing    = `0/1 nodes are available: persistentvolumeclaim "nope" not found. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.`
	noNodeMatches = `0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.`
)

func unschedulableFor(name, msg string) corev1.Pod {
	p := kpod(name, corev1.PodPending, corev1.ContainerState{})
	p.Status.StartTime = nil
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
		Reason: "Unschedulable", Message: msg, LastTransitionTime: metav1.NewTime(t0)}}
	return p
}

// testEvents answers events by the object's name (pods) or uid (Jobs: the
// test case's name), as the API server recorded them on the test cluster.
func testEvents(obj metav1.Object) ([]corev1.Event, error) {
	ev := func(reason, msg string) corev1.Event {
		return corev1.Event{Reason: reason, Message: msg, LastTimestamp: metav1.NewTime(t0)}
	}
	switch obj.GetName() {
	case "p-mount":
		return []corev1.Event{ev("Scheduled", "Successfully assigned"),
			ev("FailedMount", `MountVolume.SetUp failed for volume "storebase" : mount failed: exit status 32`)}, nil
	case "p-pulling":
		return []corev1.Event{ev("Scheduled", "Successfully assigned"), ev("Pulling", `Pulling image "big"`)}, nil
	case "p-scale":
		return []corev1.Event{ev("TriggeredScaleUp", "pod triggered scale-up: [{gpu-pool 0->1 (max: 4)}]")}, nil
	}
	switch string(obj.GetUID()) {
	case "Job controller refused by Pod Security":
		return []corev1.Event{ev("FailedCreate", `Error creating: pods "x-1" is forbidden: violates PodSecurity "restricted:latest": restricted volume types (volume "storebase" uses restricted volume type "hostPath")`)}, nil
	case "quota exceeded, within the grace period", "quota exceeded past the grace period":
		return []corev1.Event{ev("FailedCreate", `Error creating: pods "x-1" is forbidden: exceeded quota: q, requested: limits.memory=200Mi, used: limits.memory=0, limited: limits.memory=100Mi`)}, nil
	case "a FailedCreate that may heal (API server error)":
		return []corev1.Event{ev("FailedCreate", "Error creating: etcdserver: request timed out")}, nil
	}
	return nil, nil
}

// testGraces are short and distinct, so a message says which one applied.
var testGraces = kubeGraces{Pull: time.Minute, Container: 2 * time.Minute, Creating: 3 * time.Minute,
	Quota: 4 * time.Minute, Unschedulable: 30 * time.Second}

func TestJobStatus(t *testing.T) {
	const grace = time.Minute // testGraces.Pull
	failedCond := cond(batchv1.JobFailed, corev1.ConditionTrue, "BackoffLimitExceeded", "Job has reached the specified backoff limit")
	tests := []struct {
		name     string
		st       batchv1.JobStatus
		pods     []corev1.Pod
		now      time.Time
		want     string
		wantMsgs []string // substrings of the message
	}{
		{"pman's verdict is final", batchv1.JobStatus{Active: 1}, []corev1.Pod{kpod("p-1", corev1.PodRunning, running)}, t0,
			statusError, []string{"cannot pull image (for 3m0s)"}},
		{"all empty right after creation", batchv1.JobStatus{}, nil, t0, statusNotStarted, []string{"submitted"}},
		{"a FailedCreate that may heal (API server error)", batchv1.JobStatus{}, nil, t0, statusNotStarted, []string{"cannot create pods yet", "etcdserver"}},
		{"active, pods not listed", batchv1.JobStatus{Active: 1}, nil, t0, statusStarted, []string{"running"}},
		{"pod created, no status yet", batchv1.JobStatus{Active: 1},
			[]corev1.Pod{kpod("p-1", corev1.PodPending, corev1.ContainerState{})}, t0, statusNotStarted, []string{"waiting"}},
		{"container creating", batchv1.JobStatus{Active: 1},
			[]corev1.Pod{kpod("p-1", corev1.PodPending, waiting("ContainerCreating", ""))}, t0, statusNotStarted, []string{"p-1", "ContainerCreating"}},
		{"running", batchv1.JobStatus{Active: 1, Ready: new(int32(1))},
			[]corev1.Pod{kpod("p-1", corev1.PodRunning, running)}, t0, statusStarted, []string{"running"}},
		{"complete", batchv1.JobStatus{Succeeded: 1, CompletionTime: new(metav1.NewTime(t0)), Conditions: []batchv1.JobCondition{
			cond(batchv1.JobSuccessCriteriaMet, corev1.ConditionTrue, "CompletionsReached", "Reached expected number of succeeded pods"),
			cond(batchv1.JobComplete, corev1.ConditionTrue, "CompletionsReached", "Reached expected number of succeeded pods")}},
			nil, t0, statusSuccess, []string{"Reached expected number of succeeded pods"}},
		{"1.33: SuccessCriteriaMet before Complete", batchv1.JobStatus{Succeeded: 1, Active: 0, Conditions: []batchv1.JobCondition{
			cond(batchv1.JobSuccessCriteriaMet, corev1.ConditionTrue, "CompletionsReached", "")}},
			[]corev1.Pod{kpod("p-1", corev1.PodSucceeded, terminated(0, "Completed"))}, t0, statusSuccess, []string{"CompletionsReached"}},
		// cgroup v1: the shell around the killed process exited 0 (seen on
		// the real node of .ci/kube).
		{"complete, but a process was killed for memory", batchv1.JobStatus{Succeeded: 1, Conditions: []batchv1.JobCondition{
			cond(batchv1.JobComplete, corev1.ConditionTrue, "CompletionsReached", "Reached expected number of succeeded pods")}},
			[]corev1.Pod{kpod("p-1", corev1.PodSucceeded, terminated(0, "OOMKilled"))}, t0, statusError,
			[]string{"p-1: out of memory: killed for exceeding the memory limit of 100 MiB (OOMKilled, exit code 0)"}},
		{"a False Complete condition is no success", batchv1.JobStatus{Active: 1, Conditions: []batchv1.JobCondition{
			cond(batchv1.JobComplete, corev1.ConditionFalse, "", "")}},
			[]corev1.Pod{kpod("p-1", corev1.PodRunning, running)}, t0, statusStarted, []string{"running"}},
		{"failed", batchv1.JobStatus{Failed: 1, Conditions: []batchv1.JobCondition{
			cond(batchv1.JobFailureTarget, corev1.ConditionTrue, "BackoffLimitExceeded", "Job has reached the specified backoff limit"), failedCond}},
			[]corev1.Pod{kpod("p-1", corev1.PodFailed, terminated(3, "Error"))}, t0, statusError,
			[]string{"exited with code 3 (Error)", "Job has reached the specified backoff limit"}},
		{"1.33: FailureTarget before Failed", batchv1.JobStatus{Active: 0, Conditions: []batchv1.JobCondition{
			cond(batchv1.JobFailureTarget, corev1.ConditionTrue, "DeadlineExceeded", "Job was active longer than specified deadline")}},
			nil, t0, statusError, []string{"Job was active longer than specified deadline"}},
		{"failed, pods gone", batchv1.JobStatus{Conditions: []batchv1.JobCondition{failedCond}},
			nil, t0, statusError, []string{"BackoffLimitExceeded"}},
		{"OOM with the Job failed", batchv1.JobStatus{Failed: 1, Conditions: []batchv1.JobCondition{failedCond}},
			[]corev1.Pod{kpod("p-1", corev1.PodFailed, terminated(137, "OOMKilled"))}, t0, statusError,
			[]string{"out of memory: killed for exceeding the memory limit of 100 MiB", "OOMKilled", "backoff limit"}},
		{"exit 137 under a memory limit, no OOMKilled", batchv1.JobStatus{Active: 1},
			[]corev1.Pod{kpod("p-1", corev1.PodFailed, terminated(137, "Error"))}, t0, statusError,
			[]string{"p-1: killed (exit code 137), most likely out of memory of 100 MiB"}},
		{"container config error, within the grace period", batchv1.JobStatus{Active: 1},
			[]corev1.Pod{kpod("p-1", corev1.PodPending, waiting("CreateContainerConfigError", `secret "s" not found`))},
			t0.Add(2*time.Minute - time.Second), statusNotStarted, []string{"cannot be created", `secret "s" not found`, "fails if this lasts 2m0s"}},
		{"container config error past the grace period", batchv1.JobStatus{Active: 1},
			[]corev1.Pod{kpod("p-1", corev1.PodPending, waiting("CreateContainerConfigError", `secret "s" not found`))},
			t0.Add(2 * time.Minute), statusError, []string{"CreateContainerConfigError", `secret "s" not found`, "for 2m0s"}},
		{"run container error past the grace period", batchv1.JobStatus{Active: 1},
			[]corev1.Pod{kpod("p-1", corev1.PodPending, waiting("RunContainerError", "exec: no such file"))},
			t0.Add(time.Hour), statusError, []string{"RunContainerError"}},
		{"ContainerCreating within the grace period", batchv1.JobStatus{Active: 1},
			[]corev1.Pod{kpod("p-mount", corev1.PodPending, waiting("ContainerCreating", ""))},
			t0.Add(3*time.Minute - time.Second), statusNotStarted, []string{"p-mount: ContainerCreating"}},
		{"ContainerCreating past the grace period, the mount error read", batchv1.JobStatus{Active: 1},
			[]corev1.Pod{kpod("p-mount", corev1.PodPending, waiting("ContainerCreating", ""))},
			t0.Add(3 * time.Minute), statusError, []string{"stuck in ContainerCreating for 3m0s", "FailedMount: MountVolume.SetUp failed"}},
		{"ContainerCreating past the grace period, no event", batchv1.JobStatus{Active: 1},
			[]corev1.Pod{kpod("p-quiet", corev1.PodPending, waiting("ContainerCreating", ""))},
			t0.Add(3 * time.Minute), statusError, []string{"stuck in ContainerCreating", "no event says why"}},
		{"ContainerCreating while pulling a big image", batchv1.JobStatus{Active: 1},
			[]corev1.Pod{kpod("p-pulling", corev1.PodPending, waiting("ContainerCreating", ""))},
			t0.Add(time.Hour), statusNotStarted, []string{"pulling the image"}},
		{"a PVC that does not exist", batchv1.JobStatus{Active: 1}, []corev1.Pod{unschedulableFor("p-1", pvcMissing)}, t0.Add(30 * time.Second),
			statusError, []string{`persistentvolumeclaim "nope" not found`}},
		{"a PVC that does not exist, just now", batchv1.JobStatus{Active: 1}, []corev1.Pod{unschedulableFor("p-1", pvcMissing)}, t0.Add(29 * time.Second),
			statusNotStarted, []string{`persistentvolumeclaim "nope" not found`}},
		{"no node matches the selector", batchv1.JobStatus{Active: 1}, []corev1.Pod{unschedulableFor("p-1", noNodeMatches)}, t0.Add(time.Minute),
			statusError, []string{"didn't match Pod's node affinity/selector"}},
		{"no node matches the selector, an autoscaler adds one", batchv1.JobStatus{Active: 1}, []corev1.Pod{unschedulableFor("p-scale", noNodeMatches)}, t0.Add(time.Minute),
			statusNotStarted, []string{"autoscaler is adding a node"}},
		{"Job controller refused by Pod Security", batchv1.JobStatus{}, nil, t0,
			statusError, []string{"cannot create pods", `violates PodSecurity "restricted:latest"`}},
		{"quota exceeded, within the grace period", batchv1.JobStatus{}, nil, t0.Add(4*time.Minute - time.Second),
			statusNotStarted, []string{"cannot create pods yet", "exceeded quota", "fails if this lasts 4m0s"}},
		{"quota exceeded past the grace period", batchv1.JobStatus{}, nil, t0.Add(4 * time.Minute),
			statusError, []string{"could not create pods for 4m0s", "exceeded quota"}},
		{"OOM before the Job says so", batchv1.JobStatus{Active: 1},
			[]corev1.Pod{kpod("p-1", corev1.PodRunning, terminated(137, "OOMKilled"))}, t0, statusError, []string{"p-1", "out of memory"}},
		{"a failed pod fails the job (backoffLimit 0)", batchv1.JobStatus{Active: 1},
			[]corev1.Pod{kpod("p-1", corev1.PodFailed, terminated(1, "Error"))}, t0, statusError, []string{"exited with code 1"}},
		{"image pull failing, within the grace period", batchv1.JobStatus{Active: 1},
			[]corev1.Pod{kpod("p-1", corev1.PodPending, waiting("ErrImagePull", "pull access denied for fnndsc/pl-x"))},
			t0.Add(grace - time.Second), statusNotStarted, []string{"cannot pull image fnndsc/pl-x", "ErrImagePull", "pull access denied"}},
		{"image pull back-off past the grace period", batchv1.JobStatus{Active: 1},
			[]corev1.Pod{kpod("p-1", corev1.PodPending, waiting("ImagePullBackOff", "Back-off pulling image"))},
			t0.Add(grace), statusError, []string{"cannot pull image", "ImagePullBackOff", "for 1m0s"}},
		{"invalid image name ends at once", batchv1.JobStatus{Active: 1},
			[]corev1.Pod{kpod("p-1", corev1.PodPending, waiting("InvalidImageName", "couldn't parse image name"))},
			t0, statusError, []string{"InvalidImageName"}},
		{"unschedulable", batchv1.JobStatus{Active: 1}, []corev1.Pod{unschedulable("p-1")}, t0.Add(time.Hour),
			statusNotStarted, []string{"p-1 cannot be scheduled", "Insufficient memory"}},
		{"several workers, one unschedulable", batchv1.JobStatus{Active: 2},
			[]corev1.Pod{kpod("p-1", corev1.PodRunning, running), unschedulable("p-2")}, t0,
			statusStarted, []string{"running", "p-2 cannot be scheduled"}},
		{"several workers, some done, no condition yet", batchv1.JobStatus{Active: 1, Succeeded: 2},
			[]corev1.Pod{kpod("p-1", corev1.PodSucceeded, terminated(0, "Completed")), kpod("p-2", corev1.PodSucceeded, terminated(0, "Completed")),
				kpod("p-3", corev1.PodRunning, running)}, t0, statusStarted, []string{"running"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kj := kjob(tt.st)
			kj.UID = types.UID(tt.name) // what testEvents answers for
			if tt.name == "pman's verdict is final" {
				kj.Annotations = map[string]string{kubeFailedAnnotation: "pod p-1: cannot pull image (for 3m0s)",
					kubeFailedAtAnnotation: t0.Format(time.RFC3339Nano)}
			}
			v, err := jobStatus(kj, tt.pods, tt.now, testGraces, testEvents)
			got, msg := v.status, v.msg
			if err != nil {
				t.Errorf("jobStatus error %v", err)
			}
			if got != tt.want {
				t.Errorf("jobStatus = %q (%q); want %q", got, msg, tt.want)
			}
			if finished := got == statusSuccess || got == statusError; finished == v.at.IsZero() {
				t.Errorf("jobStatus = %q at %v; want a time exactly when finished", got, v.at)
			}
			// pman's own verdicts: what the Job controller does not end.
			wantOwn := got == statusError && len(tt.st.Conditions) == 0 && kj.Annotations == nil &&
				!slices.ContainsFunc(tt.pods, func(p corev1.Pod) bool {
					return p.Status.Phase == corev1.PodFailed || len(p.Status.ContainerStatuses) > 0 && p.Status.ContainerStatuses[0].State.Terminated != nil
				})
			if v.own != wantOwn {
				t.Errorf("own = %v; want %v", v.own, wantOwn)
			}
			for _, w := range tt.wantMsgs {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q; want it to contain %q", msg, w)
				}
			}
			if got == statusUndefined {
				t.Errorf("jobStatus = %q (%q); want a defined status", got, msg)
			}
		})
	}
}

func TestJobStatusManyPods(t *testing.T) {
	var pods []corev1.Pod
	for i := range 6 {
		pods = append(pods, unschedulable(fmt.Sprintf("p-%d", i)))
	}
	v, _ := jobStatus(kjob(batchv1.JobStatus{Active: 6}), pods, t0, testGraces, testEvents)
	msg := v.msg
	if !strings.Contains(msg, "and 3 more") || strings.Contains(msg, "p-5") {
		t.Errorf("message for 6 unschedulable pods = %q; want the first 3 and \"and 3 more\"", msg)
	}
}

// TestKubeTimestamp: every finished job has a timestamp, the time its
// Complete or Failed condition was set.
func TestKubeTimestamp(t *testing.T) {
	at := func(c batchv1.JobCondition, d time.Duration) batchv1.JobCondition {
		c.LastTransitionTime = metav1.NewTime(t0.Add(d).In(time.FixedZone("x", 3600)))
		return c
	}
	tests := []struct {
		name string
		st   batchv1.JobStatus
		want string
	}{
		{"running", batchv1.JobStatus{Active: 1, StartTime: new(metav1.NewTime(t0))}, ""},
		{"complete", batchv1.JobStatus{Conditions: []batchv1.JobCondition{
			at(cond(batchv1.JobSuccessCriteriaMet, corev1.ConditionTrue, "", ""), 89*time.Second),
			at(cond(batchv1.JobComplete, corev1.ConditionTrue, "", ""), 90*time.Second)}}, "2026-11-25T12:01:30Z"},
		{"success criteria met, not yet complete", batchv1.JobStatus{Conditions: []batchv1.JobCondition{
			at(cond(batchv1.JobSuccessCriteriaMet, corev1.ConditionTrue, "", ""), 89*time.Second)}}, "2026-11-25T12:01:29Z"},
		{"failed", batchv1.JobStatus{Conditions: []batchv1.JobCondition{
			at(cond(batchv1.JobFailureTarget, corev1.ConditionTrue, "", ""), 9*time.Second),
			at(cond(batchv1.JobFailed, corev1.ConditionTrue, "", ""), 10*time.Second)}}, "2026-11-25T12:00:10Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, _ := jobStatus(kjob(tt.st), nil, t0.Add(time.Hour), testGraces, testEvents)
			if got := kubeTimestamp(v.at); got != tt.want {
				t.Errorf("timestamp %q; want %q", got, tt.want)
			}
		})
	}
}

func TestNeverSchedulable(t *testing.T) {
	tests := []struct {
		name string
		msg  string
		want bool
	}{
		{"PVC missing", pvcMissing, true},
		{"no node matches", noNodeMatches, true},
		{"no node of 3 matches", "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.", true},
		{"one node lacks CPU", "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector. preemption: x", false},
		{"insufficient GPU", "0/1 nodes are available: 1 Insufficient nvidia.com/gpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.", false},
		{"unbound PVC", "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: x", false},
		{"no nodes", "no nodes available to schedule pods", false},
		// The real node that the selector does not match, and a tainted
		// control-plane node (issue 18: such a job waited for ever).
		{"selector and a taint", "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {kspike: real}. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.", true},
		{"taints only", "0/2 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 1 node(s) had untolerated taint {pool: gpu}.", true},
		{"a taint and no CPU", "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {pool: gpu}.", false},
		{"a node not ready yet", "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }.", false},
		{"a cordoned node", "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) were unschedulable.", false},
		{"a node the autoscaler removes", "0/1 nodes are available: 1 node(s) had untolerated taint {ToBeDeletedByClusterAutoscaler: 1700000000}.", false},
		{"pod affinity", "0/2 nodes are available: 1 node(s) didn't match pod affinity rules, 1 node(s) didn't match Pod's node affinity/selector.", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := neverSchedulable(tt.msg); got != tt.want {
				t.Errorf("neverSchedulable(%q) = %v; want %v", tt.msg, got, tt.want)
			}
		})
	}
}

func TestCreateCanHeal(t *testing.T) {
	tests := []struct {
		name string
		msg  string
		want bool
	}{
		{"exceeded quota", `pods "x" is forbidden: exceeded quota: q, requested: limits.memory=200Mi, used: limits.memory=0, limited: limits.memory=100Mi`, true},
		{"failed quota", `pods "x" is forbidden: failed quota: q: must specify limits.memory for: plugin`, false},
		{"PodSecurity", `pods "x" is forbidden: violates PodSecurity "restricted:latest": runAsNonRoot != true`, false},
		{"LimitRange", `pods "x" is forbidden: maximum cpu usage per Container is 200m, but limit is 500m`, false},
		{"webhook denied", `admission webhook "policy.example.org" denied the request: no`, false},
		{"invalid", `Pod "x" is invalid: spec.containers[0].resources.requests: Invalid value`, false},
		{"webhook unreachable", `Internal error occurred: failed calling webhook "policy.example.org": connection refused`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := createCanHeal(tt.msg); got != tt.want {
				t.Errorf("createCanHeal(%q) = %v; want %v", tt.msg, got, tt.want)
			}
		})
	}
}
