package overlay

import (
	"encoding/binary"
	"net/netip"
	"sync"

	"github.com/latchnet/latch/acl/filter"
)

// Flow accounting: the TUN wrapper counts every packet the filter judged
// into a small table local to the batch (flowBatch), keyed by source,
// destination, protocol, destination port, verdict and reason, and hands
// the table to a FlowSink once per batch. The per-packet work is a header
// read and a compare or two against the previous packet's key, with no
// allocation and no lock; the sink takes its lock once per batch.

// FlowDirection says which way a packet crossed the filter.
type FlowDirection uint8

const (
	// FlowIn: decrypted from a peer, on its way to this node.
	FlowIn FlowDirection = iota
	// FlowOut: sent by this node into the overlay.
	FlowOut
)

// String returns "in" or "out".
func (d FlowDirection) String() string {
	if d == FlowOut {
		return "out"
	}
	return "in"
}

// FlowKey is what flow accounting counts together.
type FlowKey struct {
	// Src and Dst are the packet's addresses; both invalid when the packet
	// was too short or not IP.
	Src, Dst netip.Addr
	// Proto is the IP protocol (for IPv6, the first next header).
	Proto uint8
	// DstPort is the destination port of TCP, UDP, UDP-Lite, SCTP and
	// DCCP packets that carry one (not later fragments); 0 otherwise.
	DstPort uint16
	Verdict filter.Verdict
	Reason  filter.Reason
}

// FlowCount is the packets and bytes (whole IP packets) of one key.
type FlowCount struct {
	Key     FlowKey
	Packets uint64
	Bytes   uint64
}

// FlowSink receives the data plane's flow counts.
type FlowSink interface {
	// AddFlows merges the counts of one batch of packets that crossed the
	// filter in direction dir; every key appears at most once. It is
	// called once per batch from wireguard-go's packet goroutines,
	// several at a time, so it must be safe for concurrent use, fast, and
	// must never block on I/O. counts is reused after the call returns:
	// it must not be kept.
	AddFlows(dir FlowDirection, counts []FlowCount)
}

const (
	// batchKeys is the most keys one flowBatch holds before it hands
	// them to the sink mid-batch; wireguard-go's batches are at most 128
	// packets, so a batch normally needs a single hand-over.
	batchKeys = 128
	// batchSlots is the size of the batch's hash index: a power of two,
	// twice batchKeys, so probes stay short.
	batchSlots = 2 * batchKeys
)

// batchEntry is one key of a batch in packed form (see flowKeyWords) with
// its counts.
type batchEntry struct {
	k       [5]uint64
	packets uint64
	bytes   uint64
}

// flowBatch accumulates one batch's counts. It is used by one goroutine at
// a time and never allocates after newFlowBatch.
type flowBatch struct {
	// slots index ents by a hash of the key: 0 is empty, i is ents[i-1].
	slots [batchSlots]uint8
	ents  [batchKeys]batchEntry
	n     int // entries in use
	last  int // the entry the previous packet went to; -1 for none
	out   []FlowCount
}

func newFlowBatch() *flowBatch {
	return &flowBatch{last: -1, out: make([]FlowCount, 0, batchKeys)}
}

// flowBatchPool holds the batches of the inbound direction, which
// wireguard-go writes from one goroutine per peer.
var flowBatchPool = sync.Pool{New: func() any { return newFlowBatch() }}

// add counts packet p (one IP packet) with the filter's verdict and reason.
// When the batch is full it first hands what it holds to sink.
func (b *flowBatch) add(p []byte, v filter.Verdict, r filter.Reason, sink FlowSink, dir FlowDirection) {
	var k [5]uint64
	// The bulk of traffic, IPv4 without options and not a later
	// fragment, is packed here; flowKeyWords packs it the same way.
	if len(p) >= 24 && p[0] == 0x45 && binary.BigEndian.Uint16(p[6:])&0x1fff == 0 {
		proto := p[9]
		meta := 4<<40 | uint64(proto)<<32 | uint64(v)<<8 | uint64(r)
		if hasPorts(proto) {
			meta |= uint64(binary.BigEndian.Uint16(p[22:])) << 16
		}
		k[1], k[4] = binary.BigEndian.Uint64(p[12:]), meta
	} else {
		flowKeyWords(p, v, r, &k)
	}
	size := uint64(len(p))
	// Batches are mostly runs of one flow's packets.
	if b.last >= 0 {
		if e := &b.ents[b.last]; sameKey(&e.k, &k) {
			e.packets++
			e.bytes += size
			return
		}
	}
	h := (k[0] ^ k[1]*0x9e3779b97f4a7c15 ^ k[2] ^ k[3]*0xc2b2ae3d27d4eb4f ^ k[4]*0x165667b19e3779f9)
	h ^= h >> 29
	for i := h; ; i++ {
		i &= batchSlots - 1
		s := b.slots[i]
		if s == 0 {
			if b.n == batchKeys {
				b.flush(sink, dir)
				b.add(p, v, r, sink, dir)
				return
			}
			b.ents[b.n] = batchEntry{k: k, packets: 1, bytes: size}
			b.n++
			b.slots[i] = uint8(b.n)
			b.last = b.n - 1
			return
		}
		if e := &b.ents[s-1]; sameKey(&e.k, &k) {
			e.packets++
			e.bytes += size
			b.last = int(s - 1)
			return
		}
	}
}

// flush hands the batch's counts to sink and empties the batch.
func (b *flowBatch) flush(sink FlowSink, dir FlowDirection) {
	if b.n == 0 {
		return
	}
	out := b.out[:0]
	for i := range b.n {
		e := &b.ents[i]
		out = append(out, FlowCount{Key: unpackFlowKey(&e.k), Packets: e.packets, Bytes: e.bytes})
	}
	sink.AddFlows(dir, out)
	clear(out) // drop the addresses' zone handles, keep the capacity
	b.out = out[:0]
	b.n, b.last = 0, -1
	b.slots = [batchSlots]uint8{}
}

// sameKey compares packed keys word by word (an array == calls memequal).
func sameKey(a, b *[5]uint64) bool {
	return a[1] == b[1] && a[4] == b[4] && a[0] == b[0] && a[2] == b[2] && a[3] == b[3]
}

// Packed keys: IPv6 has the source address in k[0], k[1] and the
// destination in k[2], k[3]; IPv4 has both in k[1] (source in the high 32
// bits) and zeros in k[0], k[2], k[3]. k[4] holds the rest:
//
//	bits 40-47 IP version (4, 6 or 0 for "not parsed")
//	bits 32-39 protocol
//	bits 16-31 destination port
//	bits  8-15 verdict
//	bits  0-7  reason
func flowKeyWords(p []byte, v filter.Verdict, r filter.Reason, k *[5]uint64) {
	meta := uint64(v)<<8 | uint64(r)
	switch {
	case len(p) >= 20 && p[0]>>4 == 4:
		k[1] = binary.BigEndian.Uint64(p[12:])
		proto := p[9]
		meta |= 4<<40 | uint64(proto)<<32
		ihl := int(p[0]&0x0f) * 4
		// Only the first fragment (offset 0) holds the ports.
		if hasPorts(proto) && binary.BigEndian.Uint16(p[6:])&0x1fff == 0 && ihl >= 20 && len(p) >= ihl+4 {
			meta |= uint64(binary.BigEndian.Uint16(p[ihl+2:])) << 16
		}
	case len(p) >= 40 && p[0]>>4 == 6:
		k[0] = binary.BigEndian.Uint64(p[8:])
		k[1] = binary.BigEndian.Uint64(p[16:])
		k[2] = binary.BigEndian.Uint64(p[24:])
		k[3] = binary.BigEndian.Uint64(p[32:])
		proto := p[6]
		meta |= 6<<40 | uint64(proto)<<32
		if hasPorts(proto) && len(p) >= 44 {
			meta |= uint64(binary.BigEndian.Uint16(p[42:])) << 16
		}
	}
	k[4] = meta
}

// hasPorts reports whether protocol proto starts with source and
// destination ports (TCP, UDP, DCCP, UDP-Lite, SCTP).
func hasPorts(proto uint8) bool {
	switch proto {
	case 6, 17, 33, 136, 132:
		return true
	}
	return false
}

func unpackFlowKey(k *[5]uint64) FlowKey {
	meta := k[4]
	fk := FlowKey{
		Proto:   uint8(meta >> 32),
		DstPort: uint16(meta >> 16),
		Verdict: filter.Verdict(meta >> 8),
		Reason:  filter.Reason(meta),
	}
	switch uint8(meta >> 40) {
	case 4:
		fk.Src = addr4(k[1] >> 32)
		fk.Dst = addr4(k[1])
	case 6:
		fk.Src = addr16(k[0], k[1])
		fk.Dst = addr16(k[2], k[3])
	}
	return fk
}

func addr4(w uint64) netip.Addr {
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], uint32(w))
	return netip.AddrFrom4(a)
}

func addr16(hi, lo uint64) netip.Addr {
	var a [16]byte
	binary.BigEndian.PutUint64(a[:], hi)
	binary.BigEndian.PutUint64(a[8:], lo)
	return netip.AddrFrom16(a)
}
