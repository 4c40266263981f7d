package bootsec

import (
	"os"
	"path/filepath"
	"testing"
)

func write(t *testing.T, root, rel string, data []byte) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRead(t *testing.T) {
	lockdown := []byte("none [integrity] confidentiality\n")
	for _, tc := range []struct {
		name  string
		files map[string][]byte
		want  string
	}{
		{"bios", map[string][]byte{"kernel/security/lockdown": []byte("[none] integrity confidentiality\n")}, "BIOS, no Secure Boot, lockdown none"},
		{"uefi secure boot on", map[string][]byte{secureBootVar: {6, 0, 0, 0, 1}, "kernel/security/lockdown": lockdown}, "UEFI, Secure Boot on, lockdown integrity"},
		{"uefi secure boot off", map[string][]byte{secureBootVar: {6, 0, 0, 0, 0}, "kernel/security/lockdown": []byte("[none] integrity confidentiality\n")}, "UEFI, Secure Boot off, lockdown none"},
		{"uefi without efivarfs or securityfs", map[string][]byte{"firmware/efi/runtime": nil}, "UEFI, Secure Boot unknown, lockdown unknown"},
		{"a truncated variable is not trusted", map[string][]byte{secureBootVar: {6, 0, 0, 0}}, "UEFI, Secure Boot unknown, lockdown unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for rel, data := range tc.files {
				write(t, root, rel, data)
			}
			if got := Read(root).String(); got != tc.want {
				t.Errorf("Read = %q; want %q", got, tc.want)
			}
		})
	}
}
