package control

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
)

// ParseFingerprint reads a CA fingerprint as wire.FormatFingerprint writes
// it ("sha256:" and 64 hex digits; colons between bytes are accepted, as
// openssl prints them). A workload identity enrollment pins the
// coordinator by it.
func ParseFingerprint(s string) ([sha256.Size]byte, error) {
	var fp [sha256.Size]byte
	h, ok := strings.CutPrefix(strings.TrimSpace(s), "sha256:")
	if !ok {
		return fp, errors.New(`CA fingerprint: want "sha256:" and 64 hex digits`)
	}
	h = strings.ReplaceAll(h, ":", "")
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != sha256.Size {
		return fp, errors.New(`CA fingerprint: want "sha256:" and 64 hex digits`)
	}
	copy(fp[:], b)
	return fp, nil
}
