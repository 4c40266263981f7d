// Package vm boots Lightwhale (or a stub guest) in QEMU for end-to-end tests:
// real firmware, real disks as sparse raw images, a serial console kept as a
// log file, and SSH through a loopback-only host forward.
package vm

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
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
)

// Firmware selects what QEMU boots with.
type Firmware int

const (
	// BIOS is QEMU's default SeaBIOS.
	BIOS Firmware = iota
	// UEFI is OVMF.
	UEFI
	// SecureBoot is OVMF with Microsoft's keys enrolled and Secure Boot
	// enforced, as on a stock PC: q35 with SMM, so that the guest cannot
	// write the variable store around the firmware.
	SecureBoot
)

func (f Firmware) String() string {
	switch f {
	case UEFI:
		return "uefi"
	case SecureBoot:
		return "uefi-secureboot"
	}
	return "bios"
}

// Bus is how a disk is attached.
type Bus string

const (
	Virtio Bus = "virtio" // virtio-blk: /dev/vdX in the guest
	AHCI   Bus = "ahci"   // SATA on an AHCI controller: /dev/sdX
	USB    Bus = "usb"    // usb-storage on a qemu-xhci controller: /dev/sdX, a USB stick
	NVMe   Bus = "nvme"   // its own NVMe controller: /dev/nvmeXn1
	SCSI   Bus = "scsi"   // scsi-hd on a virtio-scsi-pci controller: /dev/sdX
	SD     Bus = "sd"     // sd-card on its own sdhci-pci controller: /dev/mmcblkX (image size a power of 2)
)

// Controller ids: a hot-plugged disk names them as bus=ID.0 in device_add.
// A controller exists when a disk uses its bus, or when Config.Controllers
// names the bus (to hot-plug the first disk).
const (
	AHCIController = "ahci0"
	USBController  = "xhci0"
	SCSIController = "scsi0"
)

// Disk is a raw image attached to the guest.
type Disk struct {
	Path string
	Bus  Bus  // Virtio when empty
	Boot bool // boot from it (the ISO written raw, the USB-stick case)
	// ID names the QEMU device, for device_del and Config.BootOrder;
	// "disk<N>" (N its index in Config.Disks) when empty. Its drive (the
	// backend, for drive_del) is ID+"-drive".
	ID string
	// WriteBytesPerSec, when set, throttles the guest's writes to this disk
	// (QEMU's throttling.bps-write): a slow disk, so that a long write such
	// as a RAID rebuild can be caught in the middle cheaply.
	WriteBytesPerSec int
}

// NIC is an extra network card on a private Ethernet segment: every
// machine, in this process or another, whose NIC names the same Segment
// shares it (a UDP multicast group on loopback). No DHCP, no host there.
type NIC struct {
	Segment int    // UDP port of the segment's multicast group, 1024-65535
	MAC     string // a random locally administered address when empty
}

// Config describes one QEMU machine. Exactly one of ISO, a Boot disk, or
// Kernel must be set.
type Config struct {
	Name     string // names the serial log; the test name when empty
	ISO      string // attached as a CD-ROM (device id "cd0") and booted from
	Kernel   string // direct kernel boot (stub and bare reference guests)
	Initrd   string
	Append   string
	Firmware Firmware
	MemMiB   int // 2048 when zero
	CPUs     int // 2 when zero
	Disks    []Disk
	// CDROMs are extra read-only CD-ROMs, not booted (a cidata seed ISO);
	// device ids "cd1", "cd2", ...
	CDROMs []string
	// NICs are network cards beyond the first (user networking with the
	// SSH and HTTP forwards).
	NICs []NIC
	// Controllers to create even with no disk on them, for hot-plug.
	Controllers []Bus
	// BootOrder lists device ids ("cd0", a Disk's ID) in the order the
	// firmware tries them, e.g. data disks before the CD. When empty, the
	// ISO or the Boot disk boots.
	BootOrder []string
	// LogDir keeps the serial logs; a test temp dir when empty.
	LogDir string
	// SSHKey, when set, is how the harness logs in as op instead of the
	// password (a provisioned guest refuses password login).
	SSHKey ssh.Signer
	// RTCBase starts the guest's clock at this date (QEMU -rtc base=), e.g.
	// "2020-01-01" to test that the clock gets synced.
	RTCBase string
}

// OVMFPath is the UEFI firmware image Debian's ovmf package installs.
const OVMFPath = "/usr/share/ovmf/OVMF.fd"

// The Secure Boot firmware of Debian's ovmf package: code, and the variable
// store template with Microsoft's keys enrolled and Secure Boot on. Each
// machine writes its own copy of the store, OVMFVars(runDir).
const (
	OVMFSecureCode = "/usr/share/OVMF/OVMF_CODE_4M.ms.fd"
	OVMFSecureVars = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
)

// OVMFVars is the variable store of the machine using runDir.
func OVMFVars(runDir string) string { return filepath.Join(runDir, "OVMF_VARS.fd") }

// Machine is a running QEMU process. QEMU keeps running across guest
// reboots; it exits when the guest powers off.
type Machine struct {
	cfg      Config
	SSHPort  int
	HTTPPort int
	// Serial is the path of the serial console log of this QEMU process.
	Serial string
	// RunDir holds the QMP socket (Monitor) and the guest-agent socket
	// QGASocket(RunDir); it is removed when QEMU exits.
	RunDir string

	cmd    *exec.Cmd
	exited chan struct{}
	errMu  sync.Mutex
	err    error // QEMU's exit status once exited is closed

	ssh *Client // current SSH connection, nil until WaitSSH
	// bootSerialOffset is where the current boot's console output starts in
	// Serial, so a failure can show the boot that failed.
	bootSerialOffset int64
	HostKeys         []string // SSH host key fingerprints seen, one per connection
}

// QEMU reports why VM tests cannot run here, or "" when they can.
func QEMU() string {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return "qemu-system-x86_64 not found (apt-get install qemu-system-x86)"
	}
	return ""
}

// freePort asks the kernel for an unused loopback TCP port. Another process
// could take it before QEMU binds it; Start retries on that.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Host is the host side of one QEMU process: where its console, forwards
// and sockets go, and how it executes the guest.
type Host struct {
	// Serial is the console's log file; empty puts the console on this
	// terminal (make run: Ctrl-A X quits, Ctrl-C goes to the guest).
	Serial            string
	SSHPort, HTTPPort int    // loopback ports forwarded to guest ports 22 and 80
	RunDir            string // holds the sockets MonitorSocket and QGASocket
	Accel             Accel
}

// MonitorSocket is the QMP socket of the machine using runDir.
func MonitorSocket(runDir string) string { return filepath.Join(runDir, "qmp.sock") }

// QGASocket is the guest-agent channel (org.qemu.guest_agent.0) of the
// machine using runDir.
func QGASocket(runDir string) string { return filepath.Join(runDir, "qga.sock") }

// Args is QEMU's command line for c on h: the one definition that the
// tests, make run (tests/vm/cmd/lwqemu) and make bench share.
func (c Config) Args(h Host) ([]string, error) {
	mem, cpus := memOr(c.MemMiB), c.CPUs
	if cpus == 0 {
		cpus = 2
	}
	if h.RunDir == "" || h.SSHPort == 0 || h.HTTPPort == 0 {
		return nil, fmt.Errorf("machine %q: host side incomplete: %+v", c.Name, h)
	}
	accel, err := h.Accel.args()
	if err != nil {
		return nil, err
	}
	a := []string{
		"-nodefaults", "-no-user-config",
		"-display", "none",
		"-vga", "std", // the ISO's console is on VGA as well; keep it a real machine
		"-m", strconv.Itoa(mem),
		"-smp", strconv.Itoa(cpus),
		"-qmp", "unix:" + optValue(MonitorSocket(h.RunDir)) + ",server=on,wait=off",
		"-device", "virtio-rng-pci", // sshd makes host keys at first boot: entropy
		"-nic", fmt.Sprintf("user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:%d-:22,hostfwd=tcp:127.0.0.1:%d-:80", h.SSHPort, h.HTTPPort),
		"-device", "virtio-serial-pci",
		"-chardev", "socket,id=qga,path=" + optValue(QGASocket(h.RunDir)) + ",server=on,wait=off",
		"-device", "virtserialport,chardev=qga,name=org.qemu.guest_agent.0",
	}
	if h.Serial != "" {
		a = append(a, "-serial", "file:"+optValue(h.Serial), "-monitor", "none")
	} else {
		// What -nographic does: console and monitor multiplexed on stdio.
		a = append(a, "-chardev", "stdio,id=con,mux=on,signal=off", "-serial", "chardev:con", "-mon", "chardev=con,mode=readline")
	}
	a = append(a, accel...)
	switch c.Firmware {
	case UEFI:
		if _, err := os.Stat(OVMFPath); err != nil {
			return nil, fmt.Errorf("uefi firmware: %w (apt-get install ovmf)", err)
		}
		a = append(a, "-bios", OVMFPath)
	case SecureBoot:
		if _, err := os.Stat(OVMFSecureCode); err != nil {
			return nil, fmt.Errorf("secure boot firmware: %w (apt-get install ovmf)", err)
		}
		a = append(a, "-machine", "q35,smm=on",
			"-global", "driver=cfi.pflash01,property=secure,value=on",
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+optValue(OVMFSecureCode),
			"-drive", "if=pflash,format=raw,unit=1,file="+optValue(OVMFVars(h.RunDir)))
	}
	if c.RTCBase != "" {
		a = append(a, "-rtc", "base="+c.RTCBase)
	}
	for i, n := range c.NICs {
		nic, err := n.args(i + 1)
		if err != nil {
			return nil, err
		}
		a = append(a, nic...)
	}

	// Boot order: explicit, or the one boot source first.
	order := map[string]int{}
	for i, id := range c.BootOrder {
		order[id] = i
	}
	bootIndex := func(id string, boot bool) string {
		if i, ok := order[id]; ok {
			delete(order, id)
			return fmt.Sprintf(",bootindex=%d", i)
		}
		if boot && len(c.BootOrder) == 0 {
			return ",bootindex=0"
		}
		return ""
	}

	boots := 0
	if c.ISO != "" {
		boots++
		a = append(a,
			"-drive", "if=none,id=cd0-drive,media=cdrom,readonly=on,format=raw,file="+optValue(c.ISO),
			"-device", "ide-cd,id=cd0,drive=cd0-drive"+bootIndex("cd0", true))
	}
	for i, p := range c.CDROMs {
		id := fmt.Sprintf("cd%d", i+1)
		a = append(a,
			"-drive", fmt.Sprintf("if=none,id=%s-drive,media=cdrom,readonly=on,format=raw,file=%s", id, optValue(p)),
			"-device", fmt.Sprintf("ide-cd,id=%s,drive=%s-drive", id, id)+bootIndex(id, false))
	}
	if c.Kernel != "" {
		boots++
		a = append(a, "-kernel", c.Kernel)
		if c.Initrd != "" {
			a = append(a, "-initrd", c.Initrd)
		}
		if c.Append != "" {
			a = append(a, "-append", c.Append)
		}
	}
	controllers := map[Bus]bool{}
	controller := func(b Bus) {
		if controllers[b] {
			return
		}
		controllers[b] = true
		switch b {
		case AHCI:
			a = append(a, "-device", "ahci,id="+AHCIController)
		case USB:
			a = append(a, "-device", "qemu-xhci,id="+USBController)
		case SCSI:
			a = append(a, "-device", "virtio-scsi-pci,id="+SCSIController)
		}
	}
	for _, b := range c.Controllers {
		switch b {
		case AHCI, USB, SCSI:
			controller(b)
		default:
			return nil, fmt.Errorf("machine %q: bus %q has no shared controller to create", c.Name, b)
		}
	}
	ahciPort := 0
	for i, d := range c.Disks {
		id := d.ID
		if id == "" {
			id = fmt.Sprintf("disk%d", i)
		}
		if !qemuID.MatchString(id) {
			return nil, fmt.Errorf("disk %s: id %q: want a letter, then letters, digits, '-', '.' or '_'", d.Path, id)
		}
		drive := id + "-drive"
		// cache=unsafe: no host fsync for guest flushes (fast under TCG); the
		// data still reaches the image file, which outlives QEMU.
		throttle := ""
		if d.WriteBytesPerSec < 0 {
			return nil, fmt.Errorf("disk %s: write throttle %d bytes/s: want 0 (none) or more", d.Path, d.WriteBytesPerSec)
		} else if d.WriteBytesPerSec > 0 {
			throttle = fmt.Sprintf(",throttling.bps-write=%d", d.WriteBytesPerSec)
		}
		a = append(a, "-drive", fmt.Sprintf("if=none,id=%s,format=raw,cache=unsafe,discard=unmap%s,file=%s", drive, throttle, optValue(d.Path)))
		var dev string
		switch d.Bus {
		case Virtio, "":
			dev = "virtio-blk-pci"
		case AHCI:
			controller(AHCI)
			dev = fmt.Sprintf("ide-hd,bus=%s.%d", AHCIController, ahciPort)
			ahciPort++
		case USB:
			controller(USB)
			dev = "usb-storage,bus=" + USBController + ".0"
		case NVMe:
			dev = "nvme,serial=" + id // a serial number is mandatory
		case SCSI:
			controller(SCSI)
			dev = "scsi-hd,bus=" + SCSIController + ".0"
		case SD:
			a = append(a, "-device", "sdhci-pci,id="+id+"-sdhci")
			// Its bus is named "sd-bus" whatever the controller id: leave it to QEMU, which picks a free one.
			dev = "sd-card"
		default:
			return nil, fmt.Errorf("disk %s: unknown bus %q", d.Path, d.Bus)
		}
		if d.Boot {
			boots++
		}
		a = append(a, "-device", dev+",id="+id+",drive="+drive+bootIndex(id, d.Boot))
	}
	if boots != 1 {
		return nil, fmt.Errorf("machine %q: need exactly one of ISO, Kernel or a boot disk, have %d", c.Name, boots)
	}
	for id := range order {
		return nil, fmt.Errorf("machine %q: BootOrder names %q, which is no device of it", c.Name, id)
	}
	return a, nil
}

// qemuID is what QEMU accepts as a device or drive id.
var qemuID = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.-]*$`)

// optValue escapes a path for a QEMU option list, where a comma would
// start the next option.
func optValue(p string) string { return strings.ReplaceAll(p, ",", ",,") }

// args is the -netdev and -device pair of an extra NIC.
func (n NIC) args(i int) ([]string, error) {
	if n.Segment < 1024 || n.Segment > 65535 {
		return nil, fmt.Errorf("nic %d: segment %d is not a UDP port in 1024-65535", i, n.Segment)
	}
	mac := n.MAC
	if mac == "" {
		b := make([]byte, 3)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		// 52:54:00 is QEMU's prefix; the random rest keeps machines apart.
		mac = fmt.Sprintf("52:54:00:%02x:%02x:%02x", b[0], b[1], b[2])
	}
	if _, err := net.ParseMAC(mac); err != nil {
		return nil, fmt.Errorf("nic %d: %w", i, err)
	}
	id := fmt.Sprintf("net%d", i)
	return []string{
		"-netdev", fmt.Sprintf("socket,id=%s,mcast=230.0.0.1:%d,localaddr=127.0.0.1", id, n.Segment),
		"-device", fmt.Sprintf("virtio-net-pci,netdev=%s,mac=%s,id=nic%d", id, mac, i),
	}, nil
}

// Start boots a machine and registers its cleanup: on failure the tail of the
// serial log is printed, and QEMU is killed if still running.
func Start(t testing.TB, cfg Config) (*Machine, error) {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	}
	if cfg.LogDir == "" {
		cfg.LogDir = os.Getenv("LIGHTWHALE_TEST_LOGS")
		if cfg.LogDir == "" {
			cfg.LogDir = testLogDir(t)
		}
	}
	m, err := Launch(cfg)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		m.Kill()
		if t.Failed() {
			t.Logf("serial console of %s (%s), last lines:\n%s", cfg.Name, m.Serial, m.SerialTail(200))
		}
	})
	t.Logf("%s: qemu pid %d, %s, %d MiB, ssh 127.0.0.1:%d, http 127.0.0.1:%d, serial %s",
		cfg.Name, m.cmd.Process.Pid, cfg.Firmware, memOr(cfg.MemMiB), m.SSHPort, m.HTTPPort, m.Serial)
	return m, nil
}

// Launch boots a machine that no test owns (one shared by several tests):
// cfg.Name and cfg.LogDir must be set, and the caller must Kill it.
func Launch(cfg Config) (*Machine, error) {
	if why := QEMU(); why != "" {
		return nil, errors.New(why)
	}
	if cfg.Name == "" || cfg.LogDir == "" {
		return nil, errors.New("launch: a machine without a test needs Config.Name and Config.LogDir")
	}
	if err := os.MkdirAll(cfg.LogDir, 0o755); err != nil {
		return nil, fmt.Errorf("log dir: %w", err)
	}
	serial, err := nextLogPath(cfg.LogDir, cfg.Name)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		m, err := startOnce(cfg, serial)
		if err == nil || attempt == 2 || !strings.Contains(err.Error(), "forward") {
			return m, err
		}
		// Lost a race for a free port: pick others.
	}
}

// logDirs keeps one log directory per test, so that every power-on of a
// test's machine lands beside the earlier ones (NAME-2.serial.log, ...).
var logDirs sync.Map

func testLogDir(t testing.TB) string {
	if d, ok := logDirs.Load(t.Name()); ok {
		return d.(string)
	}
	d := t.TempDir()
	logDirs.Store(t.Name(), d)
	t.Cleanup(func() { logDirs.Delete(t.Name()) })
	return d
}

func memOr(m int) int {
	if m == 0 {
		return 2048
	}
	return m
}

// nextLogPath picks NAME.serial.log, or NAME-2.serial.log etc. for later
// power-ons of the same test, so each QEMU process keeps its own log.
func nextLogPath(dir, name string) (string, error) {
	for i := 1; i < 100; i++ {
		p := filepath.Join(dir, name+".serial.log")
		if i > 1 {
			p = filepath.Join(dir, fmt.Sprintf("%s-%d.serial.log", name, i))
		}
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			return p, nil
		}
	}
	return "", fmt.Errorf("too many serial logs for %s in %s", name, dir)
}

func startOnce(cfg Config, serial string) (*Machine, error) {
	sshPort, err := freePort()
	if err != nil {
		return nil, err
	}
	httpPort, err := freePort()
	if err != nil {
		return nil, err
	}
	// A short path: unix socket names are limited to 107 bytes.
	runDir, err := os.MkdirTemp("", "lwvm-")
	if err != nil {
		return nil, fmt.Errorf("qemu run dir: %w", err)
	}
	accel, err := testAccel(cfg)
	if err != nil {
		os.RemoveAll(runDir)
		return nil, err
	}
	h := Host{Serial: serial, SSHPort: sshPort, HTTPPort: httpPort, RunDir: runDir, Accel: accel}
	if cfg.Firmware == SecureBoot {
		// The firmware writes its variables: a fresh copy per machine.
		if err := copyFile(OVMFSecureVars, OVMFVars(runDir)); err != nil {
			os.RemoveAll(runDir)
			return nil, fmt.Errorf("secure boot variables: %w (apt-get install ovmf)", err)
		}
	}
	args, err := cfg.Args(h)
	if err != nil {
		os.RemoveAll(runDir)
		return nil, err
	}
	cmd := exec.Command("qemu-system-x86_64", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr
	if err := cmd.Start(); err != nil {
		os.RemoveAll(runDir)
		return nil, fmt.Errorf("start qemu: %w", err)
	}
	m := &Machine{cfg: cfg, SSHPort: sshPort, HTTPPort: httpPort, Serial: serial, RunDir: runDir, cmd: cmd, exited: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		m.errMu.Lock()
		if err != nil {
			m.err = fmt.Errorf("qemu: %w: %s", err, strings.TrimSpace(stderr.String()))
		}
		m.errMu.Unlock()
		os.RemoveAll(runDir)
		close(m.exited)
	}()
	// QEMU fails within moments on a bad command line or a taken port (its
	// monitor socket may exist by then), and makes the socket early in its
	// set-up: wait for both the moment and the socket (long on a loaded host).
	for start, deadline := time.Now(), time.Now().Add(time.Minute); ; {
		select {
		case <-m.exited:
			return nil, fmt.Errorf("qemu exited at start: %w (args %q)", m.exitErr(), args)
		case <-time.After(100 * time.Millisecond):
		}
		if _, err := os.Stat(MonitorSocket(runDir)); err == nil && time.Since(start) >= 500*time.Millisecond {
			return m, nil
		}
		if time.Now().After(deadline) {
			m.Kill()
			return nil, fmt.Errorf("qemu made no monitor socket within a minute (args %q)", args)
		}
	}
}

func (m *Machine) exitErr() error {
	m.errMu.Lock()
	defer m.errMu.Unlock()
	if m.err == nil {
		return errors.New("exit status 0")
	}
	return m.err
}

// Exited reports whether the QEMU process has ended.
func (m *Machine) Exited() bool {
	select {
	case <-m.exited:
		return true
	default:
		return false
	}
}

// WaitExit waits for QEMU to end by itself (the guest powered off).
func (m *Machine) WaitExit(ctx context.Context) error {
	select {
	case <-m.exited:
		m.errMu.Lock()
		defer m.errMu.Unlock()
		return m.err
	case <-ctx.Done():
		return fmt.Errorf("%s: guest did not power off: %w", m.cfg.Name, ctx.Err())
	}
}

// Kill ends QEMU at once (a pulled power cord) and waits for it.
func (m *Machine) Kill() {
	if m.ssh != nil {
		m.ssh.Close()
		m.ssh = nil
	}
	if m.Exited() {
		return
	}
	_ = m.cmd.Process.Kill()
	<-m.exited
}

// SerialLog returns the whole serial console log of this QEMU process.
func (m *Machine) SerialLog() string {
	b, _ := os.ReadFile(m.Serial)
	return string(b)
}

// BootLog returns the console output of the current boot only.
func (m *Machine) BootLog() string {
	s := m.SerialLog()
	if int(m.bootSerialOffset) <= len(s) {
		return s[m.bootSerialOffset:]
	}
	return s
}

// SerialTail returns the last n lines of the serial log, after the kernel's
// report of the first panic if that lies before them: with panic=10 the
// guest reboots, and a wait that notices late prints only the new boot.
func (m *Machine) SerialTail(n int) string {
	return serialTail(m.SerialLog(), n)
}

func serialTail(log string, n int) string {
	lines := strings.Split(log, "\n")
	first := max(len(lines)-n, 0)
	tail := strings.Join(lines[first:], "\n")
	for i, l := range lines[:first] {
		if !strings.Contains(l, kernelPanic) {
			continue
		}
		// The report starts at the first fault among the 100 lines before
		// the panic; with none there, those lines are all we show.
		from := max(i-100, 0)
		for j := from; j < i; j++ {
			if oopsStart(lines[j]) {
				from = j
				break
			}
		}
		report := strings.Join(lines[from:min(i+3, first)], "\n")
		return "kernel panic report (earlier in the log):\n" + report + "\n...\nlast lines:\n" + tail
	}
	return tail
}

// oopsStart reports a line that begins a kernel report of a fault.
func oopsStart(l string) bool {
	for _, s := range []string{"------------[ cut here ]", "BUG:", "Oops:", "general protection fault", "Unable to handle"} {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

// WaitSerial waits until the current boot's console shows substr.
func (m *Machine) WaitSerial(ctx context.Context, substr string) error {
	for {
		if strings.Contains(m.BootLog(), substr) {
			return nil
		}
		if err := m.guestDead(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: console never showed %q: %w", m.cfg.Name, substr, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// guestDead reports a guest that can no longer come up: QEMU gone, a
// kernel panic or stage 1's halt on the console. Waits use it to fail fast.
func (m *Machine) guestDead() error {
	if m.Exited() {
		return fmt.Errorf("%s: qemu exited: %w", m.cfg.Name, m.exitErr())
	}
	log := m.BootLog()
	for _, dead := range []string{kernelPanic, stage1Halted} {
		if i := strings.Index(log, dead); i >= 0 {
			// Show the line that says why, which stage 1 prints first.
			if j := strings.LastIndex(log[:i], "lightwhale stage 1:"); dead == stage1Halted && j >= 0 {
				i = j
			}
			return fmt.Errorf("%s: %s", m.cfg.Name, firstLine(log[i:]))
		}
	}
	return nil
}

// kernelPanic starts the kernel's last line before it halts or reboots.
const kernelPanic = "Kernel panic"

// stage1Halted is how stage 1 (applets/stage1/stage1.go) ends a boot that
// cannot go on, e.g. too little RAM for the root squashfs.
const stage1Halted = "The system cannot boot; it is halted."

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return strings.TrimSpace(s[:i])
	}
	return strings.TrimSpace(s)
}

// copyFile copies src to a new file dst (mode 0600).
func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o600)
}
