package control

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/latchnet/latch/wire"
)

// Enrollment is what a node learns when it joins the network.
type Enrollment struct {
	Node        wire.Node
	Cert        *x509.Certificate
	CA          *x509.Certificate
	TrustDomain string
	// NetmapKey verifies every netmap of this node (wire.VerifyNetmap);
	// the node pins it with its identity.
	NetmapKey ed25519.PublicKey
}

// EnrollTimeout bounds one enrollment call.
const EnrollTimeout = 30 * time.Second

// Enroll presents req to the coordinator at baseURL. The coordinator must
// prove, in its TLS handshake, that it holds a certificate issued by the CA
// whose fingerprint the enrollment key in req carries; the answer is then
// checked for consistency with the request (same CA, a certificate for the
// CSR's key naming the returned node). Errors are one line and never
// contain the key's secret: "enrollment refused: <coordinator's reason>"
// when the coordinator said no, "enrollment failed: <reason>" otherwise.
func Enroll(ctx context.Context, baseURL string, req wire.EnrollRequest) (*Enrollment, error) {
	key, err := wire.ParseAuthKey(req.AuthKey)
	if err != nil {
		return nil, err
	}
	return EnrollPinned(ctx, baseURL, req, key.CAFingerprint)
}

// EnrollPinned is Enroll with the coordinator's CA fingerprint given apart
// from the request: a workload identity enrollment (req.IDToken) has no
// enrollment key to carry it, and there is no trust on first use.
func EnrollPinned(ctx context.Context, baseURL string, req wire.EnrollRequest, caFingerprint [sha256.Size]byte) (*Enrollment, error) {
	if caFingerprint == ([sha256.Size]byte{}) {
		return nil, errors.New("enrollment failed: no CA fingerprint to pin the coordinator by")
	}
	base, err := BaseURL(baseURL)
	if err != nil {
		return nil, err
	}
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil {
		return nil, fmt.Errorf("enrollment failed: bad CSR: %w", err)
	}
	csrKey, ok := csr.PublicKey.(ed25519.PublicKey)
	if !ok {
		return nil, errors.New("enrollment failed: CSR key is not Ed25519")
	}

	var tlsCA *x509.Certificate
	tr := &http.Transport{
		TLSClientConfig:     fingerprintTLSConfig(caFingerprint, &tlsCA),
		TLSHandshakeTimeout: 10 * time.Second,
		Proxy:               nil,
		DialContext:         contextDial, // dial.go
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, CheckRedirect: noRedirects}

	ctx, cancel := context.WithTimeout(ctx, EnrollTimeout)
	defer cancel()
	var resp wire.EnrollResponse
	if err := doJSON(ctx, hc, http.MethodPost, base+wire.PathEnroll, req, &resp); err != nil {
		var ae *APIError
		if errors.As(err, &ae) && ae.Status < 500 {
			return nil, fmt.Errorf("enrollment refused: %s", ae.Message)
		}
		if errors.Is(err, ErrPinMismatch) {
			return nil, fmt.Errorf("enrollment failed: %w", unwrapURL(err))
		}
		return nil, fmt.Errorf("enrollment failed: %s", oneLine(err))
	}

	ca, err := x509.ParseCertificate(resp.CA)
	if err != nil {
		return nil, fmt.Errorf("enrollment failed: coordinator sent a bad CA certificate: %v", err)
	}
	if wire.CAFingerprint(ca.Raw) != caFingerprint || tlsCA == nil || !ca.Equal(tlsCA) {
		return nil, errors.New("enrollment failed: coordinator sent a CA that does not match the pinned CA fingerprint")
	}
	cert, err := x509.ParseCertificate(resp.Certificate)
	if err != nil {
		return nil, fmt.Errorf("enrollment failed: coordinator sent a bad node certificate: %v", err)
	}
	if err := CheckNodeCert(cert, ca, csrKey, resp.TrustDomain, resp.Node.ID); err != nil {
		return nil, fmt.Errorf("enrollment failed: %w", err)
	}
	if resp.Node.Key != req.WireGuardKey {
		return nil, errors.New("enrollment failed: coordinator recorded another WireGuard key")
	}
	if len(resp.Node.Addresses) == 0 {
		return nil, errors.New("enrollment failed: coordinator assigned no overlay address")
	}
	if len(resp.NetmapKey) != ed25519.PublicKeySize {
		return nil, errors.New("enrollment failed: coordinator sent no valid netmap signing key")
	}
	return &Enrollment{Node: resp.Node, Cert: cert, CA: ca, TrustDomain: resp.TrustDomain,
		NetmapKey: ed25519.PublicKey(resp.NetmapKey)}, nil
}

// SPIFFEID returns the SPIFFE ID of a node.
func SPIFFEID(trustDomain string, id wire.NodeID) string {
	return "spiffe://" + trustDomain + "/node/" + string(id)
}

// CheckNodeCert verifies that cert is a client certificate from ca for key,
// naming node id in trust domain td.
func CheckNodeCert(cert, ca *x509.Certificate, key ed25519.PublicKey, td string, id wire.NodeID) error {
	if id == "" || td == "" {
		return errors.New("coordinator sent no node id or trust domain")
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("node certificate does not verify against the CA: %v", err)
	}
	pub, ok := cert.PublicKey.(ed25519.PublicKey)
	if !ok || !pub.Equal(key) {
		return errors.New("node certificate is not for this node's certificate key")
	}
	want := SPIFFEID(td, id)
	for _, u := range cert.URIs {
		if u.String() == want {
			return nil
		}
	}
	return fmt.Errorf("node certificate does not name %s", want)
}

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
