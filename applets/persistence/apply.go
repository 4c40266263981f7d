package persistence

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"lightwhale/internal/atomicfile"
	"lightwhale/internal/blockdev"
	"lightwhale/internal/gpt"
	"lightwhale/internal/probe"
)

// Subvolumes on the data filesystem.
var Subvolumes = []string{"@lightwhale-data", "@lightwhale-state", "@lightwhale-state-snapshots"}

// applier executes plan steps. Its edges are the kernel and the real tools.
type applier struct {
	sys  blockdev.System
	out  io.Writer
	run  func(name string, args ...string) error
	held map[string]*os.File // disk locks held while claiming
}

// runTool runs an external tool; its output goes into the error.
func runTool(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func (a *applier) apply(s Step) (string, error) {
	switch s.Op {
	case OpPartition:
		return "", a.partition(s.Disk, s.Table)
	case OpRegister:
		return a.register(s.Disk, s.Table)
	case OpMkswap:
		for _, d := range s.Devices {
			if err := a.lockDiskOf(d); err != nil {
				return "", err
			}
			if err := a.run("mkswap", "-L", gpt.SwapName, d); err != nil {
				return "", err
			}
		}
		return "", nil
	case OpMkfs:
		for _, d := range s.Devices {
			if err := a.lockDiskOf(d); err != nil {
				return "", err
			}
		}
		data, meta := Profile(len(s.Devices))
		args := append([]string{"-f", "-q", "-L", ClaimLabel, "--data", data, "--metadata", meta}, s.Devices...)
		return "", a.run("mkfs.btrfs", args...)
	case OpSubvolumes:
		return "", a.withClaimMount(s.Devices, func() error {
			for _, sv := range Subvolumes {
				if _, err := os.Stat(filepath.Join(claimDir, sv)); err == nil {
					continue
				}
				if err := a.run("btrfs", "subvolume", "create", filepath.Join(claimDir, sv)); err != nil {
					return err
				}
			}
			// The state subvolume is mounted inside the data one.
			return os.MkdirAll(filepath.Join(claimDir, Subvolumes[0], filepath.Base(StateDir)), 0o755)
		})
	case OpLabel:
		return "", a.withClaimMount(s.Devices, func() error {
			if err := a.run("btrfs", "filesystem", "label", claimDir, gpt.DataName); err != nil {
				return err
			}
			return a.run("btrfs", "filesystem", "sync", claimDir)
		})
	case OpRename:
		return "", a.rename(s.Disk, s.Table)
	case OpMountData:
		return a.mountData(s.Devices, s.Degraded)
	case OpMountTmpfs:
		if _, ok := mountedAt(DataDir); ok {
			return "already mounted", nil
		}
		if err := os.MkdirAll(DataDir, 0o755); err != nil {
			return "", err
		}
		if err := mount("tmpfs", DataDir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
			return "", err
		}
		return "", os.MkdirAll(StateDir, 0o755)
	case OpMountState:
		if _, ok := mountedAt(StateDir); ok {
			return "already mounted", nil
		}
		data, ok := mountedAt(DataDir)
		if !ok || data.FSType != "btrfs" {
			return "", fmt.Errorf("%s is not the btrfs data filesystem", DataDir)
		}
		if err := os.MkdirAll(StateDir, 0o755); err != nil {
			return "", err
		}
		opts := "subvol=" + Subvolumes[1]
		if strings.Contains(data.SuperOptions, "degraded") {
			opts += ",degraded"
		}
		return "", mount(data.Source, StateDir, "btrfs", unix.MS_NOATIME, opts)
	case OpSwapon:
		active := activeSwaps()
		var errs []error
		for _, d := range s.Devices {
			if active[d] {
				continue
			}
			errs = append(errs, swapon(d))
		}
		return "", errors.Join(errs...)
	case OpOverlay:
		return overlay(s.Dir)
	case OpDockerRoot:
		return "", os.MkdirAll(DockerRoot, 0o711)
	case OpResync:
		// Both run on after this process exits; the balance resumes by
		// itself at the next mount if a reboot interrupts it.
		_, meta := Profile(len(s.Devices))
		bal := exec.Command("btrfs", "balance", "start", "--bg", "-dconvert=raid1,soft", "-mconvert="+meta+",soft", DataDir)
		if out, err := bal.CombinedOutput(); err != nil {
			return "", fmt.Errorf("btrfs balance: %w: %s", err, bytes.TrimSpace(out))
		}
		return "balance started; then: btrfs scrub start " + DataDir, exec.Command("btrfs", "scrub", "start", DataDir).Start()
	case OpMode:
		if err := os.MkdirAll(RunDir, 0o755); err != nil {
			return "", err
		}
		return "", atomicfile.WriteFile(ModeFile, []byte(s.Mode+"\n"), 0o644)
	}
	return "", fmt.Errorf("unknown step %v", s.Op)
}

// lockDisk takes and keeps the BSD lock on a disk for the rest of the claim.
func (a *applier) lockDisk(path string) error {
	if a.held[path] != nil {
		return nil
	}
	f, err := blockdev.Lock(path)
	if err != nil {
		return fmt.Errorf("%s is locked by another program: %w", path, err)
	}
	a.held[path] = f
	return nil
}

// lockDiskOf locks the disk a partition node belongs to.
func (a *applier) lockDiskOf(part string) error {
	d, err := a.sys.Device(filepath.Base(part))
	if err != nil || d.Parent == "" {
		return nil // not registered as a partition: the tool will fail on its own
	}
	return a.lockDisk(filepath.Join(filepath.Dir(part), d.Parent))
}

func (a *applier) unlockAll() {
	for p, f := range a.held {
		f.Close()
		delete(a.held, p)
	}
}

// partition writes a fresh GPT to a disk that starts with the consent header.
// It checks the header again under the disk's lock, opens the disk
// exclusively (fails if anything mounted it since the scan), clears old
// signatures where the new partitions will start (so no stale filesystem can
// reappear inside them), and writes the protective MBR last.
func (a *applier) partition(d *Disk, t *gpt.Table) error {
	if err := a.lockDisk(d.Dev.Path); err != nil {
		return err
	}
	f, err := os.OpenFile(d.Dev.Path, os.O_RDWR|unix.O_EXCL, 0)
	if err != nil {
		return fmt.Errorf("open %s exclusively: %w", d.Dev.Path, err)
	}
	defer f.Close()
	head := make([]byte, probe.HeadBytes)
	if _, err := f.ReadAt(head, 0); err != nil {
		return fmt.Errorf("read %s: %w", d.Dev.Path, err)
	}
	if !probe.HasMagic(head) {
		return fmt.Errorf("%s no longer starts with the consent header: not touching it", d.Dev.Path)
	}
	// Old superblocks where the new partitions will live: the first MiB
	// (btrfs primary at 64 KiB, swap, others) and btrfs's copies at 64 MiB
	// and 256 GiB.
	zero := make([]byte, gpt.MiB)
	for _, p := range t.Partitions {
		start := int64(p.First) * int64(t.SectorSize)
		size := int64(p.Last-p.First+1) * int64(t.SectorSize)
		for _, r := range []struct{ off, n int64 }{{0, gpt.MiB}, {64 << 20, 4096}, {256 << 30, 4096}} {
			if n := min(r.n, size-r.off); n > 0 {
				if _, err := f.WriteAt(zero[:n], start+r.off); err != nil {
					return fmt.Errorf("clear old signatures on %s: %w", d.Dev.Path, err)
				}
			}
		}
	}
	ws, err := t.Encode()
	if err != nil {
		return fmt.Errorf("%s: %w", d.Dev.Path, err)
	}
	for i, w := range ws {
		if i == len(ws)-1 {
			// Everything before the MBR must be on the disk before the
			// MBR erases the consent header.
			if err := f.Sync(); err != nil {
				return fmt.Errorf("sync %s: %w", d.Dev.Path, err)
			}
		}
		if _, err := f.WriteAt(w.Data, w.Offset); err != nil {
			return fmt.Errorf("write partition table of %s: %w", d.Dev.Path, err)
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", d.Dev.Path, err)
	}
	return nil
}

// register makes the kernel's partitions of a disk match its table: first
// BLKRRPART; where that leaves nodes missing (kernels without partition
// parsers), BLKPG adds them one by one, as partx -a does.
func (a *applier) register(d *Disk, t *gpt.Table) (string, error) {
	match := func() (bool, []blockdev.Device) {
		kparts, _ := a.sys.Partitions(d.Dev.Name)
		for _, p := range t.Partitions {
			found := false
			for _, k := range kparts {
				found = found || (k.Partition == p.Number && k.Start == p.First*uint64(t.SectorSize) && k.Size == (p.Last-p.First+1)*uint64(t.SectorSize))
			}
			if !found {
				return false, kparts
			}
		}
		return true, kparts
	}
	if ok, _ := match(); ok {
		return "already registered", a.waitNodes(d, t)
	}
	how := "BLKRRPART"
	if err := blockdev.Reread(d.Dev.Path); err != nil {
		how = "BLKPG"
	}
	ok, kparts := match()
	if !ok {
		how = "BLKPG"
		for _, k := range kparts {
			keep := false
			for _, p := range t.Partitions {
				keep = keep || (k.Partition == p.Number && k.Start == p.First*uint64(t.SectorSize) && k.Size == (p.Last-p.First+1)*uint64(t.SectorSize))
			}
			if !keep {
				if err := blockdev.DelPartition(d.Dev.Path, k.Partition); err != nil {
					return "", err
				}
			}
		}
		kparts, _ = a.sys.Partitions(d.Dev.Name)
		for _, p := range t.Partitions {
			have := false
			for _, k := range kparts {
				have = have || k.Partition == p.Number
			}
			if have {
				continue
			}
			start := int64(p.First) * int64(t.SectorSize)
			if err := blockdev.AddPartition(d.Dev.Path, p.Number, start, int64(p.Last-p.First+1)*int64(t.SectorSize)); err != nil {
				return "", err
			}
		}
	}
	return "via " + how, a.waitNodes(d, t)
}

// waitNodes waits for devtmpfs to create the partitions' nodes.
func (a *applier) waitNodes(d *Disk, t *gpt.Table) error {
	dir := filepath.Dir(d.Dev.Path)
	deadline := time.Now().Add(5 * time.Second)
	for _, p := range t.Partitions {
		node := filepath.Join(dir, blockdev.PartitionName(d.Dev.Name, p.Number))
		for {
			if _, err := os.Stat(node); err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("partition node %s did not appear", node)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// rename turns consent-named partitions into lightwhale-data: the claim is
// complete and no later run will format them again.
func (a *applier) rename(d *Disk, t *gpt.Table) error {
	nt := *t
	nt.Partitions = append([]gpt.Partition(nil), t.Partitions...)
	changed := false
	for i := range nt.Partitions {
		if nt.Partitions[i].Name == gpt.ConsentName {
			nt.Partitions[i].Name = gpt.DataName
			changed = true
		}
	}
	if !changed {
		return nil
	}
	ws, err := nt.Encode()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(d.Dev.Path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	// The table only: never the first bytes of a partition.
	for _, w := range ws {
		if _, err := f.WriteAt(w.Data, w.Offset); err != nil {
			return fmt.Errorf("rename partitions of %s: %w", d.Dev.Path, err)
		}
	}
	return f.Sync()
}

// withClaimMount mounts the new filesystem (top level) at a private place
// for the duration of fn.
func (a *applier) withClaimMount(devs []string, fn func() error) error {
	if err := os.MkdirAll(claimDir, 0o700); err != nil {
		return err
	}
	if err := mount(devs[0], claimDir, "btrfs", 0, deviceOpts(devs)); err != nil {
		return err
	}
	err := fn()
	if uerr := unix.Unmount(claimDir, 0); uerr != nil && err == nil {
		err = fmt.Errorf("unmount %s: %w", claimDir, uerr)
	}
	return err
}

// deviceOpts names every member, so mounting needs no global device scan.
func deviceOpts(devs []string) string {
	var o []string
	for _, d := range devs {
		o = append(o, "device="+d)
	}
	return strings.Join(o, ",")
}

func (a *applier) mountData(devs []string, degraded bool) (string, error) {
	if m, ok := mountedAt(DataDir); ok {
		if m.FSType == "btrfs" {
			return "already mounted", nil
		}
		return "", fmt.Errorf("%s already holds a %s: reboot to switch to the data filesystem", DataDir, m.FSType)
	}
	// Known to the kernel for `btrfs filesystem show` and later mounts.
	_ = a.run("btrfs", "device", "scan")
	if err := os.MkdirAll(DataDir, 0o755); err != nil {
		return "", err
	}
	opts := "subvol=" + Subvolumes[0] + "," + deviceOpts(devs)
	if degraded {
		opts += ",degraded"
	}
	return "", mount(devs[0], DataDir, "btrfs", unix.MS_NOATIME, opts)
}
