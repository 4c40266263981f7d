package modalias

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Lines as Debian's modules.alias writes them.
const aliasFile = `# Aliases extracted from modules themselves.
alias pci:v*d*sv*sd*bc01sc06i01* ahci
alias pci:v00008086d00002922sv*sd*bc*sc*i* ahci
alias pci:v*d*sv*sd*bc01sc08i02* nvme
alias usb:v*p*d*dc*dsc*dp*ic08isc06ip50in* usb_storage
alias usb:v*p*d*dc*dsc*dp*ic08isc06ip62in* uas
alias usb:v0BC2p2300d*dc*dsc*dp*ic*isc*ip*in* usb_storage
alias scsi:t-0x00* sd_mod
alias scsi:t-0x0e* sd_mod
alias virtio:d00000002v* virtio_blk
alias virtio:d00000001v* virtio_net
alias mmc:block mmc_block
alias acpi*:PNP0A03:* pci_root
alias sdio:c*v02D0d4324* brcmfmac
alias pci:v000010ECd00008168sv*sd*bc*sc*i* r8169
alias pci:v000010ECd0000816[89]sv*sd*bc*sc*i* r8169_variant
`

func TestLookup(t *testing.T) {
	a, err := Parse(strings.NewReader(aliasFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		modalias string
		want     []string
	}{
		{"pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01", []string{"ahci"}}, // two patterns, one module
		{"pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02", []string{"nvme"}},
		{"usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00", []string{"usb_storage"}},
		{"usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip62in00", []string{"uas"}},
		{"usb:v0BC2p2300d0100dc00dsc00dp00ic08isc06ip50in00", []string{"usb_storage"}},
		{"scsi:t-0x00", []string{"sd_mod"}},
		{"scsi:t-0x05", nil}, // a CD-ROM: no sr_mod alias in this file
		{"virtio:d00000002v00001AF4", []string{"virtio_blk"}},
		{"mmc:block", []string{"mmc_block"}},
		{"mmc:blockx", nil}, // an alias without a wildcard matches exactly
		{"acpi:PNP0A03:", []string{"pci_root"}},
		{"pci:v000010ECd00008168sv00001043sd00008677bc02sc00i00", []string{"r8169", "r8169_variant"}}, // every match
		{"pci:v000010ECd00008167sv00001043sd00008677bc02sc00i00", nil},
		{"", nil},
	} {
		got := a.Lookup(tc.modalias)
		if len(got) == 0 {
			got = nil
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("Lookup(%q) (-want +got):\n%s", tc.modalias, diff)
		}
	}
}

func TestParseAliasesBadInput(t *testing.T) {
	for _, in := range []string{
		"alias pci:v* \n",
		"options ahci foo=1\n",
		"alias pci:v[ ahci\n",
	} {
		if _, err := Parse(strings.NewReader(in)); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("Parse(%q) = %v, want an error naming line 1", in, err)
		}
	}
}

// Scan finds a device's modalias in its modalias file or, when it has none
// (an SD card), in its uevent file; each once.
func TestScan(t *testing.T) {
	sys := t.TempDir()
	put := func(rel, content string) {
		p := filepath.Join(sys, "devices", rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	put("pci0000:00/0000:00:06.0/modalias", "pci:v00001B36d00000007sv*\n")
	put("pci0000:00/0000:00:06.0/uevent", "DRIVER=sdhci-pci\nMODALIAS=pci:v00001B36d00000007sv*\n")
	put("pci0000:00/0000:00:06.0/mmc_host/mmc0/mmc0:4567/uevent", "DRIVER=\nMMC_TYPE=SD\nMODALIAS=mmc:block\n")
	put("platform/serial8250/uevent", "DRIVER=serial8250\n")
	want := []string{"mmc:block", "pci:v00001B36d00000007sv*"}
	if diff := cmp.Diff(want, Scan(sys)); diff != "" {
		t.Errorf("Scan (-want +got):\n%s", diff)
	}
}
