package persistence

import (
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"lightwhale/internal/btrfs"
	"lightwhale/internal/paths"

	"github.com/google/go-cmp/cmp"
)

const header = paths.Consent + "\n" // what `echo ... | dd` writes

// checkClaimed verifies a complete claim of disks, mounted in ns, and
// returns the filesystem UUID.
func checkClaimed(t *testing.T, ns *namespace, wantData, wantMeta string, disks ...*loopDisk) string {
	t.Helper()
	if got := ns.fstype(paths.DataDir); got != "btrfs" {
		t.Fatalf("%s is %q, want btrfs", paths.DataDir, got)
	}
	if got := ns.fstype(paths.StateDir); got != "btrfs" {
		t.Errorf("%s is %q, want btrfs", paths.StateDir, got)
	}
	for _, dir := range paths.OverlayDirs {
		if got := ns.fstype(dir); got != "overlay" {
			t.Errorf("%s is %q, want overlay", dir, got)
		}
	}
	if out := ns.sh("test -d " + paths.DockerRoot + " && echo yes"); !strings.Contains(out, "yes") {
		t.Errorf("Docker data-root %s missing", paths.DockerRoot)
	}
	df := ns.sh("btrfs filesystem df " + paths.DataDir)
	if want := fmt.Sprintf("data %s, metadata %s", wantData, wantMeta); btrfs.Profiles(df) != want {
		t.Errorf("profile %q, want %q\n%s", btrfs.Profiles(df), want, df)
	}
	subs := ns.sh("btrfs subvolume list " + paths.DataDir)
	for _, sv := range paths.Subvolumes {
		if !strings.Contains(subs, "path "+sv+"\n") {
			t.Errorf("subvolume %s missing:\n%s", sv, subs)
		}
	}
	if mode := ns.sh("cat " + paths.ModeFile); strings.TrimSpace(mode) != "persistent" {
		t.Errorf("mode file says %q", mode)
	}
	var fsid string
	for _, d := range disks {
		names := d.partNames()
		if len(names) == 0 || names[len(names)-1] != paths.DataLabel {
			t.Errorf("%s partitions %q, want the last named %q", d.dev, names, paths.DataLabel)
		}
		b := btrfsOfPart(t, d.part(len(names)))
		if b == nil || b.Label != paths.DataLabel {
			t.Fatalf("%s: no btrfs labelled %s: %+v", d.part(len(names)), paths.DataLabel, b)
		}
		if fsid != "" && b.FSIDString() != fsid {
			t.Errorf("%s is in filesystem %s, others in %s", d.dev, b.FSIDString(), fsid)
		}
		fsid = b.FSIDString()
		if len(names) == 2 {
			if !strings.Contains(ns.sh("cat /proc/swaps"), d.part(1)) {
				t.Errorf("swap %s not active", d.part(1))
			}
		}
	}
	return fsid
}

func TestClaimOneDiskAndReboot(t *testing.T) {
	needRoot(t)
	for _, sector := range []int{512, 4096} {
		t.Run(fmt.Sprintf("sector-%d", sector), func(t *testing.T) {
			d := newDisk(t, 3<<10, sector, header)
			ns := newNamespace(t)
			ns.mustStart(d)
			fsid := checkClaimed(t, ns, "single", "dup", d)
			if names := d.partNames(); !cmp.Equal(names, []string{paths.SwapLabel, paths.DataLabel}) {
				t.Errorf("partitions %q", names)
			}
			ns.sh("echo kept > /etc/lightwhale-test && mkdir -p /home/op && echo mine > /home/op/file")

			// Rule 6: a second run is a no-op.
			out := ns.mustStart(d)
			if strings.Contains(out, "mkfs") || strings.Contains(out, "partition /dev") {
				t.Errorf("second run formatted:\n%s", out)
			}
			for _, p := range append([]string{paths.DataDir, paths.StateDir}, paths.OverlayDirs...) {
				if n := ns.mountCount(p); n != 1 {
					t.Errorf("after a second run %s is mounted %d times", p, n)
				}
			}

			// Reboot: the data and the UUID stay.
			ns.close()
			d.reboot(true)
			ns = newNamespace(t)
			out = ns.mustStart(d)
			if strings.Contains(out, "mkfs") {
				t.Errorf("reboot formatted again:\n%s", out)
			}
			if got := checkClaimed(t, ns, "single", "dup", d); got != fsid {
				t.Errorf("UUID changed across reboot: %s -> %s", fsid, got)
			}
			if got := ns.sh("cat /etc/lightwhale-test /home/op/file"); got != "kept\nmine\n" {
				t.Errorf("files after reboot: %q", got)
			}
			if got := ns.sh("cat /etc/lightwhale-test 2>&1"); !strings.Contains(ns.sh("cat /etc/lightwhale-test"), "kept") {
				t.Errorf("%q", got)
			}
		})
	}
}

func TestClaimRAID(t *testing.T) {
	needRoot(t)
	for _, tt := range []struct {
		n          int
		data, meta string
	}{{2, "raid1", "raid1"}, {3, "raid1", "raid1c3"}} {
		t.Run(fmt.Sprint(tt.n, "-disks"), func(t *testing.T) {
			var disks []*loopDisk
			for i := 0; i < tt.n; i++ {
				disks = append(disks, newDisk(t, 512, 512, header))
			}
			ns := newNamespace(t)
			ns.mustStart(disks...)
			fsid := checkClaimed(t, ns, tt.data, tt.meta, disks...)
			ns.sh("echo raid > /home/raidfile")
			ns.close()
			// Reboot without partx: our own BLKPG registration must find them.
			for _, d := range disks {
				d.reboot(false)
			}
			ns = newNamespace(t)
			ns.mustStart(disks...)
			if got := checkClaimed(t, ns, tt.data, tt.meta, disks...); got != fsid {
				t.Errorf("UUID changed: %s -> %s", fsid, got)
			}
			if got := ns.sh("cat /home/raidfile"); got != "raid\n" {
				t.Errorf("file after reboot: %q", got)
			}
		})
	}
}

// Rule 1: only the exact header at byte 0 of a whole disk is consent.
func TestNearMissesUntouched(t *testing.T) {
	needRoot(t)
	cases := map[string]func(d *loopDisk){
		"one-byte-short": func(d *loopDisk) { d.writeAt(0, paths.Consent[:len(paths.Consent)-1]+"\n") },
		"leading-space":  func(d *loopDisk) { d.writeAt(0, " "+header) },
		"upper-case":     func(d *loopDisk) { d.writeAt(0, strings.ToUpper(header)) },
		"offset-512":     func(d *loopDisk) { d.writeAt(512, header) },
		"offset-4096":    func(d *loopDisk) { d.writeAt(4096, header) },
		"boot2docker":    func(d *loopDisk) { d.writeAt(0, "boot2docker, please format-me\n") },
		"blank":          func(d *loopDisk) {},
		"inside-partition": func(d *loopDisk) {
			exec.Command("sh", "-c", "echo 'label: gpt\n,100M' | sfdisk -q "+d.file).Run()
			d.writeAt(1<<20, header)
		},
	}
	var disks []*loopDisk
	sums := map[*loopDisk][32]byte{}
	names := map[*loopDisk]string{}
	for name, mk := range cases {
		d := newDisk(t, 300, 512, "") // big enough to be claimed, were it mistaken
		mk(d)
		disks = append(disks, d)
		sums[d] = d.sum()
		names[d] = name
	}
	ns := newNamespace(t)
	out := ns.mustStart(disks...)
	if got := ns.fstype(paths.DataDir); got != "tmpfs" {
		t.Errorf("data filesystem %q, want tmpfs:\n%s", got, out)
	}
	ns.close()
	for _, d := range disks {
		if d.sum() != sums[d] {
			t.Errorf("%s: disk changed", names[d])
		}
	}
}

// Rule 2: never the boot medium, a busy disk, a partition.
func TestRefusesBootMediumBusyAndPartitions(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("xorriso"); err != nil {
		t.Skip("xorriso not installed: cannot make an ISO image")
	}
	// Our ISO written to a stick, then the header written over it.
	boot := newDisk(t, 512, 512, "")
	src := t.TempDir()
	if out, err := exec.Command("xorriso", "-as", "mkisofs", "-V", "LIGHTWHALE_TEST", "-o", boot.file+".iso", src).CombinedOutput(); err != nil {
		t.Fatalf("xorriso: %v: %s", err, out)
	}
	exec.Command("dd", "if="+boot.file+".iso", "of="+boot.file, "conv=notrunc", "status=none").Run()
	boot.writeAt(0, header)
	boot.reboot(false)

	// Swapped: a swap signature (at 4 KiB) survives a header at byte 0.
	swapped := newDisk(t, 512, 512, "")
	exec.Command("mkswap", swapped.dev).Run()
	swapped.writeAt(0, header)
	if out, err := exec.Command("swapon", swapped.dev).CombinedOutput(); err != nil {
		t.Fatalf("swapon: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("swapoff", swapped.dev).Run() })

	// Mounted: ext4 keeps its superblock at 1 KiB, clear of the header.
	mounted := newDisk(t, 512, 512, "")
	exec.Command("mkfs.ext4", "-q", mounted.dev).Run()
	mounted.writeAt(0, header)

	ns := newNamespace(t)
	ns.sh("mkdir -p /tmp/lw-mnt && mount -o ro,noload " + mounted.dev + " /tmp/lw-mnt")
	disks := []*loopDisk{boot, swapped, mounted}
	sums := map[*loopDisk][32]byte{}
	for _, d := range disks {
		sums[d] = d.sum()
	}
	out := ns.mustStart(disks...)
	for _, want := range []string{"boot medium", "swap", "mounted"} {
		if !strings.Contains(out, want) {
			t.Errorf("output does not say why a disk was refused (%q):\n%s", want, out)
		}
	}
	if got := ns.fstype(paths.DataDir); got != "tmpfs" {
		t.Errorf("data filesystem %q, want tmpfs", got)
	}
	ns.sh("umount /tmp/lw-mnt")
	ns.close()
	exec.Command("swapoff", swapped.dev).Run()
	for i, d := range disks {
		if d.sum() != sums[d] {
			t.Errorf("disk %d changed", i)
		}
	}

	// A partition named in --devices is refused outright.
	d := newDisk(t, 512, 512, "")
	exec.Command("sh", "-c", "echo 'label: gpt\n,100M' | sfdisk -q "+d.dev).Run()
	exec.Command("partx", "-a", d.dev).Run()
	ns = newNamespace(t)
	out, code := ns.lw("setup-persistence", "--devices", d.part(1))
	if code == 0 || !strings.Contains(out, "is a partition") {
		t.Errorf("partition in --devices: exit %d, output %q", code, out)
	}
}

// Rule 3: an existing data filesystem wins: a magic disk beside it joins it
// (issue 16) instead of becoming a second filesystem.
func TestExistingFilesystemWins(t *testing.T) {
	needRoot(t)
	a := newDisk(t, 512, 512, header)
	ns := newNamespace(t)
	ns.mustStart(a)
	fsid := btrfsOfPart(t, a.data()).FSIDString()
	ns.close()
	b := newDisk(t, 512, 512, header)
	a.reboot(true)
	ns = newNamespace(t)
	out := ns.mustStart(a, b)
	if !strings.Contains(out, "magic disk "+b.dev+" will join") || !strings.Contains(out, "btrfs device add "+b.data()) || strings.Contains(out, "mkfs") {
		t.Errorf("the magic disk did not join:\n%s", out)
	}
	ns.waitRebuilt(t, time.Minute)
	if got := checkClaimed(t, ns, "raid1", "raid1", a, b); got != fsid {
		t.Errorf("the data filesystem changed: %s -> %s", fsid, got)
	}
}

// Rule 8: two data filesystems: refuse, stay volatile, touch neither.
func TestTwoDataFilesystems(t *testing.T) {
	needRoot(t)
	a := newDisk(t, 512, 512, header)
	b := newDisk(t, 512, 512, header)
	for _, d := range []*loopDisk{a, b} {
		ns := newNamespace(t)
		ns.mustStart(d)
		ns.close()
	}
	a.reboot(true)
	b.reboot(true)
	sa, sb := a.sum(), b.sum()
	fa, fb := btrfsOfPart(t, a.data()).FSIDString(), btrfsOfPart(t, b.data()).FSIDString()
	ns := newNamespace(t)
	out, code := ns.lw("setup-persistence", "--devices", a.dev+","+b.dev)
	if code != 0 {
		t.Errorf("exit %d", code)
	}
	if !strings.Contains(out, fa) || !strings.Contains(out, fb) || !strings.Contains(out, "refusing to choose") {
		t.Errorf("error does not name both filesystems %s and %s:\n%s", fa, fb, out)
	}
	if got := ns.fstype(paths.DataDir); got != "tmpfs" {
		t.Errorf("data filesystem %q, want tmpfs", got)
	}
	ns.close()
	if a.sum() != sa || b.sum() != sb {
		t.Error("a data filesystem was written")
	}
}

// Rule 4: a power cut after any step, then a normal boot, ends in a complete
// claim; after the commit the UUID never changes.
func TestCrashAfterEveryStep(t *testing.T) {
	needRoot(t)
	// 2 GiB disks, so the claim has swap steps too; the dry run tells how
	// many steps there are, and the test crashes after each.
	pa, pb := newDisk(t, 2<<10, 512, header), newDisk(t, 2<<10, 512, header)
	ns := newNamespace(t)
	plan, _ := ns.lw("setup-persistence", "--dry-run", "--devices", pa.dev+","+pb.dev+","+pa.dev)
	steps := strings.Count(plan, ". ")
	ns.close()
	if steps < 17 {
		t.Fatalf("dry run shows %d steps:\n%s", steps, plan)
	}
	for n := 1; n < steps; n++ {
		t.Run(fmt.Sprint("after-step-", n), func(t *testing.T) {
			a := newDisk(t, 2<<10, 512, header)
			b := newDisk(t, 2<<10, 512, header)
			ns := newNamespace(t)
			out, code := ns.lw("setup-persistence", "--crash-after", fmt.Sprint(n), "--devices", a.dev+","+b.dev)
			if code == 0 {
				t.Fatalf("run with --crash-after %d did not crash:\n%s", n, out)
			}
			ns.close()
			a.reboot(true)
			b.reboot(true)
			committed := ""
			if fs := btrfsOfPart(t, a.data()); fs != nil && fs.Label == paths.DataLabel {
				committed = fs.FSIDString()
			}
			ns = newNamespace(t)
			ns.mustStart(a, b)
			fsid := checkClaimed(t, ns, "raid1", "raid1", a, b)
			if committed != "" && fsid != committed {
				t.Errorf("the committed filesystem %s was formatted again (now %s)", committed, fsid)
			}
		})
	}
}

// Rule 4 with kill -9 at varied moments.
func TestKillAtRandomMoments(t *testing.T) {
	needRoot(t)
	for _, delay := range []time.Duration{2, 10, 30, 60, 100, 150, 250} {
		t.Run(fmt.Sprint(int(delay), "ms"), func(t *testing.T) {
			a := newDisk(t, 512, 512, header)
			b := newDisk(t, 512, 512, header)
			ns := newNamespace(t)
			cmd := exec.Command("nsenter", "-t", fmt.Sprint(ns.pid), "-m", "--", binary, "setup-persistence", "--devices", a.dev+","+b.dev)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(delay * time.Millisecond)
			cmd.Process.Kill()
			cmd.Wait()
			ns.close()
			a.reboot(true)
			b.reboot(true)
			ns = newNamespace(t)
			ns.mustStart(a, b)
			checkClaimed(t, ns, "raid1", "raid1", a, b)
		})
	}
}

// Rule 5: two runs at once: one claims, the other waits and finds it done.
func TestConcurrentRuns(t *testing.T) {
	needRoot(t)
	a := newDisk(t, 512, 512, header)
	ns := newNamespace(t)
	var wg sync.WaitGroup
	outs := make([]string, 2)
	codes := make([]int, 2)
	for i := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], codes[i] = ns.lw("setup-persistence", "--devices", a.dev)
		}()
	}
	wg.Wait()
	mkfs := 0
	for i := range outs {
		if codes[i] != 0 {
			t.Errorf("run %d exited %d:\n%s", i, codes[i], outs[i])
		}
		mkfs += strings.Count(outs[i], "mkfs.btrfs")
	}
	if mkfs != 1 {
		t.Errorf("mkfs ran %d times:\n%s\n---\n%s", mkfs, outs[0], outs[1])
	}
	checkClaimed(t, ns, "single", "dup", a)
	for _, p := range append([]string{paths.DataDir}, paths.OverlayDirs...) {
		if n := ns.mountCount(p); n != 1 {
			t.Errorf("%s mounted %d times", p, n)
		}
	}
}

// Rule 7: a RAID1 member missing: bounded wait, degraded mount, loud warning,
// survivor never formatted; too many missing: volatile, nothing touched.
func TestDegraded(t *testing.T) {
	needRoot(t)
	a := newDisk(t, 512, 512, header)
	b := newDisk(t, 512, 512, header)
	ns := newNamespace(t)
	ns.mustStart(a, b)
	fsid := checkClaimed(t, ns, "raid1", "raid1", a, b)
	ns.sh("echo survives > /home/degraded-test; sync")
	ns.close()
	b.detach()
	exec.Command("btrfs", "device", "scan", "--forget").Run()
	a.reboot(true)
	ns = newNamespace(t)
	began := time.Now()
	out, code := ns.lw("setup-persistence", "--wait", "2s", "--devices", a.dev)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if waited := time.Since(began); waited < 2*time.Second {
		t.Errorf("did not wait for the missing member (%s)", waited)
	}
	if !strings.Contains(out, "DEGRADED") {
		t.Errorf("no loud warning:\n%s", out)
	}
	if got := ns.sh("cat /home/degraded-test"); got != "survives\n" {
		t.Errorf("data on the degraded filesystem: %q", got)
	}
	st, _ := ns.lw("setup-persistence", "status", "--devices", a.dev)
	if !strings.Contains(st, "DEGRADED") || !strings.Contains(st, "WARNING") {
		t.Errorf("status does not warn:\n%s", st)
	}
	if got := btrfsOfPart(t, a.data()).FSIDString(); got != fsid {
		t.Errorf("survivor reformatted: %s -> %s", fsid, got)
	}
	if mode := ns.sh("cat " + paths.ModeFile); mode != "degraded\n" {
		t.Errorf("mode %q", mode)
	}
	ns.sh("echo written-while-degraded > /home/degraded-2; sync")
	ns.close()

	// The disk comes back: a normal mount, and redundancy is restored.
	b.attach()
	a.reboot(true)
	exec.Command("partx", "-a", b.dev).Run()
	ns = newNamespace(t)
	out = ns.mustStart(a, b)
	if strings.Contains(out, "DEGRADED") || !strings.Contains(out, "restore redundancy") {
		t.Errorf("rejoin: want a normal mount that restores redundancy:\n%s", out)
	}
	for i := 0; i < 100 && strings.Contains(ns.sh("btrfs balance status "+paths.DataDir), "running"); i++ {
		time.Sleep(200 * time.Millisecond)
	}
	df := ns.sh("btrfs filesystem df " + paths.DataDir)
	if strings.Contains(df, "Data, single") || strings.Contains(df, "Metadata, single") {
		t.Errorf("single-copy chunks remain after the rejoin:\n%s", df)
	}
	t.Logf("after rejoin:\n%s\n%s", out, df)
	if got := ns.sh("cat /home/degraded-test /home/degraded-2"); got != "survives\nwritten-while-degraded\n" {
		t.Errorf("data after rejoin: %q", got)
	}
	ns.close()

	// Three devices, two missing: too many.
	c := []*loopDisk{newDisk(t, 512, 512, header), newDisk(t, 512, 512, header), newDisk(t, 512, 512, header)}
	ns = newNamespace(t)
	ns.mustStart(c...)
	ns.close()
	c[1].detach()
	c[2].detach()
	exec.Command("btrfs", "device", "scan", "--forget").Run()
	c[0].reboot(true)
	before := c[0].sum()
	ns = newNamespace(t)
	out, _ = ns.lw("setup-persistence", "--wait", "1s", "--devices", c[0].dev)
	if !strings.Contains(out, "too many are missing") {
		t.Errorf("no error for two missing members:\n%s", out)
	}
	if got := ns.fstype(paths.DataDir); got != "tmpfs" {
		t.Errorf("data filesystem %q, want tmpfs", got)
	}
	ns.close()
	if c[0].sum() != before {
		t.Error("the surviving member was written")
	}
}

func TestTooSmallRefused(t *testing.T) {
	needRoot(t)
	d := newDisk(t, 200, 512, header)
	before := d.sum()
	ns := newNamespace(t)
	out := ns.mustStart(d)
	if !strings.Contains(out, "too small") {
		t.Errorf("no too-small message:\n%s", out)
	}
	ns.close()
	if d.sum() != before {
		t.Error("a too-small disk was written")
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	needRoot(t)
	d := newDisk(t, 512, 512, header)
	before := d.sum()
	ns := newNamespace(t)
	out, code := ns.lw("setup-persistence", "--dry-run", "--devices", d.dev)
	if code != 0 || !strings.Contains(out, "mkfs.btrfs") || !strings.Contains(out, "nothing was written") {
		t.Errorf("dry run: exit %d:\n%s", code, out)
	}
	if got := ns.fstype(paths.DataDir); got != "" {
		t.Errorf("dry run mounted %s", got)
	}
	ns.close()
	if d.sum() != before {
		t.Error("dry run wrote to the disk")
	}
}

func TestEnable(t *testing.T) {
	needRoot(t)
	ns := newNamespace(t)

	blank := newDisk(t, 512, 512, "")
	out, code := ns.lw("setup-persistence", "enable", "--yes", blank.dev)
	if code != 0 || !strings.Contains(out, "Reboot") {
		t.Errorf("enable blank: exit %d: %s", code, out)
	}
	if head, _ := exec.Command("head", "-c", "28", blank.dev).Output(); string(head) != header {
		t.Errorf("header not written: %q", head)
	}

	// Recognisable content: refused without --force, and nothing changes.
	ext := newDisk(t, 512, 512, "")
	exec.Command("mkfs.ext4", "-q", ext.dev).Run()
	before := ext.sum()
	out, code = ns.lw("setup-persistence", "enable", "--yes", ext.dev)
	if code == 0 || !strings.Contains(out, "ext2/3/4") || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Errorf("enable ext4 without --force: exit %d: %q", code, out)
	}
	if ext.sum() != before {
		t.Error("refused enable changed the disk")
	}
	// Not confirmed: nothing changes.
	cmd := exec.Command("nsenter", "-t", fmt.Sprint(ns.pid), "-m", "--", binary, "setup-persistence", "enable", "--force", ext.dev)
	cmd.Stdin = strings.NewReader("no\n")
	if b, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(b), "aborted") {
		t.Errorf("unconfirmed enable: %v: %s", err, b)
	}
	if ext.sum() != before {
		t.Error("unconfirmed enable changed the disk")
	}
	out, code = ns.lw("setup-persistence", "enable", "--yes", "--force", ext.dev)
	if code != 0 {
		t.Errorf("enable --force: exit %d: %s", code, out)
	}

	// Mounted: refused even with --force.
	m := newDisk(t, 512, 512, "")
	exec.Command("mkfs.ext4", "-q", m.dev).Run()
	ns.sh("mkdir -p /tmp/lw-en && mount " + m.dev + " /tmp/lw-en")
	out, code = ns.lw("setup-persistence", "enable", "--yes", "--force", m.dev)
	if code == 0 || !strings.Contains(out, "mounted") {
		t.Errorf("enable mounted: exit %d: %s", code, out)
	}
	ns.sh("umount /tmp/lw-en")

	// Bad paths.
	for _, bad := range []string{"/dev/does-not-exist", "sdb", "/etc/passwd"} {
		if out, code := ns.lw("setup-persistence", "enable", "--yes", bad); code == 0 || strings.Count(strings.TrimSpace(out), "\n") != 0 {
			t.Errorf("enable %s: exit %d, %q (want a one-line error)", bad, code, out)
		}
	}

	// The header enable wrote is claimed by the next run.
	ns2 := newNamespace(t)
	ns2.mustStart(blank)
	checkClaimed(t, ns2, "single", "dup", blank)
}

func TestVolatile(t *testing.T) {
	needRoot(t)
	d := newDisk(t, 512, 512, "")
	ns := newNamespace(t)
	ns.mustStart(d)
	if got := ns.fstype(paths.DataDir); got != "tmpfs" {
		t.Errorf("%s is %q, want tmpfs", paths.DataDir, got)
	}
	for _, dir := range paths.OverlayDirs {
		if got := ns.fstype(dir); got != "overlay" {
			t.Errorf("%s is %q, want overlay", dir, got)
		}
	}
	if out := ns.sh("echo x > /etc/volatile-test && cat " + paths.UpperDir("/etc") + "/volatile-test"); out != "x\n" {
		t.Errorf("write to /etc did not land in the upper layer: %q", out)
	}
	if mode := ns.sh("cat " + paths.ModeFile); mode != "volatile\n" {
		t.Errorf("mode %q", mode)
	}
	st, _ := ns.lw("setup-persistence", "status")
	if !strings.Contains(st, "volatile") {
		t.Errorf("status:\n%s", st)
	}
	// stop unmounts everything it mounted.
	if out, code := ns.lw("setup-persistence", "stop"); code != 0 {
		t.Errorf("stop: exit %d:\n%s", code, out)
	}
	for _, p := range append([]string{paths.DataDir}, paths.OverlayDirs...) {
		if n := ns.mountCount(p); n != 0 {
			t.Errorf("after stop %s still mounted", p)
		}
	}
}

// Re-enabling a claimed disk means "format it again": a power cut right after
// the new partition table must not bring the old filesystem back to life
// (the same layout puts its superblock exactly where the new partition starts).
func TestReenableNeverResurrectsOldFilesystem(t *testing.T) {
	needRoot(t)
	d := newDisk(t, 512, 512, header)
	ns := newNamespace(t)
	ns.mustStart(d)
	old := btrfsOfPart(t, d.data()).FSIDString()
	ns.sh("echo old > /home/old-file")
	ns.close()
	d.reboot(true)

	ns = newNamespace(t)
	if out, code := ns.lw("setup-persistence", "enable", "--yes", "--force", d.dev); code != 0 {
		t.Fatalf("enable --force: %d %s", code, out)
	}
	ns.close()
	d.reboot(true)
	ns = newNamespace(t)
	// Crash right after the partition table is written (steps 1-2).
	ns.lw("setup-persistence", "--crash-after", "2", "--devices", d.dev)
	ns.close()
	d.reboot(true)
	ns = newNamespace(t)
	ns.mustStart(d)
	if now := checkClaimed(t, ns, "single", "dup", d); now == old {
		t.Errorf("the old filesystem %s came back instead of a new one", old)
	}
	if got := ns.sh("cat /home/old-file 2>/dev/null"); got != "" {
		t.Errorf("old data visible after re-enable: %q", got)
	}
}
