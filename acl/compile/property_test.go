package compile

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/latchnet/latch/acl/policy"
	"github.com/latchnet/latch/wire"
)

// The reference: what the compiler must produce, computed the slow and
// obvious way, for every pair of nodes, every rule and every target.

func refSelects(p *policy.Policy, s policy.Selector, n Node) bool {
	if s.Name == "" {
		return false
	}
	// Quarantine: status:quarantined selects exactly the quarantined.
	if s.Kind == policy.SelQuarantined {
		return n.Quarantined && s.Name == "status:quarantined"
	}
	if n.Quarantined {
		return false
	}
	untaggedOwner := len(n.Tags) == 0 && n.Owner != ""
	switch s.Kind {
	case policy.SelTag:
		return slices.Contains(n.Tags, wire.Tag(s.Name))
	case policy.SelService:
		svc := p.Services[s.Name]
		if svc == nil {
			return false
		}
		for _, t := range svc.Tags {
			if slices.Contains(n.Tags, t) {
				return true
			}
		}
	case policy.SelGroup:
		return untaggedOwner && slices.Contains(p.Groups[s.Name], n.Owner)
	case policy.SelUser:
		return untaggedOwner && n.Owner == s.Name
	case policy.SelNode:
		return n.Name != "" && s.Name == "node:"+n.Name
	}
	return false
}

func refTargetSelects(p *policy.Policy, t policy.Target, n Node) bool {
	return (t.Sel.Kind == policy.SelTag || t.Sel.Kind == policy.SelService || t.Sel.Kind == policy.SelQuarantined) && refSelects(p, t.Sel, n)
}

// refAdmits reports whether a target's ports admit anything at all.
func refAdmits(specs []policy.PortSpec) bool {
	for _, s := range specs {
		switch s.Proto {
		case wire.ProtoICMP:
			return true
		case wire.ProtoTCP, wire.ProtoUDP:
			if s.Ports.First >= 1 && s.Ports.First <= s.Ports.Last {
				return true
			}
		}
	}
	return false
}

func refSrc(p *policy.Policy, r *policy.Rule, n Node) bool {
	for _, s := range r.Src {
		if refSelects(p, s, n) {
			return refPostures(p, r.SrcPosture, n.Posture)
		}
	}
	return false
}

// refGrants returns the grants that count: the first of each ID, for a
// service the policy defines, with some valid port.
func refGrants(p *policy.Policy, gs []Grant) []Grant {
	var out []Grant
	seen := map[string]bool{}
	for _, g := range gs {
		if seen[g.ID] {
			continue
		}
		seen[g.ID] = true
		if p != nil && p.Services[g.Service] != nil && refAdmits(g.Ports) {
			out = append(out, g)
		}
	}
	return out
}

func refProvides(p *policy.Policy, g Grant, n Node) bool {
	return refSelects(p, policy.Selector{Kind: policy.SelService, Name: g.Service}, n)
}

// refView computes x's view from scratch. The policy's rule IDs must be
// unique and non-empty (as the parser makes them).
func refView(p *policy.Policy, nodes []Node, gs []Grant, x Node) View {
	var v View
	if p == nil {
		return v
	}
	gs = refGrants(p, gs)
	// (rule, target) -> its filter rules; admits(peer) for each.
	type inbound struct {
		rules []wire.FilterRule
		from  func(Node) bool
	}
	var in []inbound
	for _, r := range p.Rules {
		for _, t := range r.Dst {
			if refTargetSelects(p, t, x) && refAdmits(t.Ports) {
				in = append(in, inbound{render(tid(r.ID, t), t.Ports, time.Time{}), func(n Node) bool { return refSrc(p, r, n) }})
			}
		}
	}
	for _, g := range gs {
		if refProvides(p, g, x) {
			in = append(in, inbound{render(grantPrefix+g.ID, g.Ports, g.Expires), func(n Node) bool { return refGrantFrom(p, g, n) }})
		}
	}
	seen := map[string]bool{}
	for _, b := range in {
		for _, fr := range b.rules {
			if !seen[fr.ID] { // the same target twice in a rule is one rule
				seen[fr.ID] = true
				v.Rules = append(v.Rules, fr)
			}
		}
	}
	slices.SortFunc(v.Rules, func(a, b wire.FilterRule) int { return strings.Compare(a.ID, b.ID) })
	for _, n := range nodes {
		if n.ID == x.ID {
			continue
		}
		var ids []string
		for _, b := range in {
			if b.from(n) {
				for _, fr := range b.rules {
					ids = append(ids, fr.ID)
				}
			}
		}
		slices.Sort(ids)
		ids = slices.Compact(ids)
		if len(ids) > 0 || refRelated(p, gs, x, n) {
			v.Peers = append(v.Peers, PeerView{ID: n.ID, Rules: ids})
		}
	}
	slices.SortFunc(v.Peers, func(a, b PeerView) int { return strings.Compare(string(a.ID), string(b.ID)) })
	return v
}

// refRelated reports whether a rule or grant lets a reach b or b reach a.
func refRelated(p *policy.Policy, gs []Grant, a, b Node) bool {
	reach := func(from, to Node) bool {
		for _, r := range p.Rules {
			if !refSrc(p, r, from) {
				continue
			}
			for _, t := range r.Dst {
				if refTargetSelects(p, t, to) && refAdmits(t.Ports) {
					return true
				}
			}
		}
		for _, g := range gs {
			if refGrantFrom(p, g, from) && refProvides(p, g, to) {
				return true
			}
		}
		return false
	}
	return reach(a, b) || reach(b, a)
}

// refPairs lists every (src, dst, proto, port) the rules admit, port by
// port, then joins runs of ports.
func refPairs(p *policy.Policy, nodes []Node) []Pair {
	if p == nil {
		return nil
	}
	type key struct{ src, dst, proto string }
	ports := map[key]map[int]bool{}
	for _, s := range nodes {
		for _, d := range nodes {
			if s.ID == d.ID {
				continue
			}
			for _, r := range p.Rules {
				if !refSrc(p, r, s) {
					continue
				}
				for _, t := range r.Dst {
					if !refTargetSelects(p, t, d) {
						continue
					}
					for _, sp := range t.Ports {
						k := key{s.Name, d.Name, protoName(sp.Proto)}
						switch sp.Proto {
						case wire.ProtoICMP:
							if ports[k] == nil {
								ports[k] = map[int]bool{}
							}
						case wire.ProtoTCP, wire.ProtoUDP:
							if sp.Ports.First == 0 {
								continue // invalid: admits nothing
							}
							for q := int(sp.Ports.First); q <= int(sp.Ports.Last); q++ {
								if ports[k] == nil {
									ports[k] = map[int]bool{}
								}
								ports[k][q] = true
							}
						}
					}
				}
			}
		}
	}
	var out []Pair
	for k, set := range ports {
		if k.proto == "icmp" {
			out = append(out, Pair{Src: k.src, Dst: k.dst, Proto: k.proto})
			continue
		}
		var qs []int
		for q := range set {
			qs = append(qs, q)
		}
		slices.Sort(qs)
		for i := 0; i < len(qs); {
			j := i
			for j+1 < len(qs) && qs[j+1] == qs[j]+1 {
				j++
			}
			out = append(out, Pair{Src: k.src, Dst: k.dst, Proto: k.proto, Ports: rangeText(wire.PortRange{First: uint16(qs[i]), Last: uint16(qs[j])})})
			i = j + 1
		}
	}
	slices.SortFunc(out, ComparePairs)
	return out
}

// Random policies and inventories, small enough that selectors overlap.

type gen struct {
	r     *rand.Rand
	users []string
}

func newGen(seed uint64) *gen {
	return &gen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), users: []string{"u0@x", "u1@x", "u2@x", "u3@x"}}
}

func (g *gen) pick(s []string) string { return s[g.r.IntN(len(s))] }

func (g *gen) tag() string { return fmt.Sprintf("tag:t%d", g.r.IntN(6)) }

func (g *gen) specs() []policy.PortSpec {
	var out []policy.PortSpec
	for range 1 + g.r.IntN(3) {
		lo := uint16(1 + g.r.IntN(40))
		hi := lo + uint16(g.r.IntN(4))
		switch g.r.IntN(12) {
		case 0, 1, 2:
			out = append(out, tcp(lo, hi))
		case 3, 4:
			out = append(out, udp(lo, hi))
		case 5, 6:
			out = append(out, tcp(lo, hi), udp(lo, hi)) // a bare port
		case 7:
			out = append(out, icmp)
		case 8:
			out = append(out, tcp(hi+1, lo)) // reversed: admits nothing
		case 9:
			out = append(out, tcp(0, hi)) // port 0: refused
		case 10:
			out = append(out, policy.PortSpec{Proto: 47}) // unknown protocol
		default:
			out = append(out, tcp(lo, lo+uint16(g.r.IntN(300))))
		}
	}
	return out
}

func (g *gen) policy() *policy.Policy {
	if g.r.IntN(15) == 0 {
		return nil
	}
	p := &policy.Policy{Groups: map[string][]string{}, Services: map[string]*policy.Service{}}
	for i := range 3 {
		var members []string
		for _, u := range g.users {
			if g.r.IntN(2) == 0 {
				members = append(members, u)
			}
		}
		p.Groups[fmt.Sprintf("group:g%d", i)] = members
	}
	for i := range 1 + g.r.IntN(4) {
		name := fmt.Sprintf("svc:s%d", i)
		svc := &policy.Service{Name: name, Ports: g.specs()}
		for range 1 + g.r.IntN(2) {
			svc.Tags = append(svc.Tags, wire.Tag(g.tag()))
		}
		p.Services[name] = svc
	}
	if g.r.IntN(4) != 0 {
		p.Postures = map[string]*policy.Posture{}
		for i := range 1 + g.r.IntN(3) {
			name := fmt.Sprintf("posture:p%d", i)
			p.Postures[name] = g.posture(name)
		}
	}
	for i := range g.r.IntN(9) {
		r := &policy.Rule{ID: fmt.Sprintf("r-%d", i)}
		for range 1 + g.r.IntN(3) {
			r.Src = append(r.Src, g.selector())
		}
		r.SrcPosture = g.postureNames()
		for range 1 + g.r.IntN(3) {
			r.Dst = append(r.Dst, g.target(p))
		}
		p.Rules = append(p.Rules, r)
	}
	return p
}

// tweak changes what p's names mean, leaving its rules (and so their IDs)
// as they are: a group's members, a service's tags or a posture's
// conditions.
func (g *gen) tweak(p *policy.Policy) *policy.Policy {
	if p == nil {
		return g.policy()
	}
	q := *p
	if len(p.Postures) > 0 && g.r.IntN(3) == 0 {
		q.Postures = maps.Clone(p.Postures)
		name := fmt.Sprintf("posture:p%d", g.r.IntN(4))
		q.Postures[name] = g.posture(name)
		return &q
	}
	if g.r.IntN(2) == 0 {
		q.Groups = map[string][]string{}
		for k, v := range p.Groups {
			q.Groups[k] = slices.Clone(v)
		}
		name := fmt.Sprintf("group:g%d", g.r.IntN(3))
		if m := q.Groups[name]; len(m) > 0 && g.r.IntN(2) == 0 {
			q.Groups[name] = m[1:]
		} else {
			q.Groups[name] = append(m, g.pick(g.users))
		}
		return &q
	}
	q.Services = map[string]*policy.Service{}
	for k, v := range p.Services {
		sv := *v
		q.Services[k] = &sv
	}
	if sv := q.Services[fmt.Sprintf("svc:s%d", g.r.IntN(4))]; sv != nil {
		sv.Tags = append(slices.Clone(sv.Tags[1:]), wire.Tag(g.tag()))
	}
	return &q
}

func (g *gen) selector() policy.Selector {
	switch g.r.IntN(7) {
	case 5:
		return sel("status:quarantined")
	case 0:
		return sel(fmt.Sprintf("group:g%d", g.r.IntN(4))) // g3 is undefined
	case 1:
		return sel(g.pick(append(g.users, "nobody@x")))
	case 2:
		return sel(fmt.Sprintf("svc:s%d", g.r.IntN(5)))
	case 3:
		return sel(fmt.Sprintf("node:n%d", g.r.IntN(25)))
	}
	return sel(g.tag())
}

func (g *gen) target(p *policy.Policy) policy.Target {
	switch g.r.IntN(9) {
	case 8:
		return policy.Target{Sel: sel("status:quarantined"), Ports: g.specs()}
	case 0, 1, 2:
		name := fmt.Sprintf("svc:s%d", g.r.IntN(5))
		if svc := p.Services[name]; svc != nil {
			return policy.Target{Sel: sel(name), Ports: svc.Ports}
		}
		return policy.Target{Sel: sel(name), Ports: g.specs()}
	case 3:
		return policy.Target{Sel: g.selector(), Ports: g.specs()} // any kind; only tags and services select
	case 4:
		return policy.Target{Sel: sel(g.tag())} // no ports
	}
	return policy.Target{Sel: sel(g.tag()), Ports: g.specs()}
}

// node returns a random node with the given ID and name.
func (g *gen) node(id wire.NodeID, name string) Node {
	n := Node{ID: id, Name: name}
	for range g.r.IntN(3) {
		n.Tags = append(n.Tags, wire.Tag(g.tag()))
	}
	if g.r.IntN(4) != 0 {
		n.Owner = g.pick(g.users) // ignored when tagged
	}
	n.Posture = g.nodePosture()
	n.Quarantined = g.r.IntN(6) == 0
	return n
}

func (g *gen) inventory() []Node {
	var out []Node
	for _, i := range g.r.Perm(g.r.IntN(22)) {
		out = append(out, g.node(wire.NodeID(fmt.Sprintf("id-%02d", i)), fmt.Sprintf("n%d", i)))
	}
	return out
}

func (g *gen) grants(nodes []Node) []Grant {
	var out []Grant
	for range g.r.IntN(5) {
		gr := Grant{
			ID:      fmt.Sprintf("g%d", g.r.IntN(5)), // sometimes twice
			Src:     wire.NodeID(fmt.Sprintf("id-%02d", g.r.IntN(25))),
			Service: fmt.Sprintf("svc:s%d", g.r.IntN(5)),
			Expires: time.Unix(1_800_000_000+int64(g.r.IntN(3)), 0),
		}
		if g.r.IntN(5) != 0 {
			gr.Ports = g.specs()
		}
		if g.r.IntN(2) == 0 {
			gr.SrcPosture = g.postureList()
		}
		out = append(out, gr)
	}
	return out
}

// Checks.

func allViews(c *Compiler, nodes []Node) map[wire.NodeID]View {
	out := map[wire.NodeID]View{}
	for _, n := range nodes {
		v, ok := c.View(n.ID)
		if !ok {
			panic("missing view for " + n.ID)
		}
		out[n.ID] = v
	}
	return out
}

// checkAgainstReference compares every view, SeenBy and Peer with the
// reference, and checks that nothing is visible without a relation.
func checkAgainstReference(t *testing.T, what string, c *Compiler, p *policy.Policy, nodes []Node, gs []Grant) {
	t.Helper()
	byID := map[wire.NodeID]Node{}
	for _, n := range nodes {
		byID[n.ID] = n
	}
	seenBy := map[wire.NodeID][]wire.NodeID{}
	for _, x := range nodes {
		got, ok := c.View(x.ID)
		if !ok {
			t.Fatalf("%s: no view for %s", what, x.ID)
		}
		if want := refView(p, nodes, gs, x); !viewEqual(want, got) {
			t.Fatalf("%s: view of %s (%+v) (-want +got):\n%s", what, x.ID, x, cmp.Diff(want, got))
		}
		ruleIDs := map[string]bool{}
		for _, r := range got.Rules {
			ruleIDs[r.ID] = true
		}
		for _, pv := range got.Peers {
			peer := byID[pv.ID]
			if p == nil || !refRelated(p, refGrants(p, gs), x, peer) {
				t.Fatalf("%s: leak: %s sees %s with no rule or grant between them", what, x.ID, pv.ID)
			}
			for _, id := range pv.Rules {
				if !ruleIDs[id] {
					t.Fatalf("%s: %s's entry for %s names rule %s it does not have", what, x.ID, pv.ID, id)
				}
			}
			if e, ok := c.Peer(x.ID, pv.ID); !ok || !cmp.Equal(e, pv) {
				t.Fatalf("%s: Peer(%s, %s) = %+v, %v; view has %+v", what, x.ID, pv.ID, e, ok, pv)
			}
			seenBy[pv.ID] = append(seenBy[pv.ID], x.ID)
		}
	}
	for _, x := range nodes {
		want := seenBy[x.ID]
		slices.Sort(want)
		if d := cmp.Diff(want, c.SeenBy(x.ID)); d != "" {
			t.Fatalf("%s: SeenBy(%s) (-want +got):\n%s", what, x.ID, d)
		}
	}
	if d := cmp.Diff(refPairs(p, nodes), c.Pairs(), cmpEmpty); d != "" {
		t.Fatalf("%s: Pairs (-want +got):\n%s", what, d)
	}
}

var cmpEmpty = cmp.Comparer(func(a, b []Pair) bool {
	return len(a) == 0 && len(b) == 0 || slices.Equal(a, b)
})

func TestViewsMatchReference(t *testing.T) {
	for seed := range uint64(400) {
		g := newGen(seed)
		p := g.policy()
		nodes := g.inventory()
		gs := g.grants(nodes)
		c := compileAll(p, nodes, gs)
		checkAgainstReference(t, fmt.Sprintf("seed %d", seed), c, p, nodes, gs)
	}
}

// TestIncrementalEqualsFull runs random changes against one compiler and
// checks after each that every view equals a fresh full compile and that
// the reported nodes are exactly those whose views differ.
func TestIncrementalEqualsFull(t *testing.T) {
	for seed := range uint64(150) {
		g := newGen(seed + 1000)
		p := g.policy()
		nodes := g.inventory()
		gs := g.grants(nodes)
		c := compileAll(p, nodes, gs)
		for step := range 40 {
			before := allViews(c, nodes)
			var got []wire.NodeID
			var what string
			switch k := g.r.IntN(10); {
			case k < 3: // join
				i := 25 + g.r.IntN(10)
				id := wire.NodeID(fmt.Sprintf("id-%02d", i))
				if slices.ContainsFunc(nodes, func(n Node) bool { return n.ID == id }) {
					continue
				}
				n := g.node(id, fmt.Sprintf("n%d", g.r.IntN(30)))
				nodes = append(nodes, n)
				what = fmt.Sprintf("join %+v", n)
				got = c.Upsert(n)
			case k < 6 && len(nodes) > 0: // change: tags, owner, name, posture, quarantine, or nothing
				i := g.r.IntN(len(nodes))
				n := nodes[i]
				switch g.r.IntN(7) {
				case 0:
					n = g.node(n.ID, n.Name)
				case 1:
					n.Name = fmt.Sprintf("n%d", g.r.IntN(30))
				case 2:
					n.Owner = g.pick(g.users)
				case 3, 4:
					n.Posture = g.nodePosture()
				case 5:
					n.Quarantined = !n.Quarantined
				}
				nodes[i] = n
				what = fmt.Sprintf("change %+v", n)
				got = c.Upsert(n)
			case k < 8 && len(nodes) > 0: // leave
				i := g.r.IntN(len(nodes))
				what = "remove " + string(nodes[i].ID)
				got = c.Remove(nodes[i].ID)
				nodes = slices.Delete(nodes, i, i+1)
			case k < 9:
				what = "set policy"
				old := p
				if g.r.IntN(2) == 0 {
					p = g.policy()
				} else {
					p = g.tweak(p)
					what = "tweak policy"
				}
				wantGained, wantLost := DiffPairs(refPairs(old, nodes), refPairs(p, nodes))
				gained, lost := c.DiffPolicy(p)
				if d := cmp.Diff(wantGained, gained); d != "" {
					t.Fatalf("seed %d step %d: DiffPolicy gained (-want +got):\n%s", seed, step, d)
				}
				if d := cmp.Diff(wantLost, lost); d != "" {
					t.Fatalf("seed %d step %d: DiffPolicy lost (-want +got):\n%s", seed, step, d)
				}
				got = c.SetPolicy(p)
			case g.r.IntN(2) == 0 || len(gs) == 0:
				gs = g.grants(nodes)
				what = "set grants"
				got = c.SetGrants(gs)
			default:
				gs = slices.Clone(gs)
				i := g.r.IntN(len(gs))
				gs[i].Src = wire.NodeID(fmt.Sprintf("id-%02d", g.r.IntN(25)))
				what = "move grant"
				got = c.SetGrants(gs)
			}
			what = fmt.Sprintf("seed %d step %d: %s", seed, step, what)
			after := allViews(c, nodes)
			var want []wire.NodeID
			for _, n := range nodes {
				if old, ok := before[n.ID]; !ok || !viewEqual(old, after[n.ID]) {
					want = append(want, n.ID)
				}
			}
			slices.Sort(want)
			if d := cmp.Diff(want, got); d != "" {
				t.Fatalf("%s: changed (-want +got):\n%s", what, d)
			}
			fresh := New(p)
			for _, j := range g.r.Perm(len(nodes)) {
				fresh.Upsert(nodes[j])
			}
			fresh.SetGrants(gs)
			if full := allViews(fresh, nodes); !viewsEqual(full, after) {
				t.Fatalf("%s: incremental differs from full (-full +incremental):\n%s", what, cmp.Diff(full, after))
			}
			if step%8 == 0 {
				checkAgainstReference(t, what, c, p, nodes, gs)
			}
		}
	}
}

// TestOutputDeterministic compiles the same inputs in different orders and
// expects identical views, pairs and changed lists.
func TestOutputDeterministic(t *testing.T) {
	for seed := range uint64(50) {
		g := newGen(seed + 5000)
		p := g.policy()
		nodes := g.inventory()
		gs := g.grants(nodes)
		a := compileAll(p, nodes, gs)
		var b *Compiler
		for range 3 {
			shuffled := slices.Clone(nodes)
			g.r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			// Shuffling grants would change which of two with one ID
			// wins; keep only the first of each ID, then shuffle.
			rg := refGrantsByID(gs)
			g.r.Shuffle(len(rg), func(i, j int) { rg[i], rg[j] = rg[j], rg[i] })
			b = New(nil)
			b.SetGrants(rg)
			for _, n := range shuffled {
				b.Upsert(n)
			}
			b.SetPolicy(p)
		}
		a.SetGrants(refGrantsByID(gs))
		if d := cmp.Diff(allViews(a, nodes), allViews(b, nodes)); d != "" {
			t.Fatalf("seed %d: views depend on order (-a +b):\n%s", seed, d)
		}
		if d := cmp.Diff(a.Pairs(), b.Pairs()); d != "" {
			t.Fatalf("seed %d: pairs depend on order (-a +b):\n%s", seed, d)
		}
		if len(nodes) > 0 {
			n := g.node("id-99", "n99")
			if d := cmp.Diff(a.Upsert(n), b.Upsert(n)); d != "" {
				t.Fatalf("seed %d: changed lists differ (-a +b):\n%s", seed, d)
			}
		}
	}
}

func refGrantsByID(gs []Grant) []Grant {
	var out []Grant
	seen := map[string]bool{}
	for _, g := range gs {
		if !seen[g.ID] {
			seen[g.ID] = true
			out = append(out, g)
		}
	}
	return out
}

// viewEqual is cmp.Equal for views, fast enough to run thousands of times.
func viewEqual(a, b View) bool {
	return slices.EqualFunc(a.Peers, b.Peers, func(x, y PeerView) bool { return x.ID == y.ID && slices.Equal(x.Rules, y.Rules) }) &&
		slices.EqualFunc(a.Rules, b.Rules, func(x, y wire.FilterRule) bool { return ruleEqual(&x, &y) })
}

func viewsEqual(a, b map[wire.NodeID]View) bool {
	if len(a) != len(b) {
		return false
	}
	for id, v := range a {
		if w, ok := b[id]; !ok || !viewEqual(v, w) {
			return false
		}
	}
	return true
}

// TestPairsAgreeWithPolicyAllows checks the compiler against the policy
// package's own reading of a policy (the one policy tests run on): a
// source may open a flow exactly when Pairs lists it.
func TestPairsAgreeWithPolicyAllows(t *testing.T) {
	for seed := range uint64(120) {
		g := newGen(seed + 9000)
		p := parserClean(g.policy())
		nodes := g.inventory()
		c := compileAll(p, nodes, nil)
		type key struct {
			src, dst string
			proto    wire.Proto
		}
		allowed := map[key][]wire.PortRange{}
		for _, pr := range c.Pairs() {
			proto := map[string]wire.Proto{"tcp": wire.ProtoTCP, "udp": wire.ProtoUDP, "icmp": wire.ProtoICMP}[pr.Proto]
			f, l := portsKey(pr.Ports)
			allowed[key{pr.Src, pr.Dst, proto}] = append(allowed[key{pr.Src, pr.Dst, proto}], wire.PortRange{First: uint16(f), Last: uint16(l)})
		}
		// Coverage can only change at the edges of some range.
		ports := map[uint16]bool{1: true, 65535: true}
		if p != nil {
			for _, r := range p.Rules {
				for _, tg := range r.Dst {
					for _, sp := range tg.Ports {
						for _, q := range []int{int(sp.Ports.First) - 1, int(sp.Ports.First), int(sp.Ports.Last), int(sp.Ports.Last) + 1} {
							if q >= 1 && q <= 65535 {
								ports[uint16(q)] = true
							}
						}
					}
				}
			}
		}
		for _, s := range nodes {
			for _, d := range nodes {
				if s.ID == d.ID {
					continue
				}
				si := policy.Identity{Name: s.Name, Tags: s.Tags, Owner: s.Owner, Posture: s.Posture, Quarantined: s.Quarantined}
				di := policy.Identity{Name: d.Name, Tags: d.Tags, Owner: d.Owner, Posture: d.Posture, Quarantined: d.Quarantined}
				for _, proto := range []wire.Proto{wire.ProtoTCP, wire.ProtoUDP, wire.ProtoICMP} {
					for port := range ports {
						want := p.Allows(si, di, proto, port)
						got := false
						for _, r := range allowed[key{s.Name, d.Name, proto}] {
							got = got || proto == wire.ProtoICMP || (r.First <= port && port <= r.Last)
						}
						if got != want {
							t.Fatalf("seed %d: %s -> %s proto %d port %d: Pairs says %v, policy.Allows says %v", seed, s.Name, d.Name, proto, port, got, want)
						}
					}
				}
			}
		}
	}
}

// parserClean drops what the parser refuses (port 0, reversed ranges,
// unknown protocols) from a generated policy.
func parserClean(p *policy.Policy) *policy.Policy {
	if p == nil {
		return nil
	}
	clean := func(specs []policy.PortSpec) []policy.PortSpec {
		var out []policy.PortSpec
		for _, s := range specs {
			if s.Proto == wire.ProtoICMP || ((s.Proto == wire.ProtoTCP || s.Proto == wire.ProtoUDP) && s.Ports.First >= 1 && s.Ports.First <= s.Ports.Last) {
				out = append(out, s)
			}
		}
		return out
	}
	q := *p
	q.Rules = nil
	for _, r := range p.Rules {
		r2 := *r
		r2.Dst = nil
		for _, tg := range r.Dst {
			tg.Ports = clean(tg.Ports)
			r2.Dst = append(r2.Dst, tg)
		}
		q.Rules = append(q.Rules, &r2)
	}
	return &q
}
