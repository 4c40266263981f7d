// Package latedisk records Lightwhale disks that arrived after persistence
// had decided (a slow USB drive) and were not used: the hotplug daemon
// writes the record, setup-persistence status and the motd read it. Such a
// disk is never claimed or mounted behind the user's back; only a disk with
// the consent header joins a persistent machine's data filesystem while it
// runs, and it is recorded here only when that join was refused.
package latedisk

import (
	"fmt"
	"os"
	"strings"

	"lightwhale/internal/paths"
)

// File is the record: one line per late disk. /run is a tmpfs, so the
// record lasts until the reboot that uses the disk.
const File = paths.RunDir + "/late-disks"

// Advice is what the user should do about a late disk.
const Advice = "reboot to use it (or boot with a larger lightwhale.wait=SECONDS)"

// Line is the record of one late disk: what arrived and what it carries.
func Line(dev, what string) string {
	return fmt.Sprintf("Lightwhale disk %s (%s) arrived late, after persistence had decided; not used: %s", dev, what, Advice)
}

// NotJoined is the record of a disk with the consent header that appeared
// on a persistent machine and that setup-persistence add refused.
func NotJoined(dev, why string) string {
	return fmt.Sprintf("Lightwhale disk %s (consent header) arrived while running and was not joined: %s", dev, why)
}

// Record appends line to file unless it is there already.
func Record(file, line string) error {
	for _, l := range Read(file) {
		if l == line {
			return nil
		}
	}
	f, err := os.OpenFile(file, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("record late disk: %w", err)
	}
	if _, err := fmt.Fprintln(f, line); err != nil {
		f.Close()
		return fmt.Errorf("record late disk in %s: %w", file, err)
	}
	return f.Close()
}

// Read returns the recorded lines (none when file is missing).
func Read(file string) []string {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}
