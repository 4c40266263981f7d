// Package gpt computes, encodes and decodes GUID partition tables for any
// logical sector size (512 and 4096 are what disks report).
//
// u-root's pkg/mount/gpt assumes 512-byte sectors and writes the protective
// MBR first; persistence needs 4 KiB sectors too and a write order in which
// the MBR (which overwrites the consent header) is written last.
package gpt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"unicode/utf16"
)

const (
	entrySize  = 128
	numEntries = 128
	headerSize = 92
	signature  = "EFI PART"
	revision   = 0x00010000
	nameUnits  = 36 // UTF-16 code units in a partition name
)

// Partition type GUIDs.
var (
	TypeLinuxSwap = MustParseGUID("0657FD6D-A4AB-43C4-84E5-0933C84B4F4F")
	TypeLinuxData = MustParseGUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4")
)

// GUID is a GUID in its canonical (string) byte order.
type GUID [16]byte

// MustParseGUID parses "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" or panics.
func MustParseGUID(s string) GUID {
	g, err := ParseGUID(s)
	if err != nil {
		panic(err)
	}
	return g
}

// ParseGUID parses the canonical string form of a GUID.
func ParseGUID(s string) (GUID, error) {
	var g GUID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return g, fmt.Errorf("bad guid %q", s)
	}
	hex := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:]
	for i := range g {
		if _, err := fmt.Sscanf(hex[2*i:2*i+2], "%02x", &g[i]); err != nil {
			return g, fmt.Errorf("bad guid %q: %w", s, err)
		}
	}
	return g, nil
}

func (g GUID) String() string {
	return fmt.Sprintf("%X-%X-%X-%X-%X", g[0:4], g[4:6], g[6:8], g[8:10], g[10:])
}

// mixed is the on-disk form: the first three fields little-endian.
func (g GUID) mixed() [16]byte {
	var m [16]byte
	m[0], m[1], m[2], m[3] = g[3], g[2], g[1], g[0]
	m[4], m[5] = g[5], g[4]
	m[6], m[7] = g[7], g[6]
	copy(m[8:], g[8:])
	return m
}

func fromMixed(m []byte) GUID {
	var g GUID
	g[0], g[1], g[2], g[3] = m[3], m[2], m[1], m[0]
	g[4], g[5] = m[5], m[4]
	g[6], g[7] = m[7], m[6]
	copy(g[8:], m[8:16])
	return g
}

// Partition is one entry. LBAs are in logical sectors, Last inclusive.
type Partition struct {
	Type   GUID
	GUID   GUID
	First  uint64
	Last   uint64
	Name   string
	Number int // 1-based slot in the entry array
}

// Table is a whole GPT for a disk of Sectors logical sectors of SectorSize bytes.
type Table struct {
	SectorSize int
	Sectors    uint64
	DiskGUID   GUID
	Partitions []Partition
}

// entrySectors is how many sectors the 128-entry array takes.
func (t *Table) entrySectors() uint64 {
	return uint64((numEntries*entrySize + t.SectorSize - 1) / t.SectorSize)
}

// FirstUsable and LastUsable bound where partitions may live.
func (t *Table) FirstUsable() uint64 { return 2 + t.entrySectors() }

// LastUsable is the last sector before the backup entry array.
func (t *Table) LastUsable() uint64 { return t.Sectors - 2 - t.entrySectors() }

// Validate checks what Encode relies on.
func (t *Table) Validate() error {
	if t.SectorSize != 512 && t.SectorSize != 1024 && t.SectorSize != 2048 && t.SectorSize != 4096 {
		return fmt.Errorf("unsupported sector size %d", t.SectorSize)
	}
	if t.Sectors < 2*(2+t.entrySectors())+1 {
		return fmt.Errorf("disk of %d sectors is too small for a gpt", t.Sectors)
	}
	if len(t.Partitions) > numEntries {
		return fmt.Errorf("%d partitions: at most %d", len(t.Partitions), numEntries)
	}
	for i, p := range t.Partitions {
		if p.First < t.FirstUsable() || p.Last > t.LastUsable() || p.Last < p.First {
			return fmt.Errorf("partition %d (%d-%d) outside usable sectors %d-%d", i+1, p.First, p.Last, t.FirstUsable(), t.LastUsable())
		}
		if len(utf16.Encode([]rune(p.Name))) > nameUnits {
			return fmt.Errorf("partition name %q longer than %d UTF-16 units", p.Name, nameUnits)
		}
		for _, q := range t.Partitions[:i] {
			if p.First <= q.Last && q.First <= p.Last {
				return fmt.Errorf("partitions %q and %q overlap", q.Name, p.Name)
			}
		}
	}
	return nil
}

// Write is one region of bytes to put on the disk at Offset.
type Write struct {
	Offset int64
	Data   []byte
}

// Encode returns the regions to write, in the order they must be written:
// backup array and header, primary array and header, and last the sector 0
// protective MBR. Until that last write lands, whatever was in sector 0 (the
// consent header) survives, so a crash mid-way leaves a disk that is
// partitioned again from scratch.
func (t *Table) Encode() ([]Write, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	ss := int64(t.SectorSize)
	entries := make([]byte, t.entrySectors()*uint64(ss))
	for i, p := range t.Partitions {
		slot := i
		if p.Number > 0 {
			slot = p.Number - 1
		}
		e := entries[slot*entrySize : (slot+1)*entrySize]
		ty, id := p.Type.mixed(), p.GUID.mixed()
		copy(e[0:16], ty[:])
		copy(e[16:32], id[:])
		binary.LittleEndian.PutUint64(e[32:], p.First)
		binary.LittleEndian.PutUint64(e[40:], p.Last)
		for j, u := range utf16.Encode([]rune(p.Name)) {
			binary.LittleEndian.PutUint16(e[56+2*j:], u)
		}
	}
	entriesCRC := crc32.ChecksumIEEE(entries[:numEntries*entrySize])
	last := t.Sectors - 1
	backupEntries := last - t.entrySectors()

	primary := t.header(1, last, 2, entriesCRC, ss)
	backup := t.header(last, 1, backupEntries, entriesCRC, ss)
	return []Write{
		{Offset: int64(backupEntries) * ss, Data: entries},
		{Offset: int64(last) * ss, Data: backup},
		{Offset: 2 * ss, Data: entries},
		{Offset: ss, Data: primary},
		{Offset: 0, Data: t.protectiveMBR()},
	}, nil
}

func (t *Table) header(current, other, entriesLBA uint64, entriesCRC uint32, ss int64) []byte {
	h := make([]byte, ss)
	copy(h[0:8], signature)
	binary.LittleEndian.PutUint32(h[8:], revision)
	binary.LittleEndian.PutUint32(h[12:], headerSize)
	binary.LittleEndian.PutUint64(h[24:], current)
	binary.LittleEndian.PutUint64(h[32:], other)
	binary.LittleEndian.PutUint64(h[40:], t.FirstUsable())
	binary.LittleEndian.PutUint64(h[48:], t.LastUsable())
	g := t.DiskGUID.mixed()
	copy(h[56:72], g[:])
	binary.LittleEndian.PutUint64(h[72:], entriesLBA)
	binary.LittleEndian.PutUint32(h[80:], numEntries)
	binary.LittleEndian.PutUint32(h[84:], entrySize)
	binary.LittleEndian.PutUint32(h[88:], entriesCRC)
	binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:headerSize]))
	return h
}

// protectiveMBR is a whole sector 0: BootCode (which also erases a consent
// header there), one 0xEE partition covering the disk, and the 0x55AA mark.
func (t *Table) protectiveMBR() []byte {
	m := make([]byte, t.SectorSize)
	copy(m, BootCode)
	e := m[446:462]
	e[1], e[2], e[3] = 0x00, 0x02, 0x00 // CHS of LBA 1
	e[4] = 0xEE
	e[5], e[6], e[7] = 0xFF, 0xFF, 0xFF
	binary.LittleEndian.PutUint32(e[8:], 1)
	size := t.Sectors - 1
	if size > 0xFFFFFFFF {
		size = 0xFFFFFFFF
	}
	binary.LittleEndian.PutUint32(e[12:], uint32(size))
	m[510], m[511] = 0x55, 0xAA
	return m
}

// ErrNoGPT means the disk carries no valid GPT at all.
var ErrNoGPT = errors.New("no gpt")

// Decode reads a GPT from the disk's first bytes (at least the header and
// entry array: 2+entrySectors sectors) and, for checking the backup, its
// last bytes (tail, may be nil). The primary copy wins when valid; a disk
// whose primary is damaged but backup valid decodes from the backup.
func Decode(head, tail []byte, sectorSize int, sectors uint64) (*Table, error) {
	t := &Table{SectorSize: sectorSize, Sectors: sectors}
	ss := uint64(sectorSize)
	if p, err := t.decodeAt(head, 1, 0, ss); err == nil {
		return p, nil
	} else if tail == nil {
		return nil, err
	}
	// The tail holds the last len(tail) bytes of the disk.
	base := sectors*ss - uint64(len(tail))
	if b, err := t.decodeAt(tail, sectors-1, base, ss); err == nil {
		return b, nil
	}
	return nil, ErrNoGPT
}

// decodeAt parses the header at LBA lba, with buf holding disk bytes from base.
func (t *Table) decodeAt(buf []byte, lba, base, ss uint64) (*Table, error) {
	off := lba*ss - base
	if lba*ss < base || off+ss > uint64(len(buf)) {
		return nil, ErrNoGPT
	}
	h := buf[off : off+ss]
	if string(h[0:8]) != signature {
		return nil, ErrNoGPT
	}
	hs := binary.LittleEndian.Uint32(h[12:])
	if hs < headerSize || uint64(hs) > ss {
		return nil, fmt.Errorf("gpt header size %d: %w", hs, ErrNoGPT)
	}
	hc := bytes.Clone(h[:hs])
	binary.LittleEndian.PutUint32(hc[16:], 0)
	if crc32.ChecksumIEEE(hc) != binary.LittleEndian.Uint32(h[16:]) {
		return nil, fmt.Errorf("gpt header crc mismatch: %w", ErrNoGPT)
	}
	if binary.LittleEndian.Uint64(h[24:]) != lba {
		return nil, fmt.Errorf("gpt header at lba %d claims lba %d: %w", lba, binary.LittleEndian.Uint64(h[24:]), ErrNoGPT)
	}
	n := binary.LittleEndian.Uint32(h[80:])
	es := binary.LittleEndian.Uint32(h[84:])
	if es < entrySize || n > 1024 {
		return nil, fmt.Errorf("gpt entry array %dx%d: %w", n, es, ErrNoGPT)
	}
	eoff := binary.LittleEndian.Uint64(h[72:])*ss - base
	elen := uint64(n) * uint64(es)
	if binary.LittleEndian.Uint64(h[72:])*ss < base || eoff+elen > uint64(len(buf)) {
		return nil, fmt.Errorf("gpt entry array outside what was read: %w", ErrNoGPT)
	}
	arr := buf[eoff : eoff+elen]
	if crc32.ChecksumIEEE(arr) != binary.LittleEndian.Uint32(h[88:]) {
		return nil, fmt.Errorf("gpt entry array crc mismatch: %w", ErrNoGPT)
	}
	out := &Table{SectorSize: t.SectorSize, Sectors: t.Sectors, DiskGUID: fromMixed(h[56:72])}
	for i := 0; i < int(n); i++ {
		e := arr[i*int(es) : i*int(es)+entrySize]
		ty := fromMixed(e[0:16])
		if ty == (GUID{}) {
			continue
		}
		units := make([]uint16, 0, nameUnits)
		for j := 0; j < nameUnits; j++ {
			u := binary.LittleEndian.Uint16(e[56+2*j:])
			if u == 0 {
				break
			}
			units = append(units, u)
		}
		out.Partitions = append(out.Partitions, Partition{
			Type: ty, GUID: fromMixed(e[16:32]),
			First: binary.LittleEndian.Uint64(e[32:]), Last: binary.LittleEndian.Uint64(e[40:]),
			Name: string(utf16.Decode(units)), Number: i + 1,
		})
	}
	return out, nil
}

// HeadBytes is how many bytes from the start of a disk Decode needs.
func HeadBytes(sectorSize int) int {
	return sectorSize*2 + numEntries*entrySize
}

// TailBytes is how many bytes from the end of a disk Decode needs for the backup.
func TailBytes(sectorSize int) int {
	return sectorSize + numEntries*entrySize
}
