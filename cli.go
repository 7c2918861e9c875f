package main

// The command line. Deployments start the pman image the way pman 6 ran:
// as gunicorn serving pman.wsgi:application (the FNNDSC Helm chart's
// command is `gunicorn -b 0.0.0.0:5010 pman.wsgi:application`). So the one
// binary, whether it is called pman or gunicorn, reads gunicorn's command
// line and GUNICORN_CMD_ARGS: the bind address is used, every other
// gunicorn option is accepted and ignored (one Go process serves every
// request, no workers to size), and anything gunicorn would not accept is
// an error at start.

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
)

// commandLine is what the command line and GUNICORN_CMD_ARGS ask for.
type commandLine struct {
	Binds   []listenAddr // empty: all interfaces on PORT
	Ignored []string     // gunicorn options and the app name, as given
	Version bool         // -v/--version: print the version and exit
	Help    bool         // -h/--help
	// Env is what -e/--env KEY=VALUE set: gunicorn puts it in the
	// environment pman 6 read its configuration from, so it wins there too.
	Env map[string]string
}

// listenAddr is one address to listen on, and the option that named it.
type listenAddr struct {
	Network, Addr, From string
}

// appName is the WSGI application every pman deployment names.
const appName = "pman.wsgi:application"

// gunicornValued lists gunicorn's options that take a value (gunicorn 26.1,
// gunicorn/config.py: every setting whose action is not store_true or
// store_const). --bind is handled apart.
var gunicornValued = strings.Fields(`-c --config --backlog -w --workers -k --worker-class --threads
	--worker-connections --max-requests --max-requests-jitter -t --timeout --graceful-timeout
	--keep-alive --limit-request-line --limit-request-fields --limit-request-field_size
	--reload-engine --reload-extra-file --chdir -e --env -p --pid --worker-tmp-dir -u --user
	-g --group -m --umask --forwarded-allow-ips --access-logfile --access-logformat
	--error-logfile --log-file --log-level --logger-class --log-config --log-config-json
	--log-config-dict --log-syslog-to --log-syslog-prefix --log-syslog-facility --statsd-host
	--dogstatsd-tags --statsd-prefix -n --name --pythonpath --paste --paster --proxy-allow-from
	--protocol --uwsgi-allow-from --keyfile --certfile --ssl-version --cert-reqs --ca-certs
	--ciphers --http-protocols --http2-cleartext --http2-max-concurrent-streams
	--http2-initial-window-size --http2-max-frame-size --http2-max-header-list-size
	--paste-global --forwarder-headers --header-map --asgi-loop --asgi-lifespan
	--asgi-disconnect-grace-period --http-parser --root-path --dirty-app --dirty-workers
	--dirty-timeout --dirty-threads --dirty-graceful-timeout --control-socket
	--control-socket-mode`)

// gunicornFlags lists gunicorn's options without a value.
var gunicornFlags = strings.Fields(`--reload --spew --check-config --print-config --preload
	--no-sendfile --reuse-port -D --daemon --initgroups --disable-redirect-access-to-syslog
	--capture-output --log-syslog -R --enable-stdio-inheritance --enable-backlog-metric
	--suppress-ragged-eofs --do-handshake-on-connect --permit-obsolete-folding
	--strip-header-spaces --permit-unconventional-http-method
	--permit-unconventional-http-version --casefold-http-method --no-control-socket`)

// proxyProtocolValues are the values --proxy-protocol takes; it may also
// stand alone (argparse nargs="?"), so only these are taken as its value.
var proxyProtocolValues = []string{"off", "false", "0", "none", "true", "auto", "1", "v1", "v2"}

// parseCommandLine reads the arguments after the program's name, then
// GUNICORN_CMD_ARGS (env). A leading word "gunicorn" is skipped, so an
// image whose entrypoint is pman still runs a command `gunicorn ...`. As in
// gunicorn, --bind on the command line replaces any in GUNICORN_CMD_ARGS.
func parseCommandLine(args []string, env string) (*commandLine, error) {
	if len(args) > 0 && args[0] == "gunicorn" {
		args = args[1:]
	}
	cl := &commandLine{}
	binds, err := cl.parse(args, "")
	if err != nil {
		return nil, fmt.Errorf("command line: %w", err)
	}
	envArgs, err := splitShell(env)
	if err != nil {
		return nil, fmt.Errorf("GUNICORN_CMD_ARGS: %w", err)
	}
	envBinds, err := cl.parse(envArgs, " (GUNICORN_CMD_ARGS)")
	if err != nil {
		return nil, fmt.Errorf("GUNICORN_CMD_ARGS: %w", err)
	}
	cl.Binds = binds
	if len(binds) == 0 {
		cl.Binds = envBinds
	} else {
		for _, b := range envBinds {
			cl.Ignored = append(cl.Ignored, b.From)
		}
	}
	return cl, nil
}

// parse reads one list of arguments into cl and answers its binds; from is
// appended to what it notes as ignored.
func (cl *commandLine) parse(args []string, from string) ([]listenAddr, error) {
	var binds []listenAddr
	onlyApp := false // after "--", everything is the app name
	for i := 0; i < len(args); i++ {
		a := args[i]
		if onlyApp || !strings.HasPrefix(a, "-") {
			if a != appName && a != "pman.wsgi" {
				return nil, fmt.Errorf("%q: the only application is %s", a, appName)
			}
			cl.Ignored = append(cl.Ignored, a+from)
			continue
		}
		if a == "--" {
			onlyApp = true
			continue
		}
		name, value, hasValue := a, "", false
		if strings.HasPrefix(a, "--") {
			name, value, hasValue = strings.Cut(a, "=")
			full, err := longOption(name)
			if err != nil {
				return nil, err
			}
			name = full
		} else if len(a) > 2 {
			// -b0.0.0.0:5010, -w4, -b=0.0.0.0:5010: a short option with its
			// value attached (argparse drops the '=').
			name, value, hasValue = a[:2], strings.TrimPrefix(a[2:], "="), true
		}
		switch {
		case name == "-v" || name == "--version":
			cl.Version = true
			continue
		case name == "-h" || name == "--help":
			cl.Help = true
			continue
		case name == "--proxy-protocol":
			if !hasValue && i+1 < len(args) && slices.Contains(proxyProtocolValues, strings.ToLower(args[i+1])) {
				i++
				a += " " + args[i]
			}
			cl.Ignored = append(cl.Ignored, a+from)
			continue
		case slices.Contains(gunicornFlags, name):
			if hasValue {
				return nil, fmt.Errorf("%s takes no value", name)
			}
			cl.Ignored = append(cl.Ignored, a+from)
			continue
		case name != "-b" && name != "--bind" && !slices.Contains(gunicornValued, name):
			return nil, fmt.Errorf("%q is not a gunicorn option pman accepts", a)
		}
		if !hasValue {
			if i+1 >= len(args) {
				return nil, fmt.Errorf("%s needs a value", name)
			}
			i++
			value = args[i]
			a += " " + value
		}
		if name == "-e" || name == "--env" {
			k, v, ok := strings.Cut(value, "=")
			if !ok || k == "" {
				return nil, fmt.Errorf("%s: %q is not KEY=VALUE", name, value)
			}
			if cl.Env == nil {
				cl.Env = map[string]string{}
			}
			cl.Env[k] = v
			continue
		}
		if name != "-b" && name != "--bind" {
			cl.Ignored = append(cl.Ignored, a+from)
			continue
		}
		b, err := parseBind(value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", a, err)
		}
		b.From = a + from
		binds = append(binds, b)
	}
	return binds, nil
}

// longOption returns the long option name stands for: itself, or the one
// option it is a prefix of (argparse accepts "--work" for "--workers").
func longOption(name string) (string, error) {
	all := slices.Concat([]string{"--bind", "--version", "--help", "--proxy-protocol"}, gunicornValued, gunicornFlags)
	if slices.Contains(all, name) {
		return name, nil
	}
	var match []string
	for _, o := range all {
		if strings.HasPrefix(o, "--") && strings.HasPrefix(o, name) {
			match = append(match, o)
		}
	}
	switch len(match) {
	case 0:
		return "", fmt.Errorf("%q is not a gunicorn option pman accepts", name)
	case 1:
		return match[0], nil
	}
	return "", fmt.Errorf("%q is ambiguous: %s", name, strings.Join(match, ", "))
}

// parseBind reads a gunicorn bind address: HOST:PORT, [IPv6]:PORT, HOST
// (port 8000, gunicorn's), tcp://HOST:PORT or unix:PATH. An empty HOST is
// every interface.
func parseBind(s string) (listenAddr, error) {
	if p, ok := strings.CutPrefix(s, "unix:"); ok {
		p = strings.TrimPrefix(p, "//")
		if p == "" {
			return listenAddr{}, errors.New("unix: needs a socket path")
		}
		return listenAddr{Network: "unix", Addr: p}, nil
	}
	if strings.HasPrefix(s, "fd://") {
		return listenAddr{}, errors.New("fd://FD is not supported: bind HOST:PORT or unix:PATH")
	}
	s = strings.TrimPrefix(s, "tcp://")
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		// No port: gunicorn's default one.
		host, port = strings.Trim(s, "[]"), "8000"
		if strings.ContainsAny(host, "[]") || (strings.Contains(host, ":") && net.ParseIP(host) == nil) {
			return listenAddr{}, fmt.Errorf("%q is not HOST:PORT, HOST or unix:PATH", s)
		}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return listenAddr{}, fmt.Errorf("%q: port %q is not a TCP port number (0-65535)", s, port)
	}
	// An IP literal is listened on as gunicorn does: 0.0.0.0 is IPv4 only
	// (Go's "tcp" would make it a dual-stack [::]).
	network := "tcp"
	if ip := net.ParseIP(host); ip != nil && ip.To4() != nil {
		network = "tcp4"
	} else if ip != nil {
		network = "tcp6"
	}
	return listenAddr{Network: network, Addr: net.JoinHostPort(host, port)}, nil
}

// splitShell splits GUNICORN_CMD_ARGS into words as gunicorn does
// (Python's shlex.split): blanks separate, quotes group, a backslash
// escapes outside single quotes.
func splitShell(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	var quote rune
	escaped := false
	for _, r := range s {
		switch {
		case escaped:
			if quote == '"' && r != '"' && r != '\\' {
				w.WriteRune('\\')
			}
			w.WriteRune(r)
			escaped = false
		case r == '\\' && quote != '\'':
			escaped, inWord = true, true
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				w.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t' || r == '\n' || r == '\r':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 || escaped {
		return nil, fmt.Errorf("%q: unterminated quote or escape", s)
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

// usage is what -h prints.
const usage = `usage: pman [gunicorn] [-b HOST:PORT]... [gunicorn options] [pman.wsgi:application]

pman serves the pman API on every interface at $PORT (default 5010), or at
each -b/--bind address (on the command line, else in GUNICORN_CMD_ARGS).
It accepts gunicorn's command line so that deployments which start pman 6 as
"gunicorn ... pman.wsgi:application" run it unchanged: every gunicorn option
other than --bind is accepted and ignored. Configuration is the environment;
see the README.
`

// over returns getenv with the command line's -e/--env settings over it.
func (cl *commandLine) over(getenv func(string) string) func(string) string {
	if len(cl.Env) == 0 {
		return getenv
	}
	return func(k string) string {
		if v, ok := cl.Env[k]; ok {
			return v
		}
		return getenv(k)
	}
}
