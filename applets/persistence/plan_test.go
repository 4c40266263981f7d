package persistence

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"lightwhale/internal/golden"
	"lightwhale/internal/paths"

	"lightwhale/internal/gpt"
	"lightwhale/internal/host"
	"lightwhale/internal/probe"
)

func seqGUID() func() gpt.GUID {
	n := 0
	return func() gpt.GUID {
		n++
		return gpt.MustParseGUID(fmt.Sprintf("00000000-0000-4000-8000-%012d", n))
	}
}

func disk(name string, sizeGiB uint64) *Disk {
	return &Disk{Dev: host.Device{Name: name, Path: "/dev/" + name, Size: sizeGiB * gpt.GiB, SectorSize: 512}}
}

func magic(d *Disk) *Disk { d.Magic = true; return d }

// claimed gives d the table and filesystem a finished (or interrupted) claim leaves.
func claimed(d *Disk, fsid byte, label string, devid, ndev uint64, partName string) *Disk {
	t, err := gpt.Layout(d.Dev.Size, d.Dev.SectorSize, seqGUID())
	if err != nil {
		panic(err)
	}
	t.Partitions[len(t.Partitions)-1].Name = partName
	d.Table = t
	for _, p := range t.Partitions {
		part := Part{Disk: d.Dev.Name, Number: p.Number, Name: p.Name, Start: p.First * 512, Size: (p.Last - p.First + 1) * 512,
			Path: "/dev/" + host.PartitionName(d.Dev.Name, p.Number)}
		if p.Name == paths.SwapLabel {
			part.Swap = &probe.Swap{Label: paths.SwapLabel}
		} else if label != "" {
			part.Btrfs = &probe.Btrfs{FSID: [16]byte{fsid}, Label: label, DevID: devid, NumDevices: ndev}
		}
		d.Parts = append(d.Parts, part)
	}
	return d
}

func TestDecide(t *testing.T) {
	for _, tt := range []struct {
		name  string
		disks []*Disk
	}{
		{"no-disks", nil},
		{"blank-disk", []*Disk{disk("sda", 8)}},
		{"one-magic", []*Disk{magic(disk("sda", 8))}},
		{"one-magic-small-no-swap", []*Disk{magic(disk("vda", 1))}},
		{"two-magic", []*Disk{magic(disk("sda", 8)), magic(disk("sdb", 8))}},
		{"three-magic", []*Disk{magic(disk("sda", 8)), magic(disk("sdb", 8)), magic(disk("sdc", 8))}},
		{"five-magic", []*Disk{magic(disk("sda", 8)), magic(disk("sdb", 8)), magic(disk("sdc", 8)), magic(disk("sdd", 8)), magic(disk("sde", 8))}},
		{"crash-after-partition", []*Disk{claimed(disk("sda", 8), 0, "", 0, 0, paths.Consent), magic(disk("sdb", 8))}},
		{"crash-after-mkfs", []*Disk{claimed(disk("sda", 8), 7, paths.ClaimLabel, 1, 1, paths.Consent)}},
		{"crash-after-label-before-rename", []*Disk{claimed(disk("sda", 8), 7, paths.DataLabel, 1, 2, paths.Consent), claimed(disk("sdb", 8), 7, paths.ClaimLabel, 2, 2, paths.Consent)}},
		{"existing-wins-over-magic", []*Disk{claimed(disk("sda", 8), 7, paths.DataLabel, 1, 1, paths.DataLabel), magic(disk("sdb", 8))}},
		{"raid1-complete", []*Disk{claimed(disk("sda", 8), 7, paths.DataLabel, 1, 2, paths.DataLabel), claimed(disk("sdb", 8), 7, paths.DataLabel, 2, 2, paths.DataLabel)}},
		{"raid1-one-missing", []*Disk{claimed(disk("sdb", 8), 7, paths.DataLabel, 2, 2, paths.DataLabel)}},
		// A reboot in the middle of a replace: the target (devid 0) is no
		// member yet; the mount stays degraded and btrfs resumes the replace.
		{"raid1-replace-in-progress", []*Disk{claimed(disk("sda", 8), 7, paths.DataLabel, 1, 2, paths.DataLabel), claimed(disk("sdc", 8), 7, paths.DataLabel, 0, 2, paths.Consent)}},
		{"raid1c3-two-missing", []*Disk{claimed(disk("sdc", 8), 7, paths.DataLabel, 3, 3, paths.DataLabel)}},
		{"two-data-filesystems", []*Disk{claimed(disk("sda", 8), 7, paths.DataLabel, 1, 1, paths.DataLabel), claimed(disk("sdb", 8), 9, paths.DataLabel, 1, 1, paths.DataLabel), magic(disk("sdc", 8))}},
		{"refused-disks", []*Disk{
			func() *Disk { d := magic(disk("sr0x", 8)); d.BootMedium = true; return d }(),
			func() *Disk { d := magic(disk("sdb", 8)); d.Busy = "sdb is mounted at /media"; return d }(),
			func() *Disk { d := magic(disk("sdc", 8)); d.Dev.ReadOnly = true; return d }(),
			magic(&Disk{Dev: host.Device{Name: "sdd", Path: "/dev/sdd", Size: 100 * gpt.MiB, SectorSize: 512}}),
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := Decide(tt.disks, seqGUID()).String()
			golden.Check(t, filepath.Join("testdata", "plan-"+tt.name+".golden"), got)
		})
	}
}

// TestDecideNeverTouchesUnconsenting checks the policy over many mixes: a
// disk that neither starts with the header nor carries a consent partition
// never appears in a writing step.
func TestDecideNeverTouchesUnconsenting(t *testing.T) {
	pool := []func() *Disk{
		func() *Disk { return disk("sda", 8) },
		func() *Disk { return magic(disk("sdb", 8)) },
		func() *Disk { return claimed(disk("sdc", 8), 7, paths.DataLabel, 1, 1, paths.DataLabel) },
		func() *Disk { return claimed(disk("sdd", 8), 0, "", 0, 0, paths.Consent) },
		func() *Disk { d := magic(disk("sde", 8)); d.Busy = "busy"; return d },
		func() *Disk { d := disk("sdf", 8); d.Btrfs = &probe.Btrfs{FSID: [16]byte{3}, Label: "other"}; return d },
	}
	for mask := 0; mask < 1<<len(pool); mask++ {
		var disks []*Disk
		for i, mk := range pool {
			if mask&(1<<i) != 0 {
				disks = append(disks, mk())
			}
		}
		p := Decide(disks, seqGUID())
		for _, s := range p.Steps {
			w, ok := s.(writer)
			if !ok {
				continue
			}
			_, rename := s.(renameStep)
			for _, path := range w.Writes() {
				name := strings.TrimRight(strings.TrimPrefix(path, "/dev/"), "0123456789")
				if strings.Contains("sda sde sdf", name) {
					t.Errorf("mask %b: step %q writes %s", mask, s, path)
				}
				if name == "sdc" && !rename {
					t.Errorf("mask %b: step %q writes the committed disk %s", mask, s, path)
				}
			}
		}
	}
}
