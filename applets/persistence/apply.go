package persistence

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"lightwhale/internal/host"
	"lightwhale/internal/paths"
)

// applier runs a plan's steps in order against a host.
type applier struct {
	env
	out, err io.Writer
	// crashAfter, when positive, is called before step crashAfter+1,
	// counting the steps of every plan this applier runs (boot's mount,
	// then its join): the tests' power cut (--crash-after).
	crashAfter int
	crash      func()
	applied    int
}

func newApplier(h host.Host, out, errw io.Writer) *applier {
	self, err := os.Executable()
	if err != nil {
		self = "/usr/bin/lightwhale"
	}
	return &applier{env: env{h: h, held: map[string]func() error{}, self: self}, out: out, err: errw}
}

// run applies every step; it returns the exit code. A fatal step that fails
// leaves the data filesystem out of reach: the run then mounts a tmpfs so the
// machine still boots, and writes nothing more to any disk. Any other step
// that fails is reported, and the rest still runs.
func (a *applier) run(plan *Plan) int {
	defer a.unlockAll()
	began := time.Now()
	for _, e := range plan.Errors {
		a.loud(e)
	}
	for _, n := range plan.Notes {
		fmt.Fprintf(a.out, "%s: %s\n", Name, n)
	}
	code := 0
	for i, s := range plan.Steps {
		if a.crashAfter > 0 && a.applied == a.crashAfter {
			a.crash()
		}
		a.applied++
		t := time.Now()
		note, err := s.Apply(&a.env)
		if err != nil {
			a.loud(fmt.Sprintf("step %d failed: %s: %v", i+1, firstLine(s.String()), err))
			if plan.Online {
				// The data filesystem stays mounted as it is; what was
				// done is safe to repeat, so the user can run it again.
				return 1
			}
			if s.Fatal() {
				return a.fallbackVolatile()
			}
			code = 1
			continue
		}
		if note != "" {
			note = " (" + note + ")"
		}
		fmt.Fprintf(a.out, "%s: %s%s [%.2fs]\n", Name, firstLine(s.String()), note, time.Since(t).Seconds())
	}
	if plan.Online {
		fmt.Fprintf(a.out, "%s: done in %.2fs\n", Name, time.Since(began).Seconds())
		return code
	}
	fmt.Fprintf(a.out, "%s: mode %s, ready in %.2fs\n", Name, plan.Mode, time.Since(began).Seconds())
	return code
}

// fallbackVolatile gives the machine a working tmpfs data filesystem after
// a failure, so it still boots and can be reached.
func (a *applier) fallbackVolatile() int {
	a.unlockAll()
	// A data filesystem mounted without its state subvolume is no use: the
	// overlays would land in the wrong place. Detach it; the tmpfs takes over.
	if m, ok := host.MountedAt(a.h, paths.DataDir); ok && m.FSType == "btrfs" {
		a.h.Unmount(paths.StateDir, unix.MNT_DETACH)
		if err := a.h.Unmount(paths.DataDir, unix.MNT_DETACH); err != nil {
			a.loud(fmt.Sprintf("volatile fallback: %v", err))
		}
	}
	p := &Plan{}
	p.volatile()
	for _, s := range p.Steps {
		if _, err := s.Apply(&a.env); err != nil {
			a.loud(fmt.Sprintf("volatile fallback: %s: %v", firstLine(s.String()), err))
		}
	}
	fmt.Fprintf(a.out, "%s: mode volatile (fallback after an error)\n", Name)
	return 1
}

// loud prints an error where the console shows it, and keeps it for status and motd.
func (a *applier) loud(msg string) {
	fmt.Fprintf(a.err, "%s: *** %s\n", Name, msg)
	if a.h.MkdirAll(paths.RunDir, 0o755) == nil {
		a.h.AppendFile(paths.Warnings, []byte(msg+"\n"))
	}
}

func firstLine(s string) string { l, _, _ := strings.Cut(s, "\n"); return l }

// waitFor polls ok for up to 5 s (devtmpfs creates nodes asynchronously).
func waitFor(ok func() bool) error {
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}
