// Package hostfake is a host.Host for unprivileged tests: disks are sparse
// image files, and the kernel (partitions, mounts, swaps) and the tools
// (mkswap, mkfs.btrfs, btrfs) are simulated just far enough for persistence
// to run a whole claim against it and read back what it wrote. Like the test
// machines' kernel it has no partition parsers: BLKRRPART fails and
// partitions appear only through BLKPG.
//
// Every call that changes something is counted and logged; FailAt makes
// the n-th such call fail, so a test can break a run at every point.
package hostfake

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"lightwhale/internal/host"
	"lightwhale/internal/probe"
)

// ErrInjected is the error of the call FailAt names.
var ErrInjected = errors.New("injected failure")

// Fake is a simulated machine.
type Fake struct {
	Dir    string   // holds the disk images; disk nodes are Dir/NAME
	Log    []string // changing calls, in order
	FailAt int      // the FailAt-th changing call fails (1-based; 0: none)

	disks  []host.Device
	parts  map[string][]host.Device // registered partitions by disk name
	mounts []host.Mount
	swaps  []host.Swap
	dirs   map[string]bool
	files  map[string][]byte
	locks  map[string]bool
	subvol map[string]bool // "FSID/name": on the disks, so they survive Reboot
	nextFS byte
}

// New returns a machine with no disks.
func New(dir string) *Fake {
	f := &Fake{Dir: dir, subvol: map[string]bool{}}
	f.Reboot()
	return f
}

// AddDisk adds a sparse disk image of sizeMiB starting with head.
func (f *Fake) AddDisk(name string, sizeMiB int64, head string) host.Device {
	path := filepath.Join(f.Dir, name)
	if err := os.WriteFile(path, []byte(head), 0o600); err != nil {
		panic(err)
	}
	if err := os.Truncate(path, sizeMiB<<20); err != nil {
		panic(err)
	}
	d := host.Device{Name: name, Path: path, Size: uint64(sizeMiB) << 20, SectorSize: 512, Major: 8, Minor: uint32(16 * len(f.disks))}
	f.disks = append(f.disks, d)
	return d
}

// Reboot forgets what the kernel knew (mounts, swaps, registered
// partitions, locks, /run); what is on the disks stays.
func (f *Fake) Reboot() {
	f.parts = map[string][]host.Device{}
	f.mounts, f.swaps = nil, nil
	f.dirs = map[string]bool{"/": true, "/etc": true, "/var": true, "/home": true, "/run": true, "/mnt": true}
	f.files = map[string][]byte{}
	f.locks = map[string]bool{}
	f.FailAt = 0
	f.Log = nil
}

// change logs a changing call and fails it when it is the FailAt-th.
func (f *Fake) change(format string, args ...any) error {
	f.Log = append(f.Log, fmt.Sprintf(format, args...))
	if len(f.Log) == f.FailAt {
		f.Log[len(f.Log)-1] += " (FAILED)"
		return fmt.Errorf("%s: %w", f.Log[len(f.Log)-1], ErrInjected)
	}
	return nil
}

// ActivateSwapAs records path as an active swap under another name, as
// when another mount namespace activated it through its own node.
func (f *Fake) ActivateSwapAs(path, name string) {
	dev, err := f.DevNum(path)
	if err != nil {
		panic(err)
	}
	f.swaps = append(f.swaps, host.Swap{Path: name, Dev: dev})
}

// MountsAt lists the mounts at a point, bottom first.
func (f *Fake) MountsAt(point string) []host.Mount {
	var out []host.Mount
	for _, m := range f.mounts {
		if m.Point == point {
			out = append(out, m)
		}
	}
	return out
}

// Locked lists the disk locks held.
func (f *Fake) Locked() []string {
	var out []string
	for p, held := range f.locks {
		if held {
			out = append(out, p)
		}
	}
	return out
}

// node resolves a device node to its disk image and the offset in it.
func (f *Fake) node(path string) (disk host.Device, off int64, dev host.Device, err error) {
	for _, d := range f.disks {
		if d.Path == path {
			return d, 0, d, nil
		}
		for _, p := range f.parts[d.Name] {
			if p.Path == path {
				return d, int64(p.Start), p, nil
			}
		}
	}
	return host.Device{}, 0, host.Device{}, fmt.Errorf("%s: %w", path, os.ErrNotExist)
}

// Block devices.

func (f *Fake) Disks() ([]host.Device, error) { return slices.Clone(f.disks), nil }

func (f *Fake) Device(name string) (host.Device, error) {
	_, _, d, err := f.node(filepath.Join(f.Dir, name))
	return d, err
}

func (f *Fake) Partitions(disk string) ([]host.Device, error) {
	return slices.Clone(f.parts[disk]), nil
}

// Busy is host's real policy over the fake's mounts and swaps.
func (f *Fake) Busy(d host.Device) string {
	return host.CheckBusy(f, d, func(string) []string { return nil }, func() error { return nil })
}

func (f *Fake) ReadAt(path string, off int64, n int) ([]byte, error) {
	disk, base, _, err := f.node(path)
	if err != nil {
		return nil, err
	}
	r, err := os.Open(disk.Path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b := make([]byte, n)
	m, err := r.ReadAt(b, base+off)
	if err != nil && !(errors.Is(err, io.EOF) && m > 0) {
		return nil, err
	}
	return b[:m], nil
}

func (f *Fake) OpenDisk(path string, exclusive bool) (host.File, error) {
	if err := f.change("open %s", path); err != nil {
		return nil, err
	}
	disk, _, _, err := f.node(path)
	if err != nil {
		return nil, err
	}
	if exclusive && f.Busy(disk) != "" {
		return nil, fmt.Errorf("open %s: %w", path, unix.EBUSY)
	}
	r, err := os.OpenFile(disk.Path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	return &file{File: r, f: f, name: path}, nil
}

// file logs and can fail each write.
type file struct {
	*os.File
	f    *Fake
	name string
}

func (w *file) WriteAt(b []byte, off int64) (int, error) {
	if err := w.f.change("write %s @%d", w.name, off); err != nil {
		return 0, err
	}
	return w.File.WriteAt(b, off)
}

type unlocker struct {
	f    *Fake
	path string
}

func (u unlocker) Close() error { u.f.locks[u.path] = false; return nil }

func (f *Fake) Lock(path string) (io.Closer, error) {
	if err := f.change("lock %s", path); err != nil {
		return nil, err
	}
	if f.locks[path] {
		return nil, fmt.Errorf("lock %s: %w", path, unix.EWOULDBLOCK)
	}
	f.locks[path] = true
	return unlocker{f, path}, nil
}

// Reread fails: like the test machines' kernel, this one parses no tables.
func (f *Fake) Reread(path string) error {
	return fmt.Errorf("re-read partition table of %s: %w", path, unix.EINVAL)
}

func (f *Fake) AddPartition(path string, pno int, start, length int64) error {
	if err := f.change("blkpg add %s %d", path, pno); err != nil {
		return err
	}
	disk, _, _, err := f.node(path)
	if err != nil {
		return err
	}
	name := host.PartitionName(disk.Name, pno)
	f.parts[disk.Name] = append(f.parts[disk.Name], host.Device{
		Name: name, Path: filepath.Join(f.Dir, name), Size: uint64(length), SectorSize: disk.SectorSize,
		Partition: pno, Start: uint64(start), Parent: disk.Name, Major: disk.Major, Minor: disk.Minor + uint32(pno),
	})
	return nil
}

func (f *Fake) DelPartition(path string, pno int) error {
	if err := f.change("blkpg del %s %d", path, pno); err != nil {
		return err
	}
	disk, _, _, err := f.node(path)
	if err != nil {
		return err
	}
	f.parts[disk.Name] = slices.DeleteFunc(f.parts[disk.Name], func(p host.Device) bool { return p.Partition == pno })
	return nil
}

// Mounts and swaps.

func (f *Fake) Mounts() ([]host.Mount, error) { return slices.Clone(f.mounts), nil }

func (f *Fake) Mount(src, target, fstype string, flags uintptr, data string) error {
	if err := f.change("mount %s %s %s %s", fstype, src, target, data); err != nil {
		return err
	}
	if !f.dirs[target] {
		return fmt.Errorf("mount on %s: %w", target, unix.ENOENT)
	}
	if flags&unix.MS_REMOUNT != 0 {
		return nil
	}
	m := host.Mount{Point: target, FSType: fstype, Source: src, SuperOptions: data}
	if flags&unix.MS_BIND != 0 {
		m.FSType = "bind"
	}
	if fstype == "btrfs" {
		sb, err := f.super(src)
		if err != nil {
			return err
		}
		for _, o := range strings.Split(data, ",") {
			if sv, ok := strings.CutPrefix(o, "subvol="); ok && !f.subvol[sb.FSIDString()+"/"+sv] {
				return fmt.Errorf("mount %s subvol %s: %w", src, sv, unix.ENOENT)
			}
		}
		m.Dev, _ = f.DevNum(src)
	}
	f.mounts = append(f.mounts, m)
	return nil
}

func (f *Fake) super(dev string) (*probe.Btrfs, error) {
	head, err := f.ReadAt(dev, 0, probe.HeadBytes)
	if err != nil {
		return nil, err
	}
	sb := probe.ParseBtrfs(head)
	if sb == nil {
		return nil, fmt.Errorf("%s: no btrfs: %w", dev, unix.EINVAL)
	}
	return sb, nil
}

func (f *Fake) Unmount(target string, flags int) error {
	if err := f.change("umount %s", target); err != nil {
		return err
	}
	for i := len(f.mounts) - 1; i >= 0; i-- {
		if f.mounts[i].Point == target {
			f.mounts = slices.Delete(f.mounts, i, i+1)
			return nil
		}
	}
	return fmt.Errorf("unmount %s: %w", target, unix.EINVAL)
}

func (f *Fake) Swaps() ([]host.Swap, error) { return slices.Clone(f.swaps), nil }

// Swapon fails with EBUSY when the device is already swap under any name, as the kernel does.
func (f *Fake) Swapon(path string) error {
	if err := f.change("swapon %s", path); err != nil {
		return err
	}
	dev, err := f.DevNum(path)
	if err != nil {
		return err
	}
	for _, s := range f.swaps {
		if s.Dev == dev {
			return fmt.Errorf("swapon %s: %w", path, unix.EBUSY)
		}
	}
	head, _ := f.ReadAt(path, 0, 4096)
	if probe.ParseSwap(head) == nil {
		return fmt.Errorf("swapon %s: %w", path, unix.EINVAL)
	}
	f.swaps = append(f.swaps, host.Swap{Path: path, Dev: dev})
	return nil
}

func (f *Fake) Swapoff(path string) error {
	if err := f.change("swapoff %s", path); err != nil {
		return err
	}
	n := len(f.swaps)
	f.swaps = slices.DeleteFunc(f.swaps, func(s host.Swap) bool { return s.Path == path })
	if len(f.swaps) == n {
		return fmt.Errorf("swapoff %s: %w", path, unix.EINVAL)
	}
	return nil
}

func (f *Fake) DevNum(path string) (uint64, error) {
	_, _, d, err := f.node(path)
	if err != nil {
		return 0, err
	}
	return unix.Mkdev(d.Major, d.Minor), nil
}

func (f *Fake) Statfs(string) (total, free, avail uint64, err error) {
	return 1 << 30, 1 << 29, 1 << 29, nil
}
func (f *Fake) Sync() {}

// Files.

func (f *Fake) MkdirAll(path string, _ os.FileMode) error {
	if err := f.change("mkdir %s", path); err != nil {
		return err
	}
	for p := filepath.Clean(path); !f.dirs[p]; p = filepath.Dir(p) {
		f.dirs[p] = true
	}
	return nil
}

func (f *Fake) MkdirLike(dir, _ string) error { return f.MkdirAll(dir, 0) }

func (f *Fake) WriteFile(path string, data []byte, _ os.FileMode) error {
	if err := f.change("write %s", path); err != nil {
		return err
	}
	f.files[path] = slices.Clone(data)
	return nil
}

func (f *Fake) AppendFile(path string, data []byte) error {
	f.files[path] = append(f.files[path], data...) // the warnings log: never fails, not counted
	return nil
}

// Rename moves a file or a directory and everything under it.
func (f *Fake) Rename(oldpath, newpath string) error {
	if err := f.change("rename %s %s", oldpath, newpath); err != nil {
		return err
	}
	if !f.dirs[oldpath] && f.files[oldpath] == nil {
		return fmt.Errorf("rename %s: %w", oldpath, os.ErrNotExist)
	}
	moved := func(p string) (string, bool) {
		if p == oldpath || strings.HasPrefix(p, oldpath+"/") {
			return newpath + strings.TrimPrefix(p, oldpath), true
		}
		return "", false
	}
	for p := range f.dirs {
		if n, ok := moved(p); ok {
			delete(f.dirs, p)
			f.dirs[n] = true
		}
	}
	for p, b := range f.files {
		if n, ok := moved(p); ok {
			delete(f.files, p)
			f.files[n] = b
		}
	}
	return nil
}

func (f *Fake) Remove(path string) error {
	if err := f.change("remove %s", path); err != nil {
		return err
	}
	delete(f.files, path)
	delete(f.dirs, path)
	return nil
}

func (f *Fake) ReadFile(path string) ([]byte, error) {
	b, ok := f.files[path]
	if !ok {
		return nil, fmt.Errorf("%s: %w", path, os.ErrNotExist)
	}
	return slices.Clone(b), nil
}

func (f *Fake) Exists(path string) bool {
	if f.dirs[path] || f.files[path] != nil {
		return true
	}
	if _, _, _, err := f.node(path); err == nil {
		return true
	}
	// A subvolume of the filesystem mounted above it.
	if m, ok := host.MountedAt(f, filepath.Dir(path)); ok && m.FSType == "btrfs" {
		if sb, err := f.super(m.Source); err == nil {
			return f.subvol[sb.FSIDString()+"/"+filepath.Base(path)]
		}
	}
	return false
}

// Tools.

// Run simulates the tools persistence runs: mkswap and mkfs.btrfs write
// their signatures; btrfs subvolume create and filesystem label change
// what later mounts and scans see.
func (f *Fake) Run(name string, args ...string) ([]byte, error) {
	cmd := strings.Join(append([]string{name}, args...), " ")
	if err := f.change("run %s", cmd); err != nil {
		return nil, err
	}
	switch {
	case name == "mkswap":
		dev := args[len(args)-1]
		b := make([]byte, 4096)
		copy(b[4096-10:], "SWAPSPACE2")
		copy(b[1024+12+16:], args[1])
		return nil, f.writeDev(dev, 0, b)
	case name == "mkfs.btrfs":
		label, devs := args[3], args[8:]
		f.nextFS++
		for i, dev := range devs {
			sb := make([]byte, 4096)
			sb[0x20] = f.nextFS
			copy(sb[0x40:], "_BHRfS_M")
			binary.LittleEndian.PutUint64(sb[0x48:], 1)
			binary.LittleEndian.PutUint64(sb[0x88:], uint64(len(devs)))
			binary.LittleEndian.PutUint64(sb[0xc9:], uint64(i+1))
			copy(sb[0x12b:], label)
			if err := f.writeDev(dev, 64<<10, sb); err != nil {
				return nil, err
			}
		}
		return nil, nil
	case name == "btrfs" && len(args) == 3 && args[0] == "subvolume" && args[1] == "create":
		sb, err := f.mountedSuper(filepath.Dir(args[2]))
		if err != nil {
			return nil, err
		}
		f.subvol[sb.FSIDString()+"/"+filepath.Base(args[2])] = true
		return nil, nil
	case name == "btrfs" && len(args) == 4 && args[0] == "filesystem" && args[1] == "label":
		sb, err := f.mountedSuper(args[2])
		if err != nil {
			return nil, err
		}
		return nil, f.relabel(sb.FSIDString(), args[3])
	case name == "btrfs" && len(args) == 3 && args[0] == "filesystem" && args[1] == "df":
		return []byte("Data, single: total=1.00GiB, used=0.00B\nMetadata, DUP: total=256.00MiB, used=112.00KiB\n"), nil
	case name == "btrfs":
		return nil, nil // device scan, filesystem sync, balance: nothing to simulate
	}
	return nil, fmt.Errorf("%s: not simulated", cmd)
}

func (f *Fake) Start(name string, args ...string) error {
	return f.change("start %s", strings.Join(append([]string{name}, args...), " "))
}

func (f *Fake) mountedSuper(mnt string) (*probe.Btrfs, error) {
	m, ok := host.MountedAt(f, mnt)
	if !ok || m.FSType != "btrfs" {
		return nil, fmt.Errorf("%s: not a mounted btrfs", mnt)
	}
	return f.super(m.Source)
}

// relabel writes label into every registered device of filesystem fsid.
func (f *Fake) relabel(fsid, label string) error {
	for _, d := range f.disks {
		for _, p := range f.parts[d.Name] {
			if sb, err := f.super(p.Path); err == nil && sb.FSIDString() == fsid {
				l := make([]byte, 256)
				copy(l, label)
				if err := f.writeDev(p.Path, 64<<10+0x12b, l); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (f *Fake) writeDev(path string, off int64, b []byte) error {
	disk, base, _, err := f.node(path)
	if err != nil {
		return err
	}
	w, err := os.OpenFile(disk.Path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer w.Close()
	_, err = w.WriteAt(b, base+off)
	return err
}

var _ host.Host = (*Fake)(nil)

// Sync is a no-op: the image is read back through the same page cache.
func (w *file) Sync() error { return nil }
