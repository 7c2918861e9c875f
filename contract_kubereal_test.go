package main

// The Kubernetes harness of the contract suite on the real node of
// .ci/kube: a kubelet with its own containerd runs the jobs' containers, so
// nothing is faked. pman runs as the manifest's ServiceAccount, its jobs
// pinned to that node with NODE_SELECTOR, as the chart's user (1001:0), on
// host storage in a temporary STOREBASE; they run the busybox test image,
// moved onto the node with .ci/kube/load-image.

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// kubeRealNode is the real node's name (.ci/kube/node).
const kubeRealNode = "pman-real-node"

// kubeRealImage is the busybox test image as the node holds it. Not
// :latest: Kubernetes pulls a :latest image on every start
// (imagePullPolicy Always), and no registry is reachable.
const kubeRealImage = "pman-test-busybox:kube"

// kubeRealSelector pins a job to the real node.
const kubeRealSelector = "kubernetes.io/hostname=" + kubeRealNode

// kubeRealContract returns the Kubernetes backend of the contract suite on
// the real node.
func kubeRealContract() contractBackend {
	return contractBackend{
		name:                "kubernetes-real",
		start:               func(t *testing.T, extra map[string]string) *contractEnv { return kubeRealEnv(t, extra, false) },
		startLogsUnreadable: func(t *testing.T) *contractEnv { return kubeRealEnv(t, nil, true) },
	}
}

var (
	kubeImageLoaded = map[string]bool{}
	kubeImageMu     sync.Mutex
)

// needRealNode returns the admin client of the test control plane once its
// real node is Ready and holds kubeRealImage (and every image of more, from
// the local Docker engine), or skips.
func needRealNode(t *testing.T, more ...string) (*rest.Config, kubernetes.Interface) {
	t.Helper()
	rc, admin := kubeAdmin(t)
	n, err := admin.CoreV1().Nodes().Get(context.Background(), kubeRealNode, metav1.GetOptions{})
	if err != nil {
		needOrSkip(t, fmt.Sprintf("no real node %s in the test control plane (%v): run .ci/kube/start", kubeRealNode, err))
	}
	ready := false
	for _, c := range n.Status.Conditions {
		ready = ready || c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue
	}
	if !ready {
		needOrSkip(t, fmt.Sprintf("the real node %s is not Ready: run .ci/kube/start", kubeRealNode))
	}
	cli := needEngine(t)
	src := needTestImage(t, cli)
	kubeImageMu.Lock()
	defer kubeImageMu.Unlock()
	if !kubeImageLoaded[kubeRealImage] {
		if err := cli.ImageTag(context.Background(), src, kubeRealImage); err != nil {
			t.Fatalf("tagging %s: %v", kubeRealImage, err)
		}
	}
	for _, img := range append([]string{kubeRealImage}, more...) {
		if kubeImageLoaded[img] {
			continue
		}
		out, err := exec.Command("bash", ".ci/kube/load-image", img).CombinedOutput()
		if err != nil {
			needOrSkip(t, fmt.Sprintf("cannot put %s on the real node: %v: %s", img, err, out))
		}
		kubeImageLoaded[img] = true
	}
	return rc, admin
}

// kubeRealEnv starts pman in a namespace of its own, as the manifest's
// ServiceAccount (without pods/log when noLogs), its jobs on the real node
// as the chart's user, on host storage in a temporary STOREBASE, and
// returns it.
func kubeRealEnv(t *testing.T, extra map[string]string, noLogs bool) *contractEnv {
	t.Helper()
	adminRC, admin := needRealNode(t)
	env := map[string]string{"NODE_SELECTOR": kubeRealSelector, "CONTAINER_USER": "1001:0"}
	maps.Copy(env, extra)
	e, ns := kubeServe(t, adminRC, admin, env, noLogs)
	e.runs = true
	e.logLine = contractLogLine
	e.exists = func(t *testing.T, jid string) bool { return kubeRealHolds(t, admin, ns, jid) }
	e.body = func(t *testing.T, jid string, a act) map[string]any {
		b := e.shellBody(t, jid, kubeRealImage, a)
		// A limit is also the pod's request: at pfcon's 1000m, the node's
		// two cores would hold two jobs at a time, and the suite's rows
		// would wait for each other.
		b["cpu_limit"] = 100
		return b
	}
	return e
}

// kubeRealHolds is kubeHolds for pods that really run: a deleted pod whose
// container ignores SIGTERM (a shell as process 1 does) is killed only after
// its grace period, 30 s, so its pods get that long on top.
func kubeRealHolds(t *testing.T, admin kubernetes.Interface, ns, jid string) bool {
	t.Helper()
	if kubeHolds(t, admin, ns, jid) {
		deadline := time.Now().Add(corev1.DefaultTerminationGracePeriodSeconds * time.Second)
		for time.Now().Before(deadline) {
			pods, err := admin.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "job-name=" + jid})
			if err != nil {
				t.Fatalf("pods of %s: %v", jid, err)
			}
			if len(pods.Items) == 0 {
				return false
			}
			time.Sleep(time.Second)
		}
		return true
	}
	return false
}

// kubeRealServer starts pman in ns as a ServiceAccount of its own with the
// manifest's Role, its jobs pinned to the real node, with env on top, and
// returns its URL.
func kubeRealServer(t *testing.T, adminRC *rest.Config, admin kubernetes.Interface, ns string, env map[string]string) string {
	t.Helper()
	sa, role, rb := manifestRBAC(t)
	name := "pman-" + randSuffix()
	sa.Name, role.Name, rb.Name, rb.RoleRef.Name, rb.Subjects[0].Name = name, name, name, name, name
	m := map[string]string{"CONTAINER_ENV": "kubernetes", "JOB_NAMESPACE": ns, "NODE_SELECTOR": kubeRealSelector,
		"KUBECONFIG": kubeconfigAs(t, adminRC, admin, ns, sa, role, rb)}
	maps.Copy(m, env)
	return startServer(t, m)
}

// TestKubeReal runs on the real node what only a real kubelet shows beyond
// the contract suite: an exit code of the job's own, the kill of the
// process that goes over its memory limit (also when a shell around it
// survives and exits 0, as on cgroup v1), the user and group ids of
// CONTAINER_USER, and the Helm chart's settings (a PVC, here bound to a
// hostPath PV, in a namespace that enforces Pod Security "restricted").
func TestKubeReal(t *testing.T) {
	adminRC, admin := needRealNode(t)
	ctx := context.Background()

	t.Run("exit code, OOM kill, user ids", func(t *testing.T) {
		t.Parallel()
		ns := kubeNamespace(t, admin)
		store := t.TempDir()
		url := kubeRealServer(t, adminRC, admin, ns, map[string]string{"STORAGE_TYPE": "host", "STOREBASE": store, "CONTAINER_USER": "2000:3000"})
		submit := func(jid, script string, memory int) {
			t.Helper()
			t.Cleanup(func() { deleteKubeJob(admin, ns, jid) })
			body := storeJob(t, store, jid, kubeRealImage)
			body["entrypoint"] = []string{"sh", "-c", script, "sh"}
			body["cpu_limit"], body["memory_limit"] = 100, memory
			if code, m := call(t, "POST", url+"/api/v1/", body); code != http.StatusCreated {
				t.Fatalf("POST %s = %d %v; want 201", jid, code, m)
			}
		}
		submit("exit-3", "echo before the end; exit 3", 64)
		// exec: on cgroup v1 the kernel kills only the process that
		// allocates; the container's exit code is its own.
		submit("oom-exec", "exec dd if=/dev/zero of=/dev/null bs=64M count=1", 16)
		submit("ids", "id", 64)
		// Without exec: the shell survives the kill of its child, and exits 0.
		submit("oom-shell", "dd if=/dev/zero of=/dev/null bs=64M count=1; echo the shell survived", 16)

		m := untilStatus(t, url, "exit-3", 2*time.Minute, statusSuccess, statusError)
		if msg := fmt.Sprint(m["message"]); m["status"] != statusError || !strings.Contains(msg, "exited with code 3") || !strings.Contains(fmt.Sprint(m["logs"]), "before the end") {
			t.Errorf("exit-3: %v; want finishedWithError, exit code 3, its log line", m)
		}
		m = untilStatus(t, url, "oom-exec", 2*time.Minute, statusSuccess, statusError)
		if msg := fmt.Sprint(m["message"]); m["status"] != statusError || !strings.Contains(msg, outOfMemory(16, true)) || !strings.Contains(msg, "OOMKilled, exit code 137") {
			t.Errorf("oom-exec: %v; want finishedWithError, %q, OOMKilled with exit code 137", m, outOfMemory(16, true))
		}
		m = untilStatus(t, url, "oom-shell", 2*time.Minute, statusSuccess, statusError)
		if msg := fmt.Sprint(m["message"]); m["status"] != statusError || !strings.Contains(msg, outOfMemory(16, true)) {
			t.Errorf("oom-shell: %v; want finishedWithError, %q, though its shell may exit 0", m, outOfMemory(16, true))
		}
		m = untilStatus(t, url, "ids", 2*time.Minute, statusSuccess, statusError)
		if m["status"] != statusSuccess || !strings.Contains(fmt.Sprint(m["logs"]), "uid=2000 gid=3000 groups=3000") {
			t.Errorf("ids: %v; want finishedSuccessfully, run as uid 2000, gid 3000 (CONTAINER_USER=2000:3000)", m)
		}
	})

	t.Run("the Helm chart's settings: a PVC, Pod Security restricted", func(t *testing.T) {
		t.Parallel()
		ns := kubeNamespace(t, admin)
		label := []byte(`{"metadata":{"labels":{"pod-security.kubernetes.io/enforce":"restricted"}}}`)
		if _, err := admin.CoreV1().Namespaces().Patch(ctx, ns, types.MergePatchType, label, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		store := t.TempDir()
		boundHostPVC(t, admin, ns, "storebase", store)
		url := kubeRealServer(t, adminRC, admin, ns, map[string]string{
			"STORAGE_TYPE": "kubernetes_pvc", "VOLUME_NAME": "storebase", "CONTAINER_USER": "1001:0",
			"JOB_LABELS": "chrisproject.org/job=plugininstance", "ENABLE_HOME_WORKAROUND": "yes", "REMOVE_JOBS": "yes", "IGNORE_LIMITS": "no",
		})
		jid := "chart-" + randSuffix()
		t.Cleanup(func() { deleteKubeJob(admin, ns, jid) })
		body := storeJob(t, store, jid, kubeRealImage)
		body["cpu_limit"] = 100
		if code, m := call(t, "POST", url+"/api/v1/", body); code != http.StatusCreated {
			t.Fatalf("POST = %d %v; want 201", code, m)
		}
		checkStoreJob(t, untilStatus(t, url, jid, 2*time.Minute, statusSuccess, statusError), store, jid)
	})
}
