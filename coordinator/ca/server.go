package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/latchnet/latch/coordinator/atomicfile"
)

// DefaultServerCertLifetime is the validity of the coordinator's TLS
// certificate; it is renewed at half-life.
const DefaultServerCertLifetime = 90 * 24 * time.Hour

// SANs are the names a server certificate is valid for.
type SANs struct {
	DNS []string
	IPs []netip.Addr
}

// LocalSANs returns "localhost", 127.0.0.1, ::1, every address of every
// local interface (except IPv6 link-local, which needs a zone to dial) and
// the extra names, which may be DNS names or IP literals. The result is
// sorted and without duplicates.
func LocalSANs(extra []string) (SANs, error) {
	s := SANs{DNS: []string{"localhost"}, IPs: []netip.Addr{netip.IPv6Loopback(), netip.MustParseAddr("127.0.0.1")}}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return SANs{}, fmt.Errorf("listing interface addresses: %w", err)
	}
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		if ip := p.Addr().Unmap(); !ip.IsLinkLocalUnicast() {
			s.IPs = append(s.IPs, ip)
		}
	}
	for _, n := range extra {
		if ip, err := netip.ParseAddr(n); err == nil {
			s.IPs = append(s.IPs, ip.Unmap().WithZone(""))
			continue
		}
		if err := checkDNSName(n); err != nil {
			return SANs{}, err
		}
		s.DNS = append(s.DNS, strings.ToLower(n))
	}
	s.normalize()
	return s, nil
}

func (s *SANs) normalize() {
	slices.Sort(s.DNS)
	s.DNS = slices.Compact(s.DNS)
	slices.SortFunc(s.IPs, netip.Addr.Compare)
	s.IPs = slices.Compact(s.IPs)
}

func (s SANs) equal(o SANs) bool {
	return slices.Equal(s.DNS, o.DNS) && slices.Equal(s.IPs, o.IPs)
}

func sansOf(c *x509.Certificate) SANs {
	s := SANs{DNS: slices.Clone(c.DNSNames)}
	for _, ip := range c.IPAddresses {
		if a, ok := netip.AddrFromSlice(ip); ok {
			s.IPs = append(s.IPs, a.Unmap())
		}
	}
	s.normalize()
	return s
}

// checkDNSName accepts a DNS name of labels [A-Za-z0-9-], optionally with
// a leading "*." wildcard.
func checkDNSName(n string) error {
	name := strings.TrimPrefix(n, "*.")
	if name == "" || len(name) > 253 {
		return fmt.Errorf("invalid server name %q", n)
	}
	for _, l := range strings.Split(name, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("invalid server name %q", n)
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return fmt.Errorf("invalid server name %q", n)
			}
		}
	}
	return nil
}

// ServerCertConfig configures the coordinator's TLS certificate.
type ServerCertConfig struct {
	// Dir holds tls.crt and tls.key.
	Dir  string
	SANs SANs
	// Lifetime defaults to DefaultServerCertLifetime.
	Lifetime time.Duration
	// Now defaults to time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// ServerCert is the coordinator's TLS server certificate. It renews itself
// (and rewrites tls.crt and tls.key) once past half its life.
type ServerCert struct {
	ca  *CA
	cfg ServerCertConfig

	mu      sync.Mutex
	cert    *tls.Certificate // guarded by mu; never nil after LoadServerCert
	renewAt time.Time        // guarded by mu
}

// LoadServerCert loads tls.crt and tls.key from cfg.Dir, or issues and
// writes a new pair if they are missing, unreadable, not from ca, for
// other SANs than cfg.SANs, or past half their life.
func LoadServerCert(c *CA, cfg ServerCertConfig) (*ServerCert, bool, error) {
	if cfg.Lifetime <= 0 {
		cfg.Lifetime = DefaultServerCertLifetime
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.SANs.normalize()
	s := &ServerCert{ca: c, cfg: cfg}
	if cert, leaf, err := s.load(); err == nil {
		cert.Certificate = append(cert.Certificate[:1:1], c.cert.Raw) // leaf, then CA
		s.cert, s.renewAt = cert, halfLife(leaf)
		return s, false, nil
	}
	if err := s.renewLocked(); err != nil {
		return nil, false, err
	}
	return s, true, nil
}

func halfLife(c *x509.Certificate) time.Time {
	return c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) / 2)
}

// load reads the files and returns them if they can stay in use.
func (s *ServerCert) load() (*tls.Certificate, *x509.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(s.cfg.Dir, ServerCertFile), filepath.Join(s.cfg.Dir, ServerKeyFile))
	if err != nil {
		return nil, nil, err
	}
	leaf := cert.Leaf
	now := s.cfg.Now()
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:       s.ca.pool,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return nil, nil, err
	}
	if !sansOf(leaf).equal(s.cfg.SANs) {
		return nil, nil, errors.New("SANs changed")
	}
	if !now.Before(halfLife(leaf)) {
		return nil, nil, errors.New("past half-life")
	}
	return &cert, leaf, nil
}

// renewLocked issues a new certificate and writes it. s.mu is held or s
// is not yet shared.
func (s *ServerCert) renewLocked() error {
	now := s.cfg.Now()
	// ECDSA P-256, not Ed25519: browsers (the web console) do not accept
	// Ed25519 in TLS.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generating server key: %w", err)
	}
	pub := key.Public()
	ips := make([]net.IP, len(s.cfg.SANs.IPs))
	for i, a := range s.cfg.SANs.IPs {
		ips[i] = a.AsSlice()
	}
	notAfter := now.Add(s.cfg.Lifetime)
	if notAfter.After(s.ca.cert.NotAfter) {
		notAfter = s.ca.cert.NotAfter
	}
	der, err := s.ca.sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "Latch coordinator"},
		DNSNames:    s.cfg.SANs.DNS,
		IPAddresses: ips,
		NotBefore:   now.Add(-clockSkew),
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, pub)
	if err != nil {
		return fmt.Errorf("issuing server certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("issuing server certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encoding server key: %w", err)
	}
	// Key first: a crash between the writes leaves a mismatched pair,
	// which the next start replaces.
	if err := atomicfile.WriteFile(filepath.Join(s.cfg.Dir, ServerKeyFile),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return fmt.Errorf("writing server key: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(s.cfg.Dir, ServerCertFile),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return fmt.Errorf("writing server certificate: %w", err)
	}
	// The chain carries the CA: an enrolling agent finds in it the CA whose
	// fingerprint its enrollment key pins.
	s.cert = &tls.Certificate{Certificate: [][]byte{der, s.ca.cert.Raw}, PrivateKey: key, Leaf: leaf}
	s.renewAt = halfLife(leaf)
	return nil
}

// Leaf returns the current certificate.
func (s *ServerCert) Leaf() *x509.Certificate {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cert.Leaf
}

// GetCertificate is for tls.Config.GetCertificate. Past half-life it
// renews the certificate; if that fails it keeps serving the old one
// (still valid) and logs.
func (s *ServerCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.cfg.Now().Before(s.renewAt) {
		if err := s.renewLocked(); err != nil {
			s.cfg.Logger.Error("renewing server certificate", "err", err)
			s.renewAt = s.cfg.Now().Add(time.Minute) // retry later, not on every handshake
		} else {
			s.cfg.Logger.Info("renewed server certificate", "not_after", s.cert.Leaf.NotAfter)
		}
	}
	return s.cert, nil
}
