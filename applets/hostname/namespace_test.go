package hostname

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// inNamespace runs f on an OS thread of its own that has left the host's UTS
// and mount namespaces, so sethostname and mounts made by f (or by programs
// it starts) never reach the host. The thread is thrown away afterwards:
// returning from a goroutine still locked to its thread ends that thread.
func inNamespace(t *testing.T, f func() error) error {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root for a private UTS and mount namespace (run as root, e.g. make test)")
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWUTS | unix.CLONE_NEWNS); err != nil {
			errc <- err
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	return <-errc
}

// TestKernelHostnameInNamespace sets the real kernel host name, through the
// real sethostname(2), with the files pointed at temporary ones.
func TestKernelHostnameInNamespace(t *testing.T) {
	before, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := Host
	s.HostnameFile = filepath.Join(dir, "hostname")
	s.HostsFile = filepath.Join(dir, "hosts")
	s.MachineIDFile = filepath.Join(dir, "machine-id")
	os.WriteFile(s.HostsFile, []byte(hostsFile), 0o644)
	os.WriteFile(s.MachineIDFile, []byte("89abcdef0123456789abcdef01234567\n"), 0o444)

	var inside, afterBoot string
	var code, bootCode int
	err = inNamespace(t, func() error {
		code, _, _ = run(s, "NS-Test.example")
		inside, _ = s.Current()
		os.Remove(s.HostnameFile)
		bootCode, _, _ = run(s, "--boot")
		afterBoot, _ = s.Current()
		return nil
	})
	if err != nil {
		t.Fatalf("namespace: %v", err)
	}
	if code != 0 || inside != "ns-test.example" {
		t.Errorf("inside: exit %d, kernel host name %q; want 0, ns-test.example", code, inside)
	}
	if bootCode != 0 || afterBoot != "lightwhale-89abcdef" {
		t.Errorf("--boot without /etc/hostname: exit %d, kernel host name %q; want 0, lightwhale-89abcdef", bootCode, afterBoot)
	}
	hosts, _ := os.ReadFile(s.HostsFile)
	if want := "127.0.0.1\tlocalhost\n127.0.1.1\tlightwhale-89abcdef\n# keep me\n"; string(hosts) != want {
		t.Errorf("hosts = %q, want %q", hosts, want)
	}
	if after, _ := os.Hostname(); after != before {
		t.Errorf("host's own name changed from %q to %q: the namespace leaked", before, after)
	}
}

// TestBinaryInNamespace runs the built binary with its default paths: a
// temporary directory is bind-mounted over /etc inside the private mount
// namespace. It needs LIGHTWHALE_BIN (set by make test).
func TestBinaryInNamespace(t *testing.T) {
	bin := os.Getenv("LIGHTWHALE_BIN")
	if bin == "" {
		t.Skip("skipping: LIGHTWHALE_BIN is not set (make test sets it to the built binary)")
	}
	before, _ := os.Hostname()
	etc := t.TempDir()
	os.WriteFile(filepath.Join(etc, "hostname"), []byte("old\n"), 0o644)
	os.WriteFile(filepath.Join(etc, "hosts"), []byte(hostsFile), 0o644)

	var set, bad, printed []byte
	var setErr, badErr error
	err := inNamespace(t, func() error {
		if err := unix.Mount(etc, "/etc", "", unix.MS_BIND, ""); err != nil {
			return err
		}
		// Children are forked from this thread, so they inherit its namespaces.
		set, setErr = exec.Command(bin, "setup-hostname", "binary-test").CombinedOutput()
		bad, badErr = exec.Command(bin, "setup-hostname", "bad name;id").CombinedOutput()
		printed, _ = exec.Command(bin, "setup-hostname").Output()
		return nil
	})
	if err != nil {
		t.Fatalf("namespace: %v", err)
	}
	if setErr != nil || strings.TrimSpace(string(printed)) != "binary-test" {
		t.Errorf("setup-hostname binary-test: %v %s; then it printed %q", setErr, set, printed)
	}
	if badErr == nil || strings.Count(string(bad), "\n") != 1 {
		t.Errorf("bad name: err %v, output %q; want failure with one line", badErr, bad)
	}
	if got, _ := os.ReadFile(filepath.Join(etc, "hostname")); string(got) != "binary-test\n" {
		t.Errorf("/etc/hostname (bound) = %q", got)
	}
	if after, _ := os.Hostname(); after != before {
		t.Errorf("host's own name changed from %q to %q: the namespace leaked", before, after)
	}
	if real, _ := os.ReadFile("/etc/hostname"); strings.Contains(string(real), "binary-test") {
		t.Errorf("the host's /etc/hostname was written: the mount namespace leaked")
	}
}
