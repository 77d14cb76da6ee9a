package policy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/latchnet/latch/wire"
)

// RunTests runs the policy's tests against its rules (grants play no
// part) and returns the first failure as an *Error at the failing test,
// or nil. Parse does not run them; whoever saves or checks a policy does.
//
// A test's source stands for hypothetical nodes: for tag:X a node with
// exactly that tag; for svc:X one node per service tag, each carrying
// only that tag; for a group one untagged node per member, owned by that
// member; for a user an untagged node it owns; for node:NAME an untagged,
// unowned node of that name; for status:quarantined an untagged,
// quarantined node. The test's "posture" is every source node's posture
// (none without it: posture-gated rules then do not admit it) and
// "quarantined": true quarantines them. Destinations likewise: one node
// per tag of a service, one node with the target's tag, or one
// quarantined node for status:quarantined:PORTS. Every source node must
// reach every destination node on every port of each Accept target (the
// whole range, ICMP as ProtoICMP), and none on any port of any Deny
// target. Checking each tag and each member alone is the strictest
// reading: a canary node with a second tag, or one member of a group,
// cannot hide behind the others.
func (p *Policy) RunTests() error {
	if p == nil {
		return nil
	}
	for i, t := range p.Tests {
		if msg := p.runTest(t); msg != "" {
			return &Error{Pos: t.Pos, Msg: fmt.Sprintf("test %d (line %d): %s", i+1, t.Pos.Line, msg)}
		}
	}
	return nil
}

// probe is a hypothetical node a test checks, and how to name it when
// more than one node stands for a selector.
type probe struct {
	id   Identity
	note string
}

// sourceProbes returns the nodes a test source stands for.
func (p *Policy) sourceProbes(sel Selector) []probe {
	switch sel.Kind {
	case SelTag:
		return []probe{{id: Identity{Tags: []wire.Tag{wire.Tag(sel.Name)}}}}
	case SelService:
		return p.serviceProbes(sel.Name)
	case SelGroup:
		members := p.Groups[sel.Name]
		out := make([]probe, len(members))
		for i, m := range members {
			out[i] = probe{id: Identity{Owner: m}}
			if len(members) > 1 {
				out[i].note = " (member " + m + ")"
			}
		}
		return out
	case SelUser:
		return []probe{{id: Identity{Owner: sel.Name}}}
	case SelNode:
		return []probe{{id: Identity{Name: strings.TrimPrefix(sel.Name, "node:")}}}
	case SelQuarantined:
		return []probe{{id: Identity{Quarantined: true}}}
	}
	return nil
}

// serviceProbes returns one node per tag of a service.
func (p *Policy) serviceProbes(name string) []probe {
	svc := p.Services[name]
	if svc == nil {
		return nil
	}
	out := make([]probe, len(svc.Tags))
	for i, t := range svc.Tags {
		out[i] = probe{id: Identity{Tags: []wire.Tag{t}}}
		if len(svc.Tags) > 1 {
			out[i].note = " (a node tagged " + string(t) + ")"
		}
	}
	return out
}

func (p *Policy) targetProbes(t Target) []probe {
	switch t.Sel.Kind {
	case SelService:
		return p.serviceProbes(t.Sel.Name)
	case SelQuarantined:
		return []probe{{id: Identity{Quarantined: true}}}
	}
	return []probe{{id: Identity{Tags: []wire.Tag{wire.Tag(t.Sel.Name)}}}}
}

// testSources returns the nodes a test's source stands for, with the
// test's posture and quarantine.
func (p *Policy) testSources(t *Test) []probe {
	srcs := p.sourceProbes(t.Src)
	for i := range srcs {
		srcs[i].id.Posture = t.Posture
		srcs[i].id.Quarantined = srcs[i].id.Quarantined || t.Quarantined
	}
	return srcs
}

// runTest returns what failed, or "".
func (p *Policy) runTest(t *Test) string {
	srcs := p.testSources(t)
	if len(srcs) == 0 {
		return fmt.Sprintf("%s stands for no node to test with", t.Src.Name)
	}
	for _, src := range srcs {
		for _, tg := range t.Accept {
			for _, dst := range p.targetProbes(tg) {
				for _, spec := range tg.Ports {
					if port, ok := p.reaches(src.id, dst.id, spec); !ok {
						what := "it"
						if spec.Proto != wire.ProtoICMP && spec.Ports.First != spec.Ports.Last {
							what = fmt.Sprintf("port %d", port)
						}
						return fmt.Sprintf("%s%s should reach %s%s on %s but no rule allows %s",
							t.Src.Name, src.note, tg.Sel.Name, dst.note, spec, what)
					}
				}
			}
		}
		for _, tg := range t.Deny {
			for _, dst := range p.targetProbes(tg) {
				for _, spec := range tg.Ports {
					if r, got := p.firstAdmitting(src.id, dst.id, spec); r != nil {
						return fmt.Sprintf("%s%s should not reach %s%s on %s but the rule at line %d allows %s",
							t.Src.Name, src.note, tg.Sel.Name, dst.note, spec, r.Pos.Line, got)
					}
				}
			}
		}
	}
	return ""
}

// reaches reports whether src may reach dst on every port of spec; if not
// it returns the first port it may not reach (0 for ICMP).
func (p *Policy) reaches(src, dst Identity, spec PortSpec) (uint16, bool) {
	if spec.Proto == wire.ProtoICMP {
		return 0, p.Allows(src, dst, wire.ProtoICMP, 0)
	}
	var have []wire.PortRange
	for _, r := range p.Rules {
		if !p.SourceSelects(r, src) {
			continue
		}
		for _, t := range r.Dst {
			if !p.TargetSelects(t, dst) {
				continue
			}
			for _, s := range t.Ports {
				if s.Proto == spec.Proto {
					have = append(have, s.Ports)
				}
			}
		}
	}
	slices.SortFunc(have, func(a, b wire.PortRange) int { return int(a.First) - int(b.First) })
	next := int(spec.Ports.First) // the first port not yet known to be reachable
	for _, h := range have {
		if int(h.First) > next {
			break
		}
		next = max(next, int(h.Last)+1)
		if next > int(spec.Ports.Last) {
			return 0, true
		}
	}
	if next > int(spec.Ports.Last) {
		return 0, true
	}
	return uint16(next), false
}

// firstAdmitting returns the first rule that lets src reach dst on some
// port of spec, and the ports it admits there.
func (p *Policy) firstAdmitting(src, dst Identity, spec PortSpec) (*Rule, PortSpec) {
	for _, r := range p.Rules {
		if !p.SourceSelects(r, src) {
			continue
		}
		for _, t := range r.Dst {
			if !p.TargetSelects(t, dst) {
				continue
			}
			for _, s := range t.Ports {
				if !overlap(s, spec) {
					continue
				}
				if s.Proto == wire.ProtoICMP {
					return r, s
				}
				got := PortSpec{Proto: s.Proto, Ports: wire.PortRange{
					First: max(s.Ports.First, spec.Ports.First),
					Last:  min(s.Ports.Last, spec.Ports.Last),
				}}
				return r, got
			}
		}
	}
	return nil, PortSpec{}
}
