package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The secrets of these tests: a password in the URL's userinfo, and the
// SLURM token. The checks also look for Basic authorization's form.
const (
	secretUser   = "pmanuser"
	testPassword = "S3cretPassw0rd"
	testJWT      = "eyJhbGciOi.SLURMjwtS3cret.sig"
)

// testSecrets returns every form of the test secrets that must never show.
func testSecrets() []string {
	return []string{testPassword, testJWT, base64.StdEncoding.EncodeToString([]byte(secretUser + ":" + testPassword))}
}

// leaks returns the secrets that text shows, if any.
func leaks(text string) []string {
	var found []string
	for _, s := range testSecrets() {
		if strings.Contains(text, s) {
			found = append(found, s)
		}
	}
	return found
}

func TestSecretPrintedForms(t *testing.T) {
	u := secretURL("https://" + secretUser + ":" + testPassword + "@cromwell.example:8000/base")
	tok := secret(testJWT)
	cfg := &config{CromwellURL: u, Slurm: slurmConfig{URL: u, JWT: tok}}
	var logJSON, logText bytes.Buffer
	slog.New(slog.NewJSONHandler(&logJSON, nil)).Info("x", "url", u, "token", tok, "cfg", cfg)
	slog.New(slog.NewTextHandler(&logText, nil)).Info("x", "url", u, "token", tok, "cfg", cfg)
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	forms := map[string]string{
		"%s": fmt.Sprintf("%s %s", u, tok), "%v": fmt.Sprintf("%v %v", u, tok),
		"%q": fmt.Sprintf("%q %q", u, tok), "%#v": fmt.Sprintf("%#v %#v", u, tok),
		"%+v of the config": fmt.Sprintf("%+v", cfg), "%x": fmt.Sprintf("%x %x", u, tok),
		"json": string(js), "slog JSON": logJSON.String(), "slog text": logText.String(),
		"errorf": errorf(eUnavailable, "at %s with %v", u, tok).Error(),
	}
	for form, text := range forms {
		if l := leaks(text); l != nil {
			t.Errorf("%s shows %q: %s", form, l, text)
		}
	}
	if got, want := u.String(), "https://cromwell.example:8000/base"; got != want {
		t.Errorf("String() = %q; want %q", got, want)
	}
	if !strings.Contains(u.reveal(), testPassword) || tok.reveal() != testJWT {
		t.Errorf("reveal lost the secret: %q, %q", u.reveal(), tok.reveal())
	}
}

func TestRedactURL(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"http://c:8000", "http://c:8000"},
		{"http://u:p@c:8000/x", "http://c:8000/x"},
		{"http://c/x?token=abc&b=c", "http://c/x?redacted"},
		{"http://c/x#frag", "http://c/x"},
		{"http://u:p@c:%zz", "(a URL that does not parse)"},
		{"%zz", "%zz"},
	} {
		if got := redactURL(tt.in); got != tt.want {
			t.Errorf("redactURL(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

// A token in the query cannot work (pman appends the API's paths to the
// URL), so it is refused at start, without showing it.
func TestConfigRefusesURLQuery(t *testing.T) {
	for _, tt := range []struct{ env map[string]string }{
		{map[string]string{"CONTAINER_ENV": "cromwell", "STOREBASE": "/s", "TIMELIMIT_MINUTES": "5",
			"CROMWELL_URL": "http://c:8000/?token=" + testJWT}},
		{map[string]string{"CONTAINER_ENV": "slurm", "STOREBASE": "/s", "SLURM_JWT": "x", "SLURM_USER": "u",
			"SLURMRESTD_URL": "http://" + secretUser + ":" + testPassword + "@c:6820/?token=" + testJWT}},
	} {
		_, err := loadConfig(func(k string) string { return tt.env[k] })
		name := "CROMWELL_URL"
		if tt.env["CONTAINER_ENV"] == "slurm" {
			name = "SLURMRESTD_URL"
		}
		if err == nil || !strings.Contains(err.Error(), name+": ") || !strings.Contains(err.Error(), "query") {
			t.Errorf("%s with a query: %v; want an error naming it and the query", name, err)
			continue
		}
		if l := leaks(err.Error()); l != nil {
			t.Errorf("the error shows %q: %v", l, err)
		}
	}
}

func TestScrubHandler(t *testing.T) {
	var buf bytes.Buffer
	sc := newScrubber([]string{testPassword, testJWT})
	log := slog.New(scrubHandler{slog.NewJSONHandler(&buf, nil), sc}).With("pre", "with "+testJWT)
	log.Info("message "+testPassword, "s", "x"+testPassword+"y", "err", errors.New("e "+testJWT),
		"list", []string{testPassword}, slog.Group("g", "in", testJWT), "n", 3,
		"escaped", "a%2F"+strings.ReplaceAll(testJWT, ".", "%2E"))
	out := buf.String()
	if l := leaks(out); l != nil {
		t.Errorf("the log line shows %q: %s", l, out)
	}
	if !strings.Contains(out, `"n":3`) || !strings.Contains(out, redactedText) {
		t.Errorf("the log line lost its other attributes or the redaction mark: %s", out)
	}
}

// echoScheduler returns an httptest server that answers every request
// with code, a body that quotes the credentials the request carried (its
// Authorization, its SLURM token and its URL), in the shapes both Cromwell
// and slurmrestd give errors, and, for a 3xx, a Location with credentials.
func echoScheduler(t *testing.T, code int) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		echo := fmt.Sprintf("echo: authorization=%q token=%q uri=%q", r.Header.Get("Authorization"),
			r.Header.Get("X-SLURM-USER-TOKEN"), r.RequestURI)
		if code >= 300 && code < 400 {
			w.Header().Set("Location", "http://"+secretUser+":"+testPassword+"@elsewhere.example/api?token="+testJWT)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(map[string]any{
			"status": "fail", "message": echo,
			"errors": []map[string]any{{"error": echo, "description": echo, "error_number": 1}},
		})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// runCapturing starts run with env on port 0, its log in a buffer, and
// returns the server's base URL, the log and a stop that waits for run.
func runCapturing(t *testing.T, env map[string]string) (string, *lockedBuffer, func()) {
	t.Helper()
	env["PORT"] = "0"
	logs := &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, func(k string) string { return env[k] }, logs) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}
	for range 500 {
		for _, line := range strings.Split(logs.String(), "\n") {
			var l struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "listening" {
				return "http://" + strings.Replace(l.Addr, "[::]", "127.0.0.1", 1), logs, stop
			}
		}
		select {
		case err := <-done:
			t.Fatalf("run ended before listening: %v; log:\n%s", err, logs)
		case <-time.After(20 * time.Millisecond):
		}
	}
	stop()
	t.Fatalf("run did not log \"listening\"; log:\n%s", logs)
	return "", nil, nil
}

// TestSecretsNeverShown runs pman against a Cromwell and a slurmrestd that
// answer every call with one status and quote back the credentials they
// were sent, and asks every path: no answer, log line or metric may show a
// secret, whatever the scheduler answers.
func TestSecretsNeverShown(t *testing.T) {
	codes := []int{http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusUnauthorized,
		http.StatusForbidden, http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusTooManyRequests,
		http.StatusInternalServerError, http.StatusServiceUnavailable}
	redacted := map[string]int{}
	for _, backend := range []string{"cromwell", "slurm", "slurm-jwt-file"} {
		for _, code := range codes {
			t.Run(fmt.Sprintf("%s/%d", backend, code), func(t *testing.T) {
				fake := echoScheduler(t, code)
				withCreds := strings.Replace(fake.URL, "http://", "http://"+secretUser+":"+testPassword+"@", 1)
				store := t.TempDir()
				env := map[string]string{"CONTAINER_ENV": strings.TrimSuffix(backend, "-jwt-file"), "STORAGE_TYPE": "host", "STOREBASE": store}
				switch backend {
				case "cromwell":
					env["CROMWELL_URL"], env["TIMELIMIT_MINUTES"] = withCreds, "5"
				case "slurm":
					env["SLURMRESTD_URL"], env["SLURM_JWT"], env["SLURM_USER"] = withCreds, testJWT, testUser(t)
					env["SLURM_API_VERSION"] = "0.0.38" // straight to the job calls
				case "slurm-jwt-file":
					// The token from a file, which only the request knows.
					f := filepath.Join(t.TempDir(), "jwt")
					if err := os.WriteFile(f, []byte("SLURM_JWT="+testJWT+"\n"), 0o600); err != nil {
						t.Fatal(err)
					}
					env["SLURMRESTD_URL"], env["SLURM_JWT_FILE"], env["SLURM_USER"] = withCreds, f, testUser(t)
					env["SLURM_API_VERSION"] = "0.0.38"
				}
				base, logs, stop := runCapturing(t, env)
				jid := "secret-" + randSuffix()
				if err := os.MkdirAll(filepath.Join(store, jid, "in"), 0o755); err != nil {
					t.Fatal(err)
				}
				spec := jobRequest(jid)
				spec["image"], spec["entrypoint"] = "fnndsc/pl-simplefsapp", []string{"simplefsapp"}
				b, err := json.Marshal(spec)
				if err != nil {
					t.Fatal(err)
				}
				body := string(b)
				var answers strings.Builder
				for _, req := range []struct{ method, path, body string }{
					{"POST", "/api/v1/", body},
					{"GET", "/api/v1/" + jid + "/", ""},
					{"DELETE", "/api/v1/" + jid + "/", ""},
					{"GET", "/readyz", ""},
					{"GET", "/metrics", ""},
				} {
					r, err := http.NewRequest(req.method, base+req.path, strings.NewReader(req.body))
					if err != nil {
						t.Fatal(err)
					}
					r.Header.Set("Content-Type", "application/json")
					resp, err := http.DefaultClient.Do(r)
					if err != nil {
						t.Fatalf("%s %s: %v", req.method, req.path, err)
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					fmt.Fprintf(&answers, "%s %s: %d %s\n", req.method, req.path, resp.StatusCode, b)
					if req.path != "/metrics" && resp.StatusCode < 400 {
						t.Errorf("%s %s answered %d with the scheduler answering %d: %s", req.method, req.path, resp.StatusCode, code, b)
					}
				}
				stop()
				if l := leaks(answers.String()); l != nil {
					t.Errorf("an answer shows %q:\n%s", l, answers.String())
				}
				if l := leaks(logs.String()); l != nil {
					t.Errorf("the log shows %q:\n%s", l, logs)
				}
				if strings.Contains(logs.String()+answers.String(), redactedText) {
					redacted[backend]++
				}
				if !strings.Contains(logs.String(), strings.TrimPrefix(fake.URL, "http://")) {
					t.Errorf("the start log does not name the scheduler's (redacted) URL:\n%s", logs)
				}
			})
		}
	}
	// The test can fail: the schedulers' answers that pman shows did quote
	// the credentials, and the scrubber took them out.
	for _, backend := range []string{"cromwell", "slurm", "slurm-jwt-file"} {
		if redacted[backend] == 0 {
			t.Errorf("%s: no answer or log line was redacted: the fake's quotes of the credentials never reached one?", backend)
		}
	}
}
