package vm

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
)

func TestComponentOf(t *testing.T) {
	for rel, want := range map[string]string{
		"usr/lib/modules/6.1.0/kernel/fs/btrfs.ko":      CompModules,
		"lib/modules/6.1.0/modules.dep":                 CompModules,
		"usr/lib/firmware/iwlwifi-1.ucode":              CompFirmware,
		"usr/bin/docker-multicall":                      CompDocker,
		"usr/sbin/docker-proxy":                         CompDocker,
		"usr/bin/containerd-shim-runc-v2":               CompContainerd,
		"usr/sbin/runc":                                 CompRunc,
		"usr/bin/crun":                                  CompRunc,
		"usr/bin/docker":                                CompDocker,
		"usr/libexec/docker/cli-plugins/docker-compose": CompDocker,
		"usr/share/docker/contrib/dockerd":              CompRest, // docs and scripts are not the engine
		"usr/bin/busybox":                               CompRest,
		"init":                                          CompRest,
	} {
		if got := componentOf(rel); got != want {
			t.Errorf("componentOf(%q) = %q; want %q", rel, got, want)
		}
	}
}

// TestBreakdown builds a small build tree: the squashfs bytes are shared
// out by how well each component compresses, and the shares add up to the
// ISO's size exactly.
func TestBreakdown(t *testing.T) {
	build := t.TempDir()
	put := func(rel string, data []byte) {
		p := filepath.Join(build, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	noise := make([]byte, 1<<20)
	if _, err := rand.Read(noise); err != nil {
		t.Fatal(err)
	}
	put("rootfs/usr/bin/docker-multicall", noise)             // incompressible
	put("rootfs/usr/lib/firmware/x.bin", make([]byte, 1<<20)) // zeros
	put("rootfs/etc/hostname", []byte("lightwhale\n"))
	put("initramfs/init", make([]byte, 1500))
	put("initramfs/lib/modules/6.1/loop.ko", make([]byte, 500))
	const kernel, initrd, squashfs, iso = 8_000_000, 1000, 900_000, 10_000_000

	cs, err := breakdown(iso, kernel, initrd, squashfs, build)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Component{}
	var sum int64
	for _, c := range cs {
		got[c.Name] = c
		sum += c.ISOBytes
	}
	if len(cs) != len(componentOrder) {
		t.Errorf("%d components; want %d", len(cs), len(componentOrder))
	}
	if sum != iso {
		t.Errorf("shares add up to %d; want the ISO's %d", sum, iso)
	}
	if c := got[CompBootloader]; c.ISOBytes != iso-kernel-initrd-squashfs {
		t.Errorf("bootloader %d; want %d", c.ISOBytes, iso-kernel-initrd-squashfs)
	}
	// A quarter of the initramfs's files are the module: a quarter of its bytes.
	if c := got[CompModules]; c.RawBytes != 500 || c.ISOBytes != 250 {
		t.Errorf("modules %+v; want the initramfs module, 500 bytes raw, 250 in the ISO", c)
	}
	d, f := got[CompDocker], got[CompFirmware]
	if d.RawBytes != 1<<20 || f.RawBytes != 1<<20 {
		t.Errorf("raw sizes docker %d firmware %d; want 1 MiB each", d.RawBytes, f.RawBytes)
	}
	if d.ISOBytes < 100*f.ISOBytes || d.ISOBytes > 900_000 {
		t.Errorf("docker gets %d of the squashfs, firmware %d: random bytes should take nearly all of it", d.ISOBytes, f.ISOBytes)
	}
}
