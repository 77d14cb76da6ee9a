package api

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/latchnet/latch/coordinator/audit"
	"github.com/latchnet/latch/coordinator/netmap"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
)

// AuditNodeLeave is the audit action of an ephemeral node leaving on its
// own (wire.PathLeave).
const AuditNodeLeave = "node.leave"

// routeLeave registers wire.PathLeave.
func (s *Server) routeLeave() {
	s.route(wire.PathLeave, map[string]http.HandlerFunc{http.MethodPost: s.agent(s.node(s.handleLeave))})
}

// handleLeave deletes the calling ephemeral node at once: one store
// transaction (node, address retirement, netmap version, audit record),
// then its stream is cut and every peer is told with the next fan-out.
func (s *Server) handleLeave(w http.ResponseWriter, r *http.Request) {
	n := nodeFrom(r)
	var req wire.LeaveRequest
	if !decode(w, r, &req) {
		return
	}
	reason := strings.TrimSpace(req.Reason)
	if len(reason) > wire.MaxLeaveReason || strings.ContainsFunc(reason, func(c rune) bool { return c < 0x20 || c == 0x7f }) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("reason: want at most %d printable characters", wire.MaxLeaveReason))
		return
	}
	if !n.Ephemeral {
		writeError(w, http.StatusConflict, fmt.Sprintf("node %s is not ephemeral: it stays enrolled (an admin deletes it with latch nodes revoke)", n.Name))
		return
	}
	ctx := s.auditedBy(r.Context(), audit.NodeActor(string(n.ID)), AuditNodeLeave, audit.NodeActor(string(n.ID)), map[string]any{
		"name": n.Name, "reason": reason, "remote": r.RemoteAddr})
	_, err := s.cfg.Store.DeleteNode(ctx, n.ID, s.cfg.Now())
	if errors.Is(err, store.ErrNotFound) { // deleted concurrently
		writeError(w, http.StatusForbidden, fmt.Sprintf("node %s is not enrolled (deleted)", n.ID))
		return
	}
	if err != nil {
		s.internalError(w, r, "deleting leaving node", err)
		return
	}
	s.cfg.Hub.Disconnect(n.ID, netmap.ErrNodeDeleted)
	s.cfg.Hub.Notify()
	s.log.Info("ephemeral node left", logNode, n.ID, logName, n.Name, "reason", reason)
	w.WriteHeader(http.StatusNoContent)
}
