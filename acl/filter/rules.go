package filter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"

	"github.com/latchnet/latch/wire"
)

// ruleSet is an immutable compiled rule set. The filter swaps whole rule
// sets atomically; nothing in one changes after compile returns.
type ruleSet struct {
	// gen numbers the rule sets of one Filter, starting at 1; its low 32
	// bits are never 0. A flow admitted under an older gen is checked
	// again before it may pass.
	gen uint64

	rules []compiledRule
	// ends[ref] is when the flows whose state names ref must be checked
	// again (see flowState): never (MaxInt64) for 0, else the rule's
	// expiry. It has no entry for refRematch.
	ends []int64

	// Source index: which rules' Sources contain an address. Each family
	// has a hash table of the single addresses (/32, /128) that rules name,
	// and a table of disjoint intervals for the wider prefixes; both give a
	// rule list (-1: none), and an address's entry in the hash table
	// already includes the rules whose wider prefixes cover it.
	src4 srcIndex4
	src6 srcIndex6
	// lists holds the rule lists that are longer than one rule, each as
	// its length followed by its rule indexes (see listRef).
	lists []uint32

	// self4 and self6 hold this node's addresses; inbound packets to
	// anything else never start a flow.
	self4 []selfRange4
	self6 []selfRange6
}

// listRef names a sorted list of rule indexes in a ruleSet: noList for none,
// singleRule|i for rule i alone (the common case: one source, one rule, so
// a lookup goes straight to the rule), else 1 + the offset in lists of the
// list's length.
type listRef uint32

const (
	noList     listRef = 0
	singleRule listRef = 1 << 31
)

// listOf returns the rules of list l, given storage for one rule.
func (rs *ruleSet) listOf(l listRef, one *[1]uint32) []uint32 {
	switch {
	case l == noList:
		return nil
	case l&singleRule != 0:
		one[0] = uint32(l &^ singleRule)
		return one[:]
	}
	off := uint32(l)
	return rs.lists[off : off+rs.lists[off-1]]
}

type compiledRule struct {
	// The fields match reads for every rule come first.

	// common has protoBit(p) set for each of TCP, UDP, ICMP and ICMPv6
	// the rule admits; protos has every protocol it admits.
	common uint8
	// first is ports[0], or an empty range if there are no ports.
	first wire.PortRange
	// expiry is the rule's end in Unix nanoseconds on the wall clock; 0
	// means it never ends.
	expiry int64
	protos protoSet
	// ports is sorted and merged. It is empty only if protos holds
	// neither TCP nor UDP: ports matter for those two alone, and a rule
	// without ports admits neither.
	ports []wire.PortRange
	id    string
}

// protoBit returns the bit of compiledRule.common for protocol p, or 0 for
// protocols that only protos holds.
func protoBit(p uint8) uint8 {
	switch p {
	case protoTCP:
		return 1
	case protoUDP:
		return 2
	case protoICMP:
		return 4
	case protoICMPv6:
		return 8
	}
	return 0
}

// admits reports whether cr admits protocol proto (with bit pb =
// protoBit(proto)) to destination port dport; ported says whether proto
// has ports.
func (cr *compiledRule) admits(proto, pb uint8, ported bool, dport uint16) bool {
	if pb == 0 {
		return cr.protos.has(proto)
	}
	if cr.common&pb == 0 {
		return false
	}
	return !ported || (dport >= cr.first.First && dport <= cr.first.Last) || (len(cr.ports) > 1 && hasPort(cr.ports[1:], dport))
}

type protoSet [4]uint64

func (s *protoSet) add(p uint8)      { s[p>>6] |= 1 << (p & 63) }
func (s *protoSet) del(p uint8)      { s[p>>6] &^= 1 << (p & 63) }
func (s *protoSet) has(p uint8) bool { return s[p>>6]&(1<<(p&63)) != 0 }
func (s *protoSet) empty() bool      { return *s == protoSet{} }

// hasPort reports whether sorted, merged ranges rs hold port p.
func hasPort(rs []wire.PortRange, p uint16) bool {
	// The first range whose Last >= p is the only one that may hold p.
	lo, hi := 0, len(rs)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if rs[m].Last < p {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo < len(rs) && rs[lo].First <= p
}

// selfRange4 and selfRange6 are inclusive address ranges.
type selfRange4 struct{ lo, hi uint32 }

type selfRange6 struct{ lo, hi addr }

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
// the rule set is usable either way. A rule with no Sources or Protocols
// matches nothing and is left out without an error, and so is one without
// Ports whose protocols are only TCP and UDP (ports matter for those two
// alone: a rule naming ICMP and no ports admits ICMP). Rules that have
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
		first, last := prefixRange(p.Masked())
		if p.Addr().Is4() {
			rs.self4 = append(rs.self4, selfRange4{uint32(first.lo), uint32(last.lo)})
		} else {
			rs.self6 = append(rs.self6, selfRange6{first, last})
		}
	}

	type span struct {
		start, end addr // end exclusive
		endless    bool // the span runs to the end of the address space
		rule       uint32
	}
	var spans4, spans6 []span
	exact4 := map[uint32][]uint32{}
	exact6 := map[addr][]uint32{}
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
			switch {
			case p.Bits() == 32 && p.Addr().Is4():
				a := uint32(addrFrom(p.Addr()).lo)
				exact4[a] = append(exact4[a], idx)
				continue
			case p.Bits() == 128:
				a := addrFrom(p.Addr())
				exact6[a] = append(exact6[a], idx)
				continue
			}
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
	interned := map[string]listRef{}
	intern := func(active []uint32) listRef {
		switch len(active) {
		case 0:
			return noList
		case 1:
			return singleRule | listRef(active[0])
		}
		kb := make([]byte, 0, 4*len(active))
		for _, a := range active {
			kb = binary.LittleEndian.AppendUint32(kb, a)
		}
		k := string(kb)
		if l, ok := interned[k]; ok {
			return l
		}
		rs.lists = append(rs.lists, uint32(len(active)))
		l := listRef(len(rs.lists))
		rs.lists = append(rs.lists, active...)
		interned[k] = l
		return l
	}
	sweep := func(spans []span) (starts []addr, ids []listRef) {
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
		starts, ids = []addr{{}}, []listRef{noList}
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
	starts6, lists6 := sweep(spans6)
	// union returns the list of the rules in list l and in more.
	union := func(l listRef, more []uint32) listRef {
		var one [1]uint32
		all := append(slices.Clone(rs.listOf(l, &one)), more...)
		slices.Sort(all)
		return intern(slices.Compact(all))
	}
	s4 := make([]uint32, len(starts4))
	for i, a := range starts4 {
		s4[i] = uint32(a.lo)
	}
	rs.ends = make([]int64, 1, min(len(rs.rules), refRematch-1)+1)
	rs.ends[0] = math.MaxInt64
	for i := range cap(rs.ends) - 1 {
		e := rs.rules[i].expiry
		if e == 0 {
			e = math.MaxInt64
		}
		rs.ends = append(rs.ends, e)
	}
	rs.src4 = newSrcIndex4(s4, lists4, exact4, union)
	rs.src6 = newSrcIndex6(starts6, lists6, exact6, union)
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
	if len(r.Ports) == 0 {
		// No wildcard: without ports a rule admits no TCP or UDP at all.
		cr.protos.del(protoTCP)
		cr.protos.del(protoUDP)
	}
	if len(r.Sources) == 0 || cr.protos.empty() {
		return nil, nil
	}
	if len(r.Ports) > 0 {
		cr.ports = mergePorts(r.Ports)
		cr.first = cr.ports[0]
	} else {
		cr.first = wire.PortRange{First: 1, Last: 0}
	}
	for _, p := range []uint8{protoTCP, protoUDP, protoICMP, protoICMPv6} {
		if cr.protos.has(p) {
			cr.common |= protoBit(p)
		}
	}
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

// isSelf reports whether a (of family v) is one of this node's addresses.
func (rs *ruleSet) isSelf(v uint8, a addr) bool {
	if v == 4 {
		x := uint32(a.lo)
		for _, r := range rs.self4 {
			if x >= r.lo && x <= r.hi {
				return true
			}
		}
		return false
	}
	for i := range rs.self6 {
		r := &rs.self6[i]
		if !a.less(r.lo) && !r.hi.less(a) {
			return true
		}
	}
	return false
}

// match decides whether a packet of family v and protocol proto from src
// to dst (destination port dport, used for TCP and UDP only) may start a
// flow at wall-clock time wall (Unix nanoseconds). On AcceptRule, ref names
// the admitting rule that ends last (see flowState): 0 if one never ends,
// else 1 + its index; the flow must be checked again when it ends.
func (rs *ruleSet) match(v, proto uint8, src, dst addr, dport uint16, wall int64) (r Reason, ref uint32) {
	if v == 4 {
		return rs.match4(uint32(src.lo), uint32(dst.lo), proto, dport, wall)
	}
	if !rs.isSelf(v, dst) {
		return DropNotLocal, 0
	}
	return rs.matchList(rs.src6.lookup(src), proto, dport, wall)
}

// match4 is match for IPv4. It is written flat (no calls on the common
// path: one source address, one rule): it is most of what a new flow
// costs.
func (rs *ruleSet) match4(src, dst uint32, proto uint8, dport uint16, wall int64) (r Reason, ref uint32) {
	// The first of this node's ranges (mostly its only one) without a
	// loop; the others, if it is not in that one.
	if len(rs.self4) == 0 || dst-rs.self4[0].lo > rs.self4[0].hi-rs.self4[0].lo { // not lo <= dst <= hi
		if !rs.isSelf(4, addr{lo: uint64(dst)}) {
			return DropNotLocal, 0
		}
	}
	l := rs.src4.lookup(src)
	if l&singleRule == 0 {
		return rs.matchList(l, proto, dport, wall)
	}
	i := uint32(l &^ singleRule)
	cr := &rs.rules[i]
	pb := protoBit(proto)
	switch {
	case pb == 0:
		if !cr.protos.has(proto) {
			return DropNoRule, 0
		}
	case cr.common&pb == 0:
		return DropNoRule, 0
	case pb&3 != 0 && dport-cr.first.First > cr.first.Last-cr.first.First && !(len(cr.ports) > 1 && hasPort(cr.ports[1:], dport)):
		// A TCP or UDP port outside the first range (whose First is
		// at most its Last, or the rule has no ports and admits
		// neither protocol) and the others.
		return DropNoRule, 0
	}
	switch {
	case cr.expiry == 0:
		return AcceptRule, 0
	case wall < cr.expiry:
		return AcceptRule, min(i+1, refRematch)
	}
	return DropExpired, 0
}

// matchList is the rest of match once the source's rule list l is known.
func (rs *ruleSet) matchList(l listRef, proto uint8, dport uint16, wall int64) (r Reason, ref uint32) {
	if l == noList {
		return DropNoRule, 0
	}
	pb := protoBit(proto)
	ported := pb&3 != 0 // TCP or UDP
	var one [1]uint32
	r = DropNoRule
	var expiry int64
	for _, i := range rs.listOf(l, &one) {
		cr := &rs.rules[i]
		if !cr.admits(proto, pb, ported, dport) {
			continue
		}
		switch {
		case cr.expiry == 0:
			return AcceptRule, 0
		case wall < cr.expiry:
			if r != AcceptRule || cr.expiry > expiry {
				expiry, ref = cr.expiry, min(i+1, refRematch)
			}
			r = AcceptRule
		case r != AcceptRule:
			r = DropExpired
		}
	}
	return r, ref
}

// current reports whether flow state st of an inbound flow was decided by
// rs and the rule that admitted it (if any) has not ended at wall: then
// st's flags need no new check.
func (rs *ruleSet) current(st flowState, wall int64) bool {
	ref := stRef(st)
	return stGen(st) == uint32(rs.gen) && int(ref) < len(rs.ends) && wall < rs.ends[ref]
}
