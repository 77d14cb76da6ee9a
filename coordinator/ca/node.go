package ca

import (
	"crypto/ed25519"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/latchnet/latch/wire"
)

// ErrNoCertificate reports a request without a client certificate.
var ErrNoCertificate = errors.New("no client certificate")

// SPIFFEID returns spiffe://<trustDomain>/node/<id>.
func SPIFFEID(trustDomain string, id wire.NodeID) *url.URL {
	return &url.URL{Scheme: "spiffe", Host: trustDomain, Path: "/node/" + string(id)}
}

// ParseCSR parses a DER PKCS#10 request, checks that it is signed by the
// key it names (proof of possession) and that the key is Ed25519, and
// returns the key. The request's subject and extensions are ignored: the
// coordinator alone decides what a node certificate says.
func ParseCSR(der []byte) (ed25519.PublicKey, error) {
	if len(der) == 0 {
		return nil, errors.New("certificate request missing")
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, errors.New("certificate request is not valid DER PKCS#10")
	}
	pub, ok := csr.PublicKey.(ed25519.PublicKey)
	if !ok || csr.PublicKeyAlgorithm != x509.Ed25519 {
		return nil, fmt.Errorf("certificate request key is %v, want Ed25519", csr.PublicKeyAlgorithm)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, errors.New("certificate request signature does not verify")
	}
	return pub, nil
}

// IssueNode signs a node certificate for the key in csr (see ParseCSR),
// valid from now for lifetime. It returns the DER certificate and the key
// it certifies.
func (c *CA) IssueNode(csr []byte, id wire.NodeID, lifetime time.Duration, now time.Time) ([]byte, ed25519.PublicKey, error) {
	if !validNodeID(string(id)) {
		return nil, nil, fmt.Errorf("issuing node certificate: invalid node ID %q", id)
	}
	if lifetime <= 0 {
		return nil, nil, errors.New("issuing node certificate: lifetime must be positive")
	}
	pub, err := ParseCSR(csr)
	if err != nil {
		return nil, nil, fmt.Errorf("issuing node certificate: %w", err)
	}
	notAfter := now.Add(lifetime)
	if notAfter.After(c.cert.NotAfter) {
		notAfter = c.cert.NotAfter
	}
	der, err := c.sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: string(id)},
		URIs:        []*url.URL{SPIFFEID(c.trustDomain, id)},
		NotBefore:   now.Add(-clockSkew),
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, pub)
	if err != nil {
		return nil, nil, fmt.Errorf("issuing node certificate: %w", err)
	}
	return der, pub, nil
}

// VerifyNode checks a client certificate chain as presented in TLS (leaf
// first) and returns the node it names and its public key. The leaf must
// be an Ed25519 client certificate signed directly by this CA, valid at
// now, with exactly one URI SAN spiffe://<trust-domain>/node/<id> and
// subject CN <id>. Whether the node still exists and this is its current
// key is the caller's check.
func (c *CA) VerifyNode(chain []*x509.Certificate, now time.Time) (wire.NodeID, ed25519.PublicKey, error) {
	if len(chain) == 0 {
		return "", nil, ErrNoCertificate
	}
	leaf := chain[0]
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:       c.pool,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return "", nil, fmt.Errorf("client certificate not valid for this network: %w", err)
	}
	pub, ok := leaf.PublicKey.(ed25519.PublicKey)
	if !ok {
		return "", nil, errors.New("client certificate key is not Ed25519")
	}
	if len(leaf.URIs) != 1 {
		return "", nil, errors.New("client certificate must carry exactly one URI SAN")
	}
	u := leaf.URIs[0]
	id, ok := strings.CutPrefix(u.Path, "/node/")
	if u.Scheme != "spiffe" || u.Host != c.trustDomain || u.User != nil || u.RawQuery != "" || u.Fragment != "" ||
		!ok || !validNodeID(id) {
		return "", nil, fmt.Errorf("client certificate SPIFFE ID %q is not a node of trust domain %q", u.String(), c.trustDomain)
	}
	if leaf.Subject.CommonName != id {
		return "", nil, errors.New("client certificate subject does not match its SPIFFE ID")
	}
	return wire.NodeID(id), pub, nil
}

// validNodeID accepts 1 to 64 characters of [a-z0-9-].
func validNodeID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}
