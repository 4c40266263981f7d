package provision

import (
	"fmt"
	"net"
	"net/netip"
	"path"
	"strings"

	"go.yaml.in/yaml/v3"
)

// parseNetworkConfig reads network-config version 2 (netplan's format, as
// cloud-init passes it): ethernets and wifis. A top-level "network:" key
// around it is accepted, as cloud-init does.
func parseNetworkConfig(c *Config, e *errs, data []byte) (warn []string) {
	if len(data) > maxNetworkConfig {
		e.add("network-config: larger than %d bytes", maxNetworkConfig)
		return nil
	}
	root, err := parseYAML("network-config", data)
	if err != nil {
		e.add("%v", err)
		return nil
	}
	if fs := fields(root); len(fs) == 1 && fs[0].key == "network" {
		root = fs[0].value
	}
	version := 0
	for _, f := range fields(root) {
		k := "network-config: " + f.key
		switch f.key {
		case "version":
			decode(e, k, f.value, &version)
		case "ethernets":
			for _, ef := range fields(f.value) {
				if eth, ok := parseEthernet(e, k+"."+ef.key, ef.key, ef.value); ok {
					c.Ethernets = append(c.Ethernets, eth)
				}
			}
		case "wifis":
			for _, wf := range fields(f.value) {
				c.Wifis = append(c.Wifis, parseWifi(e, k+"."+wf.key, wf.key, wf.value)...)
			}
		case "renderer":
		default:
			warn = append(warn, fmt.Sprintf("%s: not supported, ignored", k))
		}
	}
	if version != 2 {
		e.add("network-config: version: %d is not supported (only version 2)", version)
	}
	return warn
}

func parseEthernet(e *errs, k, id string, n *yaml.Node) (Ethernet, bool) {
	eth := Ethernet{ID: id, MatchName: id}
	bad := len(*e)
	var gw4 string
	for _, f := range fields(n) {
		fk := k + "." + f.key
		switch f.key {
		case "match":
			eth.MatchName = ""
			for _, m := range fields(f.value) {
				var v string
				if !decode(e, fk+"."+m.key, m.value, &v) {
					continue
				}
				switch m.key {
				case "name":
					if _, err := path.Match(v, ""); err != nil || checkIface(strings.ReplaceAll(strings.ReplaceAll(v, "*", "x"), "?", "x")) != nil {
						e.add("%s.name: %q: not an interface name or glob", fk, v)
					}
					eth.MatchName = v
				case "macaddress":
					mac, err := net.ParseMAC(v)
					if err != nil || len(mac) != 6 {
						e.add("%s.macaddress: %q: not a MAC address", fk, v)
					}
					eth.MatchMAC = mac.String()
				default:
					e.add("%s.%s: unknown match key (name, macaddress)", fk, m.key)
				}
			}
			if eth.MatchName == "" && eth.MatchMAC == "" {
				e.add("%s: empty match", fk)
			}
		case "dhcp4":
			decode(e, fk, f.value, &eth.DHCP4)
		case "dhcp6", "accept-ra", "optional", "set-name", "mtu", "renderer":
			// Accepted and not acted on: IPv6 autoconfiguration is the
			// kernel's default; names are the kernel's (no udev renames).
		case "addresses":
			var as []string
			if !decode(e, fk, f.value, &as) {
				continue
			}
			for i, a := range as {
				p, err := netip.ParsePrefix(a)
				if err != nil {
					e.add("%s[%d]: %q: expected ADDRESS/PREFIX such as 192.168.1.5/24", fk, i, a)
					continue
				}
				eth.Addresses = append(eth.Addresses, p)
			}
		case "gateway4":
			decode(e, fk, f.value, &gw4)
		case "routes":
			var rs []struct {
				To     string `yaml:"to"`
				Via    string `yaml:"via"`
				Metric int    `yaml:"metric"`
			}
			if !decode(e, fk, f.value, &rs) {
				continue
			}
			for i, r := range rs {
				rt, err := parseRoute(r.To, r.Via, r.Metric)
				if err != nil {
					e.add("%s[%d]: %v", fk, i, err)
					continue
				}
				eth.Routes = append(eth.Routes, rt)
			}
		case "nameservers":
			for _, nf := range fields(f.value) {
				var vs []string
				if !decode(e, fk+"."+nf.key, nf.value, &vs) {
					continue
				}
				switch nf.key {
				case "addresses":
					for i, v := range vs {
						a, err := netip.ParseAddr(v)
						if err != nil {
							e.add("%s.addresses[%d]: %q: not an IP address", fk, i, v)
							continue
						}
						eth.DNS = append(eth.DNS, a)
					}
				case "search":
					for i, v := range vs {
						if _, err := checkHostname(v); err != nil {
							e.add("%s.search[%d]: %v", fk, i, err)
							continue
						}
						eth.Search = append(eth.Search, v)
					}
				default:
					e.add("%s.%s: unknown key (addresses, search)", fk, nf.key)
				}
			}
		default:
			e.add("%s: unknown key", fk)
		}
	}
	if gw4 != "" {
		rt, err := parseRoute("default", gw4, 0)
		if err != nil {
			e.add("%s.gateway4: %v", k, err)
		} else {
			eth.Routes = append(eth.Routes, rt)
		}
	}
	if eth.DHCP4 && len(eth.Addresses) > 0 {
		// The DHCP client flushes the link's addresses at every lease.
		e.add("%s: dhcp4 together with static addresses is not supported; choose one", k)
	}
	if eth.MatchName != "" && !strings.ContainsAny(eth.MatchName, "*?[") {
		if err := checkIface(eth.MatchName); err != nil {
			e.add("%s: %v", k, err)
		}
	}
	return eth, len(*e) == bad
}

func parseRoute(to, via string, metric int) (Route, error) {
	var r Route
	if to == "default" || to == "" {
		to = "0.0.0.0/0"
	}
	p, err := netip.ParsePrefix(to)
	if err != nil {
		return r, fmt.Errorf("to: %q: expected a network such as 10.1.0.0/16 or default", to)
	}
	gw, err := netip.ParseAddr(via)
	if err != nil {
		return r, fmt.Errorf("via: %q: not an IP address", via)
	}
	if p.Addr().Is4() != gw.Is4() {
		return r, fmt.Errorf("via: %q: not the same address family as %s", via, to)
	}
	if metric < 0 {
		return r, fmt.Errorf("metric: %d: must not be negative", metric)
	}
	return Route{To: p.Masked(), Via: gw, Metric: metric}, nil
}

func parseWifi(e *errs, k, id string, n *yaml.Node) []Wifi {
	var out []Wifi
	iface := id
	if checkIface(id) != nil {
		iface = "" // a netplan ID, not an interface name: setup-wifi picks the only one
	}
	for _, f := range fields(n) {
		fk := k + "." + f.key
		switch f.key {
		case "access-points":
			for _, ap := range fields(f.value) {
				ak := fk + "." + fmt.Sprintf("%q", ap.key)
				if err := checkSSID(ap.key); err != nil {
					e.add("%s: SSID %v", fk, err)
					continue
				}
				var psk string
				for _, af := range fields(ap.value) {
					switch af.key {
					case "password":
						decode(e, ak+".password", af.value, &psk)
					case "mode", "hidden":
					default:
						e.add("%s.%s: unknown key (password)", ak, af.key)
					}
				}
				if psk != "" {
					if err := checkPSK(psk); err != nil {
						e.add("%s.password: %v", ak, err)
						continue
					}
				}
				out = append(out, Wifi{Interface: iface, SSID: ap.key, PSK: psk})
			}
		case "dhcp4", "dhcp6", "optional", "regulatory-domain", "match":
		default:
			e.add("%s: unknown key", fk)
		}
	}
	return out
}
