package policy

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/latchnet/latch/wire"
)

// FuzzParse checks that Parse never panics, refuses with a placed
// one-line *Error or returns a policy that re-parses from its Source to
// an equal policy, and that what it returns never holds anything wider
// than the format allows.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"", "{}", "// c", "[]", "null", `{"rules": [}`, "{\"a\": \"\xff\"}",
		meshPolicy, accessPolicy, selectPolicy, testedPolicy + "]}",
		testedPolicy + `{"src": "group:dev", "accept": ["tag:web:22/tcp"], "deny": ["svc:db"]}]}`,
		withSvcs(`"rules": [{"src": ["tag:web", "node:a-1", "bob@example.com", "group:dba"], "dst": ["tag:db:22,80-90/udp, icmp", "svc:db"]}]`),
		withSvcs(`"rules": [{"src": ["*"], "dst": ["tag:db:*"]}]`),
		withSvcs(`"access": [{"src": ["tag:ci"], "dst": ["svc:db"], "approvers": ["group:dba"], "autoApprove": true, "maxDuration": "1h"}]`),
		`{"groups": {"group:a": ["x@y", "group:\u0061"]}}`,
		posturePolicy + "}",
		posturePolicy + `"tests": [{"src": "tag:web", "posture": {"os": "linux", "firewall": true}, "quarantined": true, "deny": ["svc:api"], "accept": ["svc:db"]}]}`,
		withPostures(`"posture:a": ["kernel != '5.10.0'", "os_version>=12", "hostname == 'a b'"]`, `"rules": [{"src": ["status:quarantined"], "srcPosture": ["posture:a"], "dst": ["status:quarantined:22,icmp"]}]`),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		p, err := Parse(src)
		if err != nil {
			if p != nil {
				t.Fatal("policy returned with an error")
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %T %v is not an *Error", err, err)
			}
			lines := strings.Count(string(src), "\n") + 1
			if pe.Line < 1 || pe.Line > lines || pe.Col < 1 || pe.Msg == "" || strings.ContainsAny(pe.Msg, "\n\r") {
				t.Fatalf("badly placed or formed error %+v for %d lines", pe, lines)
			}
			return
		}
		again, err := Parse(p.Source)
		if err != nil {
			t.Fatalf("re-parse of Source: %v", err)
		}
		if diff := cmp.Diff(p, again); diff != "" {
			t.Fatalf("re-parse differs (-first +again):\n%s", diff)
		}
		checkInvariants(t, p)
		_ = p.RunTests()
	})
}

// checkInvariants fails t if p holds anything Parse must never let
// through: wildcards, bad port ranges, undefined names, duplicate IDs.
func checkInvariants(t *testing.T, p *Policy) {
	t.Helper()
	checkSpecs := func(where string, specs []PortSpec) {
		if len(specs) == 0 {
			t.Fatalf("%s: no ports", where)
		}
		for _, s := range specs {
			switch s.Proto {
			case wire.ProtoICMP:
				if s.Ports != (wire.PortRange{}) {
					t.Fatalf("%s: ICMP with ports %+v", where, s.Ports)
				}
			case wire.ProtoTCP, wire.ProtoUDP:
				if s.Ports.First < 1 || s.Ports.First > s.Ports.Last {
					t.Fatalf("%s: bad range %+v", where, s.Ports)
				}
			default:
				t.Fatalf("%s: protocol %d", where, s.Proto)
			}
		}
	}
	checkSel := func(where string, s Selector) {
		if strings.Contains(s.Name, "*") || s.Pos.Line < 1 || s.Pos.Col < 1 {
			t.Fatalf("%s: selector %+v", where, s)
		}
		if _, e := parseSelector(s.Name); e != nil {
			t.Fatalf("%s: selector %q does not re-parse: %s", where, s.Name, e.msg)
		}
		switch s.Kind {
		case SelTag:
			if _, ok := p.TagOwners[wire.Tag(s.Name)]; !ok {
				t.Fatalf("%s: undefined tag %q", where, s.Name)
			}
		case SelGroup:
			if _, ok := p.Groups[s.Name]; !ok {
				t.Fatalf("%s: undefined group %q", where, s.Name)
			}
		case SelService:
			if p.Services[s.Name] == nil {
				t.Fatalf("%s: undefined service %q", where, s.Name)
			}
		case SelUser, SelNode:
		case SelQuarantined:
			if s.Name != QuarantinedName {
				t.Fatalf("%s: quarantine selector %q", where, s.Name)
			}
		default:
			t.Fatalf("%s: kind %d", where, s.Kind)
		}
	}
	checkTargets := func(where string, ts []Target) {
		for _, tg := range ts {
			if tg.Sel.Kind != SelTag && tg.Sel.Kind != SelService && tg.Sel.Kind != SelQuarantined {
				t.Fatalf("%s: target kind %d", where, tg.Sel.Kind)
			}
			checkSel(where, tg.Sel)
			checkSpecs(where, tg.Ports)
		}
	}
	for name, svc := range p.Services {
		if len(svc.Tags) == 0 {
			t.Fatalf("service %s without tags", name)
		}
		for _, tag := range svc.Tags {
			checkSel(name, Selector{Kind: SelTag, Name: string(tag), Pos: svc.Pos})
		}
		checkSpecs(name, svc.Ports)
	}
	for name, pos := range p.Postures {
		if len(pos.Conds) == 0 || pos.Name != name {
			t.Fatalf("posture %s: %+v", name, pos)
		}
		for _, c := range pos.Conds {
			again, e := parseCondition(c.String())
			if e != nil || again != (Condition{Attr: c.Attr, Op: c.Op, Value: c.Value}) {
				t.Fatalf("condition %+v: canonical text %q re-parses to %+v, %v", c, c.String(), again, e)
			}
			if kindOfAttr(c.Attr) != attrVersion && c.Op.ordered() {
				t.Fatalf("ordered condition on %s", c.Attr)
			}
		}
	}
	checkPostures := func(where string, names []string) {
		for _, n := range names {
			if p.Postures[n] == nil {
				t.Fatalf("%s: undefined posture %q", where, n)
			}
		}
	}
	ids := map[string]bool{}
	for _, r := range p.Rules {
		checkPostures("rule", r.SrcPosture)
		if ids[r.ID] || len(r.ID) != 12 {
			t.Fatalf("rule ID %q duplicate or malformed", r.ID)
		}
		ids[r.ID] = true
		if len(r.Src) == 0 || len(r.Dst) == 0 {
			t.Fatalf("rule at %+v without src or dst", r.Pos)
		}
		for _, s := range r.Src {
			checkSel("rule", s)
		}
		checkTargets("rule", r.Dst)
	}
	for _, a := range p.Access {
		checkPostures("access", a.SrcPosture)
		for _, s := range a.Src {
			if s.Kind == SelQuarantined {
				t.Fatal("status:quarantined in an access rule")
			}
		}
		for _, tg := range a.Dst {
			if tg.Sel.Kind == SelQuarantined {
				t.Fatal("status:quarantined in an access rule")
			}
		}
		if len(a.Approvers) == 0 && !a.AutoApprove || a.MaxDuration <= 0 || a.MaxDuration > MaxDuration {
			t.Fatalf("access rule %+v", a)
		}
		for _, s := range a.Src {
			checkSel("access", s)
		}
		checkTargets("access", a.Dst)
	}
	for _, ts := range p.Tests {
		checkSel("test", ts.Src)
		checkTargets("test", ts.Accept)
		checkTargets("test", ts.Deny)
	}
}

func BenchmarkParse(b *testing.B) {
	src := []byte(testedPolicy + `{"src": "tag:web", "accept": ["svc:api"], "deny": ["svc:db"]}]}`)
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(src); err != nil {
			b.Fatal(err)
		}
	}
}
