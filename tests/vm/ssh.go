package vm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// The default login of every Lightwhale (seed 000).
const (
	User     = "op"
	Password = "opsecret"
)

// Client is one SSH connection to the guest.
type Client struct {
	c       *ssh.Client
	HostKey string // SHA256 fingerprint the server presented
}

// Close ends the connection.
func (c *Client) Close() error { return c.c.Close() }

// dial makes one SSH connection attempt. The host forward accepts TCP even
// before the guest listens, so only a finished handshake counts.
func dial(ctx context.Context, port int, key ssh.Signer) (*Client, error) {
	var hostKey string
	auth := []ssh.AuthMethod{ssh.Password(Password)}
	if key != nil {
		auth = []ssh.AuthMethod{ssh.PublicKeys(key)}
	}
	cfg := &ssh.ClientConfig{
		User: User,
		Auth: append(auth,
			ssh.KeyboardInteractive(func(_, _ string, qs []string, _ []bool) ([]string, error) {
				ans := make([]string, len(qs))
				for i := range ans {
					ans[i] = Password
				}
				return ans, nil
			})),
		// Every boot of a volatile guest has new host keys; the tests
		// compare fingerprints themselves where it matters.
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			hostKey = ssh.FingerprintSHA256(key)
			return nil
		},
		Timeout: 20 * time.Second,
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	// Bound the handshake: a guest that is half up may never answer.
	deadline := time.Now().Add(30 * time.Second)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = conn.SetDeadline(deadline)
	sc, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return &Client{c: ssh.NewClient(sc, chans, reqs), HostKey: hostKey}, nil
}

// Run runs a shell command in the guest and returns its combined output.
// A non-zero exit is an error that carries the output.
func (c *Client) Run(ctx context.Context, cmd string) (string, error) {
	// A connection whose guest has gone (a reboot under QEMU's user network
	// sends no reset) never confirms a session: the deadline ends it.
	stop := context.AfterFunc(ctx, func() { c.c.Close() })
	s, err := c.c.NewSession()
	stop()
	if err != nil {
		return "", fmt.Errorf("ssh session: %w", err)
	}
	defer s.Close()
	var out lockedBuffer
	s.Stdout = &out
	s.Stderr = &out
	done := make(chan error, 1)
	go func() { done <- s.Run(cmd) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = s.Signal(ssh.SIGKILL)
		s.Close()
		return out.String(), fmt.Errorf("guest command %q: %w; output so far:\n%s", cmd, ctx.Err(), out.String())
	}
	if err != nil {
		return out.String(), fmt.Errorf("guest command %q: %w; output:\n%s", cmd, err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// WaitSSH waits until the guest accepts op/opsecret over SSH, failing fast
// when QEMU exits or the kernel panics.
func (m *Machine) WaitSSH(ctx context.Context) error {
	if m.ssh != nil {
		return nil
	}
	var last error
	for {
		if err := m.guestDead(); err != nil {
			return fmt.Errorf("waiting for ssh: %w", err)
		}
		c, err := dial(ctx, m.SSHPort, m.cfg.SSHKey)
		if err == nil {
			m.ssh = c
			m.HostKeys = append(m.HostKeys, c.HostKey)
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: ssh never came up on 127.0.0.1:%d: %w (last error: %v)", m.cfg.Name, m.SSHPort, ctx.Err(), last)
		// Twice a second: the bench reads SSH's readiness from this loop,
		// and a refused try costs the guest nothing.
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Run runs cmd in the guest as op over the current SSH connection.
func (m *Machine) Run(ctx context.Context, cmd string) (string, error) {
	if m.ssh == nil {
		return "", errors.New("not connected: call WaitSSH first")
	}
	return m.ssh.Run(ctx, cmd)
}

// Sudo runs cmd as root. The password is fed on stdin whether or not sudo
// asks for it, so cmd itself must not read stdin.
func (m *Machine) Sudo(ctx context.Context, cmd string) (string, error) {
	return m.Run(ctx, "echo "+Password+" | sudo -S -p '' sh -c "+ShellQuote(cmd))
}

// ShellQuote quotes s for a POSIX shell.
func ShellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// BootID is the kernel's random id of the current boot.
// bootIDForm is what /proc/sys/kernel/random/boot_id holds.
var bootIDForm = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func (m *Machine) BootID(ctx context.Context) (string, error) {
	out, err := m.Run(ctx, "cat /proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(out), err
}

// Uptime is the guest's /proc/uptime in seconds.
func (m *Machine) Uptime(ctx context.Context) (float64, error) {
	out, err := m.Run(ctx, "cat /proc/uptime")
	if err != nil {
		return 0, err
	}
	return ParseUptime(out)
}

// ParseUptime reads the first field of /proc/uptime.
func ParseUptime(s string) (float64, error) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0, fmt.Errorf("parse uptime %q: empty", s)
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0, fmt.Errorf("parse uptime %q: %w", s, err)
	}
	return v, nil
}

// Reboot reboots the guest for real and waits until SSH answers from a new
// boot (a different boot id). QEMU itself keeps running.
func (m *Machine) Reboot(ctx context.Context) error {
	old, err := m.BootID(ctx)
	if err != nil {
		return fmt.Errorf("reboot: %w", err)
	}
	m.markBoot()
	// The connection drops while the command runs: its error means nothing.
	_, _ = m.Sudo(ctxTimeout(ctx, 20*time.Second), "reboot")
	return m.WaitBootAfter(ctx, old)
}

// WaitBootAfter waits until SSH answers from a boot other than old: after a
// reboot, or one the guest does by itself (a trial version giving up).
func (m *Machine) WaitBootAfter(ctx context.Context, old string) error {
	m.dropSSH()
	for {
		if err := m.WaitSSH(ctx); err != nil {
			return fmt.Errorf("reboot: %w", err)
		}
		// Only a well-formed new ID is a new boot: a command cut short by the
		// old system's shutdown can end without an error or an ID (seen once
		// in CI: "rebooted" after 8 s, then the next command cut off).
		// Each try is bounded: a connection made just before the old system
		// went down hangs rather than fails (seen in a CI rehearsal: the new
		// boot answered, but the one try ran out the whole deadline).
		id, err := m.BootID(ctxTimeout(ctx, 20*time.Second))
		if err == nil && id != old && bootIDForm.MatchString(id) {
			return nil
		}
		// Still the old boot (shutdown not yet reached sshd): try again.
		m.dropSSH()
		select {
		case <-ctx.Done():
			return fmt.Errorf("reboot: guest still on boot %s: %w", old, ctx.Err())
		case <-time.After(2 * time.Second):
		}
	}
}

// Poweroff powers the guest off for real and waits for QEMU to exit.
func (m *Machine) Poweroff(ctx context.Context) error {
	m.markBoot()
	_, _ = m.Sudo(ctxTimeout(ctx, 20*time.Second), "poweroff")
	m.dropSSH()
	return m.WaitExit(ctx)
}

func (m *Machine) dropSSH() {
	if m.ssh != nil {
		m.ssh.Close()
		m.ssh = nil
	}
}

// markBoot notes where the next boot's console output will start.
func (m *Machine) markBoot() {
	m.bootSerialOffset = int64(len(m.SerialLog()))
}

// ctxTimeout derives a context the caller need not cancel: it ends with
// the parent or after d.
func ctxTimeout(parent context.Context, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(parent, d)
	go func() { <-ctx.Done(); cancel() }()
	return ctx
}

// lockedBuffer collects stdout and stderr, which arrive on two goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Reconnect drops the SSH connection and makes a new one: proves sshd still
// accepts logins (e.g. after an attempt to delete the system).
func (m *Machine) Reconnect(ctx context.Context) error {
	m.dropSSH()
	return m.WaitSSH(ctx)
}

// Login makes a new SSH login and closes it: proves sshd accepts logins
// without dropping the connection that other checks of a shared guest use.
func (m *Machine) Login(ctx context.Context) error {
	c, err := dial(ctx, m.SSHPort, m.cfg.SSHKey)
	if err != nil {
		return fmt.Errorf("%s: new ssh login: %w", m.cfg.Name, err)
	}
	return c.Close()
}

// Pipe runs from in src and to in dst, from's output feeding to's input:
// what `ssh a from | ssh b to` does (e.g. docker save | docker load, to move
// an image between machines without a registry). Both run as op.
func Pipe(ctx context.Context, src *Machine, from string, dst *Machine, to string) error {
	if src.ssh == nil || dst.ssh == nil {
		return errors.New("pipe: not connected: call WaitSSH first")
	}
	s1, err := src.ssh.c.NewSession()
	if err != nil {
		return fmt.Errorf("pipe: ssh session: %w", err)
	}
	defer s1.Close()
	s2, err := dst.ssh.c.NewSession()
	if err != nil {
		return fmt.Errorf("pipe: ssh session: %w", err)
	}
	defer s2.Close()
	r, err := s1.StdoutPipe()
	if err != nil {
		return fmt.Errorf("pipe: %w", err)
	}
	var errs1, out2 lockedBuffer
	s1.Stderr = &errs1
	s2.Stdin, s2.Stdout, s2.Stderr = r, &out2, &out2
	// SSH sessions have no deadlines: ctx closes them instead.
	stop := context.AfterFunc(ctx, func() { s1.Close(); s2.Close() })
	defer stop()
	if err := s1.Start(from); err != nil {
		return fmt.Errorf("pipe: %q: %w", from, err)
	}
	err2 := s2.Run(to)
	if err2 != nil {
		s1.Close() // nobody reads from's output any more
	}
	err1 := s1.Wait()
	if err2 != nil {
		return fmt.Errorf("pipe: %s: %q: %w: %s", dst.cfg.Name, to, err2, strings.TrimSpace(out2.String()))
	}
	if err1 != nil {
		return fmt.Errorf("pipe: %s: %q: %w: %s", src.cfg.Name, from, err1, strings.TrimSpace(errs1.String()))
	}
	return nil
}
