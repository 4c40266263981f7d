// Package btrfs wraps the btrfs-progs tools persistence uses: mkfs with the
// profile for a number of devices, subvolumes, the label, balance, scrub,
// and reading the profiles back. The tools run through a Runner (the host
// edge), so callers can be tested with a fake; this package's own tests run
// the real tools on image files.
package btrfs

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Runner runs a tool and waits (output in the error), or starts it in the
// background, and tells whether a path exists. internal/host's Host is one.
type Runner interface {
	Run(name string, args ...string) ([]byte, error)
	Start(name string, args ...string) error
	Exists(path string) bool
}

// Profile is the data and metadata profile for n devices: one device keeps
// two copies of metadata; several keep two copies of data and as many
// copies of metadata as there are devices, up to four.
func Profile(n int) (data, metadata string) {
	switch {
	case n <= 1:
		return "single", "dup"
	case n == 2:
		return "raid1", "raid1"
	case n == 3:
		return "raid1", "raid1c3"
	default:
		return "raid1", "raid1c4"
	}
}

// Mkfs makes one filesystem over devs (block devices or image files),
// labelled label, with Profile(len(devs)). It overwrites whatever is there.
func Mkfs(r Runner, label string, devs ...string) error {
	data, meta := Profile(len(devs))
	args := append([]string{"-f", "-q", "-L", label, "--data", data, "--metadata", meta}, devs...)
	_, err := r.Run("mkfs.btrfs", args...)
	return err
}

// CreateSubvolume creates the subvolume at path (in a mounted btrfs) unless
// something already exists there.
func CreateSubvolume(r Runner, path string) error {
	if r.Exists(path) {
		return nil
	}
	_, err := r.Run("btrfs", "subvolume", "create", path)
	return err
}

// Snapshot makes a snapshot of the subvolume src at dst: read-only to keep
// a state, writable to run on one.
func Snapshot(r Runner, src, dst string, readonly bool) error {
	args := []string{"subvolume", "snapshot"}
	if readonly {
		args = append(args, "-r")
	}
	_, err := r.Run("btrfs", append(args, src, dst)...)
	return err
}

// DeleteSubvolume deletes the subvolume (or snapshot) at path, if any, and
// waits until the deletion is committed.
func DeleteSubvolume(r Runner, path string) error {
	if !r.Exists(path) {
		return nil
	}
	_, err := r.Run("btrfs", "subvolume", "delete", "--commit-after", path)
	return err
}

// Subvolume is what btrfs records of one in its root item. (Its root
// directory's birth time will not do: a snapshot's keeps the one of the
// subvolume it copies.)
type Subvolume struct {
	ID      uint64    // grows with each subvolume made: the order they were made in
	Created time.Time // when it was made (a snapshot: taken), to the second
}

// Show reads the subvolume at path.
func Show(r Runner, path string) (Subvolume, error) {
	out, err := r.Run("btrfs", "subvolume", "show", path)
	if err != nil {
		return Subvolume{}, err
	}
	var s Subvolume
	var errID, errTime error = errors.New("no subvolume ID"), errors.New("no creation time")
	for _, l := range strings.Split(string(out), "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(l), ":")
		switch v = strings.TrimSpace(v); k {
		case "Subvolume ID":
			s.ID, errID = strconv.ParseUint(v, 10, 64)
		case "Creation time":
			s.Created, errTime = time.Parse("2006-01-02 15:04:05 -0700", v)
		}
	}
	if err := errors.Join(errID, errTime); err != nil {
		return Subvolume{}, fmt.Errorf("btrfs subvolume show %s: %w", path, err)
	}
	return s, nil
}

// SetLabel writes the label of the filesystem mounted at mnt and waits until
// it is on the disks.
func SetLabel(r Runner, mnt, label string) error {
	if _, err := r.Run("btrfs", "filesystem", "label", mnt, label); err != nil {
		return err
	}
	_, err := r.Run("btrfs", "filesystem", "sync", mnt)
	return err
}

// DeviceScan registers every btrfs device with the kernel, so a
// multi-device filesystem can be mounted by any member. Failure is harmless
// (mounts name their devices), so it is not reported.
func DeviceScan(r Runner) { _, _ = r.Run("btrfs", "device", "scan") }

// Rebalance starts, in the background, the conversion of any chunk not yet
// in Profile(n) (after a device that missed writes rejoined).
func Rebalance(r Runner, mnt string, n int) error {
	data, meta := Profile(n)
	_, err := r.Run("btrfs", "balance", "start", "--bg", "-dconvert="+data+",soft", "-mconvert="+meta+",soft", mnt)
	return err
}

// GrowDevice makes devid use all of its block device (a replace keeps the
// size of the member it rebuilt).
func GrowDevice(r Runner, devid uint64, mnt string) error {
	_, err := r.Run("btrfs", "filesystem", "resize", strconv.FormatUint(devid, 10)+":max", mnt)
	return err
}

// Scrub starts a scrub of the filesystem at mnt in the background.
func Scrub(r Runner, mnt string) error { return r.Start("btrfs", "scrub", "start", mnt) }

// DeviceOpts is the mount option naming every member, so mounting needs no
// global device scan.
func DeviceOpts(devs []string) string {
	var o []string
	for _, d := range devs {
		o = append(o, "device="+d)
	}
	return strings.Join(o, ",")
}

// Profiles condenses `btrfs filesystem df` ("Data, RAID1: total=...") to
// "data raid1, metadata raid1c3".
func Profiles(df string) string {
	var out []string
	for _, line := range strings.Split(df, "\n") {
		kind, rest, ok := strings.Cut(line, ", ")
		if !ok {
			continue
		}
		prof, _, _ := strings.Cut(rest, ":")
		switch kind {
		case "Data", "Metadata":
			out = append(out, strings.ToLower(kind+" "+prof))
		}
	}
	return strings.Join(out, ", ")
}

// Df is `btrfs filesystem df` of the filesystem at mnt, condensed by Profiles.
func Df(r Runner, mnt string) (string, error) {
	out, err := r.Run("btrfs", "filesystem", "df", mnt)
	if err != nil {
		return "", err
	}
	return Profiles(string(out)), nil
}
