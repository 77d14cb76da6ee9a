package filter

import (
	"fmt"
	"sync/atomic"
	"testing"
)

// benchBatch is the size of wireguard-go's batches.
const benchBatch = 128

// reportPerPacket reports the time per packet of a benchmark whose
// iterations each ran one batch of benchBatch packets.
func reportPerPacket(b *testing.B, batches int) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(batches*benchBatch), "ns/pkt")
}

// BenchmarkRunInBatch times RunInBatch over batches of 128 packets, for
// the cases and with the rule set of BenchmarkRunIn; ns/pkt is the figure
// to compare with BenchmarkRunIn's ns/op.
func BenchmarkRunInBatch(b *testing.B) {
	rules, _ := bigRules()
	f := New(Options{})
	if err := f.SetRules(rules, self); err != nil {
		b.Fatal(err)
	}
	now := f.Now()
	reasons := make([]Reason, benchBatch)
	same := func(pkt []byte) [][]byte {
		bufs := make([][]byte, benchBatch)
		for i := range bufs {
			bufs[i] = pkt
		}
		return bufs
	}
	run := func(b *testing.B, f *Filter, bufs [][]byte, want Reason, each func(n int)) {
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			if each != nil {
				each(n)
			}
			f.RunInBatch(bufs, 0, nil, reasons, now)
			n++
			if reasons[benchBatch-1] != want {
				b.Fatal(reasons[benchBatch-1])
			}
		}
		reportPerPacket(b, n)
	}

	b.Run("established", func(b *testing.B) {
		f.RunOutAt(tcp(me4, peer4, 40000, 443, tcpSYN).bytes(), now)
		run(b, f, same(tcp(peer4, me4, 443, 40000, tcpACK).bytes()), AcceptEstablished, nil)
	})
	b.Run("established-parallel", func(b *testing.B) {
		// One goroutine per peer, as wireguard-go delivers packets; each
		// iteration is one batch of one goroutine.
		b.ReportAllocs()
		var next atomic.Uint32
		var batches atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			n := next.Add(1)
			peer := fmt.Sprintf("100.64.1.%d", n%250)
			f.RunOutAt(tcp(me4, peer, 30000, 443, tcpSYN).bytes(), now)
			bufs := same(tcp(peer, me4, 443, 30000, tcpACK).bytes())
			rs := make([]Reason, benchBatch)
			k := 0
			for pb.Next() {
				f.RunInBatch(bufs, 0, nil, rs, now)
				k++
			}
			batches.Add(int64(k))
		})
		reportPerPacket(b, int(batches.Load()))
	})
	b.Run("established-8-flows-interleaved", func(b *testing.B) {
		// Eight flows, packets taking turns: no two neighbours are of one
		// flow (each touches its own entry).
		bufs := make([][]byte, benchBatch)
		for k := range 8 {
			f.RunOutAt(tcp(me4, peer4, uint16(41000+k), 443, tcpSYN).bytes(), now)
		}
		for k := range bufs {
			bufs[k] = tcp(peer4, me4, 443, uint16(41000+k%8), tcpACK).bytes()
		}
		run(b, f, bufs, AcceptEstablished, nil)
	})
	b.Run("established-inbound", func(b *testing.B) {
		src := rules[7].Sources[1].Addr().String()
		f.RunInAt(tcp(src, me4, 50000, 8007, tcpSYN).bytes(), now)
		f.RunOutAt(tcp(me4, src, 8007, 50000, tcpSYN|tcpACK).bytes(), now)
		run(b, f, same(tcp(src, me4, 50000, 8007, tcpACK).bytes()), AcceptEstablished, nil)
	})
	b.Run("new-flow-1277-prefixes", func(b *testing.B) {
		// As BenchmarkRunIn's: distinct 5-tuples into a table with room,
		// emptied off the clock every 8,192 flows (64 batches).
		syns := newFlowSYNs(rules)
		nf := New(Options{})
		if err := nf.SetRules(rules, self); err != nil {
			b.Fatal(err)
		}
		bufs := make([][]byte, benchBatch)
		const perTable = 8192 / benchBatch
		i := 0
		run(b, nf, bufs, AcceptRule, func(n int) {
			b.StopTimer()
			if n%perTable == perTable-1 {
				nf.flows.removeAll()
			}
			// Each batch takes the next 128 SYNs, each made distinct by
			// its source port as in BenchmarkRunIn (a batch holds 128 of
			// the 1,024, so none twice).
			for k := range bufs {
				pkt := syns[i%len(syns)]
				sport := uint16(i/len(syns)) + 1
				pkt[20], pkt[21] = byte(sport>>8), byte(sport)
				bufs[k] = pkt
				i++
			}
			b.StartTimer()
		})
	})
	b.Run("no-match", func(b *testing.B) {
		run(b, f, same(tcp("100.200.0.1", me4, 1, 8031, tcpSYN).bytes()), DropNoRule, nil)
	})
	b.Run("no-match-known-source", func(b *testing.B) {
		src := rules[31].Sources[len(rules[31].Sources)-1].Addr().String()
		run(b, f, same(tcp(src, me4, 1, 8000, tcpSYN).bytes()), DropNoRule, nil)
	})
}

// BenchmarkRunOutBatch is BenchmarkRunOut in batches of 128.
func BenchmarkRunOutBatch(b *testing.B) {
	f := New(Options{})
	now := f.Now()
	f.RunOutAt(tcp(me4, peer4, 40000, 443, tcpSYN).bytes(), now)
	pkt := tcp(me4, peer4, 40000, 443, tcpACK).bytes()
	bufs := make([][]byte, benchBatch)
	for i := range bufs {
		bufs[i] = pkt
	}
	reasons := make([]Reason, benchBatch)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		f.RunOutBatch(bufs, 0, nil, reasons, now)
		n++
	}
	reportPerPacket(b, n)
}
