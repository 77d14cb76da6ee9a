package agent

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/latchnet/latch/wire"
)

func TestBoundFlowsMergesTheRestIntoOverflowKeepingTotals(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	var flows []wire.FlowSummary
	var packets, bytes uint64
	for i := range 50 {
		v := wire.FlowAccept
		if i%3 == 0 {
			v = wire.FlowDrop
		}
		f := wire.FlowSummary{Direction: []string{"in", "out"}[i%2], Verdict: v, Reason: "r", DstPort: uint16(i),
			Packets: uint64(i + 1), Bytes: uint64(100 * (i + 1)), First: t0.Add(time.Duration(i) * time.Second), Last: t0.Add(time.Duration(i+1) * time.Second)}
		flows = append(flows, f)
		packets += f.Packets
		bytes += f.Bytes
	}
	for _, max := range []int{50, 60, 20, 10} {
		t.Run(fmt.Sprint(max), func(t *testing.T) {
			got := boundFlows(append([]wire.FlowSummary(nil), flows...), max)
			if len(got) > max {
				t.Fatalf("%d summaries, want at most %d", len(got), max)
			}
			var p, b uint64
			for _, f := range got {
				p += f.Packets
				b += f.Bytes
			}
			if p != packets || b != bytes {
				t.Errorf("totals %d/%d, want %d/%d", p, b, packets, bytes)
			}
			if max < len(flows) {
				if got[max-5].DstPort != uint16(max-5) || got[max-4].Reason != "overflow" {
					t.Errorf("the first %d keys must be kept, then overflow: %+v", max-4, got[max-4])
				}
			}
		})
	}
}

func TestNameFlowsNamesOnlyThisNodeAtItsOwnEnd(t *testing.T) {
	self := wire.Node{ID: "self", Addresses: []netip.Prefix{netip.MustParsePrefix("100.64.0.1/32"), netip.MustParsePrefix("fd00::1/128")}}
	peer := wire.Node{ID: "peer", Addresses: []netip.Prefix{netip.MustParsePrefix("100.64.0.2/32"), netip.MustParsePrefix("fd00::2/128")}}
	other := wire.Node{ID: "other", Addresses: []netip.Prefix{netip.MustParsePrefix("100.64.0.3/32")}}
	nm := &wire.Netmap{Self: self, Peers: []wire.Peer{{Node: peer}, {Node: other}}}
	a := netip.MustParseAddr
	flows := []wire.FlowSummary{
		{Direction: "in", Src: a("100.64.0.2"), Dst: a("100.64.0.1")},
		{Direction: "in", Src: a("fd00::2"), Dst: a("fd00::1")},
		{Direction: "in", Src: a("100.64.9.9"), Dst: a("100.64.0.1")},
		{Direction: "in", Src: a("100.64.0.2"), Dst: a("100.64.0.3")}, // not for this node
		{Direction: "out", Src: a("100.64.0.1"), Dst: a("100.64.0.2")},
		{Direction: "out", Src: a("100.64.0.3"), Dst: a("100.64.0.2")}, // not from this node
	}
	nameFlows(flows, nm)
	want := [][2]wire.NodeID{{"peer", "self"}, {"peer", "self"}, {"", "self"}, {"peer", ""}, {"self", "peer"}, {"", "peer"}}
	for i, f := range flows {
		if got := [2]wire.NodeID{f.SrcNode, f.DstNode}; got != want[i] {
			t.Errorf("flow %d %s %v -> %v: named %v, want %v", i, f.Direction, f.Src, f.Dst, got, want[i])
		}
	}
}
