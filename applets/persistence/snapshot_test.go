package persistence

import (
	"slices"
	"testing"
	"time"
)

func TestSnapshotNames(t *testing.T) {
	for name, user := range map[string]bool{"before-upgrade": true, "2026.11.30_a": true, autoName("before-rollback", time.Unix(0, 0)): false} {
		if err := checkSnapshotName(name, user); err != nil {
			t.Errorf("%q refused: %v", name, err)
		}
	}
	for _, name := range []string{"", ".hidden", "../x", "a/b", "a b", "-x", "auto-mine", "x\n", string(make([]byte, 65))} {
		if checkSnapshotName(name, true) == nil {
			t.Errorf("%q accepted as a user's snapshot name", name)
		}
	}
	if got := autoName("before-rollback", time.Date(2026, 11, 30, 23, 5, 9, 0, time.UTC)); got != "auto-before-rollback-20261130-230509" {
		t.Errorf("autoName = %q", got)
	}
}

func TestExpired(t *testing.T) {
	// Taken in the order a, b, c, d (the subvolume IDs), some in one second.
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	snaps := []snapshotInfo{{"auto-a", at, 258}, {"mine", at, 257}, {"auto-c", at.Add(time.Second), 260}, {"auto-b", at, 259}, {"auto-d", at.Add(time.Second), 261}}
	for _, tc := range []struct {
		keep    int
		pending string
		want    []string
	}{
		{5, "", nil},
		{2, "", []string{"auto-b", "auto-a"}},
		{1, "auto-a", []string{"auto-c", "auto-b"}}, // the pending rollback's stays
		{1, "mine", []string{"auto-c", "auto-b", "auto-a"}},
	} {
		if got := expired(snaps, tc.keep, tc.pending); !slices.Equal(got, tc.want) {
			t.Errorf("expired(keep %d, pending %q) = %q; want %q", tc.keep, tc.pending, got, tc.want)
		}
	}
	// A trial upgrade's snapshot stays beside the pending rollback's.
	if got := expired(snaps, 1, "auto-a", "auto-b"); !slices.Equal(got, []string{"auto-c"}) {
		t.Errorf("expired with two protected = %q; want [auto-c]", got)
	}
}

func TestParseRollback(t *testing.T) {
	if n, p, err := parseRollback([]byte("before auto-before-rollback-20261130-230509\n")); err != nil || n != "before" || p != "auto-before-rollback-20261130-230509" {
		t.Errorf("parseRollback = %q %q %v", n, p, err)
	}
	for _, bad := range []string{"", "before", "before x y", "../x pre", "x ../pre"} {
		if _, _, err := parseRollback([]byte(bad)); err == nil {
			t.Errorf("parseRollback(%q) accepted", bad)
		}
	}
}
