// Package osstatus is what a running machine says about the Lightwhale
// versions: `lightwhale status` (which version runs, from where, what is
// installed and what the boots decided) and `lightwhale health`, which a
// trial version's boot runs to become good, or to restart the machine so
// that the boot medium's version takes over again.
package osstatus

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"lightwhale/internal/cli"
	"lightwhale/internal/dockerping"
	"lightwhale/internal/osversion"
	"lightwhale/internal/paths"
	"lightwhale/internal/version"
)

// Edges to the machine: tests point them elsewhere.
var (
	osDir      = paths.OSDir
	cmdline    = "/proc/cmdline"
	dockerSock = dockerping.Socket
	dataDir    = paths.DataDir
	reboot     = func() error { return exec.Command("/sbin/reboot").Run() }
	dataOK     = func(dir string) bool {
		var sfs unix.Statfs_t
		return unix.Statfs(dir, &sfs) == nil && sfs.Type == unix.BTRFS_SUPER_MAGIC
	}
	pollEvery = 2 * time.Second
)

// installed reports whether this boot runs a version installed on the
// data filesystem (not the boot medium's).
func installed() bool {
	b, _ := os.ReadFile(cmdline)
	_, _, ok := osversion.ImageFromCmdline(string(b))
	return ok
}

// Status is `lightwhale status`.
func Status(args []string, stdio cli.IO) int {
	fs := cli.NewFlagSet("status", "[--motd]", "Says which Lightwhale version runs and from where (the boot medium, or\ninstalled on the data filesystem by lightwhale upgrade), the installed\nversions, what the next boot runs, and what the last boots decided.", stdio.Err)
	motd := fs.Bool("motd", false, "one line for the message of the day, and the upgrade warnings")
	if code, done := cli.Parse(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stdio.Err, "status: no arguments expected, got %q\n", fs.Args())
		return 2
	}
	st, err := osversion.Load(osDir)
	if err != nil {
		return cli.Fail(stdio, "status", err)
	}
	from := "the boot medium"
	if installed() {
		from = "installed on the data filesystem"
		if v := st.Find(version.Version); v != nil {
			from += ", " + string(v.Status)
		}
	}
	if *motd {
		line := fmt.Sprintf("  OS: Lightwhale %s, from %s", version.Version, from)
		if installed() && st.Medium != "" {
			line += "; boot medium " + st.Medium
		}
		fmt.Fprintln(stdio.Out, line+".")
		// The state's notice outlives the boot that wrote it (a switch
		// follows, and /run is new); this boot's own warnings beside it.
		if st.Notice != "" {
			fmt.Fprintf(stdio.Out, "  WARNING: upgrade: %s\n", st.Notice)
		}
		if w, err := os.ReadFile(paths.Warnings); err == nil {
			for _, l := range strings.Split(strings.TrimSpace(string(w)), "\n") {
				if strings.HasPrefix(l, "upgrade: ") && !strings.Contains(l, st.Notice) {
					fmt.Fprintf(stdio.Out, "  WARNING: %s\n", l)
				}
			}
		}
		return 0
	}
	fmt.Fprintf(stdio.Out, "running:   %s (%s)\n", version.Version, from)
	if st.Medium != "" {
		fmt.Fprintf(stdio.Out, "medium:    %s\n", st.Medium)
	}
	for _, v := range st.Versions {
		fmt.Fprintf(stdio.Out, "installed: %s %s (installed %s from %s", v.Version, v.Status, v.Installed.UTC().Format(time.RFC3339), v.From)
		if v.Snapshot != "" {
			fmt.Fprintf(stdio.Out, "; state before it: snapshot %s", v.Snapshot)
		}
		if v.Status == osversion.Trial {
			fmt.Fprintf(stdio.Out, "; trial boots %d of %d", v.TrialBoots, v.MaxTrials)
		}
		if v.Reason != "" {
			fmt.Fprintf(stdio.Out, "; %s", v.Reason)
		}
		fmt.Fprintln(stdio.Out, ")")
	}
	if st.Notice != "" {
		fmt.Fprintf(stdio.Out, "WARNING:   %s\n", st.Notice)
	}
	if len(st.Versions) == 0 {
		fmt.Fprintln(stdio.Out, "installed: none (lightwhale upgrade FILE.iso installs one)")
	} else if st.Medium != "" {
		fmt.Fprintf(stdio.Out, "next boot: %s\n", st.Next(st.Medium))
	}
	if b, err := os.ReadFile(osversion.LogPath(osDir)); err == nil {
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) > 5 {
			lines = lines[len(lines)-5:]
		}
		for _, l := range lines {
			fmt.Fprintf(stdio.Out, "log:       %s\n", l)
		}
	}
	return 0
}

// Health is `lightwhale health`, run in the background at boot: on a
// trial version's boot it waits for healthy (the data filesystem mounted,
// the Docker API answering); healthy makes the trial good; not healthy in
// time restarts the machine, and the boot medium's version decides again.
func Health(args []string, stdio cli.IO) int {
	fs := cli.NewFlagSet("health", "", "On a trial boot of a version installed by lightwhale upgrade: waits until\nthe data filesystem is mounted and Docker answers, then marks the version\ngood; restarts the machine if that does not happen in time.", stdio.Err)
	if code, done := cli.Parse(fs, args); done {
		return code
	}
	if !installed() {
		return 0
	}
	st, err := osversion.Load(osDir)
	if err != nil {
		return cli.Fail(stdio, "health", err)
	}
	v := st.Find(version.Version)
	if v == nil || v.Status != osversion.Trial {
		return 0
	}
	within := osversion.DefaultHealthWithin
	if v.HealthWithin > 0 {
		within = time.Duration(v.HealthWithin) * time.Second
	}
	why := waitHealthy(within)
	// Reloaded under the lock: an upgrade may have changed it meanwhile.
	unlock, err := osversion.Lock(osDir)
	if err != nil {
		return cli.Fail(stdio, "health", err)
	}
	defer unlock()
	if st, err = osversion.Load(osDir); err != nil {
		return cli.Fail(stdio, "health", err)
	}
	if why == nil {
		st.Healthy(version.Version)
		if err := st.Save(osDir); err != nil {
			return cli.Fail(stdio, "health", err)
		}
		osversion.Log(osDir, time.Now(), "%s is healthy: it is the good version now", version.Version)
		fmt.Fprintf(stdio.Out, "lightwhale: %s is healthy (data mounted, Docker answering): it is the good version now\n", version.Version)
		return 0
	}
	msg := fmt.Sprintf("trial boot of %s not healthy within %s: %v; restarting: the boot medium's version decides again", version.Version, within, why)
	osversion.Log(osDir, time.Now(), "%s", msg)
	fmt.Fprintf(stdio.Err, "lightwhale: %s\n", msg)
	unix.Sync()
	if err := reboot(); err != nil {
		return cli.Fail(stdio, "health", fmt.Errorf("restart: %w", err))
	}
	return 1
}

// waitHealthy polls until healthy or within has passed; it returns what was
// still wrong then.
func waitHealthy(within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		err := healthy()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(pollEvery)
	}
}

func healthy() error {
	if !dataOK(dataDir) {
		return fmt.Errorf("the data filesystem is not mounted at %s", dataDir)
	}
	return dockerping.Ping(context.Background(), dockerSock)
}
