package agent

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// newKeys generates the node's WireGuard key and its certificate key.
// Both stay on the node.
func newKeys() (wgtypes.Key, ed25519.PrivateKey, error) {
	wg, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return wgtypes.Key{}, nil, fmt.Errorf("generating WireGuard key: %w", err)
	}
	_, ck, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return wgtypes.Key{}, nil, fmt.Errorf("generating certificate key: %w", err)
	}
	return wg, ck, nil
}

// makeCSR returns a DER PKCS#10 request signed by key. The coordinator
// ignores the subject; the host name only helps people reading it.
func makeCSR(key ed25519.PrivateKey, hostname string) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: hostname},
	}, key)
	if err != nil {
		return nil, fmt.Errorf("creating CSR: %w", err)
	}
	return der, nil
}
