package store

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/latchnet/latch/wire"
)

var flowT0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func flowRec(reporter, src, dst wire.NodeID, verdict string, received time.Time, port uint16) wire.FlowRecord {
	return wire.FlowRecord{
		FlowSummary: wire.FlowSummary{
			Direction: "in",
			Src:       netip.MustParseAddr("100.64.0.2"),
			Dst:       netip.MustParseAddr("100.64.0.1"),
			SrcNode:   src,
			DstNode:   dst,
			Proto:     wire.ProtoTCP,
			DstPort:   port,
			Verdict:   verdict,
			Reason:    "accept-rule",
			Packets:   3,
			Bytes:     180,
			First:     received.Add(-5 * time.Second),
			Last:      received.Add(-time.Second),
		},
		Reporter:     reporter,
		ReporterName: string(reporter) + "-name",
		SrcName:      string(src) + "-name",
		DstName:      string(dst) + "-name",
		Received:     received,
	}
}

func ports(recs []wire.FlowRecord) []uint16 {
	out := []uint16{}
	for _, r := range recs {
		out = append(out, r.DstPort)
	}
	return out
}

func TestFlowsRoundTripNewestFirst(t *testing.T) {
	s, _ := openTest(t, Options{})
	ctx := context.Background()
	a := flowRec("api", "web", "api", wire.FlowAccept, flowT0, 8080)
	b := flowRec("api", "", "api", wire.FlowDrop, flowT0.Add(time.Second), 22)
	b.Src = netip.MustParseAddr("fd00::9") // unknown sender: address only
	b.SrcName = ""
	over := flowRec("web", "", "", wire.FlowAccept, flowT0.Add(2*time.Second), 0)
	over.Src, over.Dst, over.Reason, over.SrcName, over.DstName = netip.Addr{}, netip.Addr{}, "overflow", "", ""
	if err := s.InsertFlows(ctx, []wire.FlowRecord{a, b}); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertFlows(ctx, []wire.FlowRecord{over}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Flows(ctx, FlowFilter{})
	if err != nil {
		t.Fatal(err)
	}
	want := []wire.FlowRecord{over, b, a}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
		t.Errorf("flows (-want +got):\n%s", diff)
	}
}

func TestFlowFilters(t *testing.T) {
	s, _ := openTest(t, Options{})
	ctx := context.Background()
	recs := []wire.FlowRecord{
		flowRec("api", "web", "api", wire.FlowAccept, flowT0, 1),
		flowRec("api", "web", "api", wire.FlowDrop, flowT0.Add(1*time.Minute), 2),
		flowRec("db", "api", "db", wire.FlowAccept, flowT0.Add(2*time.Minute), 3),
		flowRec("web", "web", "cache", wire.FlowAccept, flowT0.Add(3*time.Minute), 4),
		flowRec("db", "", "db", wire.FlowDrop, flowT0.Add(4*time.Minute), 5),
	}
	if err := s.InsertFlows(ctx, recs); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		f    FlowFilter
		want []uint16
	}{
		{"all", FlowFilter{}, []uint16{5, 4, 3, 2, 1}},
		{"node as reporter or either end", FlowFilter{Node: "api"}, []uint16{3, 2, 1}},
		{"node as source only", FlowFilter{Node: "web"}, []uint16{4, 2, 1}},
		{"node as destination only", FlowFilter{Node: "cache"}, []uint16{4}},
		{"node by stored name", FlowFilter{NodeName: "db-name"}, []uint16{5, 3}},
		{"verdict", FlowFilter{Verdict: wire.FlowDrop}, []uint16{5, 2}},
		{"since", FlowFilter{Since: flowT0.Add(2 * time.Minute)}, []uint16{5, 4, 3}},
		{"limit", FlowFilter{Limit: 2}, []uint16{5, 4}},
		{"combined", FlowFilter{Node: "db", Verdict: wire.FlowAccept}, []uint16{3}},
		{"no match", FlowFilter{Node: "nobody"}, []uint16{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Flows(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, ports(got)); diff != "" {
				t.Errorf("ports (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPruneFlowsByAgeThenCount(t *testing.T) {
	s, _ := openTest(t, Options{})
	ctx := context.Background()
	var recs []wire.FlowRecord
	for i := range 20 {
		recs = append(recs, flowRec("api", "web", "api", wire.FlowAccept, flowT0.Add(time.Duration(i)*time.Minute), uint16(i+1)))
	}
	if err := s.InsertFlows(ctx, recs); err != nil {
		t.Fatal(err)
	}
	// Older than minute 5 goes: ports 1..5.
	n, err := s.PruneFlows(ctx, flowT0.Add(5*time.Minute), 0)
	if err != nil || n != 5 {
		t.Fatalf("pruned %d, %v; want 5", n, err)
	}
	// Then keep the newest 10: ports 6..10 go.
	n, err = s.PruneFlows(ctx, time.Time{}, 10)
	if err != nil || n != 5 {
		t.Fatalf("pruned %d, %v; want 5", n, err)
	}
	got, err := s.Flows(ctx, FlowFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]uint16{20, 19, 18, 17, 16, 15, 14, 13, 12, 11}, ports(got)); diff != "" {
		t.Errorf("kept (-want +got):\n%s", diff)
	}
	// Within both bounds: nothing goes.
	if n, err := s.PruneFlows(ctx, flowT0, 10); err != nil || n != 0 {
		t.Errorf("pruned %d, %v; want 0", n, err)
	}
	// New inserts continue after the pruned ids (newest first still holds).
	if err := s.InsertFlows(ctx, []wire.FlowRecord{flowRec("api", "web", "api", wire.FlowAccept, flowT0.Add(time.Hour), 99)}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Flows(ctx, FlowFilter{Limit: 1}); len(got) != 1 || got[0].DstPort != 99 {
		t.Errorf("newest after prune: %v", ports(got))
	}
}

func TestInsertFlowsIsAllOrNothing(t *testing.T) {
	s, _ := openTest(t, Options{})
	ctx := context.Background()
	good := flowRec("api", "web", "api", wire.FlowAccept, flowT0, 1)
	bad := flowRec("api", "web", "api", wire.FlowAccept, flowT0, 2)
	bad.Packets = 1 << 63
	if err := s.InsertFlows(ctx, []wire.FlowRecord{good, bad}); err == nil {
		t.Fatal("a report with an out-of-range counter was stored")
	}
	if got, _ := s.Flows(ctx, FlowFilter{}); len(got) != 0 {
		t.Errorf("%d records stored from a failed report, want 0", len(got))
	}
}
