package main

import (
	"strings"
	"testing"
)

func TestParseRejectsBadInput(t *testing.T) {
	for _, c := range []struct {
		args  []string
		accel string
		want  string
	}{
		{[]string{"-check", "-disks", "x"}, "", `DISKS="x"`},
		{[]string{"-check", "-disks", "-1"}, "", `DISKS="-1"`},
		{[]string{"-check", "-disks", "9"}, "", `DISKS="9"`},
		{[]string{"-check", "-mem", "12"}, "", `MEM="12"`},
		{[]string{"-check", "-mem", "2G"}, "", `MEM="2G"`},
		{[]string{"-check"}, "foo", `LIGHTWHALE_ACCEL="foo"`},
		{[]string{"-check", "-ssh", "0"}, "", "port 0"},
		{[]string{"-disks", "1"}, "", "-iso is required"},
		{[]string{"-check", "extra"}, "", `unexpected argument "extra"`},
	} {
		_, err := parse(c.args, c.accel)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("parse(%q, LIGHTWHALE_ACCEL=%q) = %v; want one line containing %s", c.args, c.accel, err, c.want)
		}
	}
}

func TestParseAccepts(t *testing.T) {
	r, err := parse([]string{"-iso", "/b/x.iso", "-disks", "2", "-mem", "512"}, "tcg")
	if err != nil {
		t.Fatal(err)
	}
	if r.disks != 2 || r.memMiB != 512 || r.override != "tcg" || r.sshPort != 10022 || r.httpPrt != 10080 {
		t.Fatalf("parsed %+v", r)
	}
}
