package wire

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
)

func TestAuthKeyRoundTripsWhateverTheBase64Holds(t *testing.T) {
	// base64url uses "_": secrets and fingerprints full of it must parse.
	underscores := strings.Repeat("_", 42) + "w" // decodes to 32 bytes
	for i := range 200 {
		id, secret, fp := make([]byte, 6), make([]byte, 32), make([]byte, 32)
		rand.Read(id)
		rand.Read(secret)
		rand.Read(fp)
		k := AuthKey{ID: hex.EncodeToString(id), Secret: base64.RawURLEncoding.EncodeToString(secret)}
		copy(k.CAFingerprint[:], fp)
		if i == 0 {
			k.Secret = underscores
		}
		got, err := ParseAuthKey(k.String())
		if err != nil {
			t.Fatalf("ParseAuthKey(%s): %v", k, err)
		}
		if got != k {
			t.Fatalf("round trip: got %+v, want %+v", got, k)
		}
	}
}

func TestParseAuthKeyRejectsMalformedKeys(t *testing.T) {
	secret := strings.Repeat("A", 43)
	fp := strings.Repeat("B", 43)
	for _, s := range []string{
		"",
		"latchkey",
		"latchkey_0123456789ab_" + secret,
		"latchtok_0123456789ab_" + secret + "_" + fp,
		"latchkey_0123456789ag_" + secret + "_" + fp,
		"latchkey_0123456789ab_" + secret[:42] + "_" + fp + "B",
		"latchkey_0123456789ab_" + secret + "_" + fp[:42],
		"latchkey_0123456789ab-" + secret + "_" + fp,
		"latchkey_0123456789ab_" + secret[:42] + "=_" + fp,
	} {
		if _, err := ParseAuthKey(s); err == nil {
			t.Errorf("accepted %q", s)
		} else if strings.Contains(err.Error(), secret) {
			t.Errorf("error echoes the secret: %v", err)
		}
	}
}
