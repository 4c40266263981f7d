// Package dnsname validates host names (RFC 1123, the kernel's length
// limit): shared by setup-hostname and provisioning, which must refuse a bad
// name before it applies anything.
package dnsname

import (
	"errors"
	"fmt"
	"strings"
)

// maxLen is the kernel's HOST_NAME_MAX: RFC 1123 allows 253, but
// sethostname(2) refuses more than 64 bytes.
const maxLen = 64

// Normalize validates name as an RFC 1123 host name and returns it in lower
// case. The error names the input quoted, so control characters show.
func Normalize(name string) (string, error) {
	if name == "" {
		return "", errors.New("invalid host name: empty")
	}
	if len(name) > maxLen {
		return "", fmt.Errorf("invalid host name %q: %d characters, at most %d allowed", name, len(name), maxLen)
	}
	for _, label := range strings.Split(name, ".") {
		if err := checkLabel(label); err != nil {
			return "", fmt.Errorf("invalid host name %q: %w", name, err)
		}
	}
	return strings.ToLower(name), nil
}

func checkLabel(label string) error {
	switch {
	case label == "":
		return errors.New("empty label (leading, trailing or double dot)")
	case len(label) > 63:
		return fmt.Errorf("label %q longer than 63 characters", label)
	case label[0] == '-' || label[len(label)-1] == '-':
		return fmt.Errorf("label %q starts or ends with a hyphen", label)
	}
	for i := 0; i < len(label); i++ {
		c := label[i]
		if c >= 0x80 {
			return errors.New("non-ASCII character not allowed (only letters, digits, hyphens and dots)")
		}
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return fmt.Errorf("character %q not allowed (only letters, digits, hyphens and dots)", c)
		}
	}
	return nil
}
