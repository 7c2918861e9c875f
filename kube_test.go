package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
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
		t.Run(tt.name, func(t *testing.T) {
			c := good()
			tt.change(c)
			err := checkKubeConfig(c)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("checkKubeConfig = %v; want an error naming %s", err, tt.want)
			}
		})
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
		t.Run(tt.name, func(t *testing.T) {
			s := testSpec()
			s.CPULimit, s.MemoryLimit, s.GPULimit = tt.cpu, tt.mem, tt.gpu
			kj := buildKubeJob(&config{StorageType: "host", StoreBase: "/s", IgnoreLimits: tt.ignore}, s, nil, nil)
			c := kj.Spec.Template.Spec.Containers[0]
			checkLimits(t, "limits", c.Resources.Limits, tt.want)
			if sc := c.SecurityContext; sc.RunAsUser != nil || sc.RunAsGroup != nil {
				t.Errorf("runAsUser, runAsGroup = %v, %v; want the image's (nil)", sc.RunAsUser, sc.RunAsGroup)
			}
			if n := len(kj.Spec.Template.Spec.Volumes); n != 1 {
				t.Errorf("%d volumes without SHM_SIZE; want 1", n)
			}
		})
	}
}

func TestKubeIDs(t *testing.T) {
	tests := []struct {
		name     string
		cfg      config
		lo, hi   [2]int64 // uid, gid bounds
		wantNone bool
	}{
		{"CONTAINER_USER range", config{ContainerUser: userSpec{idRange{true, 1000, 1009}, idRange{true, 50, 50}}, RunAsUser: new(int64(7)), RunAsGroup: new(int64(8))}, [2]int64{1000, 50}, [2]int64{1009, 50}, false},
		{"seed variables", config{RunAsUser: new(int64(7)), RunAsGroup: new(int64(8))}, [2]int64{7, 8}, [2]int64{7, 8}, false},
		{"none", config{}, [2]int64{}, [2]int64{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := &kubeSched{cfg: &tt.cfg}
			for range 20 {
				uid, gid := k.ids()
				if tt.wantNone {
					if uid != nil || gid != nil {
						t.Errorf("ids() = %v, %v; want nil, nil", uid, gid)
					}
					return
				}
				if uid == nil || gid == nil || *uid < tt.lo[0] || *uid > tt.hi[0] || *gid < tt.lo[1] || *gid > tt.hi[1] {
					t.Errorf("ids() = %v, %v; want within %v-%v", uid, gid, tt.lo, tt.hi)
					return
				}
			}
		})
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
		t.Run(tt.name, func(t *testing.T) {
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
				t.Errorf("%s answered %d %s; want %d", tt.op, code, text, tt.want)
			}
			for _, w := range tt.wantMsgs {
				if !strings.Contains(text, w) {
					t.Errorf("message %s; want it to contain %q", text, w)
				}
			}
		})
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
		ObjectMeta: metav1.ObjectMeta{Name: "chris-jid-7", Namespace: "chris", Labels: map[string]string{jidLabel: "chris-jid-7"}},
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
	// Three pods share the bound; each read asks one byte past its share.
	logQuery := fmt.Sprintf("/log?container=plugin&limitBytes=%d&tailLines=5", defaultLogsMaxBytes/3+1)
	want := map[string]bool{
		"GET /apis/batch/v1/namespaces/chris/jobs/chris-jid-7":                                         true,
		"GET /api/v1/namespaces/chris/pods?labelSelector=batch.kubernetes.io%2Fcontroller-uid%3Duid-7": true,
		"GET /api/v1/namespaces/chris/pods/chris-jid-7-a" + logQuery:                                   true,
		"GET /api/v1/namespaces/chris/pods/chris-jid-7-b" + logQuery:                                   true,
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
		ObjectMeta: metav1.ObjectMeta{Name: "chris-jid-7", Namespace: "chris", Labels: map[string]string{jidLabel: "chris-jid-7"}},
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
// name, in at most JOB_LOGS_MAX_BYTES, and still end with the log's last line
// when lines are long; a job of many pods shows kubeLogPods of them.
func TestKubeLogBounds(t *testing.T) {
	const lineLen = 5000 // 1000 lines are more than the bound
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
		if limit == 0 {
			limit = b.Len()
		}
		w.Write(b.Bytes()[:min(limit, b.Len())])
	})
	j, err := k.get(context.Background(), "chris-jid-7")
	if err != nil {
		t.Fatal(err)
	}
	if len(j.Logs) > defaultLogsMaxBytes || !strings.HasPrefix(j.Logs[strings.LastIndex(j.Logs[:len(j.Logs)-1], "\n")+1:], "line 999 ") {
		t.Errorf("logs of %d bytes ending %q; want at most %d, ending with line 999", len(j.Logs), j.Logs[max(0, len(j.Logs)-40):], defaultLogsMaxBytes)
	}
	if len(asked) == 0 || !strings.Contains(asked[0], fmt.Sprintf("limitBytes=%d", defaultLogsMaxBytes+1)) || !strings.Contains(asked[0], "tailLines=1000") {
		t.Errorf("log requests %q; want limitBytes=%d and tailLines=1000 first", asked, defaultLogsMaxBytes+1)
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
		case http.MethodGet:
			got.UID = "uid-7"
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
	if del.Preconditions == nil || del.Preconditions.UID == nil || *del.Preconditions.UID != "uid-7" {
		t.Errorf("delete preconditions = %+v; want the uid of the Job read (a Job pman made)", del.Preconditions)
	}
	wantReqs := []string{"POST /apis/batch/v1/namespaces/chris/jobs", "GET /apis/batch/v1/namespaces/chris/jobs/chris-jid-7", "DELETE /apis/batch/v1/namespaces/chris/jobs/chris-jid-7"}
	if r := f.requests(); !reflect.DeepEqual(r, wantReqs) {
		t.Errorf("requests = %q; want %q", r, wantReqs)
	}
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
				ObjectMeta: metav1.ObjectMeta{Name: "chris-jid-7", Namespace: "chris", Labels: map[string]string{jidLabel: "chris-jid-7"}, ResourceVersion: "41"},
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
