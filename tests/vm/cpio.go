package vm

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/u-root/u-root/pkg/cpio"
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

// WriteCpio writes entries as a newc archive with its trailer (u-root's pkg/cpio).
func WriteCpio(w io.Writer, entries []CpioEntry) error {
	var buf bytes.Buffer
	rw := cpio.Newc.Writer(&buf)
	for i, e := range entries {
		nlink := uint64(1)
		if e.Mode&0o170000 == ModeDir {
			nlink = 2
		}
		rec := cpio.Record{Info: cpio.Info{Ino: uint64(i + 1), Mode: uint64(e.Mode), NLink: nlink,
			FileSize: uint64(len(e.Data)), Rmajor: uint64(e.Major), Rminor: uint64(e.Minor), Name: e.Name}}
		if len(e.Data) > 0 {
			rec.ReaderAt = bytes.NewReader(e.Data)
		}
		if err := rw.WriteRecord(rec); err != nil {
			return fmt.Errorf("write cpio: %s: %w", e.Name, err)
		}
	}
	if err := cpio.WriteTrailer(rw); err != nil {
		return fmt.Errorf("write cpio: %w", err)
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("write cpio: %w", err)
	}
	return nil
}

// ReadCpio parses one newc archive from the start of data (u-root's
// pkg/cpio). It returns the entries and the number of bytes consumed up to
// and including the trailer, so that concatenated archives (early microcode
// + main) can be walked.
func ReadCpio(data []byte) ([]CpioEntry, int, error) {
	var out []CpioEntry
	r := &readExtent{r: bytes.NewReader(data)}
	rr := cpio.Newc.Reader(r)
	for {
		rec, err := rr.ReadRecord()
		if err == io.EOF && r.last == cpio.Trailer+"\x00" {
			// The trailer was read: the archive ends after its 4-aligned name.
			return out, min(align4(int(r.end)), len(data)), nil
		}
		if err != nil {
			return out, 0, fmt.Errorf("cpio: %w", err)
		}
		end := int(rec.FilePos) + int(rec.FileSize)
		if end > len(data) {
			return out, 0, fmt.Errorf("cpio: %s: %w", rec.Name, io.ErrUnexpectedEOF)
		}
		out = append(out, CpioEntry{Name: rec.Name, Mode: uint32(rec.Mode), Major: uint32(rec.Rmajor), Minor: uint32(rec.Rminor),
			Data: data[rec.FilePos:end]})
	}
}

// readExtent remembers how far the cpio reader has read, and what it read
// last (headers and names: it never reads file contents itself). pkg/cpio
// says io.EOF both after the trailer and on a truncated archive; the last
// name read tells them apart.
type readExtent struct {
	r    io.ReaderAt
	end  int64
	last string
}

func (x *readExtent) ReadAt(p []byte, off int64) (int, error) {
	n, err := x.r.ReadAt(p, off)
	x.end = max(x.end, off+int64(n))
	x.last = ""
	if n == len(p) && n <= len(cpio.Trailer)+1 {
		x.last = string(p)
	}
	return n, err
}

func align4(n int) int { return (n + 3) &^ 3 }

// ErrNotCpio marks data that is neither a cpio archive nor compressed.
var ErrNotCpio = errors.New("not a cpio archive")
