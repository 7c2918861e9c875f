package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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

// When pman itself declares a Job failed, it writes why and when on the Job,
// so that every later GET answers the same, whatever the pods do next (the
// Job controller's own Failed condition, which follows, says only
// "DeadlineExceeded").
const (
	kubeFailedAnnotation   = "pman.chrisproject.org/failed"
	kubeFailedAtAnnotation = "pman.chrisproject.org/failed-at"
)

// Logs of one GET are bounded in bytes as well as in lines: at most
// JOB_LOGS_MAX_BYTES in all (split evenly between the pods read), from at
// most kubeLogPods pods.
const (
	kubeLogPods    = 64
	kubeLogTimeout = 10 * time.Second // per pod, for both reads
)

// kubeSched runs each job as a batch/v1 Job named by its jid in JOB_NAMESPACE.
type kubeSched struct {
	client kubernetes.Interface
	cfg    *config
	log    *slog.Logger
	ns     string
	host   string // the API server, for messages
	grace  kubeGraces
	now    func() time.Time
}

func newKube(cfg *config, log *slog.Logger) (scheduler, error) {
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
	return &kubeSched{
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
		for _, k := range slices.Sorted(maps.Keys(m)) {
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

// nameProblem returns why jid cannot name a Job, or "". The API server
// checks a Job name as a DNS subdomain, and the Job controller copies it into
// its pods' job-name label, whose values stop at 63 characters; a jid that
// passes is a valid label value, so jobLabels' jid label holds it as well.
func (k *kubeSched) nameProblem(jid string) string {
	if p := validation.IsDNS1123Subdomain(jid); p != nil {
		return fmt.Sprintf("%q is not a valid Kubernetes Job name: %s", jid, strings.Join(p, "; "))
	}
	if len(jid) > validation.LabelValueMaxLength {
		return fmt.Sprintf("%q is not a valid Kubernetes Job name: must be no more than %d characters (the Job controller puts it in a label)", jid, validation.LabelValueMaxLength)
	}
	return ""
}

func (k *kubeSched) create(ctx context.Context, s *jobSpec) (*job, error) {
	// With a hostPath STOREBASE, a missing input directory would be made
	// empty by the kubelet: refused, where pman sees the store, as is a
	// directory that leads out of it (the kubelet would refuse its subPath
	// only when the pod starts).
	if k.cfg.StorageType == "host" {
		var err error
		if s, err = resolveJobDirs(k.cfg.StoreBase, s); err != nil {
			return nil, err
		}
	}
	// parallelism and completions are int32s: a bigger number would wrap
	// around and the API server would answer a puzzling 422.
	if s.Workers > math.MaxInt32 {
		return nil, fieldError("number_of_workers", fmt.Sprintf("must be at most %d with CONTAINER_ENV=kubernetes (a Job's parallelism is an int32), not %d", math.MaxInt32, s.Workers))
	}
	uid, gid := k.ids()
	kj := buildKubeJob(k.cfg, s, uid, gid)
	created, err := k.client.BatchV1().Jobs(k.ns).Create(ctx, kj, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		// The job exists, or a Job pman did not make holds the name.
		if other, gerr := k.client.BatchV1().Jobs(k.ns).Get(ctx, s.JID, metav1.GetOptions{}); gerr == nil && !k.own(other.Labels, s.JID) {
			return nil, nameTaken(s.JID, "Kubernetes Job in namespace "+k.ns)
		}
	}
	if err != nil {
		return nil, k.toAPIError(err, "create", "jobs.batch", s.JID)
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

// ids returns the user and group the job runs as: CONTAINER_USER (drawn per
// job) or the seed's SECURITYCONTEXT_RUN_AS_USER/GROUP; nil leaves the
// image's own.
func (k *kubeSched) ids() (uid, gid *int64) {
	if u := k.cfg.ContainerUser; u.UID.Set || u.GID.Set {
		a, b := u.pick()
		if a != nil {
			uid = new(int64(*a))
		}
		if b != nil {
			gid = new(int64(*b))
		}
		return uid, gid
	}
	return k.cfg.RunAsUser, k.cfg.RunAsGroup
}

func (k *kubeSched) get(ctx context.Context, jid string) (*job, error) {
	// A Job that changes while pman ends it is read again (see stop).
	for attempt := 1; ; attempt++ {
		kj, err := k.job(ctx, jid)
		if err != nil {
			return nil, err
		}
		// The pods are needed for the logs, and for the status unless pman
		// already judged the Job (a Job that completed may still hide a
		// container killed for memory: see jobStatus).
		var pods []corev1.Pod
		_, judged := kj.Annotations[kubeFailedAnnotation]
		if k.cfg.JobLogsTail > 0 || !judged {
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

// job returns the Job of job jid: the Job named jid in JOB_NAMESPACE, if
// pman made it (ownJob, by the Job's labels); eNotFound (foreignJob) for
// one someone else made. The labels come with the Job: no call more.
func (k *kubeSched) job(ctx context.Context, jid string) (*batchv1.Job, error) {
	kj, err := k.client.BatchV1().Jobs(k.ns).Get(ctx, jid, metav1.GetOptions{})
	if err != nil {
		return nil, k.toAPIError(err, "get", "jobs.batch", jid)
	}
	if !k.own(kj.Labels, jid) {
		return nil, foreignJob(jid, "Kubernetes Job in namespace "+k.ns)
	}
	return kj, nil
}

// own reports whether a Job or pod with labels is pman's job jid
// (policy.go). pman 6 put JOB_LABELS on its Jobs' pod template only; the
// API server copies a template's labels onto a Job created without labels
// of its own, so its Jobs carry them too.
func (k *kubeSched) own(labels map[string]string, jid string) bool {
	return ownJob(labels, jid, pman6Labels(k.cfg))
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
func (k *kubeSched) stop(ctx context.Context, kj *batchv1.Job, v kubeVerdict) error {
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
		return k.toAPIError(err, "patch", "jobs.batch", kj.Name)
	}
	k.log.Info("job ended by pman", "jid", kj.Name, "namespace", k.ns, "active_deadline_seconds", deadline, "reason", msg)
	return nil
}

// pods lists the Job's pods by its own selector (its uid), not by the
// job-name label: after a DELETE, the pods of a removed Job of the same name
// may still be terminating while a new one runs.
func (k *kubeSched) pods(ctx context.Context, kj *batchv1.Job) ([]corev1.Pod, error) {
	sel, err := metav1.LabelSelectorAsSelector(kj.Spec.Selector)
	if err != nil || kj.Spec.Selector == nil {
		sel, err = metav1.LabelSelectorAsSelector(&metav1.LabelSelector{MatchLabels: map[string]string{batchv1.JobNameLabel: kj.Name}})
		if err != nil {
			return nil, errorf(eInternal, "pod selector for job %q: %v", kj.Name, err)
		}
	}
	list, err := k.client.CoreV1().Pods(k.ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, k.toAPIError(err, "list", "pods", kj.Name)
	}
	// Only the job's own pods: one that someone else made with the Job's
	// selector labels is not read.
	pods := slices.DeleteFunc(list.Items, func(p corev1.Pod) bool { return !k.own(p.Labels, kj.Name) })
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
func (k *kubeSched) events(ctx context.Context) eventLister {
	return func(obj metav1.Object) ([]corev1.Event, error) {
		list, err := k.client.CoreV1().Events(k.ns).List(ctx, metav1.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("involvedObject.uid", string(obj.GetUID())).String(),
		})
		if err != nil {
			return nil, k.toAPIError(err, "list", "events", obj.GetName())
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
func (k *kubeSched) logs(ctx context.Context, pods []corev1.Pod) (logs string, incomplete bool) {
	if k.cfg.JobLogsTail == 0 || len(pods) == 0 {
		return "", false
	}
	shown := pods[:min(len(pods), kubeLogPods)]
	limit := int64(k.cfg.logsMaxBytes() / len(shown))
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
func (k *kubeSched) podLog(ctx context.Context, p *corev1.Pod, limit int64) (string, error) {
	container := kubeContainer
	if len(p.Spec.Containers) > 0 {
		container = p.Spec.Containers[0].Name
	}
	// A node that does not answer must not hold the status up for the
	// client's whole timeout.
	ctx, cancel := context.WithTimeout(ctx, kubeLogTimeout)
	defer cancel()
	lines := int64(k.cfg.JobLogsTail)
	// First the tail with LimitBytes one past the bound: the usual log fits,
	// in one bounded read.
	probe := limit + 1
	rc, err := k.client.CoreV1().Pods(k.ns).GetLogs(p.Name, &corev1.PodLogOptions{Container: container, TailLines: &lines, LimitBytes: &probe}).Stream(ctx)
	if err != nil {
		if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
			return "", k.toAPIError(err, "get", "pods/log", p.Name)
		}
		return "", fmt.Errorf("pod %s: %w", p.Name, err)
	}
	b, err := io.ReadAll(io.LimitReader(rc, probe))
	rc.Close()
	if err != nil {
		return "", fmt.Errorf("pod %s: %w", p.Name, err)
	}
	if int64(len(b)) <= limit {
		return string(b), nil
	}
	// LimitBytes keeps the start, and the end is what matters (the error
	// that ended the job; the end of one huge line): the same tail again,
	// whole, through logTail, which keeps its last limit bytes in as much
	// memory. The kubelet keeps a bounded log (its containerLogMaxSize).
	rc, err = k.client.CoreV1().Pods(k.ns).GetLogs(p.Name, &corev1.PodLogOptions{Container: container, TailLines: &lines}).Stream(ctx)
	if err != nil {
		return "", fmt.Errorf("pod %s: %w", p.Name, err)
	}
	defer rc.Close()
	tail := &logTail{max: int(limit)}
	if _, err := io.Copy(tail, rc); err != nil {
		return "", fmt.Errorf("pod %s: %w", p.Name, err)
	}
	return tail.String(), nil
}

func (k *kubeSched) remove(ctx context.Context, jid string) error {
	// Only a Job pman made is deleted; the delete names the Job read by
	// its uid, so that a Job made under the same name in between is not.
	kj, err := k.job(ctx, jid)
	if err != nil {
		return err
	}
	// Background: the Job goes now, the garbage collector takes its pods.
	// The API's default for Jobs (orphan) would leave them running.
	bg := metav1.DeletePropagationBackground
	err = k.client.BatchV1().Jobs(k.ns).Delete(ctx, jid, metav1.DeleteOptions{PropagationPolicy: &bg, Preconditions: metav1.NewUIDPreconditions(string(kj.UID))})
	if apierrors.IsConflict(err) {
		// The uid no longer matches: the Job read is gone, and one of the
		// same name, made since, is not the one the DELETE was for.
		return errorf(eNotFound, "no job %q in namespace %s", jid, k.ns)
	}
	if err != nil {
		return k.toAPIError(err, "delete", "jobs.batch", jid)
	}
	return nil
}

// toAPIError returns err, an API call's error, with its kind and a message that
// says what pman was doing.
func (k *kubeSched) toAPIError(err error, verb, res, name string) error {
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

// rbacDenial reports whether msg is the authorizer's refusal ("User ... cannot
// create resource ...") from other 403s, such as an exceeded quota.
func rbacDenial(msg string) bool {
	return strings.Contains(msg, " cannot ")
}

// ping returns nil when the API server says it is ready (for /readyz).
// GET /readyz needs no permission of pman's Role: the ClusterRole
// system:public-info-viewer grants it to everyone.
func (k *kubeSched) ping(ctx context.Context) error {
	if err := k.client.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).Error(); err != nil {
		return fmt.Errorf("the Kubernetes API server %s does not answer ready: %w", k.host, err)
	}
	return nil
}
