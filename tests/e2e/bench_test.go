package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"lightwhale/tests/vm"
)

// readyRE is the line setup-persistence prints when it is done at boot.
var readyRE = regexp.MustCompile(`setup-persistence: mode (\w+), ready in ([0-9.]+)s`)

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
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	_, err = g.Run(ctx, busyboxImageScript("")+"\ndocker run --rm "+bbImage+" /bin/busybox echo container-ran")
	return err
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

// BenchmarkBoot measures, in one run on this machine, the figures `make
// bench` reports, and prints them as one table.
func BenchmarkBoot(b *testing.B) {
	iso := requireISO(b)
	dir := b.TempDir()
	type row struct{ name, value, note string }
	var rows []row
	add := func(name, value, note string) { rows = append(rows, row{name, value, note}) }
	metric := func(v float64, unit string) { b.ReportMetric(v, unit) }

	for range b.N { // -benchtime 1x: one measured run
		st, err := os.Stat(iso)
		if err != nil {
			b.Fatal(err)
		}
		files, err := vm.ISOFiles(iso)
		if err != nil {
			b.Fatal(err)
		}
		bf, err := vm.FindBootFiles(files)
		if err != nil {
			b.Fatal(err)
		}
		kernel, initrd := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd")
		if err := vm.ExtractFromISO(iso, bf.Kernel, kernel); err != nil {
			b.Fatal(err)
		}
		if err := vm.ExtractFromISO(iso, bf.Initrd, initrd); err != nil {
			b.Fatal(err)
		}
		where, sq, err := vm.SquashfsSize(iso, files, initrd)
		if err != nil {
			b.Fatal(err)
		}
		add("ISO size", mib(st.Size()), filepath.Base(iso))
		add("squashfs size", mib(sq), where)
		metric(float64(st.Size())/(1<<20), "iso-MiB")
		metric(float64(sq)/(1<<20), "squashfs-MiB")

		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		bare, err := vm.BareBoot(ctx, b, kernel, dir)
		cancel()
		if err != nil {
			b.Fatal(err)
		}

		// The reference boot of the ISO: 2 GiB, no disks.
		g, err := startGuest(b, vm.Config{ISO: iso, Name: "bench-boot"}, bootTimeout)
		if err != nil {
			b.Fatal(err)
		}
		sshAt, err := g.Uptime(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		dockerAt, err := dockerReadyAt(g, dockerTimeout)
		if err != nil {
			b.Fatal(err)
		}
		_, volatileReady, err := persistenceReady(g)
		if err != nil {
			b.Fatal(err)
		}
		time.Sleep(15 * time.Second) // let dockerd settle to idle
		free := g.run("free -m")
		used := freeUsed(free)
		g.Kill()

		add("bare kernel+busybox: guest s at init", fmt.Sprintf("%.2f", bare), "same kernel, minimal initramfs, console=ttyS0 quiet")
		add("Lightwhale: guest s at SSH ready", fmt.Sprintf("%.2f", sshAt), "/proc/uptime at first SSH login")
		add("Lightwhale: guest s at dockerd ready", fmt.Sprintf("%.2f", dockerAt), "/proc/uptime once GET /_ping answers")
		add("ratio docker-ready / bare init", fmt.Sprintf("%.1fx", dockerAt/bare), "")
		add("setup-persistence at boot (volatile)", fmt.Sprintf("%.2f s", volatileReady), "its own 'ready in' figure")
		add("memory used, dockerd idle", fmt.Sprintf("%d MiB", used), "free -m, 'used', -m 2048")
		metric(bare, "bare-init-s")
		metric(sshAt, "ssh-ready-s")
		metric(dockerAt, "docker-ready-s")
		metric(dockerAt/bare, "ratio")
		metric(float64(used), "mem-used-MiB")

		minMem := 0
		var why []string
		for _, mem := range []int{256, 384, 512, 768} {
			if err := reachesDockerRun(b, iso, mem); err != nil {
				why = append(why, fmt.Sprintf("%d: %s", mem, firstLineOf(err.Error())))
				continue
			}
			minMem = mem
			break
		}
		if minMem == 0 {
			add("smallest -m reaching docker run", "none of 256/384/512/768", strings.Join(why, "; "))
		} else {
			add("smallest -m reaching docker run", fmt.Sprintf("%d MiB", minMem), strings.Join(why, "; "))
			metric(float64(minMem), "min-mem-MiB")
		}

		for _, n := range []int{1, 2} {
			s, err := claimSeconds(b, iso, n)
			if err != nil {
				add(fmt.Sprintf("claim %d disk(s) at first boot", n), "failed", firstLineOf(err.Error()))
				continue
			}
			add(fmt.Sprintf("claim %d disk(s) at first boot", n), fmt.Sprintf("%.2f s", s), "setup-persistence 'ready in', 4 GiB virtio disks")
			metric(s, fmt.Sprintf("claim%d-s", n))
		}
	}

	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "\nLightwhale bench (QEMU %s, %d host CPUs, TCG unless /dev/kvm)\n", qemuVersion(), runtimeCPUs())
	fmt.Fprintln(w, "figure\tvalue\tnote")
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%s\t%s\n", r.name, r.value, r.note)
	}
	w.Flush()
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// freeUsed reads the "used" column of the Mem: row of `free -m`.
func freeUsed(free string) int {
	for _, l := range strings.Split(free, "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == "Mem:" {
			n, _ := strconv.Atoi(f[2])
			return n
		}
	}
	return -1
}

func firstLineOf(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
