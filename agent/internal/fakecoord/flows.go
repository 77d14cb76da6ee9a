package fakecoord

import (
	"encoding/json"
	"net/http"

	"github.com/latchnet/latch/wire"
)

// FlowReport is one flow report the fake accepted, with its reporter.
type FlowReport struct {
	Reporter wire.NodeID
	wire.FlowReport
}

// FlowReports returns every flow report the fake accepted, in order.
func (s *Server) FlowReports() []FlowReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]FlowReport(nil), s.flowReports...)
}

// FailFlows makes flow reports fail with status (0: accept them again).
func (s *Server) FailFlows(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flowStatus = status
}

// flows records a flow report, like the coordinator's wire.PathNodeFlows.
func (s *Server) flows(w http.ResponseWriter, r *http.Request) {
	var rep wire.FlowReport
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
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
	if s.flowStatus != 0 {
		writeErr(w, s.flowStatus, "flow reports refused")
		return
	}
	if len(rep.Flows) > wire.MaxFlowsPerReport {
		writeErr(w, http.StatusRequestEntityTooLarge, "too many summaries")
		return
	}
	s.flowReports = append(s.flowReports, FlowReport{Reporter: n.ID, FlowReport: rep})
	w.WriteHeader(http.StatusNoContent)
}
