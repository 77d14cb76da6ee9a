package agent

import (
	"context"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/latchnet/latch/agent/flowlog"
	"github.com/latchnet/latch/wire"
)

// Flow logs: the data plane counts packets per flow into the reporter's
// aggregator (flowlog), and the session's flowLoop sends what an interval
// gathered to the coordinator. A report that fails is dropped, never
// retried: flow logs are a bounded best effort and must not pile up while
// the coordinator is away.

// flowReporter is the agent's flow log state.
type flowReporter struct {
	agg      *flowlog.Aggregator
	interval time.Duration

	// Counters, for logs and tests.
	sent    atomic.Uint64 // summaries the coordinator accepted
	dropped atomic.Uint64 // summaries lost to failed reports
}

// newFlowReporter returns nil when cfg turns flow logs off.
func newFlowReporter(cfg Config) *flowReporter {
	if cfg.FlowInterval <= 0 {
		return nil
	}
	return &flowReporter{
		agg:      flowlog.New(flowlog.Options{MaxKeys: cfg.FlowMaxKeys, Now: cfg.Now}),
		interval: cfg.FlowInterval,
	}
}

// flowLoop reports flow summaries every interval until the session ends.
func (s *session) flowLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.a.flows.interval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			s.reportFlows()
		}
	}
}

// reportFlows drains the interval's summaries, names the identities
// behind their addresses and sends them in one report.
func (s *session) reportFlows() {
	a, fr := s.a, s.a.flows
	flows := fr.agg.Drain()
	if len(flows) == 0 || a.isRefused(s) {
		return
	}
	a.mu.Lock()
	nm := a.netmap
	a.mu.Unlock()
	nameFlows(flows, nm)
	flows = boundFlows(flows, wire.MaxFlowsPerReport)

	// One interval's worth of patience: the next interval has its own
	// report.
	timeout := min(max(fr.interval, 2*time.Second), 30*time.Second)
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	if err := s.client.ReportFlows(ctx, wire.FlowReport{Flows: flows}); err != nil {
		n := fr.dropped.Add(uint64(len(flows)))
		a.log.Debug("reporting flows failed; dropping this interval's summaries", logErr, err, "summaries", len(flows), "dropped_total", n)
		return
	}
	fr.sent.Add(uint64(len(flows)))
}

// nameFlows sets SrcNode and DstNode from nm: this node's own addresses
// and its peers'. Addresses nobody in nm holds (a drop from an unknown
// source) keep the address alone.
func nameFlows(flows []wire.FlowSummary, nm *wire.Netmap) {
	if nm == nil {
		return
	}
	ids := make(map[netip.Addr]wire.NodeID, 2+2*len(nm.Peers))
	add := func(n *wire.Node) {
		for _, p := range n.Addresses {
			if p.IsSingleIP() {
				ids[p.Addr()] = n.ID
			}
		}
	}
	add(&nm.Self)
	for i := range nm.Peers {
		add(&nm.Peers[i].Node)
	}
	self := nm.Self.ID
	for i := range flows {
		f := &flows[i]
		f.SrcNode = ids[f.Src]
		f.DstNode = ids[f.Dst]
		// This node's own end is itself or nobody: a packet that arrived
		// for another node's address (or left with one) names no one
		// there, as the coordinator requires.
		switch {
		case f.Direction == "in" && f.DstNode != self:
			f.DstNode = ""
		case f.Direction == "out" && f.SrcNode != self:
			f.SrcNode = ""
		}
	}
}

// boundFlows fits flows into max summaries: beyond max-4 keys, the rest
// are merged into the overflow summaries (one per direction and verdict),
// so the report's totals stay exact.
func boundFlows(flows []wire.FlowSummary, max int) []wire.FlowSummary {
	if len(flows) <= max {
		return flows
	}
	keep, rest := flows[:max-4:max-4], flows[max-4:]
	over := map[[2]string]int{} // direction, verdict -> index in keep
	for _, f := range rest {
		k := [2]string{f.Direction, f.Verdict}
		i, ok := over[k]
		if !ok {
			keep = append(keep, wire.FlowSummary{Direction: f.Direction, Verdict: f.Verdict, Reason: flowlog.ReasonOverflow, First: f.First, Last: f.Last})
			i = len(keep) - 1
			over[k] = i
		}
		o := &keep[i]
		o.Packets += f.Packets
		o.Bytes += f.Bytes
		if f.First.Before(o.First) {
			o.First = f.First
		}
		if f.Last.After(o.Last) {
			o.Last = f.Last
		}
	}
	return keep
}
