package paths

import (
	"os/exec"
	"strings"
	"testing"
)

// TestShellEval runs the output through a real shell and reads every value
// back, so a quoting mistake fails here, not at boot.
func TestShellEval(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	var script strings.Builder
	script.WriteString(Shell())
	for _, kv := range shell {
		script.WriteString(`printf '%s\n' "$LIGHTWHALE_` + kv.key + `"` + "\n")
	}
	out, err := exec.Command(sh, "-euc", script.String()).CombinedOutput()
	if err != nil {
		t.Fatalf("sh: %v: %s", err, out)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(got) != len(shell) {
		t.Fatalf("got %d values, want %d: %q", len(got), len(shell), got)
	}
	for i, kv := range shell {
		if got[i] != kv.value {
			t.Errorf("%s = %q, want %q", kv.key, got[i], kv.value)
		}
	}
}

func TestLayers(t *testing.T) {
	if got := UpperDir("/etc"); got != "/mnt/lightwhale-data/lightwhale-state/overlay/upper/etc" {
		t.Errorf("UpperDir = %q", got)
	}
	if got := LowerDir("/var"); got != "/run/lightwhale/overlay/lower/var" {
		t.Errorf("LowerDir = %q", got)
	}
}
