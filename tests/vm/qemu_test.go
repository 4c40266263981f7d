package vm

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func testHost(t *testing.T) Host {
	return Host{Serial: filepath.Join(t.TempDir(), "serial.log"), SSHPort: 10022, HTTPPort: 10080, RunDir: "/run/x", Accel: TCG}
}

// argAfter returns every value that follows flag in args.
func argsAfter(args []string, flag string) []string {
	var vs []string
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			vs = append(vs, args[i+1])
		}
	}
	return vs
}

func TestArgsBootOrderPutsDisksBeforeCD(t *testing.T) {
	cfg := Config{Name: "order", ISO: "/x.iso", CDROMs: []string{"/seed,x.iso"},
		Disks:     []Disk{{Path: "/a.img"}, {Path: "/b.img", Bus: NVMe, ID: "data"}},
		BootOrder: []string{"disk0", "data", "cd0"}}
	args, err := cfg.Args(testHost(t))
	if err != nil {
		t.Fatal(err)
	}
	devs := argsAfter(args, "-device")
	for _, want := range []string{
		"virtio-blk-pci,id=disk0,drive=disk0-drive,bootindex=0",
		"nvme,serial=data,id=data,drive=data-drive,bootindex=1",
		"ide-cd,id=cd0,drive=cd0-drive,bootindex=2",
		"ide-cd,id=cd1,drive=cd1-drive",
	} {
		if !slices.Contains(devs, want) {
			t.Errorf("no -device %s in %q", want, devs)
		}
	}

	cfg.Disks[0].WriteBytesPerSec = 256 << 10
	if args, err = cfg.Args(testHost(t)); err != nil {
		t.Fatal(err)
	}
	if want := "if=none,id=disk0-drive,format=raw,cache=unsafe,discard=unmap,throttling.bps-write=262144,file=/a.img"; !slices.Contains(argsAfter(args, "-drive"), want) {
		t.Errorf("no -drive %s in %q", want, argsAfter(args, "-drive"))
	}
	cfg.Disks[0].WriteBytesPerSec = -1
	if _, err := cfg.Args(testHost(t)); err == nil || !strings.Contains(err.Error(), "write throttle") {
		t.Errorf("a negative throttle: err = %v", err)
	}
	cfg.Disks[0].WriteBytesPerSec = 0

	if !slices.Contains(argsAfter(args, "-drive"), "if=none,id=cd1-drive,media=cdrom,readonly=on,format=raw,file=/seed,,x.iso") {
		t.Errorf("a comma in a path is not escaped: %q", argsAfter(args, "-drive"))
	}

	cfg.BootOrder = []string{"disk9"}
	if _, err := cfg.Args(testHost(t)); err == nil || !strings.Contains(err.Error(), `"disk9"`) {
		t.Errorf("BootOrder naming no device: err = %v; want it named", err)
	}
}

func TestArgsRejects(t *testing.T) {
	for name, c := range map[string]struct {
		cfg  Config
		host func(*Host)
		want string
	}{
		"no boot source":  {Config{}, nil, "exactly one"},
		"two sources":     {Config{ISO: "/x", Kernel: "/k"}, nil, "exactly one"},
		"unknown bus":     {Config{ISO: "/x", Disks: []Disk{{Path: "/d", Bus: "floppy"}}}, nil, `unknown bus "floppy"`},
		"bad accel":       {Config{ISO: "/x"}, func(h *Host) { h.Accel = "foo" }, `accelerator "foo"`},
		"bad segment":     {Config{ISO: "/x", NICs: []NIC{{Segment: 80}}}, nil, "segment 80"},
		"bad mac":         {Config{ISO: "/x", NICs: []NIC{{Segment: 5000, MAC: "zz"}}}, nil, "zz"},
		"no controller":   {Config{ISO: "/x", Controllers: []Bus{NVMe}}, nil, `bus "nvme"`},
		"no host runtime": {Config{ISO: "/x"}, func(h *Host) { h.RunDir = "" }, "host side incomplete"},
		"id with a comma": {Config{ISO: "/x", Disks: []Disk{{Path: "/d", ID: "a,file=/etc/shadow"}}}, nil, `id "a,file=/etc/shadow"`},
	} {
		h := testHost(t)
		if c.host != nil {
			c.host(&h)
		}
		if _, err := c.cfg.Args(h); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v; want one containing %q", name, err, c.want)
		}
	}
}

// TestBusesAndMonitor starts a real QEMU with a disk on every bus, an extra
// CD-ROM and NIC, and checks through the monitor that each is attached, then
// hot-plugs and unplugs a USB stick. No guest OS is needed: the firmware
// finds nothing to boot on a blank disk and QEMU keeps running.
func TestBusesAndMonitor(t *testing.T) {
	if why := QEMU(); why != "" {
		t.Skip(why)
	}
	dir := t.TempDir()
	disk := func(name string, mib int64) string {
		p := filepath.Join(dir, name)
		if err := NewDisk(p, mib, ""); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var disks []Disk
	for _, b := range []Bus{Virtio, AHCI, USB, NVMe, SCSI, SD} {
		disks = append(disks, Disk{Path: disk(string(b)+".img", 64), Bus: b, ID: "d-" + string(b)})
	}
	disks[0].Boot = true
	cfg := Config{Disks: disks, CDROMs: []string{disk("seed.iso", 1)}, NICs: []NIC{{Segment: 47011}},
		MemMiB: 128, CPUs: 1, Controllers: []Bus{USB}}
	m, err := Start(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	block, err := m.Monitor(ctx, "info block")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range disks {
		if !strings.Contains(block, d.ID+"-drive") {
			t.Errorf("info block lacks %s (bus %s):\n%s", d.ID, d.Bus, block)
		}
	}
	if !strings.Contains(block, "seed.iso") {
		t.Errorf("info block lacks the extra CD-ROM:\n%s", block)
	}
	qtree, err := m.Monitor(ctx, "info qtree")
	if err != nil {
		t.Fatal(err)
	}
	for _, dev := range []string{`"virtio-blk-pci"`, `"ide-hd"`, `"usb-storage"`, `"nvme"`, `"scsi-hd"`, `"sd-card"`, `"qemu-xhci"`, `"virtio-scsi-pci"`, `"sdhci-pci"`} {
		if !strings.Contains(qtree, "dev: "+strings.Trim(dev, `"`)+",") {
			t.Errorf("info qtree lacks %s", dev)
		}
	}
	if n := strings.Count(qtree, "dev: virtio-net-pci,"); n != 2 {
		t.Errorf("info qtree shows %d virtio NICs; want 2 (user net + private segment)", n)
	}

	// Hot-plug a USB stick and pull it again.
	stick := disk("stick.img", 64)
	for _, c := range []string{
		"drive_add 0 if=none,id=stick-drive,format=raw,file=" + stick,
		"device_add usb-storage,bus=" + USBController + ".0,drive=stick-drive,id=stick",
	} {
		if out, err := m.Monitor(ctx, c); err != nil || strings.TrimSpace(out) != "" && !strings.HasPrefix(out, "OK") {
			t.Fatalf("%s: %q, %v", c, out, err)
		}
	}
	if usb, _ := m.Monitor(ctx, "info usb"); strings.Count(usb, "Device ") != 2 {
		t.Fatalf("info usb after device_add shows:\n%s\nwant 2 devices", usb)
	}
	if out, err := m.Monitor(ctx, "device_del stick"); err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("device_del: %q, %v", out, err)
	}
	for {
		usb, err := m.Monitor(ctx, "info usb")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Count(usb, "Device ") == 1 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("USB stick still attached after device_del:\n%s", usb)
		case <-time.After(200 * time.Millisecond):
		}
	}

	// A command QEMU does not know is reported, not swallowed.
	if out, err := m.Monitor(ctx, "no_such_command"); err == nil && !strings.Contains(out, "unknown command") {
		t.Errorf("unknown command: %q, %v", out, err)
	}
}

func TestSerialTailKeepsAnEarlierPanic(t *testing.T) {
	var b strings.Builder
	for i := range 300 {
		fmt.Fprintf(&b, "boot line %d\n", i)
	}
	b.WriteString("BUG: unable to handle page fault for address: 0000000000001234\nOops: 0000 [#1] PREEMPT SMP NOPTI\nRIP: 0010:some_irq_handler+0x1f/0x80\n")
	b.WriteString("Kernel panic - not syncing: Fatal exception in interrupt\n")
	for i := range 250 {
		fmt.Fprintf(&b, "second boot line %d\n", i)
	}
	got := serialTail(b.String(), 200)
	for _, want := range []string{"BUG: unable to handle page fault", "RIP: 0010:some_irq_handler", "Fatal exception in interrupt", "second boot line 249"} {
		if !strings.Contains(got, want) {
			t.Errorf("tail lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "\nboot line 299\n") {
		t.Errorf("the report starts before the fault:\n%s", got)
	}
	// Without a panic, or with the panic inside the tail, it is just the tail.
	plain := strings.Repeat("x\n", 10) + "Kernel panic - not syncing\nlast"
	if got := serialTail(plain, 5); got != "x\nx\nx\nKernel panic - not syncing\nlast" {
		t.Errorf("plain tail = %q", got)
	}
}
