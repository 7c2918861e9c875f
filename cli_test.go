package main

import (
	"context"
	"io"
	"reflect"
	"strings"
	"testing"
)

func TestParseCommandLine(t *testing.T) {
	tcp := func(addr, from string) listenAddr {
		switch {
		case strings.HasPrefix(addr, "["):
			return listenAddr{"tcp6", addr, from}
		case strings.HasPrefix(addr, ":"):
			return listenAddr{"tcp", addr, from}
		}
		return listenAddr{"tcp4", addr, from}
	}
	tests := []struct {
		name    string
		args    []string
		env     string // GUNICORN_CMD_ARGS
		binds   []listenAddr
		ignored []string
	}{
		{"plain pman", nil, "", nil, nil},
		{"Helm chart", []string{"-b", "0.0.0.0:5010", "pman.wsgi:application"}, "--workers=4 --timeout=30",
			[]listenAddr{tcp("0.0.0.0:5010", "-b 0.0.0.0:5010")},
			[]string{"pman.wsgi:application", "--workers=4 (GUNICORN_CMD_ARGS)", "--timeout=30 (GUNICORN_CMD_ARGS)"}},
		{"pman 6 image's command", []string{"gunicorn", "--bind", "0.0.0.0:5010", "--workers", "8", "--timeout", "20", "pman.wsgi:application"}, "",
			[]listenAddr{tcp("0.0.0.0:5010", "--bind 0.0.0.0:5010")},
			[]string{"--workers 8", "--timeout 20", "pman.wsgi:application"}},
		{"--bind=", []string{"--bind=127.0.0.1:8080"}, "", []listenAddr{tcp("127.0.0.1:8080", "--bind=127.0.0.1:8080")}, nil},
		{"short options attached", []string{"-b:9000", "-w4", "-t", "30"}, "",
			[]listenAddr{tcp(":9000", "-b:9000")}, []string{"-w4", "-t 30"}},
		{"bind in GUNICORN_CMD_ARGS", nil, `--bind="127.0.0.1:7000" -k gevent`,
			[]listenAddr{tcp("127.0.0.1:7000", "--bind=127.0.0.1:7000 (GUNICORN_CMD_ARGS)")}, []string{"-k gevent (GUNICORN_CMD_ARGS)"}},
		{"command line's bind wins", []string{"-b", "127.0.0.1:1"}, "--bind 127.0.0.1:2",
			[]listenAddr{tcp("127.0.0.1:1", "-b 127.0.0.1:1")}, []string{"--bind 127.0.0.1:2 (GUNICORN_CMD_ARGS)"}},
		{"several binds", []string{"-b", "127.0.0.1:1", "-b", "[::1]:1", "-b", "unix:/run/pman.sock"}, "",
			[]listenAddr{tcp("127.0.0.1:1", "-b 127.0.0.1:1"), tcp("[::1]:1", "-b [::1]:1"), {"unix", "/run/pman.sock", "-b unix:/run/pman.sock"}}, nil},
		{"host alone: gunicorn's port", []string{"-b", "0.0.0.0"}, "", []listenAddr{tcp("0.0.0.0:8000", "-b 0.0.0.0")}, nil},
		{"tcp://", []string{"-b", "tcp://127.0.0.1:5"}, "", []listenAddr{tcp("127.0.0.1:5", "-b tcp://127.0.0.1:5")}, nil},
		{"flags", []string{"--reload", "--preload", "-D", "--access-logfile", "-", "--log-level", "debug"}, "",
			nil, []string{"--reload", "--preload", "-D", "--access-logfile -", "--log-level debug"}},
		{"abbreviated", []string{"--worker-cl", "gevent", "--time=5"}, "", nil, []string{"--worker-cl gevent", "--time=5"}},
		{"--proxy-protocol alone, then the app", []string{"--proxy-protocol", "pman.wsgi:application"}, "",
			nil, []string{"--proxy-protocol", "pman.wsgi:application"}},
		{"--proxy-protocol v2", []string{"--proxy-protocol", "v2"}, "", nil, []string{"--proxy-protocol v2"}},
		{"-- then the app", []string{"-w", "1", "--", "pman.wsgi"}, "", nil, []string{"-w 1", "pman.wsgi"}},
		{"quoted GUNICORN_CMD_ARGS", nil, `--access-logformat '%(h)s "%(r)s"' --env A=b\ c`, nil,
			[]string{`--access-logformat %(h)s "%(r)s" (GUNICORN_CMD_ARGS)`}},
		{"-b=: argparse drops the '='", []string{"-b=0.0.0.0:5010"}, "", []listenAddr{tcp("0.0.0.0:5010", "-b=0.0.0.0:5010")}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl, err := parseCommandLine(tt.args, tt.env)
			if err != nil {
				t.Fatalf("parseCommandLine(%q, %q): %v", tt.args, tt.env, err)
			}
			if !reflect.DeepEqual(cl.Binds, tt.binds) || !reflect.DeepEqual(cl.Ignored, tt.ignored) {
				t.Errorf("parseCommandLine(%q, %q) = binds %q, ignored %q; want %q, %q", tt.args, tt.env, cl.Binds, cl.Ignored, tt.binds, tt.ignored)
			}
		})
	}
}

// TestCommandLineEnv: gunicorn's -e/--env set the environment pman 6 read
// its configuration from, so they set pman's configuration too.
func TestCommandLineEnv(t *testing.T) {
	cl, err := parseCommandLine([]string{"-e", "CONTAINER_ENV=swarm", "--env=JOB_LOGS_TAIL=5"}, `--env A=b\ c`)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"CONTAINER_ENV": "swarm", "JOB_LOGS_TAIL": "5", "A": "b c"}
	if !reflect.DeepEqual(cl.Env, want) || len(cl.Ignored) != 0 {
		t.Errorf("Env, Ignored = %v, %q; want %v, none", cl.Env, cl.Ignored, want)
	}
	if _, err := parseCommandLine([]string{"-e", "NOVALUE"}, ""); err == nil || !strings.Contains(err.Error(), "KEY=VALUE") {
		t.Errorf("-e NOVALUE: %v; want an error asking for KEY=VALUE", err)
	}
}

func TestParseCommandLineErrors(t *testing.T) {
	tests := []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"--port", "5010"}, "", `command line: "--port" is not a gunicorn option`},
		{[]string{"serve"}, "", `command line: "serve": the only application is pman.wsgi:application`},
		{[]string{"-b", "0.0.0.0:5010", "myapp:app"}, "", `"myapp:app"`},
		{[]string{"-b"}, "", "-b needs a value"},
		{[]string{"--workers"}, "", "--workers needs a value"},
		{[]string{"--reload=yes"}, "", "--reload takes no value"},
		{[]string{"-x"}, "", `"-x" is not a gunicorn option`},
		{[]string{"--log"}, "", `"--log" is ambiguous`},
		{[]string{"-b", "0.0.0.0:http"}, "", `port "http"`},
		{[]string{"-b", "0.0.0.0:70000"}, "", "0-65535"},
		{[]string{"-b", "fd://3"}, "", "fd://FD is not supported"},
		{[]string{"-b", "unix:"}, "", "socket path"},
		{nil, "--bind", "GUNICORN_CMD_ARGS: --bind needs a value"},
		{nil, "--bogus", `GUNICORN_CMD_ARGS: "--bogus"`},
		{nil, `--name "unterminated`, "GUNICORN_CMD_ARGS: "},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " ")+tt.env, func(t *testing.T) {
			cl, err := parseCommandLine(tt.args, tt.env)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("parseCommandLine(%q, %q) = %+v, %v; want an error saying %q", tt.args, tt.env, cl, err, tt.want)
			}
		})
	}
}

func TestSplitShell(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"empty", "", nil},
		{"spaces", "  --workers=4   --timeout=30 ", []string{"--workers=4", "--timeout=30"}},
		{"quotes and escapes", `a 'b c' "d \"e\" \x" f\ g ''`, []string{"a", "b c", `d "e" \x`, "f g", ""}},
		{"adjacent quotes", `'it''s'`, []string{"its"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := splitShell(tt.in)
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("splitShell(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

// TestRunArgsEnv: a -e on the command line reaches the configuration (a
// bad CONTAINER_ENV set only there stops the start, naming it).
func TestRunArgsEnv(t *testing.T) {
	err := runArgs(context.Background(), []string{"gunicorn", "-e", "CONTAINER_ENV=openshift", "pman.wsgi:application"},
		func(k string) string { return map[string]string{"STORAGE_TYPE": "host", "STOREBASE": "/s"}[k] }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `CONTAINER_ENV: "openshift"`) {
		t.Errorf("runArgs with -e CONTAINER_ENV=openshift: %v; want the configuration error naming it", err)
	}
}
