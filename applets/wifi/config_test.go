package wifi

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"lightwhale/internal/cli"
	"lightwhale/internal/golden"
)

// The test vector of IEEE 802.11i-2004, annex H.4.
func TestDerivePSKVector(t *testing.T) {
	tests := []struct{ pass, ssid, want string }{
		{"password", "IEEE", "f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e"},
		{"ThisIsAPassword", "ThisIsASSID", "0dc0d6eb90555ed6419756b9a15ec3e3209b63df707dd508d14581f8982721af"},
		{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"[:32], "ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ", "becb93866bb8c3832cb777c2f559807c8c59afcb6eae734885001300a981cc62"},
	}
	for _, tt := range tests {
		got, err := derivePSK(tt.pass, []byte(tt.ssid))
		if err != nil || hex.EncodeToString(got) != tt.want {
			t.Errorf("derivePSK(%q, %q) = %x, %v; want %s", tt.pass, tt.ssid, got, err, tt.want)
		}
	}
}

func TestNewNetwork(t *testing.T) {
	hexKey := strings.Repeat("0123456789abcdeF", 4)
	tests := []struct {
		name                    string
		ssid, pass, country     string
		open                    bool
		wantErr                 string // "" for success
		wantCountry, wantPSKHex string
	}{
		{name: "plain", ssid: "home", pass: "password", wantPSKHex: ""},
		{name: "country lower case", ssid: "home", pass: "password", country: "dk", wantCountry: "DK"},
		{name: "world", ssid: "home", pass: "password", country: "00", wantCountry: "00"},
		{name: "63 chars", ssid: "home", pass: strings.Repeat("p", 63)},
		{name: "printable specials", ssid: "home", pass: ` !"#$%&'()*+,-./:;<=>?@[\]^_{|}~` + "`"},
		{name: "raw key", ssid: "home", pass: hexKey, wantPSKHex: strings.ToLower(hexKey)},
		{name: "open", ssid: "cafe", open: true},
		{name: "32-byte ssid", ssid: strings.Repeat("s", 32), pass: "password"},
		{name: "binary ssid", ssid: "\xff\x00\x01}", pass: "password"},

		{name: "empty ssid", ssid: "", pass: "password", wantErr: "1 to 32"},
		{name: "33-byte ssid", ssid: strings.Repeat("s", 33), pass: "password", wantErr: "1 to 32"},
		{name: "7 chars", ssid: "home", pass: "1234567", wantErr: "7 characters"},
		{name: "64 non-hex", ssid: "home", pass: strings.Repeat("g", 64), wantErr: "hex digits"},
		{name: "65 chars", ssid: "home", pass: strings.Repeat("a", 65), wantErr: "65 characters"},
		{name: "control char", ssid: "home", pass: "pass\x07word", wantErr: "control character 0x07"},
		{name: "trailing CR", ssid: "home", pass: "password\r", wantErr: "carriage return"},
		{name: "newline", ssid: "home", pass: "pass\nword", wantErr: "newline"},
		{name: "non-ASCII", ssid: "home", pass: "pässwörd", wantErr: "non-ASCII"},
		{name: "DEL", ssid: "home", pass: "password\x7f", wantErr: "0x7f"},
		{name: "country USA", ssid: "home", pass: "password", country: "USA", wantErr: `invalid country "USA"`},
		{name: "country u$", ssid: "home", pass: "password", country: "u$", wantErr: `invalid country "u$"`},
		{name: "country unassigned", ssid: "home", pass: "password", country: "XX", wantErr: `invalid country "XX"`},
		{name: "open with passphrase", ssid: "home", pass: "password", open: true, wantErr: "exclude"},
		{name: "no passphrase", ssid: "home", pass: "", wantErr: "0 characters"},
	}
	for _, tt := range tests {
		n, err := NewNetwork(tt.ssid, tt.pass, tt.country, tt.open)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: err = %v, want it to contain %q", tt.name, err, tt.wantErr)
			}
			if err != nil && tt.pass != "" && len(tt.pass) >= 4 && strings.Contains(err.Error(), tt.pass) {
				t.Errorf("%s: error %q echoes the passphrase", tt.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: unexpected error %v", tt.name, err)
			continue
		}
		if string(n.SSID) != tt.ssid || n.Country != tt.wantCountry || (n.PSK == nil) != tt.open {
			t.Errorf("%s: got %+v", tt.name, n)
		}
		if tt.wantPSKHex != "" && hex.EncodeToString(n.PSK) != tt.wantPSKHex {
			t.Errorf("%s: PSK %x, want %s", tt.name, n.PSK, tt.wantPSKHex)
		}
	}
}

// parsed is a configuration file as wpa_supplicant reads it.
type parsed struct {
	globals  map[string]string
	networks []map[string]string
}

// parseConfig follows wpa_supplicant's config_file.c: lines with leading
// white space trimmed, '#' lines and empty ones skipped, "network={" opens a
// block and a line "}" closes it, the rest is name=value.
func parseConfig(t *testing.T, b []byte) parsed {
	t.Helper()
	p := parsed{globals: map[string]string{}}
	var cur map[string]string
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimLeft(line, " \t")
		switch {
		case line == "" || line[0] == '#':
		case line == "network={":
			if cur != nil {
				t.Fatalf("line %d: network block inside a network block", i+1)
			}
			cur = map[string]string{}
		case line == "}":
			if cur == nil {
				t.Fatalf("line %d: } outside a block", i+1)
			}
			p.networks = append(p.networks, cur)
			cur = nil
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("line %d: %q is not name=value", i+1, line)
			}
			if cur != nil {
				cur[k] = v
			} else {
				p.globals[k] = v
			}
		}
	}
	if cur != nil {
		t.Fatal("unterminated network block")
	}
	return p
}

// ssidValue decodes an ssid value the way wpa_supplicant does: "quoted"
// text, or hex.
func ssidValue(t *testing.T, v string) []byte {
	t.Helper()
	if strings.HasPrefix(v, `"`) {
		return []byte(strings.Trim(v, `"`))
	}
	b, err := hex.DecodeString(v)
	if err != nil {
		t.Fatalf("ssid %q is neither quoted nor hex: %v", v, err)
	}
	return b
}

// runDry runs setup-wifi --dry-run with a passphrase on standard input.
func runDry(s System, stdin string, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = s.Main(append([]string{"--dry-run"}, args...), cli.IO{In: strings.NewReader(stdin), Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

// TestHostileInput: each case yields one network block whose SSID is the
// input byte for byte, or a one-line error and no output.
func TestHostileInput(t *testing.T) {
	ssids := []string{
		`my "wifi"`, `back\slash`, `}`, "x\nnetwork={\n\tssid=\"evil\"\n}", "}\nctrl_interface=/tmp\n",
		"\xff\xfe\x80", "\x1b[2J", "# comment", " leading space", "ssid=00", `P"x\n"`, "日本語",
	}
	for _, ssid := range ssids {
		code, out, errs := runDry(System{}, "", "--ssid", ssid, "--password", "correct horse", "--country", "DK")
		if code != 0 {
			t.Errorf("ssid %q: exit %d, stderr %q", ssid, code, errs)
			continue
		}
		p := parseConfig(t, []byte(out))
		if len(p.networks) != 1 {
			t.Fatalf("ssid %q: %d network blocks, want 1:\n%s", ssid, len(p.networks), out)
		}
		if got := ssidValue(t, p.networks[0]["ssid"]); !bytes.Equal(got, []byte(ssid)) {
			t.Errorf("ssid %q round-trips as %q", ssid, got)
		}
		if diff := cmp.Diff(map[string]string{"country": "DK"}, p.globals); diff != "" {
			t.Errorf("ssid %q: globals (-want +got):\n%s", ssid, diff)
		}
		psk, _ := derivePSK("correct horse", []byte(ssid))
		if p.networks[0]["psk"] != hex.EncodeToString(psk) || p.networks[0]["key_mgmt"] != "WPA-PSK" {
			t.Errorf("ssid %q: network %v", ssid, p.networks[0])
		}
		if strings.Contains(out, "correct horse") {
			t.Errorf("ssid %q: the configuration holds the passphrase", ssid)
		}
	}

	bad := []struct{ name, pass, country string }{
		{"7 characters", "1234567", ""},
		{"64 non-hex", strings.Repeat("z", 64), ""},
		{"control character", "pass\x01word", ""},
		{"escape", "\x1b[31mpassword", ""},
		{"trailing CR", "password\r", ""},
		{"USA", "password", "USA"},
		{"u$", "password", "u$"},
		{"empty country", "password", ""},
	}
	for _, tt := range bad {
		args := []string{"--ssid", "home", "--password", tt.pass, "--country", tt.country}
		if tt.name != "empty country" && tt.country == "" {
			args = args[:4]
		}
		code, out, errs := runDry(System{}, "", args...)
		if code == 0 || out != "" || strings.Count(errs, "\n") != 1 {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want failure with one line on stderr", tt.name, code, out, errs)
		}
		if strings.Contains(errs, tt.pass) {
			t.Errorf("%s: error %q echoes the passphrase", tt.name, errs)
		}
	}
}

func TestPasswordSources(t *testing.T) {
	tests := []struct {
		name, stdin string
		args        []string
		wantErr     string
	}{
		{"stdin", "password\n", []string{"--password-stdin"}, ""},
		{"stdin without newline", "password", []string{"--password-stdin"}, ""},
		{"stdin only first line", "password\nignored\n", []string{"--password-stdin"}, ""},
		{"stdin CRLF", "password\r\n", []string{"--password-stdin"}, "carriage return"},
		{"stdin empty", "", []string{"--password-stdin"}, "standard input"},
		{"no source, not a terminal", "", nil, "not a terminal"},
		{"empty --password", "", []string{"--password="}, "--open"},
		{"two sources", "password\n", []string{"--password-stdin", "--password", "password"}, "only one"},
		{"open and password", "", []string{"--open", "--password", "password"}, "only one"},
	}
	for _, tt := range tests {
		code, out, errs := runDry(System{}, tt.stdin, append([]string{"--ssid", "IEEE"}, tt.args...)...)
		if tt.wantErr == "" {
			if code != 0 || !strings.Contains(out, "psk=f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e") {
				t.Errorf("%s: exit %d, stdout %q, stderr %q", tt.name, code, out, errs)
			}
			continue
		}
		if code == 0 || !strings.Contains(errs, tt.wantErr) || strings.Count(errs, "\n") != 1 {
			t.Errorf("%s: exit %d, stderr %q; want one line containing %q", tt.name, code, errs, tt.wantErr)
		}
	}
}

// TestGolden compares whole configuration files with testdata/*.conf
// (go test -run Golden -update rewrites them: internal/golden).
func TestGolden(t *testing.T) {
	tests := []struct {
		file string
		args []string
	}{
		{"wpa2-country.conf", []string{"--ssid", "my wifi name", "--password", "my wifi secret", "--country", "DK"}},
		{"open.conf", []string{"--ssid", "guest net", "--open"}},
		{"raw-key.conf", []string{"--ssid", "home", "--password", strings.Repeat("ab", 32)}},
		{"hostile-ssid.conf", []string{"--ssid", "a\"b\\c}\nnetwork={\xff", "--password", "password", "--country", "00"}},
	}
	for _, tt := range tests {
		code, out, errs := runDry(System{}, "", tt.args...)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", tt.file, code, errs)
		}
		golden.Check(t, filepath.Join("testdata", tt.file), out)
	}
}

func ExampleNetwork_Config() {
	n, _ := NewNetwork("IEEE", "password", "DK", false)
	fmt.Print(string(n.Config()))
	// Output:
	// # Written by setup-wifi, which replaces this file when it runs again.
	// # The passphrase is not stored: psk is the key derived from it.
	// country=DK
	// network={
	// 	# ssid "IEEE"
	// 	ssid=49454545
	// 	scan_ssid=1
	// 	key_mgmt=WPA-PSK
	// 	psk=f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e
	// }
}
