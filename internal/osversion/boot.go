package osversion

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"lightwhale/internal/paths"
)

// ImageFromCmdline returns the FSUUID and PATH of paths.ImageParam, if the
// kernel command line names one (the last one counts, as for init=): the
// boot of an installed version, whose root image is PATH in the data
// subvolume of the btrfs FSUUID.
func ImageFromCmdline(cmdline string) (fsid, path string, ok bool) {
	for _, f := range strings.Fields(cmdline) {
		if f == "--" {
			break
		}
		v, found := strings.CutPrefix(f, paths.ImageParam+"=")
		if !found {
			continue
		}
		id, p, cut := strings.Cut(v, ":")
		p = filepath.Clean("/" + p)[1:]
		if cut && id != "" && p != "" {
			fsid, path, ok = id, p, true
		}
	}
	return fsid, path, ok
}

// ImagePath is the root image of version v, relative to the data
// subvolume (paths.DataDir), as ImageFromCmdline returns it.
func ImagePath(v string) string {
	rel, _ := filepath.Rel(paths.DataDir, filepath.Join(VersionDir(paths.OSDir, v), Image))
	return rel
}

// KernelCmdline is the command line for installed version v of data
// filesystem fsid: the running one's, less what the bootloader added for
// itself and any earlier image parameter.
func KernelCmdline(running, fsid, v string) string {
	var out []string
	for _, f := range strings.Fields(running) {
		if strings.HasPrefix(f, "BOOT_IMAGE=") || strings.HasPrefix(f, "initrd=") || strings.HasPrefix(f, paths.ImageParam+"=") {
			continue
		}
		out = append(out, f)
	}
	// Before a "--": what follows it is init's.
	param := paths.ImageParam + "=" + fsid + ":" + ImagePath(v)
	for i, f := range out {
		if f == "--" {
			return strings.Join(append(append(out[:i:i], param), out[i:]...), " ")
		}
	}
	return strings.Join(append(out, param), " ")
}

// Load kernel and initrd of installed version v for kexec: the next
// reboot(LINUX_REBOOT_CMD_KEXEC) starts it. kexec_file_load is the call a
// locked-down (Secure Boot) kernel allows: it checks the kernel's signature.
func LoadKexec(dir, v, cmdline string) error {
	k, err := os.Open(filepath.Join(VersionDir(dir, v), Kernel))
	if err != nil {
		return err
	}
	defer k.Close()
	i, err := os.Open(filepath.Join(VersionDir(dir, v), Initrd))
	if err != nil {
		return err
	}
	defer i.Close()
	if err := unix.KexecFileLoad(int(k.Fd()), int(i.Fd()), cmdline, 0); err != nil {
		return fmt.Errorf("kexec_file_load %s: %w", v, err)
	}
	return nil
}

// Kexec starts the loaded kernel. The caller has synced and unmounted.
func Kexec() error { return unix.Reboot(unix.LINUX_REBOOT_CMD_KEXEC) }
