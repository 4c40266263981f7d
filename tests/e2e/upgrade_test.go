package e2e

// Upgrades (issue 15): a persistent machine installs a newer Lightwhale from
// an ISO, switches to it at the next boot (kexec from the medium's
// version), keeps its containers and volumes; a broken release (its dockerd
// never starts) is abandoned after its trial boot, and the machine is back
// on the good version with the state rolled back; rollback-os returns to the
// medium's version; a power cut in the middle of an upgrade changes nothing.

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lightwhale/tests/vm"
)

// upgradeISOs are make test's test-only ISOs: this tree as a newer version,
// and as a newer one still whose dockerd never starts.
func upgradeISOs(t *testing.T) (good, broken string) {
	good, broken = os.Getenv("LIGHTWHALE_UPGRADE_ISO"), os.Getenv("LIGHTWHALE_BROKEN_ISO")
	if good == "" || broken == "" {
		t.Skip("LIGHTWHALE_UPGRADE_ISO and LIGHTWHALE_BROKEN_ISO are not set (make test builds them: make test-isos)")
	}
	return good, broken
}

// cdWithVolume is the guest's CD drive or disk whose ISO 9660 volume ID is vol.
func (g *guest) cdWithVolume(vol string) string {
	g.t.Helper()
	dev := g.sudo(`for d in /dev/sr* /dev/vd?; do v=$(dd if=$d bs=1 skip=32808 count=32 2>/dev/null | tr -d ' '); [ "$v" = ` + vm.ShellQuote(vol) + ` ] && echo $d; done; true`)
	if dev == "" {
		g.t.Fatalf("no CD drive or disk holds volume %s", vol)
	}
	return strings.Fields(dev)[0]
}

func (g *guest) version() string {
	g.t.Helper()
	return strings.TrimPrefix(strings.SplitN(g.run("lightwhale version"), "\n", 2)[0], "lightwhale ")
}

func TestUpgrade(t *testing.T) {
	t.Parallel()
	goodISO, brokenISO := upgradeISOs(t)
	iso := requireISO(t)
	dir := t.TempDir()
	disks := makeDisks(t, dir, diskSpec{4 << 10, magic, vm.Virtio})
	// The good ISO on a CD, the broken one as a disk (a stick holding it):
	// the PC's IDE has no room for a third CD drive. A copy: QEMU opens
	// disks writable.
	stick := filepath.Join(dir, "broken.iso")
	if out, err := exec.Command("cp", "--sparse=always", brokenISO, stick).CombinedOutput(); err != nil {
		t.Fatalf("copy %s: %v: %s", brokenISO, err, out)
	}
	cfg := vm.Config{ISO: iso, Disks: append(disks, vm.Disk{Path: stick}), CDROMs: []string{goodISO}}
	g := boot(t, cfg)
	medium := g.version()
	waitMode(t, g, "persistent", time.Minute)
	g.waitDocker()
	g.buildBusyboxImage("upgrade")
	g.run(`docker volume create keep >/dev/null && docker run --rm -v keep:/d ` + bbImage + ` sh -c 'echo kept > /d/f'`)
	// Synced: a power cut comes next, and it may take what btrfs has not
	// committed yet (up to 30 s of writes), upgrade or not.
	g.run("echo before > /home/op/before-upgrades && sync")
	good := g.cdWithVolume("LIGHTWHALE_" + strings.ReplaceAll(medium, ".", "_") + "_1")
	broken := g.cdWithVolume("LIGHTWHALE_" + strings.ReplaceAll(medium, ".", "_") + "_2")
	goodVersion, brokenVersion := medium+".1", medium+".2"

	// Bad input: one line each, a non-zero exit, nothing installed.
	for _, c := range []struct{ what, cmd, want string }{
		{"a truncated ISO", "head -c 40000000 " + good + " > /tmp/trunc.iso && lightwhale upgrade /tmp/trunc.iso", "truncated"},
		{"the running version", "lightwhale upgrade /dev/sr0", "already running"},
		{"no such file", "lightwhale upgrade /tmp/none.iso", "none.iso"},
	} {
		out, err := g.trySudo(c.cmd)
		if err == nil || strings.Count(strings.TrimSpace(out), "\n") > 0 || !strings.Contains(out, c.want) {
			t.Errorf("upgrade of %s: err %v, output %q; want one line with %q and a failure", c.what, err, out, c.want)
		}
	}
	if out := g.sudo("ls -A /mnt/lightwhale-data/lightwhale-os/versions 2>/dev/null; true"); out != "" {
		t.Fatalf("a refused upgrade left versions: %s", out)
	}

	// A power cut while the upgrade copies: the next boot is the medium's
	// version, with no installed version and the data intact.
	g.sudo("setsid lightwhale upgrade " + good + " >/tmp/upgrade.log 2>&1 </dev/null & sleep 3")
	g.Kill()
	g = boot(t, cfg)
	if v := g.version(); v != medium {
		t.Fatalf("after a power cut during the upgrade: version %s; want %s", v, medium)
	}
	if out := g.sudo("cat /mnt/lightwhale-data/lightwhale-os/state.json 2>/dev/null; true"); strings.Contains(out, goodVersion) {
		t.Errorf("state after a power cut during the upgrade names %s:\n%s", goodVersion, out)
	}
	wantEqual(t, "data after the power cut", g.run("cat /home/op/before-upgrades"), "before")

	// The real upgrade (two trial boots), then a power cut in the middle of
	// the switch at boot: the medium's version has counted the first trial
	// boot and is handing over. The next boot tries the second.
	out := g.sudo("lightwhale upgrade --trial-within 4m " + good)
	t.Logf("upgrade: %s", out)
	wantMatch(t, "upgrade", out, `installed `+strings.ReplaceAll(goodVersion, ".", `\.`)+` as a trial \(2 boots`)
	before := len(g.SerialLog())
	g.trySudo("setsid reboot </dev/null >/dev/null 2>&1 &")
	for i := 0; !strings.Contains(g.SerialLog()[before:], "switching to "+goodVersion); i++ {
		if i == 600 {
			t.Fatalf("no switch to %s within 5 minutes:\n%s", goodVersion, g.SerialLog()[before:])
		}
		time.Sleep(500 * time.Millisecond)
	}
	g.Kill()
	g = boot(t, cfg)
	if v := g.version(); v != goodVersion {
		t.Fatalf("after a power cut during the switch: version %s; want %s (its second trial boot)\n%s", v, goodVersion, g.BootLog())
	}
	wantMatch(t, "console: the second trial boot", g.SerialLog(), `trial boot 2 of 2`)
	// Older than the running version: refused without --allow-downgrade.
	if out, err := g.trySudo("lightwhale upgrade /dev/sr0"); err == nil || !strings.Contains(out, "older than the running") {
		t.Errorf("upgrade to the medium's older version: err %v, %q; want a refusal", err, out)
	}
	wantMatch(t, "kernel line of the installed version", g.run("cat /proc/cmdline"), `lightwhale\.image=`)
	g.waitDocker()
	waitStatus(t, g, goodVersion+" good", 3*time.Minute)
	wantEqual(t, "volume after the upgrade", g.run(`docker run --rm -v keep:/d `+bbImage+` cat /d/f`), "kept")
	wantEqual(t, "home after the upgrade", g.run("cat /home/op/before-upgrades"), "before")
	g.wantMotd("motd on the installed version", `OS: Lightwhale `+strings.ReplaceAll(goodVersion, ".", `\.`)+`, from installed`)

	// The broken release: one trial boot; its dockerd never starts, so it
	// restarts the machine, and the medium's version abandons it, rolls the
	// state back and runs the good version again.
	out = g.sudo("lightwhale upgrade --trial-boots 1 --trial-within 60s " + broken)
	wantMatch(t, "upgrade to the broken version", out, `as a trial`)
	g.run("echo after > /home/op/after-snapshot")
	g.reboot()
	if v := g.version(); v != brokenVersion {
		t.Fatalf("trial boot: version %s; want %s", v, brokenVersion)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	id := g.run("cat /proc/sys/kernel/random/boot_id")
	if err := g.WaitBootAfter(ctx, id); err != nil {
		t.Fatalf("the broken trial did not give way: %v\n%s", err, g.BootLog())
	}
	if v := g.version(); v != goodVersion {
		t.Fatalf("after the broken trial: version %s; want %s", v, goodVersion)
	}
	st := g.sudo("lightwhale status")
	t.Logf("status after the broken trial:\n%s", st)
	wantMatch(t, "status: the broken version", st, `installed: `+strings.ReplaceAll(brokenVersion, ".", `\.`)+` bad .*not healthy`)
	g.wantMotd("motd: the abandon", `WARNING: upgrade: upgrade to `+strings.ReplaceAll(brokenVersion, ".", `\.`)+` abandoned`)
	if out, err := g.try("cat /home/op/after-snapshot"); err == nil {
		t.Errorf("a file written after the broken upgrade's snapshot survived the rollback: %s", out)
	}
	wantEqual(t, "home after the rollback", g.run("cat /home/op/before-upgrades"), "before")
	g.waitDocker()
	wantEqual(t, "volume after the rollback", g.run(`docker run --rm -v keep:/d `+bbImage+` cat /d/f`), "kept")

	// By hand, back to the medium's version.
	out = g.sudo("lightwhale rollback-os")
	t.Logf("rollback-os: %s", out)
	g.reboot()
	if v := g.version(); v != medium {
		t.Fatalf("after rollback-os: version %s; want %s", v, medium)
	}
	wantEqual(t, "home after rollback-os", g.run("cat /home/op/before-upgrades"), "before")
	g.poweroff()
}

// waitStatus waits until lightwhale status says want.
func waitStatus(t *testing.T, g *guest, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st := g.sudo("lightwhale status")
		if strings.Contains(st, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("lightwhale status does not say %q after %s:\n%s", want, within, st)
		}
		time.Sleep(5 * time.Second)
	}
}
