// Package persistence is setup-persistence, also run at boot as
// /etc/init.d/S11persistence: it finds or claims the data filesystem, mounts
// it (or a tmpfs), and lays the writable overlays over /etc, /var and /home.
//
// A tour, in the order a boot runs it:
//   - persistence.go: the command line. Main and InitScript pick a
//     subcommand, each with its own FlagSet (start, stop, status, enable).
//   - scan.go: scan reads every candidate disk through the host (header,
//     GPT, superblocks of each partition) into Disk values. It writes nothing.
//   - plan.go: Decide, a pure function, turns the Disks into a Plan: the
//     whole safety policy (what may be claimed, what is mounted, degraded or
//     refused) lives there, and its output is what --dry-run prints and the
//     golden files in testdata/ pin.
//   - steps.go: a plan is a list of Step values, one small type per kind of
//     action (partitionStep, mkfsStep, overlayStep...). Each prints itself,
//     applies itself against the host (checking first, so a re-run finds it
//     done), and says whether its failure is fatal.
//   - apply.go: the applier runs the steps in order; on a fatal failure it
//     falls back to a tmpfs so the machine still boots.
//   - status.go and enable.go: the status report and the consent header.
//   - join.go: PlanJoin and PlanRemove, pure like Decide: disks joining the
//     mounted filesystem (btrfs replace of a missing member, else device
//     add; profiles by btrfs.Profile, the claim's rule) and leaving it.
//     joinsteps.go: their steps; disks.go: add, remove, restore, the join
//     boot runs after mounting, and the progress status shows.
//
// The kernel is touched only through internal/host (mounts, mountinfo,
// swaps, BLKPG, disk I/O, tools); btrfs-progs only through internal/btrfs;
// fixed paths and names come from internal/paths. Tests: plan_test.go
// (goldens), apply_test.go (every step failing, on internal/host/hostfake,
// unprivileged), integration_test.go (root: loop devices, real btrfs, a
// private mount namespace).
package persistence

import (
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/u-root/u-root/pkg/cmdline"
	"golang.org/x/sys/unix"

	"lightwhale/internal/cli"
	"lightwhale/internal/gpt"
	"lightwhale/internal/host"
	"lightwhale/internal/paths"
	"lightwhale/internal/probe"
)

// Name is the applet's name; InitName is the init script it also answers to.
const (
	Name     = "setup-persistence"
	InitName = "S11persistence"
)

const usage = `[start] [--dry-run] [--devices /dev/a,/dev/b] [--wait 10s]
       setup-persistence status [--devices /dev/a,/dev/b]
       setup-persistence enable [--yes] [--force] /dev/sdX
       setup-persistence add [--dry-run] /dev/sdX...
       setup-persistence remove [--dry-run] /dev/sdX
       setup-persistence restore [--wait]
       setup-persistence snapshot [NAME] | snapshots [--keep N] | rollback NAME|--cancel | forget NAME
       S11persistence start|stop`

const about = `Finds the data filesystem (btrfs labelled lightwhale-data) and mounts it at
/mnt/lightwhale-data; or claims the disks whose first bytes are the consent
header "lightwhale-please-format-me" (one disk: single; several: RAID1); or,
with neither, mounts a tmpfs there (volatile). Then overlays /etc, /var and
/home, and creates Docker's data-root. Safe to run again: it does only what
is missing. A disk without the header is never written.

  status       mode, devices, profile, space, overlays, swap, Docker root
  enable DEV   write the consent header to a whole disk (then reboot, or add it)
  add DEV...   join disks with the header to the mounted data filesystem:
               a missing RAID1 member is rebuilt on it, else it adds room
  remove DEV   move a member's data to the other disks and drop it
  restore      bring the profiles to what the device count calls for
  snapshot     keep the state (/etc, /var, /home, Docker's data) as a read-only snapshot
  snapshots    list them; rollback NAME returns to one at the next boot; forget NAME

At boot, a disk with the header found beside an existing data filesystem
joins it as add would.`

// Main is setup-persistence: a subcommand, start when there is none.
func Main(args []string, stdio cli.IO) int {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return subcommand(args[0], args[1:], stdio)
	}
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		fs := cli.NewFlagSet(Name, usage, about, stdio.Err)
		cli.Parse(fs, args)
		return 0
	}
	return subcommand("start", args, stdio)
}

// InitScript is /etc/init.d/S11persistence: rcS names the action.
func InitScript(args []string, stdio cli.IO) int {
	if len(args) == 0 {
		fmt.Fprintf(stdio.Err, "usage: %s start|stop\n", InitName)
		return 2
	}
	return subcommand(args[0], args[1:], stdio)
}

func subcommand(cmd string, args []string, stdio cli.IO) int {
	h := host.Real
	switch cmd {
	case "start", "restart":
		return startCmd(h, args, stdio)
	case "stop":
		return stopCmd(h, args, stdio)
	case "status":
		return statusCmd(h, args, stdio)
	case "enable":
		return enableCmd(h, args, stdio)
	case "add":
		return addCmd(h, args, stdio)
	case "remove":
		return removeCmd(h, args, stdio)
	case "restore":
		return restoreCmd(h, args, stdio)
	case "snapshot":
		return snapshotCmd(h, args, stdio)
	case "snapshots":
		return snapshotsCmd(h, args, stdio)
	case "rollback":
		return rollbackCmd(h, args, stdio)
	case "forget":
		return forgetCmd(h, args, stdio)
	}
	fmt.Fprintf(stdio.Err, "%s: unknown command %q (start, stop, status, enable, add, remove, restore, snapshot, snapshots, rollback, forget)\n", Name, cmd)
	return 2
}

// devicesFlag is --devices, shared by start and status.
func devicesFlag(fs *flag.FlagSet, only *[]string) {
	fs.Func("devices", "comma-separated whole disks to consider (default: every disk)", func(v string) error {
		*only = strings.Split(v, ",")
		return nil
	})
}

func startCmd(h host.Host, args []string, stdio cli.IO) int {
	fs := cli.NewFlagSet(Name+" start", "[--dry-run] [--devices /dev/a,/dev/b] [--wait 10s]", about, stdio.Err)
	dryRun := fs.Bool("dry-run", false, "print what would be done, step by step, and write nothing")
	var only []string
	devicesFlag(fs, &only)
	wait := fs.Duration("wait", defaultWait(), "how long to wait for missing RAID members before mounting degraded (kernel cmdline lightwhale.wait=SECONDS)")
	crashAfter := fs.Int("crash-after", 0, "testing: kill this process with SIGKILL after N steps, as a power cut would")
	if code, done := cli.Parse(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stdio.Err, "%s: unexpected argument %q\n", Name, fs.Arg(0))
		return 2
	}
	if *dryRun {
		disks, err := scan(h, only)
		if err != nil {
			return cli.Fail(stdio, Name, err)
		}
		for _, d := range disks {
			fmt.Fprintf(stdio.Out, "disk %s\n", describe(d))
		}
		fmt.Fprint(stdio.Out, Decide(disks, newGUID).String())
		fmt.Fprintln(stdio.Out, "(dry run: nothing was written)")
		return 0
	}

	// One run at a time: a second one waits here, then finds the work done.
	if err := os.MkdirAll(paths.RunDir, 0o755); err != nil {
		return cli.Fail(stdio, Name, err)
	}
	lock, err := os.OpenFile(paths.LockFile, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return cli.Fail(stdio, Name, err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return cli.Fail(stdio, Name, fmt.Errorf("lock %s: %w", paths.LockFile, err))
	}

	var plan *Plan
	deadline := time.Now().Add(*wait)
	for {
		disks, err := scan(h, only)
		if err != nil {
			return cli.Fail(stdio, Name, err)
		}
		plan = Decide(disks, newGUID)
		if plan.Missing == 0 || time.Now().After(deadline) {
			break
		}
		fmt.Fprintf(stdio.Out, "%s: %d RAID member(s) of %s missing; waiting up to %s\n", Name, plan.Missing, plan.FSID, time.Until(deadline).Round(time.Second))
		time.Sleep(time.Second)
	}
	a := newApplier(h, stdio.Out, stdio.Err)
	a.crashAfter = *crashAfter
	a.crash = func() { unix.Kill(os.Getpid(), unix.SIGKILL) }
	code := a.run(plan)
	if plan.Mode == "persistent" || plan.Mode == "degraded" {
		code = max(code, a.joinAtBoot(only))
	}
	return code
}

// defaultWait reads lightwhale.wait=SECONDS from the kernel command line.
func defaultWait() time.Duration {
	if v, ok := cmdline.Flag("lightwhale.wait"); ok {
		if s, err := strconv.Atoi(v); err == nil && s >= 0 {
			return time.Duration(s) * time.Second
		}
	}
	return 10 * time.Second
}

func newGUID() gpt.GUID {
	var g gpt.GUID
	rand.Read(g[:])
	g[6] = g[6]&0x0f | 0x40 // version 4
	g[8] = g[8]&0x3f | 0x80 // RFC 4122 variant
	return g
}

func stopCmd(h host.Host, args []string, stdio cli.IO) int {
	fs := cli.NewFlagSet(Name+" stop", "", "Unmounts the data filesystem and its overlays at shutdown (busy ones read-only).", stdio.Err)
	if code, done := cli.Parse(fs, args); done {
		return code
	}
	if err := stop(h, stdio); err != nil {
		return cli.Fail(stdio, Name, err)
	}
	return 0
}

// stop runs at shutdown: flush, then unmount what start mounted, innermost
// first. What stays busy is remounted read-only, so the filesystem is clean
// when the power goes.
func stop(h host.Host, stdio cli.IO) error {
	h.Sync()
	var errs []error
	swaps, _ := h.Swaps()
	for _, sw := range swaps {
		if sw.Dev != 0 && isOurSwap(h, sw.Path) {
			if err := h.Swapoff(sw.Path); err == nil {
				fmt.Fprintf(stdio.Out, "%s: swapoff %s\n", Name, sw.Path)
			}
		}
	}
	var targets []string
	for i := len(paths.OverlayDirs) - 1; i >= 0; i-- {
		targets = append(targets, paths.OverlayDirs[i])
	}
	for i := len(paths.OverlayDirs) - 1; i >= 0; i-- {
		targets = append(targets, paths.LowerDir(paths.OverlayDirs[i]))
	}
	targets = append(targets, paths.StateDir, paths.DataDir)
	for _, t := range targets {
		if _, ok := host.MountedAt(h, t); !ok {
			continue
		}
		err := h.Unmount(t, 0)
		if errors.Is(err, unix.EBUSY) {
			// Still in use (a shell, a log): make it read-only so it is
			// clean, and detach it.
			if rerr := h.Mount("", t, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); rerr == nil {
				fmt.Fprintf(stdio.Out, "%s: %s busy: remounted read-only\n", Name, t)
			}
			err = h.Unmount(t, unix.MNT_DETACH)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(stdio.Out, "%s: unmounted %s\n", Name, t)
	}
	h.Sync()
	return errors.Join(errs...)
}

// isOurSwap tells whether a swap device carries our label.
func isOurSwap(h host.Host, path string) bool {
	b, err := h.ReadAt(path, 0, 4096)
	sw := probe.ParseSwap(b)
	return err == nil && sw != nil && sw.Label == paths.SwapLabel
}

func enableCmd(h host.Host, args []string, stdio cli.IO) int {
	fs := cli.NewFlagSet(Name+" enable", "[--yes] [--force] /dev/sdX", "Writes the consent header to a whole disk, which the next boot claims.", stdio.Err)
	yes := fs.Bool("yes", false, "do not ask for confirmation")
	force := fs.Bool("force", false, "overwrite a disk that holds a partition table or filesystem")
	if code, done := cli.Parse(fs, args); done {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(stdio.Err, "%s: enable needs exactly one whole disk, e.g. /dev/sdb\n", Name)
		return 2
	}
	if err := enable(stdio, h, fs.Arg(0), *yes, *force); err != nil {
		return cli.Fail(stdio, Name, err)
	}
	return 0
}

func statusCmd(h host.Host, args []string, stdio cli.IO) int {
	fs := cli.NewFlagSet(Name+" status", "[--devices /dev/a,/dev/b]", "Mode, devices, profile, space, overlays, swap, Docker's data-root, warnings.", stdio.Err)
	var only []string
	devicesFlag(fs, &only)
	if code, done := cli.Parse(fs, args); done {
		return code
	}
	if err := status(stdio.Out, h, only); err != nil {
		return cli.Fail(stdio, Name, err)
	}
	return 0
}

// ErrAborted is returned when the user does not confirm.
var ErrAborted = errors.New("aborted: nothing was written")
