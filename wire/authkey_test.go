package wire

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
)

func randomAuthKey(t *testing.T) AuthKey {
	t.Helper()
	var id [6]byte
	var secret [32]byte
	var k AuthKey
	for _, b := range [][]byte{id[:], secret[:], k.CAFingerprint[:]} {
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
	}
	k.ID = hex.EncodeToString(id[:])
	k.Secret = base64.RawURLEncoding.EncodeToString(secret[:])
	return k
}

// TestAuthKeyRoundTrip covers keys whose base64url parts contain "_", the
// separator, which a split-based parser gets wrong for most random keys.
func TestAuthKeyRoundTrip(t *testing.T) {
	withUnderscore := 0
	for range 2000 {
		k := randomAuthKey(t)
		if strings.Contains(k.Secret, "_") {
			withUnderscore++
		}
		got, err := ParseAuthKey(k.String())
		if err != nil {
			t.Fatalf("ParseAuthKey(%q): %v", k.String(), err)
		}
		if got != k {
			t.Fatalf("round trip: got %+v, want %+v", got, k)
		}
	}
	if withUnderscore == 0 {
		t.Fatal("no generated secret contained '_'; the test proves nothing")
	}
}

func TestParseAuthKeyRejectsMalformed(t *testing.T) {
	k := randomAuthKey(t)
	k.ID = "abcdef012345" // has letters, so the upper-case case differs
	good := k.String()
	for name, s := range map[string]string{
		"empty":        "",
		"wrong prefix": "latchtok" + strings.TrimPrefix(good, AuthKeyPrefix),
		"truncated":    good[:len(good)-1],
		"extra":        good + "A",
		"bad id":       AuthKeyPrefix + "_zzzzzzzzzzzz" + good[len(AuthKeyPrefix)+13:],
		"upper id":     AuthKeyPrefix + "_" + strings.ToUpper(good[len(AuthKeyPrefix)+1:len(AuthKeyPrefix)+13]) + good[len(AuthKeyPrefix)+13:],
		"no separator": strings.Replace(good, "_", "-", 1),
	} {
		t.Run(name, func(t *testing.T) {
			k, err := ParseAuthKey(s)
			if err == nil {
				t.Fatalf("ParseAuthKey accepted %q as %+v", s, k)
			}
			if secret := good[len(AuthKeyPrefix)+14 : len(AuthKeyPrefix)+14+43]; strings.Contains(err.Error(), secret) {
				t.Fatalf("error echoes the secret: %v", err)
			}
		})
	}
}
