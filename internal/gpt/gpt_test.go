package gpt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"lightwhale/internal/golden"
)

// seqGUID returns deterministic GUIDs 00000000-0000-4000-8000-00000000000N.
func seqGUID() func() GUID {
	n := 0
	return func() GUID {
		n++
		return MustParseGUID(fmt.Sprintf("00000000-0000-4000-8000-%012d", n))
	}
}

func TestSwapBytes(t *testing.T) {
	for _, tt := range []struct{ disk, want uint64 }{
		{512 * MiB, 0},
		{2*GiB - 1, 0},
		{2 * GiB, 128 * MiB},
		{8 * GiB, 512 * MiB},
		{64 * GiB, 4 * GiB},
		{1 << 40, 4 * GiB},
		{3*GiB + 12345, 192 * MiB},
	} {
		if got := SwapBytes(tt.disk); got != tt.want {
			t.Errorf("SwapBytes(%d) = %d, want %d", tt.disk, got, tt.want)
		}
	}
}

func TestLayoutGolden(t *testing.T) {
	for _, tt := range []struct {
		name   string
		size   uint64
		sector int
	}{
		{"512MiB-512", 512 * MiB, 512},
		{"8GiB-512", 8 * GiB, 512},
		{"8GiB-4096", 8 * GiB, 4096},
		{"1TiB-4096", 1 << 40, 4096},
		{"odd-size-512", 3*GiB + 7*512, 512},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tab, err := Layout(tt.size, tt.sector, seqGUID())
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range tab.Partitions {
				if p.First*uint64(tt.sector)%MiB != 0 || (p.Last+1)*uint64(tt.sector)%MiB != 0 {
					t.Errorf("partition %q not 1 MiB aligned: %d-%d", p.Name, p.First, p.Last)
				}
			}
			golden.Check(t, filepath.Join("testdata", tt.name+".golden"), tab.Describe())
		})
	}
}

func TestLayoutTooSmall(t *testing.T) {
	for _, size := range []uint64{0, 3 * MiB, 200 * MiB, MinDataBytes + MiB} {
		if _, err := Layout(size, 512, seqGUID()); err == nil {
			t.Errorf("Layout(%d) succeeded, want a too-small error", size)
		}
	}
	if _, err := Layout(MinDataBytes+2*MiB, 512, seqGUID()); err != nil {
		t.Errorf("Layout(min) = %v, want success", err)
	}
}

// disk applies the writes to an in-memory disk image.
func disk(t *testing.T, size uint64, ws []Write) []byte {
	t.Helper()
	b := make([]byte, size)
	copy(b, "lightwhale-please-format-me\n")
	for _, w := range ws {
		copy(b[w.Offset:], w.Data)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	for _, sector := range []int{512, 4096} {
		size := uint64(600 * MiB)
		tab, err := Layout(size, sector, seqGUID())
		if err != nil {
			t.Fatal(err)
		}
		ws, err := tab.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if last := ws[len(ws)-1]; last.Offset != 0 {
			t.Fatalf("last write at %d, want the protective MBR at 0", last.Offset)
		}
		img := disk(t, size, ws)
		if bytes.HasPrefix(img, []byte("lightwhale")) {
			t.Errorf("sector %d: consent header survived the protective MBR", sector)
		}
		head, tail := img[:HeadBytes(sector)], img[len(img)-TailBytes(sector):]
		got, err := Decode(head, tail, sector, size/uint64(sector))
		if err != nil {
			t.Fatalf("sector %d: Decode: %v", sector, err)
		}
		if diff := cmp.Diff(tab, got); diff != "" {
			t.Errorf("sector %d: round trip (-want +got):\n%s", sector, diff)
		}

		// A damaged primary falls back to the backup.
		img[sector+24] ^= 0xFF // inside the primary header's CRC'd bytes
		got, err = Decode(img[:HeadBytes(sector)], tail, sector, size/uint64(sector))
		if err != nil {
			t.Fatalf("sector %d: Decode with damaged primary: %v", sector, err)
		}
		if diff := cmp.Diff(tab, got); diff != "" {
			t.Errorf("sector %d: backup decode (-want +got):\n%s", sector, diff)
		}
		// Both damaged: no GPT.
		img[len(img)-sector+20] ^= 0xFF
		if _, err := Decode(img[:HeadBytes(sector)], img[len(img)-TailBytes(sector):], sector, size/uint64(sector)); err == nil {
			t.Errorf("sector %d: Decode of a doubly damaged table succeeded", sector)
		}
	}
}

func TestDecodeNoGPT(t *testing.T) {
	b := make([]byte, HeadBytes(512))
	copy(b, "lightwhale-please-format-me")
	if _, err := Decode(b, nil, 512, 1<<20); err == nil {
		t.Fatal("Decode of a raw header succeeded")
	}
}

// TestSfdiskReadsOurTable cross-checks the encoder with util-linux: sfdisk must
// read the table without complaint and see the same partitions.
func TestSfdiskReadsOurTable(t *testing.T) {
	sfdisk, err := exec.LookPath("sfdisk")
	if err != nil {
		t.Skip("sfdisk not installed (package fdisk): cannot cross-check the encoder")
	}
	for _, sector := range []int{512, 4096} {
		size := uint64(3 * GiB)
		tab, _ := Layout(size, sector, seqGUID())
		ws, _ := tab.Encode()
		f := filepath.Join(t.TempDir(), "disk.img")
		fh, err := os.Create(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := fh.Truncate(int64(size)); err != nil {
			t.Fatal(err)
		}
		for _, w := range ws {
			if _, err := fh.WriteAt(w.Data, w.Offset); err != nil {
				t.Fatal(err)
			}
		}
		fh.Close()
		dev := f
		if sector != 512 {
			// sfdisk reads files as 512-byte disks; a 4 KiB disk needs a loop device.
			if os.Geteuid() != 0 {
				t.Logf("sector %d: not root, no loop device: cross-check skipped", sector)
				continue
			}
			out, err := exec.Command("losetup", "--find", "--show", "--sector-size", fmt.Sprint(sector), f).Output()
			if err != nil {
				t.Fatalf("losetup: %v", err)
			}
			dev = string(bytes.TrimSpace(out))
			t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
		}
		out, err := exec.Command(sfdisk, "--json", dev).CombinedOutput()
		if err != nil {
			t.Fatalf("sfdisk: %v: %s", err, out)
		}
		var got struct {
			PartitionTable struct {
				Label      string `json:"label"`
				SectorSize int    `json:"sectorsize"`
				Partitions []struct {
					Start uint64 `json:"start"`
					Size  uint64 `json:"size"`
					Type  string `json:"type"`
					Name  string `json:"name"`
				} `json:"partitions"`
			} `json:"partitiontable"`
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("sfdisk json: %v: %s", err, out)
		}
		if got.PartitionTable.Label != "gpt" || len(got.PartitionTable.Partitions) != len(tab.Partitions) {
			t.Fatalf("sector %d: sfdisk sees %s", sector, out)
		}
		for i, p := range tab.Partitions {
			g := got.PartitionTable.Partitions[i]
			if g.Start != p.First || g.Size != p.Last-p.First+1 || g.Name != p.Name || g.Type != p.Type.String() {
				t.Errorf("sector %d: sfdisk partition %d = %+v, want %+v", sector, i+1, g, p)
			}
		}
		if v, err := exec.Command(sfdisk, "--verify", dev).CombinedOutput(); err != nil || bytes.Contains(v, []byte("corrupt")) {
			t.Errorf("sector %d: sfdisk --verify: %v: %s", sector, err, v)
		}
	}
}
