package netmap

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/latchnet/latch/coordinator/atomicfile"
)

// KeyFile is the name of the netmap signing key in the data directory.
const KeyFile = "netmap.key"

// LoadOrCreateKey returns the coordinator's Ed25519 netmap signing key
// from dir, creating it (PEM PKCS#8, mode 0600, written atomically) on
// first start; created reports that. Agents pin the public half at
// enrollment, so replacing the file cuts every enrolled node off until it
// enrolls again. Errors never contain key material.
func LoadOrCreateKey(dir string) (key ed25519.PrivateKey, created bool, err error) {
	path := filepath.Join(dir, KeyFile)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		_, key, err := ed25519.GenerateKey(nil)
		if err != nil {
			return nil, false, fmt.Errorf("generating netmap key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, false, fmt.Errorf("encoding netmap key: %w", err)
		}
		if err := atomicfile.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, false, fmt.Errorf("writing netmap key: %w", err)
		}
		return key, true, nil
	case err != nil:
		return nil, false, fmt.Errorf("reading netmap key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, false, fmt.Errorf("reading netmap key %s: no PEM PRIVATE KEY block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, false, fmt.Errorf("reading netmap key %s: not a PKCS#8 private key", path)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, false, fmt.Errorf("reading netmap key %s: not an Ed25519 key", path)
	}
	return key, false, nil
}
