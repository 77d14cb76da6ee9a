package flowlog

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/latchnet/latch/acl/filter"
	"github.com/latchnet/latch/overlay"
	"github.com/latchnet/latch/wire"
)

var (
	web = netip.MustParseAddr("100.64.0.2")
	api = netip.MustParseAddr("100.64.0.1")
	t0  = time.Date(2026, 11, 22, 13, 0, 0, 0, time.UTC)
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func count(src, dst netip.Addr, port uint16, v filter.Verdict, r filter.Reason, pk, by uint64) overlay.FlowCount {
	return overlay.FlowCount{Key: overlay.FlowKey{Src: src, Dst: dst, Proto: 6, DstPort: port, Verdict: v, Reason: r}, Packets: pk, Bytes: by}
}

func TestAggregatorSumsBatchesExactly(t *testing.T) {
	clk := &fakeClock{t: t0}
	a := New(Options{Now: clk.now})
	a.AddFlows(overlay.FlowIn, []overlay.FlowCount{
		count(web, api, 8080, filter.Accept, filter.AcceptRule, 1, 60),
		count(web, api, 22, filter.Drop, filter.DropNoRule, 2, 120),
	})
	clk.t = t0.Add(2 * time.Second)
	a.AddFlows(overlay.FlowIn, []overlay.FlowCount{count(web, api, 8080, filter.Accept, filter.AcceptRule, 3, 3000)})
	// The same key the other way is another summary.
	a.AddFlows(overlay.FlowOut, []overlay.FlowCount{count(web, api, 8080, filter.Accept, filter.AcceptRule, 1, 1)})

	got := a.Drain()
	want := []wire.FlowSummary{
		{Direction: "in", Src: web, Dst: api, Proto: wire.ProtoTCP, DstPort: 8080, Verdict: "accept", Reason: "accept-rule", Packets: 4, Bytes: 3060, First: t0, Last: t0.Add(2 * time.Second)},
		{Direction: "in", Src: web, Dst: api, Proto: wire.ProtoTCP, DstPort: 22, Verdict: "drop", Reason: filter.DropNoRule.String(), Packets: 2, Bytes: 120, First: t0, Last: t0},
		{Direction: "out", Src: web, Dst: api, Proto: wire.ProtoTCP, DstPort: 8080, Verdict: "accept", Reason: "accept-rule", Packets: 1, Bytes: 1, First: t0.Add(2 * time.Second), Last: t0.Add(2 * time.Second)},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("summaries (-want +got):\n%s", diff)
	}
	if got := a.Drain(); len(got) != 0 {
		t.Errorf("a second drain returned %d summaries, want none (a new interval)", len(got))
	}
}

func TestAggregatorBoundsKeysAndCountsTheRestAsOverflow(t *testing.T) {
	const max = 10
	a := New(Options{MaxKeys: max})
	var wantPackets, wantBytes uint64
	for i := range 1000 {
		v, r := filter.Accept, filter.AcceptRule
		if i%2 == 1 {
			v, r = filter.Drop, filter.DropNoRule
		}
		a.AddFlows(overlay.FlowIn, []overlay.FlowCount{count(web, api, uint16(i+1), v, r, 2, 100)})
		wantPackets += 2
		wantBytes += 100
	}
	got := a.Drain()
	if len(got) != max+2 {
		t.Fatalf("%d summaries, want %d keys and 2 overflow summaries", len(got), max)
	}
	var packets, bytes uint64
	overflow := map[string]uint64{}
	for _, s := range got {
		packets += s.Packets
		bytes += s.Bytes
		if s.Reason == ReasonOverflow {
			if s.Src.IsValid() || s.DstPort != 0 {
				t.Errorf("overflow summary carries a key: %+v", s)
			}
			overflow[s.Verdict] += s.Packets
		}
	}
	if packets != wantPackets || bytes != wantBytes {
		t.Errorf("totals %d packets %d bytes, want %d and %d: overflow must keep them exact", packets, bytes, wantPackets, wantBytes)
	}
	if overflow["accept"] != 990 || overflow["drop"] != 990 {
		t.Errorf("overflow %v, want 990 packets per verdict", overflow)
	}
	if n := len(a.spare.idx); n != 0 {
		t.Errorf("the drained table keeps %d keys", n)
	}
}

// TestAggregatorDoesNotAllocateInSteadyState: once an interval has seen
// its keys (and after a first drain, for new keys too), merging a batch
// allocates nothing.
func TestAggregatorDoesNotAllocateInSteadyState(t *testing.T) {
	a := New(Options{MaxKeys: 64})
	batch := make([]overlay.FlowCount, 0, 64)
	for i := range 64 {
		batch = append(batch, count(web, api, uint16(i+1), filter.Accept, filter.AcceptEstablished, 1, 1500))
	}
	over := []overlay.FlowCount{count(api, web, 9, filter.Drop, filter.DropNoRule, 1, 40)}
	// Warm both tables up.
	for range 2 {
		a.AddFlows(overlay.FlowIn, batch)
		a.Drain()
	}
	if n := testing.AllocsPerRun(200, func() { a.AddFlows(overlay.FlowIn, batch) }); n != 0 {
		t.Errorf("merging known keys: %v allocations per batch", n)
	}
	if n := testing.AllocsPerRun(200, func() { a.AddFlows(overlay.FlowIn, over) }); n != 0 {
		t.Errorf("merging beyond the cap: %v allocations per batch", n)
	}
	a.Drain()
	a.Drain()
	// New keys into a drained (reused) table.
	fresh := 0
	if n := testing.AllocsPerRun(10, func() {
		if fresh%2 == 0 {
			a.Drain()
		}
		fresh++
		a.AddFlows(overlay.FlowIn, batch)
	}); n > 1 { // Drain itself allocates its result once per interval
		t.Errorf("new keys into a reused table: %v allocations per batch", n)
	}
}

// TestAggregatorConcurrentBatches merges from several goroutines while
// draining; run with -race. No packet is lost or counted twice.
func TestAggregatorConcurrentBatches(t *testing.T) {
	a := New(Options{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := []overlay.FlowCount{count(web, api, uint16(g+1), filter.Accept, filter.AcceptRule, 1, 10)}
			for range 5000 {
				a.AddFlows(overlay.FlowIn, b)
			}
		}()
	}
	var total uint64
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for stop := false; !stop; {
		select {
		case <-done:
			stop = true
		default:
		}
		for _, s := range a.Drain() {
			total += s.Packets
		}
	}
	if total != 4*5000 {
		t.Errorf("%d packets drained, want %d", total, 4*5000)
	}
}

// BenchmarkAggregatorAddFlows measures one batch's merge (4 keys), the
// per-batch cost the data plane pays besides its per-packet counting.
func BenchmarkAggregatorAddFlows(b *testing.B) {
	a := New(Options{})
	batch := []overlay.FlowCount{
		count(web, api, 1, filter.Accept, filter.AcceptEstablished, 16, 16*1400),
		count(web, api, 2, filter.Accept, filter.AcceptEstablished, 16, 16*1400),
		count(web, api, 3, filter.Accept, filter.AcceptEstablished, 16, 16*1400),
		count(web, api, 4, filter.Accept, filter.AcceptEstablished, 16, 16*1400),
	}
	b.ReportAllocs()
	for b.Loop() {
		a.AddFlows(overlay.FlowIn, batch)
	}
}
