package persistence

import (
	"fmt"
	"path/filepath"
	"strings"

	"lightwhale/internal/btrfs"
	"lightwhale/internal/gpt"
	"lightwhale/internal/host"
	"lightwhale/internal/paths"
)

// The steps of add and remove. They run on the mounted data filesystem,
// each checking the filesystem first so that a second run (or a run after
// a reboot) finds its work done or running and does not start it again.

// replaceStep rebuilds a missing member's data on a new device.
type replaceStep struct {
	laterStep
	DevID  uint64
	Device string
}

func (s replaceStep) String() string {
	return fmt.Sprintf("btrfs replace start %d %s %s (rebuild the missing devid %d; in the background)", s.DevID, s.Device, paths.DataDir, s.DevID)
}

func (s replaceStep) Writes() []string { return []string{s.Device} }

func (s replaceStep) Apply(e *env) (string, error) {
	if err := e.lockDiskOf(s.Device); err != nil {
		return "", err
	}
	st, err := btrfs.ReadState(e.h, paths.DataDir)
	if err != nil {
		return "", err
	}
	if st.Replacing {
		return "a replace is already running: not starting a second", nil
	}
	if hasDevice(st, s.Device) {
		return "already a member", nil
	}
	if err := recordReplace(e, s.DevID, s.Device); err != nil {
		return "", err
	}
	if err := btrfs.Replace(e.h, s.DevID, s.Device, paths.DataDir); err != nil {
		return "", err
	}
	// btrfs forks the replace off before it asks the kernel: confirm that
	// the kernel took it (an error after the fork is never printed).
	err = waitFor(func() bool {
		r := btrfs.ReplaceStatus(e.h, paths.DataDir)
		return r.Running || strings.Contains(r.Text, "finished")
	})
	if err != nil {
		return "", fmt.Errorf("the replace of devid %d by %s did not start (btrfs replace status says %q)", s.DevID, s.Device, btrfs.ReplaceStatus(e.h, paths.DataDir).Text)
	}
	return "started", nil
}

// growStep makes btrfs use all of a replacement's partition: a replace
// keeps the size of the member it rebuilt, so a bigger new disk would give
// no room. btrfs resizes only once the replace has ended: until then the
// background follower (restore) does it, as does every boot.
type growStep struct {
	laterStep
	DevID  uint64
	Device string
}

func (s growStep) String() string {
	return fmt.Sprintf("btrfs filesystem resize %d:max %s (use all of %s, once the replace has finished)", s.DevID, paths.DataDir, s.Device)
}

func (s growStep) Apply(e *env) (string, error) {
	st, err := btrfs.ReadState(e.h, paths.DataDir)
	if err != nil {
		return "", err
	}
	if st.Replacing || st.Balancing {
		return "after the running replace or balance, in the background", nil
	}
	note, err := grow(e, st)
	if note == "" {
		note = "already uses its whole partition"
	}
	return note, err
}

// grow resizes every present device that btrfs uses less of than its
// partition holds (by more than a MiB: btrfs counts in 4 KiB sectors) to
// the whole partition. btrfs refuses a resize while a replace or balance
// runs: callers check first.
func grow(e *env, st *btrfs.State) (string, error) {
	var grown []string
	for _, d := range st.Present() {
		// Devid 0 is a replace's target: listed until the replace ends,
		// which can be between reading the state and resizing.
		if d.DevID == 0 {
			continue
		}
		dev, err := e.h.Device(filepath.Base(d.Path))
		if err != nil || dev.Size < d.Size+gpt.MiB {
			continue
		}
		if err := btrfs.GrowDevice(e.h, d.DevID, paths.DataDir); err != nil {
			return strings.Join(grown, "; "), err
		}
		grown = append(grown, fmt.Sprintf("devid %d grown from %d to %d MiB", d.DevID, d.Size/gpt.MiB, dev.Size/gpt.MiB))
	}
	return strings.Join(grown, "; "), nil
}

// addStep adds devices to the filesystem.
type addStep struct {
	laterStep
	Devices []string
}

func (s addStep) String() string {
	return fmt.Sprintf("btrfs device add %s %s", strings.Join(s.Devices, " "), paths.DataDir)
}

func (s addStep) Writes() []string { return s.Devices }

func (s addStep) Apply(e *env) (string, error) {
	st, err := btrfs.ReadState(e.h, paths.DataDir)
	if err != nil {
		return "", err
	}
	for _, d := range s.Devices {
		if err := e.lockDiskOf(d); err != nil {
			return "", err
		}
		if hasDevice(st, d) {
			continue
		}
		if err := btrfs.AddDevice(e.h, d, paths.DataDir); err != nil {
			return "", err
		}
	}
	return "", nil
}

func hasDevice(st *btrfs.State, path string) bool {
	for _, d := range st.Present() {
		if d.Path == path {
			return true
		}
	}
	return false
}

// restoreStep brings every chunk to the profiles the rule gives for the
// number of devices (after a join, after a member rejoined, after a
// degraded spell wrote single chunks). A replace or balance already running
// (btrfs resumes both after a reboot) is left to finish: btrfs runs one at
// a time, and a second would fail or start over. Whatever is left running,
// a background `setup-persistence restore --wait` follows to its end,
// starts the balance a replace still needs, and records the mode.
type restoreStep struct {
	laterStep
	Devices int // expected, for the plan's text; Apply counts the devices itself
	// Join marks the mode "rebuilding" while work runs (motd, status). At
	// boot only a replace does: a resync balance after a member rejoined
	// keeps the mode persistent, as before disks could join.
	Join bool
}

func (s restoreStep) String() string {
	if s.Devices == 0 {
		return "restore the profiles the device count calls for (balance in the background; never a second one)"
	}
	d, m := btrfs.Profile(s.Devices)
	return fmt.Sprintf("restore profiles data %s, metadata %s (balance, in the background, once no replace runs)", d, m)
}

func (s restoreStep) Apply(e *env) (string, error) {
	r, err := restore(e, false)
	if err != nil {
		return r.note, err
	}
	// Mounted degraded, yet no member is missing now: a replace that btrfs
	// resumed at mount (after a power cut) has already ended, and the mode
	// the mount recorded is out of date.
	m, _ := e.h.ReadFile(paths.ModeFile)
	healed := !r.degraded && strings.TrimSpace(string(m)) == "degraded"
	if !r.running {
		if healed {
			dropDegradedWarning(e.h)
			return r.note + "; no member missing any more: mode persistent", e.h.WriteFile(paths.ModeFile, []byte("persistent\n"), 0o644)
		}
		// A replace that btrfs resumed at mount and finished a moment ago:
		// the member it replaced may still be listed missing for minutes.
		// The follower waits for that and records the mode.
		// So does one the kernel cancelled (resumeReplace starts it again).
		rs := btrfs.ReplaceStatus(e.h, paths.DataDir).Text
		if r.degraded && (strings.Contains(rs, "finished") || strings.Contains(rs, "canceled") && e.h.Exists(replaceRecordPath())) {
			if err := e.h.Start(e.self, Name, "restore", "--wait"); err != nil {
				return r.note, err
			}
			return r.note + "; a replace has finished: followed in the background until btrfs lists every member", nil
		}
		return r.note, nil
	}
	if s.Join || r.replacing || healed {
		if err := e.h.WriteFile(paths.ModeFile, []byte("rebuilding\n"), 0o644); err != nil {
			return r.note, err
		}
	}
	if err := e.h.Start(e.self, Name, "restore", "--wait"); err != nil {
		return r.note, err
	}
	return r.note + "; followed in the background (setup-persistence status)", nil
}

// restored is what one look at the filesystem found and did.
type restored struct {
	note      string
	running   bool // a replace or balance is in progress
	replacing bool // a replace is
	started   bool // this look started the balance
	degraded  bool // members are still missing
}

// restore looks at the filesystem once and starts the balance it needs.
// balanced says a balance this process started has already ended: if the
// profiles are still wrong, it failed, which is an error (not a loop).
func restore(e *env, balanced bool) (restored, error) {
	st, err := btrfs.ReadState(e.h, paths.DataDir)
	if err != nil {
		return restored{}, err
	}
	data, meta := btrfs.Profile(len(st.Devices))
	switch {
	case st.Replacing:
		return restored{note: "a replace is running: the balance follows when it ends", running: true, replacing: true}, nil
	case st.Balancing:
		return restored{note: "a balance is running (btrfs resumes one after a reboot): not starting a second", running: true}, nil
	case len(st.Missing()) > 0:
		note, started, err := resumeReplace(e, st)
		if started || err != nil {
			return restored{note: note, running: started, replacing: started, degraded: true}, err
		}
		if note != "" {
			note = "; " + note
		}
		return restored{note: "degraded: profiles are restored once the missing member is replaced" + note, degraded: true}, nil
	}
	e.h.Remove(replaceRecordPath())
	// A replacement bigger than the member it rebuilt: its room first, so
	// that the balance can use it.
	grown, err := grow(e, st)
	if err != nil {
		return restored{}, err
	}
	if grown != "" {
		grown += "; "
	}
	switch {
	case allAre(st.Data, data) && allAre(st.Metadata, meta):
		return restored{note: grown + "profiles already " + describeProfiles(st.Data, st.Metadata)}, nil
	case balanced:
		return restored{}, fmt.Errorf("the balance ended, but the profiles are %s, not data %s, metadata %s: see dmesg", describeProfiles(st.Data, st.Metadata), data, meta)
	}
	if err := btrfs.Convert(e.h, paths.DataDir, data, meta); err != nil {
		return restored{}, err
	}
	// --bg forks before it asks the kernel: until the balance shows, a
	// look would find nothing running and the profiles still wrong.
	err = waitFor(func() bool {
		if btrfs.BalanceStatus(e.h, paths.DataDir).Running {
			return true
		}
		st, err := btrfs.ReadState(e.h, paths.DataDir)
		return err == nil && allAre(st.Data, data) && allAre(st.Metadata, meta)
	})
	if err != nil {
		return restored{}, fmt.Errorf("the balance to data %s, metadata %s did not start (btrfs balance status: %q)", data, meta, btrfs.BalanceStatus(e.h, paths.DataDir).Text)
	}
	return restored{note: fmt.Sprintf("%sbalance to data %s, metadata %s started", grown, data, meta), running: true, started: true}, nil
}

func allAre(have []string, want string) bool {
	for _, h := range have {
		if h != want {
			return false
		}
	}
	return true
}

// convertMetadataStep converts metadata down before a removal, and waits:
// btrfs refuses to remove a device that the metadata profile still needs.
type convertMetadataStep struct {
	laterStep
	Metadata string
}

func (s convertMetadataStep) String() string {
	return fmt.Sprintf("btrfs balance start -f -mconvert=%s,soft %s (metadata copies for the disks that remain; waits)", s.Metadata, paths.DataDir)
}

func (s convertMetadataStep) Apply(e *env) (string, error) {
	_, err := e.h.Run("btrfs", "balance", "start", "-f", "-mconvert="+s.Metadata+",soft", paths.DataDir)
	return "", err
}

// swapoffStep stops using a swap partition of a disk that leaves.
type swapoffStep struct {
	laterStep
	Device string
}

func (s swapoffStep) String() string { return "swapoff " + s.Device }

func (s swapoffStep) Apply(e *env) (string, error) {
	if !host.SwapActive(e.h, s.Device) {
		return "not active", nil
	}
	return "", e.h.Swapoff(s.Device)
}

// removeStep moves a member's data to the others and drops it.
type removeStep struct {
	laterStep
	Device string
}

func (s removeStep) String() string {
	return fmt.Sprintf("btrfs device remove %s %s (moves its data to the other disks first; waits)", s.Device, paths.DataDir)
}

func (s removeStep) Writes() []string { return []string{s.Device} }

func (s removeStep) Apply(e *env) (string, error) {
	st, err := btrfs.ReadState(e.h, paths.DataDir)
	if err != nil {
		return "", err
	}
	if !hasDevice(st, s.Device) {
		return "not a member (already removed)", nil
	}
	return "", btrfs.RemoveDevice(e.h, s.Device, paths.DataDir)
}
