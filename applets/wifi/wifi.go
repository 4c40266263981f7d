// Package wifi is setup-wifi: it joins a WPA2-Personal (or open) wireless
// network through wpa_supplicant, gets an address with DHCP, and keeps the
// configuration in /etc so that the network is rejoined at every boot.
package wifi

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"lightwhale/internal/cli"
)

const name = "setup-wifi"

const usage = `--ssid SSID [--password-stdin | --password PASS | --open] [--country CC] [--interface IF] [--dry-run]
       setup-wifi --scan | --status | --boot`

const about = `Joins a wireless network: validates the input, writes the wpa_supplicant
configuration /etc/wpa_supplicant/wpa_supplicant-IF.conf (mode 0600), brings
the interface up, (re)starts wpa_supplicant, waits for the connection, runs
DHCP and prints the address. The configuration persists through /etc (with
persistence enabled) and is rejoined at boot.

The passphrase (8-63 printable ASCII characters, or 64 hex digits as the raw
key) is stored nowhere: the file holds the WPA key derived from it, and
setup-wifi passes it to no other program. WPA2-Personal and open networks are
supported; WPA3-only (SAE) networks are not, since SAE needs the passphrase
itself. A --password on the command line can be seen by other local users
while the command runs and stays in your shell history: prefer the prompt
(when standard input is a terminal) or --password-stdin.

Examples:
  sudo setup-wifi --ssid "my wifi name" --country DK        (asks for the passphrase)
  sudo setup-wifi --ssid "my wifi name" --password "my wifi secret" --country DK
  printf '%s\n' "$PASS" | sudo setup-wifi --ssid cafe --password-stdin
  sudo setup-wifi --ssid "guest net" --open
  setup-wifi --ssid home --password-stdin --dry-run < pass.txt  (prints the file, changes nothing)
  sudo setup-wifi --scan
  setup-wifi --status`

// Main is the applet.
func Main(args []string, stdio cli.IO) int { return Host.Main(args, stdio) }

// Main runs the applet against s.
func (s System) Main(args []string, stdio cli.IO) int {
	fset := cli.NewFlagSet(name, usage, about, stdio.Err)
	ssid := fset.String("ssid", "", "network name (1-32 bytes)")
	password := fset.String("password", "", "passphrase (visible in the process list: prefer the prompt or --password-stdin)")
	passwordStdin := fset.Bool("password-stdin", false, "read the passphrase from the first line of standard input")
	open := fset.Bool("open", false, "the network has no password")
	country := fset.String("country", "", "regulatory domain: ISO 3166 alpha-2 code (DK, US...) or 00")
	ifname := fset.String("interface", "", "wireless interface (default: the only one)")
	dryRun := fset.Bool("dry-run", false, "print the configuration that would be written, and change nothing")
	scan := fset.Bool("scan", false, "list nearby networks")
	status := fset.Bool("status", false, "show the connection of each wireless interface")
	boot := fset.Bool("boot", false, "rejoin the configured networks, waiting briefly (for the init script)")
	timeout := fset.Duration("timeout", 30*time.Second, "how long to wait for the connection (--boot: 15s)")
	if code, done := cli.Parse(fset, args); done {
		return code
	}
	if fset.NArg() > 0 {
		fmt.Fprintf(stdio.Err, "%s: unexpected argument %q (quote an SSID with spaces: --ssid \"my wifi\")\n", name, fset.Arg(0))
		return 2
	}
	given := map[string]bool{}
	fset.Visit(func(f *flag.Flag) { given[f.Name] = true })

	ctx := context.Background()
	var err error
	switch {
	case *scan:
		err = s.Scan(ctx, stdio.Out, *ifname)
	case *status:
		err = s.Status(stdio.Out)
	case *boot:
		// At boot, a network out of range must not hold up the other services.
		if !given["timeout"] {
			*timeout = 15 * time.Second
		}
		err = s.Boot(ctx, stdio.Out, *timeout)
	case !given["ssid"]:
		fmt.Fprintf(stdio.Err, "%s: --ssid is required (or --scan, --status, --boot; see --help)\n", name)
		return 2
	default:
		var n Network
		n, err = s.network(stdio, *ssid, *password, given["password"], *passwordStdin, *open, *country, given["country"])
		if err != nil {
			break
		}
		if *dryRun {
			_, err = stdio.Out.Write(n.Config())
			break
		}
		err = s.Connect(ctx, stdio.Out, n, *ifname, *timeout)
	}
	if err != nil {
		return cli.Fail(stdio, name, err)
	}
	return 0
}

// network gathers the passphrase from wherever it was given and validates
// everything, before anything is touched.
func (s System) network(stdio cli.IO, ssid, password string, passwordGiven, fromStdin, open bool, country string, countryGiven bool) (Network, error) {
	if countryGiven && country == "" {
		return Network{}, errors.New(`invalid country "": want an ISO 3166 alpha-2 code such as DK, or 00`)
	}
	sources := 0
	for _, b := range []bool{passwordGiven, fromStdin, open} {
		if b {
			sources++
		}
	}
	if sources > 1 {
		return Network{}, errors.New("give only one of --password, --password-stdin and --open")
	}
	var err error
	switch {
	case fromStdin:
		password, err = readLine(stdio.In)
	case sources == 0:
		password, err = prompt(stdio, ssid)
	}
	if err != nil {
		return Network{}, err
	}
	if passwordGiven && password == "" {
		return Network{}, errors.New("invalid passphrase: empty (for a network without a password use --open)")
	}
	return NewNetwork(ssid, password, country, open)
}

// readLine reads the passphrase up to the first newline. Only the newline
// goes: anything else, a \r included, is part of it (and then refused).
func readLine(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return "", fmt.Errorf("read passphrase from standard input: %w", err)
	}
	return strings.TrimSuffix(line, "\n"), nil
}

// prompt asks for the passphrase on the terminal with echo off. It refuses
// when standard input is not a terminal, rather than block on a pipe.
func prompt(stdio cli.IO, ssid string) (string, error) {
	f, ok := stdio.In.(*os.File)
	if !ok {
		return "", errNoPassphrase
	}
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return "", errNoPassphrase
	}
	noEcho := *old
	noEcho.Lflag &^= unix.ECHO
	noEcho.Lflag |= unix.ICANON | unix.ECHONL
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &noEcho); err != nil {
		return "", fmt.Errorf("turn off echo on the terminal: %w", err)
	}
	defer unix.IoctlSetTermios(fd, unix.TCSETS, old)
	fmt.Fprintf(stdio.Err, "passphrase for %s: ", displaySSID([]byte(ssid)))
	return readLine(f)
}

var errNoPassphrase = errors.New("no passphrase: give --password-stdin, --password or --open (standard input is not a terminal to ask on)")
