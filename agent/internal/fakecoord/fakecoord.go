// Package fakecoord is a coordinator for agent tests: an httptest TLS
// server that speaks the agent side of the wire protocol (enroll, stream,
// update, renew, access requests, key rotation) with its own CA, and lets
// a test drive each stream message by message. It is not the real
// coordinator, which the agent must not import.
package fakecoord

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/latchnet/latch/wire"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Present chooses the certificate chain the server's TLS handshake shows.
type Present int

const (
	// PresentGood is [leaf from the network CA, network CA].
	PresentGood Present = iota
	// PresentOtherCA is [leaf from another CA, that CA]: a valid server
	// of some other network.
	PresentOtherCA
	// PresentOtherLeafWithPinnedCA is [leaf from another CA, network CA]:
	// the pinned CA is shown but did not issue the leaf.
	PresentOtherLeafWithPinnedCA
	// PresentLeafOnly is [leaf from the network CA] without the CA.
	PresentLeafOnly
)

// Options configure a Server.
type Options struct {
	Present Present
	// CertLifetime of node certificates; zero means an hour.
	CertLifetime time.Duration
	// AutoNetmap sends the node's full netmap as soon as a stream opens.
	AutoNetmap bool
	// PushChanges sends every open stream its new full netmap whenever a
	// node is added or changes.
	PushChanges bool
	// OmitNetmapKey leaves the netmap key out of enrollment answers.
	OmitNetmapKey bool
}

// Cleanuper is what New needs of a testing.TB.
type Cleanuper interface{ Cleanup(func()) }

// TrustDomain is the fake network's trust domain.
const TrustDomain = "test.latch"

// Server is a fake coordinator.
type Server struct {
	// CA is the network CA, whose fingerprint AuthKey carries.
	CA *CA
	// AuthKey is a valid reusable enrollment key.
	AuthKey string
	// NetmapKey signs netmaps; its public half goes out at enrollment.
	NetmapKey ed25519.PrivateKey
	URL       string
	srv       *httptest.Server
	opts      Options
	// Streams receives every stream opened (buffered; extras are dropped).
	Streams chan *Stream

	mu          sync.Mutex
	version     uint64
	nodes       map[wire.NodeID]*Node
	order       []wire.NodeID
	enrollError *wire.Error // answer every enrollment with this (401)
	updates     []wire.UpdateRequest
	// failUpdates answers every update with 503 when set.
	failUpdates bool
	// enrollPostures are the postures enrollments carried, in order.
	enrollPostures []*wire.Posture
	renewals       int
	streamCount    int
	// streamAttempts counts stream requests, refused ones included.
	streamAttempts int
	enrollCount    int
	open           map[*Stream]bool
	// access answers node access requests; nil means the default.
	access         AccessFunc
	accessRequests []wire.NodeAccessRequest
	rotateFault    RotateFault
	rotations      []wire.NodePublic
	leaves         []string     // leave.go
	leaveBlackhole bool         // leave.go
	flowReports    []FlowReport // flows.go
	flowStatus     int          // flows.go
}

// AccessFunc decides a node's access request in the fake: it returns the
// request as recorded, or a status of 400 or more and a reason to refuse
// it with.
type AccessFunc func(src wire.Node, req wire.NodeAccessRequest) (resp wire.AccessRequest, status int, reason string)

// Node is a node the fake knows.
type Node struct {
	wire.Node
	CertKey ed25519.PublicKey
	Deleted bool
}

// New starts a fake coordinator; it stops when the test ends.
func New(t Cleanuper, opts Options) *Server {
	if opts.CertLifetime == 0 {
		opts.CertLifetime = time.Hour
	}
	s := &Server{
		CA:      caWithoutUnderscore(),
		opts:    opts,
		Streams: make(chan *Stream, 32),
		nodes:   map[wire.NodeID]*Node{},
		open:    map[*Stream]bool{},
		version: 1,
	}
	_, s.NetmapKey, _ = ed25519.GenerateKey(rand.Reader)
	secret := randomWithoutUnderscore()
	s.AuthKey = wire.AuthKey{ID: "0123456789ab", Secret: base64.RawURLEncoding.EncodeToString(secret), CAFingerprint: wire.CAFingerprint(s.CA.Cert.Raw)}.String()

	mux := http.NewServeMux()
	mux.HandleFunc("POST "+wire.PathEnroll, s.enroll)
	mux.HandleFunc("GET "+wire.PathStream, s.stream)
	mux.HandleFunc("POST "+wire.PathUpdate, s.update)
	mux.HandleFunc("POST "+wire.PathRenew, s.renew)
	mux.HandleFunc("POST "+wire.PathNodeAccess, s.requestAccess)
	mux.HandleFunc("POST "+wire.PathRotate, s.rotate)
	mux.HandleFunc("POST "+wire.PathLeave, s.leave)     // leave.go
	mux.HandleFunc("POST "+wire.PathNodeFlows, s.flows) // flows.go
	s.srv = httptest.NewUnstartedServer(s.checkProtocol(mux))
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected

	leaf, key := s.CA.ServerCert()
	chain := [][]byte{leaf.Raw, s.CA.Cert.Raw}
	switch opts.Present {
	case PresentOtherCA:
		other := NewCA("other CA")
		leaf, key = other.ServerCert()
		chain = [][]byte{leaf.Raw, other.Cert.Raw}
	case PresentOtherLeafWithPinnedCA:
		other := NewCA("other CA")
		leaf, key = other.ServerCert()
		chain = [][]byte{leaf.Raw, s.CA.Cert.Raw}
	case PresentLeafOnly:
		chain = chain[:1]
	}
	pool := x509.NewCertPool()
	pool.AddCert(s.CA.Cert)
	s.srv.TLS = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{{Certificate: chain, PrivateKey: key}},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    pool,
	}
	s.srv.StartTLS()
	s.URL = s.srv.URL
	t.Cleanup(s.Close)
	return s
}

// wire.ParseAuthKey splits on "_", which base64url also uses: until that
// is fixed, the fake hands out only keys free of "_" in secret and
// fingerprint.
func randomWithoutUnderscore() []byte {
	b := make([]byte, 32)
	for {
		rand.Read(b)
		if !strings.Contains(base64.RawURLEncoding.EncodeToString(b), "_") {
			return b
		}
	}
}

func caWithoutUnderscore() *CA {
	for {
		ca := NewCA("latch test CA")
		fp := wire.CAFingerprint(ca.Cert.Raw)
		if !strings.Contains(base64.RawURLEncoding.EncodeToString(fp[:]), "_") {
			return ca
		}
	}
}

// Close stops the server and ends every stream.
func (s *Server) Close() {
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// CloseStreams cuts every open connection (the server keeps listening).
func (s *Server) CloseStreams() { s.srv.CloseClientConnections() }

// FailEnrollments makes enrollments answer 401 with msg ("" to stop).
func (s *Server) FailEnrollments(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if msg == "" {
		s.enrollError = nil
		return
	}
	s.enrollError = &wire.Error{Message: msg}
}

func (s *Server) checkProtocol(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(wire.HeaderProtocol) != strconv.Itoa(wire.ProtocolVersion) {
			writeErr(w, http.StatusUpgradeRequired, "protocol version "+r.Header.Get(wire.HeaderProtocol)+" not supported")
			return
		}
		h.ServeHTTP(w, r)
	})
}

func writeErr(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(wire.Error{Message: msg})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// addNodeLocked allocates a node with the next addresses; the caller
// fills it in and calls changedLocked.
func (s *Server) addNodeLocked(name string, key wire.NodePublic) *Node {
	n := len(s.order) + 1
	id := wire.NodeID(fmt.Sprintf("n%04d", n))
	node := &Node{Node: wire.Node{
		ID:   id,
		Name: name,
		Key:  key,
		Addresses: []netip.Prefix{
			netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64, 0, byte(n)}), 32),
			netip.MustParsePrefix(fmt.Sprintf("fd7a:1:2::%x/128", n)),
		},
		Created: time.Now().UTC().Truncate(time.Second),
	}}
	s.nodes[id] = node
	s.order = append(s.order, id)
	return node
}

// changedLocked bumps the version and, with PushChanges, sends every open
// stream its new netmap.
func (s *Server) changedLocked() {
	s.version++
	if !s.opts.PushChanges {
		return
	}
	for st := range s.open {
		if n := s.nodes[st.Node]; n == nil || n.Deleted {
			continue
		}
		m := wire.StreamMessage{Type: wire.MsgNetmap, Netmap: s.netmapLocked(st.Node)}
		go st.Send(m)
	}
}

// AddPeer adds a node that never connects, with a random key and the
// given endpoint, and returns it.
func (s *Server) AddPeer(name string, endpoint string) wire.Node {
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		panic(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.addNodeLocked(name, wire.NodePublic(k.PublicKey()))
	if endpoint != "" {
		n.Endpoints = []netip.AddrPort{netip.MustParseAddrPort(endpoint)}
	}
	s.changedLocked()
	return n.Node
}

// DeleteNode marks a node deleted: its streams are refused.
func (s *Server) DeleteNode(id wire.NodeID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n, ok := s.nodes[id]; ok {
		n.Deleted = true
		s.changedLocked()
	}
}

// SignNetmap signs nm as node's netmap with key.
func SignNetmap(key ed25519.PrivateKey, node wire.NodeID, nm *wire.Netmap) []byte {
	return wire.SignDigest(key, nm.Digest(node))
}

// Netmap builds id's full netmap: every other live node is a peer, with
// the interim allow-peers rule.
func (s *Server) Netmap(id wire.NodeID) *wire.Netmap {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.netmapLocked(id)
}

func (s *Server) netmapLocked(id wire.NodeID) *wire.Netmap {
	nm := &wire.Netmap{Version: s.version, Self: s.nodes[id].Node, Peers: []wire.Peer{}}
	rule := wire.FilterRule{
		ID:        "interim-allow-peers",
		Protocols: []wire.Proto{wire.ProtoTCP, wire.ProtoUDP, wire.ProtoICMP, wire.ProtoICMPv6},
		Ports:     []wire.PortRange{{First: 1, Last: 65535}},
	}
	for _, pid := range s.order {
		n := s.nodes[pid]
		if pid == id || n.Deleted {
			continue
		}
		nm.Peers = append(nm.Peers, wire.Peer{Node: n.Node, Rules: []string{rule.ID}})
	}
	nm.Rules = []wire.FilterRule{rule}
	wire.SortPeers(nm.Peers)
	return nm
}

// Nodes returns every node enrolled or added.
func (s *Server) Nodes() []Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Node, 0, len(s.order))
	for _, id := range s.order {
		out = append(out, *s.nodes[id])
	}
	return out
}

// Updates returns every update request received.
func (s *Server) Updates() []wire.UpdateRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]wire.UpdateRequest(nil), s.updates...)
}

// FailUpdates makes every update fail with 503 (false to succeed again);
// failed updates are not recorded.
func (s *Server) FailUpdates(fail bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failUpdates = fail
}

// EnrollPostures returns the posture each enrollment carried, in order.
func (s *Server) EnrollPostures() []*wire.Posture {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*wire.Posture(nil), s.enrollPostures...)
}

// Counts returns how many enrollments, streams and renewals were served.
func (s *Server) Counts() (enrolls, streams, renewals int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.enrollCount, s.streamCount, s.renewals
}

// StreamAttempts returns how many stream requests came, refused or not.
func (s *Server) StreamAttempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.streamAttempts
}

func (s *Server) enroll(w http.ResponseWriter, r *http.Request) {
	var req wire.EnrollRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, wire.MaxRequestBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, "malformed request")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.enrollCount++
	if s.enrollError != nil {
		writeErr(w, http.StatusUnauthorized, s.enrollError.Message)
		return
	}
	if subtle.ConstantTimeCompare([]byte(req.AuthKey), []byte(s.AuthKey)) != 1 {
		writeErr(w, http.StatusUnauthorized, "invalid enrollment key")
		return
	}
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil || csr.CheckSignature() != nil {
		writeErr(w, http.StatusBadRequest, "invalid CSR")
		return
	}
	pub, ok := csr.PublicKey.(ed25519.PublicKey)
	if !ok {
		writeErr(w, http.StatusBadRequest, "CSR key must be Ed25519")
		return
	}
	s.enrollPostures = append(s.enrollPostures, req.Posture)
	n := s.addNodeLocked(req.Hostname, req.WireGuardKey)
	n.CertKey = pub
	n.Endpoints = req.Endpoints
	n.Tags = req.Tags
	n.Ephemeral = req.Ephemeral
	s.changedLocked()
	cert := s.CA.NodeCert(pub, string(n.ID), s.spiffe(n.ID), s.opts.CertLifetime)
	nmKey := s.NetmapKey.Public().(ed25519.PublicKey)
	if s.opts.OmitNetmapKey {
		nmKey = nil
	}
	writeJSON(w, wire.EnrollResponse{Node: n.Node, Certificate: cert.Raw, CA: s.CA.Cert.Raw, TrustDomain: TrustDomain,
		NetmapKey: nmKey})
}

func (s *Server) spiffe(id wire.NodeID) *url.URL {
	u, _ := url.Parse("spiffe://" + TrustDomain + "/node/" + string(id))
	return u
}

// authNodeLocked identifies the node of an mTLS request, as the real
// coordinator does: a verified chain, the SPIFFE ID, the recorded key,
// and the node not deleted.
func (s *Server) authNodeLocked(r *http.Request) (*Node, int, string) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		return nil, http.StatusUnauthorized, "client certificate required"
	}
	leaf := r.TLS.VerifiedChains[0][0]
	prefix := "spiffe://" + TrustDomain + "/node/"
	for _, u := range leaf.URIs {
		if id, ok := strings.CutPrefix(u.String(), prefix); ok {
			n := s.nodes[wire.NodeID(id)]
			if n == nil || n.Deleted {
				return nil, http.StatusForbidden, "node not found"
			}
			if pub, ok := leaf.PublicKey.(ed25519.PublicKey); !ok || !pub.Equal(n.CertKey) {
				return nil, http.StatusUnauthorized, "certificate key is not the node's"
			}
			return n, 0, ""
		}
	}
	return nil, http.StatusUnauthorized, "no node identity in certificate"
}

// Stream is one open netmap stream.
type Stream struct {
	Node wire.NodeID
	key  ed25519.PrivateKey
	mu   sync.Mutex
	cur  *wire.Netmap // guarded by mu; the map the agent holds after the last message signed
	msgs chan wire.StreamMessage
	done chan struct{}
	end  chan struct{}
	once sync.Once
}

// Send queues m; it reports false if the stream ended first. A netmap or
// delta without a Signature is signed as the real coordinator would: over
// the map the agent holds after it, for this stream's node. A delta that
// does not apply to the last map sent goes unsigned. A message with a
// Signature goes as it is.
func (st *Stream) Send(m wire.StreamMessage) bool {
	if m.Signature == nil {
		st.mu.Lock()
		var next *wire.Netmap
		switch {
		case m.Type == wire.MsgNetmap && m.Netmap != nil:
			next = m.Netmap
		case m.Type == wire.MsgDelta && m.Delta != nil && st.cur != nil:
			next, _ = st.cur.Apply(m.Delta)
		}
		if next != nil {
			st.cur = next
			m.Signature = SignNetmap(st.key, st.Node, next)
		}
		st.mu.Unlock()
	}
	return st.SendAsIs(m)
}

// SendAsIs queues m unchanged, signature or none.
func (st *Stream) SendAsIs(m wire.StreamMessage) bool {
	select {
	case st.msgs <- m:
		return true
	case <-st.done:
		return false
	}
}

// End closes the stream from the server side.
func (st *Stream) End() { st.once.Do(func() { close(st.end) }) }

// Done is closed when the stream is over.
func (st *Stream) Done() <-chan struct{} { return st.done }

func (s *Server) stream(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.streamAttempts++
	n, code, msg := s.authNodeLocked(r)
	if n == nil {
		s.mu.Unlock()
		writeErr(w, code, msg)
		return
	}
	s.streamCount++
	var first *wire.Netmap
	if s.opts.AutoNetmap {
		first = s.netmapLocked(n.ID)
	}
	s.mu.Unlock()

	st := &Stream{Node: n.ID, key: s.NetmapKey, cur: first, msgs: make(chan wire.StreamMessage), done: make(chan struct{}), end: make(chan struct{})}
	s.mu.Lock()
	s.open[st] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.open, st)
		s.mu.Unlock()
		close(st.done)
	}()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	fl := w.(http.Flusher)
	fl.Flush()
	enc := json.NewEncoder(w)
	if first != nil {
		enc.Encode(wire.StreamMessage{Type: wire.MsgNetmap, Netmap: first, Signature: SignNetmap(s.NetmapKey, n.ID, first)})
		fl.Flush()
	}
	select {
	case s.Streams <- st:
	default:
	}
	for {
		select {
		case m := <-st.msgs:
			if enc.Encode(m) != nil {
				return
			}
			fl.Flush()
		case <-st.end:
			return
		case <-r.Context().Done():
			return
		}
	}
}

func (s *Server) update(w http.ResponseWriter, r *http.Request) {
	var req wire.UpdateRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, wire.MaxRequestBytes)).Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, "malformed request")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, code, msg := s.authNodeLocked(r)
	if n == nil {
		writeErr(w, code, msg)
		return
	}
	if s.failUpdates {
		writeErr(w, http.StatusServiceUnavailable, "updates are failing")
		return
	}
	s.updates = append(s.updates, req)
	// As the real coordinator: nil fields are unchanged.
	if req.Endpoints != nil {
		n.Endpoints = req.Endpoints
	}
	s.changedLocked()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) renew(w http.ResponseWriter, r *http.Request) {
	var req wire.RenewRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, wire.MaxRequestBytes)).Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, "malformed request")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, code, msg := s.authNodeLocked(r)
	if n == nil {
		writeErr(w, code, msg)
		return
	}
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil || csr.CheckSignature() != nil {
		writeErr(w, http.StatusBadRequest, "invalid CSR")
		return
	}
	pub, ok := csr.PublicKey.(ed25519.PublicKey)
	if !ok {
		writeErr(w, http.StatusBadRequest, "CSR key must be Ed25519")
		return
	}
	n.CertKey = pub
	s.renewals++
	cert := s.CA.NodeCert(pub, string(n.ID), s.spiffe(n.ID), s.opts.CertLifetime)
	writeJSON(w, wire.RenewResponse{Certificate: cert.Raw})
}

// OnAccess sets how node access requests are answered. Without it every
// request is recorded as pending with ID "ar<N>".
func (s *Server) OnAccess(fn AccessFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.access = fn
}

// AccessRequests returns every access request received, in order.
func (s *Server) AccessRequests() []wire.NodeAccessRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]wire.NodeAccessRequest(nil), s.accessRequests...)
}

func (s *Server) requestAccess(w http.ResponseWriter, r *http.Request) {
	var req wire.NodeAccessRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, wire.MaxRequestBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, "malformed request")
		return
	}
	s.mu.Lock()
	n, code, msg := s.authNodeLocked(r)
	if n == nil {
		s.mu.Unlock()
		writeErr(w, code, msg)
		return
	}
	s.accessRequests = append(s.accessRequests, req)
	seq, fn, src := len(s.accessRequests), s.access, n.Node
	s.mu.Unlock()
	if fn == nil {
		writeJSON(w, wire.AccessRequest{
			ID: fmt.Sprintf("ar%d", seq), Src: src.ID, SrcName: src.Name, To: req.To, Port: req.Port,
			Duration: req.Duration, Reason: req.Reason, State: wire.AccessPending, Created: time.Now().UTC(),
		})
		return
	}
	resp, status, reason := fn(src, req)
	if status >= 400 {
		writeErr(w, status, reason)
		return
	}
	writeJSON(w, resp)
}
