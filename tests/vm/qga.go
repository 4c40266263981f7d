package vm

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
)

// GuestAgent runs one QEMU guest-agent command (e.g. "guest-ping",
// "guest-info") over the machine's agent channel and returns its "return"
// value. The agent must be running in the guest.
func (m *Machine) GuestAgent(ctx context.Context, execute string) (json.RawMessage, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", QGASocket(m.RunDir))
	if err != nil {
		return nil, fmt.Errorf("%s: guest agent: %w", m.cfg.Name, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	r := bufio.NewReader(conn)
	call := func(cmd map[string]any) (json.RawMessage, error) {
		if err := json.NewEncoder(conn).Encode(cmd); err != nil {
			return nil, err
		}
		line, err := r.ReadBytes('\n')
		if err != nil {
			return nil, err
		}
		var msg struct {
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Desc string `json:"desc"`
			} `json:"error"`
		}
		if err := json.Unmarshal(line, &msg); err != nil {
			return nil, fmt.Errorf("%w: %q", err, line)
		}
		if msg.Error != nil {
			return nil, fmt.Errorf("%s", msg.Error.Desc)
		}
		return msg.Return, nil
	}
	// guest-sync first: a reply left over from an earlier client would
	// otherwise pass for this one's.
	id := rand.Int64N(1 << 40)
	for {
		got, err := call(map[string]any{"execute": "guest-sync", "arguments": map[string]any{"id": id}})
		if err != nil {
			return nil, fmt.Errorf("%s: guest agent sync: %w", m.cfg.Name, err)
		}
		if string(got) == fmt.Sprint(id) {
			break
		}
	}
	out, err := call(map[string]any{"execute": execute})
	if err != nil {
		return nil, fmt.Errorf("%s: guest agent %s: %w", m.cfg.Name, execute, err)
	}
	return out, nil
}
