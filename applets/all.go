package applets

import (
	"fmt"
	"os"

	"lightwhale/applets/hostname"
	"lightwhale/applets/hotplug"
	"lightwhale/applets/osstatus"
	"lightwhale/applets/persistence"
	"lightwhale/applets/provision"
	"lightwhale/applets/stage1"
	"lightwhale/applets/upgrade"
	"lightwhale/applets/wifi"
	"lightwhale/internal/bootsec"
	"lightwhale/internal/cli"
	"lightwhale/internal/host"
	"lightwhale/internal/paths"
	"lightwhale/internal/version"
)

// One line per applet; the links in the rootfs are made from these names.
func init() {
	// Applets never import each other: upgrade's state snapshot is
	// setup-persistence's, handed over here.
	upgrade.Snapshot = func(why string) (string, error) { return persistence.AutoSnapshot(host.Real, why) }
	registry = []Applet{
		{Name: persistence.Name, Summary: "find, claim or volatile-mount the data filesystem and overlay /etc /var /home", Main: persistence.Main},
		{Name: persistence.InitName, Summary: "the init script of setup-persistence: start|stop", Main: persistence.InitScript},
		{Name: "setup-hostname", Summary: "set the host name (kernel, /etc/hostname, /etc/hosts), or print it", Main: hostname.Main},
		{Name: "setup-wifi", Summary: "join a wireless network (WPA2-Personal or open), scan, show status", Main: wifi.Main},
		{Name: "hotplug", Summary: "load drivers for the devices present and those that appear later (coldplug, uevents); settle storage", Main: hotplug.Main},
		{Name: "provision", Summary: "configure the machine at boot from a NoCloud seed (cidata) and lightwhale.* kernel parameters", Main: provision.Main},
		{Name: upgrade.Name, Summary: "verify a Lightwhale ISO and install it on the data filesystem as a trial version for the next boot", Main: upgrade.Main},
		{Name: upgrade.RollbackName, Summary: "leave the installed Lightwhale version by hand: the next boot runs the previous one", Main: upgrade.RollbackOS},
		{Name: "init", Summary: "stage 1 of the boot: /init of the initramfs mounts the root squashfs and switches to it", Main: stage1.Main},
		{Name: "paths", Summary: "print the fixed paths and names as shell-safe LIGHTWHALE_KEY='value' lines, for the init scripts", Main: func(_ []string, s cli.IO) int {
			fmt.Fprint(s.Out, paths.Shell())
			return 0
		}},
		{Name: "status", Summary: "which Lightwhale version runs and from where, the versions lightwhale upgrade installed, and what the boots decided", Main: osstatus.Status},
		{Name: "health", Summary: "at boot: a trial version becomes good once Docker answers, or restarts the machine if it does not in time", Main: osstatus.Health},
		{Name: "version", Summary: "print the Lightwhale version, then the versions it ships (Debian, kernel, Docker stack, shim, GRUB) and how it booted (Secure Boot, lockdown)", Main: printVersion},
	}
}

// printVersion prints our version, then the image's list of shipped
// versions and how this machine booted (firmware, Secure Boot, lockdown);
// outside the image (no list) only the first line.
func printVersion(_ []string, s cli.IO) int {
	fmt.Fprintln(s.Out, "lightwhale", version.Version)
	if b, err := os.ReadFile(paths.Versions); err == nil {
		s.Out.Write(b)
		fmt.Fprintln(s.Out, "boot:", bootsec.Read("/sys"))
	}
	return 0
}
