package host

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"unsafe"

	"github.com/u-root/u-root/pkg/mount"
	"golang.org/x/sys/unix"

	"lightwhale/internal/atomicfile"
)

// Linux is the running kernel, its interfaces found under these paths (a
// test may point SysBlock at a fake sysfs).
type Linux struct {
	SysBlock string // /sys/class/block
	Dev      string // /dev
	Proc     string // /proc
}

// Real is the machine this process runs on.
var Real = Linux{SysBlock: "/sys/class/block", Dev: "/dev", Proc: "/proc"}

// Mounts reads Proc/self/mountinfo.
func (s Linux) Mounts() ([]Mount, error) {
	f, err := os.Open(filepath.Join(s.Proc, "self", "mountinfo"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseMountinfo(f)
}

// ParseMountinfo parses the format of /proc/PID/mountinfo.
func ParseMountinfo(r io.Reader) ([]Mount, error) {
	var out []Mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root point options [optional...] - type source superoptions
		left, right, ok := strings.Cut(sc.Text(), " - ")
		l, r := strings.Fields(left), strings.Fields(right)
		if !ok || len(l) < 6 || len(r) < 2 {
			continue
		}
		var major, minor uint32
		fmt.Sscanf(l[2], "%d:%d", &major, &minor)
		m := Mount{Dev: unix.Mkdev(major, minor), Root: unescape(l[3]), Point: unescape(l[4]), Options: l[5], FSType: r[0], Source: unescape(r[1])}
		if len(r) > 2 {
			m.SuperOptions = r[2]
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

// unescape undoes the octal escapes of mountinfo and /proc/swaps (\040 for space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%o", &c); err == nil {
				b.WriteByte(byte(c))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Mount is u-root's mount.Mount.
func (Linux) Mount(src, target, fstype string, flags uintptr, data string) error {
	if fstype == "btrfs" {
		loadBtrfs()
	}
	_, err := mount.Mount(src, target, fstype, data, flags)
	return err
}

// Unmount detaches what is mounted at target.
func (Linux) Unmount(target string, flags int) error {
	if err := unix.Unmount(target, flags); err != nil {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	return nil
}

// Swaps reads Proc/swaps, with each block device's number.
func (s Linux) Swaps() ([]Swap, error) {
	b, err := os.ReadFile(filepath.Join(s.Proc, "swaps"))
	if err != nil {
		return nil, err
	}
	return ParseSwaps(b, s.DevNum), nil
}

// ParseSwaps parses /proc/swaps; devNum gives a path's device number.
func ParseSwaps(b []byte, devNum func(string) (uint64, error)) []Swap {
	var out []Swap
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		sw := Swap{Path: unescape(f[0])}
		if f[1] == "partition" {
			sw.Dev, _ = devNum(sw.Path)
		}
		out = append(out, sw)
	}
	return out
}

// DevNum is the device number of a block device node.
func (Linux) DevNum(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return 0, fmt.Errorf("%s is not a block device", path)
	}
	return st.Rdev, nil
}

func swapctl(nr uintptr, what, path string) error {
	p, err := unix.BytePtrFromString(path)
	if err != nil {
		return err
	}
	if _, _, e := unix.Syscall(nr, uintptr(unsafe.Pointer(p)), 0, 0); e != 0 {
		return fmt.Errorf("%s %s: %w", what, path, e)
	}
	return nil
}

// Swapon enables swap on path (swapon(2); x/sys has no wrapper).
func (Linux) Swapon(path string) error { return swapctl(unix.SYS_SWAPON, "swapon", path) }

// Swapoff disables swap on path.
func (Linux) Swapoff(path string) error { return swapctl(unix.SYS_SWAPOFF, "swapoff", path) }

// Statfs returns a filesystem's total, free and available bytes.
func (Linux) Statfs(path string) (total, free, avail uint64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, 0, 0, err
	}
	bs := uint64(st.Bsize)
	return st.Blocks * bs, st.Bfree * bs, st.Bavail * bs, nil
}

// Sync flushes every filesystem.
func (Linux) Sync() { unix.Sync() }

func (Linux) MkdirAll(path string, perm os.FileMode) error { return os.MkdirAll(path, perm) }

// MkdirLike creates dir with the mode and owner of model (so an overlay's
// root looks like the directory it covers).
func (Linux) MkdirLike(dir, model string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	st, err := os.Stat(model)
	if err != nil {
		return nil
	}
	if err := os.Chmod(dir, st.Mode().Perm()); err != nil {
		return err
	}
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return os.Lchown(dir, int(s.Uid), int(s.Gid))
	}
	return nil
}

// WriteFile replaces path atomically.
func (Linux) WriteFile(path string, data []byte, perm os.FileMode) error {
	return atomicfile.WriteFile(path, data, perm)
}

func (Linux) Rename(oldpath, newpath string) error { return os.Rename(oldpath, newpath) }

func (Linux) Remove(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// AppendFile appends to path, creating it world-readable.
func (Linux) AppendFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (Linux) ReadFile(path string) ([]byte, error) { return os.ReadFile(path) }

func (Linux) Exists(path string) bool { _, err := os.Stat(path); return err == nil }

// Run runs a tool and waits; its output goes into the error.
func (Linux) Run(name string, args ...string) ([]byte, error) {
	if name == "btrfs" || name == "mkfs.btrfs" {
		loadBtrfs()
	}
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// loadBtrfs loads the btrfs module before its first use: the boot does
// not load it (with raid6's self-benchmark it costs about 3 s of a boot
// under emulation), so a machine without Lightwhale disks never pays for it.
// A failure is left to the mount or tool that follows to report.
func loadBtrfs() {
	if _, err := os.Stat("/sys/module/btrfs"); err == nil {
		return
	}
	exec.Command("modprobe", "-q", "btrfs").Run()
}

// Start runs a tool in the background; it outlives this process.
func (Linux) Start(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return cmd.Process.Release()
}
