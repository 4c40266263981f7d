package vm

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
)

// Monitor runs one human-monitor (HMP) command, e.g. "device_add
// usb-storage,bus=xhci0.0,drive=d1,id=d1" or "info block", through QEMU's
// QMP socket and returns its output. HMP commands report most failures as
// output rather than as an error; a non-empty output of device_add,
// device_del, drive_add is such a failure.
func (m *Machine) Monitor(ctx context.Context, cmd string) (string, error) {
	if m.Exited() {
		return "", fmt.Errorf("%s: monitor %q: qemu exited: %w", m.cfg.Name, cmd, m.exitErr())
	}
	out, err := QMPHuman(ctx, MonitorSocket(m.RunDir), cmd)
	if err != nil {
		return out, fmt.Errorf("%s: monitor %q: %w", m.cfg.Name, cmd, err)
	}
	return out, nil
}

// QMPHuman connects to the QMP socket at path, negotiates capabilities and
// runs cmd with human-monitor-command. One connection per command keeps no
// state between calls (QMP serves one client at a time).
func QMPHuman(ctx context.Context, path, cmd string) (string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	r := bufio.NewReader(conn)
	enc := json.NewEncoder(conn)

	// reply reads messages until a return or an error, skipping the
	// greeting and asynchronous events.
	reply := func() (json.RawMessage, error) {
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				return nil, err
			}
			var msg struct {
				Return json.RawMessage `json:"return"`
				Error  *struct {
					Class string `json:"class"`
					Desc  string `json:"desc"`
				} `json:"error"`
			}
			if err := json.Unmarshal(line, &msg); err != nil {
				return nil, fmt.Errorf("qmp: %w: %q", err, line)
			}
			if msg.Error != nil {
				return nil, fmt.Errorf("qmp: %s: %s", msg.Error.Class, msg.Error.Desc)
			}
			if msg.Return != nil {
				return msg.Return, nil
			}
		}
	}
	if err := enc.Encode(map[string]any{"execute": "qmp_capabilities"}); err != nil {
		return "", err
	}
	if _, err := reply(); err != nil {
		return "", err
	}
	if err := enc.Encode(map[string]any{"execute": "human-monitor-command",
		"arguments": map[string]string{"command-line": cmd}}); err != nil {
		return "", err
	}
	raw, err := reply()
	if err != nil {
		return "", err
	}
	var out string
	if err := json.Unmarshal(raw, &out); err != nil {
		return "", errors.New("qmp: human-monitor-command returned no text")
	}
	return strings.ReplaceAll(out, "\r\n", "\n"), nil
}
