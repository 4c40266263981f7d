package wifi

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	mdwifi "github.com/mdlayher/wifi"

	"lightwhale/internal/cli"
)

type fakeRadio struct {
	ifs []*mdwifi.Interface
	bss *mdwifi.BSS // the access point the station is associated with, if any
}

func (r fakeRadio) Interfaces() ([]*mdwifi.Interface, error)      { return r.ifs, nil }
func (r fakeRadio) Scan(context.Context, *mdwifi.Interface) error { return nil }
func (r fakeRadio) BSS(*mdwifi.Interface) (*mdwifi.BSS, error) {
	if r.bss == nil {
		return nil, os.ErrNotExist
	}
	return r.bss, nil
}
func (r fakeRadio) Close() error { return nil }
func (r fakeRadio) AccessPoints(*mdwifi.Interface) ([]*mdwifi.BSS, error) {
	return []*mdwifi.BSS{
		{SSID: "weak", Signal: -8000, Frequency: 2412},
		{SSID: "home", Signal: -4000, Frequency: 5180, RSN: mdwifi.RSNInfo{Version: 1, AKMs: []mdwifi.RSNAKM{mdwifi.RSNAkmPSK, mdwifi.RSNAkmSAE}}},
		{SSID: "home", Signal: -6000, Frequency: 2437},
		{SSID: "\x1b[2Jevil", Signal: -5000, Frequency: 2462, RSN: mdwifi.RSNInfo{Version: 1, AKMs: []mdwifi.RSNAKM{mdwifi.RSNAkmSAE}}},
	}, nil
}

// fakeLinks has the links named in present; a link becomes ready after
// readyAfter polls (never when negative).
type fakeLinks struct {
	present    map[string]bool
	readyAfter int
	polls      int
	up         []string
	addrs      []string
}

func (l *fakeLinks) Up(n string) error { l.up = append(l.up, n); return l.check(n) }
func (l *fakeLinks) Ready(n string) (bool, error) {
	l.polls++
	return l.readyAfter >= 0 && l.polls > l.readyAfter, l.check(n)
}
func (l *fakeLinks) Addrs(n string) ([]string, error) { return l.addrs, l.check(n) }
func (l *fakeLinks) check(n string) error {
	if !l.present[n] {
		return errors.New("link not found")
	}
	return nil
}

// fakeSystem is a System on temporary directories whose commands are
// recorded; "wpa_supplicant" writes a pid file naming a fake process.
func fakeSystem(t *testing.T, ifs ...string) (System, *fakeLinks, *[][]string) {
	return fakeSystemBSS(t, nil, ifs...)
}

func fakeSystemBSS(t *testing.T, bss *mdwifi.BSS, ifs ...string) (System, *fakeLinks, *[][]string) {
	t.Helper()
	dir := t.TempDir()
	radio := fakeRadio{bss: bss}
	links := &fakeLinks{present: map[string]bool{}, readyAfter: 2}
	for i, n := range ifs {
		radio.ifs = append(radio.ifs, &mdwifi.Interface{Index: i + 1, Name: n, Type: mdwifi.InterfaceTypeStation,
			HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, byte(i)}})
		links.present[n] = true
	}
	links.present["eth0"] = true
	var ran [][]string
	s := System{
		ConfigDir: filepath.Join(dir, "etc", "wpa_supplicant"),
		RunDir:    filepath.Join(dir, "run"),
		ProcDir:   filepath.Join(dir, "proc"),
		OpenRadio: func() (Radio, error) { return radio, nil },
		Links:     links,
		DHCP:      []string{"udhcpc"},
		Poll:      time.Millisecond,
		Run: func(_ context.Context, argv ...string) ([]byte, error) {
			ran = append(ran, argv)
			switch argv[0] {
			case "wpa_supplicant":
				os.MkdirAll(filepath.Join(dir, "proc", "4242"), 0o755)
				os.WriteFile(filepath.Join(dir, "proc", "4242", "comm"), []byte("wpa_supplicant\n"), 0o644)
				os.WriteFile(argv[len(argv)-1], []byte("4242\n"), 0o644)
			case "udhcpc":
				links.addrs = []string{"192.168.1.23/24"}
			}
			return nil, nil
		},
	}
	os.MkdirAll(s.RunDir, 0o755)
	return s, links, &ran
}

func runMain(s System, stdin string, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = s.Main(args, cli.IO{In: strings.NewReader(stdin), Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

const secret = "my wifi secret"

func TestConnect(t *testing.T) {
	s, links, ran := fakeSystem(t, "wlan0")
	code, out, errs := runMain(s, secret+"\n", "--ssid", "my wifi name", "--password-stdin", "--country", "DK")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	conf := s.ConfigPath("wlan0")
	want, _ := NewNetwork("my wifi name", secret, "DK", false)
	got, err := os.ReadFile(conf)
	if err != nil || !bytes.Equal(got, want.Config()) {
		t.Errorf("%s = %q, %v; want %q", conf, got, err, want.Config())
	}
	if fi, err := os.Stat(conf); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s mode %v, want 0600", conf, fi.Mode().Perm())
	}
	wantRan := [][]string{
		{"wpa_supplicant", "-B", "-i", "wlan0", "-c", conf, "-P", filepath.Join(s.RunDir, "wpa_supplicant-wlan0.pid")},
		{"udhcpc", "-i", "wlan0", "-p", filepath.Join(s.RunDir, "udhcpc-wlan0.pid"), "-t", "5", "-T", "3", "-n"},
	}
	if diff := cmp.Diff(wantRan, *ran); diff != "" {
		t.Errorf("commands (-want +got):\n%s", diff)
	}
	for _, argv := range *ran {
		if strings.Contains(strings.Join(argv, " "), secret) {
			t.Errorf("the passphrase is in the argv of %q", argv)
		}
	}
	if !strings.Contains(out, "wlan0: connected, address 192.168.1.23/24") || strings.Contains(out+errs, secret) {
		t.Errorf("stdout %q, stderr %q", out, errs)
	}
	if diff := cmp.Diff([]string{"wlan0"}, links.up); diff != "" {
		t.Errorf("links brought up (-want +got):\n%s", diff)
	}
}

func TestConnectErrorsWriteNothing(t *testing.T) {
	tests := []struct {
		name    string
		ifs     []string
		args    []string
		wantErr string
	}{
		{"no wireless", nil, []string{"--ssid", "x", "--password", "password"}, "no wireless interface"},
		{"two radios", []string{"wlan0", "wlan1"}, []string{"--ssid", "x", "--password", "password"}, "--interface"},
		{"not wireless", []string{"wlan0"}, []string{"--ssid", "x", "--password", "password", "--interface", "eth0"}, `"eth0" is not a wireless`},
		{"bad passphrase", []string{"wlan0"}, []string{"--ssid", "x", "--password", "short"}, "5 characters"},
		{"bad country", []string{"wlan0"}, []string{"--ssid", "x", "--password", "password", "--country", "USA"}, "USA"},
		{"hostile ssid too long", []string{"wlan0"}, []string{"--ssid", strings.Repeat("}\n", 17), "--password", "password"}, "1 to 32"},
		{"stray argument", []string{"wlan0"}, []string{"--ssid", "my", "wifi", "--password", "password"}, "unexpected argument"},
	}
	for _, tt := range tests {
		s, _, ran := fakeSystem(t, tt.ifs...)
		code, _, errs := runMain(s, "", tt.args...)
		if code == 0 || !strings.Contains(errs, tt.wantErr) || strings.Count(errs, "\n") != 1 {
			t.Errorf("%s: exit %d, stderr %q; want one line containing %q", tt.name, code, errs, tt.wantErr)
		}
		if len(*ran) != 0 {
			t.Errorf("%s: ran %q", tt.name, *ran)
		}
		if entries, _ := os.ReadDir(s.ConfigDir); len(entries) != 0 {
			t.Errorf("%s: wrote %d files in %s", tt.name, len(entries), s.ConfigDir)
		}
	}
}

func TestConnectTimeout(t *testing.T) {
	s, links, ran := fakeSystem(t, "wlan0")
	links.readyAfter = -1
	code, out, errs := runMain(s, "", "--ssid", "x", "--password", "password", "--timeout", "50ms")
	if code == 0 || !strings.Contains(errs, "not connected") {
		t.Errorf("exit %d, stdout %q, stderr %q; want a timeout", code, out, errs)
	}
	if len(*ran) != 1 {
		t.Errorf("ran %q, want only wpa_supplicant (no DHCP without a connection)", *ran)
	}
}

func TestWrongPassphraseHint(t *testing.T) {
	s, links, _ := fakeSystemBSS(t, &mdwifi.BSS{SSID: "x", Status: mdwifi.BSSStatusAssociated}, "wlan0")
	links.readyAfter = -1
	code, _, errs := runMain(s, "", "--ssid", "x", "--password", "password", "--timeout", "50ms")
	if code == 0 || !strings.Contains(errs, "wrong passphrase?") {
		t.Errorf("exit %d, stderr %q; want the wrong-passphrase hint", code, errs)
	}
}

// A stale pid file naming an unrelated process (here: this test) must not
// get that process killed.
func TestStalePidFileIsNotKilled(t *testing.T) {
	s, _, _ := fakeSystem(t, "wlan0")
	s.ProcDir = "/proc"
	pidFile := filepath.Join(s.RunDir, "wpa_supplicant-wlan0.pid")
	os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())), 0o644)
	if err := s.stop("wpa_supplicant", "wlan0"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pidFile); err == nil {
		t.Error("stale pid file kept")
	}
}

func TestBoot(t *testing.T) {
	s, _, ran := fakeSystem(t, "wlan0")
	code, out, _ := runMain(s, "", "--boot")
	if code != 0 || !strings.Contains(out, "no wireless network configured") || len(*ran) != 0 {
		t.Errorf("without configuration: exit %d, stdout %q, ran %q", code, out, *ran)
	}
	os.MkdirAll(s.ConfigDir, 0o755)
	n, _ := NewNetwork("home", "password", "", false)
	for _, i := range []string{"wlan0", "wlan9"} {
		os.WriteFile(s.ConfigPath(i), n.Config(), 0o600)
	}
	code, out, errs := runMain(s, "", "--boot")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	if !strings.Contains(out, "wlan9: not present") || !strings.Contains(out, "wlan0: connected, address") {
		t.Errorf("stdout %q", out)
	}
	if len(*ran) != 2 || (*ran)[1][len((*ran)[1])-1] != "-b" {
		t.Errorf("ran %q, want wpa_supplicant then udhcpc -b", *ran)
	}
}

func TestScan(t *testing.T) {
	s, _, _ := fakeSystem(t, "wlan0")
	code, out, errs := runMain(s, "", "--scan")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	want := `SIGNAL  MHZ   SECURITY   SSID
-40 dBm 5180  WPA2/WPA3  "home"
-50 dBm 2462  WPA3-only  "\x1b[2Jevil"
-80 dBm 2412  open/old   "weak"
`
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("scan output (-want +got):\n%s", diff)
	}
}

func TestStatus(t *testing.T) {
	s, _, _ := fakeSystem(t, "wlan0")
	code, out, _ := runMain(s, "", "--status")
	want := "wlan0: not connected\n  config: none\n  wpa_supplicant: not running\n"
	if code != 0 || out != want {
		t.Errorf("exit %d, stdout %q, want %q", code, out, want)
	}
}

func TestHelp(t *testing.T) {
	code, _, errs := runMain(System{}, "", "--help")
	if code != 0 || !strings.Contains(errs, "usage: setup-wifi") || !strings.Contains(errs, "Examples:") {
		t.Errorf("--help: exit %d, stderr %q", code, errs)
	}
}
