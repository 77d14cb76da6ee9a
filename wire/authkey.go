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

// Lengths of the parts of an enrollment key. The secret and fingerprint
// are base64url, whose alphabet includes "_", so a key is parsed by these
// fixed widths, never by splitting on "_".
const (
	authKeyIDLen     = 12
	authKeySecretLen = 43 // base64url, no padding, of 32 bytes
	authKeyFPLen     = 43 // base64url, no padding, of a SHA-256
)

// ParseAuthKey parses an enrollment key. Its errors never echo the secret.
func ParseAuthKey(s string) (AuthKey, error) {
	var k AuthKey
	const malformed = "malformed enrollment key: want latchkey_<id>_<secret>_<ca-fingerprint>"
	rest, ok := strings.CutPrefix(strings.TrimSpace(s), AuthKeyPrefix+"_")
	if !ok || len(rest) != authKeyIDLen+1+authKeySecretLen+1+authKeyFPLen {
		return k, errors.New(malformed)
	}
	id := rest[:authKeyIDLen]
	secret := rest[authKeyIDLen+1 : authKeyIDLen+1+authKeySecretLen]
	fpText := rest[authKeyIDLen+1+authKeySecretLen+1:]
	if rest[authKeyIDLen] != '_' || rest[authKeyIDLen+1+authKeySecretLen] != '_' {
		return k, errors.New(malformed)
	}
	if _, err := hex.DecodeString(id); err != nil || strings.ToLower(id) != id {
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
