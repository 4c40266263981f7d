package e2e

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"lightwhale/tests/vm"
)

// hashes returns the SHA-256 of every image.
func hashes(t *testing.T, disks []vm.Disk) []string {
	t.Helper()
	var hs []string
	for _, d := range disks {
		h, err := vm.HashFile(d.Path)
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	return hs
}

// ext4Disk makes an image holding an ext4 filesystem with a file in it, as
// a disk of someone's data would be (mke2fs -d: no mount, no root needed).
func ext4Disk(t *testing.T, path string) vm.Disk {
	t.Helper()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "precious.txt"), []byte("someone's data\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := vm.NewDisk(path, 512, ""); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "userdata", "-d", src, path).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	return vm.Disk{Path: path, Bus: vm.AHCI}
}

// Scenario 6: disks without the exact header — one with a filesystem full
// of data, and near misses of the header — are byte-identical after a boot.
func TestForeignDisksUntouched(t *testing.T) {
	t.Parallel()
	iso := requireISO(t)
	dir := t.TempDir()
	disks := []vm.Disk{ext4Disk(t, filepath.Join(dir, "ext4.img"))}
	for i, head := range []string{
		"lightwhale-please-format-mE\n",     // case
		" lightwhale-please-format-me\n",    // leading space
		"lightwhale-please-format-m\n",      // one byte short
		strings.Repeat("\x00", 512) + magic, // header at 512, not 0
	} {
		p := filepath.Join(dir, "near"+string(rune('a'+i))+".img")
		if err := vm.NewDisk(p, 1024, head); err != nil {
			t.Fatal(err)
		}
		disks = append(disks, vm.Disk{Path: p, Bus: vm.AHCI})
	}
	before := hashes(t, disks)

	g := boot(t, vm.Config{ISO: iso, Disks: disks})
	wantEqual(t, "mode", g.mode(), "volatile")
	// The guest sees every disk (so "untouched" means something).
	if n := strings.Count(g.run("cat /proc/partitions"), "sd"); n < len(disks) {
		t.Fatalf("guest sees %d sd disks; want %d:\n%s", n, len(disks), g.run("cat /proc/partitions"))
	}
	wantEqual(t, "filesystem at /mnt/lightwhale-data", g.mountFS("/mnt/lightwhale-data"), "tmpfs")
	g.poweroff()

	for i, h := range hashes(t, disks) {
		if h != before[i] {
			t.Errorf("%s changed during boot (sha256 %s -> %s)", disks[i].Path, before[i], h)
		}
	}
}

// copyFile copies the ISO byte for byte onto a disk image (`dd` to a stick).
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// Scenario 7: the ISO written raw to a disk boots (the USB-stick case) and
// that disk is never claimed, while a magic disk beside it is.
func TestBootFromDisk(t *testing.T) {
	t.Parallel()
	iso := requireISO(t)
	dir := t.TempDir()
	stick := filepath.Join(dir, "stick.img")
	copyFile(t, iso, stick)
	isoHash, err := vm.HashFile(iso)
	if err != nil {
		t.Fatal(err)
	}
	magicDisk := makeDisks(t, dir, diskSpec{diskMiB, magic, vm.Virtio})[0]
	disks := []vm.Disk{{Path: stick, Bus: vm.AHCI, Boot: true}, magicDisk}

	g := boot(t, vm.Config{Disks: disks})
	wantEqual(t, "mode", g.mode(), "persistent")
	g.run("test -b /dev/sda")
	data := g.run("awk '$2 == \"/mnt/lightwhale-data\" { print $1 }' /proc/mounts")
	wantMatch(t, "data filesystem device", data, `^/dev/vda`)
	g.waitDocker()
	g.poweroff()

	if h, err := vm.HashFile(stick); err != nil || h != isoHash {
		t.Fatalf("the boot disk changed: sha256 %s, %v; the ISO's is %s", h, err, isoHash)
	}
	checkClaimedOnHost(t, []vm.Disk{magicDisk}, 1)
}
