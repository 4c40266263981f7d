package persistence

// The applier against internal/host/hostfake: no root, no loop devices. A
// whole claim runs on sparse image files; then the same claim is broken at
// every changing call in turn, and the test checks what is left, that the
// machine still comes up, and that the next boot finishes the claim without
// ever formatting a committed filesystem.

import (
	"bytes"
	"strings"
	"testing"

	"lightwhale/internal/cli"
	"lightwhale/internal/host"
	"lightwhale/internal/host/hostfake"
	"lightwhale/internal/paths"
	"lightwhale/internal/probe"
)

// boot scans the fake, plans and applies, as S11persistence start does.
func boot(t *testing.T, h *hostfake.Fake) (code int, out string) {
	t.Helper()
	disks, err := scan(h, nil)
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	var o, e bytes.Buffer
	code = newApplier(h, &o, &e).run(Decide(disks, seqGUID()))
	return code, o.String() + e.String()
}

func twoMagicDisks(t *testing.T) *hostfake.Fake {
	h := hostfake.New(t.TempDir())
	h.AddDisk("sda", 3<<10, paths.Consent+"\n")
	h.AddDisk("sdb", 3<<10, paths.Consent+"\n")
	return h
}

func fstypeAt(h *hostfake.Fake, point string) string {
	m, ok := host.MountedAt(h, point)
	if !ok {
		return ""
	}
	return m.FSType
}

func modeOf(h *hostfake.Fake) string {
	b, _ := h.ReadFile(paths.ModeFile)
	return strings.TrimSpace(string(b))
}

// committed returns the FSID of the data filesystem labelled lightwhale-data
// on every data partition of h (with their GPT names committed too), or "".
func committed(t *testing.T, h *hostfake.Fake) string {
	t.Helper()
	disks, err := scan(h, nil)
	if err != nil {
		t.Fatal(err)
	}
	fsid := ""
	for _, d := range disks {
		if len(d.Parts) != 2 || d.Parts[1].Name != paths.DataLabel || d.Parts[1].Btrfs == nil || d.Parts[1].Btrfs.Label != paths.DataLabel {
			return ""
		}
		if fsid != "" && d.Parts[1].Btrfs.FSIDString() != fsid {
			t.Fatalf("data partitions in two filesystems")
		}
		fsid = d.Parts[1].Btrfs.FSIDString()
	}
	return fsid
}

// labelled returns the FSID of a filesystem labelled lightwhale-data on any data partition.
func labelled(h *hostfake.Fake) string {
	disks, _ := scan(h, nil)
	for _, d := range disks {
		for _, p := range d.Parts {
			if p.Btrfs != nil && p.Btrfs.Label == paths.DataLabel {
				return p.Btrfs.FSIDString()
			}
		}
	}
	return ""
}

func checkPersistent(t *testing.T, h *hostfake.Fake) {
	t.Helper()
	if got := fstypeAt(h, paths.DataDir); got != "btrfs" {
		t.Errorf("%s is %q, want btrfs", paths.DataDir, got)
	}
	if got := fstypeAt(h, paths.StateDir); got != "btrfs" {
		t.Errorf("%s is %q, want btrfs", paths.StateDir, got)
	}
	for _, dir := range paths.OverlayDirs {
		if got := fstypeAt(h, dir); got != "overlay" {
			t.Errorf("%s is %q, want overlay", dir, got)
		}
	}
	if m := modeOf(h); m != "persistent" {
		t.Errorf("mode %q, want persistent", m)
	}
	for _, sw := range []string{"sda1", "sdb1"} {
		if !host.SwapActive(h, h.Dir+"/"+sw) {
			t.Errorf("swap %s not active", sw)
		}
	}
	if l := h.Locked(); len(l) > 0 {
		t.Errorf("disk locks still held: %v", l)
	}
	if committed(t, h) == "" {
		t.Errorf("claim not committed on the disks")
	}
}

func TestApplyClaimOnFake(t *testing.T) {
	h := twoMagicDisks(t)
	if code, out := boot(t, h); code != 0 {
		t.Fatalf("claim exited %d:\n%s", code, out)
	}
	checkPersistent(t, h)
	fsid := committed(t, h)

	// A second run changes nothing on the disks and mounts nothing twice.
	h.Log = nil
	if code, out := boot(t, h); code != 0 {
		t.Fatalf("second run exited %d:\n%s", code, out)
	}
	for _, op := range h.Log {
		if strings.HasPrefix(op, "write "+h.Dir) || strings.HasPrefix(op, "run mk") || strings.HasPrefix(op, "mount ") {
			t.Errorf("second run did %q", op)
		}
	}
	// A reboot mounts the same filesystem.
	h.Reboot()
	if code, out := boot(t, h); code != 0 {
		t.Fatalf("after reboot exited %d:\n%s", code, out)
	}
	checkPersistent(t, h)
	if got := committed(t, h); got != fsid {
		t.Errorf("filesystem changed across reboot: %s -> %s", fsid, got)
	}
}

// diskWrite tells whether a logged call writes to a disk.
func diskWrite(h *hostfake.Fake, op string) bool {
	return strings.HasPrefix(op, "write "+h.Dir) || strings.HasPrefix(op, "run mk") ||
		strings.HasPrefix(op, "run btrfs subvolume") || strings.HasPrefix(op, "run btrfs filesystem label")
}

// TestApplyFailsAtEveryCall breaks a run at each changing call in turn (a
// tool, a write, a mount, a lock...), then reboots and runs again: a claim of
// two magic disks, and the boot of an existing claim.
func TestApplyFailsAtEveryCall(t *testing.T) {
	claimed := func(t *testing.T) *hostfake.Fake {
		h := twoMagicDisks(t)
		if code, out := boot(t, h); code != 0 {
			t.Fatalf("claim exited %d:\n%s", code, out)
		}
		h.Reboot()
		return h
	}
	for _, tc := range []struct {
		name     string
		setup    func(*testing.T) *hostfake.Fake
		minCalls int
	}{
		{"claim", twoMagicDisks, 60},
		{"existing", claimed, 20},
	} {
		t.Run(tc.name, func(t *testing.T) { failAtEveryCall(t, tc.setup, tc.minCalls) })
	}
}

func failAtEveryCall(t *testing.T, setup func(*testing.T) *hostfake.Fake, minCalls int) {
	ref := setup(t)
	if code, out := boot(t, ref); code != 0 {
		t.Fatalf("reference run exited %d:\n%s", code, out)
	}
	calls := ref.Log
	if len(calls) < minCalls {
		t.Fatalf("only %d changing calls: %q", len(calls), calls)
	}
	for n := 1; n <= len(calls); n++ {
		h := setup(t)
		h.FailAt = n
		code, out := boot(t, h)
		failed := h.Log[n-1]
		if !strings.HasSuffix(failed, "(FAILED)") {
			t.Fatalf("call %d: the run took another path: %q vs reference %q", n, failed, calls[n-1])
		}
		after := h.Log[n:]
		committedBefore := labelled(h) != ""

		// The machine still comes up: a data filesystem, a mode (unless
		// recording it is what failed).
		modeFailed := strings.Contains(failed, paths.RunDir+" ") || strings.Contains(failed, paths.ModeFile)
		if fstypeAt(h, paths.DataDir) == "" || (modeOf(h) == "" && !modeFailed) {
			t.Errorf("call %d (%s): no data filesystem or mode after the failure:\n%s", n, failed, out)
		}
		scanFailed := strings.Contains(failed, "btrfs device scan")
		if scanFailed {
			if code != 0 {
				t.Errorf("call %d (%s): a failed device scan is harmless, exit %d", n, failed, code)
			}
		} else if code != 1 {
			t.Errorf("call %d (%s): exit %d, want 1:\n%s", n, failed, code, out)
		}
		if !scanFailed && !strings.Contains(out, "***") {
			t.Errorf("call %d (%s): the failure was not reported loudly:\n%s", n, failed, out)
		}
		if modeOf(h) == "volatile" {
			// A fatal failure: nothing more is written to any disk.
			for _, op := range after {
				if diskWrite(h, op) {
					t.Errorf("call %d (%s): after falling back, still %q", n, failed, op)
				}
			}
			if fstypeAt(h, paths.DataDir) != "tmpfs" || fstypeAt(h, paths.StateDir) != "" {
				t.Errorf("call %d (%s): volatile but %s is %q", n, failed, paths.DataDir, fstypeAt(h, paths.DataDir))
			}
		}
		if l := h.Locked(); len(l) > 0 {
			t.Errorf("call %d (%s): disk locks still held: %v", n, failed, l)
		}
		fsidBefore := labelled(h)

		// The next boot finishes the claim, from wherever it stopped.
		h.Reboot()
		code, out = boot(t, h)
		if code != 0 {
			t.Errorf("call %d (%s): next boot exited %d:\n%s", n, failed, code, out)
			continue
		}
		checkPersistent(t, h)
		if committedBefore && committed(t, h) != fsidBefore {
			t.Errorf("call %d (%s): a committed filesystem was formatted again (%s -> %s)", n, failed, fsidBefore, committed(t, h))
		}
		if committedBefore {
			for _, op := range h.Log {
				if strings.HasPrefix(op, "run mk") {
					t.Errorf("call %d (%s): next boot ran %q on a committed claim", n, failed, op)
				}
			}
		}
	}
}

// TestSwapActiveUnderAnotherName is the EBUSY bug: a swap partition
// listed in /proc/swaps under another name (activated from another mount
// namespace) is recognised by device number, not swapped on twice.
func TestSwapActiveUnderAnotherName(t *testing.T) {
	h := twoMagicDisks(t)
	if code, out := boot(t, h); code != 0 {
		t.Fatalf("claim exited %d:\n%s", code, out)
	}
	h.Reboot()
	h.Log = nil
	// Partitions are registered again at boot; register them, then list
	// sda1 as active under a name this namespace does not have.
	disks, _ := scan(h, nil)
	for _, d := range disks {
		if _, err := (registerStep{Disk: d, Table: d.Table}).Apply(&env{h: h}); err != nil {
			t.Fatal(err)
		}
	}
	h.ActivateSwapAs(h.Dir+"/sda1", "/dev/other-namespace/sda1")
	code, out := boot(t, h)
	if code != 0 {
		t.Fatalf("exit %d (swapon EBUSY?):\n%s", code, out)
	}
	for _, op := range h.Log {
		if strings.HasPrefix(op, "swapon "+h.Dir+"/sda1") {
			t.Errorf("swapon of an active swap: %q", op)
		}
	}
}

// TestBusyByDeviceNumber: a partition mounted (mountinfo names it by device
// number) makes its magic disk busy, so it is not claimed.
func TestBusyByDeviceNumber(t *testing.T) {
	h := hostfake.New(t.TempDir())
	d := h.AddDisk("sda", 3<<10, paths.Consent+"\n")
	if err := h.AddPartition(d.Path, 1, 1<<20, 1<<20); err != nil {
		t.Fatal(err)
	}
	h.ActivateSwapAs(h.Dir+"/sda1", "/somewhere/else")
	if why := h.Busy(d); !strings.Contains(why, "sda1 is in use as swap") {
		t.Errorf("Busy = %q", why)
	}
	code, out := boot(t, h)
	if code != 0 || !strings.Contains(out, "not claimed: sda1 is in use as swap") || modeOf(h) != "volatile" {
		t.Errorf("exit %d, mode %q:\n%s", code, modeOf(h), out)
	}
	head, _ := h.ReadAt(d.Path, 0, 64)
	if !probe.HasMagic(head) {
		t.Errorf("busy disk was written")
	}
}

// TestStop unmounts innermost first and switches our swap off.
func TestStop(t *testing.T) {
	h := twoMagicDisks(t)
	if code, out := boot(t, h); code != 0 {
		t.Fatalf("claim exited %d:\n%s", code, out)
	}
	var o bytes.Buffer
	if err := stop(h, cli.IO{Out: &o, Err: &o}); err != nil {
		t.Fatalf("stop: %v\n%s", err, o.String())
	}
	for _, p := range append([]string{paths.DataDir, paths.StateDir}, paths.OverlayDirs...) {
		if fstypeAt(h, p) != "" {
			t.Errorf("%s still mounted", p)
		}
	}
	if sw, _ := h.Swaps(); len(sw) != 0 {
		t.Errorf("swaps still active: %v", sw)
	}
	if i, j := strings.Index(o.String(), "unmounted /etc"), strings.Index(o.String(), "unmounted "+paths.DataDir+"\n"); i < 0 || j < i {
		t.Errorf("order:\n%s", o.String())
	}
}

// TestCommandLine: each subcommand has its own flags; mistakes exit 2 with
// one line, before anything is touched.
func TestCommandLine(t *testing.T) {
	for _, tt := range []struct {
		init bool
		args []string
		want string
	}{
		{false, []string{"bogus"}, `unknown command "bogus"`},
		{false, []string{"status", "--yes"}, "flag provided but not defined: -yes"},
		{false, []string{"enable"}, "enable needs exactly one whole disk"},
		{false, []string{"enable", "--dry-run", "/dev/x"}, "flag provided but not defined: -dry-run"},
		{false, []string{"start", "extra"}, `unexpected argument "extra"`},
		{false, []string{"--wait", "soon"}, `invalid value "soon"`},
		{true, nil, "usage: S11persistence start|stop"},
		{true, []string{"stop", "--force"}, "flag provided but not defined: -force"},
	} {
		var o, e bytes.Buffer
		main := Main
		if tt.init {
			main = InitScript
		}
		if code := main(tt.args, cli.IO{In: strings.NewReader(""), Out: &o, Err: &e}); code != 2 {
			t.Errorf("%v: exit %d, want 2", tt.args, code)
		}
		if !strings.Contains(e.String(), tt.want) {
			t.Errorf("%v: stderr %q, want %q", tt.args, e.String(), tt.want)
		}
		if o.Len() != 0 {
			t.Errorf("%v: stdout %q", tt.args, o.String())
		}
	}
}
