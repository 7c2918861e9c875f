package main

// The operator's view: /metrics (Prometheus), /healthz and /readyz, and the
// wrapper that counts every scheduler call. Label values are bounded sets
// (route patterns, status codes, backends, operations, error kinds, status
// values): never a jid, never a message.

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// pullsInProgress is the number of image pulls under way. It is one gauge
// for the process, registered in every server's registry: the backend that
// pulls calls pullsInProgress.Inc() when a pull starts and Dec() when it ends.
var pullsInProgress = prometheus.NewGauge(prometheus.GaugeOpts{
	Name: "pman_image_pulls_in_progress",
	Help: "Image pulls under way.",
})

// metrics are one server's collectors, in its own registry (not the global
// default, so that tests can run several servers in one process).
type metrics struct {
	reg            *prometheus.Registry
	requests       *prometheus.CounterVec   // route, code
	requestSeconds *prometheus.HistogramVec // route
	schedCalls     *prometheus.CounterVec   // backend, operation, outcome
	schedSeconds   *prometheus.HistogramVec // backend, operation
	submitted      prometheus.Counter
	statuses       *prometheus.CounterVec // status
	cacheHits      prometheus.Counter
	cacheMisses    prometheus.Counter
}

func newMetrics(cache *jobCache) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pman_http_requests_total",
			Help: "HTTP requests answered, by route pattern and status code.",
		}, []string{"route", "code"}),
		requestSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pman_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route pattern.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route"}),
		schedCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pman_scheduler_calls_total",
			Help: "Calls to the scheduler backend, by backend, operation (create, get, remove, ping) and outcome (ok or the error's kind).",
		}, []string{"backend", "operation", "outcome"}),
		schedSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pman_scheduler_call_duration_seconds",
			Help:    "Time a scheduler backend call took, by backend and operation.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 120},
		}, []string{"backend", "operation"}),
		submitted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pman_jobs_submitted_total",
			Help: "Jobs the scheduler accepted (POST answered 201).",
		}),
		statuses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pman_status_answers_total",
			Help: "Job status answers (GET answered 200), by status value.",
		}, []string{"status"}),
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pman_status_cache_hits_total",
			Help: "Status GETs answered from the finished-job cache, with no scheduler call.",
		}),
		cacheMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pman_status_cache_misses_total",
			Help: "Status GETs that asked the scheduler.",
		}),
	}
	m.reg.MustRegister(m.requests, m.requestSeconds, m.schedCalls, m.schedSeconds, m.submitted,
		m.statuses, m.cacheHits, m.cacheMisses, pullsInProgress,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pman_status_cache_entries",
			Help: "Finished jobs held in the status cache.",
		}, func() float64 { n, _ := cache.size(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pman_status_cache_bytes",
			Help: "Bytes of answers held in the status cache.",
		}, func() float64 { _, b := cache.size(); return float64(b) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	// Every status value and operation is listed from the start, at 0, so
	// a dashboard's rate() sees the series before the first event.
	for _, s := range []string{statusNotStarted, statusStarted, statusSuccess, statusError, statusUndefined} {
		m.statuses.WithLabelValues(s)
	}
	return m
}

// handler serves the registry in the Prometheus text format.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// observeRequest counts one answered request. route is the pattern the mux
// matched (r.Pattern), never the path: a path carries a jid.
func (m *metrics) observeRequest(route string, code int, d time.Duration) {
	if route == "" {
		route = "none"
	}
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.requestSeconds.WithLabelValues(route).Observe(d.Seconds())
}

// kindNames are the outcome labels of scheduler calls that fail.
var kindNames = map[errKind]string{
	eInternal:    "internal",
	eInvalid:     "invalid",
	eNotFound:    "not_found",
	eConflict:    "conflict",
	eUnavailable: "unavailable",
	eRefused:     "refused",
}

// outcome is the bounded label of an error: "ok", its kind, or "error".
func outcome(err error) string {
	if err == nil {
		return "ok"
	}
	var ae *apiError
	if errors.As(err, &ae) {
		if n, ok := kindNames[ae.kind]; ok {
			return n
		}
	}
	return "error"
}

// meteredSched counts and times every call to the backend it wraps.
type meteredSched struct {
	next    scheduler
	backend string
	m       *metrics
}

func (s *meteredSched) observe(op string, start time.Time, err error) {
	s.m.schedCalls.WithLabelValues(s.backend, op, outcome(err)).Inc()
	s.m.schedSeconds.WithLabelValues(s.backend, op).Observe(time.Since(start).Seconds())
}

// nameProblem returns the backend's: it calls no scheduler, so it is not metered.
func (s *meteredSched) nameProblem(jid string) string { return s.next.nameProblem(jid) }

func (s *meteredSched) create(ctx context.Context, j *jobSpec) (*job, error) {
	start := time.Now()
	jb, err := s.next.create(ctx, j)
	s.observe("create", start, err)
	return jb, err
}

func (s *meteredSched) get(ctx context.Context, jid string) (*job, error) {
	start := time.Now()
	jb, err := s.next.get(ctx, jid)
	s.observe("get", start, err)
	return jb, err
}

func (s *meteredSched) remove(ctx context.Context, jid string) error {
	start := time.Now()
	err := s.next.remove(ctx, jid)
	s.observe("remove", start, err)
	return err
}

func (s *meteredSched) ping(ctx context.Context) error {
	start := time.Now()
	err := s.next.ping(ctx)
	s.observe("ping", start, err)
	return err
}

// handleHealthz returns a handler answering 200 while the process serves.
func handleHealthz() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}
}

// readiness is the scheduler's last ping, kept for readyTTL so that probes
// cost the scheduler at most one ping per readyTTL.
type readiness struct {
	sched scheduler
	log   *slog.Logger

	mu      sync.Mutex
	checked time.Time
	err     error
}

const (
	// readyTTL is how long a ping's result answers /readyz.
	readyTTL = 2 * time.Second
	// pingTimeout bounds one ping; the manifest's probe waits 3 s.
	pingTimeout = 2 * time.Second
)

// check returns the scheduler's readiness, pinging it at most once per
// readyTTL. Concurrent probes wait for the one ping under way.
func (rd *readiness) check(ctx context.Context) error {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	if !rd.checked.IsZero() && time.Since(rd.checked) < readyTTL {
		return rd.err
	}
	// A probe that gives up must not leave the next one a cancelled ping.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pingTimeout)
	defer cancel()
	err := rd.sched.ping(ctx)
	// The log says when readiness changes, not at every probe.
	switch {
	case err != nil && (rd.err == nil || rd.checked.IsZero()):
		rd.log.Warn("not ready: the scheduler does not answer", "error", err.Error())
	case err == nil && rd.err != nil:
		rd.log.Info("ready: the scheduler answers again")
	}
	rd.checked, rd.err = time.Now(), err
	return err
}

// handleReadyz returns a handler answering 200 when the scheduler answers, else
// 503 with a message naming what does not answer.
func handleReadyz(rd *readiness) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := rd.check(r.Context()); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"message": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	}
}

// probePaths are the operator's paths: counted, but logged at debug level
// only (probes every few seconds would drown the log).
var probePaths = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}
