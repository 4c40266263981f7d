package persistence

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"lightwhale/internal/blockdev"
	"lightwhale/internal/gpt"
	"lightwhale/internal/latedisk"
	"lightwhale/internal/probe"
)

// status prints what the running system uses, from the kernel's view
// (mounts, swaps) and the disks themselves.
func status(out io.Writer, sys blockdev.System, only []string) error {
	data, ok := mountedAt(DataDir)
	mode := "not set up (setup-persistence has not run)"
	if ok {
		mode = "volatile (tmpfs: changes are lost at reboot)"
		if data.FSType == "btrfs" {
			mode = "persistent"
			if strings.Contains(data.SuperOptions, "degraded") || strings.Contains(data.Options, "degraded") {
				mode = "DEGRADED (a RAID member is missing: replace or reattach it)"
			}
		}
	}
	fmt.Fprintf(out, "mode:      %s\n", mode)
	if ok {
		fmt.Fprintf(out, "data:      %s on %s (%s)\n", DataDir, data.Source, data.FSType)
	}
	if ok && data.FSType == "btrfs" {
		head, err := blockdev.ReadAt(data.Source, 0, probe.HeadBytes)
		if err == nil {
			if fs := probe.ParseBtrfs(head); fs != nil {
				fmt.Fprintf(out, "uuid:      %s (label %q, %d device(s))\n", fs.FSIDString(), fs.Label, fs.NumDevices)
				printDevices(out, sys, only, fs.FSIDString())
			}
		}
		if b, err := exec.Command("btrfs", "filesystem", "df", DataDir).Output(); err == nil {
			fmt.Fprintf(out, "profile:   %s\n", profiles(string(b)))
		}
	}
	if ok {
		var st unix.Statfs_t
		if err := unix.Statfs(DataDir, &st); err == nil {
			total := st.Blocks * uint64(st.Bsize)
			free := st.Bavail * uint64(st.Bsize)
			fmt.Fprintf(out, "space:     %d MiB used, %d MiB free of %d MiB\n", (total-st.Bfree*uint64(st.Bsize))/gpt.MiB, free/gpt.MiB, total/gpt.MiB)
		}
	}
	for _, dir := range OverlayDirs {
		m, ok := mountedAt(dir)
		state := "NOT an overlay (read-only)"
		if ok && m.FSType == "overlay" {
			state = "overlay, upper " + upperDir(dir)
		}
		fmt.Fprintf(out, "overlay:   %-5s %s\n", dir, state)
	}
	swaps := activeSwaps()
	var sl []string
	for s := range swaps {
		if strings.HasPrefix(s, "/dev/") {
			sl = append(sl, s)
		}
	}
	sort.Strings(sl)
	if len(sl) == 0 {
		sl = []string{"none"}
	}
	fmt.Fprintf(out, "swap:      %s\n", strings.Join(sl, " "))
	dr := DockerRoot
	if _, err := os.Stat(dr); err != nil {
		dr += " (missing)"
	}
	fmt.Fprintf(out, "docker:    data-root %s\n", dr)
	if w, err := os.ReadFile(filepath.Join(RunDir, "warnings")); err == nil && len(w) > 0 {
		for _, l := range strings.Split(strings.TrimSpace(string(w)), "\n") {
			fmt.Fprintf(out, "WARNING:   %s\n", l)
		}
	}
	for _, l := range latedisk.Read(latedisk.File) {
		fmt.Fprintf(out, "LATE DISK: %s\n", l)
	}
	return nil
}

// printDevices lists the devices of filesystem fsid found on the disks, and
// the swap partitions beside them.
func printDevices(out io.Writer, sys blockdev.System, only []string, fsid string) {
	disks, err := scan(sys, only)
	if err != nil {
		return
	}
	active := activeSwaps()
	for _, d := range disks {
		for _, p := range d.Parts {
			switch {
			case p.Btrfs != nil && p.Btrfs.FSIDString() == fsid:
				fmt.Fprintf(out, "device:    %s data (btrfs devid %d, %d MiB)\n", p.Path, p.Btrfs.DevID, p.Size/gpt.MiB)
			case p.Name == gpt.SwapName && p.Swap != nil && hasMember(d, fsid):
				state := "inactive"
				if active[p.Path] {
					state = "active"
				}
				fmt.Fprintf(out, "device:    %s swap (%d MiB, %s)\n", p.Path, p.Size/gpt.MiB, state)
			}
		}
		if d.Btrfs != nil && d.Btrfs.FSIDString() == fsid {
			fmt.Fprintf(out, "device:    %s data (btrfs devid %d, whole disk)\n", d.Dev.Path, d.Btrfs.DevID)
		}
	}
}

func hasMember(d *Disk, fsid string) bool {
	for _, p := range d.Parts {
		if p.Btrfs != nil && p.Btrfs.FSIDString() == fsid {
			return true
		}
	}
	return false
}

// profiles condenses `btrfs filesystem df` ("Data, RAID1: total=...") to
// "data raid1, metadata raid1c3".
func profiles(df string) string {
	var out []string
	for _, line := range strings.Split(df, "\n") {
		kind, rest, ok := strings.Cut(line, ", ")
		if !ok {
			continue
		}
		prof, _, _ := strings.Cut(rest, ":")
		switch kind {
		case "Data", "Metadata":
			out = append(out, strings.ToLower(kind+" "+prof))
		}
	}
	return strings.Join(out, ", ")
}
