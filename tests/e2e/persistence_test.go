package e2e

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"lightwhale/internal/paths"
	"lightwhale/tests/vm"
)

// diskMiB is big enough for the swap rule to give a swap partition (disks
// under 2 GiB get none); images are sparse, so it costs nothing.
const diskMiB = 4096

// statusSays fails unless `setup-persistence status` reports the mode.
func statusSays(t *testing.T, g *guest, mode string) string {
	t.Helper()
	st := g.sudo("setup-persistence status")
	wantMatch(t, "setup-persistence status", st, `(?im)^mode:\s+`+mode+`\b`)
	return st
}

// dataPartition finds the lightwhale-data partition the guest wrote, read
// from the host, with its btrfs superblock.
func dataPartition(t *testing.T, img string) (vm.Partition, vm.BtrfsSuper) {
	t.Helper()
	parts, err := vm.ReadGPT(img)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range parts {
		names = append(names, p.Name)
		if p.Name == paths.DataLabel {
			sb, err := vm.ReadBtrfsSuper(img, p.Offset())
			if err != nil {
				t.Fatal(err)
			}
			return p, sb
		}
	}
	t.Fatalf("%s: no lightwhale-data partition; partitions %q", img, names)
	return vm.Partition{}, vm.BtrfsSuper{}
}

// checkClaimedOnHost asserts the layout a claim leaves, read from the host
// after power-off: GPT with lightwhale-swap and lightwhale-data, the final
// label, and no tree log pending (a clean unmount).
func checkClaimedOnHost(t *testing.T, disks []vm.Disk, wantDevices int) string {
	t.Helper()
	fsid := ""
	for _, d := range disks {
		parts, err := vm.ReadGPT(d.Path)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, p := range parts {
			names = append(names, p.Name)
		}
		if strings.Join(names, ",") != paths.SwapLabel+","+paths.DataLabel {
			t.Errorf("%s: partitions %q; want lightwhale-swap then lightwhale-data", d.Path, names)
		}
		_, sb := dataPartition(t, d.Path)
		if sb.Label != paths.DataLabel {
			t.Errorf("%s: btrfs label %q; want lightwhale-data", d.Path, sb.Label)
		}
		if sb.LogRoot != 0 {
			t.Errorf("%s: btrfs tree log pending (log_root %d): not unmounted cleanly at power-off", d.Path, sb.LogRoot)
		}
		if int(sb.NumDevices) != wantDevices {
			t.Errorf("%s: btrfs has %d devices; want %d", d.Path, sb.NumDevices, wantDevices)
		}
		if fsid != "" && sb.FSIDString() != fsid {
			t.Errorf("%s: fsid %s differs from the other member's %s", d.Path, sb.FSIDString(), fsid)
		}
		fsid = sb.FSIDString()
	}
	return fsid
}

// Scenario 3: one magic disk is claimed at first boot, and everything a user
// does survives a reboot.
func TestPersistentOneDisk(t *testing.T) {
	t.Parallel()
	iso := requireISO(t)
	disks := makeDisks(t, t.TempDir(), diskSpec{diskMiB, magic, vm.Virtio})
	g := boot(t, vm.Config{ISO: iso, Disks: disks})

	wantEqual(t, "mode after the claim", g.mode(), "persistent")
	wantEqual(t, "filesystem at /mnt/lightwhale-data", g.mountFS("/mnt/lightwhale-data"), "btrfs")
	statusSays(t, g, "persistent")
	wantMatch(t, "console", g.BootLog(), `setup-persistence: mode persistent`)

	g.sudo(`set -e
echo etc-kept >/etc/lw-e2e
echo var-kept >/var/lw-e2e
mkdir -p /var/www && echo served-after-reboot >/var/www/index.html`)
	g.run("echo home-kept >/home/op/lw-e2e")
	g.waitDocker()
	g.buildBusyboxImage("image-page")
	g.run("docker run -d --name web --restart unless-stopped -p 80:80 -v /var/www:/www:ro " + bbImage)
	wantEqual(t, "served before reboot", g.httpGet("/index.html", 2*time.Minute), "served-after-reboot")
	firstKey := g.HostKeys[len(g.HostKeys)-1]

	g.reboot()
	wantEqual(t, "mode after reboot", g.mode(), "persistent")
	for f, want := range map[string]string{"/etc/lw-e2e": "etc-kept", "/var/lw-e2e": "var-kept", "/home/op/lw-e2e": "home-kept"} {
		wantEqual(t, f+" after reboot", g.run("cat "+f), want)
	}
	if k := g.HostKeys[len(g.HostKeys)-1]; k != firstKey {
		t.Errorf("ssh host key changed across reboot: %s then %s", firstKey, k)
	}
	// The container comes back by itself (--restart unless-stopped).
	wantEqual(t, "served after reboot", g.httpGet("/index.html", dockerTimeout), "served-after-reboot")
	if n := diskSwaps(g); n != 1 {
		t.Errorf("%d swap partitions on disks active after reboot; want 1; /proc/swaps:\n%s", n, g.run("cat /proc/swaps"))
	}
	st := statusSays(t, g, "persistent")
	wantMatch(t, "status swap line", st, `(?m)^swap:\s+/dev/vda1\b`)

	// A snapshot of this state, changes after it, and a rollback to it that
	// the next boot applies (issue 15).
	wantEqual(t, "snapshot", g.sudo("setup-persistence snapshot kept"), "snapshot kept taken")
	g.sudo("echo etc-changed >/etc/lw-e2e")
	g.run("echo home-changed >/home/op/lw-e2e && echo new >/home/op/lw-e2e-new")
	wantMatch(t, "rollback", g.sudo("setup-persistence rollback kept"), `rollback to kept at the next boot`)
	g.poweroff()
	fsid := checkClaimedOnHost(t, disks, 1)

	// The claimed disk first in the BIOS boot order (no CD first): its
	// protective MBR's boot code (internal/gpt's BootCode) returns to the
	// BIOS with int 18h, which boots the CD; the data is still there.
	// A second magic disk beside it joins at this boot: one disk grows
	// into a RAID1 (issue 16).
	grown := append(disks, makeDisks(t, t.TempDir(), diskSpec{diskMiB, magic, vm.Virtio})...)
	g = boot(t, vm.Config{ISO: iso, Disks: grown, BootOrder: []string{"disk0", "cd0"}})
	wantEqual(t, "mode with the data disk first in the boot order", g.mode(), "persistent")
	wantEqual(t, "/etc/lw-e2e with the data disk first in the boot order, rolled back", g.run("cat /etc/lw-e2e"), "etc-kept")
	wantEqual(t, "/home/op/lw-e2e rolled back", g.run("cat /home/op/lw-e2e"), "home-kept")
	if out, err := g.try("cat /home/op/lw-e2e-new"); err == nil {
		t.Errorf("a file made after the snapshot survived the rollback: %q", out)
	}
	wantMatch(t, "console", g.BootLog(), `the state is snapshot kept now`)
	wantMatch(t, "snapshots", g.sudo("setup-persistence snapshots"), `(?m)^kept\s.*\n(.*\n)*auto-before-rollback-`)
	wantMatch(t, "console: the second disk joins", g.BootLog(), `btrfs device add`)
	waitMode(t, g, "persistent", 5*time.Minute)
	df := g.sudo("btrfs filesystem df /mnt/lightwhale-data")
	wantMatch(t, "data profile after the join", df, `(?m)^Data, RAID1:`)
	wantMatch(t, "metadata profile after the join", df, `(?m)^Metadata, RAID1:`)
	g.poweroff()
	if got := checkClaimedOnHost(t, grown, 2); got != fsid {
		t.Errorf("the grown filesystem is %s; want the original %s", got, fsid)
	}
}

// Scenario 4: several magic disks make one RAID1 filesystem, with the
// metadata profile that matches the number of disks.
func TestRAIDProfiles(t *testing.T) {
	t.Parallel()
	iso := requireISO(t)
	for _, tc := range []struct {
		disks          int
		data, metadata string
	}{
		{2, "RAID1", "RAID1"},
		{3, "RAID1", "RAID1C3"},
	} {
		t.Run(fmt.Sprintf("%d-disks", tc.disks), func(t *testing.T) {
			var specs []diskSpec
			for range tc.disks {
				specs = append(specs, diskSpec{diskMiB, magic, vm.Virtio})
			}
			disks := makeDisks(t, t.TempDir(), specs...)
			g := boot(t, vm.Config{ISO: iso, Disks: disks})
			wantEqual(t, "mode", g.mode(), "persistent")
			df := g.sudo("btrfs filesystem df /mnt/lightwhale-data")
			wantMatch(t, "data profile", df, `(?m)^Data, `+tc.data+`:`)
			wantMatch(t, "metadata profile", df, `(?m)^Metadata, `+tc.metadata+`:`)
			show := g.sudo("btrfs filesystem show /mnt/lightwhale-data")
			wantMatch(t, "btrfs filesystem show", show, fmt.Sprintf(`Total devices %d `, tc.disks))
			if n := diskSwaps(g); n != tc.disks {
				t.Errorf("%d swap partitions active; want one per disk (%d)", n, tc.disks)
			}
			statusSays(t, g, "persistent")
			g.poweroff()
			checkClaimedOnHost(t, disks, tc.disks)
		})
	}
}

// Scenario 5: a RAID1 member missing at boot: the survivor is mounted
// degraded (never formatted), loudly; with the disk back, the boot is normal.
// Then the disk is lost for good: a new, bigger magic disk rebuilds it, a
// power cut in the middle of the rebuild is survived (issue 16).
func TestRAIDDegraded(t *testing.T) {
	t.Parallel()
	iso := requireISO(t)
	disks := makeDisks(t, t.TempDir(), diskSpec{diskMiB, magic, vm.Virtio}, diskSpec{diskMiB, magic, vm.Virtio})

	g := boot(t, vm.Config{ISO: iso, Disks: disks})
	wantEqual(t, "mode", g.mode(), "persistent")
	g.run("echo raid-data >/home/op/lw-e2e")
	// Enough data that a rebuild onto a slow disk takes minutes (below).
	bigSum := g.run("head -c 64M /dev/urandom >/home/op/lw-big && sha256sum </home/op/lw-big")
	g.poweroff()
	fsid := checkClaimedOnHost(t, disks, 2)

	// Boot with the second disk pulled.
	g = boot(t, vm.Config{ISO: iso, Disks: disks[:1]})
	wantEqual(t, "mode with a member missing", g.mode(), "degraded")
	st := statusSays(t, g, "degraded")
	wantMatch(t, "console warning", g.BootLog(), `(?i)degraded`)
	wantEqual(t, "data on the survivor", g.run("cat /home/op/lw-e2e"), "raid-data")
	wantMatch(t, "data mount options", g.run("awk '$2 == \"/mnt/lightwhale-data\" { print $4 }' /proc/mounts"), `degraded`)
	t.Logf("status while degraded:\n%s", st)
	g.run("echo written-degraded >/home/op/lw-e2e-degraded")
	g.poweroff()
	if _, sb := dataPartition(t, disks[0].Path); sb.FSIDString() != fsid {
		t.Fatalf("the survivor's filesystem changed from %s to %s: it was formatted", fsid, sb.FSIDString())
	}

	// Put the disk back.
	g = boot(t, vm.Config{ISO: iso, Disks: disks})
	wantEqual(t, "mode with both disks back", g.mode(), "persistent")
	statusSays(t, g, "persistent")
	wantEqual(t, "data after reattach", g.run("cat /home/op/lw-e2e /home/op/lw-e2e-degraded"), "raid-data\nwritten-degraded")
	show := g.sudo("btrfs filesystem show /mnt/lightwhale-data")
	if strings.Contains(show, "missing") {
		t.Errorf("a device is still missing after reattach:\n%s", show)
	}
	// The rejoined member missed writes: setup-persistence must start the
	// resync (balance of single chunks, then scrub) by itself.
	wantMatch(t, "console on reattach", g.BootLog(), `(?i)restore redundancy`)
	if !waitScrub(t, g, 3*time.Minute) {
		t.Fatal("scrub did not finish within 3 minutes")
	}
	df := g.sudo("btrfs filesystem df /mnt/lightwhale-data")
	if regexp.MustCompile(`(?m)^(Data|Metadata|System), single`).MatchString(df) {
		t.Errorf("single-profile chunks remain after the resync:\n%s", df)
	}
	g.poweroff()
	checkClaimedOnHost(t, disks, 2)

	// Proof that redundancy is back: the disk that was away now holds what
	// was written without it. And a disk is lost for good: a new, bigger
	// magic disk beside the survivor rebuilds the missing member (btrfs
	// replace) at boot (issue 16). The new disk writes slowly (QEMU
	// throttling), so the power can be cut in the middle of the rebuild.
	fresh := makeDisks(t, t.TempDir(), diskSpec{2 * diskMiB, magic, vm.Virtio})[0]
	survivors := []vm.Disk{disks[1], fresh}
	slow := fresh
	slow.WriteBytesPerSec = 384 << 10 // 64 MiB of files: about 3 minutes
	g = boot(t, vm.Config{ISO: iso, Disks: []vm.Disk{disks[1], slow}})
	wantEqual(t, "data on the member that was away", g.run("cat /home/op/lw-e2e /home/op/lw-e2e-degraded"), "raid-data\nwritten-degraded")
	wantMatch(t, "console: the new disk replaces the missing member", g.BootLog(), `btrfs replace start`)
	done := g.waitFor("replace under way", 60, `btrfs replace status -1 /mnt/lightwhale-data | grep -o '[0-9.]*% done'`)
	st = g.sudo("setup-persistence status")
	t.Logf("replace at %s; status:\n%s", done, st)
	wantMatch(t, "status while rebuilding", st, `(?m)^mode: .*REBUILDING`)
	wantMatch(t, "status progress while rebuilding", st, `(?m)^rebuild: +replace [0-9.]+% done`)
	g.wantMotd("motd while rebuilding", `REBUILDING`)
	if p := g.sudo("btrfs replace status -1 /mnt/lightwhale-data"); !strings.Contains(p, "% done") {
		t.Fatalf("the replace ended before the power cut: %s", p)
	}
	g.Kill() // the power cut, mid-rebuild

	// The next boot: btrfs resumes the replace, our side starts no second
	// one, follows it to its end and grows the new member to its whole
	// partition; the machine is healthy again with every file intact.
	g = boot(t, vm.Config{ISO: iso, Disks: survivors})
	if strings.Contains(g.BootLog(), "btrfs replace start") {
		t.Errorf("a second replace was started after the power cut:\n%s", g.BootLog())
	}
	// Unthrottled, the resumed replace may end before our side looks: the
	// kernel's word is the proof that it was resumed, not started again.
	wantMatch(t, "kernel: the replace resumed", g.sudo("dmesg"), `continuing dev_replace from .* to target /dev/vdb2`)
	t.Logf("after the power cut, at ssh:\n%s", g.sudo("btrfs filesystem show --raw /mnt/lightwhale-data; btrfs replace status -1 /mnt/lightwhale-data; cat /run/lightwhale/mode; dmesg | grep -i btrfs | tail -25"))
	// btrfs may list the replaced member as missing for minutes after the
	// end, and the single chunks of the degraded spell are converted after.
	waitMode(t, g, "persistent", 12*time.Minute)
	show = g.sudo("btrfs filesystem show --raw /mnt/lightwhale-data")
	if strings.Contains(show, "missing") || !strings.Contains(show, "Total devices 2 ") {
		t.Errorf("after the rebuild:\n%s", show)
	}
	// vda2 the survivor (4 GiB disk), vdb2 the new one (8 GiB).
	sizes := map[string]int64{}
	for _, m := range regexp.MustCompile(`size (\d+) used \d+ path /dev/(vd[ab]2)`).FindAllStringSubmatch(show, -1) {
		sizes[m[2]], _ = strconv.ParseInt(m[1], 10, 64)
	}
	if sizes["vdb2"] < 7<<30 || sizes["vdb2"] <= sizes["vda2"] {
		t.Errorf("the new member was not grown to its partition (sizes %v):\n%s", sizes, show)
	}
	wantMatch(t, "scrub after the rebuild", g.sudo("btrfs scrub start -B /mnt/lightwhale-data"), `(?i)error summary:\s+no errors found`)
	df = g.sudo("btrfs filesystem df /mnt/lightwhale-data")
	wantMatch(t, "data profile after the rebuild", df, `(?m)^Data, RAID1:`)
	wantMatch(t, "metadata profile after the rebuild", df, `(?m)^Metadata, RAID1:`)
	if regexp.MustCompile(`(?m)^(Data|Metadata|System), single`).MatchString(df) {
		t.Errorf("single-profile chunks remain after the rebuild:\n%s", df)
	}
	statusSays(t, g, "persistent")
	wantEqual(t, "files after the rebuild", g.run("cat /home/op/lw-e2e /home/op/lw-e2e-degraded"), "raid-data\nwritten-degraded")
	wantEqual(t, "the big file after the rebuild", g.run("sha256sum </home/op/lw-big"), bigSum)
	g.poweroff()
	if got := checkClaimedOnHost(t, survivors, 2); got != fsid {
		t.Errorf("the rebuilt filesystem is %s; want the original %s", got, fsid)
	}
}

// waitMode waits until the mode file says want (a rebuild finished).
func waitMode(t *testing.T, g *guest, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := g.mode()
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			var ours []string
			for _, l := range strings.Split(g.SerialLog(), "\n") {
				if strings.Contains(l, "setup-persistence") {
					ours = append(ours, l)
				}
			}
			t.Fatalf("mode still %q after %s; want %q\n%s\nkernel:\n%s\nconsole:\n%s", got, within, want, g.sudo("setup-persistence status"), g.sudo("dmesg | grep -i btrfs | tail -40"), strings.Join(ours, "\n"))
		}
		time.Sleep(5 * time.Second)
	}
}

// waitScrub waits until no balance or scrub runs on the data filesystem.
func waitScrub(t *testing.T, g *guest, within time.Duration) bool {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		bal, _ := g.trySudo("btrfs balance status /mnt/lightwhale-data")
		scrub, _ := g.trySudo("btrfs scrub status /mnt/lightwhale-data")
		if !strings.Contains(bal, "running") && !regexp.MustCompile(`(?i)status:\s+running`).MatchString(scrub) {
			t.Logf("resync done:\n%s\n%s", bal, scrub)
			return true
		}
		time.Sleep(5 * time.Second)
	}
	return false
}

// Scenario 9: poweroff leaves the data filesystem cleanly unmounted, and
// `setup-persistence enable` on a blank disk gets it claimed at the next boot.
func TestEnableAndCleanPoweroff(t *testing.T) {
	t.Parallel()
	iso := requireISO(t)
	disks := makeDisks(t, t.TempDir(), diskSpec{diskMiB, "", vm.Virtio})

	g := boot(t, vm.Config{ISO: iso, Disks: disks})
	wantEqual(t, "mode on a blank disk", g.mode(), "volatile")
	g.sudo("setup-persistence enable --yes /dev/vda")
	head, err := vm.Head(disks[0].Path, len(vm.Magic))
	if err != nil {
		t.Fatal(err)
	}
	wantEqual(t, "header written by enable", string(head), vm.Magic)

	g.reboot()
	wantEqual(t, "mode after enable and reboot", g.mode(), "persistent")
	// An fsync'd write leaves a btrfs tree log until the next commit: only a
	// clean unmount at power-off clears it.
	g.run("echo survives-poweroff | dd of=/home/op/lw-e2e conv=fsync 2>/dev/null")
	g.poweroff()
	checkClaimedOnHost(t, disks, 1)

	g = boot(t, vm.Config{ISO: iso, Disks: disks})
	wantEqual(t, "mode after power cycle", g.mode(), "persistent")
	wantEqual(t, "file written before poweroff", g.run("cat /home/op/lw-e2e"), "survives-poweroff")
	if dm := g.sudo("dmesg | grep -i 'log replay' || true"); dm != "" {
		t.Errorf("btrfs replayed a tree log at mount: the previous poweroff was unclean:\n%s", dm)
	}
	g.poweroff()
}

// Scenario 10: headless first contact: DHCP, sshd, and the default
// hostname lightwhale-<8 hex of machine-id>, stable across reboots.
func TestFirstContact(t *testing.T) {
	t.Parallel()
	iso := requireISO(t)
	disks := makeDisks(t, t.TempDir(), diskSpec{diskMiB, magic, vm.Virtio})
	g := boot(t, vm.Config{ISO: iso, Disks: disks})

	// busybox is named: op's PATH has no /sbin.
	// QEMU's user network hands out 10.0.2.15 with router 10.0.2.2 and DNS
	// 10.0.2.3 over DHCP only; finding all three proves a DHCP lease.
	wantMatch(t, "ipv4 addresses", g.run("busybox ip -4 -o addr show scope global"), `inet 10\.0\.2\.15/24`)
	wantMatch(t, "default route", g.run("busybox ip route show default"), `default via 10\.0\.2\.2`)
	wantMatch(t, "resolv.conf", g.run("cat /etc/resolv.conf"), `(?m)^nameserver 10\.0\.2\.3`)
	g.run("busybox pidof sshd")
	wantEqual(t, "host keys", g.run("cd /etc/ssh && ls ssh_host_*_key"), "ssh_host_ecdsa_key\nssh_host_ed25519_key")

	host := g.run("hostname")
	mid := g.run("cat /etc/machine-id")
	wantMatch(t, "hostname", host, `^lightwhale-[0-9a-f]{8}$`)
	wantMatch(t, "machine-id", mid, `^[0-9a-f]{32}$`)
	wantEqual(t, "hostname", host, "lightwhale-"+mid[:8])
	wantEqual(t, "mode", g.mode(), "persistent")

	g.reboot()
	wantEqual(t, "hostname after reboot", g.run("hostname"), host)
	wantEqual(t, "machine-id after reboot", g.run("cat /etc/machine-id"), mid)

	// An invalid /etc/hostname is not applied, and the boot script says why
	// on the console instead of hiding it.
	g.sudo("printf 'bad name!\\n' > /etc/hostname")
	warn := g.sudo("/etc/init.d/S20hostname start 2>&1")
	wantMatch(t, "S20hostname with a bad /etc/hostname", warn, `/etc/hostname: .*; using `+host)
	wantEqual(t, "hostname after a bad /etc/hostname", g.run("hostname"), host)
	g.poweroff()
}

// diskSwaps counts the active swap partitions on disks: /proc/swaps also
// lists zram (S62zram), which is a "partition" too.
func diskSwaps(g *guest) int {
	n := 0
	for _, l := range strings.Split(g.run("tail -n +2 /proc/swaps"), "\n") {
		if strings.HasPrefix(l, "/dev/") && !strings.HasPrefix(l, "/dev/zram") {
			n++
		}
	}
	return n
}
