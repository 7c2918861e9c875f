package main

// What a real Cromwell deployment meets: configuration pman refuses, a
// CROMWELL_URL that reaches something other than Cromwell's API (a proxy, a
// missing path prefix, a redirect), a failing or unreachable Cromwell, and
// one too slow for pfcon's timeout.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestNewCromwellRefusesConfig(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, cfg := range []*config{
		{CromwellURL: "http://c", TimelimitMinutes: 5, StoreBase: "/store base"},
		{CromwellURL: "http://c", TimelimitMinutes: 5, StoreBase: "/store/~{x}"},
		{CromwellURL: "http://c", TimelimitMinutes: 5, StoreBase: "/s", JobLabels: map[string]string{"k": strings.Repeat("v", 256)}},
		{CromwellURL: "http://c", TimelimitMinutes: 5, StoreBase: "/s", JobLabels: map[string]string{removedLabel: "no"}},
	} {
		t.Run(fmt.Sprintf("%s %.20v", cfg.StoreBase, cfg.JobLabels), func(t *testing.T) {
			if _, err := newCromwell(cfg, log); err == nil {
				t.Errorf("newCromwell(STOREBASE %q, JOB_LABELS %.20v) = nil error; want a configuration error", cfg.StoreBase, cfg.JobLabels)
			}
		})
	}
	if _, err := newCromwell(&config{CromwellURL: "http://c", TimelimitMinutes: 5, StoreBase: "/s", JobLabels: map[string]string{"k": "v"}}, log); err != nil {
		t.Errorf("newCromwell(valid) = %v", err)
	}
}

func TestCromwellConfigChecks(t *testing.T) {
	base := []string{"CONTAINER_ENV", "cromwell", "CROMWELL_URL", "http://cromwell:8000", "TIMELIMIT_MINUTES", "5", "STOREBASE", "/sb"}
	for _, tt := range []struct {
		partition string
		ok        bool
	}{{"short", true}, {"gpu,short", true}, {"a b", false}, {"x;y", false}, {"it's", false}, {"~{x}", false}, {"a,,b", false}} {
		t.Run("SLURM_PARTITION="+tt.partition, func(t *testing.T) {
			c, err := loadConfig(env(append(base, "SLURM_PARTITION", tt.partition)...))
			switch {
			case tt.ok && (err != nil || c.SlurmPartition != tt.partition):
				t.Errorf("SLURM_PARTITION=%q: %v; want it taken", tt.partition, err)
			case !tt.ok && (err == nil || !strings.Contains(err.Error(), "SLURM_PARTITION")):
				t.Errorf("SLURM_PARTITION=%q: %v; want a configuration error naming it", tt.partition, err)
			}
		})
	}
	// A CROMWELL_URL that does not parse is named without its password.
	_, err := loadConfig(env(append(base[:2], "CROMWELL_URL", "http://chris:s3cret@[::1", "TIMELIMIT_MINUTES", "5", "STOREBASE", "/sb")...))
	if err == nil || !strings.Contains(err.Error(), "CROMWELL_URL") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("loadConfig(bad CROMWELL_URL with a password) = %v; want an error naming CROMWELL_URL, not the password", err)
	}
}

// TestCromwellDeploymentMistakes: answers no Cromwell gives on a right
// URL become a 503 naming the likely mistake, for every method; the
// credentials of CROMWELL_URL appear in no answer and no log line.
func TestCromwellDeploymentMistakes(t *testing.T) {
	var followed sync.Mutex
	redirected := 0
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		followed.Lock()
		redirected++
		followed.Unlock()
	}))
	t.Cleanup(target.Close)
	targetURL := strings.Replace(target.URL, "http://", "https://chris:s3cret@", 1)
	tests := []struct {
		name   string
		answer func(w http.ResponseWriter, r *http.Request)
		msgHas []string
	}{
		{"401", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("WWW-Authenticate", `Basic realm="cromwell"`)
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
		}, []string{"401", "proxy"}},
		{"403 of a proxy", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "<html><body>403 Forbidden</body></html>", http.StatusForbidden)
		}, []string{"403", "proxy"}},
		{"404 without prefix", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) },
			[]string{"404", "path prefix", "/api/workflows/v1/query"}},
		{"404 of Cromwell on the query", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, `{"status": "fail", "message": "no such route"}`, http.StatusNotFound)
		}, []string{"404", "path prefix"}},
		{"301 to https", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, targetURL+r.URL.Path, http.StatusMovedPermanently)
		}, []string{"301", "redirecting to https://127.0.0.1:", "set CROMWELL_URL"}},
		{"307", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/cromwell"+r.URL.Path, http.StatusTemporaryRedirect)
		}, []string{"307", "/cromwell/api/workflows/v1/query"}},
		// Not a mistake of the deployment's, but a 503 all the same.
		{"Cromwell's 500", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, `{"status": "error", "message": "Cromwell database is down"}`, http.StatusInternalServerError)
		}, []string{"500", "Cromwell database is down"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := httptest.NewServer(http.HandlerFunc(tt.answer))
			t.Cleanup(fake.Close)
			cromwellURL := strings.Replace(fake.URL, "http://", "http://chris:s3cret@", 1)
			store := cwStoreBase(t)
			os.MkdirAll(filepath.Join(store, "j-1/in"), 0o755)
			base, _, logs := cwServer(t, cromwellURL, &config{StoreBase: store})
			body := jobRequest("j-1")
			body["image"], body["entrypoint"] = "img", []string{"prog"}
			var answers []string
			for _, m := range []struct {
				method, url string
				body        any
			}{{"POST", base, body}, {"GET", base + "j-1/", nil}, {"DELETE", base + "j-1/", nil}} {
				code, j := call(t, m.method, m.url, m.body)
				msg := fmt.Sprint(j["message"])
				answers = append(answers, msg)
				if code != http.StatusServiceUnavailable {
					t.Errorf("%s = %d %v; want 503", m.method, code, j)
				}
				for _, s := range append(tt.msgHas, "Cromwell at http://127.0.0.1:") {
					if !strings.Contains(msg, s) {
						t.Errorf("%s: message %q; want it to say %q", m.method, msg, s)
					}
				}
			}
			for what, text := range map[string]string{"answers": strings.Join(answers, "\n"), "log": logs.String()} {
				if strings.Contains(text, "s3cret") || strings.Contains(text, "chris:") {
					t.Errorf("the %s show CROMWELL_URL's credentials:\n%s", what, text)
				}
			}
		})
	}
	if redirected != 0 {
		t.Errorf("the redirect target got %d requests; want none: pman follows no redirect", redirected)
	}

	// Unreachable: the credentials stay out too.
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	dead := strings.Replace(fake.URL, "http://", "http://chris:s3cret@", 1)
	fake.Close()
	base, _, logs := cwServer(t, dead, nil)
	for _, method := range []string{"GET", "DELETE"} {
		code, j := call(t, method, base+"j-1/", nil)
		if msg := fmt.Sprint(j["message"]); code != http.StatusServiceUnavailable || !strings.Contains(msg, "Cromwell at http://127.0.0.1:") || !strings.Contains(msg, "unreachable") || strings.Contains(msg+logs.String(), "s3cret") {
			t.Errorf("%s with Cromwell down = %d %v; want 503 saying Cromwell is unreachable, without the password (log: %s)", method, code, j, logs.String())
		}
	}
}

// TestCromwellDeadline: a POST ends within its deadline however slow
// Cromwell is. (How long it takes is measured by BenchmarkCromwellSlowPost;
// here the hang guard only tells a bounded POST from one that is not.)
func TestCromwellDeadline(t *testing.T) {
	spec := func() *jobSpec {
		return &jobSpec{JID: "slow", Image: "img", Workers: 1, Cmd: []string{"x", outgoingDir}, InputDir: "key-slow/incoming", OutputDir: "key-slow/outgoing"}
	}
	create := func(c *cromwellSched) (*job, error) {
		type result struct {
			j   *job
			err error
		}
		done := make(chan result, 1)
		go func() {
			j, err := c.create(context.Background(), spec())
			done <- result{j, err}
		}()
		select {
		case r := <-done:
			return r.j, r.err
		case <-time.After(15 * time.Second): // far beyond the deadline, short of the client's 30 s
			t.Fatal("create did not end: the POST is not bounded by its deadline")
			return nil, nil
		}
	}
	// hang holds a request until pman gives up on it. The server notices
	// that only once the body is read; stop ends it when the test does.
	stop := make(chan struct{})
	hang := func(r *http.Request) {
		io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}

	// Cromwell hangs from the start: nothing is submitted, and the 503
	// says why.
	fake := newFakeCromwell(t, t.TempDir())
	fake.before = hang
	t.Cleanup(func() { close(stop) }) // before the fakes close
	c := testCromwell(t, fake.srv.URL, nil)
	c.deadline, c.visibleWait = 300*time.Millisecond, 20*time.Second
	_, err := create(c)
	if ae, ok := err.(*apiError); !ok || ae.kind != eUnavailable || !strings.Contains(ae.msg, "did not answer in time") || fake.submissions() != 0 {
		t.Errorf("create with Cromwell hanging = %v, %d submissions; want a 503 saying it did not answer in time", err, fake.submissions())
	}

	// Cromwell hangs after the submit: the job exists, so the POST
	// answers 201 from the submitted WDL, within the deadline although
	// visibleWait is longer.
	fake = newFakeCromwell(t, t.TempDir())
	fake.before = func(r *http.Request) {
		if fake.submissions() > 0 {
			hang(r)
		}
	}
	c = testCromwell(t, fake.srv.URL, nil)
	c.deadline, c.visibleWait = 300*time.Millisecond, 20*time.Second
	j, err := create(c)
	if err != nil || j.Status != statusNotStarted || j.Cmd != "x /share/outgoing" || fake.submissions() != 1 {
		t.Errorf("create with Cromwell hanging after the submit = %+v, %v, %d submissions; want notstarted from the WDL", j, err, fake.submissions())
	}
}

// BenchmarkCromwellSlowPost measures a POST against a Cromwell that takes
// 100 ms per call and never lists the new workflow: it must end near the
// deadline (here 1 s), not after visibleWait (20 s).
func BenchmarkCromwellSlowPost(b *testing.B) {
	fake := newFakeCromwell(b, b.TempDir())
	fake.indexLag = 1 << 30
	fake.before = func(*http.Request) { time.Sleep(100 * time.Millisecond) }
	s, _ := newCromwell(&config{CromwellURL: secretURL(fake.srv.URL), StoreBase: "/sb", TimelimitMinutes: 5}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	c := s.(*cromwellSched)
	c.deadline = time.Second
	for i := 0; b.Loop(); i++ {
		jid := fmt.Sprintf("slow-%d", i)
		if _, err := c.create(context.Background(), &jobSpec{JID: jid, Image: "img", Workers: 1, Cmd: []string{"x"}, InputDir: fakeInput, OutputDir: "b"}); err != nil {
			b.Fatal(err)
		}
	}
}
