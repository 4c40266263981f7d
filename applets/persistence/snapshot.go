package persistence

// State snapshots: read-only btrfs snapshots of @lightwhale-state (the
// /etc, /var and /home overlays and Docker's data) under
// @lightwhale-state-snapshots. snapshot, snapshots and forget act at once;
// rollback only records its choice there, and the next boot applies it
// before the state is mounted (rollbackStep), keeping the state it replaces
// as an automatic snapshot, so that a rollback can itself be undone.

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"lightwhale/internal/btrfs"
	"lightwhale/internal/cli"
	"lightwhale/internal/host"
	"lightwhale/internal/osversion"
	"lightwhale/internal/paths"
)

const (
	// autoPrefix names the snapshots Lightwhale takes itself; only these
	// are pruned, the newest keep of them kept.
	autoPrefix  = "auto-"
	defaultKeep = 5
	// In the snapshots subvolume: the pending rollback ("NAME PRE"), and
	// the number of automatic snapshots to keep.
	rollbackFile = ".rollback"
	keepFile     = ".keep"
)

// snapshotCovers is what the README and `snapshots` say a snapshot holds.
const snapshotCovers = `A snapshot holds this machine's /etc, /var and /home (their overlays) and
Docker's data (images, containers, volumes), as they were when it was taken.
It does not hold files kept in /mnt/lightwhale-data outside lightwhale-state,
the swap, or the Lightwhale image itself. A snapshot of a running Docker is
crash-consistent, as after a power cut.`

// Compiled on first use: {0,63} compiles to 63 copies, which every
// lightwhale run at boot would pay for.
var snapshotName = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`) })

// checkSnapshotName refuses names that are not plain file names; a user's
// may not start with autoPrefix.
func checkSnapshotName(name string, user bool) error {
	if !snapshotName().MatchString(name) {
		return fmt.Errorf("snapshot name %q: want 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	if user && strings.HasPrefix(name, autoPrefix) {
		return fmt.Errorf("snapshot name %q: names starting with %q are kept for automatic snapshots", name, autoPrefix)
	}
	return nil
}

// autoName names an automatic snapshot by why and when it was taken.
func autoName(why string, t time.Time) string {
	return autoPrefix + why + "-" + t.UTC().Format("20060102-150405")
}

// snapshotInfo is one snapshot as listed.
type snapshotInfo struct {
	Name  string
	Taken time.Time
	order uint64 // the subvolume ID: the order they were taken in, exact
}

// expired returns the automatic snapshots beyond the newest keep, except
// the protected ones (a pending rollback's, a trial upgrade's).
func expired(snaps []snapshotInfo, keep int, protected ...string) []string {
	var auto []snapshotInfo
	for _, s := range snaps {
		if strings.HasPrefix(s.Name, autoPrefix) && !slices.Contains(protected, s.Name) {
			auto = append(auto, s)
		}
	}
	slices.SortFunc(auto, func(a, b snapshotInfo) int { return cmp.Compare(b.order, a.order) })
	var out []string
	for i := keep; i < len(auto); i++ {
		out = append(out, auto[i].Name)
	}
	return out
}

// parseRollback reads a pending rollback: the snapshot to return to, and
// the name under which the state it replaces is kept.
func parseRollback(b []byte) (name, pre string, err error) {
	f := strings.Fields(string(b))
	if len(f) != 2 || checkSnapshotName(f[0], false) != nil || checkSnapshotName(f[1], false) != nil {
		return "", "", fmt.Errorf("pending rollback %q: want \"NAME PRE\"", strings.TrimSpace(string(b)))
	}
	return f[0], f[1], nil
}

// The subvolumes as directories of the whole filesystem mounted at top.
type topDirs struct{ top string }

func (t topDirs) state() string     { return filepath.Join(t.top, paths.Subvolumes[1]) }
func (t topDirs) snapshots() string { return filepath.Join(t.top, paths.Subvolumes[2]) }
func (t topDirs) snap(n string) string {
	return filepath.Join(t.snapshots(), n)
}

// The state being rolled in, and the one rolled out, beside the state.
func (t topDirs) incoming() string { return t.state() + ".rollback-in" }
func (t topDirs) outgoing() string { return t.state() + ".rollback-out" }

var errVolatile = errors.New("this machine is volatile (its data is in RAM): there is no state to snapshot; see setup-persistence --help to make it persistent")

// withTop mounts the whole data filesystem (subvolume id 5) at
// paths.TopDir for fn, from the device the data subvolume is mounted from.
func withTop(h host.Host, fn func(t topDirs) error) error {
	data, ok := host.MountedAt(h, paths.DataDir)
	if !ok || data.FSType != "btrfs" {
		return errVolatile
	}
	if err := h.MkdirAll(paths.TopDir, 0o700); err != nil {
		return err
	}
	opts := "subvolid=5"
	if strings.Contains(data.SuperOptions, "degraded") {
		opts += ",degraded"
	}
	if err := h.Mount(data.Source, paths.TopDir, "btrfs", unix.MS_NOATIME, opts); err != nil {
		return fmt.Errorf("mount the data filesystem at %s: %w", paths.TopDir, err)
	}
	err := fn(topDirs{paths.TopDir})
	if uerr := h.Unmount(paths.TopDir, 0); uerr != nil && err == nil {
		err = uerr
	}
	return err
}

// applyRollback makes a pending rollback the state, in stages that each
// check what is there first, so a power cut at any point is finished by
// the next boot: keep the state as the snapshot PRE; make a writable copy of
// NAME beside it; rename the state out and the copy in (a failure puts the
// state back); forget the rollback; drop the renamed-out state (PRE holds
// it); prune the automatic snapshots. The state subvolume is renamed away
// only once its replacement exists.
func applyRollback(h host.Host, t topDirs) (string, error) {
	b, err := h.ReadFile(filepath.Join(t.snapshots(), rollbackFile))
	if err != nil {
		// Nothing pending. A rolled-out state left by a power cut after the
		// rollback was forgotten goes (the snapshot PRE holds it).
		if h.Exists(t.outgoing()) && h.Exists(t.state()) {
			return nothingPending, btrfs.DeleteSubvolume(h, t.outgoing())
		}
		return nothingPending, nil
	}
	name, pre, err := parseRollback(b)
	if err != nil {
		return "", errors.Join(err, h.Remove(filepath.Join(t.snapshots(), rollbackFile)))
	}
	state, in, out := t.state(), t.incoming(), t.outgoing()
	if !h.Exists(t.snap(name)) && !h.Exists(in) && h.Exists(state) {
		return "", errors.Join(fmt.Errorf("rollback to %s: no such snapshot; the state is unchanged", name),
			h.Remove(filepath.Join(t.snapshots(), rollbackFile)))
	}
	fresh := h.Exists(state) && !h.Exists(out)
	if fresh && !h.Exists(t.snap(pre)) {
		if err := btrfs.Snapshot(h, state, t.snap(pre), true); err != nil {
			return "", fmt.Errorf("keep the current state as %s: %w", pre, err)
		}
	}
	if fresh && !h.Exists(in) {
		if err := btrfs.Snapshot(h, t.snap(name), in, false); err != nil {
			return "", fmt.Errorf("copy snapshot %s: %w", name, err)
		}
	}
	if h.Exists(state) && h.Exists(in) && !h.Exists(out) {
		if err := h.Rename(state, out); err != nil {
			return "", err
		}
	}
	if !h.Exists(state) && h.Exists(in) {
		if err := h.Rename(in, state); err != nil {
			return "", errors.Join(err, h.Rename(out, state))
		}
	}
	// Never drop the renamed-out state unless a state is in place.
	if !h.Exists(state) {
		return "", fmt.Errorf("rollback to %s: no state subvolume after the swap; the old state is kept at %s", name, out)
	}
	if err := h.Remove(filepath.Join(t.snapshots(), rollbackFile)); err != nil {
		return "", err
	}
	if err := btrfs.DeleteSubvolume(h, out); err != nil {
		return "", err
	}
	// The rollback made an automatic snapshot: prune the oldest.
	return fmt.Sprintf("the state is snapshot %s now; the state before it is snapshot %s", name, pre), prune(h, t)
}

const nothingPending = "no rollback pending"

// rollbackStep applies a rollback that `setup-persistence rollback`
// recorded, before the state is mounted. Not fatal: the state it leaves
// (the old one, or the new one) is whole either way.
type rollbackStep struct{}

func (rollbackStep) String() string {
	return fmt.Sprintf("roll %s back to a snapshot, if a rollback is pending", paths.Subvolumes[1])
}

func (rollbackStep) Fatal() bool { return false }

func (rollbackStep) Apply(e *env) (string, error) {
	if _, ok := host.MountedAt(e.h, paths.StateDir); ok {
		return "the state is mounted already", nil
	}
	var note string
	err := withTop(e.h, func(t topDirs) error {
		var err error
		note, err = applyRollback(e.h, t)
		return err
	})
	return note, err
}

// listSnapshots reads the snapshots and when each was taken, oldest first.
func listSnapshots(h host.Host, t topDirs) ([]snapshotInfo, error) {
	ents, err := os.ReadDir(t.snapshots())
	if err != nil {
		return nil, err
	}
	var out []snapshotInfo
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		sv, err := btrfs.Show(h, t.snap(e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, snapshotInfo{e.Name(), sv.Created, sv.ID})
	}
	slices.SortFunc(out, func(a, b snapshotInfo) int { return cmp.Compare(a.order, b.order) })
	return out, nil
}

// keepCount is how many automatic snapshots are kept (snapshots --keep).
func keepCount(h host.Host, t topDirs) int {
	if b, err := h.ReadFile(filepath.Join(t.snapshots(), keepFile)); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n >= 1 {
			return n
		}
	}
	return defaultKeep
}

// pending is the snapshot a pending rollback returns to, or "".
func pending(h host.Host, t topDirs) string {
	b, err := h.ReadFile(filepath.Join(t.snapshots(), rollbackFile))
	if err != nil {
		return ""
	}
	name, _, _ := parseRollback(b)
	return name
}

// prune deletes the automatic snapshots beyond the newest keepCount.
func prune(h host.Host, t topDirs) error {
	snaps, err := listSnapshots(h, t)
	if err != nil {
		return err
	}
	// A trial version's snapshot is what the state returns to if the trial
	// is abandoned: it stays while the trial runs.
	protected := []string{pending(h, t)}
	if st, err := osversion.Load(osDir); err == nil {
		for _, v := range st.Versions {
			if v.Status == osversion.Trial && v.Snapshot != "" {
				protected = append(protected, v.Snapshot)
			}
		}
	}
	for _, n := range expired(snaps, keepCount(h, t), protected...) {
		if err := btrfs.DeleteSubvolume(h, t.snap(n)); err != nil {
			return err
		}
	}
	return nil
}

// snapshotsDo runs fn on the mounted whole filesystem, holding the run lock.
func snapshotsDo(h host.Host, stdio cli.IO, cmd string, fn func(t topDirs) error) int {
	unlock, err := runLock()
	if err != nil {
		return cli.Fail(stdio, Name+" "+cmd, err)
	}
	defer unlock()
	if err := withTop(h, fn); err != nil {
		return cli.Fail(stdio, Name+" "+cmd, err)
	}
	return 0
}

func snapshotCmd(h host.Host, args []string, stdio cli.IO) int {
	fs := cli.NewFlagSet(Name+" snapshot", "[NAME]", "Takes a read-only snapshot of the state now (default name: the time).\n\n"+snapshotCovers, stdio.Err)
	if code, done := cli.Parse(fs, args); done {
		return code
	}
	name := time.Now().UTC().Format("20060102-150405")
	switch fs.NArg() {
	case 0:
	case 1:
		name = fs.Arg(0)
	default:
		fmt.Fprintf(stdio.Err, "%s snapshot: one NAME at most, got %q\n", Name, fs.Args())
		return 2
	}
	if err := checkSnapshotName(name, true); err != nil {
		return cli.Fail(stdio, Name+" snapshot", err)
	}
	return snapshotsDo(h, stdio, "snapshot", func(t topDirs) error {
		if h.Exists(t.snap(name)) {
			return fmt.Errorf("snapshot %s exists already", name)
		}
		if err := btrfs.Snapshot(h, paths.StateDir, t.snap(name), true); err != nil {
			return err
		}
		fmt.Fprintf(stdio.Out, "snapshot %s taken\n", name)
		return nil
	})
}

// AutoSnapshot takes an automatic read-only snapshot of the state now, named
// after why (e.g. "before-upgrade-0.2.0") and the time, prunes the oldest
// automatic ones, and returns its name. It holds the run lock, so it waits
// for a claim, a join or another snapshot to end.
func AutoSnapshot(h host.Host, why string) (string, error) {
	// The name must stay a snapshot name: the time suffix (and room for a
	// "-N" that tells two in one second apart) is kept whole.
	now := time.Now()
	if max := 64 - len(autoName("", now)) - 3; len(why) > max {
		why = why[:max]
	}
	name := autoName(why, now)
	if err := checkSnapshotName(name, false); err != nil {
		return "", err
	}
	unlock, err := runLock()
	if err != nil {
		return "", err
	}
	defer unlock()
	err = withTop(h, func(t topDirs) error {
		for i := 2; h.Exists(t.snap(name)); i++ {
			name = fmt.Sprintf("%s-%d", autoName(why, now), i)
		}
		if err := btrfs.Snapshot(h, paths.StateDir, t.snap(name), true); err != nil {
			return fmt.Errorf("snapshot the state as %s: %w", name, err)
		}
		return prune(h, t)
	})
	if err != nil {
		return "", err
	}
	return name, nil
}

func snapshotsCmd(h host.Host, args []string, stdio cli.IO) int {
	fs := cli.NewFlagSet(Name+" snapshots", "[--keep N]", "Lists the state snapshots, oldest first, with their size.\n\n"+snapshotCovers, stdio.Err)
	keep := fs.Int("keep", 0, fmt.Sprintf("keep the newest N automatic snapshots from now on (default %d)", defaultKeep))
	if code, done := cli.Parse(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stdio.Err, "%s snapshots: unexpected argument %q\n", Name, fs.Arg(0))
		return 2
	}
	keepSet := false
	fs.Visit(func(f *flag.Flag) { keepSet = keepSet || f.Name == "keep" })
	if keepSet && *keep < 1 {
		fmt.Fprintf(stdio.Err, "%s snapshots: --keep %d: want at least 1\n", Name, *keep)
		return 2
	}
	return snapshotsDo(h, stdio, "snapshots", func(t topDirs) error {
		if *keep > 0 {
			if err := h.WriteFile(filepath.Join(t.snapshots(), keepFile), []byte(strconv.Itoa(*keep)+"\n"), 0o644); err != nil {
				return err
			}
			if err := prune(h, t); err != nil {
				return err
			}
		}
		snaps, err := listSnapshots(h, t)
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(stdio.Out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(w, "NAME\tTAKEN\tSIZE\tOWN")
		for _, s := range snaps {
			total, own := snapshotSize(h, t.snap(s.Name))
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", s.Name, s.Taken.UTC().Format("2006-01-02 15:04:05 UTC"), total, own)
		}
		w.Flush()
		if len(snaps) == 0 {
			fmt.Fprintln(stdio.Out, "(no snapshots: setup-persistence snapshot [NAME] takes one)")
		}
		if p := pending(h, t); p != "" {
			fmt.Fprintf(stdio.Out, "rollback to %s pending: the next boot applies it (rollback --cancel forgets it)\n", p)
		}
		fmt.Fprintf(stdio.Out, "automatic snapshots (%s*) kept: the newest %d\n\n%s\n", autoPrefix, keepCount(h, t), snapshotCovers)
		return nil
	})
}

// snapshotSize is a snapshot's size and the part no other subvolume shares
// (btrfs filesystem du; "?" when it cannot tell).
func snapshotSize(h host.Host, path string) (total, own string) {
	out, err := h.Run("btrfs", "filesystem", "du", "-s", path)
	if err != nil {
		return "?", "?"
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if f := strings.Fields(lines[len(lines)-1]); len(f) >= 3 {
		return f[0], f[1]
	}
	return "?", "?"
}

func rollbackCmd(h host.Host, args []string, stdio cli.IO) int {
	fs := cli.NewFlagSet(Name+" rollback", "NAME | --cancel", "At the next boot, makes snapshot NAME the state (/etc, /var, /home, Docker's data).\nThe state it replaces is kept as an automatic snapshot, so a rollback can be undone.", stdio.Err)
	cancel := fs.Bool("cancel", false, "forget a pending rollback")
	if code, done := cli.Parse(fs, args); done {
		return code
	}
	if *cancel != (fs.NArg() == 0) || fs.NArg() > 1 {
		fmt.Fprintf(stdio.Err, "%s rollback: name one snapshot, or --cancel\n", Name)
		return 2
	}
	if *cancel {
		return snapshotsDo(h, stdio, "rollback", func(t topDirs) error {
			if pending(h, t) == "" {
				fmt.Fprintln(stdio.Out, "no rollback is pending")
				return nil
			}
			if err := h.Remove(filepath.Join(t.snapshots(), rollbackFile)); err != nil {
				return err
			}
			fmt.Fprintln(stdio.Out, "pending rollback forgotten")
			return nil
		})
	}
	name := fs.Arg(0)
	if err := checkSnapshotName(name, false); err != nil {
		return cli.Fail(stdio, Name+" rollback", err)
	}
	return snapshotsDo(h, stdio, "rollback", func(t topDirs) error {
		pre, err := requestRollback(h, t, name)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdio.Out, "rollback to %s at the next boot; the state it replaces will be kept as snapshot %s. Reboot to apply it, or: %s rollback --cancel\n", name, pre, Name)
		return nil
	})
}

// requestRollback records a rollback to snapshot name for the next
// rollbackStep, and returns the name the state it replaces will be kept as.
func requestRollback(h host.Host, t topDirs, name string) (string, error) {
	if !h.Exists(t.snap(name)) {
		return "", fmt.Errorf("no snapshot %s (setup-persistence snapshots lists them)", name)
	}
	// A name no snapshot has: at boot, PRE existing means it was taken.
	pre := autoName("before-rollback", time.Now())
	for i := 2; h.Exists(t.snap(pre)); i++ {
		pre = fmt.Sprintf("%s-%d", autoName("before-rollback", time.Now()), i)
	}
	return pre, h.WriteFile(filepath.Join(t.snapshots(), rollbackFile), []byte(name+" "+pre+"\n"), 0o644)
}

func forgetCmd(h host.Host, args []string, stdio cli.IO) int {
	fs := cli.NewFlagSet(Name+" forget", "NAME", "Deletes snapshot NAME.", stdio.Err)
	if code, done := cli.Parse(fs, args); done {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(stdio.Err, "%s forget: name one snapshot\n", Name)
		return 2
	}
	name := fs.Arg(0)
	if err := checkSnapshotName(name, false); err != nil {
		return cli.Fail(stdio, Name+" forget", err)
	}
	return snapshotsDo(h, stdio, "forget", func(t topDirs) error {
		if !h.Exists(t.snap(name)) {
			return fmt.Errorf("no snapshot %s (setup-persistence snapshots lists them)", name)
		}
		if pending(h, t) == name {
			return fmt.Errorf("snapshot %s is the pending rollback's: rollback --cancel first", name)
		}
		if err := btrfs.DeleteSubvolume(h, t.snap(name)); err != nil {
			return err
		}
		fmt.Fprintf(stdio.Out, "snapshot %s deleted\n", name)
		return nil
	})
}
