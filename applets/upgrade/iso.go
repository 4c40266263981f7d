package upgrade

// The ISO: checked as bytes first (a file or a block device, an ISO 9660
// volume, not shorter than its volume says), then mounted read-only (a file
// through a read-only loop device) at a private directory, and its files
// read only beneath that directory, never through a symlink.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/u-root/u-root/pkg/mount/loop"
	"golang.org/x/sys/unix"
)

// probeISO checks that path is a regular file or a block device holding a
// whole ISO 9660 volume; block tells which.
func probeISO(path string) (block bool, err error) {
	st, err := os.Stat(path)
	if err != nil {
		return false, err
	}
	switch m := st.Mode(); {
	case m.IsRegular():
	case m&os.ModeDevice != 0 && m&os.ModeCharDevice == 0:
		block = true
	default:
		return false, fmt.Errorf("%s is not a file or a block device (want FILE.iso or /dev/BLOCKDEV)", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return block, err
	}
	defer f.Close()
	// The primary volume descriptor, at sector 16 of 2 KiB.
	pvd := make([]byte, 2048)
	if _, err := f.ReadAt(pvd, 16*2048); err != nil {
		if errors.Is(err, io.EOF) {
			return block, fmt.Errorf("%s is not an ISO 9660 image (too short to hold one)", path)
		}
		return block, fmt.Errorf("read %s: %w", path, err)
	}
	if pvd[0] != 1 || string(pvd[1:6]) != "CD001" {
		return block, fmt.Errorf("%s is not an ISO 9660 image", path)
	}
	blocks := int64(binary.LittleEndian.Uint32(pvd[80:84]))
	blockSize := int64(binary.LittleEndian.Uint16(pvd[128:130]))
	want := blocks * blockSize
	have, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return block, fmt.Errorf("size of %s: %w", path, err)
	}
	if have < want {
		return block, fmt.Errorf("%s is truncated: %d bytes of the %d its ISO 9660 volume says (copy it again)", path, have, want)
	}
	return block, nil
}

// kernelMount mounts the ISO at src read-only at dir, a file through a
// read-only loop device; undo unmounts it and detaches the loop device.
func kernelMount(src string, block bool, dir string) (undo func() error, err error) {
	const flags = unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	if block {
		if err := mountISO9660(src, dir, flags); err != nil {
			return nil, err
		}
		return func() error { return unix.Unmount(dir, 0) }, nil
	}
	dev, devFile, err := attachReadOnly(src)
	if err != nil {
		return nil, err
	}
	detach := func() error {
		err := loop.ClearFD(int(devFile.Fd()))
		devFile.Close()
		return err
	}
	if err := mountISO9660(dev, dir, flags); err != nil {
		return nil, errors.Join(err, detach())
	}
	return func() error {
		if err := unix.Unmount(dir, 0); err != nil {
			return fmt.Errorf("unmount %s: %w", dir, err)
		}
		return detach()
	}, nil
}

func mountISO9660(dev, dir string, flags uintptr) error {
	err := unix.Mount(dev, dir, "iso9660", flags, "")
	if errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("mount %s: this kernel cannot mount ISO 9660 (no isofs)", dev)
	}
	if err != nil {
		return fmt.Errorf("mount %s read-only: %w", dev, err)
	}
	return nil
}

// attachReadOnly attaches file to a free loop device, both opened
// read-only, so the kernel makes the loop device read-only. The device
// stays open: its fd detaches it.
func attachReadOnly(file string) (string, *os.File, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	// Another process may take the free device between the two calls.
	for try := 0; ; try++ {
		dev, err := loop.FindDevice()
		if err != nil {
			return "", nil, fmt.Errorf("find a free loop device: %w", err)
		}
		d, err := os.Open(dev)
		if err != nil {
			return "", nil, fmt.Errorf("open %s: %w", dev, err)
		}
		err = loop.SetFD(int(d.Fd()), int(f.Fd()))
		if err == nil {
			return dev, d, nil
		}
		d.Close()
		if !errors.Is(err, unix.EBUSY) || try == 5 {
			return "", nil, fmt.Errorf("attach %s to %s: %w", file, dev, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// openBeneath opens rel under root read-only, refusing symlinks and any
// path that leaves root or its filesystem, and anything but a regular file.
func openBeneath(root, rel string) (*os.File, os.FileInfo, error) {
	rfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	defer unix.Close(rfd)
	fd, err := unix.Openat2(rfd, rel, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_XDEV | unix.RESOLVE_NO_MAGICLINKS,
	})
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) {
		return nil, nil, fmt.Errorf("%s is a symbolic link, or under one, or on another filesystem: a Lightwhale ISO has none", rel)
	}
	if err != nil {
		return nil, nil, &os.PathError{Op: "open", Path: rel, Err: err}
	}
	f := os.NewFile(uintptr(fd), rel)
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("%s is not a regular file", rel)
	}
	return f, st, nil
}
