package provision

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"lightwhale/internal/atomicfile"
	"lightwhale/internal/cli"
)

// Files apply writes, relative to System.Root. The init scripts name the
// ones under /run too: S40network (noDHCPFile), S60dockerd (dockerEnvFile),
// S61ntp (ntpFile), the udhcpc script (staticResolvFile).
const (
	sshdConfFile     = "etc/ssh/sshd_config.d/40-lightwhale-provision.conf"
	keysDir          = "etc/ssh/lightwhale-authorized-keys" // one file per user, named after it
	sudoersFile      = "etc/sudoers.d/lightwhale-provision"
	localtimeFile    = "etc/localtime"
	timezoneFile     = "etc/timezone"
	zoneinfoDir      = "usr/share/zoneinfo"
	ntpFile          = "run/lightwhale/ntp-servers"    // one server a line
	dockerEnvFile    = "run/lightwhale/docker.env"     // sourced by S60dockerd
	noDHCPFile       = "run/lightwhale/no-dhcp"        // interfaces S40network leaves alone
	staticResolvFile = "run/lightwhale/resolv.static"  // merged into /run/resolv.conf by udhcpc
	resolvFile       = "run/resolv.conf"               // /etc/resolv.conf links here
	runcmdLog        = "var/log/lightwhale-runcmd.log" // runcmd's output
	provisionLog     = "var/log/lightwhale-provision.log"
)

// user is the one login of Lightwhale, whom keys and passwords are for.
const opUser = "op"

// Once-per-instance steps, each recorded as a file in StateDir/<instance-id>/.
const (
	stepPassword = "password"
	stepFiles    = "write_files"
	stepWifi     = "wifi"
	stepRuncmd   = "runcmd"
)

func (s *System) path(rel string) string { return filepath.Join(s.Root, rel) }

func writeFile(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, data, mode)
}

// done reports whether a once-per-instance step ran for this instance.
func (s *System) done(c Config, step string) bool {
	_, err := os.Stat(filepath.Join(s.StateDir, c.InstanceID, step))
	return err == nil
}

func (s *System) markDone(c Config, step string) error {
	return writeFile(filepath.Join(s.StateDir, c.InstanceID, step), []byte(s.Now().UTC().Format(time.RFC3339)+"\n"), 0o600)
}

// apply runs the per-boot steps and the per-instance steps not yet done. A
// step that fails is reported and the others still run: the input was
// validated already, so a failure here is the machine's (a missing NIC).
func (s *System) apply(ctx context.Context, stdio cli.IO) int {
	c, ok, err := s.loadConfig()
	if err != nil {
		s.addError(stdio.Err, "read saved config: %v", err)
		return 1
	}
	if b, err := os.ReadFile(filepath.Join(s.RunDir, logFile)); err == nil {
		os.MkdirAll(filepath.Dir(s.path(provisionLog)), 0o755)
		appendFile(s.path(provisionLog), fmt.Sprintf("--- boot %s\n%s", s.Now().UTC().Format(time.RFC3339), b))
	}
	if !ok {
		return 0
	}
	failed := 0
	step := func(what string, err error) {
		if err != nil {
			failed++
			s.addError(stdio.Err, "%s: %v", what, err)
		}
	}
	once := func(st string, f func() error) {
		if s.done(c, st) {
			return
		}
		if err := f(); err != nil {
			step(st, err)
			return
		}
		step(st+": record", s.markDone(c, st))
	}
	if c.Hostname != "" {
		_, err := s.Run(ctx, nil, "setup-hostname", c.Hostname)
		step("hostname", err)
	}
	step("ssh", s.applySSH(c))
	once(stepPassword, func() error { return s.applyPassword(ctx, c) })
	step("sudo", s.applySudo(c))
	once(stepFiles, func() error { return s.applyFiles(c) })
	step("timezone", s.applyTimezone(c))
	step("ntp", s.applyNTP(c))
	step("proxy", s.applyProxy(c))
	step("network", s.applyEthernets(c))
	if len(c.Wifis) > 0 {
		once(stepWifi, func() error { return s.applyWifis(ctx, c) })
	}
	if failed > 0 {
		return 1
	}
	return 0
}

// applySSH writes op's keys to a file of their own (so keys op adds to
// ~/.ssh/authorized_keys are never overwritten) and the sshd settings.
func (s *System) applySSH(c Config) error {
	keys := s.path(filepath.Join(keysDir, opUser))
	if len(c.SSHKeys) > 0 {
		if err := writeFile(keys, []byte(strings.Join(c.SSHKeys, "\n")+"\n"), 0o644); err != nil {
			return err
		}
	} else if err := os.Remove(keys); err != nil && !os.IsNotExist(err) {
		return err
	}
	yes := map[bool]string{true: "yes", false: "no"}
	conf := fmt.Sprintf(`# Written at boot by lightwhale provision; changes are overwritten.
AuthorizedKeysFile .ssh/authorized_keys /%s/%%u
PasswordAuthentication %s
KbdInteractiveAuthentication %s
`, keysDir, yes[c.passwordAuth()], yes[c.passwordAuth()])
	return writeFile(s.path(sshdConfFile), []byte(conf), 0o644)
}

// applyPassword sets op's hash (chpasswd -e reads it on stdin) or locks the
// password, once per instance: a password op changes later is kept.
func (s *System) applyPassword(ctx context.Context, c Config) error {
	if c.PasswordHash != "" {
		if _, err := s.Run(ctx, []byte(opUser+":"+c.PasswordHash+"\n"), "chpasswd", "-e"); err != nil {
			return err
		}
	}
	if c.lockPassword() {
		_, err := s.Run(ctx, nil, "usermod", "--lock", opUser)
		return err
	}
	return nil
}

// applySudo: with op's password locked, sudo cannot ask for it, so op may
// use sudo without one, as cloud-init's default user does.
func (s *System) applySudo(c Config) error {
	if !c.lockPassword() {
		if err := os.Remove(s.path(sudoersFile)); err != nil && !os.IsNotExist(err) {
			return err
		}
		return nil
	}
	return writeFile(s.path(sudoersFile), []byte(opUser+" ALL=(ALL:ALL) NOPASSWD: ALL\n"), 0o440)
}

func (s *System) applyFiles(c Config) error {
	for _, f := range c.Files {
		p := s.path(f.Path)
		if f.Append {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return fmt.Errorf("%s: %w", f.Path, err)
			}
			fh, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, f.Mode.Perm())
			if err != nil {
				return fmt.Errorf("%s: %w", f.Path, err)
			}
			_, err = fh.Write(f.Content)
			fh.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", f.Path, err)
			}
		} else if err := writeFile(p, f.Content, f.Mode); err != nil {
			return fmt.Errorf("%s: %w", f.Path, err)
		}
		if err := os.Lchown(p, f.UID, f.GID); err != nil {
			return fmt.Errorf("%s: owner %s: %w", f.Path, f.Owner, err)
		}
	}
	return nil
}

func (s *System) applyTimezone(c Config) error {
	if c.Timezone == "" {
		return nil
	}
	zone := filepath.Join("/", zoneinfoDir, c.Timezone)
	if _, err := os.Stat(s.path(zone)); err != nil {
		return fmt.Errorf("%s: no such zone in this image", c.Timezone)
	}
	tmp := s.path(localtimeFile + ".tmp")
	os.Remove(tmp)
	if err := os.Symlink(zone, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, s.path(localtimeFile)); err != nil {
		return err
	}
	return writeFile(s.path(timezoneFile), []byte(c.Timezone+"\n"), 0o644)
}

func (s *System) applyNTP(c Config) error {
	if len(c.NTP) == 0 {
		return nil
	}
	return writeFile(s.path(ntpFile), []byte(strings.Join(c.NTP, "\n")+"\n"), 0o644)
}

// applyProxy writes the environment dockerd starts with. The values were
// checked to hold no quote, '$', '\' or space, so single quotes keep them
// literal for the shell that sources the file.
func (s *System) applyProxy(c Config) error {
	if c.Proxy.HTTP == "" && c.Proxy.HTTPS == "" {
		return nil
	}
	noProxy := c.Proxy.NoProxy
	if noProxy == "" {
		noProxy = "localhost,127.0.0.1"
	}
	var b strings.Builder
	for _, kv := range [][2]string{{"HTTP_PROXY", c.Proxy.HTTP}, {"HTTPS_PROXY", c.Proxy.HTTPS}, {"NO_PROXY", noProxy}} {
		if kv[1] == "" {
			continue
		}
		fmt.Fprintf(&b, "%s='%s'\n%s='%s'\n", kv[0], kv[1], strings.ToLower(kv[0]), kv[1])
	}
	return writeFile(s.path(dockerEnvFile), []byte(b.String()), 0o600)
}

// applyEthernets configures the links, tells S40network which links are
// not DHCP's, and writes the static name servers.
func (s *System) applyEthernets(c Config) error {
	if len(c.Ethernets) == 0 {
		return nil
	}
	noDHCP, err := s.Network(c.Ethernets)
	if werr := writeFile(s.path(noDHCPFile), []byte(strings.Join(noDHCP, "\n")+"\n"), 0o644); werr != nil && err == nil {
		err = werr
	}
	var r strings.Builder
	for _, e := range c.Ethernets {
		if len(e.Search) > 0 {
			fmt.Fprintf(&r, "search %s\n", strings.Join(e.Search, " "))
		}
		for _, d := range e.DNS {
			fmt.Fprintf(&r, "nameserver %s\n", d)
		}
	}
	if r.Len() > 0 {
		for _, f := range []string{staticResolvFile, resolvFile} {
			if werr := writeFile(s.path(f), []byte(r.String()), 0o644); werr != nil && err == nil {
				err = werr
			}
		}
	}
	return err
}

// applyWifis hands each network to setup-wifi, the password on its
// standard input, never in its arguments.
func (s *System) applyWifis(ctx context.Context, c Config) error {
	for _, w := range c.Wifis {
		argv := []string{"setup-wifi", "--ssid", w.SSID, "--timeout", "15s"}
		var stdin []byte
		if w.PSK == "" {
			argv = append(argv, "--open")
		} else {
			argv = append(argv, "--password-stdin")
			stdin = []byte(w.PSK + "\n")
		}
		if w.Interface != "" {
			argv = append(argv, "--interface", w.Interface)
		}
		if _, err := s.Run(ctx, stdin, argv...); err != nil {
			return fmt.Errorf("ssid %q: %w", w.SSID, err)
		}
	}
	return nil
}

// final waits for dockerd (runcmd usually starts containers), then runs
// runcmd once per instance. Its output goes to runcmdLog.
func (s *System) final(ctx context.Context, stdio cli.IO) int {
	c, ok, err := s.loadConfig()
	if err != nil || !ok || len(c.Runcmd) == 0 || s.done(c, stepRuncmd) {
		return 0
	}
	wait, cancel := context.WithTimeout(ctx, 5*time.Minute)
	up := s.DockerUp(wait)
	cancel()
	if !up {
		fmt.Fprintf(stdio.Err, "%s: dockerd did not answer within 5 minutes; running runcmd anyway\n", name)
	}
	os.MkdirAll(filepath.Dir(s.path(runcmdLog)), 0o755)
	log, err := os.OpenFile(s.path(runcmdLog), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		s.addError(stdio.Err, "runcmd: %v", err)
		return 1
	}
	defer log.Close()
	failed := 0
	for i, cmd := range c.Runcmd {
		argv := cmd.Argv
		if cmd.Shell != "" {
			argv = []string{"/bin/sh", "-c", cmd.Shell}
		}
		fmt.Fprintf(log, "--- %s runcmd[%d] (instance %s): %q\n", s.Now().UTC().Format(time.RFC3339), i, c.InstanceID, argv)
		out, err := s.Run(ctx, nil, argv...)
		io.WriteString(log, out)
		if err != nil {
			failed++
			fmt.Fprintf(log, "--- runcmd[%d] failed: %v\n", i, err)
			s.addError(stdio.Err, "runcmd[%d] failed (see /%s)", i, runcmdLog)
		}
	}
	if err := s.markDone(c, stepRuncmd); err != nil {
		s.addError(stdio.Err, "runcmd: record: %v", err)
	}
	if failed > 0 {
		return 1
	}
	return 0
}
