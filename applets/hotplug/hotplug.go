// Package hotplug is the device manager of a system without udev: one
// mechanism for coldplug and hotplug. At boot it loads the drivers of the
// devices present (their modaliases, resolved against modules.alias), then
// keeps listening to the kernel's uevents: a device that appears later (a
// USB disk behind a controller just loaded, a disk or NIC plugged in after
// boot) gets its driver the same way. It names virtio ports as udev would,
// brings up DHCP on a wired NIC that appears after boot, and waits for
// storage to settle before persistence decides. A disk with the consent
// header that arrives after that decision joins a persistent machine's data
// filesystem (setup-persistence add); any other Lightwhale disk, and every
// one on a volatile machine, is reported, never claimed.
package hotplug

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"lightwhale/internal/cli"
	"lightwhale/internal/dockerping"
	"lightwhale/internal/paths"
)

const name = "hotplug"

const usage = `start | daemon | coldplug [--dry-run]`

const about = `start     (S02modules) starts the daemon and returns once the drivers of the
          devices present are loaded and storage has settled.
daemon    the daemon itself, in the foreground: coldplug, settle, then load
          drivers for the devices that appear later; a disk that appears
          with the consent header on a persistent machine joins its data
          filesystem (setup-persistence add).
coldplug  loads the drivers of the devices present, once; --dry-run prints
          "MODALIAS MODULE..." for each device instead.

The drivers of CPU features (crypto acceleration), input devices and the
entropy source load after the boot, once Docker's API answers.

Storage settles while a USB mass-storage device, a SCSI disk, an NVMe
controller or an SD card is present without its disk, or a storage uevent
came less than a second ago; at most lightwhale.wait=SECONDS from the kernel
command line (default 10).`

// System is what the applet reads and runs: the real machine by default,
// temporary trees and fakes in tests.
type System struct {
	Sys        Sysfs  // /sys
	Dev        string // /dev
	Modules    string // /lib/modules/$(uname -r)
	Cmdline    string // /proc/cmdline
	RunDir     string // /run/lightwhale: the persistence decision (mode) and our records
	LateRecord string // latedisk.File
	// Load loads modules (names as modules.alias gives them).
	Load func(modules []string) error
	// LoadIdle loads modules at the lowest CPU priority (deferredBuses).
	LoadIdle func(modules []string) error
	// DHCP brings up a wired NIC that appeared after boot.
	DHCP func(iface string) error
	// Motd rewrites the message of the day (after a late disk).
	Motd func() error
	// Join runs setup-persistence add on disks (their /dev paths) that
	// appeared with the consent header on a persistent machine, and
	// returns what it printed.
	Join func(devs []string) (string, error)
}

// Host is the running system.
var Host = System{
	Sys:        "/sys",
	Dev:        "/dev",
	Modules:    "/lib/modules/" + kernelRelease(),
	Cmdline:    "/proc/cmdline",
	RunDir:     paths.RunDir,
	LateRecord: lateRecord,
	Load:       modprobe,
	LoadIdle:   modprobeIdle,
	DHCP:       func(iface string) error { return runTool("/usr/libexec/lightwhale/dhcp-up", iface) },
	Motd:       func() error { return runTool("/etc/init.d/S99motd", "start") },
	Join:       addDisks,
}

// addDisks is setup-persistence add, run by this binary: the same checks,
// plan and run lock as when a user types it.
func addDisks(devs []string) (string, error) {
	out, err := exec.Command("/proc/self/exe", append([]string{"setup-persistence", "add"}, devs...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("setup-persistence add %s: %w", strings.Join(devs, " "), err)
	}
	return string(out), nil
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// modprobe loads modules with kmod's modprobe, which brings their
// dependencies, options and blacklist (-b); -q: a module missing from the
// pruned image is not an error worth a console line.
func modprobe(modules []string) error { return modprobeNice(0, modules) }

// modprobeIdle waits until Docker's API answers (at most idleWait), then
// runs modprobe at nice 19: what it loads after the boot must not take the
// CPU from dockerd's start. A low nice alone was not enough: loading
// aesni_intel makes the kernel's crypto manager ask for 22 algorithms that
// no module provides, each an exec of modprobe by a kernel worker at
// normal priority, and under TCG those landed in dockerd's start. Waiting
// for an idle CPU instead fired there too, in the boot's I/O waits.
func modprobeIdle(modules []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), idleWait)
	dockerping.Wait(ctx, dockerping.Socket)
	cancel()
	return modprobeNice(19, modules)
}

// idleWait bounds modprobeIdle's wait: a machine whose Docker is slow, or
// stopped, gets its drivers then.
const idleWait = 2 * time.Minute

func modprobeNice(nice int, modules []string) error {
	var out strings.Builder
	cmd := exec.Command("modprobe", append([]string{"-q", "-b", "-a", "--"}, modules...)...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Start()
	if err == nil {
		if nice != 0 {
			unix.Setpriority(unix.PRIO_PROCESS, cmd.Process.Pid, nice)
		}
		err = cmd.Wait()
	}
	if err != nil {
		return fmt.Errorf("modprobe %s: %w: %s", strings.Join(modules, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// runTool runs a program directly (its arguments, such as an interface name
// from the kernel, never pass through a shell).
func runTool(path string, args ...string) error {
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", path, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Main is the applet.
func Main(args []string, stdio cli.IO) int { return Host.Main(args, stdio) }

// Main runs the applet against s.
func (s System) Main(args []string, stdio cli.IO) int {
	fset := cli.NewFlagSet("lightwhale "+name, usage, about, stdio.Err)
	dry := fset.Bool("dry-run", false, "coldplug: print what would be loaded, load nothing")
	readyFD := fset.Int("ready-fd", -1, "daemon: write \"ready\" to this inherited fd once settled (used by start)")
	// The command may come first ("coldplug --dry-run") or after the flags.
	cmd := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	if code, done := cli.Parse(fset, args); done {
		return code
	}
	rest := fset.Args()
	if cmd == "" && len(rest) > 0 {
		cmd, rest = rest[0], rest[1:]
	}
	if cmd == "" || len(rest) > 0 {
		fmt.Fprintf(stdio.Err, "lightwhale %s: expected one command (start, daemon, coldplug), got %q\n", name, append([]string{cmd}, rest...))
		return 2
	}
	var err error
	switch cmd {
	case "start":
		err = s.start(stdio)
	case "daemon":
		var ready io.WriteCloser
		if *readyFD >= 0 {
			ready = os.NewFile(uintptr(*readyFD), "ready")
		}
		err = s.daemon(stdio.Out, ready)
	case "coldplug":
		err = s.coldplugCmd(stdio.Out, *dry)
	default:
		fmt.Fprintf(stdio.Err, "lightwhale %s: unknown command %q (start, daemon, coldplug)\n", name, cmd)
		return 2
	}
	if err != nil {
		return cli.Fail(stdio, "lightwhale "+name, err)
	}
	return 0
}

// start runs the daemon in a session of its own and waits until it says it
// is ready (or dies, or the wait plus slack has passed: boot goes on).
func (s System) start(stdio cli.IO) error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	cmd := exec.Command("/proc/self/exe", name, "--ready-fd", "3", "daemon")
	cmd.Stdout, cmd.Stderr = stdio.Out, stdio.Err
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("start daemon: %w", err)
	}
	w.Close()
	cmd.Process.Release()
	r.SetReadDeadline(time.Now().Add(s.maxWait() + time.Minute))
	line, err := bufio.NewReader(r).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		return fmt.Errorf("daemon did not become ready: %v", err)
	}
	return nil
}

// maxWait is lightwhale.wait=SECONDS from the kernel command line, or the
// default.
func (s System) maxWait() time.Duration {
	b, _ := os.ReadFile(s.Cmdline)
	return waitFromCmdline(string(b))
}

func waitFromCmdline(cmdline string) time.Duration {
	d := DefaultMaxWait
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, "lightwhale.wait="); ok {
			if n, err := strconv.Atoi(v); err == nil && n >= 0 {
				d = time.Duration(n) * time.Second
			}
		}
	}
	return d
}
