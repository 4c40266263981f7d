package e2e

import (
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Issue 12: stage 1 reads the root image from the boot medium, so it must
// never start another build's: a CD labelled like a Lightwhale ISO whose
// root image is not the one this initramfs was made with is refused, and
// with no other medium the boot stops with one line naming what it refused.
// (The ISO itself as CD, USB stick, disk and with an SD card is in the
// scenarios that boot it.)
func TestStage1RefusesAnotherBuildsImage(t *testing.T) {
	t.Parallel()
	iso := requireISO(t)
	if _, err := exec.LookPath("xorriso"); err != nil {
		t.Skip("xorriso not found (apt-get install xorriso)")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "medium")
	if err := os.MkdirAll(filepath.Join(src, "lightwhale"), 0o755); err != nil {
		t.Fatal(err)
	}
	img := make([]byte, 1<<20)
	rand.Read(img)
	if err := os.WriteFile(filepath.Join(src, "lightwhale", "rootfs.squashfs"), img, 0o644); err != nil {
		t.Fatal(err)
	}
	impostor := filepath.Join(dir, "impostor.iso")
	if b, err := exec.Command("xorriso", "-as", "mkisofs", "-quiet", "-r", "-volid", "LIGHTWHALE_0_0_1", "-o", impostor, src).CombinedOutput(); err != nil {
		t.Fatalf("xorriso: %v\n%s", err, b)
	}

	cfg := kernelBoot(t, iso, "")
	cfg.CDROMs = []string{impostor}
	g, err := startGuest(t, cfg, 3*time.Minute)
	if err == nil {
		g.Kill()
		t.Fatal("the guest booted from another build's root image")
	}
	wantMatch(t, "why the boot stopped", err.Error(),
		`the boot medium was not found in 30s: .*refused: sr0 \(LIGHTWHALE_0_0_1\): another build's root image`)
}
