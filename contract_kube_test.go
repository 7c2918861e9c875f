package main

// The Kubernetes harness of the contract suite: pman runs as the manifest's
// ServiceAccount on the test control plane of .ci/kube, its jobs on the
// kwok node. kwok runs no container: a pod's fate is its image's name (see
// .ci/kube/README.md), and every container logs the same kwokLog lines.

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// kubeContract returns the Kubernetes backend of the contract suite.
func kubeContract() contractBackend {
	return contractBackend{
		name:                "kubernetes",
		start:               func(t *testing.T, extra map[string]string) *contractEnv { return kubeContractEnv(t, extra, false) },
		startLogsUnreadable: func(t *testing.T) *contractEnv { return kubeContractEnv(t, nil, true) },
	}
}

// kubeImages is the image of each act: the kwok stage its name picks.
var kubeImages = map[act]string{
	actSucceed: "fnndsc/pl-succeed",
	actFail:    "fnndsc/pl-fail",
	actOOM:     "fnndsc/pl-oom",
	actSleep:   "fnndsc/pl-sleep",
	actHome:    "fnndsc/pl-succeed",
}

// kubeContractJIDs numbers the jids of a test run.
var kubeContractJIDs atomic.Int64

// kubeContractEnv starts pman in a namespace of its own, as the manifest's
// ServiceAccount (without its permission to get pods/log when noLogs), on
// host storage in a temporary STOREBASE, its jobs on the kwok node, and
// returns it. A store pman sees: a missing input directory is refused.
func kubeContractEnv(t *testing.T, extra map[string]string, noLogs bool) *contractEnv {
	t.Helper()
	adminRC, admin := kubeAdmin(t)
	env := map[string]string{"NODE_SELECTOR": "type=kwok"}
	maps.Copy(env, extra)
	e, ns := kubeServe(t, adminRC, admin, env, noLogs)
	e.runs = false // kwok runs no container: no output, no $HOME to read back
	e.logLine = kwokLog
	e.exists = func(t *testing.T, jid string) bool { return kubeHolds(t, admin, ns, jid) }
	e.body = func(t *testing.T, jid string, a act) map[string]any {
		b := e.contractBody(t, jid)
		b["image"], b["entrypoint"] = kubeImages[a], []string{"app"}
		if a == actOOM {
			b["memory_limit"] = 64 // what the OOM message must name
		}
		return b
	}
	return e
}

// kubeServe starts pman, with env over its defaults, in a namespace of its
// own, as the manifest's ServiceAccount (without its permission to get
// pods/log when noLogs), on host storage in a temporary STOREBASE, and
// returns it with the namespace. A store pman sees: a missing input
// directory is refused. Its jobs' Jobs go when the test ends.
func kubeServe(t *testing.T, adminRC *rest.Config, admin kubernetes.Interface, env map[string]string, noLogs bool) (*contractEnv, string) {
	t.Helper()
	ns := kubeNamespace(t, admin)
	sa, role, rb := manifestRBAC(t)
	if noLogs {
		role.Rules = slices.DeleteFunc(role.Rules, func(r rbacv1.PolicyRule) bool { return slices.Contains(r.Resources, "pods/log") })
	}
	store := t.TempDir()
	all := map[string]string{
		"CONTAINER_ENV": "kubernetes", "JOB_NAMESPACE": ns,
		"KUBECONFIG":   kubeconfigAs(t, adminRC, admin, ns, sa, role, rb),
		"STORAGE_TYPE": "host", "STOREBASE": store,
	}
	maps.Copy(all, env)
	e := &contractEnv{
		url:           startServer(t, all),
		store:         store,
		impossibleJID: "Upper_Case", // checkJID takes it; a Job name is lower case
	}
	e.newJID = func(t *testing.T, name string) string {
		jid := name + "-" + strconv.FormatInt(kubeContractJIDs.Add(1), 10)
		t.Cleanup(func() { deleteKubeJob(admin, ns, jid) })
		return jid
	}
	e.inspect = func(t *testing.T, jid string) (map[string]string, []string) {
		return kubeInspect(t, admin, ns, jid)
	}
	return e, ns
}

// kubeInspect returns the labels both the Job and its pod template carry
// (with the same value), and its container's environment as KEY=value.
func kubeInspect(t *testing.T, admin kubernetes.Interface, ns, jid string) (map[string]string, []string) {
	t.Helper()
	kj, err := admin.BatchV1().Jobs(ns).Get(context.Background(), jid, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("job %s: %v", jid, err)
	}
	labels := map[string]string{}
	for k, v := range kj.Labels {
		if kj.Spec.Template.Labels[k] == v {
			labels[k] = v
		}
	}
	var env []string
	for _, e := range kj.Spec.Template.Spec.Containers[0].Env {
		env = append(env, e.Name+"="+e.Value)
	}
	return labels, env
}

// kubeHolds reports whether the namespace still holds the Job jid (even
// one being deleted: a GET would still find it), or any of its pods 30 s
// from now. pman deletes a Job with Background propagation, which takes the
// Job at once and leaves its pods to the garbage collector (about a second
// on the test cluster); pods that outlive that were orphaned.
func kubeHolds(t *testing.T, admin kubernetes.Interface, ns, jid string) bool {
	t.Helper()
	ctx := context.Background()
	_, err := admin.BatchV1().Jobs(ns).Get(ctx, jid, metav1.GetOptions{})
	if err == nil {
		return true
	}
	if !apierrors.IsNotFound(err) {
		t.Fatalf("job %s: %v", jid, err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		pods, err := admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "job-name=" + jid})
		if err != nil {
			t.Fatalf("pods of %s: %v", jid, err)
		}
		if len(pods.Items) == 0 {
			return false
		}
		if time.Now().After(deadline) {
			t.Logf("pods of %s still there 30 s after its Job: %s", jid, pods.Items[0].Name)
			return true
		}
	}
}

// deleteKubeJob deletes the Job jid and its pods, if there are any.
func deleteKubeJob(admin kubernetes.Interface, ns, jid string) {
	bg := metav1.DeletePropagationBackground
	admin.BatchV1().Jobs(ns).Delete(context.Background(), jid, metav1.DeleteOptions{PropagationPolicy: &bg})
}
