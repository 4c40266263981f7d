// Command lwqemu boots the ISO for `make run` with the test harness's own
// QEMU command line (vm.Config.Args), and tells make test and make bench
// which accelerator to use, so that all three decide it once and alike.
//
//	lwqemu -iso ISO [-disks N] [-mem MiB] [-ssh PORT] [-http PORT]
//	lwqemu -check [-disks N] [-mem MiB]   validate, then exit
//	lwqemu -accel -iso ISO                print kvm or tcg
//	lwqemu -size -iso ISO                 print the ISO's bytes by component
//
// LIGHTWHALE_ACCEL=kvm|tcg overrides the probe.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"text/tabwriter"

	"lightwhale/tests/vm"
)

// Bounds on what a user may ask for.
const (
	maxDisks = 8
	minMem   = 256 // MiB: less cannot hold the kernel and the root squashfs
	diskMiB  = 8 << 10
)

// request is one validated invocation.
type request struct {
	iso              string
	disks            int
	memMiB           int
	sshPort, httpPrt int
	check, accelOnly bool
	size             bool
	override         string // LIGHTWHALE_ACCEL
}

// parse reads the flags and LIGHTWHALE_ACCEL; every complaint is one line
// naming the make variable the user set.
func parse(args []string, accelEnv string) (request, error) {
	fs := flag.NewFlagSet("lwqemu", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var r request
	var disks, mem string
	fs.StringVar(&r.iso, "iso", "", "the ISO to boot")
	fs.StringVar(&disks, "disks", "0", "persistence disks build/disk-N.img")
	fs.StringVar(&mem, "mem", "2048", "guest RAM in MiB")
	fs.IntVar(&r.sshPort, "ssh", 10022, "host port forwarded to guest port 22")
	fs.IntVar(&r.httpPrt, "http", 10080, "host port forwarded to guest port 80")
	fs.BoolVar(&r.check, "check", false, "validate the request and exit")
	fs.BoolVar(&r.accelOnly, "accel", false, "print the accelerator and exit")
	fs.BoolVar(&r.size, "size", false, "print the ISO's bytes by component and exit")
	if err := fs.Parse(args); err != nil {
		return r, err
	}
	if fs.NArg() > 0 {
		return r, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if r.disks, err = strconv.Atoi(disks); err != nil || r.disks < 0 || r.disks > maxDisks {
		return r, fmt.Errorf("DISKS=%q: want a number of disks from 0 to %d", disks, maxDisks)
	}
	if r.memMiB, err = strconv.Atoi(mem); err != nil || r.memMiB < minMem || r.memMiB > 1<<20 {
		return r, fmt.Errorf("MEM=%q: want the guest's RAM in MiB, from %d to %d", mem, minMem, 1<<20)
	}
	for _, p := range []int{r.sshPort, r.httpPrt} {
		if p < 1 || p > 65535 {
			return r, fmt.Errorf("port %d: want 1-65535", p)
		}
	}
	if accelEnv != "" {
		if _, err := vm.ParseAccel(accelEnv); err != nil {
			return r, err
		}
	}
	r.override = accelEnv
	if !r.check && r.iso == "" {
		return r, errors.New("-iso is required")
	}
	return r, nil
}

func main() {
	r, err := parse(os.Args[1:], os.Getenv(vm.AccelEnv))
	if err != nil {
		fail(err)
	}
	if r.check {
		return
	}
	if _, err := os.Stat(r.iso); err != nil {
		fail(err)
	}
	if r.size {
		if err := printSize(os.Stdout, r.iso); err != nil {
			fail(err)
		}
		return
	}
	build := filepath.Dir(r.iso)
	d, err := decide(r.iso, r.override, build)
	if err != nil {
		fail(err)
	}
	fmt.Fprintf(os.Stderr, "lwqemu: %s\n", d)
	if r.accelOnly {
		fmt.Println(d.Accel)
		return
	}

	cfg := vm.Config{Name: "run", ISO: r.iso, MemMiB: r.memMiB}
	for n := 1; n <= r.disks; n++ {
		img := filepath.Join(build, fmt.Sprintf("disk-%d.img", n))
		if _, err := os.Stat(img); errors.Is(err, os.ErrNotExist) {
			if err := vm.NewMagicDisk(img, diskMiB); err != nil {
				fail(err)
			}
			fmt.Fprintf(os.Stderr, "lwqemu: made %s (8 GiB sparse, magic header: claimed for persistence at boot)\n", img)
		}
		cfg.Disks = append(cfg.Disks, vm.Disk{Path: img})
	}
	args, err := cfg.Args(vm.Host{SSHPort: r.sshPort, HTTPPort: r.httpPrt, RunDir: build, Accel: d.Accel})
	if err != nil {
		fail(err)
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		fail(errors.New(vm.QEMU()))
	}
	fmt.Fprintf(os.Stderr, "lwqemu: %d MiB, %d disk(s); ssh -p %d op@127.0.0.1, http://127.0.0.1:%d; monitor %s; Ctrl-A X quits\n",
		r.memMiB, r.disks, r.sshPort, r.httpPrt, vm.MonitorSocket(build))
	// The terminal belongs to QEMU's serial console from here on.
	fail(syscall.Exec(qemu, append([]string{"qemu-system-x86_64"}, args...), os.Environ()))
}

// decide makes the accelerator decision with the ISO's own kernel, cached
// in build.
func decide(iso, override, build string) (vm.Decision, error) {
	tmp, err := os.MkdirTemp("", "lwprobe-")
	if err != nil {
		return vm.Decision{}, err
	}
	defer os.RemoveAll(tmp)
	p := vm.Probe{CacheDir: build, Kernel: func() (string, error) { return vm.KernelFromISO(iso, tmp) }}
	return vm.DecideAccel(context.Background(), override, p)
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "lwqemu: %v\n", err)
	os.Exit(2)
}

// printSize prints the ISO's bytes by component, as make bench reports
// them (vm.ISOBreakdown), from the build tree beside the ISO.
func printSize(w io.Writer, iso string) error {
	st, err := os.Stat(iso)
	if err != nil {
		return err
	}
	comps, err := vm.ISOBreakdown(iso)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "component\tin ISO\tshare\traw")
	for _, c := range comps {
		fmt.Fprintf(tw, "%s\t%.1f MiB\t%.1f%%\t%.1f MiB\n", c.Name, mb(c.ISOBytes), 100*float64(c.ISOBytes)/float64(st.Size()), mb(c.RawBytes))
	}
	fmt.Fprintf(tw, "ISO\t%.1f MiB\t\t\n", mb(st.Size()))
	return tw.Flush()
}

func mb(n int64) float64 { return float64(n) / (1 << 20) }
