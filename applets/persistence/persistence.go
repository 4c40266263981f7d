// Package persistence is setup-persistence, also run at boot as
// /etc/init.d/S11persistence: it finds or claims the data filesystem, mounts
// it (or a tmpfs), and lays the writable overlays over /etc, /var and /home.
package persistence

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"lightwhale/internal/blockdev"
	"lightwhale/internal/cli"
	"lightwhale/internal/gpt"
	"lightwhale/internal/probe"
)

const usage = `[--dry-run] [--devices /dev/a,/dev/b] [--wait 10s]
       setup-persistence status
       setup-persistence enable [--yes] [--force] /dev/sdX
       S11persistence start|stop`

const about = `Finds the data filesystem (btrfs labelled lightwhale-data) and mounts it at
/mnt/lightwhale-data; or claims the disks whose first bytes are the consent
header "lightwhale-please-format-me" (one disk: single; several: RAID1); or,
with neither, mounts a tmpfs there (volatile). Then overlays /etc, /var and
/home, and creates Docker's data-root. Safe to run again: it does only what
is missing. A disk without the header is never written.

  status       mode, devices, profile, space, overlays, swap, Docker root
  enable DEV   write the consent header to a whole disk (then reboot)`

// Main is the applet.
func Main(args []string, stdio cli.IO) int {
	name := "setup-persistence"
	fs := cli.NewFlagSet(name, usage, about, stdio.Err)
	dryRun := fs.Bool("dry-run", false, "print what would be done, step by step, and write nothing")
	devices := fs.String("devices", "", "comma-separated whole disks to consider (default: every disk)")
	wait := fs.Duration("wait", defaultWait(), "how long to wait for missing RAID members before mounting degraded (kernel cmdline lightwhale.wait=SECONDS)")
	yes := fs.Bool("yes", false, "enable: do not ask for confirmation")
	force := fs.Bool("force", false, "enable: overwrite a disk that holds a partition table or filesystem")
	crashAfter := fs.Int("crash-after", 0, "testing: kill this process with SIGKILL after N steps, as a power cut would")
	if code, done := cli.Parse(fs, args); done {
		return code
	}
	var only []string
	if *devices != "" {
		only = strings.Split(*devices, ",")
	}
	rest := fs.Args()
	cmd := "start"
	if len(rest) > 0 {
		cmd, rest = rest[0], rest[1:]
	} else if filepath.Base(os.Args[0]) == "S11persistence" {
		fmt.Fprintf(stdio.Err, "usage: S11persistence start|stop\n")
		return 2
	}
	// "start" also tolerates a second flag block after it (S11persistence start --devices ...).
	if len(rest) > 0 && cmd != "enable" {
		if code, done := cli.Parse(fs, rest); done {
			return code
		}
		rest = fs.Args()
	}
	switch cmd {
	case "start", "restart":
		if len(rest) > 0 {
			fmt.Fprintf(stdio.Err, "%s: unexpected argument %q\n", name, rest[0])
			return 2
		}
		return start(stdio, only, *dryRun, *wait, *crashAfter)
	case "stop":
		if err := stop(stdio.Out); err != nil {
			return cli.Fail(stdio, name, err)
		}
		return 0
	case "status":
		if err := status(stdio.Out, blockdev.Host, only); err != nil {
			return cli.Fail(stdio, name, err)
		}
		return 0
	case "enable":
		efs := cli.NewFlagSet(name+" enable", "[--yes] [--force] /dev/sdX", "Writes the consent header to a whole disk, which the next boot claims.", stdio.Err)
		efs.BoolVar(yes, "yes", *yes, "do not ask for confirmation")
		efs.BoolVar(force, "force", *force, "overwrite a disk that holds a partition table or filesystem")
		if code, done := cli.Parse(efs, rest); done {
			return code
		}
		if efs.NArg() != 1 {
			fmt.Fprintf(stdio.Err, "%s: enable needs exactly one whole disk, e.g. /dev/sdb\n", name)
			return 2
		}
		if err := enable(stdio, blockdev.Host, efs.Arg(0), *yes, *force); err != nil {
			return cli.Fail(stdio, name, err)
		}
		return 0
	}
	fmt.Fprintf(stdio.Err, "%s: unknown command %q (start, stop, status, enable)\n", name, cmd)
	return 2
}

// defaultWait reads lightwhale.wait=SECONDS from the kernel command line.
func defaultWait() time.Duration {
	b, _ := os.ReadFile("/proc/cmdline")
	for _, f := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(f, "lightwhale.wait="); ok {
			if s, err := strconv.Atoi(v); err == nil && s >= 0 {
				return time.Duration(s) * time.Second
			}
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

// start is the boot path: lock, scan, decide, apply.
func start(stdio cli.IO, only []string, dryRun bool, wait time.Duration, crashAfter int) int {
	const name = "setup-persistence"
	sys := blockdev.Host
	out := stdio.Out
	if dryRun {
		disks, err := scan(sys, only)
		if err != nil {
			return cli.Fail(stdio, name, err)
		}
		for _, d := range disks {
			fmt.Fprintf(out, "disk %s\n", describe(d))
		}
		fmt.Fprint(out, Decide(disks, newGUID).String())
		fmt.Fprintln(out, "(dry run: nothing was written)")
		return 0
	}

	// One run at a time: a second one waits here, then finds the work done.
	if err := os.MkdirAll(RunDir, 0o755); err != nil {
		return cli.Fail(stdio, name, err)
	}
	lock, err := os.OpenFile(LockFile, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return cli.Fail(stdio, name, err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return cli.Fail(stdio, name, fmt.Errorf("lock %s: %w", LockFile, err))
	}

	began := time.Now()
	var plan *Plan
	deadline := time.Now().Add(wait)
	for {
		disks, err := scan(sys, only)
		if err != nil {
			return cli.Fail(stdio, name, err)
		}
		plan = Decide(disks, newGUID)
		if plan.Missing == 0 || time.Now().After(deadline) {
			break
		}
		fmt.Fprintf(out, "%s: %d RAID member(s) of %s missing; waiting up to %s\n", name, plan.Missing, plan.FSID, time.Until(deadline).Round(time.Second))
		time.Sleep(time.Second)
	}
	for _, e := range plan.Errors {
		loud(stdio, e)
	}
	for _, n := range plan.Notes {
		fmt.Fprintf(out, "%s: %s\n", name, n)
	}

	a := &applier{sys: sys, out: out, run: runTool, held: map[string]*os.File{}}
	defer a.unlockAll()
	code := 0
	for i, s := range plan.Steps {
		if crashAfter > 0 && i == crashAfter {
			unix.Kill(os.Getpid(), unix.SIGKILL)
		}
		t := time.Now()
		msg, err := a.apply(s)
		if err != nil {
			loud(stdio, fmt.Sprintf("step %d failed: %s: %v", i+1, firstLine(s.String()), err))
			if s.Op == OpMountData || s.Op == OpMountState || s.Op < OpMountData {
				// The data filesystem is out of reach: carry on volatile so the
				// machine still boots; nothing more is written to any disk.
				return fallbackVolatile(stdio, a)
			}
			code = 1
			continue
		}
		if s.Op == OpLabel {
			a.unlockAll()
		}
		if msg != "" {
			msg = " (" + msg + ")"
		}
		fmt.Fprintf(out, "%s: %s%s [%.2fs]\n", name, firstLine(s.String()), msg, time.Since(t).Seconds())
	}
	fmt.Fprintf(out, "%s: mode %s, ready in %.2fs\n", name, plan.Mode, time.Since(began).Seconds())
	return code
}

func firstLine(s string) string { l, _, _ := strings.Cut(s, "\n"); return l }

// loud prints an error where the console shows it, and keeps it for status and motd.
func loud(stdio cli.IO, msg string) {
	fmt.Fprintf(stdio.Err, "setup-persistence: *** %s\n", msg)
	os.MkdirAll(RunDir, 0o755)
	f, err := os.OpenFile(filepath.Join(RunDir, "warnings"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err == nil {
		fmt.Fprintln(f, msg)
		f.Close()
	}
}

// fallbackVolatile gives the machine a working tmpfs data filesystem after
// a failure, so it still boots and can be reached.
func fallbackVolatile(stdio cli.IO, a *applier) int {
	p := &Plan{}
	p.volatile()
	for _, s := range p.Steps {
		if _, err := a.apply(s); err != nil {
			loud(stdio, fmt.Sprintf("volatile fallback: %s: %v", firstLine(s.String()), err))
		}
	}
	fmt.Fprintf(stdio.Out, "setup-persistence: mode volatile (fallback after an error)\n")
	return 1
}

// stop runs at shutdown: flush, then unmount what start mounted, innermost
// first. What stays busy is remounted read-only, so the filesystem is clean
// when the power goes.
func stop(out io.Writer) error {
	unix.Sync()
	var errs []error
	for path := range activeSwaps() {
		if strings.HasPrefix(path, "/dev/") && isOurSwap(path) {
			if err := swapoff(path); err == nil {
				fmt.Fprintf(out, "setup-persistence: swapoff %s\n", path)
			}
		}
	}
	targets := []string{}
	for i := len(OverlayDirs) - 1; i >= 0; i-- {
		targets = append(targets, OverlayDirs[i])
	}
	for i := len(OverlayDirs) - 1; i >= 0; i-- {
		targets = append(targets, lowerDir(OverlayDirs[i]))
	}
	targets = append(targets, StateDir, DataDir)
	for _, t := range targets {
		if _, ok := mountedAt(t); !ok {
			continue
		}
		err := unix.Unmount(t, 0)
		if errors.Is(err, unix.EBUSY) {
			// Still in use (a shell, a log): make it read-only so it is
			// clean, and detach it.
			if rerr := unix.Mount("", t, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); rerr == nil {
				fmt.Fprintf(out, "setup-persistence: %s busy: remounted read-only\n", t)
			}
			err = unix.Unmount(t, unix.MNT_DETACH)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", t, err))
			continue
		}
		fmt.Fprintf(out, "setup-persistence: unmounted %s\n", t)
	}
	unix.Sync()
	return errors.Join(errs...)
}

// isOurSwap tells whether a swap device carries our label.
func isOurSwap(path string) bool {
	b, err := blockdev.ReadAt(path, 0, 4096)
	sw := probe.ParseSwap(b)
	return err == nil && sw != nil && sw.Label == gpt.SwapName
}

// ErrAborted is returned when the user does not confirm.
var ErrAborted = errors.New("aborted: nothing was written")
