package filter

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/latchnet/latch/wire"
)

// DefaultFlowCapacity is the flow table size a zero Options gets.
const DefaultFlowCapacity = 16384

// Options configure a Filter. The zero value is ready to use.
type Options struct {
	// Now is the clock; nil means time.Now. Rule expiry uses its wall
	// time, flow timeouts its monotonic time where it has one.
	Now func() time.Time
	// FlowCapacity bounds the number of flows remembered; when the table
	// is full the least recently seen flow is forgotten. Zero means
	// DefaultFlowCapacity; more than about 16.7 million means that many.
	FlowCapacity int
	// Timeouts; zero fields take DefaultTimeouts' values.
	Timeouts Timeouts
}

// Filter is a packet filter for one node. It is safe for concurrent use:
// any number of goroutines may run packets through it while another swaps
// its rules.
type Filter struct {
	now   func() time.Time
	epoch time.Time // monotonic zero for flow times

	rules atomic.Pointer[ruleSet] // never nil after New
	count counters
	// flows is held by value, not behind a pointer: the packet path then
	// finds the table's fields one load sooner.
	flows flowTable

	setMu sync.Mutex // serializes SetRules
	gen   uint64     // guarded by setMu: generation of the newest rule set
}

// New returns a filter with no rules and no addresses: every inbound
// packet that does not belong to a flow this node starts is dropped until
// SetRules says otherwise.
func New(opts Options) *Filter {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.FlowCapacity <= 0 {
		opts.FlowCapacity = DefaultFlowCapacity
	}
	d := DefaultTimeouts()
	t := opts.Timeouts
	for _, p := range []struct{ v, def *time.Duration }{
		{&t.TCPEstablished, &d.TCPEstablished},
		{&t.TCPTransitory, &d.TCPTransitory},
		{&t.UDP, &d.UDP},
		{&t.ICMP, &d.ICMP},
	} {
		if *p.v <= 0 {
			*p.v = *p.def
		}
	}
	f := &Filter{
		now:   opts.Now,
		epoch: opts.Now(),
		flows: *newFlowTable(opts.FlowCapacity, t),
	}
	rs, _ := compile(nil, nil)
	f.gen, rs.gen = 1, 1
	f.rules.Store(rs)
	return f
}

// SetRules atomically replaces the rule set and this node's own addresses
// (self: inbound packets to any other address are dropped). Flows the
// remote side started must be admitted by the new rules before another of
// their packets passes; flows this node started are kept.
//
// Invalid rules are left out - a bad rule never widens what passes - and
// described in the returned error; the valid rest takes effect regardless.
// Already expired rules are kept only so that packets they would have
// admitted are counted as DropExpired.
func (f *Filter) SetRules(rules []wire.FilterRule, self []netip.Prefix) error {
	rs, err := compile(rules, self)
	f.setMu.Lock()
	defer f.setMu.Unlock()
	f.gen++
	wrapped := uint32(f.gen) == 0
	if wrapped {
		// Flows keep the low 32 bits of the generation; 0 is never
		// current, so a cleared one always means "check again".
		f.gen++
	}
	rs.gen = f.gen
	f.rules.Store(rs)
	if wrapped {
		f.flows.forgetGens()
	}
	return err
}

// Instant is one reading of the filter's clock. Reading the clock costs more
// than filtering a packet, so callers that handle batches read it once per
// batch with Now and pass it to RunInAt and RunOutAt.
type Instant struct {
	mono int64 // nanoseconds since the filter's epoch
	wall int64 // Unix nanoseconds
}

// Now reads the filter's clock.
func (f *Filter) Now() Instant {
	t := f.now()
	return Instant{mono: int64(t.Sub(f.epoch)), wall: t.UnixNano()}
}

// RunIn filters one inbound packet (decrypted, about to be delivered to
// this node), reading the clock itself.
func (f *Filter) RunIn(pkt []byte) (Verdict, Reason) { return f.RunInAt(pkt, f.Now()) }

// RunOut records one outbound packet (leaving this node into the overlay),
// reading the clock itself.
func (f *Filter) RunOut(pkt []byte) (Verdict, Reason) { return f.RunOutAt(pkt, f.Now()) }

// RunInAt filters one inbound packet at now, an Instant from Now (the zero
// Instant means "read the clock"). pkt is one IP packet; it is read, never
// modified or kept.
func (f *Filter) RunInAt(pkt []byte, now Instant) (Verdict, Reason) {
	if now.mono|now.wall == 0 { // the zero Instant
		return f.RunIn(pkt) // a call in last place: nothing to save for after it
	}
	b := pkt
	// The bulk of traffic: TCP or UDP over IPv4 without options or
	// fragments, of a flow whose entry needs no change. Parsed here in
	// registers with exactly parse's checks for this shape, and passed on
	// one lock-free reading of the flow's entry (see fast.go).
	// FuzzFastPathAgrees holds this to the general path.
	if len(b) < 28 || b[0] != 0x45 {
		return f.inOtherc(b, now)
	}
	total := int(binary.BigEndian.Uint16(b[2:]))
	if total > len(b) || binary.BigEndian.Uint16(b[6:])&0x3fff != 0 {
		return f.inOtherc(b, now)
	}
	proto := b[9]
	var tcpFlags uint8
	var meta uint64 // packMeta without the ports
	switch proto {
	case protoTCP:
		// The data offset, in bytes, from 20 to what the packet holds.
		if total < 40 || uint(int(b[32]>>2&^3)-20) > uint(total-40) {
			return f.inOtherc(b, now)
		}
		tcpFlags = b[33]
		meta = 4<<40 | protoTCP<<32
	case protoUDP:
		if n := int(binary.BigEndian.Uint16(b[24:])); total < 28 || n < 8 || n > total-20 {
			return f.inOtherc(b, now)
		}
		meta = 4<<40 | protoUDP<<32
	default:
		return f.inOtherc(b, now)
	}
	addrs := binary.BigEndian.Uint64(b[12:]) // source, destination
	ports := binary.BigEndian.Uint32(b[20:]) // source, destination
	// The key: its word (keyWords) is local | remote<<32, which is addrs;
	// packMeta(4, proto, dport, sport) puts the local port above the
	// remote one.
	meta |= uint64(bits.RotateLeft32(ports, 16))
	ft := &f.flows
	h := ft.hash4(addrs, meta)
	// The lookup, written out (see shard.lookup); the home slot first.
	// An empty home slot proves the flow absent.
	i := h & ft.indexMask
	slot := &ft.index[i]
	w := slot.Load()
	// Every call below is the last thing RunInAt does, so no value has
	// to be saved across one: the path that passes touches no stack.
	if w>>slotTagShift != slotTag(h) { // an empty slot has no tag
		if w == 0 { // the home slot proves the flow absent
			if proto == protoTCP && pureSYN(tcpFlags) {
				return f.in4SYNc(addrs, uint16(ports), now)
			}
			return f.in4c(addrs, ports, tcpFlags, meta, h, true, now)
		}
		return f.in4Probec(addrs, ports, tcpFlags, meta, h, i, w, now)
	}
	e := &ft.entries[slotEntryIndex(w)]
	if e.key[4].Load()^meta|e.key[1].Load()^addrs == 0 {
		st, seen := e.state.Load(), e.seen.Load()
		if slot.Load() == w && passesIn(st, seen, now.mono-ft.tick, now, &f.rules, tcpFlags) {
			f.count.add(uint(addrs>>32), AcceptEstablished) // by the remote address
			return Accept, AcceptEstablished
		}
	}
	return f.in4c(addrs, ports, tcpFlags, meta, h, false, now)
}

// in4Probec is in4Probe for RunInAt: it also counts the packet.
func (f *Filter) in4Probec(addrs uint64, ports uint32, tcpFlags uint8, meta, h, i, w uint64, now Instant) (Verdict, Reason) {
	r := f.in4Probe(addrs, ports, tcpFlags, meta, h, i, w, now)
	f.count.add(uint(addrs>>32), r)
	return r.Verdict(), r
}

// in4Probe goes on with the IPv4 fast path's lookup past a home slot i
// whose word w is neither empty nor tagged for the flow; the caller counts
// the packet.
func (f *Filter) in4Probe(addrs uint64, ports uint32, tcpFlags uint8, meta, h, i, w uint64, now Instant) Reason {
	ft := &f.flows
	i, w, missing := ft.probe(i, w, slotTag(h))
	if w != 0 {
		e := &ft.entries[slotEntryIndex(w)]
		if e.key[4].Load() == meta && e.key[1].Load() == addrs {
			st, seen := e.state.Load(), e.seen.Load()
			if ft.index[i].Load() == w && passesIn(st, seen, now.mono-ft.tick, now, &f.rules, tcpFlags) {
				return AcceptEstablished
			}
		}
	}
	return f.in4(addrs, ports, tcpFlags, meta, h, missing, now)
}

// RunOutAt records one outbound packet at now (see RunInAt). Outbound
// packets pass, except ones too malformed to be IP.
func (f *Filter) RunOutAt(pkt []byte, now Instant) (Verdict, Reason) {
	if now.mono|now.wall == 0 { // the zero Instant
		return f.RunOut(pkt)
	}
	b := pkt
	// As in RunInAt.
	if len(b) < 28 || b[0] != 0x45 {
		return f.outOtherc(b, now)
	}
	total := int(binary.BigEndian.Uint16(b[2:]))
	if total > len(b) || binary.BigEndian.Uint16(b[6:])&0x3fff != 0 {
		return f.outOtherc(b, now)
	}
	proto := b[9]
	var tcpFlags uint8
	var meta uint64
	switch proto {
	case protoTCP:
		if total < 40 || uint(int(b[32]>>2&^3)-20) > uint(total-40) {
			return f.outOtherc(b, now)
		}
		tcpFlags = b[33]
		meta = 4<<40 | protoTCP<<32
	case protoUDP:
		if n := int(binary.BigEndian.Uint16(b[24:])); total < 28 || n < 8 || n > total-20 {
			return f.outOtherc(b, now)
		}
		meta = 4<<40 | protoUDP<<32
	default:
		return f.outOtherc(b, now)
	}
	addrs := binary.BigEndian.Uint64(b[12:])
	ports := binary.BigEndian.Uint32(b[20:])
	kw := bits.RotateLeft64(addrs, 32) // local | remote<<32
	meta |= uint64(ports)
	ft := &f.flows
	h := ft.hash4(kw, meta)
	i := h & ft.indexMask
	slot := &ft.index[i]
	w := slot.Load()
	if w>>slotTagShift != slotTag(h) { // as in RunInAt
		if w == 0 {
			return f.out4c(addrs, ports, tcpFlags, meta, h, true, now)
		}
		return f.out4Probec(addrs, ports, tcpFlags, kw, meta, h, i, w, now)
	}
	e := &ft.entries[slotEntryIndex(w)]
	if e.key[4].Load()^meta|e.key[1].Load()^kw == 0 {
		st, seen := e.state.Load(), e.seen.Load()
		if slot.Load() == w && passesOut(st, seen, now.mono-ft.tick, now, &f.rules, tcpFlags) {
			f.count.add(uint(addrs), AcceptOutbound) // by the remote address
			return Accept, AcceptOutbound
		}
	}
	return f.out4c(addrs, ports, tcpFlags, meta, h, false, now)
}

// out4Probec is out4Probe for RunOutAt: it also counts the packet.
func (f *Filter) out4Probec(addrs uint64, ports uint32, tcpFlags uint8, kw, meta, h, i, w uint64, now Instant) (Verdict, Reason) {
	r := f.out4Probe(addrs, ports, tcpFlags, kw, meta, h, i, w, now)
	f.count.add(uint(addrs), r)
	return r.Verdict(), r
}

// out4Probe is in4Probe for outbound packets; kw is the flow's key word.
func (f *Filter) out4Probe(addrs uint64, ports uint32, tcpFlags uint8, kw, meta, h, i, w uint64, now Instant) Reason {
	ft := &f.flows
	i, w, missing := ft.probe(i, w, slotTag(h))
	if w != 0 {
		e := &ft.entries[slotEntryIndex(w)]
		if e.key[4].Load() == meta && e.key[1].Load() == kw {
			st, seen := e.state.Load(), e.seen.Load()
			if ft.index[i].Load() == w && passesOut(st, seen, now.mono-ft.tick, now, &f.rules, tcpFlags) {
				return AcceptOutbound
			}
		}
	}
	return f.out4(addrs, ports, tcpFlags, meta, h, missing, now)
}

// Count returns how many packets got reason r since New.
func (f *Filter) Count(r Reason) uint64 { return f.count.get(r) }

// Counts returns the counter of every reason, for metrics.
func (f *Filter) Counts() map[Reason]uint64 {
	m := make(map[Reason]uint64, numReasons)
	for _, r := range Reasons() {
		m[r] = f.count.get(r)
	}
	return m
}

// Flows returns the number of flows in the table, including ones that
// timed out but were not yet reclaimed. An inbound TCP connection whose
// SYN was admitted is not in the table until this node answers it or the
// remote side sends more than SYNs.
func (f *Filter) Flows() int { return f.flows.len() }

// runIn decides about inbound packet b, parsing it into p.
func (f *Filter) runIn(b []byte, p *packet, now Instant) Reason {
	if r := parse(b, p); r != reasonNone {
		return r
	}
	rs := f.rules.Load()
	if !p.kind.tracked() {
		if p.kind == kindICMPError {
			if r := f.related(p, now, rs); r != reasonNone {
				return r
			}
		}
		r, _ := rs.match(p.v, p.proto, p.src, p.dst, p.dstPort, now.wall)
		return r
	}
	var k flowKey
	keyIn(p, &k)
	return f.inKnown(p, &k, f.flows.hash(&k), unsure, now)
}

// inLocked decides about an inbound packet of a tracked kind with the
// shard's lock. r and ref are the rules' verdict if the caller already
// matched them, else r is reasonNone. A flow that has no entry is decided
// by newInbound.
func (f *Filter) inLocked(s *shard, k *flowKey, h uint64, p *packet, now Instant, rs *ruleSet, r Reason, ref uint32) Reason {
	s.mu.Lock()
	if er := f.establishedLocked(s, k, h, p, now, rs); er != reasonNone {
		s.mu.Unlock()
		return er
	}
	if r == reasonNone {
		r, ref = rs.match(p.v, p.proto, p.src, p.dst, p.dstPort, now.wall)
	}
	r, insert := newInbound(p.kind, p.tcpFlags, r)
	if insert {
		s.insertLocked(k, h, now.mono, mkState(flagInbound|tcpFlagsIn(p.tcpFlags), ref, rs.gen))
	}
	s.mu.Unlock()
	return r
}

// establishedLocked handles an inbound packet whose flow may be known. It
// returns reasonNone when the packet must be judged by the rules as a new
// flow; then k is not in the table.
func (f *Filter) establishedLocked(s *shard, k *flowKey, h uint64, p *packet, now Instant, rs *ruleSet) Reason {
	x := f.flows.findLocked(s, k, h, now.mono)
	if x < 0 {
		return reasonNone
	}
	st := s.entries[x].state.Load()
	fl := stFlags(st)
	if p.kind == kindTCP && p.tcpFlags&(tcpSYN|tcpACK) == tcpSYN && (closing(fl) || fl&flagRevoked != 0) {
		// A new connection on the ports of a finished or revoked one:
		// forget the old flow and let the rules decide.
		s.removeLocked(x)
		return reasonNone
	}
	s.touchLocked(x, now.mono)
	st, ok := recheck(k, st, now, rs)
	if !ok {
		s.setStateLocked(x, st)
		return DropRevoked
	}
	fl = stFlags(st)
	if fl&flagInbound == 0 {
		fl |= flagReplied
	}
	s.setStateLocked(x, withFlags(st, fl|tcpFlagsIn(p.tcpFlags)))
	return AcceptEstablished
}

// recheck makes sure a flow (key k, state st) that the remote side started
// is still admitted by rs at now. It returns the flow's new state and
// whether the flow may carry packets. Flows this node started are never
// rechecked.
func recheck(k *flowKey, st flowState, now Instant, rs *ruleSet) (flowState, bool) {
	fl := stFlags(st)
	if fl&flagInbound == 0 {
		return st, true
	}
	if rs.current(st, now.wall) {
		return st, fl&flagRevoked == 0
	}
	r, ref := rs.match(k.v(), k.proto(), k.remote, k.local, k.lport(), now.wall)
	if r != AcceptRule {
		return mkState(fl|flagRevoked, 0, rs.gen), false
	}
	return mkState(fl&^flagRevoked, ref, rs.gen), true
}

// related admits an ICMP error that quotes a packet of a known flow which
// this node sent, coming from the host that packet went to. It returns
// reasonNone otherwise. Requiring the error to come from the quoted
// destination keeps one peer from forging errors about this node's flows
// with another (cutting them, or shrinking their path MTU); errors from
// hops in between need a rule admitting ICMP from them.
func (f *Filter) related(p *packet, now Instant, rs *ruleSet) Reason {
	var q packet
	if !parseInner(p.v, p.inner, &q) || q.src != p.dst || q.dst != p.src {
		return reasonNone
	}
	var k flowKey
	keyOut(&q, &k)
	h := f.flows.hash(&k)
	s := f.flows.shardFor(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	x := f.flows.findLocked(s, &k, h, now.mono)
	if x < 0 {
		return reasonNone
	}
	st, ok := recheck(&k, s.entries[x].state.Load(), now, rs)
	s.setStateLocked(x, st)
	if !ok {
		return DropRevoked
	}
	return AcceptRelated
}

// runOut decides about outbound packet b, parsing it into p.
func (f *Filter) runOut(b []byte, p *packet, now Instant) Reason {
	switch parse(b, p) {
	case reasonNone:
	case DropMalformed:
		return DropMalformed
	default:
		// Fragments and IPv6 extension headers leave untracked; the
		// far side decides about them.
		return AcceptOutboundUntracked
	}
	if !p.kind.tracked() {
		return AcceptOutboundUntracked
	}
	var k flowKey
	keyOut(p, &k)
	return f.outKnown(p, &k, f.flows.hash(&k), unsure, now)
}

// outKnown records outbound packet p of a tracked kind with key k and hash
// h, given what a lookup of its flow found (see inKnown).
func (f *Filter) outKnown(p *packet, k *flowKey, h uint64, res lookupResult, now Instant) Reason {
	ft := &f.flows
	s := ft.shardFor(h)
	syn := p.kind == kindTCP && pureSYN(p.tcpFlags)
	if res == unsure {
		var st flowState
		var seen int64
		st, seen, res = s.lookup(k, h)
		if res == found && passesOut(st, seen, now.mono-ft.tick, now, &f.rules, p.tcpFlags) {
			return AcceptOutbound
		}
	}
	switch res {
	case absent:
		if (p.kind == kindTCP && !syn && !synAck(p.tcpFlags)) || p.kind == kindEchoReply {
			return AcceptOutboundUntracked
		}
	}
	return f.outLocked(s, k, h, p, syn, now)
}

// outLocked records an outbound packet of a tracked kind with the shard's
// lock.
func (f *Filter) outLocked(s *shard, k *flowKey, h uint64, p *packet, syn bool, now Instant) Reason {
	s.mu.Lock()
	defer s.mu.Unlock()
	x := f.flows.findLocked(s, k, h, now.mono)
	if x >= 0 {
		st := s.entries[x].state.Load()
		fl := stFlags(st)
		s.touchLocked(x, now.mono)
		if syn && (closing(fl) || fl&flagRevoked != 0) {
			// This node opens a new connection on the ports of an old
			// one: the flow is now this node's.
			s.setStateLocked(x, 0)
			return AcceptOutbound
		}
		// Check a flow the remote side started here too, so that its
		// revocation shows in this node's own packets at once.
		st, ok := recheck(k, st, now, f.rules.Load())
		if !ok {
			s.setStateLocked(x, st)
			return AcceptOutboundUntracked
		}
		fl = stFlags(st)
		if fl&flagInbound != 0 {
			fl |= flagReplied
		}
		s.setStateLocked(x, withFlags(st, fl|tcpFlagsOut(p.tcpFlags)))
		return AcceptOutbound
	}
	// Only the start of an exchange creates a flow: a TCP SYN, an echo
	// request, any UDP datagram. A TCP segment or echo reply of an
	// exchange the filter never saw start (or forgot) creates nothing, so
	// this node's replies cannot open a door for a flow that was refused
	// or revoked.
	if p.kind == kindTCP && synAck(p.tcpFlags) {
		// This node answers a connection's SYN: the connection gets its
		// flow entry now, as one the remote side started, if the current
		// rules admit it (halfopen.go).
		rs := f.rules.Load()
		r, ref := rs.match(k.v(), k.proto(), k.remote, k.local, k.lport(), now.wall)
		if r != AcceptRule {
			return AcceptOutboundUntracked
		}
		s.insertLocked(k, h, now.mono, mkState(flagInbound|flagReplied|tcpFlagsOut(p.tcpFlags), ref, rs.gen))
		return AcceptOutbound
	}
	if (p.kind == kindTCP && !syn) || p.kind == kindEchoReply {
		return AcceptOutboundUntracked
	}
	s.insertLocked(k, h, now.mono, 0)
	return AcceptOutbound
}

func tcpFlagsIn(fl uint8) uint8 {
	var out uint8
	if fl&tcpFIN != 0 {
		out |= flagFinIn
	}
	if fl&tcpRST != 0 {
		out |= flagRST
	}
	return out
}

func tcpFlagsOut(fl uint8) uint8 {
	var out uint8
	if fl&tcpFIN != 0 {
		out |= flagFinOut
	}
	if fl&tcpRST != 0 {
		out |= flagRST
	}
	return out
}
