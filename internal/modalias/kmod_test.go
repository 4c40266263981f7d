package modalias

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// realModules finds the ISO kernel's modules (make test lays them out under
// LIGHTWHALE_STUB_KERNEL_ROOT/lib/modules/VERSION), or skips.
func realModules(tb testing.TB) (root, kver string) {
	root = os.Getenv("LIGHTWHALE_STUB_KERNEL_ROOT")
	if root == "" {
		tb.Skip("LIGHTWHALE_STUB_KERNEL_ROOT is not set (make test sets it to the ISO's kernel and modules)")
	}
	vers, _ := filepath.Glob(filepath.Join(root, "lib/modules/*/modules.alias"))
	if len(vers) == 0 {
		tb.Skipf("no lib/modules/*/modules.alias under %s", root)
	}
	return root, filepath.Base(filepath.Dir(vers[0]))
}

// The resolution in Go must agree with kmod's own (modprobe -R) on the
// ISO's real modules.alias, for every device of this machine and a set of
// the buses Lightwhale must drive.
func TestLookupAgreesWithKmod(t *testing.T) {
	root, kver := realModules(t)
	if _, err := exec.LookPath("modprobe"); err != nil {
		t.Skip("modprobe (kmod) is not installed")
	}
	f, err := os.Open(filepath.Join(root, "lib/modules", kver, "modules.alias"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a, err := Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	aliases := Scan("/sys")
	aliases = append(aliases,
		"usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00", // QEMU usb-storage
		"usb:v0BC2p2300d0100dc00dsc00dp00ic08isc06ip62in00", // a UAS drive
		"scsi:t-0x00", "mmc:block",
		"pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02", // QEMU NVMe
		"pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01", // ICH9 AHCI
		"pci:v00001B36d0000000Dsv00001AF4sd00001100bc0Csc03i30", // qemu-xhci
		"pci:v00001B36d00000007sv00001AF4sd00001100bc08sc05i01", // sdhci-pci
		"virtio:d00000008v00001AF4", "virtio:d00000001v00001AF4", "virtio:d00000002v00001AF4",
		"usb:v0B95p1790d0100dcFFdscFFdp00icFFiscFFip00in00", // ASIX AX88179 USB NIC
	)
	checked := 0
	for _, m := range aliases {
		out, err := exec.Command("modprobe", "-d", root, "-S", kver, "-R", m).Output()
		var want []string
		if err == nil {
			want = strings.Fields(string(out))
			sort.Strings(want)
			want = slices.Compact(want) // kmod prints a module once per matching alias
		}
		got := a.Lookup(m)
		if len(got) == 0 {
			got = nil
		}
		// kmod also answers for modules built into the kernel; modules.alias
		// lists only loadable ones, and a built-in needs no loading.
		builtin, _ := os.ReadFile(filepath.Join(root, "lib/modules", kver, "modules.builtin"))
		want = withoutBuiltin(want, string(builtin))
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Lookup(%q) disagrees with modprobe -R (-kmod +ours):\n%s", m, diff)
		}
		checked++
	}
	t.Logf("%d modaliases resolved as kmod does", checked)
}

func withoutBuiltin(mods []string, builtin string) []string {
	var out []string
	for _, m := range mods {
		if !strings.Contains(builtin, "/"+strings.ReplaceAll(m, "_", "-")+".ko") && !strings.Contains(builtin, "/"+m+".ko") {
			out = append(out, m)
		}
	}
	return out
}

// BenchmarkColdplugLookup: parse the ISO's modules.alias and resolve every
// device of this machine, what coldplug does once per boot.
func BenchmarkColdplugLookup(b *testing.B) {
	root, kver := realModules(b)
	data, err := os.ReadFile(filepath.Join(root, "lib/modules", kver, "modules.alias"))
	if err != nil {
		b.Fatal(err)
	}
	aliases := Scan("/sys")
	b.ReportMetric(float64(len(aliases)), "modaliases")
	for b.Loop() {
		a, err := Parse(strings.NewReader(string(data)))
		if err != nil {
			b.Fatal(err)
		}
		a.Modules(aliases)
	}
}
