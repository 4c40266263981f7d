package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"lightwhale/internal/paths"
	"lightwhale/tests/vm"
)

// The disks real machines have: persistence finds them on every bus,
// however late they settle, and drivers come for devices added after boot.

// monitor runs HMP commands and fails on any output (device_add and
// drive_add answer nothing when they succeed).
func (g *guest) monitor(cmds ...string) {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	for _, c := range cmds {
		out, err := g.Monitor(ctx, c)
		if err != nil || strings.TrimSpace(out) != "" && !strings.HasPrefix(strings.TrimSpace(out), "OK") {
			g.t.Fatalf("monitor %q: %q, %v", c, out, err)
		}
	}
}

// waitFor runs a shell condition in the guest every second until it
// succeeds, and fails the test after secs seconds with what check printed.
func (g *guest) waitFor(what string, secs int, check string) string {
	g.t.Helper()
	// Each try's stderr goes into its own output: a try made before the
	// device appeared must not leak its error into the answer of a later one.
	out, err := g.trySudo(fmt.Sprintf(`for i in $(seq %d); do out=$( { %s ; } 2>&1) && { echo "$out"; exit 0; }; sleep 1; done; echo "$out"; exit 1`, secs, check))
	if err != nil {
		g.t.Fatalf("%s: not within %d s: %v\n%s\nconsole tail:\n%s", what, secs, err, out, g.SerialTail(30))
	}
	return out
}

// checkRAIDMembers asserts the mounted data filesystem has exactly the
// partitions in want (kernel names, e.g. nvme0n1p2) and none missing.
func checkRAIDMembers(t *testing.T, g *guest, want []string) {
	t.Helper()
	show := g.sudo("btrfs filesystem show /mnt/lightwhale-data")
	wantMatch(t, "btrfs filesystem show", show, fmt.Sprintf(`Total devices %d `, len(want)))
	if strings.Contains(show, "missing") {
		t.Errorf("a member is missing:\n%s", show)
	}
	for _, p := range want {
		if !regexp.MustCompile(`path /dev/` + p + `\b`).MatchString(show) {
			t.Errorf("member /dev/%s not in the filesystem:\n%s", p, show)
		}
	}
}

// Magic disks on five buses at once become one RAID1 filesystem with every
// disk a member, and a reboot finds all five again: not degraded.
func TestDisksOnEveryBus(t *testing.T) {
	t.Parallel()
	iso := requireISO(t)
	disks := makeDisks(t, t.TempDir(),
		diskSpec{diskMiB, magic, vm.USB}, diskSpec{diskMiB, magic, vm.AHCI}, diskSpec{diskMiB, magic, vm.NVMe},
		diskSpec{diskMiB, magic, vm.SCSI}, diskSpec{diskMiB, magic, vm.Virtio})
	g := boot(t, vm.Config{ISO: iso, Disks: disks})
	wantEqual(t, "mode", g.mode(), "persistent")
	// Partition names on each bus: sdX2 (USB, SATA, SCSI), nvme0n1p2, vda2.
	parts := strings.Fields(g.run(`for d in /sys/class/block/*/partition; do d=${d%/partition}; echo ${d##*/}; done | grep '2$' | sort`))
	wantEqual(t, "data partitions", strings.Join(parts, " "), "nvme0n1p2 sda2 sdb2 sdc2 vda2")
	checkRAIDMembers(t, g, parts)
	df := g.sudo("btrfs filesystem df /mnt/lightwhale-data")
	wantMatch(t, "data profile", df, `(?m)^Data, RAID1:`)
	wantMatch(t, "metadata profile", df, `(?m)^Metadata, RAID1C4:`)
	// Every bus took part: the USB disk is one of the sdX (its own transport).
	wantMatch(t, "USB disk", g.run(`for d in /sys/class/block/sd?; do readlink -f $d; done`), `/usb\d+/`)
	g.run("echo on-five-buses >/home/op/lw-e2e")

	g.reboot()
	wantEqual(t, "mode after reboot", g.mode(), "persistent")
	statusSays(t, g, "persistent")
	checkRAIDMembers(t, g, parts)
	wantEqual(t, "data after reboot", g.run("cat /home/op/lw-e2e"), "on-five-buses")
	g.poweroff()
	checkClaimedOnHost(t, disks, 5)
}

// A machine whose only disk is USB (usb-storage scans a second after the
// controller loads) is claimed and reboots persistent. On that machine,
// devices added after boot get their drivers: a virtio disk (virtio_blk is
// not loaded before) is readable, a USB NIC gets its driver and a DHCP
// address; a USB disk carrying the consent header joins the data
// filesystem while the machine runs (issue 16: one disk becomes a RAID1),
// and a USB disk carrying a data filesystem of its own is reported late and
// left alone.
func TestUSBOnlyAndHotplug(t *testing.T) {
	t.Parallel()
	iso := requireISO(t)
	dir := t.TempDir()
	disks := makeDisks(t, dir, diskSpec{diskMiB, magic, vm.USB})
	g := boot(t, vm.Config{ISO: iso, Disks: disks})
	wantEqual(t, "mode with a lone USB disk", g.mode(), "persistent")
	wantMatch(t, "console", g.BootLog(), `hotplug: waiting up to \d+s for storage to settle: .*USB mass storage`)
	g.run("echo on-usb >/home/op/lw-e2e")
	g.reboot()
	wantEqual(t, "mode after reboot", g.mode(), "persistent")
	wantEqual(t, "data after reboot", g.run("cat /home/op/lw-e2e"), "on-usb")
	checkRAIDMembers(t, g, []string{"sda2"})

	// Hot-plug, after boot.
	wantEqual(t, "virtio_blk before hot-plug", g.run("test -d /sys/module/virtio_blk && echo loaded || echo absent"), "absent")
	extra := filepath.Join(dir, "hot-virtio.img")
	joining := vm.Disk{Path: filepath.Join(dir, "joining-usb.img"), Bus: vm.USB}
	if err := vm.NewDisk(extra, 256, "hotplug-disk-ok\n"); err != nil {
		t.Fatal(err)
	}
	if err := vm.NewDisk(joining.Path, diskMiB, magic); err != nil {
		t.Fatal(err)
	}
	// Another machine's data disk: our label, another filesystem.
	foreign := filepath.Join(dir, "foreign-usb.img")
	if err := vm.NewDisk(foreign, 256, ""); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.btrfs", "-q", "-L", paths.DataLabel, foreign).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.btrfs: %v\n%s", err, out)
	}
	foreignHash, err := vm.HashFile(foreign)
	if err != nil {
		t.Fatal(err)
	}
	g.monitor(
		"drive_add 0 if=none,id=hv-drive,format=raw,file="+extra,
		"device_add virtio-blk-pci,drive=hv-drive,id=hv",
		"netdev_add user,id=hn1",
		"device_add usb-net,netdev=hn1,bus="+vm.USBController+".0,id=hnic",
		"drive_add 0 if=none,id=join-drive,format=raw,file="+joining.Path,
		"device_add usb-storage,bus="+vm.USBController+".0,drive=join-drive,id=join",
		"drive_add 0 if=none,id=late-drive,format=raw,file="+foreign,
		"device_add usb-storage,bus="+vm.USBController+".0,drive=late-drive,id=late",
	)
	wantEqual(t, "hot-plugged virtio disk", g.waitFor("virtio disk", 60, `head -c 15 /dev/vda`), "hotplug-disk-ok")

	// The USB NIC: the one link whose device is on USB.
	nic := g.waitFor("USB NIC", 60, `for n in /sys/class/net/*; do readlink -f $n/device | grep -q /usb && echo ${n##*/} && exit 0; done; exit 1`)
	driver := g.run("basename $(readlink /sys/class/net/" + nic + "/device/driver)")
	wantMatch(t, "USB NIC driver", driver, `^(cdc_ether|rndis_host)$`)
	g.waitFor("DHCP address on "+nic, 90, "ip -4 -o addr show dev "+nic+" | grep -o 'inet 10\\.0\\.2\\.[0-9]*'")

	// The disk with the header joins, by setup-persistence add, logged on
	// the console; the data filesystem becomes a RAID1 of both USB disks.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := g.WaitSerial(ctx, "hotplug: setup-persistence: done in"); err != nil {
		t.Fatalf("the join did not end: %v\n%s", err, g.SerialTail(40))
	}
	joined := g.sudo(`btrfs filesystem show /mnt/lightwhale-data | grep -o '/dev/sd[b-z]2'`)
	wantMatch(t, "console: the join", g.BootLog(), `hotplug: Lightwhale disk\(s\) /dev/sd[b-z] with the consent header appeared: joining`)
	wantMatch(t, "console: add's steps", g.BootLog(), `hotplug: setup-persistence: btrfs device add `+joined)
	waitMode(t, g, "persistent", 5*time.Minute)
	checkRAIDMembers(t, g, []string{"sda2", strings.TrimPrefix(joined, "/dev/")})
	df := g.sudo("btrfs filesystem df /mnt/lightwhale-data")
	wantMatch(t, "data profile after the hot-plug join", df, `(?m)^Data, RAID1:`)
	wantMatch(t, "metadata profile after the hot-plug join", df, `(?m)^Metadata, RAID1:`)

	// The other data disk: reported on the console, in status and the
	// motd, never mounted or written.
	lateLine := g.waitFor("late disk report", 60, "grep -m1 'arrived late' /run/lightwhale/late-disks")
	dev := regexp.MustCompile(`/dev/sd[a-z]+`).FindString(lateLine)
	if dev == "" || dev == "/dev/sda" || joined == dev+"2" {
		t.Fatalf("late-disk record names %q; want the other hot-added disk: %s", dev, lateLine)
	}
	st := g.sudo("setup-persistence status")
	wantMatch(t, "status", st, `(?m)^LATE DISK: Lightwhale disk `+dev+` \(btrfs "lightwhale-data" [0-9a-f-]+\) arrived late.*reboot`)
	if strings.Count(st, "LATE DISK:") != 1 {
		t.Errorf("status reports other late disks than %s:\n%s", dev, st)
	}
	g.wantMotd("motd", `WARNING: Lightwhale disk `+dev+` .*arrived late`)
	wantMatch(t, "console", g.BootLog(), `hotplug: Lightwhale disk `+dev)
	if m := g.run("grep -c '^" + dev + "' /proc/mounts /proc/swaps || true"); regexp.MustCompile(`:[1-9]`).MatchString(m) {
		t.Errorf("late disk %s is in use:\n%s", dev, m)
	}
	wantEqual(t, "data after the join", g.run("cat /home/op/lw-e2e"), "on-usb")
	g.poweroff()
	if h, err := vm.HashFile(foreign); err != nil || h != foreignHash {
		t.Errorf("the late data disk was written: sha256 %s, %v; was %s", h, err, foreignHash)
	}
	checkClaimedOnHost(t, []vm.Disk{disks[0], joining}, 2)
}

// An SD card (sdhci-pci + sd-card) with the consent header is claimed, its
// partition named mmcblk0pN. 1 GiB (no swap partition): mkfs.btrfs discards
// the whole device, which QEMU's sd-card emulates block by block, over
// five minutes for 4 GiB under TCG.
func TestSDCard(t *testing.T) {
	t.Parallel()
	iso := requireISO(t)
	disks := makeDisks(t, t.TempDir(), diskSpec{1024, magic, vm.SD})
	g := boot(t, vm.Config{ISO: iso, Disks: disks})
	wantEqual(t, "mode with an SD card", g.mode(), "persistent")
	part := g.run(`cd /sys/class/block && ls -d mmcblk0p*`)
	wantMatch(t, "SD card partition", part, `^mmcblk0p\d$`)
	checkRAIDMembers(t, g, []string{part})
	g.poweroff()
	if _, sb := dataPartition(t, disks[0].Path); sb.Label != "lightwhale-data" || sb.NumDevices != 1 || sb.LogRoot != 0 {
		t.Errorf("SD card after power-off: btrfs label %q, %d device(s), log_root %d; want lightwhale-data, 1, 0", sb.Label, sb.NumDevices, sb.LogRoot)
	}
}

// Bad input: a USB disk pulled in the middle of the claim. The other disks'
// claim is finished at the next boot, and once committed it is never
// formatted again, not even when the USB disk comes back.
func TestUSBPulledMidClaim(t *testing.T) {
	t.Parallel()
	iso := requireISO(t)
	disks := makeDisks(t, t.TempDir(), diskSpec{diskMiB, magic, vm.Virtio}, diskSpec{diskMiB, magic, vm.AHCI}, diskSpec{diskMiB, magic, vm.USB})
	usbID := "disk2" // the Disk.ID default: its index

	cfg := vm.Config{ISO: iso, Disks: disks}
	m, err := vm.Start(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	g := &guest{Machine: m, t: t, cfg: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	// Partition tables are on all three disks; mkfs comes next.
	if err := m.WaitSerial(ctx, "setup-persistence: mkswap"); err != nil {
		t.Fatalf("%v\n%s", err, m.SerialTail(30))
	}
	g.monitor("device_del " + usbID)
	if err := m.WaitSSH(ctx); err != nil {
		t.Fatal(err)
	}
	first := g.mode()
	t.Logf("mode after the USB disk was pulled mid-claim: %s\n%s", first, regexp.MustCompile(`(?m)^setup-persistence: .*$`).FindAllString(g.BootLog(), -1))
	g.poweroff()

	// Next boot without the USB disk: the claim of the other two completes.
	g = boot(t, vm.Config{ISO: iso, Disks: disks[:2]})
	wantEqual(t, "mode at the next boot", g.mode(), "persistent")
	checkRAIDMembers(t, g, []string{"vda2", "sda2"})
	g.run("echo kept >/home/op/lw-e2e")
	g.poweroff()
	fsid := checkClaimedOnHost(t, disks[:2], 2)

	// The USB disk back: the committed filesystem is used, not made again,
	// and the USB disk, still carrying the consent it was given, joins it
	// (issue 16): three members of the same filesystem once the balance is done.
	g = boot(t, vm.Config{ISO: iso, Disks: disks})
	wantEqual(t, "data with the USB disk back", g.run("cat /home/op/lw-e2e"), "kept")
	waitMode(t, g, "persistent", 5*time.Minute)
	g.poweroff()
	if got := checkClaimedOnHost(t, disks, 3); got != fsid {
		t.Errorf("filesystem %s was replaced by %s: formatted again", fsid, got)
	}
}
