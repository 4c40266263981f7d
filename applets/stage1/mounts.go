package stage1

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// earlyMount is one filesystem the root filesystem's services expect at
// boot. Stage 1 mounts them in Go: the shell script that did it after
// switch_root (S01mount) forked about 40 times, 1.9 s of a boot under
// emulation.
type earlyMount struct {
	fstype, dir, opts string
	flags             uintptr
	optional          bool // a failure is not worth stopping the boot
}

const (
	nsd  = unix.MS_NOSUID | unix.MS_NODEV
	nsde = nsd | unix.MS_NOEXEC
)

// earlyMounts are mounted under the initramfs's /dev, /sys and /run, which
// switch_root moves into the new root with everything mounted below them.
var earlyMounts = []earlyMount{
	{"devpts", "/dev/pts", "gid=5,mode=0620,ptmxmode=0666", unix.MS_NOSUID | unix.MS_NOEXEC, false},
	{"tmpfs", "/dev/shm", "mode=1777", nsd, false},
	{"mqueue", "/dev/mqueue", "", nsde, false},
	{"tmpfs", "/run", "mode=0755", nsd, false},
	{"cgroup2", "/sys/fs/cgroup", "", nsde, false}, // Docker's cgroups
	{"securityfs", "/sys/kernel/security", "", nsde, true},
	{"debugfs", "/sys/kernel/debug", "", nsde, true},
}

// tmpMount is /tmp, mounted in the new root directly (switch_root moves
// only /dev, /proc, /sys and /run).
var tmpMount = earlyMount{"tmpfs", "/tmp", "mode=1777", nsd, false}

// devLinks are the /dev symlinks udev would make.
var devLinks = map[string]string{
	"/dev/fd":     "/proc/self/fd",
	"/dev/stdin":  "/proc/self/fd/0",
	"/dev/stdout": "/proc/self/fd/1",
	"/dev/stderr": "/proc/self/fd/2",
}

// runDirs are made in /run for the services.
var runDirs = []string{"/run/lightwhale", "/run/lock"}

// mountEarly mounts earlyMounts under root (the initramfs) and /tmp under
// newRoot, and makes the /dev links and /run directories.
func mountEarly(root, newRoot string) error {
	mnt := func(m earlyMount, at string) error {
		dir := filepath.Join(at, m.dir)
		if err := os.MkdirAll(dir, 0o755); err != nil && !m.optional {
			return fmt.Errorf("mkdir %s: %w", dir, err)
		}
		if err := unix.Mount(m.fstype, dir, m.fstype, m.flags, m.opts); err != nil && !m.optional {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, dir, err)
		}
		return nil
	}
	for _, m := range earlyMounts {
		if err := mnt(m, root); err != nil {
			return err
		}
	}
	if err := mnt(tmpMount, newRoot); err != nil {
		return err
	}
	for link, target := range devLinks {
		p := filepath.Join(root, link)
		os.Remove(p)
		if err := os.Symlink(target, p); err != nil {
			return fmt.Errorf("link %s: %w", p, err)
		}
	}
	for _, d := range runDirs {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return fmt.Errorf("mkdir %s: %w", d, err)
		}
	}
	return nil
}
