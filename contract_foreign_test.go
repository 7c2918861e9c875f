package main

// Objects pman did not make (issue 17, item 3): on every backend, an object
// someone else made under a jid's name, directly through the scheduler, is
// never answered, removed or used by pman (ownJob, policy.go). In
// miniChRIS-docker pman shares its engine with CUBE's database, whose
// container logs its password: foreignSecret stands for it. The servers are
// the contract suite's harnesses; each backend says here only how to make
// such an object on its scheduler and how to see that it is untouched.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// foreignSecret is what a foreign object logs; no answer of pman's may
// carry it.
const foreignSecret = "POSTGRES_PASSWORD=chris1234-not-for-pman"

// foreignScript is the foreign object's command on the backends whose
// objects run the busybox test image: it logs the secret and stays up.
var foreignScript = []string{"sh", "-c", "echo " + foreignSecret + "; exec sleep 600"}

// foreignLabels are a foreign object's own labels: nothing of pman's.
var foreignLabels = map[string]string{"org.chrisproject.role": "database"}

// pman6JobLabels is a JOB_LABELS setting, as miniChRIS and the Helm chart
// set it; an object carrying both pairs and no jid label is a pman 6 job.
var pman6JobLabels = map[string]string{"org.chrisproject.miniChRIS": "plugininstance", "team": "fnndsc"}

// pman6Env is the environment of a server with pman6JobLabels.
var pman6Env = map[string]string{"JOB_LABELS": "org.chrisproject.miniChRIS=plugininstance,team=fnndsc"}

// foreignBackend is one backend under these tests.
type foreignBackend struct {
	name string
	// unique is true where the scheduler's names are unique: a POST of a
	// jid whose name a foreign object holds is then nameTaken's 409;
	// elsewhere (SLURM, Cromwell) the job is submitted beside it.
	unique bool
	// pman6 is true where a pman 6 job can carry JOB_LABELS.
	pman6 bool
	start func(t *testing.T, extra map[string]string) *foreignEnv
}

// foreignEnv is a pman on a backend, and the scheduler behind it.
type foreignEnv struct {
	*contractEnv
	// plant makes, directly through the scheduler, an object named jid
	// that logs foreignSecret and carries labels, and waits until it
	// runs and has logged.
	plant func(t *testing.T, jid string, labels map[string]string)
	// untouched fails the test unless the object planted as jid is still
	// there, the same object, still running.
	untouched func(t *testing.T, jid string)
}

var foreignBackends = []foreignBackend{
	{name: "docker", unique: true, pman6: true, start: func(t *testing.T, extra map[string]string) *foreignEnv { return dockerForeign(t, "docker", extra) }},
	{name: "podman", unique: true, pman6: true, start: func(t *testing.T, extra map[string]string) *foreignEnv { return dockerForeign(t, "podman", extra) }},
	{name: "swarm", unique: true, pman6: true, start: swarmForeign},
	{name: "kubernetes", unique: true, pman6: true, start: kubeForeign},
	{name: "slurm", start: slurmForeign},
	{name: "cromwell", start: cromwellForeign},
}

// TestForeignObjects: GET of a foreign object's name is a 404 that does not
// carry its logs, DELETE a 404 that leaves it, and POST of that jid leaves
// it too: a 409 saying that pman did not make it where the scheduler would
// refuse the name, else the job runs beside it, and its GET and DELETE are
// the job's alone.
func TestForeignObjects(t *testing.T) {
	for _, b := range foreignBackends {
		t.Run(b.name, func(t *testing.T) {
			e := b.start(t, nil)
			jid := e.newJID(t, "foreign")
			e.plant(t, jid, foreignLabels)
			// A label of pman's with another jid is no better.
			other := e.newJID(t, "other")
			e.plant(t, other, map[string]string{jidLabel: jid})

			for _, j := range []string{jid, other} {
				code, m := e.do(t, "GET", j, nil)
				if code != http.StatusNotFound || strings.Contains(fmt.Sprint(m), foreignSecret) {
					t.Errorf("GET %s = %d %v; want 404 without the object's logs", j, code, m)
				}
				code, m = e.do(t, "DELETE", j, nil)
				if code != http.StatusNotFound {
					t.Errorf("DELETE %s = %d %v; want 404", j, code, m)
				}
				e.untouched(t, j)
			}

			body := e.body(t, jid, actSucceed)
			code, m := call(t, "POST", e.url+"/api/v1/", body)
			if b.unique {
				if code != http.StatusConflict || !strings.Contains(fmt.Sprint(m["message"]), "pman did not make") {
					t.Errorf("POST %s = %d %v; want 409 saying that pman did not make the object of that name", jid, code, m)
				}
				e.untouched(t, jid)
				return
			}
			if code != http.StatusCreated {
				t.Fatalf("POST %s = %d %v; want 201: the job runs beside the foreign object", jid, code, m)
			}
			if e.run != nil {
				e.run(t, jid, actSucceed)
			}
			done := e.finish(t, jid)
			if done["status"] != statusSuccess || strings.Contains(fmt.Sprint(done), foreignSecret) {
				t.Errorf("GET %s = %v; want the job's own answer, finishedSuccessfully", jid, done)
			}
			e.untouched(t, jid)
			if code, m := e.do(t, "DELETE", jid, nil); code != http.StatusNoContent {
				t.Errorf("DELETE %s = %d %v; want 204", jid, code, m)
			}
			e.untouched(t, jid)
			if code, m := e.do(t, "GET", jid, nil); code != http.StatusNotFound {
				t.Errorf("GET %s after DELETE = %d %v; want 404", jid, code, m)
			}
		})
	}
}

// TestForeignPman6: with JOB_LABELS set, an object that carries every pair
// of it and no jid label is a job of pman 6, made before an upgrade in
// place: GET answers it and DELETE removes it. One that lacks a pair is
// not.
func TestForeignPman6(t *testing.T) {
	for _, b := range foreignBackends {
		if !b.pman6 {
			continue
		}
		t.Run(b.name, func(t *testing.T) {
			e := b.start(t, pman6Env)
			jid := e.newJID(t, "pman6")
			e.plant(t, jid, pman6JobLabels)
			half := e.newJID(t, "half")
			e.plant(t, half, map[string]string{"team": "fnndsc"})

			if code, m := e.do(t, "GET", jid, nil); code != http.StatusOK || m["jid"] != jid || m["status"] != statusStarted {
				t.Errorf("GET %s = %d %v; want 200, started: pman 6's job", jid, code, m)
			}
			if code, m := e.do(t, "DELETE", jid, nil); code != http.StatusNoContent {
				t.Errorf("DELETE %s = %d %v; want 204", jid, code, m)
			}
			if e.exists(t, jid) {
				t.Errorf("pman 6's job %s is still there after DELETE", jid)
			}

			if code, m := e.do(t, "GET", half, nil); code != http.StatusNotFound {
				t.Errorf("GET %s = %d %v; want 404: it lacks a pair of JOB_LABELS", half, code, m)
			}
			if code, m := e.do(t, "DELETE", half, nil); code != http.StatusNotFound {
				t.Errorf("DELETE %s = %d %v; want 404", half, code, m)
			}
			e.untouched(t, half)
		})
	}
}

// TestOwnJob is the rule itself, on labels.
func TestOwnJob(t *testing.T) {
	pman6 := map[string]string{"team": "fnndsc", "k": "v"}
	tests := []struct {
		name   string
		labels map[string]string
		pman6  map[string]string
		want   bool
	}{
		{"the jid label", map[string]string{jidLabel: "j"}, nil, true},
		{"the jid label and JOB_LABELS", map[string]string{jidLabel: "j", "team": "fnndsc"}, pman6, true},
		{"another jid", map[string]string{jidLabel: "k"}, nil, false},
		{"another jid with every JOB_LABELS pair", map[string]string{jidLabel: "k", "team": "fnndsc", "k": "v"}, pman6, false},
		{"an empty jid", map[string]string{jidLabel: ""}, nil, false},
		{"no labels", nil, nil, false},
		{"no labels, JOB_LABELS set", nil, pman6, false},
		{"foreign labels", foreignLabels, nil, false},
		{"pman 6: every JOB_LABELS pair", map[string]string{"team": "fnndsc", "k": "v", "x": "y"}, pman6, true},
		{"pman 6: a pair missing", map[string]string{"team": "fnndsc"}, pman6, false},
		{"pman 6: a value differs", map[string]string{"team": "fnndsc", "k": "w"}, pman6, false},
		{"pman 6 without JOB_LABELS", map[string]string{"team": "fnndsc"}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ownJob(tt.labels, "j", tt.pman6); got != tt.want {
				t.Errorf("ownJob(%v, %q, %v) = %v; want %v", tt.labels, "j", tt.pman6, got, tt.want)
			}
		})
	}
}

// ---- Docker and Podman --------------------------------------------------

// dockerForeign plants containers made through the engine's API, as
// CUBE's database container is.
func dockerForeign(t *testing.T, engine string, extra map[string]string) *foreignEnv {
	eng := needTestEngine(t, engine)
	e := &foreignEnv{contractEnv: dockerContractEnv(startDocker(t, eng, extra))}
	ids := map[string]string{}
	e.plant = func(t *testing.T, jid string, labels map[string]string) {
		t.Helper()
		ctx := context.Background()
		c, err := eng.cli.ContainerCreate(ctx, &container.Config{Image: eng.image, Cmd: foreignScript, Labels: labels}, nil, nil, nil, jid)
		if err != nil {
			t.Fatalf("creating container %s: %v", jid, err)
		}
		t.Cleanup(func() { eng.cli.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true}) })
		if err := eng.cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
			t.Fatalf("starting container %s: %v", jid, err)
		}
		ids[jid] = c.ID
		eventually(t, 30*time.Second, "secret in the logs of container "+jid, func() bool {
			rc, err := eng.cli.ContainerLogs(ctx, c.ID, container.LogsOptions{ShowStdout: true})
			if err != nil {
				return false
			}
			defer rc.Close()
			b, _ := io.ReadAll(rc)
			return bytes.Contains(b, []byte(foreignSecret))
		})
	}
	e.untouched = func(t *testing.T, jid string) {
		t.Helper()
		c, err := eng.cli.ContainerInspect(context.Background(), jid)
		if err != nil || c.ID != ids[jid] || c.State == nil || !c.State.Running {
			t.Errorf("container %s after pman's answers: %v; want the one planted (%s), running", jid, err, ids[jid])
		}
	}
	return e
}

// ---- Swarm -----------------------------------------------------------------

// swarmForeign plants services made through the engine's API, as a
// stack's services are.
func swarmForeign(t *testing.T, extra map[string]string) *foreignEnv {
	e := &foreignEnv{contractEnv: startSwarmContract(t, extra, false)}
	cli := needSwarm(t)
	image := needTestImage(t, cli)
	ids := map[string]string{}
	e.plant = func(t *testing.T, jid string, labels map[string]string) {
		t.Helper()
		ctx := context.Background()
		one := uint64(1)
		spec := swarm.ServiceSpec{
			Annotations: swarm.Annotations{Name: jid, Labels: labels},
			TaskTemplate: swarm.TaskSpec{
				ContainerSpec: &swarm.ContainerSpec{Image: image, Command: foreignScript, Labels: labels},
				RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionNone},
			},
			Mode: swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &one}},
		}
		resp, err := cli.ServiceCreate(ctx, spec, swarm.ServiceCreateOptions{})
		if err != nil {
			t.Fatalf("creating service %s: %v", jid, err)
		}
		t.Cleanup(func() { cli.ServiceRemove(context.Background(), resp.ID) })
		ids[jid] = resp.ID
		// Running as Swarm reports it, not only started: its container logs
		// before the manager records the task's "running".
		eventually(t, 60*time.Second, "service "+jid+" running, the secret in its logs", func() bool {
			tasks, err := cli.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", resp.ID))})
			if err != nil || len(tasks) == 0 || tasks[0].Status.State != swarm.TaskStateRunning ||
				tasks[0].Status.ContainerStatus == nil || tasks[0].Status.ContainerStatus.ContainerID == "" {
				return false
			}
			rc, err := cli.ContainerLogs(ctx, tasks[0].Status.ContainerStatus.ContainerID, container.LogsOptions{ShowStdout: true})
			if err != nil {
				return false
			}
			defer rc.Close()
			b, _ := io.ReadAll(rc)
			return bytes.Contains(b, []byte(foreignSecret))
		})
	}
	e.untouched = func(t *testing.T, jid string) {
		t.Helper()
		ctx := context.Background()
		svc := swarmService(t, cli, jid)
		if svc == nil || svc.ID != ids[jid] {
			t.Errorf("service %s after pman's answers: %v; want the one planted (%s)", jid, svc, ids[jid])
			return
		}
		tasks, err := cli.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", svc.ID))})
		if err != nil || len(tasks) != 1 || tasks[0].Status.State != swarm.TaskStateRunning {
			t.Errorf("tasks of service %s after pman's answers: %v %+v; want its one task, running", jid, err, tasks)
		}
	}
	return e
}

// ---- Kubernetes ------------------------------------------------------------

var kubeForeignJIDs atomic.Int64

// kubeForeign plants Jobs made in JOB_NAMESPACE with the admin's
// credentials, beside pman's, on the kwok node. The server is the contract
// harness's (kubeContractEnv), in a namespace this test knows.
func kubeForeign(t *testing.T, extra map[string]string) *foreignEnv {
	adminRC, admin := kubeAdmin(t)
	ns := kubeNamespace(t, admin)
	sa, role, rb := manifestRBAC(t)
	env := map[string]string{
		"CONTAINER_ENV": "kubernetes", "JOB_NAMESPACE": ns,
		"KUBECONFIG":    kubeconfigAs(t, adminRC, admin, ns, sa, role, rb),
		"NODE_SELECTOR": "type=kwok", "STORAGE_TYPE": "host", "STOREBASE": t.TempDir(),
	}
	maps.Copy(env, extra)
	ce := &contractEnv{url: startServer(t, env), store: env["STOREBASE"], logLine: kwokLog}
	ce.newJID = func(t *testing.T, name string) string {
		jid := name + "-" + strconv.FormatInt(kubeForeignJIDs.Add(1), 10)
		t.Cleanup(func() { deleteKubeJob(admin, ns, jid) })
		return jid
	}
	ce.body = func(t *testing.T, jid string, a act) map[string]any {
		b := ce.contractBody(t, jid)
		b["image"], b["entrypoint"] = kubeImages[a], []string{"app"}
		return b
	}
	ce.exists = func(t *testing.T, jid string) bool { return kubeHolds(t, admin, ns, jid) }
	e := &foreignEnv{contractEnv: ce}
	uids := map[string]string{}
	e.plant = func(t *testing.T, jid string, labels map[string]string) {
		t.Helper()
		ctx := context.Background()
		// As pman 6 made its Jobs: the labels on the pod template only,
		// the container named after the jid.
		kj := &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Name: jid},
			Spec: batchv1.JobSpec{
				BackoffLimit: new(int32(0)),
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{
						RestartPolicy: corev1.RestartPolicyNever,
						NodeSelector:  map[string]string{"type": "kwok"},
						Containers:    []corev1.Container{{Name: jid, Image: kubeImages[actSleep], Command: foreignScript}},
					},
				},
			},
		}
		created, err := admin.BatchV1().Jobs(ns).Create(ctx, kj, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("creating Job %s: %v", jid, err)
		}
		uids[jid] = string(created.UID)
		eventually(t, 60*time.Second, "running pod of Job "+jid, func() bool {
			pods, err := admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "job-name=" + jid})
			return err == nil && len(pods.Items) == 1 && pods.Items[0].Status.Phase == corev1.PodRunning
		})
	}
	e.untouched = func(t *testing.T, jid string) {
		t.Helper()
		ctx := context.Background()
		kj, err := admin.BatchV1().Jobs(ns).Get(ctx, jid, metav1.GetOptions{})
		_, judged := kj.Annotations[kubeFailedAnnotation]
		if err != nil || string(kj.UID) != uids[jid] || kj.DeletionTimestamp != nil || kj.Spec.ActiveDeadlineSeconds != nil || judged {
			t.Errorf("Job %s after pman's answers: %v; want the one planted (%s), unchanged", jid, err, uids[jid])
			return
		}
		pods, err := admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "job-name=" + jid})
		if err != nil || len(pods.Items) != 1 || pods.Items[0].DeletionTimestamp != nil {
			t.Errorf("pods of Job %s after pman's answers: %v %d; want its one pod", jid, err, len(pods.Items))
		}
	}
	return e
}

// ---- SLURM -----------------------------------------------------------------

// slurmForeign plants jobs submitted with sbatch, named like a jid, as any
// user of the cluster may. SLURM has no labels: what the job carries is its
// name; labels are ignored.
func slurmForeign(t *testing.T, extra map[string]string) *foreignEnv {
	se := startSlurm(t, "", extra)
	e := &foreignEnv{contractEnv: se.contractEnv}
	ids := map[string]int{}
	e.plant = func(t *testing.T, jid string, _ map[string]string) {
		t.Helper()
		ids[jid] = sbatchForeign(t, jid)
	}
	e.untouched = func(t *testing.T, jid string) {
		t.Helper()
		if st := squeueState(t, ids[jid]); st != "RUNNING" {
			t.Errorf("SLURM job %d (%s) after pman's answers: %q; want the one submitted, RUNNING", ids[jid], jid, st)
		}
	}
	return e
}

// sbatchForeign submits, by hand, a job named jid that logs foreignSecret
// and sleeps; it waits until it runs and is cancelled when the test ends.
func sbatchForeign(t *testing.T, jid string) int {
	t.Helper()
	out := filepath.Join(t.TempDir(), "foreign.out")
	b, err := exec.Command("sbatch", "--parsable", "--job-name="+jid, "--output="+out, "--mem=16",
		"--wrap", strings.Join(foreignScript[:2], " ")+" '"+foreignScript[2]+"'").CombinedOutput()
	if err != nil {
		t.Fatalf("sbatch: %v %s", err, b)
	}
	id, err := strconv.Atoi(strings.TrimSpace(strings.Split(string(b), ";")[0]))
	if err != nil {
		t.Fatalf("sbatch answered %q", b)
	}
	t.Cleanup(func() { exec.Command("scancel", strconv.Itoa(id)).Run() })
	eventually(t, 60*time.Second, fmt.Sprintf("SLURM job %d running and logging", id), func() bool {
		log, _ := os.ReadFile(out)
		return squeueState(t, id) == "RUNNING" && bytes.Contains(log, []byte(foreignSecret))
	})
	return id
}

// squeueState returns SLURM's state of job id, "" once it has left the
// queue.
func squeueState(t *testing.T, id int) string {
	t.Helper()
	b, err := exec.Command("squeue", "--noheader", "--jobs="+strconv.Itoa(id), "--format=%T").CombinedOutput()
	if err != nil && !strings.Contains(string(b), "Invalid job id") {
		t.Fatalf("squeue --jobs=%d: %v %s", id, err, b)
	}
	return strings.TrimSpace(string(b))
}

// TestSlurmForeignRecorded: a record whose SLURM job pman never learnt
// (pman stopped between the submission and writing its id), or whose id
// slurmctld has since given to another job, never leads pman to a job
// someone else submitted under the jid's name: GET does not answer that
// job's state, DELETE does not cancel it.
func TestSlurmForeignRecorded(t *testing.T) {
	se := startSlurm(t, "", nil)
	for _, tt := range []struct {
		name string
		meta func(id int) *slurmJobMeta // job.json; nil: none yet
	}{
		{"no id recorded", func(int) *slurmJobMeta { return nil }},
		{"its id given to another job", func(id int) *slurmJobMeta {
			return &slurmJobMeta{SlurmJobID: id, Image: "fnndsc/pl-x", Cmd: "x", Submitted: time.Now().UTC().Format(time.RFC3339Nano)}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			jid := se.newJID(t, "rec")
			id := sbatchForeign(t, jid)
			rec := slurmRecord{jid: jid, dir: filepath.Join(slurmRecordsDir(se.store), jid)}
			if err := os.MkdirAll(rec.dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if m := tt.meta(id); m != nil {
				if err := os.WriteFile(filepath.Join(rec.dir, "job.json"), mustJSON(t, m), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			code, m := se.do(t, "GET", jid, nil)
			if code != http.StatusOK || m["status"] == statusStarted || strings.Contains(fmt.Sprint(m["message"]), "running") {
				t.Errorf("GET %s = %d %v; want the record's own answer, not the state of SLURM job %d", jid, code, m, id)
			}
			// The answer GET kept would spare DELETE asking SLURM at all:
			// DELETE is tried as on a job whose end nobody asked for.
			os.Remove(filepath.Join(rec.dir, "answer.json"))
			if code, m := se.do(t, "DELETE", jid, nil); code != http.StatusNoContent {
				t.Errorf("DELETE %s = %d %v; want 204 (the record goes)", jid, code, m)
			}
			if st := squeueState(t, id); st != "RUNNING" {
				t.Errorf("SLURM job %d after DELETE of %s: %q; want RUNNING, not cancelled", id, jid, st)
			}
		})
	}
}

// ---- Cromwell --------------------------------------------------------------

// cromwellForeign plants workflows submitted to the fake Cromwell by
// someone else, with their own labels (Cromwell's names are not unique).
func cromwellForeign(t *testing.T, extra map[string]string) *foreignEnv {
	e, _ := startCromwellForeign(t, extra)
	return e
}

// startCromwellForeign is cromwellForeign, and its fake Cromwell.
func startCromwellForeign(t *testing.T, extra map[string]string) (*foreignEnv, *fakeCromwell) {
	store := cwStoreBase(t)
	fake := newFakeCromwell(t, store)
	env := map[string]string{"CONTAINER_ENV": "cromwell", "CROMWELL_URL": fake.srv.URL, "TIMELIMIT_MINUTES": "30", "STOREBASE": store}
	maps.Copy(env, extra)
	ce := &contractEnv{url: startServer(t, env), store: store, logLine: "cromwell foreign test job says hello"}
	var n atomic.Int64
	ce.newJID = func(t *testing.T, name string) string { return fmt.Sprintf("cw-%s-%d", name, n.Add(1)) }
	ce.body = func(t *testing.T, jid string, a act) map[string]any {
		b := ce.contractBody(t, jid)
		b["image"], b["entrypoint"] = "ghcr.io/fnndsc/pl-contract:1.0", []string{"/usr/local/bin/contract-job"}
		return b
	}
	ce.run = func(t *testing.T, jid string, a act) { cwPlay(t, fake, jid, a, ce.logLine) }
	e := &foreignEnv{contractEnv: ce}
	ids := map[string]string{}
	planted := map[string]map[string]string{}
	e.plant = func(t *testing.T, jid string, labels map[string]string) {
		t.Helper()
		planted[jid] = maps.Clone(labels)
		fake.mu.Lock()
		defer fake.mu.Unlock()
		wf := &fakeWorkflow{id: fmt.Sprintf("00000000-0000-4000-9000-%012d", len(fake.workflows)+1), jid: labels[cromwellJIDLabel],
			labels: maps.Clone(labels), wdl: "workflow Other {}", status: "Running", submission: "2026-01-01T00:00:00.000Z"}
		fake.workflows = append(fake.workflows, wf)
		ids[jid] = wf.id
		dir := fake.execDir(wf.id)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "stdout"), []byte(foreignSecret+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e.untouched = func(t *testing.T, jid string) {
		t.Helper()
		fake.mu.Lock()
		defer fake.mu.Unlock()
		for _, wf := range fake.workflows {
			if wf.id == ids[jid] {
				if wf.status != "Running" || !maps.Equal(wf.labels, planted[jid]) {
					t.Errorf("workflow %s (%s) after pman's answers: %s, labels %v; want Running, its labels as submitted", wf.id, jid, wf.status, wf.labels)
				}
				return
			}
		}
		t.Errorf("workflow of %s is gone", jid)
	}
	return e, fake
}

// TestCromwellPman6Workflow: a workflow pman 6 submitted carries only
// pman 6's label, org.chrisproject.pman.name=<jid>; it is still the job.
func TestCromwellPman6Workflow(t *testing.T) {
	e, fake := startCromwellForeign(t, nil)
	jid, _ := e.start(t, "pman6", actSleep)
	fake.mu.Lock()
	w := fake.byJID(jid)
	// As pman 6 labelled it: its name label alone.
	w.labels = map[string]string{cromwellJIDLabel: jid}
	fake.mu.Unlock()
	if code, m := e.do(t, "GET", jid, nil); code != http.StatusOK || m["status"] != statusStarted {
		t.Errorf("GET %s = %d %v; want 200, started", jid, code, m)
	}
	if code, m := e.do(t, "DELETE", jid, nil); code != http.StatusNoContent {
		t.Errorf("DELETE %s = %d %v; want 204", jid, code, m)
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if w.status != "Aborted" || w.labels[removedLabel] == "" {
		t.Errorf("pman 6's workflow after DELETE: %s, labels %v; want Aborted and marked removed", w.status, w.labels)
	}
}

// TestKubeForeignRequests: against a stand-in API server whose Job of the
// jid's name pman did not make, GET reads the Job alone (no pod, no log),
// DELETE deletes nothing, and a POST that meets it is nameTaken's 409.
func TestKubeForeignRequests(t *testing.T) {
	foreign := &batchv1.Job{
		TypeMeta:   metav1.TypeMeta{Kind: "Job", APIVersion: "batch/v1"},
		ObjectMeta: metav1.ObjectMeta{Name: "chris-jid-7", Namespace: "chris", UID: "uid-db", Labels: foreignLabels},
		Spec:       batchv1.JobSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{batchv1.ControllerUidLabel: "uid-db"}}},
		Status:     batchv1.JobStatus{Active: 1},
	}
	k, f := kubeAgainst(t, &config{StorageType: "host", StoreBase: "/s", JobLogsTail: 5}, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/apis/batch/v1/namespaces/chris/jobs/chris-jid-7":
			writeObj(w, foreign)
		case r.Method == http.MethodPost && r.URL.Path == "/apis/batch/v1/namespaces/chris/jobs":
			writeStatus(w, http.StatusConflict, metav1.StatusReasonAlreadyExists, `jobs.batch "chris-jid-7" already exists`)
		default:
			writeStatus(w, http.StatusInternalServerError, metav1.StatusReasonInternalError, "pman must not ask for "+r.URL.Path)
		}
	})
	ctx := context.Background()
	if _, err := k.get(ctx, "chris-jid-7"); !isKind(err, eNotFound) || !strings.Contains(err.Error(), "not made by pman") {
		t.Errorf("get = %v; want not found, the Job not made by pman", err)
	}
	if err := k.remove(ctx, "chris-jid-7"); !isKind(err, eNotFound) {
		t.Errorf("remove = %v; want not found", err)
	}
	_, err := k.create(ctx, testSpec())
	if code, body := errorStatus(err); code != http.StatusConflict || !strings.Contains(fmt.Sprint(body), "pman did not make") {
		t.Errorf("create = %d %v; want 409 saying that pman did not make the Job", code, body)
	}
	want := []string{
		"GET /apis/batch/v1/namespaces/chris/jobs/chris-jid-7",
		"GET /apis/batch/v1/namespaces/chris/jobs/chris-jid-7",
		"POST /apis/batch/v1/namespaces/chris/jobs",
		"GET /apis/batch/v1/namespaces/chris/jobs/chris-jid-7",
	}
	if got := f.requests(); !slices.Equal(got, want) {
		t.Errorf("requests = %q; want %q (nothing of the Job's pods, no delete)", got, want)
	}
}

// TestDockerFinishForeign: a container someone else made under the jid's
// name while the job's image was pulled makes the pending job fail for
// good (the record then says why), rather than wait for ever behind it,
// and the container is left alone.
func TestDockerFinishForeign(t *testing.T) {
	for _, engine := range []string{"docker", "podman"} {
		t.Run(engine, func(t *testing.T) {
			e := dockerForeign(t, engine, nil)
			eng := needTestEngine(t, engine)
			env := serverEnv(eng, map[string]string{"STORAGE_TYPE": "host", "STOREBASE": e.store})
			cfg, err := loadConfig(func(k string) string { return env[k] })
			if err != nil {
				t.Fatal(err)
			}
			s, err := newDocker(context.Background(), cfg, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			jid := e.newJID(t, "pulled")
			e.plant(t, jid, foreignLabels)
			e.mkdir(t, jid+"/in", nil)
			spec := &jobSpec{JID: jid, Image: eng.image, Cmd: []string{"true"}, Workers: 1, InputDir: jid + "/in", OutputDir: jid + "/out"}
			err = s.(*dockerSched).finish(context.Background(), spec)
			if !isKind(err, eConflict) || transient(err) || !strings.Contains(err.Error(), "pman did not make") {
				t.Errorf("finish = %v; want nameTaken's conflict, which fails the pending job for good", err)
			}
			e.untouched(t, jid)
		})
	}
}

// TestSlurmFakeForeign: in every API version, a job that SLURM runs under
// the jid's name without pman's mark is no obstacle to a POST, and the
// mark pman's own jobs carry (their comment) is read back.
func TestSlurmFakeForeign(t *testing.T) {
	for _, v := range slurmAPIVersions {
		t.Run(v, func(t *testing.T) {
			f := newFakeSlurmrestd(t, v)
			s, _ := newFakeSlurmSched(t, f)
			ctx := context.Background()
			if _, err := s.create(ctx, fakeJob("jid-taken")); !isKind(err, eConflict) {
				t.Errorf("create of a jid whose job pman submitted runs: %v; want a conflict", err)
			}
			f.mu.Lock()
			f.foreign = map[string]bool{"jid-taken": true}
			f.mu.Unlock()
			if _, err := s.create(ctx, fakeJob("jid-taken")); err != nil {
				t.Errorf("create of a jid someone else's job is named: %v; want it submitted beside it", err)
			}
			if n := len(f.requests("DELETE", "/job/ID")); n != 0 {
				t.Errorf("%d cancels; want none", n)
			}
		})
	}
}
