package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"lightwhale/tests/vm"
)

// Step deadlines. TCG is slow: a boot to SSH takes 30-90 s here, a docker
// CLI call about 3 s; these are generous but still fail a hung guest fast.
const (
	bootTimeout   = 6 * time.Minute // power-on or reboot until SSH answers
	dockerTimeout = 6 * time.Minute // SSH up until dockerd answers (two TCG guests share 2 cores)
	cmdTimeout    = 3 * time.Minute // any one guest command
	offTimeout    = 3 * time.Minute // poweroff until QEMU exits
)

// requireISO returns the ISO under test, or skips with the reason.
func requireISO(t testing.TB) string {
	t.Helper()
	if why := vm.QEMU(); why != "" {
		t.Skip(why)
	}
	iso := os.Getenv("LIGHTWHALE_ISO")
	if iso == "" {
		t.Skip("LIGHTWHALE_ISO is not set (make test sets it to the ISO from make iso)")
	}
	if _, err := os.Stat(iso); err != nil {
		t.Skipf("LIGHTWHALE_ISO: %v", err)
	}
	return iso
}

// guest is a booted Lightwhale with the test's fatal helpers.
type guest struct {
	*vm.Machine
	t       testing.TB
	cfg     vm.Config
	started time.Time // when QEMU was started
}

// startGuest powers on a machine and waits up to within for SSH; the error
// is for callers to whom a guest that never answers is a result (make bench).
func startGuest(t testing.TB, cfg vm.Config, within time.Duration) (*guest, error) {
	g, err := powerOn(t, cfg)
	if err != nil {
		return nil, err
	}
	return g, g.waitUp(within)
}

// powerOn starts QEMU without waiting for the guest.
func powerOn(t testing.TB, cfg vm.Config) (*guest, error) {
	m, err := vm.Start(t, cfg)
	if err != nil {
		return nil, err
	}
	return &guest{Machine: m, t: t, cfg: cfg, started: time.Now()}, nil
}

// waitUp waits up to within for SSH; QEMU is killed when it never answers.
func (g *guest) waitUp(within time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	if err := g.WaitSSH(ctx); err != nil {
		g.Kill()
		return err
	}
	g.t.Logf("ssh up %.0f s after qemu start", time.Since(g.started).Seconds())
	return nil
}

// shared is one volatile UEFI guest booted once per test binary, Docker up,
// for checks that need no fresh boot (see sharedGuest).
var shared struct {
	once   sync.Once
	m      *vm.Machine
	logDir string
	err    error
}

// sharedGuest returns the package's shared guest, booting it on first use:
// one boot instead of one per check. Its checks may run in parallel. They
// must leave it as they found it: no reboot, power-off or Reconnect (use
// Login for a fresh login), nothing another check could see (remove what
// you create; use names of your own).
func sharedGuest(t *testing.T) *guest {
	t.Helper()
	iso := requireISO(t)
	// UEFI: the shared guest is also scenario 2's (TestUEFI).
	cfg := vm.Config{ISO: iso, Name: "shared-volatile", Firmware: vm.UEFI}
	shared.once.Do(func() {
		if cfg.LogDir = os.Getenv("LIGHTWHALE_TEST_LOGS"); cfg.LogDir == "" {
			if cfg.LogDir, shared.err = os.MkdirTemp("", "lw-shared-"); shared.err != nil {
				return
			}
			shared.logDir = cfg.LogDir
		}
		start := time.Now()
		m, err := vm.Launch(cfg)
		if err != nil {
			shared.err = err
			return
		}
		shared.m = m
		ctx, cancel := context.WithTimeout(context.Background(), bootTimeout+dockerTimeout)
		defer cancel()
		if err := m.WaitSSH(ctx); err != nil {
			shared.err = err
			return
		}
		if err := m.WaitDocker(ctx); err != nil {
			shared.err = err
			return
		}
		t.Logf("shared guest: Docker up %.0f s after qemu start, serial %s", time.Since(start).Seconds(), m.Serial)
	})
	if shared.err != nil {
		if shared.m != nil {
			t.Logf("serial console of the shared guest (%s), last lines:\n%s", shared.m.Serial, shared.m.SerialTail(200))
		}
		t.Fatalf("shared guest: %v", shared.err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("serial console of the shared guest (%s), last lines:\n%s", shared.m.Serial, shared.m.SerialTail(100))
		}
	})
	return &guest{Machine: shared.m, t: t, cfg: cfg}
}

// TestMain ends the shared guest after the last test.
func TestMain(m *testing.M) {
	code := m.Run()
	if shared.m != nil {
		shared.m.Kill()
	}
	if shared.logDir != "" {
		os.RemoveAll(shared.logDir)
	}
	os.Exit(code)
}

// boot powers on a machine and waits for SSH.
func boot(t testing.TB, cfg vm.Config) *guest {
	t.Helper()
	g, err := startGuest(t, cfg, bootTimeout)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// run runs a command as op and fails the test when it fails.
func (g *guest) run(cmd string) string {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := g.Run(ctx, cmd)
	if err != nil {
		g.t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// sudo runs a command as root and fails the test when it fails.
func (g *guest) sudo(cmd string) string {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := g.Sudo(ctx, cmd)
	if err != nil {
		g.t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// try runs a command as op and returns its error instead of failing.
func (g *guest) try(cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := g.Run(ctx, cmd)
	return strings.TrimSpace(out), err
}

// trySudo runs a command as root and returns its error instead of failing.
func (g *guest) trySudo(cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := g.Sudo(ctx, cmd)
	return strings.TrimSpace(out), err
}

// waitDocker waits until dockerd answers /_ping, then checks the docker CLI
// works against it.
func (g *guest) waitDocker() {
	g.t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), dockerTimeout)
	defer cancel()
	if err := g.WaitDocker(ctx); err != nil {
		g.t.Fatalf("%v\n%s", err, g.dockerDiag())
	}
	g.t.Logf("dockerd %s answered %.0f s after ssh",
		g.run("docker version --format '{{.Server.Version}}'"), time.Since(start).Seconds())
}

// inRAM is stage 1's line once the root image is in RAM (applets/stage1).
const inRAM = "the boot medium may be removed"

// waitInRAM waits until this boot's root image is in RAM. The copy runs at
// idle priority, so on a busy boot it ends after dockerd has started.
func (g *guest) waitInRAM() {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	if err := g.WaitSerial(ctx, inRAM); err != nil {
		g.t.Fatalf("%v\n%s", err, g.SerialTail(20))
	}
}

// dockerDiag gathers what explains a container that does not answer.
func (g *guest) dockerDiag() string {
	out, _ := g.trySudo("echo '# docker ps -a'; timeout 60 docker ps -a; echo '# /var/log/docker.log'; tail -n 40 /var/log/docker.log; echo '# dmesg'; dmesg | tail -n 20; echo '# ps'; ps")
	return out
}

func (g *guest) reboot() {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	start := time.Now()
	if err := g.Reboot(ctx); err != nil {
		g.t.Fatal(err)
	}
	g.t.Logf("rebooted: ssh up again after %.0f s", time.Since(start).Seconds())
}

func (g *guest) poweroff() {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), offTimeout)
	defer cancel()
	if err := g.Poweroff(ctx); err != nil {
		g.t.Fatal(err)
	}
}

// mode is the persistence mode word in /run/lightwhale/mode.
func (g *guest) mode() string {
	g.t.Helper()
	return g.run("cat /run/lightwhale/mode")
}

// mountFS returns the filesystem type mounted at dir (the topmost mount).
func (g *guest) mountFS(dir string) string {
	g.t.Helper()
	return g.run(fmt.Sprintf("awk '$2 == %q { t = $3 } END { print t }' /proc/mounts", dir))
}

// bbImage is a container image built in the guest from its own static
// busybox: no registry is needed. Its default command serves /www on :80.
const bbImage = "local/bb"

// busyboxImageScript imports bbImage in the guest; page is served as
// /index.html when no volume hides /www.
func busyboxImageScript(page string) string { return importBusyboxScript(bbImage, page) }

// importBusyboxScript imports image in the guest from its static busybox,
// every applet linked in /bin; page is /www/index.html.
func importBusyboxScript(image, page string) string {
	return `set -e
d=$(mktemp -d)
mkdir -p "$d/bin" "$d/www" "$d/tmp"
cp "$(readlink -f /bin/busybox)" "$d/bin/busybox"
for a in $(busybox --list); do [ "$a" = busybox ] || ln -s busybox "$d/bin/$a"; done
echo ` + vm.ShellQuote(page) + ` >"$d/www/index.html"
tar -C "$d" -c . | docker import -c 'CMD ["/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www"]' - ` + image + ` >/dev/null
rm -rf "$d"`
}

func (g *guest) buildBusyboxImage(page string) {
	g.t.Helper()
	g.run(busyboxImageScript(page))
}

// httpGet fetches a page from the guest's port 80 through the host forward.
func (g *guest) httpGet(path string, within time.Duration) string {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	body, err := vm.HTTPGet(ctx, g.HTTPPort, path)
	if err != nil {
		g.t.Fatalf("%v\n%s", err, g.dockerDiag())
	}
	return strings.TrimSpace(body)
}

// disks makes sparse images in dir: one per spec, named disk0.img, ...
type diskSpec struct {
	sizeMiB int64
	head    string // written at byte 0; "" for a blank disk
	bus     vm.Bus
}

func makeDisks(t testing.TB, dir string, specs ...diskSpec) []vm.Disk {
	t.Helper()
	var ds []vm.Disk
	for i, s := range specs {
		p := filepath.Join(dir, fmt.Sprintf("disk%d.img", i))
		if err := vm.NewDisk(p, s.sizeMiB, s.head); err != nil {
			t.Fatal(err)
		}
		ds = append(ds, vm.Disk{Path: p, Bus: s.bus})
	}
	return ds
}

// magic is the header exactly as the documented `echo | dd` writes it.
const magic = vm.Magic + "\n"

// wantMatch fails unless got matches the regular expression.
func wantMatch(t testing.TB, what, got, re string) {
	t.Helper()
	if !regexp.MustCompile(re).MatchString(got) {
		t.Fatalf("%s = %q; want a match for %s", what, got, re)
	}
}

// wantMotd waits for the message of the day to match re: S99motd writes it
// last in the boot, and hotplug rewrites it, so a test that asks early would
// race it.
func (g *guest) wantMotd(what, re string) {
	g.t.Helper()
	want := regexp.MustCompile(re)
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(time.Second) {
		motd, _ := g.try("cat /run/lightwhale/motd")
		if want.MatchString(motd) {
			return
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("%s: the motd did not match %s within 2 minutes:\n%s", what, re, motd)
		}
	}
}

func wantEqual(t testing.TB, what, got, want string) {
	t.Helper()
	if got != want {
		t.Fatalf("%s = %q; want %q", what, got, want)
	}
}

// The guest agent the ISO ships answers on the channel of the one QEMU
// definition (make run has it too), on the shared guest.
func TestGuestAgent(t *testing.T) {
	t.Parallel()
	g := sharedGuest(t)
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	if _, err := g.GuestAgent(ctx, "guest-ping"); err != nil {
		t.Fatal(err)
	}
	info, err := g.GuestAgent(ctx, "guest-info")
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ Version string }
	if err := json.Unmarshal(info, &v); err != nil || v.Version == "" {
		t.Fatalf("guest-info = %s, %v; want the agent's version", info, err)
	}
	t.Logf("qemu-ga %s answers", v.Version)
	if err := g.Login(ctx); err != nil {
		t.Fatal(err)
	}
}
