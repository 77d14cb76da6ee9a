package compile

import (
	"fmt"
	"maps"
	"math/big"
	"regexp"
	"slices"
	"strings"

	"github.com/latchnet/latch/acl/policy"
	"github.com/latchnet/latch/wire"
)

// The reference's reading of postures and quarantined grant sources,
// written from the spec (docs/policy.md) without calling the policy
// package's matcher, and the generator's postures.

// refPostures reports whether attrs satisfy every named posture, written
// from the spec without the policy package's matcher.
func refPostures(p *policy.Policy, names []string, attrs map[string]string) bool {
	for _, name := range names {
		pos := p.Postures[name]
		if pos == nil || len(pos.Conds) == 0 {
			return false
		}
		for _, c := range pos.Conds {
			if !refHolds(c, attrs) {
				return false
			}
		}
	}
	return true
}

func refHolds(c policy.Condition, attrs map[string]string) bool {
	have := attrs[c.Attr]
	if have == "" {
		return false // not reported: fail closed, != included
	}
	var d int
	switch c.Attr {
	case "os_version", "kernel", "agent_version":
		d = refCompareVersions(have, c.Value)
	case "os", "hostname", "firewall", "disk_encryption":
		if c.Op != policy.OpEq && c.Op != policy.OpNe {
			return false
		}
		if (c.Attr == "firewall" || c.Attr == "disk_encryption") && c.Value != "true" && c.Value != "false" {
			return false
		}
		if have != c.Value {
			d = 1
		}
	default:
		return false
	}
	return map[policy.Op]bool{
		policy.OpEq: d == 0, policy.OpNe: d != 0,
		policy.OpLt: d < 0, policy.OpLe: d <= 0,
		policy.OpGt: d > 0, policy.OpGe: d >= 0,
	}[c.Op]
}

var refComponent = regexp.MustCompile(`^([0-9]*)(.*)$`)

// refCompareVersions: dotted components, missing ones "0"; leading
// digits numerically (any size), then the rest as text; else text.
func refCompareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for len(as) < len(bs) {
		as = append(as, "0")
	}
	for len(bs) < len(as) {
		bs = append(bs, "0")
	}
	for i := range as {
		x, y := as[i], bs[i]
		if x == "" {
			x = "0"
		}
		if y == "" {
			y = "0"
		}
		mx, my := refComponent.FindStringSubmatch(x), refComponent.FindStringSubmatch(y)
		if mx[1] != "" && my[1] != "" {
			nx, _ := new(big.Int).SetString(mx[1], 10)
			ny, _ := new(big.Int).SetString(my[1], 10)
			if d := nx.Cmp(ny); d != 0 {
				return d
			}
			if d := strings.Compare(mx[2], my[2]); d != 0 {
				return d
			}
			continue
		}
		if d := strings.Compare(x, y); d != 0 {
			return d
		}
	}
	return 0
}

// refGrantFrom reports whether node n may use grant g as its source.
func refGrantFrom(p *policy.Policy, g Grant, n Node) bool {
	return n.ID == g.Src && !n.Quarantined && refPostures(p, g.SrcPosture, n.Posture)
}

// Posture attributes and values, few enough that conditions hit and
// miss: versions that compare equal, above and below each other, and
// values of the wrong kind (which must fail closed).
var (
	genAttrs  = append(slices.Clone(wire.PostureAttributes), "colour")
	genValues = map[string][]string{
		"os":              {"linux", "darwin"},
		"os_version":      {"11", "12", "12.1", "9"},
		"kernel":          {"6.1.0-18-amd64", "6.1", "6.10", "5.10.0"},
		"agent_version":   {"0.4", "0.4.0", "0.10", "0.9.1", "1"},
		"hostname":        {"h1", "h2"},
		"firewall":        {"true", "false"},
		"disk_encryption": {"true", "false"},
		"colour":          {"red"},
	}
	genOps = []policy.Op{policy.OpEq, policy.OpNe, policy.OpLt, policy.OpLe, policy.OpGt, policy.OpGe}
)

func (g *gen) value(attr string) string {
	if g.r.IntN(10) == 0 {
		return g.pick(genValues[g.pick(genAttrs)]) // maybe the wrong kind
	}
	return g.pick(genValues[attr])
}

func (g *gen) posture(name string) *policy.Posture {
	pos := &policy.Posture{Name: name}
	for range g.r.IntN(3) + map[bool]int{true: 0, false: 1}[g.r.IntN(12) == 0] { // sometimes none
		if g.r.IntN(3) != 0 {
			// One the typical node satisfies, so gated rules admit often.
			attr := g.pick(wire.PostureAttributes)
			op := policy.OpEq
			if attr == "os_version" || attr == "kernel" || attr == "agent_version" {
				op = []policy.Op{policy.OpEq, policy.OpLe, policy.OpGe}[g.r.IntN(3)]
			}
			pos.Conds = append(pos.Conds, policy.Condition{Attr: attr, Op: op, Value: genTypical[attr]})
			continue
		}
		attr := g.pick(genAttrs)
		op := genOps[g.r.IntN(2)] // mostly == and !=, as the parser insists for most attributes
		if g.r.IntN(2) == 0 {
			op = genOps[g.r.IntN(len(genOps))]
		}
		pos.Conds = append(pos.Conds, policy.Condition{Attr: attr, Op: op, Value: g.value(attr)})
	}
	return pos
}

// postureNames returns a srcPosture list: usually none, sometimes a name
// that is not defined.
func (g *gen) postureNames() []string {
	if g.r.IntN(3) != 0 {
		return nil
	}
	return g.postureList()
}

// postureList returns one or two posture names, rarely an undefined one.
func (g *gen) postureList() []string {
	var out []string
	for range 1 + g.r.IntN(2) {
		i := g.r.IntN(2) // p0 always exists, p1 often
		if g.r.IntN(8) == 0 {
			i = 3 // never defined
		}
		out = append(out, fmt.Sprintf("posture:p%d", i))
	}
	return out
}

// genTypical is what most generated nodes report.
var genTypical = map[string]string{
	"os": "linux", "os_version": "12", "kernel": "6.1", "agent_version": "0.4.0",
	"hostname": "h1", "firewall": "true", "disk_encryption": "true",
}

// nodePosture returns what an agent might report: nil, or the typical
// posture with some attributes changed or missing.
func (g *gen) nodePosture() map[string]string {
	if g.r.IntN(6) == 0 {
		return nil
	}
	m := maps.Clone(genTypical)
	for _, a := range wire.PostureAttributes {
		switch g.r.IntN(8) {
		case 0:
			delete(m, a)
		case 1, 2:
			m[a] = g.pick(genValues[a])
		}
	}
	return m
}
