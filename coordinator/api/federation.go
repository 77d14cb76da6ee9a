package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/latchnet/latch/acl/policy"
	"github.com/latchnet/latch/coordinator/audit"
	"github.com/latchnet/latch/coordinator/ca"
	"github.com/latchnet/latch/coordinator/federation"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
)

// logTrustRule is the log key of a trust rule ID.
const logTrustRule = "trust_rule"

// trustRuleActor names a trust rule as the actor of a federated enrollment.
func trustRuleActor(id string) string { return "trust_rule:" + id }

// routeFederation registers the workload identity trust rule routes. The
// federated enrollment itself is POST wire.PathEnroll with an IDToken
// (handleEnroll hands it to enrollFederated).
func (s *Server) routeFederation() {
	if s.cfg.Federation == nil {
		// System roots only, default timeouts. The coordinator passes its
		// own (with --oidc-ca-file roots).
		v, err := federation.NewVerifier(federation.Config{Logger: s.log})
		if err != nil {
			panic(err) // cannot happen without extra roots
		}
		s.cfg.Federation = v
	}
	s.route(wire.PathTrustRules, map[string]http.HandlerFunc{
		http.MethodGet:  s.admin(wire.ScopeKeysWrite, s.handleListTrustRules),
		http.MethodPost: s.admin(wire.ScopeKeysWrite, s.handleCreateTrustRule),
	})
	s.route(wire.PathTrustRules+"/{id}", map[string]http.HandlerFunc{http.MethodDelete: s.admin(wire.ScopeKeysWrite, s.handleDeleteTrustRule)})
}

func (s *Server) handleCreateTrustRule(w http.ResponseWriter, r *http.Request) {
	var req wire.TrustRuleRequest
	if !decode(w, r, &req) {
		return
	}
	var known func(wire.Tag) bool
	_, p, err := s.currentPolicy(r.Context())
	switch {
	case errors.Is(err, store.ErrNotFound):
		// No policy yet: any well-formed tag.
	case err != nil:
		s.internalError(w, r, "reading the policy", err)
		return
	default:
		known = func(t wire.Tag) bool { return policyKnowsTag(p, t) }
	}
	req, err = federation.Validate(req, known)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	rule := wire.TrustRule{ID: newTrustRuleID(), TrustRuleRequest: req, Created: s.cfg.Now().UTC().Truncate(time.Microsecond)}
	ctx := s.audited(r, store.AuditTrustRuleCreate, trustRuleActor(rule.ID), map[string]any{
		"name": rule.Name, "issuer": rule.Issuer, "audience": rule.Audience, "claims": rule.Claims,
		"tags": rule.Tags, "ephemeral": rule.Ephemeral, "max_lifetime": rule.MaxLifetime.String()})
	err = s.cfg.Store.CreateTrustRule(ctx, rule)
	if errors.Is(err, store.ErrAlreadyExists) {
		writeError(w, http.StatusConflict, fmt.Sprintf("a trust rule named %q already exists", rule.Name))
		return
	}
	if err != nil {
		s.internalError(w, r, "creating trust rule", err)
		return
	}
	s.log.Info("trust rule created", logTrustRule, rule.ID, logName, rule.Name, logToken, tokenID(r))
	writeJSON(w, http.StatusCreated, rule)
}

// policyKnowsTag reports whether the policy's tagOwners name t.
func policyKnowsTag(p *policy.Policy, t wire.Tag) bool {
	_, ok := p.TagOwners[t]
	return ok
}

func (s *Server) handleListTrustRules(w http.ResponseWriter, r *http.Request) {
	serveList(s, w, r, "listing trust rules", s.cfg.Store.TrustRules, func(t wire.TrustRule) wire.TrustRule { return t })
}

func (s *Server) handleDeleteTrustRule(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	rule, err := s.cfg.Store.DeleteTrustRule(s.audited(r, store.AuditTrustRuleDelete, trustRuleActor(id), nil), id)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("trust rule %q not found", truncate(id, 70)))
		return
	}
	if err != nil {
		s.internalError(w, r, "deleting trust rule", err)
		return
	}
	s.log.Info("trust rule deleted", logTrustRule, rule.ID, logName, rule.Name, logToken, tokenID(r))
	writeJSON(w, http.StatusOK, rule)
}

// newTrustRuleID returns "tr" and 12 hex characters.
func newTrustRuleID() string {
	var b [6]byte
	rand.Read(b[:])
	return "tr" + hex.EncodeToString(b[:])
}

// enrollFederated enrolls a node presenting a workload identity token
// (req.IDToken, no AuthKey): the token is verified against the trust
// rules' issuers, the first rule it satisfies gives the node its tags,
// ephemerality and key expiry, and the token is recorded with the node so
// it never enrolls another. Every refusal is audited with its reason
// (never the token) and answered 401 or 403; nothing else is stored.
func (s *Server) enrollFederated(w http.ResponseWriter, r *http.Request, req wire.EnrollRequest) {
	if req.AuthKey != "" {
		writeError(w, http.StatusBadRequest, "set exactly one of auth_key and id_token")
		return
	}
	if msg := checkEnrollBody(req); msg != "" {
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	ctx := r.Context()
	rules, err := s.cfg.Store.TrustRules(ctx)
	if err != nil {
		s.internalError(w, r, "reading trust rules", err)
		return
	}
	s.cfg.Federation.Forget(rules)
	if len(rules) == 0 {
		s.refuseFederated(w, r, nil, "", http.StatusUnauthorized, "no trust rules are configured")
		return
	}
	res, err := s.cfg.Federation.Verify(ctx, req.IDToken, rules)
	var ref *federation.Refusal
	if errors.As(err, &ref) {
		s.refuseFederated(w, r, nil, "", ref.Status, ref.Reason)
		return
	}
	if err != nil {
		s.internalError(w, r, "verifying ID token", err)
		return
	}
	rule := res.Rule
	now := s.cfg.Now()
	id := store.NewNodeID()
	// A federated node's certificate never outlives its key.
	certLife := min(s.cfg.NodeCertLifetime, rule.MaxLifetime)
	cert, pub, err := s.cfg.CA.IssueNode(req.CSR, id, certLife, now)
	if err != nil {
		s.internalError(w, r, "issuing node certificate", err)
		return
	}
	actx := s.auditedBy(ctx, trustRuleActor(rule.ID), audit.NodeEnroll, audit.NodeActor(string(id)), map[string]any{
		"hostname": req.Hostname, "tags": req.Tags, "ephemeral": req.Ephemeral || rule.Ephemeral, "remote": r.RemoteAddr,
		"trust_rule": rule.Name, "issuer": rule.Issuer, "subject": truncate(res.Subject, 200)})
	n, err := s.cfg.Store.Enroll(actx, store.Enrollment{
		NodeID:       id,
		Hostname:     req.Hostname,
		Tags:         req.Tags,
		Ephemeral:    req.Ephemeral,
		WireGuardKey: req.WireGuardKey,
		CertKey:      pub,
		Endpoints:    withObserved(unmapped(req.Endpoints), r.RemoteAddr),
		Now:          now,
		Posture:      req.Posture,
		CertExpires:  certExpiry(cert),
		Federated:    &store.FederatedEnrollment{RuleID: rule.ID, TokenID: res.TokenID, TokenExpires: res.TokenExpires},
	})
	var tagErr *store.TagNotAllowedError
	switch {
	case err == nil:
	case errors.Is(err, store.ErrTokenReplayed):
		s.refuseFederated(w, r, &rule, res.Subject, http.StatusUnauthorized, "ID token already used: one token enrolls one node")
		return
	case errors.Is(err, store.ErrNotFound):
		s.refuseFederated(w, r, &rule, res.Subject, http.StatusUnauthorized, "trust rule deleted while enrolling")
		return
	case errors.As(err, &tagErr):
		s.refuseFederated(w, r, &rule, res.Subject, http.StatusForbidden, fmt.Sprintf("tag %s not allowed by trust rule %s", tagErr.Tag, rule.Name))
		return
	case errors.Is(err, store.ErrNodeKeyRevoked):
		s.refuseFederated(w, r, &rule, res.Subject, http.StatusForbidden, "this WireGuard key was revoked (it belonged to a revoked node); the node needs a new key")
		return
	default:
		s.finishEnroll(w, r, n, cert, err, logTrustRule, rule.ID)
		return
	}
	s.finishEnroll(w, r, n, cert, nil, logTrustRule, rule.ID)
}

// refuseFederated audits a refused federated enrollment (in a transaction
// of its own: nothing else is stored) and answers it. rule is the matched
// rule, nil before one matched.
func (s *Server) refuseFederated(w http.ResponseWriter, r *http.Request, rule *wire.TrustRule, subject string, status int, reason string) {
	summary := map[string]any{"reason": reason, "remote": r.RemoteAddr}
	actor := "oidc"
	if rule != nil {
		actor = trustRuleActor(rule.ID)
		summary["trust_rule"] = rule.Name
		summary["subject"] = truncate(subject, 200)
	}
	e := audit.Entry{Time: s.cfg.Now(), Actor: actor, Action: store.AuditEnrollRefused, Target: "enroll", Summary: summary}
	if err := s.cfg.Store.AppendAudit(context.WithoutCancel(r.Context()), e); err != nil {
		s.log.Error("recording refused enrollment in the audit log", logErr, err)
	}
	s.log.Info("federated enrollment refused", "reason", reason, logRemote, r.RemoteAddr)
	writeError(w, status, "enrollment refused: "+reason)
}

// checkEnrollBody checks the node-supplied fields of an enrollment
// request; it returns the problem, or "".
func checkEnrollBody(req wire.EnrollRequest) string {
	if err := checkHostname(req.Hostname); err != nil {
		return err.Error()
	}
	if err := checkTags(req.Tags); err != nil {
		return err.Error()
	}
	if req.WireGuardKey.IsZero() {
		return "wireguard_key required"
	}
	if err := checkEndpoints(req.Endpoints); err != nil {
		return err.Error()
	}
	if _, err := ca.ParseCSR(req.CSR); err != nil {
		return "csr: " + err.Error()
	}
	if err := checkPosture(req.Posture); err != nil {
		return err.Error()
	}
	return ""
}
