package compile

import (
	"math/bits"
	"slices"
	"strings"

	"github.com/latchnet/latch/wire"
)

// entry is one of a node's rules and whom it admits: the nodes a policy
// rule's sources select, or a grant's source.
type entry struct {
	fr   *wire.FilterRule
	rule int32 // source rule, -1 for a grant
	gsrc int32 // a grant's source slot, -1 if not in the inventory or the node itself
}

// entries appends the rules of slot s in st to dst, sorted by ID.
func (c *Compiler) entries(st *state, s int32, dst []entry) []entry {
	dst = dst[:0]
	m := &st.mem[s]
	for _, t := range m.dst {
		tg := &st.pol.targets[t]
		for i := range tg.rules {
			dst = append(dst, entry{fr: &tg.rules[i], rule: tg.rule, gsrc: -1})
		}
	}
	for _, v := range m.svcs {
		for _, g := range st.gi.bySvc[v] {
			cg := &st.gi.list[g]
			gs := int32(-1)
			if p, ok := c.byID[cg.src]; ok && p != s && cg.usableBy(&st.mem[p]) {
				gs = p // a grant's source that provides the service itself is not its own peer
			}
			for i := range cg.rules {
				dst = append(dst, entry{fr: &cg.rules[i], rule: -1, gsrc: gs})
			}
		}
	}
	slices.SortFunc(dst, func(a, b entry) int { return strings.Compare(a.fr.ID, b.fr.ID) })
	return dst
}

// sameView reports whether slot s has the same view in states a and b
// without building either: the same rules, each admitting the same nodes,
// and the same peers. (A peer's rule list is the rules admitting it, so
// equal admitted sets give equal lists.)
func (c *Compiler) sameView(a, b *state, s int32) bool {
	c.entA = c.entries(a, s, c.entA)
	c.entB = c.entries(b, s, c.entB)
	if len(c.entA) != len(c.entB) {
		return false
	}
	lastA, lastB := int32(-1), int32(-1)
	for i := range c.entA {
		ea, eb := &c.entA[i], &c.entB[i]
		if !ruleEqual(ea.fr, eb.fr) || (ea.rule < 0) != (eb.rule < 0) {
			return false
		}
		if ea.rule < 0 {
			if ea.gsrc != eb.gsrc {
				return false
			}
			continue
		}
		if ea.rule == lastA && eb.rule == lastB {
			continue // the targets of one rule admit the same nodes
		}
		if !equalExcept(a.src[ea.rule], b.src[eb.rule], s) {
			return false
		}
		lastA, lastB = ea.rule, eb.rule
	}
	pa := c.peers(a, s, c.bufA)
	pb := c.peers(b, s, c.bufB)
	c.bufA, c.bufB = pa, pb
	return equalExcept(pa, pb, -1)
}

// equalExcept reports whether x and y hold the same members other than
// skip.
func equalExcept(x, y bitset, skip int32) bool {
	if len(x) < len(y) {
		x, y = y, x
	}
	sw, sb := -1, uint64(0)
	if skip >= 0 {
		sw, sb = int(skip>>6), 1<<(uint(skip)&63)
	}
	for w := range x {
		d := x[w]
		if w < len(y) {
			d ^= y[w]
		}
		if w == sw {
			d &^= sb
		}
		if d != 0 {
			return false
		}
	}
	return true
}

// view builds the View of slot s in the current state.
func (c *Compiler) view(s int32) View {
	st := c.st
	c.entA = c.entries(st, s, c.entA)
	ents := c.entA
	var v View
	if len(ents) > 0 {
		v.Rules = make([]wire.FilterRule, len(ents))
		for i, e := range ents {
			v.Rules[i] = *e.fr
			v.Rules[i].Protocols = slices.Clone(e.fr.Protocols)
			v.Rules[i].Ports = slices.Clone(e.fr.Ports)
		}
	}
	peers := c.peers(st, s, c.bufV)
	c.bufV = peers
	c.slots = c.sorted(peers, c.slots[:0])
	if len(c.slots) == 0 {
		return v
	}

	// Each peer's mask over ents: the rules admitting it. Built per rule
	// by walking the rule's sources among the peers, into pm indexed by
	// slot (w words per slot), which is cleared again below.
	w := words(len(ents))
	if need := len(c.nodes) * w; len(c.pm) < need {
		c.pm = make([]uint64, need)
	}
	pm := c.pm
	for i, e := range ents {
		bit := uint64(1) << (uint(i) & 63)
		k := i >> 6
		switch {
		case e.rule >= 0:
			src := st.src[e.rule]
			n := min(len(src), len(peers))
			for j := range n {
				for x := src[j] & peers[j]; x != 0; x &= x - 1 {
					pm[(j<<6|bits.TrailingZeros64(x))*w+k] |= bit
				}
			}
		case e.gsrc >= 0 && peers.has(e.gsrc):
			pm[int(e.gsrc)*w+k] |= bit
		}
	}

	// Peers with the same mask share one rule list; the lists live back
	// to back in one array, each with no spare capacity so that appending
	// to one copies it.
	total := 0
	for _, p := range c.slots {
		for _, x := range pm[int(p)*w : int(p)*w+w] {
			total += bits.OnesCount64(x)
		}
	}
	flat := make([]string, 0, total)
	v.Peers = make([]PeerView, len(c.slots))
	clear(c.intern1)
	if c.intern1 == nil {
		c.intern1 = map[uint64][]string{}
	}
	var lastMask uint64
	var lastList []string
	for i, p := range c.slots {
		v.Peers[i].ID = c.idOf[p]
		mask := pm[int(p)*w : int(p)*w+w]
		if w == 1 {
			m := mask[0]
			mask[0] = 0
			switch {
			case m == 0:
			case m == lastMask:
				v.Peers[i].Rules = lastList
			default:
				l, ok := c.intern1[m]
				if !ok {
					start := len(flat)
					for x := m; x != 0; x &= x - 1 {
						flat = append(flat, ents[bits.TrailingZeros64(x)].fr.ID)
					}
					l = flat[start:len(flat):len(flat)]
					c.intern1[m] = l
				}
				v.Peers[i].Rules = l
				lastMask, lastList = m, l
			}
			continue
		}
		// No rules, or more than 64: rare enough not to intern.
		start := len(flat)
		for k, x := range mask {
			for ; x != 0; x &= x - 1 {
				flat = append(flat, ents[k<<6|bits.TrailingZeros64(x)].fr.ID)
			}
		}
		clear(mask)
		if len(flat) > start {
			v.Peers[i].Rules = flat[start:len(flat):len(flat)]
		}
	}
	return v
}
