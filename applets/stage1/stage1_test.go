package stage1

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseModules(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
		wantErr  bool
	}{
		{name: "empty", in: "", want: nil},
		{name: "plain", in: "loop\nsquashfs\noverlay\n", want: []string{"loop", "squashfs", "overlay"}},
		{name: "comments and blanks", in: "# header\n\n  loop  \nsquashfs # the root\n\t\n", want: []string{"loop", "squashfs"}},
		{name: "no final newline", in: "loop\noverlay", want: []string{"loop", "overlay"}},
		{name: "parameters refused", in: "loop\nloop max_loop=8\n", want: []string{"loop"}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseModules(strings.NewReader(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseModules(%q) error = %v, want error %v", tc.in, err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseModules(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func TestInitFromCmdline(t *testing.T) {
	for _, tc := range []struct{ cmdline, want string }{
		{"", "/sbin/init"},
		{"console=tty0 console=ttyS0,115200 panic=10\n", "/sbin/init"},
		{"console=ttyS0 init=/bin/sh", "/bin/sh"},
		{"init=/bin/sh init=/sbin/init-debug quiet", "/sbin/init-debug"},
		{"rdinit=/init quiet", "/sbin/init"},
		{"init=relative/path", "/sbin/init"},
		{"quiet -- init=/bin/sh", "/sbin/init"},
	} {
		if got := InitFromCmdline(tc.cmdline); got != tc.want {
			t.Errorf("InitFromCmdline(%q) = %q, want %q", tc.cmdline, got, tc.want)
		}
	}
}
