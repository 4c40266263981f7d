// Package paths holds each fixed path and string of Lightwhale once: the
// consent header, the names on the disks, the data, state and Docker roots,
// the run directory. Go code imports them; the init scripts read them from
// the binary (`lightwhale paths`, see Shell), so no script spells them again.
package paths

import (
	"fmt"
	"strings"
)

// On the disks.
const (
	// Consent is the header a user writes to a whole disk to have it
	// claimed; the data partition carries it as its GPT name until the
	// claim commits.
	Consent    = "lightwhale-please-format-me"
	DataLabel  = "lightwhale-data"     // btrfs label and GPT name of a committed data filesystem
	SwapLabel  = "lightwhale-swap"     // swap label and GPT name
	ClaimLabel = "lightwhale-claiming" // btrfs label between mkfs and commit
	ISOLabel   = "LIGHTWHALE"          // prefix of the boot medium's ISO9660 volume label
)

// Subvolumes on the data filesystem: data (mounted at DataDir), state
// (mounted at StateDir), and room for the state's snapshots.
var Subvolumes = []string{"@lightwhale-data", "@lightwhale-state", "@lightwhale-state-snapshots"}

// The layout every mode shares (tmpfs or btrfs under DataDir).
const (
	DataDir    = "/mnt/lightwhale-data"
	StateDir   = DataDir + "/lightwhale-state"
	DockerRoot = StateDir + "/docker"
	RunDir     = "/run/lightwhale"
	ModeFile   = RunDir + "/mode"     // volatile, persistent, degraded, or rebuilding (a replace or balance restores redundancy)
	Warnings   = RunDir + "/warnings" // what the console said loudly, for status and motd
	LockFile   = RunDir + "/lock"
	ClaimDir   = RunDir + "/claim" // where a new filesystem is mounted while claimed
	TopDir     = RunDir + "/top"   // the whole data filesystem, while snapshots are taken or rolled back
	// RestoreLock is held (and holds the pid) of the background process
	// that follows a rebuild to its end: one at a time.
	RestoreLock = RunDir + "/restore.lock"
	// Progress holds, per long operation, when it was first seen and how
	// far it was then: the base of the time-left estimate.
	Progress   = RunDir + "/progress"
	OverlayDir = RunDir + "/overlay"
	// OSDir holds the Lightwhale versions `lightwhale upgrade` installed
	// (internal/osversion), on the data subvolume: a state rollback does
	// not touch them.
	OSDir = DataDir + "/lightwhale-os"
	// ImageParam on the kernel command line names the root image that
	// stage 1 loads from the data filesystem instead of the boot medium:
	// lightwhale.image=FSUUID:PATH (PATH inside the data subvolume).
	ImageParam = "lightwhale.image"
)

// Versions lists what the image ships (Debian, kernel, the Docker stack), one
// "name version" per line, written by rootfs/Dockerfile.
const Versions = "/usr/share/lightwhale/versions"

// UpgradeKeys holds the ed25519 public keys (*.pem) the image trusts to sign
// the ISOs `lightwhale upgrade` installs (make iso SIGN_KEY=...); without
// any, unsigned ISOs are accepted.
const UpgradeKeys = "/usr/share/lightwhale/upgrade-keys"

// OverlayDirs are the directories made writable over the immutable root.
var OverlayDirs = []string{"/etc", "/var", "/home"}

// Overlay layers of dir (one of OverlayDirs).
func LowerDir(dir string) string { return OverlayDir + "/lower" + dir }
func UpperDir(dir string) string { return StateDir + "/overlay/upper" + dir }
func WorkDir(dir string) string  { return StateDir + "/overlay/work" + dir }

// shell are the names the init scripts use, in the order printed.
var shell = []struct{ key, value string }{
	{"CONSENT", Consent},
	{"DATA_LABEL", DataLabel},
	{"DATA_DIR", DataDir},
	{"STATE_DIR", StateDir},
	{"DOCKER_ROOT", DockerRoot},
	{"RUN_DIR", RunDir},
	{"MODE_FILE", ModeFile},
	{"WARNINGS", Warnings},
	{"VERSIONS", Versions},
}

// Shell returns KEY='value' lines that a POSIX shell can eval: every value
// single-quoted (none holds a quote; Shell panics if one ever does).
func Shell() string {
	var b strings.Builder
	for _, kv := range shell {
		if strings.ContainsAny(kv.value, "'\n") {
			panic(fmt.Sprintf("paths: %s=%q cannot be single-quoted", kv.key, kv.value))
		}
		fmt.Fprintf(&b, "LIGHTWHALE_%s='%s'\n", kv.key, kv.value)
	}
	return b.String()
}
