package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/latchnet/latch/coordinator/audit"
	"github.com/latchnet/latch/coordinator/ca"
	"github.com/latchnet/latch/coordinator/netmap"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
)

// streamWriteTimeout bounds one write to a netmap stream; a peer that does
// not read for this long loses its stream.
const streamWriteTimeout = 30 * time.Second

// agent wraps an agent route: it requires the protocol version header.
func (s *Server) agent(h http.HandlerFunc) http.HandlerFunc {
	want := strconv.Itoa(wire.ProtocolVersion)
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(wire.HeaderProtocol, want)
		got := r.Header.Get(wire.HeaderProtocol)
		if got == want {
			h(w, r)
			return
		}
		w.Header().Set("Upgrade", "Latch/"+want)
		if got == "" {
			writeError(w, http.StatusUpgradeRequired, fmt.Sprintf("missing %s header: this coordinator speaks Latch protocol %s", wire.HeaderProtocol, want))
			return
		}
		writeError(w, http.StatusUpgradeRequired, fmt.Sprintf("unsupported Latch protocol %q: this coordinator speaks %s; upgrade the agent or the coordinator", got, want))
	}
}

type nodeKey struct{}

// node wraps a route that requires an authenticated node: a client
// certificate from the network CA, for a node that still exists, whose
// key is the node's current certificate key.
func (s *Server) node(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			writeError(w, http.StatusUnauthorized, "node certificate required (mutual TLS with the certificate from enrollment)")
			return
		}
		id, pub, err := s.cfg.CA.VerifyNode(r.TLS.PeerCertificates, s.cfg.Now())
		if err != nil {
			s.log.Info("refused node certificate", logErr, err, logRemote, r.RemoteAddr)
			writeError(w, http.StatusUnauthorized, err.Error())
			return
		}
		n, err := s.cfg.Store.Node(r.Context(), id)
		if errors.Is(err, store.ErrNotFound) {
			writeError(w, http.StatusForbidden, fmt.Sprintf("node %s is not enrolled (deleted); enroll again", id))
			return
		}
		if err != nil {
			s.internalError(w, r, "authenticating node", err)
			return
		}
		if !n.CertKey.Equal(pub) {
			writeError(w, http.StatusForbidden, "node certificate superseded by a renewal; use the newest certificate")
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), nodeKey{}, n)))
	}
}

func nodeFrom(r *http.Request) store.Node { return r.Context().Value(nodeKey{}).(store.Node) }

func (s *Server) handleEnroll(w http.ResponseWriter, r *http.Request) {
	var req wire.EnrollRequest
	if !decode(w, r, &req) {
		return
	}
	if req.IDToken != "" {
		s.enrollFederated(w, r, req) // workload identity (federation.go)
		return
	}
	key, err := wire.ParseAuthKey(req.AuthKey)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !s.allowEnrollKey(w, r, key.ID) {
		return
	}
	if key.CAFingerprint != s.cfg.CA.Fingerprint() {
		writeError(w, http.StatusUnauthorized, "enrollment key belongs to another coordinator (its CA fingerprint is not this coordinator's)")
		return
	}
	if err := checkHostname(req.Hostname); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := checkTags(req.Tags); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.WireGuardKey.IsZero() {
		writeError(w, http.StatusBadRequest, "wireguard_key required")
		return
	}
	if err := checkEndpoints(req.Endpoints); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if _, err := ca.ParseCSR(req.CSR); err != nil {
		writeError(w, http.StatusBadRequest, "csr: "+err.Error())
		return
	}
	if err := checkPosture(req.Posture); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	now := s.cfg.Now()
	id := store.NewNodeID()
	cert, pub, err := s.cfg.CA.IssueNode(req.CSR, id, s.cfg.NodeCertLifetime, now)
	if err != nil {
		s.internalError(w, r, "issuing node certificate", err)
		return
	}
	ctx := s.auditedBy(r.Context(), audit.KeyActor(key.ID), audit.NodeEnroll, audit.NodeActor(string(id)), map[string]any{
		"hostname": req.Hostname, "tags": req.Tags, "ephemeral": req.Ephemeral, "remote": r.RemoteAddr})
	n, err := s.cfg.Store.Enroll(ctx, store.Enrollment{
		NodeID:       id,
		KeyID:        key.ID,
		SecretHash:   store.HashSecret(key.Secret),
		Hostname:     req.Hostname,
		Tags:         req.Tags,
		Ephemeral:    req.Ephemeral,
		WireGuardKey: req.WireGuardKey,
		CertKey:      pub,
		Endpoints:    withObserved(unmapped(req.Endpoints), r.RemoteAddr),
		Now:          now,
		// Identity (issue 4): key expiry, posture, certificate expiry.
		DefaultNodeExpiry: s.nodeKeyExpiry(),
		Posture:           req.Posture,
		CertExpires:       certExpiry(cert),
	})
	var tagErr *store.TagNotAllowedError
	switch {
	case err == nil:
	case errors.Is(err, store.ErrInvalidKey):
		s.log.Info("enrollment refused", logKeyID, key.ID, logErr, "invalid key", logRemote, r.RemoteAddr)
		writeError(w, http.StatusUnauthorized, "invalid enrollment key")
		return
	case errors.Is(err, store.ErrKeyExpired), errors.Is(err, store.ErrKeyRevoked):
		s.log.Info("enrollment refused", logKeyID, key.ID, logErr, err, logRemote, r.RemoteAddr)
		writeError(w, http.StatusUnauthorized, unwrapAll(err).Error())
		return
	case errors.Is(err, store.ErrKeyUsed):
		s.log.Info("enrollment refused", logKeyID, key.ID, logErr, err, logRemote, r.RemoteAddr)
		writeError(w, http.StatusUnauthorized, "enrollment key already used (it is a one-off key)")
		return
	case errors.Is(err, store.ErrKeyUsedUp):
		s.log.Info("enrollment refused", logKeyID, key.ID, logErr, err, logRemote, r.RemoteAddr)
		writeError(w, http.StatusUnauthorized, "enrollment key used up: it reached its max uses")
		return
	case errors.As(err, &tagErr):
		writeError(w, http.StatusForbidden, tagErr.Error())
		return
	case errors.Is(err, store.ErrNodeKeyRevoked):
		s.log.Info("enrollment refused", logKeyID, key.ID, logErr, "key of a revoked node", logRemote, r.RemoteAddr)
		writeError(w, http.StatusForbidden, "this WireGuard key was revoked (it belonged to a revoked node); the node needs a new key")
		return
	default:
		s.finishEnroll(w, r, n, cert, err, logKeyID, key.ID)
		return
	}
	s.finishEnroll(w, r, n, cert, nil, logKeyID, key.ID)
}

// finishEnroll ends an enrollment either way: the refusals every kind of
// enrollment shares for err, or, for a nil err, telling the hub and the
// expiry sweeper and answering with the node's identity. attrs name the
// credential in the log line.
func (s *Server) finishEnroll(w http.ResponseWriter, r *http.Request, n store.Node, cert []byte, err error, attrs ...any) {
	switch {
	case errors.Is(err, store.ErrWireGuardKeyInUse):
		writeError(w, http.StatusConflict, "this WireGuard key already belongs to an enrolled node")
		return
	case errors.Is(err, store.ErrAddressPoolExhausted):
		s.log.Error("enrollment refused: overlay address pool exhausted")
		writeError(w, http.StatusServiceUnavailable, "no free overlay address")
		return
	case err != nil:
		s.internalError(w, r, "enrolling node", err)
		return
	}
	s.cfg.Hub.Notify()
	s.kickNodeExpiry()
	s.log.Info("node enrolled", append([]any{logNode, n.ID, logName, n.Name, logRemote, r.RemoteAddr}, attrs...)...)
	writeJSON(w, http.StatusOK, wire.EnrollResponse{
		Node:        n.Wire(),
		Certificate: cert,
		CA:          s.cfg.CA.Cert().Raw,
		TrustDomain: s.cfg.CA.TrustDomain(),
		NetmapKey:   s.cfg.Hub.NetmapKey(),
	})
}

// unwrapAll returns the innermost error of a chain.
func unwrapAll(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}

func (s *Server) handleStream(w http.ResponseWriter, r *http.Request) {
	n := nodeFrom(r)
	sub, err := s.cfg.Hub.Subscribe(r.Context(), n.ID)
	switch {
	case errors.Is(err, netmap.ErrUnknownNode):
		writeError(w, http.StatusForbidden, fmt.Sprintf("node %s is not enrolled (deleted); enroll again", n.ID))
		return
	case errors.Is(err, netmap.ErrHubClosed):
		writeError(w, http.StatusServiceUnavailable, "coordinator shutting down")
		return
	case err != nil:
		s.internalError(w, r, "subscribing to netmap", err)
		return
	}
	defer sub.Close()
	s.touch(n.ID)
	defer s.touch(n.ID)
	s.log.Info("node connected", logNode, n.ID, logName, n.Name, logRemote, r.RemoteAddr)

	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	send := func(m wire.StreamMessage) error {
		rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout)) // unsupported on some writers; then unbounded
		if err := enc.Encode(m); err != nil {
			return err
		}
		return rc.Flush()
	}
	keepalive := time.NewTimer(s.cfg.Keepalive)
	defer keepalive.Stop()
	for {
		var msg wire.StreamMessage
		select {
		case <-r.Context().Done():
			s.log.Info("node disconnected", logNode, n.ID)
			return
		case m, ok := <-sub.Messages():
			if !ok {
				s.log.Info("node stream ended", logNode, n.ID, "reason", sub.Err())
				return
			}
			msg = m
		case <-keepalive.C:
			msg = wire.StreamMessage{Type: wire.MsgKeepAlive, KeepAlive: s.cfg.Keepalive}
		}
		if err := send(msg); err != nil {
			s.log.Info("node stream write failed", logNode, n.ID, logErr, err)
			return
		}
		keepalive.Reset(s.cfg.Keepalive)
	}
}

// touch records that a node was seen now. It runs detached from the
// request so a closing stream still records its end.
func (s *Server) touch(id wire.NodeID) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.cfg.Store.Touch(ctx, id, s.cfg.Now()); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Warn("recording last seen", logNode, id, logErr, err)
	}
}

func (s *Server) handleUpdate(w http.ResponseWriter, r *http.Request) {
	n := nodeFrom(r)
	var req wire.UpdateRequest
	if !decode(w, r, &req) {
		return
	}
	if req.Endpoints != nil {
		if err := checkEndpoints(req.Endpoints); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	if req.Posture != nil && !s.updatePosture(w, r, n, req.Posture) {
		return
	}
	if req.Endpoints == nil {
		if req.Posture == nil {
			s.touch(n.ID)
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	changed, err := s.cfg.Store.SetEndpoints(r.Context(), n.ID, withObserved(unmapped(req.Endpoints), r.RemoteAddr), s.cfg.Now())
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusForbidden, fmt.Sprintf("node %s is not enrolled (deleted); enroll again", n.ID))
		return
	}
	if err != nil {
		s.internalError(w, r, "updating endpoints", err)
		return
	}
	if changed {
		s.cfg.Hub.Notify()
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleRenew(w http.ResponseWriter, r *http.Request) {
	n := nodeFrom(r)
	var req wire.RenewRequest
	if !decode(w, r, &req) {
		return
	}
	if _, err := ca.ParseCSR(req.CSR); err != nil {
		writeError(w, http.StatusBadRequest, "csr: "+err.Error())
		return
	}
	now := s.cfg.Now()
	cert, pub, err := s.cfg.CA.IssueNode(req.CSR, n.ID, s.cfg.NodeCertLifetime, now)
	if err != nil {
		s.internalError(w, r, "issuing node certificate", err)
		return
	}
	err = s.cfg.Store.SetCert(r.Context(), n.ID, pub, certExpiry(cert), now)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusForbidden, fmt.Sprintf("node %s is not enrolled (deleted); enroll again", n.ID))
		return
	}
	if errors.Is(err, store.ErrNodeExpired) {
		s.log.Info("renewal refused: node key expired", logNode, n.ID, "key_expiry", n.KeyExpiry)
		writeError(w, http.StatusForbidden, "node key expired; an admin must extend it (latch nodes expiry) or the node must enroll again")
		return
	}
	if err != nil {
		s.internalError(w, r, "recording renewed certificate", err)
		return
	}
	s.log.Info("node certificate renewed", logNode, n.ID)
	writeJSON(w, http.StatusOK, wire.RenewResponse{Certificate: cert})
}

// unmapped returns eps with IPv4-mapped IPv6 addresses as plain IPv4.
func unmapped(eps []netip.AddrPort) []netip.AddrPort {
	out := make([]netip.AddrPort, 0, len(eps))
	for _, ep := range eps {
		ep = netip.AddrPortFrom(ep.Addr().Unmap(), ep.Port())
		if !slices.Contains(out, ep) {
			out = append(out, ep)
		}
	}
	return out
}

// withObserved appends the address the request came from, with the port
// of the first reported endpoint, unless already present: behind NAT it
// is often the only address peers can reach. Without reported endpoints
// there is no port to pair it with.
func withObserved(eps []netip.AddrPort, remote string) []netip.AddrPort {
	if len(eps) == 0 {
		return eps
	}
	ap, err := netip.ParseAddrPort(remote)
	if err != nil || !ap.Addr().IsValid() || ap.Addr().IsUnspecified() {
		return eps
	}
	obs := netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), eps[0].Port())
	if slices.Contains(eps, obs) {
		return eps
	}
	return append(eps, obs)
}
