package control

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/latchnet/latch/wire"
)

// ErrPinMismatch means the coordinator did not prove it holds a certificate
// from the pinned CA.
var ErrPinMismatch = errors.New("coordinator certificate does not chain to the pinned CA")

// verifyServerChain checks that the presented chain's leaf is a server
// certificate issued (directly or through presented intermediates) by ca.
// Host names are not checked: the CA is private to this network, and the
// coordinator is reached by whatever address the admin handed out.
func verifyServerChain(chain []*x509.Certificate, ca *x509.Certificate) error {
	if len(chain) == 0 {
		return fmt.Errorf("%w: no certificate presented", ErrPinMismatch)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		if !c.Equal(ca) {
			inter.AddCert(c)
		}
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrPinMismatch, err)
	}
	return nil
}

// fingerprintTLSConfig returns a TLS 1.3 client configuration that accepts
// a coordinator only if its presented chain contains a CA certificate whose
// SHA-256 equals fp and the leaf verifies against that CA for server auth.
// The CA found is stored in *found for the caller to compare with the one
// the coordinator returns in its enrollment answer.
func fingerprintTLSConfig(fp [sha256.Size]byte, found **x509.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// Normal verification needs a root pool and a host name; both are
		// replaced by VerifyConnection below, which always runs.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			var ca *x509.Certificate
			for _, c := range cs.PeerCertificates {
				sum := wire.CAFingerprint(c.Raw)
				if subtle.ConstantTimeCompare(sum[:], fp[:]) == 1 {
					ca = c
					break
				}
			}
			if ca == nil {
				return fmt.Errorf("%w: no presented certificate has the fingerprint in the enrollment key (%s)", ErrPinMismatch, wire.FormatFingerprint(fp))
			}
			if !ca.BasicConstraintsValid || !ca.IsCA {
				return fmt.Errorf("%w: the pinned certificate is not a CA", ErrPinMismatch)
			}
			if err := verifyServerChain(cs.PeerCertificates, ca); err != nil {
				return err
			}
			*found = ca
			return nil
		},
	}
}

// pinnedTLSConfig returns a TLS 1.3 client configuration that trusts only
// ca and presents the node certificate that getCert returns at handshake
// time (so a renewed certificate is used by the next connection).
func pinnedTLSConfig(ca *x509.Certificate, getCert func() (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // replaced by VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyServerChain(cs.PeerCertificates, ca)
		},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return getCert()
		},
	}
}

// BaseURL normalises a coordinator address: a bare host[:port] gets
// https://, a trailing slash is dropped, and anything but https is refused.
func BaseURL(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errors.New("no coordinator URL")
	}
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("invalid coordinator URL %q", s)
	}
	if u.Scheme != "https" {
		return "", fmt.Errorf("invalid coordinator URL %q: want https://", s)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("invalid coordinator URL %q: want https://host[:port]", s)
	}
	return strings.TrimRight(u.String(), "/"), nil
}
