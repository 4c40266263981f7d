package btrfs

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lightwhale/internal/probe"
	"lightwhale/tests/vm"
)

func TestProfile(t *testing.T) {
	for n, want := range map[int]string{1: "single/dup", 2: "raid1/raid1", 3: "raid1/raid1c3", 4: "raid1/raid1c4", 7: "raid1/raid1c4"} {
		d, m := Profile(n)
		if got := d + "/" + m; got != want {
			t.Errorf("Profile(%d) = %s, want %s", n, got, want)
		}
	}
}

func TestProfiles(t *testing.T) {
	df := "Data, RAID1: total=1.00GiB, used=0.00B\nSystem, RAID1: total=8.00MiB, used=16.00KiB\nMetadata, RAID1C3: total=256.00MiB, used=112.00KiB\nGlobalReserve, single: total=3.25MiB, used=0.00B\n"
	if got := Profiles(df); got != "data raid1, metadata raid1c3" {
		t.Errorf("Profiles = %q", got)
	}
}

// tools runs the real programs, as internal/host does.
type tools struct{}

func (tools) Run(name string, args ...string) ([]byte, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}
func (tools) Start(name string, args ...string) error { return exec.Command(name, args...).Start() }
func (tools) Exists(path string) bool                 { _, err := os.Stat(path); return err == nil }

func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not installed (scripts/deps.sh installs btrfs-progs)", name)
	}
}

func image(t *testing.T, sizeMiB int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	if err := vm.NewDisk(p, sizeMiB, ""); err != nil {
		t.Fatal(err)
	}
	return p
}

func super(t *testing.T, path string) *probe.Btrfs {
	t.Helper()
	b := make([]byte, probe.HeadBytes)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return probe.ParseBtrfs(b)
}

// TestMkfsOnImages makes real filesystems on image files, as Talos's
// pkg/makefs tests do: one device and three (raid1c3 metadata), and reads
// the result back with our own superblock parser.
func TestMkfsOnImages(t *testing.T) {
	needTool(t, "mkfs.btrfs")
	one := image(t, 300)
	if err := Mkfs(tools{}, "test-one", one); err != nil {
		t.Fatal(err)
	}
	if sb := super(t, one); sb == nil || sb.Label != "test-one" || sb.NumDevices != 1 {
		t.Errorf("one device: superblock %+v", sb)
	}
	var three []string
	for i := 0; i < 3; i++ {
		three = append(three, image(t, 300))
	}
	if err := Mkfs(tools{}, "test-three", three...); err != nil {
		t.Fatal(err)
	}
	fsid := ""
	for i, p := range three {
		sb := super(t, p)
		if sb == nil || sb.Label != "test-three" || sb.NumDevices != 3 || sb.DevID != uint64(i+1) {
			t.Fatalf("device %d: superblock %+v", i, sb)
		}
		if fsid != "" && sb.FSIDString() != fsid {
			t.Errorf("device %d in filesystem %s, others in %s", i, sb.FSIDString(), fsid)
		}
		fsid = sb.FSIDString()
	}
	// A tool failure comes back with the tool's words in the error.
	err := Mkfs(tools{}, "x", filepath.Join(t.TempDir(), "missing.img"))
	if err == nil || !strings.Contains(err.Error(), "mkfs.btrfs") {
		t.Errorf("mkfs on a missing file: %v", err)
	}
}

// TestMountedOps runs the tools that need a mounted filesystem: as root,
// through a loop mount of an image file.
func TestMountedOps(t *testing.T) {
	needTool(t, "mkfs.btrfs")
	needTool(t, "btrfs")
	if os.Geteuid() != 0 {
		t.Skip("not root: mounting an image needs root")
	}
	img := image(t, 300)
	if err := Mkfs(tools{}, "before", img); err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot loop-mount an image here: %v: %s", err, out)
	}
	t.Cleanup(func() {
		// A background balance may hold it for a moment.
		for i := 0; i < 50 && exec.Command("umount", mnt).Run() != nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
	})
	sv := filepath.Join(mnt, "@sub")
	for i := 0; i < 2; i++ { // the second call finds it there
		if err := CreateSubvolume(tools{}, sv); err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
	}
	if out, _ := (tools{}).Run("btrfs", "subvolume", "list", mnt); !strings.Contains(string(out), "path @sub") {
		t.Errorf("subvolume missing: %s", out)
	}
	// A snapshot taken later is created later, though its root directory
	// keeps the birth time of the subvolume it copies.
	time.Sleep(1100 * time.Millisecond)
	snap := filepath.Join(mnt, "@snap")
	if err := Snapshot(tools{}, sv, snap, true); err != nil {
		t.Fatal(err)
	}
	subInfo, err1 := Show(tools{}, sv)
	snapInfo, err2 := Show(tools{}, snap)
	if err1 != nil || err2 != nil || !snapInfo.Created.After(subInfo.Created) || time.Since(snapInfo.Created) > time.Minute || snapInfo.ID <= subInfo.ID {
		t.Errorf("Show: subvolume %+v (%v), its snapshot %+v (%v); want the snapshot later (time and ID), and now", subInfo, err1, snapInfo, err2)
	}
	if err := DeleteSubvolume(tools{}, snap); err != nil || (tools{}).Exists(snap) {
		t.Errorf("DeleteSubvolume: %v, still there: %v", err, (tools{}).Exists(snap))
	}
	if err := SetLabel(tools{}, mnt, "after"); err != nil {
		t.Fatal(err)
	}
	if sb := super(t, img); sb == nil || sb.Label != "after" {
		t.Errorf("label on disk after SetLabel: %+v", sb)
	}
	if got, err := Df(tools{}, mnt); err != nil || got != "data single, metadata dup" {
		t.Errorf("Df = %q, %v", got, err)
	}
	if err := Rebalance(tools{}, mnt, 1); err != nil {
		t.Errorf("Rebalance: %v", err)
	}
	for i := 0; i < 50 && strings.Contains(string(must((tools{}).Run("btrfs", "balance", "status", mnt))), "running"); i++ {
		time.Sleep(100 * time.Millisecond)
	}
}

func must(b []byte, _ error) []byte { return b }
