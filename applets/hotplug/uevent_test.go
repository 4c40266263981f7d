package hotplug

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestParseUevent(t *testing.T) {
	// What the kernel sends when a usb-storage interface appears.
	raw := "add@/devices/pci0000:00/0000:00:04.0/usb2/2-1/2-1:1.0\x00ACTION=add\x00DEVPATH=/devices/pci0000:00/0000:00:04.0/usb2/2-1/2-1:1.0\x00" +
		"SUBSYSTEM=usb\x00DEVTYPE=usb_interface\x00PRODUCT=46f4/1/0\x00TYPE=0/0/0\x00INTERFACE=8/6/80\x00" +
		"MODALIAS=usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00\x00SEQNUM=1234\x00"
	got, err := ParseUevent([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	want := Event{Action: "add", DevPath: "/devices/pci0000:00/0000:00:04.0/usb2/2-1/2-1:1.0", Env: map[string]string{
		"ACTION": "add", "DEVPATH": "/devices/pci0000:00/0000:00:04.0/usb2/2-1/2-1:1.0", "SUBSYSTEM": "usb",
		"DEVTYPE": "usb_interface", "PRODUCT": "46f4/1/0", "TYPE": "0/0/0", "INTERFACE": "8/6/80",
		"MODALIAS": "usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00", "SEQNUM": "1234",
	}}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(Event{}, "At")); diff != "" {
		t.Errorf("ParseUevent (-want +got):\n%s", diff)
	}
}

func TestParseUeventBadInput(t *testing.T) {
	for _, raw := range []string{
		"",
		"libudev\x00\xfe\xed\xca\xfe",
		"add /devices/x\x00SUBSYSTEM=block",
		"add@devices/x\x00",
		"add@/devices/x\x00SUBSYSTEM",
		"add@/devices/x\x00ACTION=remove",
	} {
		if _, err := ParseUevent([]byte(raw)); err == nil || !strings.HasPrefix(err.Error(), "uevent") {
			t.Errorf("ParseUevent(%q) = %v, want a uevent error", raw, err)
		}
	}
}
