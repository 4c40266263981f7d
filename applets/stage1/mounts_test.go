package stage1

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// mountedTypes maps each mount point under dir to its filesystem type.
func mountedTypes(t *testing.T, dir string) map[string]string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 2 && strings.HasPrefix(f[1], dir+"/") {
			got[strings.TrimPrefix(f[1], dir)] = f[2]
		}
	}
	return got
}

// unmountUnder detaches every mount below dir, deepest first.
func unmountUnder(t *testing.T, dir string) {
	for range 3 {
		for m := range mountedTypes(t, dir) {
			unix.Unmount(filepath.Join(dir, m), unix.MNT_DETACH)
		}
	}
}

func TestMountEarly(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: mounts")
	}
	base := t.TempDir()
	root, newRoot := filepath.Join(base, "initramfs"), filepath.Join(base, "newroot")
	for _, d := range []string{root + "/dev", root + "/sys/fs/cgroup", root + "/sys/kernel/security", root + "/sys/kernel/debug", newRoot} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { unmountUnder(t, base) })
	if err := mountEarly(root, newRoot); err != nil {
		t.Fatal(err)
	}
	got := mountedTypes(t, base)
	want := map[string]string{"/newroot/tmp": "tmpfs"}
	for _, m := range earlyMounts {
		if !m.optional {
			want["/initramfs"+m.dir] = m.fstype
		}
	}
	for dir, fstype := range want {
		if got[dir] != fstype {
			t.Errorf("%s: mounted %q, want %s (all: %v)", dir, got[dir], fstype, got)
		}
	}
	for link, target := range devLinks {
		if l, err := os.Readlink(filepath.Join(root, link)); err != nil || l != target {
			t.Errorf("%s -> %q (%v), want %s", link, l, err, target)
		}
	}
	// /run/lightwhale is made in the /run tmpfs, which switch_root moves.
	for _, d := range runDirs {
		if fi, err := os.Stat(filepath.Join(root, d)); err != nil || !fi.IsDir() {
			t.Errorf("%s: %v", d, err)
		}
	}
}

func TestMountEarlyFailsLoudly(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: mounts")
	}
	base := t.TempDir()
	root, newRoot := filepath.Join(base, "initramfs"), filepath.Join(base, "newroot")
	os.MkdirAll(root+"/dev", 0o755)
	os.MkdirAll(newRoot, 0o755)
	// A file where /dev/pts must be: the boot must stop with its name.
	if err := os.WriteFile(root+"/dev/pts", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unmountUnder(t, base) })
	err := mountEarly(root, newRoot)
	if err == nil || !strings.Contains(err.Error(), "/dev/pts") {
		t.Fatalf("mountEarly = %v, want an error naming /dev/pts", err)
	}
}
