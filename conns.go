package main

// Slow clients. A request must arrive within a bound (headers, then the
// whole request with its body), an idle kept-alive connection is closed
// after one, and the open connections are capped. At the cap, a new
// connection takes the place of the oldest one that is doing nothing for
// pman (idle, still sending its request headers, or sending a POST body),
// so slow or idle clients can never hold every place while a request
// waits; only connections whose request pman is working on are never cut.

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"
)

// serverLimits are the bounds the HTTP server puts on its clients.
type serverLimits struct {
	// HeaderTimeout bounds the request line and headers; ReadTimeout the
	// whole request with its body. http.Server's ReadTimeout bounds reads
	// only: a handler that takes longer (a slow scheduler) still answers.
	HeaderTimeout, ReadTimeout time.Duration
	// IdleTimeout closes a kept-alive connection that sends no request.
	IdleTimeout time.Duration
	// MaxConns caps the open connections (MAX_CONNECTIONS).
	MaxConns int
}

// defaultMaxConns is MAX_CONNECTIONS's default, gunicorn's own default for
// worker_connections. pfcon keeps a handful open.
const defaultMaxConns = 1000

// defaultLimits returns the bounds run uses: all well under pfcon's
// two-minute patience, and far above what pfcon's small requests need.
func defaultLimits(cfg *config) serverLimits {
	lim := serverLimits{
		HeaderTimeout: 10 * time.Second,
		ReadTimeout:   30 * time.Second,
		IdleTimeout:   30 * time.Second,
		MaxConns:      cfg.MaxConns,
	}
	if lim.MaxConns <= 0 {
		lim.MaxConns = defaultMaxConns
	}
	return lim
}

// newHTTPServer returns the server for h with the limits' timeouts, and
// the listener wrapper that caps its connections: every listener the
// server serves must go through it.
func newHTTPServer(h http.Handler, lim serverLimits) (*http.Server, func(net.Listener) net.Listener) {
	reg := &connRegistry{max: lim.MaxConns, open: map[*capConn]struct{}{}, wake: make(chan struct{}, 1)}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: lim.HeaderTimeout,
		ReadTimeout:       lim.ReadTimeout,
		IdleTimeout:       lim.IdleTimeout,
		ConnState:         reg.connState,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, capConnKey{}, c)
		},
	}
	return srv, func(ln net.Listener) net.Listener {
		return &capListener{Listener: ln, reg: reg, done: make(chan struct{})}
	}
}

// connPhase is what a connection is doing, as far as the cap cares.
type connPhase int

const (
	phaseWaiting connPhase = iota // no request yet, or idle between requests: may be cut
	phaseBody                     // sending a POST body: may be cut
	phaseWorking                  // pman works on its request: never cut
)

// connRegistry holds the open connections of every listener of a server,
// against one cap.
type connRegistry struct {
	max  int
	mu   sync.Mutex
	open map[*capConn]struct{}
	wake chan struct{} // a place freed, or a connection became cuttable
}

// capConn is a connection under the cap.
type capConn struct {
	net.Conn
	reg   *connRegistry
	phase connPhase
	since time.Time // when it entered its phase
}

type capConnKey struct{}

// Close closes the connection and frees its place.
func (c *capConn) Close() error {
	c.reg.release(c)
	return c.Conn.Close()
}

func (r *connRegistry) release(c *capConn) {
	r.mu.Lock()
	_, ok := r.open[c]
	delete(r.open, c)
	r.mu.Unlock()
	if ok {
		r.signal()
	}
}

func (r *connRegistry) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// setPhase records what c does now.
func (r *connRegistry) setPhase(c *capConn, p connPhase) {
	r.mu.Lock()
	c.phase, c.since = p, time.Now()
	r.mu.Unlock()
	if p != phaseWorking {
		r.signal()
	}
}

// connState follows each connection through the server's states.
func (r *connRegistry) connState(nc net.Conn, s http.ConnState) {
	c, ok := nc.(*capConn)
	if !ok {
		return
	}
	switch s {
	case http.StateActive:
		r.setPhase(c, phaseWorking)
	case http.StateIdle:
		r.setPhase(c, phaseWaiting)
	case http.StateHijacked, http.StateClosed:
		r.release(c)
	}
}

// cutGrace is how long a connection keeps its place before the cap may
// cut it, so that a flood of new connections cannot cut each newcomer
// before the server has read it. A real client's request is already in
// the socket's buffer when its connection is let in, and is read at once.
// A newcomer behind a burst of n slow connections waits about
// n/MAX_CONNECTIONS times this for a place.
const cutGrace = 100 * time.Millisecond

// admit returns once c has a place: a free one, or that of the oldest
// connection that may be cut (not working, and older than cutGrace in its
// phase), which it closes. It gives up (false) when done is closed.
func (r *connRegistry) admit(c *capConn, done <-chan struct{}) bool {
	for {
		r.mu.Lock()
		now := time.Now()
		if len(r.open) < r.max {
			c.since = now
			r.open[c] = struct{}{}
			r.mu.Unlock()
			return true
		}
		var victim *capConn
		for o := range r.open {
			if o.phase != phaseWorking && (victim == nil || o.since.Before(victim.since)) {
				victim = o
			}
		}
		if victim != nil && now.Sub(victim.since) >= cutGrace {
			delete(r.open, victim)
			c.since = now
			r.open[c] = struct{}{}
			r.mu.Unlock()
			// The server sees the closed connection and ends it.
			victim.Conn.Close()
			return true
		}
		var graceLeft time.Duration
		if victim != nil {
			graceLeft = cutGrace - now.Sub(victim.since)
		}
		r.mu.Unlock()
		// Every place holds a request pman works on, or a connection still
		// in its grace: wait for a place, or for the grace to end.
		var graceEnds <-chan time.Time
		var t *time.Timer
		if victim != nil {
			t = time.NewTimer(graceLeft)
			graceEnds = t.C
		}
		select {
		case <-r.wake:
		case <-graceEnds:
		case <-done:
			return false
		}
		if t != nil {
			t.Stop()
		}
	}
}

// capListener hands the server its connections under the registry's cap.
type capListener struct {
	net.Listener
	reg  *connRegistry
	once sync.Once
	done chan struct{}
}

func (l *capListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	c := &capConn{Conn: nc, reg: l.reg, phase: phaseWaiting, since: time.Now()}
	if !l.reg.admit(c, l.done) {
		nc.Close()
		return nil, net.ErrClosed
	}
	return c, nil
}

func (l *capListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// readingBody marks the request's connection as sending its body, so the
// cap may cut it, and returns the function that marks it working again.
func readingBody(r *http.Request) (done func()) {
	c, ok := r.Context().Value(capConnKey{}).(*capConn)
	if !ok {
		return func() {}
	}
	c.reg.setPhase(c, phaseBody)
	return func() { c.reg.setPhase(c, phaseWorking) }
}
