package upgrade

// The manifest iso/build.sh writes at lightwhale/manifest on the ISO: a
// header, the version, and one line per file of a version with its size and
// sha256. Line-based and strict: anything not exactly as written is refused.
//
//	lightwhale-manifest 1
//	version 0.2.0
//	sha256 <64 hex> <size> boot/vmlinuz
//	sha256 <64 hex> <size> boot/initrd.img
//	sha256 <64 hex> <size> lightwhale/rootfs.squashfs

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"lightwhale/internal/osversion"
)

// On the ISO.
const (
	ManifestPath  = "lightwhale/manifest"
	SignaturePath = "lightwhale/manifest.sig"
	manifestHead  = "lightwhale-manifest 1"
	// maxManifest bounds what is read of a manifest (a real one is ~300 bytes).
	maxManifest = 4096
	// maxFileSize bounds a listed file (a root image is some hundred MiB).
	maxFileSize = 16 << 30
)

// isoFiles maps each file a manifest must list, by its path on the ISO, to
// its name in an installed version (osversion.VersionDir), in install order.
var isoFiles = []struct{ iso, installed string }{
	{"boot/vmlinuz", osversion.Kernel},
	{"boot/initrd.img", osversion.Initrd},
	{"lightwhale/rootfs.squashfs", osversion.Image},
}

// File is one file a manifest lists.
type File struct {
	Path string // on the ISO
	Size int64
	Sum  [sha256.Size]byte
}

// Manifest is a parsed manifest; Files are in isoFiles' order.
type Manifest struct {
	Version string
	Files   []File
}

// Size is the total size of the listed files.
func (m Manifest) Size() int64 {
	var n int64
	for _, f := range m.Files {
		n += f.Size
	}
	return n
}

// ParseManifest reads a manifest strictly: the header first, one version,
// each of isoFiles exactly once, nothing else, every line ending in "\n".
func ParseManifest(b []byte) (Manifest, error) {
	var m Manifest
	if len(b) > maxManifest {
		return m, fmt.Errorf("manifest: %d bytes, more than %d", len(b), maxManifest)
	}
	if len(b) == 0 || b[len(b)-1] != '\n' {
		return m, fmt.Errorf("manifest: empty, or its last line does not end in a newline")
	}
	lines := strings.Split(string(b[:len(b)-1]), "\n")
	if lines[0] != manifestHead {
		return m, fmt.Errorf("manifest line 1: %q; want %q", clip(lines[0]), manifestHead)
	}
	seen := map[string]File{}
	haveVersion := false
	for i, line := range lines[1:] {
		n := i + 2
		bad := func(format string, a ...any) error {
			return fmt.Errorf("manifest line %d %q: %s", n, clip(line), fmt.Sprintf(format, a...))
		}
		f := strings.Split(line, " ")
		switch f[0] {
		case "version":
			if len(f) != 2 {
				return m, bad("want \"version V\"")
			}
			if haveVersion {
				return m, bad("a second version")
			}
			if err := osversion.CheckVersion(f[1]); err != nil {
				return m, fmt.Errorf("manifest line %d: %v", n, err)
			}
			m.Version, haveVersion = f[1], true
		case "sha256":
			if len(f) != 4 {
				return m, bad("want \"sha256 HEX SIZE PATH\"")
			}
			file, err := parseFile(f[1], f[2], f[3])
			if err != nil {
				return m, bad("%v", err)
			}
			if _, dup := seen[file.Path]; dup {
				return m, bad("%s is listed twice", file.Path)
			}
			seen[file.Path] = file
		default:
			return m, bad("want \"version\" or \"sha256\"")
		}
	}
	if !haveVersion {
		return m, fmt.Errorf("manifest: no version line")
	}
	for _, want := range isoFiles {
		file, ok := seen[want.iso]
		if !ok {
			return m, fmt.Errorf("manifest: %s is not listed", want.iso)
		}
		m.Files = append(m.Files, file)
	}
	return m, nil
}

func parseFile(sum, size, path string) (File, error) {
	f := File{Path: path}
	known := false
	for _, w := range isoFiles {
		known = known || w.iso == path
	}
	if !known {
		return f, fmt.Errorf("unknown file (want one of boot/vmlinuz, boot/initrd.img, lightwhale/rootfs.squashfs)")
	}
	b, err := hex.DecodeString(sum)
	if err != nil || len(b) != sha256.Size || strings.ToLower(sum) != sum {
		return f, fmt.Errorf("sha256: want 64 lowercase hex digits")
	}
	copy(f.Sum[:], b)
	n, err := strconv.ParseInt(size, 10, 64)
	if err != nil || n <= 0 || n > maxFileSize || strconv.FormatInt(n, 10) != size {
		return f, fmt.Errorf("size: want a number of bytes from 1 to %d", int64(maxFileSize))
	}
	f.Size = n
	return f, nil
}

// clip shortens what a hostile manifest says before it is quoted back.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
