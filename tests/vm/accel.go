package vm

import (
	"fmt"
	"os"
)

// Accel is how QEMU executes the guest.
type Accel string

const (
	KVM Accel = "kvm" // hardware virtualisation
	TCG Accel = "tcg" // software emulation: works on any host
)

// args are QEMU's options for a.
func (a Accel) args() ([]string, error) {
	switch a {
	case KVM:
		return []string{"-accel", "kvm", "-cpu", "host"}, nil
	case TCG:
		// "max" exposes the instructions Debian's userland may probe for.
		return []string{"-accel", "tcg", "-cpu", "max"}, nil
	}
	return nil, fmt.Errorf("accelerator %q: want %q or %q", string(a), KVM, TCG)
}

// testAccel is the accelerator for a test machine.
func testAccel(Config) (Accel, error) {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return TCG, nil
	}
	f.Close()
	return KVM, nil
}
