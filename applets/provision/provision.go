// Package provision is `lightwhale provision`: zero-touch configuration at
// first boot from a NoCloud seed (a volume labelled cidata) and the kernel
// command line (lightwhale.* parameters). Everything is read and validated
// early, before anything is applied; a source with any error is rejected
// whole and reported, and the machine boots with its defaults.
//
// The boot runs it in stages (init scripts S10provision, S12provision,
// S95provision):
//
//	early  before persistence: read and validate the sources, save the
//	       result, claim the disk named by lightwhale.persist=
//	apply  after the /etc overlay: host name, keys, passwords, files,
//	       time zone, NTP servers, Docker proxy, static network, wifi
//	final  after dockerd answers: runcmd, once per instance
package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"lightwhale/internal/cli"
	"lightwhale/internal/paths"
)

const name = "provision"

const usage = `early | apply | final | status
       lightwhale provision check [--seed DIR] [--cmdline TEXT]`

const about = `Configures the machine at boot from a NoCloud seed (a volume labelled
cidata holding meta-data, user-data and network-config) and the kernel
command line (lightwhale.hostname=, lightwhale.ssh_key=, lightwhale.ip=,
lightwhale.proxy=, lightwhale.no_proxy=, lightwhale.ntp=,
lightwhale.persist=). The command line overrides the seed. See the README
for the supported keys.

  early   (init script, before persistence) read and validate; claim the
          disk of lightwhale.persist=
  apply   (init script, after the /etc overlay) apply per-boot steps and the
          once-per-instance ones not yet done
  final   (init script, in the background) wait for dockerd, run runcmd
          once per instance
  status  how this machine was provisioned
  check   validate a seed directory and/or a command line and print what
          would be applied (secrets masked); changes nothing`

// System is the machine provisioning reads and writes: the real one by
// default; tests point the paths at temporary directories and replace the
// edges to the kernel.
type System struct {
	Cmdline  string // /proc/cmdline
	SysBlock string // /sys/class/block
	Dev      string // /dev
	Root     string // prefix of every file written ("/")
	RunDir   string // /run/lightwhale/provision: the saved config, status, log
	StateDir string // the record of once-per-instance steps, on the data filesystem

	Mount   func(dev, dir, fstype string) error
	Unmount func(dir string) error
	// Run starts a program with stdin and returns its combined output.
	Run    func(ctx context.Context, stdin []byte, argv ...string) (string, error)
	Owners Owners
	// Network configures links, addresses and routes (netlink).
	Network func(eths []Ethernet) (noDHCP []string, err error)
	// DockerUp waits until dockerd answers or the deadline passes.
	DockerUp func(ctx context.Context) bool
	Now      func() time.Time
}

// Host is the running machine.
var Host = System{
	Cmdline:  "/proc/cmdline",
	SysBlock: "/sys/class/block",
	Dev:      "/dev",
	Root:     "/",
	RunDir:   paths.RunDir + "/provision",
	StateDir: paths.StateDir + "/provision",
	Mount:    mountSeed,
	Unmount:  func(dir string) error { return unix.Unmount(dir, 0) },
	Run:      runProgram,
	Owners:   lookupOwners,
	Network:  applyNetwork,
	DockerUp: dockerUp,
	Now:      time.Now,
}

// seedModules are the drivers of a seed's filesystem and of the character
// sets it names files in. They are loaded only once a seed is found: five
// modules that most boots need not load, at a cost under emulation.
var seedModules = map[string][]string{
	"iso9660": {"isofs", "nls_utf8"},
	"vfat":    {"vfat", "nls_cp437", "nls_iso8859_1", "nls_utf8"},
}

// mountSeed mounts a seed read-only, its drivers loaded first rather than
// left to the kernel's request at mount time. A failed load is left to the
// mount to report.
func mountSeed(dev, dir, fstype string) error {
	exec.Command("modprobe", append([]string{"-qa"}, seedModules[fstype]...)...).Run()
	return unix.Mount(dev, dir, fstype, unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
}

// Main is the applet.
func Main(args []string, stdio cli.IO) int { return Host.Main(args, stdio) }

// Main runs the applet against s.
func (s *System) Main(args []string, stdio cli.IO) int {
	fset := cli.NewFlagSet("lightwhale "+name, usage, about, stdio.Err)
	if code, done := cli.Parse(fset, args); done {
		return code
	}
	if fset.NArg() == 0 {
		fset.Usage()
		return 2
	}
	if cmd := fset.Arg(0); cmd != "check" && fset.NArg() > 1 {
		fmt.Fprintf(stdio.Err, "%s: %s takes no arguments\n", name, cmd)
		return 2
	}
	ctx := context.Background()
	switch fset.Arg(0) {
	case "early":
		return s.early(ctx, stdio)
	case "apply":
		return s.apply(ctx, stdio)
	case "final":
		return s.final(ctx, stdio)
	case "status":
		b, err := os.ReadFile(filepath.Join(s.RunDir, statusFile))
		if err != nil {
			fmt.Fprintln(stdio.Out, "provisioning: did not run at this boot")
			return 0
		}
		stdio.Out.Write(b)
		return 0
	case "check":
		cset := cli.NewFlagSet("lightwhale "+name+" check", "[--seed DIR] [--cmdline TEXT]", "", stdio.Err)
		seedDir := cset.String("seed", "", "a directory holding meta-data, user-data, network-config")
		cmdline := cset.String("cmdline", "", "a kernel command line")
		if code, done := cli.Parse(cset, fset.Args()[1:]); done {
			return code
		}
		return s.check(*seedDir, *cmdline, stdio)
	}
	fmt.Fprintf(stdio.Err, "%s: unknown command %q (early, apply, final, status, check)\n", name, fset.Arg(0))
	return 2
}

// Files in RunDir.
const (
	configFile = "config.json" // the validated Config, 0600: it may hold a wifi password
	statusFile = "status"      // what `provision status` prints
	motdFile   = "motd"        // lines S99motd shows
	logFile    = "log"         // every message of every stage
)

// report is what early found, for the status, the motd and the log.
type report struct {
	lines  []string // the log
	errors []string // sources rejected, steps failed: for the motd
}

func (r *report) logf(out io.Writer, format string, a ...any) {
	l := fmt.Sprintf(format, a...)
	r.lines = append(r.lines, l)
	fmt.Fprintf(out, "%s: %s\n", name, l)
}

// gather reads and validates every source; a source with any error is left
// out whole. The result holds only what validated.
func (s *System) gather(out io.Writer, r *report) (Config, bool) {
	var c Config
	any := false
	sd, found, err := s.readSeed()
	switch {
	case err != nil:
		r.logf(out, "seed %s: %v", sd.Device, err)
		r.errors = append(r.errors, fmt.Sprintf("seed %s unreadable: %v", sd.Device, err))
	case found:
		sc, warn, err := parseSeed(sd, s.Owners)
		for _, w := range warn {
			r.logf(out, "warning: %s", w)
		}
		if err != nil {
			for _, l := range strings.Split(err.Error(), "\n") {
				r.logf(out, "error: %s", l)
			}
			n := strings.Count(err.Error(), "\n") + 1
			r.logf(out, "seed %s REJECTED (%s): nothing from it is applied", sd.Device, problems(n))
			r.errors = append(r.errors, fmt.Sprintf("seed %s rejected: %s, see %s", sd.Device, problems(n), filepath.Join(s.RunDir, logFile)))
		} else {
			c, any = sc, true
		}
	}
	line, err := os.ReadFile(s.Cmdline)
	if err != nil {
		r.logf(out, "read %s: %v", s.Cmdline, err)
		return c, any
	}
	cc, found, warn, err := parseCmdline(string(line))
	for _, w := range warn {
		r.logf(out, "warning: %s", w)
	}
	switch {
	case err != nil:
		for _, l := range strings.Split(err.Error(), "\n") {
			r.logf(out, "error: %s", l)
		}
		r.logf(out, "kernel command line REJECTED: none of its lightwhale.* parameters is applied")
		r.errors = append(r.errors, "kernel command line parameters rejected, see "+filepath.Join(s.RunDir, logFile))
	case found:
		if !any {
			c = cc
		} else {
			c.merge(cc)
		}
		any = true
	}
	return c, any
}

func problems(n int) string {
	if n == 1 {
		return "1 problem"
	}
	return fmt.Sprintf("%d problems", n)
}

func (s *System) early(ctx context.Context, stdio cli.IO) int {
	var r report
	if err := os.MkdirAll(s.RunDir, 0o755); err != nil {
		return cli.Fail(stdio, name, err)
	}
	c, ok := s.gather(stdio.Err, &r)
	if ok {
		r.logf(stdio.Err, "provisioned from %s; instance-id %s", strings.Join(c.Sources, " and "), c.InstanceID)
		b, err := json.Marshal(c)
		if err == nil {
			err = writeFile(filepath.Join(s.RunDir, configFile), b, 0o600)
		}
		if err != nil {
			r.logf(stdio.Err, "save config: %v", err)
			r.errors = append(r.errors, "could not save the configuration")
		}
		if c.Persist != "" {
			s.persist(ctx, stdio.Err, &r, c.Persist)
		}
	}
	s.writeReport(c, ok, &r)
	if len(r.errors) > 0 {
		return 1
	}
	return 0
}

// persist claims the disk of lightwhale.persist= through setup-persistence
// enable, which refuses the boot medium, a disk in use or holding data. A
// disk already claimed (ours) is left alone: the parameter stays on the
// command line at every boot.
func (s *System) persist(ctx context.Context, out io.Writer, r *report, dev string) {
	if owned, err := s.claimed(dev); err != nil {
		r.logf(out, "lightwhale.persist=%s: %v", dev, err)
		r.errors = append(r.errors, fmt.Sprintf("lightwhale.persist=%s: %v", dev, err))
		return
	} else if owned != "" {
		r.logf(out, "lightwhale.persist=%s: %s", dev, owned)
		return
	}
	o, err := s.Run(ctx, nil, "setup-persistence", "enable", "--yes", dev)
	if err != nil {
		msg := strings.TrimSpace(strings.ReplaceAll(o, "\n", "; "))
		r.logf(out, "lightwhale.persist=%s: refused: %s", dev, msg)
		r.errors = append(r.errors, fmt.Sprintf("lightwhale.persist=%s refused: %s", dev, msg))
		return
	}
	r.logf(out, "lightwhale.persist=%s: disk marked for persistence", dev)
}

func (s *System) writeReport(c Config, ok bool, r *report) {
	var st, motd strings.Builder
	if ok {
		fmt.Fprintf(&st, "provisioned from: %s\ninstance-id: %s\n", strings.Join(c.Sources, ", "), c.InstanceID)
		fmt.Fprintf(&motd, "  Provisioned from %s (instance-id %s).\n", strings.Join(c.Sources, ", "), c.InstanceID)
	} else {
		st.WriteString("provisioned from: nothing (no seed, no lightwhale.* parameters)\n")
	}
	for _, e := range r.errors {
		fmt.Fprintf(&st, "ERROR: %s\n", e)
		fmt.Fprintf(&motd, "  PROVISIONING ERROR: %s\n", e)
	}
	writeFile(filepath.Join(s.RunDir, statusFile), []byte(st.String()), 0o644)
	writeFile(filepath.Join(s.RunDir, motdFile), []byte(motd.String()), 0o644)
	appendLog(filepath.Join(s.RunDir, logFile), r.lines)
}

// addError records a failure of a later stage in the status and motd.
func (s *System) addError(out io.Writer, format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	fmt.Fprintf(out, "%s: %s\n", name, msg)
	appendLog(filepath.Join(s.RunDir, logFile), []string{msg})
	appendFile(filepath.Join(s.RunDir, statusFile), "ERROR: "+msg+"\n")
	appendFile(filepath.Join(s.RunDir, motdFile), "  PROVISIONING ERROR: "+msg+"\n")
}

func appendLog(path string, lines []string) {
	if len(lines) > 0 {
		appendFile(path, strings.Join(lines, "\n")+"\n")
	}
}

func appendFile(path, text string) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return
	}
	f.WriteString(text)
	f.Close()
}

// loadConfig reads what early saved; ok is false when there is nothing.
func (s *System) loadConfig() (Config, bool, error) {
	var c Config
	b, err := os.ReadFile(filepath.Join(s.RunDir, configFile))
	if errors.Is(err, os.ErrNotExist) {
		return c, false, nil
	}
	if err != nil {
		return c, false, err
	}
	return c, true, json.Unmarshal(b, &c)
}

// check validates without applying: for users trying a seed, and a dry run.
func (s *System) check(seedDir, cmdline string, stdio cli.IO) int {
	var c Config
	bad := false
	if seedDir != "" {
		sd, err := readSeedDir(seedDir, seedDir)
		if err != nil {
			return cli.Fail(stdio, name, err)
		}
		sc, warn, err := parseSeed(sd, s.Owners)
		for _, w := range warn {
			fmt.Fprintf(stdio.Err, "warning: %s\n", w)
		}
		if err != nil {
			fmt.Fprintln(stdio.Err, err)
			bad = true
		}
		c = sc
	}
	if cmdline != "" {
		cc, _, warn, err := parseCmdline(cmdline)
		for _, w := range warn {
			fmt.Fprintf(stdio.Err, "warning: %s\n", w)
		}
		if err != nil {
			fmt.Fprintln(stdio.Err, err)
			bad = true
		}
		c.merge(cc)
	}
	if bad {
		return 1
	}
	for i := range c.Wifis {
		if c.Wifis[i].PSK != "" {
			c.Wifis[i].PSK = "(hidden)"
		}
	}
	b, _ := json.MarshalIndent(c, "", "  ")
	fmt.Fprintln(stdio.Out, string(b))
	return 0
}

// runProgram runs argv with stdin; a secret goes on stdin, never in argv.
func runProgram(ctx context.Context, stdin []byte, argv ...string) (string, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if stdin != nil {
		cmd.Stdin = strings.NewReader(string(stdin))
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", argv[0], err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// lookupOwners resolves names in the image's /etc/passwd and /etc/group.
func lookupOwners(userName, group string) (int, int, error) {
	u, err := user.Lookup(userName)
	if err != nil {
		return 0, 0, fmt.Errorf("unknown user %q", userName)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			return 0, 0, fmt.Errorf("unknown group %q", group)
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	return uid, gid, nil
}
