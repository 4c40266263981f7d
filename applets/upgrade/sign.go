package upgrade

// Signatures: `make iso SIGN_KEY=key.pem` signs the manifest (ed25519, the
// raw 64 bytes of `openssl pkeyutl -sign -rawin`) and puts the public key
// into the image it builds; an image with such keys accepts only ISOs whose
// manifest one of them signed.

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// trustedKey is a public key of the running image, with its file name.
type trustedKey struct {
	name string
	key  ed25519.PublicKey
}

// loadKeys reads the *.pem files of dir: none (or no dir) trusts no key.
// A file there that is not an ed25519 public key is an error: the image
// meant to trust something, and accepting unsigned ISOs then is wrong.
func loadKeys(dir string) ([]trustedKey, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.pem"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var keys []trustedKey
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("trusted key %s: %w", f, err)
		}
		k, err := parsePublicKey(b)
		if err != nil {
			return nil, fmt.Errorf("trusted key %s: %w", f, err)
		}
		keys = append(keys, trustedKey{filepath.Base(f), k})
	}
	return keys, nil
}

// parsePublicKey reads a PEM "PUBLIC KEY" (PKIX) holding an ed25519 key.
func parsePublicKey(b []byte) (ed25519.PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, errors.New("not a PEM \"PUBLIC KEY\"")
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	ek, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an ed25519 public key", k)
	}
	return ek, nil
}

// verifySignature checks sig over manifest against the trusted keys and
// returns the name of the key that signed it.
func verifySignature(manifest, sig []byte, keys []trustedKey, dir string) (string, error) {
	if len(sig) != ed25519.SignatureSize {
		return "", fmt.Errorf("%s: %d bytes; an ed25519 signature is %d", SignaturePath, len(sig), ed25519.SignatureSize)
	}
	for _, k := range keys {
		if ed25519.Verify(k.key, manifest, sig) {
			return k.name, nil
		}
	}
	return "", fmt.Errorf("%s: the manifest's signature does not verify with any key this image trusts (%d in %s)", SignaturePath, len(keys), dir)
}
