package fakecoord

import (
	"encoding/json"
	"net/http"

	"github.com/latchnet/latch/wire"
)

// RotateFault chooses how the fake answers a rotation.
type RotateFault int

const (
	// RotateOK records the key and answers it.
	RotateOK RotateFault = iota
	// RotateLoseAnswer records the key and then answers 500, as if the
	// answer were lost on its way back.
	RotateLoseAnswer
	// RotateUnavailable records nothing and answers 503.
	RotateUnavailable
)

// SetRotateFault sets how the following rotations are answered.
func (s *Server) SetRotateFault(f RotateFault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rotateFault = f
}

// Rotations returns every key a rotation asked for, in order, refused ones
// included.
func (s *Server) Rotations() []wire.NodePublic {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]wire.NodePublic(nil), s.rotations...)
}

// NodeKey returns the WireGuard key the fake records for id.
func (s *Server) NodeKey(id wire.NodeID) wire.NodePublic {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.nodes[id]; n != nil {
		return n.Key
	}
	return wire.NodePublic{}
}

func (s *Server) rotate(w http.ResponseWriter, r *http.Request) {
	var req wire.RotateRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, wire.MaxRequestBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
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
	s.rotations = append(s.rotations, req.WireGuardKey)
	if req.WireGuardKey.IsZero() {
		writeErr(w, http.StatusBadRequest, "wireguard_key required")
		return
	}
	if s.rotateFault == RotateUnavailable {
		writeErr(w, http.StatusServiceUnavailable, "unavailable")
		return
	}
	for _, o := range s.nodes {
		if o != n && o.Key == req.WireGuardKey {
			writeErr(w, http.StatusConflict, "this WireGuard key already belongs to another node")
			return
		}
	}
	if n.Key != req.WireGuardKey {
		n.Key = req.WireGuardKey
		s.changedLocked()
	}
	if s.rotateFault == RotateLoseAnswer {
		writeErr(w, http.StatusInternalServerError, "answer lost")
		return
	}
	writeJSON(w, wire.RotateResponse{Node: n.Node})
}

// AddPeerWithKey adds a node holding WireGuard key key.
func (s *Server) AddPeerWithKey(t interface{ Helper() }, name string, key wire.NodePublic) wire.Node {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.addNodeLocked(name, key)
	s.changedLocked()
	return n.Node
}
