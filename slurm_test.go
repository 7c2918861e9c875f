package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// ---- configuration -------------------------------------------------------------

func TestSlurmConfig(t *testing.T) {
	base := map[string]string{"CONTAINER_ENV": "slurm", "STOREBASE": "/store", "SLURMRESTD_URL": "unix:///run/slurmrestd.sock"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	load := func(env map[string]string) (*config, error) {
		return loadConfig(func(k string) string { return env[k] })
	}
	c, err := load(base)
	if err != nil {
		t.Fatalf("loadConfig(%v): %v", base, err)
	}
	if c.StorageType != "host" || c.Slurm.Runtime != "apptainer" || c.Slurm.APIVersion != "" {
		t.Errorf("defaults: storage %q, runtime %q, version %q; want host, apptainer, \"\" (ask slurmrestd)", c.StorageType, c.Slurm.Runtime, c.Slurm.APIVersion)
	}
	c, err = load(with("SLURMRESTD_URL", "https://hpc.example.org:6820", "SLURM_JWT", "tok", "SLURM_USER", "chris",
		"SLURM_API_VERSION", "v0.0.40", "SLURM_ACCOUNT", "lab", "SLURM_PARTITION", "short", "SLURM_CONTAINER_RUNTIME", "docker", "STORAGE_TYPE", "nfs"))
	if err != nil {
		t.Fatalf("https with a token: %v", err)
	}
	if c.Slurm.APIVersion != "0.0.40" || c.Slurm.Account != "lab" || c.SlurmPartition != "short" || c.Slurm.Runtime != "docker" {
		t.Errorf("config = %+v", c.Slurm)
	}

	bad := []struct {
		env  map[string]string
		want string
	}{
		{with("SLURMRESTD_URL", ""), "SLURMRESTD_URL: required"},
		{with("SLURMRESTD_URL", "hpc:6820"), "SLURMRESTD_URL"},
		{with("SLURMRESTD_URL", "unix://"), "SLURMRESTD_URL"},
		{with("SLURMRESTD_URL", "http://hpc:6820", "SLURM_USER", "u"), "SLURM_JWT: required"},
		{with("SLURMRESTD_URL", "http://hpc:6820", "SLURM_JWT", "t"), "SLURM_USER: required"},
		{with("SLURM_API_VERSION", "0.0.37"), "SLURM_API_VERSION"},
		{with("SLURM_CONTAINER_RUNTIME", "runc"), "SLURM_CONTAINER_RUNTIME"},
		{with("STOREBASE", "/a:b"), "STOREBASE"},
		{with("STORAGE_TYPE", "docker_local_volume"), "STORAGE_TYPE"},
		{with("STOREBASE", ""), "STOREBASE"},
	}
	for _, tt := range bad {
		t.Run(tt.want, func(t *testing.T) {
			if _, err := load(tt.env); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("loadConfig(%v) = %v; want an error with %q", tt.env, err, tt.want)
			}
		})
	}
}

// ---- end to end, on the real cluster of .ci/slurm -------------------------------
// What every backend shares is the contract suite's (contract_slurm_test.go);
// here is only what SLURM makes of it.

// slurmSocket is where .ci/slurm/start serves slurmrestd with local auth.
const slurmSocket = "/run/pman-slurm/slurmrestd.sock"

// slurmrestdClient returns a client of the test cluster's slurmrestd.
func slurmrestdClient(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", slurmSocket)
		}}}
}

// needSlurm skips (fails under CI) unless the test cluster answers.
func needSlurm(t *testing.T) {
	t.Helper()
	resp, err := slurmrestdClient(15 * time.Second).Get("http://slurmrestd/slurm/v0.0.38/ping")
	if err != nil {
		needOrSkip(t, "no SLURM test cluster (bash .ci/slurm/start): "+err.Error())
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		needOrSkip(t, fmt.Sprintf("the SLURM test cluster does not answer a ping (bash .ci/slurm/start): %s %s", resp.Status, b))
	}
}

// slurmctldKnows asks the test cluster whether it still knows job id.
func slurmctldKnows(t *testing.T, id int) bool {
	t.Helper()
	resp, err := slurmrestdClient(20 * time.Second).Get(fmt.Sprintf("http://slurmrestd/slurm/v0.0.38/job/%d", id))
	if err != nil {
		t.Fatalf("asking slurmrestd about job %d: %v", id, err)
	}
	defer resp.Body.Close()
	var ans struct {
		slurmAnswer
		Jobs []slurmJobInfo `json:"jobs"`
	}
	json.NewDecoder(resp.Body).Decode(&ans)
	if ans.hasError(slurmInvalidJobID) {
		return false
	}
	if len(ans.Jobs) == 0 {
		t.Fatalf("slurmrestd on job %d: %d %+v", id, resp.StatusCode, ans)
	}
	return true
}

func TestSlurmEndToEnd(t *testing.T) {
	e := startSlurm(t, "", nil)

	t.Run("info", func(t *testing.T) {
		code, m := call(t, "GET", e.url+"/api/v1/", nil)
		if code != 200 || m["container_env"] != "slurm" || m["storage_type"] != "host" {
			t.Errorf("GET /api/v1/ = %d %v; want 200, slurm, host", code, m)
		}
	})

	t.Run("hostile arguments, env, jid and directories reach the plugin unchanged", func(t *testing.T) {
		t.Parallel()
		jid := e.newJID(t, `x %j %% 'q' "dq" $(id) ;`)
		in, out := jid+`/in $1 'x' $(id)`, jid+`/out "y" ;`
		e.mkdir(t, in, nil)
		args := slices.Clone(wdlHostileArgs)
		body := e.job(t, jid, `for a; do printf '%s\0' "$a"; done > /share/outgoing/argv; printf '%s\0' "$WEIRD" "$ODD" > /share/outgoing/env`)
		body["entrypoint"] = append(body["entrypoint"].([]string), args...)
		body["input_dir"], body["output_dir"] = in, out
		weird := strings.Join(wdlHostileArgs, " ")
		body["env"] = []string{"WEIRD=" + weird, "ODD=a=b,c d'e"}
		e.submit(t, body)
		done := untilStatus(t, e.url, url.PathEscape(jid), time.Minute, statusSuccess, statusError)
		if done["status"] != statusSuccess || done["jid"] != jid {
			t.Fatalf("job = %v; want %s", done, statusSuccess)
		}
		read := func(name string) []string {
			b, err := os.ReadFile(filepath.Join(e.store, out, name))
			if err != nil {
				t.Fatalf("output %s: %v", name, err)
			}
			w := strings.Split(string(b), "\x00")
			return w[:len(w)-1]
		}
		if got, want := read("argv"), append(args, "--verbose", incomingDir, outgoingDir); !slices.Equal(got, want) {
			t.Errorf("the plugin got %q; want %q", got, want)
		}
		if got, want := read("env"), []string{weird, "a=b,c d'e"}; !slices.Equal(got, want) {
			t.Errorf("the plugin's env = %q; want %q", got, want)
		}
	})

	t.Run("pman restarted mid-job", func(t *testing.T) {
		t.Parallel()
		jid := e.newJID(t, "restart")
		t.Run("first pman", func(t *testing.T) {
			// This server stops when the subtest ends.
			first := startSlurm(t, e.store, nil)
			first.submit(t, first.job(t, jid, `sleep 4; echo survived > "$3/r.txt"`))
			first.until(t, jid, statusStarted)
		})
		second := startSlurm(t, e.store, nil)
		done := second.finish(t, jid)
		if done["status"] != statusSuccess || done["image"] != e.image || !strings.Contains(done["cmd"].(string), "survived") {
			t.Errorf("job after the restart = %v; want %s with its image and command", done, statusSuccess)
		}
		if b, _ := os.ReadFile(filepath.Join(e.store, jid, "out", "r.txt")); string(b) != "survived\n" {
			t.Errorf("output r.txt = %q; want \"survived\\n\"", b)
		}
	})

	t.Run("finished jobs after slurmctld forgot them", func(t *testing.T) {
		t.Parallel()
		seen, unseen := e.newJID(t, "seen"), e.newJID(t, "unseen")
		for _, jid := range []string{seen, unseen} {
			e.submit(t, e.job(t, jid, "echo done-"+jid))
		}
		// seen is polled to its end; unseen is not asked again until
		// slurmctld has forgotten it.
		before := e.finish(t, seen)
		rec := filepath.Join(slurmRecordsDir(e.store), seen)
		for _, f := range []string{"job.json", "run/job.log", "run/end.json", "answer.json"} {
			if _, err := os.Stat(filepath.Join(rec, f)); err != nil {
				t.Errorf("record %s: %v", f, err)
			}
		}
		for _, jid := range []string{seen, unseen} {
			id := slurmJobID(t, e.store, jid)
			// MinJobAge of .ci/slurm is 10 s, and slurmctld purges about once a minute.
			deadline := time.Now().Add(3 * time.Minute)
			for slurmctldKnows(t, id) {
				if time.Now().After(deadline) {
					t.Fatalf("slurmctld still knows job %d after 3 minutes (MinJobAge of .ci/slurm/start?)", id)
				}
				time.Sleep(2 * time.Second)
			}
		}
		_, after := e.do(t, "GET", seen, nil)
		if !reflect.DeepEqual(after, before) {
			t.Errorf("job once forgotten = %v; want what it answered before: %v", after, before)
		}
		_, late := e.do(t, "GET", unseen, nil)
		if late["status"] != statusSuccess || !strings.Contains(late["logs"].(string), "done-"+unseen) || late["timestamp"] == "" {
			t.Errorf("job first asked after slurmctld forgot it = %v; want %s with its logs and a timestamp", late, statusSuccess)
		}
	})

	t.Run("time limit", func(t *testing.T) {
		t.Parallel()
		// SLURM's smallest time limit is a minute, and slurmctld checks it
		// every 30 s: this job takes 1 to 2 minutes.
		slow := startSlurm(t, e.store, map[string]string{"TIMELIMIT_MINUTES": "1"})
		jid := slow.newJID(t, "timeout")
		slow.submit(t, slow.job(t, jid, "sleep 600"))
		done := untilStatus(t, slow.url, jid, 4*time.Minute, statusSuccess, statusError)
		if done["status"] != statusError || !strings.Contains(done["message"].(string), "time limit of 1 minutes") {
			t.Errorf("job = %v; want %s saying it exceeded its time limit of 1 minutes", done, statusError)
		}
		if left := slow.waitGone(t, jid, time.Minute); left != "" {
			t.Errorf("%s remains a minute after the job ran out of time", left)
		}
	})

	t.Run("a partition that does not exist", func(t *testing.T) {
		t.Parallel()
		nowhere := startSlurm(t, e.store, map[string]string{"SLURM_PARTITION": "no-such-partition"})
		jid := nowhere.newJID(t, "nopart")
		code, m := call(t, "POST", nowhere.url+"/api/v1/", nowhere.job(t, jid, "true"))
		if code != http.StatusBadRequest || !strings.Contains(fmt.Sprint(m["message"]), "Invalid partition name specified") {
			t.Errorf("POST = %d %v; want 400 with SLURM's message", code, m)
		}
		if code, m := nowhere.do(t, "GET", jid, nil); code != http.StatusNotFound {
			t.Errorf("GET of the refused job = %d %v; want 404", code, m)
		}
	})
}

// slurmJWT is the token .ci/slurm/start made for root.
func slurmJWT(t *testing.T) string {
	dir := os.Getenv("PMAN_CI_LOGS")
	if dir == "" {
		dir = "/tmp/pman-ci"
	}
	p := filepath.Join(dir, "slurm-jwt")
	if _, err := os.Stat(p); err != nil {
		needOrSkip(t, "no JWT of the SLURM test cluster (bash .ci/slurm/start): "+err.Error())
	}
	return p
}

func TestSlurmJWTEndToEnd(t *testing.T) {
	needSlurm(t)
	tokenFile := slurmJWT(t)
	e := startSlurm(t, "", map[string]string{"SLURMRESTD_URL": "http://127.0.0.1:6820", "SLURM_JWT_FILE": tokenFile, "SLURM_USER": "root"})
	jid := e.newJID(t, "jwt")
	e.submit(t, e.job(t, jid, "echo through-jwt"))
	if done := e.finish(t, jid); done["status"] != statusSuccess || !strings.Contains(done["logs"].(string), "through-jwt") {
		t.Errorf("job = %v; want %s", done, statusSuccess)
	}

	bad := startSlurm(t, e.store, map[string]string{"SLURMRESTD_URL": "http://127.0.0.1:6820", "SLURM_JWT": "not-a-token", "SLURM_USER": "root", "SLURM_API_VERSION": "0.0.38"})
	jid2 := bad.newJID(t, "badjwt")
	code, m := call(t, "POST", bad.url+"/api/v1/", bad.job(t, jid2, "true"))
	// SLURM 22.05's slurmrestd passes the token on to slurmctld, whose
	// refusal it answers as "Unspecified error", as when slurmctld is down.
	if msg := fmt.Sprint(m["message"]); code != http.StatusServiceUnavailable || !strings.Contains(msg, "slurmrestd at http://127.0.0.1:6820") || !strings.Contains(msg, "SLURM_JWT") {
		t.Errorf("POST with a bad token = %d %v; want 503 naming slurmrestd and the credentials", code, m)
	}
}
