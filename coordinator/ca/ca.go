// Package ca is the coordinator's certificate authority: one Ed25519 CA
// per network that signs the coordinator's TLS server certificate and the
// short-lived node certificates agents authenticate with.
//
// A node certificate names its node by a SPIFFE ID in its only URI SAN,
// spiffe://<trust-domain>/node/<id>, with the node ID also as subject CN,
// and is usable only for TLS client authentication. The CA's private key
// lives in ca.key (0600) in the data directory; every file is written
// atomically, so a crash during first start leaves a directory the next
// start completes.
package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/latchnet/latch/coordinator/atomicfile"
	"github.com/latchnet/latch/wire"
)

// File names in the data directory.
const (
	CACertFile     = "ca.crt"
	CAKeyFile      = "ca.key"
	ServerCertFile = "tls.crt"
	ServerKeyFile  = "tls.key"
)

// CALifetime is the validity of a newly created CA.
const CALifetime = 10 * 365 * 24 * time.Hour

// clockSkew backdates NotBefore so a peer whose clock is slightly behind
// accepts a fresh certificate.
const clockSkew = time.Minute

// CA signs certificates for one trust domain. It is safe for concurrent use.
type CA struct {
	trustDomain string
	cert        *x509.Certificate
	key         *ecdsa.PrivateKey
	pool        *x509.CertPool
}

// Generate returns a new CA that exists only in memory.
func Generate(trustDomain string, now time.Time) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating CA key: %w", err)
	}
	return selfSign(trustDomain, key, now)
}

func selfSign(trustDomain string, key *ecdsa.PrivateKey, now time.Time) (*CA, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Latch CA " + trustDomain},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(CALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true, // the CA signs leaves only
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("creating CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("creating CA certificate: %w", err)
	}
	return newCA(trustDomain, cert, key), nil
}

func newCA(trustDomain string, cert *x509.Certificate, key *ecdsa.PrivateKey) *CA {
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{trustDomain: trustDomain, cert: cert, key: key, pool: pool}
}

// LoadOrCreate loads the CA from dir, creating it on first start. It
// reports whether it created a new CA.
//
// The key is written before the certificate. A certificate without its key
// is an error; a key without a certificate (a crash during first start,
// before anything was signed or handed out) gets a fresh self-signed
// certificate.
func LoadOrCreate(dir, trustDomain string, now time.Time) (*CA, bool, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	keyPEM, kerr := os.ReadFile(keyPath)
	certPEM, cerr := os.ReadFile(certPath)
	switch {
	case kerr != nil && !errors.Is(kerr, fs.ErrNotExist):
		return nil, false, fmt.Errorf("reading CA key: %w", kerr)
	case cerr != nil && !errors.Is(cerr, fs.ErrNotExist):
		return nil, false, fmt.Errorf("reading CA certificate: %w", cerr)
	case kerr != nil && cerr == nil:
		return nil, false, fmt.Errorf("CA certificate %s exists but its key %s is missing", certPath, keyPath)
	case kerr != nil: // first start
		c, err := Generate(trustDomain, now)
		if err != nil {
			return nil, false, err
		}
		if err := c.write(dir); err != nil {
			return nil, false, err
		}
		return c, true, nil
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, false, fmt.Errorf("reading CA key %s: %w", keyPath, err)
	}
	if cerr != nil { // key written, certificate not: finish the first start
		c, err := selfSign(trustDomain, key, now)
		if err != nil {
			return nil, false, err
		}
		if err := atomicfile.WriteFile(certPath, c.CertPEM(), 0o644); err != nil {
			return nil, false, fmt.Errorf("writing CA certificate: %w", err)
		}
		return c, true, nil
	}
	cert, err := parseCert(certPEM)
	if err != nil {
		return nil, false, fmt.Errorf("reading CA certificate %s: %w", certPath, err)
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(key.Public()) {
		return nil, false, fmt.Errorf("CA certificate %s does not match its key %s", certPath, keyPath)
	}
	if !cert.IsCA {
		return nil, false, fmt.Errorf("CA certificate %s is not a CA", certPath)
	}
	if now.After(cert.NotAfter) {
		return nil, false, fmt.Errorf("CA certificate %s expired at %s", certPath, cert.NotAfter.Format(time.RFC3339))
	}
	return newCA(trustDomain, cert, key), false, nil
}

func (c *CA) write(dir string) error {
	der, err := x509.MarshalPKCS8PrivateKey(c.key)
	if err != nil {
		return fmt.Errorf("encoding CA key: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, CAKeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("writing CA key: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, CACertFile), c.CertPEM(), 0o644); err != nil {
		return fmt.Errorf("writing CA certificate: %w", err)
	}
	return nil
}

// TrustDomain returns the SPIFFE trust domain the CA issues for.
func (c *CA) TrustDomain() string { return c.trustDomain }

// Cert returns the CA certificate.
func (c *CA) Cert() *x509.Certificate { return c.cert }

// CertPEM returns the CA certificate as PEM.
func (c *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.cert.Raw})
}

// Pool returns a pool holding only the CA certificate.
func (c *CA) Pool() *x509.CertPool { return c.pool }

// Fingerprint returns the SHA-256 of the CA's DER certificate, the value
// enrollment keys carry for agents to pin.
func (c *CA) Fingerprint() [sha256.Size]byte { return wire.CAFingerprint(c.cert.Raw) }

// sign issues a certificate from tmpl for pub, signed by the CA.
func (c *CA) sign(tmpl *x509.Certificate, pub crypto.PublicKey) ([]byte, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.BasicConstraintsValid = true
	tmpl.IsCA = false
	return x509.CreateCertificate(rand.Reader, tmpl, c.cert, pub, c.key)
}

func randomSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generating serial number: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil
}

func parseCert(b []byte) (*x509.Certificate, error) {
	blk, rest := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("want exactly one PEM CERTIFICATE block")
	}
	return x509.ParseCertificate(blk.Bytes)
}

func parseKey(b []byte) (*ecdsa.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, errors.New("want a PEM PRIVATE KEY block")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, fmt.Errorf("key is %T, want ECDSA P-256", k)
	}
	return ek, nil
}
