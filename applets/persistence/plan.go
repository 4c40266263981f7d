package persistence

import (
	"fmt"
	"sort"
	"strings"

	"lightwhale/internal/gpt"
	"lightwhale/internal/host"
	"lightwhale/internal/paths"
	"lightwhale/internal/probe"
)

// Disk is what a scan learnt about one whole disk; it is read from the disk
// itself at every run, so the decision never depends on remembered state.
type Disk struct {
	Dev        host.Device
	Magic      bool         // starts with the consent header
	BootMedium bool         // carries our ISO
	Busy       string       // why it is in use, "" if free
	Leftover   string       // a partition table or filesystem the consent header did not erase
	Table      *gpt.Table   // its GPT, nil if none
	Btrfs      *probe.Btrfs // btrfs on the whole disk
	Parts      []Part
}

// Part is a partition, from the GPT or the kernel's list.
type Part struct {
	Disk   string // disk name
	Number int
	Name   string // GPT partition name, "" when not from a GPT
	Start  uint64 // bytes
	Size   uint64
	Path   string // device node it has (or will have once registered)
	Btrfs  *probe.Btrfs
	Swap   *probe.Swap
}

// Plan is what a run will do: the steps in order, and what it noticed.
type Plan struct {
	Mode    string   // volatile, persistent or degraded
	FSID    string   // the data filesystem, when there is one
	Missing int      // RAID members not present
	Notes   []string // disks left alone, and why
	Errors  []string // what the user must hear about loudly
	Steps   []Step
	// Online plans change a mounted filesystem (add, remove): a failure
	// stops them, and nothing falls back to a tmpfs.
	Online bool
}

// String prints the plan as --dry-run shows it.
func (p *Plan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "mode: %s\n", p.Mode)
	for _, e := range p.Errors {
		fmt.Fprintf(&b, "ERROR: %s\n", e)
	}
	for _, n := range p.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	for i, s := range p.Steps {
		fmt.Fprintf(&b, "%2d. %s\n", i+1, s)
	}
	return b.String()
}

// member is a device that carries a btrfs of interest.
type member struct {
	disk *Disk
	part *Part // nil: btrfs on the whole disk
	fs   *probe.Btrfs
}

func (m member) path() string {
	if m.part != nil {
		return m.part.Path
	}
	return m.disk.Dev.Path
}

// Decide turns what the disks hold into a plan. It is the whole safety
// policy, as a pure function:
//   - a filesystem labelled lightwhale-data (on any of its devices) wins:
//     it is mounted and nothing else is touched;
//   - two such filesystems: refuse to choose, stay volatile, touch nothing;
//   - else every consent-named partition and every free raw magic disk is
//     claimed together, from the step it had reached;
//   - everything else is never written.
//
// newGUID supplies GUIDs for new partition tables.
func Decide(disks []*Disk, newGUID func() gpt.GUID) *Plan {
	p := &Plan{Mode: "volatile"}

	// Filesystems labelled lightwhale-data, by UUID, and all their devices
	// (a crash while labelling can leave the label on only some of them).
	labelled := map[string]bool{}
	var all []member
	for _, d := range disks {
		if d.Btrfs != nil {
			all = append(all, member{disk: d, fs: d.Btrfs})
		}
		for i := range d.Parts {
			if d.Parts[i].Btrfs != nil {
				all = append(all, member{disk: d, part: &d.Parts[i], fs: d.Parts[i].Btrfs})
			}
		}
	}
	for _, m := range all {
		if m.fs.Label == paths.DataLabel {
			labelled[m.fs.FSIDString()] = true
		}
	}
	byFS := map[string][]member{}
	for _, m := range all {
		if id := m.fs.FSIDString(); labelled[id] {
			byFS[id] = append(byFS[id], m)
		}
	}
	var ids []string
	for id := range byFS {
		ids = append(ids, id)
	}
	sort.Strings(ids)

	switch {
	case len(ids) > 1:
		var desc []string
		for _, id := range ids {
			desc = append(desc, fmt.Sprintf("%s on %s", id, devPaths(byFS[id])))
		}
		p.Errors = append(p.Errors, fmt.Sprintf("found %d different %s filesystems (%s): refusing to choose; touching none of them and staying volatile; remove or relabel all but one",
			len(ids), paths.DataLabel, strings.Join(desc, "; ")))
		noteUnclaimed(p, disks, nil, "left untouched: several data filesystems exist")
		p.volatile()
	case len(ids) == 1:
		id := ids[0]
		p.FSID = id
		noteUnclaimed(p, disks, byFS[id], "will join the "+paths.DataLabel+" filesystem once it is mounted (if it qualifies)")
		p.mountExisting(byFS[id])
	default:
		p.claim(disks, newGUID)
	}
	return p
}

func devPaths(ms []member) string {
	var s []string
	for _, m := range ms {
		s = append(s, m.path())
	}
	return strings.Join(s, ",")
}

// noteUnclaimed reports what happens to magic disks and consent partitions
// other than members of the mounted filesystem.
func noteUnclaimed(p *Plan, disks []*Disk, members []member, fate string) {
	isMember := map[string]bool{}
	for _, m := range members {
		isMember[m.path()] = true
	}
	for _, d := range disks {
		if d.Magic {
			p.Notes = append(p.Notes, fmt.Sprintf("magic disk %s %s", d.Dev.Path, fate))
		}
		for _, pt := range d.Parts {
			if pt.Name == paths.Consent && !isMember[pt.Path] {
				p.Notes = append(p.Notes, fmt.Sprintf("unfinished claim %s %s", pt.Path, fate))
			}
		}
	}
}

func (p *Plan) volatile() {
	p.Mode = "volatile"
	p.Steps = append(p.Steps, mountTmpfsStep{})
	p.finish()
}

// finish adds what every mode shares: overlays, Docker's root, the mode.
func (p *Plan) finish() {
	for _, dir := range paths.OverlayDirs {
		p.Steps = append(p.Steps, overlayStep{Dir: dir})
	}
	p.Steps = append(p.Steps, dockerRootStep{}, modeStep{Mode: p.Mode})
}

// mountExisting mounts the committed filesystem whose present devices are ms.
func (p *Plan) mountExisting(ms []member) {
	// A replacement still being written (btrfs resumes it after a reboot)
	// carries devid 0: it is no member yet, and comes last in the mount's
	// device list.
	var want uint64
	var members, targets []member
	for _, m := range ms {
		want = max(want, m.fs.NumDevices)
		if m.fs.DevID == 0 {
			targets = append(targets, m)
		} else {
			members = append(members, m)
		}
	}
	ms = append(members, targets...)
	p.Missing = int(want) - len(members)
	degraded := p.Missing > 0
	if degraded {
		// RAID1 data keeps two copies: one lost device is survivable,
		// two may have taken both copies of some data with them.
		if p.Missing >= 2 || len(members) == 0 {
			p.Errors = append(p.Errors, fmt.Sprintf("data filesystem %s has %d of %d devices (%s): too many are missing to mount it safely; staying volatile and touching nothing. Reattach the missing disks and reboot",
				p.FSID, len(members), want, devPaths(ms)))
			p.volatile()
			return
		}
		p.Errors = append(p.Errors, fmt.Sprintf("data filesystem %s is DEGRADED: %d of %d devices present (%s); mounting it degraded. Replace or reattach the missing disk soon: one more failure loses data",
			p.FSID, len(members), want, devPaths(ms)))
	}
	var devs []string
	seen := map[string]bool{}
	for _, m := range ms {
		if m.part != nil && !seen[m.disk.Dev.Name] {
			seen[m.disk.Dev.Name] = true
			if m.disk.Table != nil {
				p.Steps = append(p.Steps, registerStep{Disk: m.disk, Table: m.disk.Table})
			}
		}
		devs = append(devs, m.path())
	}
	// A claim that crashed between label and rename is finished here.
	for _, m := range ms {
		if m.part != nil && m.part.Name == paths.Consent {
			p.Steps = append(p.Steps, renameStep{Disk: m.disk, Table: m.disk.Table})
		}
	}
	p.Mode = "persistent"
	if degraded {
		p.Mode = "degraded"
	}
	p.Steps = append(p.Steps, mountDataStep{Devices: devs, Degraded: degraded}, osStep{FSID: p.FSID}, rollbackStep{}, mountStateStep{})
	// A member that missed writes (it was away while the others ran
	// degraded) has an older generation: its copies are stale, and what was
	// written meanwhile has one copy only.
	if !degraded && len(members) > 1 {
		for _, m := range members[1:] {
			if m.fs.Generation != members[0].fs.Generation {
				p.Steps = append(p.Steps, resyncStep{Devices: devs})
				break
			}
		}
	}
	var swaps []string
	for _, m := range ms {
		if m.part == nil {
			continue
		}
		for _, pt := range m.disk.Parts {
			if pt.Name == paths.SwapLabel && pt.Swap != nil {
				swaps = append(swaps, pt.Path)
			}
		}
	}
	if len(swaps) > 0 {
		p.Steps = append(p.Steps, swaponStep{Devices: swaps})
	}
	p.finish()
}

// claim plans formatting the disks that consented, from the step each reached:
// a raw header starts from the partition table; a consent-named partition
// (the table was written, the filesystem not committed) from mkswap/mkfs.
func (p *Plan) claim(disks []*Disk, newGUID func() gpt.GUID) {
	var claimed []*Disk
	var fresh = map[*Disk]*gpt.Table{}
	for _, d := range disks {
		hasConsent := false
		for _, pt := range d.Parts {
			hasConsent = hasConsent || pt.Name == paths.Consent
		}
		if !d.Magic && !hasConsent {
			continue
		}
		if why := refusal(d); why != "" {
			p.Notes = append(p.Notes, fmt.Sprintf("%s has the consent header but is not claimed: %s", d.Dev.Path, why))
			continue
		}
		if d.Magic {
			t, err := gpt.Layout(d.Dev.Size, d.Dev.SectorSize, newGUID)
			if err != nil {
				p.Errors = append(p.Errors, fmt.Sprintf("magic disk %s not claimed: %v; it was left untouched", d.Dev.Path, err))
				continue
			}
			fresh[d] = t
		}
		claimed = append(claimed, d)
	}
	if len(claimed) == 0 {
		p.volatile()
		return
	}
	var swaps, datas []string
	for _, d := range claimed {
		t := d.Table
		if nt, ok := fresh[d]; ok {
			t = nt
			p.Steps = append(p.Steps, partitionStep{Disk: d, Table: t})
		}
		p.Steps = append(p.Steps, registerStep{Disk: d, Table: t})
		for _, pt := range t.Partitions {
			path := host.PartitionPath(d.Dev.Path, pt.Number)
			switch pt.Name {
			case paths.SwapLabel:
				swaps = append(swaps, path)
			case paths.Consent:
				datas = append(datas, path)
			}
		}
	}
	if len(datas) == 0 {
		p.volatile()
		return
	}
	if len(swaps) > 0 {
		p.Steps = append(p.Steps, mkswapStep{Devices: swaps})
	}
	p.Steps = append(p.Steps,
		mkfsStep{Devices: datas},
		subvolumesStep{Devices: datas},
		labelStep{Devices: datas})
	for _, d := range claimed {
		t := d.Table
		if nt, ok := fresh[d]; ok {
			t = nt
		}
		p.Steps = append(p.Steps, renameStep{Disk: d, Table: t})
	}
	p.Mode = "persistent"
	p.Steps = append(p.Steps, mountDataStep{Devices: datas}, mountStateStep{})
	if len(swaps) > 0 {
		p.Steps = append(p.Steps, swaponStep{Devices: swaps})
	}
	p.finish()
}

// refusal says why a disk that consented may still not be claimed.
func refusal(d *Disk) string {
	switch {
	case d.BootMedium:
		return "it is the Lightwhale boot medium"
	case d.Dev.ReadOnly:
		return "it is read-only"
	case d.Busy != "":
		return d.Busy
	case d.Dev.Partition != 0:
		return "it is a partition, not a whole disk"
	}
	return ""
}
