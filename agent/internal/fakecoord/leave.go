package fakecoord

import (
	"encoding/json"
	"net/http"

	"github.com/latchnet/latch/wire"
)

// Leaves returns the reasons of every leave the fake accepted, in order.
func (s *Server) Leaves() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.leaves...)
}

// SetLeaveBlackhole makes leave calls hang until the client gives up
// (true), as if the coordinator were unreachable.
func (s *Server) SetLeaveBlackhole(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leaveBlackhole = on
}

// leave deletes an ephemeral node, like the coordinator's wire.PathLeave.
func (s *Server) leave(w http.ResponseWriter, r *http.Request) {
	var req wire.LeaveRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, wire.MaxRequestBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, "malformed request")
		return
	}
	s.mu.Lock()
	if s.leaveBlackhole {
		s.mu.Unlock()
		<-r.Context().Done()
		return
	}
	defer s.mu.Unlock()
	n, code, msg := s.authNodeLocked(r)
	if n == nil {
		writeErr(w, code, msg)
		return
	}
	if !n.Ephemeral {
		writeErr(w, http.StatusConflict, "node is not ephemeral")
		return
	}
	n.Deleted = true
	s.leaves = append(s.leaves, req.Reason)
	s.changedLocked()
	w.WriteHeader(http.StatusNoContent)
}
