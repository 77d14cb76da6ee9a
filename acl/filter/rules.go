package filter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"

	"github.com/latchnet/latch/wire"
)

// ruleSet is an immutable compiled rule set. The filter swaps whole rule
// sets atomically; nothing in one changes after compile returns.
type ruleSet struct {
	// gen numbers the rule sets of one Filter, starting at 1. A flow
	// admitted under an older gen is checked again before it may pass.
	gen uint64

	rules []compiledRule

	// Source index, per family: sorted interval starts, and for each
	// interval the list of rules whose Sources cover it (-1: none).
	// Interval i runs from starts[i] up to starts[i+1].
	starts4 []uint32
	lists4  []int32
	starts6 []addr
	lists6  []int32
	// listOff[l]:listOff[l+1] is the span of ruleIdx holding list l.
	listOff []uint32
	ruleIdx []uint32

	// self holds this node's addresses; inbound packets to anything else
	// never start a flow.
	self []selfPrefix
}

type compiledRule struct {
	id     string
	protos protoSet
	// ports is sorted and merged; it is never empty (a rule with no ports
	// matches nothing and is not compiled at all).
	ports []wire.PortRange
	// expiry is the rule's end in Unix nanoseconds on the wall clock; 0
	// means it never ends.
	expiry int64
}

type protoSet [4]uint64

func (s *protoSet) add(p uint8)      { s[p>>6] |= 1 << (p & 63) }
func (s *protoSet) has(p uint8) bool { return s[p>>6]&(1<<(p&63)) != 0 }
func (s *protoSet) empty() bool      { return *s == protoSet{} }
func hasPort(rs []wire.PortRange, p uint16) bool {
	if len(rs) <= 8 {
		for _, r := range rs {
			if p >= r.First && p <= r.Last {
				return true
			}
		}
		return false
	}
	i := sort.Search(len(rs), func(i int) bool { return rs[i].Last >= p })
	return i < len(rs) && rs[i].First <= p
}

type selfPrefix struct {
	v      uint8
	lo, hi addr // inclusive range
}

// rejectedProto explains why a protocol cannot appear in a rule, or
// returns "" if it can.
func rejectedProto(p wire.Proto) string {
	switch {
	case p == 0 || p == 255:
		return "reserved"
	case p == 33 || p == 132 || p == 136:
		// DCCP, SCTP, UDP-Lite have ports the filter does not parse; a
		// rule naming them would admit every port.
		return "has ports the filter does not check"
	case p != 50 && isIPv6ExtHeader(uint8(p)):
		return "is an IPv6 extension header, which the filter drops"
	}
	return ""
}

// compile turns rules into a ruleSet. Invalid rules are left out - a bad
// rule never widens what passes - and described in the returned error;
// the rule set is usable either way. A rule with no Sources, Protocols or
// Ports matches nothing and is left out without an error. Rules that have
// already expired stay in, so that packets they would have matched get the
// reason DropExpired.
func compile(rules []wire.FilterRule, self []netip.Prefix) (*ruleSet, error) {
	rs := &ruleSet{}
	var errs []error
	for _, p := range self {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("self address %v: invalid prefix", p))
			continue
		}
		rs.self = append(rs.self, toSelf(p.Masked()))
	}

	type span struct {
		start, end addr // end exclusive
		endless    bool // the span runs to the end of the address space
		rule       uint32
	}
	var spans4, spans6 []span
	for i := range rules {
		r := &rules[i]
		cr, err := compileRule(r)
		if err != nil {
			errs = append(errs, fmt.Errorf("rule %d (%q): %w", i, r.ID, err))
			continue
		}
		if cr == nil {
			continue
		}
		idx := uint32(len(rs.rules))
		rs.rules = append(rs.rules, *cr)
		for _, p := range r.Sources {
			p = p.Masked()
			first, last := prefixRange(p)
			s := span{start: first, rule: idx}
			s.end, s.endless = next(last, p.Addr().Is4())
			if p.Addr().Is4() {
				spans4 = append(spans4, s)
			} else {
				spans6 = append(spans6, s)
			}
		}
	}

	// Sweep each family's spans into disjoint intervals, each carrying
	// the sorted list of rules covering it. Identical lists are shared.
	lists := map[string]int32{}
	rs.listOff = []uint32{0}
	intern := func(active []uint32) int32 {
		if len(active) == 0 {
			return -1
		}
		kb := make([]byte, 0, 4*len(active))
		for _, a := range active {
			kb = binary.LittleEndian.AppendUint32(kb, a)
		}
		k := string(kb)
		if id, ok := lists[k]; ok {
			return id
		}
		id := int32(len(rs.listOff) - 1)
		lists[k] = id
		rs.ruleIdx = append(rs.ruleIdx, active...)
		rs.listOff = append(rs.listOff, uint32(len(rs.ruleIdx)))
		return id
	}
	sweep := func(spans []span) (starts []addr, ids []int32) {
		type event struct {
			at    addr
			delta int
			rule  uint32
		}
		var evs []event
		for _, s := range spans {
			evs = append(evs, event{at: s.start, delta: 1, rule: s.rule})
			if !s.endless {
				evs = append(evs, event{at: s.end, delta: -1, rule: s.rule})
			}
		}
		slices.SortFunc(evs, func(a, b event) int {
			switch {
			case a.at.less(b.at):
				return -1
			case b.at.less(a.at):
				return 1
			}
			return 0
		})
		count := map[uint32]int{}
		var active []uint32
		// Address zero always starts an interval, so lookups never fall
		// before the first start.
		starts, ids = []addr{{}}, []int32{-1}
		for i := 0; i < len(evs); {
			at := evs[i].at
			for ; i < len(evs) && evs[i].at == at; i++ {
				e := evs[i]
				before := count[e.rule]
				count[e.rule] = before + e.delta
				switch {
				case before == 0 && e.delta > 0:
					j, _ := slices.BinarySearch(active, e.rule)
					active = slices.Insert(active, j, e.rule)
				case before == 1 && e.delta < 0:
					j, _ := slices.BinarySearch(active, e.rule)
					active = slices.Delete(active, j, j+1)
				}
			}
			id := intern(active)
			if at == starts[len(starts)-1] {
				ids[len(ids)-1] = id
			} else if id != ids[len(ids)-1] {
				starts = append(starts, at)
				ids = append(ids, id)
			}
		}
		return starts, ids
	}
	starts4, lists4 := sweep(spans4)
	rs.starts4 = make([]uint32, len(starts4))
	for i, a := range starts4 {
		rs.starts4[i] = uint32(a.lo)
	}
	rs.lists4 = lists4
	rs.starts6, rs.lists6 = sweep(spans6)
	return rs, errors.Join(errs...)
}

// compileRule validates r. It returns nil, nil for a valid rule that can
// match nothing.
func compileRule(r *wire.FilterRule) (*compiledRule, error) {
	cr := &compiledRule{id: r.ID}
	for _, p := range r.Sources {
		if !p.IsValid() {
			return nil, fmt.Errorf("source %v: invalid prefix", p)
		}
	}
	for _, p := range r.Protocols {
		if why := rejectedProto(p); why != "" {
			return nil, fmt.Errorf("protocol %d %s", p, why)
		}
		cr.protos.add(uint8(p))
	}
	for _, pr := range r.Ports {
		if pr.First == 0 || pr.First > pr.Last {
			return nil, fmt.Errorf("port range %d-%d: want 1 <= first <= last", pr.First, pr.Last)
		}
	}
	if !r.Expires.IsZero() {
		cr.expiry = r.Expires.UnixNano()
		if cr.expiry == 0 {
			// The one instant whose Unix nanoseconds are 0 must not
			// read as "never ends".
			cr.expiry = -1
		}
	}
	if len(r.Sources) == 0 || cr.protos.empty() || len(r.Ports) == 0 {
		return nil, nil
	}
	cr.ports = mergePorts(r.Ports)
	return cr, nil
}

func mergePorts(in []wire.PortRange) []wire.PortRange {
	ps := slices.Clone(in)
	slices.SortFunc(ps, func(a, b wire.PortRange) int { return int(a.First) - int(b.First) })
	out := ps[:1]
	for _, p := range ps[1:] {
		last := &out[len(out)-1]
		if uint32(p.First) <= uint32(last.Last)+1 {
			last.Last = max(last.Last, p.Last)
			continue
		}
		out = append(out, p)
	}
	return slices.Clip(out)
}

// prefixRange returns the first and last address of p as addrs.
func prefixRange(p netip.Prefix) (first, last addr) {
	first = addrFrom(p.Addr())
	if p.Addr().Is4() {
		hostBits := uint(32 - p.Bits())
		last = addr{lo: first.lo | (uint64(1)<<hostBits - 1)}
		return first, last
	}
	hostBits := 128 - p.Bits()
	last = first
	switch {
	case hostBits >= 64:
		last.lo = ^uint64(0)
		if hostBits == 128 {
			last.hi = ^uint64(0)
		} else {
			last.hi |= uint64(1)<<uint(hostBits-64) - 1
		}
	case hostBits > 0:
		last.lo |= uint64(1)<<uint(hostBits) - 1
	}
	return first, last
}

// next returns a+1, or endless if a is the last address of its family.
func next(a addr, is4 bool) (addr, bool) {
	if is4 {
		if a.lo == 0xffffffff {
			return addr{}, true
		}
		return addr{lo: a.lo + 1}, false
	}
	if a.lo == ^uint64(0) {
		if a.hi == ^uint64(0) {
			return addr{}, true
		}
		return addr{hi: a.hi + 1}, false
	}
	return addr{hi: a.hi, lo: a.lo + 1}, false
}

func toSelf(p netip.Prefix) selfPrefix {
	first, last := prefixRange(p)
	v := uint8(6)
	if p.Addr().Is4() {
		v = 4
	}
	return selfPrefix{v: v, lo: first, hi: last}
}

// isSelf reports whether a (of family v) is one of this node's addresses.
func (rs *ruleSet) isSelf(v uint8, a addr) bool {
	for i := range rs.self {
		s := &rs.self[i]
		if s.v == v && !a.less(s.lo) && !s.hi.less(a) {
			return true
		}
	}
	return false
}

// sources returns the rules whose Sources contain a (of family v), in
// rule order. It does not allocate.
func (rs *ruleSet) sources(v uint8, a addr) []uint32 {
	var id int32
	if v == 4 {
		x := uint32(a.lo)
		s := rs.starts4
		// Largest i with s[i] <= x; s[0] == 0 so one always exists.
		lo, hi := 0, len(s)
		for hi-lo > 1 {
			m := int(uint(lo+hi) >> 1)
			if s[m] <= x {
				lo = m
			} else {
				hi = m
			}
		}
		id = rs.lists4[lo]
	} else {
		s := rs.starts6
		lo, hi := 0, len(s)
		for hi-lo > 1 {
			m := int(uint(lo+hi) >> 1)
			if !a.less(s[m]) {
				lo = m
			} else {
				hi = m
			}
		}
		id = rs.lists6[lo]
	}
	if id < 0 {
		return nil
	}
	return rs.ruleIdx[rs.listOff[id]:rs.listOff[id+1]]
}

// match decides whether a packet of family v and protocol proto from src
// to dst (destination port dport, used for TCP and UDP only) may start a
// flow at wall-clock time wall (Unix nanoseconds). On AcceptRule, expiry
// is when the admitting rules end (0: never); the flow must be checked
// again then.
func (rs *ruleSet) match(v, proto uint8, src, dst addr, dport uint16, wall int64) (r Reason, expiry int64) {
	if !rs.isSelf(v, dst) {
		return DropNotLocal, 0
	}
	r = DropNoRule
	ported := proto == protoTCP || proto == protoUDP
	for _, i := range rs.sources(v, src) {
		cr := &rs.rules[i]
		if !cr.protos.has(proto) || (ported && !hasPort(cr.ports, dport)) {
			continue
		}
		switch {
		case cr.expiry == 0:
			return AcceptRule, 0
		case wall < cr.expiry:
			if r != AcceptRule || cr.expiry > expiry {
				expiry = cr.expiry
			}
			r = AcceptRule
		case r != AcceptRule:
			r = DropExpired
		}
	}
	return r, expiry
}
