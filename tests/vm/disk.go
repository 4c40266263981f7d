package vm

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"lightwhale/internal/gpt"
	"lightwhale/internal/paths"
	"lightwhale/internal/probe"
)

// Magic is the consent header a user writes to a disk.
const Magic = paths.Consent

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
	Name     string
	FirstLBA uint64
	LastLBA  uint64
}

// Offset and Size are in bytes, for 512-byte sectors (what QEMU presents).
func (p Partition) Offset() int64 { return int64(p.FirstLBA) * 512 }
func (p Partition) Size() int64   { return int64(p.LastLBA-p.FirstLBA+1) * 512 }

// ErrNoGPT means the image has no GPT.
var ErrNoGPT = gpt.ErrNoGPT

// ReadGPT reads the GPT of an image written with 512-byte sectors, with
// internal/gpt: the tests read it from the host to check what the guest wrote.
func ReadGPT(path string) ([]Partition, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read gpt: %w", err)
	}
	head, err := readAt(path, 0, gpt.HeadBytes(512))
	if err != nil {
		return nil, err
	}
	tail, err := readAt(path, fi.Size()-int64(gpt.TailBytes(512)), gpt.TailBytes(512))
	if err != nil {
		return nil, err
	}
	t, err := gpt.Decode(head, tail, 512, uint64(fi.Size())/512)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var parts []Partition
	for _, p := range t.Partitions {
		parts = append(parts, Partition{Name: p.Name, FirstLBA: p.First, LastLBA: p.Last})
	}
	return parts, nil
}

func readAt(path string, off int64, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		return nil, fmt.Errorf("read %s at %d: %w", path, off, err)
	}
	return b, nil
}

// BtrfsSuper is what the tests read from a btrfs superblock on the host.
type BtrfsSuper = probe.Btrfs

// ReadBtrfsSuper reads the primary superblock of a btrfs filesystem that
// starts at byte off of an image, with internal/probe.
func ReadBtrfsSuper(path string, off int64) (BtrfsSuper, error) {
	head, err := readAt(path, off, probe.HeadBytes)
	if err != nil {
		return BtrfsSuper{}, fmt.Errorf("read btrfs super: %w", err)
	}
	sb := probe.ParseBtrfs(head)
	if sb == nil {
		return BtrfsSuper{}, fmt.Errorf("%s at %d: no btrfs superblock", path, off)
	}
	return *sb, nil
}
