package e2e

import (
	"os/exec"
	"runtime"
	"strings"
)

func qemuVersion() string {
	out, err := exec.Command("qemu-system-x86_64", "--version").Output()
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(out))
	if len(f) >= 4 {
		return f[3]
	}
	return strings.TrimSpace(string(out))
}

func runtimeCPUs() int { return runtime.NumCPU() }
