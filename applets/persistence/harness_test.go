package persistence

// The harness of the privileged tests: sparse files on loop devices, and the
// real binary run inside a private mount namespace so that its mounts (the
// data filesystem, the overlays over /etc, /var, /home) never leak to the host.

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"lightwhale/internal/paths"
	"lightwhale/internal/probe"
	"lightwhale/tests/vm"
)

var binary string // the lightwhale binary under test

func TestMain(m *testing.M) {
	flagUpdate := false
	for _, a := range os.Args {
		flagUpdate = flagUpdate || strings.Contains(a, "update")
	}
	binary = os.Getenv("LIGHTWHALE_BIN")
	if binary == "" && os.Geteuid() == 0 && !flagUpdate {
		dir, err := os.MkdirTemp("", "lightwhale-bin")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		binary = filepath.Join(dir, "lightwhale")
		out, err := exec.Command("go", "build", "-o", binary, "lightwhale/cmd/lightwhale").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build lightwhale: %v: %s\n", err, out)
			os.Exit(1)
		}
		defer os.RemoveAll(dir)
	}
	code := m.Run()
	os.Exit(code)
}

// needRoot skips (saying why) when the privileged prerequisites are absent.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("not root: loop devices, mounts and namespaces need root")
	}
	for _, tool := range []string{"losetup", "unshare", "nsenter", "mkfs.btrfs", "btrfs", "mkswap", "partx", "sfdisk"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (scripts/deps.sh installs it)", tool)
		}
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skip("no /dev/loop-control: this kernel has no loop devices")
	}
}

// attached holds the loop devices this process attached (their swap is
// switched off when a namespace closes).
var attached sync.Map

// loopDisk is a sparse file attached to a loop device.
type loopDisk struct {
	t      testing.TB
	file   string
	dev    string
	sector int
}

func newDisk(t testing.TB, sizeMiB int64, sector int, head string) *loopDisk {
	t.Helper()
	f := filepath.Join(t.TempDir(), "disk.img")
	if err := vm.NewDisk(f, sizeMiB, head); err != nil {
		t.Fatal(err)
	}
	d := &loopDisk{t: t, file: f, sector: sector}
	d.attach()
	t.Cleanup(d.detach)
	return d
}

func (d *loopDisk) writeAt(off int64, s string) {
	f, err := os.OpenFile(d.file, os.O_WRONLY, 0)
	if err != nil {
		d.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte(s), off); err != nil {
		d.t.Fatal(err)
	}
}

func (d *loopDisk) attach() {
	d.t.Helper()
	out, err := exec.Command("losetup", "--find", "--show", "--sector-size", fmt.Sprint(d.sector), d.file).CombinedOutput()
	if err != nil {
		d.t.Fatalf("losetup: %v: %s", err, out)
	}
	d.dev = strings.TrimSpace(string(out))
	attached.Store(d.dev, true)
}

func (d *loopDisk) detach() {
	if d.dev == "" {
		return
	}
	attached.Delete(d.dev)
	exec.Command("swapoff", d.dev+"p1").Run()
	// Partitions registered with BLKPG outlive the loop device: drop them,
	// or the next attach would start with stale ones (no real reboot does).
	exec.Command("partx", "-d", d.dev).Run()
	// The namespace holding its mounts may take a moment to go away.
	began := time.Now()
	for i := 0; i < 50; i++ {
		if exec.Command("losetup", "-d", d.dev).Run() == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if waited := time.Since(began); waited > time.Second {
		d.t.Logf("detaching %s took %s", d.dev, waited)
	}
	d.dev = ""
}

// reboot detaches and reattaches the disk and lets util-linux register its
// partitions, as a kernel with partition parsers would at boot.
func (d *loopDisk) reboot(partx bool) {
	d.detach()
	d.attach()
	if partx {
		exec.Command("partx", "-a", d.dev).Run()
	}
}

// sum is a digest of every byte of the backing file, reading only its data
// extents (holes read as zeros). The loop device writes through the file's
// page cache, so no sync is needed.
func (d *loopDisk) sum() [32]byte {
	f, err := os.Open(d.file)
	if err != nil {
		d.t.Fatal(err)
	}
	defer f.Close()
	// Only the content counts: each non-zero 4 KiB block with its offset.
	// Where the file's data extents lie is no part of it (writeback can
	// move their boundaries while the bytes stay the same), and a zero
	// block reads the same as a hole.
	h := sha256.New()
	fd := int(f.Fd())
	block := make([]byte, 4096)
	zero := make([]byte, 4096)
	var off int64
	for {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if err != nil {
			break // ENXIO: no more data
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			d.t.Fatal(err)
		}
		for at := start / 4096 * 4096; at < end; at += 4096 {
			n, err := f.ReadAt(block, at)
			if err != nil && err != io.EOF {
				d.t.Fatal(err)
			}
			if !bytes.Equal(block[:n], zero[:n]) {
				fmt.Fprintf(h, "@%d:", at)
				h.Write(block[:n])
			}
		}
		off = end
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

// partNames reads the GPT partition names with sfdisk (util-linux), an
// implementation independent of ours.
func (d *loopDisk) partNames() []string {
	out, err := exec.Command("sfdisk", "--json", d.dev).Output()
	if err != nil {
		return nil
	}
	var j struct {
		PartitionTable struct {
			Partitions []struct{ Name string } `json:"partitions"`
		} `json:"partitiontable"`
	}
	json.Unmarshal(out, &j)
	var names []string
	for _, p := range j.PartitionTable.Partitions {
		names = append(names, p.Name)
	}
	return names
}

func (d *loopDisk) part(n int) string { return fmt.Sprintf("%sp%d", d.dev, n) }

// data is the node of the data partition: the last one.
func (d *loopDisk) data() string { return d.part(len(d.partNames())) }

// btrfsOfPart reads the btrfs superblock from a partition node.
func btrfsOfPart(t testing.TB, node string) *probe.Btrfs {
	f, err := os.Open(node)
	if err != nil {
		return nil
	}
	defer f.Close()
	b := make([]byte, probe.HeadBytes)
	if _, err := f.ReadAt(b, 0); err != nil {
		return nil
	}
	return probe.ParseBtrfs(b)
}

// namespace is a private mount namespace kept alive by a sleeping process,
// with its own tmpfs at /run/lightwhale.
type namespace struct {
	t   testing.TB
	cmd *exec.Cmd
	pid int
}

func newNamespace(t testing.TB) *namespace {
	t.Helper()
	os.MkdirAll(paths.RunDir, 0o755)
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
		"mount -t tmpfs tmpfs "+paths.RunDir+" && echo ready && exec sleep 100000")
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("unshare: %v", err)
	}
	buf := make([]byte, 6)
	if _, err := stdout.Read(buf); err != nil || string(buf) != "ready\n" {
		t.Fatalf("namespace did not start: %q %v", buf, err)
	}
	ns := &namespace{t: t, cmd: cmd, pid: cmd.Process.Pid}
	t.Cleanup(ns.close)
	return ns
}

// close ends the namespace: its mounts go with it, as at a power cut.
func (ns *namespace) close() {
	if ns.cmd == nil {
		return
	}
	// Swap is global, not per namespace: switch off the swap partitions of
	// this process's loop devices only (another test run on the machine
	// has its own).
	attached.Range(func(dev, _ any) bool {
		exec.Command("swapoff", dev.(string)+"p1").Run()
		return true
	})
	// A background follower of a rebuild (setup-persistence restore
	// --wait, and any waiting for its lock) would keep the namespace, and
	// its mounts, alive: end every process inside it.
	ns.killInside()
	ns.cmd.Process.Kill()
	ns.cmd.Wait()
	ns.cmd = nil
	time.Sleep(100 * time.Millisecond)
}

// killInside kills the processes that share the namespace's mounts,
// other than the namespace's own holder.
func (ns *namespace) killInside() {
	own, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", ns.pid))
	if err != nil {
		return
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/ns/mnt")
	for _, p := range procs {
		pid, _ := strconv.Atoi(strings.Split(p, "/")[2])
		if l, err := os.Readlink(p); err == nil && l == own && pid != ns.pid {
			unix.Kill(pid, unix.SIGKILL)
		}
	}
}

// lw runs the binary inside the namespace.
func (ns *namespace) lw(args ...string) (string, int) {
	return ns.exec(append([]string{binary}, args...)...)
}

func (ns *namespace) exec(args ...string) (string, int) {
	ns.t.Helper()
	cmd := exec.Command("nsenter", append([]string{"-t", fmt.Sprint(ns.pid), "-m", "--"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		ns.t.Fatalf("nsenter %v: %v", args, err)
	}
	return out.String(), code
}

func (ns *namespace) sh(script string) string {
	out, _ := ns.exec("sh", "-c", script)
	return out
}

// mustStart runs setup-persistence on the given disks and requires success.
func (ns *namespace) mustStart(disks ...*loopDisk) string {
	ns.t.Helper()
	out, code := ns.lw(append([]string{"setup-persistence", "--wait", "2s"}, devicesArgs(disks...)...)...)
	if code != 0 {
		ns.t.Fatalf("setup-persistence exited %d:\n%s", code, out)
	}
	return out
}

func devicesArgs(disks ...*loopDisk) []string {
	var devs []string
	for _, d := range disks {
		devs = append(devs, d.dev)
	}
	return []string{"--devices", strings.Join(devs, ",")}
}

// fstype is the filesystem type mounted at path inside the namespace ("" if none).
func (ns *namespace) fstype(path string) string {
	script := `awk -v p="` + path + `" '$5 == p { for (i = 7; i <= NF; i++) if ($i == "-") print $(i+1) }' /proc/self/mountinfo | tail -1`
	return strings.TrimSpace(ns.sh(script))
}

func (ns *namespace) mountCount(path string) int {
	out := ns.sh("awk '$5 == \"" + path + "\"' /proc/self/mountinfo | wc -l")
	var n int
	fmt.Sscan(out, &n)
	return n
}
