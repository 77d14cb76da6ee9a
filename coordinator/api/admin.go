package api

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/latchnet/latch/coordinator/audit"
	"github.com/latchnet/latch/coordinator/netmap"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
)

// ScopeAdmin lets a token use the whole admin API.
const ScopeAdmin = wire.ScopeAdmin

// Enrollment key lifetimes.
const (
	DefaultKeyExpiry = 24 * time.Hour
	MaxKeyExpiry     = 90 * 24 * time.Hour
)

type tokenKey struct{}

// admin wraps an admin route: it requires a valid bearer token with scope
// (or the admin scope, which covers every other). Unknown token, wrong
// secret and malformed token all get the same answer, 401; a valid token
// outside its scopes gets 403. Failures are rate limited per source IP
// (RateLimits.AuthFailuresPerIP): over the limit, 429 with Retry-After.
func (s *Server) admin(scope string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if p, ok := principalFrom(r); ok {
			s.authorize(w, r, store.APIToken{ID: p.ID, User: p.User, Scopes: p.Scopes}, scope, h)
			return
		}
		// A source that failed too often is refused before its token is
		// looked at; every failure takes a token from its bucket.
		ip := sourceIP(r)
		if ok, retry := s.limits.authFail.Check(ip); !ok {
			s.log.Info("API token authentication rate limited", logRemote, r.RemoteAddr)
			tooMany(w, "failed API token attempts from this address", retry)
			return
		}
		unauthorized := func(msg string) {
			s.limits.authFail.Allow(ip)
			w.Header().Set("WWW-Authenticate", `Bearer realm="latch"`)
			writeError(w, http.StatusUnauthorized, msg)
		}
		raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			unauthorized("API token required: Authorization: Bearer <token>")
			return
		}
		tok, err := ParseToken(raw)
		if err != nil {
			unauthorized("invalid API token")
			return
		}
		t, hash, err := s.cfg.Store.APIToken(r.Context(), tok.ID)
		if errors.Is(err, store.ErrNotFound) {
			subtle.ConstantTimeCompare(store.HashSecret(tok.Secret), make([]byte, 32))
			s.log.Info("refused API token", logToken, tok.ID, logErr, "unknown", logRemote, r.RemoteAddr)
			unauthorized("invalid API token")
			return
		}
		if err != nil {
			s.internalError(w, r, "authenticating API token", err)
			return
		}
		if subtle.ConstantTimeCompare(hash, store.HashSecret(tok.Secret)) != 1 {
			s.log.Info("refused API token", logToken, tok.ID, logErr, "wrong secret", logRemote, r.RemoteAddr)
			unauthorized("invalid API token")
			return
		}
		now := s.cfg.Now()
		switch {
		case !t.Revoked.IsZero():
			unauthorized("API token revoked")
			return
		case !t.Expires.IsZero() && !now.Before(t.Expires):
			unauthorized("API token expired")
			return
		}
		s.authorize(w, r, t, scope, h)
	}
}

// authorize runs h for the authenticated caller t if its scopes grant
// scope; otherwise it answers 403 and audits the refusal.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, t store.APIToken, scope string, h http.HandlerFunc) {
	if !hasScope(t.Scopes, scope) {
		s.log.Info("refused API call outside the caller's scopes", logToken, t.ID, "scope", scope, "path", r.URL.Path)
		s.auditDenied(r, t, scope)
		writeError(w, http.StatusForbidden, fmt.Sprintf("API token lacks the %s scope needed for %s %s", scope, r.Method, r.URL.Path))
		return
	}
	h(w, r.WithContext(context.WithValue(r.Context(), tokenKey{}, t)))
}

// hasScope reports whether scopes grant need.
func hasScope(scopes []string, need string) bool {
	return slices.Contains(scopes, need) || slices.Contains(scopes, ScopeAdmin)
}

// caller returns the token that authenticated an admin request.
func caller(r *http.Request) store.APIToken {
	t, _ := r.Context().Value(tokenKey{}).(store.APIToken)
	return t
}

func tokenID(r *http.Request) string { return caller(r).ID }

// actor names the caller in records: its user, or its token ID when the
// token has no user.
func actor(r *http.Request) string {
	t := caller(r)
	if t.User != "" {
		return t.User
	}
	return "token:" + t.ID
}

func keyInfo(k store.EnrollmentKey) wire.KeyInfo {
	ki := wire.KeyInfo{
		ID:          k.ID,
		Description: k.Description,
		Reusable:    k.Reusable,
		Ephemeral:   k.Ephemeral,
		Tags:        k.Tags,
		Created:     k.Created,
		Expires:     k.Expires,
		Uses:        k.Uses,
	}
	if !k.Revoked.IsZero() {
		rev := k.Revoked
		ki.Revoked = &rev
	}
	return ki
}

func (s *Server) handleCreateKey(w http.ResponseWriter, r *http.Request) {
	var req wire.CreateKeyRequest
	if !decode(w, r, &req) {
		return
	}
	switch {
	case req.Expiry < 0:
		writeError(w, http.StatusBadRequest, "expiry must not be negative")
		return
	case req.Expiry > MaxKeyExpiry:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("expiry %s exceeds the maximum of %s", req.Expiry, MaxKeyExpiry))
		return
	case len(req.Description) > maxDescription:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("description longer than %d bytes", maxDescription))
		return
	}
	if err := checkTags(req.Tags); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := checkKeyIdentity(req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !s.mayAssignTags(w, r, req.Tags) {
		return
	}
	if req.Expiry == 0 {
		req.Expiry = DefaultKeyExpiry
	}
	tags := slices.Clone(req.Tags)
	slices.Sort(tags)
	tags = slices.Compact(tags)
	now := s.cfg.Now().UTC().Truncate(time.Microsecond)
	secret := NewToken() // same shape: 12 hex id, 256-bit secret
	key := wire.AuthKey{ID: secret.ID, Secret: secret.Secret, CAFingerprint: s.cfg.CA.Fingerprint()}
	k := store.EnrollmentKey{
		ID:          key.ID,
		Description: strings.Join(strings.Fields(req.Description), " "),
		Reusable:    req.Reusable,
		Ephemeral:   req.Ephemeral,
		Tags:        tags,
		Created:     now,
		Expires:     now.Add(req.Expiry),
		// Untagged nodes this key enrolls are owned by the caller's user.
		CreatedByUser: caller(r).User,
		NodeExpiry:    req.NodeExpiry,
		NoNodeExpiry:  req.NoNodeExpiry,
		MaxUses:       req.MaxUses,
	}
	ctx := s.audited(r, audit.KeyCreate, audit.KeyActor(k.ID), map[string]any{
		"reusable": k.Reusable, "ephemeral": k.Ephemeral, "tags": k.Tags, "expires": k.Expires, "description": k.Description,
		"node_expiry": k.NodeExpiry.String(), "no_node_expiry": k.NoNodeExpiry, "max_uses": k.MaxUses})
	if err := s.cfg.Store.CreateEnrollmentKey(ctx, k, store.HashSecret(key.Secret)); err != nil {
		s.internalError(w, r, "creating enrollment key", err)
		return
	}
	s.log.Info("enrollment key created", logKeyID, k.ID, logToken, tokenID(r), "reusable", k.Reusable, "expires", k.Expires)
	writeJSON(w, http.StatusCreated, wire.CreateKeyResponse{Key: key.String(), Info: s.keyInfo(k)})
}

func (s *Server) handleListKeys(w http.ResponseWriter, r *http.Request) {
	serveList(s, w, r, "listing enrollment keys", s.cfg.Store.EnrollmentKeys, s.keyInfo)
}

func (s *Server) handleRevokeKey(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	_, err := s.cfg.Store.RevokeEnrollmentKey(s.audited(r, audit.KeyRevoke, audit.KeyActor(id), nil), id, s.cfg.Now())
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("enrollment key %q not found", truncate(id, 20)))
		return
	}
	if err != nil {
		s.internalError(w, r, "revoking enrollment key", err)
		return
	}
	s.log.Info("enrollment key revoked", logKeyID, id, logToken, tokenID(r))
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) nodeInfo(n store.Node) wire.NodeInfo {
	ni := wire.NodeInfo{
		Node:     n.Wire(),
		Hostname: n.Hostname,
		Online:   s.cfg.Hub.Online(n.ID),
		LastSeen: n.LastSeen,
		KeyID:    n.KeyID,
		// TrustRule is set for nodes enrolled by workload identity.
		TrustRule: n.TrustRule,
	}
	if ni.Online {
		ni.LastSeen = s.cfg.Now().UTC()
	}
	s.identityInfo(&ni, n)
	return ni
}

func (s *Server) handleListNodes(w http.ResponseWriter, r *http.Request) {
	serveList(s, w, r, "listing nodes", s.cfg.Store.Nodes, s.nodeInfo)
}

// lookupNode finds a node by ID, then by name. On failure it writes the
// error and returns false.
func (s *Server) lookupNode(w http.ResponseWriter, r *http.Request) (store.Node, bool) {
	ref := r.PathValue("ref")
	n, err := s.cfg.Store.Node(r.Context(), wire.NodeID(ref))
	if errors.Is(err, store.ErrNotFound) {
		n, err = s.cfg.Store.NodeByName(r.Context(), ref)
	}
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("node %q not found", truncate(ref, 70)))
		return store.Node{}, false
	}
	if err != nil {
		s.internalError(w, r, "reading node", err)
		return store.Node{}, false
	}
	return n, true
}

func (s *Server) handleGetNode(w http.ResponseWriter, r *http.Request) {
	n, ok := s.lookupNode(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, s.nodeInfo(n))
}

func (s *Server) handleDeleteNode(w http.ResponseWriter, r *http.Request) {
	n, ok := s.lookupNode(w, r)
	if !ok {
		return
	}
	ctx := s.audited(r, audit.NodeDelete, audit.NodeActor(string(n.ID)), map[string]any{"name": n.Name})
	_, err := s.cfg.Store.DeleteNode(ctx, n.ID, s.cfg.Now())
	if errors.Is(err, store.ErrNotFound) { // deleted concurrently
		writeError(w, http.StatusNotFound, fmt.Sprintf("node %q not found", n.ID))
		return
	}
	if err != nil {
		s.internalError(w, r, "deleting node", err)
		return
	}
	s.cfg.Hub.Disconnect(n.ID, netmap.ErrNodeDeleted)
	s.cfg.Hub.Notify()
	s.log.Info("node deleted", logNode, n.ID, logName, n.Name, logToken, tokenID(r))
	w.WriteHeader(http.StatusNoContent)
}
