package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/latchnet/latch/acl/compile"
	"github.com/latchnet/latch/acl/policy"
	"github.com/latchnet/latch/coordinator/audit"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
)

// checkPolicy parses and validates src and runs its tests: the checks a
// policy passes before it may be saved.
func checkPolicy(src string) (*policy.Policy, error) {
	p, err := policy.Parse([]byte(src))
	if err != nil {
		return nil, err
	}
	if err := p.RunTests(); err != nil {
		return nil, err
	}
	return p, nil
}

// writePolicyError answers 400 with a wire.PolicyError for a refused
// policy. The message is self-contained (it names the line and column);
// Line and Column repeat them for tools.
func writePolicyError(w http.ResponseWriter, err error) {
	pe := wire.PolicyError{Message: strings.Join(strings.Fields(err.Error()), " ")}
	var perr *policy.Error
	if errors.As(err, &perr) && perr.Line > 0 {
		pe.Line, pe.Column = perr.Line, perr.Col
	}
	if pe.Message == "" {
		pe.Message = "invalid policy"
	}
	writeJSON(w, http.StatusBadRequest, pe)
}

// policyCache keeps the last stored policy version parsed, so requests
// that consult the current policy parse it once per version.
type policyCache struct {
	mu      sync.Mutex
	version int            // guarded by mu
	parsed  *policy.Policy // guarded by mu
}

// current returns the current stored policy and its parsed form, or
// store.ErrNotFound if none was saved.
func (s *Server) currentPolicy(ctx context.Context) (store.Policy, *policy.Policy, error) {
	sp, err := s.cfg.Store.CurrentPolicy(ctx)
	if err != nil {
		return store.Policy{}, nil, err
	}
	c := &s.policies
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.version == sp.Version && c.parsed != nil {
		return sp, c.parsed, nil
	}
	p, err := policy.Parse([]byte(sp.Source))
	if err != nil {
		return store.Policy{}, nil, fmt.Errorf("stored policy version %d does not parse: %w", sp.Version, err)
	}
	c.version, c.parsed = sp.Version, p
	return sp, p, nil
}

func policyInfo(p store.Policy) wire.PolicyInfo {
	return wire.PolicyInfo{Version: p.Version, Created: p.Created, Author: p.Author, Source: p.Source}
}

func (s *Server) handleGetPolicy(w http.ResponseWriter, r *http.Request) {
	p, err := s.cfg.Store.CurrentPolicy(r.Context())
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no policy saved yet: no node may reach any other")
		return
	}
	if err != nil {
		s.internalError(w, r, "reading policy", err)
		return
	}
	writeJSON(w, http.StatusOK, policyInfo(p))
}

func (s *Server) handleListPolicies(w http.ResponseWriter, r *http.Request) {
	serveList(s, w, r, "listing policies", s.cfg.Store.Policies, policyInfo)
}

// lookupPolicyVersion reads the version named in the path. On failure it
// writes the error and returns false.
func (s *Server) lookupPolicyVersion(w http.ResponseWriter, r *http.Request) (store.Policy, bool) {
	raw := r.PathValue("v")
	v, err := strconv.Atoi(raw)
	if err != nil || v <= 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("policy version %q: want a positive integer", truncate(raw, 20)))
		return store.Policy{}, false
	}
	p, err := s.cfg.Store.Policy(r.Context(), v)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("policy version %d not found", v))
		return store.Policy{}, false
	}
	if err != nil {
		s.internalError(w, r, "reading policy", err)
		return store.Policy{}, false
	}
	return p, true
}

func (s *Server) handleGetPolicyVersion(w http.ResponseWriter, r *http.Request) {
	if p, ok := s.lookupPolicyVersion(w, r); ok {
		writeJSON(w, http.StatusOK, policyInfo(p))
	}
}

func (s *Server) handleSetPolicy(w http.ResponseWriter, r *http.Request) {
	var req wire.SetPolicyRequest
	if !decodeLimit(w, r, &req, wire.MaxPolicyRequestBytes) {
		return
	}
	if req.IfVersion < 0 {
		writeError(w, http.StatusBadRequest, "if_version must not be negative")
		return
	}
	s.savePolicy(w, r, req, "", 0)
}

// restoreRequest is the optional body of a restore.
type restoreRequest struct {
	DryRun    bool `json:"dry_run,omitempty"`
	IfVersion int  `json:"if_version,omitempty"`
}

func (s *Server) handleRestorePolicy(w http.ResponseWriter, r *http.Request) {
	var req restoreRequest
	if !decodeOptional(w, r, &req) {
		return
	}
	old, ok := s.lookupPolicyVersion(w, r)
	if !ok {
		return
	}
	s.savePolicy(w, r, wire.SetPolicyRequest{Source: old.Source, DryRun: req.DryRun, IfVersion: req.IfVersion},
		fmt.Sprintf(", restoring version %d", old.Version), old.Version)
}

// savePolicy checks req.Source, computes the pairs it gains and loses on
// the current inventory and, unless it is a dry run, saves it as the next
// version. note is appended to the recorded author; restoring is the
// version being restored, 0 for a new policy.
func (s *Server) savePolicy(w http.ResponseWriter, r *http.Request, req wire.SetPolicyRequest, note string, restoring int) {
	ctx := r.Context()
	next, err := checkPolicy(req.Source)
	if err != nil {
		s.log.Info("policy refused", logToken, tokenID(r), logErr, err)
		writePolicyError(w, err)
		return
	}
	cur, prev, err := s.currentPolicy(ctx)
	switch {
	case errors.Is(err, store.ErrNotFound):
		prev = nil // no policy: nothing was allowed
	case err != nil:
		s.internalError(w, r, "reading current policy", err)
		return
	}
	if req.IfVersion > 0 && req.IfVersion != cur.Version {
		writeError(w, http.StatusConflict, fmt.Sprintf("the current policy is version %d, not %d: it changed since you read it", cur.Version, req.IfVersion))
		return
	}
	nodes, err := s.cfg.Store.Nodes(ctx)
	if err != nil {
		s.internalError(w, r, "listing nodes", err)
		return
	}
	gained, lost := policyDiff(prev, next, nodes)
	resp := wire.SetPolicyResponse{Gained: gained, Lost: lost}
	if req.DryRun {
		writeJSON(w, http.StatusOK, resp)
		return
	}
	t := caller(r)
	author := fmt.Sprintf("%s (token %s)%s", t.User, t.ID, note)
	action, summary := audit.PolicySave, map[string]any{"gained": len(gained), "lost": len(lost)}
	if restoring != 0 {
		action, summary["restored_from"] = audit.PolicyRestore, restoring
	}
	saved, err := s.cfg.Store.SavePolicy(s.audited(r, action, "policy", summary), req.Source, author, req.IfVersion, s.cfg.Now())
	if errors.Is(err, store.ErrVersionConflict) {
		writeError(w, http.StatusConflict, unwrapAll(err).Error()+": the policy changed since you read it")
		return
	}
	if err != nil {
		s.internalError(w, r, "saving policy", err)
		return
	}
	s.cfg.Hub.Notify()
	s.log.Info("policy saved", "policy_version", saved.Version, logToken, t.ID, "user", t.User,
		"gained", len(gained), "lost", len(lost), "restored", note != "")
	resp.Version = saved.Version
	writeJSON(w, http.StatusOK, resp)
}

// policyDiff returns the pairs that replacing prev (nil: no policy) with
// next gains and loses on nodes. It compiles prev once and lets the
// compiler diff next against it, which never holds every pair in memory.
func policyDiff(prev, next *policy.Policy, nodes []store.Node) (gained, lost []compile.Pair) {
	return inventoryCompiler(prev, nodes).DiffPolicy(next)
}

// inventoryCompiler returns a compiler holding nodes (less the expired
// ones, which the compiler never sees) under p (nil: no policy). The
// dry-run preview and the pairs listing both start from it, so they
// cannot disagree.
func inventoryCompiler(p *policy.Policy, nodes []store.Node) *compile.Compiler {
	c := compile.New(nil)
	for _, n := range nodes {
		w := n.Wire()
		if n.Expired {
			continue // the compiler never sees expired nodes
		}
		c.Upsert(compile.Node{ID: n.ID, Name: n.Name, Tags: n.Tags, Owner: n.PolicyOwner(), Addresses: w.Addresses,
			Posture: n.Posture.Attrs(), Quarantined: n.Quarantined})
	}
	c.SetPolicy(p)
	return c
}

// decodeOptional is decode for a body that may be absent: an empty body
// leaves v as it is.
func decodeOptional(w http.ResponseWriter, r *http.Request, v any) bool {
	if r.ContentLength == 0 {
		return true
	}
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(ioTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, wire.MaxRequestBytes))
	rc.SetReadDeadline(time.Time{})
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", wire.MaxRequestBytes))
		} else {
			writeError(w, http.StatusBadRequest, "reading request body: "+err.Error())
		}
		return false
	}
	if strings.TrimSpace(string(body)) == "" {
		return true
	}
	r.Body = io.NopCloser(strings.NewReader(string(body)))
	return decode(w, r, v)
}
