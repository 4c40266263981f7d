package vm

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Accel is how QEMU executes the guest.
type Accel string

const (
	KVM Accel = "kvm" // hardware virtualisation
	TCG Accel = "tcg" // software emulation: works on any host
)

// AccelEnv overrides the probe: LIGHTWHALE_ACCEL=kvm or tcg.
const AccelEnv = "LIGHTWHALE_ACCEL"

// ParseAccel reads a LIGHTWHALE_ACCEL value.
func ParseAccel(s string) (Accel, error) {
	switch a := Accel(s); a {
	case KVM, TCG:
		return a, nil
	}
	return "", fmt.Errorf("%s=%q: want %q or %q", AccelEnv, s, KVM, TCG)
}

// args are QEMU's options for a.
func (a Accel) args() ([]string, error) {
	switch a {
	case KVM:
		return []string{"-accel", "kvm", "-cpu", "host"}, nil
	case TCG:
		// "max" exposes the instructions Debian's userland may probe for.
		// One TCG thread for all vCPUs: with a thread per vCPU, a vCPU can
		// run stale code while another patches the kernel's text (6.12
		// under QEMU 7.2 died with "Oops: int3" in a jump label during boot).
		return []string{"-accel", "tcg,thread=single", "-cpu", "max"}, nil
	}
	return nil, fmt.Errorf("accelerator %q: want %q or %q", string(a), KVM, TCG)
}

// Probe decides whether KVM can run a guest here: a /dev/kvm that opens is
// not enough (nested virtualisation without vmx/svm opens it, then QEMU
// dies or the guest prints nothing), so it boots a kernel with KVM and
// waits for the kernel's banner on the serial console.
type Probe struct {
	// Kernel returns the kernel to boot (the ISO's own); called only when a
	// probe boot is needed.
	Kernel func() (string, error)
	// Device is the KVM device that must open read-write; /dev/kvm when empty.
	Device string
	// Args are the candidate's QEMU options; KVM's when nil. Tests point
	// them at an accelerator that fails.
	Args []string
	// Timeout bounds the probe boot; 10 s when zero (a KVM kernel prints its
	// banner within a second).
	Timeout time.Duration
	// CacheDir keeps the verdict, keyed on the host kernel release and the
	// QEMU version; no cache when empty.
	CacheDir string
}

// banner is what the kernel prints first on its console.
const banner = "Linux version"

// Decision is the chosen accelerator and why.
type Decision struct {
	Accel Accel  `json:"accel"`
	Why   string `json:"why"`
	Key   string `json:"key"` // host kernel and QEMU version the verdict holds for
}

func (d Decision) String() string { return fmt.Sprintf("accelerator %s: %s", d.Accel, d.Why) }

// DecideAccel picks the accelerator: the override when set (it must be
// "kvm" or "tcg"), else a cached verdict, else a probe boot's.
func DecideAccel(ctx context.Context, override string, p Probe) (Decision, error) {
	if override != "" {
		a, err := ParseAccel(override)
		if err != nil {
			return Decision{}, err
		}
		return Decision{Accel: a, Why: AccelEnv + " is set"}, nil
	}
	dev := p.Device
	if dev == "" {
		dev = "/dev/kvm"
	}
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return Decision{Accel: TCG, Why: "no usable KVM: " + err.Error()}, nil
	}
	f.Close()

	key, err := accelKey()
	if err != nil {
		return Decision{}, err
	}
	cache := ""
	if p.CacheDir != "" {
		cache = filepath.Join(p.CacheDir, "accel.json")
		var d Decision
		if b, err := os.ReadFile(cache); err == nil && json.Unmarshal(b, &d) == nil && d.Key == key {
			d.Why = "cached in " + cache + ": " + d.Why
			return d, nil
		}
	}
	d := Decision{Accel: KVM, Key: key}
	if err := p.run(ctx); err != nil {
		d.Accel, d.Why = TCG, dev+" opens but a KVM guest did not boot here: "+err.Error()
	} else {
		d.Why = "a KVM guest booted here"
	}
	if cache != "" {
		b, _ := json.Marshal(d)
		if err := os.WriteFile(cache, append(b, '\n'), 0o644); err != nil {
			return d, fmt.Errorf("cache accelerator verdict: %w", err)
		}
	}
	return d, nil
}

// accelKey names what a verdict depends on: the host kernel and QEMU.
func accelKey() (string, error) {
	rel, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "", fmt.Errorf("host kernel release: %w", err)
	}
	out, err := exec.Command("qemu-system-x86_64", "--version").Output()
	if err != nil {
		return "", fmt.Errorf("qemu version: %w", err)
	}
	return "linux " + strings.TrimSpace(string(rel)) + ", " + firstLine(string(out)), nil
}

// run boots the kernel with the candidate's options until the banner shows
// on the serial console, QEMU exits, or the timeout ends.
func (p Probe) run(ctx context.Context) error {
	if p.Kernel == nil {
		return errors.New("no kernel to probe with")
	}
	kernel, err := p.Kernel()
	if err != nil {
		return err
	}
	args := p.Args
	if args == nil {
		args, _ = KVM.args()
	}
	timeout := p.Timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	a := append([]string{"-nodefaults", "-no-user-config", "-display", "none", "-m", "256",
		"-serial", "stdio", "-kernel", kernel, "-append", "console=ttyS0 panic=-1"}, args...)
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", a...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	seen := make(chan bool, 1)
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			if strings.Contains(s.Text(), banner) {
				seen <- true
				_, _ = io.Copy(io.Discard, out)
				return
			}
		}
		seen <- false
	}()
	select {
	case ok := <-seen:
		if ok {
			return nil
		}
		_ = cmd.Wait()
		return fmt.Errorf("qemu exited before the kernel printed %q: %s", banner, firstLine(strings.TrimSpace(stderr.String())))
	case <-ctx.Done():
		return fmt.Errorf("no %q on the serial console within %s", banner, timeout)
	}
}

// KernelFromISO extracts the ISO's kernel into dir.
func KernelFromISO(iso, dir string) (string, error) {
	files, err := ISOFiles(iso)
	if err != nil {
		return "", err
	}
	bf, err := FindBootFiles(files)
	if err != nil {
		return "", err
	}
	dst := filepath.Join(dir, "probe-vmlinuz")
	return dst, ExtractFromISO(iso, bf.Kernel, dst)
}

// The tests' decision is made once per process and printed once.
var (
	accelOnce     sync.Once
	accelDecision Decision
	accelErr      error
)

// testAccel is the accelerator for test machines: LIGHTWHALE_ACCEL (make
// test sets it from one decision for the whole run), else decided here with
// the first machine's kernel, cached beside LIGHTWHALE_ISO.
func testAccel(cfg Config) (Accel, error) {
	accelOnce.Do(func() {
		iso := cfg.ISO
		if iso == "" {
			iso = os.Getenv("LIGHTWHALE_ISO")
		}
		var tmp string
		defer func() {
			if tmp != "" {
				os.RemoveAll(tmp)
			}
		}()
		p := Probe{Kernel: func() (string, error) {
			if cfg.Kernel != "" {
				return cfg.Kernel, nil
			}
			if iso == "" {
				return "", errors.New("no kernel to probe with (set LIGHTWHALE_ISO)")
			}
			var err error
			if tmp, err = os.MkdirTemp("", "lwprobe-"); err != nil {
				return "", err
			}
			return KernelFromISO(iso, tmp)
		}}
		if env := os.Getenv("LIGHTWHALE_ISO"); env != "" {
			p.CacheDir = filepath.Dir(env)
		}
		accelDecision, accelErr = DecideAccel(context.Background(), os.Getenv(AccelEnv), p)
		if accelErr == nil {
			fmt.Fprintf(os.Stderr, "vm: %s\n", accelDecision)
		}
	})
	return accelDecision.Accel, accelErr
}
