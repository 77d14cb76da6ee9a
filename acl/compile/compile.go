package compile

import (
	"maps"
	"math/bits"
	"slices"
	"strings"

	"github.com/latchnet/latch/acl/policy"
	"github.com/latchnet/latch/wire"
)

// How the compiler works. Nodes live in slots (small integers, reused
// after removal). For every rule the state keeps the set of nodes its
// sources select and the set its targets select, as bitsets over slots,
// and for every service the nodes providing it; for every node, which
// rules, targets and services it is in (its member). Views are not
// stored: a view is a few bitset unions away, so the state stays small
// (kilobytes per rule) however many pairs the policy admits.
//
// Visibility is symmetric (P sees X exactly when X sees P), so the nodes
// that see X are X's peers: no reverse index is needed.
//
// A change to one node N changes other nodes' views only in their entry
// for N, so Upsert compares just that entry at the nodes that see N before
// or after, and N's own view; Remove reports every node that saw N.
// SetPolicy and SetGrants compare each affected node's rules, the nodes
// each rule admits, and its peers, old against new, without building views.

// Compiler maintains every node's View for one policy. Not safe for
// concurrent use, not even View: the caller serializes.
type Compiler struct {
	st     *state
	grants []Grant // as last set

	nodes []slot
	free  []int32
	byID  map[wire.NodeID]int32
	idOf  []wire.NodeID // slot -> node ID, "" if free
	order []int32       // used slots sorted by node ID
	rank  []int32       // slot -> its position in order

	// Scratch, reused between calls.
	bufA, bufB, bufC, bufV, bufSort bitset
	rulesA, rulesB                  bitset
	entA, entB                      []entry
	slots                           []int32
	pm                              []uint64 // per slot rule masks; all zero between calls
	intern1                         map[uint64][]string
}

type slot struct {
	node Node
	used bool
}

// state is everything derived from the policy and grants for the current
// slots. SetPolicy and SetGrants build a new one beside the old to compare
// views.
type state struct {
	pol *compiled
	gi  *grantIndex
	mem []member // by slot
	src []bitset // by rule: slots its sources select
	dst []bitset // by rule: slots its targets select
	prv []bitset // by service: slots providing it
}

// New returns a compiler for p (nil p admits nothing) with no nodes.
func New(p *policy.Policy) *Compiler {
	c := &Compiler{byID: map[wire.NodeID]int32{}}
	cp := compilePolicy(p)
	c.st = c.newState(cp, indexGrants(cp, nil))
	return c
}

// newState evaluates every node against cp.
func (c *Compiler) newState(cp *compiled, gi *grantIndex) *state {
	st := &state{
		pol: cp,
		gi:  gi,
		mem: make([]member, len(c.nodes)),
		src: make([]bitset, len(cp.rules)),
		dst: make([]bitset, len(cp.rules)),
		prv: make([]bitset, len(cp.svcs)),
	}
	for s := range c.nodes {
		if c.nodes[s].used {
			c.setMember(st, int32(s), cp.member(&c.nodes[s].node))
		}
	}
	return st
}

func (c *Compiler) setMember(st *state, s int32, m member) {
	st.mem[s] = m
	for _, r := range m.src {
		st.src[r].set(s)
	}
	for _, t := range m.dst {
		st.dst[st.pol.targets[t].rule].set(s)
	}
	for _, v := range m.svcs {
		st.prv[v].set(s)
	}
}

func (c *Compiler) clearMember(st *state, s int32) {
	m := &st.mem[s]
	for _, r := range m.src {
		st.src[r].unset(s)
	}
	for _, t := range m.dst {
		st.dst[st.pol.targets[t].rule].unset(s)
	}
	for _, v := range m.svcs {
		st.prv[v].unset(s)
	}
	*m = member{}
}

// SetPolicy replaces the policy (nil admits nothing) and returns the nodes
// whose view changed, sorted. Grants are resolved again against the new
// policy's services.
func (c *Compiler) SetPolicy(p *policy.Policy) []wire.NodeID {
	cp := compilePolicy(p)
	return c.replace(c.newState(cp, indexGrants(cp, c.grants)), nil)
}

// SetGrants replaces the active grants and returns the nodes whose view
// changed, sorted. A grant admits nothing if the policy does not define
// its service or it has no valid ports (a grant for all of a service's
// ports must list them); of grants sharing an ID only the first counts.
func (c *Compiler) SetGrants(gs []Grant) []wire.NodeID {
	c.grants = slices.Clone(gs)
	for i := range c.grants {
		c.grants[i].Ports = slices.Clone(c.grants[i].Ports)
		c.grants[i].SrcPosture = slices.Clone(c.grants[i].SrcPosture)
	}
	old := c.st
	ns := *old
	ns.gi = indexGrants(old.pol, c.grants)
	// Only nodes a changed grant touches can see a difference: its source
	// and the nodes providing its service.
	touched := c.bufC.reset(len(c.nodes))
	for _, g := range changedGrants(old.gi, ns.gi) {
		if s, ok := c.byID[g.src]; ok {
			touched.set(s)
		}
		touched.or(old.prv[g.svc])
	}
	c.bufC = touched
	return c.replace(&ns, touched)
}

// replace makes ns the state and returns the nodes whose view differs
// between the old state and ns, checking only those in candidates (all
// nodes if nil).
func (c *Compiler) replace(ns *state, candidates bitset) []wire.NodeID {
	old := c.st
	changed := make(bitset, words(len(c.nodes)))
	check := func(s int32) {
		if !c.sameView(old, ns, s) {
			changed.set(s)
		}
	}
	if candidates == nil {
		for _, s := range c.order {
			check(s)
		}
	} else {
		for w, x := range candidates {
			for ; x != 0; x &= x - 1 {
				check(int32(w<<6 | bits.TrailingZeros64(x)))
			}
		}
	}
	c.st = ns
	return c.ids(changed)
}

// Upsert adds or replaces a node and returns the nodes whose view changed,
// sorted: when n is new, n itself and every node that now sees it; when n
// changes, those whose entry for n changed (it appeared, went or lists
// other rules) and n if its own view changed. A change that leaves n's
// standing under the policy as it was (its addresses, say, or a posture
// change that satisfies the same postures) changes no view. Posture and
// quarantine are part of n's standing like its tags: call Upsert whenever
// they change.
func (c *Compiler) Upsert(n Node) []wire.NodeID {
	n.Tags = slices.Clone(n.Tags)
	n.Addresses = slices.Clone(n.Addresses)
	n.Posture = maps.Clone(n.Posture)
	st := c.st
	nm := st.pol.member(&n)
	s, ok := c.byID[n.ID]
	if !ok {
		s = c.alloc(n)
		c.setMember(st, s, nm)
		peers := c.peers(st, s, c.bufA)
		peers.set(s)
		c.bufA = peers
		return c.ids(peers)
	}
	c.nodes[s].node = n
	om := st.mem[s]
	if om.equal(&nm) {
		return nil
	}
	before := c.peers(st, s, c.bufA)
	c.bufA = before
	c.rulesA = c.rulesA.reset(len(st.pol.rules))
	for _, r := range om.src {
		c.rulesA.set(r)
	}
	c.rulesB = c.rulesB.reset(len(st.pol.rules))
	for _, r := range nm.src {
		c.rulesB.set(r)
	}

	c.clearMember(st, s)
	c.setMember(st, s, nm)

	after := c.peers(st, s, c.bufB)
	c.bufB = after

	changed := c.bufC.reset(len(c.nodes))
	c.bufC = changed
	// n's own view: its rules are its targets and the grants for the
	// services it provides; each admits the same nodes as before (only n
	// changed, and n does not count); its peers are before and after.
	if !slices.Equal(om.dst, nm.dst) || !c.sameGrants(st, om.svcs, nm.svcs) || !equalExcept(before, after, -1) {
		changed.set(s)
	}
	// Grants from n that n could use before and not after, or the other
	// way round: each node providing the service (n aside) lists or
	// unlists the grant's rule in its entry for n.
	for _, g := range st.gi.bySrc[n.ID] {
		cg := &st.gi.list[g]
		if cg.usableBy(&om) == cg.usableBy(&nm) {
			continue
		}
		for w, x := range st.prv[cg.svc] {
			for ; x != 0; x &= x - 1 {
				if p := int32(w<<6 | bits.TrailingZeros64(x)); p != s {
					changed.set(p)
				}
			}
		}
	}
	for w := range before {
		x := before[w] | after[w]
		for ; x != 0; x &= x - 1 {
			p := int32(w<<6 | bits.TrailingZeros64(x))
			if before.has(p) != after.has(p) {
				changed.set(p)
				continue
			}
			// Visible before and after: p's entry for n lists p's
			// targets whose rule's sources select n, and the grants
			// from n (handled above).
			for _, t := range st.mem[p].dst {
				r := st.pol.targets[t].rule
				if c.rulesA.has(r) != c.rulesB.has(r) {
					changed.set(p)
					break
				}
			}
		}
	}
	return c.ids(changed)
}

// Remove deletes a node and returns the nodes whose view changed (every
// node that saw it), sorted. The removed node has no view any more and is
// not listed.
func (c *Compiler) Remove(id wire.NodeID) []wire.NodeID {
	s, ok := c.byID[id]
	if !ok {
		return nil
	}
	peers := c.peers(c.st, s, c.bufA)
	c.bufA = peers
	out := c.ids(peers)
	c.clearMember(c.st, s)
	c.release(s)
	return out
}

// View returns a node's view, or false if the node is unknown. Peers with
// the same rules share one Rules slice: do not modify its elements.
func (c *Compiler) View(id wire.NodeID) (View, bool) {
	s, ok := c.byID[id]
	if !ok {
		return View{}, false
	}
	return c.view(s), true
}

// SeenBy returns the nodes that have id in their view (whose netmaps must
// change when id's details, such as its endpoints, change), sorted. These
// are exactly id's own peers.
func (c *Compiler) SeenBy(id wire.NodeID) []wire.NodeID {
	s, ok := c.byID[id]
	if !ok {
		return nil
	}
	peers := c.peers(c.st, s, c.bufA)
	c.bufA = peers
	return c.ids(peers)
}

// Peer returns the entry for peer in viewer's view, or false if viewer
// does not see peer (or either is unknown). It costs far less than View:
// after peer joins or changes, each node Upsert reported needs only this
// entry upserted or, when it is gone, removed, plus its own full view for
// peer itself.
func (c *Compiler) Peer(viewer, peer wire.NodeID) (PeerView, bool) {
	vs, ok1 := c.byID[viewer]
	ps, ok2 := c.byID[peer]
	if !ok1 || !ok2 || vs == ps {
		return PeerView{}, false
	}
	st := c.st
	vm := &st.mem[vs]
	var ids []string
	for _, t := range vm.dst {
		if st.src[st.pol.targets[t].rule].has(ps) {
			for i := range st.pol.targets[t].rules {
				ids = append(ids, st.pol.targets[t].rules[i].ID)
			}
		}
	}
	for _, v := range vm.svcs {
		for _, g := range st.gi.bySvc[v] {
			if st.gi.list[g].src == peer && st.gi.list[g].usableBy(&st.mem[ps]) {
				for i := range st.gi.list[g].rules {
					ids = append(ids, st.gi.list[g].rules[i].ID)
				}
			}
		}
	}
	if len(ids) > 0 {
		slices.Sort(ids)
		return PeerView{ID: peer, Rules: ids}, true
	}
	for _, r := range vm.src {
		if st.dst[r].has(ps) {
			return PeerView{ID: peer}, true
		}
	}
	for _, g := range st.gi.bySrc[viewer] {
		if st.gi.list[g].usableBy(vm) && st.prv[st.gi.list[g].svc].has(ps) {
			return PeerView{ID: peer}, true
		}
	}
	return PeerView{}, false
}

// sameGrants reports whether providing services a and b yields the same
// grant rules.
func (c *Compiler) sameGrants(st *state, a, b []int32) bool {
	var ga, gb []int32
	for _, v := range a {
		ga = append(ga, st.gi.bySvc[v]...)
	}
	for _, v := range b {
		gb = append(gb, st.gi.bySvc[v]...)
	}
	slices.Sort(ga)
	slices.Sort(gb)
	return slices.Equal(ga, gb)
}

// peers returns the slots of the nodes s sees in st (into buf): those its
// rules admit from, those it may reach, and grant partners.
func (c *Compiler) peers(st *state, s int32, buf bitset) bitset {
	out := buf.reset(len(c.nodes))
	m := &st.mem[s]
	last := int32(-1)
	for _, t := range m.dst {
		if r := st.pol.targets[t].rule; r != last {
			out.or(st.src[r])
			last = r
		}
	}
	for _, r := range m.src {
		out.or(st.dst[r])
	}
	for _, v := range m.svcs {
		for _, g := range st.gi.bySvc[v] {
			if p, ok := c.byID[st.gi.list[g].src]; ok && st.gi.list[g].usableBy(&st.mem[p]) {
				out.set(p)
			}
		}
	}
	for _, g := range st.gi.bySrc[c.idOf[s]] {
		if st.gi.list[g].usableBy(m) {
			out.or(st.prv[st.gi.list[g].svc])
		}
	}
	out.unset(s)
	return out
}

// sorted appends the slots in set to dst in node ID order.
func (c *Compiler) sorted(set bitset, dst []int32) []int32 {
	rb := c.bufSort.reset(len(c.nodes))
	c.bufSort = rb
	for w, x := range set {
		for ; x != 0; x &= x - 1 {
			r := c.rank[w<<6|bits.TrailingZeros64(x)]
			rb[r>>6] |= 1 << (uint(r) & 63)
		}
	}
	for w, x := range rb {
		for ; x != 0; x &= x - 1 {
			dst = append(dst, c.order[w<<6|bits.TrailingZeros64(x)])
		}
	}
	return dst
}

// ids returns the node IDs of the slots in set, sorted.
func (c *Compiler) ids(set bitset) []wire.NodeID {
	n := 0
	for _, x := range set {
		n += bits.OnesCount64(x)
	}
	if n == 0 {
		return nil
	}
	out := make([]wire.NodeID, 0, n)
	rb := c.bufSort.reset(len(c.nodes))
	c.bufSort = rb
	for w, x := range set {
		for ; x != 0; x &= x - 1 {
			r := c.rank[w<<6|bits.TrailingZeros64(x)]
			rb[r>>6] |= 1 << (uint(r) & 63)
		}
	}
	for w, x := range rb {
		for ; x != 0; x &= x - 1 {
			out = append(out, c.idOf[c.order[w<<6|bits.TrailingZeros64(x)]])
		}
	}
	return out
}

// alloc gives n a slot and a place in the ID order.
func (c *Compiler) alloc(n Node) int32 {
	var s int32
	if k := len(c.free); k > 0 {
		s = c.free[k-1]
		c.free = c.free[:k-1]
		c.nodes[s] = slot{node: n, used: true}
		c.idOf[s] = n.ID
	} else {
		s = int32(len(c.nodes))
		c.nodes = append(c.nodes, slot{node: n, used: true})
		c.idOf = append(c.idOf, n.ID)
		c.rank = append(c.rank, 0)
		c.st.mem = append(c.st.mem, member{})
	}
	c.byID[n.ID] = s
	pos, _ := slices.BinarySearchFunc(c.order, n.ID, func(o int32, id wire.NodeID) int {
		return strings.Compare(string(c.idOf[o]), string(id))
	})
	c.order = slices.Insert(c.order, pos, s)
	c.renumber(pos)
	return s
}

func (c *Compiler) release(s int32) {
	pos := int(c.rank[s])
	c.order = slices.Delete(c.order, pos, pos+1)
	c.renumber(pos)
	delete(c.byID, c.idOf[s])
	c.nodes[s] = slot{}
	c.idOf[s] = ""
	c.free = append(c.free, s)
}

func (c *Compiler) renumber(from int) {
	for i := from; i < len(c.order); i++ {
		c.rank[c.order[i]] = int32(i)
	}
}
