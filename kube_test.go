package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

func TestCheckKubeConfig(t *testing.T) {
	good := func() *config {
		return &config{JobNamespace: "chris", StorageType: "host", StoreBase: "/s",
			JobLabels: map[string]string{"app.kubernetes.io/part-of": "chris"}, NodeSelector: map[string]string{"gpu": "yes"},
			ImagePullSecrets: []string{"regcred"}}
	}
	if err := checkKubeConfig(good()); err != nil {
		t.Fatalf("checkKubeConfig(good) = %v; want nil", err)
	}
	tests := []struct {
		name   string
		change func(*config)
		want   string
	}{
		{"namespace", func(c *config) { c.JobNamespace = "Chris" }, "JOB_NAMESPACE"},
		{"label key", func(c *config) { c.JobLabels = map[string]string{"a b": "x"} }, "JOB_LABELS"},
		{"label value", func(c *config) { c.JobLabels = map[string]string{"a": "x y"} }, "JOB_LABELS"},
		{"node selector", func(c *config) { c.NodeSelector = map[string]string{"-x": "y"} }, "NODE_SELECTOR"},
		{"pull secret", func(c *config) { c.ImagePullSecrets = []string{"Reg_Cred"} }, "IMAGE_PULL_SECRETS"},
		{"pvc", func(c *config) { c.StorageType = "kubernetes_pvc"; c.VolumeName = "My PVC" }, "VOLUME_NAME"},
	}
	for _, tt := range tests {
		c := good()
		tt.change(c)
		err := checkKubeConfig(c)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: checkKubeConfig = %v; want an error naming %s", tt.name, err, tt.want)
		}
	}
}

func testSpec() *jobSpec {
	return &jobSpec{
		JID: "chris-jid-7", Image: "fnndsc/pl-simpledsapp", Type: "ds", Workers: 3,
		CPULimit: 250, MemoryLimit: 1024, GPULimit: 0,
		Env:      []string{"A=1", "B=x=y", "HOME=/tmp"},
		Cmd:      []string{"simpledsapp", "--prefix", "le", "/share/incoming", "/share/outgoing"},
		InputDir: "home/u/feed/in", OutputDir: "home/u/feed/out",
	}
}

func TestBuildKubeJob(t *testing.T) {
	cfg := &config{
		StorageType: "host", StoreBase: "/var/store",
		JobLabels:        map[string]string{"org.chrisproject/role": "plugin"},
		NodeSelector:     map[string]string{"kubernetes.io/arch": "amd64"},
		ImagePullSecrets: []string{"regcred", "other"},
		ShmSizeMiB:       512,
	}
	s := testSpec()
	kj := buildKubeJob(cfg, s, new(int64(1001)), new(int64(2002)))

	if kj.Name != s.JID {
		t.Errorf("Name = %q; want %q", kj.Name, s.JID)
	}
	spec := kj.Spec
	for name, got := range map[string]*int32{"parallelism": spec.Parallelism, "completions": spec.Completions} {
		if got == nil || *got != 3 {
			t.Errorf("%s = %v; want 3 (number_of_workers)", name, got)
		}
	}
	if spec.BackoffLimit == nil || *spec.BackoffLimit != 0 {
		t.Errorf("backoffLimit = %v; want 0", spec.BackoffLimit)
	}
	if spec.TTLSecondsAfterFinished == nil || *spec.TTLSecondsAfterFinished != 86400 {
		t.Errorf("ttlSecondsAfterFinished = %v; want 86400", spec.TTLSecondsAfterFinished)
	}
	if spec.ActiveDeadlineSeconds == nil || *spec.ActiveDeadlineSeconds != 604800 {
		t.Errorf("activeDeadlineSeconds = %v; want 604800", spec.ActiveDeadlineSeconds)
	}
	wantLabels := map[string]string{"org.chrisproject/role": "plugin", jidLabel: s.JID}
	for where, labels := range map[string]map[string]string{"job": kj.Labels, "pod template": spec.Template.Labels} {
		if !reflect.DeepEqual(labels, wantLabels) {
			t.Errorf("%s labels = %v; want %v", where, labels, wantLabels)
		}
	}
	pod := spec.Template.Spec
	if pod.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("restartPolicy = %q; want Never", pod.RestartPolicy)
	}
	if !reflect.DeepEqual(pod.NodeSelector, cfg.NodeSelector) {
		t.Errorf("nodeSelector = %v; want %v", pod.NodeSelector, cfg.NodeSelector)
	}
	wantSecrets := []corev1.LocalObjectReference{{Name: "regcred"}, {Name: "other"}}
	if !reflect.DeepEqual(pod.ImagePullSecrets, wantSecrets) {
		t.Errorf("imagePullSecrets = %v; want %v", pod.ImagePullSecrets, wantSecrets)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers; want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if c.Image != s.Image || !reflect.DeepEqual(c.Command, s.Cmd) || c.Args != nil {
		t.Errorf("image, command, args = %q, %q, %q; want %q, %q, nil", c.Image, c.Command, c.Args, s.Image, s.Cmd)
	}
	wantEnv := []corev1.EnvVar{{Name: "A", Value: "1"}, {Name: "B", Value: "x=y"}, {Name: "HOME", Value: "/tmp"}}
	if !reflect.DeepEqual(c.Env, wantEnv) {
		t.Errorf("env = %v; want %v", c.Env, wantEnv)
	}
	for _, e := range c.Env {
		if strings.HasPrefix(e.Name, "NVIDIA_") {
			t.Errorf("env has %s; pfcon removed the NVIDIA_* variables", e.Name)
		}
	}
	wantLimits := map[corev1.ResourceName]string{"cpu": "250m", "memory": "1Gi"}
	checkLimits(t, "limits", c.Resources.Limits, wantLimits)
	if c.Resources.Requests != nil {
		t.Errorf("requests = %v; want none (the API server copies the limits)", c.Resources.Requests)
	}
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("no securityContext")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Errorf("allowPrivilegeEscalation = %v; want false", sc.AllowPrivilegeEscalation)
	case sc.Capabilities == nil || !reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}):
		t.Errorf("capabilities = %v; want drop ALL", sc.Capabilities)
	case sc.RunAsUser == nil || *sc.RunAsUser != 1001 || sc.RunAsGroup == nil || *sc.RunAsGroup != 2002:
		t.Errorf("runAsUser, runAsGroup = %v, %v; want 1001, 2002", sc.RunAsUser, sc.RunAsGroup)
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Errorf("runAsNonRoot = %v; want true for user 1001", sc.RunAsNonRoot)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken || pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		t.Errorf("automountServiceAccountToken, enableServiceLinks = %v, %v; want false, false (a plugin gets no API token)", pod.AutomountServiceAccountToken, pod.EnableServiceLinks)
	}
	if psc := pod.SecurityContext; psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext = %+v; want seccompProfile RuntimeDefault", psc)
	}
	// root, or the image's user: runAsNonRoot would refuse a root image.
	for _, uid := range []*int64{new(int64(0)), nil} {
		kj := buildKubeJob(cfg, s, uid, nil)
		if sc := kj.Spec.Template.Spec.Containers[0].SecurityContext; sc.RunAsNonRoot != nil {
			t.Errorf("runAsNonRoot = %v for user %v; want unset", *sc.RunAsNonRoot, uid)
		}
	}
	// Volumes: the store (checked in TestKubeStorage) and /dev/shm.
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m
	}
	for _, p := range []string{"/share/incoming", "/share/outgoing", "/dev/shm"} {
		if _, ok := mounts[p]; !ok {
			t.Errorf("no mount at %s in %v", p, c.VolumeMounts)
		}
	}
	var shm *corev1.Volume
	for i, v := range pod.Volumes {
		if v.Name == mounts["/dev/shm"].Name {
			shm = &pod.Volumes[i]
		}
	}
	if shm == nil || shm.EmptyDir == nil || shm.EmptyDir.Medium != corev1.StorageMediumMemory ||
		shm.EmptyDir.SizeLimit == nil || shm.EmptyDir.SizeLimit.String() != "512Mi" {
		t.Errorf("/dev/shm volume = %+v; want a memory emptyDir of 512Mi", shm)
	}
}

func checkLimits(t *testing.T, what string, got corev1.ResourceList, want map[corev1.ResourceName]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s = %v; want %v", what, got, want)
	}
	for name, w := range want {
		q, ok := got[name]
		if !ok || q.Cmp(resource.MustParse(w)) != 0 {
			t.Errorf("%s[%s] = %v; want %s", what, name, q.String(), w)
		}
	}
}

func TestBuildKubeJobLimits(t *testing.T) {
	tests := []struct {
		name          string
		ignore        bool
		cpu, mem, gpu int
		want          map[corev1.ResourceName]string
	}{
		{"all", false, 1500, 300, 2, map[corev1.ResourceName]string{"cpu": "1500m", "memory": "300Mi", "nvidia.com/gpu": "2"}},
		{"IGNORE_LIMITS keeps the GPU", true, 1500, 300, 1, map[corev1.ResourceName]string{"nvidia.com/gpu": "1"}},
		{"IGNORE_LIMITS", true, 1500, 300, 0, map[corev1.ResourceName]string{}},
		{"zero is no limit", false, 0, 0, 0, map[corev1.ResourceName]string{}},
	}
	for _, tt := range tests {
		s := testSpec()
		s.CPULimit, s.MemoryLimit, s.GPULimit = tt.cpu, tt.mem, tt.gpu
		kj := buildKubeJob(&config{StorageType: "host", StoreBase: "/s", IgnoreLimits: tt.ignore}, s, nil, nil)
		c := kj.Spec.Template.Spec.Containers[0]
		checkLimits(t, tt.name, c.Resources.Limits, tt.want)
		if sc := c.SecurityContext; sc.RunAsUser != nil || sc.RunAsGroup != nil {
			t.Errorf("%s: runAsUser, runAsGroup = %v, %v; want the image's (nil)", tt.name, sc.RunAsUser, sc.RunAsGroup)
		}
		if n := len(kj.Spec.Template.Spec.Volumes); n != 1 {
			t.Errorf("%s: %d volumes without SHM_SIZE; want 1", tt.name, n)
		}
	}
}

func TestKubeIDs(t *testing.T) {
	tests := []struct {
		name     string
		cfg      config
		lo, hi   [2]int64 // uid, gid bounds
		wantNone bool
	}{
		{"CONTAINER_USER range", config{ContainerUser: userSpec{idRange{true, 1000, 1009}, idRange{true, 50, 50}}, RunAsUser: "7", RunAsGroup: "8"}, [2]int64{1000, 50}, [2]int64{1009, 50}, false},
		{"seed variables", config{RunAsUser: "7", RunAsGroup: "8"}, [2]int64{7, 8}, [2]int64{7, 8}, false},
		{"none", config{}, [2]int64{}, [2]int64{}, true},
	}
	for _, tt := range tests {
		k := &kubeSched{cfg: &tt.cfg}
		for range 20 {
			uid, gid, err := k.ids()
			if err != nil {
				t.Fatalf("%s: ids() error %v", tt.name, err)
			}
			if tt.wantNone {
				if uid != nil || gid != nil {
					t.Errorf("%s: ids() = %v, %v; want nil, nil", tt.name, uid, gid)
				}
				break
			}
			if uid == nil || gid == nil || *uid < tt.lo[0] || *uid > tt.hi[0] || *gid < tt.lo[1] || *gid > tt.hi[1] {
				t.Errorf("%s: ids() = %v, %v; want within %v-%v", tt.name, uid, gid, tt.lo, tt.hi)
				break
			}
		}
	}
}

func TestKubeStorage(t *testing.T) {
	tests := []struct {
		cfg  config
		want corev1.VolumeSource
	}{
		{config{StorageType: "host", StoreBase: "/var/store"},
			corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/store"}}},
		{config{StorageType: "nfs", StoreBase: "/export/store", NFSServer: "10.0.0.5"},
			corev1.VolumeSource{NFS: &corev1.NFSVolumeSource{Server: "10.0.0.5", Path: "/export/store"}}},
		{config{StorageType: "kubernetes_pvc", VolumeName: "chris-store"},
			corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "chris-store"}}},
	}
	for _, tt := range tests {
		t.Run(tt.cfg.StorageType, func(t *testing.T) {
			// A subPath is a field of the API: ':' and ',' need no refusal.
			in, out := "u/uploads/scan 10:30", "u/feed/out,2"
			vol, mounts := kubeStorage(&tt.cfg, in, out)
			if !reflect.DeepEqual(vol.VolumeSource, tt.want) {
				t.Errorf("kubeStorage(%s) volume = %+v; want %+v", tt.cfg.StorageType, vol.VolumeSource, tt.want)
			}
			want := []corev1.VolumeMount{
				{Name: vol.Name, MountPath: "/share/incoming", SubPath: in, ReadOnly: true},
				{Name: vol.Name, MountPath: "/share/outgoing", SubPath: out},
			}
			if !reflect.DeepEqual(mounts, want) {
				t.Errorf("kubeStorage(%s) mounts = %+v; want %+v", tt.cfg.StorageType, mounts, want)
			}
		})
	}
}

// ---- against a recorded API server ------------------------------------------

// fakeAPI answers the few API paths pman uses, and records the requests.
type fakeAPI struct {
	mu   sync.Mutex
	reqs []string
	h    func(w http.ResponseWriter, r *http.Request)
}

func (f *fakeAPI) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.reqs...)
}

// kubeAgainst is a kube backend talking to h.
func kubeAgainst(t testing.TB, cfg *config, h func(w http.ResponseWriter, r *http.Request)) (*kubeSched, *fakeAPI) {
	t.Helper()
	f := &fakeAPI{h: h}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		// Without client-go's per-request timeout, which is not what a
		// test of the calls is about.
		u := *r.URL
		q := u.Query()
		q.Del("timeout")
		u.RawQuery = q.Encode()
		f.reqs = append(f.reqs, r.Method+" "+u.RequestURI())
		f.mu.Unlock()
		f.h(w, r)
	}))
	t.Cleanup(srv.Close)
	// JSON, not client-go's default protobuf, so the fake can read bodies.
	client, err := kubeClient(&rest.Config{Host: srv.URL,
		ContentConfig: rest.ContentConfig{ContentType: "application/json"}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.JobNamespace == "" {
		cfg.JobNamespace = "chris"
	}
	return &kubeSched{client: client, cfg: cfg, log: slog.New(slog.DiscardHandler), ns: cfg.JobNamespace,
		host: srv.URL, grace: testGraces, now: func() time.Time { return t0 }}, f
}

func writeStatus(w http.ResponseWriter, code int, reason metav1.StatusReason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status: metav1.StatusFailure, Code: int32(code), Reason: reason, Message: msg})
}

func writeObj(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func TestKubeErrors(t *testing.T) {
	tests := []struct {
		name     string
		code     int
		reason   metav1.StatusReason
		msg      string
		op       string // create, get or remove
		want     int
		wantMsgs []string
	}{
		{"duplicate", 409, metav1.StatusReasonAlreadyExists, `jobs.batch "chris-jid-7" already exists`, "create", 409, []string{"already exists"}},
		{"no such job", 404, metav1.StatusReasonNotFound, `jobs.batch "chris-jid-7" not found`, "get", 404, []string{"no job"}},
		{"delete unknown", 404, metav1.StatusReasonNotFound, `jobs.batch "chris-jid-7" not found`, "remove", 404, []string{"no job"}},
		{"namespace missing", 404, metav1.StatusReasonNotFound, `namespaces "chris" not found`, "create", 503, []string{"JOB_NAMESPACE", `namespaces "chris" not found`}},
		{"invalid", 422, metav1.StatusReasonInvalid, `Job.batch "chris-jid-7" is invalid: spec.template.spec.containers[0].image: Required value`, "create", 400,
			[]string{"containers[0].image: Required value"}},
		{"RBAC", 403, metav1.StatusReasonForbidden, `jobs.batch is forbidden: User "system:serviceaccount:chris:pman" cannot create resource "jobs" in API group "batch" in the namespace "chris"`,
			"create", 503, []string{"permission to create jobs.batch", "Role"}},
		{"quota", 403, metav1.StatusReasonForbidden, `jobs.batch "chris-jid-7" is forbidden: exceeded quota: q, requested: count/jobs.batch=1`, "create", 403, []string{"exceeded quota"}},
		{"credentials", 401, metav1.StatusReasonUnauthorized, "Unauthorized", "get", 503, []string{"credentials"}},
		{"server error", 500, metav1.StatusReasonInternalError, "etcdserver: request timed out", "get", 503, []string{"etcdserver"}},
	}
	for _, tt := range tests {
		k, _ := kubeAgainst(t, &config{StorageType: "host", StoreBase: "/s", JobLogsTail: 10}, func(w http.ResponseWriter, r *http.Request) {
			writeStatus(w, tt.code, tt.reason, tt.msg)
		})
		var err error
		switch tt.op {
		case "create":
			_, err = k.create(context.Background(), testSpec())
		case "get":
			_, err = k.get(context.Background(), "chris-jid-7")
		case "remove":
			err = k.remove(context.Background(), "chris-jid-7")
		}
		code, body := errorStatus(err)
		text := fmt.Sprint(body)
		if code != tt.want {
			t.Errorf("%s: %s answered %d %s; want %d", tt.name, tt.op, code, text, tt.want)
		}
		for _, w := range tt.wantMsgs {
			if !strings.Contains(text, w) {
				t.Errorf("%s: message %s; want it to contain %q", tt.name, text, w)
			}
		}
	}
}

func TestKubeUnreachable(t *testing.T) {
	k, _ := kubeAgainst(t, &config{StorageType: "host", StoreBase: "/s"}, nil)
	client, err := kubernetes.NewForConfig(&rest.Config{Host: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	k.client, k.host = client, "http://127.0.0.1:1"
	_, err = k.get(context.Background(), "chris-jid-7")
	code, body := errorStatus(err)
	if code != http.StatusServiceUnavailable || !strings.Contains(fmt.Sprint(body), "unreachable") {
		t.Errorf("get with the API server down = %d %v; want 503 saying unreachable", code, body)
	}
}

// TestKubeRefusesWithoutCall: an invalid name (checked by the handler) and a
// missing input directory under a visible hostPath STOREBASE are answered
// without a call to the API server.
func TestKubeRefusesWithoutCall(t *testing.T) {
	store := t.TempDir()
	k, f := kubeAgainst(t, &config{StorageType: "host", StoreBase: store, RemoveJobs: true}, func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, 500, metav1.StatusReasonInternalError, "should not be called")
	})
	h := testHandler(k.cfg, k)
	b := validBody()
	b["jid"] = "Chris_Jid"
	if code, m := callHandler(t, h, "POST", "/api/v1/", string(mustJSON(t, b))); code != 400 || !strings.Contains(fmt.Sprint(m["message"]), "Kubernetes Job name") {
		t.Errorf("POST of %q = %d %v; want 400 saying why", b["jid"], code, m)
	}
	for _, method := range []string{"GET", "DELETE"} {
		if code, m := callHandler(t, h, method, "/api/v1/Chris_Jid/", ""); code != 404 || !strings.Contains(fmt.Sprint(m["message"]), "Kubernetes Job name") {
			t.Errorf("%s Chris_Jid = %d %v; want 404 saying why", method, code, m)
		}
	}
	b = validBody()
	b["input_dir"] = "home/chris/uploads/scan 10:30"
	code, m := callHandler(t, h, "POST", "/api/v1/", string(mustJSON(t, b)))
	if fields, _ := m["message"].(map[string]any); code != 400 || !strings.Contains(fmt.Sprint(fields["input_dir"]), filepath.Join(store, "home/chris/uploads/scan 10:30")) {
		t.Errorf("POST with a missing input directory = %d %v; want 400 on input_dir naming it", code, m)
	}
	if r := f.requests(); len(r) != 0 {
		t.Errorf("requests: %q; want none", r)
	}
}

// threePodJob is a backend whose API server has a Job of three pods: one
// running, one done, one that cannot pull its image.
func threePodJob(tb testing.TB) (*kubeSched, *fakeAPI, *corev1.PodList) {
	selector := &metav1.LabelSelector{MatchLabels: map[string]string{batchv1.ControllerUidLabel: "uid-7"}}
	kj := &batchv1.Job{
		TypeMeta:   metav1.TypeMeta{Kind: "Job", APIVersion: "batch/v1"},
		ObjectMeta: metav1.ObjectMeta{Name: "chris-jid-7", Namespace: "chris"},
		Spec: batchv1.JobSpec{Selector: selector, Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: kubeContainer, Image: "fnndsc/pl-x", Command: []string{"x", "/share/outgoing"}}}}}},
		Status: batchv1.JobStatus{Active: 3},
	}
	pods := &corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"}, Items: []corev1.Pod{
		// Out of order: the logs follow pod names.
		kpod("chris-jid-7-c", corev1.PodPending, waiting("ImagePullBackOff", "Back-off pulling image")),
		kpod("chris-jid-7-a", corev1.PodRunning, running),
		kpod("chris-jid-7-b", corev1.PodSucceeded, terminated(0, "Completed")),
	}}
	k, f := kubeAgainst(tb, &config{StorageType: "host", StoreBase: "/s", JobLogsTail: 5}, func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.Path; {
		case p == "/apis/batch/v1/namespaces/chris/jobs/chris-jid-7":
			writeObj(w, kj)
		case p == "/api/v1/namespaces/chris/pods":
			writeObj(w, pods)
		case strings.HasSuffix(p, "/log"):
			pod := strings.TrimSuffix(strings.TrimPrefix(p, "/api/v1/namespaces/chris/pods/"), "/log")
			fmt.Fprintf(w, "%s line 1\n%s line 2\n", pod, pod)
		default:
			writeStatus(w, 404, metav1.StatusReasonNotFound, "no "+p)
		}
	})
	return k, f, pods
}

// BenchmarkKubeGet is pman's own cost of a GET (decoding, status, logs)
// for a three-pod job, against a local fake of the API server.
func BenchmarkKubeGet(b *testing.B) {
	k, _, _ := threePodJob(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.get(ctx, "chris-jid-7"); err != nil {
			b.Fatal(err)
		}
	}
}

// TestKubeGet checks the calls GET makes and how it assembles the logs:
// one Job get, one pod list by the Job's selector, and a log call only for
// pods whose container ran (asking for the log of a waiting container is an
// error, pman#234).
func TestKubeGet(t *testing.T) {
	k, f, pods := threePodJob(t)
	j, err := k.get(context.Background(), "chris-jid-7")
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	wantLogs := "==> pod chris-jid-7-a <==\nchris-jid-7-a line 1\nchris-jid-7-a line 2\n" +
		"==> pod chris-jid-7-b <==\nchris-jid-7-b line 1\nchris-jid-7-b line 2\n" +
		"==> pod chris-jid-7-c <==\n(no logs yet: ImagePullBackOff: Back-off pulling image)\n"
	if j.Logs != wantLogs {
		t.Errorf("logs =\n%s\nwant\n%s", j.Logs, wantLogs)
	}
	if j.Image != "fnndsc/pl-x" || j.Cmd != "x /share/outgoing" || j.Status != statusStarted {
		t.Errorf("get = %+v; want image fnndsc/pl-x, cmd \"x /share/outgoing\", started", j)
	}
	reqs := f.requests()
	want := map[string]bool{
		"GET /apis/batch/v1/namespaces/chris/jobs/chris-jid-7":                                               true,
		"GET /api/v1/namespaces/chris/pods?labelSelector=batch.kubernetes.io%2Fcontroller-uid%3Duid-7":       true,
		"GET /api/v1/namespaces/chris/pods/chris-jid-7-a/log?container=plugin&limitBytes=349525&tailLines=5": true,
		"GET /api/v1/namespaces/chris/pods/chris-jid-7-b/log?container=plugin&limitBytes=349525&tailLines=5": true,
	}
	for _, r := range reqs {
		if !want[r] {
			t.Errorf("unexpected request %s", r)
		}
		delete(want, r)
	}
	for r := range want {
		t.Errorf("missing request %s (made: %q)", r, reqs)
	}

	// One pod: its log alone, unmarked.
	pods.Items = pods.Items[1:2]
	j, err = k.get(context.Background(), "chris-jid-7")
	if err != nil || j.Logs != "chris-jid-7-a line 1\nchris-jid-7-a line 2\n" {
		t.Errorf("get with one pod: logs %q, err %v; want that pod's log, unmarked", j.Logs, err)
	}
}

// logJob is a backend whose API server has a running Job of n pods, whose
// container is named as pman 6 named it (after the jid), and whose logs
// logH answers.
func logJob(t *testing.T, n, tail int, logH func(w http.ResponseWriter, r *http.Request)) (*kubeSched, *fakeAPI) {
	kj := &batchv1.Job{
		TypeMeta:   metav1.TypeMeta{Kind: "Job", APIVersion: "batch/v1"},
		ObjectMeta: metav1.ObjectMeta{Name: "chris-jid-7", Namespace: "chris"},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "chris-jid-7", Image: "fnndsc/pl-x"}}}}},
		Status: batchv1.JobStatus{Active: int32(n)},
	}
	pods := &corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"}}
	for i := range n {
		p := kpod(fmt.Sprintf("chris-jid-7-%03d", i), corev1.PodRunning, running)
		p.Spec.Containers[0].Name = "chris-jid-7"
		pods.Items = append(pods.Items, p)
	}
	return kubeAgainst(t, &config{JobLogsTail: tail}, func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.Path; {
		case p == "/apis/batch/v1/namespaces/chris/jobs/chris-jid-7":
			writeObj(w, kj)
		case p == "/api/v1/namespaces/chris/pods":
			writeObj(w, pods)
		case strings.HasSuffix(p, "/log"):
			logH(w, r)
		default:
			writeStatus(w, 404, metav1.StatusReasonNotFound, "no "+p)
		}
	})
}

// A GET whose log read fails still answers the status: the logs say why in
// one line, and the answer is marked incomplete. Only errors on the Job
// itself fail the request (TestKubeErrors).
func TestKubeLogErrors(t *testing.T) {
	tests := []struct {
		name     string
		code     int
		reason   metav1.StatusReason
		msg      string
		wantLogs string
	}{
		{"no permission", 403, metav1.StatusReasonForbidden, `pods "p-1" is forbidden: User "x" cannot get resource "pods/log" in API group "" in the namespace "chris"`,
			"[pman] logs unavailable: pman lacks the Kubernetes permission to get pods/log in namespace chris"},
		{"pod gone", 404, metav1.StatusReasonNotFound, `pods "chris-jid-7-000" not found`,
			`[pman] logs unavailable: pod chris-jid-7-000: pods "chris-jid-7-000" not found`},
		{"node does not answer", 500, metav1.StatusReasonInternalError, `Get "https://10.0.0.9:10250/containerLogs/chris/x/y": dial tcp 10.0.0.9:10250: connect: no route to host`,
			"[pman] logs unavailable: pod chris-jid-7-000: Get \"https://10.0.0.9:10250/containerLogs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, _ := logJob(t, 1, 10, func(w http.ResponseWriter, r *http.Request) { writeStatus(w, tt.code, tt.reason, tt.msg) })
			j, err := k.get(context.Background(), "chris-jid-7")
			if err != nil {
				t.Fatalf("get = %v; want the status", err)
			}
			if j.Status != statusStarted || !strings.HasPrefix(j.Logs, tt.wantLogs) || strings.Count(j.Logs, "\n") != 1 || !j.LogsIncomplete {
				t.Errorf("get = %q, logs %q, incomplete %v; want started, one line starting %q, incomplete", j.Status, j.Logs, j.LogsIncomplete, tt.wantLogs)
			}
		})
	}
}

// TestKubeLogBounds: logs are read from the first container whatever its
// name, in at most kubeLogBytes, and still end with the log's last line
// when lines are long; a job of many pods shows kubeLogPods of them.
func TestKubeLogBounds(t *testing.T) {
	const lineLen = 2000
	var mu sync.Mutex
	var asked []string
	k, _ := logJob(t, 1, 1000, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		mu.Lock()
		asked = append(asked, q.Encode())
		mu.Unlock()
		if q.Get("container") != "chris-jid-7" {
			writeStatus(w, 400, metav1.StatusReasonBadRequest, "no container "+q.Get("container"))
			return
		}
		tail, _ := strconv.Atoi(q.Get("tailLines"))
		limit, _ := strconv.Atoi(q.Get("limitBytes"))
		var b bytes.Buffer
		for i := 1000 - tail; i < 1000; i++ {
			line := fmt.Sprintf("line %d ", i)
			b.WriteString(line + strings.Repeat("x", lineLen-len(line)-1) + "\n")
		}
		w.Write(b.Bytes()[:min(limit, b.Len())])
	})
	j, err := k.get(context.Background(), "chris-jid-7")
	if err != nil {
		t.Fatal(err)
	}
	if len(j.Logs) > kubeLogBytes || !strings.HasPrefix(j.Logs[strings.LastIndex(j.Logs[:len(j.Logs)-1], "\n")+1:], "line 999 ") {
		t.Errorf("logs of %d bytes ending %q; want at most %d, ending with line 999", len(j.Logs), j.Logs[max(0, len(j.Logs)-40):], kubeLogBytes)
	}
	if len(asked) == 0 || !strings.Contains(asked[0], "limitBytes=1048576") || !strings.Contains(asked[0], "tailLines=1000") {
		t.Errorf("log requests %q; want limitBytes=1048576 and tailLines=1000 first", asked)
	}

	k, f := logJob(t, kubeLogPods+6, 5, func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "a line") })
	j, err = k.get(context.Background(), "chris-jid-7")
	if err != nil {
		t.Fatal(err)
	}
	logReqs := 0
	for _, r := range f.requests() {
		if strings.Contains(r, "/log?") {
			logReqs++
		}
	}
	if logReqs != kubeLogPods || strings.Count(j.Logs, "==> pod") != kubeLogPods || !strings.HasSuffix(j.Logs, "and 6 more pods, whose logs are not shown\n") {
		t.Errorf("%d log requests, logs ending %q; want %d, and a line for the 6 more pods", logReqs, j.Logs[len(j.Logs)-60:], kubeLogPods)
	}
}

func TestKubeCreateAndRemoveRequests(t *testing.T) {
	var got batchv1.Job
	var del metav1.DeleteOptions
	k, f := kubeAgainst(t, &config{StorageType: "host", StoreBase: "/s"}, func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost:
			json.NewDecoder(r.Body).Decode(&got)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			writeObj(w, &got)
		case http.MethodDelete:
			json.NewDecoder(r.Body).Decode(&del)
			writeObj(w, &metav1.Status{Status: metav1.StatusSuccess})
		}
	})
	j, err := k.create(context.Background(), testSpec())
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if got.Name != "chris-jid-7" || j.Status != statusNotStarted || j.Cmd != strings.Join(testSpec().Cmd, " ") || j.Logs != "" {
		t.Errorf("create sent %q, answered %+v; want chris-jid-7, notstarted, the command", got.Name, j)
	}
	if err := k.remove(context.Background(), "chris-jid-7"); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if del.PropagationPolicy == nil || *del.PropagationPolicy != metav1.DeletePropagationBackground {
		t.Errorf("delete propagation = %v; want Background (pods go too)", del.PropagationPolicy)
	}
	wantReqs := []string{"POST /apis/batch/v1/namespaces/chris/jobs", "DELETE /apis/batch/v1/namespaces/chris/jobs/chris-jid-7"}
	if r := f.requests(); !reflect.DeepEqual(r, wantReqs) {
		t.Errorf("requests = %q; want %q", r, wantReqs)
	}
}

// ---- end to end, against the real control plane of .ci/kube ---------------

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

// kubeBody is a POST body for a job on the test cluster; the fake node's
// kwok stages pick the pod's fate by the image name (see .ci/kube).
func kubeBody(jid, image string, workers int) map[string]any {
	return map[string]any{
		"jid": jid, "image": image, "entrypoint": []string{"app"}, "args": []string{"--verbose"},
		"auid": "chris", "number_of_workers": workers, "cpu_limit": 500, "memory_limit": 128, "gpu_limit": 0,
		"type": "ds", "env": []string{"GREETING=hello"},
		"input_dir": "home/chris/feed_1/incoming", "output_dir": "home/chris/feed_1/outgoing",
	}
}

const kwokLog = "pman fake log line"

// TestKubeEndToEnd submits every kind of job at once, so they run side by
// side on the fake node, then checks each in turn.
func TestKubeEndToEnd(t *testing.T) {
	adminRC, admin := kubeAdmin(t)
	ns := kubeNamespace(t, admin)
	sa, role, rb := manifestRBAC(t)
	kubeconfig := kubeconfigAs(t, adminRC, admin, ns, sa, role, rb)

	// Long enough to see the pull failure before the end, short for a test.
	setGraces(t, kubeGraces{Pull: 15 * time.Second, Container: time.Minute, Creating: time.Minute, Quota: time.Minute, Unschedulable: 30 * time.Second})
	base := startServer(t, map[string]string{
		"CONTAINER_ENV": "kubernetes", "KUBECONFIG": kubeconfig, "JOB_NAMESPACE": ns,
		"STORAGE_TYPE": "host", "STOREBASE": "/var/local/storeBase",
		"JOB_LOGS_TAIL": "2", "JOB_LABELS": "org.chrisproject.miniChRIS=plugininstance",
		"CONTAINER_USER": "1234:5678", "NODE_SELECTOR": "type=kwok", "SHM_SIZE": "64",
		"IMAGE_PULL_SECRETS": "regcred",
	})
	ctx := context.Background()
	lastLines := kwokLog + " 4 of 5\n" + kwokLog + " 5 of 5: done\n"

	submit := func(jid, image string, workers, gpus int) {
		t.Helper()
		body := kubeBody(jid, image, workers)
		body["gpu_limit"] = gpus
		code, m := call(t, "POST", base+"/api/v1/", body)
		if code != http.StatusCreated || m["status"] != statusNotStarted || m["logs"] != "" || m["jid"] != jid {
			t.Fatalf("POST %s = %d %v; want 201, notstarted, no logs", jid, code, m)
		}
		checkJobShape(t, "POST "+jid, m)
	}
	submit("pull-1", "fnndsc/pl-missing", 1, 0)
	submit("badname-1", "fnndsc/pl-invalid", 1, 0)
	submit("ok-1", "fnndsc/pl-succeed", 1, 0)
	submit("fail-1", "fnndsc/pl-fail", 1, 0)
	submit("workers-3", "fnndsc/pl-succeed", 3, 0)
	submit("oom-1", "fnndsc/pl-oom", 1, 0)
	submit("gpu-99", "fnndsc/pl-succeed", 1, 99) // the node has 4
	submit("sleep-1", "fnndsc/pl-sleep", 2, 0)

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
	t.Run("succeeds", func(t *testing.T) {
		m := untilStatus(t, base, "ok-1", time.Minute, statusSuccess, statusError)
		checkJobShape(t, "GET", m)
		if m["status"] != statusSuccess || m["timestamp"] == "" || m["logs"] != lastLines {
			t.Errorf("GET = %v; want finishedSuccessfully, a completion time, the last 2 log lines", m)
		}
		if want := "app --verbose /share/incoming /share/outgoing"; m["cmd"] != want || m["image"] != "fnndsc/pl-succeed" {
			t.Errorf("GET cmd, image = %q, %q; want %q, fnndsc/pl-succeed", m["cmd"], m["image"], want)
		}
		// What the API server kept of the Job and made of its pod.
		kj, err := admin.BatchV1().Jobs(ns).Get(ctx, "ok-1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pods, err := admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "job-name=ok-1"})
		if err != nil || len(pods.Items) != 1 {
			t.Fatalf("pods of ok-1: %v, %v; want 1", pods, err)
		}
		pod := pods.Items[0]
		if kj.Labels["org.chrisproject.miniChRIS"] != "plugininstance" || pod.Labels["org.chrisproject.miniChRIS"] != "plugininstance" {
			t.Errorf("labels: job %v, pod %v; want JOB_LABELS on both", kj.Labels, pod.Labels)
		}
		sc := pod.Spec.Containers[0].SecurityContext
		if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 1234 || *sc.RunAsGroup != 5678 || *sc.AllowPrivilegeEscalation {
			t.Errorf("pod securityContext = %+v; want user 1234, group 5678, no privilege escalation", sc)
		}
		if pod.Spec.NodeName != "pman-kwok-node" || pod.Spec.NodeSelector["type"] != "kwok" {
			t.Errorf("pod on %q with selector %v; want pman-kwok-node by NODE_SELECTOR", pod.Spec.NodeName, pod.Spec.NodeSelector)
		}
	})
	t.Run("fails", func(t *testing.T) {
		m := untilStatus(t, base, "fail-1", time.Minute, statusSuccess, statusError)
		if msg := fmt.Sprint(m["message"]); m["status"] != statusError || !strings.Contains(msg, "exited with code 1") || m["logs"] != lastLines {
			t.Errorf("GET = %v; want finishedWithError, \"exited with code 1\", the last log lines", m)
		}
	})
	t.Run("several workers", func(t *testing.T) {
		m := untilStatus(t, base, "workers-3", time.Minute, statusSuccess, statusError)
		logs := fmt.Sprint(m["logs"])
		if m["status"] != statusSuccess || strings.Count(logs, "==> pod workers-3-") != 3 || strings.Count(logs, kwokLog) != 6 {
			t.Errorf("GET = %v; want finishedSuccessfully, 3 pods' logs, each marked", m)
		}
		kj, err := admin.BatchV1().Jobs(ns).Get(ctx, "workers-3", metav1.GetOptions{})
		if err != nil || *kj.Spec.Parallelism != 3 || *kj.Spec.Completions != 3 || kj.Status.Succeeded != 3 {
			t.Errorf("job workers-3: %v, err %v; want parallelism = completions = succeeded = 3", kj.Status, err)
		}
	})
	t.Run("out of memory", func(t *testing.T) {
		m := untilStatus(t, base, "oom-1", time.Minute, statusSuccess, statusError)
		if msg := fmt.Sprint(m["message"]); m["status"] != statusError || !strings.Contains(msg, outOfMemory(128, true)) {
			t.Errorf("GET = %v; want finishedWithError saying %q", m, outOfMemory(128, true))
		}
	})
	t.Run("cannot be scheduled", func(t *testing.T) {
		var m map[string]any
		eventually(t, 30*time.Second, "message saying gpu-99 cannot be scheduled", func() bool {
			_, m = call(t, "GET", base+"/api/v1/gpu-99/", nil)
			return strings.Contains(fmt.Sprint(m["message"]), "cannot be scheduled")
		})
		if msg := fmt.Sprint(m["message"]); m["status"] != statusNotStarted || !strings.Contains(msg, "nvidia.com/gpu") {
			t.Errorf("GET = %v; want notstarted, the scheduler's reason (nvidia.com/gpu)", m)
		}
	})
	t.Run("delete removes the pods", func(t *testing.T) {
		m := untilStatus(t, base, "sleep-1", time.Minute, statusStarted)
		if strings.Count(fmt.Sprint(m["logs"]), "==> pod sleep-1-") != 2 {
			t.Errorf("GET running = %v; want 2 pods' logs", m)
		}
		if code, m := call(t, "DELETE", base+"/api/v1/sleep-1/", nil); code != http.StatusNoContent {
			t.Fatalf("DELETE = %d %v; want 204", code, m)
		}
		eventually(t, 30*time.Second, "deletion of sleep-1's pods", func() bool {
			pods, err := admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "job-name=sleep-1"})
			return err == nil && len(pods.Items) == 0
		})
		if code, m := call(t, "GET", base+"/api/v1/sleep-1/", nil); code != http.StatusNotFound {
			t.Errorf("GET after DELETE = %d %v; want 404", code, m)
		}
		if code, m := call(t, "DELETE", base+"/api/v1/sleep-1/", nil); code != http.StatusNotFound {
			t.Errorf("DELETE again = %d %v; want 404", code, m)
		}
	})
	t.Run("duplicate", func(t *testing.T) {
		code, m := call(t, "POST", base+"/api/v1/", kubeBody("ok-1", "fnndsc/pl-succeed", 1))
		if code != http.StatusConflict || !strings.Contains(fmt.Sprint(m["message"]), "already exists") {
			t.Errorf("POST ok-1 again = %d %v; want 409 saying it exists", code, m)
		}
	})
	t.Run("invalid name", func(t *testing.T) {
		code, m := call(t, "POST", base+"/api/v1/", kubeBody("Chris_Jid_1", "fnndsc/pl-succeed", 1))
		if code != http.StatusBadRequest || !strings.Contains(fmt.Sprint(m["message"]), "Kubernetes Job name") {
			t.Errorf("POST = %d %v; want 400 saying why", code, m)
		}
		if code, m := call(t, "GET", base+"/api/v1/no-such-job/", nil); code != http.StatusNotFound {
			t.Errorf("GET unknown = %d %v; want 404", code, m)
		}
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
				"CONTAINER_ENV": "kubernetes", "JOB_NAMESPACE": ns, "STORAGE_TYPE": "host", "STOREBASE": "/s",
				"KUBECONFIG": kubeconfigAs(t, adminRC, admin, ns, sa, role, rb),
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
			bigBody := kubeBody(big, "fnndsc/pl-succeed", 1)
			bigBody["cpu_limit"] = 2000
			for jid, body := range map[string]map[string]any{
				run: kubeBody(run, "fnndsc/pl-sleep", 1), bad: kubeBody(bad, "fnndsc/pl-invalid", 1), big: bigBody,
			} {
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
	raw, err := os.ReadFile("deploy/kubernetes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var dep *appsv1.Deployment
	var svc *corev1.Service
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
	for {
		doc, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var tm metav1.TypeMeta
		utilyaml.Unmarshal(doc, &tm)
		switch tm.Kind {
		case "Deployment":
			dep = &appsv1.Deployment{}
			err = utilyaml.Unmarshal(doc, dep)
		case "Service":
			svc = &corev1.Service{}
			err = utilyaml.Unmarshal(doc, svc)
		}
		if err != nil {
			t.Fatalf("%s: %v", tm.Kind, err)
		}
	}
	if dep == nil || svc == nil {
		t.Fatal("deploy/kubernetes.yaml lacks a Deployment or a Service")
	}
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
// must accept as pman builds it: an NFS volume and a bound PVC (host is in
// TestKubeEndToEnd), and a PVC that does not exist, which the scheduler
// names. kwok mounts nothing, so this proves the pod specs, not the mounts.
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
			env := map[string]string{"CONTAINER_ENV": "kubernetes", "KUBECONFIG": kubeconfig, "JOB_NAMESPACE": ns}
			maps.Copy(env, tt.env)
			base := startServer(t, env)
			jid := fmt.Sprintf("store-%d", i)
			if code, m := call(t, "POST", base+"/api/v1/", kubeBody(jid, "fnndsc/pl-succeed", 1)); code != http.StatusCreated {
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
	t.Run("kubernetes_pvc that does not exist", func(t *testing.T) {
		base := startServer(t, map[string]string{"CONTAINER_ENV": "kubernetes", "KUBECONFIG": kubeconfig, "JOB_NAMESPACE": ns,
			"STORAGE_TYPE": "kubernetes_pvc", "VOLUME_NAME": "no-such-pvc"})
		call(t, "POST", base+"/api/v1/", kubeBody("store-nopvc", "fnndsc/pl-succeed", 1))
		var m map[string]any
		eventually(t, 30*time.Second, "message naming the missing PVC", func() bool {
			_, m = call(t, "GET", base+"/api/v1/store-nopvc/", nil)
			return strings.Contains(fmt.Sprint(m["message"]), `persistentvolumeclaim "no-such-pvc" not found`)
		})
		if m["status"] != statusNotStarted {
			t.Errorf("GET = %v; want notstarted", m)
		}
	})
}

// boundPVC makes a PVC name in ns, bound to a PV of its own, and removes
// both when the test ends.
func boundPVC(t *testing.T, admin kubernetes.Interface, ns, name string) {
	t.Helper()
	ctx := context.Background()
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-" + name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:               corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:            []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/local/storeBase"}},
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

func TestKubeRESTConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.kubeconfig")
	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: "https://10.1.2.3:6443"}
	kc.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: "secret"}
	kc.Contexts["x"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	kc.CurrentContext = "x"
	if err := clientcmd.WriteToFile(*kc, good); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.kubeconfig")
	os.WriteFile(garbage, []byte("clusters: [[[\n"), 0o600)

	rc, _, err := kubeRESTConfig(good)
	if err != nil || rc.Host != "https://10.1.2.3:6443" || rc.BearerToken != "secret" {
		t.Errorf("kubeRESTConfig(%s) = %v, %v; want the cluster and token of the file", good, rc, err)
	}
	// A list, as KUBECONFIG may be: a missing file in it is skipped.
	if rc, _, err := kubeRESTConfig(filepath.Join(dir, "none") + string(filepath.ListSeparator) + good); err != nil || rc.Host != "https://10.1.2.3:6443" {
		t.Errorf("kubeRESTConfig(list) = %v, %v; want the existing file's cluster", rc, err)
	}
	for _, bad := range []string{filepath.Join(dir, "none"), garbage} {
		if _, _, err := kubeRESTConfig(bad); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("kubeRESTConfig(%s) error = %v; want one naming the file", bad, err)
		}
	}
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
			"STORAGE_TYPE": "host", "STOREBASE": "/var/local/storeBase"}
		for _, kv := range env {
			k, v, _ := strings.Cut(kv, "=")
			m[k] = v
		}
		return startServer(t, m)
	}
	watches := map[string]<-chan watched{}
	submit := func(base, jid, image string, change func(map[string]any)) {
		t.Helper()
		body := kubeBody(jid, image, 1)
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
	gpu := kubeBody("gpu-1", "fnndsc/pl-succeed", 1)
	gpu["gpu_limit"] = 99 // the node has 4
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
	t.Run("a node selector no node matches", func(t *testing.T) {
		expect(t, "nonode-1", statusError, "didn't match Pod's node affinity/selector")
	})
	t.Run("Insufficient resources stay notstarted", func(t *testing.T) {
		// By now well past every grace period.
		code, m := call(t, "GET", base+"/api/v1/gpu-1/", nil)
		t.Logf("gpu-1: %d %s: %q", code, m["status"], m["message"])
		if code != http.StatusOK || m["status"] != statusNotStarted || !strings.Contains(fmt.Sprint(m["message"]), "Insufficient nvidia.com/gpu") {
			t.Errorf("GET gpu-1 = %d %v; want notstarted with the scheduler's message", code, m)
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

// TestKubeStop: a job pman declares failed is ended through its deadline,
// with the verdict written on it, on the Job version judged; a Job that
// changed meanwhile is judged again, and another pman's verdict is taken.
func TestKubeStop(t *testing.T) {
	for _, conflict := range []bool{false, true} {
		t.Run(fmt.Sprintf("conflict=%v", conflict), func(t *testing.T) {
			var mu sync.Mutex
			var patches []map[string]any
			kj := &batchv1.Job{
				TypeMeta:   metav1.TypeMeta{Kind: "Job", APIVersion: "batch/v1"},
				ObjectMeta: metav1.ObjectMeta{Name: "chris-jid-7", Namespace: "chris", ResourceVersion: "41"},
				Spec: batchv1.JobSpec{ActiveDeadlineSeconds: new(int64(kubeActiveDeadline)), Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
					Containers: []corev1.Container{{Name: kubeContainer, Image: "fnndsc/pl-x"}}}}},
				Status: batchv1.JobStatus{Active: 1, StartTime: new(metav1.NewTime(t0.Add(-90 * time.Second)))},
			}
			pods := &corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"}, Items: []corev1.Pod{
				kpod("chris-jid-7-a", corev1.PodPending, waiting("InvalidImageName", "couldn't parse image name"))}}
			k, _ := kubeAgainst(t, &config{JobLogsTail: 5}, func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				defer mu.Unlock()
				switch p := r.URL.Path; {
				case p == "/apis/batch/v1/namespaces/chris/jobs/chris-jid-7" && r.Method == http.MethodPatch:
					var patch map[string]any
					json.NewDecoder(r.Body).Decode(&patch)
					patches = append(patches, patch)
					if conflict {
						// Another pman got there first.
						kj.ResourceVersion = "42"
						kj.Annotations = map[string]string{kubeFailedAnnotation: "the other pman's reason", kubeFailedAtAnnotation: t0.Format(time.RFC3339Nano)}
						writeStatus(w, 409, metav1.StatusReasonConflict, "the object has been modified")
						return
					}
					writeObj(w, kj)
				case p == "/apis/batch/v1/namespaces/chris/jobs/chris-jid-7":
					writeObj(w, kj)
				case p == "/api/v1/namespaces/chris/pods":
					writeObj(w, pods)
				default:
					writeStatus(w, 404, metav1.StatusReasonNotFound, "no "+p)
				}
			})
			j, err := k.get(context.Background(), "chris-jid-7")
			if err != nil {
				t.Fatal(err)
			}
			if len(patches) != 1 {
				t.Fatalf("%d patches; want 1", len(patches))
			}
			want := map[string]any{
				"metadata": map[string]any{"resourceVersion": "41", "annotations": map[string]any{
					kubeFailedAnnotation: "pod chris-jid-7-a: cannot pull image fnndsc/pl-x: InvalidImageName: couldn't parse image name", kubeFailedAtAnnotation: "2026-11-25T12:00:00Z"}},
				"spec": map[string]any{"activeDeadlineSeconds": float64(90)},
			}
			if !reflect.DeepEqual(patches[0], want) {
				t.Errorf("patch = %v; want %v", patches[0], want)
			}
			wantMsg := "pod chris-jid-7-a: cannot pull image fnndsc/pl-x: InvalidImageName: couldn't parse image name"
			if conflict {
				wantMsg = "the other pman's reason"
			}
			if j.Status != statusError || j.Message != wantMsg || j.Timestamp != "2026-11-25T12:00:00Z" {
				t.Errorf("get = %+v; want finishedWithError, %q, at t0", j, wantMsg)
			}
		})
	}
}

func TestKubeWorkersBound(t *testing.T) {
	k, f := kubeAgainst(t, &config{StorageType: "host", StoreBase: "/s"}, func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, 500, metav1.StatusReasonInternalError, "should not be called")
	})
	s := testSpec()
	s.Workers = math.MaxInt32 + 1
	_, err := k.create(context.Background(), s)
	if code, body := errorStatus(err); code != 400 || !strings.Contains(fmt.Sprint(body), "number_of_workers") {
		t.Errorf("create with %d workers = %d %v; want 400 naming number_of_workers", s.Workers, code, body)
	}
	if r := f.requests(); len(r) != 0 {
		t.Errorf("requests: %q; want none", r)
	}
}
