package persistence

import (
	"fmt"
	"os"
	"strings"
	"time"

	"lightwhale/internal/host"
	"lightwhale/internal/osversion"
	"lightwhale/internal/paths"
	"lightwhale/internal/version"
)

// osStep runs the Lightwhale version internal/osversion decides on, once
// the data filesystem is mounted and before the state is (issue 15): on a
// boot of the medium's version, a trial or a newer good version installed
// by `lightwhale upgrade` is started with kexec, the switch saved first; an
// abandoned trial's state snapshot is rolled back by rollbackStep, next. A
// boot of an installed version records that it arrived. Not fatal: what
// fails here leaves the medium's version running, with the reason said.
type osStep struct {
	FSID string
}

func (osStep) String() string {
	return "run the Lightwhale version installed by lightwhale upgrade, if one is due"
}

func (osStep) Fatal() bool { return false }

// The edges to the kernel, and where the versions are: tests replace them.
var (
	kexecLoad = osversion.LoadKexec
	kexecNow  = osversion.Kexec
	osDir     = paths.OSDir
)

func (s osStep) Apply(e *env) (string, error) {
	// Run again on a running system (the state is up): a switch is a boot's.
	if _, ok := host.MountedAt(e.h, paths.StateDir); ok {
		return "the system is up: versions are switched only at boot", nil
	}
	if _, err := os.Stat(osDir); err != nil {
		return "no installed versions", nil
	}
	st, err := osversion.Load(osDir)
	if err != nil {
		return "", err
	}
	cmdline, _ := e.h.ReadFile("/proc/cmdline")
	running := version.Version
	if _, _, installed := osversion.ImageFromCmdline(string(cmdline)); installed {
		st.Arrived(running)
		note := fmt.Sprintf("running %s, installed on the data filesystem", running)
		if v := st.Find(running); v != nil && v.Status == osversion.Trial {
			note += fmt.Sprintf(" (trial boot %d of %d: it becomes good once Docker answers)", v.TrialBoots, v.MaxTrials)
		}
		return note, st.Save(osDir)
	}
	d := st.AtBoot(running, true)
	if d.Rollback != "" {
		err := withTop(e.h, func(t topDirs) error {
			_, err := requestRollback(e.h, t, d.Rollback)
			return err
		})
		if err != nil {
			d.Why += fmt.Sprintf("; the state could not be rolled back to %s: %v", d.Rollback, err)
		}
	}
	// Saved before the switch: a trial boot that never comes back to say
	// it is healthy has used one of its boots.
	if err := st.Save(osDir); err != nil {
		return "", fmt.Errorf("save %s: %w", osDir, err)
	}
	if d.Why != "" {
		osversion.Log(osDir, time.Now(), "%s", d.Why)
		if d.Abandoned != "" || strings.Contains(d.Why, "given up") {
			warn(e.h, "upgrade: "+d.Why)
		}
	}
	if d.Run == "" {
		if d.Why != "" {
			return d.Why, nil
		}
		return fmt.Sprintf("running %s from the boot medium", running), nil
	}
	line := osversion.KernelCmdline(string(cmdline), s.FSID, d.Run)
	if err := kexecLoad(osDir, d.Run, line); err != nil {
		msg := fmt.Sprintf("switch to %s failed: %v; running %s from the boot medium", d.Run, err, running)
		osversion.Log(osDir, time.Now(), "%s", msg)
		warn(e.h, "upgrade: "+msg)
		return "", fmt.Errorf("%s", msg)
	}
	fmt.Fprintf(os.Stderr, "%s: %s: switching to %s (kexec)\n", Name, d.Why, d.Run)
	e.h.Sync()
	if err := e.h.Unmount(paths.DataDir, 0); err != nil {
		return "", fmt.Errorf("unmount %s before the switch: %w", paths.DataDir, err)
	}
	return "", kexecNow() // returns only on failure
}

// warn keeps a line for status and the motd.
func warn(h host.Host, msg string) {
	if h.MkdirAll(paths.RunDir, 0o755) == nil {
		h.AppendFile(paths.Warnings, []byte(msg+"\n"))
	}
}
