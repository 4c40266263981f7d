package upgrade

// Privileged: real ISOs made by xorriso, installed onto a real btrfs on a
// loop device. The ISO is mounted through a read-only loop device when this
// kernel has ISO 9660 (isofs); without it the test extracts the ISO with
// xorriso instead and says so (the loop attach is tested on its own).

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/u-root/u-root/pkg/mount/loop"
	"golang.org/x/sys/unix"

	"lightwhale/internal/osversion"
)

// needTools skips (saying why) when the privileged prerequisites are absent.
func needTools(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("not root: loop devices and mounts need root")
	}
	for _, tool := range []string{"losetup", "xorriso", "mkfs.btrfs", "btrfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (scripts/deps.sh installs it)", tool)
		}
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skip("no /dev/loop-control: this kernel has no loop devices")
	}
}

func sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// hasISO9660 tells whether this kernel mounts ISO 9660 (after a modprobe).
func hasISO9660() bool {
	exec.Command("modprobe", "isofs").Run()
	b, _ := os.ReadFile("/proc/filesystems")
	return strings.Contains(string(b), "\tiso9660\n")
}

// buildISO makes a real ISO of tr with xorriso, as iso/build.sh does.
func buildISO(t *testing.T, tr isoTree, name string) string {
	t.Helper()
	dir := t.TempDir()
	tr.writeTo(t, filepath.Join(dir, "root"))
	out := filepath.Join(dir, name)
	sh(t, "xorriso", "-as", "mkisofs", "-quiet", "-r", "-volid", "LIGHTWHALE_X", "-o", out, filepath.Join(dir, "root"))
	return out
}

// realTree is a version with files big enough to span many ISO blocks.
func realTree(t *testing.T, v string) isoTree {
	tr := newTree(v)
	big := make([]byte, 700<<10)
	rand.Read(big)
	tr["lightwhale/rootfs.squashfs"] = big
	tr.manifest(v)
	return tr
}

// dataFS is a btrfs on a loop device, mounted; its state subvolume and
// snapshot directory stand in for setup-persistence's.
func dataFS(t *testing.T) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "data.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 256<<20); err != nil {
		t.Fatal(err)
	}
	dev := sh(t, "losetup", "--find", "--show", img)
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	sh(t, "mkfs.btrfs", "-q", "-f", dev)
	mnt := filepath.Join(t.TempDir(), "data")
	os.Mkdir(mnt, 0o755)
	if err := unix.Mount(dev, mnt, "btrfs", 0, ""); err != nil {
		t.Fatalf("mount btrfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	sh(t, "btrfs", "-q", "subvolume", "create", filepath.Join(mnt, "state"))
	os.WriteFile(filepath.Join(mnt, "state", "etc-file"), []byte("v1"), 0o644)
	os.Mkdir(filepath.Join(mnt, "snapshots"), 0o755)
	return mnt
}

// realEnvAt is the real env (mount, persistence check, statfs) on a data
// filesystem at data, with the run directory and keys in temporary places.
func realEnvAt(t *testing.T, data string) *env {
	e := realEnv()
	run := t.TempDir()
	e.dataDir, e.osDir, e.runDir = data, filepath.Join(data, "lightwhale-os"), run
	e.modeFile, e.keysDir = filepath.Join(run, "mode"), filepath.Join(t.TempDir(), "keys")
	e.running, e.fromImage = "0.1.0", false
	e.snapshot = func(why string) (string, error) {
		name := "auto-" + why + "-" + time.Now().UTC().Format("20060102-150405")
		_, err := exec.Command("btrfs", "-q", "subvolume", "snapshot", "-r", filepath.Join(data, "state"), filepath.Join(data, "snapshots", name)).CombinedOutput()
		return name, err
	}
	if !hasISO9660() {
		t.Log("this kernel has no ISO 9660 (isofs): the ISOs are extracted with xorriso instead of mounted")
		e.mount = func(src string, block bool, dir string) (func() error, error) {
			out, err := exec.Command("xorriso", "-osirrox", "on", "-indev", "stdio:"+src, "-extract", "/", dir).CombinedOutput()
			if err != nil {
				emptyDir(dir)
				return nil, fmt.Errorf("xorriso -extract %s: %v: %s", src, err, out)
			}
			return func() error { emptyDir(dir); return nil }, nil
		}
	}
	return e
}

func runEnv(e *env, args ...string) (int, string, string) {
	f := &fixture{e: e}
	return f.run(args...)
}

// fsState is the data filesystem's files with their sums, and its subvolumes.
func fsState(t *testing.T, data string) string {
	return listing(t, data) + "\n" + sh(t, "btrfs", "subvolume", "list", data)
}

func TestUpgradeOnBtrfs(t *testing.T) {
	needTools(t)
	data := dataFS(t)
	e := realEnvAt(t, data)

	good := realTree(t, "0.2.0")
	goodISO := buildISO(t, good, "good.iso")

	// Bad input, each on the real filesystem: one line, nothing changed.
	st, _ := os.Stat(goodISO)
	truncated := filepath.Join(t.TempDir(), "truncated.iso")
	b, _ := os.ReadFile(goodISO)
	os.WriteFile(truncated, b[:st.Size()/2], 0o644)
	wrongSum := realTree(t, "0.2.0")
	wrongSum["boot/vmlinuz"] = []byte("kernel 0.2.1")
	noManifest := realTree(t, "0.2.0")
	delete(noManifest, ManifestPath)
	hostile := realTree(t, "0.2.0")
	hostile[ManifestPath] = bytes.Replace(hostile[ManifestPath], []byte("version 0.2.0"), []byte("version ../../x"), 1)
	older := realTree(t, "0.0.9")
	notISO := filepath.Join(t.TempDir(), "not.iso")
	os.WriteFile(notISO, bytes.Repeat([]byte{0xab}, 1<<20), 0o644)
	for _, c := range []struct{ name, iso, want string }{
		{"truncated", truncated, "is truncated"},
		{"wrong checksum", buildISO(t, wrongSum, "sum.iso"), "boot/vmlinuz: sha256"},
		{"no manifest", buildISO(t, noManifest, "nomanifest.iso"), "not a Lightwhale ISO"},
		{"hostile version", buildISO(t, hostile, "hostile.iso"), `version "../../x"`},
		{"older", buildISO(t, older, "older.iso"), "older than the running 0.1.0"},
		{"not an ISO", notISO, "not an ISO 9660 image"},
		{"a directory", data, "not a file or a block device"},
	} {
		before := fsState(t, data)
		code, out, errs := runEnv(e, c.iso)
		if code != 1 || !strings.Contains(errs, c.want) || strings.Count(errs, "\n") != 1 || out != "" {
			t.Errorf("%s: exit %d, stderr %q (want one line with %q), stdout %q", c.name, code, errs, c.want, out)
		}
		if after := fsState(t, data); after != before {
			t.Errorf("%s: the data filesystem changed:\n%s\n---\n%s", c.name, before, after)
		}
		if ents, _ := os.ReadDir(e.runDir); len(ents) != 1 { // the lock file only
			t.Errorf("%s: left in the run directory: %v", c.name, ents)
		}
	}

	// A bad signature when the image trusts a key.
	pub, priv := newKey(t)
	_, other := newKey(t)
	os.MkdirAll(e.keysDir, 0o755)
	writePublicKey(t, filepath.Join(e.keysDir, "release.pem"), pub)
	badSig := realTree(t, "0.2.0")
	badSig.sign(other)
	before := fsState(t, data)
	if code, _, errs := runEnv(e, buildISO(t, badSig, "badsig.iso")); code != 1 || !strings.Contains(errs, "does not verify") {
		t.Errorf("bad signature: exit %d: %s", code, errs)
	}
	if code, _, errs := runEnv(e, goodISO); code != 1 || !strings.Contains(errs, "not signed") {
		t.Errorf("unsigned: exit %d: %s", code, errs)
	}
	if fsState(t, data) != before {
		t.Errorf("a refused signature changed the data filesystem")
	}

	// The install, signed, from the file.
	good.sign(priv)
	goodISO = buildISO(t, good, "good-signed.iso")
	code, out, errs := runEnv(e, goodISO)
	if code != 0 || !strings.Contains(out, "installed 0.2.0 as a trial (2 boots to become healthy); state snapshot auto-before-upgrade-0.2.0-") {
		t.Fatalf("upgrade: exit %d: %s%s", code, out, errs)
	}
	dir := osversion.VersionDir(e.osDir, "0.2.0")
	for _, f := range isoFiles {
		if b, err := os.ReadFile(filepath.Join(dir, f.installed)); err != nil || !bytes.Equal(b, good[f.iso]) {
			t.Errorf("installed %s: %v", f.installed, err)
		}
	}
	for name, want := range map[string][]byte{osversion.Manifest: good[ManifestPath], osversion.Signature: good[SignaturePath]} {
		if b, _ := os.ReadFile(filepath.Join(dir, name)); !bytes.Equal(b, want) {
			t.Errorf("installed %s differs", name)
		}
	}
	state, err := osversion.Load(e.osDir)
	v := state.Find("0.2.0")
	if err != nil || v == nil || v.Status != osversion.Trial || !strings.HasPrefix(v.Snapshot, "auto-before-upgrade-0.2.0-") {
		t.Fatalf("state.json: %+v %v", state, err)
	}
	if _, err := os.Stat(filepath.Join(data, "snapshots", v.Snapshot, "etc-file")); err != nil {
		t.Errorf("the state snapshot: %v", err)
	}

	// The next one from a block device (the ISO on a read-only loop device,
	// as a USB stick would be).
	next := realTree(t, "0.3.0")
	next.sign(priv)
	dev := sh(t, "losetup", "--find", "--show", "--read-only", buildISO(t, next, "next.iso"))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	code, out, errs = runEnv(e, "--trial-boots", "1", dev)
	if code != 0 || !strings.Contains(out, "installed 0.3.0 as a trial (1 boots") {
		t.Fatalf("upgrade from %s: exit %d: %s%s", dev, code, out, errs)
	}
	state, _ = osversion.Load(e.osDir)
	if state.Find("0.2.0") != nil || state.Find("0.3.0") == nil {
		t.Errorf("a second trial should replace the first: %+v", state.Versions)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the replaced trial's files: %v", err)
	}

	// A volatile machine: the data directory is no btrfs mount.
	e.dataDir = t.TempDir()
	if code, _, errs := runEnv(e, goodISO); code != 1 || !strings.Contains(errs, "write the new ISO to the boot medium") {
		t.Errorf("volatile: exit %d: %s", code, errs)
	}
}

// The ISO file is attached read-only, and detached by its fd.
func TestAttachReadOnly(t *testing.T) {
	needTools(t)
	iso := buildISO(t, newTree("0.2.0"), "x.iso")
	dev, f, err := attachReadOnly(iso)
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Base(dev)
	ro, _ := os.ReadFile(filepath.Join("/sys/block", name, "ro"))
	backing, _ := os.ReadFile(filepath.Join("/sys/block", name, "loop/backing_file"))
	if block, err := probeISO(dev); err != nil || !block {
		t.Errorf("probe %s: block %v, %v", dev, block, err)
	}
	if err := loop.ClearFD(int(f.Fd())); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if strings.TrimSpace(string(ro)) != "1" || strings.TrimSpace(string(backing)) != iso {
		t.Errorf("%s: ro %q, backing %q", dev, ro, backing)
	}
	if hasISO9660() {
		dir := t.TempDir()
		undo, err := kernelMount(iso, false, dir)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(dir, ManifestPath)); err != nil {
			t.Errorf("mounted ISO: %v", err)
		}
		if err := undo(); err != nil {
			t.Fatal(err)
		}
	}
}
