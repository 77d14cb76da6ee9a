package compile

import (
	"cmp"
	"slices"

	"github.com/latchnet/latch/wire"
)

// grantPrefix starts the ID of every rule a grant yields.
const grantPrefix = "grant-"

// grantIndex is the active grants resolved against one compiled policy.
// It is immutable once built.
type grantIndex struct {
	// list holds the grants that admit something, sorted by ID, IDs
	// unique.
	list  []cgrant
	bySvc map[int32][]int32       // service -> grants for it
	bySrc map[wire.NodeID][]int32 // source node -> its grants
}

type cgrant struct {
	id    string
	src   wire.NodeID
	svc   int32
	rules []wire.FilterRule
	post  []int32 // postures the source must satisfy, sorted
	never bool    // a posture is undefined: the grant is always inert
}

func (g *cgrant) equal(o *cgrant) bool {
	return g.id == o.id && g.src == o.src && g.svc == o.svc && g.never == o.never && slices.Equal(g.post, o.post) &&
		slices.EqualFunc(g.rules, o.rules, func(a, b wire.FilterRule) bool { return ruleEqual(&a, &b) })
}

// usableBy reports whether a source node that is m may use the grant: it
// is not quarantined and satisfies the grant's postures.
func (g *cgrant) usableBy(m *member) bool {
	return !g.never && !m.quar && subset(g.post, m.post)
}

// indexGrants resolves gs against cp. A grant for a service the policy
// does not define, or with no valid ports, admits nothing and is left out;
// so is every grant after the first with the same ID.
func indexGrants(cp *compiled, gs []Grant) *grantIndex {
	gi := &grantIndex{bySvc: map[int32][]int32{}, bySrc: map[wire.NodeID][]int32{}}
	sorted := slices.Clone(gs)
	slices.SortStableFunc(sorted, func(a, b Grant) int { return cmp.Compare(a.ID, b.ID) })
	for i, g := range sorted {
		if i > 0 && sorted[i-1].ID == g.ID {
			continue
		}
		svc, ok := cp.svcIdx[g.Service]
		if !ok {
			continue
		}
		rules := render(grantPrefix+g.ID, g.Ports, g.Expires)
		if len(rules) == 0 {
			continue
		}
		post, ok := cp.postures(g.SrcPosture)
		k := int32(len(gi.list))
		gi.list = append(gi.list, cgrant{id: g.ID, src: g.Src, svc: svc, rules: rules, post: post, never: !ok})
		gi.bySvc[svc] = append(gi.bySvc[svc], k)
		gi.bySrc[g.Src] = append(gi.bySrc[g.Src], k)
	}
	return gi
}

// changedGrants returns the grants of a and b that are not in the other
// exactly as they are.
func changedGrants(a, b *grantIndex) []*cgrant {
	var out []*cgrant
	i, j := 0, 0
	for i < len(a.list) || j < len(b.list) {
		switch {
		case j == len(b.list) || (i < len(a.list) && a.list[i].id < b.list[j].id):
			out = append(out, &a.list[i])
			i++
		case i == len(a.list) || b.list[j].id < a.list[i].id:
			out = append(out, &b.list[j])
			j++
		default:
			if !a.list[i].equal(&b.list[j]) {
				out = append(out, &a.list[i], &b.list[j])
			}
			i++
			j++
		}
	}
	return out
}
