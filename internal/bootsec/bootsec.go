// Package bootsec reads how the running kernel was booted: by BIOS or UEFI,
// with Secure Boot on or off, and the kernel's lockdown mode.
package bootsec

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// secureBootVar is the UEFI global variable SecureBoot in efivarfs: four
// bytes of attributes, then 1 when the firmware enforces Secure Boot.
const secureBootVar = "firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"

// State is what Read found.
type State struct {
	UEFI bool
	// SecureBoot is "on", "off", or "unknown" (UEFI without efivarfs).
	SecureBoot string
	// Lockdown is the kernel's lockdown mode (none, integrity,
	// confidentiality), or "unknown" without securityfs.
	Lockdown string
}

// Read looks under sys (/sys on a running machine).
func Read(sys string) State {
	s := State{SecureBoot: "off", Lockdown: "unknown"}
	if _, err := os.Stat(filepath.Join(sys, "firmware/efi")); err == nil {
		s.UEFI = true
		s.SecureBoot = "unknown"
		if b, err := os.ReadFile(filepath.Join(sys, secureBootVar)); err == nil && len(b) == 5 {
			s.SecureBoot = map[bool]string{true: "on", false: "off"}[b[4] == 1]
		}
	}
	// "none [integrity] confidentiality": the bracketed one is in effect.
	if b, err := os.ReadFile(filepath.Join(sys, "kernel/security/lockdown")); err == nil {
		for _, f := range strings.Fields(string(b)) {
			if strings.HasPrefix(f, "[") && strings.HasSuffix(f, "]") {
				s.Lockdown = strings.Trim(f, "[]")
			}
		}
	}
	return s
}

// String is the one line `lightwhale version` and the motd print, e.g.
// "UEFI, Secure Boot on, lockdown integrity".
func (s State) String() string {
	if !s.UEFI {
		return "BIOS, no Secure Boot, lockdown " + s.Lockdown
	}
	return fmt.Sprintf("UEFI, Secure Boot %s, lockdown %s", s.SecureBoot, s.Lockdown)
}
