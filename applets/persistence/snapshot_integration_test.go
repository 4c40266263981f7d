package persistence

import (
	"fmt"
	"strings"
	"testing"

	"lightwhale/internal/paths"
)

// snapMachine is a claimed loop disk whose state holds version v1 of an
// /etc file, a /home file and a file in Docker's data, snapshot "before",
// then version v2 of the same files.
func snapMachine(t *testing.T) (*loopDisk, *namespace) {
	t.Helper()
	d := newDisk(t, 3<<10, 512, header)
	ns := newNamespace(t)
	ns.mustStart(d)
	ns.sh("echo v1 > /etc/lw-snap && mkdir -p /home/op " + paths.DockerRoot + " && echo v1 > /home/op/f && echo v1 > " + paths.DockerRoot + "/lw-snap")
	if out, code := ns.lw("setup-persistence", "snapshot", "before"); code != 0 || out != "snapshot before taken\n" {
		t.Fatalf("snapshot before: exit %d: %s", code, out)
	}
	ns.sh("echo v2 > /etc/lw-snap && rm /home/op/f && echo v2 > /home/op/g && echo v2 > " + paths.DockerRoot + "/lw-snap")
	return d, ns
}

// snapState reads the files snapMachine writes, "-" for a missing one.
func (ns *namespace) snapState() string {
	return strings.TrimSpace(ns.sh("for f in /etc/lw-snap /home/op/f /home/op/g " + paths.DockerRoot + "/lw-snap; do cat $f 2>/dev/null || echo -; done | tr '\\n' ' '"))
}

const (
	stateV1 = "v1 v1 - v1"
	stateV2 = "v2 - v2 v2"
)

// powerCut ends the namespace and reattaches the disk, as a reboot would,
// and boots again.
func powerCut(t *testing.T, d *loopDisk, ns *namespace) (*namespace, string) {
	t.Helper()
	ns.close()
	d.reboot(true)
	ns = newNamespace(t)
	return ns, ns.mustStart(d)
}

func TestSnapshotRollbackAndUndo(t *testing.T) {
	needRoot(t)
	d, ns := snapMachine(t)

	// Bad input: one line, non-zero, nothing made.
	for _, args := range [][]string{
		{"snapshot", "before"},    // exists
		{"snapshot", "auto-mine"}, // reserved
		{"snapshot", "../escape"},
		{"snapshot", "a b"},
		{"snapshot", "x", "y"},
		{"rollback", "nosuch"},
		{"rollback", "../" + paths.Subvolumes[1]},
		{"forget", "nosuch"},
		{"snapshots", "--keep", "0"},
	} {
		out, code := ns.lw(append([]string{"setup-persistence"}, args...)...)
		if code == 0 || strings.Count(strings.TrimSpace(out), "\n") != 0 {
			t.Errorf("setup-persistence %q: exit %d, output %q; want one line and a failure", args, code, out)
		}
	}
	list, _ := ns.lw("setup-persistence", "snapshots")
	if !strings.Contains(list, "\nbefore ") || strings.Contains(list, "mine") || strings.Contains(list, "escape") || strings.Contains(list, "pending") {
		t.Fatalf("snapshots after bad input:\n%s", list)
	}
	if !strings.Contains(list, "Docker's data") {
		t.Errorf("snapshots does not say what a snapshot holds:\n%s", list)
	}

	out, code := ns.lw("setup-persistence", "rollback", "before")
	if code != 0 || !strings.Contains(out, "at the next boot") {
		t.Fatalf("rollback before: exit %d: %s", code, out)
	}
	if got := ns.snapState(); got != stateV2 {
		t.Fatalf("the state changed before the reboot: %q", got)
	}
	if out, code := ns.lw("setup-persistence", "forget", "before"); code == 0 {
		t.Errorf("forget of the pending rollback's snapshot succeeded: %s", out)
	}

	ns, out = powerCut(t, d, ns)
	if !strings.Contains(out, "the state is snapshot before now") {
		t.Errorf("boot did not say it rolled back:\n%s", out)
	}
	if got := ns.snapState(); got != stateV1 {
		t.Fatalf("after the rollback the state is %q; want %q", got, stateV1)
	}
	list, _ = ns.lw("setup-persistence", "snapshots")
	var pre string
	for _, l := range strings.Split(list, "\n") {
		if f := strings.Fields(l); len(f) > 0 && strings.HasPrefix(f[0], "auto-before-rollback-") {
			pre = f[0]
		}
	}
	if pre == "" || strings.Contains(list, "pending") {
		t.Fatalf("snapshots after the rollback:\n%s", list)
	}
	// Oldest first, by when each was taken (not by name).
	if strings.Index(list, "\nbefore ") > strings.Index(list, "\n"+pre) {
		t.Errorf("snapshots are not listed oldest first:\n%s", list)
	}

	// Undo: back to the state the rollback replaced.
	if out, code := ns.lw("setup-persistence", "rollback", pre); code != 0 {
		t.Fatalf("rollback %s: exit %d: %s", pre, code, out)
	}
	ns, _ = powerCut(t, d, ns)
	if got := ns.snapState(); got != stateV2 {
		t.Fatalf("after undoing the rollback the state is %q; want %q", got, stateV2)
	}

	// A third boot with nothing pending changes nothing.
	ns, out = powerCut(t, d, ns)
	if got := ns.snapState(); got != stateV2 || strings.Contains(out, "is snapshot") {
		t.Fatalf("a boot with nothing pending: state %q, output:\n%s", got, out)
	}
	// Two automatic snapshots now; keeping one prunes the older.
	list, _ = ns.lw("setup-persistence", "snapshots", "--keep", "1")
	if n := strings.Count(list, "\nauto-before-rollback-"); n != 1 || !strings.Contains(list, "the newest 1") {
		t.Errorf("snapshots --keep 1 left %d automatic snapshots:\n%s", n, list)
	}
	if out, code := ns.lw("setup-persistence", "forget", "before"); code != 0 || !strings.Contains(out, "deleted") {
		t.Fatalf("forget before: exit %d: %s", code, out)
	}
	if list, _ := ns.lw("setup-persistence", "snapshots"); strings.Contains(list, "\nbefore ") {
		t.Fatalf("forgotten snapshot still listed:\n%s", list)
	}
}

// A power cut at each stage of a rollback at boot: the next boot finishes
// it, and the state it replaced is kept whole as the automatic snapshot.
func TestRollbackPowerCutAtEachStage(t *testing.T) {
	needRoot(t)
	top := "/tmp/lw-top"
	state := top + "/" + paths.Subvolumes[1]
	snaps := top + "/" + paths.Subvolumes[2]
	// The stages applyRollback goes through, done by hand up to the cut.
	stages := []string{
		"",
		"btrfs subvolume snapshot -r $S $P",
		"btrfs subvolume snapshot -r $S $P && btrfs subvolume snapshot $N $S.rollback-in",
		"btrfs subvolume snapshot -r $S $P && btrfs subvolume snapshot $N $S.rollback-in && mv $S $S.rollback-out",
		"btrfs subvolume snapshot -r $S $P && btrfs subvolume snapshot $N $S.rollback-in && mv $S $S.rollback-out && mv $S.rollback-in $S",
	}
	for i, stage := range stages {
		t.Run(fmt.Sprintf("after-stage-%d", i), func(t *testing.T) {
			d, ns := snapMachine(t)
			if out, code := ns.lw("setup-persistence", "rollback", "before"); code != 0 {
				t.Fatalf("rollback: %d %s", code, out)
			}
			marker := strings.Fields(ns.sh("mkdir -p " + top + " && mount -o subvolid=5 $(awk '$2 == \"" + paths.DataDir + "\" {print $1}' /proc/mounts) " + top + " && cat " + snaps + "/.rollback"))
			if len(marker) != 2 || marker[0] != "before" {
				t.Fatalf("pending rollback record %q", marker)
			}
			pre := marker[1]
			script := "S=" + state + " N=" + snaps + "/before P=" + snaps + "/" + pre + " && " + stage
			if stage != "" {
				if out, code := ns.exec("sh", "-c", script); code != 0 {
					t.Fatalf("stage by hand: %s", out)
				}
			}
			ns, out := powerCut(t, d, ns)
			if got := ns.snapState(); got != stateV1 {
				t.Fatalf("after the cut and a boot the state is %q; want %q\n%s", got, stateV1, out)
			}
			left := ns.sh("exec 2>&1; " + "mkdir -p " + top + " && mount -o subvolid=5 $(awk '$2 == \"" + paths.DataDir + "\" {print $1}' /proc/mounts) " + top + " && ls -a " + top + " " + snaps + " && cat " + snaps + "/" + pre + "/overlay/upper/etc/lw-snap")
			leftover := false
			for _, l := range strings.Fields(left) {
				leftover = leftover || l == ".rollback" || strings.HasSuffix(l, ".rollback-in") || strings.HasSuffix(l, ".rollback-out")
			}
			if leftover || !strings.HasSuffix(strings.TrimSpace(left), "v2") {
				t.Fatalf("after the boot (want no leftovers, and %s holding v2):\n%s", pre, left)
			}
		})
	}
}
