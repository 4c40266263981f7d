package osstatus

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lightwhale/internal/cli"
	"lightwhale/internal/osversion"
	"lightwhale/internal/version"
)

// fakeMachine points the applet at a state in a temp dir and a kernel line.
func fakeMachine(t *testing.T, line string, st osversion.State) {
	t.Helper()
	dir := t.TempDir()
	if err := st.Save(dir); err != nil {
		t.Fatal(err)
	}
	cl := filepath.Join(dir, "cmdline")
	os.WriteFile(cl, []byte(line+"\n"), 0o644)
	oldDir, oldLine, oldVersion := osDir, cmdline, version.Version
	osDir, cmdline = dir, cl
	t.Cleanup(func() { osDir, cmdline, version.Version = oldDir, oldLine, oldVersion })
}

func status(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := Status(args, cli.IO{Out: &out, Err: &errb}); code != 0 {
		t.Fatalf("status %v: exit %d: %s", args, code, errb.String())
	}
	return out.String()
}

func TestStatusAfterAnAbandonedTrial(t *testing.T) {
	var st osversion.State
	st.Install(osversion.Version{Version: "0.2.0", From: "0.1.0", Installed: time.Unix(0, 0)}, "0.1.0")
	st.AtBoot("0.1.0", true)
	st.Arrived("0.2.0")
	st.Healthy("0.2.0")
	st.Install(osversion.Version{Version: "0.3.0", From: "0.2.0", MaxTrials: 1, Snapshot: "auto-x"}, "0.2.0")
	st.AtBoot("0.1.0", true) // the trial boot, which never gets healthy
	st.AtBoot("0.1.0", true) // abandoned; 0.2.0 again
	fakeMachine(t, "console=ttyS0 lightwhale.image=F:lightwhale-os/versions/0.2.0/rootfs.squashfs", st)
	version.Version = "0.2.0"
	out := status(t)
	for _, want := range []string{
		"running:   0.2.0 (installed on the data filesystem, good)",
		"medium:    0.1.0",
		"installed: 0.3.0 bad",
		"not healthy",
		"next boot: 0.2.0",
		"WARNING:   upgrade to 0.3.0 abandoned",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	motd := status(t, "--motd")
	if !strings.Contains(motd, "OS: Lightwhale 0.2.0, from installed on the data filesystem, good; boot medium 0.1.0.") ||
		!strings.Contains(motd, "WARNING: upgrade: upgrade to 0.3.0 abandoned") {
		t.Errorf("motd:\n%s", motd)
	}
}

func TestStatusOnTheMedium(t *testing.T) {
	fakeMachine(t, "console=ttyS0", osversion.State{})
	version.Version = "0.1.0"
	out := status(t)
	if !strings.Contains(out, "running:   0.1.0 (the boot medium)") || !strings.Contains(out, "installed: none") {
		t.Errorf("status:\n%s", out)
	}
	var errb bytes.Buffer
	if code := Status([]string{"x"}, cli.IO{Out: &bytes.Buffer{}, Err: &errb}); code != 2 || strings.Count(errb.String(), "\n") != 1 {
		t.Errorf("status x: exit %d, %q; want 2 and one line", code, errb.String())
	}
}

// Health on the medium's version, or a good one, decides nothing.
func TestHealthOffATrialDoesNothing(t *testing.T) {
	fakeMachine(t, "console=ttyS0", osversion.State{})
	reboot = func() error { t.Fatal("rebooted"); return nil }
	if code := Health(nil, cli.IO{Out: &bytes.Buffer{}, Err: &bytes.Buffer{}}); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// trialBoot is a machine on the trial boot of 0.2.0, its Docker API on a
// socket the test serves (or not).
func trialBoot(t *testing.T, serve bool) string {
	t.Helper()
	var st osversion.State
	st.Install(osversion.Version{Version: "0.2.0", HealthWithin: 1}, "0.1.0")
	st.AtBoot("0.1.0", true)
	fakeMachine(t, "lightwhale.image=F:lightwhale-os/versions/0.2.0/rootfs.squashfs", st)
	version.Version = "0.2.0"
	sock := filepath.Join(t.TempDir(), "docker.sock")
	oldSock, oldData, oldPoll, oldReboot := dockerSock, dataOK, pollEvery, reboot
	dockerSock, pollEvery = sock, 50*time.Millisecond
	dataOK = func(string) bool { return true }
	t.Cleanup(func() { dockerSock, dataOK, pollEvery, reboot = oldSock, oldData, oldPoll, oldReboot })
	if serve {
		l, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/_ping" {
				io.WriteString(w, "OK")
			}
		})}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
	}
	return osDir
}

func TestHealthyTrialBecomesGood(t *testing.T) {
	dir := trialBoot(t, true)
	reboot = func() error { t.Fatal("a healthy trial restarted the machine"); return nil }
	if code := Health(nil, cli.IO{Out: &bytes.Buffer{}, Err: &bytes.Buffer{}}); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if st, _ := osversion.Load(dir); st.Find("0.2.0").Status != osversion.Good {
		t.Fatalf("after health: %+v", st.Find("0.2.0"))
	}
}

func TestUnhealthyTrialRestarts(t *testing.T) {
	dir := trialBoot(t, false)
	restarted := false
	reboot = func() error { restarted = true; return nil }
	var errb bytes.Buffer
	Health(nil, cli.IO{Out: &bytes.Buffer{}, Err: &errb})
	st, _ := osversion.Load(dir)
	if !restarted || st.Find("0.2.0").Status != osversion.Trial || !strings.Contains(errb.String(), "the Docker API did not answer") {
		t.Fatalf("restarted %v, state %+v, said %q", restarted, st.Find("0.2.0"), errb.String())
	}
	if b, _ := os.ReadFile(osversion.LogPath(dir)); !strings.Contains(string(b), "not healthy within 1s") {
		t.Errorf("log: %s", b)
	}
}
