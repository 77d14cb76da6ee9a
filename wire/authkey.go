package wire

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// An enrollment key as handed to an admin has four parts joined by "_":
//
//	latchkey_<id>_<secret>_<ca-fingerprint>
//
// id is 12 lowercase hex characters and names the key in lists and audit
// records; secret is 43 characters of base64url (256 bits), stored only as
// a hash; ca-fingerprint is the base64url SHA-256 of the coordinator CA's
// DER certificate, which the agent pins on first contact.
const AuthKeyPrefix = "latchkey"

// AuthKey is a parsed enrollment key. Secret must never be logged.
type AuthKey struct {
	ID            string
	Secret        string
	CAFingerprint [sha256.Size]byte
}

// String returns the key in the form handed to admins.
func (k AuthKey) String() string {
	return strings.Join([]string{AuthKeyPrefix, k.ID, k.Secret, base64.RawURLEncoding.EncodeToString(k.CAFingerprint[:])}, "_")
}

// ParseAuthKey parses an enrollment key. Its errors never echo the secret.
//
// The secret and the fingerprint are base64url, whose alphabet includes
// "_", so the key is split by position (every part has a fixed length),
// not at every "_".
func ParseAuthKey(s string) (AuthKey, error) {
	const idLen, b64Len = 12, 43 // 43 = unpadded base64 of 32 bytes
	var k AuthKey
	rest, ok := strings.CutPrefix(strings.TrimSpace(s), AuthKeyPrefix+"_")
	if !ok || len(rest) != idLen+1+b64Len+1+b64Len || rest[idLen] != '_' || rest[idLen+1+b64Len] != '_' {
		return k, errors.New("malformed enrollment key: want latchkey_<id>_<secret>_<ca-fingerprint>")
	}
	id, secret, fpText := rest[:idLen], rest[idLen+1:idLen+1+b64Len], rest[idLen+2+b64Len:]
	if _, err := hex.DecodeString(id); err != nil {
		return k, errors.New("malformed enrollment key: bad id")
	}
	if b, err := base64.RawURLEncoding.DecodeString(secret); err != nil || len(b) != 32 {
		return k, errors.New("malformed enrollment key: bad secret")
	}
	fp, err := base64.RawURLEncoding.DecodeString(fpText)
	if err != nil || len(fp) != sha256.Size {
		return k, errors.New("malformed enrollment key: bad CA fingerprint")
	}
	k.ID, k.Secret = id, secret
	copy(k.CAFingerprint[:], fp)
	return k, nil
}

// CAFingerprint returns the SHA-256 fingerprint of a DER certificate.
func CAFingerprint(der []byte) [sha256.Size]byte { return sha256.Sum256(der) }

// FormatFingerprint renders a fingerprint as "sha256:<hex>" for people.
func FormatFingerprint(fp [sha256.Size]byte) string {
	return fmt.Sprintf("sha256:%x", fp[:])
}
