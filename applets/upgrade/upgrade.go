// Package upgrade is `lightwhale upgrade`: it verifies a Lightwhale ISO (its
// manifest's sha256 of each file, a signature when the running image trusts
// keys, a version newer than the running one) and installs its kernel,
// initramfs and root image on the data filesystem as a trial version
// (internal/osversion), after an automatic state snapshot. The next boot of
// the boot medium switches to it. Also `lightwhale rollback-os`, which
// leaves an installed version by hand.
//
// Crash safety: the files are copied into VERSION.partial, synced,
// verified again and renamed to VERSION; only then is the state snapshot
// taken and state.json saved (atomically) naming the version. A power cut
// leaves either no new version in state.json or a whole one; a .partial
// directory, or a version directory that state.json does not name, is
// removed by the next upgrade.
package upgrade

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"lightwhale/internal/cli"
	"lightwhale/internal/host"
	"lightwhale/internal/osversion"
	"lightwhale/internal/paths"
	"lightwhale/internal/version"
)

// The applets' names.
const (
	Name         = "upgrade"
	RollbackName = "rollback-os"
)

// Snapshot takes the automatic state snapshot before an install and
// returns its name. The registry (applets/all.go) sets it to the one of
// setup-persistence: applets never import each other.
var Snapshot func(why string) (string, error)

// KeysDir holds the public keys the running image trusts (a variable for
// tests).
var KeysDir = paths.UpgradeKeys

// spaceMargin is kept free on the data filesystem beyond the new files.
const spaceMargin = 64 << 20

// env is every edge the applets touch, so tests can move them.
type env struct {
	healthWithin time.Duration // each trial boot's wait for healthy (--trial-within)
	dataDir      string        // the data filesystem (btrfs when persistent)
	osDir        string        // the installed versions and state.json
	runDir       string        // where the ISO is mounted and the lock is
	modeFile     string
	keysDir      string
	running      string // this image's version
	// fromImage: this boot runs an installed image (lightwhale.image= on
	// the kernel command line), so the medium's version is unknown.
	fromImage bool
	now       func() time.Time
	// persistent fails on a machine whose data is in RAM.
	persistent func(e *env) error
	// mount mounts the ISO at src read-only at dir; undo reverses it.
	mount    func(src string, block bool, dir string) (undo func() error, err error)
	snapshot func(why string) (string, error)
	avail    func(path string) (uint64, error) // free bytes for us
}

func realEnv() *env {
	cmdline, _ := os.ReadFile("/proc/cmdline")
	fromImage := false
	for _, f := range strings.Fields(string(cmdline)) {
		fromImage = fromImage || strings.HasPrefix(f, paths.ImageParam+"=")
	}
	return &env{
		dataDir:    paths.DataDir,
		osDir:      paths.OSDir,
		runDir:     paths.RunDir,
		modeFile:   paths.ModeFile,
		keysDir:    KeysDir,
		running:    version.Version,
		fromImage:  fromImage,
		now:        time.Now,
		persistent: persistentData,
		mount:      kernelMount,
		snapshot: func(why string) (string, error) {
			if Snapshot == nil {
				return "", errors.New("no state snapshot is possible in this build")
			}
			return Snapshot(why)
		},
		avail: func(path string) (uint64, error) {
			var st unix.Statfs_t
			if err := unix.Statfs(path, &st); err != nil {
				return 0, err
			}
			return st.Bavail * uint64(st.Bsize), nil
		},
	}
}

var errVolatile = errors.New("this machine is volatile (its data is in RAM): there is nowhere to keep a new version; write the new ISO to the boot medium instead")

// persistentData refuses a volatile machine: the mode says so, or the data
// directory is not a btrfs mount.
func persistentData(e *env) error {
	if b, err := os.ReadFile(e.modeFile); err == nil && strings.TrimSpace(string(b)) == "volatile" {
		return errVolatile
	}
	if m, ok := host.MountedAt(host.Real, e.dataDir); !ok || m.FSType != "btrfs" {
		return errVolatile
	}
	return nil
}

const usage = "[--allow-downgrade] [--trial-boots N] [--dry-run] FILE.iso|/dev/BLOCKDEV"

const about = `Verifies a Lightwhale ISO and installs its kernel and root image on the data
filesystem as a trial version: the next boot runs it, and it has --trial-boots
boots to become healthy (Docker answering); otherwise the machine goes back to
the version it runs now, with the state snapshot taken before the install.
Checks: the ISO is whole, its manifest lists the kernel, initramfs and root
image with their sha256, each matches; when this image trusts signing keys
(` + paths.UpgradeKeys + `), the manifest's signature verifies with one;
the version is newer than the running one; the data filesystem has room.
Needs a persistent machine. lightwhale rollback-os leaves an installed version.`

// Main is `lightwhale upgrade`.
func Main(args []string, stdio cli.IO) int { return run(realEnv(), args, stdio) }

func run(e *env, args []string, stdio cli.IO) int {
	fs := cli.NewFlagSet(Name, usage, about, stdio.Err)
	allowDowngrade := fs.Bool("allow-downgrade", false, "install a version older than the running one")
	trials := fs.Int("trial-boots", osversion.DefaultTrialBoots, "boots the new version gets to become healthy")
	dryRun := fs.Bool("dry-run", false, "verify the ISO and say what would be done; write nothing")
	within := fs.Duration("trial-within", osversion.DefaultHealthWithin, "how long each trial boot waits for Docker to answer before it restarts the machine")
	if code, done := cli.Parse(fs, args); done {
		return code
	}
	if *within < 30*time.Second || *within > 24*time.Hour {
		fmt.Fprintf(stdio.Err, "%s: --trial-within %s: want 30s to 24h\n", Name, *within)
		return 2
	}
	e.healthWithin = *within
	if fs.NArg() != 1 {
		fmt.Fprintf(stdio.Err, "%s: name one ISO file or block device (usage: %s %s)\n", Name, Name, usage)
		return 2
	}
	if *trials < 1 || *trials > 10 {
		fmt.Fprintf(stdio.Err, "%s: --trial-boots %d: want 1 to 10\n", Name, *trials)
		return 2
	}
	if err := e.persistent(e); err != nil {
		return cli.Fail(stdio, Name, err)
	}
	unlock, err := e.lock()
	if err != nil {
		return cli.Fail(stdio, Name, err)
	}
	defer unlock()
	src := fs.Arg(0)
	err = e.withISO(src, func(root string) error {
		c, err := e.check(root, *allowDowngrade)
		if err != nil {
			return err
		}
		if *dryRun {
			e.describe(stdio.Out, src, c, *trials)
			return nil
		}
		return e.install(stdio.Out, root, c, *trials)
	})
	if err != nil {
		return cli.Fail(stdio, Name, err)
	}
	return 0
}

// lock takes the lock of upgrade and rollback-os: one at a time. (Not the
// run lock of setup-persistence: the snapshot takes that one.)
func (e *env) lock() (func(), error) {
	if err := os.MkdirAll(e.runDir, 0o755); err != nil {
		return nil, err
	}
	p := filepath.Join(e.runDir, "upgrade.lock")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another upgrade or rollback-os is running (%s is locked)", p)
	}
	return func() { f.Close() }, nil
}

// withISO checks src, mounts it at a private directory under runDir for fn,
// and unmounts it whatever fn returns.
func (e *env) withISO(src string, fn func(root string) error) (err error) {
	block, err := probeISO(src)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp(e.runDir, "upgrade-iso-")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, os.Remove(dir)) }()
	undo, err := e.mount(src, block, dir)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, undo()) }()
	return prefix(src, fn(dir))
}

// prefix names the ISO in an error about its content.
func prefix(src string, err error) error {
	var ie isoError
	if errors.As(err, &ie) {
		return fmt.Errorf("%s: %w", src, err)
	}
	return err
}

// isoError is an error about what the ISO holds.
type isoError struct{ error }

func (e isoError) Unwrap() error { return e.error }

func isoErrorf(format string, a ...any) error { return isoError{fmt.Errorf(format, a...)} }

// checked is a verified ISO.
type checked struct {
	m             Manifest
	manifest, sig []byte
	signer        string // the trusted key that signed it; "" unsigned
	trusted       int    // how many keys this image trusts
}

// check verifies what the ISO mounted at root holds, reading it only.
func (e *env) check(root string, allowDowngrade bool) (checked, error) {
	var c checked
	var err error
	c.manifest, err = readSmall(root, ManifestPath, maxManifest)
	if errors.Is(err, os.ErrNotExist) {
		return c, isoErrorf("not a Lightwhale ISO (no %s)", ManifestPath)
	}
	if err != nil {
		return c, isoErrorf("%v", err)
	}
	keys, err := loadKeys(e.keysDir)
	if err != nil {
		return c, err
	}
	c.trusted = len(keys)
	c.sig, err = readSmall(root, SignaturePath, 1024)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return c, isoErrorf("%v", err)
	}
	if len(keys) > 0 {
		// The signature first: nothing else of an unsigned manifest is read.
		if errors.Is(err, os.ErrNotExist) {
			return c, isoErrorf("not signed (no %s), and this image accepts only ISOs signed with one of its keys (%s)", SignaturePath, e.keysDir)
		}
		if c.signer, err = verifySignature(c.manifest, c.sig, keys, e.keysDir); err != nil {
			return c, isoErrorf("%v", err)
		}
	} else {
		c.sig = nil // not checked: not installed either
	}
	if c.m, err = ParseManifest(c.manifest); err != nil {
		return c, isoErrorf("%v", err)
	}
	v := c.m.Version
	switch cmp := osversion.Compare(v, e.running); {
	case cmp == 0:
		return c, fmt.Errorf("already running %s", v)
	case cmp < 0 && !allowDowngrade:
		return c, fmt.Errorf("%s is older than the running %s (--allow-downgrade installs it anyway)", v, e.running)
	}
	for _, f := range c.m.Files {
		if err := verifyFile(root, f); err != nil {
			return c, isoError{err}
		}
	}
	need := uint64(c.m.Size()) + uint64(len(c.manifest)+len(c.sig)) + spaceMargin
	free, err := e.avail(e.dataDir)
	if err != nil {
		return c, fmt.Errorf("free space on %s: %w", e.dataDir, err)
	}
	if free < need {
		return c, fmt.Errorf("not enough room on the data filesystem: %s needs %d MiB (with %d MiB to spare), %d MiB free", v, need>>20, spaceMargin>>20, free>>20)
	}
	return c, nil
}

// readSmall reads rel under root, at most max bytes.
func readSmall(root, rel string, max int64) ([]byte, error) {
	f, _, err := openBeneath(root, rel)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", rel, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: more than %d bytes", rel, max)
	}
	return b, nil
}

// verifyFile checks the size and sha256 of f under root.
func verifyFile(root string, f File) error {
	r, st, err := openBeneath(root, f.Path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s is listed in the manifest but not on the ISO", f.Path)
	}
	if err != nil {
		return err
	}
	defer r.Close()
	if st.Size() != f.Size {
		return fmt.Errorf("%s is %d bytes; the manifest says %d", f.Path, st.Size(), f.Size)
	}
	return hashMatches(r, f)
}

// hashMatches reads f.Size bytes of r (no more) and compares their sha256.
func hashMatches(r io.Reader, f File) error {
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(r, f.Size))
	if err != nil {
		return fmt.Errorf("read %s: %w", f.Path, err)
	}
	if n != f.Size {
		return fmt.Errorf("%s: read %d bytes of %d", f.Path, n, f.Size)
	}
	if [sha256.Size]byte(h.Sum(nil)) != f.Sum {
		return fmt.Errorf("%s: sha256 %x does not match the manifest's %x", f.Path, h.Sum(nil), f.Sum)
	}
	return nil
}

// snapshotWhy is what the automatic snapshot is called after.
func snapshotWhy(v string) string { return "before-upgrade-" + v }

func (c checked) signedBy() string {
	switch {
	case c.signer != "":
		return "signed with trusted key " + c.signer
	case c.trusted == 0:
		return "unsigned (this image trusts no signing keys)"
	}
	return "unsigned"
}

// describe says what an install would do (--dry-run).
func (e *env) describe(w io.Writer, src string, c checked, trials int) {
	fmt.Fprintf(w, "%s: Lightwhale %s, %s; kernel, initramfs and root image match the manifest (%d MiB)\n", src, c.m.Version, c.signedBy(), c.m.Size()>>20)
	st, err := osversion.Load(e.osDir)
	if err != nil {
		fmt.Fprintf(w, "(the installed versions cannot be read: %v)\n", err)
	}
	remove := st.Install(osversion.Version{Version: c.m.Version}, e.running)
	fmt.Fprintf(w, "would take a state snapshot auto-%s-..., install %s in %s as a trial (%d boots to become healthy)", snapshotWhy(c.m.Version), c.m.Version, osversion.VersionDir(e.osDir, c.m.Version), trials)
	if len(remove) > 0 {
		fmt.Fprintf(w, " and remove version %s", strings.Join(remove, ", "))
	}
	fmt.Fprintln(w, "\n(dry run: nothing was written)")
}

// install copies the verified version in, takes the state snapshot and
// records the trial, in an order a power cut cannot make inconsistent.
func (e *env) install(w io.Writer, root string, c checked, trials int) error {
	v := c.m.Version
	versions := filepath.Dir(osversion.VersionDir(e.osDir, v))
	if err := os.MkdirAll(versions, 0o755); err != nil {
		return err
	}
	unlock, err := osversion.Lock(e.osDir)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := osversion.Load(e.osDir)
	if err != nil {
		return err
	}
	if err := e.tidy(&st, versions, v); err != nil {
		return err
	}
	final := osversion.VersionDir(e.osDir, v)
	partial := final + ".partial"
	if err := os.Mkdir(partial, 0o755); err != nil {
		return err
	}
	if err := copyVersion(root, partial, c); err != nil {
		return errors.Join(fmt.Errorf("copy %s to %s: %w", v, partial, err), os.RemoveAll(partial))
	}
	if err := os.Rename(partial, final); err != nil {
		return errors.Join(err, os.RemoveAll(partial))
	}
	syncDir(versions)
	snap, err := e.snapshot(snapshotWhy(v))
	if err != nil {
		return errors.Join(fmt.Errorf("state snapshot before the upgrade: %w (nothing installed)", err), os.RemoveAll(final))
	}
	remove := st.Install(osversion.Version{Version: v, Installed: e.now().UTC(), From: e.running, Snapshot: snap, MaxTrials: trials, HealthWithin: int(e.healthWithin / time.Second)}, e.running)
	if err := st.Save(e.osDir); err != nil {
		return errors.Join(fmt.Errorf("record %s: %w (nothing installed)", v, err), os.RemoveAll(final))
	}
	// Only now, with no state naming them, the versions dropped go.
	var left []string
	for _, r := range remove {
		if r == e.running || osversion.CheckVersion(r) != nil {
			continue
		}
		if err := os.RemoveAll(osversion.VersionDir(e.osDir, r)); err != nil {
			left = append(left, r)
		}
	}
	osversion.Log(e.osDir, e.now(), "upgrade: %s installed as a trial (%d boots) from %s, %s; state snapshot %s; removed [%s]", v, trials, e.running, c.signedBy(), snap, strings.Join(remove, " "))
	fmt.Fprintf(w, "installed %s as a trial (%d boots to become healthy); state snapshot %s; reboot to run it\n", v, trials, snap)
	if len(remove) > 0 {
		fmt.Fprintf(w, "removed version %s (at most %d are kept)\n", strings.Join(remove, ", "), osversion.Keep)
	}
	if len(left) > 0 {
		fmt.Fprintf(w, "(the files of %s could not all be removed; the next upgrade tries again)\n", strings.Join(left, ", "))
	}
	return nil
}

// tidy removes what an interrupted upgrade left (a .partial directory, a
// version directory no state names) and, when v is installed already (bad,
// retired, or good but not running), drops it from the state first and
// then its files, so the state never names a version being rewritten.
func (e *env) tidy(st *osversion.State, versions, v string) error {
	ents, err := os.ReadDir(versions)
	if err != nil {
		return err
	}
	for _, ent := range ents {
		name := ent.Name()
		if name == e.running || (st.Find(name) != nil && name != v) {
			continue
		}
		if st.Find(name) != nil { // name == v, installed before
			var kept []osversion.Version
			for _, o := range st.Versions {
				if o.Version != v {
					kept = append(kept, o)
				}
			}
			st.Versions = kept
			if err := st.Save(e.osDir); err != nil {
				return err
			}
		}
		if err := os.RemoveAll(filepath.Join(versions, name)); err != nil {
			return fmt.Errorf("remove what an earlier upgrade left: %w", err)
		}
	}
	return nil
}

// copyVersion copies the listed files and the manifest (and its signature)
// into dir, syncs them, and checks the copies' sha256 again.
func copyVersion(root, dir string, c checked) error {
	for i, f := range c.m.Files {
		dst := filepath.Join(dir, isoFiles[i].installed)
		if err := copyFile(root, f, dst); err != nil {
			return err
		}
	}
	extra := map[string][]byte{osversion.Manifest: c.manifest}
	if c.sig != nil {
		extra[osversion.Signature] = c.sig
	}
	for name, b := range extra {
		if err := writeSynced(filepath.Join(dir, name), func(w io.Writer) error { _, err := w.Write(b); return err }); err != nil {
			return err
		}
	}
	// Read back what was written (the files are synced; a bad disk or a
	// bad copy shows here rather than at a boot).
	for i, f := range c.m.Files {
		r, err := os.Open(filepath.Join(dir, isoFiles[i].installed))
		if err != nil {
			return err
		}
		err = hashMatches(r, f)
		r.Close()
		if err != nil {
			return fmt.Errorf("the copy: %w", err)
		}
	}
	syncDir(dir)
	return nil
}

func copyFile(root string, f File, dst string) error {
	r, _, err := openBeneath(root, f.Path)
	if err != nil {
		return err
	}
	defer r.Close()
	return writeSynced(dst, func(w io.Writer) error {
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(r, f.Size))
		if err != nil {
			return err
		}
		if n != f.Size || [sha256.Size]byte(h.Sum(nil)) != f.Sum {
			return fmt.Errorf("%s changed on the ISO while it was copied", f.Path)
		}
		return nil
	})
}

// writeSynced creates path (it must not exist), fills it and syncs it.
func writeSynced(path string, fill func(io.Writer) error) error {
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if err := fill(out); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return out.Close()
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
