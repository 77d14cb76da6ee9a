package overlay

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/latchnet/latch/acl/filter"
	"github.com/latchnet/latch/wire"
)

// recordingSink keeps every count it is given, summed per direction and
// key, and how many times it was called.
type recordingSink struct {
	mu    sync.Mutex
	calls int
	got   map[FlowDirection]map[FlowKey]FlowCount
}

func newRecordingSink() *recordingSink {
	return &recordingSink{got: map[FlowDirection]map[FlowKey]FlowCount{FlowIn: {}, FlowOut: {}}}
}

func (s *recordingSink) AddFlows(dir FlowDirection, counts []FlowCount) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	seen := map[FlowKey]bool{}
	for _, c := range counts {
		if seen[c.Key] {
			panic(fmt.Sprintf("key %+v twice in one batch", c.Key))
		}
		seen[c.Key] = true
		old := s.got[dir][c.Key]
		old.Key = c.Key
		old.Packets += c.Packets
		old.Bytes += c.Bytes
		s.got[dir][c.Key] = old
	}
}

// nopSink drops everything without allocating.
type nopSink struct{ packets uint64 }

func (s *nopSink) AddFlows(_ FlowDirection, counts []FlowCount) {
	for _, c := range counts {
		s.packets += c.Packets
	}
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func newCountedFilterTUN(t testing.TB, native interface {
	BatchSize() int
}, sink FlowSink) *filterTUN {
	t.Helper()
	f := filter.New(filter.Options{})
	err := f.SetRules([]wire.FilterRule{{
		ID:        "allow-peer",
		Sources:   []netip.Prefix{pfx("100.64.0.2/32")},
		Protocols: []wire.Proto{wire.ProtoUDP},
		Ports:     []wire.PortRange{{First: 53, Last: 53}},
	}}, []netip.Prefix{pfx("100.64.0.1/32")})
	if err != nil {
		t.Fatal(err)
	}
	switch n := native.(type) {
	case *fakeTUN:
		return newFilterTUN(n, f, sink)
	case *nopTUN:
		return newFilterTUN(n, f, sink)
	}
	t.Fatalf("unknown native device %T", native)
	return nil
}

func TestFlowAccountingCountsEveryPacketOfABatchExactly(t *testing.T) {
	sink := newRecordingSink()
	native := newFakeTUN()
	ft := newCountedFilterTUN(t, native, sink)
	ok1 := udpPacket("100.64.0.2", "100.64.0.1", 1000, 53)
	ok2 := udpPacket("100.64.0.2", "100.64.0.1", 1001, 53) // same key: ports other than dst ignored
	bad := udpPacket("100.64.0.9", "100.64.0.1", 1000, 22)
	bufs := batch(writeOffset, ok1, bad, ok2, bad, bad)
	if _, err := ft.Write(bufs, writeOffset); err != nil {
		t.Fatal(err)
	}
	// Write an all-admitted batch too: it takes the other path.
	if _, err := ft.Write(batch(writeOffset, ok1), writeOffset); err != nil {
		t.Fatal(err)
	}
	native.toRead = [][]byte{udpPacket("100.64.0.1", "100.64.0.2", 5000, 53), udpPacket("100.64.0.1", "100.64.0.2", 5000, 53)[:25]}
	rbufs := batch(readOffset, make([]byte, 2000), make([]byte, 2000))
	if _, err := ft.Read(rbufs, make([]int, 2), readOffset); err != nil {
		t.Fatal(err)
	}

	l := uint64(len(ok1))
	want := map[FlowDirection]map[FlowKey]FlowCount{
		FlowIn:  {},
		FlowOut: {},
	}
	put := func(dir FlowDirection, k FlowKey, pk, by uint64) {
		want[dir][k] = FlowCount{Key: k, Packets: pk, Bytes: by}
	}
	// The first admitted packet starts the flow (accept-rule), the later
	// ones of the same 5-tuple are established; ok2 is a new source port.
	put(FlowIn, FlowKey{Src: addr("100.64.0.2"), Dst: addr("100.64.0.1"), Proto: 17, DstPort: 53, Verdict: filter.Accept, Reason: filter.AcceptRule}, 2, 2*l)
	put(FlowIn, FlowKey{Src: addr("100.64.0.2"), Dst: addr("100.64.0.1"), Proto: 17, DstPort: 53, Verdict: filter.Accept, Reason: filter.AcceptEstablished}, 1, l)
	put(FlowIn, FlowKey{Src: addr("100.64.0.9"), Dst: addr("100.64.0.1"), Proto: 17, DstPort: 22, Verdict: filter.Drop, Reason: filter.DropNoRule}, 3, 3*l)
	put(FlowOut, FlowKey{Src: addr("100.64.0.1"), Dst: addr("100.64.0.2"), Proto: 17, DstPort: 53, Verdict: filter.Accept, Reason: filter.AcceptOutbound}, 1, l)
	// A truncated UDP header: addresses and port still read, dropped as malformed.
	put(FlowOut, FlowKey{Src: addr("100.64.0.1"), Dst: addr("100.64.0.2"), Proto: 17, DstPort: 53, Verdict: filter.Drop, Reason: filter.DropMalformed}, 1, 25)
	if diff := cmp.Diff(want, sink.got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
	if sink.calls != 3 {
		t.Errorf("sink called %d times for 3 batches, want once per batch", sink.calls)
	}
}

func TestFlowAccountingOffCountsNothing(t *testing.T) {
	ft := newCountedFilterTUN(t, newFakeTUN(), nil)
	if _, err := ft.Write(batch(writeOffset, udpPacket("100.64.0.9", "100.64.0.1", 1, 22)), writeOffset); err != nil {
		t.Fatal(err)
	}
	if ft.outBatch != nil {
		t.Error("an outbound table exists without a sink")
	}
}

func TestFlowBatchKeysAndOverflowIntoASecondHandOver(t *testing.T) {
	sink := newRecordingSink()
	b := newFlowBatch()
	// More distinct keys than a batch holds: the batch hands over what it
	// has and goes on; nothing is lost.
	const n = batchKeys*2 + 7
	for i := range n {
		p := udpPacket("100.64.0.2", "100.64.0.1", 1, uint16(1000+i))
		b.add(p, filter.Drop, filter.DropNoRule, sink, FlowIn)
		b.add(p, filter.Drop, filter.DropNoRule, sink, FlowIn)
	}
	b.flush(sink, FlowIn)
	if got := len(sink.got[FlowIn]); got != n {
		t.Fatalf("%d keys, want %d", got, n)
	}
	for k, c := range sink.got[FlowIn] {
		if c.Packets != 2 || c.Bytes != 2*28 {
			t.Fatalf("%+v: %d packets %d bytes, want 2 and 56", k, c.Packets, c.Bytes)
		}
	}
	if sink.calls != 3 {
		t.Errorf("%d hand-overs, want 3", sink.calls)
	}
}

func TestFlowKeyOfPacketShapes(t *testing.T) {
	v6 := make([]byte, 48)
	v6[0] = 0x60
	v6[6] = 6 // TCP
	copy(v6[8:], addr("fd00::2").AsSlice())
	copy(v6[24:], addr("fd00::1").AsSlice())
	binary.BigEndian.PutUint16(v6[42:], 8080)
	frag := udpPacket("100.64.0.2", "100.64.0.1", 1, 53)
	binary.BigEndian.PutUint16(frag[6:], 185) // a later fragment: no ports
	icmp := udpPacket("100.64.0.2", "100.64.0.1", 1, 53)
	icmp[9] = 1
	for _, tc := range []struct {
		name string
		pkt  []byte
		want FlowKey
	}{
		{"ipv4 udp", udpPacket("100.64.0.2", "100.64.0.1", 1, 53), FlowKey{Src: addr("100.64.0.2"), Dst: addr("100.64.0.1"), Proto: 17, DstPort: 53}},
		{"ipv4 tcp", tcpPacket("100.64.0.2", "100.64.0.1", 1, 8080, 2), FlowKey{Src: addr("100.64.0.2"), Dst: addr("100.64.0.1"), Proto: 6, DstPort: 8080}},
		{"ipv6 tcp", v6, FlowKey{Src: addr("fd00::2"), Dst: addr("fd00::1"), Proto: 6, DstPort: 8080}},
		{"later fragment", frag, FlowKey{Src: addr("100.64.0.2"), Dst: addr("100.64.0.1"), Proto: 17}},
		{"icmp", icmp, FlowKey{Src: addr("100.64.0.2"), Dst: addr("100.64.0.1"), Proto: 1}},
		{"too short", []byte{0x45, 0, 0}, FlowKey{}},
		{"empty", nil, FlowKey{}},
		{"ipv6 header cut", v6[:39], FlowKey{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var k [5]uint64
			flowKeyWords(tc.pkt, filter.Drop, filter.DropNoRule, &k)
			got := unpackFlowKey(&k)
			tc.want.Verdict, tc.want.Reason = filter.Drop, filter.DropNoRule
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestFlowAccountingDoesNotAllocate holds the accounting path to zero
// allocations per batch (and so per packet), on both directions, with and
// without drops, with batches of several flows.
func TestFlowAccountingDoesNotAllocate(t *testing.T) {
	sink := &nopSink{}
	ft := newCountedFilterTUN(t, &nopTUN{}, sink)
	var pkts [][]byte
	for i := range 64 {
		pkts = append(pkts, udpPacket("100.64.0.2", "100.64.0.1", uint16(i%4), 53))
	}
	clean := batch(writeOffset, pkts...)
	mixed := batch(writeOffset, append(pkts[:32:32], udpPacket("100.64.0.9", "100.64.0.1", 1, 22), udpPacket("100.64.0.2", "100.64.0.1", 1, 53))...)
	many := make([][]byte, 0, 3*batchKeys)
	for i := range 3 * batchKeys {
		many = append(many, udpPacket("100.64.0.9", "100.64.0.1", 1, uint16(i)))
	}
	manyBufs := batch(writeOffset, many...)
	reads := batch(readOffset, make([]byte, 1500), make([]byte, 1500))
	sizes := make([]int, 2)
	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"write clean", func() { ft.Write(clean, writeOffset) }},
		{"write with drops", func() { ft.Write(mixed, writeOffset) }},
		{"write more keys than a table holds", func() { ft.Write(manyBufs, writeOffset) }},
		{"read", func() { ft.Read(reads, sizes, readOffset) }},
	} {
		if n := testing.AllocsPerRun(500, tc.fn); n != 0 {
			t.Errorf("%s: %v allocations per batch, want 0", tc.name, n)
		}
	}
	if sink.packets == 0 {
		t.Fatal("the sink saw no packets")
	}
}

// BenchmarkFlowAccounting measures the accounting alone, per packet, in
// 64-packet batches handed to a sink that only sums.
func BenchmarkFlowAccounting(b *testing.B) {
	for _, flows := range []int{1, 4, 64} {
		b.Run(fmt.Sprintf("flows=%d", flows), func(b *testing.B) {
			var pkts [][]byte
			for i := range 64 {
				pkts = append(pkts, tcpPacket("100.64.0.2", "100.64.0.1", 40000, uint16(8000+i%flows), 0x10))
			}
			sink := &nopSink{}
			fb := newFlowBatch()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; {
				for _, p := range pkts {
					fb.add(p, filter.Accept, filter.AcceptEstablished, sink, FlowIn)
				}
				fb.flush(sink, FlowIn)
				i += len(pkts)
			}
		})
	}
}

// BenchmarkFilterTUNWrite measures an established-flow batch through the
// wrapper, per packet, with and without accounting.
func BenchmarkFilterTUNWrite(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("accounting=%v", on), func(b *testing.B) {
			var sink FlowSink
			if on {
				sink = &nopSink{}
			}
			ft := newCountedFilterTUN(b, &nopTUN{}, sink)
			var pkts [][]byte
			for range 64 {
				pkts = append(pkts, udpPacket("100.64.0.2", "100.64.0.1", 1000, 53))
			}
			bufs := batch(writeOffset, pkts...)
			ft.Write(bufs, writeOffset) // open the flow
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += len(bufs) {
				ft.Write(bufs, writeOffset)
			}
		})
	}
}

// TestFlowAccountingFromManyPeers writes from several goroutines at once,
// as wireguard-go's per-peer receivers do (run with -race): every packet
// is counted once.
func TestFlowAccountingFromManyPeers(t *testing.T) {
	sink := newRecordingSink()
	ft := newCountedFilterTUN(t, newFakeTUN(), sink)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				bufs := batch(writeOffset,
					udpPacket("100.64.0.2", "100.64.0.1", uint16(1000+g), 53),
					udpPacket("100.64.0.9", "100.64.0.1", uint16(i), 22),
					udpPacket("100.64.0.2", "100.64.0.1", uint16(1000+g), 53))
				if _, err := ft.Write(bufs, writeOffset); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	var accepted, dropped uint64
	for k, c := range sink.got[FlowIn] {
		if k.Verdict == filter.Accept {
			accepted += c.Packets
		} else {
			dropped += c.Packets
		}
	}
	if accepted != 4*200*2 || dropped != 4*200 {
		t.Errorf("counted %d accepted and %d dropped, want %d and %d", accepted, dropped, 4*200*2, 4*200)
	}
}
