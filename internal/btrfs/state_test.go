package btrfs

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Outputs of btrfs-progs 6.2, copied from a degraded RAID1 and from running
// operations.
const showDegraded = `Label: 'lightwhale-data'  uuid: d2aca165-23f0-48dd-a1d0-120adf0b04b6
	Total devices 2 FS bytes used 52641792
	devid    1 size 536870912 used 129171456 path /dev/loop0p2
	devid    2 size 0 used 0 path  MISSING

`

const dfMixed = `Data, RAID1: total=67108864, used=52428800
Data, single: total=8388608, used=4096
System, RAID1: total=8388608, used=16384
Metadata, RAID1: total=53673984, used=196608
GlobalReserve, single: total=5767168, used=0
`

func TestParseShow(t *testing.T) {
	fsid, devs := ParseShow(showDegraded)
	if fsid != "d2aca165-23f0-48dd-a1d0-120adf0b04b6" {
		t.Errorf("fsid %q", fsid)
	}
	want := []Device{{DevID: 1, Path: "/dev/loop0p2", Size: 536870912}, {DevID: 2, Missing: true}}
	if diff := cmp.Diff(want, devs); diff != "" {
		t.Error(diff)
	}
	_, devs = ParseShow("\tdevid    3 size 0 used 0 path <missing disk> \n")
	if len(devs) != 1 || !devs[0].Missing {
		t.Errorf("older missing form: %+v", devs)
	}
}

func TestParseDf(t *testing.T) {
	data, meta, used := ParseDf(dfMixed)
	if diff := cmp.Diff([]string{"raid1", "single"}, data); diff != "" {
		t.Error(diff)
	}
	if diff := cmp.Diff([]string{"raid1"}, meta); diff != "" {
		t.Error(diff)
	}
	if used != 52428800+4096+16384+196608 {
		t.Errorf("used %d", used)
	}
}

func TestFits(t *testing.T) {
	const G = 1 << 30
	for _, tt := range []struct {
		sizes  []uint64
		used   uint64
		copies int
		want   bool
	}{
		{[]uint64{10 * G}, 5 * G, 1, true},
		{[]uint64{10 * G, 4 * G}, 5 * G, 2, false}, // the second cannot hold a full copy
		{[]uint64{10 * G, 5 * G}, 5 * G, 2, true},
		{[]uint64{3 * G, 3 * G, 3 * G}, 4 * G, 2, true}, // 9 G of room for 8 G
		{[]uint64{3 * G, 3 * G, 1 * G}, 4 * G, 2, false},
		{[]uint64{100 * G}, 1 * G, 2, false}, // two copies need two devices
	} {
		if got := Fits(tt.sizes, tt.used, tt.copies); got != tt.want {
			t.Errorf("Fits(%v, %d, %d) = %v", tt.sizes, tt.used, tt.copies, got)
		}
	}
}

func TestMinDevices(t *testing.T) {
	// The claim's rule and the minimum agree: Profile(n) is writable on n devices.
	for n := 1; n <= 5; n++ {
		d, m := Profile(n)
		if MinDevices(d) > n || MinDevices(m) > n {
			t.Errorf("Profile(%d) = %s/%s needs more than %d devices", n, d, m, n)
		}
	}
}

func TestParseProgress(t *testing.T) {
	b := ParseBalance("Balance on '/mnt/lightwhale-data' is running\n3 out of about 10 chunks balanced (4 considered),  70% left\n")
	if !b.Running || b.Percent != 30 {
		t.Errorf("balance %+v", b)
	}
	if b := ParseBalance("No balance found on '/mnt/lightwhale-data'\n"); b.Running {
		t.Errorf("idle balance %+v", b)
	}
	r := ParseReplace("\r 42.5% done, 0 write errs, 0 uncorr. read errs")
	if !r.Running || r.Percent != 42.5 {
		t.Errorf("replace %+v", r)
	}
	for _, idle := range []string{"Never started\n", "Started on 30.Nov 22:19:35, finished on 30.Nov 22:19:35, 0 write errs, 0 uncorr. read errs\n"} {
		if r := ParseReplace(idle); r.Running {
			t.Errorf("idle replace %q: %+v", idle, r)
		}
	}
	s := ParseScrub(`UUID:             d2aca165-23f0-48dd-a1d0-120adf0b04b6
Scrub started:    Mon Nov 30 22:19:39 2026
Status:           running
Duration:         0:00:10
Time left:        0:00:20
ETA:              Mon Nov 30 22:20:09 2026
Total to scrub:   300.00MiB
Bytes scrubbed:   100.00MiB  (33.33%)
Rate:             10.00MiB/s
Error summary:    no errors found
`)
	if !s.Running || s.Percent != 33.33 || s.Left != "0:00:20" || s.Text != "running; no errors found" {
		t.Errorf("scrub %+v", s)
	}
}
