package host

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

func TestPartitionName(t *testing.T) {
	for _, tt := range []struct {
		disk string
		n    int
		want string
	}{
		{"sda", 1, "sda1"},
		{"sdab", 12, "sdab12"},
		{"vda", 2, "vda2"},
		{"nvme0n1", 1, "nvme0n1p1"},
		{"mmcblk0", 1, "mmcblk0p1"},
		{"loop7", 2, "loop7p2"},
	} {
		if got := PartitionName(tt.disk, tt.n); got != tt.want {
			t.Errorf("PartitionName(%q, %d) = %q, want %q", tt.disk, tt.n, got, tt.want)
		}
	}
	if got := PartitionPath("/dev/nvme0n1", 2); got != "/dev/nvme0n1p2" {
		t.Errorf("PartitionPath = %q", got)
	}
}

func TestParseMountinfo(t *testing.T) {
	in := `22 1 0:21 / /proc rw,nosuid shared:5 - proc proc rw
97 29 8:18 /@lightwhale-data /mnt/lightwhale-data rw,noatime shared:1 master:2 - btrfs /dev/sdb2 rw,degraded,space_cache=v2,subvolid=256
98 97 259:3 / /mnt/with\040space rw - ext4 /dev/nvme0n1p3 rw
garbage line
`
	got, err := ParseMountinfo(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Mount{
		{Dev: unix.Mkdev(0, 21), Root: "/", Point: "/proc", FSType: "proc", Source: "proc", Options: "rw,nosuid", SuperOptions: "rw"},
		{Dev: unix.Mkdev(8, 18), Root: "/@lightwhale-data", Point: "/mnt/lightwhale-data", FSType: "btrfs", Source: "/dev/sdb2", Options: "rw,noatime", SuperOptions: "rw,degraded,space_cache=v2,subvolid=256"},
		{Dev: unix.Mkdev(259, 3), Root: "/", Point: "/mnt/with space", FSType: "ext4", Source: "/dev/nvme0n1p3", Options: "rw", SuperOptions: "rw"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestParseSwaps(t *testing.T) {
	in := "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n" +
		"/dev/sda1                               partition\t524284\t\t0\t\t-2\n" +
		"/swap\\040file                           file\t\t1048572\t\t0\t\t-3\n"
	devs := map[string]uint64{"/dev/sda1": unix.Mkdev(8, 1)}
	got := ParseSwaps([]byte(in), func(p string) (uint64, error) {
		if d, ok := devs[p]; ok {
			return d, nil
		}
		return 0, errors.New("no such node")
	})
	want := []Swap{{Path: "/dev/sda1", Dev: unix.Mkdev(8, 1)}, {Path: "/swap file"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// Disks never lists the kinds that are not user storage. zram0 matters:
// S62zram makes it after the boot's claim, while the hotplug daemon
// watches for disks that arrive late.
func TestDisksSkipsNonStorage(t *testing.T) {
	sys := t.TempDir()
	for name, size := range map[string]string{"vda": "8388608", "zram0": "2018944", "loop0": "245760", "sr0": "291300", "vdb": "0"} {
		if err := os.MkdirAll(filepath.Join(sys, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sys, name, "size"), []byte(size+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	disks, err := Linux{SysBlock: sys, Dev: "/dev"}.Disks()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range disks {
		names = append(names, d.Name)
	}
	if strings.Join(names, " ") != "vda" {
		t.Errorf("Disks() = %v; want [vda] (zram, loop and optical devices and empty disks are never user storage)", names)
	}
}
