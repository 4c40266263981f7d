package hotplug

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Storage settles before S11persistence decides. Disks on slow buses show up
// in steps, each a uevent: a USB mass-storage interface, a second later (the
// usb-storage scan delay) its SCSI host, then the SCSI disk, for which sd_mod
// must be loaded, then the block device. The wait lasts while such a device
// is present without its disk, or a storage uevent arrived less than a quiet
// period ago, and never longer than a bound. A machine with none of these
// buses starts no wait at all.

// DefaultQuiet is the quiet period; it matches usb-storage's own scan delay
// (its delay_use parameter is 1 s).
const DefaultQuiet = time.Second

// DefaultMaxWait bounds the wait when lightwhale.wait= does not.
const DefaultMaxWait = 10 * time.Second

// slowEvent reports whether e announces a device whose disks come later:
// the events that start a wait.
func slowEvent(e Event) bool {
	switch e.Env["SUBSYSTEM"] {
	case "scsi", "scsi_host", "nvme", "mmc", "mmc_host":
		return e.Action == "add" || e.Action == "bind"
	case "usb":
		// Mass storage (class 8), or a hub (class 9) that may enumerate one.
		c, _, _ := strings.Cut(e.Env["INTERFACE"], "/")
		return e.Env["DEVTYPE"] == "usb_interface" && (c == "8" || c == "9") && (e.Action == "add" || e.Action == "bind")
	}
	return false
}

// storageEvent reports whether e is progress of storage once a wait runs.
func storageEvent(e Event) bool {
	switch e.Env["SUBSYSTEM"] {
	case "block", "scsi_disk", "bdi":
		return true
	}
	return slowEvent(e)
}

// settleState is what the wait decides on.
type settleState struct {
	start, lastEvent time.Time
	pending          []string // devices present without their disks yet
	quiet, max       time.Duration
}

// decide says whether the wait is over, and if not, how long until it must
// look again. It never waits without a reason: pending devices or a recent
// storage event.
func decide(now time.Time, s settleState) (done bool, recheck time.Duration) {
	left := s.start.Add(s.max).Sub(now)
	if left <= 0 {
		return true, 0
	}
	quietLeft := s.lastEvent.Add(s.quiet).Sub(now)
	if len(s.pending) == 0 && quietLeft <= 0 {
		return true, 0
	}
	// Pending devices settle without an event we hear of (a module load
	// ends): look again soon.
	recheck = min(left, 100*time.Millisecond)
	if len(s.pending) == 0 {
		recheck = min(left, quietLeft)
	}
	return false, recheck
}

// Sysfs is the root of sysfs ("/sys"), a directory tree in tests.
type Sysfs string

// Pending lists the storage devices present whose disks have not appeared:
// a USB mass-storage interface, a SCSI disk-type device, an NVMe controller
// or an MMC/SD card without a block device below it.
func (s Sysfs) Pending() []string {
	var out []string
	ifaces, _ := filepath.Glob(filepath.Join(string(s), "bus/usb/devices/*:*"))
	for _, d := range ifaces {
		if readTrim(filepath.Join(d, "bInterfaceClass")) == "08" && !hasBlock(d) {
			out = append(out, fmt.Sprintf("USB mass storage %s (%s)", filepath.Base(d), usbProduct(d)))
		}
	}
	scsi, _ := filepath.Glob(filepath.Join(string(s), "bus/scsi/devices/*:*:*:*"))
	for _, d := range scsi {
		// Types 0 (disk), 7 (optical memory), 14 (RBC): what sd_mod drives.
		switch readTrim(filepath.Join(d, "type")) {
		case "0", "7", "14":
			if !hasBlock(d) {
				out = append(out, fmt.Sprintf("SCSI disk %s (%s)", filepath.Base(d), strings.Join(strings.Fields(readTrim(filepath.Join(d, "vendor"))+" "+readTrim(filepath.Join(d, "model"))), " ")))
			}
		}
	}
	nvme, _ := filepath.Glob(filepath.Join(string(s), "class/nvme/nvme*"))
	for _, d := range nvme {
		if readTrim(filepath.Join(d, "state")) != "dead" && !hasBlock(d) {
			out = append(out, fmt.Sprintf("NVMe controller %s (%s)", filepath.Base(d), readTrim(filepath.Join(d, "model"))))
		}
	}
	cards, _ := filepath.Glob(filepath.Join(string(s), "bus/mmc/devices/*"))
	for _, d := range cards {
		switch readTrim(filepath.Join(d, "type")) {
		case "SD", "MMC":
			if !hasBlock(d) {
				out = append(out, fmt.Sprintf("%s card %s (%s)", readTrim(filepath.Join(d, "type")), filepath.Base(d), readTrim(filepath.Join(d, "name"))))
			}
		}
	}
	return out
}

// hasBlock reports whether a block device sits anywhere below a sysfs device
// (sysfs links are followed once, for the device itself).
func hasBlock(dev string) bool {
	real, err := filepath.EvalSymlinks(dev)
	if err != nil {
		return false
	}
	found := false
	filepath.WalkDir(real, func(p string, d fs.DirEntry, err error) error {
		if err != nil || found {
			return filepath.SkipDir
		}
		if d.IsDir() && d.Name() == "block" && p != real {
			// An NVMe controller lists its namespaces as nvme0n1 directly;
			// the others have a block/ directory with entries.
			ents, _ := os.ReadDir(p)
			found = len(ents) > 0
			return filepath.SkipDir
		}
		if d.IsDir() && nvmeNamespace.MatchString(d.Name()) {
			found = true
			return filepath.SkipDir
		}
		return nil
	})
	return found
}

// nvmeNamespace names a namespace below an NVMe controller: nvme0n1, or
// nvme0c0n1, the path device a multipath-capable kernel (Debian's) shows.
var nvmeNamespace = regexp.MustCompile(`^nvme[0-9]+(c[0-9]+)?n[0-9]+$`)

func usbProduct(iface string) string {
	dev := filepath.Dir(iface)
	if r, err := filepath.EvalSymlinks(iface); err == nil {
		dev = filepath.Dir(r)
	}
	p := strings.TrimSpace(readTrim(filepath.Join(dev, "manufacturer")) + " " + readTrim(filepath.Join(dev, "product")))
	if p == "" {
		return "unnamed"
	}
	return p
}

func readTrim(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}
