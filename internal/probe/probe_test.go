package probe

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"lightwhale/internal/paths"
)

func TestHasMagic(t *testing.T) {
	pad := func(off int, s string) []byte {
		b := make([]byte, 8192)
		copy(b[off:], s)
		return b
	}
	for _, tt := range []struct {
		name string
		head []byte
		want bool
	}{
		{"exact", []byte(paths.Consent), true},
		{"echo newline", []byte(paths.Consent + "\n"), true},
		{"followed by old data", append([]byte(paths.Consent), make([]byte, 512)...), true},
		{"one byte short", []byte(paths.Consent[:len(paths.Consent)-1]), false},
		{"one byte short then zero", append([]byte(paths.Consent[:len(paths.Consent)-1]), 0), false},
		{"leading space", []byte(" " + paths.Consent), false},
		{"upper case", []byte("LIGHTWHALE-PLEASE-FORMAT-ME"), false},
		{"one letter changed", []byte("lightwhale-please-format-mE"), false},
		{"at offset 512", pad(512, paths.Consent), false},
		{"at offset 4096", pad(4096, paths.Consent), false},
		{"boot2docker magic", []byte("boot2docker, please format-me"), false},
		{"empty", nil, false},
		{"zeros", make([]byte, 4096), false},
	} {
		if got := HasMagic(tt.head); got != tt.want {
			t.Errorf("%s: HasMagic = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestISOLabel(t *testing.T) {
	head := make([]byte, HeadBytes)
	head[isoPVD] = 1
	copy(head[isoPVD+1:], "CD001")
	copy(head[isoPVD+40:], "LIGHTWHALE_0_1_0                ")
	if got := ISOLabel(head); got != "LIGHTWHALE_0_1_0" {
		t.Errorf("ISOLabel = %q", got)
	}
	// A consent header written over a Lightwhale USB stick does not hide it.
	copy(head, paths.Consent+"\n")
	if !IsBootMedium(head) {
		t.Error("IsBootMedium(magic over our ISO) = false")
	}
	copy(head[isoPVD+40:], "DEBIAN 12                       ")
	if IsBootMedium(head) {
		t.Error("IsBootMedium(another ISO) = true")
	}
	if IsBootMedium(make([]byte, HeadBytes)) {
		t.Error("IsBootMedium(zeros) = true")
	}
}

// realHead runs a real mkfs tool on a sparse file and returns its first bytes.
func realHead(t *testing.T, size int64, tool string, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		t.Skipf("%s not installed: cannot check the parser against real output", tool)
	}
	f := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(f, size); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(tool, append(args, f)...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", tool, err, out)
	}
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return b[:HeadBytes]
}

func TestParseBtrfsReal(t *testing.T) {
	head := realHead(t, 256<<20, "mkfs.btrfs", "-q", "-f", "-L", "lightwhale-data", "-U", "6c1e4f39-1111-4222-8333-444455556666")
	b := ParseBtrfs(head)
	if b == nil {
		t.Fatal("ParseBtrfs found no superblock in a fresh btrfs")
	}
	if b.Label != "lightwhale-data" || b.NumDevices != 1 || b.DevID != 1 || b.FSIDString() != "6c1e4f39-1111-4222-8333-444455556666" {
		t.Errorf("ParseBtrfs = %+v (fsid %s)", b, b.FSIDString())
	}
	if got := Identify(head, 512); got != `btrfs filesystem "lightwhale-data"` {
		t.Errorf("Identify = %q", got)
	}
	if ParseBtrfs(make([]byte, HeadBytes)) != nil {
		t.Error("ParseBtrfs(zeros) found a superblock")
	}
}

func TestParseSwapReal(t *testing.T) {
	head := realHead(t, 64<<20, "mkswap", "-L", "lightwhale-swap")
	s := ParseSwap(head)
	if s == nil || s.Label != "lightwhale-swap" {
		t.Fatalf("ParseSwap = %+v", s)
	}
}

func TestIdentify(t *testing.T) {
	blank := make([]byte, HeadBytes)
	if got := Identify(blank, 512); got != "" {
		t.Errorf("Identify(blank) = %q", got)
	}
	ext := make([]byte, HeadBytes)
	ext[1080], ext[1081] = 0x53, 0xef
	mbr := make([]byte, HeadBytes)
	mbr[510], mbr[511] = 0x55, 0xaa
	junk := make([]byte, HeadBytes)
	junk[60000] = 1
	for name, head := range map[string][]byte{"ext4": ext, "mbr": mbr, "junk": junk, "magic": []byte(paths.Consent)} {
		if Identify(head, 512) == "" {
			t.Errorf("Identify(%s) = \"\", want it recognised", name)
		}
	}
}

func TestLeftover(t *testing.T) {
	blank := make([]byte, HeadBytes)
	hdr := func(b []byte) []byte { copy(b, paths.Consent+"\n"); return b }
	if got := Leftover(hdr(append([]byte(nil), blank...)), 512); got != "" {
		t.Errorf("header on a blank disk: %q", got)
	}
	gptDisk := append([]byte(nil), blank...)
	copy(gptDisk[512:], "EFI PART")
	if got := Leftover(gptDisk, 512); got != "" {
		t.Errorf("no header: %q", got)
	}
	if got := Leftover(hdr(gptDisk), 512); got != "GPT partition table" {
		t.Errorf("header over a GPT disk: %q", got)
	}
	ext := append([]byte(nil), blank...)
	copy(ext[1080:], "\x53\xef")
	if got := Leftover(hdr(ext), 512); got != "ext2/3/4 filesystem" {
		t.Errorf("header over ext4: %q", got)
	}
	junk := hdr(append([]byte(nil), blank...))
	junk[9000] = 1 // stray bytes are no filesystem
	if got := Leftover(junk, 512); got != "" {
		t.Errorf("stray bytes: %q", got)
	}
}
