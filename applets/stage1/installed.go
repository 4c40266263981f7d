package stage1

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/u-root/u-root/pkg/mount"
	"golang.org/x/sys/unix"

	"lightwhale/internal/cli"
	"lightwhale/internal/modalias"
	"lightwhale/internal/paths"
	"lightwhale/internal/probe"
)

// An installed version (lightwhale upgrade) boots by kexec from the boot
// medium's version, with paths.ImageParam=FSUUID:PATH on its command line:
// its root image is PATH in the data subvolume of the btrfs FSUUID, not a
// file of the medium. Stage 1 mounts that filesystem read-only (degraded
// allowed: nothing is written, and a RAID1 that lost a disk still boots),
// copies the image into RAM, checks it is this build's, and lets the
// filesystem go before init mounts it for real.

const dataMountDir = "/data"

// btrfsMembers returns the block devices holding a btrfs superblock of
// fsid, and how many devices its superblock says the filesystem has.
func btrfsMembers(sys, dev, fsid string) (members []string, want uint64) {
	for _, name := range blockDevices(sys) {
		f, err := os.Open(filepath.Join(dev, name))
		if err != nil {
			continue
		}
		head := make([]byte, 128<<10)
		n, _ := io.ReadFull(f, head)
		f.Close()
		if b := probe.ParseBtrfs(head[:n]); b != nil && b.FSIDString() == fsid {
			members = append(members, filepath.Join(dev, name))
			want = b.NumDevices
		}
	}
	return members, want
}

// findInstalled finds the data filesystem fsid (loading the drivers the
// devices ask for, as for the medium), copies the image at rel in its data
// subvolume into RAM and returns the copy's path. It waits for every member
// for a while, then mounts with the ones present.
func findInstalled(stdio cli.IO, aliases *modalias.Aliases, load func(string) error, fsid, rel string) (string, error) {
	want, err := loadRootfsID()
	if err != nil {
		return "", err
	}
	logf := func(format string, a ...any) {
		fmt.Fprintf(stdio.Err, "lightwhale stage 1: "+format+"\n", a...)
	}
	// btrfs's checksum (libcrc32c asks the crypto API for crc32c when it
	// loads): with no modprobe in the initramfs to answer the kernel's
	// request for it, it is loaded first, by name (modules.softdep).
	for _, m := range []string{"crc32c_generic", "btrfs"} {
		if err := load(m); err != nil {
			logf("load module %s: %v", m, err)
		}
	}
	loaded := map[string]bool{}
	var clock waitClock
	var members []string
	for {
		for _, m := range aliases.Modules(modalias.Scan("/sys")) {
			if !loaded[m] {
				loaded[m] = true
				if err := load(m); err != nil {
					logf("load module %s: %v", m, err)
				}
			}
		}
		var n uint64
		members, n = btrfsMembers("/sys", "/dev", fsid)
		if n > 0 && uint64(len(members)) >= n {
			break
		}
		if clock.tick() > mediumWait {
			if len(members) == 0 {
				return "", fmt.Errorf("the data filesystem %s (holding %s) was not found in %s", fsid, rel, mediumWait)
			}
			logf("data filesystem %s: %d of %d devices present; reading it degraded", fsid, len(members), n)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := os.MkdirAll(dataMountDir, 0o755); err != nil {
		return "", err
	}
	opts := "subvol=" + paths.Subvolumes[0] + ",degraded,rescue=nologreplay"
	for _, m := range members {
		opts += ",device=" + m
	}
	if _, err := mount.Mount(members[0], dataMountDir, "btrfs", opts, unix.MS_RDONLY|unix.MS_NOATIME); err != nil {
		return "", fmt.Errorf("mount the data filesystem %s read-only: %w", fsid, err)
	}
	defer unix.Unmount(dataMountDir, 0)
	img, err := os.Open(filepath.Join(dataMountDir, rel))
	if err != nil {
		return "", fmt.Errorf("the installed root image: %w", err)
	}
	defer img.Close()
	st, err := img.Stat()
	if err != nil {
		return "", err
	}
	if got, err := ReadRootfsID(img, st.Size()); err != nil || got != want {
		return "", fmt.Errorf("%s is not this build's root image (%v)", rel, err)
	}
	if _, err := img.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	copyPath, err := copyToRAM(img, st.Size())
	if err != nil {
		return "", err
	}
	logf("root image: %s on the data filesystem %s, copied into RAM", rel, fsid)
	return copyPath, nil
}

// copyToRAM copies the image into a tmpfs of its own, sized to it.
func copyToRAM(src io.Reader, size int64) (string, error) {
	if err := mountRAM(ramDir, size); err != nil {
		return "", err
	}
	p := filepath.Join(ramDir, "rootfs.squashfs")
	dst, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o400)
	if err != nil {
		return "", err
	}
	n, err := io.Copy(dst, src)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != size {
		err = errors.New("short copy")
	}
	if err != nil {
		return "", fmt.Errorf("copy the root image into RAM: %w", err)
	}
	return p, nil
}
