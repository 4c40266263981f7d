package vm

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// BareMarker is what the bare reference guest prints, followed by its
// /proc/uptime, the moment its init runs.
const BareMarker = "LIGHTWHALE-BARE-INIT"

// bareInit is PID 1 of the bare reference boot: read the clock, say it on
// the console, power off. Nothing else, so it measures the kernel alone.
const bareInit = `#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
read up idle </proc/uptime
echo "` + BareMarker + ` $up"
/bin/busybox poweroff -f
`

func busyboxEntries() ([]CpioEntry, error) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return nil, fmt.Errorf("busybox-static is needed for the reference initramfs: %w", err)
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		return nil, fmt.Errorf("read busybox: %w", err)
	}
	return []CpioEntry{
		{Name: "bin", Mode: ModeDir | 0o755},
		{Name: "bin/busybox", Mode: ModeFile | 0o755, Data: data},
		{Name: "bin/sh", Mode: ModeSymlink | 0o777, Data: []byte("busybox")},
		{Name: "dev", Mode: ModeDir | 0o755},
		// The kernel opens /dev/console for init before anything mounts devtmpfs.
		{Name: "dev/console", Mode: ModeChar | 0o600, Major: 5, Minor: 1},
		{Name: "proc", Mode: ModeDir | 0o755},
		{Name: "sys", Mode: ModeDir | 0o755},
	}, nil
}

// WriteBareInitramfs writes the minimal busybox initramfs that only reaches
// init (the reference boot `make bench` compares Lightwhale with).
func WriteBareInitramfs(path string) error {
	es, err := busyboxEntries()
	if err != nil {
		return err
	}
	es = append(es, CpioEntry{Name: "init", Mode: ModeFile | 0o755, Data: []byte(bareInit)})
	return writeCpioFile(path, es)
}

func writeCpioFile(path string, es []CpioEntry) error {
	var b bytes.Buffer
	if err := WriteCpio(&b, es); err != nil {
		return err
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write initramfs: %w", err)
	}
	return nil
}

var bareRE = regexp.MustCompile(BareMarker + ` ([0-9.]+)`)

// BareBoot boots kernel with the bare initramfs and returns the guest
// seconds at which init ran. The console is on serial, as for the ISO.
func BareBoot(ctx context.Context, t testing.TB, kernel, dir string) (float64, error) {
	initrd := filepath.Join(dir, "bare-initramfs.cpio")
	if err := WriteBareInitramfs(initrd); err != nil {
		return 0, err
	}
	m, err := Start(t, Config{Name: "bare-reference", Kernel: kernel, Initrd: initrd,
		Append: "console=ttyS0,115200 quiet panic=-1", MemMiB: 512, LogDir: dir})
	if err != nil {
		return 0, err
	}
	if err := m.WaitSerial(ctx, BareMarker+" "); err != nil {
		return 0, err
	}
	// The number may still be arriving: wait for the end of its line.
	for {
		if mm := bareRE.FindStringSubmatch(m.SerialLog()); mm != nil && bytes.Contains([]byte(m.SerialLog()), []byte(mm[0]+"\n")) || m.Exited() {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	mm := bareRE.FindStringSubmatch(m.SerialLog())
	if mm == nil {
		return 0, fmt.Errorf("bare boot: no %s line on the console", BareMarker)
	}
	_ = m.WaitExit(ctx)
	return strconv.ParseFloat(mm[1], 64)
}
