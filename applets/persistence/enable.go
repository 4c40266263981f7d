package persistence

import (
	"bufio"
	"fmt"
	"path/filepath"
	"strings"

	"lightwhale/internal/cli"
	"lightwhale/internal/gpt"
	"lightwhale/internal/host"
	"lightwhale/internal/paths"
	"lightwhale/internal/probe"
)

// enable writes the consent header: the safe replacement for `echo | dd`.
// It refuses the boot medium, partitions and devices in use always, and a
// disk with recognisable content unless forced; it asks unless --yes.
func enable(stdio cli.IO, h host.Host, path string, yes, force bool) error {
	name := filepath.Base(path)
	if !strings.HasPrefix(path, "/dev/") || strings.Contains(name, "..") {
		return fmt.Errorf("%q is not a block device path like /dev/sdb", path)
	}
	dev, err := h.Device(name)
	if err != nil {
		return fmt.Errorf("%s is not a block device: %w", path, err)
	}
	if dev.Partition != 0 {
		return fmt.Errorf("%s is a partition: name the whole disk (/dev/%s)", path, dev.Parent)
	}
	if dev.ReadOnly {
		return fmt.Errorf("%s is read-only", path)
	}
	if why := h.Busy(dev); why != "" {
		return fmt.Errorf("%s is in use: %s", path, why)
	}
	head, err := h.ReadAt(dev.Path, 0, probe.HeadBytes)
	if err != nil {
		return err
	}
	if probe.IsBootMedium(head) {
		return fmt.Errorf("%s is the Lightwhale boot medium", path)
	}
	// With --force a disk that already has the header is erased again: the
	// header may sit over an old partition table or filesystem, which a
	// join refuses.
	if probe.HasMagic(head) && !force {
		fmt.Fprintf(stdio.Out, "%s already has the consent header; reboot (or run setup-persistence) to claim it\n", path)
		return nil
	}
	if what := probe.Identify(head, dev.SectorSize); what != "" && !force {
		return fmt.Errorf("%s holds a %s: use --force to erase it", path, what)
	}
	if dev.Size < gpt.MinDataBytes+2*gpt.MiB {
		return fmt.Errorf("%s is too small (%d MiB): at least %d MiB are needed", path, dev.Size/gpt.MiB, (gpt.MinDataBytes+2*gpt.MiB)/gpt.MiB)
	}
	if !yes {
		fmt.Fprintf(stdio.Out, "All data on %s (%d MiB) will be erased at the next boot. Type yes to continue: ", path, dev.Size/gpt.MiB)
		line, _ := bufio.NewReader(stdio.In).ReadString('\n')
		if strings.TrimSpace(line) != "yes" {
			return ErrAborted
		}
	}
	f, err := h.OpenDisk(dev.Path, true)
	if err != nil {
		return err
	}
	defer f.Close()
	if force {
		// Old partition tables (both GPT copies) must not outlive the
		// header, or the next boot would still see the old partitions.
		zero := make([]byte, gpt.MiB)
		if _, err := f.WriteAt(zero, 0); err != nil {
			return fmt.Errorf("erase start of %s: %w", path, err)
		}
		if dev.Size > 2*gpt.MiB {
			if _, err := f.WriteAt(zero, int64(dev.Size-gpt.MiB)); err != nil {
				return fmt.Errorf("erase end of %s: %w", path, err)
			}
		}
	}
	if _, err := f.WriteAt([]byte(paths.Consent+"\n"), 0); err != nil {
		return fmt.Errorf("write header to %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if force {
		_ = h.Reread(dev.Path) // drop the old partitions from the kernel's view
	}
	fmt.Fprintf(stdio.Out, "%s now carries the consent header. Reboot (or run: sudo setup-persistence) to claim it.\n", path)
	return nil
}
