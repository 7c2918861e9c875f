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
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
)

// fastQueue makes the servers of this test pass their queue every 200 ms
// instead of queueTick (read when a server starts; top-level tests run one
// by one).
func fastQueue(t *testing.T) {
	old := queueTick
	queueTick = 200 * time.Millisecond
	t.Cleanup(func() { queueTick = old })
}

// queueEnv is a deployment with admission on one engine: its servers share
// a STOREBASE, JOB_LABELS (so its queue and its jobs are its own on an
// engine other tests use) and JOB_CAPACITY. Its jobs share an input
// directory holding the gate they wait for, and an output directory where
// each says it ran.
type queueEnv struct {
	*dockerEnv
	eng   *testEngine
	env   map[string]string // of its servers
	scope string            // the value of its JOB_LABELS label
	dirs  string            // its directory in STOREBASE
}

const queueScopeLabel = "org.chrisproject.test.queue"

// newQueue returns a deployment with JOB_CAPACITY=capacity on eng, with
// no server yet.
func newQueue(t *testing.T, eng *testEngine, capacity string) *queueEnv {
	t.Helper()
	store := t.TempDir()
	if err := os.Chmod(store, 0o777); err != nil {
		t.Fatal(err)
	}
	scope := randSuffix()
	q := &queueEnv{dockerEnv: newEnv(eng, store), eng: eng, scope: scope, dirs: "q-" + scope,
		env: serverEnv(eng, map[string]string{"STORAGE_TYPE": "host", "STOREBASE": store, "JOB_CAPACITY": capacity, "JOB_LABELS": queueScopeLabel + "=" + scope})}
	q.dir(t, q.dirs+"/in", nil)
	q.dir(t, q.dirs+"/out", nil)
	return q
}

// startQueue is newQueue with a server, in this process, at q.url.
func startQueue(t *testing.T, eng *testEngine, capacity string) *queueEnv {
	t.Helper()
	q := newQueue(t, eng, capacity)
	q.url = q.replica(t)
	return q
}

// replica starts one more server of the deployment, in this process.
func (q *queueEnv) replica(t *testing.T) string {
	t.Helper()
	return startServer(t, maps.Clone(q.env))
}

// queueJob is the body of a job of user auid asking one CPU: it says how
// many jobs of the deployment run as it starts (each marks itself running
// in the shared output directory), waits for the gate if gated, sleeps
// for nap seconds, and says it ran.
func (q *queueEnv) queueJob(t *testing.T, name, auid string, gated bool, nap string) (string, map[string]any) {
	t.Helper()
	jid := q.pendingJID(t, name)
	shell := `touch /share/outgoing/live.$JID; echo "$JID $(ls /share/outgoing | busybox grep -c '^live\.')" >> /share/outgoing/peers; `
	if gated {
		shell += `while ! test -e /share/incoming/go; do sleep 0.05; done; `
	}
	shell += `sleep ` + nap + `; echo $JID >> /share/outgoing/runs; busybox rm /share/outgoing/live.$JID`
	body := q.jobBody(jid, "fs", shell)
	body["auid"], body["cpu_limit"], body["env"] = auid, 1000, []string{"JID=" + jid}
	body["input_dir"], body["output_dir"] = q.dirs+"/in", q.dirs+"/out"
	return jid, body
}

// fill submits two gated jobs of alice's, which take both CPUs of a
// deployment of cpu=2 until open, and returns their jids.
func (q *queueEnv) fill(t *testing.T) []string {
	t.Helper()
	var running []string
	for _, n := range []string{"r1", "r2"} {
		jid, body := q.queueJob(t, n, "alice", true, "0")
		q.submit(t, body)
		running = append(running, jid)
	}
	return running
}

// open lets every gated job go on.
func (q *queueEnv) open(t *testing.T) {
	t.Helper()
	q.dir(t, q.dirs+"/in", map[string]string{"go": ""})
}

// watch samples, until the test ends, how many of the deployment's
// containers the engine has running; max returns the most seen at once.
func (q *queueEnv) watch(t *testing.T) (max func() int) {
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	most := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		f := filters.NewArgs(filters.Arg("label", queueScopeLabel+"="+q.scope), filters.Arg("status", "running"))
		for ctx.Err() == nil {
			if list, err := q.cli.ContainerList(ctx, container.ListOptions{Filters: f}); err == nil {
				mu.Lock()
				most = slices.Max([]int{most, len(list)})
				mu.Unlock()
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return func() int { mu.Lock(); defer mu.Unlock(); return most }
}

// outLines returns the lines of a file of the shared output directory.
func (q *queueEnv) outLines(t *testing.T, name string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(q.store, q.dirs, "out", name))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Fields(strings.ReplaceAll(string(b), "\n", " "))
}

// checkRuns fails unless each of jids ran exactly once and no job saw more
// than most of the deployment's jobs running as it started.
func (q *queueEnv) checkRuns(t *testing.T, jids []string, most int) {
	t.Helper()
	runs := map[string]int{}
	for _, jid := range q.outLines(t, "runs") {
		runs[jid]++
	}
	for _, jid := range jids {
		if runs[jid] != 1 {
			t.Errorf("job %s ran %d times; want once", jid, runs[jid])
		}
	}
	peers := q.outLines(t, "peers")
	for i := 0; i+1 < len(peers); i += 2 {
		if n, _ := strconv.Atoi(peers[i+1]); n > most || n < 1 {
			t.Errorf("job %s saw %s jobs running as it started; want 1 to %d", peers[i], peers[i+1], most)
		}
	}
	if len(peers) != 2*len(jids) {
		t.Errorf("%d jobs said how many ran as they started; want %d", len(peers)/2, len(jids))
	}
}

// startOrder returns jids in the order the engine created their
// containers: the order they were admitted in.
func (q *queueEnv) startOrder(t *testing.T, jids []string) []string {
	t.Helper()
	created := map[string]time.Time{}
	for _, jid := range jids {
		c, err := q.cli.ContainerInspect(context.Background(), jid)
		if err != nil {
			t.Fatalf("inspecting %s: %v", jid, err)
		}
		created[jid], _ = time.Parse(time.RFC3339Nano, c.Created)
	}
	order := slices.Clone(jids)
	slices.SortFunc(order, func(a, b string) int { return created[a].Compare(created[b]) })
	return order
}

// queueMetric returns the value of one series of the server's /metrics, or
// "" when it has none.
func queueMetric(t *testing.T, url, series string) string {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			return v
		}
	}
	return ""
}

// TestDockerQueue runs JOB_CAPACITY's admission on Docker and Podman with
// jobs of one CPU and a total of two.
func TestDockerQueue(t *testing.T) {
	fastQueue(t)
	forEachEngine(t, testDockerQueue)
}

func testDockerQueue(t *testing.T, eng *testEngine) {
	t.Run("12 jobs on 2 CPUs from two users", func(t *testing.T) {
		q := startQueue(t, eng, "cpu=2")
		most := q.watch(t)
		var jids []string
		for i := range 12 {
			user, n := "alice", i+1
			if i >= 8 {
				user, n = "bob", i-7
			}
			jid, body := q.queueJob(t, fmt.Sprintf("%s%d", user[:1], n), user, true, "0")
			m := q.submit(t, body)
			if want := statusNotStarted; i >= 2 && m["status"] != want {
				t.Errorf("POST of job %d = %v; want %s (2 CPUs are taken)", i+1, m, want)
			}
			jids = append(jids, jid)
		}
		// Alice runs two: in line b1 b2 a3 b3 a4 b4 a5 a6 a7 a8.
		for jid, want := range map[string]string{jids[8]: "queued: next in line; waiting for 1 CPU (2 of 2 in use)", jids[3]: "queued: 4 jobs ahead; waiting for 1 CPU (2 of 2 in use)"} {
			if _, m := q.do(t, "GET", "/api/v1/"+jid+"/", nil); m["status"] != statusNotStarted || m["message"] != want {
				t.Errorf("GET %s = %v; want %s, %q", jid, m, statusNotStarted, want)
			}
		}
		untilMetric(t, q.url, "pman_queue_jobs", "10")
		for series, want := range map[string]string{`pman_queue_jobs_by_user{auid="alice"}`: "6", `pman_queue_jobs_by_user{auid="bob"}`: "4",
			"pman_queue_users": "2", `pman_admission_cpus{kind="in_use"}`: "2", `pman_admission_cpus{kind="total"}`: "2"} {
			if got := queueMetric(t, q.url, series); got != want {
				t.Errorf("/metrics %s = %q; want %s", series, got, want)
			}
		}
		q.open(t)
		for _, jid := range jids {
			if m := q.wait(t, jid); m["status"] != statusSuccess {
				t.Errorf("job %s = %v; want %s", jid, m, statusSuccess)
			}
		}
		q.checkRuns(t, jids, 2)
		if n := most(); n > 2 || n < 1 {
			t.Errorf("the engine had %d of the jobs running at once; want 1 or 2", n)
		}
		// Who goes first after the gate opens depends on which of alice's
		// two ended first, and later turns on which jobs end first (the
		// rule counts running jobs, and the engine's timing decides those):
		// what always holds is each user's arrival order, and bob's first
		// job among the two after alice's running two. The line as a whole
		// is checked above, while the gate holds every job.
		order := q.startOrder(t, jids)
		a, b := jids[:8], jids[8:]
		var gotA, gotB []string
		for _, jid := range order {
			if slices.Contains(a, jid) {
				gotA = append(gotA, jid)
			} else {
				gotB = append(gotB, jid)
			}
		}
		if !slices.Equal(gotA, a) || !slices.Equal(gotB, b) || !slices.Equal(order[:2], a[:2]) ||
			!slices.Contains(order[2:4], b[0]) {
			t.Errorf("admitted in the order %q; want each user's in arrival order, and bob's first among the first two after alice's running two", order)
		}
		for _, jid := range jids {
			q.noRecords(t, jid)
		}
	})

	t.Run("bigger than the total", func(t *testing.T) {
		q := startQueue(t, eng, "cpu=2,memory=1Gi")
		jid, body := q.queueJob(t, "big", "alice", false, "0")
		body["cpu_limit"], body["memory_limit"] = 2500, 2048
		code, m := q.do(t, "POST", "/api/v1/", body)
		msg, _ := m["message"].(map[string]any)
		if code != http.StatusBadRequest || !strings.Contains(fmt.Sprint(msg["cpu_limit"]), "2500 millicores") || !strings.Contains(fmt.Sprint(msg["memory_limit"]), "2048 MiB") {
			t.Errorf("POST of a job asking 2.5 CPUs and 2 GiB = %d %v; want 400 naming cpu_limit and memory_limit", code, m)
		}
		q.noRecords(t, jid)
		q.noContainer(t, jid)
		body["cpu_limit"], body["memory_limit"] = 2000, 1024
		if m := q.submit(t, body); m["status"] == statusNotStarted {
			t.Errorf("POST of a job asking exactly the total = %v; want it started", m)
		}
		q.wait(t, jid)
	})

	t.Run("DELETE of a queued job", func(t *testing.T) {
		q := startQueue(t, eng, "cpu=2")
		running := q.fill(t)
		jid, body := q.queueJob(t, "gone", "alice", false, "0")
		if m := q.submit(t, body); m["status"] != statusNotStarted {
			t.Fatalf("POST of a third job = %v; want %s", m, statusNotStarted)
		}
		if code, m := q.do(t, "DELETE", "/api/v1/"+jid+"/", nil); code != http.StatusNoContent {
			t.Fatalf("DELETE of the queued job = %d %v; want 204", code, m)
		}
		if code, m := q.do(t, "GET", "/api/v1/"+jid+"/", nil); code != http.StatusNotFound {
			t.Errorf("GET after DELETE = %d %v; want 404", code, m)
		}
		q.noRecords(t, jid)
		q.open(t)
		for _, r := range running {
			q.wait(t, r)
		}
		// Room for it now, for long enough that a pass would have run it.
		untilMetric(t, q.url, `pman_admission_cpus{kind="in_use"}`, "0")
		q.noContainer(t, jid)
		q.checkRuns(t, running, 2)
		if slices.Contains(q.outLines(t, "runs"), jid) {
			t.Errorf("the deleted job %s ran", jid)
		}
	})

	t.Run("a name taken while queued", func(t *testing.T) {
		// Someone else's container takes the queued job's name: the job
		// can never run, so it ends saying why, and the container is left.
		q := startQueue(t, eng, "cpu=2")
		running := q.fill(t)
		jid, body := q.queueJob(t, "taken", "alice", false, "0")
		if m := q.submit(t, body); m["status"] != statusNotStarted {
			t.Fatalf("POST of a third job = %v; want %s", m, statusNotStarted)
		}
		ctx := context.Background()
		foreign, err := eng.cli.ContainerCreate(ctx, &container.Config{Image: eng.image, Cmd: []string{"true"}}, nil, nil, nil, jid)
		if err != nil {
			t.Fatalf("creating a foreign container %s: %v", jid, err)
		}
		t.Cleanup(func() {
			eng.cli.ContainerRemove(context.Background(), foreign.ID, container.RemoveOptions{Force: true})
		})
		q.open(t)
		m := untilStatus(t, q.url, jid, 60*time.Second, statusSuccess, statusError)
		if m["status"] != statusError || !strings.Contains(fmt.Sprint(m["message"]), "pman did not make") {
			t.Errorf("GET of the queued job whose name was taken = %v; want %s saying pman did not make that container", m, statusError)
		}
		if c, err := eng.cli.ContainerInspect(ctx, jid); err != nil || c.ID != foreign.ID || c.State.Status != "created" {
			t.Errorf("the foreign container %s after admission: %v %+v; want it as it was made", jid, err, c.State)
		}
		for _, r := range running {
			q.wait(t, r)
		}
	})

	t.Run("image to pull", func(t *testing.T) {
		shortPullWait(t)
		q := startQueue(t, eng, "cpu=2")
		q.fill(t)
		reg := newSlowRegistry(t, false)
		removeImage(t, q.dockerEnv, reg.image)
		jid := q.pendingJID(t, "pulled")
		body := q.jobBody(jid, "fs", "echo pulled")
		body["image"], body["input_dir"], body["output_dir"] = reg.image, q.dirs+"/in", q.dirs+"/out"
		if m := q.submit(t, body); m["status"] != statusNotStarted || !strings.Contains(fmt.Sprint(m["message"]), "pulling image") {
			t.Fatalf("POST = %v; want %s, pulling its image", m, statusNotStarted)
		}
		reg.release()
		// Pulled, it waits for its turn.
		m := untilMessage(t, q.url, jid, "queued: next in line; waiting for 1 CPU (2 of 2 in use)")
		if m["status"] != statusNotStarted {
			t.Errorf("GET once pulled = %v; want %s", m, statusNotStarted)
		}
		q.noContainer(t, jid)
		q.open(t)
		if m := q.wait(t, jid); m["status"] != statusSuccess || m["logs"] != "pulled\n" {
			t.Errorf("job = %v; want %s with logs \"pulled\"", m, statusSuccess)
		}
		q.noRecords(t, jid)
	})

	t.Run("two replicas", func(t *testing.T) {
		q := startQueue(t, eng, "cpu=2")
		urls := []string{q.url, q.replica(t)}
		most := q.watch(t)
		// All at once, half to each: each POST runs a pass of its replica.
		var jids []string
		var bodies []map[string]any
		for i := range 12 {
			jid, body := q.queueJob(t, fmt.Sprintf("two%d", i), []string{"alice", "bob", "carol"}[i%3], false, "0.3")
			jids, bodies = append(jids, jid), append(bodies, body)
		}
		codes := make([]int, len(jids))
		var wg sync.WaitGroup
		for i, body := range bodies {
			raw := mustJSON(t, body)
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := http.Post(urls[i%2]+"/api/v1/", "application/json", bytes.NewReader(raw))
				if err == nil {
					codes[i] = resp.StatusCode
					resp.Body.Close()
				}
			}()
		}
		wg.Wait()
		for i, code := range codes {
			if code != http.StatusCreated {
				t.Fatalf("POST of %s to replica %d = %d; want 201", jids[i], i%2, code)
			}
		}
		for i, jid := range jids {
			if m := untilStatus(t, urls[(i+1)%2], jid, 120*time.Second, statusSuccess, statusError); m["status"] != statusSuccess {
				t.Errorf("job %s = %v; want %s", jid, m, statusSuccess)
			}
		}
		q.checkRuns(t, jids, 2)
		if n := most(); n > 2 {
			t.Errorf("the engine had %d of the jobs running at once; want at most 2", n)
		}
	})

	t.Run("kill -9 mid-queue", func(t *testing.T) {
		bin := pmanBinary(t)
		q := newQueue(t, eng, "cpu=2")
		first := startKillable(t, bin, q.env)
		var jids []string
		for i, user := range []string{"alice", "alice", "alice", "bob", "alice", "bob"} {
			jid, body := q.queueJob(t, fmt.Sprintf("k%d", i), user, true, "0")
			if code, m := call(t, "POST", first.url+"/api/v1/", body); code != http.StatusCreated {
				t.Fatalf("POST = %d %v; want 201", code, m)
			}
			jids = append(jids, jid)
		}
		// Alice runs two; in line bob's two, then alice's.
		line := map[string]string{
			jids[3]: "queued: next in line; waiting for 1 CPU (2 of 2 in use)",
			jids[5]: "queued: 1 job ahead; waiting for 1 CPU (2 of 2 in use)",
			jids[2]: "queued: 2 jobs ahead; waiting for 1 CPU (2 of 2 in use)",
			jids[4]: "queued: 3 jobs ahead; waiting for 1 CPU (2 of 2 in use)",
		}
		for jid, want := range line {
			untilMessage(t, first.url, jid, want)
		}
		first.kill()
		// A new pman knows only what the engine keeps: the same line.
		second := startKillable(t, bin, q.env)
		for jid, want := range line {
			untilMessage(t, second.url, jid, want)
		}
		q.open(t)
		for _, jid := range jids {
			if m := untilStatus(t, second.url, jid, 60*time.Second, statusSuccess, statusError); m["status"] != statusSuccess {
				t.Errorf("job %s = %v; want %s", jid, m, statusSuccess)
			}
		}
		q.checkRuns(t, jids, 2)
	})
}

// untilMetric polls /metrics until series has the value want.
func untilMetric(t *testing.T, url, series, want string) {
	t.Helper()
	var got string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if got = queueMetric(t, url, series); got == want {
			return
		}
	}
	t.Fatalf("/metrics %s = %q after 30s; want %s", series, got, want)
}

// untilMessage polls GET of jid until its message is want, and returns it.
func untilMessage(t *testing.T, url, jid, want string) map[string]any {
	t.Helper()
	var m map[string]any
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if _, m = call(t, "GET", url+"/api/v1/"+jid+"/", nil); m["message"] == want {
			return m
		}
	}
	t.Fatalf("GET %s = %v after 60s; want the message %q", jid, m, want)
	return nil
}

// killable is pman running as a process of its own (the built binary),
// for a test to kill -9.
type killable struct {
	url string
	cmd *exec.Cmd
}

// startKillable starts the pman binary in dir (pmanBinary) with exactly
// env; it is killed when the test ends, if it runs still.
func startKillable(t *testing.T, dir string, env map[string]string) *killable {
	t.Helper()
	cmd := exec.Command(filepath.Join(dir, "pman"))
	cmd.Env = []string{"PORT=0"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &killable{cmd: cmd}
	t.Cleanup(p.kill)
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" {
				addr <- line.Addr
			}
			if testing.Verbose() {
				os.Stderr.Write(append(sc.Bytes(), '\n'))
			}
		}
		io.Copy(io.Discard, out)
	}()
	select {
	case a := <-addr:
		_, port, _ := net.SplitHostPort(a)
		p.url = "http://127.0.0.1:" + port
	case <-time.After(60 * time.Second):
		t.Fatal("pman's process did not log \"listening\" within 60s")
	}
	return p
}

// kill sends SIGKILL: nothing of pman's own shutdown runs.
func (p *killable) kill() {
	if p.cmd.ProcessState != nil {
		return
	}
	p.cmd.Process.Kill()
	p.cmd.Wait()
}

// TestDockerQueueClaim races two replicas' admissions head on, the
// engine's create and list being the whole protocol: of two admitting the
// same job exactly one starts it, and of two admitting two jobs where one
// fits at most one starts.
func TestDockerQueueClaim(t *testing.T) {
	old := queueTick
	queueTick = time.Hour // no pass but the ones the test runs
	t.Cleanup(func() { queueTick = old })
	forEachEngine(t, testDockerQueueClaim)
}

func testDockerQueueClaim(t *testing.T, eng *testEngine) {
	q := newQueue(t, eng, "cpu=1")
	cfg, err := loadConfig(func(k string) string { return q.env[k] })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var replicas [2]*dockerSched
	for i := range replicas {
		s, err := newDocker(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		replicas[i] = s.(*dockerSched)
	}
	total := resources{1000, uncounted, uncounted}
	spec := func(name string) *jobSpec {
		jid, body := q.queueJob(t, name, "alice", false, "0.5")
		j, err := decodeJob(mustJSON(t, body), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := replicas[0].createRecord(ctx, j); err != nil {
			t.Fatal(err)
		}
		if j.JID != jid {
			t.Fatalf("decoded jid %s; want %s", j.JID, jid)
		}
		return j
	}
	// race runs the admissions at once and returns how many started.
	race := func(jobs [2]*jobSpec) int {
		var wg sync.WaitGroup
		var outcomes [2]admitOutcome
		defer func() { t.Logf("admitting %s and %s: %v", jobs[0].JID, jobs[1].JID, outcomes) }()
		for i := range 2 {
			wg.Add(1)
			go func() { defer wg.Done(); outcomes[i] = replicas[i].queue.admit(ctx, total, jobs[i]) }()
		}
		wg.Wait()
		n := 0
		for _, o := range outcomes {
			if o == admitted {
				n++
			}
		}
		return n
	}
	var all []string
	for round := range 4 {
		same := spec(fmt.Sprintf("same%d", round))
		if n := race([2]*jobSpec{same, same}); n != 1 {
			t.Errorf("round %d: two replicas admitting %s started it %d times; want once", round, same.JID, n)
		}
		untilExited(t, q.cli, same.JID)
		one, other := spec(fmt.Sprintf("one%d", round)), spec(fmt.Sprintf("other%d", round))
		if n := race([2]*jobSpec{one, other}); n > 1 {
			t.Errorf("round %d: two jobs of one CPU each started at once with one CPU in all", round)
		}
		var backedOff []*jobSpec
		for _, s := range []*jobSpec{one, other} {
			if _, err := replicas[0].inspect(ctx, s.JID); err == nil {
				untilExited(t, q.cli, s.JID)
			} else {
				backedOff = append(backedOff, s)
			}
		}
		// Whatever backed off is admitted now, alone.
		for _, s := range backedOff {
			if o := replicas[0].queue.admit(ctx, total, s); o != admitted {
				t.Errorf("round %d: admitting %s alone: %v; want it started", round, s.JID, o)
			}
			untilExited(t, q.cli, s.JID)
		}
		all = append(all, same.JID, one.JID, other.JID)
	}

	// A pman killed between the create and the start left a created
	// container: a later pass removes it and admits the job again.
	left := spec("left")
	c, h := containerConfig(cfg, left, q.store)
	if _, err := q.cli.ContainerCreate(ctx, c, h, nil, nil, left.JID); err != nil {
		t.Fatal(err)
	}
	replicas[1].queue.stale = 0
	for range 2 { // the first removes it, the second admits the job
		replicas[1].queue.pass(ctx)
	}
	untilExited(t, q.cli, left.JID)
	q.checkRuns(t, append(all, left.JID), 1)
}

// untilExited waits until the container named jid has ended.
func untilExited(t *testing.T, cli *client.Client, jid string) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if c, err := cli.ContainerInspect(context.Background(), jid); err == nil && c.State != nil && !holds(container.ContainerState(c.State.Status)) {
			return
		}
	}
	c, err := cli.ContainerInspect(context.Background(), jid)
	if err == nil {
		t.Fatalf("container %s did not end within 60s: %+v", jid, c.State)
	}
	t.Fatalf("container %s did not end within 60s: %v", jid, err)
}
