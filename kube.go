package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
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

// imagePullGrace is how long a pod may fail to pull its image before the job
// is reported finishedWithError. The kubelet keeps retrying (with back-off
// up to 5 minutes), and a registry hiccup or rate limit can pass, so the
// first ErrImagePull is not the end; but a job that can never run must end
// (API.md), and the Job controller alone would wait for
// activeDeadlineSeconds, a week. Tests shorten it.
var imagePullGrace = 3 * time.Minute

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
	client    kubernetes.Interface
	cfg       *config
	log       *slog.Logger
	ns        string
	host      string // the API server, for messages
	pullGrace time.Duration
	now       func() time.Time
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
		client:    client,
		cfg:       cfg,
		log:       log,
		ns:        cfg.JobNamespace,
		host:      rc.Host,
		pullGrace: imagePullGrace,
		now:       time.Now,
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
	uid, gid, err := k.ids()
	if err != nil {
		return nil, err
	}
	kj := buildKubeJob(k.cfg, s, uid, gid)
	created, err := k.client.BatchV1().Jobs(k.ns).Create(ctx, kj, metav1.CreateOptions{})
	if err != nil {
		return nil, k.apiError(err, "create", "jobs.batch", s.JID)
	}
	status, msg := jobStatus(created, nil, k.now(), k.pullGrace)
	return &job{
		JID:       s.JID,
		Image:     s.Image,
		Cmd:       strings.Join(s.Cmd, " "),
		Status:    status,
		Message:   msg,
		Timestamp: kubeTimestamp(created),
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
					RestartPolicy:    corev1.RestartPolicyNever,
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
						},
					}},
				},
			},
		},
	}
}

func (k *kube) get(ctx context.Context, jid string) (*job, error) {
	if p := kubeNameProblem(jid); p != "" {
		return nil, errorf(eNotFound, "no job %q: %s", jid, p)
	}
	kj, err := k.client.BatchV1().Jobs(k.ns).Get(ctx, jid, metav1.GetOptions{})
	if err != nil {
		return nil, k.apiError(err, "get", "jobs.batch", jid)
	}
	// The pods are needed for the logs, and for the status unless the Job
	// already says it succeeded.
	var pods []corev1.Pod
	if k.cfg.JobLogsTail > 0 || conditionOf(kj, batchv1.JobComplete, batchv1.JobSuccessCriteriaMet) == nil {
		if pods, err = k.pods(ctx, kj); err != nil {
			return nil, err
		}
	}
	status, msg := jobStatus(kj, pods, k.now(), k.pullGrace)
	logs, err := k.logs(ctx, pods)
	if err != nil {
		return nil, err
	}
	j := &job{JID: jid, Status: status, Message: msg, Timestamp: kubeTimestamp(kj), Logs: logs}
	if cs := kj.Spec.Template.Spec.Containers; len(cs) > 0 {
		j.Image = cs[0].Image
		j.Cmd = strings.Join(slices.Concat(cs[0].Command, cs[0].Args), " ")
	}
	return j, nil
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

// logs is the tail of each pod's log; with several pods, each part starts
// with a line naming its pod. A pod whose container has not started has no
// log: it contributes why it waits (asking would be an error, pman#234).
func (k *kube) logs(ctx context.Context, pods []corev1.Pod) (string, error) {
	if k.cfg.JobLogsTail == 0 || len(pods) == 0 {
		return "", nil
	}
	parts := make([]string, len(pods))
	errs := make([]error, len(pods))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4) // a job of many workers must not flood the API server
	for i := range pods {
		p := &pods[i]
		if !containerStarted(p) {
			parts[i] = waitingText(p)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			parts[i], errs[i] = k.podLog(ctx, p.Name)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	if len(pods) == 1 {
		return parts[0], nil
	}
	var b strings.Builder
	for i, p := range pods {
		fmt.Fprintf(&b, "==> pod %s <==\n", p.Name)
		b.WriteString(parts[i])
		if parts[i] != "" && !strings.HasSuffix(parts[i], "\n") {
			b.WriteByte('\n')
		}
	}
	return b.String(), nil
}

// podLog is one pod's log tail. Only a permission or credential problem is
// an error (the deployment is wrong); a pod that vanished or whose log is
// not there becomes a line in the logs, so the status still gets through.
func (k *kube) podLog(ctx context.Context, pod string) (string, error) {
	tail := int64(k.cfg.JobLogsTail)
	rc, err := k.client.CoreV1().Pods(k.ns).GetLogs(pod, &corev1.PodLogOptions{Container: kubeContainer, TailLines: &tail}).Stream(ctx)
	if err == nil {
		defer rc.Close()
		var b []byte
		if b, err = io.ReadAll(rc); err == nil {
			return string(b), nil
		}
	}
	if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
		return "", k.apiError(err, "get", "pods/log", pod)
	}
	return fmt.Sprintf("(no logs from pod %s: %v)\n", pod, err), nil
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

// jobStatus is a Job's status and message from its conditions and counters,
// and from its pods where the Job alone hides the truth: it says Failed
// without saying the container ran out of memory, and says nothing at all of
// an image that cannot be pulled or a pod that cannot be scheduled.
func jobStatus(kj *batchv1.Job, pods []corev1.Pod, now time.Time, grace time.Duration) (string, string) {
	// Kubernetes 1.33 adds SuccessCriteriaMet (FailureTarget) as soon as
	// the outcome is known and Complete (Failed) only once every pod has
	// terminated; either is the end for pfcon.
	if c := conditionOf(kj, batchv1.JobComplete, batchv1.JobSuccessCriteriaMet); c != nil {
		return statusSuccess, conditionText(c, "completed")
	}
	var fatal, notes []string
	started, unscheduled := false, 0
	for i := range pods {
		n := inspectPod(&pods[i], now, grace)
		started = started || n.started
		if n.unscheduled {
			unscheduled++
		}
		switch {
		case n.text == "":
		case n.fatal:
			fatal = append(fatal, n.text)
		default:
			notes = append(notes, n.text)
		}
	}
	if c := conditionOf(kj, batchv1.JobFailed, batchv1.JobFailureTarget); c != nil {
		return statusError, joinNotes(append(fatal, conditionText(c, "failed")))
	}
	if len(fatal) > 0 {
		// With backoffLimit 0, one failed pod fails the Job: say so now,
		// with the reason the Job's condition will not carry.
		return statusError, joinNotes(fatal)
	}
	st := kj.Status
	switch {
	case st.Succeeded > 0 || st.Failed > 0 || started:
		if len(notes) == 0 {
			return statusStarted, "running"
		}
		return statusStarted, "running; " + joinNotes(notes)
	case len(pods) > 0 && unscheduled == len(pods):
		return statusNotStarted, joinNotes(notes)
	case len(pods) == 0 && st.Active > 0:
		// Pods not looked at (or gone): the Job's word, as pman 6 took it.
		return statusStarted, "running"
	case len(notes) > 0:
		return statusNotStarted, joinNotes(notes)
	case len(pods) > 0:
		return statusNotStarted, "pods created, waiting to start"
	}
	// Right after creation every counter is zero and there is no condition:
	// the Job controller has not acted yet. That is a job about to start,
	// not an unknown state (pman#225 reported such jobs as undefined).
	return statusNotStarted, "submitted, waiting for the Job controller"
}

// podNote is what one pod says about the job.
type podNote struct {
	text        string
	fatal       bool // the job cannot succeed any more
	started     bool // a container of it ran (or runs)
	unscheduled bool
}

func inspectPod(p *corev1.Pod, now time.Time, grace time.Duration) podNote {
	n := podNote{started: containerStarted(p) || p.Status.Phase == corev1.PodRunning ||
		p.Status.Phase == corev1.PodSucceeded}
	for _, cs := range p.Status.ContainerStatuses {
		for _, t := range []*corev1.ContainerStateTerminated{cs.State.Terminated, cs.LastTerminationState.Terminated} {
			if t != nil && t.Reason == "OOMKilled" {
				n.text = fmt.Sprintf("pod %s: out of memory: the container was killed (OOMKilled, exit code %d)%s",
					p.Name, t.ExitCode, memoryLimitText(p))
				n.fatal = true
				return n
			}
		}
		if t := cs.State.Terminated; t != nil && t.ExitCode != 0 {
			n.text = fmt.Sprintf("pod %s: the container exited with code %d", p.Name, t.ExitCode)
			if t.Reason != "" {
				n.text += " (" + t.Reason + ")"
			}
			if t.Message != "" {
				n.text += ": " + strings.TrimSpace(t.Message)
			}
			n.fatal = true
			return n
		}
		if w := cs.State.Waiting; w != nil && pullFailures[w.Reason] {
			n.text = fmt.Sprintf("pod %s: cannot pull image %s: %s", p.Name, cs.Image, reasonText(w.Reason, w.Message))
			since := podSince(p)
			switch {
			case w.Reason == "InvalidImageName":
				n.fatal = true
			case since.IsZero() || now.Sub(since) < grace:
				n.text += fmt.Sprintf(" (the job fails if this lasts %s)", grace)
			default:
				n.text += fmt.Sprintf(" (for %s)", now.Sub(since).Round(time.Second))
				n.fatal = true
			}
			return n
		}
	}
	if p.Status.Phase == corev1.PodFailed {
		n.text = fmt.Sprintf("pod %s failed: %s", p.Name, reasonText(p.Status.Reason, p.Status.Message))
		n.fatal = true
		return n
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			n.unscheduled = true
			n.text = fmt.Sprintf("pod %s cannot be scheduled: %s", p.Name, reasonText(c.Reason, c.Message))
			return n
		}
	}
	if !n.started {
		if w := waitingReason(p); w != "" {
			n.text = fmt.Sprintf("pod %s: %s", p.Name, w)
		}
	}
	return n
}

// podSince is when the pod began trying: the kubelet's start of it, or its
// creation. Measured from the pod's own times, as pman keeps no state.
func podSince(p *corev1.Pod) time.Time {
	if p.Status.StartTime != nil {
		return p.Status.StartTime.Time
	}
	return p.CreationTimestamp.Time
}

func memoryLimitText(p *corev1.Pod) string {
	for _, c := range p.Spec.Containers {
		if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
			return ", memory limit " + q.String()
		}
	}
	return ""
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

// kubeTimestamp is the Job's completion time (only a successful Job has
// one), or "".
func kubeTimestamp(kj *batchv1.Job) string {
	if t := kj.Status.CompletionTime; t != nil {
		return t.UTC().Format(time.RFC3339Nano)
	}
	return ""
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

// ping answers nil when the API server says it is ready (for /readyz).
// GET /readyz needs no permission of pman's Role: the ClusterRole
// system:public-info-viewer grants it to everyone.
func (k *kube) ping(ctx context.Context) error {
	if err := k.client.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).Error(); err != nil {
		return fmt.Errorf("the Kubernetes API server %s does not answer ready: %w", k.host, err)
	}
	return nil
}
