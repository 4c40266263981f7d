package persistence

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lightwhale/internal/btrfs"
	"lightwhale/internal/cli"
	"lightwhale/internal/golden"
	"lightwhale/internal/gpt"
	"lightwhale/internal/host"
	"lightwhale/internal/host/hostfake"
	"lightwhale/internal/paths"
)

const fsid7 = "07000000-0000-0000-0000-000000000000"

// fsState is a mounted data filesystem (FSID 7) of 8 GiB members sda, sdb...
// (devids 1, 2...), devids in missing absent, with profiles data/meta and
// usedGiB of data.
func fsState(n int, missing []uint64, data, meta string, usedGiB uint64) *btrfs.State {
	s := &btrfs.State{FSID: fsid7, Data: []string{data}, Metadata: []string{meta}, Used: usedGiB * gpt.GiB}
	gone := map[uint64]bool{}
	for _, m := range missing {
		gone[m] = true
	}
	for i := 1; i <= n; i++ {
		d := btrfs.Device{DevID: uint64(i), Size: 7678 * gpt.MiB, Path: fmt.Sprintf("/dev/sd%c2", 'a'+i-1)}
		if gone[uint64(i)] {
			d.Path, d.Size, d.Missing = "", 0, true
			s.MissingBytes += 7678 * gpt.MiB
		}
		s.Devices = append(s.Devices, d)
	}
	return s
}

// short names a step and what it acts on, for the table.
func short(s Step) string {
	base := func(p string) string { return filepath.Base(p) }
	switch s := s.(type) {
	case partitionStep:
		return "partition " + s.Disk.Dev.Name
	case registerStep:
		return "register " + s.Disk.Dev.Name
	case mkswapStep:
		return "mkswap " + strings.Join(mapStrings(s.Devices, base), ",")
	case replaceStep:
		return fmt.Sprintf("replace %d %s", s.DevID, base(s.Device))
	case growStep:
		return fmt.Sprintf("grow %d %s", s.DevID, base(s.Device))
	case addStep:
		return "add " + strings.Join(mapStrings(s.Devices, base), ",")
	case renameStep:
		return "rename " + s.Disk.Dev.Name
	case swaponStep:
		return "swapon " + strings.Join(mapStrings(s.Devices, base), ",")
	case restoreStep:
		d, m := btrfs.Profile(s.Devices)
		return "restore " + d + "/" + m
	case convertMetadataStep:
		return "metadata " + s.Metadata
	case swapoffStep:
		return "swapoff " + base(s.Device)
	case removeStep:
		return "remove " + base(s.Device)
	}
	return fmt.Sprintf("%T", s)
}

func mapStrings(in []string, f func(string) string) []string {
	var out []string
	for _, s := range in {
		out = append(out, f(s))
	}
	return out
}

func shorts(p *Plan) []string {
	var out []string
	for _, s := range p.Steps {
		out = append(out, short(s))
	}
	return out
}

func memberDisk(name string, devid, ndev uint64) *Disk {
	return claimed(disk(name, 8), 7, paths.DataLabel, devid, ndev, paths.DataLabel)
}

func TestPlanJoin(t *testing.T) {
	gptLeft := func(d *Disk) *Disk { d.Leftover = "GPT partition table"; return d }
	busy := func(d *Disk) *Disk { d.Busy = d.Dev.Name + " is mounted at /media"; return d }
	boot := func(d *Disk) *Disk { d.BootMedium = true; return d }
	part := func(d *Disk) *Disk { d.Dev.Partition = 1; d.Dev.Name += "1"; d.Dev.Path += "1"; return d }
	// A join cut off after its partition table: consent-named, no filesystem.
	interrupted := func(d *Disk) *Disk { return claimed(d, 0, "", 0, 0, paths.Consent) }
	otherFS := func(d *Disk) *Disk { return claimed(d, 9, paths.ClaimLabel, 1, 1, paths.Consent) }
	headerOnMember := func(d *Disk) *Disk { d.Magic = true; return d }
	for _, tt := range []struct {
		name   string
		fs     *btrfs.State
		disks  []*Disk
		named  []string
		steps  []string
		errors []string // substrings, one per error, in order
		notes  []string
	}{
		{name: "single+1", fs: fsState(1, nil, "single", "dup", 1),
			disks: []*Disk{magic(disk("sdb", 8))},
			steps: []string{"partition sdb", "register sdb", "mkswap sdb1", "add sdb2", "rename sdb", "swapon sdb1", "restore raid1/raid1"}},
		{name: "single+2", fs: fsState(1, nil, "single", "dup", 1),
			disks: []*Disk{magic(disk("sdb", 8)), magic(disk("sdc", 8))},
			steps: []string{"partition sdb", "register sdb", "partition sdc", "register sdc", "mkswap sdb1,sdc1", "add sdb2,sdc2", "rename sdb", "rename sdc", "swapon sdb1,sdc1", "restore raid1/raid1c3"}},
		{name: "raid1-degraded+1", fs: fsState(2, []uint64{2}, "raid1", "raid1", 1),
			disks: []*Disk{memberDisk("sda", 1, 2), magic(disk("sdc", 8))},
			steps: []string{"partition sdc", "register sdc", "mkswap sdc1", "replace 2 sdc2", "rename sdc", "swapon sdc1", "restore raid1/raid1"},
			notes: []string{"/dev/sda already belongs"}},
		{name: "raid1-degraded+1-bigger: the replacement is grown", fs: fsState(2, []uint64{2}, "raid1", "raid1", 1),
			disks: []*Disk{memberDisk("sda", 1, 2), magic(disk("sdc", 16))},
			steps: []string{"partition sdc", "register sdc", "mkswap sdc1", "replace 2 sdc2", "grow 2 sdc2", "rename sdc", "swapon sdc1", "restore raid1/raid1"},
			notes: []string{"/dev/sda already belongs"}},
		{name: "raid1c3-two-missing+2: each replacement may be grown", fs: fsState(3, []uint64{2, 3}, "raid1", "raid1c3", 1),
			disks: []*Disk{memberDisk("sda", 1, 3), magic(disk("sdd", 16)), magic(disk("sde", 16))},
			steps: []string{"partition sdd", "register sdd", "partition sde", "register sde", "mkswap sdd1,sde1", "replace 2 sdd2", "grow 2 sdd2", "replace 3 sde2", "grow 3 sde2", "rename sdd", "rename sde", "swapon sdd1,sde1", "restore raid1/raid1c3"},
			notes: []string{"/dev/sda already belongs"}},
		{name: "raid1-healthy+1", fs: fsState(2, nil, "raid1", "raid1", 1),
			disks: []*Disk{magic(disk("sdc", 8))},
			steps: []string{"partition sdc", "register sdc", "mkswap sdc1", "add sdc2", "rename sdc", "swapon sdc1", "restore raid1/raid1c3"}},
		{name: "raid1c3-healthy+1", fs: fsState(3, nil, "raid1", "raid1c3", 1),
			disks: []*Disk{magic(disk("sdd", 8))},
			steps: []string{"partition sdd", "register sdd", "mkswap sdd1", "add sdd2", "rename sdd", "swapon sdd1", "restore raid1/raid1c4"}},
		{name: "raid1-degraded+2-in-one-plan", fs: fsState(2, []uint64{1}, "raid1", "raid1", 1),
			disks: []*Disk{magic(disk("sdc", 8)), memberDisk("sdb", 2, 2), magic(disk("sdd", 8))},
			steps: []string{"partition sdc", "register sdc", "partition sdd", "register sdd", "mkswap sdc1,sdd1", "add sdd2", "replace 1 sdc2", "rename sdc", "rename sdd", "swapon sdc1,sdd1", "restore raid1/raid1c3"},
			notes: []string{"/dev/sdb already belongs"}},
		{name: "degraded: the first disk too small to replace, the second does it", fs: fsState(2, []uint64{2}, "raid1", "raid1", 1),
			disks:  []*Disk{magic(disk("sdc", 4)), magic(disk("sdd", 8))},
			steps:  []string{"partition sdd", "register sdd", "mkswap sdd1", "replace 2 sdd2", "rename sdd", "swapon sdd1", "restore raid1/raid1"},
			errors: []string{"/dev/sdc not joined: too small to replace the missing devid 2"}},
		{name: "interrupted join continues from mkswap", fs: fsState(1, nil, "single", "dup", 1),
			disks: []*Disk{interrupted(disk("sdb", 8))},
			steps: []string{"register sdb", "mkswap sdb1", "add sdb2", "rename sdb", "swapon sdb1", "restore raid1/raid1"}},
		{name: "boot: disks without the header are skipped silently", fs: fsState(1, nil, "single", "dup", 1),
			disks:  []*Disk{disk("sdb", 8), otherFS(disk("sdc", 8))},
			errors: []string{"/dev/sdc not joined: its partition /dev/sdc2 holds another btrfs filesystem"}},
		{name: "header on a member of this filesystem: ignored", fs: fsState(2, nil, "raid1", "raid1", 1),
			disks: []*Disk{headerOnMember(memberDisk("sdb", 2, 2))},
			notes: []string{"/dev/sdb already belongs to the data filesystem: ignored"}},
		{name: "add: no header", fs: fsState(1, nil, "single", "dup", 1), named: []string{"/dev/sdb"},
			disks:  []*Disk{disk("sdb", 8)},
			errors: []string{"/dev/sdb not joined: it does not start with the consent header (write it with: setup-persistence enable /dev/sdb)"}},
		{name: "add: mounted", fs: fsState(1, nil, "single", "dup", 1), named: []string{"/dev/sdb"},
			disks:  []*Disk{busy(magic(disk("sdb", 8)))},
			errors: []string{"/dev/sdb not joined: sdb is mounted at /media"}},
		{name: "add: boot medium", fs: fsState(1, nil, "single", "dup", 1), named: []string{"/dev/sdb"},
			disks:  []*Disk{boot(magic(disk("sdb", 8)))},
			errors: []string{"/dev/sdb not joined: it is the Lightwhale boot medium"}},
		{name: "add: partition", fs: fsState(1, nil, "single", "dup", 1), named: []string{"/dev/sdb1"},
			disks:  []*Disk{part(magic(disk("sdb", 8)))},
			errors: []string{"/dev/sdb1 not joined: it is a partition, not a whole disk"}},
		{name: "add: another partition table", fs: fsState(1, nil, "single", "dup", 1), named: []string{"/dev/sdb"},
			disks:  []*Disk{gptLeft(magic(disk("sdb", 8)))},
			errors: []string{"/dev/sdb not joined: it holds a GPT partition table besides the consent header; to erase it: setup-persistence enable --force /dev/sdb"}},
		{name: "add: too small for a data partition", fs: fsState(1, nil, "single", "dup", 0), named: []string{"/dev/sdb"},
			disks:  []*Disk{magic(&Disk{Dev: hostDevice("sdb", 100*gpt.MiB)})},
			errors: []string{"/dev/sdb not joined: disk of 100 MiB is too small"}},
		{name: "add: smaller than the data", fs: fsState(1, nil, "single", "dup", 5), named: []string{"/dev/sdb"},
			disks:  []*Disk{magic(disk("sdb", 4))},
			errors: []string{"/dev/sdb not joined: too small: the filesystem holds 5120 MiB, which must fit 2 times (data raid1)"}},
		{name: "add: while a replace runs", fs: func() *btrfs.State { s := fsState(2, []uint64{2}, "raid1", "raid1", 1); s.Replacing = true; return s }(),
			named: []string{"/dev/sdc"}, disks: []*Disk{magic(disk("sdc", 8))},
			errors: []string{"/dev/sdc not joined: a btrfs replace is running"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := PlanJoin(tt.disks, tt.fs, tt.named, seqGUID())
			if diff := cmp.Diff(tt.steps, shorts(p)); diff != "" {
				t.Errorf("steps (-want +got):\n%s\n%s", diff, p)
			}
			checkLines(t, "error", p.Errors, tt.errors)
			checkLines(t, "note", p.Notes, tt.notes)
			for _, e := range p.Errors {
				if strings.Contains(e, "\n") {
					t.Errorf("error is not one line: %q", e)
				}
			}
			// Nothing is written to a disk the plan refused or ignored.
			for _, s := range p.Steps {
				w, ok := s.(writer)
				if !ok {
					continue
				}
				for _, path := range w.Writes() {
					for _, e := range append(p.Errors, p.Notes...) {
						if dev, _, _ := strings.Cut(e, " "); strings.HasPrefix(path, dev) {
							t.Errorf("step %q writes %s, which the plan refused or ignored", s, path)
						}
					}
				}
			}
		})
	}
}

func hostDevice(name string, size uint64) host.Device {
	return host.Device{Name: name, Path: "/dev/" + name, Size: size, SectorSize: 512}
}

func checkLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%ss: got %q, want %d containing %q", what, got, len(want), want)
		return
	}
	for i := range want {
		if !strings.Contains(got[i], want[i]) {
			t.Errorf("%s %d: %q does not contain %q", what, i, got[i], want[i])
		}
	}
}

func TestPlanRemove(t *testing.T) {
	swapOn := func(d *Disk) *Disk { return d }
	for _, tt := range []struct {
		name   string
		fs     *btrfs.State
		disks  []*Disk
		target string
		steps  []string
		errors []string
	}{
		{name: "raid1c3 at 3 disks: metadata down to raid1, then remove", fs: fsState(3, nil, "raid1", "raid1c3", 1),
			disks: []*Disk{memberDisk("sda", 1, 3), memberDisk("sdb", 2, 3), swapOn(memberDisk("sdc", 3, 3))}, target: "/dev/sdc",
			steps: []string{"metadata raid1", "swapoff sdc1", "remove sdc2"}},
		{name: "raid1c4 at 4 disks: down to raid1c3", fs: fsState(4, nil, "raid1", "raid1c4", 1),
			disks: []*Disk{memberDisk("sda", 1, 4), memberDisk("sdb", 2, 4), memberDisk("sdc", 3, 4), memberDisk("sdd", 4, 4)}, target: "/dev/sdb",
			steps: []string{"metadata raid1c3", "swapoff sdb1", "remove sdb2"}},
		{name: "raid1 at 2 disks: convert down first", fs: fsState(2, nil, "raid1", "raid1", 1),
			disks: []*Disk{memberDisk("sda", 1, 2), memberDisk("sdb", 2, 2)}, target: "/dev/sdb",
			errors: []string{"/dev/sdb not removed: it would leave 1 disk(s), and data raid1 needs 2; convert down first (gives up redundancy): btrfs balance start -f -dconvert=single -mconvert=dup /mnt/lightwhale-data"}},
		{name: "converted down to single/dup: removes", fs: fsState(2, nil, "single", "dup", 1),
			disks: []*Disk{memberDisk("sda", 1, 2), memberDisk("sdb", 2, 2)}, target: "/dev/sda",
			steps: []string{"swapoff sda1", "remove sda2"}},
		{name: "degraded: never", fs: fsState(3, []uint64{3}, "raid1", "raid1c3", 1),
			disks: []*Disk{memberDisk("sda", 1, 3), memberDisk("sdb", 2, 3)}, target: "/dev/sdb",
			errors: []string{"/dev/sdb not removed: the data filesystem is degraded (devid 3 is missing)"}},
		{name: "not a member", fs: fsState(2, nil, "raid1", "raid1", 1),
			disks: []*Disk{memberDisk("sda", 1, 2), memberDisk("sdb", 2, 2), magic(disk("sdc", 8))}, target: "/dev/sdc",
			errors: []string{"/dev/sdc not removed: it is not a member of the data filesystem"}},
		{name: "the only disk", fs: fsState(1, nil, "single", "dup", 1),
			disks: []*Disk{memberDisk("sda", 1, 1)}, target: "/dev/sda",
			errors: []string{"/dev/sda not removed: it is the only disk"}},
		{name: "the rest too small", fs: fsState(3, nil, "raid1", "raid1c3", 8),
			disks: []*Disk{memberDisk("sda", 1, 3), memberDisk("sdb", 2, 3), memberDisk("sdc", 3, 3)}, target: "/dev/sda",
			errors: []string{"/dev/sda not removed: the other disks have too little room for 8192 MiB of data in 2 copies"}},
		{name: "while a balance runs", fs: func() *btrfs.State { s := fsState(3, nil, "raid1", "raid1c3", 1); s.Balancing = true; return s }(),
			disks: []*Disk{memberDisk("sda", 1, 3), memberDisk("sdb", 2, 3), memberDisk("sdc", 3, 3)}, target: "/dev/sda",
			errors: []string{"/dev/sda not removed: a btrfs replace or balance is running"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := PlanRemove(tt.disks, tt.fs, tt.target)
			if diff := cmp.Diff(tt.steps, shorts(p)); diff != "" {
				t.Errorf("steps (-want +got):\n%s\n%s", diff, p)
			}
			checkLines(t, "error", p.Errors, tt.errors)
			if len(p.Errors) > 0 && len(p.Steps) > 0 {
				t.Errorf("a refused removal has steps:\n%s", p)
			}
		})
	}
}

// TestJoinPlanText pins what --dry-run prints for a join and a removal.
func TestJoinPlanText(t *testing.T) {
	var b strings.Builder
	b.WriteString("# degraded RAID1, two new disks\n")
	b.WriteString(PlanJoin([]*Disk{memberDisk("sdb", 2, 2), magic(disk("sdc", 8)), magic(disk("sdd", 8))}, fsState(2, []uint64{1}, "raid1", "raid1", 1), nil, seqGUID()).String())
	b.WriteString("# degraded RAID1, a bigger new disk\n")
	b.WriteString(PlanJoin([]*Disk{memberDisk("sda", 1, 2), magic(disk("sdc", 16))}, fsState(2, []uint64{2}, "raid1", "raid1", 1), nil, seqGUID()).String())
	b.WriteString("# remove from three disks\n")
	b.WriteString(PlanRemove([]*Disk{memberDisk("sda", 1, 3), memberDisk("sdb", 2, 3), memberDisk("sdc", 3, 3)}, fsState(3, nil, "raid1", "raid1c3", 1), "/dev/sdc").String())
	golden.Check(t, filepath.Join("testdata", "join-plans.golden"), b.String())
}

// The time left is extrapolated from the first sight of the operation.
func TestEstimate(t *testing.T) {
	h := hostfake.New(t.TempDir())
	t0 := time.Unix(1_000_000, 0)
	if got := estimate(h, "replace", 10, t0); got != "" {
		t.Errorf("first look: %q, want no estimate yet", got)
	}
	// 10 % -> 40 % in 60 s: 0.5 %/s, 60 % left: 2 minutes.
	if got := estimate(h, "replace", 40, t0.Add(time.Minute)); got != "about 2m0s left" {
		t.Errorf("estimate %q", got)
	}
	// Slower since: 30 % in 120 s, 60 % left: 4 minutes.
	if got := estimate(h, "replace", 40, t0.Add(2*time.Minute)); got != "about 4m0s left" {
		t.Errorf("estimate %q", got)
	}
	if got := estimate(h, "replace", 10, t0.Add(3*time.Minute)); got != "" {
		t.Errorf("no progress since the first look: %q", got)
	}
	resetBaseline(h, "replace")
	if got := estimate(h, "replace", 50, t0.Add(3*time.Minute)); got != "" {
		t.Errorf("after a reset: %q, want a new first look", got)
	}
}

// add and remove check their operands before touching anything.
func TestJoinCommandLine(t *testing.T) {
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"add"}, 2, "add needs at least one whole disk"},
		{[]string{"add", "--force", "/dev/x"}, 2, "flag provided but not defined: -force"},
		{[]string{"remove"}, 2, "remove needs exactly one whole disk"},
		{[]string{"remove", "/dev/x", "/dev/y"}, 2, "remove needs exactly one whole disk"},
		{[]string{"restore", "--bogus"}, 2, "flag provided but not defined: -bogus"},
		{[]string{"restore", "extra"}, 2, `unexpected argument "extra"`},
	} {
		var o, e bytes.Buffer
		if code := Main(tt.args, cli.IO{In: strings.NewReader(""), Out: &o, Err: &e}); code != tt.code {
			t.Errorf("%v: exit %d, want %d", tt.args, code, tt.code)
		}
		if !strings.Contains(e.String(), tt.want) || strings.Count(strings.TrimSpace(e.String()), "\n") > 0 && tt.code != 2 {
			t.Errorf("%v: stderr %q, want %q", tt.args, e.String(), tt.want)
		}
		if o.Len() != 0 {
			t.Errorf("%v: stdout %q", tt.args, o.String())
		}
	}
}

// failStep fails, as a btrfs command refused by the kernel would.
type failStep struct{ claimStep }

func (failStep) String() string               { return "a step that fails" }
func (failStep) Apply(e *env) (string, error) { return "", fmt.Errorf("refused") }

// An online plan (add, remove) stops at its first failure and leaves the
// mounted filesystem alone: no tmpfs fallback even for a fatal kind of step.
func TestOnlinePlanStopsWithoutFallback(t *testing.T) {
	h := hostfake.New(t.TempDir())
	var o, e bytes.Buffer
	p := &Plan{Online: true, Steps: []Step{failStep{}, modeStep{Mode: "never"}}}
	if code := newApplier(h, &o, &e).run(p); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if got := fstypeAt(h, paths.DataDir); got != "" {
		t.Errorf("%s mounted (%s) after a failed online plan", paths.DataDir, got)
	}
	if h.Exists(paths.ModeFile) {
		t.Error("the plan went on after its failed step")
	}
	if !strings.Contains(e.String(), "step 1 failed: a step that fails: refused") {
		t.Errorf("stderr %q", e.String())
	}
}

// btrfsHost answers the btrfs status commands with canned output, as a
// mounted filesystem would.
type btrfsHost struct {
	*hostfake.Fake
	show, df string
}

func (h btrfsHost) Run(name string, args ...string) ([]byte, error) {
	cmd := name + " " + strings.Join(args, " ")
	switch {
	case strings.HasPrefix(cmd, "btrfs filesystem show"):
		return []byte(h.show), nil
	case strings.HasPrefix(cmd, "btrfs filesystem df"):
		return []byte(h.df), nil
	case strings.HasPrefix(cmd, "btrfs replace status"):
		return []byte("Started on 1.Dec 01:00:00, finished on 1.Dec 01:00:01, 0 write errs, 0 uncorr. read errs\n"), nil
	case strings.HasPrefix(cmd, "btrfs balance status"):
		return []byte("No balance found on '" + paths.DataDir + "'\n"), nil
	}
	return h.Fake.Run(name, args...)
}

// A replace that btrfs resumed at a degraded mount (after a power cut) and
// finished before boot's restore looked: the mode the mount recorded
// (degraded) becomes persistent and the DEGRADED warning goes; a member
// still missing keeps both.
func TestRestoreAfterResumedReplace(t *testing.T) {
	for _, tt := range []struct {
		name, show string
		mode, warn string
	}{
		{"healed", "uuid: " + fsid7 + "\n\tdevid    1 size 8050966528 used 1 path /dev/vdb2\n\tdevid    2 size 4024434688 used 1 path /dev/vda2\n", "persistent", ""},
		{"still degraded", "uuid: " + fsid7 + "\n\tdevid    1 size 0 used 0 path <missing disk> MISSING\n\tdevid    2 size 4024434688 used 1 path /dev/vda2\n", "degraded", "is DEGRADED: "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := btrfsHost{Fake: hostfake.New(t.TempDir()), show: tt.show,
				df: "Data, RAID1: total=1073741824, used=1048576\nMetadata, RAID1: total=268435456, used=65536\nSystem, RAID1: total=8388608, used=16384\n"}
			h.MkdirAll(paths.RunDir, 0o755)
			h.WriteFile(paths.ModeFile, []byte("degraded\n"), 0o644)
			h.WriteFile(paths.Warnings, []byte("data filesystem "+fsid7+" is DEGRADED: 1 of 2 devices present\n"), 0o644)
			var o, e bytes.Buffer
			if code := newApplier(h, &o, &e).run(&Plan{Online: true, Steps: []Step{restoreStep{}}}); code != 0 {
				t.Fatalf("exit %d: %s%s", code, o.String(), e.String())
			}
			m, _ := h.ReadFile(paths.ModeFile)
			w, _ := h.ReadFile(paths.Warnings)
			if strings.TrimSpace(string(m)) != tt.mode || !strings.Contains(string(w), tt.warn) || tt.warn == "" && len(bytes.TrimSpace(w)) > 0 {
				t.Errorf("mode %q, warnings %q; want %q and %q\n%s", m, w, tt.mode, tt.warn, o.String())
			}
		})
	}
}
