package upgrade

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// writePublicKey writes pub as a PEM "PUBLIC KEY" file.
func writePublicKey(t *testing.T, path string, pub any) {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

func newKey(t *testing.T) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func TestVerifySignature(t *testing.T) {
	dir := t.TempDir()
	if keys, err := loadKeys(filepath.Join(dir, "none")); err != nil || len(keys) != 0 {
		t.Fatalf("no key directory: %v %v", keys, err)
	}
	pubA, privA := newKey(t)
	pubB, _ := newKey(t)
	_, privC := newKey(t)
	writePublicKey(t, filepath.Join(dir, "a.pem"), pubA)
	writePublicKey(t, filepath.Join(dir, "b.pem"), pubB)
	os.WriteFile(filepath.Join(dir, "README"), []byte("not a key, not *.pem"), 0o644)
	keys, err := loadKeys(dir)
	if err != nil || len(keys) != 2 {
		t.Fatalf("loadKeys: %v %v", keys, err)
	}
	m := []byte(goodManifest())
	if who, err := verifySignature(m, ed25519.Sign(privA, m), keys, dir); err != nil || who != "a.pem" {
		t.Fatalf("good signature: %q %v", who, err)
	}
	for name, c := range map[string]struct{ m, sig []byte }{
		"untrusted key":        {m, ed25519.Sign(privC, m)},
		"another manifest":     {append([]byte(nil), m[1:]...), ed25519.Sign(privA, m)},
		"short signature":      {m, ed25519.Sign(privA, m)[:63]},
		"empty signature":      {m, nil},
		"a signature too long": {m, append(ed25519.Sign(privA, m), 0)},
	} {
		if _, err := verifySignature(c.m, c.sig, keys, dir); err == nil {
			t.Errorf("%s: verified", name)
		}
	}

	// A trusted key that is not one is an error, not "no keys".
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, "x.pem"), []byte("garbage"), 0o644)
	if _, err := loadKeys(bad); err == nil || !strings.Contains(err.Error(), "x.pem") {
		t.Errorf("garbage key: %v", err)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	writePublicKey(t, filepath.Join(bad, "x.pem"), &ec.PublicKey)
	if _, err := loadKeys(bad); err == nil || !strings.Contains(err.Error(), "not an ed25519") {
		t.Errorf("ecdsa key: %v", err)
	}
}

// What iso/build.sh does with openssl verifies here.
func TestOpenSSLSignatureVerifies(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("no openssl: iso/build.sh's signing is not checked")
	}
	dir := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("openssl", args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v: %s", args, err, out)
		}
	}
	key, keys, m := filepath.Join(dir, "key.pem"), filepath.Join(dir, "keys"), filepath.Join(dir, "manifest")
	os.Mkdir(keys, 0o755)
	os.WriteFile(m, []byte(goodManifest()), 0o644)
	run("genpkey", "-algorithm", "ed25519", "-out", key)
	run("pkey", "-in", key, "-pubout", "-out", filepath.Join(keys, "key.pem"))
	run("pkeyutl", "-sign", "-rawin", "-inkey", key, "-in", m, "-out", m+".sig")
	trusted, err := loadKeys(keys)
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := os.ReadFile(m + ".sig")
	if _, err := verifySignature([]byte(goodManifest()), sig, trusted, keys); err != nil {
		t.Fatal(err)
	}
}
