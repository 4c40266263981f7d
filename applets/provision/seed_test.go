package provision

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"lightwhale/internal/host"
	"lightwhale/internal/probe"
)

// seedFiles are what the real-image tests put on a seed.
var seedFiles = map[string]string{
	"meta-data": "instance-id: real-1\n",
	"user-data": "#cloud-config\nhostname: real-seed\n",
}

func tool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not found", name)
	}
}

func sh(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v\n%s", argv, err, out)
	}
	return strings.TrimSpace(string(out))
}

// The seeds the ecosystem writes: an ISO (cloud-localds, Proxmox) labelled
// cidata and a FAT volume labelled CIDATA (cloud-localds -f vfat); each
// recognised from its first bytes, and, as root, mounted and read through a
// loop device as at boot.
func TestRealSeedImages(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.Mkdir(src, 0o755)
	for n, c := range seedFiles {
		os.WriteFile(filepath.Join(src, n), []byte(c), 0o644)
	}
	images := map[string]func(*testing.T, string){
		"iso9660": func(t *testing.T, img string) {
			tool(t, "xorriso")
			sh(t, "xorriso", "-as", "mkisofs", "-quiet", "-V", "cidata", "-J", "-r", "-o", img, src)
		},
		"vfat": func(t *testing.T, img string) {
			tool(t, "mkfs.vfat")
			tool(t, "mcopy")
			sh(t, "mkfs.vfat", "-C", "-n", "CIDATA", img, "2048")
			sh(t, "mcopy", "-i", img, filepath.Join(src, "meta-data"), filepath.Join(src, "user-data"), "::/")
		},
	}
	for fstype, make := range images {
		t.Run(fstype, func(t *testing.T) {
			img := filepath.Join(dir, fstype+".img")
			make(t, img)
			head, err := host.Real.ReadAt(img, 0, probe.HeadBytes)
			if err != nil && len(head) == 0 {
				t.Fatal(err)
			}
			if got := seedFS(head); got != fstype {
				t.Fatalf("seedFS = %q, want %q", got, fstype)
			}
			if os.Getuid() != 0 {
				t.Skip("mounting through a loop device needs root")
			}
			tool(t, "losetup")
			loop := sh(t, "losetup", "--find", "--show", "--read-only", img)
			defer exec.Command("losetup", "-d", loop).Run()
			mnt := t.TempDir()
			if err := Host.Mount(loop, mnt, fstype); err != nil {
				t.Skipf("mount %s: %v (no %s support in this kernel?)", fstype, err, fstype)
			}
			defer unix.Unmount(mnt, 0)
			sd, err := readSeedDir(mnt, loop)
			if err != nil {
				t.Fatal(err)
			}
			c, _, err := parseSeed(sd, fakeOwners)
			if err != nil || c.Hostname != "real-seed" || c.InstanceID != "real-1" {
				t.Errorf("parsed %+v, err %v", c, err)
			}
		})
	}
}
