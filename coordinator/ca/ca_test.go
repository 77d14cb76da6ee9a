package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/wire"
)

var now = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

const td = "test.internal"

func newCSR(t *testing.T) ([]byte, ed25519.PrivateKey) {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "ignored"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}

func TestLoadOrCreatePersistsTheCA(t *testing.T) {
	dir := t.TempDir()
	c1, created, err := LoadOrCreate(dir, td, now)
	if err != nil || !created {
		t.Fatalf("first start: created=%v err=%v", created, err)
	}
	fi, err := os.Stat(filepath.Join(dir, CAKeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("ca.key mode: %v %v", fi, err)
	}
	c2, created, err := LoadOrCreate(dir, td, now.Add(time.Hour))
	if err != nil || created {
		t.Fatalf("second start: created=%v err=%v", created, err)
	}
	if c1.Fingerprint() != c2.Fingerprint() {
		t.Fatal("CA changed across restarts")
	}
	if !c2.Cert().IsCA || c2.Cert().PublicKeyAlgorithm != x509.ECDSA {
		t.Fatal("not an ECDSA CA")
	}
}

func TestLoadOrCreateFinishesAnInterruptedFirstStart(t *testing.T) {
	dir := t.TempDir()
	c1, _, err := LoadOrCreate(dir, td, now)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, CACertFile)) // crash after the key was written
	c2, created, err := LoadOrCreate(dir, td, now)
	if err != nil || !created {
		t.Fatalf("created=%v err=%v", created, err)
	}
	if !c2.key.Equal(c1.key) {
		t.Fatal("key was replaced")
	}
	if _, _, err := LoadOrCreate(dir, td, now); err != nil {
		t.Fatal(err)
	}
}

func TestLoadOrCreateRefusesBrokenState(t *testing.T) {
	tests := []struct {
		name    string
		breakIt func(dir string)
	}{
		{"key missing", func(dir string) { os.Remove(filepath.Join(dir, CAKeyFile)) }},
		{"key of another CA", func(dir string) {
			other := t.TempDir()
			LoadOrCreate(other, td, now)
			b, _ := os.ReadFile(filepath.Join(other, CAKeyFile))
			os.WriteFile(filepath.Join(dir, CAKeyFile), b, 0o600)
		}},
		{"garbage certificate", func(dir string) { os.WriteFile(filepath.Join(dir, CACertFile), []byte("x"), 0o644) }},
		{"garbage key", func(dir string) { os.WriteFile(filepath.Join(dir, CAKeyFile), []byte("x"), 0o600) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, _, err := LoadOrCreate(dir, td, now); err != nil {
				t.Fatal(err)
			}
			tt.breakIt(dir)
			if _, _, err := LoadOrCreate(dir, td, now); err == nil {
				t.Fatal("loaded a broken CA")
			}
		})
	}
	if _, _, err := LoadOrCreate(t.TempDir(), td, now); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	LoadOrCreate(dir, td, now)
	if _, _, err := LoadOrCreate(dir, td, now.Add(CALifetime+time.Hour)); err == nil {
		t.Fatal("loaded an expired CA")
	}
}

func TestNodeCertificateRoundTrip(t *testing.T) {
	c, err := Generate(td, now)
	if err != nil {
		t.Fatal(err)
	}
	csr, key := newCSR(t)
	der, pub, err := c.IssueNode(csr, "n0123456789abcdef", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(key.Public()) {
		t.Fatal("certified key is not the CSR's")
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if got := cert.URIs[0].String(); got != "spiffe://test.internal/node/n0123456789abcdef" {
		t.Errorf("URI SAN %q", got)
	}
	if cert.Subject.CommonName != "n0123456789abcdef" || cert.IsCA {
		t.Errorf("subject %v, IsCA %v", cert.Subject, cert.IsCA)
	}
	if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("EKU %v, want client auth only", cert.ExtKeyUsage)
	}
	if !cert.NotAfter.Equal(now.Add(time.Hour)) {
		t.Errorf("NotAfter %v, want %v", cert.NotAfter, now.Add(time.Hour))
	}
	id, vpub, err := c.VerifyNode([]*x509.Certificate{cert}, now.Add(time.Minute))
	if err != nil || id != "n0123456789abcdef" || !vpub.Equal(pub) {
		t.Fatalf("VerifyNode = %q, %v", id, err)
	}
	if _, _, err := c.VerifyNode([]*x509.Certificate{cert}, now.Add(time.Hour+time.Second)); err == nil {
		t.Fatal("expired node certificate verified")
	}
}

func TestVerifyNodeRefusesCertificatesThatAreNotNodes(t *testing.T) {
	c, _ := Generate(td, now)
	foreign, _ := Generate(td, now) // same trust domain, different CA
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	id := wire.NodeID("n0123456789abcdef")
	spiffe := SPIFFEID(td, id)
	mk := func(ca *CA, mutate func(*x509.Certificate)) *x509.Certificate {
		tmpl := &x509.Certificate{
			Subject:     pkix.Name{CommonName: string(id)},
			URIs:        []*url.URL{spiffe},
			NotBefore:   now.Add(-time.Minute),
			NotAfter:    now.Add(time.Hour),
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		if mutate != nil {
			mutate(tmpl)
		}
		der, err := ca.sign(tmpl, key.Public())
		if err != nil {
			t.Fatal(err)
		}
		cert, _ := x509.ParseCertificate(der)
		return cert
	}
	if _, _, err := c.VerifyNode([]*x509.Certificate{mk(c, nil)}, now); err != nil {
		t.Fatalf("reference certificate refused: %v", err)
	}
	tests := []struct {
		name string
		cert *x509.Certificate
	}{
		{"foreign CA", mk(foreign, nil)},
		{"server EKU", mk(c, func(x *x509.Certificate) { x.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} })},
		{"other trust domain", mk(c, func(x *x509.Certificate) { x.URIs = []*url.URL{SPIFFEID("evil.internal", id)} })},
		{"not a node path", mk(c, func(x *x509.Certificate) {
			x.URIs = []*url.URL{{Scheme: "spiffe", Host: td, Path: "/admin/" + string(id)}}
		})},
		{"two URIs", mk(c, func(x *x509.Certificate) { x.URIs = []*url.URL{spiffe, SPIFFEID(td, "n2")} })},
		{"no URI", mk(c, func(x *x509.Certificate) { x.URIs = nil })},
		{"CN mismatch", mk(c, func(x *x509.Certificate) { x.Subject.CommonName = "n2" })},
		{"not yet valid", mk(c, func(x *x509.Certificate) { x.NotBefore = now.Add(time.Minute) })},
		{"https scheme", mk(c, func(x *x509.Certificate) {
			x.URIs = []*url.URL{{Scheme: "https", Host: td, Path: "/node/" + string(id)}}
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, _, err := c.VerifyNode([]*x509.Certificate{tt.cert}, now); err == nil {
				t.Fatalf("accepted as node %q", got)
			}
		})
	}
	if _, _, err := c.VerifyNode(nil, now); err != ErrNoCertificate {
		t.Fatalf("empty chain: %v", err)
	}
}

func TestParseCSRRequiresEd25519AndProofOfPossession(t *testing.T) {
	good, _ := newCSR(t)
	if _, err := ParseCSR(good); err != nil {
		t.Fatal(err)
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, ecKey)
	tampered := append([]byte(nil), good...)
	tampered[len(tampered)-1] ^= 1 // flip a signature bit
	for name, der := range map[string][]byte{"ecdsa": ec, "tampered": tampered, "garbage": []byte("nope"), "empty": nil} {
		if _, err := ParseCSR(der); err == nil {
			t.Errorf("%s CSR accepted", name)
		}
	}
	c, _ := Generate(td, now)
	if _, _, err := c.IssueNode(tampered, "n1", time.Hour, now); err == nil {
		t.Error("issued for a tampered CSR")
	}
	if _, _, err := c.IssueNode(good, "N/../x", time.Hour, now); err == nil {
		t.Error("issued for an invalid node ID")
	}
}

func TestServerCertificate(t *testing.T) {
	dir := t.TempDir()
	c, _, err := LoadOrCreate(dir, td, now)
	if err != nil {
		t.Fatal(err)
	}
	sans, err := LocalSANs([]string{"coord.example.com", "192.0.2.7"})
	if err != nil {
		t.Fatal(err)
	}
	clock := now
	cfg := ServerCertConfig{Dir: dir, SANs: sans, Lifetime: 48 * time.Hour, Now: func() time.Time { return clock }}
	s1, created, err := LoadServerCert(c, cfg)
	if err != nil || !created {
		t.Fatalf("created=%v err=%v", created, err)
	}
	leaf := s1.Leaf()
	for _, host := range []string{"localhost", "127.0.0.1", "::1", "coord.example.com", "192.0.2.7"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: c.Pool(), CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("server cert not valid for %s: %v", host, err)
		}
	}
	if fi, _ := os.Stat(filepath.Join(dir, ServerKeyFile)); fi.Mode().Perm() != 0o600 {
		t.Errorf("tls.key mode %v", fi.Mode().Perm())
	}

	// Browsers accept ECDSA but not Ed25519 for TLS, and enrolling agents
	// pin the CA they find in the presented chain.
	if tc, _ := s1.GetCertificate(nil); tc.Leaf.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("server key is %v, want ECDSA", tc.Leaf.PublicKeyAlgorithm)
	} else if len(tc.Certificate) != 2 || !bytes.Equal(tc.Certificate[1], c.Cert().Raw) {
		t.Errorf("issued: chain has %d certificates, want leaf then CA", len(tc.Certificate))
	}

	// Same SANs, early in life: reused, still with the CA in its chain.
	s2, created, err := LoadServerCert(c, cfg)
	if err != nil || created || s2.Leaf().SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Fatalf("restart: created=%v err=%v", created, err)
	}
	if tc, _ := s2.GetCertificate(nil); len(tc.Certificate) != 2 || !bytes.Equal(tc.Certificate[1], c.Cert().Raw) {
		t.Errorf("loaded: chain has %d certificates, want leaf then CA", len(tc.Certificate))
	}
	// SANs changed: reissued.
	cfg2 := cfg
	cfg2.SANs.DNS = append([]string{"other.example.com"}, cfg.SANs.DNS...)
	if _, created, err := LoadServerCert(c, cfg2); err != nil || !created {
		t.Fatalf("SAN change: created=%v err=%v", created, err)
	}
	// Past half-life: reissued on start...
	clock = now.Add(25 * time.Hour)
	s3, created, err := LoadServerCert(c, cfg2)
	if err != nil || !created {
		t.Fatalf("half-life: created=%v err=%v", created, err)
	}
	// ...and while running.
	before := s3.Leaf().SerialNumber
	clock = clock.Add(25 * time.Hour)
	got, err := s3.GetCertificate(nil)
	if err != nil || got.Leaf.SerialNumber.Cmp(before) == 0 {
		t.Fatalf("GetCertificate did not renew past half-life: %v", err)
	}
	// A server certificate from another CA is replaced.
	other, _ := Generate(td, now)
	if _, created, err := LoadServerCert(other, cfg2); err != nil || !created {
		t.Fatalf("foreign CA: created=%v err=%v", created, err)
	}
}

func TestLocalSANsRejectsBadNames(t *testing.T) {
	for _, n := range []string{"", "a..b", "-x.com", "x_y.com", strings.Repeat("a", 64) + ".com", "a b"} {
		if _, err := LocalSANs([]string{n}); err == nil {
			t.Errorf("accepted %q", n)
		}
	}
	s, err := LocalSANs([]string{"Coord.Example.com", "::ffff:10.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(s.IPs, netip.MustParseAddr("10.0.0.1")) || !slices.Contains(s.DNS, "coord.example.com") {
		t.Errorf("SANs %+v", s)
	}
}
