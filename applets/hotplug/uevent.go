package hotplug

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Event is one kernel uevent: "add@/devices/..." followed by KEY=VALUE pairs.
type Event struct {
	Action  string            // add, remove, change, bind, ...
	DevPath string            // /devices/pci0000:00/...
	Env     map[string]string // SUBSYSTEM, DEVTYPE, DEVNAME, MODALIAS, INTERFACE, ...
	At      time.Time         // when it was received
}

// ParseUevent decodes one NETLINK_KOBJECT_UEVENT datagram from the kernel.
// Messages of udevd's own format ("libudev\0..."), which never come from the
// kernel, are refused like any other malformed input.
func ParseUevent(b []byte) (Event, error) {
	fields := bytes.Split(bytes.TrimRight(b, "\x00"), []byte{0})
	head := string(fields[0])
	action, devpath, ok := strings.Cut(head, "@")
	if !ok || action == "" || !strings.HasPrefix(devpath, "/") {
		return Event{}, fmt.Errorf("uevent: bad header %q", head)
	}
	e := Event{Action: action, DevPath: devpath, Env: map[string]string{}}
	for _, f := range fields[1:] {
		k, v, ok := strings.Cut(string(f), "=")
		if !ok || k == "" {
			return Event{}, fmt.Errorf("uevent %s: bad field %q", head, f)
		}
		e.Env[k] = v
	}
	if e.Env["ACTION"] != "" && e.Env["ACTION"] != action {
		return Event{}, fmt.Errorf("uevent %s: ACTION=%s disagrees with the header", head, e.Env["ACTION"])
	}
	return e, nil
}

// ErrOverflow means the kernel dropped uevents because the socket buffer was
// full: whoever reads must rescan sysfs.
var ErrOverflow = errors.New("uevent socket overflowed; events were lost")

// Netlink is the kernel's uevent multicast group.
type Netlink struct{ fd int }

// ListenUevents opens the uevent socket. Open it before coldplug, so that no
// device added while coldplug runs is missed.
func ListenUevents() (*Netlink, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_KOBJECT_UEVENT)
	if err != nil {
		return nil, fmt.Errorf("uevent socket: %w", err)
	}
	// A coldplug burst (every module load adds devices) must not overflow it.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("uevent socket: bind: %w", err)
	}
	return &Netlink{fd: fd}, nil
}

// Read blocks for the next kernel uevent. Datagrams not sent by the kernel
// (port id 0) are skipped: only the kernel's word loads modules.
func (n *Netlink) Read() (Event, error) {
	buf := make([]byte, 64<<10)
	for {
		m, from, err := unix.Recvfrom(n.fd, buf, 0)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ENOBUFS):
			return Event{}, ErrOverflow
		case err != nil:
			return Event{}, fmt.Errorf("uevent socket: %w", err)
		}
		if sa, ok := from.(*unix.SockaddrNetlink); !ok || sa.Pid != 0 {
			continue
		}
		e, err := ParseUevent(buf[:m])
		if err != nil {
			continue
		}
		e.At = time.Now()
		return e, nil
	}
}

// Close closes the socket.
func (n *Netlink) Close() error { return unix.Close(n.fd) }
