package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// argon2id parameters: the OWASP recommendation (19 MiB, 2 passes, one
// lane), about 30 ms per hash on a small server. Stored hashes carry their
// parameters, so raising these later keeps old hashes verifiable.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024 // KiB
	argonThreads = 1
	argonKeyLen  = 32
	argonSaltLen = 16
)

// Password length bounds: long enough to resist guessing with the login
// rate limit, short enough that hashing stays cheap.
const (
	minPasswordLen = 12
	maxPasswordLen = 256
)

// checkPassword reports why pw is not acceptable as a new password.
func checkPassword(pw string) error {
	switch {
	case len(pw) < minPasswordLen:
		return fmt.Errorf("the password must have at least %d characters", minPasswordLen)
	case len(pw) > maxPasswordLen:
		return fmt.Errorf("the password must have at most %d characters", maxPasswordLen)
	}
	return nil
}

// hashPassword returns the encoded argon2id hash of pw:
// $argon2id$v=19$m=M,t=T,p=P$SALT$HASH (base64, no padding).
func hashPassword(pw string) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hashing password: %w", err)
	}
	key := argon2.IDKey([]byte(pw), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// dummyHash is verified against when the user does not exist, so an
// unknown user name takes as long as a wrong password.
var dummyHash = func() string {
	h, err := hashPassword("not a password of anyone's")
	if err != nil {
		panic(err)
	}
	return h
}()

var errBadHash = errors.New("malformed password hash")

// verifyPassword reports whether pw matches encoded, in constant time
// with respect to the hash.
func verifyPassword(encoded, pw string) (bool, error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return false, errBadHash
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return false, errBadHash
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m == 0 || m > 1<<20 || t == 0 || t > 16 || p == 0 {
		return false, errBadHash
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil {
		return false, errBadHash
	}
	want, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(want) == 0 || len(want) > 64 {
		return false, errBadHash
	}
	got := argon2.IDKey([]byte(pw), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// noPasswordHash is the stored hash of an account that signs in only with
// the OIDC provider: it is not a PHC string, so no password matches it.
const noPasswordHash = "!oidc-only"
