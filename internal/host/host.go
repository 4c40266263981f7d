// Package host is the one edge between persistence and the machine: block
// devices (sysfs, reads, BLKRRPART and BLKPG, BSD locks), mounts and
// /proc/self/mountinfo, swaps and /proc/swaps, files, and the external tools.
// Everything that touches the kernel goes through a Host, so that the steps
// that use it can be tested against Fake (package hostfake) without root, and
// against Linux on loop devices with it.
package host

import (
	"io"
	"os"
)

// Host is what persistence needs from the machine.
type Host interface {
	// Block devices.
	Disks() ([]Device, error)
	Device(name string) (Device, error)
	Partitions(disk string) ([]Device, error)
	Busy(d Device) string
	ReadAt(path string, off int64, n int) ([]byte, error)
	// OpenDisk opens a disk for writing; exclusive fails while anything
	// (a mount, a holder, another claimer) uses it.
	OpenDisk(path string, exclusive bool) (File, error)
	Lock(path string) (io.Closer, error)
	Reread(path string) error
	AddPartition(path string, pno int, start, length int64) error
	DelPartition(path string, pno int) error

	// Mounts and swaps.
	Mounts() ([]Mount, error)
	Mount(src, target, fstype string, flags uintptr, data string) error
	Unmount(target string, flags int) error
	Swaps() ([]Swap, error)
	Swapon(path string) error
	Swapoff(path string) error
	DevNum(path string) (uint64, error) // device number of a block node
	Statfs(path string) (total, free, avail uint64, err error)
	Sync()

	// Files.
	MkdirAll(path string, perm os.FileMode) error
	MkdirLike(dir, model string) error // dir with model's mode and owner
	WriteFile(path string, data []byte, perm os.FileMode) error
	AppendFile(path string, data []byte) error
	ReadFile(path string) ([]byte, error)
	Exists(path string) bool
	Rename(oldpath, newpath string) error // within one filesystem, e.g. a subvolume
	Remove(path string) error             // a file, or an empty directory; gone already is no error

	// Tools: Run waits and puts the tool's output into its error; Start
	// leaves it running after this process exits.
	Run(name string, args ...string) ([]byte, error)
	Start(name string, args ...string) error
}

// File is an opened disk.
type File interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
	Close() error
}

// Mount is one line of /proc/self/mountinfo.
type Mount struct {
	Dev          uint64 // device number (unix.Mkdev)
	Root, Point  string
	FSType       string
	Source       string
	Options      string // per mount
	SuperOptions string // per filesystem
}

// Swap is one line of /proc/swaps.
type Swap struct {
	Path string
	Dev  uint64 // device number, 0 when Path is not a block device (a file)
}

// MountedAt returns the top-most mount at point, if any.
func MountedAt(h Host, point string) (Mount, bool) {
	ms, _ := h.Mounts()
	var found Mount
	ok := false
	for _, m := range ms {
		if m.Point == point {
			found, ok = m, true
		}
	}
	return found, ok
}

// SwapActive tells whether the block device at path is an active swap,
// compared by device number: /proc/swaps may name it by another path (a
// symlink, or a node of another mount namespace).
func SwapActive(h Host, path string) bool {
	dev, err := h.DevNum(path)
	swaps, _ := h.Swaps()
	for _, s := range swaps {
		if s.Path == path || (err == nil && s.Dev != 0 && s.Dev == dev) {
			return true
		}
	}
	return false
}
