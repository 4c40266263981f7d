package provision

import (
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"
)

// testKey is a real ed25519 public key line, made from a fixed seed.
func testKey(t testing.TB, n byte) string {
	t.Helper()
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{n}, 32))
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))) + fmt.Sprintf(" key%d@test", n)
}

func fakeOwners(user, group string) (int, int, error) {
	ids := map[string]int{"root": 0, "op": 1000, "docker": 999}
	uid, ok := ids[user]
	if !ok {
		return 0, 0, fmt.Errorf("unknown user %q", user)
	}
	gid := uid
	if group != "" {
		if gid, ok = ids[group]; !ok {
			return 0, 0, fmt.Errorf("unknown group %q", group)
		}
	}
	return uid, gid, nil
}

const hash6 = "$6$rounds=5000$saltsalt$0123456789abcdefABCDEF./0123456789abcdefABCDEF./0123456789abcdefABCDEF./0123"

func TestParseSeedGood(t *testing.T) {
	key := testKey(t, 1)
	gz := func(s string) string {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		w.Write([]byte(s))
		w.Close()
		return base64.StdEncoding.EncodeToString(b.Bytes())
	}
	sd := Seed{
		Device:   "/dev/vdb",
		MetaData: []byte("instance-id: iid-01\nlocal-hostname: fromMeta\n"),
		UserData: []byte(`#cloud-config
hostname: Web-1
ssh_authorized_keys:
  - ` + key + `
users:
  - default
  - name: op
    lock_passwd: false
    passwd: "` + hash6 + `"
ssh_pwauth: false
write_files:
  - path: /etc/docker/daemon.json
    content: '{"debug": true}'
    permissions: 0600
  - path: /home/op/hello.txt
    encoding: gz+b64
    content: ` + gz("hello\n") + `
    owner: op:op
    permissions: '0640'
runcmd:
  - echo one > /tmp/one
  - [touch, /tmp/two]
ntp:
  servers: [10.0.2.2, ntp.example.org]
timezone: Europe/Copenhagen
`),
		NetworkConfig: []byte(`version: 2
ethernets:
  second:
    match: {macaddress: "52:54:00:12:34:56"}
    addresses: [192.168.77.10/24]
    gateway4: 192.168.77.1
    routes: [{to: 10.9.0.0/16, via: 192.168.77.254, metric: 50}]
    nameservers: {addresses: [192.168.77.53], search: [example.org]}
  eth0:
    dhcp4: true
wifis:
  wlan0:
    access-points:
      "cafe net": {password: "correct horse"}
`),
	}
	c, warn, err := parseSeed(sd, fakeOwners)
	if err != nil {
		t.Fatalf("parseSeed: %v", err)
	}
	if len(warn) != 0 {
		t.Errorf("warnings: %q", warn)
	}
	f, tr := false, true
	_ = tr
	want := Config{
		Sources:      []string{"nocloud /dev/vdb"},
		InstanceID:   "iid-01",
		Hostname:     "web-1",
		SSHKeys:      []string{key},
		PasswordHash: hash6,
		LockPassword: &f,
		SSHPwauth:    &f,
		Files: []File{
			{Path: "/etc/docker/daemon.json", Content: []byte(`{"debug": true}`), Mode: 0o600, Owner: "root:root"},
			{Path: "/home/op/hello.txt", Content: []byte("hello\n"), Mode: 0o640, Owner: "op:op", UID: 1000, GID: 1000},
		},
		Runcmd:   []Command{{Shell: "echo one > /tmp/one"}, {Argv: []string{"touch", "/tmp/two"}}},
		NTP:      []string{"10.0.2.2", "ntp.example.org"},
		Timezone: "Europe/Copenhagen",
		Ethernets: []Ethernet{
			{ID: "second", MatchMAC: "52:54:00:12:34:56",
				Addresses: []netip.Prefix{netip.MustParsePrefix("192.168.77.10/24")},
				Routes: []Route{
					{To: netip.MustParsePrefix("10.9.0.0/16"), Via: netip.MustParseAddr("192.168.77.254"), Metric: 50},
					{To: netip.MustParsePrefix("0.0.0.0/0"), Via: netip.MustParseAddr("192.168.77.1")},
				},
				DNS: []netip.Addr{netip.MustParseAddr("192.168.77.53")}, Search: []string{"example.org"}},
			{ID: "eth0", MatchName: "eth0", DHCP4: true},
		},
		Wifis: []Wifi{{Interface: "wlan0", SSID: "cafe net", PSK: "correct horse"}},
	}
	if d := cmp.Diff(want, c, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
		t.Errorf("config (-want +got):\n%s", d)
	}
	if c.lockPassword() || c.passwordAuth() {
		t.Errorf("lock=%v pwauth=%v, want false false (a hash is set, ssh_pwauth: false)", c.lockPassword(), c.passwordAuth())
	}
}

// TestParseSeedHostile: every input is refused with a line naming the key,
// and nothing of the seed survives (the error is non-nil).
func TestParseSeedHostile(t *testing.T) {
	meta := "instance-id: i-1\n"
	big := strings.Repeat("a", maxFileContent+1)
	var bomb bytes.Buffer
	zw := gzip.NewWriter(&bomb)
	zw.Write(bytes.Repeat([]byte{0}, maxFileContent+10))
	zw.Close()
	bombB64 := base64.StdEncoding.EncodeToString(bomb.Bytes())
	laughs := "#cloud-config\na: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\nruncmd: [*d]\n"
	deep := "#cloud-config\nx: " + strings.Repeat("[", 100) + strings.Repeat("]", 100) + "\n"
	tests := []struct {
		name, meta, user, net string
		want                  string // a substring of the error
	}{
		{"yaml bomb (aliases)", meta, laughs, "", "anchors and aliases are not supported"},
		{"deep nesting", meta, deep, "", "nested deeper than"},
		{"duplicate key", meta, "#cloud-config\nssh_pwauth: true\nssh_pwauth: false\n", "", `duplicate key "ssh_pwauth"`},
		{"duplicate key nested", meta, "#cloud-config\nchpasswd:\n  expire: false\n  expire: true\n", "", `duplicate key "expire"`},
		{"duplicate key meta", meta + "instance-id: i-2\n", "", "", `meta-data: duplicate key "instance-id"`},
		{"two documents", meta, "#cloud-config\nhostname: a\n---\nhostname: b\n", "", "more than one YAML document"},
		{"no instance-id", "local-hostname: a\n", "", "", "instance-id: missing"},
		{"bad instance-id", "instance-id: \"../../etc\"\n", "", "", `instance-id: "../../etc"`},
		{"not cloud-config", meta, "#!/bin/sh\nrm -rf /\n", "", "does not start with #cloud-config"},
		{"hostname newline", meta, "#cloud-config\nhostname: \"evil\\nroot\"\n", "", `user-data: hostname: invalid host name "evil\nroot"`},
		{"hostname too long", meta, "#cloud-config\nhostname: " + strings.Repeat("a", 65) + "\n", "", "user-data: hostname: invalid host name"},
		{"meta hostname space", "instance-id: i\nlocal-hostname: \"a b\"\n", "", "", "meta-data: local-hostname: invalid host name"},
		{"plain password users", meta, "#cloud-config\nusers:\n  - name: op\n    passwd: hunter2\n", "", "user-data: users[0].passwd: plain-text passwords are refused"},
		{"plain_text_passwd", meta, "#cloud-config\nusers:\n  - name: op\n    plain_text_passwd: hunter2\n", "", "users[0].plain_text_passwd: plain-text passwords are refused"},
		{"chpasswd plain", meta, "#cloud-config\nchpasswd:\n  list: |\n    op:hunter2\n", "", "chpasswd.list[0]: plain-text passwords are refused"},
		{"chpasswd users text", meta, "#cloud-config\nchpasswd:\n  users:\n    - {name: op, password: hunter2, type: text}\n", "", `chpasswd.users[0]: type "text" refused`},
		{"chpasswd root", meta, "#cloud-config\nchpasswd:\n  list: ['root:" + hash6 + "']\n", "", `only op's password can be set (user "root")`},
		{"hash with colon", meta, "#cloud-config\nusers:\n  - name: op\n    passwd: \"$6$salt$abc:0:0\"\n", "", "users[0].passwd"},
		{"bad key", meta, "#cloud-config\nssh_authorized_keys: [\"ssh-ed25519 notbase64!!\"]\n", "", "ssh_authorized_keys[0]: \"ssh-ed25519 notbase64!!\"...: not an ssh public key"},
		{"key newline", meta, "#cloud-config\nssh_authorized_keys: [\"" + testKey(t, 2) + "\\n" + testKey(t, 3) + "\"]\n", "", "ssh_authorized_keys[0]"},
		{"traversal", meta, "#cloud-config\nwrite_files:\n  - path: /etc/../root/.ssh/authorized_keys\n    content: x\n", "", `write_files[0].path: "/etc/../root/.ssh/authorized_keys": not a clean path`},
		{"relative", meta, "#cloud-config\nwrite_files:\n  - path: ../../etc/shadow\n    content: x\n", "", "not an absolute path"},
		{"proc", meta, "#cloud-config\nwrite_files:\n  - path: /proc/sysrq-trigger\n    content: b\n", "", "writing under /proc is not allowed"},
		{"path newline", meta, "#cloud-config\nwrite_files:\n  - path: \"/etc/a\\nb\"\n    content: x\n", "", "control character in path"},
		{"huge file", meta, "#cloud-config\nwrite_files:\n  - path: /etc/big\n    content: " + big + "\n", "", "write_files[0] (/etc/big).encoding: content larger than"},
		{"gzip bomb", meta, "#cloud-config\nwrite_files:\n  - path: /etc/bomb\n    encoding: gz+b64\n    content: " + bombB64 + "\n", "", "larger than 1048576 bytes once decompressed"},
		{"bad base64", meta, "#cloud-config\nwrite_files:\n  - path: /etc/x\n    encoding: b64\n    content: '%%%'\n", "", "not valid base64"},
		{"bad mode", meta, "#cloud-config\nwrite_files:\n  - path: /etc/x\n    permissions: '0999'\n", "", "write_files[0] (/etc/x).permissions: \"0999\""},
		{"bad owner", meta, "#cloud-config\nwrite_files:\n  - path: /etc/x\n    owner: 'root;rm'\n", "", "owner: \"root;rm\""},
		{"unknown owner", meta, "#cloud-config\nwrite_files:\n  - path: /etc/x\n    owner: mallory\n", "", `unknown user "mallory"`},
		{"runcmd not list", meta, "#cloud-config\nruncmd: reboot\n", "", "runcmd: expected a list"},
		{"ntp bad", meta, "#cloud-config\nntp:\n  servers: [\"pool.ntp.org\\nserver evil\"]\n", "", "ntp.servers[0]"},
		{"timezone traversal", meta, "#cloud-config\ntimezone: ../../etc/shadow\n", "", "timezone: \"../../etc/shadow\""},
		{"ssid newline", meta, "", "version: 2\nwifis:\n  wlan0:\n    access-points:\n      \"net\\nnetwork={\": {password: \"12345678\"}\n", "control character in SSID"},
		{"psk short", meta, "", "version: 2\nwifis:\n  wlan0:\n    access-points:\n      cafe: {password: \"short\"}\n", "password of 5 characters"},
		{"psk newline", meta, "", "version: 2\nwifis:\n  wlan0:\n    access-points:\n      cafe: {password: \"abcdefgh\\nxyz\"}\n", "control or non-ASCII"},
		{"bad address", meta, "", "version: 2\nethernets:\n  eth1:\n    addresses: [192.168.1.300/24]\n", `ethernets.eth1.addresses[0]: "192.168.1.300/24"`},
		{"bad gateway", meta, "", "version: 2\nethernets:\n  eth1:\n    addresses: [192.168.1.3/24]\n    gateway4: gw\n", `ethernets.eth1.gateway4: via: "gw"`},
		{"bad iface", meta, "", "version: 2\nethernets:\n  \"eth1; reboot\":\n    dhcp4: true\n", `"eth1; reboot": not an interface name`},
		{"dhcp plus static", meta, "", "version: 2\nethernets:\n  eth1:\n    dhcp4: true\n    addresses: [10.0.0.2/24]\n", "dhcp4 together with static addresses"},
		{"network v1", meta, "", "version: 1\nconfig: []\n", "version: 1 is not supported"},
		{"bad mac", meta, "", "version: 2\nethernets:\n  x:\n    match: {macaddress: zz}\n", `macaddress: "zz"`},
		{"unknown eth key", meta, "", "version: 2\nethernets:\n  eth1:\n    adresses: [10.0.0.2/24]\n", "ethernets.eth1.adresses: unknown key"},
		{"wrong type", meta, "#cloud-config\nssh_pwauth: maybe\n", "", "user-data: ssh_pwauth:"},
		{"top not mapping", meta, "#cloud-config\n- a\n- b\n", "", "expected a mapping"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sd := Seed{Device: "/dev/sr1", MetaData: []byte(tc.meta), UserData: []byte(tc.user)}
			if tc.net != "" {
				sd.NetworkConfig = []byte(tc.net)
			}
			_, _, err := parseSeed(sd, fakeOwners)
			if err == nil {
				t.Fatalf("accepted, want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error:\n%v\nwant a line containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "12345678") || strings.Contains(err.Error(), "abcdefgh") {
				t.Errorf("error shows a wifi password: %v", err)
			}
		})
	}
}

// Every problem gets its own line: a user fixes them all in one go.
func TestParseSeedOneLinePerProblem(t *testing.T) {
	sd := Seed{MetaData: []byte("instance-id: i\n"), UserData: []byte("#cloud-config\nhostname: -bad\ntimezone: a b\nwrite_files:\n  - path: rel\n")}
	_, _, err := parseSeed(sd, fakeOwners)
	if err == nil {
		t.Fatal("accepted")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d lines, want 3:\n%v", len(lines), err)
	}
	for i, prefix := range []string{"user-data: hostname:", "user-data: timezone:", "user-data: write_files[0].path:"} {
		if !strings.HasPrefix(lines[i], prefix) {
			t.Errorf("line %d = %q, want prefix %q", i, lines[i], prefix)
		}
	}
}

func TestParseSeedWarnsUnknownKeys(t *testing.T) {
	sd := Seed{MetaData: []byte("instance-id: i\ndsmode: local\n"), UserData: []byte("#cloud-config\npackages: [vim]\nbootcmd: [x]\nusers:\n  - name: alice\n")}
	_, warn, err := parseSeed(sd, fakeOwners)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"meta-data: dsmode: not supported, ignored",
		"user-data: packages: has no meaning on Lightwhale, ignored",
		"user-data: bootcmd: not supported, ignored",
		`user-data: users[0]: user "alice" not created: Lightwhale has the one login op`,
	}
	if d := cmp.Diff(want, warn); d != "" {
		t.Errorf("warnings (-want +got):\n%s", d)
	}
}

func TestYAMLSizeCaps(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, n int) {
		t.Helper()
		if err := writeFile(dir+"/"+name, bytes.Repeat([]byte("#"), n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("meta-data", 10)
	write("user-data", maxUserData+1)
	if _, err := readSeedDir(dir, "x"); err == nil || !strings.Contains(err.Error(), "user-data: larger than") {
		t.Errorf("huge user-data: err = %v", err)
	}
	write("user-data", maxUserData)
	write("meta-data", maxMetaData+1)
	if _, err := readSeedDir(dir, "x"); err == nil || !strings.Contains(err.Error(), "meta-data: larger than") {
		t.Errorf("huge meta-data: err = %v", err)
	}
	write("meta-data", 10)
	if _, err := readSeedDir(dir, "x"); err != nil {
		t.Errorf("files at the caps: %v", err)
	}
	// Too many nodes, each small: caught before decoding.
	many := "#cloud-config\nruncmd:\n" + strings.Repeat("  - x\n", maxYAMLNodes)
	if _, _, err := parseSeed(Seed{MetaData: []byte("instance-id: i\n"), UserData: []byte(many)}, fakeOwners); err == nil || !strings.Contains(err.Error(), "more than 20000 YAML nodes") {
		t.Errorf("many nodes: err = %v", err)
	}
}

func TestParseCmdline(t *testing.T) {
	k1, k2 := testKey(t, 1), testKey(t, 2)
	b64 := base64.StdEncoding.EncodeToString([]byte(k1 + "\n" + k2 + "\n"))
	line := `BOOT_IMAGE=/boot/vmlinuz console=ttyS0 lightwhale.wait=5 lightwhale.hostname=Edge-7 "lightwhale.ssh_key=` + k1 + `" lightwhale.ssh_key=` + b64 +
		` lightwhale.ip=eth1=192.168.77.10/24,192.168.77.1,192.168.77.53,9.9.9.9 lightwhale.ip=52:54:00:aa:bb:cc=10.1.0.2/16 lightwhale.proxy=http://proxy.lan:3128 lightwhale.no_proxy=localhost,.lan,10.0.0.0/8 lightwhale.ntp=10.0.2.2,ntp.lan lightwhale.persist=/dev/vdb lightwhale.colour=blue`
	c, found, warn, err := parseCmdline(line)
	if err != nil || !found {
		t.Fatalf("found=%v err=%v", found, err)
	}
	if d := cmp.Diff([]string{"lightwhale.colour: unknown kernel parameter, ignored"}, warn); d != "" {
		t.Errorf("warnings: %s", d)
	}
	want := Config{
		Sources:  []string{"cmdline"},
		Hostname: "edge-7",
		SSHKeys:  []string{k1, k1, k2},
		Ethernets: []Ethernet{
			{ID: "eth1", MatchName: "eth1", Addresses: []netip.Prefix{netip.MustParsePrefix("192.168.77.10/24")},
				Routes: []Route{{To: netip.MustParsePrefix("0.0.0.0/0"), Via: netip.MustParseAddr("192.168.77.1")}},
				DNS:    []netip.Addr{netip.MustParseAddr("192.168.77.53"), netip.MustParseAddr("9.9.9.9")}},
			{ID: "52:54:00:aa:bb:cc", MatchMAC: "52:54:00:aa:bb:cc", Addresses: []netip.Prefix{netip.MustParsePrefix("10.1.0.2/16")}},
		},
		Proxy:   Proxy{HTTP: "http://proxy.lan:3128", HTTPS: "http://proxy.lan:3128", NoProxy: "localhost,.lan,10.0.0.0/8"},
		NTP:     []string{"10.0.2.2", "ntp.lan"},
		Persist: "/dev/vdb",
	}
	c.InstanceID = ""
	if d := cmp.Diff(want, c, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
		t.Errorf("config (-want +got):\n%s", d)
	}

	// The instance of a command line is its parameters: same line, same id.
	a, _, _, _ := parseCmdline("lightwhale.hostname=a")
	b, _, _, _ := parseCmdline("quiet lightwhale.hostname=a")
	o, _, _, _ := parseCmdline("lightwhale.hostname=b")
	if a.InstanceID != b.InstanceID || a.InstanceID == o.InstanceID || !strings.HasPrefix(a.InstanceID, "cmdline-") {
		t.Errorf("instance ids: %q %q %q", a.InstanceID, b.InstanceID, o.InstanceID)
	}
	if _, found, _, _ := parseCmdline("quiet lightwhale.wait=3 lightwhale.nope=1"); found {
		t.Error("no provisioning parameter, but found")
	}
}

func TestParseCmdlineHostile(t *testing.T) {
	tests := []struct{ line, want string }{
		{"lightwhale.hostname=a_b", "lightwhale.hostname: invalid host name"},
		{`"lightwhale.hostname=a b"`, "lightwhale.hostname: invalid host name \"a b\""},
		{"lightwhale.ssh_key=bm90IGEga2V5", "lightwhale.ssh_key: \"not a key\"...: not an ssh public key"},
		{"lightwhale.ssh_key=%%%", "neither a quoted key line nor base64"},
		{"lightwhale.ip=10.0.0.2", "lightwhale.ip: \"10.0.0.2\": expected [IFACE=]ADDR/PREFIX"},
		{"lightwhale.ip=eth1=10.0.0.2/24,gw", "lightwhale.ip: gateway via: \"gw\""},
		{"lightwhale.ip=eth1=10.0.0.2/24,,1.1.1", "DNS server \"1.1.1\""},
		{"lightwhale.ip=eth1;reboot=10.0.0.2/24", "\"eth1;reboot\": not an interface name"},
		{"lightwhale.proxy=http://p:1/'$(reboot)'", "lightwhale.proxy: \"http://p:1/'$(reboot)'\": quotes"},
		{"lightwhale.proxy=ftp://p", "expected http://host:port"},
		{"lightwhale.no_proxy=a;b", "lightwhale.no_proxy: \"a;b\""},
		{"lightwhale.persist=/dev/../etc/shadow", "lightwhale.persist: \"/dev/../etc/shadow\": expected a whole disk"},
		{"lightwhale.persist=/dev/sda1x;", "expected a whole disk"},
		{"lightwhale.ntp=a..b", "lightwhale.ntp: \"a..b\""},
	}
	for _, tc := range tests {
		_, _, _, err := parseCmdline(tc.line)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.line, err, tc.want)
		}
	}
}

func TestSplitCmdline(t *testing.T) {
	got := splitCmdline(` a  "b c"  d="e f" "g=h i"` + "\n")
	if d := cmp.Diff([]string{"a", "b c", "d=e f", "g=h i"}, got); d != "" {
		t.Error(d)
	}
}

func TestFatLabel(t *testing.T) {
	sector := func(sigOff, labelOff, typeOff int, typ string) []byte {
		b := make([]byte, 4096)
		b[510], b[511] = 0x55, 0xaa
		b[sigOff] = 0x29
		copy(b[labelOff:], "CIDATA     ")
		copy(b[typeOff:], typ)
		return b
	}
	if got := seedFS(sector(0x42, 0x47, 0x52, "FAT32   ")); got != "vfat" {
		t.Errorf("FAT32 cidata: %q", got)
	}
	if got := seedFS(sector(0x26, 0x2b, 0x36, "FAT12   ")); got != "vfat" {
		t.Errorf("FAT12 cidata: %q", got)
	}
	if got := seedFS(make([]byte, 4096)); got != "" {
		t.Errorf("blank: %q", got)
	}
	iso := make([]byte, 40000)
	copy(iso[16*2048:], "\x01CD001")
	copy(iso[16*2048+40:], "cidata                          ")
	if got := seedFS(iso); got != "iso9660" {
		t.Errorf("ISO cidata: %q", got)
	}
}

func TestMergeCmdlineOverridesSeed(t *testing.T) {
	k1, k2 := testKey(t, 1), testKey(t, 2)
	seed := Config{Sources: []string{"nocloud /dev/sr1"}, InstanceID: "i-1", Hostname: "seed", SSHKeys: []string{k1}, NTP: []string{"a"},
		Ethernets: []Ethernet{{ID: "eth1", MatchName: "eth1", DHCP4: true}}}
	cl := Config{Sources: []string{"cmdline"}, InstanceID: "cmdline-x", Hostname: "cmd", SSHKeys: []string{k2},
		Ethernets: []Ethernet{{ID: "eth1", MatchName: "eth1", Addresses: []netip.Prefix{netip.MustParsePrefix("10.0.0.2/24")}}}}
	seed.merge(cl)
	if seed.Hostname != "cmd" || seed.InstanceID != "i-1" || len(seed.SSHKeys) != 2 || seed.NTP[0] != "a" ||
		len(seed.Ethernets) != 1 || seed.Ethernets[0].DHCP4 || strings.Join(seed.Sources, ",") != "nocloud /dev/sr1,cmdline" {
		t.Errorf("merged: %+v", seed)
	}
}
