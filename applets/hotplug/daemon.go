package hotplug

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"lightwhale/internal/host"
	"lightwhale/internal/latedisk"
	"lightwhale/internal/modalias"
	"lightwhale/internal/paths"
	"lightwhale/internal/probe"
)

const lateRecord = latedisk.File

// loader loads each module once, several at a time; it counts the loads in
// flight, which storage settle waits for.
type loader struct {
	load     func([]string) error
	log      func(format string, a ...any)
	mu       sync.Mutex
	asked    map[string]bool
	inflight atomic.Int32
}

// fresh returns the modules not asked for before, and marks them asked.
func (l *loader) fresh(mods []string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, m := range mods {
		if !l.asked[m] {
			l.asked[m] = true
			out = append(out, m)
		}
	}
	return out
}

// loadAll loads mods split over one modprobe per CPU, and waits. Loading in
// parallel is safe: the kernel serialises loads of the same module, and
// modprobe counts "already loaded" as success.
func (l *loader) loadAll(mods []string) {
	mods = l.fresh(mods)
	n := runtime.NumCPU()
	var wg sync.WaitGroup
	for i := 0; i < n && i < len(mods); i++ {
		var chunk []string
		for j := i; j < len(mods); j += n {
			chunk = append(chunk, mods[j])
		}
		wg.Add(1)
		l.inflight.Add(1)
		go func() {
			defer wg.Done()
			defer l.inflight.Add(-1)
			if err := l.load(chunk); err != nil {
				l.log("%v", err)
			}
		}()
	}
	wg.Wait()
}

// loadAsync loads mods in the background (a hotplug event must not hold up
// the next one), and returns those not asked for before.
func (l *loader) loadAsync(mods []string) []string {
	if mods = l.fresh(mods); len(mods) == 0 {
		return nil
	}
	l.inflight.Add(1)
	go func() {
		defer l.inflight.Add(-1)
		if err := l.load(mods); err != nil {
			l.log("%v", err)
		}
	}()
	return mods
}

func (s System) aliases() (*modalias.Aliases, error) {
	f, err := os.Open(filepath.Join(s.Modules, "modules.alias"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return modalias.Parse(f)
}

// modaliases reads the modalias of every device in sysfs, each once.
func (s System) modaliases() []string { return modalias.Scan(string(s.Sys)) }

func (s System) coldplugCmd(out io.Writer, dry bool) error {
	a, err := s.aliases()
	if err != nil {
		return err
	}
	if dry {
		for _, m := range s.modaliases() {
			if mods := a.Lookup(m); len(mods) > 0 {
				fmt.Fprintf(out, "%s %s\n", m, strings.Join(mods, " "))
			}
		}
		return nil
	}
	l := &loader{load: s.Load, asked: map[string]bool{}, log: logf(out)}
	l.loadAll(a.Modules(s.modaliases()))
	s.nameVirtioPorts(out)
	return nil
}

func logf(out io.Writer) func(string, ...any) {
	return func(format string, a ...any) { fmt.Fprintf(out, "hotplug: "+format+"\n", a...) }
}

// daemon: listen first, so nothing added during coldplug is missed; coldplug;
// settle storage; say ready; then handle events for as long as the system
// runs.
func (s System) daemon(out io.Writer, ready io.WriteCloser) error {
	log := logf(out)
	a, err := s.aliases()
	if err != nil {
		return err
	}
	nl, err := ListenUevents()
	if err != nil {
		return err
	}
	defer nl.Close()
	os.MkdirAll(s.RunDir, 0o755)
	os.WriteFile(filepath.Join(s.RunDir, "hotplug.pid"), []byte(fmt.Sprintln(os.Getpid())), 0o644)

	events := make(chan Event, 4096)
	overflow := make(chan struct{}, 1)
	go func() {
		for {
			e, err := nl.Read()
			if errors.Is(err, ErrOverflow) {
				select {
				case overflow <- struct{}{}:
				default:
				}
				continue
			}
			if err != nil {
				log("%v", err)
				close(events)
				return
			}
			events <- e
		}
	}()

	d := &dispatcher{System: s, aliases: a, log: log,
		loader: &loader{load: s.Load, asked: map[string]bool{}, log: log}, late: map[string]bool{}}
	t0 := time.Now()
	present := s.modaliases()
	now, later := splitDeferred(present)
	mods := a.Modules(now)
	scanned := time.Since(t0)
	d.loader.loadAll(mods)
	log("coldplug: %d driver(s) for %d device(s) in %.2fs (sysfs scan and lookup %.2fs)", len(mods), len(now), time.Since(t0).Seconds(), scanned.Seconds())
	s.nameVirtioPorts(out)
	d.settle(events, t0, s.maxWait(), DefaultQuiet)
	d.booted = true
	if ready != nil {
		fmt.Fprintln(ready, "ready")
		ready.Close()
	}
	if mods := d.loader.fresh(a.Modules(later)); len(mods) > 0 {
		go func() {
			t := time.Now()
			if err := s.LoadIdle(mods); err != nil {
				log("%v", err)
			}
			log("after the boot: %d driver(s) for %d device(s), %.0fs later, once Docker answered", len(mods), len(later), time.Since(t).Seconds())
		}()
	}
	for {
		select {
		case e, ok := <-events:
			if !ok {
				return errors.New("uevent socket closed")
			}
			d.handle(e)
		case <-overflow:
			log("uevents were lost; loading drivers for every device again")
			d.loader.loadAll(a.Modules(s.modaliases()))
			s.nameVirtioPorts(out)
		}
	}
}

// deferredBuses are the modalias prefixes whose drivers wait until storage
// has settled and then for Docker's API (modprobeIdle): CPU features
// (crypto acceleration; the btrfs module asks for its crc32c by itself),
// input devices and PS/2 ports, and virtio's entropy source. None carries
// a disk or a NIC, and their loads (crypto self-tests, the entropy
// source's first read) held the boot up by about 3 s under TCG.
var deferredBuses = []string{"cpu:", "input:", "serio:", "virtio:d00000004v"}

// splitDeferred splits the modaliases present into those whose drivers
// load before storage settles and those that can wait (deferredBuses).
func splitDeferred(modaliases []string) (now, later []string) {
	for _, m := range modaliases {
		if slices.ContainsFunc(deferredBuses, func(p string) bool { return strings.HasPrefix(m, p) }) {
			later = append(later, m)
		} else {
			now = append(now, m)
		}
	}
	return now, later
}

// dispatcher acts on uevents.
type dispatcher struct {
	System
	aliases *modalias.Aliases
	loader  *loader
	log     func(string, ...any)
	booted  bool            // coldplug and settle are over: S40network handles the NICs present
	late    map[string]bool // devices already reported late or queued to join
	// joins feeds the joiner (queueJoin); quiet, when set, replaces joinQuiet.
	joins    chan string
	joinOnce sync.Once
	quiet    time.Duration
}

// settle waits for storage (see settle.go), handling events meanwhile.
func (d *dispatcher) settle(events <-chan Event, t0 time.Time, max, quiet time.Duration) {
	st := settleState{start: time.Now(), quiet: quiet, max: max}
	// Events queued during coldplug: handle them, and note the last one that
	// announced a slow bus.
	for drained := false; !drained; {
		select {
		case e := <-events:
			d.handle(e)
			if slowEvent(e) {
				st.lastEvent = e.At
			}
		default:
			drained = true
		}
	}
	said := ""
	for {
		st.pending = d.Sys.Pending()
		if d.loader.inflight.Load() > 0 {
			st.pending = append(st.pending, "drivers loading")
		}
		done, recheck := decide(time.Now(), st)
		if done {
			switch {
			case len(st.pending) > 0:
				d.log("storage did not settle within %s; going on without: %s (boot with a larger lightwhale.wait= to wait longer)", max, strings.Join(st.pending, ", "))
			case said != "":
				d.log("storage settled after %.1fs", time.Since(t0).Seconds())
			}
			return
		}
		if msg := strings.Join(st.pending, ", "); msg != "" && msg != said {
			d.log("waiting up to %s for storage to settle: %s", max, msg)
			said = msg
		} else if said == "" {
			said = "a quiet period"
			d.log("waiting for storage to settle (a storage bus is still enumerating)")
		}
		select {
		case e, ok := <-events:
			if !ok {
				return
			}
			d.handle(e)
			if storageEvent(e) {
				st.lastEvent = e.At
			}
		case <-time.After(recheck):
		}
	}
}

// handle acts on one uevent.
func (d *dispatcher) handle(e Event) {
	if e.Action == "add" && e.Env["MODALIAS"] != "" {
		if mods := d.loader.loadAsync(d.aliases.Lookup(e.Env["MODALIAS"])); len(mods) > 0 && d.booted {
			d.log("%s: loading %s", e.Env["MODALIAS"], strings.Join(mods, " "))
		}
	}
	switch e.Env["SUBSYSTEM"] {
	case "virtio-ports":
		if e.Action == "add" || e.Action == "change" {
			d.nameVirtioPort(e.Env["DEVNAME"])
		}
	case "net":
		if e.Action == "add" && d.booted {
			d.netAdded(e.Env["INTERFACE"])
		}
	case "block":
		switch {
		case e.Action == "add" && d.booted:
			d.blockAdded(e.Env["DEVNAME"], e.Env["DEVTYPE"])
		case e.Action == "remove":
			delete(d.late, e.Env["DEVNAME"]) // plugged in again, it is looked at again
		}
	}
}

// nameVirtioPorts links every virtio port to /dev/virtio-ports/NAME.
func (s System) nameVirtioPorts(out io.Writer) {
	ports, _ := filepath.Glob(filepath.Join(string(s.Sys), "class/virtio-ports/*"))
	for _, p := range ports {
		if err := s.linkVirtioPort(filepath.Base(p)); err != nil {
			logf(out)("%v", err)
		}
	}
}

func (d *dispatcher) nameVirtioPort(dev string) {
	if err := d.linkVirtioPort(dev); err != nil {
		d.log("%v", err)
	}
}

// linkVirtioPort makes /dev/virtio-ports/NAME -> ../vportNpM, as udev does;
// the guest agent looks for its port by that name. A port whose name the
// host has not sent yet is linked on its "change" event.
func (s System) linkVirtioPort(dev string) error {
	if dev == "" || strings.ContainsAny(dev, "/") {
		return nil
	}
	n := readTrim(filepath.Join(string(s.Sys), "class/virtio-ports", dev, "name"))
	if n == "" || strings.ContainsAny(n, "/") || n == "." || n == ".." {
		return nil
	}
	dir := filepath.Join(s.Dev, "virtio-ports")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	link := filepath.Join(dir, n)
	os.Remove(link)
	if err := os.Symlink("../"+dev, link); err != nil {
		return fmt.Errorf("name virtio port %s: %w", dev, err)
	}
	return nil
}

// netAdded starts DHCP on a wired NIC that appeared after boot (virtual
// links, such as Docker's veths, and wireless ones are left alone, as
// S40network leaves them).
func (d *dispatcher) netAdded(iface string) {
	dir := filepath.Join(string(d.Sys), "class/net", iface)
	if iface == "" || strings.Contains(iface, "/") || !exists(filepath.Join(dir, "device")) ||
		exists(filepath.Join(dir, "wireless")) || exists(filepath.Join(dir, "phy80211")) {
		return
	}
	d.log("network interface %s appeared: starting DHCP", iface)
	go func() {
		if err := d.DHCP(iface); err != nil {
			d.log("%v", err)
		}
	}()
}

// blockAdded acts on a Lightwhale disk that arrived after persistence
// decided. A whole disk with the consent header joins a persistent data
// filesystem (setup-persistence add: its checks, its lock); on a volatile
// machine it is reported, as the claim happens at boot. Our data
// filesystem not mounted is reported too (one already mounted is a RAID
// member coming back, or the partitions a claim or join just made).
func (d *dispatcher) blockAdded(dev, devtype string) {
	if dev == "" || strings.Contains(dev, "/") || d.late[dev] {
		return
	}
	mode, err := os.ReadFile(filepath.Join(d.RunDir, "mode"))
	if err != nil {
		return // persistence has not decided: its own scan sees the disk
	}
	path := filepath.Join(d.Dev, dev)
	head, err := host.Real.ReadAt(path, 0, probe.HeadBytes)
	if err != nil {
		return // an empty card reader, a drive already gone
	}
	what := ""
	switch fs := probe.ParseBtrfs(head); {
	case devtype == "disk" && probe.HasMagic(head) && !probe.IsBootMedium(head):
		if strings.TrimSpace(string(mode)) != "volatile" {
			d.late[dev] = true
			d.queueJoin(path)
			return
		}
		what = "consent header"
	case fs != nil && fs.Label == paths.DataLabel && !exists(filepath.Join(string(d.Sys), "fs/btrfs", fs.FSIDString())):
		what = fmt.Sprintf("btrfs %q %s", fs.Label, fs.FSIDString())
	default:
		return
	}
	d.late[dev] = true
	d.report(latedisk.Line(path, what))
}

// report logs a late disk's line, records it for status, and rewrites the motd.
func (d *dispatcher) report(line string) {
	d.log("%s", line)
	if err := latedisk.Record(d.LateRecord, line); err != nil {
		d.log("%v", err)
	}
	if err := d.Motd(); err != nil {
		d.log("%v", err)
	}
}

// joinQuiet is how long the joiner waits for more disks after one: disks
// plugged in together join in one plan (on a degraded RAID1, one rebuilds
// the missing member and the other adds room).
const joinQuiet = 2 * time.Second

// queueJoin hands a disk to the joiner, started on first use: joins run one
// batch at a time, never holding up the events behind them.
func (d *dispatcher) queueJoin(path string) {
	d.joinOnce.Do(func() {
		d.joins = make(chan string, 64)
		go d.joiner()
	})
	d.joins <- path
}

func (d *dispatcher) joiner() {
	for path := range d.joins {
		batch := []string{path}
		for more := true; more; {
			select {
			case p := <-d.joins:
				batch = append(batch, p)
			case <-time.After(d.joinQuiet()):
				more = false
			}
		}
		d.join(batch)
	}
}

func (d *dispatcher) joinQuiet() time.Duration {
	if d.quiet > 0 {
		return d.quiet
	}
	return joinQuiet
}

// join runs setup-persistence add on the disks. add refuses a whole plan
// for one bad disk: then each is tried alone, so a good one still joins and
// each refusal is reported for its own disk.
func (d *dispatcher) join(devs []string) {
	d.log("Lightwhale disk(s) %s with the consent header appeared: joining the data filesystem (setup-persistence add)", strings.Join(devs, " "))
	if d.tryJoin(devs) != nil && len(devs) > 1 {
		for _, p := range devs {
			d.tryJoin([]string{p})
		}
	}
	if err := d.Motd(); err != nil {
		d.log("%v", err)
	}
}

func (d *dispatcher) tryJoin(devs []string) error {
	out, err := d.Join(devs)
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l != "" {
			d.log("%s", l)
		}
	}
	if err != nil && len(devs) == 1 {
		d.report(latedisk.NotJoined(devs[0], joinRefusal(out, err)))
	}
	return err
}

// joinRefusal is add's reason, one line: its refusal for the disk, else its
// last line, else the error.
func joinRefusal(out string, err error) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, l := range lines {
		if _, why, ok := strings.Cut(l, " not joined: "); ok {
			return why
		}
	}
	if l := strings.TrimSpace(lines[len(lines)-1]); l != "" {
		return l
	}
	return err.Error()
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
