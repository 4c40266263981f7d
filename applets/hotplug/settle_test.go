package hotplug

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestDecide(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ms := time.Millisecond
	base := settleState{start: t0, quiet: time.Second, max: 10 * time.Second}
	for _, tc := range []struct {
		name      string
		now       time.Duration // since start
		lastEvent time.Duration // since start; -1h: none
		pending   []string
		done      bool
		recheck   time.Duration
	}{
		{"nothing to wait for: no delay", 0, -time.Hour, nil, true, 0},
		{"a slow bus spoke 300ms ago: wait out the quiet period", 0, -300 * ms, nil, false, 700 * ms},
		{"quiet period over", 1500 * ms, 400 * ms, nil, true, 0},
		{"a USB disk without its disk: poll", 2 * time.Second, 0, []string{"USB mass storage 2-1:1.0"}, false, 100 * ms},
		{"pending until the bound", 10 * time.Second, 9 * time.Second, []string{"SCSI disk 0:0:0:0"}, true, 0},
		{"the bound cuts the poll short", 9950 * ms, 0, []string{"SCSI disk 0:0:0:0"}, false, 50 * ms},
		{"the bound cuts the quiet period short", 9800 * ms, 9700 * ms, nil, false, 200 * ms},
	} {
		s := base
		s.lastEvent = t0.Add(tc.lastEvent)
		s.pending = tc.pending
		done, recheck := decide(t0.Add(tc.now), s)
		if done != tc.done || recheck != tc.recheck {
			t.Errorf("%s: decide = %v, %v; want %v, %v", tc.name, done, recheck, tc.done, tc.recheck)
		}
	}
	// lightwhale.wait=0: never wait, even for a pending device.
	if done, _ := decide(t0, settleState{start: t0, max: 0, quiet: time.Second, pending: []string{"x"}, lastEvent: t0}); !done {
		t.Error("decide with max 0 waits")
	}
}

func TestSlowEvent(t *testing.T) {
	ev := func(action string, kv ...string) Event {
		e := Event{Action: action, Env: map[string]string{}}
		for i := 0; i < len(kv); i += 2 {
			e.Env[kv[i]] = kv[i+1]
		}
		return e
	}
	for _, tc := range []struct {
		e             Event
		slow, storage bool
	}{
		{ev("add", "SUBSYSTEM", "usb", "DEVTYPE", "usb_interface", "INTERFACE", "8/6/80"), true, true},
		{ev("add", "SUBSYSTEM", "usb", "DEVTYPE", "usb_interface", "INTERFACE", "9/0/0"), true, true},
		{ev("add", "SUBSYSTEM", "usb", "DEVTYPE", "usb_interface", "INTERFACE", "3/1/1"), false, false}, // a keyboard
		{ev("remove", "SUBSYSTEM", "usb", "DEVTYPE", "usb_interface", "INTERFACE", "8/6/80"), false, false},
		{ev("add", "SUBSYSTEM", "scsi_host"), true, true},
		{ev("add", "SUBSYSTEM", "nvme"), true, true},
		{ev("add", "SUBSYSTEM", "mmc"), true, true},
		{ev("add", "SUBSYSTEM", "block", "DEVTYPE", "disk"), false, true}, // virtio-blk: no wait of its own
		{ev("add", "SUBSYSTEM", "net"), false, false},
	} {
		if slowEvent(tc.e) != tc.slow || storageEvent(tc.e) != tc.storage {
			t.Errorf("%s %v: slow %v storage %v, want %v %v", tc.e.Action, tc.e.Env, slowEvent(tc.e), storageEvent(tc.e), tc.slow, tc.storage)
		}
	}
}

// sysfsTree writes files (path → content; "" content with a trailing slash
// makes a directory) under a temp dir and adds symlinks (link → target).
func sysfsTree(t *testing.T, files map[string]string, links map[string]string) Sysfs {
	root := t.TempDir()
	for p, c := range files {
		full := filepath.Join(root, p)
		if p[len(p)-1] == '/' {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(c+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for l, target := range links {
		os.MkdirAll(filepath.Dir(filepath.Join(root, l)), 0o755)
		if err := os.Symlink(filepath.Join(root, target), filepath.Join(root, l)); err != nil {
			t.Fatal(err)
		}
	}
	return Sysfs(root)
}

func TestPending(t *testing.T) {
	usb := "devices/pci0000:00/0000:00:04.0/usb2/2-1"
	usbDone := "devices/pci0000:00/0000:00:04.0/usb2/2-2"
	ahci := "devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0"
	nvme := "devices/pci0000:00/0000:00:05.0/nvme/nvme0"
	nvmeMP := "devices/pci0000:00/0000:00:06.0/nvme/nvme1"
	mmc := "devices/pci0000:00/0000:00:07.0/mmc_host/mmc0/mmc0:aaaa"
	s := sysfsTree(t, map[string]string{
		usb + "/product":                                                   "QEMU USB HARDDRIVE",
		usb + "/manufacturer":                                              "QEMU",
		usb + "/2-1:1.0/bInterfaceClass":                                   "08",
		usbDone + "/2-2:1.0/bInterfaceClass":                               "08",
		usbDone + "/2-2:1.0/host1/target1:0:0/1:0:0:0/type":                "0",
		usbDone + "/2-2:1.0/host1/target1:0:0/1:0:0:0/block/sdb/size":      "2048",
		"devices/pci0000:00/0000:00:04.0/usb2/2-3/2-3:1.0/bInterfaceClass": "03", // a keyboard
		ahci + "/type":   "0",
		ahci + "/vendor": "ATA     ",
		ahci + "/model":  "QEMU HARDDISK   ",
		"devices/pci0000:00/0000:00:1f.2/ata2/host1/target1:0:0/1:0:0:0/type": "5", // a CD-ROM without sr_mod: not ours to wait for
		nvme + "/state":            "live",
		nvme + "/model":            "QEMU NVMe Ctrl",
		nvmeMP + "/state":          "live",
		nvmeMP + "/nvme1c1n1/size": "2048",
		mmc + "/type":              "SD",
		mmc + "/name":              "QEMU!",
	}, map[string]string{
		"bus/usb/devices/2-1:1.0":   usb + "/2-1:1.0",
		"bus/usb/devices/2-2:1.0":   usbDone + "/2-2:1.0",
		"bus/usb/devices/2-3:1.0":   "devices/pci0000:00/0000:00:04.0/usb2/2-3/2-3:1.0",
		"bus/scsi/devices/0:0:0:0":  ahci,
		"bus/scsi/devices/1:0:0:0":  usbDone + "/2-2:1.0/host1/target1:0:0/1:0:0:0",
		"bus/scsi/devices/2:0:0:0":  "devices/pci0000:00/0000:00:1f.2/ata2/host1/target1:0:0/1:0:0:0",
		"class/nvme/nvme0":          nvme,
		"class/nvme/nvme1":          nvmeMP,
		"bus/mmc/devices/mmc0:aaaa": mmc,
	})
	want := []string{
		"USB mass storage 2-1:1.0 (QEMU QEMU USB HARDDRIVE)",
		"SCSI disk 0:0:0:0 (ATA QEMU HARDDISK)",
		"NVMe controller nvme0 (QEMU NVMe Ctrl)",
		"SD card mmc0:aaaa (QEMU!)",
	}
	if diff := cmp.Diff(want, s.Pending()); diff != "" {
		t.Errorf("Pending (-want +got):\n%s", diff)
	}
	if got := Sysfs(t.TempDir()).Pending(); len(got) != 0 {
		t.Errorf("Pending on an empty sysfs = %v", got)
	}
}
