package wifi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	mdwifi "github.com/mdlayher/wifi"
	"github.com/vishvananda/netlink"

	"lightwhale/internal/atomicfile"
)

// Radio is the part of nl80211 setup-wifi uses; *mdwifi.Client has it.
type Radio interface {
	Interfaces() ([]*mdwifi.Interface, error)
	Scan(ctx context.Context, ifi *mdwifi.Interface) error
	AccessPoints(ifi *mdwifi.Interface) ([]*mdwifi.BSS, error)
	BSS(ifi *mdwifi.Interface) (*mdwifi.BSS, error)
	Close() error
}

// Links is the part of rtnetlink setup-wifi uses.
type Links interface {
	Up(ifname string) error
	// Ready reports whether the link is operationally up. wpa_supplicant keeps
	// a wireless link "dormant" until the WPA handshake has completed, so
	// this is true only once the key is accepted.
	Ready(ifname string) (bool, error)
	Addrs(ifname string) ([]string, error)
}

// System is everything setup-wifi touches, so that tests can replace it.
type System struct {
	ConfigDir string // /etc/wpa_supplicant
	RunDir    string // where the pid files of wpa_supplicant and udhcpc go
	ProcDir   string // /proc, to check that a pid file names the daemon
	OpenRadio func() (Radio, error)
	Links     Links
	// Run runs a program and returns its combined output. Arguments are
	// passed as a vector, never through a shell.
	Run func(ctx context.Context, argv ...string) ([]byte, error)
	// DHCP is the DHCP client's command before its arguments.
	DHCP []string
	Poll time.Duration // how often to look at the link while waiting
}

// Host is the running system.
var Host = System{
	ConfigDir: "/etc/wpa_supplicant",
	RunDir:    "/run",
	ProcDir:   "/proc",
	OpenRadio: func() (Radio, error) { return mdwifi.New() },
	Links:     netlinkLinks{},
	Run:       runCommand,
	DHCP:      dhcpCommand(),
	Poll:      250 * time.Millisecond,
}

func runCommand(ctx context.Context, argv ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	// A daemon that forgets to close its inherited output must not hang us.
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// dhcpCommand is busybox's udhcpc, by its own name when linked, else through busybox.
func dhcpCommand() []string {
	if _, err := exec.LookPath("udhcpc"); err == nil {
		return []string{"udhcpc"}
	}
	return []string{"busybox", "udhcpc"}
}

// ConfigPath is the configuration file for an interface, in the per-interface
// naming Debian's wpa_supplicant uses.
func (s System) ConfigPath(ifname string) string {
	return filepath.Join(s.ConfigDir, "wpa_supplicant-"+ifname+".conf")
}

func (s System) pidFile(daemon, ifname string) string {
	return filepath.Join(s.RunDir, daemon+"-"+ifname+".pid")
}

// openRadio opens nl80211, explaining the usual reason it is missing.
func (s System) openRadio() (Radio, error) {
	r, err := s.OpenRadio()
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no wireless support in the kernel (nl80211 missing: is the cfg80211 module loaded?): %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("open nl80211: %w", err)
	}
	return r, nil
}

// pickInterface returns the wireless interface named want, or the only one.
func pickInterface(r Radio, want string) (*mdwifi.Interface, error) {
	all, err := r.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list wireless interfaces: %w", err)
	}
	sortByName(all)
	var names []string
	var ifs []*mdwifi.Interface
	for _, ifi := range all {
		// Monitor and AP interfaces cannot join a network.
		if ifi.Name != "" && ifi.Type == mdwifi.InterfaceTypeStation {
			ifs = append(ifs, ifi)
			names = append(names, ifi.Name)
		}
	}
	switch {
	case want != "":
		for _, ifi := range ifs {
			if ifi.Name == want {
				return ifi, nil
			}
		}
		return nil, fmt.Errorf("interface %q is not a wireless station interface (found: %s)", want, listOrNone(names))
	case len(ifs) == 0:
		return nil, errors.New("no wireless interface found (is the driver or firmware for the card missing?)")
	case len(ifs) > 1:
		return nil, fmt.Errorf("several wireless interfaces (%s): choose one with --interface", strings.Join(names, ", "))
	}
	return ifs[0], nil
}

func sortByName(ifs []*mdwifi.Interface) {
	sort.Slice(ifs, func(i, j int) bool { return ifs[i].Name < ifs[j].Name })
}

func listOrNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// Connect writes the configuration for n and joins the network on the chosen
// interface, then waits for a DHCP address.
func (s System) Connect(ctx context.Context, out io.Writer, n Network, ifname string, timeout time.Duration) error {
	r, err := s.openRadio()
	if err != nil {
		return err
	}
	ifi, err := pickInterface(r, ifname)
	r.Close()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.ConfigDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", s.ConfigDir, err)
	}
	// 0600: the derived key lets anyone join the network.
	if err := atomicfile.WriteFile(s.ConfigPath(ifi.Name), n.Config(), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(out, "%s: wrote %s\n", ifi.Name, s.ConfigPath(ifi.Name))
	return s.join(ctx, out, ifi.Name, displaySSID(n.SSID), timeout, false)
}

// Boot rejoins, at boot, the network of every configuration file whose
// interface exists. It waits for the connection up to timeout and for an
// address a few seconds: then wpa_supplicant and udhcpc keep trying in the
// background, so a network out of range does not hold up the boot.
func (s System) Boot(ctx context.Context, out io.Writer, timeout time.Duration) error {
	confs, _ := filepath.Glob(s.ConfigPath("*"))
	if len(confs) == 0 {
		fmt.Fprintln(out, "no wireless network configured (setup-wifi --ssid ...)")
		return nil
	}
	var errs []error
	for _, c := range confs {
		ifname := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(c), "wpa_supplicant-"), ".conf")
		if _, err := s.Links.Ready(ifname); err != nil {
			fmt.Fprintf(out, "%s: not present, skipping %s\n", ifname, c)
			continue
		}
		if err := s.join(ctx, out, ifname, "the configured network", timeout, true); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// join (re)starts wpa_supplicant on ifname with its configuration file,
// waits for the WPA handshake, and runs DHCP.
func (s System) join(ctx context.Context, out io.Writer, ifname, what string, timeout time.Duration, boot bool) error {
	r, err := s.openRadio()
	if err != nil {
		return err
	}
	defer r.Close()
	ifi, err := pickInterface(r, ifname)
	if err != nil {
		return err
	}
	if err := s.Links.Up(ifname); err != nil {
		return fmt.Errorf("bring %s up: %w", ifname, err)
	}
	// A running wpa_supplicant holds the old configuration: restart it.
	for _, d := range []string{"udhcpc", "wpa_supplicant"} {
		if err := s.stop(d, ifname); err != nil {
			return err
		}
	}
	wpaPid := s.pidFile("wpa_supplicant", ifname)
	if _, err := s.Run(ctx, "wpa_supplicant", "-B", "-i", ifname, "-c", s.ConfigPath(ifname), "-P", wpaPid); err != nil {
		return fmt.Errorf("start wpa_supplicant on %s: %w", ifname, err)
	}
	if err := s.waitReady(ctx, out, r, ifi, what, timeout); err != nil {
		if boot {
			// wpa_supplicant keeps trying; udhcpc will get an address when it succeeds.
			fmt.Fprintf(out, "%s: %v; still trying in the background\n", ifname, err)
		} else {
			return err
		}
	}
	dhcp := append(append([]string(nil), s.DHCP...), "-i", ifname, "-p", s.pidFile("udhcpc", ifname))
	if boot {
		dhcp = append(dhcp, "-t", "3", "-T", "2", "-b") // soon go to the background if there is no lease
	} else {
		dhcp = append(dhcp, "-t", "5", "-T", "3", "-n") // fail if there is no lease
	}
	fmt.Fprintf(out, "%s: requesting an address with DHCP\n", ifname)
	if _, err := s.Run(ctx, dhcp...); err != nil {
		return fmt.Errorf("dhcp on %s: %w", ifname, err)
	}
	addrs, err := s.Links.Addrs(ifname)
	if err != nil {
		return fmt.Errorf("read addresses of %s: %w", ifname, err)
	}
	switch {
	case len(addrs) == 0 && boot:
		fmt.Fprintf(out, "%s: no address yet; udhcpc keeps trying in the background\n", ifname)
		return nil
	case len(addrs) == 0:
		// udhcpc leased one but did not configure it: its hook script is missing.
		return fmt.Errorf("%s: udhcpc got a lease but no address was configured (is its default.script installed?)", ifname)
	}
	fmt.Fprintf(out, "%s: connected, address %s\n", ifname, strings.Join(addrs, ", "))
	return nil
}

// waitReady waits for the link to come up, printing a dot a second.
func (s System) waitReady(ctx context.Context, out io.Writer, r Radio, ifi *mdwifi.Interface, what string, timeout time.Duration) error {
	ifname := ifi.Name
	fmt.Fprintf(out, "%s: connecting to %s ", ifname, what)
	start := time.Now()
	lastDot := start
	// Associated but never ready means the access point heard us but the
	// WPA handshake failed: almost always a wrong passphrase.
	associated := false
	for {
		ready, err := s.Links.Ready(ifname)
		if err != nil {
			fmt.Fprintln(out)
			return fmt.Errorf("read state of %s: %w", ifname, err)
		}
		if ready {
			fmt.Fprintf(out, " connected (%.1fs)\n", time.Since(start).Seconds())
			return nil
		}
		// wpa_supplicant -B writes its pid file after its parent has returned:
		// give it a moment before taking a missing one as a dead daemon.
		if _, alive := s.running("wpa_supplicant", ifname); !alive && time.Since(start) > 2*time.Second {
			fmt.Fprintln(out)
			return fmt.Errorf("wpa_supplicant on %s exited (is the configuration %s valid?)", ifname, s.ConfigPath(ifname))
		}
		if bss, err := r.BSS(ifi); err == nil && bss != nil && bss.Status != mdwifi.BSSStatusNotAssociated {
			associated = true
		}
		if time.Since(start) > timeout && associated {
			fmt.Fprintln(out)
			return fmt.Errorf("the access point of %s accepted the connection but not the key after %v: wrong passphrase?", what, timeout)
		}
		if time.Since(start) > timeout {
			fmt.Fprintln(out)
			return fmt.Errorf("not connected to %s after %v: check the passphrase, the country and the signal (setup-wifi --scan)", what, timeout)
		}
		if time.Since(lastDot) >= time.Second {
			fmt.Fprint(out, ".")
			lastDot = time.Now()
		}
		select {
		case <-ctx.Done():
			fmt.Fprintln(out)
			return ctx.Err()
		case <-time.After(s.Poll):
		}
	}
}

// running returns the pid of daemon for ifname from its pid file, and
// whether that process is alive and really is the daemon: a stale pid file
// may name an unrelated process that reused the number.
func (s System) running(daemon, ifname string) (int, bool) {
	b, err := os.ReadFile(s.pidFile(daemon, ifname))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	b, err = os.ReadFile(filepath.Join(s.ProcDir, strconv.Itoa(pid), "comm"))
	if err != nil {
		return pid, false
	}
	// Both names are shorter than comm's 15 bytes; udhcpc run as
	// "busybox udhcpc" shows as busybox.
	comm := strings.TrimSpace(string(b))
	return pid, comm == daemon || comm == "busybox"
}

// stop ends daemon for ifname, if running, and waits up to 5 s for it to go.
func (s System) stop(daemon, ifname string) error {
	pid, alive := s.running(daemon, ifname)
	if !alive {
		os.Remove(s.pidFile(daemon, ifname))
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop %s (pid %d) on %s: %w", daemon, pid, ifname, err)
	}
	for i := 0; i < 50; i++ {
		if _, err := os.Stat(filepath.Join(s.ProcDir, strconv.Itoa(pid))); err != nil {
			os.Remove(s.pidFile(daemon, ifname))
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("stop %s (pid %d) on %s: still running after 5s", daemon, pid, ifname)
}

// Status prints, for each wireless interface, its connection and address.
func (s System) Status(out io.Writer) error {
	r, err := s.openRadio()
	if err != nil {
		return err
	}
	defer r.Close()
	all, err := r.Interfaces()
	if err != nil {
		return fmt.Errorf("list wireless interfaces: %w", err)
	}
	sortByName(all)
	found := false
	for _, ifi := range all {
		if ifi.Name == "" {
			continue
		}
		found = true
		if ifi.Type != mdwifi.InterfaceTypeStation {
			fmt.Fprintf(out, "%s: %s mode, not used by setup-wifi\n", ifi.Name, ifi.Type)
			continue
		}
		state := "not connected"
		if bss, err := r.BSS(ifi); err == nil && bss != nil {
			state = fmt.Sprintf("%s to %s (%s, %d MHz, %d dBm)", bss.Status, displaySSID([]byte(bss.SSID)), bss.BSSID, bss.Frequency, bss.Signal/100)
			if ready, _ := s.Links.Ready(ifi.Name); ready {
				state = "connected" + strings.TrimPrefix(state, bss.Status.String())
			}
		}
		fmt.Fprintf(out, "%s: %s\n", ifi.Name, state)
		if addrs, _ := s.Links.Addrs(ifi.Name); len(addrs) > 0 {
			fmt.Fprintf(out, "  address: %s\n", strings.Join(addrs, ", "))
		}
		if _, err := os.Stat(s.ConfigPath(ifi.Name)); err == nil {
			fmt.Fprintf(out, "  config: %s (rejoined at boot)\n", s.ConfigPath(ifi.Name))
		} else {
			fmt.Fprintln(out, "  config: none")
		}
		if pid, alive := s.running("wpa_supplicant", ifi.Name); alive {
			fmt.Fprintf(out, "  wpa_supplicant: running, pid %d\n", pid)
		} else {
			fmt.Fprintln(out, "  wpa_supplicant: not running")
		}
	}
	if !found {
		fmt.Fprintln(out, "no wireless interface found")
	}
	return nil
}

// Scan lists the networks in range, strongest first.
func (s System) Scan(ctx context.Context, out io.Writer, ifname string) error {
	r, err := s.openRadio()
	if err != nil {
		return err
	}
	defer r.Close()
	ifi, err := pickInterface(r, ifname)
	if err != nil {
		return err
	}
	if err := s.Links.Up(ifi.Name); err != nil {
		return fmt.Errorf("bring %s up: %w", ifi.Name, err)
	}
	// One pass can miss an access point (a beacon not heard, a probe
	// response lost), and EBUSY means another scan, wpa_supplicant's, is
	// running: try a few times, a second apart (back to back, all three
	// can fall before a slow access point answers), before reporting an
	// empty sky.
	var aps []*mdwifi.BSS
	for attempt := 1; attempt <= 3 && len(aps) == 0; attempt++ {
		if attempt > 1 {
			time.Sleep(time.Second)
		}
		sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := r.Scan(sctx, ifi)
		cancel()
		if err != nil && !errors.Is(err, syscall.EBUSY) {
			return fmt.Errorf("scan on %s: %w", ifi.Name, err)
		}
		if aps, err = r.AccessPoints(ifi); err != nil {
			return fmt.Errorf("scan results of %s: %w", ifi.Name, err)
		}
	}
	printScan(out, aps)
	return nil
}

// printScan prints one line per SSID, with its strongest access point.
func printScan(out io.Writer, aps []*mdwifi.BSS) {
	best := map[string]*mdwifi.BSS{}
	for _, ap := range aps {
		if b, ok := best[ap.SSID]; !ok || ap.Signal > b.Signal {
			best[ap.SSID] = ap
		}
	}
	list := make([]*mdwifi.BSS, 0, len(best))
	for _, ap := range best {
		list = append(list, ap)
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].Signal != list[j].Signal {
			return list[i].Signal > list[j].Signal
		}
		return list[i].SSID < list[j].SSID
	})
	fmt.Fprintf(out, "%-7s %-5s %-10s %s\n", "SIGNAL", "MHZ", "SECURITY", "SSID")
	for _, ap := range list {
		ssid := displaySSID([]byte(ap.SSID))
		if ap.SSID == "" {
			ssid = "(hidden)"
		}
		fmt.Fprintf(out, "%-7s %-5d %-10s %s\n", fmt.Sprintf("%d dBm", ap.Signal/100), ap.Frequency, security(ap.RSN), ssid)
	}
}

// security names what an access point's RSN element offers. Without one the
// network is open, or uses WEP or WPA1, which setup-wifi does not support.
func security(rsn mdwifi.RSNInfo) string {
	if !rsn.IsInitialized() {
		return "open/old"
	}
	var psk, sae, eap bool
	for _, a := range rsn.AKMs {
		switch a {
		case mdwifi.RSNAkmPSK, mdwifi.RSNAkmPSKSHA256, mdwifi.RSNAkmFTPSK:
			psk = true
		case mdwifi.RSNAkmSAE, mdwifi.RSNAkmFTSAE:
			sae = true
		case mdwifi.RSNAkm8021X, mdwifi.RSNAkm8021XSHA256, mdwifi.RSNAkmFT8021X:
			eap = true
		}
	}
	switch {
	case psk && sae:
		return "WPA2/WPA3"
	case psk:
		return "WPA2"
	case sae:
		return "WPA3-only"
	case eap:
		return "WPA2-EAP"
	}
	return "RSN"
}

// netlinkLinks is Links over rtnetlink.
type netlinkLinks struct{}

func (netlinkLinks) Up(ifname string) error {
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return err
	}
	return netlink.LinkSetUp(l)
}

func (netlinkLinks) Ready(ifname string) (bool, error) {
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return false, err
	}
	return l.Attrs().OperState == netlink.OperUp, nil
}

func (netlinkLinks) Addrs(ifname string) ([]string, error) {
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return nil, err
	}
	addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return nil, err
	}
	var s []string
	for _, a := range addrs {
		s = append(s, a.IPNet.String())
	}
	return s, nil
}
