package stage1

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/u-root/u-root/pkg/mount"
	"golang.org/x/sys/unix"

	"lightwhale/internal/cli"
	"lightwhale/internal/dockerping"
	"lightwhale/internal/modalias"
)

// The boot medium is the ISO 9660 filesystem the machine booted from: a CD,
// or the ISO written to a USB stick or a disk. The root image is a file on
// it, not a part of the initramfs, so that it is held in RAM once (the
// bootloader's copy of an initramfs and its unpacked files are two).
const (
	// MediumSquashfs is the root image's path on the medium (iso/build.sh).
	MediumSquashfs = "lightwhale/rootfs.squashfs"
	// VolumePrefix starts the volume ID of every Lightwhale ISO
	// (LIGHTWHALE_<version>); persistence keeps away from such disks too.
	VolumePrefix = "LIGHTWHALE"
	// rootfsIDPath is the initramfs's note of its own root image.
	rootfsIDPath = "/etc/rootfs.id"
	mediumDir    = "/medium"
	ramDir       = "/ram"
	// mediumWait bounds the search: a USB stick behind a slow hub can take
	// several seconds to show up, and giving up means no boot.
	mediumWait = 30 * time.Second
	// idHead is how much of the image its ID hashes: its superblock (with
	// the time it was made) and first blocks, cheap to read from a CD
	// under emulation.
	idHead = 64 << 10
)

// RootfsID tells one build's root image from another's: its size and the
// sha256 of its first 64 KiB. It picks the medium; it is not an integrity
// check.
type RootfsID struct {
	Size int64
	Head string
}

func (id RootfsID) String() string { return fmt.Sprintf("%d %s", id.Size, id.Head) }

// ParseRootfsID reads "SIZE HEX-SHA256", as iso/build.sh writes it.
func ParseRootfsID(s string) (RootfsID, error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return RootfsID{}, fmt.Errorf("root image ID %q: want \"SIZE SHA256\"", strings.TrimSpace(s))
	}
	n, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || n <= 0 {
		return RootfsID{}, fmt.Errorf("root image ID %q: bad size", strings.TrimSpace(s))
	}
	if b, err := hex.DecodeString(f[1]); err != nil || len(b) != sha256.Size {
		return RootfsID{}, fmt.Errorf("root image ID %q: bad sha256", strings.TrimSpace(s))
	}
	return RootfsID{Size: n, Head: f[1]}, nil
}

// ReadRootfsID computes the ID of the image in r, of the given size.
func ReadRootfsID(r io.Reader, size int64) (RootfsID, error) {
	h := sha256.New()
	if _, err := io.CopyN(h, r, min(size, idHead)); err != nil {
		return RootfsID{}, err
	}
	return RootfsID{Size: size, Head: hex.EncodeToString(h.Sum(nil))}, nil
}

// VolumeID returns the volume identifier of an ISO 9660 filesystem, given
// the 2 KiB at byte 32768 (its primary volume descriptor), or "".
func VolumeID(pvd []byte) string {
	if len(pvd) < 72 || pvd[0] != 1 || !bytes.Equal(pvd[1:6], []byte("CD001")) {
		return ""
	}
	return strings.TrimRight(string(pvd[40:72]), " \x00")
}

// readVolumeID reads the volume ID of the block device at path, or "".
func readVolumeID(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	pvd := make([]byte, 2048)
	if _, err := f.ReadAt(pvd, 16*2048); err != nil {
		return ""
	}
	return VolumeID(pvd)
}

// blockDevices lists the block devices of sysfs (disks and partitions),
// sorted.
func blockDevices(sys string) []string {
	es, _ := os.ReadDir(filepath.Join(sys, "class/block"))
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

// finder looks for the boot medium, loading the drivers that the devices
// present ask for: each driver can reveal more devices (a USB controller
// its stick, a SATA controller its disk), so it looks again until the
// medium is found or mediumWait has passed.
type finder struct {
	want    RootfsID
	aliases *modalias.Aliases
	load    func(module string) error
	log     func(format string, a ...any)
	loaded  map[string]bool
	refused map[string]string // device -> why it is not the medium
}

// waitClock measures a wait in time this process could use: each look
// counts for at most a second, so a guest starved by its host (a TCG guest
// on a busy machine stalled for 50 s once, in the kernel) does not run out
// of its wait before the devices its drivers announce have appeared.
type waitClock struct {
	waited time.Duration
	last   time.Time
}

func (c *waitClock) tick() time.Duration {
	now := time.Now()
	if !c.last.IsZero() {
		c.waited += min(now.Sub(c.last), time.Second)
	}
	c.last = now
	return c.waited
}

func (f *finder) find() (string, error) {
	var clock waitClock
	told := false
	for {
		for _, m := range f.aliases.Modules(modalias.Scan("/sys")) {
			if !f.loaded[m] {
				f.loaded[m] = true
				if err := f.load(m); err != nil {
					f.log("load module %s: %v", m, err)
				}
			}
		}
		for _, dev := range blockDevices("/sys") {
			if _, ok := f.refused[dev]; ok {
				continue
			}
			vol := readVolumeID("/dev/" + dev)
			if !strings.HasPrefix(vol, VolumePrefix) {
				continue // not (yet) readable, or another filesystem
			}
			if err := f.check(dev); err != nil {
				f.refused[dev] = fmt.Sprintf("%s (%s): %v", dev, vol, err)
				f.log("%s", f.refused[dev])
				continue
			}
			return dev, nil
		}
		waited := clock.tick()
		if waited > mediumWait {
			return "", f.notFound()
		}
		if !told && waited > 3*time.Second {
			f.log("waiting up to %s for the boot medium", mediumWait)
			told = true
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// check mounts dev on mediumDir and keeps it mounted if its root image is
// the one this initramfs was built with.
func (f *finder) check(dev string) error {
	if err := os.MkdirAll(mediumDir, 0o755); err != nil {
		return err
	}
	if _, err := mount.Mount("/dev/"+dev, mediumDir, "iso9660", "", unix.MS_RDONLY); err != nil {
		return fmt.Errorf("mount: %w", err)
	}
	err := func() error {
		img, err := os.Open(filepath.Join(mediumDir, MediumSquashfs))
		if err != nil {
			return fmt.Errorf("no %s on it", MediumSquashfs)
		}
		defer img.Close()
		st, err := img.Stat()
		if err != nil {
			return err
		}
		got, err := ReadRootfsID(img, st.Size())
		if err != nil {
			return fmt.Errorf("read %s: %w", MediumSquashfs, err)
		}
		if got != f.want {
			return errors.New("another build's root image (this kernel's initramfs was made with a different one)")
		}
		return nil
	}()
	if err != nil {
		unix.Unmount(mediumDir, 0)
	}
	return err
}

func (f *finder) notFound() error {
	var why []string
	for _, r := range f.refused {
		why = append(why, r)
	}
	sort.Strings(why)
	msg := fmt.Sprintf("the boot medium was not found in %s: no %s* ISO 9660 volume with this build's %s", mediumWait, VolumePrefix, MediumSquashfs)
	if len(why) > 0 {
		msg += "; refused: " + strings.Join(why, "; ")
	}
	return errors.New(msg)
}

// loopChangeFD is LOOP_CHANGE_FD (linux/loop.h): it swaps the file behind
// a read-only loop device for another of the same size, under the mounted
// filesystem, as live CDs move to RAM.
const loopChangeFD = 0x4C06

// toRAM is the copier's work, in a child of stage 1 that outlives the
// switch to the root filesystem: it copies the root image from the medium
// (src) into its tmpfs (dst), moves the loop device over to the copy
// (dstRO), and lets the medium go. Until then the system reads the medium.
func toRAM(src, dst, dstRO, loopDev *os.File, size int64) error {
	t0 := time.Now()
	n, err := sendAll(dst, src, size)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != size {
		err = fmt.Errorf("copied %d bytes of %d", n, size)
	}
	if err != nil {
		return fmt.Errorf("copy the root image into RAM: %w", err)
	}
	if err := unix.IoctlSetInt(int(loopDev.Fd()), loopChangeFD, int(dstRO.Fd())); err != nil {
		return fmt.Errorf("move the root filesystem's loop device to the copy in RAM: %w", err)
	}
	fmt.Fprintf(os.Stderr, "lightwhale stage 1: root image copied into RAM (%d MiB in %.1fs); the boot medium may be removed\n", size>>20, time.Since(t0).Seconds())
	return nil
}

// sendAll copies src into dst with sendfile(2), from the medium's page
// cache straight into the tmpfs, up to size bytes or src's end. Through a
// buffer in user space (io.Copy) the copy took twice the CPU: 160 MiB in
// 2.6 s of system time against 1.1 s, in an idle guest under TCG.
func sendAll(dst, src *os.File, size int64) (int64, error) {
	var off int64
	for off < size {
		n, err := unix.Sendfile(int(dst.Fd()), int(src.Fd()), &off, int(min(size-off, 1<<30)))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return off, err
		}
		if n == 0 {
			break
		}
	}
	return off, nil
}

// startCopy prepares the copy's tmpfs, sized to the image (the initramfs's
// own tmpfs is capped at half the RAM), and starts the copier with the five
// files it needs (the last, the new root, to find Docker's socket): it must
// not rely on paths, which the switch of root moves or deletes.
func startCopy(img string, size int64, loopDev string) error {
	src, err := os.Open(img)
	if err != nil {
		return err
	}
	defer src.Close()
	if err := mountRAM(ramDir, size); err != nil {
		return err
	}
	copyPath := filepath.Join(ramDir, "rootfs.squashfs")
	dst, err := os.OpenFile(copyPath, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o400)
	if err != nil {
		return err
	}
	defer dst.Close()
	dstRO, err := os.Open(copyPath)
	if err != nil {
		return err
	}
	defer dstRO.Close()
	loop, err := os.Open(loopDev)
	if err != nil {
		return err
	}
	defer loop.Close()
	root, err := os.Open(newRoot)
	if err != nil {
		return err
	}
	defer root.Close()
	cmd := exec.Command("/proc/self/exe", copierFlag, strconv.FormatInt(size, 10))
	cmd.Args[0] = name
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{src, dst, dstRO, loop, root} // fds 3, 4, 5, 6, 7
	if err := startYielding(cmd); err != nil {
		return fmt.Errorf("start the copy into RAM: %w", err)
	}
	return cmd.Process.Release()
}

// ioprio_set(2): the idle class, for the calling thread.
const (
	ioprioWhoProcess = 1
	ioprioClassIdle  = 3 << 13
	ioprioNone       = 0
)

// startYielding starts cmd at the lowest CPU and I/O priority. The copy is
// not on the boot's path (the system reads the medium meanwhile); at equal
// priority, module loads and dockerd's start waited behind its CPU time and
// its reads of the medium. A child inherits both priorities from
// the thread that forks it, so that thread lowers them for the fork and
// then restores its own (stage 1 goes on to exec init). Best effort: a
// copy left at normal priority only makes the boot slower. Copying before
// init instead was slower still (SSH 27.9 s against 22.4 s, Docker API
// 40.1 s against 36.9 s under TCG; make bench BENCH_ONLY=boot).
func startYielding(cmd *exec.Cmd) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	unix.Setpriority(unix.PRIO_PROCESS, 0, 19)
	unix.Syscall(unix.SYS_IOPRIO_SET, ioprioWhoProcess, 0, ioprioClassIdle)
	defer unix.Syscall(unix.SYS_IOPRIO_SET, ioprioWhoProcess, 0, ioprioNone)
	defer unix.Setpriority(unix.PRIO_PROCESS, 0, 0)
	return cmd.Start()
}

// mountRAM mounts the copy's tmpfs at dir, sized to an image of size
// bytes (the initramfs's own tmpfs is capped at half the RAM). noswap: the
// image is already compressed, so the zram swap (S62zram) would spend CPU
// to hold it in as many bytes, and every read of the root filesystem would
// then wait for a swap-in; the swap is for what compresses.
func mountRAM(dir string, size int64) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmpfsSize := (size + 2<<20) &^ (1<<20 - 1)
	if _, err := mount.Mount("tmpfs", dir, "tmpfs", fmt.Sprintf("size=%d,mode=0700,noswap", tmpfsSize), unix.MS_NOSUID|unix.MS_NODEV); err != nil {
		return fmt.Errorf("mount a tmpfs for the root image: %w", err)
	}
	return nil
}

// copier runs toRAM on the files startCopy passed.
func copier(size string) error {
	n, err := strconv.ParseInt(size, 10, 64)
	if err != nil || n <= 0 {
		return fmt.Errorf("bad size %q", size)
	}
	src := os.NewFile(3, "medium image")
	if totalRAM() >= lateCopyRAM {
		waitForDocker(os.NewFile(7, "new root"))
	}
	if err := toRAM(src, os.NewFile(4, "copy"), os.NewFile(5, "copy (read-only)"), os.NewFile(6, "loop device"), n); err != nil {
		return err
	}
	src.Close()
	// Paths in the initramfs, which this process still sees as its root.
	unix.Unmount(mediumDir, unix.MNT_DETACH)
	unix.Unmount(ramDir, unix.MNT_DETACH)
	return nil
}

// waitForDocker holds the copy until Docker's API answers (at most
// dockerWait): until then its CPU and its reads of the medium slow down
// dockerd's own start (under TCG, Docker answered about 3 s sooner). The
// copier's root is still the initramfs, whose /proc and /run moved to the
// new root, so it reaches the socket by a path relative to the new root.
func waitForDocker(root *os.File) {
	t0 := time.Now()
	if err := unix.Fchdir(int(root.Fd())); err != nil {
		fmt.Fprintf(os.Stderr, "lightwhale stage 1: cannot reach Docker's socket (%v); copying the root image into RAM now\n", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), dockerWait)
	defer cancel()
	if !dockerping.Wait(ctx, strings.TrimPrefix(dockerping.Socket, "/")) {
		fmt.Fprintf(os.Stderr, "lightwhale stage 1: Docker's API did not answer within %s; copying the root image into RAM now\n", dockerWait)
		return
	}
	fmt.Fprintf(os.Stderr, "lightwhale stage 1: Docker's API answers after %.1fs; copying the root image into RAM\n", time.Since(t0).Seconds())
}

// dockerWait bounds waitForDocker: a machine whose Docker is slow, or
// stopped, still frees its boot medium.
const dockerWait = 2 * time.Minute

// lateCopyRAM is the RAM from which the copy waits for Docker. With less,
// the programs Docker's start reads are evicted and read again, and from
// the medium that thrashes: under TCG with 352 to 480 MiB, Docker had not
// answered 2 minutes into the boot, while with the copy done first 352 MiB
// runs a container.
const lateCopyRAM = 1 << 30

// totalRAM is the kernel's MemTotal in bytes (sysinfo(2): the copier has no
// /proc).
func totalRAM() uint64 {
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) != nil {
		return 0
	}
	return uint64(si.Totalram) * uint64(si.Unit)
}

// loadRootfsID reads the initramfs's note of its root image.
func loadRootfsID() (RootfsID, error) {
	b, err := os.ReadFile(rootfsIDPath)
	if err != nil {
		return RootfsID{}, err
	}
	return ParseRootfsID(string(b))
}

// findMedium finds the boot medium, mounts it and returns its root image.
func findMedium(stdio cli.IO, aliases *modalias.Aliases, load func(string) error) (string, RootfsID, error) {
	want, err := loadRootfsID()
	if err != nil {
		return "", want, err
	}
	logf := func(format string, a ...any) {
		fmt.Fprintf(stdio.Err, "lightwhale stage 1: "+format+"\n", a...)
	}
	f := &finder{want: want, aliases: aliases, load: load, log: logf, loaded: map[string]bool{}, refused: map[string]string{}}
	dev, err := f.find()
	if err != nil {
		return "", want, err
	}
	logf("boot medium: /dev/%s", dev)
	return filepath.Join(mediumDir, MediumSquashfs), want, nil
}
