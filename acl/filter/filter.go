// Package filter is a Latch node's packet filter: it decides, for every
// packet entering the node through the overlay, whether it may pass, and
// records the flows the node itself starts so that their replies do.
//
// Inbound is default deny. An inbound packet passes only if it belongs to a
// flow this node started, or to a flow a rule admitted and the current rules
// still admit, or if it starts a flow that a live rule admits. Rules come
// from the coordinator as wire.FilterRule: sources, protocols, destination
// ports and an optional expiry on this node's own clock. Outbound packets
// always pass; they record flow state.
//
// Parsing fails closed: truncated or contradictory headers, IP fragments
// and IPv6 extension headers are dropped before any rule sees them, and a
// protocol whose ports are not parsed never matches a port.
//
// Rule changes are atomic and take effect on established flows too: a flow
// the remote side started is checked against every new rule set (and again
// when the rule that admitted it expires) before its next packet passes, so
// revoking access stops a connection in the middle.
//
// The hot path does not allocate, and the clock is read once per batch
// (Now) rather than per packet. Every verdict comes with a Reason, and every
// Reason is counted.
package filter

import (
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
	// DefaultFlowCapacity.
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
	flows *flowTable
	count counters

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
		flows: newFlowTable(opts.FlowCapacity, t),
	}
	f.gen = 1
	f.rules.Store(&ruleSet{gen: 1, listOff: []uint32{0}, starts4: []uint32{0}, lists4: []int32{-1}, starts6: []addr{{}}, lists6: []int32{-1}})
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
	rs.gen = f.gen
	f.rules.Store(rs)
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
	if now == (Instant{}) {
		now = f.Now()
	}
	var p packet
	r := f.runIn(pkt, &p, now)
	f.count.add(stripeOf(&p), r)
	return r.Verdict(), r
}

// RunOutAt records one outbound packet at now (see RunInAt). Outbound
// packets pass, except ones too malformed to be IP.
func (f *Filter) RunOutAt(pkt []byte, now Instant) (Verdict, Reason) {
	if now == (Instant{}) {
		now = f.Now()
	}
	var p packet
	r := f.runOut(pkt, &p, now)
	f.count.add(stripeOf(&p), r)
	return r.Verdict(), r
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
// timed out but were not yet reclaimed.
func (f *Filter) Flows() int { return f.flows.len() }

// runIn decides about inbound packet b, parsing it into p.
func (f *Filter) runIn(b []byte, p *packet, now Instant) Reason {
	if r := parse(b, p); r != reasonNone {
		return r
	}
	rs := f.rules.Load()
	switch {
	case p.kind.tracked():
		var k flowKey
		keyIn(p, &k)
		h := f.flows.hash(&k)
		s := f.flows.shardFor(h)
		s.mu.Lock()
		r := f.establishedLocked(s, &k, h, p, now, rs)
		s.mu.Unlock()
		if r != reasonNone {
			return r
		}
	case p.kind == kindICMPError:
		if r := f.related(p, now, rs); r != reasonNone {
			return r
		}
	}

	r, expiry := rs.match(p.v, p.proto, p.src, p.dst, p.dstPort, now.wall)
	if r != AcceptRule || !p.kind.tracked() || p.tcpFlags&tcpRST != 0 {
		return r
	}
	var k flowKey
	keyIn(p, &k)
	h := f.flows.hash(&k)
	s := f.flows.shardFor(h)
	s.mu.Lock()
	x := f.flows.findLocked(s, &k, h, now.mono)
	switch {
	case x < 0:
		x = s.insertLocked(&k, h, now.mono)
	case s.entries[x].flags&flagRevoked == 0:
		// Another packet of the flow got here first (or this node's own
		// first packet did); the flow keeps the origin it has.
		s.touchLocked(x, now.mono)
		s.mu.Unlock()
		return AcceptRule
	default:
		s.touchLocked(x, now.mono)
	}
	e := &s.entries[x]
	e.flags = flagInbound | tcpFlagsIn(p.tcpFlags)
	e.gen, e.expiry = rs.gen, expiry
	s.mu.Unlock()
	return AcceptRule
}

// establishedLocked handles an inbound packet whose flow may be known. It
// returns reasonNone when the packet must be judged by the rules as a new
// flow.
func (f *Filter) establishedLocked(s *shard, k *flowKey, h uint64, p *packet, now Instant, rs *ruleSet) Reason {
	x := f.flows.findLocked(s, k, h, now.mono)
	if x < 0 {
		return reasonNone
	}
	e := &s.entries[x]
	if p.kind == kindTCP && p.tcpFlags&(tcpSYN|tcpACK) == tcpSYN && (e.closing() || e.flags&flagRevoked != 0) {
		// A new connection on the ports of a finished or revoked one:
		// forget the old flow and let the rules decide.
		s.removeLocked(x)
		return reasonNone
	}
	s.touchLocked(x, now.mono)
	if !f.recheckLocked(e, now, rs) {
		return DropRevoked
	}
	if e.flags&flagInbound == 0 {
		e.flags |= flagReplied
	}
	e.flags |= tcpFlagsIn(p.tcpFlags)
	return AcceptEstablished
}

// recheckLocked makes sure a flow the remote side started is still admitted
// by rs at now, and reports whether the flow may carry packets. Flows this
// node started are never rechecked.
func (f *Filter) recheckLocked(e *flowEntry, now Instant, rs *ruleSet) bool {
	if e.flags&flagInbound == 0 {
		return true
	}
	if e.gen == rs.gen && (e.expiry == 0 || now.wall < e.expiry) {
		return e.flags&flagRevoked == 0
	}
	k := &e.key
	r, expiry := rs.match(k.v(), k.proto(), k.remote, k.local, k.lport(), now.wall)
	e.gen = rs.gen
	if r != AcceptRule {
		e.flags |= flagRevoked
		e.expiry = 0
		return false
	}
	e.flags &^= flagRevoked
	e.expiry = expiry
	return true
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
	e := &s.entries[x]
	if !f.recheckLocked(e, now, rs) {
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
	h := f.flows.hash(&k)
	s := f.flows.shardFor(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	pureSYN := p.kind == kindTCP && p.tcpFlags&(tcpSYN|tcpACK|tcpRST) == tcpSYN
	x := f.flows.findLocked(s, &k, h, now.mono)
	if x >= 0 {
		e := &s.entries[x]
		s.touchLocked(x, now.mono)
		if pureSYN && (e.closing() || e.flags&flagRevoked != 0) {
			// This node opens a new connection on the ports of an old
			// one: the flow is now this node's.
			e.flags, e.gen, e.expiry = 0, 0, 0
			return AcceptOutbound
		}
		// Check a flow the remote side started here too, so that its
		// revocation shows in this node's own packets at once.
		if !f.recheckLocked(e, now, f.rules.Load()) {
			return AcceptOutboundUntracked
		}
		if e.flags&flagInbound != 0 {
			e.flags |= flagReplied
		}
		e.flags |= tcpFlagsOut(p.tcpFlags)
		return AcceptOutbound
	}
	// Only the start of an exchange creates a flow: a TCP SYN, an echo
	// request, any UDP datagram. A TCP segment or echo reply of an
	// exchange the filter never saw start (or forgot) creates nothing, so
	// this node's replies cannot open a door for a flow that was refused
	// or revoked.
	if (p.kind == kindTCP && !pureSYN) || p.kind == kindEchoReply {
		return AcceptOutboundUntracked
	}
	s.insertLocked(&k, h, now.mono)
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
