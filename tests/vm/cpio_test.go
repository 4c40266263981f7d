package vm

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCpioRoundTrip(t *testing.T) {
	in := []CpioEntry{
		{Name: "bin", Mode: ModeDir | 0o755, Data: []byte{}},
		{Name: "bin/sh", Mode: ModeSymlink | 0o777, Data: []byte("busybox")},
		{Name: "dev/console", Mode: ModeChar | 0o600, Major: 5, Minor: 1, Data: []byte{}},
		{Name: "init", Mode: ModeFile | 0o755, Data: []byte("#!/bin/sh\n")},
		{Name: "odd", Mode: ModeFile | 0o644, Data: []byte("12345")}, // not a multiple of 4
	}
	var b bytes.Buffer
	if err := WriteCpio(&b, in); err != nil {
		t.Fatal(err)
	}
	if b.Len()%4 != 0 {
		t.Errorf("archive of %d bytes is not 4-aligned", b.Len())
	}
	out, n, err := ReadCpio(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if n != b.Len() {
		t.Errorf("consumed %d of %d bytes", n, b.Len())
	}
	if diff := cmp.Diff(in, out); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

// The kernel accepts an uncompressed archive followed by a compressed one
// (early microcode + main); InitramfsEntries must see both.
func TestInitramfsEntriesConcatenated(t *testing.T) {
	var first, second bytes.Buffer
	if err := WriteCpio(&first, []CpioEntry{{Name: "early", Mode: ModeFile | 0o644, Data: []byte("a")}}); err != nil {
		t.Fatal(err)
	}
	if err := WriteCpio(&second, []CpioEntry{{Name: "rootfs.squashfs", Mode: ModeFile | 0o644, Data: []byte("hsqs-and-more")}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		compress []string
	}{
		{"plain", nil},
		{"gzip", []string{"gzip", "-c"}},
		{"xz", []string{"xz", "-c", "--check=crc32"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tail := second.Bytes()
			if tc.compress != nil {
				tail = compressWith(t, tc.compress, tail)
			}
			p := filepath.Join(t.TempDir(), "initrd")
			data := append(append(append([]byte{}, first.Bytes()...), make([]byte, 512)...), tail...)
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
			es, err := InitramfsEntries(p)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range es {
				names = append(names, e.Name)
			}
			if diff := cmp.Diff([]string{"early", "rootfs.squashfs"}, names); diff != "" {
				t.Errorf("entries (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReadGPTNoTable(t *testing.T) {
	p := filepath.Join(t.TempDir(), "blank.img")
	if err := NewMagicDisk(p, 4); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadGPT(p); err == nil {
		t.Fatal("ReadGPT found a table on a disk holding only the magic header")
	}
	head, err := Head(p, len(Magic)+1)
	if err != nil || string(head) != Magic+"\n" {
		t.Fatalf("head = %q, %v", head, err)
	}
}

// A truncated archive is an error, not a short list.
func TestCpioTruncated(t *testing.T) {
	var b bytes.Buffer
	if err := WriteCpio(&b, []CpioEntry{{Name: "init", Mode: ModeFile | 0o755, Data: []byte("#!/bin/sh\n")}}); err != nil {
		t.Fatal(err)
	}
	for _, cut := range []int{50, 120, b.Len() - 20} {
		if _, _, err := ReadCpio(b.Bytes()[:cut]); err == nil {
			t.Errorf("archive cut at %d of %d bytes: no error", cut, b.Len())
		}
	}
}
