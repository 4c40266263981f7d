package btrfs

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// State is a mounted filesystem as btrfs reports it: what the planners of
// add and remove decide from.
type State struct {
	FSID           string
	Devices        []Device // every devid, present or missing
	Data, Metadata []string // profiles in use, lower case ("raid1"; several while converting)
	Used           uint64   // bytes of data, metadata and system, one copy
	MissingBytes   uint64   // total size of the missing devices
	// Replacing and Balancing: such an operation runs (or is paused, or
	// was resumed by the kernel after a reboot); btrfs runs one at a time.
	Replacing, Balancing bool
}

// Device is one member of a filesystem.
type Device struct {
	DevID   uint64
	Path    string // "" when missing
	Size    uint64
	Missing bool
}

// Present returns the devices that are there.
func (s *State) Present() []Device {
	var out []Device
	for _, d := range s.Devices {
		if !d.Missing {
			out = append(out, d)
		}
	}
	return out
}

// Missing returns the devices that are not.
func (s *State) Missing() []Device {
	var out []Device
	for _, d := range s.Devices {
		if d.Missing {
			out = append(out, d)
		}
	}
	return out
}

// MinDevices is how many devices a profile needs to be written at all.
func MinDevices(profile string) int {
	switch profile {
	case "raid1", "raid10", "raid5":
		return 2
	case "raid1c3", "raid6":
		return 3
	case "raid1c4":
		return 4
	}
	return 1 // single, dup
}

// Copies is how many devices hold each byte under a data profile.
func Copies(profile string) int {
	switch profile {
	case "raid1", "raid10", "dup":
		return 2
	case "raid1c3":
		return 3
	case "raid1c4":
		return 4
	}
	return 1
}

// Fits tells whether used bytes fit, copies times on distinct devices, on
// devices of these sizes: each device can hold at most one copy of any
// byte, so a device counts for at most used bytes.
func Fits(sizes []uint64, used uint64, copies int) bool {
	if len(sizes) < copies {
		return false
	}
	var room uint64
	for _, s := range sizes {
		room += min(s, used)
	}
	return room >= used*uint64(copies)
}

var (
	showUUID   = regexp.MustCompile(`uuid: ([0-9a-f-]{36})`)
	showDevice = regexp.MustCompile(`^\s*devid\s+(\d+) size (\d+) used \d+ path (.*)$`)
)

// ParseShow reads `btrfs filesystem show --raw MNT`: the UUID and every
// device, a missing one ending in MISSING (or shown as "<missing disk>").
func ParseShow(out string) (fsid string, devs []Device) {
	if m := showUUID.FindStringSubmatch(out); m != nil {
		fsid = m[1]
	}
	for _, line := range strings.Split(out, "\n") {
		m := showDevice.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		id, _ := strconv.ParseUint(m[1], 10, 64)
		size, _ := strconv.ParseUint(m[2], 10, 64)
		path := strings.TrimSpace(m[3])
		missing := strings.HasSuffix(path, "MISSING") || strings.Contains(path, "<missing")
		if missing {
			path = ""
		}
		devs = append(devs, Device{DevID: id, Path: path, Size: size, Missing: missing})
	}
	return fsid, devs
}

var dfLine = regexp.MustCompile(`^(Data|Metadata|System), ([A-Za-z0-9]+): total=(\d+), used=(\d+)`)

// ParseDf reads `btrfs filesystem df -b MNT`: the profiles in use and the
// bytes used (one copy).
func ParseDf(out string) (data, meta []string, used uint64) {
	for _, line := range strings.Split(out, "\n") {
		m := dfLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		u, _ := strconv.ParseUint(m[4], 10, 64)
		used += u
		prof := strings.ToLower(m[2])
		switch m[1] {
		case "Data":
			data = append(data, prof)
		case "Metadata":
			meta = append(meta, prof)
		}
	}
	return data, meta, used
}

var missingLine = regexp.MustCompile(`(?m)^\s*Device missing:\s+(\d+)`)

// ReadState asks btrfs about the filesystem mounted at mnt.
func ReadState(r Runner, mnt string) (*State, error) {
	show, err := r.Run("btrfs", "filesystem", "show", "--raw", mnt)
	if err != nil {
		return nil, err
	}
	s := &State{}
	s.FSID, s.Devices = ParseShow(string(show))
	if s.FSID == "" || len(s.Devices) == 0 {
		return nil, fmt.Errorf("btrfs filesystem show %s: no filesystem in the output: %q", mnt, show)
	}
	df, err := r.Run("btrfs", "filesystem", "df", "-b", mnt)
	if err != nil {
		return nil, err
	}
	s.Data, s.Metadata, s.Used = ParseDf(string(df))
	// A missing device's size is not in `show` (it says 0); usage has the
	// total of the missing ones.
	if len(s.Missing()) > 0 {
		if u, err := r.Run("btrfs", "filesystem", "usage", "-b", mnt); err == nil {
			if m := missingLine.FindStringSubmatch(string(u)); m != nil {
				s.MissingBytes, _ = strconv.ParseUint(m[1], 10, 64)
			}
		}
	}
	s.Replacing = ReplaceStatus(r, mnt).Running
	s.Balancing = BalanceStatus(r, mnt).Running
	return s, nil
}

// AddDevice adds dev to the filesystem at mnt. Without -f, btrfs refuses a
// device that holds a filesystem: a last guard against writing data.
func AddDevice(r Runner, dev, mnt string) error {
	_, err := r.Run("btrfs", "device", "add", dev, mnt)
	return err
}

// Replace starts, in the background, the rebuild of devid's data onto dev
// (btrfs forks it itself and resumes it after a reboot).
func Replace(r Runner, devid uint64, dev, mnt string) error {
	_, err := r.Run("btrfs", "replace", "start", strconv.FormatUint(devid, 10), dev, mnt)
	return err
}

// RemoveDevice moves dev's data to the other devices, then drops it from
// the filesystem (and wipes its superblock). It waits until that is done.
func RemoveDevice(r Runner, dev, mnt string) error {
	_, err := r.Run("btrfs", "device", "remove", dev, mnt)
	return err
}

// Convert starts, in the background, a balance of every chunk not yet in
// these profiles ("soft": chunks already converted are skipped, so a
// restart continues rather than starts over).
func Convert(r Runner, mnt, data, meta string) error {
	_, err := r.Run("btrfs", "balance", "start", "--bg", "-dconvert="+data+",soft", "-mconvert="+meta+",soft", mnt)
	return err
}

// Progress is a long operation's state, from its status command.
type Progress struct {
	Running bool
	Percent float64 // done, -1 if unknown
	Left    string  // btrfs's estimate of the time left, "" if none
	Text    string  // the tool's own words, one line
}

var (
	balanceLeft = regexp.MustCompile(`(\d+) out of about (\d+) chunks balanced.*?(\d+)% left`)
	replaceDone = regexp.MustCompile(`([0-9.]+)% done`)
	scrubPct    = regexp.MustCompile(`Bytes scrubbed:.*\(([0-9.]+)%\)`)
	scrubLeft   = regexp.MustCompile(`(?m)^\s*Time left:\s+(\S+)`)
)

// ParseBalance reads `btrfs balance status MNT`.
func ParseBalance(out string) Progress {
	p := Progress{Percent: -1, Text: firstLine(out)}
	if !strings.Contains(out, "is running") && !strings.Contains(out, "is paused") {
		return p
	}
	p.Running = true
	if m := balanceLeft.FindStringSubmatch(out); m != nil {
		left, _ := strconv.ParseFloat(m[3], 64)
		p.Percent = 100 - left
		p.Text = strings.TrimSpace(out[strings.Index(out, m[0]):])
		p.Text = firstLine(p.Text)
	}
	return p
}

// ParseReplace reads `btrfs replace status -1 MNT`.
func ParseReplace(out string) Progress {
	out = strings.TrimSpace(strings.ReplaceAll(out, "\r", "\n"))
	p := Progress{Percent: -1, Text: lastLine(out)}
	if m := replaceDone.FindStringSubmatch(out); m != nil && !strings.Contains(out, "finished") {
		p.Running = true
		p.Percent, _ = strconv.ParseFloat(m[1], 64)
	}
	return p
}

// ParseScrub reads `btrfs scrub status MNT`.
func ParseScrub(out string) Progress {
	p := Progress{Percent: -1}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "Status" {
			p.Text = strings.TrimSpace(v)
		}
		if strings.HasPrefix(strings.TrimSpace(l), "Error summary:") {
			p.Text += "; " + strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "Error summary:"))
		}
	}
	p.Running = strings.HasPrefix(p.Text, "running")
	if m := scrubPct.FindStringSubmatch(out); m != nil {
		p.Percent, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := scrubLeft.FindStringSubmatch(out); m != nil {
		p.Left = m[1]
	}
	return p
}

// BalanceStatus, ReplaceStatus and ScrubStatus ask btrfs. balance status
// exits 1 while one runs: its output still counts.
func BalanceStatus(r Runner, mnt string) Progress {
	out, _ := r.Run("btrfs", "balance", "status", mnt)
	return ParseBalance(string(out))
}

func ReplaceStatus(r Runner, mnt string) Progress {
	out, _ := r.Run("btrfs", "replace", "status", "-1", mnt)
	return ParseReplace(string(out))
}

func ScrubStatus(r Runner, mnt string) Progress {
	out, _ := r.Run("btrfs", "scrub", "status", mnt)
	return ParseScrub(string(out))
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(l)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return strings.TrimSpace(s[strings.LastIndex(s, "\n")+1:])
}

// DropEmptyChunks deletes the chunks that hold nothing (a balance of
// usage 0 moves no data): a replace on a degraded filesystem leaves empty
// single chunks behind until the cleaner comes, and when they fill the
// survivor, btrfs cancels the replace (ENOSPC marking a block group
// read-only). It waits.
func DropEmptyChunks(r Runner, mnt string) error {
	_, err := r.Run("btrfs", "balance", "start", "-dusage=0", "-musage=0", mnt)
	return err
}

// ToOneDevice starts, in the background, the conversion of every chunk to
// the profiles one device holds (data single, metadata and system dup),
// soft: chunks already so are skipped. On a degraded RAID1 it leaves a
// replace of the missing member nothing to visit (see persistence's
// resumeReplace); -f: system chunks are converted too.
func ToOneDevice(r Runner, mnt string) error {
	_, err := r.Run("btrfs", "balance", "start", "--bg", "-f", "-dconvert=single,soft", "-mconvert=dup,soft", "-sconvert=dup,soft", mnt)
	return err
}
