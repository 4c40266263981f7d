package hotplug

import (
	"os"
	"testing"
	"time"
)

// A real uevent from the real kernel: writing "change" to a device's uevent
// file makes the kernel broadcast one, which the socket must deliver parsed.
func TestNetlinkReceivesKernelUevents(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: opening the uevent socket and triggering a uevent")
	}
	const trigger = "/sys/class/net/lo/uevent"
	nl, err := ListenUevents()
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	if err := os.WriteFile(trigger, []byte("change"), 0o200); err != nil {
		t.Skipf("cannot trigger a uevent: %v", err)
	}
	got := make(chan Event, 1)
	go func() {
		for {
			e, err := nl.Read()
			if err != nil {
				close(got) // the socket closed, or failed: reported below
				return
			}
			if e.Env["INTERFACE"] == "lo" && e.Action == "change" {
				got <- e
				return
			}
		}
	}()
	select {
	case e, ok := <-got:
		if !ok {
			t.Fatal("uevent socket failed before the event came")
		}
		if e.Env["SUBSYSTEM"] != "net" || e.DevPath != "/devices/virtual/net/lo" || e.At.IsZero() {
			t.Errorf("event = %+v; want net change of /devices/virtual/net/lo with a time", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no uevent within 10 s of writing change to " + trigger)
	}
}
