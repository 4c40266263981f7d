package wifi

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"lightwhale/tests/vm"
)

// The network of the end-to-end test. The SSID is hostile on purpose: a
// quote, a backslash, a brace and a newline followed by "network={" must
// reach the access point byte for byte, over the (simulated) air.
const (
	vmSSID = "Lightwhale \"e2e\" \\ }\nnetwork={"
	vmPass = "correct horse battery staple"
)

// vmInit is PID 1 of the test guest: two mac80211_hwsim radios, hostapd
// (WPA2-PSK) and busybox udhcpd on the first, setup-wifi on the second. Each
// step prints its output between STEP-BEGIN and STEP-END lines with its exit
// code; the test reads them from the serial console.
const vmInit = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /run /tmp /var/run /etc/wpa_supplicant
echo /bin/modprobe >/proc/sys/kernel/modprobe
step() { n=$1; shift; echo "STEP-BEGIN $n"; "$@" 2>&1; echo "STEP-END $n rc=$?"; }
for m in ccm ctr cmac gcm seqiv; do modprobe $m; done
step hwsim modprobe mac80211_hwsim radios=2
ip link set lo up
ssid=$(cat /wifi/ssid)
pass=$(cat /wifi/pass)

step two-radios setup-wifi --ssid x --password-stdin </wifi/pass
hostapd -B -P /run/hostapd.pid /wifi/hostapd.conf
ip addr add 192.168.77.1/24 dev wlan0
udhcpd /wifi/udhcpd.conf
sleep 3
step scan setup-wifi --scan

wrong() { printf '%s\n' 'not the passphrase' | setup-wifi --ssid "$ssid" --password-stdin --country DK --timeout 20s; }
step wrong-password wrong
right() { printf '%s\n' "$pass" | setup-wifi --ssid "$ssid" --password-stdin --country DK --timeout 90s; }
step connect right
argv() { for f in /proc/[0-9]*/cmdline; do if grep -q -F -e "$pass" "$f"; then echo "passphrase in $f"; return 1; fi; done; echo none; }
step argv-clean argv
step config-mode stat -c %a /etc/wpa_supplicant/wpa_supplicant-wlan1.conf
nopass() { ! grep -q -F -e "$pass" /etc/wpa_supplicant/wpa_supplicant-wlan1.conf; }
step config-no-passphrase nopass
step status setup-wifi --status

# A reboot, as far as wifi goes: daemons gone, no address, link down.
kill $(cat /run/udhcpc-wlan1.pid) $(cat /run/wpa_supplicant-wlan1.pid)
sleep 1
ip addr flush dev wlan1
ip link set wlan1 down
step boot setup-wifi --boot --timeout 90s
step address ip -4 addr show dev wlan1
echo WIFI-E2E-END
poweroff -f
`

// vmModules are loaded (with their dependencies) from a Debian kernel's
// modules: the simulated radios and the ciphers WPA2 needs.
var vmModules = []string{"mac80211_hwsim", "ccm", "ctr", "cmac", "gcm", "seqiv"}

// TestWifiInQEMU runs the built binary against a real wpa_supplicant and a
// real hostapd on mac80211_hwsim radios of a Debian kernel under QEMU.
// It needs LIGHTWHALE_BIN, LIGHTWHALE_STUB_KERNEL_ROOT (a `dpkg -x` of
// linux-image-*-amd64), and hostapd and wpasupplicant installed on this host
// (their binaries and libraries are copied into the guest).
func TestWifiInQEMU(t *testing.T) {
	bin, root := os.Getenv("LIGHTWHALE_BIN"), os.Getenv("LIGHTWHALE_STUB_KERNEL_ROOT")
	if bin == "" || root == "" {
		t.Skip("skipping: set LIGHTWHALE_BIN and LIGHTWHALE_STUB_KERNEL_ROOT (a dpkg -x of linux-image-*-amd64)")
	}
	if why := vm.QEMU(); why != "" {
		t.Skip("skipping: " + why)
	}
	for _, p := range []string{"/usr/sbin/hostapd", "/usr/sbin/wpa_supplicant"} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("skipping: %v (apt-get install hostapd wpasupplicant)", err)
		}
	}
	kernels, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	modDirs, _ := filepath.Glob(filepath.Join(root, "lib", "modules", "*"))
	if len(kernels) != 1 || len(modDirs) != 1 {
		t.Fatalf("%s: want one boot/vmlinuz-* and one lib/modules/*, have %q %q", root, kernels, modDirs)
	}
	initrd := filepath.Join(t.TempDir(), "wifi-initramfs.cpio")
	if err := writeVMInitramfs(initrd, bin, modDirs[0]); err != nil {
		t.Fatal(err)
	}
	m, err := vm.Start(t, vm.Config{Kernel: kernels[0], Initrd: initrd, Append: "console=ttyS0 panic=-1 quiet", MemMiB: 1024})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	if err := m.WaitSerial(ctx, "WIFI-E2E-END"); err != nil {
		t.Fatal(err)
	}
	steps := parseSteps(m.SerialLog())
	for _, name := range []string{"hwsim", "two-radios", "scan", "wrong-password", "connect", "argv-clean", "config-mode",
		"config-no-passphrase", "status", "boot", "address"} {
		s, ok := steps[name]
		if !ok {
			t.Errorf("step %s did not run", name)
			continue
		}
		t.Logf("step %s (exit %d):\n%s", name, s.rc, s.out)
	}
	check := func(name string, wantRC int, wantOut ...string) {
		t.Helper()
		s := steps[name]
		if (wantRC == 0) != (s.rc == 0) {
			t.Errorf("step %s: exit %d, want %s", name, s.rc, map[bool]string{true: "0", false: "non-zero"}[wantRC == 0])
		}
		for _, w := range wantOut {
			if !strings.Contains(s.out, w) {
				t.Errorf("step %s: output lacks %q", name, w)
			}
		}
	}
	quoted := displaySSID([]byte(vmSSID))
	check("hwsim", 0)
	check("two-radios", 1, "several wireless interfaces (wlan0, wlan1)")
	check("scan", 0, "WPA2", quoted)
	check("wrong-password", 1, "wlan1: connecting to", "wrong passphrase?")
	check("connect", 0, " connected (", "wlan1: connected, address 192.168.77.")
	check("argv-clean", 0, "none")
	check("config-mode", 0, "600")
	check("config-no-passphrase", 0)
	check("status", 0, "wlan0: access point mode", "wlan1: connected to "+quoted, "address: 192.168.77.", "wpa_supplicant: running")
	check("boot", 0, " connected (", "wlan1: connected, address 192.168.77.")
	check("address", 0, "inet 192.168.77.")
}

type step struct {
	rc  int
	out string
}

var stepRE = regexp.MustCompile(`(?s)STEP-BEGIN (\S+)\r?\n(.*?)STEP-END (\S+) rc=(\d+)`)

func parseSteps(log string) map[string]step {
	steps := map[string]step{}
	for _, m := range stepRE.FindAllStringSubmatch(log, -1) {
		var rc int
		fmt.Sscan(m[4], &rc)
		steps[m[1]] = step{rc: rc, out: strings.ReplaceAll(m[2], "\r", "")}
	}
	return steps
}

// writeVMInitramfs packs busybox, the binary, hostapd and wpa_supplicant
// with their shared libraries, the modules and the test's configuration.
func writeVMInitramfs(path, bin, modDir string) error {
	var es []vm.CpioEntry
	dirs := map[string]bool{}
	addDirs := func(name string) {
		for d := filepath.Dir(name); d != "." && d != "/" && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
			defer func(d string) { es = append(es, vm.CpioEntry{Name: d, Mode: vm.ModeDir | 0o755}) }(d)
		}
	}
	add := func(name string, mode uint32, data []byte) {
		addDirs(name)
		es = append(es, vm.CpioEntry{Name: name, Mode: mode, Data: data})
	}
	copyFile := func(src, dst string, perm uint32) error {
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		add(dst, vm.ModeFile|perm, b)
		return nil
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return fmt.Errorf("busybox-static is needed: %w", err)
	}
	if err := copyFile(bb, "bin/busybox", 0o755); err != nil {
		return err
	}
	add("dev/console", vm.ModeChar|0o600, nil)
	es[len(es)-1].Major, es[len(es)-1].Minor = 5, 1
	for _, d := range []string{"proc", "sys"} {
		add(d+"/.keep", vm.ModeFile|0o644, nil)
	}
	add("init", vm.ModeFile|0o755, []byte(vmInit))
	if err := copyFile(bin, "usr/bin/lightwhale", 0o755); err != nil {
		return err
	}
	add("usr/bin/setup-wifi", vm.ModeSymlink|0o777, []byte("lightwhale"))

	// hostapd and wpa_supplicant, with every library ldd names, at the same paths.
	libs := map[string]bool{}
	for _, prog := range []string{"/usr/sbin/hostapd", "/usr/sbin/wpa_supplicant"} {
		if err := copyFile(prog, strings.TrimPrefix(prog, "/"), 0o755); err != nil {
			return err
		}
		out, err := exec.Command("ldd", prog).Output()
		if err != nil {
			return fmt.Errorf("ldd %s: %w", prog, err)
		}
		for _, f := range strings.Fields(string(out)) {
			if strings.HasPrefix(f, "/") && !libs[f] {
				libs[f] = true
				if err := copyFile(f, strings.TrimPrefix(f, "/"), 0o755); err != nil {
					return err
				}
			}
		}
	}

	// The modules and their dependencies, at their paths, with modules.dep
	// and modules.alias so that busybox modprobe (and the kernel's requests
	// for ciphers) find them.
	deps, err := readModulesDep(filepath.Join(modDir, "modules.dep"))
	if err != nil {
		return err
	}
	rel := "lib/modules/" + filepath.Base(modDir) + "/"
	want := map[string]bool{}
	var visit func(string)
	visit = func(p string) {
		if !want[p] {
			want[p] = true
			for _, d := range deps[p] {
				visit(d)
			}
		}
	}
	// Newer kernels build some in (6.12: ctr).
	builtin, _ := os.ReadFile(filepath.Join(modDir, "modules.builtin"))
	for _, name := range vmModules {
		found := strings.Contains("\n"+string(builtin), "/"+name+".ko\n")
		for p := range deps {
			if b := filepath.Base(p); b == name+".ko" || strings.HasPrefix(b, name+".ko.") {
				visit(p)
				found = true
			}
		}
		if !found {
			return fmt.Errorf("module %s not in %s/modules.dep", name, modDir)
		}
	}
	for p := range want {
		if err := copyFile(filepath.Join(modDir, p), rel+p, 0o644); err != nil {
			return err
		}
	}
	for _, f := range []string{"modules.dep", "modules.alias", "modules.builtin"} {
		if err := copyFile(filepath.Join(modDir, f), rel+f, 0o644); err != nil {
			return err
		}
	}

	// The access point, the DHCP server, and DHCP client script.
	add("wifi/ssid", vm.ModeFile|0o644, []byte(vmSSID))
	add("wifi/pass", vm.ModeFile|0o600, []byte(vmPass+"\n"))
	add("wifi/hostapd.conf", vm.ModeFile|0o600, []byte(fmt.Sprintf(
		"interface=wlan0\ndriver=nl80211\nssid2=%x\nhw_mode=g\nchannel=6\nwpa=2\nwpa_key_mgmt=WPA-PSK\nrsn_pairwise=CCMP\nwpa_passphrase=%s\n",
		vmSSID, vmPass)))
	add("wifi/udhcpd.conf", vm.ModeFile|0o644, []byte(
		"start 192.168.77.100\nend 192.168.77.150\ninterface wlan0\nlease_file /tmp/udhcpd.leases\noption subnet 255.255.255.0\noption router 192.168.77.1\n"))
	add("etc/udhcpc/default.script", vm.ModeFile|0o755, []byte(udhcpcScript))

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	if err := vm.WriteCpio(w, es); err != nil {
		return err
	}
	return w.Flush()
}

// udhcpcScript is the smallest script that makes busybox udhcpc configure
// the address it leased (Debian's busybox looks for it at this path).
const udhcpcScript = `#!/bin/sh
case "$1" in
deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;
bound|renew)
	ip -4 addr flush dev "$interface"
	ip addr add "$ip/$mask" dev "$interface"
	[ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
	;;
esac
exit 0
`

func readModulesDep(path string) (map[string][]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	deps := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		mod, rest, ok := strings.Cut(line, ":")
		if ok {
			deps[mod] = strings.Fields(rest)
		}
	}
	return deps, nil
}
