package provision

import (
	"net/netip"
	"os"
)

// Config is everything provisioning will apply, already validated. Early at
// boot it is built from the sources, saved (mode 0600) in the run directory,
// and read back by the later stages, which apply it and never re-parse.
type Config struct {
	Sources    []string `json:"sources"`     // where it came from: "nocloud /dev/sr1", "cmdline"
	InstanceID string   `json:"instance_id"` // per-instance steps run once per value

	Hostname string `json:"hostname,omitempty"`
	FQDN     string `json:"fqdn,omitempty"`

	SSHKeys      []string `json:"ssh_keys,omitempty"`      // op's authorized keys, one line each
	PasswordHash string   `json:"password_hash,omitempty"` // op's new crypt(3) hash
	LockPassword *bool    `json:"lock_password,omitempty"` // nil: lock when keys are given and no hash is
	SSHPwauth    *bool    `json:"ssh_pwauth,omitempty"`    // nil: off when keys are given

	Files    []File    `json:"files,omitempty"`
	Runcmd   []Command `json:"runcmd,omitempty"`
	NTP      []string  `json:"ntp,omitempty"`
	Timezone string    `json:"timezone,omitempty"`

	Ethernets []Ethernet `json:"ethernets,omitempty"`
	Wifis     []Wifi     `json:"wifis,omitempty"`
	Proxy     Proxy      `json:"proxy,omitzero"`

	Persist string `json:"persist,omitempty"` // a whole disk to claim: /dev/vdb
}

// File is one write_files entry, decoded.
type File struct {
	Path    string      `json:"path"`
	Content []byte      `json:"content"`
	Mode    os.FileMode `json:"mode"`
	Owner   string      `json:"owner"` // user:group as given
	UID     int         `json:"uid"`
	GID     int         `json:"gid"`
	Append  bool        `json:"append,omitempty"`
}

// Command is one runcmd entry: a shell line (run by sh -c, as cloud-init
// does) or an argument vector run directly.
type Command struct {
	Shell string   `json:"shell,omitempty"`
	Argv  []string `json:"argv,omitempty"`
}

// Ethernet is the configuration of one wired link.
type Ethernet struct {
	ID        string         `json:"id"`             // the key in network-config, or the name on the command line
	MatchName string         `json:"name,omitempty"` // interface name or glob
	MatchMAC  string         `json:"mac,omitempty"`  // lower case aa:bb:...
	DHCP4     bool           `json:"dhcp4,omitempty"`
	Addresses []netip.Prefix `json:"addresses,omitempty"`
	Routes    []Route        `json:"routes,omitempty"`
	DNS       []netip.Addr   `json:"dns,omitempty"`
	Search    []string       `json:"search,omitempty"`
}

// Route is a static route; To is 0.0.0.0/0 for the default route.
type Route struct {
	To     netip.Prefix `json:"to"`
	Via    netip.Addr   `json:"via"`
	Metric int          `json:"metric,omitempty"`
}

// Wifi is a network handed to setup-wifi. PSK is a secret: it lives only in
// the 0600 state file and on setup-wifi's standard input.
type Wifi struct {
	Interface string `json:"interface,omitempty"`
	SSID      string `json:"ssid"`
	PSK       string `json:"psk,omitempty"`
}

// Proxy is the HTTP proxy dockerd uses (pulls, pushes).
type Proxy struct {
	HTTP    string `json:"http,omitempty"`
	HTTPS   string `json:"https,omitempty"`
	NoProxy string `json:"no_proxy,omitempty"`
}

// merge lays over on top of c: a later source overrides what it sets.
// Lists replace lists, except keys, which add up (a key from the command
// line next to the seed's keys is the common case).
func (c *Config) merge(over Config) {
	c.Sources = append(c.Sources, over.Sources...)
	if over.InstanceID != "" && c.InstanceID == "" {
		c.InstanceID = over.InstanceID
	}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&c.Hostname, over.Hostname)
	set(&c.FQDN, over.FQDN)
	set(&c.PasswordHash, over.PasswordHash)
	set(&c.Timezone, over.Timezone)
	set(&c.Persist, over.Persist)
	c.SSHKeys = append(c.SSHKeys, over.SSHKeys...)
	if over.LockPassword != nil {
		c.LockPassword = over.LockPassword
	}
	if over.SSHPwauth != nil {
		c.SSHPwauth = over.SSHPwauth
	}
	c.Files = append(c.Files, over.Files...)
	c.Runcmd = append(c.Runcmd, over.Runcmd...)
	if len(over.NTP) > 0 {
		c.NTP = over.NTP
	}
	// An interface configured by a later source replaces its earlier entry.
	for _, e := range over.Ethernets {
		replaced := false
		for i := range c.Ethernets {
			if c.Ethernets[i].MatchName == e.MatchName && c.Ethernets[i].MatchMAC == e.MatchMAC {
				c.Ethernets[i], replaced = e, true
			}
		}
		if !replaced {
			c.Ethernets = append(c.Ethernets, e)
		}
	}
	c.Wifis = append(c.Wifis, over.Wifis...)
	if over.Proxy != (Proxy{}) {
		c.Proxy = over.Proxy
	}
}

// keysGiven reports whether op gets ssh keys, which turns password login
// over ssh off and locks the default password unless the config says
// otherwise.
func (c *Config) keysGiven() bool { return len(c.SSHKeys) > 0 }

// lockPassword is the decision: an explicit lock_passwd wins; else lock when
// keys are given and no password hash is.
func (c *Config) lockPassword() bool {
	if c.LockPassword != nil {
		return *c.LockPassword
	}
	return c.keysGiven() && c.PasswordHash == ""
}

// passwordAuth is the decision for sshd: explicit ssh_pwauth wins; else off
// when keys are given, on otherwise (the image's default).
func (c *Config) passwordAuth() bool {
	if c.SSHPwauth != nil {
		return *c.SSHPwauth
	}
	return !c.keysGiven()
}
