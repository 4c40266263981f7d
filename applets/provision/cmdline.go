package provision

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// cmdlinePrefix marks the kernel parameters that are ours.
const cmdlinePrefix = "lightwhale."

// cmdlineKeys are the parameters provisioning reads (README: "Kernel
// command line").
var cmdlineKeys = map[string]bool{"hostname": true, "ssh_key": true, "ip": true, "proxy": true, "no_proxy": true, "ntp": true, "persist": true}

// otherKeys are lightwhale.* parameters read by other parts of the boot.
var otherKeys = map[string]bool{"wait": true}

// splitCmdline splits the kernel command line as the kernel does: on
// spaces, except inside double quotes, which are removed.
func splitCmdline(s string) []string {
	var out []string
	var cur strings.Builder
	quoted, have := false, false
	for _, r := range strings.TrimSpace(s) {
		switch {
		case r == '"':
			quoted, have = !quoted, true
		case (r == ' ' || r == '\n' || r == '\t') && !quoted:
			if have {
				out = append(out, cur.String())
			}
			cur.Reset()
			have = false
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}

// parseCmdline validates the lightwhale.* parameters. found is false when
// there are none that provisioning reads.
func parseCmdline(line string) (c Config, found bool, warn []string, err error) {
	var e errs
	h := sha256.New()
	for _, p := range splitCmdline(line) {
		if !strings.HasPrefix(p, cmdlinePrefix) {
			continue
		}
		key, val, _ := strings.Cut(strings.TrimPrefix(p, cmdlinePrefix), "=")
		k := cmdlinePrefix + key
		if otherKeys[key] {
			continue
		}
		if !cmdlineKeys[key] {
			warn = append(warn, fmt.Sprintf("%s: unknown kernel parameter, ignored", k))
			continue
		}
		found = true
		fmt.Fprintf(h, "%s\x00", p)
		switch key {
		case "hostname":
			if n, err := checkHostname(val); err != nil {
				e.add("%s: %v", k, err)
			} else {
				c.Hostname = n
			}
		case "ssh_key":
			keys, err := parseCmdlineKeys(val)
			if err != nil {
				e.add("%s: %v", k, err)
			}
			c.SSHKeys = append(c.SSHKeys, keys...)
		case "ip":
			eth, err := parseCmdlineIP(val)
			if err != nil {
				e.add("%s: %v", k, err)
			} else {
				c.Ethernets = append(c.Ethernets, eth)
			}
		case "proxy":
			if err := checkProxy(val); err != nil {
				e.add("%s: %v", k, err)
			}
			c.Proxy.HTTP, c.Proxy.HTTPS = val, val
		case "no_proxy":
			if err := checkNoProxy(val); err != nil {
				e.add("%s: %v", k, err)
			}
			c.Proxy.NoProxy = val
		case "ntp":
			for _, s := range strings.Split(val, ",") {
				if err := checkServer(s); err != nil {
					e.add("%s: %v", k, err)
					continue
				}
				c.NTP = append(c.NTP, s)
			}
		case "persist":
			if err := checkDisk(val); err != nil {
				e.add("%s: %v", k, err)
			}
			c.Persist = val
		}
	}
	if found {
		c.Sources = []string{"cmdline"}
	}
	if c.Proxy.NoProxy != "" && c.Proxy.HTTP == "" {
		e.add("%sno_proxy: given without %sproxy", cmdlinePrefix, cmdlinePrefix)
	}
	// Without a seed, the command line is the instance: other parameters
	// make another instance, whose once-only steps run anew.
	c.InstanceID = "cmdline-" + hex.EncodeToString(h.Sum(nil))[:12]
	return c, found, warn, e.err()
}

// parseCmdlineKeys takes one key line (quoted on the command line, since it has
// spaces) or base64 of one or more authorized_keys lines.
func parseCmdlineKeys(v string) ([]string, error) {
	if strings.Contains(v, " ") {
		k, err := checkSSHKey(v)
		if err != nil {
			return nil, err
		}
		return []string{k}, nil
	}
	var raw []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if raw, err = enc.DecodeString(v); err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%.40q...: neither a quoted key line nor base64 of one", v)
	}
	var keys []string
	for _, l := range strings.Split(string(raw), "\n") {
		if l = strings.TrimSpace(l); l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		k, err := checkSSHKey(l)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%.40q...: base64 holds no key", v)
	}
	return keys, nil
}

// parseCmdlineIP reads [IFACE=]ADDR/PREFIX[,GATEWAY[,DNS...]]. IFACE is an
// interface name or MAC address; eth0 when omitted.
func parseCmdlineIP(v string) (Ethernet, error) {
	eth := Ethernet{MatchName: "eth0"}
	if id, rest, ok := strings.Cut(v, "="); ok {
		if mac, err := net.ParseMAC(id); err == nil && len(mac) == 6 {
			eth.MatchName, eth.MatchMAC = "", mac.String()
		} else if err := checkIface(id); err != nil {
			return eth, err
		} else {
			eth.MatchName = id
		}
		v = rest
	}
	eth.ID = eth.MatchName + eth.MatchMAC
	parts := strings.Split(v, ",")
	p, err := netip.ParsePrefix(parts[0])
	if err != nil {
		return eth, fmt.Errorf("%q: expected [IFACE=]ADDR/PREFIX[,GATEWAY[,DNS...]]", v)
	}
	eth.Addresses = []netip.Prefix{p}
	if len(parts) > 1 && parts[1] != "" {
		r, err := parseRoute("default", parts[1], 0)
		if err != nil {
			return eth, fmt.Errorf("gateway %v", err)
		}
		eth.Routes = []Route{r}
	}
	for _, d := range parts[min(2, len(parts)):] {
		a, err := netip.ParseAddr(d)
		if err != nil {
			return eth, fmt.Errorf("DNS server %q: not an IP address", d)
		}
		eth.DNS = append(eth.DNS, a)
	}
	return eth, nil
}
