package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// The shape of every Job, as pman 6 made it.
const (
	// A finished Job and its pods stay a day, so an operator can look at
	// them; then the TTL controller deletes them even if pfcon never does.
	kubeTTLAfterFinished = 86400
	// No plugin runs for a week; one that does is stuck and must end, so
	// pfcon's polling ends too.
	kubeActiveDeadline = 604800
	// The job's one container. Not the jid: a jid may contain dots, which a
	// container name may not.
	kubeContainer = "plugin"
	// The volume holding STOREBASE, mounted twice through subPath.
	kubeStoreVolume = "storebase"
	kubeShmVolume   = "dshm"
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

// When pman itself declares a Job failed, it writes why and when on the Job,
// so that every later GET answers the same, whatever the pods do next (the
// Job controller's own Failed condition, which follows, says only
// "DeadlineExceeded").
const (
	kubeFailedAnnotation   = "pman.chrisproject.org/failed"
	kubeFailedAtAnnotation = "pman.chrisproject.org/failed-at"
)

// Logs of one GET are bounded in bytes as well as in lines: at most
// kubeLogBytes in all (split evenly between the pods read), from at most
// kubeLogPods pods.
const (
	kubeLogBytes   = 1 << 20
	kubeLogPods    = 64
	kubeLogTimeout = 10 * time.Second // per pod, for both reads
)

// pullFailures are the waiting reasons of a container whose image cannot be
// pulled. InvalidImageName never heals and ends the job at once.
var pullFailures = map[string]bool{
	"ErrImagePull":      true,
	"ImagePullBackOff":  true,
	"InvalidImageName":  true,
	"ErrImageNeverPull": true,
}

// kube runs each job as a batch/v1 Job named by its jid in JOB_NAMESPACE.
type kube struct {
	client kubernetes.Interface
	cfg    *config
	log    *slog.Logger
	ns     string
	host   string // the API server, for messages
	grace  kubeGraces
	now    func() time.Time
}

func newKube(ctx context.Context, cfg *config, log *slog.Logger) (scheduler, error) {
	if err := checkKubeConfig(cfg); err != nil {
		return nil, err
	}
	rc, source, err := kubeRESTConfig(cfg.Kubeconfig)
	if err != nil {
		return nil, err
	}
	client, err := kubeClient(rc)
	if err != nil {
		return nil, fmt.Errorf("Kubernetes client for %s: %w", rc.Host, err)
	}
	// No API call here: a pman that starts before its API server answers
	// should serve once it does, and every request reports the trouble.
	log.Info("kubernetes", "api_server", rc.Host, "credentials", source, "namespace", cfg.JobNamespace)
	return &kube{
		client: client,
		cfg:    cfg,
		log:    log,
		ns:     cfg.JobNamespace,
		host:   rc.Host,
		grace:  kubeGrace,
		now:    time.Now,
	}, nil
}

// kubeClient is the client for rc, with pman's settings.
func kubeClient(rc *rest.Config) (kubernetes.Interface, error) {
	rc.UserAgent = "pman/" + version
	// No client-side rate limit. pman calls the API only to answer pfcon,
	// a bounded number of calls per request (a GET: 2 plus one per pod
	// with a log), so its load is pfcon's polling. client-go's default of 5
	// calls a second would queue that polling inside pman (BenchmarkKubeGet:
	// 0.6 s a GET). The API server protects itself with its own fairness
	// (APF).
	rc.QPS = -1
	// A request to an API server that does not answer must fail in time for
	// pfcon to get a 503, not hang until pfcon gives up.
	rc.Timeout = 30 * time.Second
	return kubernetes.NewForConfig(rc)
}

// kubeRESTConfig finds the API server and credentials. A KUBECONFIG that
// is set wins, even in a pod: an operator who sets it means another cluster
// (and a test run inside a CI pod means its test cluster). Otherwise the pod's
// service account (in-cluster configuration, pman's normal deployment), and
// outside a pod ~/.kube/config.
func kubeRESTConfig(kubeconfig string) (*rest.Config, string, error) {
	if kubeconfig == "" {
		rc, err := rest.InClusterConfig()
		if err == nil {
			return rc, "in-cluster service account", nil
		}
		if !errors.Is(err, rest.ErrNotInCluster) {
			return nil, "", fmt.Errorf("in-cluster Kubernetes configuration: %w", err)
		}
	}
	// KUBECONFIG comes from the configuration run was given, not from the
	// process environment, so a test's environment is the whole truth.
	rules := &clientcmd.ClientConfigLoadingRules{Precedence: []string{clientcmd.RecommendedHomeFile}}
	source := clientcmd.RecommendedHomeFile + " (not in a pod: no KUBERNETES_SERVICE_HOST)"
	if kubeconfig != "" {
		rules.Precedence = filepath.SplitList(kubeconfig)
		source = "KUBECONFIG=" + kubeconfig
	}
	// Not the deferred loader: it would fall back to the in-cluster
	// configuration when the files are missing, and hide the mistake.
	raw, err := rules.Load()
	if err != nil {
		return nil, "", fmt.Errorf("kubeconfig %s: %w", source, err)
	}
	rc, err := clientcmd.NewDefaultClientConfig(*raw, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("no usable kubeconfig in %s: %w", source, err)
	}
	return rc, source, nil
}

// checkKubeConfig refuses at start what Kubernetes would refuse on every
// job: a deployment must not start half-right.
func checkKubeConfig(cfg *config) error {
	var errs []error
	bad := func(name, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{name}, a...)...))
	}
	if p := validation.IsDNS1123Label(cfg.JobNamespace); p != nil {
		bad("JOB_NAMESPACE", "%q is not a namespace name: %s", cfg.JobNamespace, strings.Join(p, "; "))
	}
	for name, m := range map[string]map[string]string{"JOB_LABELS": cfg.JobLabels, "NODE_SELECTOR": cfg.NodeSelector} {
		for _, k := range sortedKeys(m) {
			if p := validation.IsQualifiedName(k); p != nil {
				bad(name, "%q is not a label key: %s", k, strings.Join(p, "; "))
			}
			if p := validation.IsValidLabelValue(m[k]); p != nil {
				bad(name, "%q is not a label value: %s", m[k], strings.Join(p, "; "))
			}
		}
	}
	for _, s := range cfg.ImagePullSecrets {
		if p := validation.IsDNS1123Subdomain(s); p != nil {
			bad("IMAGE_PULL_SECRETS", "%q is not a secret name: %s", s, strings.Join(p, "; "))
		}
	}
	if cfg.StorageType == "kubernetes_pvc" {
		if p := validation.IsDNS1123Subdomain(cfg.VolumeName); p != nil {
			bad("VOLUME_NAME", "%q is not a PVC name: %s", cfg.VolumeName, strings.Join(p, "; "))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	return nil
}

// kubeNameProblem says why a jid cannot name a Job, or "". The API server
// checks a Job name as a DNS subdomain, and the Job controller copies it into
// its pods' job-name label, whose values stop at 63 characters.
func kubeNameProblem(jid string) string {
	if p := validation.IsDNS1123Subdomain(jid); p != nil {
		return fmt.Sprintf("%q is not a valid Kubernetes Job name: %s", jid, strings.Join(p, "; "))
	}
	if len(jid) > validation.LabelValueMaxLength {
		return fmt.Sprintf("%q is not a valid Kubernetes Job name: must be no more than %d characters (the Job controller puts it in a label)", jid, validation.LabelValueMaxLength)
	}
	return ""
}

func (k *kube) create(ctx context.Context, s *jobSpec) (*job, error) {
	if p := kubeNameProblem(s.JID); p != "" {
		return nil, fieldError("jid", p)
	}
	// parallelism and completions are int32s: a bigger number would wrap
	// around and the API server would answer a puzzling 422.
	if s.Workers > math.MaxInt32 {
		return nil, fieldError("number_of_workers", fmt.Sprintf("must be at most %d with CONTAINER_ENV=kubernetes (a Job's parallelism is an int32), not %d", math.MaxInt32, s.Workers))
	}
	uid, gid, err := k.ids()
	if err != nil {
		return nil, err
	}
	kj := buildKubeJob(k.cfg, s, uid, gid)
	created, err := k.client.BatchV1().Jobs(k.ns).Create(ctx, kj, metav1.CreateOptions{})
	if err != nil {
		return nil, k.apiError(err, "create", "jobs.batch", s.JID)
	}
	// A Job this new has no pods and no events yet: none are asked for.
	v, err := jobStatus(created, nil, k.now(), k.grace, noEvents)
	if err != nil {
		return nil, err
	}
	return &job{
		JID:       s.JID,
		Image:     s.Image,
		Cmd:       strings.Join(s.Cmd, " "),
		Status:    v.status,
		Message:   v.msg,
		Timestamp: kubeTimestamp(v.at),
	}, nil
}

// ids are the user and group the job runs as: CONTAINER_USER (drawn per
// job) or the seed's SECURITYCONTEXT_RUN_AS_USER/GROUP; nil leaves the
// image's own.
func (k *kube) ids() (uid, gid *int64, err error) {
	if u := k.cfg.ContainerUser; u.UID.Set || u.GID.Set {
		a, b := u.pick()
		if a != nil {
			uid = new(int64(*a))
		}
		if b != nil {
			gid = new(int64(*b))
		}
		return uid, gid, nil
	}
	parse := func(name, v string) (*int64, error) {
		if v == "" {
			return nil, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			// loadConfig checked it; this is a bug of ours.
			return nil, fmt.Errorf("%s=%q: %w", name, v, err)
		}
		return &n, nil
	}
	if uid, err = parse("SECURITYCONTEXT_RUN_AS_USER", k.cfg.RunAsUser); err != nil {
		return nil, nil, err
	}
	if gid, err = parse("SECURITYCONTEXT_RUN_AS_GROUP", k.cfg.RunAsGroup); err != nil {
		return nil, nil, err
	}
	return uid, gid, nil
}

// buildKubeJob is the Job for one request.
func buildKubeJob(cfg *config, s *jobSpec, uid, gid *int64) *batchv1.Job {
	labels := func() map[string]string {
		if len(cfg.JobLabels) == 0 {
			return nil
		}
		m := make(map[string]string, len(cfg.JobLabels))
		for k, v := range cfg.JobLabels {
			m[k] = v
		}
		return m
	}
	env := make([]corev1.EnvVar, 0, len(s.Env))
	for _, e := range s.Env {
		k, v, _ := strings.Cut(e, "=")
		env = append(env, corev1.EnvVar{Name: k, Value: v})
	}
	limits := corev1.ResourceList{}
	// A limit of 0 is what pfcon sends when it has none; Kubernetes would
	// take "0" literally, so it is left out.
	if !cfg.IgnoreLimits {
		if s.CPULimit > 0 {
			limits[corev1.ResourceCPU] = resource.MustParse(fmt.Sprintf("%dm", s.CPULimit))
		}
		if s.MemoryLimit > 0 {
			limits[corev1.ResourceMemory] = resource.MustParse(fmt.Sprintf("%dMi", s.MemoryLimit))
		}
	}
	// Only the resource: the device plugin sets what the container needs.
	// pfcon removed the NVIDIA_* variables pman used to add.
	if s.GPULimit > 0 {
		limits["nvidia.com/gpu"] = *resource.NewQuantity(int64(s.GPULimit), resource.DecimalSI)
	}
	if len(limits) == 0 {
		limits = nil
	}
	storeVol, mounts := kubeStorage(cfg, s.InputDir, s.OutputDir)
	volumes := []corev1.Volume{storeVol}
	if cfg.ShmSizeMiB > 0 {
		// Kubernetes gives every container a 64 MiB /dev/shm and has no
		// shm-size option; a memory-backed emptyDir is the way to a bigger one.
		size := resource.MustParse(fmt.Sprintf("%dMi", cfg.ShmSizeMiB))
		volumes = append(volumes, corev1.Volume{Name: kubeShmVolume, VolumeSource: corev1.VolumeSource{
			EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: &size},
		}})
		mounts = append(mounts, corev1.VolumeMount{Name: kubeShmVolume, MountPath: "/dev/shm"})
	}
	var pullSecrets []corev1.LocalObjectReference
	for _, name := range cfg.ImagePullSecrets {
		pullSecrets = append(pullSecrets, corev1.LocalObjectReference{Name: name})
	}
	var nodeSelector map[string]string
	if len(cfg.NodeSelector) > 0 {
		nodeSelector = make(map[string]string, len(cfg.NodeSelector))
		for k, v := range cfg.NodeSelector {
			nodeSelector[k] = v
		}
	}
	workers := int32(s.Workers)
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: s.JID, Labels: labels()},
		Spec: batchv1.JobSpec{
			Parallelism: ptr(workers),
			Completions: ptr(workers),
			// A plugin that fails is reported, not retried: its outputs
			// would be half-written.
			BackoffLimit:            ptr(int32(0)),
			TTLSecondsAfterFinished: ptr(int32(kubeTTLAfterFinished)),
			ActiveDeadlineSeconds:   ptr(int64(kubeActiveDeadline)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels()},
				Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever,
					// The Pod Security "restricted" policy wants a seccomp
					// profile, and the runtime's default is what a plain
					// Docker or Podman container gets anyway.
					SecurityContext: &corev1.PodSecurityContext{
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					NodeSelector:     nodeSelector,
					ImagePullSecrets: pullSecrets,
					Volumes:          volumes,
					Containers: []corev1.Container{{
						Name:         kubeContainer,
						Image:        s.Image,
						Command:      s.Cmd,
						Env:          env,
						Resources:    corev1.ResourceRequirements{Limits: limits},
						VolumeMounts: mounts,
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr(false),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
							RunAsUser:                uid,
							RunAsGroup:               gid,
							// "restricted" wants it too; it holds only when
							// the user is known not to be root (an image's
							// own user may be, so it is not set then).
							RunAsNonRoot: nonRoot(uid),
						},
					}},
				},
			},
		},
	}
}

// nonRoot is true for a user id that is set and not 0, else nil (unset).
func nonRoot(uid *int64) *bool {
	if uid != nil && *uid != 0 {
		return ptr(true)
	}
	return nil
}

func (k *kube) get(ctx context.Context, jid string) (*job, error) {
	if p := kubeNameProblem(jid); p != "" {
		return nil, errorf(eNotFound, "no job %q: %s", jid, p)
	}
	// A Job that changes while pman ends it is read again (see stop).
	for attempt := 1; ; attempt++ {
		kj, err := k.client.BatchV1().Jobs(k.ns).Get(ctx, jid, metav1.GetOptions{})
		if err != nil {
			return nil, k.apiError(err, "get", "jobs.batch", jid)
		}
		// The pods are needed for the logs, and for the status unless the
		// Job already says how it ended.
		var pods []corev1.Pod
		_, judged := kj.Annotations[kubeFailedAnnotation]
		if k.cfg.JobLogsTail > 0 || !judged && conditionOf(kj, batchv1.JobComplete, batchv1.JobSuccessCriteriaMet) == nil {
			if pods, err = k.pods(ctx, kj); err != nil {
				return nil, err
			}
		}
		v, err := jobStatus(kj, pods, k.now(), k.grace, k.events(ctx))
		if err != nil {
			return nil, err
		}
		if v.own {
			if len(v.msg) > 4096 { // events may be long; an annotation need not be
				v.msg = v.msg[:4096] + "..."
			}
			err := k.stop(ctx, kj, v)
			if apierrors.IsConflict(err) {
				if attempt < 3 {
					continue
				}
				return nil, errorf(eUnavailable, "job %q kept changing while pman ended it: %v", jid, err)
			}
			if err != nil {
				return nil, err
			}
		}
		j := &job{JID: jid, Status: v.status, Message: v.msg, Timestamp: kubeTimestamp(v.at)}
		j.Logs, j.LogsIncomplete = k.logs(ctx, pods)
		if cs := kj.Spec.Template.Spec.Containers; len(cs) > 0 {
			j.Image = cs[0].Image
			j.Cmd = strings.Join(slices.Concat(cs[0].Command, cs[0].Args), " ")
		}
		return j, nil
	}
}

// stop ends for good a Job that pman has declared failed, so that its status
// never changes back: a pull that succeeds after all, a quota that frees up
// or a volume that mounts late would otherwise run the job while pfcon has
// moved on. The Job's deadline is lowered to the time it has been active,
// which makes the Job controller fail it (DeadlineExceeded) and delete its
// pods, and the verdict is written on the Job, which is what every later GET
// answers. The patch carries the resourceVersion the verdict was made from:
// if the Job changed since (it may just have succeeded), it is a Conflict,
// and the caller judges again.
func (k *kube) stop(ctx context.Context, kj *batchv1.Job, v kubeVerdict) error {
	start := kj.CreationTimestamp.Time
	if kj.Status.StartTime != nil {
		start = kj.Status.StartTime.Time
	}
	deadline := max(int64(math.Ceil(v.at.Sub(start).Seconds())), 1) // the API wants it positive
	if d := kj.Spec.ActiveDeadlineSeconds; d != nil && *d < deadline {
		deadline = *d
	}
	msg := v.msg
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{
			"resourceVersion": kj.ResourceVersion,
			"annotations": map[string]string{
				kubeFailedAnnotation:   msg,
				kubeFailedAtAnnotation: v.at.UTC().Format(time.RFC3339Nano),
			},
		},
		"spec": map[string]any{"activeDeadlineSeconds": deadline},
	})
	if err != nil {
		return errorf(eInternal, "patch for job %q: %v", kj.Name, err)
	}
	_, err = k.client.BatchV1().Jobs(k.ns).Patch(ctx, kj.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsConflict(err) {
		return err
	}
	if err != nil {
		return k.apiError(err, "patch", "jobs.batch", kj.Name)
	}
	k.log.Info("job ended by pman", "jid", kj.Name, "namespace", k.ns, "active_deadline_seconds", deadline, "reason", msg)
	return nil
}

// pods lists the Job's pods by its own selector (its uid), not by the
// job-name label: after a DELETE, the pods of a removed Job of the same name
// may still be terminating while a new one runs.
func (k *kube) pods(ctx context.Context, kj *batchv1.Job) ([]corev1.Pod, error) {
	sel, err := metav1.LabelSelectorAsSelector(kj.Spec.Selector)
	if err != nil || kj.Spec.Selector == nil {
		sel, err = metav1.LabelSelectorAsSelector(&metav1.LabelSelector{MatchLabels: map[string]string{batchv1.JobNameLabel: kj.Name}})
		if err != nil {
			return nil, errorf(eInternal, "pod selector for job %q: %v", kj.Name, err)
		}
	}
	list, err := k.client.CoreV1().Pods(k.ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, k.apiError(err, "list", "pods", kj.Name)
	}
	pods := list.Items
	slices.SortFunc(pods, func(a, b corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	return pods, nil
}

// eventLister lists the events about one object (a Job or a pod), oldest
// first. Events say what no status does: why the Job controller cannot
// create pods (FailedCreate), why a volume does not mount (FailedMount).
type eventLister func(obj metav1.Object) ([]corev1.Event, error)

func noEvents(metav1.Object) ([]corev1.Event, error) { return nil, nil }

// events lists events by the object's uid, so an earlier object of the
// same name never speaks for this one.
func (k *kube) events(ctx context.Context) eventLister {
	return func(obj metav1.Object) ([]corev1.Event, error) {
		list, err := k.client.CoreV1().Events(k.ns).List(ctx, metav1.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("involvedObject.uid", string(obj.GetUID())).String(),
		})
		if err != nil {
			return nil, k.apiError(err, "list", "events", obj.GetName())
		}
		evs := list.Items
		slices.SortStableFunc(evs, func(a, b corev1.Event) int { return eventTime(&a).Compare(eventTime(&b)) })
		return evs, nil
	}
}

// eventTime is when an event last happened, whichever API wrote it.
func eventTime(e *corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.FirstTimestamp.Time
}

// logs is the tail of each pod's log; with several pods, each part starts
// with a line naming its pod. A pod whose container has not started has no
// log: it contributes why it waits (asking would be an error, pman#234).
// A log that cannot be read never hides the status: its part is the one
// line of logsUnreadable, the server logs a warning, and incomplete is set.
func (k *kube) logs(ctx context.Context, pods []corev1.Pod) (logs string, incomplete bool) {
	if k.cfg.JobLogsTail == 0 || len(pods) == 0 {
		return "", false
	}
	shown := pods[:min(len(pods), kubeLogPods)]
	limit := int64(kubeLogBytes / len(shown))
	parts := make([]string, len(shown))
	errs := make([]error, len(shown))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4) // a job of many workers must not flood the API server
	for i := range shown {
		p := &shown[i]
		if !containerStarted(p) {
			parts[i] = waitingText(p)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			parts[i], errs[i] = k.podLog(ctx, p, limit)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			k.log.Warn("logs unavailable", "pod", shown[i].Name, "namespace", k.ns, "error", err.Error())
			parts[i] = logsUnreadable(err)
			incomplete = true
		}
	}
	if len(pods) == 1 {
		return parts[0], incomplete
	}
	var b strings.Builder
	for i, p := range shown {
		fmt.Fprintf(&b, "==> pod %s <==\n", p.Name)
		b.WriteString(parts[i])
		if parts[i] != "" && !strings.HasSuffix(parts[i], "\n") {
			b.WriteByte('\n')
		}
	}
	if n := len(pods) - len(shown); n > 0 {
		fmt.Fprintf(&b, "[pman] and %d more pods, whose logs are not shown\n", n)
	}
	return b.String(), incomplete
}

// podLog is the tail of the log of the pod's first container, whatever its
// name (pman 6 named it after the jid, and its jobs may still run), at most
// limit bytes.
func (k *kube) podLog(ctx context.Context, p *corev1.Pod, limit int64) (string, error) {
	container := kubeContainer
	if len(p.Spec.Containers) > 0 {
		container = p.Spec.Containers[0].Name
	}
	// A node that does not answer must not hold the status up for the
	// client's whole timeout.
	ctx, cancel := context.WithTimeout(ctx, kubeLogTimeout)
	defer cancel()
	read := func(lines int64) ([]byte, error) {
		opts := &corev1.PodLogOptions{Container: container, TailLines: &lines, LimitBytes: &limit}
		rc, err := k.client.CoreV1().Pods(k.ns).GetLogs(p.Name, opts).Stream(ctx)
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		return io.ReadAll(io.LimitReader(rc, limit))
	}
	lines := int64(k.cfg.JobLogsTail)
	b, err := read(lines)
	if err != nil {
		if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
			return "", k.apiError(err, "get", "pods/log", p.Name)
		}
		return "", fmt.Errorf("pod %s: %w", p.Name, err)
	}
	if int64(len(b)) < limit {
		return string(b), nil
	}
	// LimitBytes cuts the tail's end, and the end is what matters (the
	// error that ended the job): ask again for as many lines as fit.
	if fit := int64(bytes.Count(b, []byte{'\n'})) * 9 / 10; fit < lines {
		if again, err := read(max(fit, 1)); err == nil {
			b = again
		}
	}
	if int64(len(b)) >= limit {
		return string(b) + fmt.Sprintf("\n[pman] log cut at %d bytes\n", limit), nil
	}
	return string(b), nil
}

func (k *kube) remove(ctx context.Context, jid string) error {
	if p := kubeNameProblem(jid); p != "" {
		return errorf(eNotFound, "no job %q: %s", jid, p)
	}
	// Background: the Job goes now, the garbage collector takes its pods.
	// The API's default for Jobs (orphan) would leave them running.
	bg := metav1.DeletePropagationBackground
	err := k.client.BatchV1().Jobs(k.ns).Delete(ctx, jid, metav1.DeleteOptions{PropagationPolicy: &bg})
	if err != nil {
		return k.apiError(err, "delete", "jobs.batch", jid)
	}
	return nil
}

// apiError gives an API call's error its kind and a message that says what
// pman was doing.
func (k *kube) apiError(err error, verb, res, name string) error {
	var status apierrors.APIStatus
	isStatus := errors.As(err, &status)
	msg := err.Error()
	switch {
	case apierrors.IsAlreadyExists(err):
		return errorf(eConflict, "a job %q already exists in namespace %s", name, k.ns)
	case apierrors.IsNotFound(err) && verb == "create":
		// Creating in a namespace that does not exist.
		return errorf(eUnavailable, "cannot create job %q: %s (JOB_NAMESPACE=%s)", name, msg, k.ns)
	case apierrors.IsNotFound(err):
		return errorf(eNotFound, "no job %q in namespace %s", name, k.ns)
	case apierrors.IsInvalid(err):
		return errorf(eInvalid, "Kubernetes refused job %q: %s", name, msg)
	case apierrors.IsForbidden(err) && rbacDenial(msg):
		return errorf(eUnavailable, "pman lacks the Kubernetes permission to %s %s in namespace %s (add it to pman's Role): %s", verb, res, k.ns, msg)
	case apierrors.IsUnauthorized(err):
		return errorf(eUnavailable, "the Kubernetes API server %s did not accept pman's credentials: %s", k.host, msg)
	case isStatus && status.Status().Code >= 400 && status.Status().Code < 500 && !apierrors.IsTooManyRequests(err):
		// Quota, admission and the like: the scheduler's own refusal.
		return refused(int(status.Status().Code), "Kubernetes refused to %s %s %q: %s", verb, res, name, msg)
	case isStatus:
		return errorf(eUnavailable, "the Kubernetes API server %s failed to %s %s %q: %s", k.host, verb, res, name, msg)
	}
	return errorf(eUnavailable, "the Kubernetes API server %s is unreachable (%s %s %q): %v", k.host, verb, res, name, err)
}

// rbacDenial tells the authorizer's refusal ("User ... cannot create
// resource ...") from other 403s, such as an exceeded quota.
func rbacDenial(msg string) bool {
	return strings.Contains(msg, " cannot ")
}

// ---- status -----------------------------------------------------------------

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
		return kubeVerdict{status: statusSuccess, msg: conditionText(c, "completed"),
			at: finishTime(kj, batchv1.JobComplete, batchv1.JobSuccessCriteriaMet)}, nil
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

// createCanHeal tells a refusal that may pass (a quota exceeded, an API
// server or webhook that failed) from one that never will: the API
// server's "forbidden" (Pod Security, a LimitRange, a quota that requires
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
	for _, cs := range p.Status.ContainerStatuses {
		for _, t := range []*corev1.ContainerStateTerminated{cs.State.Terminated, cs.LastTerminationState.Terminated} {
			if t != nil && t.Reason == "OOMKilled" {
				n.text = fmt.Sprintf("pod %s: %s (OOMKilled, exit code %d)", p.Name, outOfMemory(memoryLimitMiB(p), true), t.ExitCode)
				n.fatal, n.at = true, t.FinishedAt.Time
				return n, nil
			}
		}
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

// neverSchedulable tells a scheduler's message that no wait can change
// from one where resources may free up or be added (Insufficient cpu):
// a PVC that does not exist, or no node matching the node selector.
//
//	0/3 nodes are available: persistentvolumeclaim "x" not found. preemption: ...
//	0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. preemption: ...
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
		if !strings.HasSuffix(r, "node(s) didn't match Pod's node affinity/selector") {
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

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func ptr[T any](v T) *T { return &v }
