package persistence

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"lightwhale/internal/btrfs"
	"lightwhale/internal/gpt"
	"lightwhale/internal/host"
	"lightwhale/internal/paths"
)

// A replace that the kernel cancelled is started again on the same target.
// btrfs resumes a replace at mount after a power cut, but in a degraded
// filesystem the resumed one can fail at once and the kernel then cancels
// it and wipes the target's superblock: the new disk is no member, no
// longer carries the header, and the machine would stay degraded. The
// failure (ENOSPC marking a block group read-only) comes from the replace
// itself: on a degraded mount every RAID1 block group it visits makes btrfs
// allocate a chunk in the one-device profile first, and a survivor with
// little unallocated room fills up. So replaceStep records its target on
// the data filesystem first, and restore, finding that replace cancelled
// and the devid still missing, frees the empty chunks, converts the
// survivor's chunks to one-device profiles (data single, metadata dup: a
// balance in the background, which leaves the replace nothing to visit),
// then starts the replace again; restore's usual balance makes it RAID1
// after. A bounded number of times.

// replaceRecord is paths.DataDir/replaceRecordName: "DEVID DISKGUID PARTNO
// ATTEMPTS DISKNAME COMPACTED", the target by its disk's GPT GUID (names
// change between boots: the name is where to look first).
const (
	replaceRecordName = ".lightwhale-replace"
	maxReplaceStarts  = 5
)

type replaceRecord struct {
	DevID     uint64
	Disk      gpt.GUID
	Part      int
	Attempts  int
	Name      string
	Compacted bool // the survivor's chunks were converted to one-device profiles
}

func (r replaceRecord) String() string {
	return fmt.Sprintf("%d %s %d %d %s %t\n", r.DevID, r.Disk, r.Part, r.Attempts, r.Name, r.Compacted)
}

func parseReplaceRecord(b []byte) (replaceRecord, error) {
	var r replaceRecord
	f := strings.Fields(string(b))
	if len(f) != 6 {
		return r, fmt.Errorf("replace record %q: want DEVID DISKGUID PARTNO ATTEMPTS DISKNAME COMPACTED", strings.TrimSpace(string(b)))
	}
	r.Name = f[4]
	var err error
	if r.DevID, err = strconv.ParseUint(f[0], 10, 64); err == nil {
		if r.Disk, err = gpt.ParseGUID(f[1]); err == nil {
			if r.Part, err = strconv.Atoi(f[2]); err == nil {
				if r.Attempts, err = strconv.Atoi(f[3]); err == nil {
					r.Compacted, err = strconv.ParseBool(f[5])
				}
			}
		}
	}
	if err != nil {
		return r, fmt.Errorf("replace record %q: %w", strings.TrimSpace(string(b)), err)
	}
	return r, nil
}

func replaceRecordPath() string { return filepath.Join(paths.DataDir, replaceRecordName) }

// recordReplace notes the target partition dev of a replace of devid.
func recordReplace(e *env, devid uint64, dev string) error {
	d, err := e.h.Device(filepath.Base(dev))
	if err != nil || d.Parent == "" {
		return fmt.Errorf("%s is not a partition the kernel knows", dev)
	}
	disk, err := e.h.Device(d.Parent)
	if err != nil {
		return err
	}
	sd, err := scanDisk(e.h, disk)
	if err != nil {
		return err
	}
	if sd.Table == nil {
		return fmt.Errorf("%s has no GPT", disk.Path)
	}
	rec := replaceRecord{DevID: devid, Disk: sd.Table.DiskGUID, Part: d.Partition, Attempts: 1, Name: disk.Name}
	return e.h.WriteFile(replaceRecordPath(), []byte(rec.String()), 0o644)
}

// resumeReplace starts again a replace the kernel cancelled, if the record
// names a devid still missing and its target partition is there and blank.
// It says why not when it does not.
func resumeReplace(e *env, st *btrfs.State) (note string, started bool, err error) {
	b, err := e.h.ReadFile(replaceRecordPath())
	if err != nil {
		return "", false, nil
	}
	rec, err := parseReplaceRecord(b)
	if err != nil {
		return "", false, err
	}
	missing := false
	for _, d := range st.Missing() {
		missing = missing || d.DevID == rec.DevID
	}
	status := btrfs.ReplaceStatus(e.h, paths.DataDir).Text
	if !missing || !strings.Contains(status, "canceled") {
		return "", false, nil
	}
	if rec.Attempts >= maxReplaceStarts {
		return "", false, fmt.Errorf("the rebuild of devid %d was cancelled by the kernel %d times (btrfs replace status: %q): see dmesg", rec.DevID, rec.Attempts, status)
	}
	devs, err := e.h.Disks()
	if err != nil {
		return "", false, err
	}
	if d, err := e.h.Device(rec.Name); err == nil {
		devs = append([]host.Device{d}, devs...)
	}
	for _, dev := range devs {
		d, err := scanDisk(e.h, dev)
		if err != nil || d.Table == nil || d.Table.DiskGUID != rec.Disk {
			continue // a disk we cannot read is not the one we wrote
		}
		for _, p := range d.Parts {
			if p.Number != rec.Part {
				continue
			}
			if p.Btrfs != nil || p.Swap != nil {
				return fmt.Sprintf("the cancelled rebuild's target %s holds a filesystem again: not starting it again", p.Path), false, nil
			}
			if err := btrfs.DropEmptyChunks(e.h, paths.DataDir); err != nil {
				return "", false, err
			}
			if !rec.Compacted {
				rec.Compacted = true
				if err := e.h.WriteFile(replaceRecordPath(), []byte(rec.String()), 0o644); err != nil {
					return "", false, err
				}
				if err := btrfs.ToOneDevice(e.h, paths.DataDir); err != nil {
					return "", false, err
				}
				return fmt.Sprintf("the rebuild of devid %d onto %s was cancelled by the kernel (%s); converting the chunks to one-device profiles first (a balance, in the background), then the rebuild starts again", rec.DevID, p.Path, status), true, nil
			}
			rec.Attempts++
			if err := e.h.WriteFile(replaceRecordPath(), []byte(rec.String()), 0o644); err != nil {
				return "", false, err
			}
			if err := btrfs.Replace(e.h, rec.DevID, p.Path, paths.DataDir); err != nil {
				return "", false, err
			}
			return fmt.Sprintf("the rebuild of devid %d onto %s was cancelled by the kernel (%s); empty chunks freed, rebuild started again (start %d of %d)", rec.DevID, p.Path, status, rec.Attempts, maxReplaceStarts), true, nil
		}
	}
	return fmt.Sprintf("the cancelled rebuild's target (partition %d of the disk with GPT GUID %s) is not here", rec.Part, rec.Disk), false, nil
}
