package persistence

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The layout every mode shares (seed 000, DESIGN.md).
const (
	DataDir    = "/mnt/lightwhale-data"
	StateDir   = DataDir + "/lightwhale-state"
	DockerRoot = StateDir + "/docker"
	RunDir     = "/run/lightwhale"
	ModeFile   = RunDir + "/mode"
	LockFile   = RunDir + "/lock"
	claimDir   = RunDir + "/claim"
)

// OverlayDirs are the directories made writable over the immutable root.
var OverlayDirs = []string{"/etc", "/var", "/home"}

func lowerDir(dir string) string { return RunDir + "/overlay/lower" + dir }
func upperDir(dir string) string { return StateDir + "/overlay/upper" + dir }
func workDir(dir string) string  { return StateDir + "/overlay/work" + dir }

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	Dev, Root, Point, FSType, Source, Options, SuperOptions string
}

// mounts reads /proc/self/mountinfo.
func mounts() ([]mountEntry, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mountEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root point options [optional...] - type source superoptions
		left, right, ok := strings.Cut(sc.Text(), " - ")
		l, r := strings.Fields(left), strings.Fields(right)
		if !ok || len(l) < 6 || len(r) < 2 {
			continue
		}
		e := mountEntry{Dev: l[2], Root: unescape(l[3]), Point: unescape(l[4]), Options: l[5], FSType: r[0], Source: unescape(r[1])}
		if len(r) > 2 {
			e.SuperOptions = r[2]
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

// unescape undoes mountinfo's octal escapes (\040 for space).
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

// mountedAt returns the top-most mount at point, if any.
func mountedAt(point string) (mountEntry, bool) {
	ms, _ := mounts()
	var found mountEntry
	ok := false
	for _, m := range ms {
		if m.Point == point {
			found, ok = m, true
		}
	}
	return found, ok
}

func mount(src, target, fstype string, flags uintptr, data string) error {
	if err := unix.Mount(src, target, fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s on %s (%s, %s): %w", src, target, fstype, data, err)
	}
	return nil
}

// mkdirLike creates dir with the mode and owner of model (so an overlay's
// root looks like the directory it covers).
func mkdirLike(dir, model string) error {
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

// overlay makes dir writable: its immutable content bound read-only at the
// lower path, the upper and work directories on the data filesystem.
func overlay(dir string) (string, error) {
	if m, ok := mountedAt(dir); ok && m.FSType == "overlay" && strings.Contains(m.SuperOptions, "upperdir="+upperDir(dir)) {
		return "already mounted", nil
	}
	lower := lowerDir(dir)
	if err := os.MkdirAll(lower, 0o755); err != nil {
		return "", err
	}
	if _, ok := mountedAt(lower); !ok {
		if err := mount(dir, lower, "", unix.MS_BIND, ""); err != nil {
			return "", err
		}
		// Read-only, so nothing can write around the overlay into the lower layer.
		if err := mount("", lower, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return "", err
		}
	}
	if err := mkdirLike(upperDir(dir), dir); err != nil {
		return "", err
	}
	if err := os.MkdirAll(workDir(dir), 0o700); err != nil {
		return "", err
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, upperDir(dir), workDir(dir))
	return "mounted", mount("overlay", dir, "overlay", 0, opts)
}

// activeSwaps lists the device paths in /proc/swaps.
func activeSwaps() map[string]bool {
	out := map[string]bool{}
	b, _ := os.ReadFile("/proc/swaps")
	for _, line := range strings.Split(string(b), "\n")[1:] {
		if f := strings.Fields(line); len(f) > 0 {
			out[f[0]] = true
			if r, err := filepath.EvalSymlinks(f[0]); err == nil {
				out[r] = true
			}
		}
	}
	return out
}

func swapon(path string) error {
	p, err := unix.BytePtrFromString(path)
	if err != nil {
		return err
	}
	if _, _, e := unix.Syscall(unix.SYS_SWAPON, uintptr(unsafe.Pointer(p)), 0, 0); e != 0 {
		return fmt.Errorf("swapon %s: %w", path, e)
	}
	return nil
}

func swapoff(path string) error {
	p, err := unix.BytePtrFromString(path)
	if err != nil {
		return err
	}
	if _, _, e := unix.Syscall(unix.SYS_SWAPOFF, uintptr(unsafe.Pointer(p)), 0, 0); e != 0 {
		return fmt.Errorf("swapoff %s: %w", path, e)
	}
	return nil
}
