package provision

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lightwhale/internal/cli"
)

// fakeSystem applies into temporary directories and records the programs it
// would run; nothing touches the machine.
type fakeSystem struct {
	*System
	ran   []string // argv joined by spaces, then "<stdin" when there was stdin
	stdin []string
}

func newFake(t *testing.T, cmdline string) *fakeSystem {
	t.Helper()
	dir := t.TempDir()
	f := &fakeSystem{}
	sysBlock := filepath.Join(dir, "sys")
	os.MkdirAll(sysBlock, 0o755)
	os.WriteFile(filepath.Join(dir, "cmdline"), []byte(cmdline), 0o644)
	f.System = &System{
		Cmdline:  filepath.Join(dir, "cmdline"),
		SysBlock: sysBlock,
		Dev:      filepath.Join(dir, "dev"),
		Root:     filepath.Join(dir, "root"),
		RunDir:   filepath.Join(dir, "run"),
		StateDir: filepath.Join(dir, "state"),
		Run: func(_ context.Context, stdin []byte, argv ...string) (string, error) {
			f.ran = append(f.ran, strings.Join(argv, " "))
			f.stdin = append(f.stdin, string(stdin))
			return "", nil
		},
		Owners:   fakeOwners,
		Network:  func(eths []Ethernet) ([]string, error) { return []string{"eth1"}, nil },
		DockerUp: func(context.Context) bool { return true },
		Now:      func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) },
	}
	return f
}

func (f *fakeSystem) stage(t *testing.T, st string) (int, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := f.Main([]string{st}, cli.IO{In: strings.NewReader(""), Out: &out, Err: &errb})
	return code, out.String() + errb.String()
}

func (f *fakeSystem) read(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.Root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestApplyFromCmdline(t *testing.T) {
	key := testKey(t, 1)
	f := newFake(t, `quiet "lightwhale.ssh_key=`+key+`" lightwhale.hostname=edge lightwhale.proxy=http://p.lan:3128 lightwhale.ip=eth1=10.5.0.2/24,10.5.0.1,10.5.0.53 lightwhale.ntp=10.0.2.2`)
	if code, out := f.stage(t, "early"); code != 0 {
		t.Fatalf("early: %d %s", code, out)
	}
	if st, err := os.Stat(filepath.Join(f.RunDir, configFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("saved config: %v %v (want mode 0600)", st, err)
	}
	if code, out := f.stage(t, "apply"); code != 0 {
		t.Fatalf("apply: %d %s", code, out)
	}
	want := []string{"setup-hostname edge", "usermod --lock op"}
	if d := cmp.Diff(want, f.ran); d != "" {
		t.Errorf("programs (-want +got):\n%s", d)
	}
	if got := f.read(t, "etc/ssh/lightwhale-authorized-keys/op"); got != key+"\n" {
		t.Errorf("keys file: %q", got)
	}
	conf := f.read(t, sshdConfFile)
	for _, l := range []string{"PasswordAuthentication no", "KbdInteractiveAuthentication no", "AuthorizedKeysFile .ssh/authorized_keys /etc/ssh/lightwhale-authorized-keys/%u"} {
		if !strings.Contains(conf, l+"\n") {
			t.Errorf("sshd config lacks %q:\n%s", l, conf)
		}
	}
	if got := f.read(t, sudoersFile); got != "op ALL=(ALL:ALL) NOPASSWD: ALL\n" {
		t.Errorf("sudoers: %q", got)
	}
	if got := f.read(t, dockerEnvFile); !strings.Contains(got, "HTTP_PROXY='http://p.lan:3128'\n") || !strings.Contains(got, "NO_PROXY='localhost,127.0.0.1'\n") {
		t.Errorf("docker env:\n%s", got)
	}
	if got := f.read(t, noDHCPFile); got != "eth1\n" {
		t.Errorf("no-dhcp: %q", got)
	}
	if got := f.read(t, resolvFile); got != "nameserver 10.5.0.53\n" {
		t.Errorf("resolv.conf: %q", got)
	}
	if got := f.read(t, ntpFile); got != "10.0.2.2\n" {
		t.Errorf("ntp: %q", got)
	}
	if code, out := f.stage(t, "status"); code != 0 || !strings.Contains(out, "provisioned from: cmdline\ninstance-id: cmdline-") {
		t.Errorf("status: %d %q", code, out)
	}

	// Second boot: the once-per-instance lock is not repeated.
	f.ran = nil
	f.stage(t, "early")
	f.stage(t, "apply")
	if d := cmp.Diff([]string{"setup-hostname edge"}, f.ran); d != "" {
		t.Errorf("second boot programs (-want +got):\n%s", d)
	}
}

func TestApplySeedOncePerInstance(t *testing.T) {
	f := newFake(t, "quiet")
	c := Config{
		Sources: []string{"nocloud /dev/sr1"}, InstanceID: "i-1",
		PasswordHash: hash6,
		Files:        []File{{Path: "/etc/docker/daemon.json", Content: []byte("{}\n"), Mode: 0o600, UID: os.Getuid(), GID: os.Getgid()}},
		Runcmd:       []Command{{Shell: "echo hi"}, {Argv: []string{"touch", "/x"}}},
	}
	save := func(c Config) {
		b, _ := json.Marshal(c)
		os.MkdirAll(f.RunDir, 0o700)
		os.WriteFile(filepath.Join(f.RunDir, configFile), b, 0o600)
	}
	save(c)
	for boot := 1; boot <= 2; boot++ {
		f.ran, f.stdin = nil, nil
		if code, out := f.stage(t, "apply"); code != 0 {
			t.Fatalf("apply: %s", out)
		}
		if code, out := f.stage(t, "final"); code != 0 {
			t.Fatalf("final: %s", out)
		}
		var want []string
		if boot == 1 {
			want = []string{"chpasswd -e", "/bin/sh -c echo hi", "touch /x"}
			if f.stdin[0] != "op:"+hash6+"\n" {
				t.Errorf("chpasswd stdin: %q", f.stdin[0])
			}
		}
		if d := cmp.Diff(want, f.ran); d != "" {
			t.Errorf("boot %d programs (-want +got):\n%s", boot, d)
		}
	}
	st, err := os.Stat(filepath.Join(f.Root, "etc/docker/daemon.json"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("daemon.json: %v %v", st, err)
	}
	// A hash and no keys: password login stays, nothing is locked.
	if conf := f.read(t, sshdConfFile); !strings.Contains(conf, "PasswordAuthentication yes\n") {
		t.Errorf("sshd config:\n%s", conf)
	}
	if _, err := os.Stat(filepath.Join(f.Root, sudoersFile)); !os.IsNotExist(err) {
		t.Errorf("sudoers file without a lock: %v", err)
	}

	// A new instance-id applies anew.
	c.InstanceID = "i-2"
	save(c)
	f.ran = nil
	f.stage(t, "apply")
	f.stage(t, "final")
	if d := cmp.Diff([]string{"chpasswd -e", "/bin/sh -c echo hi", "touch /x"}, f.ran); d != "" {
		t.Errorf("new instance programs (-want +got):\n%s", d)
	}
}

// A broken seed: early reports it (console, status, motd, log) and saves
// nothing, so apply changes nothing; the command line still applies.
func TestBrokenSeedAppliesNothing(t *testing.T) {
	f := newFake(t, "lightwhale.hostname=fromcmd")
	seedDir := t.TempDir()
	os.WriteFile(filepath.Join(seedDir, "meta-data"), []byte("instance-id: i-1\n"), 0o644)
	os.WriteFile(filepath.Join(seedDir, "user-data"), []byte("#cloud-config\nhostname: good\nssh_authorized_keys: [nonsense]\n"), 0o644)
	f.Mount = func(dev, dir, fstype string) error { os.Remove(dir); return os.Symlink(seedDir, dir) }
	f.Unmount = func(dir string) error { return os.Remove(dir) }
	// A device whose first bytes carry the cidata ISO label.
	os.MkdirAll(f.Dev, 0o755)
	iso := make([]byte, 70000)
	copy(iso[16*2048:], "\x01CD001")
	copy(iso[16*2048+40:], "CIDATA")
	os.WriteFile(filepath.Join(f.Dev, "sr0"), iso, 0o644)
	os.MkdirAll(filepath.Join(f.SysBlock, "sr0"), 0o755)
	os.MkdirAll(f.RunDir, 0o700)

	code, out := f.stage(t, "early")
	if code != 1 || !strings.Contains(out, "error: user-data: ssh_authorized_keys[0]") || !strings.Contains(out, "REJECTED") {
		t.Fatalf("early: %d\n%s", code, out)
	}
	motd, _ := os.ReadFile(filepath.Join(f.RunDir, motdFile))
	if !strings.Contains(string(motd), "PROVISIONING ERROR: seed "+filepath.Join(f.Dev, "sr0")+" rejected: 1 problem,") {
		t.Errorf("motd: %q", motd)
	}
	f.stage(t, "apply")
	if d := cmp.Diff([]string{"setup-hostname fromcmd"}, f.ran); d != "" {
		t.Errorf("programs (-want +got):\n%s", d)
	}
	if _, err := os.Stat(filepath.Join(f.Root, "etc/ssh/lightwhale-authorized-keys/op")); !os.IsNotExist(err) {
		t.Errorf("keys file written from a rejected seed: %v", err)
	}
	if log := f.read(t, provisionLog); !strings.Contains(log, "ssh_authorized_keys[0]") {
		t.Errorf("log: %q", log)
	}
}

func TestWifiPasswordOnStdinOnly(t *testing.T) {
	f := newFake(t, "")
	c := Config{Sources: []string{"x"}, InstanceID: "i", Wifis: []Wifi{{Interface: "wlan0", SSID: "cafe", PSK: "secret-psk-1"}}}
	b, _ := json.Marshal(c)
	os.MkdirAll(f.RunDir, 0o700)
	os.WriteFile(filepath.Join(f.RunDir, configFile), b, 0o600)
	f.stage(t, "apply")
	if d := cmp.Diff([]string{"setup-wifi --ssid cafe --timeout 15s --password-stdin --interface wlan0"}, f.ran); d != "" {
		t.Errorf("programs (-want +got):\n%s", d)
	}
	if f.stdin[0] != "secret-psk-1\n" {
		t.Errorf("stdin %q", f.stdin[0])
	}
	var out bytes.Buffer
	seedDir := t.TempDir()
	os.WriteFile(filepath.Join(seedDir, "meta-data"), []byte("instance-id: i-1\n"), 0o644)
	os.WriteFile(filepath.Join(seedDir, "network-config"), []byte("version: 2\nwifis:\n  wlan0:\n    access-points:\n      cafe: {password: secret-psk-1}\n"), 0o644)
	code := f.Main([]string{"check", "--seed", seedDir, "--cmdline", "lightwhale.hostname=x"}, cli.IO{Out: &out, Err: &out})
	if code != 0 || !strings.Contains(out.String(), `"ssid": "cafe"`) || !strings.Contains(out.String(), `"hostname": "x"`) {
		t.Errorf("check: %d\n%s", code, out.String())
	}
	if strings.Contains(out.String(), "secret") {
		t.Errorf("check printed a secret:\n%s", out.String())
	}
}
