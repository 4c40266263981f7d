// Package probe recognises what the first bytes of a block device hold: the
// consent header, our ISO (the boot medium), btrfs and swap superblocks, and
// other signatures that mean "this disk has data on it".
package probe

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"lightwhale/internal/paths"
)

// HeadBytes is how much of a device Identify needs: the btrfs primary
// superblock ends at 64 KiB + 4 KiB.
const HeadBytes = btrfsOffset + 4096

// HasMagic reports whether the device starts with exactly the consent header.
// Anything may follow it (echo | dd leaves a newline).
func HasMagic(head []byte) bool { return bytes.HasPrefix(head, []byte(paths.Consent)) }

// ISO9660 primary volume descriptor: sector 16 of 2 KiB.
const isoPVD = 16 * 2048

// ISOLabel returns the ISO9660 volume label, or "" if there is none.
func ISOLabel(head []byte) string {
	if len(head) < isoPVD+72 || head[isoPVD] != 1 || string(head[isoPVD+1:isoPVD+6]) != "CD001" {
		return ""
	}
	return string(bytes.TrimRight(head[isoPVD+40:isoPVD+72], " \x00"))
}

// IsBootMedium reports whether the device carries a Lightwhale ISO, whether
// burnt to a CD or written raw to a USB stick (even if a consent header was
// later written over its first bytes).
func IsBootMedium(head []byte) bool {
	return bytes.HasPrefix([]byte(ISOLabel(head)), []byte(paths.ISOLabel))
}

const (
	btrfsOffset = 64 << 10
	btrfsMagic  = "_BHRfS_M"
)

// Btrfs is what a btrfs superblock says about the filesystem and this device.
type Btrfs struct {
	FSID       [16]byte
	Label      string
	NumDevices uint64
	DevID      uint64
	Generation uint64
	LogRoot    uint64 // non-zero: a tree log waits for replay (not cleanly unmounted after fsync)
}

// FSIDString is the filesystem UUID as blkid prints it.
func (b *Btrfs) FSIDString() string { return uuidString(b.FSID) }

// ParseBtrfs returns the btrfs superblock at 64 KiB, or nil if there is none.
// Offsets from the kernel's struct btrfs_super_block.
func ParseBtrfs(head []byte) *Btrfs {
	if len(head) < btrfsOffset+4096 {
		return nil
	}
	sb := head[btrfsOffset : btrfsOffset+4096]
	if string(sb[0x40:0x48]) != btrfsMagic {
		return nil
	}
	b := &Btrfs{
		Generation: binary.LittleEndian.Uint64(sb[0x48:]),
		LogRoot:    binary.LittleEndian.Uint64(sb[0x60:]),
		NumDevices: binary.LittleEndian.Uint64(sb[0x88:]),
		DevID:      binary.LittleEndian.Uint64(sb[0xc9:]),
		Label:      cstring(sb[0x12b : 0x12b+256]),
	}
	copy(b.FSID[:], sb[0x20:0x30])
	return b
}

// Swap is a Linux swap signature.
type Swap struct{ Label string }

// ParseSwap finds a swap signature for 4 KiB pages (what x86-64 uses).
func ParseSwap(head []byte) *Swap {
	const page = 4096
	if len(head) < page || string(head[page-10:page]) != "SWAPSPACE2" {
		return nil
	}
	// struct swap_header: 1024 bytes of boot bits, version, last_page,
	// nr_badpages, uuid[16], volume_name[16].
	return &Swap{Label: cstring(head[1024+12+16 : 1024+12+16+16])}
}

// Identify names the first recognisable content of a device ("" if it looks
// blank): what `setup-persistence enable` refuses to overwrite without --force.
func Identify(head []byte, sectorSize int) string {
	if s := signature(head, sectorSize); s != "" {
		return s
	}
	if !allZero(head[:min(len(head), 1<<20)]) {
		return "non-zero data"
	}
	return ""
}

// Leftover names a partition table or filesystem still on a disk that
// starts with the consent header (the header overwrites only its own bytes:
// a GPT, a btrfs or ext4 superblock survive it), "" if there is none.
// A disk joining a filesystem must not hold one: the header then marks an
// old disk, not a blank one.
func Leftover(head []byte, sectorSize int) string {
	if !HasMagic(head) {
		return ""
	}
	h := append([]byte(nil), head...)
	n := len(paths.Consent)
	if len(h) > n && h[n] == '\n' {
		n++
	}
	clear(h[:n])
	return signature(h, sectorSize)
}

// signature names recognisable content, "" if there is none.
func signature(head []byte, sectorSize int) string {
	at := func(off int, sig string) bool {
		return len(head) >= off+len(sig) && string(head[off:off+len(sig)]) == sig
	}
	switch {
	case HasMagic(head):
		return "lightwhale consent header"
	case ISOLabel(head) != "":
		return fmt.Sprintf("ISO9660 image %q", ISOLabel(head))
	case at(sectorSize, "EFI PART") || at(512, "EFI PART"):
		return "GPT partition table"
	case ParseBtrfs(head) != nil:
		return fmt.Sprintf("btrfs filesystem %q", ParseBtrfs(head).Label)
	case ParseSwap(head) != nil:
		return "swap space"
	case at(1080, "\x53\xef"):
		return "ext2/3/4 filesystem"
	case at(0, "XFSB"):
		return "XFS filesystem"
	case at(0, "LUKS\xba\xbe"):
		return "LUKS encrypted volume"
	case at(512, "LABELONE") || at(24, "LABELONE"):
		return "LVM physical volume"
	case at(4096, "\xfc\x4e\x2b\xa9"):
		return "Linux RAID member"
	case at(3, "NTFS    "):
		return "NTFS filesystem"
	case at(82, "FAT32   ") || at(54, "FAT16   ") || at(54, "FAT12   "):
		return "FAT filesystem"
	case at(0, "hsqs"):
		return "squashfs image"
	case at(510, "\x55\xaa"):
		return "MBR partition table or boot sector"
	}
	return ""
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

func uuidString(u [16]byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:])
}
