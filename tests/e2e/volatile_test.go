package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lightwhale/internal/golden"
	"lightwhale/internal/paths"
	"lightwhale/tests/vm"
)

// dataRoot is Docker's data-root in both modes (DESIGN.md, Persistence 8).
const dataRoot = paths.DockerRoot

// checkDockerServes proves the promise of the product: dockerd answers, a
// locally imported image runs with -p 80:80, and the host reaches it.
func checkDockerServes(t *testing.T, g *guest, page string) {
	t.Helper()
	g.waitDocker()
	wantEqual(t, "docker info driver and root", g.run("docker info --format '{{.Driver}} {{.DockerRootDir}}'"), "overlay2 "+dataRoot)
	g.buildBusyboxImage(page)
	g.run("docker run -d --name web -p 80:80 " + bbImage)
	wantEqual(t, "page served from the container via the host forward", g.httpGet("/index.html", 2*time.Minute), page)
}

// Scenarios 1 and 8: volatile, BIOS; the root filesystem cannot be deleted
// and the system keeps working through the attempt; a reboot forgets what
// changed and restores everything (one boot and one reboot for both).
func TestVolatileBIOS(t *testing.T) {
	t.Parallel()
	iso := requireISO(t)
	g := boot(t, vm.Config{ISO: iso})

	wantEqual(t, "mode", g.mode(), "volatile")
	wantMatch(t, "setup-persistence status", g.sudo("setup-persistence status"), `(?i)\bvolatile\b`)
	wantEqual(t, "filesystem at /mnt/lightwhale-data", g.mountFS("/mnt/lightwhale-data"), "tmpfs")
	for _, dir := range []string{"/etc", "/var", "/home"} {
		wantEqual(t, "filesystem at "+dir, g.mountFS(dir), "overlay")
	}
	// Stage 1 mounted these (applets/stage1/mounts.go), not a shell script.
	for dir, fstype := range map[string]string{"/run": "tmpfs", "/tmp": "tmpfs", "/dev/pts": "devpts", "/dev/shm": "tmpfs", "/sys/fs/cgroup": "cgroup2"} {
		wantEqual(t, "filesystem at "+dir, g.mountFS(dir), fstype)
	}
	// btrfs loads on first use: a machine without Lightwhale disks never
	// pays for it (the persistence scenarios load it by claiming a disk).
	wantEqual(t, "btrfs module", g.run("test -d /sys/module/btrfs && echo loaded || echo absent"), "absent")
	wantMatch(t, "/etc/lightwhale-release", g.run("cat /etc/lightwhale-release"), `\d+\.\d+`)
	wantEqual(t, "boot line of lightwhale version", g.run("lightwhale version | sed -n 's/^boot: //p'"), "BIOS, no Secure Boot, lockdown none")

	checkDockerServes(t, g, "volatile-bios-page")

	// The firewall of a booted Docker with one published port, rule for
	// rule (sorted: the order of chains' jumps is iptables' own): our moby
	// patches (dockerstack/) skip iptables runs, never rules. The golden
	// file was made by the build before moby-iptables-fresh-chains.patch;
	// a new moby may change it (go test -update rewrites it: read the diff).
	const rules = "{ iptables -S | sed 's/^/filter /'; iptables -t nat -S | sed 's/^/nat /'; } | sort"
	before := g.sudo(rules)
	golden.Check(t, filepath.Join("testdata", "iptables-published.golden"), before+"\n")
	// dockerd restarted in place finds its iptables chains there (at boot
	// there are none; moby-iptables-absent-chains.patch removes only what
	// exists): it makes them again, and publishes the port again, rule for
	// rule as before.
	g.sudo("/etc/init.d/S60dockerd restart")
	g.waitDocker()
	g.run("docker start web")
	wantEqual(t, "page after dockerd restarted", g.httpGet("/index.html", 2*time.Minute), "volatile-bios-page")
	wantEqual(t, "iptables after dockerd restarted", g.sudo(rules), before)

	out, err := g.trySudo("rm -rf /bin /lib /usr/bin/dockerd")
	if err == nil {
		t.Fatalf("sudo rm -rf /bin /lib succeeded on an immutable root:\n%s", out)
	}
	wantMatch(t, "rm's complaint", out, `(?i)read-only`)
	if _, err := g.trySudo("touch /usr/lw-e2e"); err == nil {
		t.Fatal("wrote a file under /usr: the root is not read-only")
	}
	wantEqual(t, "root filesystem type", g.mountFS("/"), "squashfs")

	// Still working: tools, a fresh SSH login, sudo, docker.
	g.run("test -x /bin/busybox && ls /lib >/dev/null && cat /etc/lightwhale-release >/dev/null")
	if err := g.Reconnect(t.Context()); err != nil {
		t.Fatalf("new ssh login after the rm attempt: %v", err)
	}
	wantEqual(t, "sudo id -u", g.sudo("id -u"), "0")
	g.run("docker version --format '{{.Server.Version}}'")

	// What the overlays allow may be changed; a reboot puts it all back.
	g.sudo("rm -f /etc/motd; echo volatile >/etc/lw-e2e-marker && echo volatile >/home/op/lw-e2e-marker")
	g.reboot()
	for _, f := range []string{"/etc/lw-e2e-marker", "/home/op/lw-e2e-marker"} {
		if out, err := g.try("cat " + f); err == nil {
			t.Errorf("%s survived a reboot in volatile mode: %q", f, out)
		}
	}
	wantEqual(t, "mode after reboot", g.mode(), "volatile")
	g.run("test -x /bin/busybox && test -d /lib && test -L /etc/motd")
	g.waitDocker()
	if strings.Contains(g.run("ls /"), "lw-e2e") {
		t.Fatal("a file from the previous boot is in /")
	}

	// Runs from RAM: stage 1 copied the root image off the CD once Docker
	// answered, so with the CD gone and the page cache dropped, the largest
	// binaries still read whole and a container still runs.
	g.waitInRAM()
	wantMatch(t, "stage 1's console", g.BootLog(), `boot medium: /dev/sr0(.|\n)*Docker's API answers after [0-9.]+s; copying the root image into RAM(.|\n)*root image copied into RAM \(\d+ MiB in [0-9.]+s\); the boot medium may be removed`)
	if out, err := g.Monitor(t.Context(), "eject -f cd0-drive"); err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("eject the CD: %v %q", err, out)
	}
	g.sudo("! dd if=/dev/sr0 of=/dev/null bs=2048 count=1 2>/dev/null") // no medium
	g.sudo("sync && echo 3 >/proc/sys/vm/drop_caches && cat /usr/sbin/dockerd /usr/bin/containerd >/dev/null")
	g.buildBusyboxImage("") // the reboot forgot the image
	wantEqual(t, "a container with the CD ejected", g.run("docker run --rm "+bbImage+" echo from-ram"), "from-ram")
	g.poweroff()
}

// Scenario 2: UEFI (OVMF) reaches the same point: the shared guest boots
// with UEFI for this.
func TestUEFI(t *testing.T) {
	t.Parallel()
	g := sharedGuest(t)
	// Only a kernel booted by UEFI firmware has /sys/firmware/efi.
	g.run("test -d /sys/firmware/efi")
	wantEqual(t, "boot line of lightwhale version", g.run("lightwhale version | sed -n 's/^boot: //p'"), "UEFI, Secure Boot off, lockdown none")
	wantEqual(t, "mode", g.mode(), "volatile")
	defer g.try("docker rm -f web >/dev/null 2>&1")
	checkDockerServes(t, g, "uefi-page")
}
