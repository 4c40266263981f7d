// Package hostname is setup-hostname: it validates a host name, sets it in
// the kernel and records it in /etc/hostname and /etc/hosts, which persist
// through the /etc overlay. At boot, --boot applies the recorded name or a
// default derived from the machine ID.
package hostname

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"lightwhale/internal/atomicfile"
	"lightwhale/internal/cli"
	"lightwhale/internal/dnsname"
)

const name = "setup-hostname"

const usage = `[NAME]
       setup-hostname --boot`

const about = `With NAME: sets the kernel host name and writes /etc/hostname and the
127.0.1.1 line of /etc/hosts (other lines are kept). It takes effect at once;
shells started before keep showing the old name in their prompt, so log in
again or run: exec "$SHELL" -l

NAME follows RFC 1123: dot-separated labels of 1-63 letters, digits and
hyphens, not starting or ending with a hyphen; at most 64 characters in all
(the kernel's limit). Host names are case-insensitive, so upper case is
stored in lower case.

Without NAME: prints the current host name.

--boot (run by the init script): applies /etc/hostname, or when it is
missing or invalid the default lightwhale-<first 8 hex digits of
/etc/machine-id>, which is not written to /etc/hostname.

Examples:
  sudo setup-hostname lightwhale
  setup-hostname`

// System is where setup-hostname reads and writes: the real files by default,
// temporary ones in tests.
type System struct {
	HostnameFile   string // /etc/hostname
	HostsFile      string // /etc/hosts
	MachineIDFile  string // /etc/machine-id
	KernelHostname string // /proc/sys/kernel/hostname, read for the current name
	Sethostname    func(name []byte) error
}

// Host is the running system.
var Host = System{
	HostnameFile:   "/etc/hostname",
	HostsFile:      "/etc/hosts",
	MachineIDFile:  "/etc/machine-id",
	KernelHostname: "/proc/sys/kernel/hostname",
	Sethostname:    unix.Sethostname,
}

// Main is the applet.
func Main(args []string, stdio cli.IO) int { return Host.Main(args, stdio) }

// Main runs the applet against s.
func (s System) Main(args []string, stdio cli.IO) int {
	fset := cli.NewFlagSet(name, usage, about, stdio.Err)
	boot := fset.Bool("boot", false, "apply /etc/hostname or the machine-id default (for the init script)")
	// A lone "-x" is a bad name more likely than a bad flag: report it in one
	// line like every other bad name, not as an unknown flag plus usage.
	if len(args) == 1 && strings.HasPrefix(args[0], "-") {
		if f := strings.TrimLeft(args[0], "-"); fset.Lookup(f) == nil && f != "h" && f != "help" && args[0] != "--" {
			_, err := Normalize(args[0])
			return cli.Fail(stdio, name, err)
		}
	}
	if code, done := cli.Parse(fset, args); done {
		return code
	}
	switch {
	case *boot && fset.NArg() == 0:
		n, warn := s.BootName()
		if warn != nil {
			fmt.Fprintf(stdio.Err, "%s: %v; using %s\n", name, warn, n)
		}
		if err := s.Apply(n, false); err != nil {
			return cli.Fail(stdio, name, err)
		}
		return 0
	case *boot:
		fmt.Fprintf(stdio.Err, "%s: --boot takes no name\n", name)
		return 2
	case fset.NArg() == 0:
		cur, err := s.Current()
		if err != nil {
			return cli.Fail(stdio, name, err)
		}
		fmt.Fprintln(stdio.Out, cur)
		return 0
	case fset.NArg() > 1:
		fmt.Fprintf(stdio.Err, "%s: expected one name, got %d arguments (a host name has no spaces)\n", name, fset.NArg())
		return 2
	}
	n, err := Normalize(fset.Arg(0))
	if err != nil {
		return cli.Fail(stdio, name, err)
	}
	if err := s.Apply(n, true); err != nil {
		return cli.Fail(stdio, name, err)
	}
	fmt.Fprintf(stdio.Out, "host name is now %s (new logins show it; or run: exec \"$SHELL\" -l)\n", n)
	return 0
}

// Normalize validates name as an RFC 1123 host name and returns it in lower
// case (see internal/dnsname).
func Normalize(name string) (string, error) { return dnsname.Normalize(name) }

// Current returns the kernel's host name.
func (s System) Current() (string, error) {
	b, err := os.ReadFile(s.KernelHostname)
	if err != nil {
		return "", fmt.Errorf("read current host name: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// BootName is the name to apply at boot: /etc/hostname when it holds a
// valid name, else the machine-id default. warn explains a fallback that
// hides a problem (an invalid /etc/hostname), nil when all is as expected.
func (s System) BootName() (name string, warn error) {
	b, err := os.ReadFile(s.HostnameFile)
	if err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		if line = strings.TrimSpace(line); line != "" {
			n, err := Normalize(line)
			if err == nil {
				return n, nil
			}
			warn = fmt.Errorf("%s: %w", s.HostnameFile, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		warn = err
	}
	return s.defaultName(), warn
}

// defaultName is lightwhale-<first 8 hex of the machine ID>, so that machines
// booted from the same ISO do not clash on the network.
func (s System) defaultName() string {
	b, err := os.ReadFile(s.MachineIDFile)
	id := strings.TrimSpace(string(b))
	if err != nil || len(id) < 8 {
		return "lightwhale"
	}
	for _, c := range id[:8] {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return "lightwhale"
		}
	}
	return "lightwhale-" + id[:8]
}

// Apply sets the kernel host name to the valid name n, points 127.0.1.1 in
// /etc/hosts at it, and, when record is set, writes /etc/hostname. The
// kernel goes first: without the privilege to set it, nothing is written.
// Files already right are not rewritten.
func (s System) Apply(n string, record bool) error {
	if err := s.Sethostname([]byte(n)); err != nil {
		return fmt.Errorf("set kernel host name to %q: %w", n, err)
	}
	hosts, mode, err := readOr(s.HostsFile, []byte("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"))
	if err != nil {
		return err
	}
	if newHosts := SetHostsLine(hosts, n); !bytes.Equal(newHosts, hosts) {
		if err := atomicfile.WriteFile(s.HostsFile, newHosts, mode); err != nil {
			return err
		}
	}
	if !record {
		return nil
	}
	old, mode, err := readOr(s.HostnameFile, nil)
	if err != nil {
		return err
	}
	if want := []byte(n + "\n"); !bytes.Equal(old, want) {
		return atomicfile.WriteFile(s.HostnameFile, want, mode)
	}
	return nil
}

// readOr reads path and its mode; a missing file reads as def with 0644.
func readOr(path string, def []byte) ([]byte, os.FileMode, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return def, 0o644, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read %s: %w", path, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, 0, fmt.Errorf("stat %s: %w", path, err)
	}
	return b, fi.Mode().Perm(), nil
}

// SetHostsLine returns hosts with its 127.0.1.1 entry naming n (and, for a
// dotted name, its first label as an alias), the Debian convention that makes
// the host's own name resolve without DNS. Every other line is kept byte for
// byte; extra 127.0.1.1 lines are dropped so the name is unambiguous; a
// missing entry is appended.
func SetHostsLine(hosts []byte, n string) []byte {
	entry := "127.0.1.1\t" + n
	if short, _, dotted := strings.Cut(n, "."); dotted {
		entry += " " + short
	}
	var out []byte
	done := false
	for _, line := range bytes.SplitAfter(hosts, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if f := bytes.Fields(line); len(f) > 0 && string(f[0]) == "127.0.1.1" {
			if !done {
				out = append(out, entry+"\n"...)
				done = true
			}
			continue
		}
		out = append(out, line...)
	}
	if !done {
		if len(out) > 0 && out[len(out)-1] != '\n' {
			out = append(out, '\n')
		}
		out = append(out, entry+"\n"...)
	}
	return out
}
