package persistence

import (
	"fmt"
	"path/filepath"
	"strings"

	"lightwhale/internal/gpt"
	"lightwhale/internal/host"
	"lightwhale/internal/probe"
)

// scan reads every candidate disk: the first bytes (header, GPT, ISO label,
// btrfs), the backup GPT, and the start of every partition, both those the
// kernel lists and those the GPT describes (a kernel without partition
// parsers lists none). It writes nothing.
func scan(h host.Host, only []string) ([]*Disk, error) {
	var devs []host.Device
	if len(only) > 0 {
		seen := map[string]bool{}
		for _, path := range only {
			if seen[filepath.Base(path)] {
				continue
			}
			seen[filepath.Base(path)] = true
			d, err := h.Device(filepath.Base(path))
			if err != nil {
				return nil, fmt.Errorf("--devices: %s: %w", path, err)
			}
			if d.Partition != 0 {
				return nil, fmt.Errorf("--devices: %s is a partition; name whole disks", path)
			}
			devs = append(devs, d)
		}
	} else {
		var err error
		if devs, err = h.Disks(); err != nil {
			return nil, err
		}
	}
	var out []*Disk
	for _, dev := range devs {
		d, err := scanDisk(h, dev)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

func scanDisk(h host.Host, dev host.Device) (*Disk, error) {
	d := &Disk{Dev: dev}
	n := max(probe.HeadBytes, gpt.HeadBytes(dev.SectorSize))
	head, err := h.ReadAt(dev.Path, 0, n)
	if err != nil {
		return nil, err
	}
	d.Magic = probe.HasMagic(head)
	d.BootMedium = probe.IsBootMedium(head)
	d.Btrfs = probe.ParseBtrfs(head)
	d.Leftover = probe.Leftover(head, dev.SectorSize)
	d.Busy = h.Busy(dev)
	tb := uint64(gpt.TailBytes(dev.SectorSize))
	var tail []byte
	if dev.Size > tb {
		tail, _ = h.ReadAt(dev.Path, int64(dev.Size-tb), int(tb))
	}
	if t, err := gpt.Decode(head, tail, dev.SectorSize, dev.Size/uint64(dev.SectorSize)); err == nil {
		d.Table = t
	}

	// Partitions: from the GPT, then any other the kernel knows (MBR disks).
	seen := map[uint64]bool{}
	if d.Table != nil {
		for _, p := range d.Table.Partitions {
			start := p.First * uint64(dev.SectorSize)
			seen[start] = true
			d.Parts = append(d.Parts, Part{
				Disk: dev.Name, Number: p.Number, Name: p.Name, Start: start,
				Size: (p.Last - p.First + 1) * uint64(dev.SectorSize),
				Path: host.PartitionPath(dev.Path, p.Number),
			})
		}
	}
	kparts, _ := h.Partitions(dev.Name)
	registered := map[uint64]string{}
	for _, kp := range kparts {
		registered[kp.Start] = kp.Path
		if !seen[kp.Start] {
			d.Parts = append(d.Parts, Part{Disk: dev.Name, Number: kp.Partition, Start: kp.Start, Size: kp.Size, Path: kp.Path})
		}
	}
	for i := range d.Parts {
		p := &d.Parts[i]
		// Through the partition's node when the kernel has it: the whole
		// disk's page cache does not see what btrfs wrote through the
		// partition (a disk that joined minutes ago). Else through the
		// whole disk, so partitions not registered yet are seen too.
		src, off := dev.Path, int64(p.Start)
		if node, ok := registered[p.Start]; ok && node == p.Path {
			src, off = node, 0
		}
		ph, err := h.ReadAt(src, off, int(min(uint64(probe.HeadBytes), p.Size)))
		if err != nil {
			return nil, err
		}
		p.Btrfs = probe.ParseBtrfs(ph)
		p.Swap = probe.ParseSwap(ph)
	}
	return d, nil
}

// describe is one line per disk for --dry-run and status.
func describe(d *Disk) string {
	var what []string
	if d.Magic {
		what = append(what, "consent header")
	}
	if d.BootMedium {
		what = append(what, "boot medium")
	}
	if d.Btrfs != nil {
		what = append(what, fmt.Sprintf("btrfs %q", d.Btrfs.Label))
	}
	for _, p := range d.Parts {
		s := filepath.Base(p.Path)
		if p.Name != "" {
			s += fmt.Sprintf(" %q", p.Name)
		}
		switch {
		case p.Btrfs != nil:
			s += fmt.Sprintf(" btrfs %q %s", p.Btrfs.Label, p.Btrfs.FSIDString())
		case p.Swap != nil:
			s += " swap"
		}
		what = append(what, s)
	}
	if d.Busy != "" {
		what = append(what, "busy: "+d.Busy)
	}
	if len(what) == 0 {
		what = append(what, "nothing of ours")
	}
	return fmt.Sprintf("%s (%d MiB): %s", d.Dev.Path, d.Dev.Size/gpt.MiB, strings.Join(what, "; "))
}
