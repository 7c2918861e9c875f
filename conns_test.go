package main

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// hangGuard bounds how long a test waits for the server to act, so that a
// server that never acts fails the test instead of hanging it. It is no
// timing assertion: every bound under test is a small fraction of it.
const hangGuard = 20 * time.Second

// limitedServer serves h with the limits on a local port and returns its
// address and the cap's listener; it stops with the test.
func limitedServer(t testing.TB, h http.Handler, lim serverLimits) (string, *capListener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, capped := newHTTPServer(h, lim)
	cl := capped(ln).(*capListener)
	go srv.Serve(cl)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), cl
}

// apiHandler returns pman's own routes over a fake scheduler.
func apiHandler(t testing.TB) http.Handler {
	cfg, err := loadConfig(func(k string) string {
		return map[string]string{"CONTAINER_ENV": "docker", "STORAGE_TYPE": "host", "STOREBASE": "/s"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	return newMux(cfg, newFakeSched(), slog.New(slog.DiscardHandler))
}

// readUntilClosed returns what the server sent on c until it closed it
// (an end of file or a reset); the error is nil only when it did.
func readUntilClosed(c net.Conn) (string, error) {
	c.SetReadDeadline(time.Now().Add(hangGuard))
	b, err := io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return string(b), err
	}
	return string(b), nil
}

// trickle writes one byte of s every pause until s ends or a write fails.
func trickle(c net.Conn, s string, pause time.Duration) {
	for i := range len(s) {
		if _, err := c.Write([]byte{s[i]}); err != nil {
			return
		}
		time.Sleep(pause)
	}
}

func TestSlowBodyIsCut(t *testing.T) {
	addr, _ := limitedServer(t, apiHandler(t), serverLimits{HeaderTimeout: hangGuard, ReadTimeout: 300 * time.Millisecond, IdleTimeout: time.Hour, MaxConns: 10})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := `{"jid": "slow-body", "image": "x"}` + strings.Repeat(" ", 200)
	fmt.Fprintf(c, "POST /api/v1/ HTTP/1.1\r\nHost: pman\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))
	go trickle(c, body, 100*time.Millisecond) // all of it would take 20 s
	got, err := readUntilClosed(c)
	if err != nil {
		t.Fatalf("the server did not close a connection whose body trickles in: %v (read %q)", err, got)
	}
	if !strings.HasPrefix(got, "HTTP/1.1 400") || !strings.Contains(got, "did not arrive in time") {
		t.Errorf("a body that trickles in was answered %q; want a 400 saying it did not arrive in time", got)
	}
}

func TestSlowHeadersAreCut(t *testing.T) {
	addr, _ := limitedServer(t, apiHandler(t), serverLimits{HeaderTimeout: 300 * time.Millisecond, ReadTimeout: time.Hour, IdleTimeout: time.Hour, MaxConns: 10})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go trickle(c, "GET /healthz HTTP/1.1\r\nHost: pman\r\nX-Slow: "+strings.Repeat("a", 200)+"\r\n\r\n", 100*time.Millisecond)
	if got, err := readUntilClosed(c); err != nil || strings.Contains(got, "200 OK") {
		t.Errorf("headers that trickle in: read %q, %v; want the connection closed, without an answer of 200", got, err)
	}
}

func TestIdleConnIsClosed(t *testing.T) {
	addr, _ := limitedServer(t, apiHandler(t), serverLimits{HeaderTimeout: hangGuard, ReadTimeout: hangGuard, IdleTimeout: 300 * time.Millisecond, MaxConns: 10})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "GET /healthz HTTP/1.1\r\nHost: pman\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(hangGuard))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Close {
		t.Fatalf("GET /healthz = %d, close %v; want 200 kept alive", resp.StatusCode, resp.Close)
	}
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Errorf("an idle kept-alive connection: read %q, %v; want it closed by the server", rest, err)
	}
}

// slowClients opens n connections to addr that do nothing useful: a third
// idle after one request, a third sending their headers a byte at a time,
// a third sending a POST body a byte at a time. It returns them.
func slowClients(t testing.TB, addr string, n int) []net.Conn {
	t.Helper()
	var conns []net.Conn
	for i := range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("slow client %d: %v", i, err)
		}
		conns = append(conns, c)
		switch i % 3 {
		case 0: // idle, kept alive
			fmt.Fprint(c, "GET /healthz HTTP/1.1\r\nHost: pman\r\n\r\n")
		case 1: // slow headers
			go trickle(c, "GET /healthz HTTP/1.1\r\nHost: pman\r\nX-Slow: "+strings.Repeat("a", 1000), 2*time.Second)
		case 2: // slow body
			fmt.Fprintf(c, "POST /api/v1/ HTTP/1.1\r\nHost: pman\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
			go trickle(c, strings.Repeat(" ", 1000), 2*time.Second)
		}
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	return conns
}

// TestCapKeepsRoomForRequests: with the cap far below 200 slow clients
// and their bounds far above the test's length, a normal request still
// gets answered: it takes the place of the oldest slow client. And the
// server never holds more connections than the cap.
func TestCapKeepsRoomForRequests(t *testing.T) {
	const maxConns = 20
	addr, cl := limitedServer(t, apiHandler(t), serverLimits{HeaderTimeout: time.Hour, ReadTimeout: time.Hour, IdleTimeout: time.Hour, MaxConns: maxConns})
	slowClients(t, addr, 200)
	client := &http.Client{Timeout: hangGuard, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := range 10 {
		resp, err := client.Get("http://" + addr + "/healthz")
		if err != nil {
			t.Fatalf("request %d with 200 slow clients and a cap of %d: %v", i, maxConns, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("request %d = %d; want 200", i, resp.StatusCode)
		}
		cl.reg.mu.Lock()
		open := len(cl.reg.open)
		cl.reg.mu.Unlock()
		if open > maxConns {
			t.Errorf("%d connections open; want at most the cap, %d", open, maxConns)
		}
	}
}

// TestCapNeverCutsWorkingRequests: at the cap, connections whose request
// the server works on are not cut for newcomers; the newcomers wait, and
// are served once a place frees.
func TestCapNeverCutsWorkingRequests(t *testing.T) {
	release := make(chan struct{})
	var started sync.WaitGroup
	started.Add(2)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/work" {
			started.Done()
			<-release
		}
		io.WriteString(w, "done")
	})
	addr, _ := limitedServer(t, h, serverLimits{HeaderTimeout: time.Hour, ReadTimeout: time.Hour, IdleTimeout: time.Hour, MaxConns: 2})
	client := &http.Client{Timeout: hangGuard, Transport: &http.Transport{DisableKeepAlives: true}}
	type result struct {
		body string
		err  error
	}
	get := func(path string, out chan<- result) {
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			out <- result{"", err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		out <- result{string(b), err}
	}
	working := make(chan result, 2)
	go get("/work", working)
	go get("/work", working)
	started.Wait()
	// Newcomers at the cap: they may not cut the two working requests.
	later := make(chan result, 3)
	for range 3 {
		go get("/quick", later)
	}
	close(release)
	for range 2 {
		if r := <-working; r.err != nil || r.body != "done" {
			t.Errorf("a working request at the cap answered %q, %v; want done", r.body, r.err)
		}
	}
	for range 3 {
		if r := <-later; r.err != nil || r.body != "done" {
			t.Errorf("a request that waited for a place answered %q, %v; want done", r.body, r.err)
		}
	}
}

// BenchmarkRequestAmongSlowClients times GET /healthz on a kept-alive
// connection while 200 slow clients are connected: under the default cap
// (none is cut), and under a cap of 50 (each new connection cuts one).
//
//	go test -run '^$' -bench RequestAmongSlowClients -benchtime 200x .
func BenchmarkRequestAmongSlowClients(b *testing.B) {
	for _, maxConns := range []int{defaultMaxConns, 50} {
		b.Run(fmt.Sprintf("cap=%d", maxConns), func(b *testing.B) {
			lim := defaultLimits(&config{MaxConns: maxConns})
			addr, _ := limitedServer(b, apiHandler(b), lim)
			slowClients(b, addr, 200)
			client := &http.Client{Timeout: hangGuard, Transport: &http.Transport{DisableKeepAlives: maxConns < 200}}
			var worst time.Duration
			for b.Loop() {
				start := time.Now()
				resp, err := client.Get("http://" + addr + "/healthz")
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				worst = max(worst, time.Since(start))
			}
			b.ReportMetric(float64(worst.Microseconds()), "worst-µs")
		})
	}
}
