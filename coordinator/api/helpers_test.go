package api

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator/ca"
	"github.com/latchnet/latch/coordinator/clock"
	"github.com/latchnet/latch/coordinator/grants"
	"github.com/latchnet/latch/coordinator/netmap"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
)

const testTD = "test.internal"

// env is a coordinator API on a loopback HTTPS server with real
// certificates and a real SQLite store.
type env struct {
	t      *testing.T
	st     *store.SQLite
	ca     *ca.CA
	hub    *netmap.Hub
	clock  *clock.Fake // the API's and the grant expirer's clock
	dir    string      // data directory: latch.db, CA
	srv    *httptest.Server
	url    string
	token  string // admin token
	client *http.Client
}

func newEnv(t *testing.T, mod func(*Config)) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.OpenSQLite(ctx, filepath.Join(dir, "latch.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.Init(ctx, testTD); err != nil {
		t.Fatal(err)
	}
	c, _, err := ca.LoadOrCreate(dir, testTD, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	sc, _, err := ca.LoadServerCert(c, ca.ServerCertConfig{Dir: dir, SANs: ca.SANs{
		DNS: []string{"localhost"}, IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	hub := netmap.NewHub(netmap.HubConfig{Source: &netmap.StoreSource{Store: st}})
	clk := clock.NewFake(time.Now())
	clk.SetStep(time.Microsecond) // successive events get distinct times
	exp := grants.Start(grants.Config{Store: st, Notify: hub.Notify, Clock: clk})
	cfg := Config{Store: st, CA: c, Hub: hub, Grants: exp, NodeCertLifetime: time.Hour, Keepalive: time.Hour, Now: clk.Now,
		RateLimits: noRateLimits}
	if mod != nil {
		mod(&cfg)
	}
	srv := httptest.NewUnstartedServer(New(cfg))
	srv.TLS = TLSConfig(c, sc.GetCertificate)
	// httptest adds its own certificate unless one is set, and a client
	// dialing an IP sends no SNI, so that one would win over GetCertificate.
	cur, _ := sc.GetCertificate(nil)
	srv.TLS.Certificates = []tls.Certificate{*cur}
	srv.EnableHTTP2 = true
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	t.Cleanup(hub.Close) // runs first: ends streams so srv.Close does not wait
	t.Cleanup(exp.Close)

	tok := NewToken()
	if _, err := st.CreateBootstrapToken(ctx, store.APIToken{ID: tok.ID, User: "bootstrap", Scopes: []string{ScopeAdmin}, Created: clk.Now()},
		store.HashSecret(tok.Secret)); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, st: st, ca: c, hub: hub, clock: clk, dir: dir, srv: srv, url: srv.URL, token: tok.String()}
	e.client = e.httpClient(nil)
	return e
}

func (e *env) dbPath() string { return filepath.Join(e.dir, "latch.db") }

// httpClient trusts only the network CA and presents cert if given.
func (e *env) httpClient(cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{RootCAs: e.ca.Pool(), MinVersion: tls.VersionTLS13}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	e.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// do sends a request and returns the status and body.
func (e *env) do(c *http.Client, method, path string, hdr map[string]string, body []byte) (int, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func agentHdr() map[string]string {
	return map[string]string{wire.HeaderProtocol: strconv.Itoa(wire.ProtocolVersion)}
}

func (e *env) adminHdr() map[string]string {
	return map[string]string{"Authorization": "Bearer " + e.token}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// admin calls the admin API with the bootstrap token and decodes the
// response into out, failing unless the status is want.
func (e *env) admin(method, path string, in any, want int, out any) {
	e.t.Helper()
	e.as(e.token, method, path, in, want, out)
}

// as calls the admin API with token and decodes the response into out,
// failing unless the status is want. Error bodies must be one-line
// wire.Errors.
func (e *env) as(token, method, path string, in any, want int, out any) {
	e.t.Helper()
	var body []byte
	if in != nil {
		body = mustJSON(in)
	}
	status, b := e.do(e.client, method, path, map[string]string{"Authorization": "Bearer " + token}, body)
	if status >= 400 {
		policyError(e.t, b)
	}
	if status != want {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, status, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

// createToken creates an API token for user with scopes and returns it.
func (e *env) createToken(user string, scopes ...string) string {
	e.t.Helper()
	var resp wire.CreateTokenResponse
	e.admin(http.MethodPost, wire.PathTokens, wire.CreateTokenRequest{User: user, Scopes: scopes}, http.StatusCreated, &resp)
	return resp.Token
}

// setPolicy saves src and returns the response.
func (e *env) setPolicy(src string) wire.SetPolicyResponse {
	e.t.Helper()
	var resp wire.SetPolicyResponse
	e.admin(http.MethodPost, wire.PathPolicy, wire.SetPolicyRequest{Source: src}, http.StatusOK, &resp)
	return resp
}

func (e *env) createKey(req wire.CreateKeyRequest) wire.CreateKeyResponse {
	e.t.Helper()
	var resp wire.CreateKeyResponse
	e.admin(http.MethodPost, wire.PathKeys, req, http.StatusCreated, &resp)
	return resp
}

// agent is a test node: its keys and, once enrolled, its identity.
type agent struct {
	wgKey   wire.NodePublic
	certKey ed25519.PrivateKey
	resp    wire.EnrollResponse
	client  *http.Client
}

func newAgent() *agent {
	a := &agent{}
	rand.Read(a.wgKey[:])
	_, a.certKey, _ = ed25519.GenerateKey(rand.Reader)
	return a
}

func (a *agent) csr() []byte {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, a.certKey)
	if err != nil {
		panic(err)
	}
	return der
}

func (a *agent) request(authKey, host string) wire.EnrollRequest {
	return wire.EnrollRequest{
		AuthKey:      authKey,
		Hostname:     host,
		WireGuardKey: a.wgKey,
		CSR:          a.csr(),
		Endpoints:    []netip.AddrPort{netip.MustParseAddrPort("198.18.0.5:51820")},
	}
}

// enroll enrolls a fresh agent and fails the test unless it gets 200.
func (e *env) enroll(authKey, host string) *agent {
	e.t.Helper()
	a := newAgent()
	status, b := e.do(e.client, http.MethodPost, wire.PathEnroll, agentHdr(), mustJSON(a.request(authKey, host)))
	if status != http.StatusOK {
		e.t.Fatalf("enroll %s: %d %s", host, status, b)
	}
	if err := json.Unmarshal(b, &a.resp); err != nil {
		e.t.Fatal(err)
	}
	a.client = e.httpClient(a.tlsCert(a.resp.Certificate))
	return a
}

func (a *agent) tlsCert(der []byte) *tls.Certificate {
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: a.certKey}
}

// stream is an open netmap stream.
type stream struct {
	t    *testing.T
	msgs chan wire.StreamMessage
	resp *http.Response
}

func (e *env) openStream(c *http.Client) (*stream, int) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.url+wire.PathStream, nil)
	for k, v := range agentHdr() {
		req.Header.Set(k, v)
	}
	sc := *c
	sc.Timeout = 0 // streams are long-lived
	resp, err := sc.Do(req)
	if err != nil {
		e.t.Fatalf("open stream: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, resp.StatusCode
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		e.t.Fatalf("stream content type %q", ct)
	}
	s := &stream{t: e.t, msgs: make(chan wire.StreamMessage, 64), resp: resp}
	go func() {
		defer close(s.msgs)
		dec := json.NewDecoder(resp.Body)
		for {
			var m wire.StreamMessage
			if err := dec.Decode(&m); err != nil {
				return
			}
			s.msgs <- m
		}
	}()
	e.t.Cleanup(func() { resp.Body.Close() })
	return s, resp.StatusCode
}

func (s *stream) next() wire.StreamMessage {
	s.t.Helper()
	select {
	case m, ok := <-s.msgs:
		if !ok {
			s.t.Fatal("stream ended")
		}
		return m
	case <-time.After(10 * time.Second):
		s.t.Fatal("no stream message within 10s")
	}
	panic("unreachable")
}

// waitClosed waits for the server to end the stream.
func (s *stream) waitClosed() {
	s.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-s.msgs:
			if !ok {
				return
			}
		case <-deadline:
			s.t.Fatal("stream still open after 10s")
		}
	}
}

// errorMessage decodes a wire.Error body and checks it is one line.
func errorMessage(t *testing.T, b []byte) string {
	t.Helper()
	var we wire.Error
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&we); err != nil || we.Message == "" {
		t.Fatalf("error body is not a wire.Error: %q", b)
	}
	if strings.ContainsAny(we.Message, "\r\n") {
		t.Fatalf("error message is not one line: %q", we.Message)
	}
	return we.Message
}

// policyError decodes an error body that may carry a place, a
// wire.PolicyError (a superset of wire.Error), and checks it is one line.
func policyError(t *testing.T, b []byte) wire.PolicyError {
	t.Helper()
	var pe wire.PolicyError
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pe); err != nil || pe.Message == "" {
		t.Fatalf("error body is not a wire.PolicyError: %q", b)
	}
	if strings.ContainsAny(pe.Message, "\r\n") {
		t.Fatalf("error message is not one line: %q", pe.Message)
	}
	return pe
}

func (e *env) nodeCount() int {
	e.t.Helper()
	ns, err := e.st.Nodes(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return len(ns)
}
