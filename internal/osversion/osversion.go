// Package osversion keeps the Lightwhale versions installed on the data
// filesystem by `lightwhale upgrade`, and decides at each boot which one
// runs: a new version is a trial with a bounded number of boots to become
// healthy (Docker answering, data mounted); one that does not is abandoned
// and the state rolled back to the snapshot taken before it was installed.
// The state machine here is pure; the boot and the applets do the I/O.
package osversion

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"lightwhale/internal/atomicfile"
)

// The files of an installed version, in VersionDir, with the names they
// have on the ISO (boot/vmlinuz, boot/initrd.img, lightwhale/...).
const (
	Kernel    = "vmlinuz"
	Initrd    = "initrd.img"
	Image     = "rootfs.squashfs"
	Manifest  = "manifest"
	Signature = "manifest.sig"
)

// In paths.OSDir: the state and a log of what the boots decided.
const (
	stateFile = "state.json"
	logFile   = "log"
)

// DefaultTrialBoots is how many boots a trial version gets to become healthy.
const DefaultTrialBoots = 2

// Keep is how many installed versions are kept (the new one included).
const Keep = 2

// Status of an installed version.
type Status string

const (
	Trial   Status = "trial"   // installed, not yet healthy
	Good    Status = "good"    // was healthy once
	Bad     Status = "bad"     // a trial abandoned: never runs again by itself
	Retired Status = "retired" // left by hand (rollback-os)
)

// Version is one installed version.
type Version struct {
	Version    string    `json:"version"`
	Status     Status    `json:"status"`
	Installed  time.Time `json:"installed"`
	From       string    `json:"from"`               // the version that installed it
	Snapshot   string    `json:"snapshot,omitempty"` // the state before it was installed
	TrialBoots int       `json:"trial_boots"`        // boots switched into it as a trial
	MaxTrials  int       `json:"max_trial_boots"`
	Reason     string    `json:"reason,omitempty"` // why it is bad or retired
	// Unarrived counts switches into it whose boot never reached its own
	// persistence setup (a kernel or root image that does not boot).
	Unarrived int `json:"unarrived,omitempty"`
	// HealthWithin bounds each trial boot's wait for healthy, in seconds
	// (0: DefaultHealthWithin); then the trial boot restarts the machine.
	HealthWithin int `json:"health_within,omitempty"`
}

// DefaultHealthWithin is how long a trial boot waits to become healthy.
const DefaultHealthWithin = 10 * time.Minute

// MaxUnarrived is how many switches into a good version may fail to
// arrive before it is given up: a good version that stopped booting (its
// files damaged) must not make every boot a loop through it.
const MaxUnarrived = 2

// State is what paths.OSDir/state.json holds.
type State struct {
	Versions []Version `json:"versions"`
	// Switching is the version the last boot of the medium switched to,
	// until that version's boot says it arrived.
	Switching string `json:"switching,omitempty"`
	// Medium is the boot medium's version, as its last boot said.
	Medium string `json:"medium,omitempty"`
	// Notice is the last thing a boot gave up on (a trial abandoned, a
	// version that stopped booting), for the motd until the next upgrade.
	Notice string `json:"notice,omitempty"`
}

// VersionDir is where version v's files are, under dir (paths.OSDir).
func VersionDir(dir, v string) string { return filepath.Join(dir, "versions", v) }

var versionRE = regexp.MustCompile(`^[0-9]+(\.[0-9]+){0,3}(-[0-9A-Za-z.]{1,32})?$`)

// CheckVersion refuses what is not a version string like 1.2.3 or
// 1.2.3-rc1: it becomes a directory name.
func CheckVersion(v string) error {
	if !versionRE.MatchString(v) {
		return fmt.Errorf("version %q: want numbers and dots, optionally -suffix (e.g. 1.2.3 or 1.2.3-rc1)", v)
	}
	return nil
}

// Compare orders versions: numbers field by field, and a release after its
// pre-releases (1.2.0-rc1 < 1.2.0). Strings that are not versions ("dev")
// come before every version.
func Compare(a, b string) int {
	if (CheckVersion(a) == nil) != (CheckVersion(b) == nil) {
		if CheckVersion(a) == nil {
			return 1
		}
		return -1
	}
	split := func(v string) ([]int, string) {
		num, pre, _ := strings.Cut(v, "-")
		var n []int
		for _, f := range strings.Split(num, ".") {
			i, _ := strconv.Atoi(f)
			n = append(n, i)
		}
		return n, pre
	}
	an, ap := split(a)
	bn, bp := split(b)
	for i := 0; i < len(an) || i < len(bn); i++ {
		var x, y int
		if i < len(an) {
			x = an[i]
		}
		if i < len(bn) {
			y = bn[i]
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	switch {
	case ap == bp:
		return 0
	case ap == "":
		return 1
	case bp == "":
		return -1
	}
	return strings.Compare(ap, bp)
}

// Load reads the state in dir; none is an empty state.
func Load(dir string) (State, error) {
	var s State
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%s: %w", filepath.Join(dir, stateFile), err)
	}
	return s, nil
}

// Save writes the state atomically: a power cut leaves the old or the new.
func (s State) Save(dir string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, stateFile), append(b, '\n'), 0o644)
}

// Log appends a dated line to dir's log (and says nothing on error: the
// caller tells the console too).
func Log(dir string, now time.Time, format string, a ...any) {
	f, err := os.OpenFile(filepath.Join(dir, logFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %s\n", now.UTC().Format(time.RFC3339), fmt.Sprintf(format, a...))
	f.Sync()
}

// LogPath is the log's path in dir, for status.
func LogPath(dir string) string { return filepath.Join(dir, logFile) }

// Find returns the installed version v, or nil.
func (s *State) Find(v string) *Version {
	for i := range s.Versions {
		if s.Versions[i].Version == v {
			return &s.Versions[i]
		}
	}
	return nil
}

// Install adds v as the trial (replacing a trial not yet healthy) and
// returns the versions to delete so that at most Keep stay installed:
// never running, and the good ones last.
func (s *State) Install(v Version, running string) (remove []string) {
	s.Notice = ""
	v.Status = Trial
	v.TrialBoots = 0
	if v.MaxTrials < 1 {
		v.MaxTrials = DefaultTrialBoots
	}
	var kept []Version
	for _, o := range s.Versions {
		if o.Version == v.Version || (o.Status == Trial && o.Version != running) {
			if o.Version != v.Version {
				remove = append(remove, o.Version)
			}
			continue
		}
		kept = append(kept, o)
	}
	// Oldest first among the ones that may go: bad and retired, then good.
	rank := map[Status]int{Bad: 0, Retired: 0, Trial: 1, Good: 2}
	sort.SliceStable(kept, func(i, j int) bool {
		if rank[kept[i].Status] != rank[kept[j].Status] {
			return rank[kept[i].Status] < rank[kept[j].Status]
		}
		return Compare(kept[i].Version, kept[j].Version) < 0
	})
	for len(kept) >= Keep {
		i := 0
		for i < len(kept) && kept[i].Version == running {
			i++
		}
		if i == len(kept) {
			break
		}
		remove = append(remove, kept[i].Version)
		kept = append(kept[:i], kept[i+1:]...)
	}
	s.Versions = append(kept, v)
	sort.SliceStable(s.Versions, func(i, j int) bool { return Compare(s.Versions[i].Version, s.Versions[j].Version) < 0 })
	return remove
}

// Decision is what a boot does about the installed versions.
type Decision struct {
	Run       string // switch to this installed version ("": go on with the running one)
	Abandoned string // the trial given up on at this boot
	Rollback  string // the state snapshot to roll back to (the abandoned trial's)
	Why       string // one line for the console, the log and the motd
}

// AtBoot decides, on a boot of the medium's version `running` (fromMedium)
// or of an installed one, and updates the state: a trial with boots left
// gets one more (counted before the switch, so a trial that never comes
// back to say it is healthy runs out); one without is abandoned (bad) and
// the state rolled back to its snapshot; then the newest good version
// newer than the medium's runs. An installed version just goes on.
func (s *State) AtBoot(running string, fromMedium bool) Decision {
	var d Decision
	if !fromMedium {
		return d
	}
	if v := s.Find(s.Switching); v != nil {
		v.Unarrived++
		if v.Status == Good && v.Unarrived >= MaxUnarrived {
			v.Status = Bad
			v.Reason = fmt.Sprintf("did not boot after %d switches", v.Unarrived)
			d.Why = fmt.Sprintf("%s given up: %s", v.Version, v.Reason)
		}
	}
	s.Switching = ""
	s.Medium = running
	defer func() {
		if d.Run != "" {
			s.Switching = d.Run
		}
	}()
	for i := range s.Versions {
		t := &s.Versions[i]
		if t.Status != Trial {
			continue
		}
		if t.TrialBoots < t.MaxTrials {
			t.TrialBoots++
			d.Run = t.Version
			d.Why = fmt.Sprintf("trying %s (trial boot %d of %d)", t.Version, t.TrialBoots, t.MaxTrials)
			return d
		}
		t.Status = Bad
		t.Reason = fmt.Sprintf("not healthy (Docker answering, data mounted) after %d trial boot(s)", t.TrialBoots)
		d.Abandoned, d.Rollback = t.Version, t.Snapshot
		if d.Why != "" {
			d.Why += "; "
		}
		d.Why += fmt.Sprintf("upgrade to %s abandoned: %s", t.Version, t.Reason)
		if t.Snapshot != "" {
			d.Why += "; the state is rolled back to snapshot " + t.Snapshot
		}
	}
	if d.Why != "" {
		s.Notice = d.Why
	}
	if g := s.newestGood(); g != "" && Compare(g, running) > 0 {
		d.Run = g
		if d.Why != "" {
			d.Why += "; "
		}
		d.Why += "running " + g
	}
	return d
}

func (s *State) newestGood() string {
	best := ""
	for _, v := range s.Versions {
		if v.Status == Good && (best == "" || Compare(v.Version, best) > 0) {
			best = v.Version
		}
	}
	return best
}

// Arrived records that running, an installed version, booted as far as
// its own persistence setup.
func (s *State) Arrived(running string) {
	if s.Switching == running {
		s.Switching = ""
	}
	if v := s.Find(running); v != nil {
		v.Unarrived = 0
	}
}

// Healthy records that running reached healthy: a trial becomes good.
// It reports whether anything changed.
func (s *State) Healthy(running string) bool {
	if v := s.Find(running); v != nil && v.Status == Trial {
		v.Status, v.Reason = Good, ""
		return true
	}
	return false
}

// Next is the version the next boot of a medium with version medium runs.
func (s State) Next(medium string) string {
	c := State{Versions: append([]Version(nil), s.Versions...)}
	if d := c.AtBoot(medium, true); d.Run != "" {
		return d.Run
	}
	return medium
}

// RollbackOS leaves version running (an installed one) or a pending trial
// by hand: it is retired, so the next boot runs the previous good version
// or the medium's. It returns the version retired.
func (s *State) RollbackOS(running string, now time.Time) (string, error) {
	target := s.Find(running)
	if target == nil || (target.Status != Good && target.Status != Trial) {
		target = nil
		for i := range s.Versions {
			if s.Versions[i].Status == Trial {
				target = &s.Versions[i]
			}
		}
	}
	if target == nil {
		return "", fmt.Errorf("this machine runs %s from its boot medium and no upgrade is pending: there is no version to go back from", running)
	}
	target.Status = Retired
	target.Reason = "rolled back by hand at " + now.UTC().Format(time.RFC3339)
	return target.Version, nil
}

// Lock takes the state's lock in dir: whoever loads, changes and saves the
// state (upgrade, rollback-os, health) holds it, so that none overwrites
// another's change. It waits; unlock releases it.
func Lock(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}
