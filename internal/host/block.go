package host

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"github.com/u-root/u-root/pkg/mount/block"
	"golang.org/x/sys/unix"
)

// Device is a whole disk or a partition as the kernel sees it.
type Device struct {
	Name       string // sda, loop3p2
	Path       string // /dev/sda
	Size       uint64 // bytes
	SectorSize int    // logical
	ReadOnly   bool
	Partition  int    // 0 for a whole disk
	Start      uint64 // partitions: byte offset in the disk
	Parent     string // partitions: the disk's name
	Major      uint32
	Minor      uint32
}

// PartitionName is the kernel's name for partition n of disk: sda1,
// loop0p1, nvme0n1p1, mmcblk0p1.
func PartitionName(disk string, n int) string { return block.ComposePartName(disk, n) }

// PartitionPath is the node of partition n of the disk whose node is diskPath.
func PartitionPath(diskPath string, n int) string {
	return filepath.Join(filepath.Dir(diskPath), PartitionName(filepath.Base(diskPath), n))
}

// skipped are kinds of whole disk that are never user storage: loop devices
// (the root squashfs lives on one), RAM disks, optical drives, device-mapper
// and md stacks, network block devices, floppies.
var skipped = []string{"loop", "ram", "zram", "sr", "dm-", "md", "nbd", "fd", "mtdblock"}

// Disks lists whole disks with a non-zero size, except the skipped kinds.
func (s Linux) Disks() ([]Device, error) {
	ents, err := os.ReadDir(s.SysBlock)
	if err != nil {
		return nil, fmt.Errorf("list block devices: %w", err)
	}
	var out []Device
	for _, e := range ents {
		name := e.Name()
		if hasAnyPrefix(name, skipped) {
			continue
		}
		d, err := s.Device(name)
		if err != nil || d.Partition != 0 || d.Size == 0 {
			continue
		}
		out = append(out, d)
	}
	return out, nil
}

func hasAnyPrefix(s string, ps []string) bool {
	for _, p := range ps {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// Device reads what sysfs says about one block device by name.
func (s Linux) Device(name string) (Device, error) {
	dir := filepath.Join(s.SysBlock, name)
	d := Device{Name: name, Path: filepath.Join(s.Dev, name)}
	sectors, err := readUint(filepath.Join(dir, "size"))
	if err != nil {
		return d, fmt.Errorf("%s: %w", name, err)
	}
	d.Size = sectors * 512 // sysfs counts 512-byte units whatever the disk's sector size
	if ro, err := readUint(filepath.Join(dir, "ro")); err == nil {
		d.ReadOnly = ro != 0
	}
	if dev, err := os.ReadFile(filepath.Join(dir, "dev")); err == nil {
		fmt.Sscanf(strings.TrimSpace(string(dev)), "%d:%d", &d.Major, &d.Minor)
	}
	if n, err := readUint(filepath.Join(dir, "partition")); err == nil {
		d.Partition = int(n)
		start, _ := readUint(filepath.Join(dir, "start"))
		d.Start = start * 512
		// The parent is the directory this partition sits in, in sysfs.
		real, err := filepath.EvalSymlinks(dir)
		if err == nil {
			d.Parent = filepath.Base(filepath.Dir(real))
		}
		dir = filepath.Join(s.SysBlock, d.Parent)
	}
	d.SectorSize = 512
	if ss, err := readUint(filepath.Join(dir, "queue", "logical_block_size")); err == nil && ss > 0 {
		d.SectorSize = int(ss)
	}
	return d, nil
}

// Partitions lists the partitions the kernel has registered for a disk.
func (s Linux) Partitions(disk string) ([]Device, error) {
	ents, err := os.ReadDir(filepath.Join(s.SysBlock, disk))
	if err != nil {
		return nil, fmt.Errorf("list partitions of %s: %w", disk, err)
	}
	var out []Device
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), disk) {
			continue
		}
		if _, err := os.Stat(filepath.Join(s.SysBlock, disk, e.Name(), "partition")); err != nil {
			continue
		}
		if d, err := s.Device(e.Name()); err == nil {
			out = append(out, d)
		}
	}
	return out, nil
}

func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

// ReadAt reads n bytes at off; a short read at the end of the device is not an error.
func (Linux) ReadAt(path string, off int64, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	m, err := f.ReadAt(b, off)
	if err != nil && !(errors.Is(err, io.EOF) && m > 0) {
		return nil, fmt.Errorf("read %s at %d: %w", path, off, err)
	}
	return b[:m], nil
}

// OpenDisk opens a disk read-write; exclusive is O_EXCL, which fails with
// EBUSY while anything holds the disk or one of its partitions.
func (Linux) OpenDisk(path string, exclusive bool) (File, error) {
	flags := os.O_RDWR
	if exclusive {
		flags |= unix.O_EXCL
	}
	f, err := os.OpenFile(path, flags, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return f, nil
}

// Busy says why a disk must not be touched ("" if it is free): a mounted or
// swapped disk or partition, a device stacked on it (holders), or an
// exclusive opener.
func (s Linux) Busy(d Device) string {
	return CheckBusy(s, d, func(n string) []string {
		dir := filepath.Join(s.SysBlock, d.Name, "holders")
		if n != d.Name {
			dir = filepath.Join(s.SysBlock, d.Name, n, "holders")
		}
		var out []string
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			out = append(out, e.Name())
		}
		return out
	}, func() error {
		// O_EXCL on a block device fails with EBUSY while anything (a mount,
		// md, btrfs, another claimer) holds it or one of its partitions.
		fd, err := unix.Open(d.Path, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
		if err == nil {
			unix.Close(fd)
		}
		return err
	})
}

// CheckBusy is Busy's policy over the host's mounts and swaps (compared by
// device number), the holders of each node and an exclusive open.
func CheckBusy(h Host, d Device, holders func(name string) []string, openExcl func() error) string {
	devs := map[uint64]string{unix.Mkdev(d.Major, d.Minor): d.Name}
	names := []string{d.Name}
	parts, _ := h.Partitions(d.Name)
	for _, p := range parts {
		devs[unix.Mkdev(p.Major, p.Minor)] = p.Name
		names = append(names, p.Name)
	}
	ms, _ := h.Mounts()
	for _, m := range ms {
		if n, ok := devs[m.Dev]; ok {
			return fmt.Sprintf("%s is mounted at %s", n, m.Point)
		}
	}
	swaps, _ := h.Swaps()
	for _, sw := range swaps {
		if n, ok := devs[sw.Dev]; ok && sw.Dev != 0 {
			return fmt.Sprintf("%s is in use as swap", n)
		}
	}
	for _, n := range names {
		if hs := holders(n); len(hs) > 0 {
			return fmt.Sprintf("%s is held by %s", n, hs[0])
		}
	}
	if err := openExcl(); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return fmt.Sprintf("%s is busy (opened exclusively by another user)", d.Name)
		}
		return fmt.Sprintf("%s cannot be opened: %v", d.Name, err)
	}
	return ""
}

// Lock takes an exclusive BSD lock on a device node, the convention udev and
// systemd tools honour for "someone is partitioning this disk". It fails at
// once if another process holds it.
func (Linux) Lock(path string) (io.Closer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

// Reread asks the kernel to re-read the partition table (BLKRRPART).
func (Linux) Reread(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.IoctlSetInt(int(f.Fd()), unix.BLKRRPART, 0); err != nil {
		return fmt.Errorf("re-read partition table of %s: %w", path, err)
	}
	return nil
}

func blkpg(path string, op int32, pno int, start, length int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	p := unix.BlkpgPartition{Start: start, Length: length, Pno: int32(pno)}
	a := unix.BlkpgIoctlArg{Op: op, Datalen: int32(unsafe.Sizeof(p)), Data: (*byte)(unsafe.Pointer(&p))}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKPG, uintptr(unsafe.Pointer(&a)))
	if errno != 0 {
		return errno
	}
	return nil
}

// AddPartition registers partition pno (bytes start, length) of a disk
// with the kernel, as partx -a does.
func (Linux) AddPartition(path string, pno int, start, length int64) error {
	if err := blkpg(path, unix.BLKPG_ADD_PARTITION, pno, start, length); err != nil {
		return fmt.Errorf("register partition %d of %s: %w", pno, path, err)
	}
	return nil
}

// DelPartition removes partition pno of a disk from the kernel's view.
func (Linux) DelPartition(path string, pno int) error {
	if err := blkpg(path, unix.BLKPG_DEL_PARTITION, pno, 0, 0); err != nil {
		return fmt.Errorf("unregister partition %d of %s: %w", pno, path, err)
	}
	return nil
}
