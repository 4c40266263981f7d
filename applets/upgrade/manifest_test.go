package upgrade

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"
)

// formatManifest writes m as iso/build.sh does.
func formatManifest(m Manifest) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\nversion %s\n", manifestHead, m.Version)
	for _, f := range m.Files {
		fmt.Fprintf(&b, "sha256 %x %d %s\n", f.Sum, f.Size, f.Path)
	}
	return []byte(b.String())
}

func goodManifest() string {
	h := fmt.Sprintf("%x", sha256.Sum256([]byte("x")))
	return "lightwhale-manifest 1\nversion 0.2.0\n" +
		"sha256 " + h + " 10 boot/vmlinuz\n" +
		"sha256 " + h + " 20 boot/initrd.img\n" +
		"sha256 " + h + " 30 lightwhale/rootfs.squashfs\n"
}

func TestParseManifest(t *testing.T) {
	m, err := ParseManifest([]byte(goodManifest()))
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != "0.2.0" || len(m.Files) != 3 || m.Size() != 60 || m.Files[2].Path != "lightwhale/rootfs.squashfs" || m.Files[0].Sum != sha256.Sum256([]byte("x")) {
		t.Fatalf("parsed %+v", m)
	}
	// Any order of the file lines; Files come in install order.
	lines := strings.Split(strings.TrimSuffix(goodManifest(), "\n"), "\n")
	lines[2], lines[4] = lines[4], lines[2]
	m2, err := ParseManifest([]byte(strings.Join(lines, "\n") + "\n"))
	if err != nil || m2.Files[0].Path != "boot/vmlinuz" {
		t.Fatalf("reordered: %+v %v", m2, err)
	}
	if got := string(formatManifest(m)); got != goodManifest() {
		t.Fatalf("round trip:\n%s", got)
	}
}

func TestParseManifestRefuses(t *testing.T) {
	good := goodManifest()
	h := fmt.Sprintf("%x", sha256.Sum256([]byte("x")))
	sub := func(old, new string) string { return strings.Replace(good, old, new, 1) }
	for _, c := range []struct{ name, in, want string }{
		{"empty", "", "empty"},
		{"no final newline", strings.TrimSuffix(good, "\n"), "newline"},
		{"CRLF", strings.ReplaceAll(good, "\n", "\r\n"), "line 1"},
		{"other header", sub("lightwhale-manifest 1", "lightwhale-manifest 2"), "line 1"},
		{"hostile version", sub("version 0.2.0", "version ../x"), "line 2"},
		{"version with a slash", sub("version 0.2.0", "version 0.2.0/x"), "version"},
		{"two versions", sub("version 0.2.0\n", "version 0.2.0\nversion 0.3.0\n"), "a second version"},
		{"no version", sub("version 0.2.0\n", ""), "no version"},
		{"version with two words", sub("version 0.2.0", "version 0.2.0 x"), "want \"version V\""},
		{"hostile path", sub("boot/vmlinuz", "../../etc/passwd"), "unknown file"},
		{"absolute path", sub("boot/vmlinuz", "/boot/vmlinuz"), "unknown file"},
		{"duplicate", sub("boot/initrd.img", "boot/vmlinuz"), "listed twice"},
		{"missing file", strings.Replace(good, "sha256 "+h+" 20 boot/initrd.img\n", "", 1), "boot/initrd.img is not listed"},
		{"short hex", sub(h, h[:62]), "64 lowercase hex"},
		{"upper-case hex", sub(h, strings.ToUpper(h)), "64 lowercase hex"},
		{"not hex", sub(h, "z"+h[1:]), "64 lowercase hex"},
		{"size zero", sub(" 10 ", " 0 "), "size"},
		{"size with a leading zero", sub(" 10 ", " 010 "), "size"},
		{"negative size", sub(" 10 ", " -10 "), "size"},
		{"huge size", sub(" 10 ", " 99999999999999999 "), "size"},
		{"two spaces", sub("sha256 ", "sha256  "), "want \"sha256 HEX SIZE PATH\""},
		{"tab", sub("version 0.2.0", "version\t0.2.0"), "line 2"},
		{"blank line", sub("version 0.2.0\n", "version 0.2.0\n\n"), "line 3"},
		{"trailing space", sub("version 0.2.0", "version 0.2.0 "), "line 2"},
		{"unknown keyword", good + "exec /bin/sh\n", "want \"version\" or \"sha256\""},
		{"too long", good + strings.Repeat("#", 5000) + "\n", "bytes, more than"},
	} {
		_, err := ParseManifest([]byte(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v; want one containing %q", c.name, err, c.want)
			continue
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: a multi-line error: %q", c.name, err)
		}
	}
}
