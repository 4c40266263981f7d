package stage1

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

func TestParseModules(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
		wantErr  bool
	}{
		{name: "empty", in: "", want: nil},
		{name: "plain", in: "loop\nsquashfs\noverlay\n", want: []string{"loop", "squashfs", "overlay"}},
		{name: "comments and blanks", in: "# header\n\n  loop  \nsquashfs # the root\n\t\n", want: []string{"loop", "squashfs"}},
		{name: "no final newline", in: "loop\noverlay", want: []string{"loop", "overlay"}},
		{name: "parameters refused", in: "loop\nloop max_loop=8\n", want: []string{"loop"}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseModules(strings.NewReader(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseModules(%q) error = %v, want error %v", tc.in, err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseModules(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func TestInitFromCmdline(t *testing.T) {
	for _, tc := range []struct{ cmdline, want string }{
		{"", "/sbin/init"},
		{"console=tty0 console=ttyS0,115200 panic=10\n", "/sbin/init"},
		{"console=ttyS0 init=/bin/sh", "/bin/sh"},
		{"init=/bin/sh init=/sbin/init-debug quiet", "/sbin/init-debug"},
		{"rdinit=/init quiet", "/sbin/init"},
		{"init=relative/path", "/sbin/init"},
		{"quiet -- init=/bin/sh", "/sbin/init"},
	} {
		if got := InitFromCmdline(tc.cmdline); got != tc.want {
			t.Errorf("InitFromCmdline(%q) = %q, want %q", tc.cmdline, got, tc.want)
		}
	}
}

// The volume ID of a real ISO 9660 image (xorriso, as iso/build.sh makes
// the ISO), and nothing from bytes that are not a primary volume descriptor.
func TestVolumeID(t *testing.T) {
	if _, err := exec.LookPath("xorriso"); err != nil {
		t.Skip("xorriso is not installed (scripts/deps.sh installs it)")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	iso := filepath.Join(t.TempDir(), "t.iso")
	if out, err := exec.Command("xorriso", "-as", "mkisofs", "-quiet", "-r", "-volid", "LIGHTWHALE_0_9", "-o", iso, dir).CombinedOutput(); err != nil {
		t.Fatalf("xorriso: %v: %s", err, out)
	}
	if got := readVolumeID(iso); got != "LIGHTWHALE_0_9" {
		t.Errorf("volume ID %q; want LIGHTWHALE_0_9", got)
	}
	pvd := make([]byte, 2048)
	copy(pvd, "\x01CD002")
	if got := VolumeID(pvd); got != "" {
		t.Errorf("VolumeID of a non-ISO descriptor = %q; want empty", got)
	}
	if got := VolumeID(pvd[:10]); got != "" {
		t.Errorf("VolumeID of 10 bytes = %q; want empty", got)
	}
}

// The ID stage 1 computes is the one iso/build.sh writes with coreutils.
func TestRootfsIDMatchesBuild(t *testing.T) {
	img := filepath.Join(t.TempDir(), "rootfs.squashfs")
	data := make([]byte, 100<<10)
	rand.Read(data)
	if err := os.WriteFile(img, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sh", "-c", `echo "$(stat -c %s "$1") $(head -c 65536 "$1" | sha256sum | cut -d' ' -f1)"`, "sh", img).Output()
	if err != nil {
		t.Fatal(err)
	}
	want, err := ParseRootfsID(string(out))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadRootfsID(bytes.NewReader(data), int64(len(data)))
	if err != nil || got != want {
		t.Errorf("ReadRootfsID = %v, %v; want %v", got, err, want)
	}
	data[70<<10] ^= 1 // past the head: the same ID
	if again, _ := ReadRootfsID(bytes.NewReader(data), int64(len(data))); again != want {
		t.Errorf("a change past the first 64 KiB changed the ID")
	}
	data[0] ^= 1
	if other, _ := ReadRootfsID(bytes.NewReader(data), int64(len(data))); other == want {
		t.Errorf("a change in the first 64 KiB kept the ID")
	}
	for _, bad := range []string{"", "12", "x " + want.Head, "-5 " + want.Head, "12 abc", "12 " + want.Head + " extra"} {
		if _, err := ParseRootfsID(bad); err == nil {
			t.Errorf("ParseRootfsID(%q): no error", bad)
		}
	}
}

// The move to RAM on a real loop device: a squashfs mounted from one file
// keeps reading, whole, after toRAM has moved the loop device to a copy and
// the original is gone.
func TestToRAMMovesTheLoopDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loop devices and mounts")
	}
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		t.Skip("mksquashfs is not installed (scripts/deps.sh installs squashfs-tools)")
	}
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	os.Mkdir(tree, 0o755)
	data := make([]byte, 3<<20)
	rand.Read(data)
	if err := os.WriteFile(filepath.Join(tree, "blob"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	medium := filepath.Join(dir, "medium.squashfs")
	if out, err := exec.Command("mksquashfs", tree, medium, "-quiet", "-no-progress", "-comp", "zstd").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v: %s", err, out)
	}
	dev, err := attachReadOnly(medium)
	if err != nil {
		t.Skipf("no loop device: %v", err)
	}
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	if err := unix.Mount(dev, mnt, "squashfs", unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.Unmount(mnt, 0)
		if f, err := os.Open(dev); err == nil {
			unix.IoctlSetInt(int(f.Fd()), unix.LOOP_CLR_FD, 0)
			f.Close()
		}
	})

	st, _ := os.Stat(medium)
	copyPath := filepath.Join(dir, "copy.squashfs")
	src, _ := os.Open(medium)
	dst, _ := os.Create(copyPath)
	dstRO, _ := os.Open(copyPath)
	loop, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []*os.File{src, dstRO, loop} {
		defer f.Close()
	}
	if err := toRAM(src, dst, dstRO, loop, st.Size()); err != nil {
		t.Fatal(err)
	}
	backing, _ := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dev), "loop/backing_file"))
	if got := strings.TrimSpace(string(backing)); got != copyPath {
		t.Errorf("%s is backed by %q; want the copy %q", dev, got, copyPath)
	}
	if err := os.Remove(medium); err != nil {
		t.Fatal(err)
	}
	unix.Sync()
	os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0o200)
	got, err := os.ReadFile(filepath.Join(mnt, "blob"))
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("after the move, the file reads %d bytes (%v); want the same %d bytes", len(got), err, len(data))
	}

	// A short copy is refused before the loop device is touched.
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("x"), 0o400)
	s1, _ := os.Open(short)
	defer s1.Close()
	d2, _ := os.Create(filepath.Join(dir, "copy2"))
	d2RO, _ := os.Open(filepath.Join(dir, "copy2"))
	defer d2RO.Close()
	if err := toRAM(s1, d2, d2RO, loop, st.Size()); err == nil || !strings.Contains(err.Error(), "copied 1 bytes of") {
		t.Errorf("toRAM of a short image: %v; want a short-copy error", err)
	}
}

// The root image's tmpfs is sized to it (2 MiB of room, rounded down to
// a MiB) and never swapped (to zram).
func TestMountRAMIsSizedAndNotSwapped(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts")
	}
	dir := filepath.Join(t.TempDir(), "ram")
	if err := mountRAM(dir, 5<<20+1); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var opts string
	for _, l := range strings.Split(string(info), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == dir {
			opts = f[len(f)-1] // the superblock's options
		}
	}
	for _, want := range []string{"size=7168k", "mode=700", "noswap"} {
		if !strings.Contains(","+opts+",", ","+want+",") {
			t.Errorf("%s mounted with %q; want %s among them", dir, opts, want)
		}
	}
}

// A stall (the guest starved by its host) counts for a second at most.
func TestWaitClockIgnoresStalls(t *testing.T) {
	var c waitClock
	c.tick()
	c.last = c.last.Add(-50 * time.Second) // 50 s without a look
	if w := c.tick(); w > time.Second+100*time.Millisecond || w < time.Second {
		t.Fatalf("a 50 s stall counted %s; want 1 s", w)
	}
	c.last = c.last.Add(-200 * time.Millisecond)
	if w := c.tick(); w < 1200*time.Millisecond || w > 1300*time.Millisecond {
		t.Fatalf("after a 200 ms look: %s; want 1.2 s", w)
	}
}

// niceAndIOPrio reads a task's nice value (/proc/PID/task/TID/stat, field
// 19) and its I/O priority (ioprio_get).
func niceAndIOPrio(t *testing.T, pid, tid int) (int, uintptr) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "task", strconv.Itoa(tid), "stat"))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name, which is in parentheses: state is 3.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	nice, err := strconv.Atoi(f[19-3])
	if err != nil {
		t.Fatalf("stat of %d/%d: %v", pid, tid, err)
	}
	prio, _, errno := unix.Syscall(unix.SYS_IOPRIO_GET, ioprioWhoProcess, uintptr(tid), 0)
	if errno != 0 {
		t.Fatalf("ioprio_get %d: %v", tid, errno)
	}
	return nice, prio
}

func TestStartYieldingLowersOnlyTheChild(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: restoring the thread's nice value needs CAP_SYS_NICE")
	}
	runtime.LockOSThread() // the thread startYielding lowers and restores
	defer runtime.UnlockOSThread()
	self, tid := os.Getpid(), unix.Gettid()
	nice0, prio0 := niceAndIOPrio(t, self, tid)
	cmd := exec.Command("sleep", "10")
	if err := startYielding(cmd); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if nice, prio := niceAndIOPrio(t, cmd.Process.Pid, cmd.Process.Pid); nice != 19 || prio != ioprioClassIdle {
		t.Errorf("child: nice %d, ioprio %#x; want 19, %#x (idle class)", nice, prio, ioprioClassIdle)
	}
	if nice, prio := niceAndIOPrio(t, self, tid); nice != nice0 || prio != prio0 {
		t.Errorf("forking thread after: nice %d, ioprio %#x; want them restored to %d, %#x", nice, prio, nice0, prio0)
	}
}

// The copier, whose root is the old initramfs, finds Docker's socket below
// the new root it was handed, and stops waiting once the API answers.
func TestWaitForDockerUsesTheNewRoot(t *testing.T) {
	t.Chdir(t.TempDir()) // waitForDocker changes the directory; restore it
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "run"), 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", filepath.Join(root, "run", "docker.sock"))
	if err != nil {
		t.Fatal(err)
	}
	pinged := make(chan struct{}, 1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/_ping" {
			select {
			case pinged <- struct{}{}:
			default:
			}
			io.WriteString(w, "OK")
		}
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	dir, err := os.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	done := make(chan struct{})
	go func() { waitForDocker(dir); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("waitForDocker still waits, with Docker's API answering below the new root")
	}
	select {
	case <-pinged:
	default:
		t.Fatal("waitForDocker returned without asking the API")
	}
}
