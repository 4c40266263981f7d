package applets

import (
	"bytes"
	"strings"
	"testing"

	"lightwhale/internal/cli"
)

func TestRun(t *testing.T) {
	saved := registry
	t.Cleanup(func() { registry = saved })
	var got []string
	registry = []Applet{{Name: "setup-thing", Aliases: []string{"S11thing"}, Summary: "does a thing",
		Main: func(args []string, s cli.IO) int { got = args; return 7 }}}

	tests := []struct {
		argv     []string
		wantCode int
		wantArgs []string
		wantOut  string
		wantErr  string
	}{
		{argv: []string{"/usr/bin/setup-thing", "a"}, wantCode: 7, wantArgs: []string{"a"}},
		{argv: []string{"/etc/init.d/S11thing", "start"}, wantCode: 7, wantArgs: []string{"start"}},
		{argv: []string{"lightwhale", "setup-thing", "b"}, wantCode: 7, wantArgs: []string{"b"}},
		{argv: []string{"/usr/bin/lightwhale", "S11thing", "stop"}, wantCode: 7, wantArgs: []string{"stop"}},
		{argv: []string{"lightwhale"}, wantCode: 2, wantOut: "setup-thing (S11thing)"},
		{argv: []string{"lightwhale", "--help"}, wantCode: 0, wantOut: "does a thing"},
		{argv: []string{"lightwhale", "nope"}, wantCode: 2, wantErr: `unknown applet "nope"`},
	}
	for _, tt := range tests {
		got = nil
		var out, errb bytes.Buffer
		code := Run(tt.argv, cli.IO{In: strings.NewReader(""), Out: &out, Err: &errb})
		if code != tt.wantCode {
			t.Errorf("Run(%q) = %d, want %d", tt.argv, code, tt.wantCode)
		}
		if strings.Join(got, " ") != strings.Join(tt.wantArgs, " ") {
			t.Errorf("Run(%q) passed args %q, want %q", tt.argv, got, tt.wantArgs)
		}
		if !strings.Contains(out.String(), tt.wantOut) {
			t.Errorf("Run(%q) stdout %q, want it to contain %q", tt.argv, out.String(), tt.wantOut)
		}
		if !strings.Contains(errb.String(), tt.wantErr) {
			t.Errorf("Run(%q) stderr %q, want it to contain %q", tt.argv, errb.String(), tt.wantErr)
		}
	}
}
