package api

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/latchnet/latch/acl/policy"
	"github.com/latchnet/latch/coordinator/audit"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
)

// Limits of access requests.
const (
	maxReason         = 256
	minAccessDuration = time.Second
	// decideAttempts bounds the retries of an approval that raced a
	// policy change.
	decideAttempts = 3
)

// newAccessID returns a fresh random access request ID: 12 hex characters.
func newAccessID() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// cleanReason flattens a reason to one line and checks it.
func cleanReason(s string, required bool) (string, error) {
	s = strings.Join(strings.Fields(s), " ")
	switch {
	case s == "" && required:
		return "", errors.New("reason required (say why, e.g. the incident or ticket)")
	case len(s) > maxReason:
		return "", fmt.Errorf("reason longer than %d bytes", maxReason)
	case !utf8.ValidString(s) || strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		return "", errors.New("reason must be printable UTF-8")
	}
	return s, nil
}

// identity is who a node is to the policy.
func identity(n store.Node) policy.Identity {
	return policy.Identity{Name: n.Name, Tags: slices.Clone(n.Tags), Owner: n.PolicyOwner(),
		Posture: n.Posture.Attrs(), Quarantined: n.Quarantined}
}

// grantPorts returns the ports a grant to service opens (see
// policy.Policy.GrantPorts) in the store's form.
func grantPorts(p *policy.Policy, service string, port uint16) ([]store.PortSpec, error) {
	specs, err := p.GrantPorts(service, port)
	if err != nil {
		return nil, err
	}
	out := make([]store.PortSpec, len(specs))
	for i, ps := range specs {
		out[i] = store.PortSpec{Proto: ps.Proto, First: ps.Ports.First, Last: ps.Ports.Last}
	}
	return out, nil
}

func accessInfo(r store.AccessRequest) wire.AccessRequest {
	return wire.AccessRequest{
		ID:             r.ID,
		Src:            r.Src,
		SrcName:        r.SrcName,
		To:             r.To,
		Port:           r.Port,
		Duration:       r.Duration,
		Reason:         r.Reason,
		State:          r.State,
		Created:        r.Created,
		Approver:       r.Approver,
		Decided:        r.Decided,
		DecisionReason: r.DecisionReason,
		Expires:        r.Expires,
	}
}

// grantsChanged tells the netmap hub and the expirer that a grant began
// or ended.
func (s *Server) grantsChanged() {
	s.cfg.Hub.Notify()
	if s.cfg.Grants != nil {
		s.cfg.Grants.Kick()
	}
}

// handleNodeAccess records a node's request for just-in-time access. The
// calling node is the source. The current policy must have an access rule
// that lets the node request the service and port for the duration; if the
// rule auto-approves, the request is a grant at once.
func (s *Server) handleNodeAccess(w http.ResponseWriter, r *http.Request) {
	n := nodeFrom(r)
	var req wire.NodeAccessRequest
	if !decode(w, r, &req) {
		return
	}
	reason, err := cleanReason(req.Reason, true)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	d := req.Duration.Truncate(time.Microsecond)
	switch {
	case !strings.HasPrefix(req.To, "svc:") || len(req.To) > 128:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("to %q: want a service, svc:<name>", truncate(req.To, 70)))
		return
	case d < minAccessDuration:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("duration %s: want at least %s", req.Duration, minAccessDuration))
		return
	}
	for attempt := 0; ; attempt++ {
		sp, p, err := s.currentPolicy(r.Context())
		if errors.Is(err, store.ErrNotFound) {
			writeError(w, http.StatusForbidden, "no policy saved: no access may be requested")
			return
		}
		if err != nil {
			s.internalError(w, r, "reading current policy", err)
			return
		}
		ports, err := grantPorts(p, req.To, req.Port)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		rule, err := p.AccessRuleFor(identity(n), req.To, req.Port, d)
		if err != nil {
			status := http.StatusBadRequest
			if errors.Is(err, policy.ErrNotAllowed) {
				status = http.StatusForbidden
			}
			s.log.Info("access request refused", logNode, n.ID, "to", req.To, "port", req.Port, logErr, err)
			writeError(w, status, err.Error())
			return
		}
		now := micro(s.cfg.Now())
		ar := store.AccessRequest{
			ID:       newAccessID(),
			Src:      n.ID,
			SrcName:  n.Name,
			To:       req.To,
			Port:     req.Port,
			Duration: d,
			Reason:   reason,
			State:    wire.AccessPending,
			Created:  now,
		}
		if rule.AutoApprove {
			ar.State = wire.AccessApproved
			ar.Approver = userPolicy
			ar.Decided = now
			ar.DecisionReason = "auto-approved by the policy"
			ar.Expires = now.Add(d)
			ar.Ports = ports
			ar.PolicyVersion = sp.Version
			ar.SrcPosture = rule.SrcPosture
		}
		action := audit.AccessRequest
		summary := map[string]any{"to": ar.To, "port": ar.Port, "duration": ar.Duration.String(), "reason": ar.Reason}
		if ar.State == wire.AccessApproved {
			action, summary["expires"], summary["policy_version"] = audit.AccessAutoApprove, ar.Expires, ar.PolicyVersion
		}
		ctx := s.auditedBy(r.Context(), audit.NodeActor(string(n.ID)), action, "access:"+ar.ID, summary)
		err = s.cfg.Store.CreateAccessRequest(ctx, ar)
		switch {
		case errors.Is(err, store.ErrPolicyChanged) && attempt+1 < decideAttempts:
			continue
		case errors.Is(err, store.ErrNotFound):
			writeError(w, http.StatusForbidden, fmt.Sprintf("node %s is not enrolled (deleted); enroll again", n.ID))
			return
		case errors.Is(err, store.ErrPolicyChanged):
			writeError(w, http.StatusConflict, "the policy keeps changing; try again")
			return
		case err != nil:
			s.internalError(w, r, "recording access request", err)
			return
		}
		if ar.State == wire.AccessApproved {
			s.grantsChanged()
		}
		s.log.Info("access requested", "request", ar.ID, logNode, n.ID, logName, n.Name, "to", ar.To, "port", ar.Port,
			"duration", ar.Duration, "state", ar.State, "reason", ar.Reason)
		writeJSON(w, http.StatusCreated, accessInfo(ar))
		return
	}
}

// handleGetNodeAccess answers a node asking about one of its own access
// requests (latch access request --wait). Another node's request is
// reported as not found, so a node learns nothing of others' requests.
func (s *Server) handleGetNodeAccess(w http.ResponseWriter, r *http.Request) {
	n := nodeFrom(r)
	id := r.PathValue("id")
	ar, err := s.cfg.Store.AccessRequest(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) || err == nil && ar.Src != n.ID {
		writeError(w, http.StatusNotFound, fmt.Sprintf("access request %q not found", truncate(id, 20)))
		return
	}
	if err != nil {
		s.internalError(w, r, "reading access request", err)
		return
	}
	writeJSON(w, http.StatusOK, accessInfo(ar))
}

// micro is t as the store keeps it.
func micro(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func (s *Server) handleListAccess(w http.ResponseWriter, r *http.Request) {
	var states []string
	active := false
	switch st := r.URL.Query().Get("state"); st {
	case "", "all":
	case "active":
		states, active = []string{wire.AccessApproved}, true
	case wire.AccessPending, wire.AccessApproved, wire.AccessDenied, wire.AccessRevoked, wire.AccessExpired:
		states = []string{st}
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("state %q: want pending, active, approved, denied, revoked, expired or all", truncate(st, 20)))
		return
	}
	rs, err := s.cfg.Store.AccessRequests(r.Context(), states...)
	if err != nil {
		s.internalError(w, r, "listing access requests", err)
		return
	}
	now := s.cfg.Now()
	out := make([]wire.AccessRequest, 0, len(rs))
	for _, ar := range rs {
		if active && !now.Before(ar.Expires) {
			continue // past its expiry, about to be marked expired
		}
		out = append(out, accessInfo(ar))
	}
	writeJSON(w, http.StatusOK, out)
}

// lookupAccess reads the request named in the path and its decision body.
// On failure it writes the error and returns false.
func (s *Server) lookupAccess(w http.ResponseWriter, r *http.Request) (store.AccessRequest, string, bool) {
	var req wire.DecideRequest
	if !decodeOptional(w, r, &req) {
		return store.AccessRequest{}, "", false
	}
	reason, err := cleanReason(req.Reason, false)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return store.AccessRequest{}, "", false
	}
	id := r.PathValue("id")
	ar, err := s.cfg.Store.AccessRequest(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("access request %q not found", truncate(id, 20)))
		return store.AccessRequest{}, "", false
	}
	if err != nil {
		s.internalError(w, r, "reading access request", err)
		return store.AccessRequest{}, "", false
	}
	return ar, reason, true
}

// writeDecideError answers a failed decision.
func (s *Server) writeDecideError(w http.ResponseWriter, r *http.Request, err error) {
	var se *store.StateError
	switch {
	case errors.As(err, &se) && se.State == wire.AccessPending:
		writeError(w, http.StatusConflict, fmt.Sprintf("access request %s is pending, not approved: deny it instead", se.ID))
	case errors.As(err, &se):
		writeError(w, http.StatusConflict, fmt.Sprintf("access request %s is already %s", se.ID, se.State))
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusConflict, "the requesting node no longer exists")
	case errors.Is(err, store.ErrPolicyChanged):
		writeError(w, http.StatusConflict, "the policy keeps changing; try again")
	default:
		s.internalError(w, r, "deciding access request", err)
	}
}

// handleApproveAccess approves a pending request. The current policy must
// still have an access rule for it (the policy may have changed since the
// request), and unless that rule auto-approves, the caller's user must be
// among the rule's approvers.
func (s *Server) handleApproveAccess(w http.ResponseWriter, r *http.Request) {
	ar, reason, ok := s.lookupAccess(w, r)
	if !ok {
		return
	}
	if ar.State != wire.AccessPending {
		s.writeDecideError(w, r, &store.StateError{ID: ar.ID, State: ar.State})
		return
	}
	user := caller(r).User
	for attempt := 0; ; attempt++ {
		sp, p, err := s.currentPolicy(r.Context())
		if errors.Is(err, store.ErrNotFound) {
			writeError(w, http.StatusConflict, "no policy saved: nothing can be approved")
			return
		}
		if err != nil {
			s.internalError(w, r, "reading current policy", err)
			return
		}
		src, err := s.cfg.Store.Node(r.Context(), ar.Src)
		if errors.Is(err, store.ErrNotFound) {
			writeError(w, http.StatusConflict, fmt.Sprintf("the requesting node %s no longer exists", ar.Src))
			return
		}
		if err != nil {
			s.internalError(w, r, "reading node", err)
			return
		}
		rule, err := p.AccessRuleFor(identity(src), ar.To, ar.Port, ar.Duration)
		if err != nil {
			writeError(w, http.StatusConflict, fmt.Sprintf("the current policy (version %d) no longer allows this request: %s", sp.Version, err))
			return
		}
		if !rule.AutoApprove && (user == "" || !p.CanApprove(rule, user)) {
			s.log.Info("approval refused", "request", ar.ID, logToken, tokenID(r), "user", user)
			writeError(w, http.StatusForbidden, fmt.Sprintf("user %q is not an approver of this request under the current policy", truncate(user, 70)))
			return
		}
		ports, err := grantPorts(p, ar.To, ar.Port)
		if err != nil {
			writeError(w, http.StatusConflict, fmt.Sprintf("the current policy (version %d) no longer allows this request: %s", sp.Version, err))
			return
		}
		now := micro(s.cfg.Now())
		ctx := s.audited(r, audit.AccessApprove, "access:"+ar.ID, map[string]any{
			"src": string(ar.Src), "to": ar.To, "port": ar.Port, "expires": now.Add(ar.Duration), "policy_version": sp.Version, "reason": reason})
		out, err := s.cfg.Store.DecideAccess(ctx, store.Decision{
			ID:            ar.ID,
			From:          wire.AccessPending,
			To:            wire.AccessApproved,
			By:            actor(r),
			Reason:        reason,
			At:            now,
			Expires:       now.Add(ar.Duration),
			Ports:         ports,
			PolicyVersion: sp.Version,
			SrcPosture:    rule.SrcPosture,
		})
		if errors.Is(err, store.ErrPolicyChanged) && attempt+1 < decideAttempts {
			continue
		}
		if err != nil {
			s.writeDecideError(w, r, err)
			return
		}
		s.grantsChanged()
		s.log.Info("access approved", "request", out.ID, logNode, out.Src, "to", out.To, "port", out.Port,
			"expires", out.Expires, "approver", out.Approver, logToken, tokenID(r))
		writeJSON(w, http.StatusOK, accessInfo(out))
		return
	}
}

func (s *Server) handleDenyAccess(w http.ResponseWriter, r *http.Request) {
	s.decide(w, r, wire.AccessPending, wire.AccessDenied)
}

func (s *Server) handleRevokeAccess(w http.ResponseWriter, r *http.Request) {
	s.decide(w, r, wire.AccessApproved, wire.AccessRevoked)
}

// decide denies a pending request or revokes an active grant.
func (s *Server) decide(w http.ResponseWriter, r *http.Request, from, to string) {
	ar, reason, ok := s.lookupAccess(w, r)
	if !ok {
		return
	}
	action := audit.AccessDeny
	if to == wire.AccessRevoked {
		action = audit.AccessRevoke
	}
	ctx := s.audited(r, action, "access:"+ar.ID, map[string]any{"src": string(ar.Src), "to": ar.To, "reason": reason})
	out, err := s.cfg.Store.DecideAccess(ctx, store.Decision{
		ID: ar.ID, From: from, To: to, By: actor(r), Reason: reason, At: micro(s.cfg.Now()),
	})
	if err != nil {
		s.writeDecideError(w, r, err)
		return
	}
	if to == wire.AccessRevoked {
		s.grantsChanged()
	}
	s.log.Info("access "+to, "request", out.ID, logNode, out.Src, "to", out.To, "by", actor(r), logToken, tokenID(r))
	writeJSON(w, http.StatusOK, accessInfo(out))
}
