package agent_test

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/acl/filter"
	"github.com/latchnet/latch/agent"
	"github.com/latchnet/latch/agent/internal/fakecoord"
	"github.com/latchnet/latch/overlay"
	"github.com/latchnet/latch/wire"
)

// flowsOf returns every summary the fake received, in order.
func flowsOf(s *fakecoord.Server) []wire.FlowSummary {
	var out []wire.FlowSummary
	for _, r := range s.FlowReports() {
		out = append(out, r.Flows...)
	}
	return out
}

func TestFlowReportsNameIdentitiesFromTheNetmap(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{AutoNetmap: true})
	db := s.AddPeer("db-1", "198.18.0.3:51820")
	h := start(t, t.TempDir(), func(c *agent.Config) { c.FlowInterval = 20 * time.Millisecond })
	resp := h.enroll(s)
	sink := h.engine().Options.Flows
	if sink == nil {
		t.Fatal("the engine got no flow sink with flow logs on")
	}
	self := resp.Addresses[0].Addr()
	peer := db.Addresses[0].Addr()
	stranger := netip.MustParseAddr("100.64.77.7")
	sink.AddFlows(overlay.FlowIn, []overlay.FlowCount{
		{Key: overlay.FlowKey{Src: peer, Dst: self, Proto: 6, DstPort: 8080, Verdict: filter.Accept, Reason: filter.AcceptRule}, Packets: 5, Bytes: 500},
		{Key: overlay.FlowKey{Src: stranger, Dst: self, Proto: 6, DstPort: 22, Verdict: filter.Drop, Reason: filter.DropNoRule}, Packets: 2, Bytes: 120},
	})
	sink.AddFlows(overlay.FlowOut, []overlay.FlowCount{
		{Key: overlay.FlowKey{Src: self, Dst: peer, Proto: 17, DstPort: 53, Verdict: filter.Accept, Reason: filter.AcceptOutbound}, Packets: 1, Bytes: 80},
	})
	waitFor(t, "a flow report with all three summaries", func() bool { return len(flowsOf(s)) >= 3 })
	reps := s.FlowReports()
	if reps[0].Reporter != resp.NodeID {
		t.Errorf("reporter %s, want %s", reps[0].Reporter, resp.NodeID)
	}
	got := map[uint16]wire.FlowSummary{}
	for _, f := range flowsOf(s) {
		got[f.DstPort] = f
	}
	if f := got[8080]; f.Direction != "in" || f.SrcNode != db.ID || f.DstNode != resp.NodeID || f.Verdict != wire.FlowAccept || f.Packets != 5 || f.Bytes != 500 || f.Reason != "accept-rule" {
		t.Errorf("peer's inbound flow: %+v", f)
	}
	if f := got[22]; f.SrcNode != "" || f.Src != stranger || f.DstNode != resp.NodeID || f.Verdict != wire.FlowDrop {
		t.Errorf("a drop from an unknown source must keep the address only: %+v", f)
	}
	if f := got[53]; f.Direction != "out" || f.SrcNode != resp.NodeID || f.DstNode != db.ID {
		t.Errorf("outbound flow: %+v", f)
	}
}

// TestFailedFlowReportsAreDroppedNotRetried: a refused report's summaries
// are gone; the next interval reports only its own.
func TestFailedFlowReportsAreDroppedNotRetried(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{AutoNetmap: true})
	h := start(t, t.TempDir(), func(c *agent.Config) { c.FlowInterval = 20 * time.Millisecond })
	resp := h.enroll(s)
	sink := h.engine().Options.Flows
	self := resp.Addresses[0].Addr()
	count := func(port uint16) []overlay.FlowCount {
		return []overlay.FlowCount{{Key: overlay.FlowKey{Src: self, Dst: self, Proto: 6, DstPort: port, Verdict: filter.Accept, Reason: filter.AcceptRule}, Packets: 1, Bytes: 1}}
	}
	s.FailFlows(http.StatusServiceUnavailable)
	sink.AddFlows(overlay.FlowIn, count(1))
	waitFor(t, "a failed report in the log", func() bool { return strings.Contains(h.logs.String(), "reporting flows failed") })
	s.FailFlows(0)
	sink.AddFlows(overlay.FlowIn, count(2))
	waitFor(t, "the next report", func() bool { return len(flowsOf(s)) > 0 })
	// Give a retry every chance to show up: several more intervals.
	sink.AddFlows(overlay.FlowIn, count(3))
	waitFor(t, "a later report", func() bool { return len(flowsOf(s)) > 1 })
	for _, f := range flowsOf(s) {
		if f.DstPort == 1 {
			t.Fatalf("a refused interval's summary was sent again: %+v", f)
		}
	}
}

func TestFlowLogsOffGiveTheEngineNoSink(t *testing.T) {
	s := fakecoord.New(t, fakecoord.Options{AutoNetmap: true})
	h := start(t, t.TempDir(), nil)
	h.enroll(s)
	if h.engine().Options.Flows != nil {
		t.Error("flow logs are off but the engine got a sink")
	}
}
