package wifi

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lightwhale/tests/vm"
)

// TestWifiOnISO is the end-to-end test on the product: the ISO boots in
// QEMU, its own kernel's mac80211_hwsim makes two radios, an access point
// (hostapd and its libraries, which the product image does not carry,
// handed to the guest on a raw disk as a tar archive) runs on one, and the
// image's own setup-wifi, wpa_supplicant, udhcpc and S40network join it on
// the other. It needs LIGHTWHALE_ISO and hostapd installed on this host.
func TestWifiOnISO(t *testing.T) {
	iso := os.Getenv("LIGHTWHALE_ISO")
	if iso == "" {
		t.Skip("skipping: LIGHTWHALE_ISO is not set (make test sets it)")
	}
	if why := vm.QEMU(); why != "" {
		t.Skip("skipping: " + why)
	}
	if _, err := os.Stat("/usr/sbin/hostapd"); err != nil {
		t.Skipf("skipping: %v (apt-get install hostapd)", err)
	}
	disk := filepath.Join(t.TempDir(), "ap.tar.img")
	if err := writeAPDisk(disk); err != nil {
		t.Fatal(err)
	}
	m, err := vm.Start(t, vm.Config{ISO: iso, Disks: []vm.Disk{{Path: disk}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if err := m.WaitSSH(ctx); err != nil {
		t.Fatal(err)
	}
	sudo := func(cmd string) string {
		t.Helper()
		out, err := m.Sudo(ctx, cmd)
		if err != nil {
			t.Fatalf("%v", err)
		}
		t.Logf("$ %s\n%s", cmd, out)
		return out
	}
	expect := func(out string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("output lacks %q", w)
			}
		}
	}
	quoted := displaySSID([]byte(vmSSID))

	// The access point: hostapd (with its own libraries) and busybox udhcpd on wlan0.
	sudo("mkdir -p /tmp/ap && tar -x -C /tmp/ap -f /dev/vda")
	sudo("modprobe mac80211_hwsim radios=2 && for i in 1 2 3 4 5 6 7 8 9 10; do [ -e /sys/class/net/wlan1 ] && break; sleep 1; done; ls /sys/class/net")
	sudo("LD_LIBRARY_PATH=/tmp/ap/lib /tmp/ap/hostapd -B -P /run/hostapd.pid /tmp/ap/hostapd.conf")
	sudo("ip addr add 192.168.77.1/24 dev wlan0 && busybox udhcpd /tmp/ap/udhcpd.conf")

	// S20hostname ran setup-hostname --boot: the default name, in /etc/hosts
	// in the applet's format (the script's fallback writes a space).
	expect(sudo("hostname; grep 127.0.1.1 /etc/hosts"), "lightwhale-", "127.0.1.1\tlightwhale-")

	// The scan runs while dockerd starts: under emulation the new access
	// point once went unheard by all three of the applet's passes (a CI
	// run; it passed on rerun). A user would scan again; so does the test,
	// twice at most.
	scan := sudo("setup-wifi --scan")
	for try := 2; try <= 3 && !(strings.Contains(scan, "WPA2") && strings.Contains(scan, quoted)); try++ {
		time.Sleep(5 * time.Second)
		scan = sudo("setup-wifi --scan")
	}
	expect(scan, "WPA2", quoted)
	out, err := m.Sudo(ctx, `echo 'not the passphrase' | setup-wifi --ssid "$(cat /tmp/ap/ssid)" --password-stdin --timeout 20s`)
	t.Logf("wrong passphrase: %v\n%s", err, out)
	if err == nil {
		t.Error("setup-wifi with a wrong passphrase succeeded")
	}
	expect(out, "wrong passphrase?")
	expect(sudo(`setup-wifi --ssid "$(cat /tmp/ap/ssid)" --password-stdin --country DK --timeout 120s </tmp/ap/pass`),
		" connected (", "wlan1: connected, address 192.168.77.")
	expect(sudo(`for f in /proc/[0-9]*/cmdline; do if grep -q -F -f /tmp/ap/pass "$f"; then echo "passphrase in $f"; fi; done; echo checked`), "checked")
	if out := sudo(`grep -c -F -f /tmp/ap/pass /etc/wpa_supplicant/wpa_supplicant-wlan1.conf || true`); strings.TrimSpace(out) != "0" {
		t.Errorf("the configuration holds the passphrase")
	}
	expect(sudo("stat -c %a /etc/wpa_supplicant/wpa_supplicant-wlan1.conf"), "600")
	expect(sudo("setup-wifi --status"), "wlan1: connected to "+quoted, "address: 192.168.77.", "wlan0: access point mode")

	// The boot path: the image's own init script rejoins from the saved configuration.
	sudo("kill $(cat /run/udhcpc-wlan1.pid) $(cat /run/wpa_supplicant-wlan1.pid); sleep 1; ip addr flush dev wlan1; ip link set wlan1 down")
	sudo("/etc/init.d/S40network start")
	expect(sudo("for i in $(seq 30); do ip -4 addr show dev wlan1 | grep -q 'inet ' && break; sleep 1; done; ip -4 addr show dev wlan1"), "inet 192.168.77.")

	// setup-hostname on the image: the boot default, then a new name at once.
	expect(sudo("setup-hostname"), "lightwhale-")
	sudo("setup-hostname E2E-Host")
	expect(sudo("hostname; cat /etc/hostname; grep 127.0.1.1 /etc/hosts"), "e2e-host\ne2e-host\n127.0.1.1\te2e-host")
}

// writeAPDisk writes the access point's files as a tar archive on a raw
// disk image: hostapd, the libraries it links (copied, so the test does not
// depend on what the image happens to ship), and its configuration.
func writeAPDisk(path string) error {
	files := map[string][]byte{
		"ssid":         []byte(vmSSID),
		"pass":         []byte(vmPass + "\n"),
		"hostapd.conf": []byte(fmt.Sprintf("interface=wlan0\ndriver=nl80211\nssid2=%x\nhw_mode=g\nchannel=6\nwpa=2\nwpa_key_mgmt=WPA-PSK\nrsn_pairwise=CCMP\nwpa_passphrase=%s\n", vmSSID, vmPass)),
		"udhcpd.conf":  []byte("start 192.168.77.100\nend 192.168.77.150\ninterface wlan0\nlease_file /tmp/ap/udhcpd.leases\noption subnet 255.255.255.0\n"),
	}
	b, err := os.ReadFile("/usr/sbin/hostapd")
	if err != nil {
		return err
	}
	files["hostapd"] = b
	out, err := exec.Command("ldd", "/usr/sbin/hostapd").Output()
	if err != nil {
		return fmt.Errorf("ldd hostapd: %w", err)
	}
	for _, f := range strings.Fields(string(out)) {
		// The C library stays the image's own: it must match its loader.
		base := filepath.Base(f)
		if !strings.HasPrefix(f, "/") || strings.HasPrefix(base, "libc.") || strings.HasPrefix(base, "libm.") || strings.HasPrefix(base, "ld-linux") {
			continue
		}
		if b, err = os.ReadFile(f); err != nil {
			return err
		}
		files["lib/"+base] = b
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "lib/", Typeflag: tar.TypeDir, Mode: 0o755})
	for name, data := range files {
		mode := int64(0o644)
		if name == "hostapd" || name == "pass" {
			mode = map[string]int64{"hostapd": 0o755, "pass": 0o600}[name]
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		tw.Write(data)
	}
	if err := tw.Close(); err != nil {
		return err
	}
	// A disk is whole sectors; a MiB keeps every tool happy.
	size := (buf.Len() + 1<<20 - 1) &^ (1<<20 - 1)
	return os.WriteFile(path, append(buf.Bytes(), make([]byte, size-buf.Len())...), 0o644)
}
