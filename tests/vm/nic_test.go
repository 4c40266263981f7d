package vm

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPrivateSegment boots two stub guests with an extra NIC on the same
// segment and pings from one to the other over it: the private network
// between guests that Config.NICs promises.
func TestPrivateSegment(t *testing.T) {
	if why := QEMU(); why != "" {
		t.Skip(why)
	}
	kernel, modDir := stubKernel(t)
	initrd := filepath.Join(t.TempDir(), "stub.cpio")
	writeStubInitramfs(t, initrd, modDir)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	segment, err := freePort() // a UDP port no other run of this test uses now
	if err != nil {
		t.Fatal(err)
	}
	var ms []*Machine
	for i, name := range []string{"seg-a", "seg-b"} {
		m, err := Start(t, Config{Name: name, Kernel: kernel, Initrd: initrd, Append: "console=ttyS0 quiet",
			MemMiB: 256, CPUs: 1, NICs: []NIC{{Segment: segment}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.WaitSSH(ctx); err != nil {
			t.Fatal(err)
		}
		addr := []string{"192.168.77.1", "192.168.77.2"}[i]
		if out, err := m.Run(ctx, "ip link set eth1 up && ip addr add "+addr+"/24 dev eth1"); err != nil {
			t.Fatalf("%s: %v: %s", name, err, out)
		}
		ms = append(ms, m)
	}
	out, err := ms[0].Run(ctx, "ping -c 3 -W 5 192.168.77.2")
	if err != nil || !strings.Contains(out, " 0% packet loss") {
		t.Fatalf("ping over the private segment: %v\n%s", err, out)
	}
	// Pipe: one guest's output is the other's input (over the host's SSH).
	if err := Pipe(ctx, ms[0], "seq 1 50000", ms[1], "wc -l > /tmp/piped"); err != nil {
		t.Fatal(err)
	}
	if out, err := ms[1].Run(ctx, "cat /tmp/piped"); err != nil || strings.TrimSpace(out) != "50000" {
		t.Fatalf("lines piped from seg-a to seg-b: %q, %v; want 50000", out, err)
	}
	if err := Pipe(ctx, ms[0], "echo x; exit 3", ms[1], "cat >/dev/null"); err == nil || !strings.Contains(err.Error(), "seg-a") {
		t.Fatalf("pipe from a failing command: %v; want an error naming seg-a", err)
	}
}
