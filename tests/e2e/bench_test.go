package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"lightwhale/tests/vm"
)

// readyRE is the line setup-persistence prints when it is done at boot.
var readyRE = regexp.MustCompile(`setup-persistence: mode (\w+), ready in ([0-9.]+)s`)

// stage1RE is stage 1's last line (applets/stage1/stage1.go), with the
// guest's uptime.
var stage1RE = regexp.MustCompile(`lightwhale stage 1: root squashfs mounted from \S+, starting \S+ at ([0-9.]+) s uptime`)

// kernelBanner is the kernel's first console line.
const kernelBanner = "Linux version"

// persistenceReady returns the mode and seconds setup-persistence reported
// on the console of the current boot.
func persistenceReady(g *guest) (string, float64, error) {
	m := readyRE.FindStringSubmatch(g.BootLog())
	if m == nil {
		return "", 0, fmt.Errorf("no %q line on the console", "setup-persistence: mode ..., ready in ...s")
	}
	s, err := strconv.ParseFloat(m[2], 64)
	return m[1], s, err
}

// dockerReadyAt waits until dockerd answers /_ping and returns the guest's
// uptime read right after (one SSH round trip later).
func dockerReadyAt(g *guest, within time.Duration) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	if err := g.WaitDocker(ctx); err != nil {
		return 0, err
	}
	return g.Uptime(ctx)
}

// firstRunScript imports the busybox image, runs one container to its end,
// and prints the guest's uptime before the run and after it: the import
// (some 400 forks for the applet links) is the test's own set-up, which a
// user pulling an image does not pay on this clock.
var firstRunScript = busyboxImageScript("") + "\ncat /proc/uptime\n" + benchRun + "\ncat /proc/uptime"

// benchRun is the container the bench runs: busybox's true, removed after.
const benchRun = "docker run --rm " + bbImage + " /bin/busybox true"

// firstRunAt runs the first container and returns the guest's uptime when
// it has finished and the seconds the run alone took.
func firstRunAt(g *guest) (done, run float64, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := g.Run(ctx, firstRunScript)
	if err != nil {
		return 0, 0, err
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 {
		return 0, 0, fmt.Errorf("first run printed %q, want two uptimes", out)
	}
	start, err := vm.ParseUptime(lines[len(lines)-2])
	if err != nil {
		return 0, 0, err
	}
	done, err = vm.ParseUptime(lines[len(lines)-1])
	return done, done - start, err
}

// warmRuns is how many containers warmRunSeconds runs after the first.
const warmRuns = 3

// warmRunScript runs warmRuns containers, the uptime printed around each.
var warmRunScript = "set -e\ncat /proc/uptime" + strings.Repeat("\n"+benchRun+"\ncat /proc/uptime", warmRuns)

// warmRunSeconds returns the seconds each of the warm runs took: what a
// `docker run --rm` costs once the first run has read the stack's programs
// from the root image.
func warmRunSeconds(g *guest) ([]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := g.Run(ctx, warmRunScript)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != warmRuns+1 {
		return nil, fmt.Errorf("warm runs printed %q, want %d uptimes", out, warmRuns+1)
	}
	var secs []float64
	prev := 0.0
	for i, l := range lines {
		up, err := vm.ParseUptime(l)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			secs = append(secs, up-prev)
		}
		prev = up
	}
	return secs, nil
}

// memUsedMiB is MemTotal - MemAvailable of the guest, in MiB.
func memUsedMiB(g *guest) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := g.Run(ctx, "cat /proc/meminfo")
	if err != nil {
		return 0, err
	}
	return parseMemUsed(out)
}

func parseMemUsed(meminfo string) (float64, error) {
	kib := map[string]float64{}
	for _, l := range strings.Split(meminfo, "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 {
			v, err := strconv.ParseFloat(f[1], 64)
			if err == nil {
				kib[strings.TrimSuffix(f[0], ":")] = v
			}
		}
	}
	total, ok1 := kib["MemTotal"]
	avail, ok2 := kib["MemAvailable"]
	if !ok1 || !ok2 {
		return 0, fmt.Errorf("meminfo without MemTotal and MemAvailable:\n%s", meminfo)
	}
	return (total - avail) / 1024, nil
}

// reachesDockerRun reports whether a guest with memMiB of RAM boots far
// enough to run a container.
func reachesDockerRun(b *testing.B, iso string, memMiB int) error {
	g, err := startGuest(b, vm.Config{ISO: iso, MemMiB: memMiB, Name: fmt.Sprintf("mem-%d", memMiB)}, 5*time.Minute)
	if err != nil {
		return err
	}
	defer g.Kill()
	if _, err := dockerReadyAt(g, dockerTimeout); err != nil {
		return err
	}
	if _, _, err = firstRunAt(g); err != nil {
		return err
	}
	// And it still runs one with the root image in RAM.
	if err := copiedIntoRAM(g); err != nil {
		return err
	}
	_, err = warmRunSeconds(g)
	return err
}

// copiedIntoRAM waits until stage 1 says the root image is in RAM.
func copiedIntoRAM(g *guest) error {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	return g.WaitSerial(ctx, inRAM)
}

// smallestMem searches, by bisection to step MiB, the smallest -m between
// lo (taken as too small) and hi (known to work) at which the ISO boots and
// runs a container. It returns the tries in order.
func smallestMem(lo, hi, step int, works func(int) error) (int, []memTry) {
	var tries []memTry
	for hi-lo > step {
		mid := (lo + hi) / 2 / step * step
		if mid <= lo {
			mid = lo + step
		}
		err := works(mid)
		t := memTry{MiB: mid, OK: err == nil}
		if err != nil {
			t.Why = firstLineOf(err.Error())
			lo = mid
		} else {
			hi = mid
		}
		tries = append(tries, t)
	}
	return hi, tries
}

type memTry struct {
	MiB int    `json:"mib"`
	OK  bool   `json:"ok"`
	Why string `json:"why,omitempty"`
}

// claimSeconds boots with n magic disks and returns setup-persistence's own
// figure for the boot that claims them.
func claimSeconds(b *testing.B, iso string, n int) (float64, error) {
	var disks []vm.Disk
	dir := b.TempDir()
	for i := range n {
		p := filepath.Join(dir, fmt.Sprintf("claim%d.img", i))
		if err := vm.NewMagicDisk(p, diskMiB); err != nil {
			return 0, err
		}
		disks = append(disks, vm.Disk{Path: p})
	}
	g, err := startGuest(b, vm.Config{ISO: iso, Disks: disks, Name: fmt.Sprintf("claim-%d", n)}, bootTimeout)
	if err != nil {
		return 0, err
	}
	defer g.Kill()
	mode, s, err := persistenceReady(g)
	if err != nil {
		return 0, err
	}
	if mode != "persistent" {
		return 0, fmt.Errorf("claim of %d disks: mode %s", n, mode)
	}
	return s, nil
}

// figure is one measured quantity over the boots of a bench run.
type figure struct {
	Name    string    `json:"name"`
	Unit    string    `json:"unit"`
	Clock   string    `json:"clock,omitempty"` // guest (its uptime) or host (wall time since QEMU started)
	Samples []float64 `json:"samples"`
	Median  float64   `json:"median"`
	Min     float64   `json:"min"`
	Max     float64   `json:"max"`
	// RatioToBare is Median over the bare reference boot's median.
	RatioToBare float64 `json:"ratio_to_bare,omitempty"`
	// Span marks the seconds one step took rather than a moment of the
	// boot: it has no ratio to the bare boot.
	Span bool   `json:"span,omitempty"`
	Note string `json:"note,omitempty"`
}

// summarize sets the median, min and max of the samples.
func (f *figure) summarize() {
	if len(f.Samples) == 0 {
		return
	}
	s := slices.Sorted(slices.Values(f.Samples))
	f.Min, f.Max = s[0], s[len(s)-1]
	if n := len(s); n%2 == 1 {
		f.Median = s[n/2]
	} else {
		f.Median = (s[n/2-1] + s[n/2]) / 2
	}
}

// benchReport is what make bench prints and writes to build/bench.json.
type benchReport struct {
	ISO        string         `json:"iso"`
	ISOBytes   int64          `json:"iso_bytes"`
	Accel      string         `json:"accel"`
	QEMU       string         `json:"qemu"`
	HostCPUs   int            `json:"host_cpus"`
	Boots      int            `json:"boots_per_figure"`
	When       time.Time      `json:"when"`
	Figures    []*figure      `json:"figures"`
	Components []vm.Component `json:"components,omitempty"`
	MinMemMiB  int            `json:"min_mem_mib"`
	MemTries   []memTry       `json:"min_mem_tries"`
	Errors     []string       `json:"errors,omitempty"`
}

// benchBoots reads BENCH_N, the boots each boot figure is the median of.
func benchBoots() (int, error) {
	s := os.Getenv("BENCH_N")
	if s == "" {
		return 3, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 15 {
		return 0, fmt.Errorf("BENCH_N=%q: want a number of boots from 1 to 15", s)
	}
	return n, nil
}

// benchBootOnly reads BENCH_ONLY: "boot" measures the bare and reference
// boots only (no disk claims, no memory bisection), to compare two builds
// of the boot path in minutes instead of half an hour.
func benchBootOnly() (bool, error) {
	switch s := os.Getenv("BENCH_ONLY"); s {
	case "":
		return false, nil
	case "boot":
		return true, nil
	default:
		return false, fmt.Errorf("BENCH_ONLY=%q: want boot, or nothing for every figure", s)
	}
}

// referenceBoot boots the ISO as make run does (2 GiB, no disks) and adds
// one sample to each of the boot figures.
func referenceBoot(b *testing.B, iso string, i int, kernel, stage1, ssh, docker, run, runOnly, warm, mem *figure) error {
	g, err := powerOn(b, vm.Config{ISO: iso, Name: fmt.Sprintf("bench-boot-%d", i)})
	if err != nil {
		return err
	}
	defer g.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	if err := g.WaitSerial(ctx, kernelBanner); err != nil {
		return err
	}
	kernel.Samples = append(kernel.Samples, time.Since(g.started).Seconds())
	if err := g.waitUp(bootTimeout); err != nil {
		return err
	}
	sshAt, err := g.Uptime(ctx)
	if err != nil {
		return err
	}
	ssh.Samples = append(ssh.Samples, sshAt)
	if m := stage1RE.FindStringSubmatch(g.BootLog()); m != nil {
		s, _ := strconv.ParseFloat(m[1], 64)
		stage1.Samples = append(stage1.Samples, s)
	}
	dockerAt, err := dockerReadyAt(g, dockerTimeout)
	if err != nil {
		return err
	}
	docker.Samples = append(docker.Samples, dockerAt)
	runAt, runSecs, err := firstRunAt(g)
	if err != nil {
		return err
	}
	run.Samples = append(run.Samples, runAt)
	runOnly.Samples = append(runOnly.Samples, runSecs)
	// Idle means the root image is in RAM too: stage 1 copies it once
	// Docker's API answers, and the copy yields to the first run.
	if err := copiedIntoRAM(g); err != nil {
		return err
	}
	time.Sleep(15 * time.Second) // let dockerd settle to idle
	used, err := memUsedMiB(g)
	if err != nil {
		return err
	}
	mem.Samples = append(mem.Samples, used)
	secs, err := warmRunSeconds(g)
	if err != nil {
		return err
	}
	warm.Samples = append(warm.Samples, secs...)
	return nil
}

// BenchmarkBoot measures, in one invocation on this machine, the figures
// `make bench` reports: each boot figure is the median of BENCH_N boots,
// beside the same kernel's bare boot.
func BenchmarkBoot(b *testing.B) {
	iso := requireISO(b)
	n, err := benchBoots()
	if err != nil {
		b.Fatal(err)
	}
	bootOnly, err := benchBootOnly()
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	st, err := os.Stat(iso)
	if err != nil {
		b.Fatal(err)
	}
	r := &benchReport{ISO: filepath.Base(iso), ISOBytes: st.Size(), Accel: os.Getenv(vm.AccelEnv),
		QEMU: qemuVersion(), HostCPUs: runtimeCPUs(), Boots: n, When: time.Now().UTC()}
	if r.Accel == "" {
		r.Accel = "decided by the harness (LIGHTWHALE_ACCEL unset)"
	}
	fail := func(what string, err error) {
		r.Errors = append(r.Errors, what+": "+firstLineOf(err.Error()))
		b.Errorf("%s: %v", what, err)
	}

	bare := &figure{Name: "bare kernel: init runs", Unit: "s", Clock: "guest", Note: "same kernel, busybox initramfs"}
	kernel := &figure{Name: "ISO: kernel starts", Unit: "s", Clock: "host", Note: "QEMU start to the kernel banner: firmware, GRUB, loading"}
	stage1 := &figure{Name: "ISO: stage 1 done", Unit: "s", Clock: "guest"}
	ssh := &figure{Name: "ISO: SSH answers", Unit: "s", Clock: "guest"}
	docker := &figure{Name: "ISO: Docker API answers", Unit: "s", Clock: "guest", Note: "GET /_ping"}
	run := &figure{Name: "ISO: first docker run done", Unit: "s", Clock: "guest", Note: "image import + run --rm"}
	runOnly := &figure{Name: "first docker run --rm alone", Unit: "s", Clock: "guest", Span: true, Note: "the run without the import"}
	warm := &figure{Name: "docker run --rm, warm", Unit: "s", Clock: "guest", Span: true, Note: "each of 3 runs after the first, all boots"}
	mem := &figure{Name: "memory used, Docker idle", Unit: "MiB", Note: "MemTotal - MemAvailable, -m 2048"}
	claim1 := &figure{Name: "claim 1 disk", Unit: "s", Clock: "guest", Span: true, Note: "setup-persistence 'ready in', 4 GiB virtio"}
	claim2 := &figure{Name: "claim 2 disks", Unit: "s", Clock: "guest", Span: true, Note: "setup-persistence 'ready in', 4 GiB virtio"}
	r.Figures = []*figure{bare, kernel, stage1, ssh, docker, run, runOnly, warm, mem, claim1, claim2}

	for range b.N { // -benchtime 1x: one measured run
		if r.Components, err = vm.ISOBreakdown(iso); err != nil {
			fail("ISO breakdown", err)
		}
		k, err := vm.KernelFromISO(iso, dir)
		if err != nil {
			b.Fatal(err)
		}
		for i := range n {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			s, err := vm.BareBoot(ctx, b, k, b.TempDir())
			cancel()
			if err != nil {
				b.Fatal(err)
			}
			bare.Samples = append(bare.Samples, s)
			if err := referenceBoot(b, iso, i, kernel, stage1, ssh, docker, run, runOnly, warm, mem); err != nil {
				fail(fmt.Sprintf("reference boot %d", i+1), err)
			}
			if bootOnly {
				continue
			}
			for _, c := range []struct {
				disks int
				f     *figure
			}{{1, claim1}, {2, claim2}} {
				s, err := claimSeconds(b, iso, c.disks)
				if err != nil {
					fail(c.f.Name, err)
					continue
				}
				c.f.Samples = append(c.f.Samples, s)
			}
		}
		if len(stage1.Samples) == 0 {
			stage1.Note = "the ISO's stage 1 does not print its uptime"
		}
		if bootOnly {
			break
		}
		// 128 MiB cannot even hold the kernel and the initramfs; 2048 is
		// the reference boot's.
		r.MinMemMiB, r.MemTries = smallestMem(128, 2048, 32, func(mib int) error { return reachesDockerRun(b, iso, mib) })
	}

	for _, f := range r.Figures {
		f.summarize()
		if f.Unit == "s" && f != bare && !f.Span && bare.Median > 0 && f.Median > 0 {
			f.RatioToBare = f.Median / bare.Median
		}
		if len(f.Samples) > 0 {
			b.ReportMetric(f.Median, strings.NewReplacer(" ", "-", ":", "", ",", "").Replace(f.Name)+"-"+f.Unit)
		}
	}
	if r.MinMemMiB > 0 {
		b.ReportMetric(float64(r.MinMemMiB), "min-mem-MiB")
	}
	printReport(r)
	if out := os.Getenv("LIGHTWHALE_BENCH_JSON"); out != "" {
		j, _ := json.MarshalIndent(r, "", "  ")
		if err := os.WriteFile(out, append(j, '\n'), 0o644); err != nil {
			b.Fatal(err)
		}
		fmt.Printf("written to %s\n", out)
	}
}

func printReport(r *benchReport) {
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "\nLightwhale bench: %s, QEMU %s, accelerator %s, %d host CPUs, median of %d boots\n",
		r.ISO, r.QEMU, r.Accel, r.HostCPUs, r.Boots)
	fmt.Fprintln(w, "figure\tmedian\tmin\tmax\t× bare\tclock\tnote")
	for _, f := range r.Figures {
		if len(f.Samples) == 0 {
			fmt.Fprintf(w, "%s\t-\t\t\t\t%s\t%s\n", f.Name, f.Clock, f.Note)
			continue
		}
		ratio := ""
		if f.RatioToBare > 0 {
			ratio = fmt.Sprintf("%.1f", f.RatioToBare)
		}
		fmt.Fprintf(w, "%s\t%.2f %s\t%.2f\t%.2f\t%s\t%s\t%s\n", f.Name, f.Median, f.Unit, f.Min, f.Max, ratio, f.Clock, f.Note)
	}
	if r.MinMemMiB > 0 {
		fmt.Fprintf(w, "smallest -m running a container\t%d MiB\t\t\t\t\tbisection:", r.MinMemMiB)
		for _, t := range r.MemTries {
			fmt.Fprintf(w, " %d %s", t.MiB, map[bool]string{true: "ok", false: "no"}[t.OK])
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "\ncomponent\tin ISO\tshare\traw")
	for _, c := range r.Components {
		fmt.Fprintf(w, "%s\t%s\t%.1f%%\t%s\n", c.Name, mib(c.ISOBytes), 100*float64(c.ISOBytes)/float64(r.ISOBytes), mib(c.RawBytes))
	}
	fmt.Fprintf(w, "ISO\t%s\t\t\n", mib(r.ISOBytes))
	for _, e := range r.Errors {
		fmt.Fprintf(w, "error: %s\n", e)
	}
	w.Flush()
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func firstLineOf(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// The bench's arithmetic, without QEMU.
func TestBenchStats(t *testing.T) {
	f := figure{Samples: []float64{9, 1, 5}}
	f.summarize()
	if f.Median != 5 || f.Min != 1 || f.Max != 9 {
		t.Errorf("odd samples: median %v min %v max %v; want 5 1 9", f.Median, f.Min, f.Max)
	}
	f = figure{Samples: []float64{4, 2, 8, 6}}
	f.summarize()
	if f.Median != 5 {
		t.Errorf("even samples: median %v; want 5", f.Median)
	}

	for _, limit := range []int{300, 129, 2000, 777} {
		got, tries := smallestMem(128, 2048, 32, func(m int) error {
			if m < limit {
				return fmt.Errorf("%d too small", m)
			}
			return nil
		})
		if got < limit || got-limit >= 32 || len(tries) > 7 {
			t.Errorf("limit %d: found %d after %d tries; want within 32 MiB above in at most 7", limit, got, len(tries))
		}
	}

	used, err := parseMemUsed("MemTotal:        2000000 kB\nMemFree:          1000 kB\nMemAvailable:    1795200 kB\n")
	if err != nil || used != 200 {
		t.Errorf("mem used %v, %v; want 200 MiB", used, err)
	}
	if _, err := parseMemUsed("MemTotal: 1 kB\n"); err == nil {
		t.Error("meminfo without MemAvailable accepted")
	}

	for v, ok := range map[string]bool{"": true, "1": true, "3": true, "0": false, "x": false, "16": false} {
		t.Setenv("BENCH_N", v)
		if _, err := benchBoots(); (err == nil) != ok {
			t.Errorf("BENCH_N=%q: err %v", v, err)
		}
	}
	for v, want := range map[string]bool{"": false, "boot": true} {
		t.Setenv("BENCH_ONLY", v)
		if got, err := benchBootOnly(); err != nil || got != want {
			t.Errorf("BENCH_ONLY=%q: %v, %v; want %v", v, got, err, want)
		}
	}
	t.Setenv("BENCH_ONLY", "boots")
	if _, err := benchBootOnly(); err == nil || !strings.Contains(err.Error(), `BENCH_ONLY="boots"`) {
		t.Errorf("BENCH_ONLY=boots: err %v; want one naming the value", err)
	}
	if m := stage1RE.FindStringSubmatch("lightwhale stage 1: root squashfs mounted from /dev/loop0, starting /sbin/init at 3.41 s uptime"); m == nil || m[1] != "3.41" {
		t.Errorf("stage 1 line not parsed: %q", m)
	}
}
