package filter

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/latchnet/latch/wire"
)

// bigRules returns 32 rules (one per destination port) sharing 1,277
// source prefixes, the shape of a mid-sized policy.
func bigRules() ([]wire.FilterRule, []netip.Prefix) {
	rng := rand.New(rand.NewPCG(5, 6))
	rules := make([]wire.FilterRule, 32)
	for i := range rules {
		rules[i] = wire.FilterRule{
			ID:        fmt.Sprint("svc-", i),
			Protocols: []wire.Proto{wire.ProtoTCP},
			Ports:     []wire.PortRange{{First: uint16(8000 + i), Last: uint16(8000 + i)}},
		}
	}
	var srcs []netip.Prefix
	for i := range 1277 {
		var p netip.Prefix
		if i%10 == 0 {
			p = netip.PrefixFrom(netip.AddrFrom4([4]byte{100, byte(64 + rng.IntN(64)), byte(rng.IntN(256)), 0}), 24)
		} else {
			p = netip.PrefixFrom(netip.AddrFrom4([4]byte{100, byte(64 + rng.IntN(64)), byte(rng.IntN(256)), byte(rng.IntN(256))}), 32)
		}
		srcs = append(srcs, p)
		rules[i%32].Sources = append(rules[i%32].Sources, p)
	}
	return rules, srcs
}

func BenchmarkRunIn(b *testing.B) {
	rules, srcs := bigRules()
	f := New(Options{})
	if err := f.SetRules(rules, self); err != nil {
		b.Fatal(err)
	}
	now := f.Now()

	b.Run("established", func(b *testing.B) {
		f.RunOutAt(tcp(me4, peer4, 40000, 443, tcpSYN).bytes(), now)
		pkt := tcp(peer4, me4, 443, 40000, tcpACK).bytes()
		b.ReportAllocs()
		for b.Loop() {
			if _, r := f.RunInAt(pkt, now); r != AcceptEstablished {
				b.Fatal(r)
			}
		}
	})
	b.Run("established-parallel", func(b *testing.B) {
		// One goroutine per peer, as wireguard-go delivers packets.
		b.ReportAllocs()
		var next atomic.Uint32
		b.RunParallel(func(pb *testing.PB) {
			n := next.Add(1)
			peer := fmt.Sprintf("100.64.1.%d", n%250)
			f.RunOutAt(tcp(me4, peer, 30000, 443, tcpSYN).bytes(), now)
			pkt := tcp(peer, me4, 443, 30000, tcpACK).bytes()
			for pb.Next() {
				f.RunInAt(pkt, now)
			}
		})
	})
	b.Run("established-inbound", func(b *testing.B) {
		// A flow a rule admitted: each packet also checks that the rule
		// set has not changed and the rule has not expired.
		src := rules[7].Sources[1].Addr().String()
		f.RunInAt(tcp(src, me4, 50000, 8007, tcpSYN).bytes(), now)
		f.RunOutAt(tcp(me4, src, 8007, 50000, tcpSYN|tcpACK).bytes(), now)
		pkt := tcp(src, me4, 50000, 8007, tcpACK).bytes()
		b.ReportAllocs()
		for b.Loop() {
			if _, r := f.RunInAt(pkt, now); r != AcceptEstablished {
				b.Fatal(r)
			}
		}
	})
	b.Run("new-flow-1277-prefixes", func(b *testing.B) {
		// Distinct 5-tuples into a table with room: what a new flow
		// costs. Every 8192 flows the table is emptied, off the clock,
		// as if they had timed out.
		syns := newFlowSYNs(rules)
		const perTable = 8192
		nf := New(Options{})
		if err := nf.SetRules(rules, self); err != nil {
			b.Fatal(err)
		}
		fresh := nf.flows.removeAll
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if i%perTable == perTable-1 {
				b.StopTimer()
				fresh()
				b.StartTimer()
			}
			pkt := syns[i%len(syns)]
			sport := uint16(i/len(syns)) + 1
			pkt[20], pkt[21] = byte(sport>>8), byte(sport)
			i++
			if _, r := nf.RunInAt(pkt, now); r != AcceptRule {
				b.Fatal(r)
			}
		}
	})
	b.Run("new-flow-1277-prefixes-full-table", func(b *testing.B) {
		// Distinct 5-tuples into a full table: every new flow evicts the
		// least recently seen one, whose entry is cold in the cache.
		syns := newFlowSYNs(rules)
		nf := New(Options{})
		if err := nf.SetRules(rules, self); err != nil {
			b.Fatal(err)
		}
		for i := range 2 * DefaultFlowCapacity {
			nf.RunOutAt(udp(me4, peer4, uint16(i), uint16(i>>16)+1).bytes(), now)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			pkt := syns[i%len(syns)]
			sport := uint16(i/len(syns)) + 1
			pkt[20], pkt[21] = byte(sport>>8), byte(sport)
			i++
			if _, r := nf.RunInAt(pkt, now); r != AcceptRule {
				b.Fatal(r)
			}
		}
	})
	// The two benchmarks above time a connection's first packet, the SYN,
	// which leaves only a half-open note (halfopen.go); the flow entry is
	// made when this node answers. These time both: each iteration is a
	// SYN in and the SYN-ACK out, distinct 5-tuples as above.
	handshake := func(b *testing.B, nf *Filter, reset func()) {
		syns := newFlowSYNs(rules)
		acks := make([][]byte, len(syns))
		for k, syn := range syns {
			src := netip.AddrFrom4([4]byte(syn[12:16]))
			acks[k] = tcp(me4, src.String(), uint16(syn[22])<<8|uint16(syn[23]), 0, tcpSYN|tcpACK).bytes()
		}
		const perTable = 8192
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if reset != nil && i%perTable == perTable-1 {
				b.StopTimer()
				reset()
				b.StartTimer()
			}
			k := i % len(syns)
			pkt, ack := syns[k], acks[k]
			sport := uint16(i/len(syns)) + 1
			pkt[20], pkt[21] = byte(sport>>8), byte(sport)
			ack[22], ack[23] = byte(sport>>8), byte(sport)
			i++
			if _, r := nf.RunInAt(pkt, now); r != AcceptRule {
				b.Fatal(r)
			}
			if _, r := nf.RunOutAt(ack, now); r != AcceptOutbound {
				b.Fatal(r)
			}
		}
	}
	b.Run("new-flow-1277-prefixes-handshake", func(b *testing.B) {
		nf := New(Options{})
		if err := nf.SetRules(rules, self); err != nil {
			b.Fatal(err)
		}
		handshake(b, nf, nf.flows.removeAll)
	})
	b.Run("new-flow-1277-prefixes-handshake-full-table", func(b *testing.B) {
		nf := New(Options{})
		if err := nf.SetRules(rules, self); err != nil {
			b.Fatal(err)
		}
		for i := range 2 * DefaultFlowCapacity {
			nf.RunOutAt(udp(me4, peer4, uint16(i), uint16(i>>16)+1).bytes(), now)
		}
		handshake(b, nf, nil)
	})
	b.Run("new-flow-1277-prefixes-single-source", func(b *testing.B) {
		// The first version of this benchmark, unchanged: one source
		// (from the last rule's set, so a linear match would walk far),
		// one port after another; the table fills after 16,384 of them
		// and from then on every new flow evicts one.
		src := rules[31].Sources[len(rules[31].Sources)-1].Addr().String()
		pkt := tcp(src, me4, 1, 8031, tcpSYN).bytes()
		var port uint16
		b.ReportAllocs()
		for b.Loop() {
			port++
			pkt[20], pkt[21] = byte(port>>8), byte(port)
			if _, r := f.RunInAt(pkt, now); r != AcceptRule && r != AcceptEstablished {
				b.Fatal(r)
			}
		}
	})
	b.Run("no-match", func(b *testing.B) {
		pkt := tcp("100.200.0.1", me4, 1, 8031, tcpSYN).bytes()
		_ = srcs
		b.ReportAllocs()
		for b.Loop() {
			if _, r := f.RunInAt(pkt, now); r != DropNoRule {
				b.Fatal(r)
			}
		}
	})
	b.Run("no-match-known-source", func(b *testing.B) {
		// A source some rule names, to a port none of its rules admits.
		src := rules[31].Sources[len(rules[31].Sources)-1].Addr().String()
		pkt := tcp(src, me4, 1, 8000, tcpSYN).bytes()
		b.ReportAllocs()
		for b.Loop() {
			if _, r := f.RunInAt(pkt, now); r != DropNoRule {
				b.Fatal(r)
			}
		}
	})
	b.Run("established-reading-clock", func(b *testing.B) {
		pkt := tcp(peer4, me4, 443, 40000, tcpACK).bytes()
		b.ReportAllocs()
		for b.Loop() {
			f.RunIn(pkt)
		}
	})
}

// newFlowSYNs returns 1,024 TCP SYNs, each from a source of one of
// bigRules' rules to that rule's port, spread over all 32 rules and their
// sources.
func newFlowSYNs(rules []wire.FilterRule) [][]byte {
	out := make([][]byte, 1024)
	for k := range out {
		r := rules[k%len(rules)]
		src := r.Sources[(k/len(rules))%len(r.Sources)].Addr()
		out[k] = tcp(src.String(), me4, 0, r.Ports[0].First, tcpSYN).bytes()
	}
	return out
}

// removeAll empties the table, as if every flow had timed out.
func (ft *flowTable) removeAll() {
	for i := range ft.shards {
		s := &ft.shards[i]
		s.mu.Lock()
		for s.head >= 0 {
			s.removeLocked(s.head)
		}
		s.mu.Unlock()
	}
}

func BenchmarkRunOut(b *testing.B) {
	f := New(Options{})
	now := f.Now()
	pkt := tcp(me4, peer4, 40000, 443, tcpSYN).bytes()
	f.RunOutAt(pkt, now)
	pkt = tcp(me4, peer4, 40000, 443, tcpACK).bytes()
	b.ReportAllocs()
	for b.Loop() {
		f.RunOutAt(pkt, now)
	}
}

func BenchmarkCompile1277Prefixes(b *testing.B) {
	rules, _ := bigRules()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := compile(rules, self); err != nil {
			b.Fatal(err)
		}
	}
}
