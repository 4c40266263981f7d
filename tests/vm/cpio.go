package vm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// CpioEntry is one member of a newc ("070701") archive, the format the
// kernel unpacks as an initramfs.
type CpioEntry struct {
	Name  string
	Mode  uint32 // file type and permission bits, as in stat(2)
	Major uint32 // device numbers for character/block nodes
	Minor uint32
	Data  []byte // file contents, or the target of a symlink
}

// Mode type bits.
const (
	ModeDir     = 0o040000
	ModeFile    = 0o100000
	ModeSymlink = 0o120000
	ModeChar    = 0o020000
)

// WriteCpio writes entries as a newc archive with its trailer.
func WriteCpio(w io.Writer, entries []CpioEntry) error {
	var buf bytes.Buffer
	for i, e := range entries {
		writeCpioEntry(&buf, uint32(i+1), e)
	}
	writeCpioEntry(&buf, 0, CpioEntry{Name: "TRAILER!!!"})
	_, err := w.Write(buf.Bytes())
	if err != nil {
		return fmt.Errorf("write cpio: %w", err)
	}
	return nil
}

func writeCpioEntry(b *bytes.Buffer, ino uint32, e CpioEntry) {
	nlink := uint32(1)
	if e.Mode&0o170000 == ModeDir {
		nlink = 2
	}
	fields := []uint32{ino, e.Mode, 0, 0, nlink, 0, uint32(len(e.Data)), 0, 0, e.Major, e.Minor, uint32(len(e.Name) + 1), 0}
	b.WriteString("070701")
	for _, f := range fields {
		fmt.Fprintf(b, "%08x", f)
	}
	b.WriteString(e.Name)
	b.WriteByte(0)
	pad4(b)
	b.Write(e.Data)
	pad4(b)
}

func pad4(b *bytes.Buffer) {
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
}

// ReadCpio parses one newc archive from the start of data. It returns the
// entries and the number of bytes consumed up to and including the trailer,
// so that concatenated archives (early microcode + main) can be walked.
func ReadCpio(data []byte) ([]CpioEntry, int, error) {
	var out []CpioEntry
	off := 0
	for {
		if off+110 > len(data) {
			return out, off, io.ErrUnexpectedEOF
		}
		h := data[off : off+110]
		if string(h[:6]) != "070701" && string(h[:6]) != "070702" {
			return out, off, fmt.Errorf("cpio: bad magic %q at %d", h[:6], off)
		}
		field := func(i int) (uint32, error) {
			v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
			return uint32(v), err
		}
		var f [13]uint32
		for i := range f {
			v, err := field(i)
			if err != nil {
				return out, off, fmt.Errorf("cpio: header field %d at %d: %w", i, off, err)
			}
			f[i] = v
		}
		size, namesize := int(f[6]), int(f[11])
		nameStart := off + 110
		if nameStart+namesize > len(data) || namesize == 0 {
			return out, off, io.ErrUnexpectedEOF
		}
		name := string(bytes.TrimRight(data[nameStart:nameStart+namesize], "\x00"))
		dataStart := align4(nameStart + namesize)
		if dataStart+size > len(data) {
			return out, off, io.ErrUnexpectedEOF
		}
		off = align4(dataStart + size)
		if name == "TRAILER!!!" {
			return out, min(off, len(data)), nil
		}
		out = append(out, CpioEntry{Name: name, Mode: f[1], Major: f[9], Minor: f[10], Data: data[dataStart : dataStart+size]})
	}
}

func align4(n int) int { return (n + 3) &^ 3 }

// ErrNotCpio marks data that is neither a cpio archive nor compressed.
var ErrNotCpio = errors.New("not a cpio archive")
