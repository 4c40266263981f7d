package persistence

import (
	"strings"
	"testing"

	"lightwhale/internal/host/hostfake"
	"lightwhale/internal/osversion"
	"lightwhale/internal/version"
)

// withVersions points osStep at a state in a temp dir, and the kexec edge
// at a recorder that fails the load (so the boot goes on, as it must when
// a switch cannot be made).
func withVersions(t *testing.T, st osversion.State) (dir string, loaded *[]string) {
	t.Helper()
	dir = t.TempDir()
	if err := st.Save(dir); err != nil {
		t.Fatal(err)
	}
	var calls []string
	oldDir, oldLoad, oldNow, oldVersion := osDir, kexecLoad, kexecNow, version.Version
	osDir = dir
	kexecLoad = func(d, v, line string) error {
		calls = append(calls, v+" "+line)
		return errKexec
	}
	kexecNow = func() error { t.Fatal("kexec without a loaded kernel"); return nil }
	t.Cleanup(func() { osDir, kexecLoad, kexecNow, version.Version = oldDir, oldLoad, oldNow, oldVersion })
	return dir, &calls
}

type kexecError struct{}

func (kexecError) Error() string { return "no kexec here" }

var errKexec = kexecError{}

func TestOSStepSwitchesToATrialAndCountsItFirst(t *testing.T) {
	var st osversion.State
	st.Install(osversion.Version{Version: "0.2.0", MaxTrials: 2}, "0.1.0")
	dir, calls := withVersions(t, st)
	version.Version = "0.1.0"
	h := hostfake.New(t.TempDir())
	h.WriteFile("/proc/cmdline", []byte("BOOT_IMAGE=/boot/vmlinuz console=ttyS0\n"), 0o644)
	_, err := osStep{FSID: "FS"}.Apply(&env{h: h})
	if err == nil || !strings.Contains(err.Error(), "switch to 0.2.0 failed") {
		t.Fatalf("Apply: %v; want the failed switch said", err)
	}
	if len(*calls) != 1 || (*calls)[0] != "0.2.0 console=ttyS0 lightwhale.image=FS:lightwhale-os/versions/0.2.0/rootfs.squashfs" {
		t.Fatalf("kexec loads: %q", *calls)
	}
	got, _ := osversion.Load(dir)
	if v := got.Find("0.2.0"); v.TrialBoots != 1 || got.Switching != "0.2.0" {
		t.Fatalf("the trial boot was not counted before the switch: %+v, switching %q", v, got.Switching)
	}
}

func TestOSStepOnAnInstalledBootRecordsItArrived(t *testing.T) {
	var st osversion.State
	st.Install(osversion.Version{Version: "0.2.0"}, "0.1.0")
	st.AtBoot("0.1.0", true)
	dir, calls := withVersions(t, st)
	version.Version = "0.2.0"
	h := hostfake.New(t.TempDir())
	h.WriteFile("/proc/cmdline", []byte("console=ttyS0 lightwhale.image=FS:lightwhale-os/versions/0.2.0/rootfs.squashfs\n"), 0o644)
	note, err := osStep{FSID: "FS"}.Apply(&env{h: h})
	if err != nil || !strings.Contains(note, "trial boot 1 of 2") || len(*calls) != 0 {
		t.Fatalf("Apply: %q %v; kexec %q", note, err, *calls)
	}
	if got, _ := osversion.Load(dir); got.Switching != "" {
		t.Fatalf("switching still %q after the boot arrived", got.Switching)
	}
}
