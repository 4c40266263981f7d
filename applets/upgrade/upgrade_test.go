package upgrade

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"lightwhale/internal/cli"
	"lightwhale/internal/osversion"
)

// isoTree is what a test ISO holds, by path.
type isoTree map[string][]byte

// newTree is a Lightwhale ISO of version v with its manifest.
func newTree(v string) isoTree {
	tr := isoTree{
		"boot/vmlinuz":               []byte("kernel " + v),
		"boot/initrd.img":            []byte("initramfs " + v + strings.Repeat("i", 1000)),
		"lightwhale/rootfs.squashfs": []byte("root image " + v + strings.Repeat("r", 5000)),
		"boot/grub/grub.cfg":         []byte("menuentry"),
	}
	tr.manifest(v)
	return tr
}

// manifest (re)writes the manifest of version v from the files.
func (tr isoTree) manifest(v string) {
	m := Manifest{Version: v}
	for _, f := range isoFiles {
		m.Files = append(m.Files, File{Path: f.iso, Size: int64(len(tr[f.iso])), Sum: sha256.Sum256(tr[f.iso])})
	}
	tr[ManifestPath] = formatManifest(m)
}

func (tr isoTree) sign(priv ed25519.PrivateKey) {
	tr[SignaturePath] = ed25519.Sign(priv, tr[ManifestPath])
}

func (tr isoTree) writeTo(t testing.TB, dir string) {
	for p, b := range tr {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// fakeISO writes a file that passes probeISO: a primary volume descriptor
// saying the volume is blocks 2 KiB blocks, and size bytes in all.
func fakeISO(t testing.TB, dir string, blocks uint32, size int64) string {
	b := make([]byte, size)
	if size >= 17*2048 {
		pvd := b[16*2048:]
		pvd[0] = 1
		copy(pvd[1:6], "CD001")
		copy(pvd[40:72], fmt.Sprintf("%-32s", "LIGHTWHALE_X"))
		binary.LittleEndian.PutUint32(pvd[80:84], blocks)
		binary.LittleEndian.PutUint16(pvd[128:130], 2048)
	}
	p := filepath.Join(dir, fmt.Sprintf("lw-%d-%d.iso", blocks, size))
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// fixture is an env whose "mount" lays out tree, with links, at the
// mount directory; the data filesystem is a directory.
type fixture struct {
	t       *testing.T
	e       *env
	tree    isoTree
	links   map[string]string // path -> symlink target
	iso     string
	snaps   []string
	mounted int // mounts not undone
}

func newFixture(t *testing.T, running string) *fixture {
	base := t.TempDir()
	f := &fixture{t: t, tree: newTree("0.2.0"), links: map[string]string{}}
	data := filepath.Join(base, "data")
	os.MkdirAll(data, 0o755)
	f.iso = fakeISO(t, base, 40, 40*2048)
	f.e = &env{
		dataDir:    data,
		osDir:      filepath.Join(data, "lightwhale-os"),
		runDir:     filepath.Join(base, "run"),
		modeFile:   filepath.Join(base, "run", "mode"),
		keysDir:    filepath.Join(base, "keys"),
		running:    running,
		now:        func() time.Time { return time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC) },
		persistent: func(*env) error { return nil },
		avail:      func(string) (uint64, error) { return 1 << 40, nil },
		snapshot: func(why string) (string, error) {
			name := "auto-" + why + "-20261201-100000"
			f.snaps = append(f.snaps, name)
			return name, nil
		},
	}
	f.e.mount = func(src string, block bool, dir string) (func() error, error) {
		f.tree.writeTo(t, dir)
		for p, target := range f.links {
			os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755)
			if err := os.Symlink(target, filepath.Join(dir, p)); err != nil {
				t.Fatal(err)
			}
		}
		f.mounted++
		return func() error {
			f.mounted--
			emptyDir(dir)
			return nil
		}, nil
	}
	return f
}

// emptyDir removes what dir holds: an "unmount" of a laid-out ISO.
func emptyDir(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}

func (f *fixture) run(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(f.e, args, cli.IO{In: strings.NewReader(""), Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

// listing is every path under dir with its type and content's sha256.
func listing(t testing.TB, dir string) string {
	var lines []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			lines = append(lines, p+" "+err.Error())
			return nil
		}
		line := strings.TrimPrefix(p, dir) + " " + d.Type().String()
		if d.Type().IsRegular() {
			b, _ := os.ReadFile(p)
			line += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		lines = append(lines, line)
		return nil
	})
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// Each bad input: one line naming what is wrong, a failure, and nothing
// written to the data filesystem; the ISO is unmounted again.
func TestRefusals(t *testing.T) {
	pub, priv := newKey(t)
	_, otherPriv := newKey(t)
	for _, c := range []struct {
		name    string
		setup   func(f *fixture) // changes the fixture
		args    []string         // default: the ISO
		want    string
		code    int // default 1
		running string
	}{
		{name: "no argument", args: []string{}, want: "name one ISO", code: 2},
		{name: "two arguments", args: []string{"a", "b"}, want: "name one ISO", code: 2},
		{name: "bad trial boots", args: []string{"--trial-boots", "0", "x.iso"}, want: "--trial-boots 0", code: 2},
		{name: "volatile", setup: func(f *fixture) { f.e.persistent = func(*env) error { return errVolatile } }, want: "write the new ISO to the boot medium"},
		{name: "no such file", args: []string{"/nonexistent/x.iso"}, want: "no such file"},
		{name: "a directory", setup: func(f *fixture) { f.iso = f.t.TempDir() }, want: "not a file or a block device"},
		{name: "a character device", args: []string{"/dev/null"}, want: "not a file or a block device"},
		{name: "too short", setup: func(f *fixture) { f.iso = fakeISO(f.t, f.t.TempDir(), 40, 1000) }, want: "not an ISO 9660 image (too short"},
		{name: "not an ISO", setup: func(f *fixture) {
			f.iso = filepath.Join(f.t.TempDir(), "x.iso")
			os.WriteFile(f.iso, bytes.Repeat([]byte("x"), 80000), 0o644)
		}, want: "not an ISO 9660 image"},
		{name: "truncated", setup: func(f *fixture) { f.iso = fakeISO(f.t, f.t.TempDir(), 400, 40*2048) }, want: "is truncated: 81920 bytes of the 819200"},
		{name: "no manifest", setup: func(f *fixture) { delete(f.tree, ManifestPath) }, want: "not a Lightwhale ISO (no lightwhale/manifest)"},
		{name: "hostile version", setup: func(f *fixture) { f.tree.manifest("../x") }, want: `version "../x"`},
		{name: "garbage manifest", setup: func(f *fixture) { f.tree[ManifestPath] = []byte("#!/bin/sh\nrm -rf /\n") }, want: "manifest line 1"},
		{name: "wrong checksum", setup: func(f *fixture) {
			b := f.tree["lightwhale/rootfs.squashfs"]
			b[len(b)-1] ^= 1
		}, want: "lightwhale/rootfs.squashfs: sha256"},
		{name: "wrong size", setup: func(f *fixture) { f.tree["boot/initrd.img"] = append(f.tree["boot/initrd.img"], 'x') }, want: "boot/initrd.img is 1016 bytes; the manifest says 1015"},
		{name: "listed file missing", setup: func(f *fixture) { delete(f.tree, "boot/vmlinuz") }, want: "boot/vmlinuz is listed in the manifest but not on the ISO"},
		{name: "file is a symlink", setup: func(f *fixture) {
			delete(f.tree, "boot/vmlinuz")
			f.links["boot/vmlinuz"] = "/etc/passwd"
		}, want: "boot/vmlinuz"},
		{name: "directory is a symlink", setup: func(f *fixture) {
			for _, p := range []string{"boot/vmlinuz", "boot/initrd.img", "boot/grub/grub.cfg"} {
				delete(f.tree, p)
			}
			f.links["boot"] = "/boot"
		}, want: "boot/vmlinuz"},
		{name: "older", running: "0.3.0", want: "0.2.0 is older than the running 0.3.0 (--allow-downgrade"},
		{name: "same", running: "0.2.0", want: "already running 0.2.0"},
		{name: "same, even allowing a downgrade", running: "0.2.0", args: []string{"--allow-downgrade", ""}, want: "already running 0.2.0"},
		{name: "unsigned, keys trusted", setup: func(f *fixture) {
			os.MkdirAll(f.e.keysDir, 0o755)
			writePublicKey(f.t, filepath.Join(f.e.keysDir, "release.pem"), pub)
		}, want: "not signed (no lightwhale/manifest.sig)"},
		{name: "bad signature", setup: func(f *fixture) {
			os.MkdirAll(f.e.keysDir, 0o755)
			writePublicKey(f.t, filepath.Join(f.e.keysDir, "release.pem"), pub)
			f.tree.sign(otherPriv)
		}, want: "does not verify with any key"},
		{name: "signed, then changed", setup: func(f *fixture) {
			os.MkdirAll(f.e.keysDir, 0o755)
			writePublicKey(f.t, filepath.Join(f.e.keysDir, "release.pem"), pub)
			f.tree.sign(priv)
			f.tree.manifest("0.9.0")
		}, want: "does not verify with any key"},
		{name: "a broken trusted key", setup: func(f *fixture) {
			os.MkdirAll(f.e.keysDir, 0o755)
			os.WriteFile(filepath.Join(f.e.keysDir, "release.pem"), []byte("junk"), 0o644)
		}, want: "trusted key"},
		{name: "no room", setup: func(f *fixture) { f.e.avail = func(string) (uint64, error) { return 10 << 20, nil } }, want: "not enough room on the data filesystem"},
	} {
		t.Run(c.name, func(t *testing.T) {
			running := c.running
			if running == "" {
				running = "0.1.0"
			}
			f := newFixture(t, running)
			// Something installed already, which must stay as it is.
			os.MkdirAll(osversion.VersionDir(f.e.osDir, "0.1.5"), 0o755)
			os.WriteFile(filepath.Join(osversion.VersionDir(f.e.osDir, "0.1.5"), "vmlinuz"), []byte("k"), 0o644)
			st := osversion.State{}
			st.Install(osversion.Version{Version: "0.1.5"}, running)
			st.Save(f.e.osDir)
			if c.setup != nil {
				c.setup(f)
			}
			args := c.args
			if args == nil {
				args = []string{f.iso}
			}
			for i := range args {
				if args[i] == "" {
					args[i] = f.iso
				}
			}
			before := listing(t, f.e.dataDir)
			code, out, errs := f.run(args...)
			t.Logf("%s", errs)
			want := c.code
			if want == 0 {
				want = 1
			}
			if code != want || !strings.Contains(errs, c.want) || strings.Count(errs, "\n") != 1 || out != "" {
				t.Errorf("exit %d (want %d), stderr %q (want one line with %q), stdout %q", code, want, errs, c.want, out)
			}
			if after := listing(t, f.e.dataDir); after != before {
				t.Errorf("the data filesystem changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			if f.mounted != 0 || len(f.snaps) != 0 {
				t.Errorf("mounts left: %d, snapshots taken: %v", f.mounted, f.snaps)
			}
			if ents, _ := os.ReadDir(f.e.runDir); len(ents) > 1 {
				t.Errorf("left in the run directory: %v", ents)
			}
		})
	}
}

func TestInstall(t *testing.T) {
	f := newFixture(t, "0.1.0")
	// What an interrupted upgrade left: a partial copy, a version no state names.
	os.MkdirAll(osversion.VersionDir(f.e.osDir, "0.2.0")+".partial", 0o755)
	os.WriteFile(osversion.VersionDir(f.e.osDir, "0.2.0")+".partial/vmlinuz", []byte("half"), 0o644)
	os.MkdirAll(osversion.VersionDir(f.e.osDir, "0.9.0"), 0o755)

	code, out, errs := f.run("--dry-run", f.iso)
	if code != 0 || !strings.Contains(out, "Lightwhale 0.2.0, unsigned (this image trusts no signing keys)") || !strings.Contains(out, "nothing was written") || errs != "" {
		t.Fatalf("dry run: exit %d: %s%s", code, out, errs)
	}
	if len(f.snaps) != 0 || f.mounted != 0 {
		t.Fatalf("dry run took snapshots %v or left a mount", f.snaps)
	}
	if _, err := os.Stat(filepath.Join(f.e.osDir, "state.json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("dry run wrote the state: %v", err)
	}

	code, out, errs = f.run("--trial-boots", "3", f.iso)
	if code != 0 || errs != "" {
		t.Fatalf("upgrade: exit %d: %s%s", code, out, errs)
	}
	wantOut := "installed 0.2.0 as a trial (3 boots to become healthy); state snapshot auto-before-upgrade-0.2.0-20261201-100000; reboot to run it\n"
	if out != wantOut {
		t.Fatalf("output %q; want %q", out, wantOut)
	}
	dir := osversion.VersionDir(f.e.osDir, "0.2.0")
	for _, c := range isoFiles {
		if b, err := os.ReadFile(filepath.Join(dir, c.installed)); err != nil || !bytes.Equal(b, f.tree[c.iso]) {
			t.Errorf("%s: %v", c.installed, err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, osversion.Manifest)); !bytes.Equal(b, f.tree[ManifestPath]) {
		t.Errorf("manifest not installed")
	}
	ents, _ := os.ReadDir(filepath.Dir(dir))
	if len(ents) != 1 || ents[0].Name() != "0.2.0" {
		t.Errorf("versions: %v; want the leftovers gone", ents)
	}
	st, err := osversion.Load(f.e.osDir)
	v := st.Find("0.2.0")
	if err != nil || v == nil || v.Status != osversion.Trial || v.MaxTrials != 3 || v.From != "0.1.0" || v.Snapshot != f.snaps[0] {
		t.Fatalf("state: %+v %v", st, err)
	}
	if log, _ := os.ReadFile(osversion.LogPath(f.e.osDir)); !strings.Contains(string(log), "upgrade: 0.2.0 installed as a trial") {
		t.Errorf("log: %q", log)
	}
	if st.Next("0.1.0") != "0.2.0" {
		t.Errorf("the next boot runs %s", st.Next("0.1.0"))
	}

	// 0.2.0 runs and is healthy; then 0.3.0, signed, over it, then 0.4.0:
	// 0.2.0 goes, the running 0.3.0 stays.
	st.Healthy("0.2.0")
	st.Save(f.e.osDir)
	pub, priv := newKey(t)
	os.MkdirAll(f.e.keysDir, 0o755)
	writePublicKey(t, filepath.Join(f.e.keysDir, "release.pem"), pub)
	for _, step := range []struct{ running, v string }{{"0.2.0", "0.3.0"}, {"0.3.0", "0.4.0"}} {
		f.e.running = step.running
		f.tree = newTree(step.v)
		f.tree.sign(priv)
		if code, out, errs := f.run(f.iso); code != 0 {
			t.Fatalf("upgrade to %s: exit %d: %s%s", step.v, code, out, errs)
		}
		st, _ = osversion.Load(f.e.osDir)
		st.Healthy(step.v)
		st.Save(f.e.osDir)
	}
	if b, _ := os.ReadFile(filepath.Join(osversion.VersionDir(f.e.osDir, "0.4.0"), osversion.Signature)); !bytes.Equal(b, f.tree[SignaturePath]) {
		t.Errorf("signature not installed")
	}
	ents, _ = os.ReadDir(filepath.Dir(dir))
	if len(ents) != 2 || ents[0].Name() != "0.3.0" || ents[1].Name() != "0.4.0" || len(st.Versions) != 2 {
		t.Errorf("after three upgrades: versions %v, state %+v", ents, st.Versions)
	}

	// A downgrade, allowed.
	f.e.running = "0.4.0"
	f.tree = newTree("0.3.5")
	f.tree.sign(priv)
	if code, out, errs := f.run(f.iso); code != 1 || !strings.Contains(errs, "older") {
		t.Fatalf("downgrade: exit %d: %s%s", code, out, errs)
	}
	if code, out, errs := f.run("--allow-downgrade", f.iso); code != 0 || !strings.Contains(out, "installed 0.3.5") || !strings.Contains(out, "removed version 0.3.0") {
		t.Fatalf("downgrade allowed: exit %d: %s%s", code, out, errs)
	}
}

// A failed snapshot installs nothing.
func TestInstallSnapshotFails(t *testing.T) {
	f := newFixture(t, "0.1.0")
	f.e.snapshot = func(string) (string, error) { return "", errors.New("btrfs says no") }
	code, out, errs := f.run(f.iso)
	if code != 1 || !strings.Contains(errs, "btrfs says no") || strings.Count(errs, "\n") != 1 || out != "" {
		t.Fatalf("exit %d: %s%s", code, out, errs)
	}
	ents, _ := os.ReadDir(filepath.Join(f.e.osDir, "versions"))
	if _, err := os.Stat(filepath.Join(f.e.osDir, "state.json")); len(ents) != 0 || err == nil {
		t.Fatalf("left versions %v, state %v", ents, err)
	}
}

func TestRollbackOS(t *testing.T) {
	f := newFixture(t, "0.1.0")
	var out, errb bytes.Buffer
	stdio := cli.IO{In: strings.NewReader(""), Out: &out, Err: &errb}
	if code := rollbackRun(f.e, nil, stdio); code != 1 || !strings.Contains(errb.String(), "no version to go back from") {
		t.Fatalf("nothing installed: exit %d: %s", code, errb.String())
	}
	if code := rollbackRun(f.e, []string{"x"}, stdio); code != 2 {
		t.Fatalf("an argument: exit %d", code)
	}
	f.e.persistent = func(*env) error { return errVolatile }
	errb.Reset()
	if code := rollbackRun(f.e, nil, stdio); code != 1 || !strings.Contains(errb.String(), "boot medium") {
		t.Fatalf("volatile: exit %d: %s", code, errb.String())
	}
	f.e.persistent = func(*env) error { return nil }

	// A pending trial, cancelled from the medium's version.
	if code, o, e := f.run(f.iso); code != 0 {
		t.Fatalf("upgrade: %s%s", o, e)
	}
	out.Reset()
	if code := rollbackRun(f.e, nil, stdio); code != 0 || !strings.HasPrefix(out.String(), "retired 0.2.0; the next boot runs the boot medium's version, 0.1.0\n") || !strings.Contains(out.String(), "setup-persistence rollback auto-before-upgrade-0.2.0") {
		t.Fatalf("rollback-os: %s", out.String())
	}
	// Running installed 0.3.0 (from its image), 0.2.0 good before it.
	st, _ := osversion.Load(f.e.osDir)
	st.Versions = nil
	st.Install(osversion.Version{Version: "0.2.0"}, "0.1.0")
	st.Healthy("0.2.0")
	st.Install(osversion.Version{Version: "0.3.0"}, "0.2.0")
	st.Healthy("0.3.0")
	st.Save(f.e.osDir)
	f.e.running, f.e.fromImage = "0.3.0", true
	out.Reset()
	if code := rollbackRun(f.e, nil, stdio); code != 0 || out.String() != "retired 0.3.0; the next boot runs installed version 0.2.0 (or the boot medium's version, if it is newer)\n" {
		t.Fatalf("rollback-os from an installed image: %q", out.String())
	}
	if st, _ := osversion.Load(f.e.osDir); st.Find("0.3.0").Status != osversion.Retired {
		t.Fatalf("state: %+v", st)
	}
}
