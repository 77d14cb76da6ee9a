package filter

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/latchnet/latch/wire"
)

// batchRules are the rules the batch tests pick from.
var batchRules = []wire.FilterRule{
	{ID: "ssh", Sources: prefixes(peer4, peer6), Protocols: []wire.Proto{wire.ProtoTCP}, Ports: []wire.PortRange{{First: 20, Last: 30}}},
	{ID: "web", Sources: prefixes("100.64.0.0/24", "fd00:1::/64"), Protocols: []wire.Proto{wire.ProtoTCP}, Ports: []wire.PortRange{{First: 443, Last: 443}}},
	{ID: "dns", Sources: prefixes("100.64.0.0/10", "fd00::/8"), Protocols: []wire.Proto{wire.ProtoUDP}, Ports: []wire.PortRange{{First: 53, Last: 53}}},
	{ID: "ping", Sources: prefixes(peer4, peer6), Protocols: []wire.Proto{wire.ProtoICMP, wire.ProtoICMPv6}},
}

// randPacket returns a random packet between this node and a few peers,
// inbound or outbound, sometimes malformed.
func randPacket(rng *rand.Rand, inbound bool) []byte {
	v6 := rng.IntN(4) == 0
	me, peers := me4, []string{peer4, "100.64.0.3", "100.99.0.1"}
	if v6 {
		me, peers = me6, []string{peer6, "fd00:1::3", "fd00:2::1"}
	}
	remote := peers[rng.IntN(len(peers))]
	src, dst := remote, me
	if !inbound {
		src, dst = me, remote
	}
	lport := []uint16{22, 25, 53, 443, 8080}[rng.IntN(5)]
	rport := uint16(40000 + rng.IntN(4))
	sport, dport := rport, lport
	if !inbound {
		sport, dport = lport, rport
	}
	if rng.IntN(2) == 0 { // this node's side starts it
		sport, dport = dport, sport
	}
	var p pkt
	switch rng.IntN(8) {
	case 0, 1:
		p = udp(src, dst, sport, dport)
	case 2:
		p = echo(src, dst, rport, rng.IntN(2) == 0)
	default:
		flags := []uint8{tcpSYN, tcpSYN | tcpACK, tcpACK, tcpACK, tcpACK | tcpFIN, tcpRST, tcpRST | tcpACK}[rng.IntN(7)]
		p = tcp(src, dst, sport, dport, flags)
	}
	b := p.bytes()
	if rng.IntN(20) == 0 {
		b = b[:rng.IntN(len(b))] // truncated
	}
	return b
}

// TestBatchAgreesWithPerPacket runs the same random traffic, in random
// batches with rule changes and clock steps between them, through
// RunInBatch/RunOutBatch on one filter and packet by packet through
// RunInAt/RunOutAt on another (with the same hash seeds): every packet
// must get the same reason, and the counters must agree after every batch.
func TestBatchAgreesWithPerPacket(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint("seed-", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 42))
			clk := newFakeClock()
			// A small table, so that eviction is exercised too.
			opts := Options{Now: clk.Now, FlowCapacity: 64}
			bf, ref := New(opts), New(opts)
			ref.flows.seed, ref.flows.hi4 = bf.flows.seed, bf.flows.hi4
			setBoth := func() {
				var rs []wire.FilterRule
				for _, r := range batchRules {
					if rng.IntN(3) != 0 {
						rs = append(rs, r)
					}
				}
				for _, f := range []*Filter{bf, ref} {
					if err := f.SetRules(rs, self); err != nil {
						t.Fatal(err)
					}
				}
			}
			setBoth()
			const offset = 16
			bufs := make([][]byte, 64)
			sizes := make([]int, 64)
			reasons := make([]Reason, 64)
			for batch := range 300 {
				switch rng.IntN(10) {
				case 0:
					setBoth()
				case 1:
					clk.Advance(time.Duration(rng.IntN(200)) * time.Second)
				}
				inbound := rng.IntN(2) == 0
				n := 1 + rng.IntN(len(bufs))
				useSizes := !inbound || rng.IntN(2) == 0
				var b []byte
				for i := range n {
					// Runs of one flow's packets, as batches mostly are,
					// broken now and then by another packet of it.
					switch k := rng.IntN(10); {
					case i > 0 && k < 5:
						b = append([]byte(nil), b...) // the same again
					case i > 0 && k < 6 && len(b) >= 40 && b[9] == protoTCP:
						b = append([]byte(nil), b...)
						b[33] = []uint8{tcpACK | 0x08, tcpRST, tcpACK | tcpFIN, tcpSYN}[rng.IntN(4)]
					default:
						b = randPacket(rng, inbound)
					}
					bufs[i] = append(make([]byte, offset), b...)
					sizes[i] = len(b)
					if useSizes && rng.IntN(10) == 0 {
						sizes[i] = 0 // skipped
					}
					if useSizes {
						bufs[i] = append(bufs[i], 0xee, 0xee) // beyond the size: never read
					}
				}
				now := bf.Now()
				var sz []int
				if useSizes {
					sz = sizes[:n]
				}
				var accepted int
				if inbound {
					accepted = bf.RunInBatch(bufs[:n], offset, sz, reasons, now)
				} else {
					accepted = bf.RunOutBatch(bufs[:n], offset, sz, reasons, now)
				}
				wantAccepted := 0
				for i := range n {
					want := reasonNone
					if !useSizes || sizes[i] > 0 {
						p := bufs[i][offset : offset+sizes[i]]
						if inbound {
							_, want = ref.RunInAt(p, now)
						} else {
							_, want = ref.RunOutAt(p, now)
						}
					}
					if reasons[i] != want {
						t.Fatalf("batch %d (inbound %v) packet %d: batch says %v, per packet %v (%x)", batch, inbound, i, reasons[i], want, bufs[i][offset:])
					}
					if want.Verdict() == Accept {
						wantAccepted++
					}
				}
				if accepted != wantAccepted {
					t.Fatalf("batch %d: %d accepted, want %d", batch, accepted, wantAccepted)
				}
				got, want := bf.Counts(), ref.Counts()
				for _, r := range Reasons() {
					if got[r] != want[r] {
						t.Fatalf("after batch %d: count %v = %d, per packet %d", batch, r, got[r], want[r])
					}
				}
			}
		})
	}
}

// TestRuleChangeBetweenBatchesStopsFlowAtOnce: a flow a rule admitted
// passes in one batch; once the rule is gone, every packet of the next
// batch is dropped, with no batch of grace.
func TestRuleChangeBetweenBatchesStopsFlowAtOnce(t *testing.T) {
	clk := newFakeClock()
	f := newTestFilter(t, clk, allowPeer(peer4))
	syn := tcp(peer4, me4, 40000, 22, tcpSYN).bytes()
	synAck := tcp(me4, peer4, 22, 40000, tcpSYN|tcpACK).bytes()
	ack := tcp(peer4, me4, 40000, 22, tcpACK).bytes()
	reasons := make([]Reason, 8)
	now := f.Now()
	if n := f.RunInBatch([][]byte{syn}, 0, nil, reasons, now); n != 1 || reasons[0] != AcceptRule {
		t.Fatalf("SYN: %d accepted, %v", n, reasons[0])
	}
	if n := f.RunOutBatch([][]byte{synAck}, 0, nil, reasons, now); n != 1 || reasons[0] != AcceptOutbound {
		t.Fatalf("SYN-ACK: %d accepted, %v", n, reasons[0])
	}
	batch := [][]byte{ack, ack, ack, ack}
	if n := f.RunInBatch(batch, 0, nil, reasons, now); n != 4 || reasons[3] != AcceptEstablished {
		t.Fatalf("established batch: %d accepted, %v", n, reasons[:4])
	}
	if err := f.SetRules(nil, self); err != nil {
		t.Fatal(err)
	}
	if n := f.RunInBatch(batch, 0, nil, reasons, now); n != 0 {
		t.Fatalf("after the rule change: %d of 4 accepted (%v)", n, reasons[:4])
	}
	for i, r := range reasons[:4] {
		if r != DropRevoked {
			t.Errorf("packet %d after the rule change: %v, want %v", i, r, DropRevoked)
		}
	}
	if got := f.Count(DropRevoked); got != 4 {
		t.Errorf("DropRevoked counted %d times, want 4", got)
	}
}

// TestBatchDoesNotAllocate: a batch of every kind of packet costs no
// allocation.
func TestBatchDoesNotAllocate(t *testing.T) {
	clk := newFakeClock()
	f := newTestFilter(t, clk, allowPeer(peer4, peer6))
	now := f.Now()
	f.RunOutAt(tcp(me4, peer4, 40000, 443, tcpSYN).bytes(), now)
	f.RunOutAt(tcp(me6, peer6, 40000, 443, tcpSYN).bytes(), now)
	var port uint16 = 1
	in := [][]byte{
		tcp(peer4, me4, 443, 40000, tcpACK).bytes(),
		tcp(peer6, me6, 443, 40000, tcpACK).bytes(),
		tcp(peer4, me4, 1, 22, tcpSYN).bytes(), // new flow, port changed below
		tcp("100.99.0.1", me4, 1, 22, tcpSYN).bytes(),
		echo(peer4, me4, 7, false).bytes(),
		{0x45, 0},
	}
	out := [][]byte{
		tcp(me4, peer4, 40000, 443, tcpACK).bytes(),
		udp(me4, peer4, 5000, 53).bytes(),
		echo(me6, peer6, 7, false).bytes(),
	}
	sizes := []int{len(out[0]), 0, len(out[2])}
	reasons := make([]Reason, len(in))
	allocs := testing.AllocsPerRun(200, func() {
		port++
		in[2][20], in[2][21] = byte(port>>8), byte(port)
		f.RunInBatch(in, 0, nil, reasons, now)
		f.RunOutBatch(out, 0, sizes, reasons, now)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per batch, want 0", allocs)
	}
}

// FuzzBatchAgrees holds RunInBatch and RunOutBatch to RunInAt and RunOutAt
// for any packet, run as a batch of it, its mirror and it again.
func FuzzBatchAgrees(f *testing.F) {
	for _, p := range []pkt{
		tcp(me4, peer4, 40000, 443, tcpSYN), tcp(peer4, me4, 1000, 22, tcpSYN), udp(peer4, me4, 5000, 53),
		tcp(me6, peer6, 40000, 443, tcpSYN), echo(me4, peer4, 1, false),
	} {
		f.Add(p.bytes(), uint8(0))
	}
	clk := newFakeClock()
	bf, ref := New(Options{Now: clk.Now, FlowCapacity: 256}), New(Options{Now: clk.Now, FlowCapacity: 256})
	ref.flows.seed, ref.flows.hi4 = bf.flows.seed, bf.flows.hi4
	for _, flt := range []*Filter{bf, ref} {
		if err := flt.SetRules(batchRules, self); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte, advance uint8) {
		clk.Advance(time.Duration(advance) * 100 * time.Microsecond)
		now := bf.Now()
		batch := [][]byte{b, mirror(b), b}
		reasons := make([]Reason, len(batch))
		for _, inbound := range []bool{true, false} {
			if inbound {
				bf.RunInBatch(batch, 0, nil, reasons, now)
			} else {
				bf.RunOutBatch(batch, 0, nil, reasons, now)
			}
			for i, p := range batch {
				var want Reason
				if inbound {
					_, want = ref.RunInAt(p, now)
				} else {
					_, want = ref.RunOutAt(p, now)
				}
				if reasons[i] != want {
					t.Fatalf("inbound %v packet %d: batch %v, per packet %v (%x)", inbound, i, reasons[i], want, p)
				}
			}
		}
	})
}

// TestBatchRunNeverOutlivesItsEntry: in a one-entry table, a packet of a
// new flow between two packets of one flow in a batch evicts that flow and
// takes its entry; the flow's next packet must be judged as of a flow the
// table no longer holds, not pass on the entry's new flow (what the batch
// loop learnt from the first packet is not reused).
func TestBatchRunNeverOutlivesItsEntry(t *testing.T) {
	dns := wire.FilterRule{ID: "dns", Sources: prefixes(peer4), Protocols: []wire.Proto{wire.ProtoUDP}, Ports: []wire.PortRange{{First: 53, Last: 53}}}
	for _, inbound := range []bool{true, false} {
		t.Run(fmt.Sprint("inbound=", inbound), func(t *testing.T) {
			clk := newFakeClock()
			f := New(Options{Now: clk.Now, FlowCapacity: 1})
			if err := f.SetRules([]wire.FilterRule{dns}, self); err != nil {
				t.Fatal(err)
			}
			now := f.Now()
			f.RunOutAt(tcp(me4, peer4, 40000, 443, tcpSYN).bytes(), now)
			var run, other []byte
			var want []Reason
			if inbound {
				run = tcp(peer4, me4, 443, 40000, tcpACK).bytes()
				other = udp(peer4, me4, 5000, 53).bytes()
				want = []Reason{AcceptEstablished, AcceptRule, DropNoRule}
			} else {
				run = tcp(me4, peer4, 40000, 443, tcpACK).bytes()
				other = udp(me4, peer4, 5000, 53).bytes()
				want = []Reason{AcceptOutbound, AcceptOutbound, AcceptOutboundUntracked}
			}
			if inbound {
				// The reply shows the flow answered, so the run's first
				// packet passes on the fast path.
				f.RunInAt(tcp(peer4, me4, 443, 40000, tcpSYN|tcpACK).bytes(), now)
			}
			reasons := make([]Reason, 3)
			batch := [][]byte{run, other, run}
			if inbound {
				f.RunInBatch(batch, 0, nil, reasons, now)
			} else {
				f.RunOutBatch(batch, 0, nil, reasons, now)
			}
			for i := range want {
				if reasons[i] != want[i] {
					t.Errorf("packet %d: %v, want %v", i, reasons[i], want[i])
				}
			}
		})
	}
}
