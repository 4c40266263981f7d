package vm

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// probeKernel is a real kernel for probe boots: the stub kernel package or
// the ISO's own.
func probeKernel(t *testing.T) func() (string, error) {
	t.Helper()
	if why := QEMU(); why != "" {
		t.Skip(why)
	}
	if root := os.Getenv("LIGHTWHALE_STUB_KERNEL_ROOT"); root != "" {
		k, _ := stubKernel(t)
		return func() (string, error) { return k, nil }
	}
	if iso := os.Getenv("LIGHTWHALE_ISO"); iso != "" {
		k, err := KernelFromISO(iso, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return func() (string, error) { return k, nil }
	}
	t.Skip("accelerator probe: set LIGHTWHALE_ISO or LIGHTWHALE_STUB_KERNEL_ROOT for a kernel to boot")
	return nil
}

// openableDevice stands in for a /dev/kvm that opens read-write, whether
// or not it can run a guest.
func openableDevice(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "kvm")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestAccelFallsBackToTCG simulates hosts whose KVM device opens but cannot
// run a guest, with the real kernel: QEMU dying at once ("kvm: failed to set
// MSR"), and a guest that never prints (a vCPU that never runs).
func TestAccelFallsBackToTCG(t *testing.T) {
	kernel := probeKernel(t)
	for name, args := range map[string][]string{
		"qemu dies":       {"-accel", "tcg", "-cpu", "no-such-cpu"},
		"guest is silent": {"-accel", "tcg", "-S"},
	} {
		p := Probe{Kernel: kernel, Device: openableDevice(t), Args: args, Timeout: 5 * time.Second, CacheDir: t.TempDir()}
		d, err := DecideAccel(context.Background(), "", p)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %s", name, d)
		if d.Accel != TCG || !strings.Contains(d.Why, "did not boot") {
			t.Errorf("%s: %s; want tcg because the KVM guest did not boot", name, d)
		}
		// The verdict is cached: a second decision does not boot again.
		p.Kernel = func() (string, error) { t.Fatalf("%s: probed again despite the cache", name); return "", nil }
		if d2, err := DecideAccel(context.Background(), "", p); err != nil || d2.Accel != TCG || !strings.HasPrefix(d2.Why, "cached") {
			t.Errorf("%s: second decision %s, %v; want tcg from the cache", name, d2, err)
		}
	}
}

// TestAccelProbeAcceptsABootingGuest proves the probe can say yes: with
// options under which the kernel runs (TCG stands in for a working KVM),
// the verdict is KVM.
func TestAccelProbeAcceptsABootingGuest(t *testing.T) {
	p := Probe{Kernel: probeKernel(t), Device: openableDevice(t), Args: []string{"-accel", "tcg"}, Timeout: 2 * time.Minute}
	d, err := DecideAccel(context.Background(), "", p)
	if err != nil {
		t.Fatal(err)
	}
	if d.Accel != KVM {
		t.Fatalf("%s; want kvm: the probe guest printed its banner", d)
	}
}

func TestAccelDecisionWithoutProbe(t *testing.T) {
	noProbe := func() (string, error) { t.Fatal("probe boot attempted"); return "", nil }
	missing := filepath.Join(t.TempDir(), "no-kvm")
	for _, c := range []struct {
		override string
		device   string
		want     Accel
		why      string
	}{
		{"", missing, TCG, "no usable KVM"},
		{"tcg", "", TCG, AccelEnv},
		{"kvm", missing, KVM, AccelEnv},
	} {
		d, err := DecideAccel(context.Background(), c.override, Probe{Kernel: noProbe, Device: c.device})
		if err != nil || d.Accel != c.want || !strings.Contains(d.Why, c.why) {
			t.Errorf("override %q device %q: %s, %v; want %s (%s)", c.override, c.device, d, err, c.want, c.why)
		}
	}
	for _, bad := range []string{"foo", "KVM", " tcg"} {
		if _, err := DecideAccel(context.Background(), bad, Probe{Kernel: noProbe}); err == nil || !strings.Contains(err.Error(), AccelEnv) {
			t.Errorf("override %q: err = %v; want one naming %s", bad, err, AccelEnv)
		}
	}
}

// A cached verdict for another host kernel or QEMU is not used.
func TestAccelCacheKeyedOnHost(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed: the cache key names its version (make test installs it)")
	}
	dir := t.TempDir()
	stale := `{"accel":"kvm","why":"a KVM guest booted here","key":"linux 0.0-other, QEMU emulator version 1.0"}`
	if err := os.WriteFile(filepath.Join(dir, "accel.json"), []byte(stale), 0o644); err != nil {
		t.Fatal(err)
	}
	probed := false
	p := Probe{Kernel: func() (string, error) { probed = true; return "", os.ErrNotExist },
		Device: openableDevice(t), CacheDir: dir}
	d, err := DecideAccel(context.Background(), "", p)
	if err != nil {
		t.Fatal(err)
	}
	if !probed || d.Accel != TCG {
		t.Fatalf("stale cache: probed %v, %s; want a new probe (failing here: tcg)", probed, d)
	}
}
