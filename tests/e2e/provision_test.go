package e2e

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/net/ipv4"

	"lightwhale/tests/vm"
)

// Issue 14: zero-touch provisioning from a NoCloud seed and the kernel
// command line, and issue 11's clock, on the real ISO's kernel and rootfs.

// kernelBoot extracts the ISO's kernel and initramfs and returns a config
// that boots them directly with the ISO's own kernel arguments plus extra,
// as a bootloader entry edited by a user would; the seeds are CDs (the
// first is /dev/sr0), and the ISO itself, where stage 1 finds the root
// image, is the last CD.
func kernelBoot(t *testing.T, iso, extra string, seeds ...string) vm.Config {
	t.Helper()
	dir := t.TempDir()
	files, err := vm.ISOFiles(iso)
	if err != nil {
		t.Fatal(err)
	}
	bf, err := vm.FindBootFiles(files)
	if err != nil {
		t.Fatal(err)
	}
	cfg := vm.Config{Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd"), CDROMs: append(seeds, iso)}
	for src, dst := range map[string]string{bf.Kernel: cfg.Kernel, bf.Initrd: cfg.Initrd, "/boot/grub/grub.cfg": filepath.Join(dir, "grub.cfg")} {
		if err := vm.ExtractFromISO(iso, src, dst); err != nil {
			t.Fatal(err)
		}
	}
	grub, err := os.ReadFile(filepath.Join(dir, "grub.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*linux\s+\S+\s+(.*)$`).FindSubmatch(grub)
	if m == nil {
		t.Fatalf("no linux line in the ISO's grub.cfg:\n%s", grub)
	}
	cfg.Append = strings.TrimSpace(string(m[1])) + " " + extra
	return cfg
}

// seedISO writes a NoCloud seed ISO (volume label cidata) from files.
func seedISO(t *testing.T, files map[string]string) string {
	t.Helper()
	if _, err := exec.LookPath("xorriso"); err != nil {
		t.Skip("xorriso not found (apt-get install xorriso)")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "seed")
	os.Mkdir(src, 0o755)
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "cidata.iso")
	if b, err := exec.Command("xorriso", "-as", "mkisofs", "-quiet", "-V", "cidata", "-J", "-r", "-o", out, src).CombinedOutput(); err != nil {
		t.Fatalf("xorriso: %v\n%s", err, b)
	}
	return out
}

// testSigner is an ed25519 key for op, and its authorized_keys line.
func testSigner(t *testing.T) (ssh.Signer, string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.PublicKey()))) + " e2e@host"
}

// passwordLogin tries op/opsecret over SSH; it returns nil if it got in.
func passwordLogin(port int) error {
	cfg := &ssh.ClientConfig{
		User:            vm.User,
		Auth:            []ssh.AuthMethod{ssh.Password(vm.Password)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout:         30 * time.Second,
	}
	c, err := ssh.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cfg)
	if err != nil {
		return err
	}
	return c.Close()
}

// segmentPeer is the host's side of a private QEMU segment (a UDP multicast
// group on loopback carrying raw Ethernet frames): it answers ARP for the
// addresses it owns, each with its own MAC, and echo requests sent to those
// MACs, and records which MAC each echo request was sent to.
type segmentPeer struct {
	conn *ipv4.PacketConn
	dst  *net.UDPAddr
	macs map[[4]byte]net.HardwareAddr

	mu     sync.Mutex
	echoes []string // "dst-ip via mac"
}

// joinSegment joins the private segment on port (vm.NIC's multicast group
// on loopback), sending there too; it leaves when the test ends.
func joinSegment(t *testing.T, port int) (*ipv4.PacketConn, *net.UDPAddr) {
	t.Helper()
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	group := &net.UDPAddr{IP: net.IPv4(230, 0, 0, 1), Port: port}
	c, err := net.ListenMulticastUDP("udp4", lo, group)
	if err != nil {
		t.Fatalf("join segment %d: %v", port, err)
	}
	t.Cleanup(func() { c.Close() })
	conn := ipv4.NewPacketConn(c)
	if err := conn.SetMulticastInterface(lo); err != nil {
		t.Fatal(err)
	}
	conn.SetMulticastLoopback(true)
	return conn, group
}

func newSegmentPeer(t *testing.T, port int, owned map[string]string) *segmentPeer {
	t.Helper()
	conn, group := joinSegment(t, port)
	p := &segmentPeer{conn: conn, dst: group, macs: map[[4]byte]net.HardwareAddr{}}
	for ip, mac := range owned {
		hw, _ := net.ParseMAC(mac)
		p.macs[[4]byte(net.ParseIP(ip).To4())] = hw
	}
	go p.serve()
	return p
}

func (p *segmentPeer) owns(mac []byte) bool {
	for _, m := range p.macs {
		if string(m) == string(mac) {
			return true
		}
	}
	return false
}

func (p *segmentPeer) serve() {
	buf := make([]byte, 2048)
	for {
		n, _, _, err := p.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		f := buf[:n]
		if len(f) < 42 {
			continue
		}
		switch binary.BigEndian.Uint16(f[12:14]) {
		case 0x0806: // ARP request for an address we own
			mac, ok := p.macs[[4]byte(f[38:42])]
			if binary.BigEndian.Uint16(f[20:22]) != 1 || !ok {
				continue
			}
			r := make([]byte, 42)
			copy(r[0:6], f[22:28])
			copy(r[6:12], mac)
			copy(r[12:22], f[12:22])
			binary.BigEndian.PutUint16(r[20:22], 2)
			copy(r[22:28], mac)
			copy(r[28:32], f[38:42])
			copy(r[32:38], f[22:28])
			copy(r[38:42], f[28:32])
			p.conn.WriteTo(r, nil, p.dst)
		case 0x0800: // ICMP echo request to one of our MACs
			ihl := int(f[14]&0x0f) * 4
			if f[23] != 1 || len(f) < 14+ihl+8 || f[14+ihl] != 8 || !p.owns(f[0:6]) {
				continue
			}
			p.mu.Lock()
			p.echoes = append(p.echoes, fmt.Sprintf("%s via %s", net.IP(f[30:34]), net.HardwareAddr(f[0:6])))
			p.mu.Unlock()
			r := append([]byte(nil), f...)
			copy(r[0:6], f[6:12])
			copy(r[6:12], f[0:6])
			copy(r[26:30], f[30:34])
			copy(r[30:34], f[26:30])
			icmp := r[14+ihl:]
			icmp[0] = 0
			icmp[2], icmp[3] = 0, 0
			binary.BigEndian.PutUint16(icmp[2:4], checksum(icmp))
			p.conn.WriteTo(r, nil, p.dst)
		}
	}
}

func (p *segmentPeer) seen() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.echoes, "\n")
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// ntpServer answers NTP client requests on the host's UDP port 123 with
// the host's clock; QEMU's user network shows it to the guest at 10.0.2.2.
func ntpServer(t *testing.T) {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:123")
	if err != nil {
		t.Skipf("clock check needs UDP port 123 on the host (root): %v", err)
	}
	t.Cleanup(func() { c.Close() })
	const epoch = 2208988800 // 1900 to 1970
	ntpTime := func(tm time.Time) uint64 {
		secs := uint64(tm.Unix() + epoch)
		frac := uint64(tm.Nanosecond()) << 32 / 1e9
		return secs<<32 | frac
	}
	go func() {
		buf := make([]byte, 512)
		for {
			n, addr, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			recv := time.Now()
			if n < 48 || buf[0]&0x7 != 3 { // mode 3: client
				continue
			}
			r := make([]byte, 48)
			r[0] = 0<<6 | 4<<3 | 4 // no leap warning, version 4, mode 4: server
			r[1] = 1               // stratum 1: a reference clock
			r[2] = buf[2]
			r[3] = 0xec // precision about 2^-20 s
			copy(r[12:16], "LOCL")
			binary.BigEndian.PutUint64(r[16:24], ntpTime(recv))
			copy(r[24:32], buf[40:48]) // originate = the client's transmit time
			binary.BigEndian.PutUint64(r[32:40], ntpTime(recv))
			binary.BigEndian.PutUint64(r[40:48], ntpTime(time.Now()))
			c.WriteTo(r, addr)
		}
	}()
}

// clockOffset is the guest's clock minus the host's, from the middle of an
// SSH round trip.
func (g *guest) clockOffset() (float64, error) {
	before := time.Now()
	out, err := g.try("date +%s.%N")
	after := time.Now()
	if err != nil {
		return 0, err
	}
	gs, err := strconv.ParseFloat(out, 64)
	if err != nil {
		return 0, fmt.Errorf("date: %q", out)
	}
	mid := before.Add(after.Sub(before) / 2)
	return gs - float64(mid.UnixNano())/1e9, nil
}

const (
	lanMAC     = "52:54:00:77:00:10" // the guest's second NIC
	peerGW     = "192.168.77.254"    // the route's gateway, on the host side
	peerGWMAC  = "02:00:00:77:00:fe"
	peerHost   = "192.168.77.1"
	peerHostMC = "02:00:00:77:00:01"
)

// TestProvisionSeed boots with a cidata seed (keys, host name, a static
// address and route on a second NIC, write_files with a daemon.json,
// runcmd, NTP server) and lightwhale.persist= and lightwhale.proxy= on the
// kernel command line, with the guest's clock started in 2020; then
// reboots once.
func TestProvisionSeed(t *testing.T) {
	t.Parallel()
	iso := requireISO(t)
	ntpServer(t)
	signer, key := testSigner(t)
	seg := 20000 + int(time.Now().UnixNano()%20000)
	peer := newSegmentPeer(t, seg, map[string]string{peerGW: peerGWMAC, peerHost: peerHostMC})
	seed := seedISO(t, map[string]string{
		"meta-data": "instance-id: e2e-0001\nlocal-hostname: not-this-one\n",
		"user-data": `#cloud-config
hostname: whale-e2e
ssh_authorized_keys:
  - ` + key + `
write_files:
  - path: /etc/lightwhale-e2e.txt
    content: hello from cidata
    permissions: '0640'
    owner: root:docker
  - path: /etc/docker/daemon.json
    content: '{"log-driver": "local", "default-runtime": "runc"}'
runcmd:
  - echo ran >> /mnt/lightwhale-data/runcmd-count
ntp:
  servers: [10.0.2.2]
`,
		"network-config": `version: 2
ethernets:
  lan:
    match: {macaddress: "` + lanMAC + `"}
    addresses: [192.168.77.10/24]
    routes:
      - {to: 10.9.0.0/16, via: ` + peerGW + `}
`,
	})
	disk := filepath.Join(t.TempDir(), "data.img")
	if err := vm.NewDisk(disk, 2048, ""); err != nil {
		t.Fatal(err)
	}
	cfg := kernelBoot(t, iso, "lightwhale.persist=/dev/vda lightwhale.proxy=http://10.0.2.2:3128", seed)
	cfg.Disks = []vm.Disk{{Path: disk}}
	cfg.NICs = []vm.NIC{{Segment: seg, MAC: lanMAC}}
	cfg.SSHKey = signer
	cfg.RTCBase = "2020-01-01"
	g := boot(t, cfg) // logs in with the key

	if err := passwordLogin(g.SSHPort); err == nil {
		t.Error("op/opsecret logged in over ssh; password login must be off once a key is given")
	} else {
		t.Logf("password login refused as expected: %v", err)
	}
	if got := g.run("hostname"); got != "whale-e2e" {
		t.Errorf("hostname = %q, want whale-e2e", got)
	}
	if got := g.run("sudo -n true && echo sudo-ok"); got != "sudo-ok" {
		t.Errorf("op's sudo without a password (password locked): %q", got)
	}
	status := g.run("lightwhale provision status")
	if !strings.Contains(status, "provisioned from: nocloud /dev/sr0, cmdline") || !strings.Contains(status, "instance-id: e2e-0001") || strings.Contains(status, "ERROR") {
		t.Errorf("provision status:\n%s\nlog:\n%s", status, g.run("cat /run/lightwhale/provision/log"))
	}
	g.wantMotd("motd", regexp.QuoteMeta("Provisioned from nocloud /dev/sr0, cmdline (instance-id e2e-0001)"))
	if got := g.sudo("stat -c '%a %U %G' /etc/lightwhale-e2e.txt && cat /etc/lightwhale-e2e.txt"); got != "640 root docker\nhello from cidata" {
		t.Errorf("write_files: %q", got)
	}
	if m := g.mode(); m != "persistent" {
		t.Errorf("mode %q, want persistent (lightwhale.persist=/dev/vda)", m)
	}

	// The static address and route, proven by pings the host side answers.
	ifc := g.run("basename $(dirname $(grep -lx " + lanMAC + " /sys/class/net/*/address))")
	addrs := g.sudo("ip -4 -o addr show dev " + ifc)
	routes := g.sudo("ip -4 route")
	if !strings.Contains(addrs, "192.168.77.10/24") || !strings.Contains(routes, "10.9.0.0/16 via "+peerGW+" dev "+ifc) {
		t.Errorf("%s: addresses:\n%s\nroutes:\n%s", ifc, addrs, routes)
	}
	for _, dst := range []string{peerHost, "10.9.3.4"} {
		if out, err := g.trySudo("ping -c 2 -W 5 " + dst); err != nil {
			t.Errorf("ping %s: %v\n%s", dst, err, out)
		}
	}
	if seen := peer.seen(); !strings.Contains(seen, "10.9.3.4 via "+peerGWMAC) || !strings.Contains(seen, peerHost+" via "+peerHostMC) {
		t.Errorf("echo requests seen on the segment:\n%s\nwant 10.9.3.4 sent to the route's gateway %s", seen, peerGWMAC)
	}
	// DHCP still serves the first NIC (ssh came through it), not the static one.
	if out := g.run("ls /run/udhcpc-*.pid"); strings.Contains(out, ifc) {
		t.Errorf("DHCP runs on the static link %s: %s", ifc, out)
	}

	g.waitDocker()
	// A daemon.json that names the default runtime wins over S60dockerd's
	// crun (dockerd would refuse the setting given twice).
	if got := g.run("docker info --format '{{.DefaultRuntime}} {{.LoggingDriver}}'"); got != "runc local" {
		t.Errorf("dockerd's default runtime and log driver = %q; want the seed's daemon.json: runc local", got)
	}
	env := g.sudo("tr '\\0' '\\n' < /proc/$(cat /run/docker.pid)/environ | grep -i proxy | sort")
	if !strings.Contains(env, "HTTP_PROXY=http://10.0.2.2:3128") || !strings.Contains(env, "NO_PROXY=localhost,127.0.0.1") {
		t.Errorf("dockerd's environment: %q", env)
	}
	waitFor(t, g, "runcmd", "cat /mnt/lightwhale-data/runcmd-count 2>/dev/null", "ran")

	// The clock: started in 2020, synced from the host's NTP server.
	var off float64
	deadline := time.Now().Add(3 * time.Minute)
	for {
		o, err := g.clockOffset()
		if err == nil && math.Abs(o) <= 1 {
			off = o
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("guest clock off by %.1f s (err %v)\nchronyc sources:\n%s", o, err, g.sudo("chronyc -n sources; cat /run/lightwhale/chrony.conf"))
		}
		time.Sleep(3 * time.Second)
	}
	t.Logf("guest clock within %.3f s of the host", off)

	// Reboot: per-boot steps again, runcmd not; persist leaves its disk be.
	g.reboot()
	if got := g.run("hostname"); got != "whale-e2e" {
		t.Errorf("after reboot: hostname %q", got)
	}
	if m := g.mode(); m != "persistent" {
		t.Errorf("after reboot: mode %q", m)
	}
	if st := g.run("lightwhale provision status"); strings.Contains(st, "ERROR") {
		t.Errorf("after reboot: status:\n%s\nlog:\n%s", st, g.run("cat /run/lightwhale/provision/log"))
	}
	g.waitDocker()
	// S95provision runs in the background once dockerd answers: give it the
	// time it took at first boot, then check it did not run runcmd again.
	time.Sleep(20 * time.Second)
	if got := g.run("cat /mnt/lightwhale-data/runcmd-count"); got != "ran" {
		t.Errorf("runcmd ran again after reboot: %q", got)
	}
	if log := g.run("cat /run/lightwhale/provision/log"); !strings.Contains(log, "already holds the Lightwhale data filesystem") {
		t.Errorf("persist on the second boot:\n%s", log)
	}
	g.poweroff()
}

// waitFor polls cmd until its output is want.
func waitFor(t *testing.T, g *guest, what, cmd, want string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		out, _ := g.try(cmd)
		if out == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %q, want %q", what, out, want)
		}
		time.Sleep(3 * time.Second)
	}
}

// TestProvisionBrokenSeed: a seed with errors is reported and nothing of it
// applied; the machine comes up with its defaults (op/opsecret, volatile,
// Docker). lightwhale.persist= refuses a disk holding a filesystem.
func TestProvisionBrokenSeed(t *testing.T) {
	t.Parallel()
	iso := requireISO(t)
	seed := seedISO(t, map[string]string{
		"meta-data":      "instance-id: broken-1\n",
		"user-data":      "#cloud-config\nhostname: should-not-apply\nssh_authorized_keys: [\"not a key\"]\n",
		"network-config": "version: 2\nversion: 2\n",
	})
	data := ext4Disk(t, filepath.Join(t.TempDir(), "someone.img"))
	data.Bus = vm.Virtio
	before := hashes(t, []vm.Disk{data})
	cfg := kernelBoot(t, iso, "lightwhale.persist=/dev/vda", seed)
	cfg.Disks = []vm.Disk{data}
	g := boot(t, cfg) // with op/opsecret: the defaults
	g.waitDocker()

	status := g.run("lightwhale provision status")
	for _, want := range []string{"ERROR: seed /dev/sr0 rejected: 2 problems", "ERROR: lightwhale.persist=/dev/vda refused"} {
		if !strings.Contains(status, want) {
			t.Errorf("status lacks %q:\n%s", want, status)
		}
	}
	log := g.run("cat /run/lightwhale/provision/log")
	for _, want := range []string{`network-config: duplicate key "version"`, `user-data: ssh_authorized_keys[0]: "not a key"`, "REJECTED"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	g.wantMotd("motd", regexp.QuoteMeta("PROVISIONING ERROR: seed /dev/sr0 rejected"))
	if h := g.run("hostname"); h == "should-not-apply" {
		t.Error("host name applied from a rejected seed")
	}
	if m := g.mode(); m != "volatile" {
		t.Errorf("mode %q, want volatile", m)
	}
	console, _ := os.ReadFile(g.Serial)
	if !strings.Contains(string(console), "provision: seed /dev/sr0 REJECTED") {
		t.Error("the console does not show the rejected seed")
	}
	g.poweroff()
	if after := hashes(t, []vm.Disk{data}); after[0] != before[0] {
		t.Error("lightwhale.persist= changed a disk holding a filesystem")
	}
}
