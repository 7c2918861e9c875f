package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// startServer runs the whole server through run, on port 0, with exactly
// the environment given, and answers its base URL ("http://127.0.0.1:N").
// The server stops when the test ends; a start error fails the test.
func startServer(t testing.TB, env map[string]string) string {
	t.Helper()
	env["PORT"] = "0"
	getenv := func(k string) string { return env[k] }
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, getenv, pw)
		pw.CloseWithError(io.EOF)
		done <- err
	}()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<16), 1<<20)
		sent := false
		for sc.Scan() {
			var line struct{ Msg, Addr string }
			if !sent && json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" {
				addr <- line.Addr
				sent = true
			}
			if testing.Verbose() {
				os.Stderr.Write(append(sc.Bytes(), '\n'))
			}
		}
		io.Copy(io.Discard, pr)
	}()
	select {
	case a := <-addr:
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		})
		_, port, _ := net.SplitHostPort(a)
		return "http://127.0.0.1:" + port
	case err := <-done:
		cancel()
		t.Fatalf("run did not start: %v", err)
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatal("run did not log \"listening\" within 60s")
	}
	return ""
}

// ciMode is true under CI, where a missing engine or control plane is a
// failure, not a reason to skip.
var ciMode = strings.EqualFold(os.Getenv("CI"), "true") || os.Getenv("CI") == "1"

// needOrSkip skips the test with why on a developer's machine and fails it
// under CI, so CI can never pass by skipping.
func needOrSkip(t testing.TB, why string) {
	t.Helper()
	if ciMode {
		t.Fatalf("CI=true and %s", why)
	}
	t.Skip(why)
}
