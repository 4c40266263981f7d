package persistence

// The commands that change the disk set of a mounted data filesystem: add,
// remove, and restore (which follows a rebuild to its end), and the join
// that boot runs after mounting.

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"lightwhale/internal/btrfs"
	"lightwhale/internal/cli"
	"lightwhale/internal/host"
	"lightwhale/internal/paths"
)

const aboutAdd = `Joins whole disks that start with the consent header (setup-persistence
enable DEV writes it) to the mounted data filesystem. A missing RAID1 member
is rebuilt on the new disk (btrfs replace); otherwise the disk adds room.
Either way the profiles then follow the device count (one disk: single/dup;
two: raid1; three: raid1 + raid1c3 metadata; four or more: raid1c4), by a
balance in the background: see setup-persistence status.`

const aboutRemove = `Moves a member's data to the other disks, then drops it from the data
filesystem. Refused while degraded, and when the data's RAID1 would need
more disks than remain (convert down first).`

func addCmd(h host.Host, args []string, stdio cli.IO) int {
	fs := cli.NewFlagSet(Name+" add", "[--dry-run] DEV...", aboutAdd, stdio.Err)
	dryRun := fs.Bool("dry-run", false, "print the plan and write nothing")
	devs, code, done := parseInterspersed(fs, args)
	if done {
		return code
	}
	if len(devs) == 0 {
		fmt.Fprintf(stdio.Err, "%s: add needs at least one whole disk, e.g. /dev/sdb\n", Name)
		return 2
	}
	return onMounted(h, stdio, devs, *dryRun, func(disks []*Disk, st *btrfs.State) *Plan {
		return PlanJoin(disks, st, devs, newGUID)
	})
}

func removeCmd(h host.Host, args []string, stdio cli.IO) int {
	fs := cli.NewFlagSet(Name+" remove", "[--dry-run] DEV", aboutRemove, stdio.Err)
	dryRun := fs.Bool("dry-run", false, "print the plan and write nothing")
	devs, code, done := parseInterspersed(fs, args)
	if done {
		return code
	}
	if len(devs) != 1 {
		fmt.Fprintf(stdio.Err, "%s: remove needs exactly one whole disk, e.g. /dev/sdb\n", Name)
		return 2
	}
	return onMounted(h, stdio, devs, *dryRun, func(disks []*Disk, st *btrfs.State) *Plan {
		return PlanRemove(disks, st, devs[0])
	})
}

// parseInterspersed parses flags before, between and after the operands
// ("add /dev/sdb --dry-run" reads as a user means it).
func parseInterspersed(fs *flag.FlagSet, args []string) (operands []string, code int, done bool) {
	for {
		if code, done := cli.Parse(fs, args); done {
			return nil, code, true
		}
		args = fs.Args()
		if len(args) == 0 {
			return operands, 0, false
		}
		operands = append(operands, args[0])
		args = args[1:]
	}
}

// onMounted runs a plan over the named disks against the mounted data
// filesystem. Any refusal is printed (one line each) and nothing is written.
func onMounted(h host.Host, stdio cli.IO, devs []string, dryRun bool, plan func([]*Disk, *btrfs.State) *Plan) int {
	if m, ok := host.MountedAt(h, paths.DataDir); !ok || m.FSType != "btrfs" {
		return cli.Fail(stdio, Name, fmt.Errorf("no data filesystem is mounted at %s (volatile mode): to make one, write the header with setup-persistence enable DEV and reboot", paths.DataDir))
	}
	var disks []*Disk
	seen := map[string]bool{}
	for _, path := range devs {
		if seen[path] {
			continue
		}
		seen[path] = true
		d, err := scanNamed(h, path)
		if err != nil {
			return cli.Fail(stdio, Name, err)
		}
		disks = append(disks, d)
	}
	unlock, err := runLock()
	if err != nil {
		return cli.Fail(stdio, Name, err)
	}
	defer unlock()
	st, err := btrfs.ReadState(h, paths.DataDir)
	if err != nil {
		return cli.Fail(stdio, Name, err)
	}
	p := plan(disks, st)
	if len(p.Errors) > 0 {
		for _, e := range p.Errors {
			fmt.Fprintf(stdio.Err, "%s: %s\n", Name, e)
		}
		return 1
	}
	if dryRun {
		fmt.Fprint(stdio.Out, p.String())
		fmt.Fprintln(stdio.Out, "(dry run: nothing was written)")
		return 0
	}
	if len(p.Steps) == 0 {
		for _, n := range p.Notes {
			fmt.Fprintf(stdio.Out, "%s: %s\n", Name, n)
		}
		return 0
	}
	return newApplier(h, stdio.Out, stdio.Err).run(p)
}

// scanNamed reads one disk a user named, refusing what is not a whole disk.
func scanNamed(h host.Host, path string) (*Disk, error) {
	name := filepath.Base(path)
	if !strings.HasPrefix(path, "/dev/") || strings.Contains(name, "..") {
		return nil, fmt.Errorf("%q is not a block device path like /dev/sdb", path)
	}
	dev, err := h.Device(name)
	if err != nil {
		return nil, fmt.Errorf("%s is not a block device: %w", path, err)
	}
	if dev.Partition != 0 {
		return nil, fmt.Errorf("%s is a partition: name the whole disk (/dev/%s)", path, dev.Parent)
	}
	return scanDisk(h, dev)
}

// runLock takes the lock every run that changes disks holds: one at a time.
func runLock() (unlock func(), err error) {
	if err := os.MkdirAll(paths.RunDir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(paths.LockFile, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", paths.LockFile, err)
	}
	return func() { f.Close() }, nil
}

// joinAtBoot runs after the data filesystem is mounted: disks with the
// header join it, and in every case the profiles are checked (a balance or
// replace that a reboot interrupted is resumed by btrfs; we only follow it).
func (a *applier) joinAtBoot(only []string) int {
	if m, ok := host.MountedAt(a.h, paths.DataDir); !ok || m.FSType != "btrfs" {
		return 0
	}
	p := &Plan{Online: true, Steps: []Step{restoreStep{}}}
	if disks, err := scan(a.h, only); err == nil {
		st, err := btrfs.ReadState(a.h, paths.DataDir)
		if err != nil {
			a.loud(fmt.Sprintf("cannot read the data filesystem's devices: %v", err))
			return 1
		}
		if joinCandidates(disks, st.FSID) {
			p = PlanJoin(disks, st, nil, newGUID)
			if len(p.Steps) == 0 {
				p.Steps = []Step{restoreStep{}}
			}
		}
	}
	return a.run(p)
}

func restoreCmd(h host.Host, args []string, stdio cli.IO) int {
	fs := cli.NewFlagSet(Name+" restore", "[--wait]", "Brings the profiles to what the device count calls for (a balance in the background), unless a replace or balance already runs.", stdio.Err)
	wait := fs.Bool("wait", false, "follow the replace and balance to their end, start the balance a replace still needs, then record the mode (boot and add start this in the background)")
	if code, done := cli.Parse(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stdio.Err, "%s: unexpected argument %q\n", Name, fs.Arg(0))
		return 2
	}
	if m, ok := host.MountedAt(h, paths.DataDir); !ok || m.FSType != "btrfs" {
		return cli.Fail(stdio, Name, fmt.Errorf("no data filesystem is mounted at %s", paths.DataDir))
	}
	a := newApplier(h, stdio.Out, stdio.Err)
	if !*wait {
		return a.run(&Plan{Online: true, Steps: []Step{restoreStep{}}})
	}
	// One follower at a time. A second one waits for the first, then
	// looks once more: the first may have been ending (its last look
	// done) when the mode was set to "rebuilding" again, and giving up
	// here would leave that mode for ever.
	f, err := os.OpenFile(paths.RestoreLock, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return cli.Fail(stdio, Name, err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return cli.Fail(stdio, Name, fmt.Errorf("lock %s: %w", paths.RestoreLock, err))
	}
	f.Truncate(0)
	f.WriteString(strconv.Itoa(os.Getpid()) + "\n")
	balanced, sawReplace, settle := false, false, 0
	for {
		// Unmounted (shutdown, or stop): btrfs suspends what runs and
		// resumes it at the next mount, where boot follows it again.
		if m, ok := host.MountedAt(h, paths.DataDir); !ok || m.FSType != "btrfs" {
			return 0
		}
		r, err := restore(&a.env, balanced)
		if err != nil {
			a.loud("restoring redundancy: " + err.Error())
			// Nothing is being rebuilt any more: say so (the warning
			// above says why), not "rebuilding" for ever.
			if st, err := btrfs.ReadState(h, paths.DataDir); err == nil {
				endRebuilding(h, len(st.Missing()) > 0)
			}
			return 1
		}
		balanced = balanced || r.started
		sawReplace = sawReplace || r.replacing
		recordProgress(h)
		// btrfs reports a replace finished a while before it stops listing
		// the member it replaced as missing (in QEMU, after a resumed
		// replace, for more than 30 s): a member missing after a replace
		// (which this follower may not have seen running: it starts a
		// moment after boot looked) is no verdict for up to 5 minutes.
		// A replace the kernel cancelled is started again (resumeReplace)
		// once its target's superblock is wiped: wait for that too.
		if rs := btrfs.ReplaceStatus(h, paths.DataDir).Text; !r.running && r.degraded && settle < 150 && (sawReplace || strings.Contains(rs, "finished") || strings.Contains(rs, "canceled")) {
			settle++
			time.Sleep(2 * time.Second)
			continue
		}
		if !r.running {
			if !r.degraded {
				dropDegradedWarning(h)
			}
			endRebuilding(h, r.degraded)
			// The motd was written at boot; bring it up to date.
			if h.Exists(motdScript) {
				h.Run(motdScript, "start")
			}
			return 0
		}
		time.Sleep(2 * time.Second)
	}
}

const motdScript = "/etc/init.d/S99motd"

// endRebuilding records the mode once nothing runs: rebuilding ends, and a
// degraded mount that is whole now (a resumed replace ended) is persistent.
func endRebuilding(h host.Host, degraded bool) {
	mode := "persistent"
	if degraded {
		mode = "degraded"
	}
	if m, _ := h.ReadFile(paths.ModeFile); strings.TrimSpace(string(m)) == "rebuilding" || (strings.TrimSpace(string(m)) == "degraded" && !degraded) {
		h.WriteFile(paths.ModeFile, []byte(mode+"\n"), 0o644)
	}
}

// progressLines shows the long operations: percent done and a time-left
// estimate, from btrfs's status commands.
func progressLines(h host.Host) string {
	var out strings.Builder
	ops := []struct {
		name string
		p    btrfs.Progress
	}{
		{"replace", btrfs.ReplaceStatus(h, paths.DataDir)},
		{"balance", btrfs.BalanceStatus(h, paths.DataDir)},
		{"scrub", btrfs.ScrubStatus(h, paths.DataDir)},
	}
	for _, op := range ops {
		if !op.p.Running {
			resetBaseline(h, op.name)
			if op.name == "scrub" && op.p.Text != "" && !strings.HasPrefix(op.p.Text, ";") {
				fmt.Fprintf(&out, "scrub:     %s\n", op.p.Text)
			}
			continue
		}
		left := ""
		if op.p.Left != "" {
			left = "about " + op.p.Left + " left"
		} else if op.p.Percent >= 0 {
			left = estimate(h, op.name, op.p.Percent, time.Now())
		}
		if left == "" {
			left = "time left not known yet"
		}
		line := fmt.Sprintf("%s running", op.name)
		if op.p.Percent >= 0 {
			line = fmt.Sprintf("%s %.1f%% done", op.name, op.p.Percent)
		}
		line += ", " + left
		fmt.Fprintf(&out, "%-10s %s\n", "rebuild:", line)
	}
	return out.String()
}

// recordProgress notes the first sight of each running operation, so that
// status can estimate the time left from its first call on.
func recordProgress(h host.Host) {
	if p := btrfs.ReplaceStatus(h, paths.DataDir); p.Running && p.Percent >= 0 {
		estimate(h, "replace", p.Percent, time.Now())
	}
	if p := btrfs.BalanceStatus(h, paths.DataDir); p.Running && p.Percent >= 0 {
		estimate(h, "balance", p.Percent, time.Now())
	}
}

// dropDegradedWarning retires the boot's DEGRADED warning once every
// member is present again, so status and motd stop raising it.
func dropDegradedWarning(h host.Host) {
	b, err := h.ReadFile(paths.Warnings)
	if err != nil {
		return
	}
	var keep []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l != "" && !strings.Contains(l, " is DEGRADED: ") {
			keep = append(keep, l+"\n")
		}
	}
	h.WriteFile(paths.Warnings, []byte(strings.Join(keep, "")), 0o644)
}

// estimate extrapolates from the first time this operation was seen
// running (recorded under paths.Progress) to now.
func estimate(h host.Host, op string, pct float64, now time.Time) string {
	file := filepath.Join(paths.Progress, op)
	b, err := h.ReadFile(file)
	var t0 int64
	var p0 float64
	if err != nil || len(strings.TrimSpace(string(b))) == 0 {
		if h.MkdirAll(paths.Progress, 0o755) == nil {
			h.WriteFile(file, []byte(fmt.Sprintf("%d %g\n", now.Unix(), pct)), 0o644)
		}
		return ""
	}
	if _, err := fmt.Sscan(string(b), &t0, &p0); err != nil || pct <= p0 {
		return ""
	}
	rate := (pct - p0) / float64(now.Unix()-t0) // percent per second
	if rate <= 0 {
		return ""
	}
	return "about " + (time.Duration((100-pct)/rate) * time.Second).Round(time.Second).String() + " left"
}

func resetBaseline(h host.Host, op string) {
	file := filepath.Join(paths.Progress, op)
	if h.Exists(file) {
		h.WriteFile(file, nil, 0o644)
	}
}
