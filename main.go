// Command pman is a drop-in replacement for ChRIS's job manager: it takes
// pfcon's JSON job descriptions and runs them on Docker Swarm, a plain
// Docker/Podman engine, Kubernetes or SLURM through Cromwell. It keeps no
// state: the scheduler is the source of truth.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "0.0.0-dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runArgs(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// run starts the server and serves until ctx is done, then lets in-flight
// requests finish. It logs one JSON line "listening" per bound address, so
// a caller that asked for port 0 can find the server.
func run(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	return runArgs(ctx, nil, getenv, stdout)
}

// runArgs is run with a command line (the arguments after the program's
// name): gunicorn's, as deployments start pman (cli.go).
func runArgs(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cl, err := parseCommandLine(args, getenv("GUNICORN_CMD_ARGS"))
	if err != nil {
		return err
	}
	switch {
	case cl.Help:
		_, err := io.WriteString(stdout, usage)
		return err
	case cl.Version:
		_, err := fmt.Fprintf(stdout, "pman %s\n", version)
		return err
	}
	getenv = cl.over(getenv)
	log := slog.New(slog.NewJSONHandler(stdout, nil))
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	// From here on, no log line can carry a secret of the configuration.
	log = slog.New(scrubHandler{log.Handler(), newScrubber(configSecrets(cfg))})
	if len(cl.Ignored) > 0 {
		log.Info("gunicorn options ignored: one process serves every request", "ignored", cl.Ignored)
	}
	for _, n := range cfg.Notes {
		log.Info("configuration", "note", n)
	}
	sched, err := newScheduler(ctx, cfg, log)
	if err != nil {
		return fmt.Errorf("CONTAINER_ENV=%s: %w", cfg.ContainerEnv, err)
	}
	// A --bind wins over PORT, as in gunicorn.
	binds := cl.Binds
	if len(binds) == 0 {
		binds = []listenAddr{{Network: "tcp", Addr: ":" + cfg.Port, From: "PORT=" + cfg.Port}}
	}
	lns, err := listenAll(binds)
	if err != nil {
		return err
	}
	srv, capped := newHTTPServer(newMux(cfg, sched, log), defaultLimits(cfg))
	errc := make(chan error, len(lns))
	for _, ln := range lns {
		log.Info("listening", "addr", ln.Addr().String(), "version", version,
			"container_env", cfg.ContainerEnv, "storage_type", cfg.StorageType)
		go func() { errc <- srv.Serve(capped(ln)) }()
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// In-flight requests get this long to finish; pfcon retries what is cut.
	shutCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

// listenAll returns a listener on each address, or the first error (each
// naming where its address came from) with none left open.
func listenAll(binds []listenAddr) ([]net.Listener, error) {
	var lns []net.Listener
	for _, b := range binds {
		ln, err := net.Listen(b.Network, b.Addr)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("%s: %w", b.From, err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// scheduler is what every backend implements. Each method does the fewest
// scheduler calls it can: GET is pfcon's polling path.
type scheduler interface {
	// nameProblem returns "" when the scheduler can hold a job named jid,
	// else why not, by the scheduler's own naming rule; it calls nothing.
	// The handlers check it (with checkJID) before any other method, so
	// create, get and remove only ever see a jid that passed both.
	nameProblem(jid string) string
	// create submits the job and returns its state right after submission
	// (logs empty). A jid the scheduler already has is an eConflict error.
	create(ctx context.Context, j *jobSpec) (*job, error)
	// get returns the job's state and the tail of its logs; an unknown jid is
	// an eNotFound error.
	get(ctx context.Context, jid string) (*job, error)
	// remove deletes the job and everything the scheduler started for it.
	remove(ctx context.Context, jid string) error
	// ping returns nil when the scheduler answers, else an error naming
	// what does not answer (for /readyz).
	ping(ctx context.Context) error
}

// newScheduler picks the backend named by CONTAINER_ENV.
func newScheduler(ctx context.Context, cfg *config, log *slog.Logger) (scheduler, error) {
	switch cfg.ContainerEnv {
	case "swarm":
		return newSwarm(cfg, log)
	case "docker", "podman":
		return newDocker(ctx, cfg, log)
	case "kubernetes":
		return newKube(cfg, log)
	case "cromwell":
		return newCromwell(cfg, log)
	case "slurm":
		return newSlurm(cfg, log)
	}
	// loadConfig accepts only the names above.
	return nil, fmt.Errorf("unknown CONTAINER_ENV %q", cfg.ContainerEnv)
}

// The status values of API.md.
const (
	statusNotStarted = "notstarted"
	statusStarted    = "started"
	statusSuccess    = "finishedSuccessfully"
	statusError      = "finishedWithError"
	statusUndefined  = "undefined"
)

// job is the job object of the wire contract, with exactly its keys.
type job struct {
	JID       string `json:"jid"`
	Image     string `json:"image"`
	Cmd       string `json:"cmd"`
	Status    string `json:"status"`
	Message   string `json:"message"`
	Timestamp string `json:"timestamp"`
	Logs      string `json:"logs"`

	// LogsIncomplete is set when the logs could not be read in full (see
	// logsUnreadable): such an answer is never kept as a finished job's final one.
	LogsIncomplete bool `json:"-"`
}

// ---- errors -----------------------------------------------------------------

// errKind is whose fault an error is; kindStatus maps it to HTTP.
type errKind int

const (
	eInternal    errKind = iota // a bug of ours
	eInvalid                    // the request is wrong
	eNotFound                   // no such job
	eConflict                   // the jid is taken
	eUnavailable                // the scheduler is unreachable or failed (its 5xx)
	eRefused                    // the scheduler refused the request: its own 4xx, in apiError.code
)

var kindStatus = map[errKind]int{
	eInternal:    http.StatusInternalServerError,
	eInvalid:     http.StatusBadRequest,
	eNotFound:    http.StatusNotFound,
	eConflict:    http.StatusConflict,
	eUnavailable: http.StatusServiceUnavailable,
	eRefused:     http.StatusBadRequest, // when the scheduler gave no code
}

// apiError is an error with a kind. Backends return these; handlers never
// guess a status from an error's text.
type apiError struct {
	kind   errKind
	code   int               // eRefused: the scheduler's 4xx
	msg    string            // shown to the client
	fields map[string]string // field errors, answered flask-restful style
}

func (e *apiError) Error() string {
	if e.fields != nil {
		keys := make([]string, 0, len(e.fields))
		for k, v := range e.fields {
			keys = append(keys, k+": "+v)
		}
		return strings.Join(keys, "; ")
	}
	return e.msg
}

func errorf(kind errKind, format string, a ...any) *apiError {
	return &apiError{kind: kind, msg: fmt.Sprintf(format, a...)}
}

// refused is the scheduler's own 4xx answer, passed on with its code.
func refused(code int, format string, a ...any) *apiError {
	return &apiError{kind: eRefused, code: code, msg: fmt.Sprintf(format, a...)}
}

func fieldError(field, problem string) *apiError {
	return &apiError{kind: eInvalid, fields: map[string]string{field: problem}}
}

// errorStatus is the HTTP status and body an error answers.
func errorStatus(err error) (int, any) {
	var ae *apiError
	if !errors.As(err, &ae) {
		// The detail goes to the log (writeError), not to the client.
		return http.StatusInternalServerError, map[string]string{"message": "internal error"}
	}
	code := kindStatus[ae.kind]
	if ae.kind == eRefused && ae.code >= 400 && ae.code < 500 {
		code = ae.code
	}
	if ae.fields != nil {
		return code, map[string]any{"message": ae.fields}
	}
	return code, map[string]string{"message": ae.msg}
}

// ---- HTTP -------------------------------------------------------------------

// maxBody bounds a POST body: a real one is a few KiB.
const maxBody = 1 << 20

// newMux lists every route. Each job route is registered with and without
// its trailing slash: pfcon builds <base>/<jid>/, people type <base>/<jid>.
func newMux(cfg *config, sched scheduler, log *slog.Logger) http.Handler {
	cache := newJobCache(cacheMaxEntries, cacheMaxBytes, cacheTTL)
	m := newMetrics(cache)
	registerQueue(m, sched)
	sched = &meteredSched{next: &scrubbedSched{next: sched, sc: newScrubber(configSecrets(cfg))}, backend: cfg.ContainerEnv, m: m}
	sched = &logsBound{scheduler: sched, maxBytes: cfg.logsMaxBytes()}
	status := &statusReader{sched: sched, cache: cache, m: m}
	mux := http.NewServeMux()
	route := func(pattern string, h http.Handler) {
		mux.Handle(pattern, logged(log, m, h))
	}
	for _, base := range []string{"/api/v1", "/api/v1/{$}"} {
		route("GET "+base, handleInfo(cfg))
		route("POST "+base, handleCreate(cfg, sched, status, m))
	}
	for _, p := range []string{"/api/v1/{jid}", "/api/v1/{jid}/{$}"} {
		route("GET "+p, handleGet(sched, status, m))
		route("DELETE "+p, handleDelete(cfg, sched, status))
	}
	route("GET /healthz", handleHealthz())
	route("GET /readyz", handleReadyz(&readiness{sched: sched, log: log}))
	route("GET /metrics", m.handler())
	route("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"message": "no such endpoint: " + r.Method + " " + r.URL.Path})
	}))
	return mux
}

func handleInfo(cfg *config) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{
			"server_version": version,
			"container_env":  cfg.ContainerEnv,
			"storage_type":   cfg.StorageType,
		})
	}
}

func handleCreate(cfg *config, sched scheduler, status *statusReader, m *metrics) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rawBody := r.Body
		tooLarge := func() {
			answerTooLarge(w, r, rawBody)
		}
		// A declared length over the bound is refused before reading.
		if r.ContentLength > maxBody {
			tooLarge()
			return
		}
		bodyRead := readingBody(r)
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		bodyRead()
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				tooLarge()
				return
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				writeError(w, r, errorf(eInvalid, "the request body did not arrive in time"))
				return
			}
			writeError(w, r, errorf(eInvalid, "reading request body: %v", err))
			return
		}
		spec, err := decodeJob(body, cfg)
		if err != nil {
			writeError(w, r, err)
			return
		}
		noteJID(r, spec.JID)
		if why := sched.nameProblem(spec.JID); why != "" {
			writeError(w, r, fieldError("jid", why))
			return
		}
		j, err := sched.create(r.Context(), spec)
		if err != nil {
			writeError(w, r, err)
			return
		}
		// A jid cached as finished may be taken again (Cromwell's reuse of a
		// finished jid): its old answer is no longer the job's.
		status.forget(spec.JID)
		m.submitted.Inc()
		j.Logs = ""
		writeJSON(w, http.StatusCreated, j)
	}
}

// The rest of a body too large is read and discarded, up to these bounds,
// before the connection closes: a client that sends its whole body before
// it reads (Python's requests, which pfcon uses) would otherwise get a
// connection reset instead of the 413, as nginx's lingering close avoids.
const (
	lingerBytes = 64 << 20
	lingerTime  = 10 * time.Second
)

// answerTooLarge writes 413 and then drains body (the request's own,
// unwrapped) within lingerBytes and lingerTime.
func answerTooLarge(w http.ResponseWriter, r *http.Request, body io.Reader) {
	rc := http.NewResponseController(w)
	// A client that waits for 100 Continue has not sent the body and never
	// will; one that declared more than the bound would be reset anyway.
	drain := !strings.EqualFold(r.Header.Get("Expect"), "100-continue") && r.ContentLength <= lingerBytes &&
		rc.EnableFullDuplex() == nil
	w.Header().Set("Connection", "close")
	writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"message": fmt.Sprintf("request body larger than %d bytes", maxBody)})
	if !drain {
		return
	}
	rc.Flush()
	rc.SetReadDeadline(time.Now().Add(lingerTime))
	io.CopyN(io.Discard, body, lingerBytes)
}

func handleGet(sched scheduler, status *statusReader, m *metrics) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		jid := r.PathValue("jid")
		noteJID(r, jid)
		if err := impossibleJID(sched, jid); err != nil {
			writeError(w, r, err)
			return
		}
		a, err := status.read(r.Context(), jid)
		if err != nil {
			writeError(w, r, err)
			return
		}
		m.statuses.WithLabelValues(a.status).Inc()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		w.Write(a.body)
	}
}

// handleDelete forgets the job's cached answer even with REMOVE_JOBS=no,
// when the job stays: that setting is for debugging, and whoever then
// removes the job by hand expects the next GET to say so.
func handleDelete(cfg *config, sched scheduler, status *statusReader) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		jid := r.PathValue("jid")
		noteJID(r, jid)
		if err := impossibleJID(sched, jid); err != nil {
			writeError(w, r, err)
			return
		}
		defer status.forget(jid)
		if cfg.RemoveJobs {
			if err := sched.remove(r.Context(), jid); err != nil {
				writeError(w, r, err)
				return
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(encodeJSON(v))
}

func writeError(w http.ResponseWriter, r *http.Request, err error) {
	code, body := errorStatus(err)
	if rl, ok := r.Context().Value(reqLogKey{}).(*reqLog); ok {
		rl.err = err.Error()
	}
	writeJSON(w, code, body)
}

// reqLog collects what the request's one log line says beyond the basics.
type reqLog struct {
	jid string
	err string
}

type reqLogKey struct{}

func noteJID(r *http.Request, jid string) {
	if rl, ok := r.Context().Value(reqLogKey{}).(*reqLog); ok {
		rl.jid = jid
	}
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// logged writes one structured line per request and counts it. The
// operator's paths (probePaths) are logged at debug level only.
func logged(log *slog.Logger, m *metrics, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rl := &reqLog{}
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), reqLogKey{}, rl)))
		attrs := []any{"method", r.Method, "path", r.URL.Path, "jid", rl.jid,
			"status", rec.code, "duration", time.Since(start).String()}
		if rl.err != "" {
			attrs = append(attrs, "error", rl.err)
		}
		m.observeRequest(r.Pattern, rec.code, time.Since(start))
		level := slog.LevelInfo
		switch {
		case probePaths[r.URL.Path]:
			level = slog.LevelDebug
		case rec.code >= 500:
			level = slog.LevelError
		}
		log.Log(r.Context(), level, "request", attrs...)
	})
}
