package main

// The Kubernetes backend end to end, against the real control plane of
// .ci/kube: what only Kubernetes does (pull failures and their grace, pods
// the scheduler cannot place, the permissions of the manifest's Role,
// storage volumes, jobs that can never run). What every backend does is in
// the contract suite (contract_kube_test.go).

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// kubeAdmin is the admin client of the test control plane, or a skip.
func kubeAdmin(t *testing.T) (*rest.Config, kubernetes.Interface) {
	t.Helper()
	dir := os.Getenv("PMAN_KUBE_DIR")
	if dir == "" {
		dir = "/tmp/pman-kube"
	}
	path := filepath.Join(dir, "admin.kubeconfig")
	if _, err := os.Stat(path); err != nil {
		needOrSkip(t, fmt.Sprintf("no Kubernetes test control plane at %s: run .ci/kube/start", path))
	}
	rc, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	admin, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := admin.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx); err != nil {
		needOrSkip(t, fmt.Sprintf("the Kubernetes test control plane of %s does not answer (%v): run .ci/kube/start", path, err))
	}
	return rc, admin
}

// kubeNamespace is a new namespace for this test run, so reruns never meet
// an earlier run's jobs. It goes when the test ends.
func kubeNamespace(t *testing.T, admin kubernetes.Interface) string {
	t.Helper()
	ctx := context.Background()
	ns := fmt.Sprintf("pman-e2e-%s", strconv.FormatInt(time.Now().UnixNano()%(1<<40), 36))
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace %s: %v", ns, err)
	}
	t.Cleanup(func() {
		bg := metav1.DeletePropagationBackground
		admin.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{PropagationPolicy: &bg})
	})
	// The ServiceAccount admission plugin refuses pods until the namespace's
	// "default" ServiceAccount exists.
	eventually(t, 30*time.Second, "the default ServiceAccount of "+ns, func() bool {
		_, err := admin.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil
	})
	return ns
}

func eventually(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s", what, within)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// manifestRBAC reads the ServiceAccount, Role and RoleBinding of
// deploy/kubernetes.yaml, as an operator would apply them.
func manifestRBAC(t *testing.T) (*corev1.ServiceAccount, *rbacv1.Role, *rbacv1.RoleBinding) {
	t.Helper()
	f, err := os.Open("deploy/kubernetes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var sa *corev1.ServiceAccount
	var role *rbacv1.Role
	var rb *rbacv1.RoleBinding
	r := utilyaml.NewYAMLReader(bufio.NewReader(f))
	for {
		doc, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("deploy/kubernetes.yaml: %v", err)
		}
		var tm metav1.TypeMeta
		if err := utilyaml.Unmarshal(doc, &tm); err != nil {
			t.Fatalf("deploy/kubernetes.yaml: %v", err)
		}
		var into any
		switch tm.Kind {
		case "ServiceAccount":
			sa = &corev1.ServiceAccount{}
			into = sa
		case "Role":
			role = &rbacv1.Role{}
			into = role
		case "RoleBinding":
			rb = &rbacv1.RoleBinding{}
			into = rb
		default:
			continue
		}
		if err := utilyaml.Unmarshal(doc, into); err != nil {
			t.Fatalf("deploy/kubernetes.yaml, %s: %v", tm.Kind, err)
		}
	}
	if sa == nil || role == nil || rb == nil {
		t.Fatal("deploy/kubernetes.yaml lacks a ServiceAccount, a Role or a RoleBinding")
	}
	return sa, role, rb
}

// kubeconfigAs applies the RBAC objects in ns with the admin's credentials,
// mints a token for the ServiceAccount through TokenRequest, and writes a
// kubeconfig that holds only that token: pman then has exactly the Role's
// permissions.
func kubeconfigAs(t *testing.T, adminRC *rest.Config, admin kubernetes.Interface, ns string,
	sa *corev1.ServiceAccount, role *rbacv1.Role, rb *rbacv1.RoleBinding) string {
	t.Helper()
	ctx := context.Background()
	if _, err := admin.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating ServiceAccount %s: %v", sa.Name, err)
	}
	if _, err := admin.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating Role %s: %v", role.Name, err)
	}
	if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating RoleBinding %s: %v", rb.Name, err)
	}
	// The authorizer learns of a new binding from its cache, a moment
	// later: until it has, the account's first request may be refused.
	user := "system:serviceaccount:" + ns + ":" + sa.Name
	r := role.Rules[0]
	res, sub, _ := strings.Cut(r.Resources[0], "/")
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{User: user,
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: r.Verbs[0], Group: r.APIGroups[0], Resource: res, Subresource: sub}}}
	eventually(t, 10*time.Second, "RoleBinding "+rb.Name+" in force", func() bool {
		got, err := admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
		return err == nil && got.Status.Allowed
	})
	tr, err := admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa.Name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s: %v", sa.Name, err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: adminRC.Host, CertificateAuthority: adminRC.CAFile,
		CertificateAuthorityData: adminRC.CAData, InsecureSkipTLSVerify: adminRC.Insecure}
	kc.AuthInfos[sa.Name] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: sa.Name, Namespace: ns}
	kc.CurrentContext = "test"
	path := filepath.Join(t.TempDir(), sa.Name+".kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// setGraces is the test hook of kubeGrace, for the servers the test starts
// after it.
func setGraces(t *testing.T, g kubeGraces) {
	old := kubeGrace
	kubeGrace = g
	t.Cleanup(func() { kubeGrace = old })
}

const kwokLog = "pman fake log line"

// kubeElsewhere is a STOREBASE this host does not have, as when pman runs
// apart from the store: kwok mounts nothing, and pman looks for no input
// directory.
const kubeElsewhere = "/pman-test/store-elsewhere"

// TestKubeEndToEnd submits at once the jobs whose fate only Kubernetes
// shows, so they run side by side on the fake node, then checks each in
// turn. What every backend does (a job that succeeds, fails, runs out of
// memory, is deleted...) is in TestContract/kubernetes.
func TestKubeEndToEnd(t *testing.T) {
	adminRC, admin := kubeAdmin(t)
	ns := kubeNamespace(t, admin)
	sa, role, rb := manifestRBAC(t)
	kubeconfig := kubeconfigAs(t, adminRC, admin, ns, sa, role, rb)

	// Long enough to see the pull failure before the end, short for a test.
	setGraces(t, kubeGraces{Pull: 15 * time.Second, Container: time.Minute, Creating: time.Minute, Quota: time.Minute, Unschedulable: 30 * time.Second})
	base := startServer(t, map[string]string{
		"CONTAINER_ENV": "kubernetes", "KUBECONFIG": kubeconfig, "JOB_NAMESPACE": ns,
		"STORAGE_TYPE": "host", "STOREBASE": kubeElsewhere, "JOB_LOGS_TAIL": "2",
		"CONTAINER_USER": "1234:5678", "NODE_SELECTOR": "type=kwok", "SHM_SIZE": "64",
		"IMAGE_PULL_SECRETS": "regcred",
	})
	ctx := context.Background()

	submit := func(jid, image string, workers int) {
		t.Helper()
		body := jobRequest(jid)
		body["image"], body["entrypoint"], body["number_of_workers"] = image, []string{"app"}, workers
		if code, m := call(t, "POST", base+"/api/v1/", body); code != http.StatusCreated {
			t.Fatalf("POST %s = %d %v; want 201", jid, code, m)
		}
	}
	submit("pull-1", "fnndsc/pl-missing", 1)
	submit("badname-1", "fnndsc/pl-invalid", 1)
	submit("pod-1", "fnndsc/pl-succeed", 1)
	submit("workers-3", "fnndsc/pl-succeed", 3)
	submit("sleep-2", "fnndsc/pl-sleep", 2)

	t.Run("invalid image name ends at once", func(t *testing.T) {
		// Checked first, well within the pull grace period (15 s from the
		// pod's start): InvalidImageName never heals, so no grace.
		m := untilStatus(t, base, "badname-1", 10*time.Second, statusSuccess, statusError)
		if msg := fmt.Sprint(m["message"]); m["status"] != statusError || !strings.Contains(msg, "InvalidImageName") || strings.Contains(fmt.Sprint(m["logs"]), kwokLog) {
			t.Errorf("GET = %v; want finishedWithError naming InvalidImageName, no log lines", m)
		}
	})
	t.Run("image cannot be pulled", func(t *testing.T) {
		// First the reason, while the kubelet may still succeed...
		var m map[string]any
		eventually(t, 30*time.Second, "message saying the image cannot be pulled", func() bool {
			_, m = call(t, "GET", base+"/api/v1/pull-1/", nil)
			return strings.Contains(fmt.Sprint(m["message"]), "cannot pull image fnndsc/pl-missing")
		})
		logs := fmt.Sprint(m["logs"])
		if m["status"] != statusNotStarted || !strings.Contains(logs, "(no logs yet: ") || strings.Contains(logs, kwokLog) {
			t.Errorf("GET while pulling = %v; want notstarted, the waiting reason in place of a log", m)
		}
		// ...then, after the grace period, the end.
		m = untilStatus(t, base, "pull-1", time.Minute, statusSuccess, statusError)
		if msg := fmt.Sprint(m["message"]); m["status"] != statusError || !strings.Contains(msg, "ImagePullBackOff") && !strings.Contains(msg, "ErrImagePull") {
			t.Errorf("GET = %v; want finishedWithError naming the pull failure", m)
		}
	})
	t.Run("the pod as the API server made it", func(t *testing.T) {
		untilStatus(t, base, "pod-1", time.Minute, statusSuccess, statusError)
		pods, err := admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "job-name=pod-1"})
		if err != nil || len(pods.Items) != 1 {
			t.Fatalf("pods of pod-1: %v, %v; want 1", pods, err)
		}
		pod := pods.Items[0].Spec
		sc := pod.Containers[0].SecurityContext
		if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 1234 || *sc.RunAsGroup != 5678 || *sc.AllowPrivilegeEscalation {
			t.Errorf("pod securityContext = %+v; want user 1234, group 5678, no privilege escalation (CONTAINER_USER)", sc)
		}
		if pod.NodeName != "pman-kwok-node" || pod.NodeSelector["type"] != "kwok" {
			t.Errorf("pod on %q with selector %v; want pman-kwok-node by NODE_SELECTOR", pod.NodeName, pod.NodeSelector)
		}
		if len(pod.ImagePullSecrets) != 1 || pod.ImagePullSecrets[0].Name != "regcred" {
			t.Errorf("imagePullSecrets = %v; want regcred (IMAGE_PULL_SECRETS)", pod.ImagePullSecrets)
		}
		shm := false
		for _, v := range pod.Volumes {
			if e := v.EmptyDir; e != nil && e.Medium == corev1.StorageMediumMemory && e.SizeLimit != nil && e.SizeLimit.String() == "64Mi" {
				shm = true
			}
		}
		if !shm {
			t.Errorf("volumes = %+v; want a memory emptyDir of 64Mi for /dev/shm (SHM_SIZE)", pod.Volumes)
		}
	})
	t.Run("several workers", func(t *testing.T) {
		m := untilStatus(t, base, "workers-3", time.Minute, statusSuccess, statusError)
		logs := fmt.Sprint(m["logs"])
		if m["status"] != statusSuccess || strings.Count(logs, "==> pod workers-3-") != 3 || strings.Count(logs, kwokLog) != 6 {
			t.Errorf("GET = %v; want finishedSuccessfully, 3 pods' logs, each marked, each its last 2 lines (JOB_LOGS_TAIL)", m)
		}
		kj, err := admin.BatchV1().Jobs(ns).Get(ctx, "workers-3", metav1.GetOptions{})
		if err != nil || *kj.Spec.Parallelism != 3 || *kj.Spec.Completions != 3 || kj.Status.Succeeded != 3 {
			t.Errorf("job workers-3: %v, err %v; want parallelism = completions = succeeded = 3", kj.Status, err)
		}
	})
	t.Run("delete removes the running pods", func(t *testing.T) {
		// The API's default propagation for a Job (orphan) would leave them.
		m := untilStatus(t, base, "sleep-2", time.Minute, statusStarted)
		if strings.Count(fmt.Sprint(m["logs"]), "==> pod sleep-2-") != 2 {
			t.Errorf("GET running = %v; want 2 pods' logs", m)
		}
		if code, m := call(t, "DELETE", base+"/api/v1/sleep-2/", nil); code != http.StatusNoContent {
			t.Fatalf("DELETE = %d %v; want 204", code, m)
		}
		eventually(t, 30*time.Second, "deletion of sleep-2's pods", func() bool {
			pods, err := admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "job-name=sleep-2"})
			return err == nil && len(pods.Items) == 0
		})
	})
}

// TestKubeEndToEndRole proves that every permission of the manifest's Role
// is needed: for each rule's verb, pman runs as a ServiceAccount whose Role
// lacks just that verb. Lacking one is a 503 that names it, except for
// get pods/log, whose lack only takes the logs (the status is answered).
// Three jobs need every permission between them: one that runs (its log is
// read), one whose image name is invalid (pman ends it: patch), and one
// whose pods a LimitRange refuses (only the Job's events say so; pman ends
// it too).
func TestKubeEndToEndRole(t *testing.T) {
	adminRC, admin := kubeAdmin(t)
	ns := kubeNamespace(t, admin)
	limitCPU(t, admin, ns, "1")
	sa0, role0, rb0 := manifestRBAC(t)
	type cut struct{ rule, verb int }
	var cuts []cut
	for i, r := range role0.Rules {
		for j := range r.Verbs {
			cuts = append(cuts, cut{i, j})
		}
	}
	for n, c := range cuts {
		rule := role0.Rules[c.rule]
		res, verb := rule.Resources[0], rule.Verbs[c.verb]
		if rule.APIGroups[0] != "" {
			res += "." + rule.APIGroups[0]
		}
		t.Run(verb+" "+res, func(t *testing.T) {
			name := fmt.Sprintf("pman-cut-%d", n)
			sa, role, rb := sa0.DeepCopy(), role0.DeepCopy(), rb0.DeepCopy()
			sa.Name, role.Name, rb.Name = name, name, name
			rb.RoleRef.Name, rb.Subjects[0].Name = name, name
			role.Rules[c.rule].Verbs = slices.Delete(role.Rules[c.rule].Verbs, c.verb, c.verb+1)
			if len(role.Rules[c.rule].Verbs) == 0 { // the API refuses a rule without verbs
				role.Rules = slices.Delete(role.Rules, c.rule, c.rule+1)
			}
			base := startServer(t, map[string]string{
				"CONTAINER_ENV": "kubernetes", "JOB_NAMESPACE": ns, "STORAGE_TYPE": "host", "STOREBASE": kubeElsewhere,
				"KUBECONFIG": kubeconfigAs(t, adminRC, admin, ns, sa, role, rb), "NODE_SELECTOR": "type=kwok",
			})
			want := "permission to " + verb + " " + res
			refused := func(what string, code int, m map[string]any) bool {
				if code == http.StatusServiceUnavailable && strings.Contains(fmt.Sprint(m["message"]), want) {
					return true
				}
				if code >= 300 {
					t.Fatalf("%s = %d %v; want success, or 503 saying %q", what, code, m, want)
				}
				return false
			}
			run, bad, big := fmt.Sprintf("cut-%d-run", n), fmt.Sprintf("cut-%d-bad", n), fmt.Sprintf("cut-%d-big", n)
			for jid, image := range map[string]string{run: "fnndsc/pl-sleep", bad: "fnndsc/pl-invalid", big: "fnndsc/pl-succeed"} {
				body := jobRequest(jid)
				body["image"], body["entrypoint"] = image, []string{"app"}
				if jid == big {
					body["cpu_limit"] = 2000
				}
				if code, m := call(t, "POST", base+"/api/v1/", body); refused("POST "+jid, code, m) {
					return
				}
			}
			// GET until the container runs, when its log is asked for.
			logsCut := false
			deadline := time.Now().Add(30 * time.Second)
			for {
				code, m := call(t, "GET", base+"/api/v1/"+run+"/", nil)
				if refused("GET "+run, code, m) {
					return
				}
				logs := fmt.Sprint(m["logs"])
				if m["status"] == statusStarted && strings.Contains(logs, kwokLog) {
					break
				}
				if m["status"] == statusStarted && strings.Contains(logs, "[pman] logs unavailable") && strings.Contains(logs, want) {
					logsCut = true
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("GET %s = %d %v after 30s; want started with logs, or 503 saying %q", run, code, m, want)
				}
				time.Sleep(time.Second)
			}
			for _, jid := range []string{bad, big} {
				deadline := time.Now().Add(30 * time.Second)
				for {
					code, m := call(t, "GET", base+"/api/v1/"+jid+"/", nil)
					if refused("GET "+jid, code, m) {
						return
					}
					if m["status"] == statusError {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("GET %s = %d %v after 30s; want finishedWithError, or 503 saying %q", jid, code, m, want)
					}
					time.Sleep(time.Second)
				}
			}
			if code, m := call(t, "DELETE", base+"/api/v1/"+run+"/", nil); refused("DELETE", code, m) {
				return
			}
			if logsCut {
				if verb != "get" || res != "pods/log" {
					t.Errorf("without %s %s, the logs were unavailable", verb, res)
				}
				return
			}
			t.Errorf("without %s %s, every call succeeded: the Role holds a permission pman does not use", verb, res)
		})
	}
}

// limitCPU gives ns a LimitRange that refuses containers with a CPU limit
// above max.
func limitCPU(t *testing.T, admin kubernetes.Interface, ns, max string) {
	t.Helper()
	lr := &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: "cpu-max"}, Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
		Type: corev1.LimitTypeContainer, Max: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(max)}}}}}
	if _, err := admin.CoreV1().LimitRanges(ns).Create(context.Background(), lr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestKubeManifest checks the rest of deploy/kubernetes.yaml: the API server
// accepts the Deployment and the Service (server-side dry run), the
// Deployment runs as the ServiceAccount on port 5010, and its environment is
// one pman starts with.
func TestKubeManifest(t *testing.T) {
	dep, svc := &appsv1.Deployment{}, &corev1.Service{}
	manifestObject(t, "Deployment", dep)
	manifestObject(t, "Service", svc)
	pod := dep.Spec.Template.Spec
	if pod.ServiceAccountName != "pman" || len(pod.Containers) != 1 || pod.Containers[0].Ports[0].ContainerPort != 5010 {
		t.Errorf("Deployment: serviceAccountName %q, containers %d; want pman, one container on 5010", pod.ServiceAccountName, len(pod.Containers))
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 5010 {
		t.Errorf("Service ports = %v; want 5010", svc.Spec.Ports)
	}
	env := map[string]string{}
	for _, e := range pod.Containers[0].Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
			env[e.Name] = "chris"
		case e.ValueFrom != nil:
			t.Errorf("env %s comes from %v; the test knows only the pod's namespace", e.Name, e.ValueFrom)
		default:
			env[e.Name] = e.Value
		}
	}
	if env["CONTAINER_ENV"] != "kubernetes" || env["JOB_NAMESPACE"] != "chris" {
		t.Errorf("Deployment env = %v; want CONTAINER_ENV=kubernetes, JOB_NAMESPACE from the pod's namespace", env)
	}
	cfg, err := loadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("pman would not start with the Deployment's environment: %v", err)
	}
	if err := checkKubeConfig(cfg); err != nil {
		t.Errorf("pman would not start with the Deployment's environment: %v", err)
	}

	_, admin := kubeAdmin(t)
	ns := kubeNamespace(t, admin)
	ctx := context.Background()
	dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	if _, err := admin.AppsV1().Deployments(ns).Create(ctx, dep, dry); err != nil {
		t.Errorf("the API server refuses the Deployment: %v", err)
	}
	if _, err := admin.CoreV1().Services(ns).Create(ctx, svc, dry); err != nil {
		t.Errorf("the API server refuses the Service: %v", err)
	}
}

// TestKubeEndToEndStorage runs a job with each storage type the API server
// must accept as pman builds it beyond host (TestContract/kubernetes): an
// NFS volume and a bound PVC (a PVC that does not exist is in
// TestKubeEndToEndNeverRuns). kwok mounts nothing, so this proves the pod
// specs, not the mounts.
func TestKubeEndToEndStorage(t *testing.T) {
	adminRC, admin := kubeAdmin(t)
	ns := kubeNamespace(t, admin)
	sa, role, rb := manifestRBAC(t)
	kubeconfig := kubeconfigAs(t, adminRC, admin, ns, sa, role, rb)
	ctx := context.Background()

	boundPVC(t, admin, ns, "chris-store")

	tests := []struct {
		name string
		env  map[string]string
		want func(v corev1.Volume) bool
	}{
		{"nfs", map[string]string{"STORAGE_TYPE": "nfs", "NFS_SERVER": "nfs.example.org", "STOREBASE": "/export/store"},
			func(v corev1.Volume) bool {
				return v.NFS != nil && v.NFS.Server == "nfs.example.org" && v.NFS.Path == "/export/store"
			}},
		{"kubernetes_pvc", map[string]string{"STORAGE_TYPE": "kubernetes_pvc", "VOLUME_NAME": "chris-store"},
			func(v corev1.Volume) bool {
				return v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == "chris-store"
			}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{"CONTAINER_ENV": "kubernetes", "KUBECONFIG": kubeconfig, "JOB_NAMESPACE": ns, "NODE_SELECTOR": "type=kwok"}
			maps.Copy(env, tt.env)
			base := startServer(t, env)
			jid := fmt.Sprintf("store-%d", i)
			body := jobRequest(jid)
			body["image"], body["entrypoint"] = "fnndsc/pl-succeed", []string{"app"}
			if code, m := call(t, "POST", base+"/api/v1/", body); code != http.StatusCreated {
				t.Fatalf("POST = %d %v; want 201", code, m)
			}
			if m := untilStatus(t, base, jid, time.Minute, statusSuccess, statusError); m["status"] != statusSuccess {
				t.Errorf("GET = %v; want finishedSuccessfully", m)
			}
			kj, err := admin.BatchV1().Jobs(ns).Get(ctx, jid, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			vols := kj.Spec.Template.Spec.Volumes
			if len(vols) != 1 || !tt.want(vols[0]) {
				t.Errorf("volumes = %+v; want the %s store", vols, tt.name)
			}
		})
	}
}

// boundPVC makes a PVC name in ns, bound to a PV of its own, and removes
// both when the test ends.
func boundPVC(t *testing.T, admin kubernetes.Interface, ns, name string) {
	t.Helper()
	boundHostPVC(t, admin, ns, name, "/var/local/storeBase")
}

// boundHostPVC is boundPVC with the PV a hostPath of dir (on the real node,
// the jobs' files land there).
func boundHostPVC(t *testing.T, admin kubernetes.Interface, ns, name, dir string) {
	t.Helper()
	ctx := context.Background()
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-" + name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:               corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:            []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: dir}},
			ClaimRef:               &corev1.ObjectReference{Namespace: ns, Name: name},
		},
	}
	if _, err := admin.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The test cluster runs no pv/pvc-protection controllers, so their
	// finalizers would keep the PV, the PVC and thus the namespace forever.
	t.Cleanup(func() {
		ctx := context.Background()
		unprotect := []byte(`{"metadata":{"finalizers":null}}`)
		admin.CoreV1().PersistentVolumeClaims(ns).Patch(ctx, name, types.MergePatchType, unprotect, metav1.PatchOptions{})
		admin.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, name, metav1.DeleteOptions{})
		admin.CoreV1().PersistentVolumes().Patch(ctx, pv.Name, types.MergePatchType, unprotect, metav1.PatchOptions{})
		admin.CoreV1().PersistentVolumes().Delete(ctx, pv.Name, metav1.DeleteOptions{})
	})
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			StorageClassName: new(""),
			VolumeName:       pv.Name,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}
	if _, err := admin.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "binding of PVC "+name, func() bool {
		c, err := admin.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
		return err == nil && c.Status.Phase == corev1.ClaimBound
	})
}

// watched is what watchJob saw of a job: the statuses it went through
// (each with when it was first seen and its first message), and the last
// answer.
type watched struct {
	seq  []string
	last map[string]any
	err  error
}

// watchJob polls GET of jid, from now on, until it answers a finished
// status or within has passed, and then sends what it saw. Polling from the
// moment of the POST matters: pman judges a job when asked, so a test that
// looked later would miss what pfcon, polling all along, sees.
func watchJob(base, jid string, within time.Duration) <-chan watched {
	ch := make(chan watched, 1)
	go func() {
		var w watched
		start := time.Now()
		for {
			resp, err := http.Get(base + "/api/v1/" + jid + "/")
			if err != nil {
				w.err = err
				break
			}
			var m map[string]any
			err = json.NewDecoder(resp.Body).Decode(&m)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				w.err = fmt.Errorf("GET %s = %d %v (%v); want 200", jid, resp.StatusCode, m, err)
				break
			}
			st := fmt.Sprint(m["status"])
			// A new entry when the status changes, or the message does
			// other than in its numbers (the time waited so far).
			if w.last == nil || st != w.last["status"] || noDigits(m["message"]) != noDigits(w.last["message"]) {
				w.seq = append(w.seq, fmt.Sprintf("%s at %.1fs: %q", st, time.Since(start).Seconds(), m["message"]))
			}
			w.last = m
			if st == statusSuccess || st == statusError {
				break
			}
			if time.Since(start) > within {
				w.err = fmt.Errorf("GET %s: %s after %s; want it finished", jid, strings.Join(w.seq, " -> "), within)
				break
			}
			time.Sleep(300 * time.Millisecond)
		}
		ch <- w
	}()
	return ch
}

func noDigits(v any) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return -1
		}
		return r
	}, fmt.Sprint(v))
}

// TestKubeEndToEndNeverRuns: a job that can never run ends as
// finishedWithError with the cluster's own reason, and what pman declared
// finished stays finished. The grace periods are shortened through the
// test hook; the sequences of statuses are logged (go test -v).
func TestKubeEndToEndNeverRuns(t *testing.T) {
	adminRC, admin := kubeAdmin(t)
	setGraces(t, kubeGraces{Pull: 2 * time.Second, Container: 3 * time.Second, Creating: 4 * time.Second,
		Quota: 8 * time.Second, Unschedulable: 2 * time.Second})
	ctx := context.Background()
	servers := 0
	server := func(ns string, env ...string) string {
		t.Helper()
		servers++
		name := fmt.Sprintf("pman-%d", servers) // a ServiceAccount of its own
		sa, role, rb := manifestRBAC(t)
		sa.Name, role.Name, rb.Name, rb.RoleRef.Name, rb.Subjects[0].Name = name, name, name, name, name
		m := map[string]string{"CONTAINER_ENV": "kubernetes", "JOB_NAMESPACE": ns,
			"KUBECONFIG":   kubeconfigAs(t, adminRC, admin, ns, sa, role, rb),
			"STORAGE_TYPE": "host", "STOREBASE": kubeElsewhere, "NODE_SELECTOR": "type=kwok"}
		for _, kv := range env {
			k, v, _ := strings.Cut(kv, "=")
			m[k] = v
		}
		return startServer(t, m)
	}
	watches := map[string]<-chan watched{}
	submit := func(base, jid, image string, change func(map[string]any)) {
		t.Helper()
		body := jobRequest(jid)
		body["image"], body["entrypoint"] = image, []string{"app"}
		if change != nil {
			change(body)
		}
		if code, m := call(t, "POST", base+"/api/v1/", body); code != http.StatusCreated {
			t.Fatalf("POST %s = %d %v; want 201", jid, code, m)
		}
		watches[jid] = watchJob(base, jid, time.Minute)
	}
	seen := func(t *testing.T, jid string) watched {
		t.Helper()
		w := <-watches[jid]
		if w.err != nil {
			t.Fatal(w.err)
		}
		t.Logf("%s: %s", jid, strings.Join(w.seq, " -> "))
		return w
	}

	// An ordinary namespace.
	plain := kubeNamespace(t, admin)
	base := server(plain)
	noPVC := server(plain, "STORAGE_TYPE=kubernetes_pvc", "VOLUME_NAME=no-such-pvc")
	noNode := server(plain, "NODE_SELECTOR=pman-test/pool=none")
	submit(base, "config-1", "fnndsc/pl-config", nil)
	submit(base, "creating-1", "fnndsc/pl-creating", nil)
	submit(base, "late-1", "fnndsc/pl-late", nil)
	submit(noPVC, "nopvc-1", "fnndsc/pl-succeed", nil)
	submit(noNode, "nonode-1", "fnndsc/pl-succeed", nil)
	gpu := jobRequest("gpu-1")
	gpu["image"], gpu["entrypoint"], gpu["gpu_limit"] = "fnndsc/pl-succeed", []string{"app"}, 99 // the node has 4
	if code, m := call(t, "POST", base+"/api/v1/", gpu); code != http.StatusCreated {
		t.Fatalf("POST gpu-1 = %d %v; want 201", code, m)
	}

	// A LimitRange and a ResourceQuota.
	limited := kubeNamespace(t, admin)
	limitCPU(t, admin, limited, "1")
	quota := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "memory"},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourceLimitsMemory: resource.MustParse("150Mi")}}}
	if _, err := admin.CoreV1().ResourceQuotas(limited).Create(ctx, quota, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the quota's status", func() bool {
		q, err := admin.CoreV1().ResourceQuotas(limited).Get(ctx, "memory", metav1.GetOptions{})
		return err == nil && len(q.Status.Hard) > 0
	})
	baseLimited := server(limited)
	submit(baseLimited, "cpu-1", "fnndsc/pl-succeed", func(b map[string]any) { b["cpu_limit"] = 2000 })
	submit(baseLimited, "quota-1", "fnndsc/pl-succeed", func(b map[string]any) { b["memory_limit"] = 200 })

	// Pod Security "restricted", with the Helm chart's settings.
	restricted := kubeNamespace(t, admin)
	label := []byte(`{"metadata":{"labels":{"pod-security.kubernetes.io/enforce":"restricted"}}}`)
	if _, err := admin.CoreV1().Namespaces().Patch(ctx, restricted, types.MergePatchType, label, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	boundPVC(t, admin, restricted, "chris-store")
	chart := server(restricted, "STORAGE_TYPE=kubernetes_pvc", "VOLUME_NAME=chris-store", "CONTAINER_USER=1001:0")
	host := server(restricted, "CONTAINER_USER=1001:0")
	submit(chart, "chart-1", "fnndsc/pl-succeed", nil)
	submit(host, "host-1", "fnndsc/pl-succeed", nil)

	expect := func(t *testing.T, jid, status string, msgs ...string) map[string]any {
		t.Helper()
		m := seen(t, jid).last
		msg := fmt.Sprint(m["message"])
		if m["status"] != status || m["timestamp"] == "" {
			t.Errorf("GET %s = %v; want %s with a timestamp", jid, m, status)
		}
		for _, w := range msgs {
			if !strings.Contains(msg, w) {
				t.Errorf("GET %s: message %q; want it to say %q", jid, msg, w)
			}
		}
		return m
	}
	t.Run("Pod Security restricted, the chart's settings", func(t *testing.T) {
		expect(t, "chart-1", statusSuccess)
		pods, err := admin.CoreV1().Pods(restricted).List(ctx, metav1.ListOptions{LabelSelector: "job-name=chart-1"})
		if err != nil || len(pods.Items) != 1 {
			t.Fatalf("pods of chart-1: %v, %v", pods, err)
		}
		p := pods.Items[0].Spec
		if p.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault || !*p.Containers[0].SecurityContext.RunAsNonRoot {
			t.Errorf("pod security context %+v, container's %+v; want seccomp RuntimeDefault, runAsNonRoot", p.SecurityContext, p.Containers[0].SecurityContext)
		}
	})
	t.Run("Pod Security restricted, host storage", func(t *testing.T) {
		expect(t, "host-1", statusError, "cannot create pods", `violates PodSecurity "restricted`, "hostPath")
	})
	t.Run("LimitRange", func(t *testing.T) {
		expect(t, "cpu-1", statusError, "cannot create pods", "maximum cpu usage per Container is 1")
	})
	t.Run("ResourceQuota", func(t *testing.T) {
		seq := seen(t, "quota-1").seq
		for i, step := range seq {
			want := statusNotStarted
			if i == len(seq)-1 {
				want = statusError
			}
			if len(seq) < 2 || !strings.HasPrefix(step, want) || !strings.Contains(step, "exceeded quota") {
				t.Errorf("quota-1 went %q; want notstarted, then finishedWithError, each naming the exceeded quota", seq)
				break
			}
		}
	})
	t.Run("CreateContainerConfigError", func(t *testing.T) {
		expect(t, "config-1", statusError, "CreateContainerConfigError", `secret "pman-test-missing" not found`)
	})
	t.Run("stuck in ContainerCreating", func(t *testing.T) {
		expect(t, "creating-1", statusError, "stuck in ContainerCreating", "FailedMount", "access denied by server")
	})
	t.Run("a PVC that does not exist", func(t *testing.T) {
		expect(t, "nopvc-1", statusError, `persistentvolumeclaim "no-such-pvc" not found`)
	})
	t.Run("a node selector no node matches, a tainted node present", func(t *testing.T) {
		// Two nodes do not match; the tainted kwok node of .ci/kube says
		// only its taint (the scheduler names a node's first refusal), as
		// a kubeadm cluster's control-plane node does.
		expect(t, "nonode-1", statusError, "didn't match Pod's node affinity/selector", "untolerated taint {pman-test/reserved: yes}")
	})
	t.Run("Insufficient resources stay notstarted", func(t *testing.T) {
		// By now well past every grace period.
		code, m := call(t, "GET", base+"/api/v1/gpu-1/", nil)
		t.Logf("gpu-1: %d %s: %q", code, m["status"], m["message"])
		if msg := fmt.Sprint(m["message"]); code != http.StatusOK || m["status"] != statusNotStarted || !strings.Contains(msg, "cannot be scheduled") || !strings.Contains(msg, "Insufficient nvidia.com/gpu") {
			t.Errorf("GET gpu-1 = %d %v; want notstarted, cannot be scheduled, with the scheduler's message", code, m)
		}
	})
	t.Run("a pull that succeeds after pman declared the job failed", func(t *testing.T) {
		first := expect(t, "late-1", statusError, "ErrImagePull")
		// The kwok stage runs the container 6 s after the pod's start; by
		// 10 s it would have run and succeeded, had the Job not been ended.
		for range 20 {
			_, m := call(t, "GET", base+"/api/v1/late-1/", nil)
			if m["status"] != first["status"] || m["message"] != first["message"] || m["timestamp"] != first["timestamp"] {
				t.Fatalf("GET late-1 = %v after %v; a finished status must never change", m, first)
			}
			time.Sleep(500 * time.Millisecond)
		}
		kj, err := admin.BatchV1().Jobs(plain).Get(ctx, "late-1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if c := conditionOf(kj, batchv1.JobFailed); c == nil || c.Reason != "DeadlineExceeded" || kj.Annotations[kubeFailedAnnotation] == "" {
			t.Errorf("Job late-1: conditions %v, annotations %v; want Failed by DeadlineExceeded and pman's reason", kj.Status.Conditions, kj.Annotations)
		}
	})
}
