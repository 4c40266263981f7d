package persistence

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"lightwhale/internal/btrfs"
	"lightwhale/internal/gpt"
	"lightwhale/internal/host"
	"lightwhale/internal/latedisk"
	"lightwhale/internal/paths"
	"lightwhale/internal/probe"
)

// status prints what the running system uses, from the kernel's view
// (mounts, swaps) and the disks themselves.
func status(out io.Writer, h host.Host, only []string) error {
	data, ok := host.MountedAt(h, paths.DataDir)
	mode := "not set up (setup-persistence has not run)"
	// The progress first: a short replace can end between btrfs's state
	// and its status command, and the mode must not then point to a
	// rebuild: line that is not there.
	var progress string
	if ok && data.FSType == "btrfs" {
		progress = progressLines(h)
	}
	if ok {
		mode = "volatile (tmpfs: changes are lost at reboot)"
		if data.FSType == "btrfs" {
			mode = "persistent"
			// btrfs's view, not the mount option: a replace may have
			// completed a filesystem mounted degraded.
			st, err := btrfs.ReadState(h, paths.DataDir)
			missing := err == nil && len(st.Missing()) > 0
			if missing || (err != nil && strings.Contains(data.SuperOptions, "degraded")) {
				mode = "DEGRADED (a RAID member is missing: setup-persistence add NEWDISK rebuilds it)"
			}
			if m, _ := h.ReadFile(paths.ModeFile); strings.TrimSpace(string(m)) == "rebuilding" {
				// Between a replace and its balance, or just after the
				// end, nothing runs: no rebuild: line to point to.
				if strings.Contains(progress, "rebuild:") {
					mode += ", REBUILDING (see rebuild: below)"
				} else {
					mode += ", REBUILDING (between steps, or ending)"
				}
			}
		}
	}
	fmt.Fprintf(out, "mode:      %s\n", mode)
	if ok {
		fmt.Fprintf(out, "data:      %s on %s (%s)\n", paths.DataDir, data.Source, data.FSType)
	}
	if ok && data.FSType == "btrfs" {
		head, err := h.ReadAt(data.Source, 0, probe.HeadBytes)
		if err == nil {
			if fs := probe.ParseBtrfs(head); fs != nil {
				fmt.Fprintf(out, "uuid:      %s (label %q, %d device(s))\n", fs.FSIDString(), fs.Label, fs.NumDevices)
				printDevices(out, h, only, fs.FSIDString())
			}
		}
		if prof, err := btrfs.Df(h, paths.DataDir); err == nil {
			fmt.Fprintf(out, "profile:   %s\n", prof)
		}
		io.WriteString(out, progress)
	}
	if ok {
		if total, free, avail, err := h.Statfs(paths.DataDir); err == nil {
			fmt.Fprintf(out, "space:     %d MiB used, %d MiB free of %d MiB\n", (total-free)/gpt.MiB, avail/gpt.MiB, total/gpt.MiB)
		}
	}
	for _, dir := range paths.OverlayDirs {
		m, ok := host.MountedAt(h, dir)
		state := "NOT an overlay (read-only)"
		if ok && m.FSType == "overlay" {
			state = "overlay, upper " + paths.UpperDir(dir)
		}
		fmt.Fprintf(out, "overlay:   %-5s %s\n", dir, state)
	}
	swaps, _ := h.Swaps()
	var sl []string
	for _, s := range swaps {
		if s.Dev != 0 {
			sl = append(sl, s.Path)
		}
	}
	sort.Strings(sl)
	if len(sl) == 0 {
		sl = []string{"none"}
	}
	fmt.Fprintf(out, "swap:      %s\n", strings.Join(sl, " "))
	dr := paths.DockerRoot
	if !h.Exists(dr) {
		dr += " (missing)"
	}
	fmt.Fprintf(out, "docker:    data-root %s\n", dr)
	if w, err := h.ReadFile(paths.Warnings); err == nil && len(w) > 0 {
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
func printDevices(out io.Writer, h host.Host, only []string, fsid string) {
	disks, err := scan(h, only)
	if err != nil {
		return
	}
	for _, d := range disks {
		for _, p := range d.Parts {
			switch {
			case p.Btrfs != nil && p.Btrfs.FSIDString() == fsid:
				fmt.Fprintf(out, "device:    %s data (btrfs devid %d, %d MiB)\n", p.Path, p.Btrfs.DevID, p.Size/gpt.MiB)
			case p.Name == paths.SwapLabel && p.Swap != nil && hasMember(d, fsid):
				state := "inactive"
				if host.SwapActive(h, p.Path) {
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
