package vm

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"unicode/utf16"
)

// Magic is the consent header a user writes to a disk (seed 000).
const Magic = "lightwhale-please-format-me"

// NewDisk creates a sparse raw image of sizeMiB. When head is not empty it
// is written at byte 0, as `echo HEAD | dd conv=notrunc of=DISK` would.
func NewDisk(path string, sizeMiB int64, head string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("create disk image: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(sizeMiB << 20); err != nil {
		return fmt.Errorf("size disk image %s: %w", path, err)
	}
	if head != "" {
		if _, err := f.WriteAt([]byte(head), 0); err != nil {
			return fmt.Errorf("write header to %s: %w", path, err)
		}
	}
	return f.Close()
}

// NewMagicDisk creates a sparse image carrying the magic header and the
// newline `echo` leaves after it.
func NewMagicDisk(path string, sizeMiB int64) error {
	return NewDisk(path, sizeMiB, Magic+"\n")
}

// HashFile returns the SHA-256 of a whole image, to prove it untouched.
func HashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("hash: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Head returns the first n bytes of an image.
func Head(path string, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read head: %w", err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, fmt.Errorf("read head of %s: %w", path, err)
	}
	return b, nil
}

// Partition is one GPT entry as found on an image.
type Partition struct {
	Name       string
	FirstLBA   uint64
	LastLBA    uint64
	TypeGUID   [16]byte
	Attributes uint64
}

// Offset and Size are in bytes, for 512-byte sectors (what QEMU presents).
func (p Partition) Offset() int64 { return int64(p.FirstLBA) * 512 }
func (p Partition) Size() int64   { return int64(p.LastLBA-p.FirstLBA+1) * 512 }

// ErrNoGPT means the image has no GPT header at LBA 1.
var ErrNoGPT = errors.New("no gpt")

// ReadGPT reads the primary GPT of an image written with 512-byte sectors.
// The tests read it from the host to check what the guest wrote.
func ReadGPT(path string) ([]Partition, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read gpt: %w", err)
	}
	defer f.Close()
	hdr := make([]byte, 512)
	if _, err := f.ReadAt(hdr, 512); err != nil {
		return nil, fmt.Errorf("read gpt header of %s: %w", path, err)
	}
	if string(hdr[:8]) != "EFI PART" {
		return nil, fmt.Errorf("%s: %w", path, ErrNoGPT)
	}
	entriesLBA := binary.LittleEndian.Uint64(hdr[72:])
	count := binary.LittleEndian.Uint32(hdr[80:])
	size := binary.LittleEndian.Uint32(hdr[84:])
	if size < 128 || count > 1024 {
		return nil, fmt.Errorf("%s: implausible gpt (%d entries of %d bytes)", path, count, size)
	}
	buf := make([]byte, int(count)*int(size))
	if _, err := f.ReadAt(buf, int64(entriesLBA)*512); err != nil {
		return nil, fmt.Errorf("read gpt entries of %s: %w", path, err)
	}
	var parts []Partition
	for i := 0; i < int(count); i++ {
		e := buf[i*int(size) : (i+1)*int(size)]
		var p Partition
		copy(p.TypeGUID[:], e[:16])
		if p.TypeGUID == [16]byte{} {
			continue
		}
		p.FirstLBA = binary.LittleEndian.Uint64(e[32:])
		p.LastLBA = binary.LittleEndian.Uint64(e[40:])
		p.Attributes = binary.LittleEndian.Uint64(e[48:])
		u := make([]uint16, 36)
		for j := range u {
			u[j] = binary.LittleEndian.Uint16(e[56+2*j:])
		}
		p.Name = string(utf16.Decode(u16(u).trim()))
		parts = append(parts, p)
	}
	return parts, nil
}

// u16 is a GPT name in UTF-16 code units, padded with NUL units.
type u16 []uint16

func (u u16) trim() []uint16 {
	n := len(u)
	for n > 0 && u[n-1] == 0 {
		n--
	}
	return u[:n]
}

// BtrfsSuper is what the tests read from a btrfs superblock on the host.
type BtrfsSuper struct {
	FSID       string
	Label      string
	Generation uint64
	LogRoot    uint64 // non-zero: a tree log waits for replay (not cleanly unmounted after fsync)
	NumDevices uint64
}

// ReadBtrfsSuper reads the primary superblock of a btrfs filesystem that
// starts at byte off of an image.
func ReadBtrfsSuper(path string, off int64) (BtrfsSuper, error) {
	f, err := os.Open(path)
	if err != nil {
		return BtrfsSuper{}, fmt.Errorf("read btrfs super: %w", err)
	}
	defer f.Close()
	sb := make([]byte, 4096)
	if _, err := f.ReadAt(sb, off+0x10000); err != nil {
		return BtrfsSuper{}, fmt.Errorf("read btrfs super of %s at %d: %w", path, off, err)
	}
	if string(sb[0x40:0x48]) != "_BHRfS_M" {
		return BtrfsSuper{}, fmt.Errorf("%s at %d: no btrfs superblock", path, off)
	}
	label := sb[0x12b : 0x12b+256]
	if i := bytes.IndexByte(label, 0); i >= 0 {
		label = label[:i]
	}
	return BtrfsSuper{
		FSID:       hex.EncodeToString(sb[0x20:0x30]),
		Generation: binary.LittleEndian.Uint64(sb[0x48:]),
		LogRoot:    binary.LittleEndian.Uint64(sb[0x60:]),
		NumDevices: binary.LittleEndian.Uint64(sb[0x88:]),
		Label:      string(label),
	}, nil
}
