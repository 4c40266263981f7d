package persistence

import (
	"fmt"
	"strings"

	"lightwhale/internal/btrfs"
	"lightwhale/internal/gpt"
	"lightwhale/internal/host"
	"lightwhale/internal/paths"
)

// PlanJoin plans disks joining the mounted data filesystem fs: a missing
// member is replaced (btrfs replace, never add+delete), every other disk is
// added, and the profiles follow the claim's rule (btrfs.Profile) for the
// number of devices. Like Decide it is pure: disks come from scan, fs from
// btrfs.ReadState.
//
// Candidates are disks that start with the consent header, and disks whose
// data partition is still consent-named and empty (a join a power cut
// interrupted: it continues from mkswap). named lists the disks the user
// asked for (setup-persistence add): each must qualify, and each that does
// not is an error naming it. At boot named is nil and other disks are
// silently left alone.
func PlanJoin(disks []*Disk, fs *btrfs.State, named []string, newGUID func() gpt.GUID) *Plan {
	p := &Plan{Mode: "persistent", FSID: fs.FSID, Online: true}
	asked := map[string]bool{}
	for _, n := range named {
		asked[n] = true
	}
	refuse := func(d *Disk, why string) {
		p.Errors = append(p.Errors, fmt.Sprintf("%s not joined: %s", d.Dev.Path, why))
	}

	type joiner struct {
		disk  *Disk
		table *gpt.Table
		fresh bool   // the table is still to be written
		data  string // the data partition's node
		size  uint64 // its bytes
		swap  string
	}
	var joiners []joiner
	for _, d := range disks {
		if isMemberOf(d, fs.FSID) {
			p.Notes = append(p.Notes, fmt.Sprintf("%s already belongs to the data filesystem: ignored", d.Dev.Path))
			continue
		}
		resume := interruptedJoin(d)
		if !d.Magic && resume == nil {
			if asked[d.Dev.Path] {
				refuse(d, "it does not start with the consent header (write it with: setup-persistence enable "+d.Dev.Path+")")
			}
			continue
		}
		if why := refusal(d); why != "" {
			refuse(d, why)
			continue
		}
		j := joiner{disk: d, table: d.Table}
		if d.Magic {
			if d.Leftover != "" {
				refuse(d, fmt.Sprintf("it holds a %s besides the consent header; to erase it: setup-persistence enable --force %s", d.Leftover, d.Dev.Path))
				continue
			}
			t, err := gpt.Layout(d.Dev.Size, d.Dev.SectorSize, newGUID)
			if err != nil {
				refuse(d, err.Error())
				continue
			}
			j.table, j.fresh = t, true
		} else if resume.Btrfs != nil {
			refuse(d, fmt.Sprintf("its partition %s holds another btrfs filesystem (%s)", resume.Path, resume.Btrfs.FSIDString()))
			continue
		}
		for _, pt := range j.table.Partitions {
			node := host.PartitionPath(d.Dev.Path, pt.Number)
			switch pt.Name {
			case paths.SwapLabel:
				j.swap = node
			case paths.Consent:
				j.data, j.size = node, (pt.Last-pt.First+1)*uint64(j.table.SectorSize)
			}
		}
		joiners = append(joiners, j)
	}

	missing := fs.Missing()
	if (fs.Replacing || fs.Balancing) && len(joiners) > 0 {
		op := "balance"
		if fs.Replacing {
			op = "replace"
		}
		for _, j := range joiners {
			refuse(j.disk, fmt.Sprintf("a btrfs %s is running on the data filesystem (see setup-persistence status); add the disk when it has finished", op))
		}
		joiners = nil
	}

	// Each missing member is rebuilt on the first disk large enough; the
	// replacement needs at least the missing member's size.
	var needPerMissing uint64
	if len(missing) > 0 {
		needPerMissing = fs.MissingBytes // exact for one missing member; the sum (cautious) for more
	}
	type replacement struct {
		joiner
		devid uint64
	}
	var replaces []replacement
	var adds []joiner
	for _, j := range joiners {
		if len(replaces) < len(missing) {
			if j.size < needPerMissing {
				refuse(j.disk, fmt.Sprintf("too small to replace the missing devid %d: its data partition would have %d MiB, the missing member had %d MiB",
					missing[len(replaces)].DevID, j.size/gpt.MiB, needPerMissing/gpt.MiB))
				continue
			}
			replaces = append(replaces, replacement{j, missing[len(replaces)].DevID})
			continue
		}
		adds = append(adds, j)
	}

	// The devices after the join, and whether the data fits them.
	var sizes []uint64
	for _, d := range fs.Present() {
		sizes = append(sizes, d.Size)
	}
	for range replaces {
		sizes = append(sizes, needPerMissing)
	}
	for _, j := range adds {
		sizes = append(sizes, j.size)
	}
	stillMissing := len(missing) - len(replaces)
	data, _ := btrfs.Profile(len(sizes) + stillMissing)
	if len(adds) > 0 && !btrfs.Fits(sizes, fs.Used, btrfs.Copies(data)) {
		for _, j := range adds {
			refuse(j.disk, fmt.Sprintf("too small: the filesystem holds %d MiB, which must fit %d times (data %s) on its disks with this one (%d MiB data partition)",
				fs.Used/gpt.MiB, btrfs.Copies(data), data, j.size/gpt.MiB))
		}
		sizes = sizes[:len(sizes)-len(adds)]
		adds = nil
	}
	if len(replaces) == 0 && len(adds) == 0 {
		return p
	}
	if stillMissing > 0 {
		p.Errors = append(p.Errors, fmt.Sprintf("the data filesystem still misses %d member(s) after this: add another disk with the consent header", stillMissing))
	}

	p.Mode = "rebuilding"
	all := make([]joiner, 0, len(replaces)+len(adds))
	for _, r := range replaces {
		all = append(all, r.joiner)
	}
	all = append(all, adds...)
	var swaps []string
	for _, j := range all {
		if j.fresh {
			p.Steps = append(p.Steps, partitionStep{Disk: j.disk, Table: j.table})
		}
		p.Steps = append(p.Steps, registerStep{Disk: j.disk, Table: j.table})
		if j.swap != "" {
			swaps = append(swaps, j.swap)
		}
	}
	if len(swaps) > 0 {
		p.Steps = append(p.Steps, mkswapStep{Devices: swaps})
	}
	// Adds first: they are quick, and btrfs refuses a device add while a
	// replace runs.
	if len(adds) > 0 {
		var devs []string
		for _, j := range adds {
			devs = append(devs, j.data)
		}
		p.Steps = append(p.Steps, addStep{Devices: devs})
	}
	for _, r := range replaces {
		p.Steps = append(p.Steps, replaceStep{DevID: r.devid, Device: r.data})
		// Bigger than the member it rebuilds: btrfs would use only that
		// member's size of it. (With several members missing btrfs gives
		// only their total size; the grow is then planned, and does
		// nothing where there is nothing to gain.)
		if r.size > needPerMissing || len(missing) > 1 {
			p.Steps = append(p.Steps, growStep{DevID: r.devid, Device: r.data})
		}
	}
	// The data partitions are now members: their consent names are retired,
	// so no later run treats them as a join to continue.
	for _, j := range all {
		p.Steps = append(p.Steps, renameStep{Disk: j.disk, Table: j.table})
	}
	if len(swaps) > 0 {
		p.Steps = append(p.Steps, swaponStep{Devices: swaps})
	}
	if stillMissing == 0 {
		p.Steps = append(p.Steps, restoreStep{Devices: len(sizes), Join: true})
	}
	return p
}

// isMemberOf tells whether a partition of d (or d itself) holds a device of
// filesystem fsid, a replacement in progress included.
func isMemberOf(d *Disk, fsid string) bool {
	if d.Btrfs != nil && d.Btrfs.FSIDString() == fsid {
		return true
	}
	for _, p := range d.Parts {
		if p.Btrfs != nil && p.Btrfs.FSIDString() == fsid {
			return true
		}
	}
	return false
}

// interruptedJoin returns the consent-named data partition of a disk whose
// join stopped after its partition table was written, or nil.
func interruptedJoin(d *Disk) *Part {
	if d.Table == nil {
		return nil
	}
	for i := range d.Parts {
		if d.Parts[i].Name == paths.Consent {
			return &d.Parts[i]
		}
	}
	return nil
}

// PlanRemove plans retiring the member on disk target from the mounted
// data filesystem fs: its data is moved to the others first (btrfs device
// remove), and metadata kept in more copies than disks remain is converted
// down first. It refuses while degraded, while another operation runs, when
// the data profile needs more disks than would remain (the user must
// convert down first: that gives up redundancy, so it is their call), and
// when the data would not fit.
func PlanRemove(disks []*Disk, fs *btrfs.State, target string) *Plan {
	p := &Plan{Mode: "persistent", FSID: fs.FSID, Online: true}
	fail := func(why string) *Plan {
		p.Errors = append(p.Errors, fmt.Sprintf("%s not removed: %s", target, why))
		return p
	}
	var disk *Disk
	for _, d := range disks {
		if d.Dev.Path == target {
			disk = d
		}
	}
	if disk == nil {
		return fail("no such disk")
	}
	if disk.Dev.Partition != 0 {
		return fail("it is a partition: name the whole disk")
	}
	var part *Part
	for i := range disk.Parts {
		if b := disk.Parts[i].Btrfs; b != nil && b.FSIDString() == fs.FSID {
			part = &disk.Parts[i]
		}
	}
	if part == nil {
		return fail("it is not a member of the data filesystem " + fs.FSID)
	}
	if m := fs.Missing(); len(m) > 0 {
		return fail(fmt.Sprintf("the data filesystem is degraded (devid %d is missing); replace the missing disk first (setup-persistence add NEWDISK)", m[0].DevID))
	}
	if fs.Replacing || fs.Balancing {
		return fail("a btrfs replace or balance is running (see setup-persistence status); try again when it has finished")
	}
	var rest []uint64
	found := false
	for _, d := range fs.Present() {
		if d.Path == part.Path {
			found = true
			continue
		}
		rest = append(rest, d.Size)
	}
	if !found {
		return fail(fmt.Sprintf("btrfs does not list %s as a device of the data filesystem", part.Path))
	}
	if len(rest) == 0 {
		return fail("it is the only disk of the data filesystem")
	}
	copies := 1
	for _, d := range fs.Data {
		if btrfs.MinDevices(d) > len(rest) {
			return fail(fmt.Sprintf("it would leave %d disk(s), and data %s needs %d; convert down first (gives up redundancy): btrfs balance start -f -dconvert=single -mconvert=dup %s",
				len(rest), d, btrfs.MinDevices(d), paths.DataDir))
		}
		copies = max(copies, btrfs.Copies(d))
	}
	if !btrfs.Fits(rest, fs.Used, copies) {
		return fail(fmt.Sprintf("the other disks have too little room for %d MiB of data in %d copies", fs.Used/gpt.MiB, copies))
	}
	// Metadata in more copies than disks would remain: down to the rule's
	// profile for that many disks (raid1c3 at three disks becomes raid1 at two).
	for _, m := range fs.Metadata {
		if btrfs.MinDevices(m) > len(rest) {
			_, meta := btrfs.Profile(len(rest))
			p.Steps = append(p.Steps, convertMetadataStep{Metadata: meta})
			break
		}
	}
	for _, pt := range disk.Parts {
		if pt.Name == paths.SwapLabel && pt.Swap != nil {
			p.Steps = append(p.Steps, swapoffStep{Device: pt.Path})
		}
	}
	p.Steps = append(p.Steps, removeStep{Device: part.Path})
	p.Notes = append(p.Notes, fmt.Sprintf("when this is done %s holds nothing of the data filesystem and can be detached", target))
	return p
}

// joinCandidates tells whether any disk could join (at boot: whether to ask
// btrfs about the filesystem at all).
func joinCandidates(disks []*Disk, fsid string) bool {
	for _, d := range disks {
		if !isMemberOf(d, fsid) && (d.Magic || interruptedJoin(d) != nil) {
			return true
		}
	}
	return false
}

func describeProfiles(data, meta []string) string {
	return "data " + strings.Join(data, "+") + ", metadata " + strings.Join(meta, "+")
}
