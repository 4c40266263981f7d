package vm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// DockerSocket is where the guest's dockerd listens.
const DockerSocket = "/var/run/docker.sock"

// DockerPing asks the guest's dockerd GET /_ping through the SSH
// connection (a forwarded unix socket), so polling costs the guest no
// process: under TCG a docker CLI call burns about 3 s of CPU that dockerd's
// own start-up needs. It returns nil once dockerd answers 200 OK; ctx
// bounds the exchange.
func (m *Machine) DockerPing(ctx context.Context) error {
	if m.ssh == nil {
		return errors.New("not connected: call WaitSSH first")
	}
	conn, err := m.ssh.c.Dial("unix", DockerSocket)
	if err != nil {
		return fmt.Errorf("dial %s in the guest: %w", DockerSocket, err)
	}
	defer conn.Close()
	// SSH channels have no deadlines: ctx ends a hung exchange instead.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if _, err := fmt.Fprint(conn, "GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n"); err != nil {
		return fmt.Errorf("ping dockerd: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return fmt.Errorf("ping dockerd: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ping dockerd: %s", resp.Status)
	}
	return nil
}

// WaitDocker polls DockerPing until dockerd answers or ctx ends.
func (m *Machine) WaitDocker(ctx context.Context) error {
	var last error
	for {
		if err := m.guestDead(); err != nil {
			return fmt.Errorf("waiting for dockerd: %w", err)
		}
		last = m.DockerPing(ctxTimeout(ctx, 20*time.Second))
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dockerd did not answer: %w (last error: %v)", ctx.Err(), last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}
