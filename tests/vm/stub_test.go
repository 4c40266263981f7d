package vm

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// stubModules are the Debian kernel modules the stub guest loads, in
// dependency order (from modules.dep), for its virtio NIC and disks.
var stubModules = []string{
	"kernel/drivers/virtio/virtio_ring.ko",
	"kernel/drivers/virtio/virtio.ko",
	"kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
	"kernel/drivers/virtio/virtio_pci_modern_dev.ko",
	"kernel/drivers/virtio/virtio_pci.ko",
	"kernel/net/core/failover.ko",
	"kernel/drivers/net/net_failover.ko",
	"kernel/drivers/net/virtio_net.ko",
	"kernel/drivers/block/virtio_blk.ko",
}

// stubInit brings up what the harness needs from a guest: the NIC with
// QEMU's user-net address, an SSH server, and sudo/reboot/poweroff that
// behave like Lightwhale's for the harness.
const stubInit = `#!/bin/busybox sh
export PATH=/stub/bin:/bin
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s /bin
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /tmp /www
for m in $(cat /stub/modules); do insmod /stub/$m || echo "stub: insmod $m failed"; done
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
echo "stub: up $(cat /proc/uptime)"
/stub/sshd &
# busybox reboot/poweroff signal PID 1, as they do Lightwhale's busybox init.
trap 'sync; busybox reboot -f' TERM
trap 'sync; busybox poweroff -f' USR2
while :; do sleep 1; done
`

var stubBin = map[string]string{
	// Lightwhale's sudo asks for the password on stdin (-S): swallow it.
	"sudo": "#!/bin/sh\nwhile [ \"${1#-}\" != \"$1\" ]; do [ \"$1\" = -p ] && shift; [ \"$1\" = -S ] && read -r _; shift; done\nexec \"$@\"\n",
}

// stubKernel finds the kernel of a Debian linux-image package unpacked with
// `dpkg -x` (and `depmod -b`) at root.
func stubKernel(t *testing.T) (vmlinuz, modDir string) {
	root := os.Getenv("LIGHTWHALE_STUB_KERNEL_ROOT")
	if root == "" {
		t.Skip("harness self-test: set LIGHTWHALE_STUB_KERNEL_ROOT to a `dpkg -x` of linux-image-*-amd64 (see tests/README.md)")
	}
	ks, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	ms, _ := filepath.Glob(filepath.Join(root, "lib", "modules", "*"))
	if len(ks) != 1 || len(ms) != 1 {
		t.Fatalf("%s: want one boot/vmlinuz-* and one lib/modules/*, have %q %q", root, ks, ms)
	}
	return ks[0], ms[0]
}

func writeStubInitramfs(t *testing.T, path, modDir string) {
	t.Helper()
	dir := t.TempDir()
	sshd := filepath.Join(dir, "sshd")
	cmd := exec.Command("go", "build", "-o", sshd, "./testdata/stubsshd")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build stub sshd: %v\n%s", err, out)
	}
	es, err := busyboxEntries()
	if err != nil {
		t.Fatal(err)
	}
	add := func(name string, mode uint32, data []byte) {
		es = append(es, CpioEntry{Name: name, Mode: mode, Data: data})
	}
	add("init", ModeFile|0o755, []byte(stubInit))
	add("stub", ModeDir|0o755, nil)
	add("stub/bin", ModeDir|0o755, nil)
	for name, body := range stubBin {
		add("stub/bin/"+name, ModeFile|0o755, []byte(body))
	}
	b, err := os.ReadFile(sshd)
	if err != nil {
		t.Fatal(err)
	}
	add("stub/sshd", ModeFile|0o755, b)
	var names []string
	// Newer kernels build some of them in (6.12: the virtio core).
	builtin, _ := os.ReadFile(filepath.Join(modDir, "modules.builtin"))
	for i, m := range stubModules {
		if strings.Contains("\n"+string(builtin), "\n"+m+"\n") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(modDir, m))
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("m%d.ko", i)
		add("stub/"+name, ModeFile|0o644, data)
		names = append(names, name)
	}
	add("stub/modules", ModeFile|0o644, []byte(strings.Join(names, "\n")+"\n"))
	if err := writeCpioFile(path, es); err != nil {
		t.Fatal(err)
	}
}

// TestHarnessStub proves the harness itself on a guest that boots in
// seconds: SSH, sudo, the HTTP forward, disks, a real reboot and a real
// power-off followed by a new QEMU on the same disk.
func TestHarnessStub(t *testing.T) {
	if why := QEMU(); why != "" {
		t.Skip(why)
	}
	kernel, modDir := stubKernel(t)
	dir := t.TempDir()
	initrd := filepath.Join(dir, "stub.cpio")
	writeStubInitramfs(t, initrd, modDir)
	disk := filepath.Join(dir, "disk.img")
	if err := NewMagicDisk(disk, 64); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Kernel: kernel, Initrd: initrd, Append: "console=ttyS0 quiet", MemMiB: 512,
		Disks: []Disk{{Path: disk}}}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	m, err := Start(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.WaitSSH(ctx); err != nil {
		t.Fatal(err)
	}
	if out, err := m.Sudo(ctx, "id -u"); err != nil || strings.TrimSpace(out) != "0" {
		t.Fatalf("sudo id -u = %q, %v; want 0", out, err)
	}
	if _, err := m.Run(ctx, "false"); err == nil {
		t.Fatal("a failing guest command reported success")
	}
	if out, err := m.Run(ctx, "head -c 27 /dev/vda"); err != nil || out != Magic {
		t.Fatalf("disk header in guest = %q, %v; want %q", out, err, Magic)
	}

	// The HTTP forward reaches a server in the guest.
	if _, err := m.Run(ctx, "echo stub-page >/www/index.html && (httpd -p 80 -h /www &)"); err != nil {
		t.Fatal(err)
	}
	if body, err := HTTPGet(ctx, m.HTTPPort, "/index.html"); err != nil || body != "stub-page\n" {
		t.Fatalf("http via forward = %q, %v", body, err)
	}

	id1, err := m.BootID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Reboot(ctx); err != nil {
		t.Fatal(err)
	}
	if id2, err := m.BootID(ctx); err != nil || id2 == id1 {
		t.Fatalf("boot id after reboot %q, %v; before %q", id2, err, id1)
	}
	if got := strings.Count(m.SerialLog(), "stub: up "); got != 2 {
		t.Fatalf("console shows %d boots, want 2", got)
	}
	if strings.Count(m.BootLog(), "stub: up ") != 1 {
		t.Fatalf("BootLog holds more than the current boot:\n%s", m.BootLog())
	}

	// Write through the guest, power off, and find the bytes in a new QEMU.
	if _, err := m.Sudo(ctx, "echo persisted | dd of=/dev/vda bs=512 seek=2048 conv=fsync 2>/dev/null"); err != nil {
		t.Fatal(err)
	}
	if err := m.Poweroff(ctx); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 10)
	_, err = f.ReadAt(got, 2048*512)
	f.Close()
	if err != nil || !bytes.Equal(got, []byte("persisted\n")) {
		t.Fatalf("host sees %q, %v at 1 MiB; want the guest's write", got, err)
	}
	m2, err := Start(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.WaitSSH(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(m2.Serial, "-2.serial.log") {
		t.Errorf("second power-on logs to %s; want its own -2 log", m2.Serial)
	}
	out, err := m2.Run(ctx, "dd if=/dev/vda bs=512 skip=2048 count=1 2>/dev/null | head -c 10")
	if err != nil || out != "persisted\n" {
		t.Fatalf("after power cycle the guest reads %q, %v", out, err)
	}
}

func TestBareReferenceBoot(t *testing.T) {
	if why := QEMU(); why != "" {
		t.Skip(why)
	}
	kernel, _ := stubKernel(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sec, err := BareBoot(ctx, t, kernel, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if sec <= 0 || sec > 60 {
		t.Fatalf("bare boot reached init at %.2f s of guest time: implausible", sec)
	}
	t.Logf("bare reference boot reached init at %.2f s guest time", sec)
}
