// Package dockerping asks dockerd whether its API answers: GET /_ping on
// its Unix socket, the check the health check, provisioning and the
// hotplug daemon share.
package dockerping

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Socket is where dockerd listens (its default).
const Socket = "/run/docker.sock"

// Ping asks dockerd at sock once, for at most 5 s.
func Ping(ctx context.Context, sock string) error {
	c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/_ping", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return errors.New("the Docker API did not answer")
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
	if resp.StatusCode != http.StatusOK || string(b) != "OK" {
		return fmt.Errorf("the Docker API answered %s %q", resp.Status, b)
	}
	return nil
}

// Wait pings every second until dockerd answers (true) or ctx ends (false).
func Wait(ctx context.Context, sock string) bool {
	for {
		if Ping(ctx, sock) == nil {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Second):
		}
	}
}
