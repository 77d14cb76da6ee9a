package compile

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"strings"

	"github.com/latchnet/latch/acl/policy"
	"github.com/latchnet/latch/wire"
)

// Pairs returns every permission the policy's rules give on the current
// inventory (grants are not included): one Pair per source, destination,
// protocol and port range, with overlapping and adjacent ranges merged,
// sorted by source name, destination name, protocol and first port (see
// ComparePairs). A node never pairs with itself. The result grows with the
// number of permitted pairs; DiffPolicy shows what a new policy changes
// without listing what stays.
func (c *Compiler) Pairs() []Pair {
	pl := c.newPairLister()
	var out []Pair
	var perms []perm
	pl.groups(func(src int32, slots []int32) {
		perms = pl.perms(c.st, slots, perms)
		for _, p := range perms {
			out = append(out, pl.pair(src, p))
		}
	})
	return out
}

// DiffPolicy returns the pairs that replacing the policy with p would
// gain and lose on the current inventory, as DiffPairs(Pairs(), pairs
// under p) would, without changing anything and without holding every
// pair in memory. Both results are sorted and never nil.
func (c *Compiler) DiffPolicy(p *policy.Policy) (gained, lost []Pair) {
	cp := compilePolicy(p)
	ns := c.newState(cp, indexGrants(cp, nil))
	pl := c.newPairLister()
	// Rules that give the same permissions in both policies (most of
	// them, usually) share a class; a source whose rules fall in the same
	// classes before and after keeps its pairs and is skipped.
	cl := &classer{ids: map[string]int32{}}
	oldClass, newClass := cl.classes(c, c.st), cl.classes(c, ns)
	var sa, sb []int32
	same := func(s int32) bool {
		sa, sb = sa[:0], sb[:0]
		for _, r := range c.st.mem[s].src {
			sa = append(sa, oldClass[r])
		}
		for _, r := range ns.mem[s].src {
			sb = append(sb, newClass[r])
		}
		slices.Sort(sa)
		slices.Sort(sb)
		return slices.Equal(slices.Compact(sa), slices.Compact(sb))
	}
	gained, lost = []Pair{}, []Pair{}
	var a, b []perm
	pl.groups(func(src int32, slots []int32) {
		if !slices.ContainsFunc(slots, func(s int32) bool { return !same(s) }) {
			return
		}
		a = pl.perms(c.st, slots, a)
		b = pl.perms(ns, slots, b)
		i, j := 0, 0
		for i < len(a) || j < len(b) {
			switch {
			case j == len(b) || (i < len(a) && a[i] < b[j]):
				lost = append(lost, pl.pair(src, a[i]))
				i++
			case i == len(a) || b[j] < a[i]:
				gained = append(gained, pl.pair(src, b[j]))
				j++
			default:
				i++
				j++
			}
		}
	})
	return gained, lost
}

// classer sorts rules into classes of rules giving the same permissions:
// the same ports to the same nodes.
type classer struct {
	ids map[string]int32
}

// classes returns the class of each rule of st.
func (cl *classer) classes(c *Compiler, st *state) []int32 {
	tdst := make([]bitset, len(st.pol.targets))
	for s := range c.nodes {
		if c.nodes[s].used {
			for _, t := range st.mem[s].dst {
				tdst[t].set(int32(s))
			}
		}
	}
	out := make([]int32, len(st.pol.rules))
	var keys []string
	for r := range st.pol.rules {
		keys = keys[:0]
		for _, t := range st.pol.rules[r].targets {
			var k []byte
			for _, fr := range st.pol.targets[t].rules {
				k = fmt.Appendf(k, "%v%v;", fr.Protocols, fr.Ports)
			}
			d := tdst[t]
			for len(d) > 0 && d[len(d)-1] == 0 {
				d = d[:len(d)-1]
			}
			for _, x := range d {
				k = binary.LittleEndian.AppendUint64(k, x)
			}
			keys = append(keys, string(k))
		}
		slices.Sort(keys)
		key := strings.Join(slices.Compact(keys), "|")
		id, ok := cl.ids[key]
		if !ok {
			id = int32(len(cl.ids))
			cl.ids[key] = id
		}
		out[r] = id
	}
	return out
}

// perm is one merged permission from some source, packed so that perms
// sort by destination (name rank), protocol, first and last port:
// dst<<40 | proto<<32 | first<<16 | last.
type perm uint64

func mkPerm(dst int32, proto wire.Proto, ports wire.PortRange) perm {
	return perm(uint64(dst)<<40 | uint64(proto)<<32 | uint64(ports.First)<<16 | uint64(ports.Last))
}

func (p perm) dst() int32            { return int32(p >> 40) }
func (p perm) proto() wire.Proto     { return wire.Proto(p >> 32) }
func (p perm) ports() wire.PortRange { return wire.PortRange{First: uint16(p >> 16), Last: uint16(p)} }

// pairLister enumerates pairs by node name. Names are unique in a network;
// should two nodes share one, their pairs merge as that name's.
type pairLister struct {
	c      *Compiler
	byName []int32  // used slots sorted by name
	rank   []int32  // slot -> index of its name in names
	names  []string // distinct names, sorted
	ports  map[wire.PortRange]string
}

func (c *Compiler) newPairLister() *pairLister {
	pl := &pairLister{c: c, byName: slices.Clone(c.order), rank: make([]int32, len(c.nodes)), ports: map[wire.PortRange]string{}}
	slices.SortStableFunc(pl.byName, func(a, b int32) int {
		return strings.Compare(c.nodes[a].node.Name, c.nodes[b].node.Name)
	})
	for _, s := range pl.byName {
		if n := c.nodes[s].node.Name; len(pl.names) == 0 || pl.names[len(pl.names)-1] != n {
			pl.names = append(pl.names, n)
		}
		pl.rank[s] = int32(len(pl.names) - 1)
	}
	return pl
}

// groups calls f for each name with the slots of the nodes that have it,
// in name order.
func (pl *pairLister) groups(f func(name int32, slots []int32)) {
	for i := 0; i < len(pl.byName); {
		j := i + 1
		for j < len(pl.byName) && pl.rank[pl.byName[j]] == pl.rank[pl.byName[i]] {
			j++
		}
		f(pl.rank[pl.byName[i]], pl.byName[i:j])
		i = j
	}
}

// perms returns into buf the merged permissions of the nodes in srcs
// under st, sorted.
func (pl *pairLister) perms(st *state, srcs []int32, buf []perm) []perm {
	buf = buf[:0]
	for _, s := range srcs {
		for _, r := range st.mem[s].src {
			ts := st.pol.rules[r].targets
			if len(ts) == 0 {
				continue
			}
			// A rule's targets have consecutive indices: find those
			// selecting each of the rule's destinations.
			lo, hi := ts[0], ts[len(ts)-1]
			for w, x := range st.dst[r] {
				for ; x != 0; x &= x - 1 {
					n := int32(w<<6 | bits.TrailingZeros64(x))
					if n == s {
						continue
					}
					nd := st.mem[n].dst
					i, _ := slices.BinarySearch(nd, lo)
					for ; i < len(nd) && nd[i] <= hi; i++ {
						for _, sp := range st.pol.targets[nd[i]].specs {
							buf = append(buf, mkPerm(pl.rank[n], sp.Proto, sp.Ports))
						}
					}
				}
			}
		}
	}
	slices.Sort(buf)
	buf = slices.Compact(buf)
	out := buf[:0]
	for i := 0; i < len(buf); {
		p := buf[i]
		dst, proto, ports := p.dst(), p.proto(), p.ports()
		for i++; i < len(buf) && buf[i].dst() == dst && buf[i].proto() == proto &&
			uint32(buf[i].ports().First) <= uint32(ports.Last)+1; i++ {
			ports.Last = max(ports.Last, buf[i].ports().Last)
		}
		out = append(out, mkPerm(dst, proto, ports))
	}
	return out
}

func (pl *pairLister) pair(src int32, p perm) Pair {
	pr := Pair{Src: pl.names[src], Dst: pl.names[p.dst()], Proto: protoName(p.proto())}
	if p.proto() != wire.ProtoICMP {
		s, ok := pl.ports[p.ports()]
		if !ok {
			s = rangeText(p.ports())
			pl.ports[p.ports()] = s
		}
		pr.Ports = s
	}
	return pr
}

func protoName(p wire.Proto) string {
	switch p {
	case wire.ProtoTCP:
		return "tcp"
	case wire.ProtoUDP:
		return "udp"
	case wire.ProtoICMP:
		return "icmp"
	}
	return strconv.Itoa(int(p))
}

// DiffPairs returns the pairs in new but not in old (gained) and those in
// old but not in new (lost), each sorted like Pairs and never nil. The
// inputs need not be sorted.
func DiffPairs(old, new []Pair) (gained, lost []Pair) {
	in := func(ps []Pair) map[Pair]bool {
		m := make(map[Pair]bool, len(ps))
		for _, p := range ps {
			m[p] = true
		}
		return m
	}
	oldSet, newSet := in(old), in(new)
	gained, lost = []Pair{}, []Pair{}
	for p := range newSet {
		if !oldSet[p] {
			gained = append(gained, p)
		}
	}
	for p := range oldSet {
		if !newSet[p] {
			lost = append(lost, p)
		}
	}
	slices.SortFunc(gained, ComparePairs)
	slices.SortFunc(lost, ComparePairs)
	return gained, lost
}

// ComparePairs orders pairs as Pairs returns them: by source, destination,
// protocol name, then port range numerically.
func ComparePairs(a, b Pair) int {
	if c := cmp.Or(strings.Compare(a.Src, b.Src), strings.Compare(a.Dst, b.Dst), strings.Compare(a.Proto, b.Proto)); c != 0 {
		return c
	}
	af, al := portsKey(a.Ports)
	bf, bl := portsKey(b.Ports)
	return cmp.Or(cmp.Compare(af, bf), cmp.Compare(al, bl), strings.Compare(a.Ports, b.Ports))
}

func portsKey(s string) (first, last int) {
	f, l, ok := strings.Cut(s, "-")
	first, _ = strconv.Atoi(f)
	last = first
	if ok {
		last, _ = strconv.Atoi(l)
	}
	return first, last
}
