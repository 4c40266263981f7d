package latedisk

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRecordRead(t *testing.T) {
	f := filepath.Join(t.TempDir(), "late-disks")
	if got := Read(f); got != nil {
		t.Fatalf("Read of a missing file = %q", got)
	}
	a, b := Line("/dev/sdb", "consent header"), Line("/dev/sdc1", `btrfs "lightwhale-data"`)
	for _, l := range []string{a, b, a} {
		if err := Record(f, l); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff([]string{a, b}, Read(f)); diff != "" {
		t.Errorf("Read (-want +got):\n%s", diff)
	}
	if !strings.Contains(a, "/dev/sdb") || !strings.Contains(a, "reboot") {
		t.Errorf("Line = %q: names neither the disk nor the remedy", a)
	}
	if err := Record(filepath.Join(t.TempDir(), "no", "dir"), a); err == nil {
		t.Error("Record into a missing directory succeeded")
	}
}
