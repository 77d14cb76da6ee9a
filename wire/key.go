package wire

import (
	"encoding/base64"
	"errors"
	"fmt"
)

// NodePublic is a node's WireGuard (Curve25519) public key. Its text form
// is standard base64, as `wg` prints it.
type NodePublic [32]byte

// IsZero reports whether k is the all-zero key, which is never valid.
func (k NodePublic) IsZero() bool { return k == NodePublic{} }

// String returns the key in the base64 form `wg show` uses.
func (k NodePublic) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// ShortString returns the first characters of the key, for logs.
func (k NodePublic) ShortString() string { return "[" + k.String()[:5] + "]" }

// MarshalText implements encoding.TextMarshaler.
func (k NodePublic) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler. It refuses the zero key.
func (k *NodePublic) UnmarshalText(b []byte) error {
	p, err := ParseNodePublic(string(b))
	if err != nil {
		return err
	}
	*k = p
	return nil
}

// ParseNodePublic parses a base64 WireGuard public key.
func ParseNodePublic(s string) (NodePublic, error) {
	var k NodePublic
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != len(k) {
		return k, fmt.Errorf("invalid WireGuard public key %q: want 32 bytes of base64", truncate(s, 16))
	}
	copy(k[:], b)
	if k.IsZero() {
		return k, errors.New("invalid WireGuard public key: all zero")
	}
	return k, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
