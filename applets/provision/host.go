package provision

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path"
	"path/filepath"
	"sort"

	"github.com/vishvananda/netlink"

	"lightwhale/internal/dockerping"
	"lightwhale/internal/host"
	"lightwhale/internal/paths"
	"lightwhale/internal/probe"
)

// The edges to the kernel: links, addresses and routes through netlink,
// dockerd's socket, the disks.

// applyNetwork brings each configured link up with its addresses and
// routes, and returns the links DHCP must leave alone.
func applyNetwork(eths []Ethernet) (noDHCP []string, err error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var errs []error
	for _, e := range eths {
		matched := false
		for _, l := range links {
			if !matches(e, l.Attrs()) {
				continue
			}
			matched = true
			if !e.DHCP4 {
				noDHCP = append(noDHCP, l.Attrs().Name)
			}
			if err := configureLink(l, e); err != nil {
				errs = append(errs, fmt.Errorf("%s (%s): %w", e.ID, l.Attrs().Name, err))
			}
		}
		if !matched {
			errs = append(errs, fmt.Errorf("%s: no interface matches (name %q, mac %q)", e.ID, e.MatchName, e.MatchMAC))
		}
	}
	sort.Strings(noDHCP)
	return noDHCP, errors.Join(errs...)
}

func matches(e Ethernet, a *netlink.LinkAttrs) bool {
	if a.Name == "lo" {
		return false
	}
	if e.MatchMAC != "" && a.HardwareAddr.String() != e.MatchMAC {
		return false
	}
	if e.MatchName != "" {
		ok, _ := path.Match(e.MatchName, a.Name)
		return ok
	}
	return true
}

func configureLink(l netlink.Link, e Ethernet) error {
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("link up: %w", err)
	}
	for _, p := range e.Addresses {
		ipnet := &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
		if err := netlink.AddrReplace(l, &netlink.Addr{IPNet: ipnet}); err != nil {
			return fmt.Errorf("address %s: %w", p, err)
		}
	}
	for _, r := range e.Routes {
		rt := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: r.Via.AsSlice(), Priority: r.Metric}
		if r.To.Bits() > 0 {
			rt.Dst = &net.IPNet{IP: r.To.Addr().AsSlice(), Mask: net.CIDRMask(r.To.Bits(), r.To.Addr().BitLen())}
		}
		if err := netlink.RouteReplace(rt); err != nil {
			return fmt.Errorf("route %s via %s: %w", r.To, r.Via, err)
		}
	}
	return nil
}

// dockerUp polls dockerd's GET /_ping until it answers or ctx ends.
func dockerUp(ctx context.Context) bool { return dockerping.Wait(ctx, dockerping.Socket) }

// claimed says why dev needs no claim ("" when it does): it already
// carries the consent header (S11persistence claims it next), or a
// partition of it holds our data filesystem.
func (s *System) claimed(dev string) (string, error) {
	bd := host.Linux{SysBlock: s.SysBlock, Dev: s.Dev, Proc: "/proc"}
	name := filepath.Base(dev)
	head, err := host.Real.ReadAt(dev, 0, probe.HeadBytes)
	if err != nil && len(head) == 0 {
		return "", fmt.Errorf("read %s: %w", dev, err)
	}
	if probe.HasMagic(head) {
		return "already marked; persistence claims it now", nil
	}
	parts, err := bd.Partitions(name)
	if err != nil {
		return "", err
	}
	for _, p := range parts {
		h, _ := host.Real.ReadAt(p.Path, 0, probe.HeadBytes)
		if b := probe.ParseBtrfs(h); b != nil && b.Label == paths.DataLabel {
			return "already holds the Lightwhale data filesystem", nil
		}
	}
	return "", nil
}
