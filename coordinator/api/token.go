package api

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
)

// An admin API token as handed out: latchtok_<id>_<secret>, where id is 12
// lowercase hex characters (it names the token in lists and logs) and
// secret is 43 characters of base64url (256 bits), stored only as a hash.
const TokenPrefix = "latchtok"

// Token is a parsed API token. Secret must never be logged.
type Token struct {
	ID     string
	Secret string
}

// String returns the token in the form handed to admins.
func (t Token) String() string { return TokenPrefix + "_" + t.ID + "_" + t.Secret }

// NewToken returns a fresh random token.
func NewToken() Token {
	id, secret := make([]byte, 6), make([]byte, 32)
	rand.Read(id)
	rand.Read(secret)
	return Token{ID: hex.EncodeToString(id), Secret: base64.RawURLEncoding.EncodeToString(secret)}
}

// errBadToken never echoes the token.
var errBadToken = errors.New("malformed API token: want latchtok_<id>_<secret>")

// ParseToken parses an API token.
func ParseToken(s string) (Token, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(s), TokenPrefix+"_")
	if !ok {
		return Token{}, errBadToken
	}
	// base64url secrets may contain "_", so split at the first one only.
	id, secret, ok := strings.Cut(rest, "_")
	if !ok || len(id) != 12 || len(secret) != 43 {
		return Token{}, errBadToken
	}
	if _, err := hex.DecodeString(id); err != nil || strings.ToLower(id) != id {
		return Token{}, errBadToken
	}
	if b, err := base64.RawURLEncoding.DecodeString(secret); err != nil || len(b) != 32 {
		return Token{}, errBadToken
	}
	return Token{ID: id, Secret: secret}, nil
}
