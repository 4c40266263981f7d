package e2e

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

// Issue 18: the ISO written to a USB stick boots a stock PC with Secure
// Boot on (OVMF with Microsoft's keys enrolled): firmware → Debian's shim →
// Debian's GRUB → Debian's kernel, which then loads only signed modules
// (lockdown). The shared guest boots the same chain from the CD without
// Secure Boot.
func TestSecureBoot(t *testing.T) {
	t.Parallel()
	iso := requireISO(t)
	stick := filepath.Join(t.TempDir(), "stick.img")
	copyFile(t, iso, stick)
	g := boot(t, vm.Config{Disks: []vm.Disk{{Path: stick, Bus: vm.USB, Boot: true}}, Firmware: vm.SecureBoot})
	g.waitDocker()

	wantEqual(t, "boot line of lightwhale version", g.run("lightwhale version | sed -n 's/^boot: //p'"), "UEFI, Secure Boot on, lockdown integrity")
	wantMatch(t, "kernel log", g.sudo("dmesg | grep -i 'secure boot'"), `(?i)secure boot enabled`)
	g.wantMotd("motd", `Boot: UEFI, Secure Boot on, lockdown integrity\.`)
	// Stage 1 loaded the USB drivers the stick asked for and read it whole.
	g.waitInRAM()
	wantMatch(t, "stage 1's console", g.BootLog(), `boot medium: /dev/sd[a-z]+(.|\n)*root image copied into RAM`)

	// Lockdown in effect: a module that has lost its signature is refused,
	// while the same module as Debian signed it loads.
	mod := g.sudo("modinfo -n dummy")
	g.sudo("modprobe -r dummy 2>/dev/null; size=$(stat -c %s " + vm.ShellQuote(mod) + ") && head -c $((size - 28)) " + vm.ShellQuote(mod) + " > /tmp/dummy-unsigned.ko")
	if out, err := g.trySudo("insmod /tmp/dummy-unsigned.ko"); err == nil {
		t.Errorf("an unsigned module loaded under Secure Boot: %s", out)
	}
	wantMatch(t, "kernel log after the unsigned module", g.sudo("dmesg | tail -n 20"), `(?i)unsigned module (is rejected|loading is restricted)`)
	g.sudo("modprobe dummy && modprobe -r dummy")

	checkDockerServes(t, g, "secure-boot-page")
}

// The same firmware refuses an image whose kernel is not signed: GRUB (via
// shim) stops with a signature error and Linux never starts.
func TestSecureBootRefusesUnsignedKernel(t *testing.T) {
	t.Parallel()
	iso := requireISO(t)
	for _, tool := range []string{"sbattach", "xorriso"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found (scripts/deps.sh installs it)", tool)
		}
	}
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinuz")
	if err := vm.ExtractFromISO(iso, "/boot/vmlinuz", kernel); err != nil {
		t.Fatal(err)
	}
	unsigned := filepath.Join(dir, "unsigned.iso")
	for _, c := range [][]string{
		{"sbattach", "--remove", kernel},
		{"xorriso", "-indev", iso, "-outdev", unsigned, "-boot_image", "any", "replay", "-update", kernel, "/boot/vmlinuz"},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(c, " "), err, out)
		}
	}
	if out, _ := exec.Command("sbverify", "--list", kernel).CombinedOutput(); strings.Contains(string(out), "signature 1") {
		t.Fatalf("the stripped kernel still carries a signature:\n%s", out)
	}

	g, err := powerOn(t, vm.Config{ISO: unsigned, Firmware: vm.SecureBoot})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// GRUB's menu, then its refusal of the kernel on the serial console.
	if err := g.WaitSerial(ctx, "Lightwhale"); err != nil {
		t.Fatal(err)
	}
	if err := g.WaitSerial(ctx, "signature"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Second) // time enough for a kernel that did start to say so
	log := g.BootLog()
	wantMatch(t, "GRUB's refusal", log, `(?i)(bad shim signature|invalid signature|verification failed)`)
	if strings.Contains(log, "Linux version") {
		t.Fatalf("the unsigned kernel started under Secure Boot:\n%s", g.SerialTail(40))
	}
	_ = os.Remove(unsigned)
}

// The build's signature check (iso/check-signed.sh, run by iso/build.sh
// before packing) passes the ISO's own kernel and modules, and stops with
// one line naming a module without its signature or a kernel stripped of
// its signature.
func TestBuildRefusesUnsigned(t *testing.T) {
	t.Parallel()
	iso := requireISO(t)
	if _, err := exec.LookPath("sbattach"); err != nil {
		t.Skip("sbattach not found (scripts/deps.sh installs sbsigntool)")
	}
	dir := t.TempDir()
	kernel, initrd := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd.img")
	for f, dst := range map[string]string{"/boot/vmlinuz": kernel, "/boot/initrd.img": initrd} {
		if err := vm.ExtractFromISO(iso, f, dst); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := vm.InitramfsEntries(initrd)
	if err != nil {
		t.Fatal(err)
	}
	mods := filepath.Join(dir, "modules")
	if err := os.Mkdir(mods, 0o755); err != nil {
		t.Fatal(err)
	}
	var module []byte
	for _, e := range entries {
		if strings.HasSuffix(e.Name, ".ko") {
			module = e.Data
			break
		}
	}
	if module == nil {
		t.Fatal("the initramfs holds no .ko module")
	}
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(mods, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	check := func() (string, error) {
		out, err := exec.Command("../../iso/check-signed.sh", mods, kernel).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}

	write("signed.ko", module)
	if out, err := check(); err != nil {
		t.Fatalf("the ISO's own kernel and module were refused: %v: %s", err, out)
	}
	write("stripped.ko", module[:len(module)-28])
	if out, err := check(); err == nil || strings.Contains(out, "\n") || !strings.Contains(out, "stripped.ko") || strings.Contains(out, "signed.ko ") {
		t.Errorf("a module without its signature: err %v, output %q; want one line naming stripped.ko only", err, out)
	}
	os.Remove(filepath.Join(mods, "stripped.ko"))
	if out, err := exec.Command("sbattach", "--remove", kernel).CombinedOutput(); err != nil {
		t.Fatalf("sbattach --remove: %v: %s", err, out)
	}
	if out, err := check(); err == nil || strings.Contains(out, "\n") || !strings.Contains(out, "vmlinuz") {
		t.Errorf("a kernel without its signature: err %v, output %q; want one line naming vmlinuz", err, out)
	}
}
