package policy

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/latchnet/latch/wire"
)

// Matching. Every function here fails closed: a nil policy, an unknown
// name or a selector kind that does not fit selects and allows nothing.

// Selects reports whether sel names the node with identity id:
//
//   - tag:X     the node carries X;
//   - svc:X     the node carries any of service X's tags;
//   - group:X   the node is untagged and its owner is a member of X;
//   - USER      the node is untagged and its owner is USER (exact match);
//   - node:NAME the node's name is NAME, tagged or not;
//   - status:quarantined the node is quarantined.
//
// A tagged node is never selected by a group or user: tags replace the
// owner as the node's identity. A quarantined node is selected by
// status:quarantined and by nothing else.
func (p *Policy) Selects(sel Selector, id Identity) bool {
	if p == nil || sel.Name == "" {
		return false
	}
	if id.Quarantined || sel.Kind == SelQuarantined {
		return id.Quarantined && sel.Kind == SelQuarantined && sel.Name == QuarantinedName
	}
	switch sel.Kind {
	case SelTag:
		return slices.Contains(id.Tags, wire.Tag(sel.Name))
	case SelService:
		svc := p.Services[sel.Name]
		if svc == nil {
			return false
		}
		for _, t := range svc.Tags {
			if slices.Contains(id.Tags, t) {
				return true
			}
		}
		return false
	case SelGroup:
		return len(id.Tags) == 0 && id.Owner != "" && slices.Contains(p.Groups[sel.Name], id.Owner)
	case SelUser:
		return len(id.Tags) == 0 && id.Owner != "" && id.Owner == sel.Name
	case SelNode:
		name, ok := strings.CutPrefix(sel.Name, "node:")
		return ok && name != "" && id.Name == name
	}
	return false
}

// TargetSelects reports whether the node with identity id is one of t's
// destinations: for a service target, a node carrying any of the
// service's tags; for a tag target, a node carrying the tag; for
// status:quarantined, a quarantined node (which no other target selects).
// Ports are not considered (see Covers). Targets of any other kind select
// nothing.
func (p *Policy) TargetSelects(t Target, id Identity) bool {
	if t.Sel.Kind != SelService && t.Sel.Kind != SelTag && t.Sel.Kind != SelQuarantined {
		return false
	}
	return p.Selects(t.Sel, id)
}

// Covers reports whether t's ports admit proto and port: a TCP or UDP
// spec when proto matches and port is in its range (port 0 never is); an
// ICMP spec for ProtoICMP and ProtoICMPv6 whatever the port. Other
// protocols are never covered.
func (t Target) Covers(proto wire.Proto, port uint16) bool {
	for _, s := range t.Ports {
		if s.covers(proto, port) {
			return true
		}
	}
	return false
}

func (s PortSpec) covers(proto wire.Proto, port uint16) bool {
	switch s.Proto {
	case wire.ProtoICMP:
		return proto == wire.ProtoICMP || proto == wire.ProtoICMPv6
	case wire.ProtoTCP, wire.ProtoUDP:
		return proto == s.Proto && port != 0 && s.Ports.First <= port && port <= s.Ports.Last
	}
	return false
}

// SourceSelects reports whether rule r admits flows from id as a source:
// one of its sources selects id and id satisfies every posture the rule
// requires.
func (p *Policy) SourceSelects(r *Rule, id Identity) bool {
	return r != nil && p.selectsAny(r.Src, id) && p.Satisfies(r.SrcPosture, id.Posture)
}

// selectsAny reports whether any of sels selects id.
func (p *Policy) selectsAny(sels []Selector, id Identity) bool {
	for _, s := range sels {
		if p.Selects(s, id) {
			return true
		}
	}
	return false
}

// Allows reports whether the policy's rules let src open a flow to dst on
// proto and port: some rule's source selects src (see SourceSelects:
// postures included) and one of its targets selects dst and covers proto
// and port. Grants are not considered. It is the naive reference the
// compiler's output is checked against.
func (p *Policy) Allows(src, dst Identity, proto wire.Proto, port uint16) bool {
	if p == nil {
		return false
	}
	for _, r := range p.Rules {
		if !p.SourceSelects(r, src) {
			continue
		}
		for _, t := range r.Dst {
			if p.TargetSelects(t, dst) && t.Covers(proto, port) {
				return true
			}
		}
	}
	return false
}

// GrantPorts returns the ports a grant for service opens: all of the
// service's ports for port 0, else port on each of TCP and UDP that the
// service offers it on. A port the service does not offer is an error.
func (p *Policy) GrantPorts(service string, port uint16) ([]PortSpec, error) {
	svc := p.service(service)
	if svc == nil {
		return nil, fmt.Errorf("unknown service %s", q(service))
	}
	if port == 0 {
		return slices.Clone(svc.Ports), nil
	}
	var out []PortSpec
	for _, s := range svc.Ports {
		if s.Proto != wire.ProtoICMP && s.covers(s.Proto, port) {
			out = append(out, PortSpec{Proto: s.Proto, Ports: wire.PortRange{First: port, Last: port}})
		}
	}
	if out == nil {
		have := make([]string, len(svc.Ports))
		for i, s := range svc.Ports {
			have[i] = s.String()
		}
		return nil, fmt.Errorf("%s has no port %d (its ports: %s)", service, port, strings.Join(have, ", "))
	}
	return out, nil
}

func (p *Policy) service(name string) *Service {
	if p == nil {
		return nil
	}
	return p.Services[name]
}

// AccessRuleFor returns the access rule that lets the node src request
// access to service (on port, or all its ports for port 0) for d. An
// access rule fits when one of its sources selects src, src satisfies
// every posture in its SrcPosture (a quarantined src is selected by no
// access rule), every requested
// port is within one of its destinations, and d is at most its
// maxDuration. A service destination covers its own service; a tag
// destination covers a service only if the service's one tag is that tag
// (otherwise the grant would open nodes the rule does not name). Among
// fitting rules the first with autoApprove wins, else the first in the
// policy. Errors say why not; refusals by the policy wrap ErrNotAllowed.
func (p *Policy) AccessRuleFor(src Identity, service string, port uint16, d time.Duration) (*AccessRule, error) {
	want, err := p.GrantPorts(service, port)
	if err != nil {
		return nil, err
	}
	if d <= 0 {
		return nil, fmt.Errorf("duration %v must be above zero", d)
	}
	svc := p.Services[service]
	var first *AccessRule
	var longest time.Duration
	for _, r := range p.Access {
		if !p.selectsAny(r.Src, src) || !p.Satisfies(r.SrcPosture, src.Posture) || !r.coversService(svc, want) {
			continue
		}
		if d > r.MaxDuration {
			longest = max(longest, r.MaxDuration)
			continue
		}
		if r.AutoApprove {
			return r, nil
		}
		if first == nil {
			first = r
		}
	}
	if first != nil {
		return first, nil
	}
	what := service
	if port != 0 {
		what = fmt.Sprintf("%s port %d", service, port)
	}
	if longest > 0 {
		return nil, fmt.Errorf("%w: %v is longer than the %v the policy allows for %s", ErrNotAllowed, d, longest, what)
	}
	return nil, fmt.Errorf("%w: no access rule lets this node request %s", ErrNotAllowed, what)
}

// coversService reports whether r's destinations include every spec of
// want on service svc.
func (r *AccessRule) coversService(svc *Service, want []PortSpec) bool {
	for _, w := range want {
		ok := false
		for _, t := range r.Dst {
			switch {
			case t.Sel.Kind == SelService && t.Sel.Name == svc.Name:
			case t.Sel.Kind == SelTag && len(svc.Tags) == 1 && string(svc.Tags[0]) == t.Sel.Name:
			default:
				continue
			}
			if t.contains(w) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// contains reports whether one of t's specs includes all of w.
func (t Target) contains(w PortSpec) bool {
	for _, s := range t.Ports {
		if s.Proto != w.Proto {
			continue
		}
		if s.Proto == wire.ProtoICMP || s.Ports.First <= w.Ports.First && w.Ports.Last <= s.Ports.Last {
			return true
		}
	}
	return false
}

// CanApprove reports whether user is one of r's approvers, directly or as
// a member of an approver group. It does not look at AutoApprove: an
// auto-approved rule needs no approver, and lists only those it names.
func (p *Policy) CanApprove(r *AccessRule, user string) bool {
	if p == nil || r == nil || user == "" {
		return false
	}
	for _, a := range r.Approvers {
		if strings.HasPrefix(a, "group:") {
			if slices.Contains(p.Groups[a], user) {
				return true
			}
		} else if a == user {
			return true
		}
	}
	return false
}
