package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/latchnet/latch/coordinator/audit"
	"github.com/latchnet/latch/coordinator/netmap"
	"github.com/latchnet/latch/coordinator/store"
)

// auditNodeRevoke is the audit action of a node revocation.
const auditNodeRevoke = "node.revoke"

// handleRevokeNode removes a node like delete and, in the same
// transaction, revokes its WireGuard and certificate keys so they never
// enroll again. Its certificate stops authenticating at once (the node is
// gone), its stream is cut, and every peer drops it with the next delta.
func (s *Server) handleRevokeNode(w http.ResponseWriter, r *http.Request) {
	n, ok := s.lookupNode(w, r)
	if !ok {
		return
	}
	ctx := s.audited(r, auditNodeRevoke, audit.NodeActor(string(n.ID)), map[string]any{
		"name": n.Name, "wireguard_key": n.WireGuardKey.String()})
	_, err := s.cfg.Store.RevokeNode(ctx, n.ID, s.cfg.Now())
	if errors.Is(err, store.ErrNotFound) { // deleted concurrently
		writeError(w, http.StatusNotFound, fmt.Sprintf("node %q not found", n.ID))
		return
	}
	if err != nil {
		s.internalError(w, r, "revoking node", err)
		return
	}
	s.cfg.Hub.Disconnect(n.ID, netmap.ErrNodeDeleted)
	s.cfg.Hub.Notify()
	s.log.Info("node revoked", logNode, n.ID, logName, n.Name, logToken, tokenID(r))
	w.WriteHeader(http.StatusNoContent)
}
