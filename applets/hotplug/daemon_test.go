package hotplug

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lightwhale/internal/cli"
	"lightwhale/internal/latedisk"
	"lightwhale/internal/modalias"
	"lightwhale/internal/paths"
	"lightwhale/internal/probe"
)

// fakeSystem is a System on temp dirs whose module loads, DHCP, motd and
// joins are recorded instead of run.
type fakeSystem struct {
	System
	mu     sync.Mutex
	loaded [][]string
	dhcp   chan string
	motd   int
	joins  chan []string
	// refuse makes Join fail for a batch holding this disk, as add does
	// (its whole plan refused, one line naming the disk).
	refuse string
}

// The aliases these tests resolve (internal/modalias tests the matcher).
const aliasFile = `alias pci:v*d*sv*sd*bc01sc06i01* ahci
alias pci:v*d*sv*sd*bc01sc08i02* nvme
alias usb:v*p*d*dc*dsc*dp*ic08isc06ip50in* usb_storage
alias scsi:t-0x00* sd_mod
alias virtio:d00000002v* virtio_blk
alias virtio:d00000001v* virtio_net
`

func newFake(t *testing.T, sys Sysfs) *fakeSystem {
	root := t.TempDir()
	f := &fakeSystem{dhcp: make(chan string, 4)}
	f.System = System{
		Sys: sys, Dev: filepath.Join(root, "dev"), RunDir: filepath.Join(root, "run"),
		LateRecord: filepath.Join(root, "run", "late-disks"),
		Load: func(m []string) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.loaded = append(f.loaded, m)
			return nil
		},
		DHCP: func(iface string) error { f.dhcp <- iface; return nil },
		Motd: func() error { f.mu.Lock(); f.motd++; f.mu.Unlock(); return nil },
		Join: func(devs []string) (string, error) {
			f.joins <- devs
			for _, d := range devs {
				if d == f.refuse {
					return "setup-persistence: " + d + " not joined: it holds a GPT partition table besides the consent header\n", errors.New("exit status 1")
				}
			}
			return "setup-persistence: btrfs device add " + strings.Join(devs, " ") + " /mnt/lightwhale-data [0.10s]\n", nil
		},
	}
	f.joins = make(chan []string, 8)
	os.MkdirAll(f.Dev, 0o755)
	os.MkdirAll(f.RunDir, 0o755)
	return f
}

func (f *fakeSystem) dispatcher(t *testing.T, booted bool) *dispatcher {
	a, err := modalias.Parse(strings.NewReader(aliasFile))
	if err != nil {
		t.Fatal(err)
	}
	return &dispatcher{System: f.System, aliases: a, booted: booted, log: t.Logf, late: map[string]bool{}, quiet: 100 * time.Millisecond,
		loader: &loader{load: f.Load, asked: map[string]bool{}, log: t.Logf}}
}

func (f *fakeSystem) waitLoads(t *testing.T, d *dispatcher) [][]string {
	for deadline := time.Now().Add(5 * time.Second); d.loader.inflight.Load() > 0; {
		if time.Now().After(deadline) {
			t.Fatal("module loads still in flight after 5s")
		}
		time.Sleep(time.Millisecond)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.loaded
}

func event(action string, kv ...string) Event {
	e := Event{Action: action, DevPath: "/devices/x", Env: map[string]string{}, At: time.Now()}
	for i := 0; i < len(kv); i += 2 {
		e.Env[kv[i]] = kv[i+1]
	}
	return e
}

func TestHandleLoadsEachModuleOnce(t *testing.T) {
	f := newFake(t, Sysfs(t.TempDir()))
	d := f.dispatcher(t, true)
	usb := event("add", "SUBSYSTEM", "usb", "MODALIAS", "usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00")
	d.handle(usb)
	f.waitLoads(t, d)
	d.handle(usb)                                                             // the same device class again: loaded already
	d.handle(event("remove", "SUBSYSTEM", "scsi", "MODALIAS", "scsi:t-0x00")) // not an add
	d.handle(event("add", "SUBSYSTEM", "scsi", "MODALIAS", "scsi:t-0x05"))    // no module for it
	d.handle(event("add", "SUBSYSTEM", "scsi", "MODALIAS", "scsi:t-0x00"))
	if diff := cmp.Diff([][]string{{"usb_storage"}, {"sd_mod"}}, f.waitLoads(t, d)); diff != "" {
		t.Errorf("loads (-want +got):\n%s", diff)
	}
}

func TestColdplugModules(t *testing.T) {
	a, _ := modalias.Parse(strings.NewReader(aliasFile))
	s := sysfsTree(t, map[string]string{
		"devices/pci0000:00/0000:00:1f.2/modalias":         "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01",
		"devices/pci0000:00/0000:00:05.0/modalias":         "pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02",
		"devices/pci0000:00/0000:00:06.0/modalias":         "pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02",
		"devices/pci0000:00/0000:00:07.0/virtio2/modalias": "virtio:d00000002v00001AF4",
		"devices/platform/unknown/modalias":                "platform:nothing-known",
	}, nil)
	f := newFake(t, s)
	got := a.Modules(f.modaliases())
	if diff := cmp.Diff([]string{"ahci", "nvme", "virtio_blk"}, got); diff != "" {
		t.Errorf("coldplug modules (-want +got):\n%s", diff)
	}
	l := &loader{load: f.Load, asked: map[string]bool{}, log: t.Logf}
	l.loadAll(got)
	var all []string
	for _, c := range f.loaded {
		all = append(all, c...)
	}
	if diff := cmp.Diff([]string{"ahci", "nvme", "virtio_blk"}, all, cmpSorted); diff != "" {
		t.Errorf("loaded (-want +got):\n%s", diff)
	}
}

var cmpSorted = cmp.Transformer("sort", func(in []string) []string {
	out := append([]string(nil), in...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
})

func TestNetAddedAfterBootOnly(t *testing.T) {
	s := sysfsTree(t, map[string]string{
		"class/net/eth1/device/vendor":   "0x1af4",
		"class/net/wlan0/device/vendor":  "0x8086",
		"class/net/wlan0/phy80211/index": "0",
		"class/net/veth1/ifindex":        "9",
	}, nil)
	f := newFake(t, s)
	d := f.dispatcher(t, false)
	d.handle(event("add", "SUBSYSTEM", "net", "INTERFACE", "eth1")) // during boot: S40network's job
	d.booted = true
	for _, i := range []string{"wlan0", "veth1", "../eth1", "eth1"} {
		d.handle(event("add", "SUBSYSTEM", "net", "INTERFACE", i))
	}
	select {
	case got := <-f.dhcp:
		if got != "eth1" {
			t.Errorf("DHCP on %q, want eth1", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no DHCP for eth1")
	}
	select {
	case got := <-f.dhcp:
		t.Errorf("second DHCP on %q", got)
	case <-time.After(50 * time.Millisecond):
	}
}

func TestVirtioPortNamed(t *testing.T) {
	s := sysfsTree(t, map[string]string{"class/virtio-ports/vport1p1/name": "org.qemu.guest_agent.0"}, nil)
	f := newFake(t, s)
	f.dispatcher(t, false).handle(event("add", "SUBSYSTEM", "virtio-ports", "DEVNAME", "vport1p1"))
	got, err := os.Readlink(filepath.Join(f.Dev, "virtio-ports", "org.qemu.guest_agent.0"))
	if err != nil || got != "../vport1p1" {
		t.Errorf("link = %q, %v; want ../vport1p1", got, err)
	}
}

// btrfsHead is the start of a device holding a btrfs superblock.
func btrfsHead(label string, fsid byte) []byte {
	b := make([]byte, probe.HeadBytes)
	sb := b[64<<10:]
	copy(sb[0x40:], "_BHRfS_M")
	for i := 0; i < 16; i++ {
		sb[0x20+i] = fsid
	}
	binary.LittleEndian.PutUint64(sb[0x88:], 1)
	copy(sb[0x12b:], label)
	return b
}

func TestLateDisk(t *testing.T) {
	s := sysfsTree(t, map[string]string{"fs/btrfs/11111111-1111-1111-1111-111111111111/": ""}, nil)
	f := newFake(t, s)
	write := func(dev string, b []byte) { os.WriteFile(filepath.Join(f.Dev, dev), b, 0o644) }
	write("sdb", append([]byte(paths.Consent+"\n"), make([]byte, 1<<20)...))
	write("sdc", btrfsHead("lightwhale-data", 0x22))
	write("sdd", btrfsHead("lightwhale-data", 0x11)) // the mounted filesystem: a member coming back
	write("sde", btrfsHead("other", 0x33))
	write("sdf1", append([]byte(paths.Consent), make([]byte, 1<<20)...)) // a partition never carries consent
	d := f.dispatcher(t, true)
	add := func(dev, typ string) { d.handle(event("add", "SUBSYSTEM", "block", "DEVNAME", dev, "DEVTYPE", typ)) }

	add("sdb", "disk") // persistence has not decided yet: its own scan sees the disk
	if got := latedisk.Read(f.LateRecord); got != nil {
		t.Fatalf("recorded before the decision: %q", got)
	}
	os.WriteFile(filepath.Join(f.RunDir, "mode"), []byte("volatile\n"), 0o644)
	for _, dev := range []string{"sdb", "sdb", "sdc", "sdd", "sde", "sdf1", "sdz"} {
		typ := "disk"
		if dev == "sdf1" {
			typ = "partition"
		}
		add(dev, typ)
	}
	want := []string{
		latedisk.Line(filepath.Join(f.Dev, "sdb"), "consent header"),
		latedisk.Line(filepath.Join(f.Dev, "sdc"), `btrfs "lightwhale-data" 22222222-2222-2222-2222-222222222222`),
	}
	if diff := cmp.Diff(want, latedisk.Read(f.LateRecord)); diff != "" {
		t.Errorf("late disks (-want +got):\n%s", diff)
	}
	if f.motd != 2 {
		t.Errorf("motd rewritten %d times, want 2", f.motd)
	}
	// Volatile: the claim happens at boot, never while running.
	select {
	case j := <-f.joins:
		t.Errorf("joined %q on a volatile machine", j)
	case <-time.After(300 * time.Millisecond):
	}
}

// A disk with the consent header that appears on a persistent machine
// joins its data filesystem (setup-persistence add); disks that appear
// together join in one run; a refusal is recorded for that disk alone, and
// the others still join. Our filesystem on a disk is still only reported.
func TestJoinWhilePersistent(t *testing.T) {
	f := newFake(t, sysfsTree(t, nil, nil))
	header := append([]byte(paths.Consent+"\n"), make([]byte, 1<<20)...)
	for _, dev := range []string{"sdb", "sdc", "sdd", "sde"} {
		os.WriteFile(filepath.Join(f.Dev, dev), header, 0o644)
	}
	os.WriteFile(filepath.Join(f.Dev, "sdf"), btrfsHead("lightwhale-data", 0x22), 0o644)
	os.WriteFile(filepath.Join(f.RunDir, "mode"), []byte("degraded\n"), 0o644)
	f.refuse = filepath.Join(f.Dev, "sde")
	d := f.dispatcher(t, true)
	add := func(dev string) { d.handle(event("add", "SUBSYSTEM", "block", "DEVNAME", dev, "DEVTYPE", "disk")) }
	next := func() []string {
		t.Helper()
		select {
		case j := <-f.joins:
			return j
		case <-time.After(5 * time.Second):
			t.Fatal("no join")
			return nil
		}
	}
	dev := func(n string) string { return filepath.Join(f.Dev, n) }

	add("sdb")
	add("sdc")
	add("sdb") // a second event for a disk already queued
	if diff := cmp.Diff([]string{dev("sdb"), dev("sdc")}, next()); diff != "" {
		t.Errorf("first join (-want +got):\n%s", diff)
	}
	// The refused disk spoils the batch: each is tried alone.
	add("sdd")
	add("sde")
	add("sdf")
	for _, want := range [][]string{{dev("sdd"), dev("sde")}, {dev("sdd")}, {dev("sde")}} {
		if diff := cmp.Diff(want, next()); diff != "" {
			t.Errorf("join (-want +got):\n%s", diff)
		}
	}
	select {
	case j := <-f.joins:
		t.Errorf("an extra join of %q", j)
	case <-time.After(300 * time.Millisecond):
	}
	want := []string{
		latedisk.Line(dev("sdf"), `btrfs "lightwhale-data" 22222222-2222-2222-2222-222222222222`),
		latedisk.NotJoined(dev("sde"), "it holds a GPT partition table besides the consent header"),
	}
	for deadline := time.Now().Add(5 * time.Second); len(latedisk.Read(f.LateRecord)) < len(want) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if diff := cmp.Diff(want, latedisk.Read(f.LateRecord), cmpSorted); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}

	// Pulled and plugged in again: looked at again.
	d.handle(event("remove", "SUBSYSTEM", "block", "DEVNAME", "sdb", "DEVTYPE", "disk"))
	add("sdb")
	if diff := cmp.Diff([]string{dev("sdb")}, next()); diff != "" {
		t.Errorf("join after re-plug (-want +got):\n%s", diff)
	}
}

func TestWaitFromCmdline(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"":                                  DefaultMaxWait,
		"quiet lightwhale.wait=3 console=x": 3 * time.Second,
		"lightwhale.wait=0":                 0,
		"lightwhale.wait=-1":                DefaultMaxWait,
		"lightwhale.wait=soon":              DefaultMaxWait,
	} {
		if got := waitFromCmdline(in); got != want {
			t.Errorf("waitFromCmdline(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestMainCommandLine(t *testing.T) {
	root, kver := t.TempDir(), "6.12.0-test"
	mods := filepath.Join(root, "lib/modules", kver)
	os.MkdirAll(mods, 0o755)
	os.WriteFile(filepath.Join(mods, "modules.alias"), []byte(aliasFile), 0o644)
	s := sysfsTree(t, map[string]string{"devices/pci0000:00/0000:00:1f.2/modalias": "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"}, nil)
	f := newFake(t, s)
	f.Modules = mods
	for _, tc := range []struct {
		args []string
		code int
		out  string // stdout, or the start of stderr when code != 0
	}{
		{[]string{"coldplug", "--dry-run"}, 0, "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01 ahci\n"},
		{[]string{"--dry-run", "coldplug"}, 0, "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01 ahci\n"},
		{[]string{}, 2, "lightwhale hotplug: expected one command"},
		{[]string{"coldplug", "extra"}, 2, "lightwhale hotplug: expected one command"},
		{[]string{"frobnicate"}, 2, `lightwhale hotplug: unknown command "frobnicate"`},
		{[]string{"coldplug", "--bogus"}, 2, "flag provided but not defined: -bogus"},
	} {
		var out, errb strings.Builder
		code := f.Main(tc.args, cli.IO{Out: &out, Err: &errb})
		got := out.String()
		if tc.code != 0 {
			got = errb.String()
		}
		if code != tc.code || !strings.HasPrefix(got, tc.out) {
			t.Errorf("hotplug %q: exit %d, %q; want %d, %q", tc.args, code, got, tc.code, tc.out)
		}
	}
	if len(f.loaded) != 0 {
		t.Errorf("--dry-run loaded %v", f.loaded)
	}
}

// The modaliases of a QEMU PC (lightwhale hotplug coldplug --dry-run): the
// storage and network drivers load before storage settles, the rest after.
func TestSplitDeferred(t *testing.T) {
	present := []string{
		"cpu:type:x86,ven0002fam000Fmod006B:feature:,0000,0001,0002",
		"input:b0011v0001p0001eAB41-e0,1,4,11,14,k71,72,ramlsfw",
		"pci:v00008086d00007010sv00001AF4sd00001100bc01sc01i80",
		"scsi:t-0x05",
		"serio:ty01pr00id00ex00",
		"virtio:d00000001v00001AF4",
		"virtio:d00000002v00001AF4",
		"virtio:d00000004v00001AF4",
	}
	now, later := splitDeferred(present)
	if diff := cmp.Diff([]string{"pci:v00008086d00007010sv00001AF4sd00001100bc01sc01i80", "scsi:t-0x05", "virtio:d00000001v00001AF4", "virtio:d00000002v00001AF4"}, now); diff != "" {
		t.Errorf("loaded before settle (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{present[0], present[1], present[4], present[7]}, later); diff != "" {
		t.Errorf("deferred (-want +got):\n%s", diff)
	}
}
