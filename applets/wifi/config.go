package wifi

import (
	"bytes"
	"crypto/pbkdf2"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Network is a validated network to join: what the configuration file holds.
type Network struct {
	SSID    []byte // 1-32 bytes, any bytes
	PSK     []byte // the 32-byte pre-shared key; nil for an open network
	Country string // ISO 3166 alpha-2 or "00" (world); "" leaves the default
}

// NewNetwork validates the inputs and derives the key. passphrase is 8-63
// printable ASCII characters, or 64 hex digits taken as the key itself;
// open means no passphrase at all. The errors name the offending input, but
// never echo a passphrase.
func NewNetwork(ssid, passphrase, country string, open bool) (Network, error) {
	n := Network{SSID: []byte(ssid)}
	if len(n.SSID) == 0 || len(n.SSID) > 32 {
		return Network{}, fmt.Errorf("invalid SSID %s: %d bytes, must be 1 to 32", displaySSID(n.SSID), len(n.SSID))
	}
	c, err := checkCountry(country)
	if err != nil {
		return Network{}, err
	}
	n.Country = c
	if open {
		if passphrase != "" {
			return Network{}, errors.New("--open and a passphrase exclude each other")
		}
		return n, nil
	}
	if n.PSK, err = derivePSK(passphrase, n.SSID); err != nil {
		return Network{}, err
	}
	return n, nil
}

// derivePSK turns a WPA passphrase into the key, as IEEE 802.11i defines it:
// PBKDF2-HMAC-SHA1(passphrase, SSID, 4096 rounds, 32 bytes). Storing this
// key instead of the passphrase keeps the passphrase, often reused
// elsewhere, off the disk. A 64-hex-digit "passphrase" is already a key.
func derivePSK(passphrase string, ssid []byte) ([]byte, error) {
	if len(passphrase) == 64 {
		k, err := hex.DecodeString(passphrase)
		if err != nil {
			return nil, errors.New("invalid passphrase: 64 characters must all be hex digits (a raw key); a passphrase has 8 to 63")
		}
		return k, nil
	}
	if len(passphrase) < 8 || len(passphrase) > 63 {
		return nil, fmt.Errorf("invalid passphrase: %d characters, must be 8 to 63 (or 64 hex digits)", len(passphrase))
	}
	for i := 0; i < len(passphrase); i++ {
		if c := passphrase[i]; c < 0x20 || c > 0x7e {
			return nil, fmt.Errorf("invalid passphrase: character %d is %s; only printable ASCII is allowed", i+1, describeByte(c))
		}
	}
	return pbkdf2.Key(sha1.New, passphrase, ssid, 4096, 32)
}

// describeByte names a rejected byte without printing it raw.
func describeByte(c byte) string {
	switch c {
	case '\r':
		return `a carriage return (\r); was the input written on Windows?`
	case '\n':
		return "a newline"
	case '\t':
		return "a tab"
	}
	if c >= 0x80 {
		return fmt.Sprintf("the non-ASCII byte 0x%02x", c)
	}
	return fmt.Sprintf("the control character 0x%02x", c)
}

// countries are the ISO 3166-1 alpha-2 codes (from tzdata's iso3166.tab),
// the only ones the kernel's regulatory database knows.
const countries = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ " +
	"CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR " +
	"GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP " +
	"KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ " +
	"NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW " +
	"SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ " +
	"UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW"

// checkCountry accepts "" (not given), "00" (the world domain) or an
// assigned ISO 3166 alpha-2 code in either case, returned in upper case.
func checkCountry(c string) (string, error) {
	if c == "" || c == "00" {
		return c, nil
	}
	u := strings.ToUpper(c)
	if len(u) == 2 && u[0] >= 'A' && u[0] <= 'Z' && u[1] >= 'A' && u[1] <= 'Z' && strings.Contains(" "+countries+" ", " "+u+" ") {
		return u, nil
	}
	return "", fmt.Errorf("invalid country %q: want an ISO 3166 alpha-2 code such as DK, US or DE, or 00", c)
}

// Config is the wpa_supplicant configuration for n. The SSID is written in
// hex, the one form of the ssid field in which no byte can end the value or
// the block; so whatever the SSID holds, the file has exactly one network.
func (n Network) Config() []byte {
	var b bytes.Buffer
	b.WriteString("# Written by setup-wifi, which replaces this file when it runs again.\n")
	if n.PSK != nil {
		b.WriteString("# The passphrase is not stored: psk is the key derived from it.\n")
	}
	if n.Country != "" {
		fmt.Fprintf(&b, "country=%s\n", n.Country)
	}
	b.WriteString("network={\n")
	// strconv.Quote escapes every control character, so the comment stays on its line.
	fmt.Fprintf(&b, "\t# ssid %s\n", strconv.QuoteToASCII(string(n.SSID)))
	fmt.Fprintf(&b, "\tssid=%x\n", n.SSID)
	b.WriteString("\tscan_ssid=1\n") // also finds a network that hides its SSID
	if n.PSK == nil {
		b.WriteString("\tkey_mgmt=NONE\n")
	} else {
		b.WriteString("\tkey_mgmt=WPA-PSK\n")
		fmt.Fprintf(&b, "\tpsk=%x\n", n.PSK)
	}
	b.WriteString("}\n")
	return b.Bytes()
}

// displaySSID quotes an SSID for a terminal or an error message: an SSID is
// chosen by whoever runs the access point, and may hold escape sequences.
func displaySSID(ssid []byte) string { return strconv.QuoteToASCII(string(ssid)) }
