package osversion

import (
	"strings"
	"testing"
	"time"
)

func TestCompare(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"0.1.0", "0.2.0", -1},
		{"0.10.0", "0.9.9", 1},
		{"1.2", "1.2.0", 0},
		{"1.2.0-rc1", "1.2.0", -1},
		{"1.2.0-rc2", "1.2.0-rc1", 1},
		{"dev", "0.0.1", -1},
		{"0.0.1", "dev", 1},
		{"2.0.0", "2.0.0", 0},
	} {
		if got := Compare(c.a, c.b); got != c.want {
			t.Errorf("Compare(%q, %q) = %d; want %d", c.a, c.b, got, c.want)
		}
	}
}

func TestCheckVersionRefusesWhatIsNotAVersion(t *testing.T) {
	for _, v := range []string{"", "../etc", "1.2.3/x", "1.2.3 ", "a.b", "1..2", "-1", "1.2.3-", strings.Repeat("1.", 10) + "1", "1.2.3-" + strings.Repeat("x", 40)} {
		if CheckVersion(v) == nil {
			t.Errorf("CheckVersion(%q) = nil; want an error", v)
		}
	}
	for _, v := range []string{"0.1.0", "1", "2026.11.1-rc.2"} {
		if err := CheckVersion(v); err != nil {
			t.Errorf("CheckVersion(%q) = %v", v, err)
		}
	}
}

// One upgrade's life: installed as a trial, tried within its boots, then
// either good, or abandoned with the state rolled back.
func TestTrialBecomesGood(t *testing.T) {
	var s State
	s.Install(Version{Version: "0.2.0", From: "0.1.0", Snapshot: "auto-before-upgrade"}, "0.1.0")
	d := s.AtBoot("0.1.0", true)
	if d.Run != "0.2.0" || d.Abandoned != "" {
		t.Fatalf("first boot after the upgrade: %+v; want a switch to 0.2.0", d)
	}
	// The trial boot itself goes on.
	if d := s.AtBoot("0.2.0", false); d != (Decision{}) {
		t.Fatalf("the trial's own boot decided %+v; want nothing", d)
	}
	if !s.Healthy("0.2.0") || s.Find("0.2.0").Status != Good {
		t.Fatalf("healthy trial: %+v", s.Find("0.2.0"))
	}
	// From now on every boot of the medium runs the good version.
	for i := 0; i < 3; i++ {
		if d := s.AtBoot("0.1.0", true); d.Run != "0.2.0" {
			t.Fatalf("boot %d: %+v; want 0.2.0", i, d)
		}
		s.Arrived("0.2.0")
	}
	// A medium newer than every installed version wins.
	if d := s.AtBoot("0.3.0", true); d.Run != "" {
		t.Fatalf("newer medium: %+v; want no switch", d)
	}
}

func TestTrialAbandoned(t *testing.T) {
	var s State
	s.Install(Version{Version: "0.2.0", From: "0.1.0"}, "0.1.0")
	s.Healthy("0.2.0")
	s.Install(Version{Version: "0.3.0", From: "0.2.0", Snapshot: "auto-before-upgrade-0.3.0", MaxTrials: 2}, "0.2.0")
	for i := 1; i <= 2; i++ {
		d := s.AtBoot("0.1.0", true)
		if d.Run != "0.3.0" || !strings.Contains(d.Why, "trial boot") {
			t.Fatalf("trial boot %d: %+v", i, d)
		}
		// ... and 0.3.0 never says it is healthy.
	}
	d := s.AtBoot("0.1.0", true)
	if d.Abandoned != "0.3.0" || d.Rollback != "auto-before-upgrade-0.3.0" || d.Run != "0.2.0" {
		t.Fatalf("after the trial boots: %+v; want 0.3.0 abandoned, state rolled back, 0.2.0 run", d)
	}
	if v := s.Find("0.3.0"); v.Status != Bad || !strings.Contains(v.Reason, "2 trial boot") {
		t.Fatalf("abandoned trial: %+v", v)
	}
	if !strings.Contains(s.Notice, "upgrade to 0.3.0 abandoned") {
		t.Fatalf("notice %q", s.Notice)
	}
	// Abandoned once: the next boots do not roll back again.
	if d := s.AtBoot("0.1.0", true); d.Rollback != "" || d.Abandoned != "" || d.Run != "0.2.0" {
		t.Fatalf("boot after the abandon: %+v", d)
	}
	if n := s.Next("0.1.0"); n != "0.2.0" {
		t.Fatalf("Next = %s", n)
	}
}

func TestInstallKeepsTwo(t *testing.T) {
	var s State
	s.Install(Version{Version: "0.2.0"}, "0.1.0")
	s.Healthy("0.2.0")
	s.Install(Version{Version: "0.3.0"}, "0.2.0")
	s.Healthy("0.3.0")
	// Running 0.3.0: 0.2.0 goes, 0.3.0 (running) stays.
	rm := s.Install(Version{Version: "0.4.0"}, "0.3.0")
	if strings.Join(rm, ",") != "0.2.0" {
		t.Fatalf("removed %v; want 0.2.0", rm)
	}
	// A second upgrade before the trial was tried replaces the trial.
	rm = s.Install(Version{Version: "0.5.0"}, "0.3.0")
	if strings.Join(rm, ",") != "0.4.0" || len(s.Versions) != 2 || s.Find("0.3.0") == nil {
		t.Fatalf("removed %v, left %+v", rm, s.Versions)
	}
}

func TestRollbackOS(t *testing.T) {
	var s State
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	if _, err := s.RollbackOS("0.1.0", now); err == nil {
		t.Fatal("rollback-os with nothing installed: no error")
	}
	s.Install(Version{Version: "0.2.0"}, "0.1.0")
	s.Healthy("0.2.0")
	got, err := s.RollbackOS("0.2.0", now)
	if err != nil || got != "0.2.0" || s.Next("0.1.0") != "0.1.0" {
		t.Fatalf("rollback-os: %s %v; next %s", got, err, s.Next("0.1.0"))
	}
	// A pending trial is cancelled from the medium's version.
	s.Install(Version{Version: "0.3.0"}, "0.1.0")
	if got, err := s.RollbackOS("0.1.0", now); err != nil || got != "0.3.0" || s.Next("0.1.0") != "0.1.0" {
		t.Fatalf("rollback-os of a pending trial: %s %v", got, err)
	}
}

func TestSaveLoad(t *testing.T) {
	dir := t.TempDir()
	if s, err := Load(dir); err != nil || len(s.Versions) != 0 {
		t.Fatalf("empty: %+v %v", s, err)
	}
	var s State
	s.Install(Version{Version: "0.2.0", From: "0.1.0", Snapshot: "x"}, "0.1.0")
	if err := s.Save(dir); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dir)
	if err != nil || got.Find("0.2.0") == nil || got.Find("0.2.0").Snapshot != "x" || got.Find("0.2.0").MaxTrials != DefaultTrialBoots {
		t.Fatalf("loaded %+v %v", got, err)
	}
}

// A good version whose boots stop arriving (its files damaged) is given
// up after MaxUnarrived switches: no boot loop through it.
func TestGoodVersionThatStopsBooting(t *testing.T) {
	var s State
	s.Install(Version{Version: "0.2.0"}, "0.1.0")
	if d := s.AtBoot("0.1.0", true); d.Run != "0.2.0" {
		t.Fatal(d)
	}
	s.Arrived("0.2.0")
	s.Healthy("0.2.0")
	for i := 0; i < MaxUnarrived; i++ {
		if d := s.AtBoot("0.1.0", true); d.Run != "0.2.0" {
			t.Fatalf("switch %d: %+v", i, d)
		}
		// ... and 0.2.0 never arrives.
	}
	d := s.AtBoot("0.1.0", true)
	if d.Run != "" || !strings.Contains(d.Why, "did not boot") || s.Find("0.2.0").Status != Bad {
		t.Fatalf("after %d switches that did not arrive: %+v %+v", MaxUnarrived, d, s.Find("0.2.0"))
	}
}

func TestImageFromCmdline(t *testing.T) {
	for _, c := range []struct {
		line, fsid, path string
		ok               bool
	}{
		{"console=ttyS0 panic=10", "", "", false},
		{"console=ttyS0 lightwhale.image=abc:lightwhale-os/versions/0.2.0/rootfs.squashfs", "abc", "lightwhale-os/versions/0.2.0/rootfs.squashfs", true},
		{"lightwhale.image=abc:../../etc/x", "abc", "etc/x", true}, // cleaned under the data subvolume
		{"lightwhale.image=abc", "", "", false},
		{"lightwhale.image=:x", "", "", false},
		{"-- lightwhale.image=abc:x", "", "", false},
	} {
		fsid, path, ok := ImageFromCmdline(c.line)
		if fsid != c.fsid || path != c.path || ok != c.ok {
			t.Errorf("ImageFromCmdline(%q) = %q %q %v; want %q %q %v", c.line, fsid, path, ok, c.fsid, c.path, c.ok)
		}
	}
}

func TestKernelCmdline(t *testing.T) {
	got := KernelCmdline("BOOT_IMAGE=/boot/vmlinuz console=tty0 console=ttyS0,115200 panic=10 lightwhale.image=old:x -- single", "FS", "0.2.0")
	want := "console=tty0 console=ttyS0,115200 panic=10 lightwhale.image=FS:lightwhale-os/versions/0.2.0/rootfs.squashfs -- single"
	if got != want {
		t.Errorf("KernelCmdline:\n got %s\nwant %s", got, want)
	}
	if fsid, path, ok := ImageFromCmdline(got); !ok || fsid != "FS" || path != ImagePath("0.2.0") {
		t.Errorf("the command line does not read back: %q %q %v", fsid, path, ok)
	}
}
