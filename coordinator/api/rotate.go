package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/latchnet/latch/coordinator/audit"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
)

// auditNodeRotate is the audit action of a WireGuard key rotation.
const auditNodeRotate = "node.rotate"

// wireGuardKeySetter is the store method rotation needs. It is asserted
// rather than part of store.Store so a store without it refuses rotation
// cleanly (501) instead of failing to build.
type wireGuardKeySetter interface {
	SetWireGuardKey(ctx context.Context, id wire.NodeID, key wire.NodePublic, at time.Time) (bool, error)
}

func (s *Server) handleRotate(w http.ResponseWriter, r *http.Request) {
	n := nodeFrom(r)
	var req wire.RotateRequest
	if !decode(w, r, &req) {
		return
	}
	if req.WireGuardKey.IsZero() {
		writeError(w, http.StatusBadRequest, "wireguard_key required")
		return
	}
	setter, ok := s.cfg.Store.(wireGuardKeySetter)
	if !ok {
		writeError(w, http.StatusNotImplemented, "this coordinator's store cannot rotate WireGuard keys")
		return
	}
	ctx := s.auditedBy(r.Context(), audit.NodeActor(string(n.ID)), auditNodeRotate, audit.NodeActor(string(n.ID)), map[string]any{
		"old_key": n.WireGuardKey.String(), "new_key": req.WireGuardKey.String()})
	changed, err := setter.SetWireGuardKey(ctx, n.ID, req.WireGuardKey, s.cfg.Now())
	switch {
	case err == nil:
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusForbidden, fmt.Sprintf("node %s is not enrolled (deleted); enroll again", n.ID))
		return
	case errors.Is(err, store.ErrWireGuardKeyInUse):
		writeError(w, http.StatusConflict, "this WireGuard key already belongs to another node")
		return
	case errors.Is(err, store.ErrNodeKeyRevoked):
		writeError(w, http.StatusConflict, "this WireGuard key was revoked; generate another")
		return
	default:
		s.internalError(w, r, "rotating WireGuard key", err)
		return
	}
	if changed {
		s.cfg.Hub.Notify()
		s.log.Info("node rotated its WireGuard key", logNode, n.ID, "key", req.WireGuardKey.ShortString())
	}
	n.WireGuardKey = req.WireGuardKey
	writeJSON(w, http.StatusOK, wire.RotateResponse{Node: n.Wire()})
}
