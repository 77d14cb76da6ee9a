package api

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator/ca"
	"github.com/latchnet/latch/wire"
)

// caKey reads the test network's CA key from its data directory, so a
// test can sign certificates the CA itself would never issue.
func (e *env) caKey() crypto.Signer {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.dir, ca.CAKeyFile))
	if err != nil {
		e.t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		e.t.Fatal(err)
	}
	return k.(crypto.Signer)
}

// nodeCertTemplate is a node client certificate for id in trust domain
// td, valid from notBefore for an hour.
func nodeCertTemplate(td string, id wire.NodeID, notBefore time.Time) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: string(id)},
		URIs:         []*url.URL{ca.SPIFFEID(td, id)},
		NotBefore:    notBefore,
		NotAfter:     notBefore.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
}

// TestRefusedCertificatesOnEveryAgentRoute presents, on the stream,
// update and renew routes, certificates that must never authenticate a
// node: each is refused (at the TLS handshake or by the handler, which
// is also called directly, bypassing TLS), and nothing changes.
func TestRefusedCertificatesOnEveryAgentRoute(t *testing.T) {
	e := newEnv(t, nil)
	key := e.createKey(wire.CreateKeyRequest{Reusable: true})
	victim := e.enroll(key.Key, "victim")
	id := victim.resp.Node.ID
	now := time.Now()

	forge := func(tmpl, parent *x509.Certificate, signer crypto.Signer) []byte {
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, victim.certKey.Public(), signer)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	selfSigned := func() []byte {
		tmpl := nodeCertTemplate(testTD, id, now.Add(-time.Minute))
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, victim.certKey.Public(), victim.certKey)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	otherCA := func(td string) []byte {
		foreign, err := ca.Generate(td, now)
		if err != nil {
			t.Fatal(err)
		}
		der, _, err := foreign.IssueNode(victim.csr(), id, time.Hour, now)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	expired, _, err := e.ca.IssueNode(victim.csr(), id, time.Hour, now.Add(-3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// A node that is revoked, and one that is deleted, each with a
	// certificate that was valid for it.
	revoked := e.enroll(key.Key, "revoked")
	e.admin(http.MethodPost, wire.PathNodes+"/revoked/revoke", nil, http.StatusNoContent, nil)
	deleted := e.enroll(key.Key, "deleted")
	e.admin(http.MethodDelete, wire.PathNodes+"/deleted", nil, http.StatusNoContent, nil)

	tests := []struct {
		name string
		cert []byte
		key  ed25519.PrivateKey
		msg  string // the handler's refusal names this
	}{
		{"forged self-signed with the victim's SPIFFE ID", selfSigned(), victim.certKey, "not valid for this network"},
		{"another CA of the same trust domain", otherCA(testTD), victim.certKey, "not valid for this network"},
		{"another trust domain's CA", otherCA("evil.internal"), victim.certKey, "not valid for this network"},
		{"this CA, another trust domain's SPIFFE ID", forge(nodeCertTemplate("evil.internal", id, now.Add(-time.Minute)), e.ca.Cert(), e.caKey()),
			victim.certKey, "is not a node of trust domain"},
		{"expired", expired, victim.certKey, "not valid for this network"},
		{"revoked node", revoked.resp.Certificate, revoked.certKey, "not enrolled"},
		{"deleted node", deleted.resp.Certificate, deleted.certKey, "not enrolled"},
	}
	routes := []struct {
		method, path string
		body         []byte
	}{
		{http.MethodGet, wire.PathStream, nil},
		{http.MethodPost, wire.PathUpdate, mustJSON(wire.UpdateRequest{Posture: &wire.Posture{OS: "evil", AgentVersion: "9"}})},
		{http.MethodPost, wire.PathRenew, mustJSON(wire.RenewRequest{CSR: victim.csr()})},
	}
	h := New(Config{Store: e.st, CA: e.ca, Hub: e.hub, Now: time.Now})
	before, err := e.st.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		for _, rt := range routes {
			t.Run(tt.name+" "+rt.path, func(t *testing.T) {
				// Over TLS: the handshake fails or the handler refuses.
				c := e.httpClient(&tls.Certificate{Certificate: [][]byte{tt.cert}, PrivateKey: tt.key})
				req, _ := http.NewRequest(rt.method, e.url+rt.path, strings.NewReader(string(rt.body)))
				req.Header.Set(wire.HeaderProtocol, "1")
				if resp, err := c.Do(req); err == nil {
					resp.Body.Close()
					if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden {
						t.Fatalf("over TLS: status %d, want 401 or 403", resp.StatusCode)
					}
				}
				// The handler alone, as if TLS had let it through.
				cert, err := x509.ParseCertificate(tt.cert)
				if err != nil {
					t.Fatal(err)
				}
				r := httptest.NewRequest(rt.method, rt.path, strings.NewReader(string(rt.body)))
				r.Header.Set(wire.HeaderProtocol, "1")
				r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != http.StatusUnauthorized && w.Code != http.StatusForbidden {
					t.Fatalf("handler: status %d %s, want 401 or 403", w.Code, w.Body)
				}
				if msg := errorMessage(t, w.Body.Bytes()); !strings.Contains(msg, tt.msg) {
					t.Fatalf("handler: %q does not say %q", msg, tt.msg)
				}
			})
		}
	}
	// Nothing changed: no posture, no new certificate key, same version.
	after, err := e.st.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if after.Version != before.Version {
		t.Errorf("netmap version %d -> %d: a refused call changed something", before.Version, after.Version)
	}
	n, err := e.st.Node(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if n.Posture != nil || !n.CertKey.Equal(victim.certKey.Public()) {
		t.Errorf("victim changed: posture %+v", n.Posture)
	}
	// The victim's own certificate still works.
	if status, b := e.do(victim.client, http.MethodPost, wire.PathUpdate, agentHdr(), []byte(`{}`)); status != http.StatusNoContent {
		t.Fatalf("victim's own certificate: %d %s", status, b)
	}
}
