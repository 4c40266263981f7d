package dockerping

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serve answers GET /_ping on a Unix socket in a temporary directory.
func serve(t *testing.T, status int, body string) string {
	sock := filepath.Join(t.TempDir(), "docker.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/_ping" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
		w.Write([]byte(body))
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return sock
}

func TestPing(t *testing.T) {
	ctx := context.Background()
	if err := Ping(ctx, serve(t, http.StatusOK, "OK")); err != nil {
		t.Errorf("Ping of a healthy daemon: %v", err)
	}
	if err := Ping(ctx, serve(t, http.StatusInternalServerError, "down")); err == nil || !strings.Contains(err.Error(), "500") {
		t.Errorf("Ping of a daemon answering 500: %v; want an error naming the status", err)
	}
	if err := Ping(ctx, serve(t, http.StatusOK, "not docker")); err == nil {
		t.Error("Ping of something that answers without OK: no error")
	}
	if err := Ping(ctx, filepath.Join(t.TempDir(), "none.sock")); err == nil || err.Error() != "the Docker API did not answer" {
		t.Errorf("Ping of no socket: %v", err)
	}
}

func TestWait(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !Wait(ctx, serve(t, http.StatusOK, "OK")) {
		t.Error("Wait for a healthy daemon: false")
	}

	// A daemon that starts listening late is waited for.
	sock := filepath.Join(t.TempDir(), "late.sock")
	go func() {
		time.Sleep(1500 * time.Millisecond)
		l, err := net.Listen("unix", sock)
		if err != nil {
			return
		}
		http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("OK")) }))
	}()
	t0 := time.Now()
	if !Wait(ctx, sock) || time.Since(t0) < time.Second {
		t.Errorf("Wait for a daemon that answers after 1.5 s returned after %v", time.Since(t0))
	}

	short, cancel2 := context.WithTimeout(context.Background(), 1200*time.Millisecond)
	defer cancel2()
	if Wait(short, filepath.Join(t.TempDir(), "none.sock")) {
		t.Error("Wait for no daemon: true")
	}
}
