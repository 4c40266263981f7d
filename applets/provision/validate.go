package provision

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"regexp"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"

	"lightwhale/internal/dnsname"
)

// The checks every source shares. Each returns an error that quotes the bad
// value (%q, so a newline or control character shows) without the key: the
// caller prefixes the key.

// Compiled on first use, as cryptHashRe: a bounded repetition compiles to
// that many copies, which every lightwhale run at boot would pay for.
var instanceIDRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`) })

func checkInstanceID(id string) error {
	if !instanceIDRe().MatchString(id) {
		return fmt.Errorf("%q: 1-128 letters, digits, '.', '_', ':' or '-'", id)
	}
	return nil
}

func checkHostname(name string) (string, error) { return dnsname.Normalize(name) }

// checkSSHKey accepts one authorized_keys line (options allowed, as sshd
// reads them) and returns it trimmed.
func checkSSHKey(line string) (string, error) {
	line = strings.TrimSpace(line)
	if strings.ContainsAny(line, "\n\r\x00") {
		return "", fmt.Errorf("%.40q...: one key per line", line)
	}
	if _, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(line)); err != nil || len(rest) > 0 {
		return "", fmt.Errorf("%.40q...: not an ssh public key", line)
	}
	return line, nil
}

// cryptHashRe is a crypt(3) hash as /etc/shadow holds it: $id$[params$]salt$hash
// for yescrypt ($y$), SHA-512 ($6$), SHA-256 ($5$), bcrypt ($2b$...).
var cryptHashRe = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^\$(y|gy|7|6|5|2a|2b|2y)\$[./A-Za-z0-9$=,]{8,512}$`)
})

// checkHash refuses anything but a password hash: a plain-text password in a
// seed would be readable by anyone who can read the seed, and would sit in
// logs of the tools that handled it.
func checkHash(h string) error {
	if !cryptHashRe().MatchString(h) {
		if strings.HasPrefix(h, "$") {
			return fmt.Errorf("%.12q...: not a supported crypt hash ($y$, $6$, $5$ or $2b$)", h)
		}
		return errors.New("plain-text passwords are refused; give a hash (mkpasswd -m yescrypt, or openssl passwd -6)")
	}
	return nil
}

// forbiddenRoots are where write_files never writes: kernel interfaces and
// the run-time state of the boot.
var forbiddenRoots = []string{"/proc", "/sys", "/dev", "/run"}

// checkPath accepts an absolute, clean path outside the kernel's trees.
// Clean means no "..", no "//", no trailing "/": what is written is what was
// asked for, and a path cannot climb out of where it seems to point.
func checkPath(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case strings.ContainsAny(p, "\x00\n\r"):
		return fmt.Errorf("%q: control character in path", p)
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("%q: not an absolute path", p)
	case path.Clean(p) != p || p == "/":
		return fmt.Errorf("%q: not a clean path to a file (no '..', '//', '.' or trailing '/')", p)
	}
	for _, r := range forbiddenRoots {
		if p == r || strings.HasPrefix(p, r+"/") {
			return fmt.Errorf("%q: writing under %s is not allowed", p, r)
		}
	}
	return nil
}

var nameRe = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

// checkOwner accepts "user", "user:group" with names as useradd allows.
func checkOwner(o string) (user, group string, err error) {
	user, group, _ = strings.Cut(o, ":")
	if !nameRe.MatchString(user) || (group != "" && !nameRe.MatchString(group)) {
		return "", "", fmt.Errorf("%q: expected user or user:group", o)
	}
	return user, group, nil
}

// checkServer accepts an NTP server: a host name or an IP address.
func checkServer(s string) error {
	if net.ParseIP(s) != nil {
		return nil
	}
	if _, err := dnsname.Normalize(s); err != nil {
		return fmt.Errorf("%q: not a host name or IP address", s)
	}
	return nil
}

var tzRe = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$`)

func checkTimezone(tz string) error {
	if !tzRe.MatchString(tz) {
		return fmt.Errorf("%q: expected an IANA zone name such as Europe/Copenhagen or UTC", tz)
	}
	return nil
}

// checkProxy accepts http(s)://[user:pass@]host[:port][/] and nothing that
// could break out of the quoted environment file dockerd reads.
func checkProxy(s string) error {
	if strings.ContainsAny(s, "'\"`$\\ \t\n\r\x00") {
		return fmt.Errorf("%q: quotes, spaces, '$', '\\' and control characters are not allowed", s)
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "socks5") || u.Host == "" {
		return fmt.Errorf("%q: expected http://host:port (or https://, socks5://)", s)
	}
	return nil
}

var noProxyRe = regexp.MustCompile(`^[A-Za-z0-9.*:/_\[\]-]+(,[A-Za-z0-9.*:/_\[\]-]+)*$`)

func checkNoProxy(s string) error {
	if !noProxyRe.MatchString(s) {
		return fmt.Errorf("%q: expected a comma-separated list of hosts, domains or CIDRs", s)
	}
	return nil
}

// checkSSID accepts what setup-wifi accepts and nothing that could end a
// line in a configuration file: 1-32 bytes, no control characters.
func checkSSID(s string) error {
	if s == "" || len(s) > 32 {
		return fmt.Errorf("%q: 1-32 bytes", s)
	}
	for _, c := range []byte(s) {
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("%q: control character in SSID", s)
		}
	}
	return nil
}

// checkPSK: 8-63 printable ASCII characters, or 64 hex digits. The value
// itself is never quoted in the error: it is a secret.
func checkPSK(p string) error {
	if len(p) == 64 && strings.Trim(strings.ToLower(p), "0123456789abcdef") == "" {
		return nil
	}
	if len(p) < 8 || len(p) > 63 {
		return fmt.Errorf("password of %d characters: WPA2 needs 8-63 (or 64 hex digits)", len(p))
	}
	for _, c := range []byte(p) {
		if c < 0x20 || c > 0x7e {
			return errors.New("password holds a control or non-ASCII character")
		}
	}
	return nil
}

var ifaceRe = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,15}$`)

func checkIface(s string) error {
	if !ifaceRe.MatchString(s) {
		return fmt.Errorf("%q: not an interface name", s)
	}
	return nil
}

var devRe = regexp.MustCompile(`^/dev/[a-z][a-z0-9]*$`)

// checkDisk accepts /dev/NAME of a whole disk as the kernel names it; the
// real checks (boot medium, partitions, data on it) are setup-persistence's.
func checkDisk(s string) error {
	if !devRe.MatchString(s) {
		return fmt.Errorf("%q: expected a whole disk such as /dev/sdb or /dev/vdb", s)
	}
	return nil
}
