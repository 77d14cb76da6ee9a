package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator/ca"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
)

func TestEnrollHappyPath(t *testing.T) {
	e := newEnv(t, nil)
	key := e.createKey(wire.CreateKeyRequest{Tags: []wire.Tag{"tag:web", "tag:ci"}, Description: "ci runners"})
	a := e.enroll(key.Key, "Runner-1.example.com")
	r := a.resp
	if r.TrustDomain != testTD || !bytes.Equal(r.CA, e.ca.Cert().Raw) {
		t.Fatalf("trust domain %q, CA matches %v", r.TrustDomain, bytes.Equal(r.CA, e.ca.Cert().Raw))
	}
	n := r.Node
	if !strings.HasPrefix(string(n.ID), "n") || len(n.ID) != 17 || n.Name != "runner-1" || n.Key != a.wgKey {
		t.Fatalf("node %+v", n)
	}
	if len(n.Addresses) != 2 || !netip.MustParsePrefix("100.64.0.0/10").Contains(n.Addresses[0].Addr()) ||
		n.Addresses[0].Bits() != 32 || !n.Addresses[1].Addr().Is6() || n.Addresses[1].Bits() != 128 {
		t.Fatalf("addresses %v", n.Addresses)
	}
	if !slices.Equal(n.Tags, []wire.Tag{"tag:ci", "tag:web"}) {
		t.Fatalf("tags %v, want all of the key's", n.Tags)
	}
	// The observed source address is added with the first endpoint's port.
	want := []netip.AddrPort{netip.MustParseAddrPort("198.18.0.5:51820"), netip.MustParseAddrPort("127.0.0.1:51820")}
	if !slices.Equal(n.Endpoints, want) {
		t.Fatalf("endpoints %v, want %v", n.Endpoints, want)
	}
	cert, err := x509.ParseCertificate(r.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	id, pub, err := e.ca.VerifyNode([]*x509.Certificate{cert}, time.Now())
	if err != nil || id != n.ID || !pub.Equal(a.certKey.Public()) {
		t.Fatalf("issued certificate: id %q err %v", id, err)
	}
	if life := time.Until(cert.NotAfter); life < 59*time.Minute || life > time.Hour {
		t.Fatalf("certificate lifetime %v, want 1h", life)
	}
	var keys []wire.KeyInfo
	e.admin(http.MethodGet, wire.PathKeys, nil, http.StatusOK, &keys)
	if len(keys) != 1 || keys[0].Uses != 1 {
		t.Fatalf("keys %+v", keys)
	}
	var info wire.NodeInfo
	e.admin(http.MethodGet, wire.PathNodes+"/runner-1", nil, http.StatusOK, &info)
	if info.ID != n.ID || info.Hostname != "Runner-1.example.com" || info.KeyID != keys[0].ID || info.Online {
		t.Fatalf("node info %+v", info)
	}
}

func TestEnrollRefusalsAreClearAndCreateNothing(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	oneOff := e.createKey(wire.CreateKeyRequest{Tags: []wire.Tag{"tag:web"}})
	used := e.createKey(wire.CreateKeyRequest{})
	e.enroll(used.Key, "first")
	revoked := e.createKey(wire.CreateKeyRequest{Reusable: true})
	e.admin(http.MethodDelete, wire.PathKeys+"/"+revoked.Info.ID, nil, http.StatusNoContent, nil)
	// An expired key, stored directly with a known secret.
	tok := NewToken()
	if err := e.st.CreateEnrollmentKey(ctx, store.EnrollmentKey{ID: tok.ID, Reusable: true,
		Created: time.Now().Add(-2 * time.Hour), Expires: time.Now().Add(-time.Hour)}, store.HashSecret(tok.Secret)); err != nil {
		t.Fatal(err)
	}
	expired := wire.AuthKey{ID: tok.ID, Secret: tok.Secret, CAFingerprint: e.ca.Fingerprint()}.String()
	good, _ := wire.ParseAuthKey(oneOff.Key)
	wrongSecret := good
	wrongSecret.Secret = NewToken().Secret
	unknownID := good
	unknownID.ID = NewToken().ID
	otherCA := good
	otherCA.CAFingerprint[0] ^= 1
	taken := newAgent() // its WireGuard key belongs to an enrolled node
	tk := e.createKey(wire.CreateKeyRequest{})
	status, b := e.do(e.client, http.MethodPost, wire.PathEnroll, agentHdr(), mustJSON(taken.request(tk.Key, "taken")))
	if status != http.StatusOK {
		t.Fatalf("setup: %d %s", status, b)
	}

	valid := func() wire.EnrollRequest { return newAgent().request(oneOff.Key, "host") }
	with := func(f func(*wire.EnrollRequest)) []byte { r := valid(); f(&r); return mustJSON(r) }
	tests := []struct {
		name    string
		hdr     map[string]string
		body    []byte
		status  int
		message string // substring of the error
	}{
		{"malformed key", agentHdr(), with(func(r *wire.EnrollRequest) { r.AuthKey = "latchkey_nope" }), 400, "malformed enrollment key"},
		{"unknown key", agentHdr(), with(func(r *wire.EnrollRequest) { r.AuthKey = unknownID.String() }), 401, "invalid enrollment key"},
		{"wrong secret", agentHdr(), with(func(r *wire.EnrollRequest) { r.AuthKey = wrongSecret.String() }), 401, "invalid enrollment key"},
		{"other coordinator's key", agentHdr(), with(func(r *wire.EnrollRequest) { r.AuthKey = otherCA.String() }), 401, "another coordinator"},
		{"expired key", agentHdr(), with(func(r *wire.EnrollRequest) { r.AuthKey = expired }), 401, "enrollment key expired"},
		{"revoked key", agentHdr(), with(func(r *wire.EnrollRequest) { r.AuthKey = revoked.Key }), 401, "enrollment key revoked"},
		{"used one-off key", agentHdr(), with(func(r *wire.EnrollRequest) { r.AuthKey = used.Key }), 401, "already used"},
		{"tag not on key", agentHdr(), with(func(r *wire.EnrollRequest) { r.Tags = []wire.Tag{"tag:db"} }), 403, `tag "tag:db" not allowed`},
		{"bad tag", agentHdr(), with(func(r *wire.EnrollRequest) { r.Tags = []wire.Tag{"web"} }), 400, "invalid tag"},
		{"no protocol header", nil, with(func(*wire.EnrollRequest) {}), 426, "missing Latch-Protocol header"},
		{"other protocol", map[string]string{wire.HeaderProtocol: "2"}, with(func(*wire.EnrollRequest) {}), 426, `unsupported Latch protocol "2"`},
		{"zero WireGuard key", agentHdr(), with(func(r *wire.EnrollRequest) { r.WireGuardKey = wire.NodePublic{} }), 400, "invalid WireGuard public key"},
		{"no WireGuard key", agentHdr(), withoutField(valid(), "wireguard_key"), 400, "wireguard_key required"},
		{"WireGuard key taken", agentHdr(), with(func(r *wire.EnrollRequest) { r.WireGuardKey = taken.wgKey }), 409, "already belongs"},
		{"bad CSR", agentHdr(), with(func(r *wire.EnrollRequest) { r.CSR[len(r.CSR)-1] ^= 1 }), 400, "csr:"},
		{"no CSR", agentHdr(), with(func(r *wire.EnrollRequest) { r.CSR = nil }), 400, "csr:"},
		{"no hostname", agentHdr(), with(func(r *wire.EnrollRequest) { r.Hostname = "" }), 400, "hostname required"},
		{"control characters in hostname", agentHdr(), with(func(r *wire.EnrollRequest) { r.Hostname = "a\nb" }), 400, "printable"},
		{"bad endpoint", agentHdr(), with(func(r *wire.EnrollRequest) { r.Endpoints = []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:1")} }), 400, "invalid endpoint"},
		{"unknown field", agentHdr(), []byte(`{"auth_key":"x","admin":true}`), 400, `unknown field "admin"`},
		{"malformed JSON", agentHdr(), []byte(`{"auth_key":`), 400, "malformed request body"},
		{"empty body", agentHdr(), nil, 400, "malformed request body"},
		{"trailing data", agentHdr(), append(with(func(*wire.EnrollRequest) {}), []byte(`{}`)...), 400, "trailing data"},
		{"oversized body", agentHdr(), append(with(func(*wire.EnrollRequest) {}), bytes.Repeat([]byte(" "), wire.MaxRequestBytes)...), 413, "larger than"},
		{"oversized string", agentHdr(), []byte(`{"hostname":"` + strings.Repeat("a", wire.MaxRequestBytes) + `"}`), 413, "larger than"},
	}
	nodesBefore := e.nodeCount()
	var keysBefore []wire.KeyInfo
	e.admin(http.MethodGet, wire.PathKeys, nil, http.StatusOK, &keysBefore)
	messages := map[string]string{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, b := e.do(e.client, http.MethodPost, wire.PathEnroll, tt.hdr, tt.body)
			msg := errorMessage(t, b)
			messages[tt.name] = msg
			if status != tt.status || !strings.Contains(msg, tt.message) {
				t.Fatalf("got %d %q, want %d containing %q", status, msg, tt.status, tt.message)
			}
			if n := e.nodeCount(); n != nodesBefore {
				t.Fatalf("a refused enrollment created a node (%d -> %d)", nodesBefore, n)
			}
		})
	}
	if messages["unknown key"] != messages["wrong secret"] {
		t.Errorf("unknown key and wrong secret are distinguishable: %q vs %q", messages["unknown key"], messages["wrong secret"])
	}
	var keysAfter []wire.KeyInfo
	e.admin(http.MethodGet, wire.PathKeys, nil, http.StatusOK, &keysAfter)
	for i := range keysBefore {
		if keysBefore[i].Uses != keysAfter[i].Uses {
			t.Errorf("key %s uses changed %d -> %d by refused enrollments", keysBefore[i].ID, keysBefore[i].Uses, keysAfter[i].Uses)
		}
	}
	// The one-off key was never consumed by the failures: it still works.
	e.enroll(oneOff.Key, "finally")
}

func TestConcurrentEnrollmentsWithOneOffKeyCreateOneNode(t *testing.T) {
	e := newEnv(t, nil)
	key := e.createKey(wire.CreateKeyRequest{})
	const n = 20
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		statuses = map[int]int{}
	)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, _ := e.do(e.client, http.MethodPost, wire.PathEnroll, agentHdr(), mustJSON(newAgent().request(key.Key, "racer")))
			mu.Lock()
			statuses[status]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if statuses[200] != 1 || statuses[401] != n-1 {
		t.Fatalf("statuses %v, want one 200 and %d 401", statuses, n-1)
	}
	if c := e.nodeCount(); c != 1 {
		t.Fatalf("%d nodes, want 1", c)
	}
}

func TestNodeCertificateFromForeignCAIsRefused(t *testing.T) {
	e := newEnv(t, nil)
	key := e.createKey(wire.CreateKeyRequest{})
	a := e.enroll(key.Key, "victim")
	// A foreign CA of the same trust domain issues a certificate for the
	// victim's node ID.
	foreign, err := ca.Generate(testTD, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	forged, _, err := foreign.IssueNode(a.csr(), a.resp.Node.ID, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c := e.httpClient(a.tlsCert(forged))
	req, _ := http.NewRequest(http.MethodGet, e.url+wire.PathStream, nil)
	req.Header.Set(wire.HeaderProtocol, "1")
	resp, err := c.Do(req)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("stream opened with a certificate from a foreign CA")
		}
	}
	// The handler refuses it too, independent of the TLS layer.
	h := New(Config{Store: e.st, CA: e.ca, Hub: e.hub})
	for name, der := range map[string][]byte{"foreign CA": forged} {
		cert, _ := x509.ParseCertificate(der)
		r := httptest.NewRequest(http.MethodGet, wire.PathStream, nil)
		r.Header.Set(wire.HeaderProtocol, "1")
		r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusUnauthorized {
			t.Fatalf("%s: handler answered %d, want 401", name, w.Code)
		}
	}
	// And without any certificate.
	status, b := e.do(e.client, http.MethodGet, wire.PathStream, agentHdr(), nil)
	if status != http.StatusUnauthorized || !strings.Contains(errorMessage(t, b), "certificate required") {
		t.Fatalf("no certificate: %d %s", status, b)
	}
}

// webAPIPolicy lets tag:web reach svc:api (8080/tcp).
const webAPIPolicy = `{
  "tagOwners": {"tag:web": [], "tag:api": []},
  "services": {"svc:api": {"tags": ["tag:api"], "ports": ["8080/tcp"]}},
  "rules": [{"src": ["tag:web"], "dst": ["svc:api"]}],
}`

func TestStreamSendsNetmapThenDeltas(t *testing.T) {
	e := newEnv(t, nil)
	apiKey := e.createKey(wire.CreateKeyRequest{Reusable: true, Tags: []wire.Tag{"tag:api"}})
	webKey := e.createKey(wire.CreateKeyRequest{Reusable: true, Tags: []wire.Tag{"tag:web"}})
	a := e.enroll(apiKey.Key, "alpha")
	s, status := e.openStream(a.client)
	if status != http.StatusOK {
		t.Fatalf("stream: %d", status)
	}
	m := s.next()
	if m.Type != wire.MsgNetmap || m.Netmap.Self.ID != a.resp.Node.ID || len(m.Netmap.Peers) != 0 || len(m.Netmap.Rules) != 0 {
		t.Fatalf("first message %+v", m)
	}
	have := m.Netmap
	waitOnline(t, e, a.resp.Node.ID, true)

	apply := func(want string) *wire.Delta {
		t.Helper()
		m := s.next()
		if m.Type != wire.MsgDelta {
			t.Fatalf("%s: got %s, want delta", want, m.Type)
		}
		next, err := have.Apply(m.Delta)
		if err != nil {
			t.Fatalf("%s: %v", want, err)
		}
		have = next
		return m.Delta
	}

	// Without a policy a joining node is invisible: the next thing alpha
	// hears of is the policy, which shows it beta and the rule admitting it.
	b := e.enroll(webKey.Key, "beta")
	e.setPolicy(webAPIPolicy)
	d := apply("policy")
	if len(d.Upsert) != 1 || d.Upsert[0].ID != b.resp.Node.ID || !d.RulesChanged {
		t.Fatalf("policy delta %+v", d)
	}
	if len(have.Rules) != 1 || len(have.Rules[0].Sources) != 0 ||
		!slices.Equal(have.Rules[0].Ports, []wire.PortRange{{First: 8080, Last: 8080}}) {
		t.Fatalf("rules after the policy %+v", have.Rules)
	}
	if len(have.Peers) != 1 || !slices.Equal(have.Peers[0].Rules, []string{have.Rules[0].ID}) ||
		!slices.Equal(have.Peers[0].Addresses, b.resp.Node.Addresses) {
		t.Fatalf("peers after the policy %+v: want beta, admitted by the rule", have.Peers)
	}

	// beta reports new endpoints: alpha gets beta again, with them.
	newEp := netip.MustParseAddrPort("198.18.0.9:41641")
	status, body := e.do(b.client, http.MethodPost, wire.PathUpdate, agentHdr(), mustJSON(wire.UpdateRequest{Endpoints: []netip.AddrPort{newEp}}))
	if status != http.StatusNoContent {
		t.Fatalf("update: %d %s", status, body)
	}
	d = apply("endpoints")
	if len(d.Upsert) != 1 || d.Upsert[0].Endpoints[0] != newEp || d.RulesChanged {
		t.Fatalf("endpoint delta %+v", d)
	}

	// A second web node joins: alpha gets it alone; the rules stay.
	c := e.enroll(webKey.Key, "gamma")
	d = apply("join")
	if len(d.Upsert) != 1 || d.Upsert[0].ID != c.resp.Node.ID || d.RulesChanged || len(d.Remove) != 0 {
		t.Fatalf("join delta %+v", d)
	}

	// beta is deleted: alpha gets a removal.
	e.admin(http.MethodDelete, wire.PathNodes+"/beta", nil, http.StatusNoContent, nil)
	d = apply("delete")
	if !slices.Equal(d.Remove, []wire.NodeID{b.resp.Node.ID}) || d.RulesChanged || len(have.Rules) != 1 {
		t.Fatalf("delete delta %+v, rules %+v", d, have.Rules)
	}
	if len(have.Peers) != 1 || have.Peers[0].ID != c.resp.Node.ID {
		t.Fatalf("peers after delete %+v", have.Peers)
	}
}

// withoutField encodes r without the named JSON field.
func withoutField(r wire.EnrollRequest, field string) []byte {
	var m map[string]any
	json.Unmarshal(mustJSON(r), &m)
	delete(m, field)
	return mustJSON(m)
}

func waitOnline(t *testing.T, e *env, id wire.NodeID, want bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.hub.Online(id) != want {
		if time.Now().After(deadline) {
			t.Fatalf("node %s online=%v, want %v", id, !want, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDeletedNodeIsCutOffAtOnce(t *testing.T) {
	e := newEnv(t, nil)
	key := e.createKey(wire.CreateKeyRequest{})
	a := e.enroll(key.Key, "doomed")
	s, _ := e.openStream(a.client)
	s.next()
	waitOnline(t, e, a.resp.Node.ID, true)
	var info wire.NodeInfo
	e.admin(http.MethodGet, wire.PathNodes+"/"+string(a.resp.Node.ID), nil, http.StatusOK, &info)
	if !info.Online {
		t.Fatal("streaming node not shown online")
	}
	e.admin(http.MethodDelete, wire.PathNodes+"/"+string(a.resp.Node.ID), nil, http.StatusNoContent, nil)
	s.waitClosed()
	for _, call := range []struct{ method, path string }{
		{http.MethodGet, wire.PathStream},
		{http.MethodPost, wire.PathUpdate},
		{http.MethodPost, wire.PathRenew},
	} {
		status, b := e.do(a.client, call.method, call.path, agentHdr(), []byte(`{}`))
		if status != http.StatusForbidden || !strings.Contains(errorMessage(t, b), "not enrolled") {
			t.Errorf("%s after delete: %d %s, want 403", call.path, status, b)
		}
	}
	e.admin(http.MethodGet, wire.PathNodes+"/doomed", nil, http.StatusNotFound, nil)
}

func TestRenewIssuesNewCertificateAndRetiresTheOld(t *testing.T) {
	e := newEnv(t, nil)
	key := e.createKey(wire.CreateKeyRequest{})
	a := e.enroll(key.Key, "renewer")
	oldClient := a.client
	a.certKey = newAgent().certKey // rotate the certificate key
	status, b := e.do(oldClient, http.MethodPost, wire.PathRenew, agentHdr(), mustJSON(wire.RenewRequest{CSR: a.csr()}))
	if status != http.StatusOK {
		t.Fatalf("renew: %d %s", status, b)
	}
	var rr wire.RenewResponse
	if err := json.Unmarshal(b, &rr); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(rr.Certificate)
	if id, pub, err := e.ca.VerifyNode([]*x509.Certificate{cert}, time.Now()); err != nil || id != a.resp.Node.ID || !pub.Equal(a.certKey.Public()) {
		t.Fatalf("renewed certificate: %q %v", id, err)
	}
	newClient := e.httpClient(a.tlsCert(rr.Certificate))
	if status, b := e.do(newClient, http.MethodPost, wire.PathUpdate, agentHdr(), []byte(`{}`)); status != http.StatusNoContent {
		t.Fatalf("new certificate: %d %s", status, b)
	}
	status, b = e.do(oldClient, http.MethodPost, wire.PathUpdate, agentHdr(), []byte(`{}`))
	if status != http.StatusForbidden || !strings.Contains(errorMessage(t, b), "superseded") {
		t.Fatalf("old certificate after renewal: %d %s", status, b)
	}
	// A bad CSR renews nothing.
	bad := a.csr()
	bad[len(bad)-1] ^= 1
	if status, _ := e.do(newClient, http.MethodPost, wire.PathRenew, agentHdr(), mustJSON(wire.RenewRequest{CSR: bad})); status != http.StatusBadRequest {
		t.Fatalf("bad CSR: %d", status)
	}
}

func TestUpdateRefusesBadBodiesAndStoresNothing(t *testing.T) {
	e := newEnv(t, nil)
	key := e.createKey(wire.CreateKeyRequest{})
	a := e.enroll(key.Key, "upd")
	before, _ := e.st.Node(context.Background(), a.resp.Node.ID)
	tests := []struct {
		name   string
		hdr    map[string]string
		body   []byte
		status int
	}{
		{"oversized", agentHdr(), []byte(`{"endpoints":["` + strings.Repeat("1", wire.MaxRequestBytes) + `"]}`), 413},
		{"malformed", agentHdr(), []byte(`{"endpoints":[`), 400},
		{"unknown field", agentHdr(), []byte(`{"endpoints":["1.2.3.4:5"],"tags":["tag:admin"]}`), 400},
		{"bad endpoint", agentHdr(), []byte(`{"endpoints":["1.2.3.4:0"]}`), 400},
		{"too many endpoints", agentHdr(), mustJSON(wire.UpdateRequest{Endpoints: manyEndpoints(17)}), 400},
		{"no protocol", nil, []byte(`{"endpoints":["1.2.3.4:5"]}`), 426},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, b := e.do(a.client, http.MethodPost, wire.PathUpdate, tt.hdr, tt.body)
			errorMessage(t, b)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, b)
			}
			after, _ := e.st.Node(context.Background(), a.resp.Node.ID)
			if !slices.Equal(after.Endpoints, before.Endpoints) {
				t.Fatalf("endpoints changed to %v", after.Endpoints)
			}
		})
	}
}

func manyEndpoints(n int) []netip.AddrPort {
	var eps []netip.AddrPort
	for i := range n {
		eps = append(eps, netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 1, byte(i + 1)}), 51820))
	}
	return eps
}

func TestStreamSendsKeepalives(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Keepalive = 50 * time.Millisecond })
	key := e.createKey(wire.CreateKeyRequest{})
	a := e.enroll(key.Key, "idle")
	s, _ := e.openStream(a.client)
	if m := s.next(); m.Type != wire.MsgNetmap {
		t.Fatalf("first %s", m.Type)
	}
	for range 2 {
		if m := s.next(); m.Type != wire.MsgKeepAlive || m.KeepAlive != 50*time.Millisecond {
			t.Fatalf("got %+v, want keepalive of 50ms", m)
		}
	}
}

func TestSecondStreamReplacesTheFirst(t *testing.T) {
	e := newEnv(t, nil)
	key := e.createKey(wire.CreateKeyRequest{})
	a := e.enroll(key.Key, "dup")
	s1, _ := e.openStream(a.client)
	s1.next()
	s2, _ := e.openStream(e.httpClient(a.tlsCert(a.resp.Certificate)))
	s2.next()
	s1.waitClosed()
	waitOnline(t, e, a.resp.Node.ID, true)
}

func TestRandomBytesNeverCrashEnroll(t *testing.T) {
	e := newEnv(t, nil)
	for i := range 50 {
		b := make([]byte, i*37)
		rand.Read(b)
		status, body := e.do(e.client, http.MethodPost, wire.PathEnroll, agentHdr(), b)
		if status != http.StatusBadRequest {
			t.Fatalf("random body %d: status %d %s", i, status, body)
		}
	}
	if e.nodeCount() != 0 {
		t.Fatal("random bodies created nodes")
	}
}

func TestTLSBelow13IsRefused(t *testing.T) {
	e := newEnv(t, nil)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: e.ca.Pool(), MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12,
	}}}
	resp, err := c.Get(e.url + "/healthz")
	if err == nil {
		resp.Body.Close()
		t.Fatal("TLS 1.2 connection accepted")
	}
}

func TestStreamWorksOverHTTP1(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Keepalive = 50 * time.Millisecond })
	key := e.createKey(wire.CreateKeyRequest{})
	a := e.enroll(key.Key, "h1")
	cert := a.tlsCert(a.resp.Certificate)
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: e.ca.Pool(), Certificates: []tls.Certificate{*cert}},
		TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{}, // no HTTP/2
	}
	t.Cleanup(tr.CloseIdleConnections)
	s, status := e.openStream(&http.Client{Transport: tr})
	if status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
	if s.resp.ProtoMajor != 1 {
		t.Fatalf("protocol %s, want HTTP/1.1", s.resp.Proto)
	}
	if m := s.next(); m.Type != wire.MsgNetmap {
		t.Fatalf("first %s", m.Type)
	}
	if m := s.next(); m.Type != wire.MsgKeepAlive {
		t.Fatalf("second %s", m.Type)
	}
}
