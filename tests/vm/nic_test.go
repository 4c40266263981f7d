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
}
