package main

// The image itself, as deployments run it: the Dockerfile built unchanged
// by .ci/image as pman:ci, started as the FNNDSC Helm chart starts it (on the
// real node of .ci/kube) and as miniChRIS-docker's compose file starts it
// (on Docker). deploy_test.go does the same with the built binary. These
// skip without the image (and fail under CI, where .ci/run builds it first).

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// ciImage is what .ci/image builds from the Dockerfile.
const ciImage = "pman:ci"

// needImage skips (fails under CI) when the local engine lacks ciImage, and
// logs its size.
func needImage(t *testing.T, cli *client.Client) {
	t.Helper()
	img, err := cli.ImageInspect(context.Background(), ciImage)
	if err != nil {
		needOrSkip(t, fmt.Sprintf("no %s image on the local Docker engine (%v): run bash .ci/image", ciImage, err))
	}
	t.Logf("%s: %d bytes (%.1f MB)", ciImage, img.Size, float64(img.Size)/1e6)
}

// storeJob makes a job's input (holding data.txt) and output directories
// in store, writable by the job's user, and returns pfcon's request for it:
// the busybox image (img) copies the input file and says who it ran as.
func storeJob(t *testing.T, store, jid, img string) map[string]any {
	t.Helper()
	for _, d := range []string{jid, jid + "/in", jid + "/out"} {
		if err := os.MkdirAll(filepath.Join(store, d), 0o777); err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Join(store, d), 0o777)
	}
	if err := os.WriteFile(filepath.Join(store, jid, "in", "data.txt"), []byte("from pfcon's store"), 0o644); err != nil {
		t.Fatal(err)
	}
	body := jobRequest(jid)
	body["image"] = img
	body["entrypoint"] = []string{"sh", "-c", `id; echo "HOME=$HOME"; cp "$2/data.txt" "$3/copy.txt"`, "sh"}
	return body
}

// checkStoreJob checks a finished storeJob: success, run as uid 1001 with
// group 0, HOME=/tmp, and its output file in the store, owned by 1001.
func checkStoreJob(t *testing.T, m map[string]any, store, jid string) {
	t.Helper()
	logs := fmt.Sprint(m["logs"])
	t.Logf("the job's log: %q", logs)
	if m["status"] != statusSuccess || !strings.Contains(logs, "uid=1001 gid=0") || !strings.Contains(logs, "HOME=/tmp") {
		t.Errorf("job = %v; want finishedSuccessfully, run as uid 1001 gid 0, HOME=/tmp", m)
	}
	out := filepath.Join(store, jid, "out", "copy.txt")
	got, err := os.ReadFile(out)
	if string(got) != "from pfcon's store" {
		t.Errorf("%s = %q, %v; want the input's copy", out, got, err)
	}
	if fi, err := os.Stat(out); err == nil {
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 1001 {
			t.Errorf("%s is owned by uid %d; want 1001", out, st.Uid)
		}
	}
}

// TestImageHelmChart runs the image as the FNNDSC Helm chart (charts/pfcon)
// runs its pman container, on the real node: the chart's command, its
// ConfigMap and Secret (envFrom), the ServiceAccount and Role of
// deploy/kubernetes.yaml, in-cluster configuration (no kubeconfig: the
// ServiceAccount's token, and the kubernetes Service's address that the
// kubelet gives every pod), its readiness probe, and the store as a PVC.
// pfcon's request goes to the pod's IP, and the job runs as a real pod on
// the PVC. One setting is not the chart's: NODE_SELECTOR (pman.extraEnv),
// since the test control plane's kwok nodes would only fake the job.
func TestImageHelmChart(t *testing.T) {
	cli := needEngine(t)
	needImage(t, cli)
	_, admin := needRealNode(t, ciImage)
	ctx := context.Background()
	ns := kubeNamespace(t, admin)
	sa, role, rb := manifestRBAC(t)
	if _, err := admin.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	store := t.TempDir()
	boundHostPVC(t, admin, ns, "storebase", store)

	// The chart's pman ConfigMap (templates/pman-config.yml with the
	// default values) and Secret.
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "chris-pman"}, Data: map[string]string{
		"CONTAINER_ENV": "kubernetes", "STORAGE_TYPE": "kubernetes_pvc", "JOB_NAMESPACE": ns, "VOLUME_NAME": "storebase",
		"JOB_LABELS": "chrisproject.org/job=plugininstance", "ENABLE_HOME_WORKAROUND": "yes", "REMOVE_JOBS": "yes",
		"IGNORE_LIMITS": "no", "GUNICORN_CMD_ARGS": "--workers=4 --timeout=30", "CONTAINER_USER": "1001:0",
		"NODE_SELECTOR": kubeRealSelector,
	}}
	if _, err := admin.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "chris-pman"}, StringData: map[string]string{"SECRET_KEY": randSuffix()}}
	if _, err := admin.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The chart's pman container (templates/deployment.yml), in a pod of
	// its own: the test control plane runs no Deployment controller.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "chris-pfcon", Labels: map[string]string{"app.kubernetes.io/name": "pfcon"}},
		Spec: corev1.PodSpec{
			ServiceAccountName: sa.Name,
			NodeSelector:       map[string]string{"kubernetes.io/hostname": kubeRealNode},
			Containers: []corev1.Container{{
				Name:            "pman",
				Image:           ciImage,
				ImagePullPolicy: corev1.PullIfNotPresent,
				Command:         []string{"gunicorn", "-b", "0.0.0.0:5010", "pman.wsgi:application"},
				EnvFrom: []corev1.EnvFromSource{
					{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: cm.Name}}},
					{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: secret.Name}}},
				},
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 5010, Protocol: corev1.ProtocolTCP}},
				ReadinessProbe: &corev1.Probe{PeriodSeconds: 3, ProbeHandler: corev1.ProbeHandler{
					HTTPGet: &corev1.HTTPGetAction{Path: "/api/v1/", Port: intstr.FromString("http")}}},
			}},
		},
	}
	if _, err := admin.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		admin.CoreV1().Pods(ns).Delete(context.Background(), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))})
	})
	var ip string
	eventually(t, 90*time.Second, "readiness of the pman pod (the chart's probe)", func() bool {
		p, err := admin.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				ip = p.Status.PodIP
				return true
			}
		}
		return false
	})
	url := "http://" + ip + ":5010"
	if code, m := call(t, "GET", url+"/api/v1/", nil); code != http.StatusOK || m["container_env"] != "kubernetes" || m["storage_type"] != "kubernetes_pvc" {
		t.Errorf("GET %s/api/v1/ = %d %v; want 200, kubernetes, kubernetes_pvc", url, code, m)
	}

	jid := "chart-" + randSuffix()
	t.Cleanup(func() { deleteKubeJob(admin, ns, jid) })
	if code, m := call(t, "POST", url+"/api/v1/", storeJob(t, store, jid, kubeRealImage)); code != http.StatusCreated {
		t.Fatalf("POST = %d %v; want 201", code, m)
	}
	checkStoreJob(t, untilStatus(t, url, jid, 2*time.Minute, statusSuccess, statusError), store, jid)
	pods, err := admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "job-name=" + jid})
	if err != nil || len(pods.Items) != 1 || pods.Items[0].Spec.NodeName != kubeRealNode {
		t.Errorf("pods of %s: %v, %v; want one, on %s", jid, pods, err, kubeRealNode)
	}
	if code, _ := call(t, "DELETE", url+"/api/v1/"+jid+"/", nil); code != http.StatusNoContent {
		t.Errorf("DELETE = %d; want 204", code)
	}
	// pman found the API server as a pod does.
	raw, err := admin.CoreV1().Pods(ns).GetLogs(pod.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil || !strings.Contains(string(raw), "in-cluster service account") {
		t.Errorf("pman's log = %q, %v; want it to say it used the in-cluster service account", raw, err)
	}
}

// TestImageMiniChRISDocker runs the image as miniChRIS-docker's compose file
// runs it: the image's default command, the compose file's environment
// (no STORAGE_TYPE, no STOREBASE), the Docker socket mounted, userns_mode
// host, and a pfcon-labelled container holding the store volume. pfcon's
// request goes to the container's address, and the job runs end to end.
func TestImageMiniChRISDocker(t *testing.T) {
	cli := needEngine(t)
	needImage(t, cli)
	img := needTestImage(t, cli)
	ctx := context.Background()
	onlyPfcon(t, cli)
	suffix := randSuffix()
	run := func(name string, cfg *container.Config, hc *container.HostConfig) string {
		t.Helper()
		c, err := cli.ContainerCreate(ctx, cfg, hc, nil, nil, name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true}) })
		if err := cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
			t.Fatal(err)
		}
		return c.ID
	}

	mountpoint := pfconStandIn(t, cli, img, "chris_files-"+suffix, "pfcon-"+suffix)

	started := time.Now()
	id := run("pman-"+suffix, &container.Config{Image: ciImage, Env: []string{
		"CONTAINER_ENV=docker", "CONTAINER_USER=1001:", "ENABLE_HOME_WORKAROUND=yes",
		"JOB_LABELS=org.chrisproject.miniChRIS=plugininstance", "SECRET_KEY=secret", "REMOVE_JOBS=yes",
	}}, &container.HostConfig{Binds: []string{"/var/run/docker.sock:/var/run/docker.sock"}, UsernsMode: "host"})
	c, err := cli.ContainerInspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + c.NetworkSettings.IPAddress + ":5010"
	eventually(t, 30*time.Second, "an answer of pman at "+url, func() bool {
		resp, err := http.Get(url + "/api/v1/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	t.Logf("pman answered %s after its container's start", time.Since(started).Round(time.Millisecond))
	if code, m := call(t, "GET", url+"/api/v1/", nil); code != http.StatusOK || m["container_env"] != "docker" || m["storage_type"] != "docker_local_volume" {
		t.Errorf("GET /api/v1/ = %d %v; want docker, docker_local_volume", code, m)
	}

	jid := "minichris-" + suffix
	t.Cleanup(func() { cli.ContainerRemove(context.Background(), jid, container.RemoveOptions{Force: true}) })
	if code, m := call(t, "POST", url+"/api/v1/", storeJob(t, mountpoint, jid, img)); code != http.StatusCreated {
		t.Fatalf("POST = %d %v; want 201", code, m)
	}
	checkStoreJob(t, untilStatus(t, url, jid, 2*time.Minute, statusSuccess, statusError), mountpoint, jid)
	if code, _ := call(t, "DELETE", url+"/api/v1/"+jid+"/", nil); code != http.StatusNoContent {
		t.Errorf("DELETE = %d; want 204", code)
	}
	if _, err := cli.ContainerInspect(ctx, jid); !client.IsErrNotFound(err) {
		t.Errorf("the job's container after DELETE: %v; want it removed (REMOVE_JOBS=yes)", err)
	}
}
