package persistence

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"lightwhale/internal/btrfs"
	"lightwhale/internal/gpt"
	"lightwhale/internal/host"
	"lightwhale/internal/paths"
	"lightwhale/internal/probe"
)

// Step is one action of a plan. Each kind is its own small type: its
// String is the line --dry-run and the golden files show, Apply does it
// against the host (checking first, so a second run finds it done), and
// Fatal says whether its failure leaves the data filesystem out of reach
// (then the run falls back to a tmpfs and writes nothing more to any disk).
type Step interface {
	String() string
	Apply(e *env) (note string, err error)
	Fatal() bool
}

// writer is a step that writes to disks: the ones it names.
type writer interface{ Writes() []string }

// env is what steps apply against: the host, and the disk locks held
// from the first write of a claim until it commits.
type env struct {
	h    host.Host
	held map[string]func() error
	self string // this binary, for the background restore
}

func (e *env) lockDisk(path string) error {
	if e.held[path] != nil {
		return nil
	}
	l, err := e.h.Lock(path)
	if err != nil {
		return fmt.Errorf("%s is locked by another program: %w", path, err)
	}
	e.held[path] = l.Close
	return nil
}

// lockDiskOf locks the disk a partition node belongs to.
func (e *env) lockDiskOf(part string) error {
	d, err := e.h.Device(filepath.Base(part))
	if err != nil || d.Parent == "" {
		return nil // not registered as a partition: the tool will fail on its own
	}
	return e.lockDisk(filepath.Join(filepath.Dir(part), d.Parent))
}

func (e *env) unlockAll() {
	for p, unlock := range e.held {
		unlock()
		delete(e.held, p)
	}
}

func (e *env) mount(src, target, fstype string, flags uintptr, data string) error {
	if err := e.h.Mount(src, target, fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s on %s (%s, %s): %w", src, target, fstype, data, err)
	}
	return nil
}

// claimSteps are fatal: until the claim commits and the data filesystem is
// mounted, a failure means there is none to use.
type claimStep struct{}

func (claimStep) Fatal() bool { return true }

// later steps are not: the data filesystem is mounted, a failure is reported
// and the rest still runs.
type laterStep struct{}

func (laterStep) Fatal() bool { return false }

// partitionStep writes a fresh GPT to a disk that starts with the consent
// header. It checks the header again under the disk's lock, opens the disk
// exclusively (fails if anything mounted it since the scan), clears old
// signatures where the new partitions will start (so no stale filesystem can
// reappear inside them), and writes the protective MBR last.
type partitionStep struct {
	claimStep
	Disk  *Disk
	Table *gpt.Table
}

func (s partitionStep) String() string {
	return fmt.Sprintf("partition %s (%d MiB, %d-byte sectors): new GPT\n%s", s.Disk.Dev.Path, s.Disk.Dev.Size/gpt.MiB, s.Table.SectorSize, strings.TrimRight(indent(s.Table.Describe()), "\n"))
}

func (s partitionStep) Writes() []string { return []string{s.Disk.Dev.Path} }

func (s partitionStep) Apply(e *env) (string, error) {
	path, t := s.Disk.Dev.Path, s.Table
	if err := e.lockDisk(path); err != nil {
		return "", err
	}
	f, err := e.h.OpenDisk(path, true)
	if err != nil {
		return "", err
	}
	defer f.Close()
	head := make([]byte, probe.HeadBytes)
	if _, err := f.ReadAt(head, 0); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	if !probe.HasMagic(head) {
		return "", fmt.Errorf("%s no longer starts with the consent header: not touching it", path)
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
					return "", fmt.Errorf("clear old signatures on %s: %w", path, err)
				}
			}
		}
	}
	ws, err := t.Encode()
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	for i, w := range ws {
		if i == len(ws)-1 {
			// Everything before the MBR must be on the disk before the
			// MBR erases the consent header.
			if err := f.Sync(); err != nil {
				return "", fmt.Errorf("sync %s: %w", path, err)
			}
		}
		if _, err := f.WriteAt(w.Data, w.Offset); err != nil {
			return "", fmt.Errorf("write partition table of %s: %w", path, err)
		}
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("sync %s: %w", path, err)
	}
	return "", nil
}

// registerStep makes the kernel's partitions of a disk match its table:
// first BLKRRPART; where that leaves nodes missing (kernels without
// partition parsers), BLKPG adds them one by one, as partx -a does.
type registerStep struct {
	claimStep
	Disk  *Disk
	Table *gpt.Table
}

func (s registerStep) String() string {
	return fmt.Sprintf("make the kernel see the partitions of %s", s.Disk.Dev.Path)
}

func (s registerStep) Apply(e *env) (string, error) {
	d, t := s.Disk, s.Table
	same := func(k host.Device, p gpt.Partition) bool {
		return k.Partition == p.Number && k.Start == p.First*uint64(t.SectorSize) && k.Size == (p.Last-p.First+1)*uint64(t.SectorSize)
	}
	match := func() (bool, []host.Device) {
		kparts, _ := e.h.Partitions(d.Dev.Name)
		for _, p := range t.Partitions {
			found := false
			for _, k := range kparts {
				found = found || same(k, p)
			}
			if !found {
				return false, kparts
			}
		}
		return true, kparts
	}
	if ok, _ := match(); ok {
		return "already registered", s.waitNodes(e)
	}
	how := "BLKRRPART"
	if err := e.h.Reread(d.Dev.Path); err != nil {
		how = "BLKPG"
	}
	if ok, kparts := match(); !ok {
		how = "BLKPG"
		for _, k := range kparts {
			keep := false
			for _, p := range t.Partitions {
				keep = keep || same(k, p)
			}
			if !keep {
				if err := e.h.DelPartition(d.Dev.Path, k.Partition); err != nil {
					return "", err
				}
			}
		}
		kparts, _ = e.h.Partitions(d.Dev.Name)
		for _, p := range t.Partitions {
			have := false
			for _, k := range kparts {
				have = have || k.Partition == p.Number
			}
			if have {
				continue
			}
			start := int64(p.First) * int64(t.SectorSize)
			if err := e.h.AddPartition(d.Dev.Path, p.Number, start, int64(p.Last-p.First+1)*int64(t.SectorSize)); err != nil {
				return "", err
			}
		}
	}
	return "via " + how, s.waitNodes(e)
}

// waitNodes waits for devtmpfs to create the partitions' nodes.
func (s registerStep) waitNodes(e *env) error {
	for _, p := range s.Table.Partitions {
		node := host.PartitionPath(s.Disk.Dev.Path, p.Number)
		if err := waitFor(func() bool { return e.h.Exists(node) }); err != nil {
			return fmt.Errorf("partition node %s did not appear", node)
		}
	}
	return nil
}

// mkswapStep formats the swap partitions.
type mkswapStep struct {
	claimStep
	Devices []string
}

func (s mkswapStep) String() string {
	return fmt.Sprintf("mkswap -L %s %s", paths.SwapLabel, strings.Join(s.Devices, " "))
}

func (s mkswapStep) Writes() []string { return s.Devices }

func (s mkswapStep) Apply(e *env) (string, error) {
	for _, d := range s.Devices {
		if err := e.lockDiskOf(d); err != nil {
			return "", err
		}
		if _, err := e.h.Run("mkswap", "-L", paths.SwapLabel, d); err != nil {
			return "", err
		}
	}
	return "", nil
}

// mkfsStep makes the btrfs filesystem with the temporary label.
type mkfsStep struct {
	claimStep
	Devices []string
}

func (s mkfsStep) String() string {
	d, m := btrfs.Profile(len(s.Devices))
	return fmt.Sprintf("mkfs.btrfs -L %s --data %s --metadata %s %s", paths.ClaimLabel, d, m, strings.Join(s.Devices, " "))
}

func (s mkfsStep) Writes() []string { return s.Devices }

func (s mkfsStep) Apply(e *env) (string, error) {
	for _, d := range s.Devices {
		if err := e.lockDiskOf(d); err != nil {
			return "", err
		}
	}
	return "", btrfs.Mkfs(e.h, paths.ClaimLabel, s.Devices...)
}

// subvolumesStep creates the subvolumes (those missing).
type subvolumesStep struct {
	claimStep
	Devices []string
}

func (s subvolumesStep) String() string {
	return fmt.Sprintf("create subvolumes %s on %s", strings.Join(paths.Subvolumes, " "), strings.Join(s.Devices, " "))
}

func (s subvolumesStep) Writes() []string { return s.Devices }

func (s subvolumesStep) Apply(e *env) (string, error) {
	return "", withClaimMount(e, s.Devices, func() error {
		for _, sv := range paths.Subvolumes {
			if err := btrfs.CreateSubvolume(e.h, filepath.Join(paths.ClaimDir, sv)); err != nil {
				return err
			}
		}
		// The state subvolume is mounted inside the data one.
		return e.h.MkdirAll(filepath.Join(paths.ClaimDir, paths.Subvolumes[0], filepath.Base(paths.StateDir)), 0o755)
	})
}

// labelStep writes the final label: the claim commits here, and the disk
// locks are released.
type labelStep struct {
	claimStep
	Devices []string
}

func (s labelStep) String() string {
	return fmt.Sprintf("label the filesystem on %s %q (commit)", strings.Join(s.Devices, " "), paths.DataLabel)
}

func (s labelStep) Writes() []string { return s.Devices }

func (s labelStep) Apply(e *env) (string, error) {
	err := withClaimMount(e, s.Devices, func() error {
		return btrfs.SetLabel(e.h, paths.ClaimDir, paths.DataLabel)
	})
	if err == nil {
		e.unlockAll()
	}
	return "", err
}

// renameStep turns consent-named partitions into lightwhale-data: the claim
// is complete and no later run will format them again.
type renameStep struct {
	claimStep
	Disk  *Disk
	Table *gpt.Table
}

func (s renameStep) String() string {
	return fmt.Sprintf("rename partition %q on %s to %q", paths.Consent, s.Disk.Dev.Path, paths.DataLabel)
}

func (s renameStep) Writes() []string { return []string{s.Disk.Dev.Path} }

func (s renameStep) Apply(e *env) (string, error) {
	nt := *s.Table
	nt.Partitions = append([]gpt.Partition(nil), s.Table.Partitions...)
	changed := false
	for i := range nt.Partitions {
		if nt.Partitions[i].Name == paths.Consent {
			nt.Partitions[i].Name = paths.DataLabel
			changed = true
		}
	}
	if !changed {
		return "", nil
	}
	ws, err := nt.Encode()
	if err != nil {
		return "", err
	}
	f, err := e.h.OpenDisk(s.Disk.Dev.Path, false)
	if err != nil {
		return "", err
	}
	defer f.Close()
	// The table only: never the first bytes of a partition.
	for _, w := range ws {
		if _, err := f.WriteAt(w.Data, w.Offset); err != nil {
			return "", fmt.Errorf("rename partitions of %s: %w", s.Disk.Dev.Path, err)
		}
	}
	return "", f.Sync()
}

// withClaimMount mounts the new filesystem (top level) at a private place
// for the duration of fn.
func withClaimMount(e *env, devs []string, fn func() error) error {
	if err := e.h.MkdirAll(paths.ClaimDir, 0o700); err != nil {
		return err
	}
	if err := e.mount(devs[0], paths.ClaimDir, "btrfs", 0, btrfs.DeviceOpts(devs)); err != nil {
		return err
	}
	err := fn()
	if uerr := e.h.Unmount(paths.ClaimDir, 0); uerr != nil && err == nil {
		err = uerr
	}
	return err
}

// mountDataStep mounts @lightwhale-data at DataDir.
type mountDataStep struct {
	claimStep
	Devices  []string
	Degraded bool
}

func (s mountDataStep) String() string {
	deg := ""
	if s.Degraded {
		deg = " DEGRADED"
	}
	return fmt.Sprintf("mount %s of %s at %s%s", paths.Subvolumes[0], strings.Join(s.Devices, " "), paths.DataDir, deg)
}

func (s mountDataStep) Apply(e *env) (string, error) {
	if m, ok := host.MountedAt(e.h, paths.DataDir); ok {
		if m.FSType == "btrfs" {
			return "already mounted", nil
		}
		return "", fmt.Errorf("%s already holds a %s: reboot to switch to the data filesystem", paths.DataDir, m.FSType)
	}
	// Known to the kernel for `btrfs filesystem show` and later mounts.
	btrfs.DeviceScan(e.h)
	if err := e.h.MkdirAll(paths.DataDir, 0o755); err != nil {
		return "", err
	}
	opts := "subvol=" + paths.Subvolumes[0] + "," + btrfs.DeviceOpts(s.Devices)
	if s.Degraded {
		opts += ",degraded"
	}
	return "", e.mount(s.Devices[0], paths.DataDir, "btrfs", unix.MS_NOATIME, opts)
}

// mountStateStep mounts @lightwhale-state inside the data subvolume.
type mountStateStep struct{ claimStep }

func (mountStateStep) String() string {
	return fmt.Sprintf("mount %s at %s", paths.Subvolumes[1], paths.StateDir)
}

func (mountStateStep) Apply(e *env) (string, error) {
	if _, ok := host.MountedAt(e.h, paths.StateDir); ok {
		return "already mounted", nil
	}
	data, ok := host.MountedAt(e.h, paths.DataDir)
	if !ok || data.FSType != "btrfs" {
		return "", fmt.Errorf("%s is not the btrfs data filesystem", paths.DataDir)
	}
	if err := e.h.MkdirAll(paths.StateDir, 0o755); err != nil {
		return "", err
	}
	opts := "subvol=" + paths.Subvolumes[1]
	if strings.Contains(data.SuperOptions, "degraded") {
		opts += ",degraded"
	}
	return "", e.mount(data.Source, paths.StateDir, "btrfs", unix.MS_NOATIME, opts)
}

// mountTmpfsStep is the volatile data filesystem.
type mountTmpfsStep struct{ laterStep }

func (mountTmpfsStep) String() string {
	return fmt.Sprintf("mount a tmpfs at %s (volatile: nothing is kept across reboots)", paths.DataDir)
}

func (mountTmpfsStep) Apply(e *env) (string, error) {
	if _, ok := host.MountedAt(e.h, paths.DataDir); ok {
		return "already mounted", nil
	}
	if err := e.h.MkdirAll(paths.DataDir, 0o755); err != nil {
		return "", err
	}
	if err := e.mount("tmpfs", paths.DataDir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return "", err
	}
	return "", e.h.MkdirAll(paths.StateDir, 0o755)
}

// swaponStep enables the swap partitions not yet active.
type swaponStep struct {
	laterStep
	Devices []string
}

func (s swaponStep) String() string { return "swapon " + strings.Join(s.Devices, " ") }

func (s swaponStep) Apply(e *env) (string, error) {
	var errs []error
	for _, d := range s.Devices {
		if !host.SwapActive(e.h, d) {
			errs = append(errs, e.h.Swapon(d))
		}
	}
	return "", errors.Join(errs...)
}

// overlayStep makes Dir writable: its immutable content bound read-only at
// the lower path, the upper and work directories on the data filesystem.
type overlayStep struct {
	laterStep
	Dir string
}

func (s overlayStep) String() string {
	return fmt.Sprintf("overlay %s: lower %s, upper %s", s.Dir, paths.LowerDir(s.Dir), paths.UpperDir(s.Dir))
}

func (s overlayStep) Apply(e *env) (string, error) {
	dir, lower, upper, work := s.Dir, paths.LowerDir(s.Dir), paths.UpperDir(s.Dir), paths.WorkDir(s.Dir)
	if m, ok := host.MountedAt(e.h, dir); ok && m.FSType == "overlay" && strings.Contains(m.SuperOptions, "upperdir="+upper) {
		return "already mounted", nil
	}
	if err := e.h.MkdirAll(lower, 0o755); err != nil {
		return "", err
	}
	if _, ok := host.MountedAt(e.h, lower); !ok {
		if err := e.mount(dir, lower, "", unix.MS_BIND, ""); err != nil {
			return "", err
		}
		// Read-only, so nothing can write around the overlay into the lower layer.
		if err := e.mount("", lower, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return "", err
		}
	}
	if err := e.h.MkdirLike(upper, dir); err != nil {
		return "", err
	}
	if err := e.h.MkdirAll(work, 0o700); err != nil {
		return "", err
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work)
	return "mounted", e.mount("overlay", dir, "overlay", 0, opts)
}

// dockerRootStep creates Docker's data-root.
type dockerRootStep struct{ laterStep }

func (dockerRootStep) String() string {
	return fmt.Sprintf("create Docker's data-root %s", paths.DockerRoot)
}

func (dockerRootStep) Apply(e *env) (string, error) {
	return "", e.h.MkdirAll(paths.DockerRoot, 0o711)
}

// modeStep records the mode for status, motd and the tests.
type modeStep struct {
	laterStep
	Mode string
}

func (s modeStep) String() string { return fmt.Sprintf("record mode %q in %s", s.Mode, paths.ModeFile) }

func (s modeStep) Apply(e *env) (string, error) {
	if err := e.h.MkdirAll(paths.RunDir, 0o755); err != nil {
		return "", err
	}
	return "", e.h.WriteFile(paths.ModeFile, []byte(s.Mode+"\n"), 0o644)
}

// resyncStep restores redundancy after a member that missed writes rejoined.
type resyncStep struct {
	laterStep
	Devices []string
}

func (s resyncStep) String() string {
	_, m := btrfs.Profile(len(s.Devices))
	return fmt.Sprintf("restore redundancy (a device rejoined with older data): btrfs balance -dconvert=raid1,soft -mconvert=%s,soft, then scrub, in the background", m)
}

func (s resyncStep) Apply(e *env) (string, error) {
	// Both run on after this process exits; the balance resumes by itself
	// at the next mount if a reboot interrupts it.
	if err := btrfs.Rebalance(e.h, paths.DataDir, len(s.Devices)); err != nil {
		return "", err
	}
	return "balance started; then: btrfs scrub start " + paths.DataDir, btrfs.Scrub(e.h, paths.DataDir)
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ") + "\n"
}
