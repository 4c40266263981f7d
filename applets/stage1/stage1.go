// Package stage1 is /init of the initramfs: it loads the few modules needed
// to mount the root squashfs (loop, squashfs, isofs), finds the boot medium
// (loading the drivers its controller and bus ask for), attaches its root
// squashfs to a read-only loop device, mounts it and switch_roots into
// /sbin/init, while a child copies the image into RAM and moves the loop
// device over to the copy. After that the boot medium is never touched
// again. A version installed by `lightwhale upgrade` is started by kexec
// with its root image on the data filesystem instead (installed.go).
package stage1

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/u-root/u-root/pkg/kmodule"
	"github.com/u-root/u-root/pkg/mount"
	"github.com/u-root/u-root/pkg/mount/loop"
	"golang.org/x/sys/unix"

	"lightwhale/internal/cli"
	"lightwhale/internal/modalias"
	"lightwhale/internal/osversion"
)

const name = "init"

const about = `Stage 1 of the Lightwhale boot, run by the kernel as /init of the
initramfs (PID 1 only). It mounts /proc /sys /dev, loads the modules listed
in /etc/modules and the drivers of the devices present, finds the boot
medium (an ISO 9660 volume LIGHTWHALE* holding lightwhale/rootfs.squashfs
of this build), mounts that image read-only through a loop device on
/newroot, mounts what the services expect (/dev/pts, /dev/shm, /run, /tmp,
cgroup2, securityfs) and switches root to /sbin/init (or to init= from the
kernel command line); a child copies the image into RAM meanwhile. With
lightwhale.image=FSUUID:PATH (a version lightwhale upgrade installed, started
by kexec) the image is PATH on the data filesystem, read into RAM first.`

// Paths inside the initramfs.
const (
	modulesPath = "/etc/modules"
	newRoot     = "/newroot"
	defaultInit = "/sbin/init"
	// copierFlag starts the copy of the root image into RAM (startCopy).
	copierFlag = "copy-to-ram"
)

// Main is the applet.
func Main(args []string, stdio cli.IO) int {
	fs := cli.NewFlagSet(name, "", about, stdio.Err)
	if code, done := cli.Parse(fs, args); done {
		return code
	}
	if fs.NArg() == 2 && fs.Arg(0) == copierFlag {
		if err := copier(fs.Arg(1)); err != nil {
			fmt.Fprintf(stdio.Err, "lightwhale stage 1: %v; the system runs from the boot medium: do not remove it\n", err)
			return 1
		}
		return 0
	}
	if os.Getpid() != 1 {
		return cli.Fail(stdio, name, errors.New("only the kernel runs this, as PID 1 of the initramfs"))
	}
	if err := boot(stdio); err != nil {
		// Returning would panic the kernel and scroll the reason away; stay
		// with the message on the console instead.
		fmt.Fprintf(stdio.Err, "lightwhale stage 1: %v\n%sThe system cannot boot; it is halted.\n", err, memoryHint())
		// Sleep rather than block on select{}: with no goroutine left, the
		// runtime would call that a deadlock, exit, and panic the kernel.
		for {
			time.Sleep(time.Hour)
		}
	}
	return 0 // not reached: boot execs init
}

func boot(stdio cli.IO) error {
	for _, m := range []struct{ fstype, dir string }{
		{"proc", "/proc"}, {"sysfs", "/sys"}, {"devtmpfs", "/dev"},
	} {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			return fmt.Errorf("mkdir %s: %w", m.dir, err)
		}
		if _, err := mount.Mount(m.fstype, m.dir, m.fstype, "", unix.MS_NOSUID); err != nil {
			return fmt.Errorf("mount %s: %w", m.dir, err)
		}
	}

	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return fmt.Errorf("read kernel command line: %w", err)
	}
	init := InitFromCmdline(string(cmdline))

	p, aliases := loadModules(stdio)
	load := func(m string) error {
		if p == nil {
			return errors.New("no module prober")
		}
		return p.Probe(m, "")
	}
	fsid, rel, installed := osversion.ImageFromCmdline(string(cmdline))
	var img string
	var id RootfsID
	if installed {
		if img, err = findInstalled(stdio, aliases, load, fsid, rel); err != nil {
			// The boot medium's version decides again at the next boot
			// (it counts this switch as one that did not arrive).
			fmt.Fprintf(stdio.Err, "lightwhale stage 1: %v\nrestarting in 10 s: the boot medium's version takes over\n", err)
			time.Sleep(10 * time.Second)
			return unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
		}
	} else if img, id, err = findMedium(stdio, aliases, load); err != nil {
		return err
	}
	dev, err := attachReadOnly(img)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(newRoot, 0o755); err != nil {
		return fmt.Errorf("mkdir %s: %w", newRoot, err)
	}
	if _, err := mount.Mount(dev, newRoot, "squashfs", "", unix.MS_RDONLY); err != nil {
		return fmt.Errorf("mount the root image (%s) on %s: %w", dev, newRoot, err)
	}
	if installed {
		// Already in RAM; the loop device keeps the copy's tmpfs alive.
		unix.Unmount(ramDir, unix.MNT_DETACH)
	} else if err := startCopy(img, id.Size, dev); err != nil {
		// The boot goes on from the medium while a child copies the image
		// into RAM and moves the loop device over to the copy.
		return err
	}
	if err := mountEarly("/", newRoot); err != nil {
		return err
	}
	// The name until S20hostname sets the machine's own.
	unix.Sethostname([]byte("localhost"))
	// The guest's uptime here is make bench's "stage 1 done" figure.
	fmt.Fprintf(stdio.Err, "lightwhale stage 1: root squashfs mounted from %s, starting %s at %s s uptime\n", dev, init, uptime())
	// SwitchRoot moves /dev /proc /sys, deletes the initramfs (the squashfs
	// stays alive through the loop device) and execs init.
	if err := mount.SwitchRoot(newRoot, init); err != nil {
		return fmt.Errorf("switch root to %s: %w", newRoot, err)
	}
	return nil
}

// loadModules loads the listed modules with their dependencies, and returns
// the prober and the initramfs's module aliases for the drivers loaded
// later. A failure is reported, not fatal: a module may be built in, and
// what follows says clearly what is missing.
func loadModules(stdio cli.IO) (*kmodule.Prober, *modalias.Aliases) {
	logf := func(format string, a ...any) {
		fmt.Fprintf(stdio.Err, "lightwhale stage 1: "+format+"\n", a...)
	}
	aliases := &modalias.Aliases{}
	var uts unix.Utsname
	unix.Uname(&uts)
	if f, err := os.Open(filepath.Join("/lib/modules", unix.ByteSliceToString(uts.Release[:]), "modules.alias")); err != nil {
		logf("%v", err)
	} else {
		if aliases, err = modalias.Parse(f); err != nil {
			logf("%v", err)
			aliases = &modalias.Aliases{}
		}
		f.Close()
	}
	p, err := kmodule.NewProber(kmodule.ProbeOpts{})
	if err != nil {
		logf("modules: %v", err)
		return nil, aliases
	}
	f, err := os.Open(modulesPath)
	if err != nil {
		logf("%v", err)
		return p, aliases
	}
	defer f.Close()
	names, err := ParseModules(f)
	if err != nil {
		logf("%s: %v", modulesPath, err)
	}
	for _, n := range names {
		if err := p.Probe(n, ""); err != nil {
			logf("load module %s: %v", n, err)
		}
	}
	return p, aliases
}

// attachReadOnly attaches file to a free loop device and returns its path.
// Both are opened read-only, so the kernel makes the loop device read-only.
func attachReadOnly(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", fmt.Errorf("open root image: %w", err)
	}
	defer f.Close()
	dev, err := loop.FindDevice()
	if err != nil {
		return "", fmt.Errorf("find a free loop device: %w", err)
	}
	d, err := os.Open(dev)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", dev, err)
	}
	defer d.Close()
	if err := loop.SetFD(int(d.Fd()), int(f.Fd())); err != nil {
		return "", fmt.Errorf("attach %s to %s: %w", file, dev, err)
	}
	return dev, nil
}

// ParseModules reads a module list: one name per line; blank lines and
// everything after a # are ignored. A line with more than one word is an
// error (module parameters are not supported).
func ParseModules(r io.Reader) ([]string, error) {
	var names []string
	s := bufio.NewScanner(r)
	for n := 1; s.Scan(); n++ {
		line, _, _ := strings.Cut(s.Text(), "#")
		f := strings.Fields(line)
		switch len(f) {
		case 0:
		case 1:
			names = append(names, f[0])
		default:
			return names, fmt.Errorf("line %d: want one module name, got %q", n, strings.TrimSpace(line))
		}
	}
	return names, s.Err()
}

// InitFromCmdline returns the program to switch to: the last init= of the
// kernel command line (the kernel itself uses it only without an initramfs),
// else /sbin/init. Arguments after "--" belong to init, not to us.
func InitFromCmdline(cmdline string) string {
	init := defaultInit
	for _, f := range strings.Fields(cmdline) {
		if f == "--" {
			break
		}
		if v, ok := strings.CutPrefix(f, "init="); ok && strings.HasPrefix(v, "/") {
			init = v
		}
	}
	return init
}

// minRAM is the least memory the root squashfs (held in RAM) and dockerd
// leave a working system in: measured by make bench.
const minRAM = 416 << 20

// memoryHint explains the usual cause of a failed unpack or mount: too
// little RAM for the initramfs that carries the whole root filesystem.
func memoryHint() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return ""
	}
	var kb uint64
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
		}
	}
	if kb == 0 || kb*1024 >= minRAM {
		return ""
	}
	return fmt.Sprintf("This machine has %d MiB of RAM; Lightwhale needs at least %d MiB.\n", kb/1024, minRAM>>20)
}

// uptime is the first field of /proc/uptime, or "?" when unreadable.
func uptime() string {
	b, err := os.ReadFile("/proc/uptime")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}
