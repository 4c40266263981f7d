package gpt

import (
	"fmt"

	"lightwhale/internal/paths"
)

const (
	MiB = 1 << 20
	GiB = 1 << 30

	// MinDataBytes is the smallest data partition worth making: btrfs with
	// dup metadata needs about 110 MiB to exist, and Docker needs room.
	MinDataBytes = 256 * MiB
	// NoSwapBelow: disks smaller than this get no swap partition at all.
	NoSwapBelow = 2 * GiB
	// MaxSwapBytes caps the swap partition.
	MaxSwapBytes = 4 * GiB
)

// SwapBytes is the swap size rule: none on disks under 2 GiB, else 1/16 of
// the disk rounded down to whole MiB, at most 4 GiB. Swap is a safety net
// against the OOM killer, not a memory extension, so it stays small.
func SwapBytes(diskBytes uint64) uint64 {
	if diskBytes < NoSwapBelow {
		return 0
	}
	s := diskBytes / 16 / MiB * MiB
	return min(s, MaxSwapBytes)
}

// Layout is the table a magic disk gets: an optional swap partition from
// 1 MiB, then the data partition (named paths.Consent: the consent carried over
// from the raw header) on the rest, every boundary 1 MiB aligned.
// newGUID supplies disk and partition GUIDs (random in the product,
// deterministic in tests).
func Layout(sizeBytes uint64, sectorSize int, newGUID func() GUID) (*Table, error) {
	if sectorSize <= 0 || MiB%sectorSize != 0 {
		return nil, fmt.Errorf("unsupported sector size %d", sectorSize)
	}
	t := &Table{SectorSize: sectorSize, Sectors: sizeBytes / uint64(sectorSize), DiskGUID: newGUID()}
	perMiB := uint64(MiB / sectorSize)
	if t.Sectors < 4*perMiB {
		return nil, fmt.Errorf("disk of %d bytes is too small", sizeBytes)
	}
	// The last whole MiB before the backup table is where data ends.
	end := (t.LastUsable() + 1) / perMiB * perMiB // exclusive
	start := perMiB
	if swap := SwapBytes(sizeBytes); swap > 0 {
		n := swap / uint64(sectorSize)
		t.Partitions = append(t.Partitions, Partition{Type: TypeLinuxSwap, GUID: newGUID(), First: start, Last: start + n - 1, Name: paths.SwapLabel, Number: 1})
		start += n
	}
	if end <= start || (end-start)*uint64(sectorSize) < MinDataBytes {
		return nil, fmt.Errorf("disk of %d MiB is too small: the data partition needs at least %d MiB", sizeBytes/MiB, MinDataBytes/MiB)
	}
	t.Partitions = append(t.Partitions, Partition{Type: TypeLinuxData, GUID: newGUID(), First: start, Last: end - 1, Name: paths.Consent, Number: len(t.Partitions) + 1})
	return t, t.Validate()
}

// Describe is a human-readable dump of the table (used by --dry-run and goldens).
func (t *Table) Describe() string {
	s := fmt.Sprintf("gpt disk-guid=%s sector=%d sectors=%d usable=%d-%d\n", t.DiskGUID, t.SectorSize, t.Sectors, t.FirstUsable(), t.LastUsable())
	for _, p := range t.Partitions {
		size := (p.Last - p.First + 1) * uint64(t.SectorSize)
		s += fmt.Sprintf("  %d %-28q type=%s guid=%s lba=%d-%d start=%dMiB size=%dMiB\n",
			p.Number, p.Name, p.Type, p.GUID, p.First, p.Last, p.First*uint64(t.SectorSize)/MiB, size/MiB)
	}
	return s
}
