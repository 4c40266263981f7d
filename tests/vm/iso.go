package vm

import (
	"bytes"
	"compress/flate"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// ISOFiles lists the files in an ISO 9660 image with their sizes, read with
// xorriso (no mount, no root).
func ISOFiles(iso string) (map[string]int64, error) {
	out, err := exec.Command("xorriso", "-indev", iso, "-find", "/", "-type", "f", "-exec", "lsdl", "--").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("xorriso list %s: %w: %s", iso, err, out)
	}
	files := map[string]int64{}
	for _, line := range strings.Split(string(out), "\n") {
		// -rw-r--r--    1 0        0         12345 Nov 22 08:00 '/boot/vmlinuz'
		if !strings.HasPrefix(line, "-") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 9 {
			continue
		}
		var size int64
		if _, err := fmt.Sscan(f[4], &size); err != nil {
			continue
		}
		name := strings.Join(f[8:], " ")
		files[strings.Trim(name, "'")] = size
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("xorriso list %s: no files found in output:\n%s", iso, out)
	}
	return files, nil
}

// ExtractFromISO copies one file out of an ISO image to dst.
func ExtractFromISO(iso, file, dst string) error {
	out, err := exec.Command("xorriso", "-osirrox", "on", "-indev", iso, "-extract", file, dst).CombinedOutput()
	if err != nil {
		return fmt.Errorf("xorriso extract %s from %s: %w: %s", file, iso, err, out)
	}
	return os.Chmod(dst, 0o644)
}

// BootFiles are the kernel and initramfs the ISO's bootloader loads.
type BootFiles struct{ Kernel, Initrd string }

// FindBootFiles guesses the kernel and initramfs inside the ISO by name:
// the largest file named like a kernel, and the largest named like an
// initramfs.
func FindBootFiles(files map[string]int64) (BootFiles, error) {
	var b BootFiles
	pick := func(dst *string, match func(string) bool) {
		var names []string
		for n := range files {
			if match(strings.ToLower(path.Base(n))) && !strings.Contains(strings.ToLower(n), "efi/") {
				names = append(names, n)
			}
		}
		sort.Slice(names, func(i, j int) bool { return files[names[i]] > files[names[j]] })
		if len(names) > 0 {
			*dst = names[0]
		}
	}
	pick(&b.Kernel, func(n string) bool {
		return strings.HasPrefix(n, "vmlinuz") || n == "bzimage" || strings.HasPrefix(n, "linux") && !strings.Contains(n, ".c32")
	})
	pick(&b.Initrd, func(n string) bool {
		return strings.HasPrefix(n, "initrd") || strings.HasPrefix(n, "initramfs")
	})
	if b.Kernel == "" || b.Initrd == "" {
		return b, fmt.Errorf("no kernel/initramfs found among %d files in the iso (have kernel %q, initrd %q)", len(files), b.Kernel, b.Initrd)
	}
	return b, nil
}

// Decompress turns an initramfs (or part of one) into plain bytes, using the
// compressor its magic names.
func Decompress(data []byte) ([]byte, error) {
	var tool []string
	switch {
	case bytes.HasPrefix(data, []byte("070701")), bytes.HasPrefix(data, []byte("070702")):
		return data, nil
	case bytes.HasPrefix(data, []byte{0x1f, 0x8b}):
		tool = []string{"gzip", "-dc"}
	case bytes.HasPrefix(data, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		tool = []string{"xz", "-dc"}
	case bytes.HasPrefix(data, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		tool = []string{"zstd", "-dcq"}
	case bytes.HasPrefix(data, []byte{0x02, 0x21, 0x4c, 0x18}):
		tool = []string{"lz4", "-dcq"}
	default:
		n := min(len(data), 8)
		return nil, fmt.Errorf("%w: unknown magic % x", ErrNotCpio, data[:n])
	}
	cmd := exec.Command(tool[0], tool[1:]...)
	cmd.Stdin = bytes.NewReader(data)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	// Compressed initramfs segments may carry trailing padding that makes the
	// tool complain after a complete stream; keep what came out then.
	if err := cmd.Run(); err != nil && out.Len() == 0 {
		return nil, fmt.Errorf("%s: %w: %s", tool[0], err, errb.String())
	}
	return out.Bytes(), nil
}

// InitramfsEntries unpacks every archive of an initramfs file: plain newc
// archives, optionally followed by one compressed stream of archives, as the
// kernel accepts them (early microcode + main).
func InitramfsEntries(path string) ([]CpioEntry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read initramfs: %w", err)
	}
	var all []CpioEntry
	compressed := false
	for {
		data = bytes.TrimLeft(data, "\x00")
		if len(data) == 0 {
			return all, nil
		}
		if !bytes.HasPrefix(data, []byte("0707")) {
			if compressed {
				return all, fmt.Errorf("initramfs %s: data after the compressed stream", path)
			}
			// The rest is one compressed stream of archives.
			if data, err = Decompress(data); err != nil {
				return all, fmt.Errorf("initramfs %s: %w", path, err)
			}
			compressed = true
			continue
		}
		es, n, err := ReadCpio(data)
		all = append(all, es...)
		if err != nil {
			return all, fmt.Errorf("initramfs %s: %w", path, err)
		}
		data = data[n:]
	}
}

// Component is one part of the ISO and its share of the ISO file's bytes.
type Component struct {
	Name     string `json:"name"`
	RawBytes int64  `json:"raw_bytes"` // uncompressed, as in the build's tree
	ISOBytes int64  `json:"iso_bytes"` // its share of the ISO file
}

// The components make bench reports, in its order.
const (
	CompKernel     = "kernel"
	CompModules    = "modules"
	CompFirmware   = "firmware"
	CompDocker     = "Docker (Engine, CLI, buildx, Compose)"
	CompContainerd = "containerd"
	CompRunc       = "runc, crun"
	CompRest       = "rest of userland"
	CompBootloader = "bootloader"
)

var componentOrder = []string{CompKernel, CompModules, CompFirmware, CompDocker, CompContainerd,
	CompRunc, CompRest, CompBootloader}

// componentByName maps the Docker stack's files, wherever the build puts
// them, to their component. The Engine, CLI, buildx and Compose are one
// binary (dockerstack/build.sh), so one component.
var componentByName = map[string]string{
	"docker-multicall": CompDocker, "dockerd": CompDocker, "docker": CompDocker,
	"docker-compose": CompDocker, "docker-buildx": CompDocker,
	"docker-proxy": CompDocker, "docker-init": CompDocker, "tini-static": CompDocker,
	"containerd": CompContainerd, "containerd-shim-runc-v2": CompContainerd, "ctr": CompContainerd,
	"runc": CompRunc, "crun": CompRunc,
}

// componentOf names the component of a file at rel in a root tree.
func componentOf(rel string) string {
	for _, d := range []struct{ dir, comp string }{
		{"lib/modules/", CompModules}, {"lib/firmware/", CompFirmware},
	} {
		if strings.HasPrefix(rel, d.dir) || strings.HasPrefix(rel, "usr/"+d.dir) {
			return d.comp
		}
	}
	if c, ok := componentByName[path.Base(rel)]; ok && !strings.Contains(rel, "/share/") {
		return c
	}
	return CompRest
}

// ISOBreakdown splits the ISO's bytes by component, from the ISO's own
// listing and the build's trees beside it: build/initramfs (what the
// initramfs holds) and build/rootfs (what the root squashfs, a file of the
// ISO, holds). Bytes outside the kernel, initramfs and squashfs files are
// the bootloader (GRUB, EFI image, ISO 9660 structures). The initramfs and
// the squashfs are compressed as a whole, so their bytes are shared out in
// proportion to each component's files: as they are in the initramfs,
// compressed alone (deflate, fast) in the squashfs: an estimate, but from
// the files actually shipped.
func ISOBreakdown(iso string) ([]Component, error) {
	st, err := os.Stat(iso)
	if err != nil {
		return nil, err
	}
	files, err := ISOFiles(iso)
	if err != nil {
		return nil, err
	}
	bf, err := FindBootFiles(files)
	if err != nil {
		return nil, err
	}
	var squashfs int64
	for n, s := range files {
		if strings.HasSuffix(strings.ToLower(n), ".squashfs") {
			squashfs = s
		}
	}
	if squashfs == 0 {
		return nil, fmt.Errorf("no *.squashfs file in %s", filepath.Base(iso))
	}
	return breakdown(st.Size(), files[bf.Kernel], files[bf.Initrd], squashfs, filepath.Dir(iso))
}

func breakdown(isoSize, kernel, initrd, squashfs int64, build string) ([]Component, error) {
	raw := map[string]int64{}
	share := map[string]int64{CompKernel: kernel, CompBootloader: isoSize - kernel - initrd - squashfs}
	raw[CompKernel] = kernel

	// shareOut gives whole's bytes to the components in proportion to
	// weight; rounding goes to the rest.
	shareOut := func(whole int64, weight map[string]int64) {
		var total, given int64
		for _, n := range weight {
			total += n
		}
		for c, n := range weight {
			s := whole * n / max(total, 1)
			share[c] += s
			given += s
		}
		share[CompRest] += whole - given
	}

	inInitrd := map[string]int64{}
	err := walkFiles(filepath.Join(build, "initramfs"), func(rel string, size int64) error {
		c := componentOf(rel)
		raw[c] += size
		inInitrd[c] += size
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(inInitrd) == 0 {
		return nil, fmt.Errorf("no files in %s", filepath.Join(build, "initramfs"))
	}
	shareOut(initrd, inInitrd)

	packed := map[string]int64{}
	err = walkFiles(filepath.Join(build, "rootfs"), func(rel string, size int64) error {
		c := componentOf(rel)
		raw[c] += size
		n, err := deflatedSize(filepath.Join(build, "rootfs", rel))
		packed[c] += n
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(packed) == 0 {
		return nil, fmt.Errorf("no files in %s", filepath.Join(build, "rootfs"))
	}
	shareOut(squashfs, packed)

	var cs []Component
	for _, name := range componentOrder {
		cs = append(cs, Component{Name: name, RawBytes: raw[name], ISOBytes: share[name]})
	}
	return cs, nil
}

// walkFiles calls fn with each regular file under root, relative to it.
func walkFiles(root string, fn func(rel string, size int64) error) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		return fn(filepath.ToSlash(rel), info.Size())
	})
}

// deflatedSize is the size of a file compressed alone at deflate's fastest
// level.
func deflatedSize(p string) (int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var n countWriter
	w, _ := flate.NewWriter(&n, flate.BestSpeed)
	if _, err := io.Copy(w, f); err != nil {
		return 0, fmt.Errorf("compress %s: %w", p, err)
	}
	if err := w.Close(); err != nil {
		return 0, err
	}
	return int64(n), nil
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }
