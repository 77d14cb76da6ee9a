package api

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/latchnet/latch/coordinator/audit"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
)

// Node key lifetimes an admin may set (on a key or a node).
const (
	// MaxNodeKeyExpiry bounds a node key lifetime: ten years. Longer is a
	// typo; a node that must never expire is a tagged node set to never.
	MaxNodeKeyExpiry = 10 * 365 * 24 * time.Hour
	// MinNodeKeyExpiry is the shortest lifetime a key may give its nodes.
	MinNodeKeyExpiry = time.Minute
	// MaxKeyUses bounds an enrollment key's MaxUses.
	MaxKeyUses = 1_000_000
	// maxQuarantineReason bounds a quarantine reason, in bytes.
	maxQuarantineReason = 512
	// maxPostureField bounds each posture string, in bytes.
	maxPostureField = 256
)

// routeIdentity registers node expiry, quarantine and tag routes (posture
// arrives on the agent routes: enroll and update).
func (s *Server) routeIdentity() {
	for path, h := range map[string]http.HandlerFunc{
		wire.PathNodeQuarantine:   s.handleQuarantine,
		wire.PathNodeUnquarantine: s.handleUnquarantine,
		wire.PathNodeExpiry:       s.handleNodeExpiry,
		wire.PathNodeTags:         s.handleNodeTags,
	} {
		s.route(wire.PathNodes+"/{ref}"+path, map[string]http.HandlerFunc{http.MethodPost: s.admin(wire.ScopeNodesWrite, h)})
	}
}

// nodeKeyExpiry returns the key lifetime of nodes whose key sets none.
func (s *Server) nodeKeyExpiry() time.Duration {
	if s.cfg.NodeKeyExpiry > 0 {
		return s.cfg.NodeKeyExpiry
	}
	return store.DefaultNodeKeyExpiry
}

// kickNodeExpiry tells the expiry sweeper that expiries changed.
func (s *Server) kickNodeExpiry() {
	if s.cfg.NodeExpiry != nil {
		s.cfg.NodeExpiry.Kick()
	}
}

// certExpiry returns a DER certificate's NotAfter (zero if it does not
// parse, which a certificate the CA just issued always does).
func certExpiry(der []byte) time.Time {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return time.Time{}
	}
	return c.NotAfter.UTC()
}

// checkKeyIdentity checks a new enrollment key's node expiry and use
// bound.
func checkKeyIdentity(req wire.CreateKeyRequest) error {
	switch {
	case req.NodeExpiry < 0:
		return errors.New("node_expiry must not be negative")
	case req.NodeExpiry != 0 && req.NodeExpiry < MinNodeKeyExpiry:
		return fmt.Errorf("node_expiry %s is shorter than the minimum of %s", req.NodeExpiry, MinNodeKeyExpiry)
	case req.NodeExpiry > MaxNodeKeyExpiry:
		return fmt.Errorf("node_expiry %s exceeds the maximum of %s", req.NodeExpiry, MaxNodeKeyExpiry)
	case req.NoNodeExpiry && req.NodeExpiry != 0:
		return errors.New("node_expiry and no_node_expiry exclude each other")
	case req.NoNodeExpiry && len(req.Tags) == 0:
		return errors.New("no_node_expiry needs a key with tags: only tagged (server) nodes may never expire")
	case req.MaxUses < 0 || req.MaxUses > MaxKeyUses:
		return fmt.Errorf("max_uses %d: want between 0 and %d", req.MaxUses, MaxKeyUses)
	case req.MaxUses > 0 && !req.Reusable:
		return errors.New("max_uses needs a reusable key (a one-off key enrolls one node)")
	}
	return nil
}

// keyInfo describes k with its effective node expiry.
func (s *Server) keyInfo(k store.EnrollmentKey) wire.KeyInfo {
	ki := keyInfo(k)
	ki.NoNodeExpiry, ki.MaxUses, ki.NodeExpiry = k.NoNodeExpiry, k.MaxUses, k.NodeExpiry
	if !k.NoNodeExpiry && k.NodeExpiry == 0 {
		ki.NodeExpiry = s.nodeKeyExpiry()
	}
	return ki
}

// identityInfo fills in ni's identity state from n.
func (s *Server) identityInfo(ni *wire.NodeInfo, n store.Node) {
	ni.Expired = n.Expired || !n.KeyExpiry.IsZero() && !s.cfg.Now().Before(n.KeyExpiry)
	ni.Quarantined, ni.QuarantineReason = n.Quarantined, n.QuarantineReason
	ni.Posture = n.Posture
	ni.CertExpires = n.CertExpires
}

// checkPosture bounds a reported posture's strings.
func checkPosture(p *wire.Posture) error {
	if p == nil {
		return nil
	}
	for _, f := range []struct{ name, v string }{
		{wire.PostureOS, p.OS}, {wire.PostureOSVersion, p.OSVersion}, {wire.PostureKernel, p.Kernel},
		{wire.PostureAgentVersion, p.AgentVersion}, {wire.PostureHostname, p.Hostname},
	} {
		if len(f.v) > maxPostureField || !printable(f.v) {
			return fmt.Errorf("posture %s: want at most %d printable characters", f.name, maxPostureField)
		}
	}
	return nil
}

func printable(s string) bool {
	return !strings.ContainsFunc(s, func(c rune) bool { return c < 0x20 || c == 0x7f || c == 0xfffd })
}

// updatePosture stores the calling node's reported posture; a change
// re-evaluates its access at once (the store bumps the netmap version,
// the hub recompiles). On failure it writes the error and returns false.
func (s *Server) updatePosture(w http.ResponseWriter, r *http.Request, n store.Node, p *wire.Posture) bool {
	if err := checkPosture(p); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return false
	}
	summary := map[string]any{"name": n.Name}
	for k, v := range p.Attrs() {
		summary[k] = v
	}
	ctx := s.auditedBy(r.Context(), audit.NodeActor(string(n.ID)), store.AuditNodePosture, audit.NodeActor(string(n.ID)), summary)
	changed, err := s.cfg.Store.SetPosture(ctx, n.ID, p, s.cfg.Now())
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusForbidden, fmt.Sprintf("node %s is not enrolled (deleted); enroll again", n.ID))
		return false
	}
	if err != nil {
		s.internalError(w, r, "recording posture", err)
		return false
	}
	if changed {
		s.cfg.Hub.Notify()
		s.log.Info("node posture changed", logNode, n.ID, logName, n.Name)
	}
	return true
}

// replyNode answers an admin node action with the node as it is now.
func (s *Server) replyNode(w http.ResponseWriter, r *http.Request, id wire.NodeID) {
	n, err := s.cfg.Store.Node(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) { // deleted concurrently
		writeError(w, http.StatusNotFound, fmt.Sprintf("node %q not found", id))
		return
	}
	if err != nil {
		s.internalError(w, r, "reading node", err)
		return
	}
	writeJSON(w, http.StatusOK, s.nodeInfo(n))
}

// nodeActionError answers a store error of an admin node action.
func (s *Server) nodeActionError(w http.ResponseWriter, r *http.Request, op string, n store.Node, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound): // deleted concurrently
		writeError(w, http.StatusNotFound, fmt.Sprintf("node %q not found", n.ID))
	case errors.Is(err, store.ErrNeverExpiresUntagged):
		writeError(w, http.StatusBadRequest, fmt.Sprintf("node %s is untagged: only tagged (server) nodes may have a key that never expires", n.Name))
	default:
		s.internalError(w, r, op, err)
	}
}

// handleQuarantine quarantines a node: one store transaction (flag,
// reason, netmap version, audit record), then the hub fans the change out
// at once. Nothing on the way waits on a timer.
func (s *Server) handleQuarantine(w http.ResponseWriter, r *http.Request) {
	n, ok := s.lookupNode(w, r)
	if !ok {
		return
	}
	var req wire.QuarantineRequest
	if r.ContentLength != 0 && !decode(w, r, &req) {
		return
	}
	reason := strings.Join(strings.Fields(req.Reason), " ")
	if len(reason) > maxQuarantineReason || !printable(reason) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("reason: want at most %d printable characters", maxQuarantineReason))
		return
	}
	s.setQuarantine(w, r, n, true, reason)
}

func (s *Server) handleUnquarantine(w http.ResponseWriter, r *http.Request) {
	n, ok := s.lookupNode(w, r)
	if !ok {
		return
	}
	var req struct{}
	if r.ContentLength != 0 && !decode(w, r, &req) {
		return
	}
	s.setQuarantine(w, r, n, false, "")
}

func (s *Server) setQuarantine(w http.ResponseWriter, r *http.Request, n store.Node, on bool, reason string) {
	action, summary := store.AuditNodeUnquarantine, map[string]any{"name": n.Name}
	if on {
		action, summary["reason"] = store.AuditNodeQuarantine, reason
	}
	changed, err := s.cfg.Store.SetQuarantine(s.audited(r, action, audit.NodeActor(string(n.ID)), summary), n.ID, on, reason, s.cfg.Now())
	if err != nil {
		s.nodeActionError(w, r, "setting quarantine", n, err)
		return
	}
	if changed {
		s.cfg.Hub.Notify()
		s.log.Info("node quarantine changed", logNode, n.ID, logName, n.Name, "quarantined", on, "reason", reason, logToken, tokenID(r))
	}
	s.replyNode(w, r, n.ID)
}

// handleNodeExpiry sets when a node's key expires: in a duration, never
// (tagged nodes only) or now. An expired node leaves every netmap at once
// and can no longer renew its certificate; a later expiry revives it.
func (s *Server) handleNodeExpiry(w http.ResponseWriter, r *http.Request) {
	n, ok := s.lookupNode(w, r)
	if !ok {
		return
	}
	var req wire.SetNodeExpiryRequest
	if !decode(w, r, &req) {
		return
	}
	set := 0
	for _, b := range []bool{req.In != 0, req.Never, req.Now} {
		if b {
			set++
		}
	}
	switch {
	case set != 1:
		writeError(w, http.StatusBadRequest, "set exactly one of in, never and now")
		return
	case req.In < 0:
		writeError(w, http.StatusBadRequest, "in must be positive")
		return
	case req.In > MaxNodeKeyExpiry:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("in %s exceeds the maximum of %s", req.In, MaxNodeKeyExpiry))
		return
	case req.Never && len(n.Tags) == 0:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("node %s is untagged: only tagged (server) nodes may have a key that never expires", n.Name))
		return
	}
	now := s.cfg.Now().UTC()
	var expiry time.Time
	summary := map[string]any{"name": n.Name}
	switch {
	case req.Now:
		expiry, summary["now"] = now, true
	case req.In > 0:
		expiry = now.Add(req.In)
		summary["key_expiry"] = expiry
	default:
		summary["never"] = true
	}
	got, err := s.cfg.Store.SetNodeExpiry(s.audited(r, store.AuditNodeExpiry, audit.NodeActor(string(n.ID)), summary), n.ID, expiry, now)
	if err != nil {
		s.nodeActionError(w, r, "setting node key expiry", n, err)
		return
	}
	s.cfg.Hub.Notify()
	s.kickNodeExpiry()
	s.log.Info("node key expiry set", logNode, n.ID, logName, n.Name, "key_expiry", got.KeyExpiry, "expired", got.Expired, logToken, tokenID(r))
	writeJSON(w, http.StatusOK, s.nodeInfo(got))
}

// handleNodeTags replaces a node's tags. Every tag must be known to the
// current policy's tagOwners and assignable by the caller.
func (s *Server) handleNodeTags(w http.ResponseWriter, r *http.Request) {
	n, ok := s.lookupNode(w, r)
	if !ok {
		return
	}
	var req wire.SetNodeTagsRequest
	if !decode(w, r, &req) {
		return
	}
	if err := checkTags(req.Tags); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !s.mayAssignTags(w, r, req.Tags) {
		return
	}
	ctx := s.audited(r, store.AuditNodeTags, audit.NodeActor(string(n.ID)), map[string]any{"name": n.Name, "from": n.Tags, "to": req.Tags})
	changed, err := s.cfg.Store.SetTags(ctx, n.ID, req.Tags, s.cfg.Now())
	if errors.Is(err, store.ErrNeverExpiresUntagged) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("node %s never expires: set a key expiry (latch nodes expiry) before removing its last tag", n.Name))
		return
	}
	if err != nil {
		s.nodeActionError(w, r, "setting node tags", n, err)
		return
	}
	if changed {
		s.cfg.Hub.Notify()
		s.log.Info("node tags changed", logNode, n.ID, logName, n.Name, "tags", req.Tags, logToken, tokenID(r))
	}
	s.replyNode(w, r, n.ID)
}
