package gpt

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestProtectiveMBR checks sector 0 byte by byte: the boot code at 0, the
// disk signature area and the three unused entries zero, one 0xEE entry
// covering the disk, and the 0x55AA mark.
func TestProtectiveMBR(t *testing.T) {
	for _, sector := range []int{512, 4096} {
		tab, err := Layout(8*GiB, sector, seqGUID())
		if err != nil {
			t.Fatal(err)
		}
		m := tab.protectiveMBR()
		if len(m) != sector {
			t.Fatalf("sector %d: MBR is %d bytes", sector, len(m))
		}
		if len(BootCode) > 440 {
			t.Fatalf("boot code is %d bytes: it must end before the disk signature at 440", len(BootCode))
		}
		if !bytes.Equal(m[:len(BootCode)], BootCode) {
			t.Errorf("sector %d: boot code not at byte 0: % x", sector, m[:32])
		}
		if !allZero(m[len(BootCode):446]) {
			t.Errorf("sector %d: bytes %d-445 not zero", sector, len(BootCode))
		}
		e := m[446:462]
		want := []byte{0x00, 0x00, 0x02, 0x00, 0xEE, 0xFF, 0xFF, 0xFF}
		if !bytes.Equal(e[:8], want) {
			t.Errorf("sector %d: protective entry % x, want % x", sector, e[:8], want)
		}
		if lba := binary.LittleEndian.Uint32(e[8:]); lba != 1 {
			t.Errorf("sector %d: protective entry starts at %d, want 1", sector, lba)
		}
		if n := binary.LittleEndian.Uint32(e[12:]); uint64(n) != min(tab.Sectors-1, 0xFFFFFFFF) {
			t.Errorf("sector %d: protective entry covers %d sectors, want %d", sector, n, tab.Sectors-1)
		}
		if !allZero(m[462:510]) {
			t.Errorf("sector %d: entries 2-4 not empty", sector)
		}
		if m[510] != 0x55 || m[511] != 0xAA {
			t.Errorf("sector %d: no 0x55AA mark", sector)
		}
		if !allZero(m[512:]) {
			t.Errorf("sector %d: bytes after 512 not zero", sector)
		}
	}
}

// TestBootCode checks what the hand-assembled program relies on: the
// "mov si" operand points at the message, which ends CR LF NUL; the jumps
// land where the listing says; int 18h follows the loop.
func TestBootCode(t *testing.T) {
	if got := int(binary.LittleEndian.Uint16(BootCode[5:7])) - 0x7C00; got != bootMessageAt {
		t.Fatalf("mov si points at %#x, message is at %#x", got, bootMessageAt)
	}
	if got := string(BootCode[bootMessageAt:]); got != BootMessage+"\r\n\x00" {
		t.Errorf("message %q", got)
	}
	rel := func(at int) int { return at + 2 + int(int8(BootCode[at+1])) } // target of a short jump at at
	if BootCode[0x0B] != 0x74 || rel(0x0B) != 0x16 {
		t.Errorf("jz does not reach int 18h")
	}
	if BootCode[0x14] != 0xEB || rel(0x14) != 0x08 {
		t.Errorf("loop jump does not reach lodsb")
	}
	if !bytes.Equal(BootCode[0x16:0x18], []byte{0xCD, 0x18}) {
		t.Errorf("no int 18h at 0x16")
	}
	if BootCode[0x19] != 0xEB || rel(0x19) != 0x18 {
		t.Errorf("hlt loop broken")
	}

	// An independent disassembler agrees, when one is installed.
	if _, err := exec.LookPath("objdump"); err != nil {
		t.Log("objdump not installed: skipping the disassembly cross-check")
		return
	}
	f := t.TempDir() + "/boot.bin"
	if err := os.WriteFile(f, BootCode[:bootMessageAt], 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("objdump", "-D", "-b", "binary", "-m", "i8086", "--adjust-vma=0x7c00", f).CombinedOutput()
	if err != nil {
		t.Fatalf("objdump: %v: %s", err, out)
	}
	for _, want := range []string{"mov    $0x7c1b,%si", "lods", "je     0x7c16", "int    $0x10", "jmp    0x7c08", "int    $0x18", "hlt", "jmp    0x7c18"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("disassembly lacks %q:\n%s", want, out)
		}
	}
}

func allZero(b []byte) bool { return bytes.Count(b, []byte{0}) == len(b) }
