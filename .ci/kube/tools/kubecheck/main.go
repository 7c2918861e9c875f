// Command kubecheck proves the test control plane behaves as the contract in
// .ci/kube says: every image keyword gives its pod lifecycle and Job
// conditions, logs are served, background deletion removes pods, RBAC denies
// a ServiceAccount without a Role, and TokenRequest works; and that the real
// node runs containers: files, logs, user ids, exit codes, OOM kills, and
// the API server reached from a pod as in-cluster clients reach it. It prints what it
// observed with timings and exits non-zero on the first broken promise.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
)

const ns = "default"

var (
	cs    *kubernetes.Clientset
	admin *rest.Config
	runID = fmt.Sprintf("%d", time.Now().Unix()%100000)
)

func main() {
	dir := os.Getenv("PMAN_KUBE_DIR")
	if dir == "" {
		dir = "/tmp/pman-kube"
	}
	kc := flag.String("kubeconfig", filepath.Join(dir, "admin.kubeconfig"), "admin kubeconfig")
	flag.Parse()
	var err error
	admin, err = clientcmd.BuildConfigFromFlags("", *kc)
	check(err)
	admin.QPS, admin.Burst = 100, 200 // polls every 100 ms
	cs, err = kubernetes.NewForConfig(admin)
	check(err)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	checks := []struct {
		name string
		f    func(context.Context) error
	}{
		{"succeed", func(ctx context.Context) error {
			return finished(ctx, "pman-test/succeed:1", 1, batchv1.JobComplete, "Completed", 0)
		}},
		{"fail", func(ctx context.Context) error {
			return finished(ctx, "pman-test/fail:1", 1, batchv1.JobFailed, "Error", 1)
		}},
		{"oom", func(ctx context.Context) error {
			return finished(ctx, "pman-test/oom:1", 1, batchv1.JobFailed, "OOMKilled", 137)
		}},
		{"three workers", func(ctx context.Context) error {
			return finished(ctx, "pman-test/succeed:1", 3, batchv1.JobComplete, "Completed", 0)
		}},
		{"missing", func(ctx context.Context) error {
			return pullFailure(ctx, "pman-test/missing:1", "ImagePullBackOff")
		}},
		{"invalid", func(ctx context.Context) error {
			return pullFailure(ctx, "pman-test/invalid:1", "InvalidImageName")
		}},
		{"config", func(ctx context.Context) error {
			return pullFailure(ctx, "pman-test/config:1", "CreateContainerConfigError")
		}},
		{"creating", func(ctx context.Context) error {
			return pullFailure(ctx, "pman-test/creating:1", "ContainerCreating")
		}},
		{"late", func(ctx context.Context) error {
			return finished(ctx, "pman-test/late:1", 1, batchv1.JobComplete, "Completed", 0)
		}},
		{"sleep + background delete", sleepDelete},
		{"unschedulable", unschedulable},
		{"rbac", rbac},
		// The real node: containers that really run.
		{"real: write a hostPath file, log, run as 1001:0", realSucceed},
		{"real: exit 3", func(ctx context.Context) error {
			return realEnd(ctx, "kc-real-exit", "exit 3", "", batchv1.JobFailed, "Error", 3)
		}},
		{"real: out of memory", func(ctx context.Context) error {
			// exec: on cgroup v1 only the allocating process is killed, so
			// a shell around it would exit 0.
			return realEnd(ctx, "kc-real-oom", "exec dd if=/dev/zero of=/dev/null bs=64M count=1", "20Mi", batchv1.JobFailed, "OOMKilled", 137)
		}},
		{"real: the API server from a pod", realService},
	}
	failed := 0
	for _, c := range checks {
		start := time.Now()
		if err := c.f(ctx); err != nil {
			failed++
			fmt.Printf("FAIL %s: %v\n", c.name, err)
			continue
		}
		fmt.Printf("ok   %s (%.1fs)\n", c.name, time.Since(start).Seconds())
	}
	// Worded unlike a test runner's summary: CI reads closing lines.
	if failed > 0 {
		fmt.Printf("kubecheck: %d of %d checks FAILED\n", failed, len(checks))
		os.Exit(1)
	}
	fmt.Printf("kubecheck: all %d checks hold\n", len(checks))
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubecheck:", err)
		os.Exit(1)
	}
}

// newJob mirrors what pman's Kubernetes backend submits.
func newJob(name, image string, workers int32) *batchv1.Job {
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"pman-kubecheck": runID}},
		Spec: batchv1.JobSpec{
			Parallelism:             ptr.To(workers),
			Completions:             ptr.To(workers),
			BackoffLimit:            ptr.To[int32](0),
			TTLSecondsAfterFinished: ptr.To[int32](86400),
			ActiveDeadlineSeconds:   ptr.To[int64](604800),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"pman-kubecheck": runID}},
				Spec: corev1.PodSpec{
					// kwok's stages decide these pods' fate: never the real node.
					NodeSelector:  map[string]string{"type": "kwok"},
					RestartPolicy: corev1.RestartPolicyNever,
					Containers: []corev1.Container{{
						Name: name, Image: image, Command: []string{"run"},
						Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{}},
					}},
				},
			},
		},
	}
}

func create(ctx context.Context, j *batchv1.Job) (*batchv1.Job, error) {
	j.Name = j.Name + "-" + runID
	j.Spec.Template.Spec.Containers[0].Name = "job"
	return cs.BatchV1().Jobs(ns).Create(ctx, j, metav1.CreateOptions{})
}

func podsOf(ctx context.Context, job string) ([]corev1.Pod, error) {
	l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "job-name=" + job})
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}

func cond(j *batchv1.Job, t batchv1.JobConditionType) *batchv1.JobCondition {
	for i := range j.Status.Conditions {
		if j.Status.Conditions[i].Type == t && j.Status.Conditions[i].Status == corev1.ConditionTrue {
			return &j.Status.Conditions[i]
		}
	}
	return nil
}

// poll calls f every 100 ms until it reports done, an error, or timeout.
func poll(ctx context.Context, timeout time.Duration, f func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		done, err := f()
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.New("timed out")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func terminated(p corev1.Pod) *corev1.ContainerStateTerminated {
	if len(p.Status.ContainerStatuses) == 0 {
		return nil
	}
	return p.Status.ContainerStatuses[0].State.Terminated
}

func finished(ctx context.Context, image string, workers int32, want batchv1.JobConditionType, reason string, exit int32) error {
	j, err := create(ctx, newJob(fmt.Sprintf("kc-%s-%d", strings.Split(strings.TrimPrefix(image, "pman-test/"), ":")[0], workers), image, workers))
	if err != nil {
		return err
	}
	defer remove(j.Name)
	start := time.Now()
	seen := map[corev1.PodPhase]time.Duration{}
	var final *batchv1.Job
	err = poll(ctx, 60*time.Second, func() (bool, error) {
		pods, err := podsOf(ctx, j.Name)
		if err != nil {
			return false, err
		}
		for _, p := range pods {
			if _, ok := seen[p.Status.Phase]; !ok && p.Status.Phase != "" {
				seen[p.Status.Phase] = time.Since(start)
			}
		}
		final, err = cs.BatchV1().Jobs(ns).Get(ctx, j.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return cond(final, batchv1.JobComplete) != nil || cond(final, batchv1.JobFailed) != nil, nil
	})
	if err != nil {
		return fmt.Errorf("job %s: waiting for a final condition: %w (pod phases seen %v)", j.Name, err, seen)
	}
	took := time.Since(start)
	c := cond(final, want)
	if c == nil {
		return fmt.Errorf("job %s: want condition %s, got %+v", j.Name, want, final.Status.Conditions)
	}
	companion := batchv1.JobSuccessCriteriaMet
	if want == batchv1.JobFailed {
		companion = batchv1.JobFailureTarget
	}
	if cond(final, companion) == nil {
		return fmt.Errorf("job %s: %s without %s: %+v", j.Name, want, companion, final.Status.Conditions)
	}
	pods, err := podsOf(ctx, j.Name)
	if err != nil {
		return err
	}
	if len(pods) != int(workers) {
		return fmt.Errorf("job %s: %d pods, want %d", j.Name, len(pods), workers)
	}
	for _, p := range pods {
		t := terminated(p)
		if t == nil || t.Reason != reason || t.ExitCode != exit {
			return fmt.Errorf("pod %s: terminated state %+v, want reason %s exit %d", p.Name, t, reason, exit)
		}
		logs, err := podLogs(ctx, cs, p.Name, nil)
		if err != nil {
			return fmt.Errorf("pod %s logs: %w", p.Name, err)
		}
		if !strings.Contains(logs, "pman fake log line 5 of 5: done") || strings.Count(logs, "\n") != 5 {
			return fmt.Errorf("pod %s logs = %q", p.Name, logs)
		}
		tail, err := podLogs(ctx, cs, p.Name, ptr.To[int64](2))
		if err != nil {
			return err
		}
		if tail != "pman fake log line 4 of 5\npman fake log line 5 of 5: done\n" {
			return fmt.Errorf("pod %s tailLines=2 logs = %q", p.Name, tail)
		}
	}
	fmt.Printf("     %s x%d: pod phases first seen %v; job %s (%s: %q) after %.1fs; completionTime set: %v\n",
		image, workers, seen, want, c.Reason, c.Message, took.Seconds(), final.Status.CompletionTime != nil)
	return nil
}

func podLogs(ctx context.Context, c *kubernetes.Clientset, pod string, tail *int64) (string, error) {
	rc, err := c.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{TailLines: tail}).Stream(ctx)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return string(b), err
}

func remove(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = cs.BatchV1().Jobs(ns).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)})
}

// pullFailure checks an image that never runs: the pod stays Pending with
// its container waiting, ending in reason want, and the Job gets no condition.
func pullFailure(ctx context.Context, image, want string) error {
	j, err := create(ctx, newJob("kc-"+strings.ToLower(want[:7]), image, 1))
	if err != nil {
		return err
	}
	defer remove(j.Name)
	start := time.Now()
	reasons, last, pod := []string{}, "", ""
	err = poll(ctx, 20*time.Second, func() (bool, error) {
		pods, err := podsOf(ctx, j.Name)
		if err != nil || len(pods) == 0 || len(pods[0].Status.ContainerStatuses) == 0 {
			return false, err
		}
		p := pods[0]
		pod = p.Name
		if p.Status.Phase != corev1.PodPending {
			return false, fmt.Errorf("pod %s phase %s, want Pending", p.Name, p.Status.Phase)
		}
		w := p.Status.ContainerStatuses[0].State.Waiting
		if w == nil {
			return false, fmt.Errorf("pod %s not waiting: %+v", p.Name, p.Status.ContainerStatuses[0].State)
		}
		if w.Reason != last {
			last = w.Reason
			reasons = append(reasons, fmt.Sprintf("%s@%.1fs(%s)", w.Reason, time.Since(start).Seconds(), w.Message))
		}
		return w.Reason == want, nil
	})
	if err != nil {
		return fmt.Errorf("%w; reasons seen %v", err, reasons)
	}
	time.Sleep(3 * time.Second)
	final, err := cs.BatchV1().Jobs(ns).Get(ctx, j.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if len(final.Status.Conditions) != 0 || final.Status.Active != 1 {
		return fmt.Errorf("job %s: conditions %+v active %d; want none and 1", j.Name, final.Status.Conditions, final.Status.Active)
	}
	// Unlike a kubelet, kwok serves logs for a container that never ran;
	// the contract tells test authors so, and this keeps that true.
	logs, err := podLogs(ctx, cs, pod, ptr.To[int64](1))
	if err != nil || logs != "pman fake log line 5 of 5: done\n" {
		return fmt.Errorf("logs of never-started pod %s = %q, %v; the contract says kwok serves the fixed log", pod, logs, err)
	}
	fmt.Printf("     %s: waiting reasons %v; job still active=%d ready=%v with no condition\n", image, reasons, final.Status.Active, ptr.Deref(final.Status.Ready, -1))
	return nil
}

func sleepDelete(ctx context.Context) error {
	j, err := create(ctx, newJob("kc-sleep", "pman-test/sleep:1", 2))
	if err != nil {
		return err
	}
	defer remove(j.Name)
	err = poll(ctx, 20*time.Second, func() (bool, error) {
		pods, err := podsOf(ctx, j.Name)
		if err != nil || len(pods) != 2 {
			return false, err
		}
		for _, p := range pods {
			if p.Status.Phase != corev1.PodRunning {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("2 pods running: %w", err)
	}
	time.Sleep(4 * time.Second) // longer than any other lifecycle: still running
	pods, err := podsOf(ctx, j.Name)
	if err != nil {
		return err
	}
	for _, p := range pods {
		if p.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("sleep pod %s left Running: %s", p.Name, p.Status.Phase)
		}
	}
	cur, err := cs.BatchV1().Jobs(ns).Get(ctx, j.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if cur.Status.Active != 2 || len(cur.Status.Conditions) != 0 {
		return fmt.Errorf("sleep job: active %d conditions %+v", cur.Status.Active, cur.Status.Conditions)
	}
	start := time.Now()
	err = cs.BatchV1().Jobs(ns).Delete(ctx, j.Name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)})
	if err != nil {
		return err
	}
	var jobGone time.Duration
	err = poll(ctx, 30*time.Second, func() (bool, error) {
		_, err := cs.BatchV1().Jobs(ns).Get(ctx, j.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			if jobGone == 0 {
				jobGone = time.Since(start)
			}
		} else if err != nil {
			return false, err
		}
		pods, err := podsOf(ctx, j.Name)
		return err == nil && len(pods) == 0 && jobGone > 0, err
	})
	if err != nil {
		return fmt.Errorf("background delete: %w", err)
	}
	fmt.Printf("     sleep x2: both Running, still Running 4s later (job active=2); background delete: job gone %.1fs, pods gone %.1fs\n",
		jobGone.Seconds(), time.Since(start).Seconds())
	return nil
}

func unschedulable(ctx context.Context) error {
	jb := newJob("kc-unsched", "pman-test/succeed:1", 1)
	jb.Spec.Template.Spec.NodeSelector = map[string]string{"gpu-model": "none-such"}
	j, err := create(ctx, jb)
	if err != nil {
		return err
	}
	defer remove(j.Name)
	var msg string
	err = poll(ctx, 20*time.Second, func() (bool, error) {
		pods, err := podsOf(ctx, j.Name)
		if err != nil || len(pods) == 0 {
			return false, err
		}
		for _, c := range pods[0].Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
				msg = c.Message
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return err
	}
	fmt.Printf("     unschedulable: PodScheduled=False Unschedulable %q\n", msg)
	return nil
}

// token mints a ServiceAccount token through TokenRequest and returns a
// client that authenticates with it only.
func token(ctx context.Context, sa string) (*kubernetes.Clientset, error) {
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("TokenRequest for %s: %w", sa, err)
	}
	cfg := rest.AnonymousClientConfig(admin)
	cfg.BearerToken = tr.Status.Token
	return kubernetes.NewForConfig(cfg)
}

func rbac(ctx context.Context) error {
	for _, sa := range []string{"kc-norole", "kc-withrole"} {
		_, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "kc-role"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"create", "get", "delete"}},
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}},
			{APIGroups: []string{""}, Resources: []string{"pods/log"}, Verbs: []string{"get"}},
		},
	}
	if _, err := cs.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "kc-role"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "kc-role"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "kc-withrole", Namespace: ns}},
	}
	if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}

	norole, err := token(ctx, "kc-norole")
	if err != nil {
		return err
	}
	_, err = norole.BatchV1().Jobs(ns).Create(ctx, newJob("kc-denied-"+runID, "pman-test/succeed:1", 1), metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) {
		return fmt.Errorf("job create without a Role: err = %v; want 403 Forbidden", err)
	}
	fmt.Printf("     rbac: no Role -> %q\n", err)

	withrole, err := token(ctx, "kc-withrole")
	if err != nil {
		return err
	}
	// RBAC caches refresh on watch; give the new binding a moment.
	var j *batchv1.Job
	err = poll(ctx, 10*time.Second, func() (bool, error) {
		var err error
		j, err = withrole.BatchV1().Jobs(ns).Create(ctx, newJob("kc-allowed-"+runID, "pman-test/succeed:1", 1), metav1.CreateOptions{})
		if apierrors.IsForbidden(err) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		return fmt.Errorf("job create with the Role: %w", err)
	}
	defer remove(j.Name)
	var pod string
	err = poll(ctx, 30*time.Second, func() (bool, error) {
		pods, err := withrole.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "job-name=" + j.Name})
		if err != nil || len(pods.Items) == 0 || pods.Items[0].Status.Phase != corev1.PodSucceeded {
			return false, err
		}
		pod = pods.Items[0].Name
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("list pods with the Role: %w", err)
	}
	logs, err := podLogs(ctx, withrole, pod, ptr.To[int64](1))
	if err != nil || logs != "pman fake log line 5 of 5: done\n" {
		return fmt.Errorf("pods/log with the Role: %q, %v", logs, err)
	}
	_, err = withrole.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		return fmt.Errorf("secrets list with a Role that lacks it: err = %v; want 403", err)
	}
	if err := withrole.BatchV1().Jobs(ns).Delete(ctx, j.Name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)}); err != nil {
		return fmt.Errorf("delete with the Role: %w", err)
	}
	fmt.Printf("     rbac: TokenRequest token with the Role: create job, list pods, get pods/log, delete ok; secrets -> 403\n")
	return nil
}

// realNode and realImage: the real node of .ci/kube/node and the image it
// holds from the start (its pause image: a static busybox).
const (
	realNode  = "pman-real-node"
	realImage = "pman-ci/pause:1"
)

// realJob is a job of one pod on the real node that runs script with sh.
func realJob(name, script, memory string) *batchv1.Job {
	j := newJob(name, realImage, 1)
	spec := &j.Spec.Template.Spec
	spec.NodeSelector = map[string]string{"kubernetes.io/hostname": realNode}
	spec.Containers[0].Command = []string{"sh", "-c", script}
	if memory != "" {
		spec.Containers[0].Resources.Limits[corev1.ResourceMemory] = resource.MustParse(memory)
	}
	return j
}

// runReal creates j and waits for its Job's final condition, and returns
// the Job and its one pod.
func runReal(ctx context.Context, j *batchv1.Job) (*batchv1.Job, *corev1.Pod, error) {
	j, err := create(ctx, j)
	if err != nil {
		return nil, nil, err
	}
	var final *batchv1.Job
	err = poll(ctx, 90*time.Second, func() (bool, error) {
		final, err = cs.BatchV1().Jobs(ns).Get(ctx, j.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return cond(final, batchv1.JobComplete) != nil || cond(final, batchv1.JobFailed) != nil, nil
	})
	pods, perr := podsOf(ctx, j.Name)
	if err != nil || perr != nil || len(pods) != 1 {
		var status any
		if len(pods) > 0 {
			status = pods[0].Status
		}
		return nil, nil, fmt.Errorf("job %s: %v %v, %d pods (%+v)", j.Name, err, perr, len(pods), status)
	}
	if pods[0].Spec.NodeName != realNode {
		return nil, nil, fmt.Errorf("pod %s ran on %q, want %s", pods[0].Name, pods[0].Spec.NodeName, realNode)
	}
	return final, &pods[0], nil
}

// realSucceed: a pod that writes a file into a hostPath as uid 1001, gid 0,
// and logs; its log comes through the API server from the kubelet.
func realSucceed(ctx context.Context) error {
	host, err := os.MkdirTemp("", "kubecheck-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(host)
	if err := os.Chmod(host, 0o777); err != nil {
		return err
	}
	j := realJob("kc-real-ok", `echo "hello from $(id -u):$(id -g)"; echo written > /out/file`, "")
	spec := &j.Spec.Template.Spec
	spec.Volumes = []corev1.Volume{{Name: "out", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: host}}}}
	spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "out", MountPath: "/out"}}
	spec.Containers[0].SecurityContext = &corev1.SecurityContext{RunAsUser: ptr.To[int64](1001), RunAsGroup: ptr.To[int64](0)}
	final, pod, err := runReal(ctx, j)
	if err != nil {
		return err
	}
	defer remove(final.Name)
	if cond(final, batchv1.JobComplete) == nil {
		return fmt.Errorf("job %s: %+v, want Complete", final.Name, final.Status.Conditions)
	}
	if b, err := os.ReadFile(filepath.Join(host, "file")); err != nil || string(b) != "written\n" {
		return fmt.Errorf("the pod's file on the host: %q, %v", b, err)
	}
	logs, err := podLogs(ctx, cs, pod.Name, nil)
	if err != nil || logs != "hello from 1001:0\n" {
		return fmt.Errorf("logs of %s = %q, %v; want the pod's line, as 1001:0", pod.Name, logs, err)
	}
	return nil
}

// realEnd: a pod whose container ends as want (reason, exit code).
func realEnd(ctx context.Context, name, script, memory string, want batchv1.JobConditionType, reason string, exit int32) error {
	final, pod, err := runReal(ctx, realJob(name, script, memory))
	if err != nil {
		return err
	}
	defer remove(final.Name)
	if cond(final, want) == nil {
		return fmt.Errorf("job %s: %+v, want %s", final.Name, final.Status.Conditions, want)
	}
	if t := terminated(*pod); t == nil || t.Reason != reason || t.ExitCode != exit {
		return fmt.Errorf("pod %s: terminated %+v, want %s, exit code %d", pod.Name, t, reason, exit)
	}
	return nil
}

// realService: a pod reaches the API server where in-cluster clients look,
// the kubernetes Service (KUBERNETES_SERVICE_HOST/PORT), and the API
// server's certificate names that address.
func realService(ctx context.Context) error {
	j := realJob("kc-real-svc", `wget -q -O - --no-check-certificate "https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/readyz"; echo; echo "$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT"`, "")
	final, pod, err := runReal(ctx, j)
	if err != nil {
		return err
	}
	defer remove(final.Name)
	logs, err := podLogs(ctx, cs, pod.Name, nil)
	if err != nil || logs != "ok\n10.96.0.1:443\n" {
		return fmt.Errorf("logs of %s = %q, %v; want the API server's readyz through 10.96.0.1:443", pod.Name, logs, err)
	}
	return nil
}
