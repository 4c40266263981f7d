package provision

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"lightwhale/internal/host"
	"lightwhale/internal/probe"
)

// seedLabel is the volume label of a NoCloud seed (cloud-localds, Proxmox,
// libvirt write it as "cidata" or "CIDATA").
const seedLabel = "cidata"

// fatLabel returns the volume label in a FAT boot sector ("" if none):
// FAT32 keeps it at 0x47 after the extended boot signature at 0x42,
// FAT12/16 at 0x2b after the signature at 0x26.
func fatLabel(head []byte) string {
	if len(head) < 512 || head[510] != 0x55 || head[511] != 0xaa {
		return ""
	}
	switch {
	case head[0x42] == 0x29 && string(head[0x52:0x57]) == "FAT32":
		return string(bytes.TrimRight(head[0x47:0x52], " \x00"))
	case head[0x26] == 0x29 && string(head[0x36:0x39]) == "FAT":
		return string(bytes.TrimRight(head[0x2b:0x36], " \x00"))
	}
	return ""
}

// seedFS names the filesystem of a seed device, or "" if it is not one.
func seedFS(head []byte) string {
	switch {
	case strings.EqualFold(probe.ISOLabel(head), seedLabel):
		return "iso9660"
	case strings.EqualFold(fatLabel(head), seedLabel):
		return "vfat"
	}
	return ""
}

// findSeed returns the first block device (by name) holding a seed and its
// filesystem type; "" when there is none.
func (s *System) findSeed() (dev, fstype string, err error) {
	ents, err := os.ReadDir(s.SysBlock)
	if err != nil {
		return "", "", fmt.Errorf("list block devices: %w", err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, "loop") || strings.HasPrefix(n, "ram") || strings.HasPrefix(n, "zram") {
			continue
		}
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		path := filepath.Join(s.Dev, n)
		head, err := host.Real.ReadAt(path, 0, probe.HeadBytes)
		if err != nil && len(head) == 0 {
			continue // an empty CD drive, a device that went away
		}
		if t := seedFS(head); t != "" {
			return path, t, nil
		}
	}
	return "", "", nil
}

// readSeedDir reads the seed's files from a mounted seed, each capped.
// meta-data is required, user-data and network-config are optional.
func readSeedDir(dir, dev string) (Seed, error) {
	sd := Seed{Device: dev}
	var err error
	if sd.MetaData, err = readCapped(filepath.Join(dir, "meta-data"), maxMetaData); err != nil {
		return sd, err
	}
	if sd.UserData, err = readCapped(filepath.Join(dir, "user-data"), maxUserData); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return sd, err
	}
	sd.NetworkConfig, err = readCapped(filepath.Join(dir, "network-config"), maxNetworkConfig)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return sd, err
	}
	return sd, nil
}

// readCapped reads a regular file of at most limit bytes.
func readCapped(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", filepath.Base(path))
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", filepath.Base(path), limit)
	}
	return b, nil
}

// readSeed finds, mounts (read-only), reads and unmounts the seed. found is
// false when no device carries one.
func (s *System) readSeed() (sd Seed, found bool, err error) {
	dev, fstype, err := s.findSeed()
	if err != nil || dev == "" {
		return sd, false, err
	}
	dir := filepath.Join(s.RunDir, "seed")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return sd, true, err
	}
	if err := s.Mount(dev, dir, fstype); err != nil {
		return Seed{Device: dev}, true, fmt.Errorf("mount %s (%s): %w", dev, fstype, err)
	}
	defer s.Unmount(dir)
	sd, err = readSeedDir(dir, dev)
	return sd, true, err
}
