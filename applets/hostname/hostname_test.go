package hostname

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"lightwhale/internal/cli"
)

func TestNormalize(t *testing.T) {
	good := []struct{ in, want string }{
		{"lightwhale", "lightwhale"},
		{"LightWhale", "lightwhale"},
		{"a", "a"},
		{"0", "0"}, // RFC 1123 allows a leading digit
		{"web-01.example.com", "web-01.example.com"},
		{"x" + strings.Repeat("a", 62), "x" + strings.Repeat("a", 62)},
		{strings.Repeat("a.", 31) + "bb", strings.Repeat("a.", 31) + "bb"}, // 64 bytes
	}
	for _, tt := range good {
		got, err := Normalize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	bad := []string{
		"", "-x", "x-", "a..b", ".a", "a.", "a_b", "bjørn", "a b", " a", "a\n",
		"a\nb", "a;reboot", "$(reboot)", "`id`", "a|b", "a&b", "a>b", "*", "a/b",
		"a\x00b", "a\rb", strings.Repeat("a", 64) + ".b", strings.Repeat("a", 65),
		strings.Repeat("a.", 32) + "b", // 65 bytes
	}
	for _, in := range bad {
		if got, err := Normalize(in); err == nil {
			t.Errorf("Normalize(%q) = %q, want an error", in, got)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("Normalize(%q) error %q spans lines", in, err)
		}
	}
}

func TestSetHostsLine(t *testing.T) {
	tests := []struct {
		name, hosts, host, want string
	}{
		{"replace", "127.0.0.1\tlocalhost\n127.0.1.1\told\n::1\tlocalhost\n", "new",
			"127.0.0.1\tlocalhost\n127.0.1.1\tnew\n::1\tlocalhost\n"},
		{"append", "127.0.0.1 localhost\n", "new", "127.0.0.1 localhost\n127.0.1.1\tnew\n"},
		{"append after missing newline", "127.0.0.1 localhost", "new", "127.0.0.1 localhost\n127.0.1.1\tnew\n"},
		{"empty", "", "new", "127.0.1.1\tnew\n"},
		{"keeps comments and spacing", "# static\n10.0.0.1   nas  # box\n  127.0.1.1 old old.lan\n", "h.lan",
			"# static\n10.0.0.1   nas  # box\n127.0.1.1\th.lan h\n"},
		{"drops duplicates", "127.0.1.1 a\n127.0.1.1 b\nx\n", "c", "127.0.1.1\tc\nx\n"},
		{"similar address kept", "127.0.1.10 other\n", "c", "127.0.1.10 other\n127.0.1.1\tc\n"},
	}
	for _, tt := range tests {
		got := string(SetHostsLine([]byte(tt.hosts), tt.host))
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s: SetHostsLine mismatch (-want +got):\n%s", tt.name, diff)
		}
	}
}

// fakeSystem is a System on temporary files whose kernel host name is a
// variable.
func fakeSystem(t *testing.T, hostname, hosts, machineID string) (System, *string) {
	t.Helper()
	dir := t.TempDir()
	kernel := "initial"
	s := System{
		HostnameFile:   filepath.Join(dir, "hostname"),
		HostsFile:      filepath.Join(dir, "hosts"),
		MachineIDFile:  filepath.Join(dir, "machine-id"),
		KernelHostname: filepath.Join(dir, "kernel-hostname"),
		Sethostname:    func(b []byte) error { kernel = string(b); return nil },
	}
	for path, content := range map[string]string{s.HostnameFile: hostname, s.HostsFile: hosts, s.MachineIDFile: machineID} {
		if content != "" {
			if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	os.WriteFile(s.KernelHostname, []byte("initial\n"), 0o644)
	return s, &kernel
}

func run(s System, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = s.Main(args, cli.IO{In: strings.NewReader(""), Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

const hostsFile = "127.0.0.1\tlocalhost\n127.0.1.1\told\n# keep me\n"

func TestSet(t *testing.T) {
	s, kernel := fakeSystem(t, "old\n", hostsFile, "")
	os.Chmod(s.HostsFile, 0o644)
	code, out, errs := run(s, "Web-01")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	if *kernel != "web-01" {
		t.Errorf("kernel host name %q, want web-01", *kernel)
	}
	if !strings.Contains(out, "web-01") {
		t.Errorf("stdout %q does not name the new host", out)
	}
	want := map[string]string{
		s.HostnameFile: "web-01\n",
		s.HostsFile:    "127.0.0.1\tlocalhost\n127.0.1.1\tweb-01\n# keep me\n",
	}
	for path, w := range want {
		got, _ := os.ReadFile(path)
		if diff := cmp.Diff(w, string(got)); diff != "" {
			t.Errorf("%s mismatch (-want +got):\n%s", path, diff)
		}
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("%s mode %v, want 0644", path, fi.Mode().Perm())
		}
	}
}

func TestBadNamesChangeNothing(t *testing.T) {
	for _, bad := range []string{"", "-x", "x-", "a..b", "a_b", "ünï", "a b", "a;rm -rf /", "a\nb", strings.Repeat("a", 70)} {
		s, kernel := fakeSystem(t, "old\n", hostsFile, "")
		code, out, errs := run(s, bad)
		if code == 0 {
			t.Errorf("setup-hostname %q succeeded, want failure", bad)
		}
		if strings.Count(errs, "\n") != 1 || out != "" {
			t.Errorf("setup-hostname %q: stdout %q, stderr %q; want one line on stderr", bad, out, errs)
		}
		if *kernel != "initial" {
			t.Errorf("setup-hostname %q changed the kernel host name to %q", bad, *kernel)
		}
		for path, w := range map[string]string{s.HostnameFile: "old\n", s.HostsFile: hostsFile} {
			if got, _ := os.ReadFile(path); string(got) != w {
				t.Errorf("setup-hostname %q changed %s to %q", bad, path, got)
			}
		}
	}
}

func TestNotPermittedWritesNothing(t *testing.T) {
	s, _ := fakeSystem(t, "old\n", hostsFile, "")
	s.Sethostname = func([]byte) error { return errors.New("operation not permitted") }
	if code, _, errs := run(s, "new"); code == 0 || !strings.Contains(errs, "not permitted") {
		t.Errorf("exit %d, stderr %q; want failure naming the cause", code, errs)
	}
	if got, _ := os.ReadFile(s.HostnameFile); string(got) != "old\n" {
		t.Errorf("hostname file changed to %q", got)
	}
}

func TestPrintCurrent(t *testing.T) {
	s, _ := fakeSystem(t, "", "", "")
	if code, out, _ := run(s); code != 0 || out != "initial\n" {
		t.Errorf("setup-hostname = %d, %q; want 0, %q", code, out, "initial\n")
	}
}

func TestBoot(t *testing.T) {
	const id = "0123abcdef4567890123abcdef456789\n"
	tests := []struct {
		name, hostname, machineID string
		wantKernel, wantWarn      string
		wantHostnameFile          string
	}{
		{"recorded name", "nas\n", id, "nas", "", "nas\n"},
		{"recorded upper case", "NAS\n", id, "nas", "", "NAS\n"},
		{"default from machine-id", "", id, "lightwhale-0123abcd", "", ""},
		{"blank file", "\n", id, "lightwhale-0123abcd", "", "\n"},
		{"invalid file", "bad_name\n", id, "lightwhale-0123abcd", "bad_name", "bad_name\n"},
		{"no machine-id", "", "", "lightwhale", "", ""},
	}
	for _, tt := range tests {
		s, kernel := fakeSystem(t, tt.hostname, hostsFile, tt.machineID)
		code, _, errs := run(s, "--boot")
		if code != 0 {
			t.Errorf("%s: exit %d, stderr %q", tt.name, code, errs)
		}
		if *kernel != tt.wantKernel {
			t.Errorf("%s: kernel host name %q, want %q", tt.name, *kernel, tt.wantKernel)
		}
		if !strings.Contains(errs, tt.wantWarn) || (tt.wantWarn == "") != (errs == "") {
			t.Errorf("%s: stderr %q, want warning %q", tt.name, errs, tt.wantWarn)
		}
		// --boot never records the default: it follows the machine ID.
		got, _ := os.ReadFile(s.HostnameFile)
		if string(got) != tt.wantHostnameFile {
			t.Errorf("%s: /etc/hostname %q, want %q", tt.name, got, tt.wantHostnameFile)
		}
		hosts, _ := os.ReadFile(s.HostsFile)
		if !strings.Contains(string(hosts), "127.0.1.1\t"+tt.wantKernel+"\n") {
			t.Errorf("%s: /etc/hosts %q lacks the 127.0.1.1 entry", tt.name, hosts)
		}
	}
}

func TestHelp(t *testing.T) {
	s, _ := fakeSystem(t, "", "", "")
	code, _, errs := run(s, "--help")
	if code != 0 || !strings.Contains(errs, "usage: setup-hostname") {
		t.Errorf("--help = %d, %q", code, errs)
	}
}
