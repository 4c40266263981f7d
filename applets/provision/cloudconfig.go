package provision

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Owners resolves user and group names for write_files; the real one reads
// /etc/passwd and /etc/group.
type Owners func(user, group string) (uid, gid int, err error)

// Seed is the raw content of a NoCloud seed.
type Seed struct {
	Device        string // where it was found, for messages
	MetaData      []byte
	UserData      []byte
	NetworkConfig []byte // may be nil
}

// parseSeed validates all of a seed and returns its Config, the warnings
// (unknown keys: reported, not fatal) and, if anything is wrong, an error
// with one line per problem. On error the Config must not be used.
func parseSeed(s Seed, owners Owners) (Config, []string, error) {
	var c Config
	var e errs
	var warn []string
	c.Sources = []string{"nocloud " + s.Device}

	meta, err := parseYAML("meta-data", s.MetaData)
	if err != nil {
		e.add("%v", err)
	} else {
		for _, f := range fields(meta) {
			switch f.key {
			case "instance-id", "instance_id":
				var id string
				if decode(&e, "meta-data: "+f.key, f.value, &id) {
					if err := checkInstanceID(id); err != nil {
						e.add("meta-data: instance-id: %v", err)
					}
					c.InstanceID = id
				}
			case "local-hostname", "local_hostname", "hostname":
				var h string
				if decode(&e, "meta-data: "+f.key, f.value, &h) {
					if n, err := checkHostname(h); err != nil {
						e.add("meta-data: %s: %v", f.key, err)
					} else {
						c.Hostname = n
					}
				}
			default:
				// NoCloud meta-data carries other keys (public-keys, dsmode...)
				warn = append(warn, fmt.Sprintf("meta-data: %s: not supported, ignored", f.key))
			}
		}
		if c.InstanceID == "" {
			e.add("meta-data: instance-id: missing (NoCloud requires it)")
		}
	}

	ud := bytes.TrimLeft(s.UserData, "\ufeff")
	switch {
	case len(bytes.TrimSpace(ud)) == 0:
	case !bytes.HasPrefix(ud, []byte("#cloud-config")):
		e.add("user-data: does not start with #cloud-config (scripts and MIME multipart are not supported)")
	default:
		w := parseCloudConfig(&c, &e, ud, owners)
		warn = append(warn, w...)
	}

	if s.NetworkConfig != nil {
		w := parseNetworkConfig(&c, &e, s.NetworkConfig)
		warn = append(warn, w...)
	}
	return c, warn, e.err()
}

func parseCloudConfig(c *Config, e *errs, data []byte, owners Owners) (warn []string) {
	root, err := parseYAML("user-data", data)
	if err != nil {
		e.add("%v", err)
		return nil
	}
	for _, f := range fields(root) {
		k := "user-data: " + f.key
		switch f.key {
		case "hostname", "fqdn":
			var h string
			if decode(e, k, f.value, &h) {
				n, err := checkHostname(h)
				switch {
				case err != nil:
					e.add("%s: %v", k, err)
				case f.key == "fqdn":
					c.FQDN = n
				default:
					c.Hostname = n
				}
			}
		case "ssh_authorized_keys":
			c.SSHKeys = append(c.SSHKeys, parseKeys(e, k, f.value)...)
		case "users":
			warn = append(warn, parseUsers(c, e, f.value)...)
		case "ssh_pwauth":
			var b bool
			if decode(e, k, f.value, &b) {
				c.SSHPwauth = &b
			}
		case "chpasswd":
			parseChpasswd(c, e, f.value)
		case "write_files":
			parseWriteFiles(c, e, f.value, owners)
		case "runcmd":
			parseRuncmd(c, e, f.value)
		case "ntp":
			parseNTP(c, e, f.value)
		case "timezone":
			var tz string
			if decode(e, k, f.value, &tz) {
				if err := checkTimezone(tz); err != nil {
					e.add("%s: %v", k, err)
				}
				c.Timezone = tz
			}
		case "preserve_hostname", "manage_etc_hosts", "disable_root", "package_update", "package_upgrade", "packages":
			warn = append(warn, fmt.Sprintf("%s: has no meaning on Lightwhale, ignored", k))
		default:
			warn = append(warn, fmt.Sprintf("%s: not supported, ignored", k))
		}
	}
	if c.Hostname == "" && c.FQDN != "" {
		c.Hostname, _, _ = strings.Cut(c.FQDN, ".")
	}
	return warn
}

func parseKeys(e *errs, k string, n *yaml.Node) []string {
	var lines []string
	if !decode(e, k, n, &lines) {
		return nil
	}
	var out []string
	for i, l := range lines {
		key, err := checkSSHKey(l)
		if err != nil {
			e.add("%s[%d]: %v", k, i, err)
			continue
		}
		out = append(out, key)
	}
	return out
}

// parseUsers takes the entries that concern op: "default" (cloud-init's
// default user, which on Lightwhale is op) and name: op. Other users are
// reported: Lightwhale runs its software in containers and has one login.
func parseUsers(c *Config, e *errs, n *yaml.Node) (warn []string) {
	if n.Kind != yaml.SequenceNode {
		e.add("user-data: users: expected a list")
		return nil
	}
	for i, u := range n.Content {
		k := fmt.Sprintf("user-data: users[%d]", i)
		if u.Kind == yaml.ScalarNode {
			if u.Value != "default" && u.Value != "op" {
				warn = append(warn, fmt.Sprintf("%s: user %q not created: Lightwhale has the one login op", k, u.Value))
			}
			continue
		}
		var name string
		for _, f := range fields(u) {
			if f.key == "name" {
				decode(e, k+".name", f.value, &name)
			}
		}
		if name != "op" {
			warn = append(warn, fmt.Sprintf("%s: user %q not created: Lightwhale has the one login op", k, name))
			continue
		}
		for _, f := range fields(u) {
			fk := k + "." + f.key
			switch f.key {
			case "name":
			case "ssh_authorized_keys", "ssh-authorized-keys":
				c.SSHKeys = append(c.SSHKeys, parseKeys(e, fk, f.value)...)
			case "lock_passwd":
				var b bool
				if decode(e, fk, f.value, &b) {
					c.LockPassword = &b
				}
			case "passwd", "hashed_passwd":
				var h string
				if decode(e, fk, f.value, &h) {
					if err := checkHash(h); err != nil {
						e.add("%s: %v", fk, err)
					}
					c.PasswordHash = h
				}
			case "plain_text_passwd":
				e.add("%s: plain-text passwords are refused; give passwd: with a hash", fk)
			case "sudo", "groups", "shell", "gecos", "primary_group":
				warn = append(warn, fmt.Sprintf("%s: op's %s is fixed on Lightwhale, ignored", fk, f.key))
			default:
				warn = append(warn, fmt.Sprintf("%s: not supported, ignored", fk))
			}
		}
	}
	return warn
}

// parseChpasswd takes op's hash from chpasswd's list ("op:$6$...") or users
// ({name: op, password: $6$..., type: hash}). Hashes only.
func parseChpasswd(c *Config, e *errs, n *yaml.Node) {
	for _, f := range fields(n) {
		k := "user-data: chpasswd." + f.key
		switch f.key {
		case "expire":
			var b bool
			decode(e, k, f.value, &b)
		case "list":
			var lines []string
			if f.value.Kind == yaml.ScalarNode {
				var s string
				if decode(e, k, f.value, &s) {
					lines = strings.Split(strings.TrimSpace(s), "\n")
				}
			} else if !decode(e, k, f.value, &lines) {
				continue
			}
			for i, l := range lines {
				user, h, ok := strings.Cut(strings.TrimSpace(l), ":")
				setPassword(c, e, fmt.Sprintf("%s[%d]", k, i), user, h, ok)
			}
		case "users":
			var us []struct {
				Name     string `yaml:"name"`
				Password string `yaml:"password"`
				Type     string `yaml:"type"`
			}
			if !decode(e, k, f.value, &us) {
				continue
			}
			for i, u := range us {
				ik := fmt.Sprintf("%s[%d]", k, i)
				if u.Type != "hash" {
					e.add("%s: type %q refused: only type: hash is accepted", ik, u.Type)
					continue
				}
				setPassword(c, e, ik, u.Name, u.Password, true)
			}
		default:
			e.add("%s: unknown key", k)
		}
	}
	if n.Kind != yaml.MappingNode {
		e.add("user-data: chpasswd: expected a mapping (list: or users:)")
	}
}

func setPassword(c *Config, e *errs, k, user, hash string, ok bool) {
	if !ok || user != "op" {
		e.add("%s: only op's password can be set (user %q)", k, user)
		return
	}
	if err := checkHash(hash); err != nil {
		e.add("%s: %v", k, err)
		return
	}
	c.PasswordHash = hash
}

func parseWriteFiles(c *Config, e *errs, n *yaml.Node, owners Owners) {
	var entries []struct {
		Path        string `yaml:"path"`
		Content     string `yaml:"content"`
		Encoding    string `yaml:"encoding"`
		Permissions string `yaml:"permissions"`
		Owner       string `yaml:"owner"`
		Append      bool   `yaml:"append"`
		Defer       bool   `yaml:"defer"`
	}
	if !decode(e, "user-data: write_files", n, &entries) {
		return
	}
	for i, w := range entries {
		k := fmt.Sprintf("user-data: write_files[%d]", i)
		if err := checkPath(w.Path); err != nil {
			e.add("%s.path: %v", k, err)
			continue
		}
		k += " (" + w.Path + ")"
		content, err := decodeContent(w.Content, w.Encoding)
		if err != nil {
			e.add("%s.encoding: %v", k, err)
			continue
		}
		mode := os.FileMode(0o644)
		if w.Permissions != "" {
			m, err := strconv.ParseUint(strings.TrimPrefix(w.Permissions, "0o"), 8, 32)
			if err != nil || m > 0o7777 {
				e.add("%s.permissions: %q: expected an octal mode such as '0644'", k, w.Permissions)
				continue
			}
			mode = os.FileMode(m&0o777) | modeBits(m)
		}
		owner := w.Owner
		if owner == "" {
			owner = "root:root"
		}
		user, group, err := checkOwner(owner)
		if err != nil {
			e.add("%s.owner: %v", k, err)
			continue
		}
		uid, gid, err := owners(user, group)
		if err != nil {
			e.add("%s.owner: %v", k, err)
			continue
		}
		c.Files = append(c.Files, File{Path: w.Path, Content: content, Mode: mode, Owner: owner, UID: uid, GID: gid, Append: w.Append})
	}
}

// modeBits maps the setuid, setgid and sticky bits of a numeric mode to
// Go's FileMode flags.
func modeBits(m uint64) os.FileMode {
	var f os.FileMode
	if m&0o4000 != 0 {
		f |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		f |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		f |= os.ModeSticky
	}
	return f
}

// decodeContent undoes write_files' encodings, capped at maxFileContent
// after decoding, so a small gzip bomb cannot fill RAM.
func decodeContent(s, enc string) ([]byte, error) {
	var raw []byte
	switch strings.ToLower(enc) {
	case "", "text/plain":
		raw = []byte(s)
		if len(raw) > maxFileContent {
			return nil, fmt.Errorf("content larger than %d bytes", maxFileContent)
		}
		return raw, nil
	case "b64", "base64", "gz+b64", "gzip+base64", "gz+base64", "gzip+b64":
		b, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(s), ""))
		if err != nil {
			return nil, fmt.Errorf("%q: content is not valid base64", enc)
		}
		raw = b
		if !strings.HasPrefix(strings.ToLower(enc), "gz") {
			if len(raw) > maxFileContent {
				return nil, fmt.Errorf("content larger than %d bytes", maxFileContent)
			}
			return raw, nil
		}
	case "gz", "gzip":
		raw = []byte(s)
	default:
		return nil, fmt.Errorf("%q: unknown encoding (b64, gzip, gz+b64 or none)", enc)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%q: content is not gzip: %v", enc, err)
	}
	out, err := io.ReadAll(io.LimitReader(zr, maxFileContent+1))
	if err != nil {
		return nil, fmt.Errorf("%q: corrupt gzip: %v", enc, err)
	}
	if len(out) > maxFileContent {
		return nil, fmt.Errorf("content larger than %d bytes once decompressed", maxFileContent)
	}
	return out, nil
}

func parseRuncmd(c *Config, e *errs, n *yaml.Node) {
	if n.Kind != yaml.SequenceNode {
		e.add("user-data: runcmd: expected a list")
		return
	}
	for i, item := range n.Content {
		k := fmt.Sprintf("user-data: runcmd[%d]", i)
		switch item.Kind {
		case yaml.ScalarNode:
			if strings.ContainsRune(item.Value, 0) || strings.TrimSpace(item.Value) == "" {
				e.add("%s: empty command or NUL byte", k)
				continue
			}
			c.Runcmd = append(c.Runcmd, Command{Shell: item.Value})
		case yaml.SequenceNode:
			var argv []string
			if !decode(e, k, item, &argv) {
				continue
			}
			if len(argv) == 0 || argv[0] == "" || strings.ContainsRune(strings.Join(argv, ""), 0) {
				e.add("%s: empty command or NUL byte", k)
				continue
			}
			c.Runcmd = append(c.Runcmd, Command{Argv: argv})
		default:
			e.add("%s: expected a string or a list of strings", k)
		}
	}
}

func parseNTP(c *Config, e *errs, n *yaml.Node) {
	for _, f := range fields(n) {
		k := "user-data: ntp." + f.key
		switch f.key {
		case "enabled":
			var b bool
			decode(e, k, f.value, &b)
		case "servers", "pools":
			var ss []string
			if !decode(e, k, f.value, &ss) {
				continue
			}
			for i, s := range ss {
				if err := checkServer(s); err != nil {
					e.add("%s[%d]: %v", k, i, err)
					continue
				}
				c.NTP = append(c.NTP, s)
			}
		default:
			e.add("%s: unknown key (servers, pools)", k)
		}
	}
}
