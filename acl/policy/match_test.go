package policy

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/wire"
)

func mustParse(t testing.TB, src string) *Policy {
	t.Helper()
	p, err := Parse([]byte(src))
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, src)
	}
	return p
}

func tagged(tags ...wire.Tag) Identity { return Identity{Tags: tags} }
func owned(user string) Identity       { return Identity{Owner: user} }

const selectPolicy = `{
  "groups": {"group:dba": ["alice@example.com", "dave@example.com"], "group:empty": []},
  "tagOwners": {"tag:web": [], "tag:db": [], "tag:pg": []},
  "services": {"svc:db": {"tags": ["tag:db", "tag:pg"], "ports": ["5432/tcp"]}},
}`

func TestSelects(t *testing.T) {
	p := mustParse(t, selectPolicy)
	sel := func(s string) Selector {
		x, err := parseSelector(s)
		if err != nil {
			t.Fatalf("parseSelector(%q): %v", s, err.msg)
		}
		return x
	}
	tests := []struct {
		sel  Selector
		id   Identity
		want bool
	}{
		{sel("tag:web"), tagged("tag:web"), true},
		{sel("tag:web"), tagged("tag:db", "tag:web"), true},
		{sel("tag:web"), tagged("tag:db"), false},
		{sel("tag:web"), Identity{Name: "web", Owner: "alice@example.com"}, false},
		{sel("tag:web"), Identity{}, false},

		{sel("svc:db"), tagged("tag:db"), true},
		{sel("svc:db"), tagged("tag:pg"), true},
		{sel("svc:db"), tagged("tag:web"), false},
		{sel("svc:db"), owned("alice@example.com"), false},
		{sel("svc:nope"), tagged("tag:db"), false},

		{sel("group:dba"), owned("alice@example.com"), true},
		{sel("group:dba"), owned("dave@example.com"), true},
		{sel("group:dba"), owned("bob@example.com"), false},
		// A tagged node is never selected by its owner's group or name.
		{sel("group:dba"), Identity{Owner: "alice@example.com", Tags: []wire.Tag{"tag:web"}}, false},
		{sel("group:dba"), Identity{}, false},
		{sel("group:empty"), Identity{}, false},
		{sel("group:nope"), owned("alice@example.com"), false},

		{sel("alice@example.com"), owned("alice@example.com"), true},
		{sel("alice@example.com"), Identity{Owner: "alice@example.com", Tags: []wire.Tag{"tag:web"}}, false},
		{sel("alice@example.com"), owned("Alice@example.com"), false},
		{sel("alice@example.com"), Identity{Name: "alice@example.com"}, false},
		{sel("alice@example.com"), owned("bob@example.com"), false},

		{sel("node:build-1"), Identity{Name: "build-1"}, true},
		{sel("node:build-1"), Identity{Name: "build-1", Tags: []wire.Tag{"tag:web"}}, true},
		{sel("node:build-1"), Identity{Name: "build-10"}, false},
		{sel("node:build-1"), Identity{Name: "node:build-1"}, false},
		{sel("node:build-1"), owned("build-1"), false},

		{Selector{}, Identity{}, false},
		{Selector{Kind: SelTag}, Identity{Tags: []wire.Tag{""}}, false},
		{Selector{Kind: SelNode, Name: "node:"}, Identity{}, false},
		{Selector{Kind: SelKindInvalid, Name: "tag:web"}, tagged("tag:web"), false},
	}
	for _, tt := range tests {
		if got := p.Selects(tt.sel, tt.id); got != tt.want {
			t.Errorf("Selects(%q, %+v) = %v, want %v", tt.sel.Name, tt.id, got, tt.want)
		}
	}
	var nilPolicy *Policy
	if nilPolicy.Selects(sel("tag:web"), tagged("tag:web")) {
		t.Error("a nil policy selects")
	}
}

// SelKindInvalid is a kind no selector has.
const SelKindInvalid SelectorKind = 99

func TestTargetSelectsOnlyServicesAndTags(t *testing.T) {
	p := mustParse(t, selectPolicy)
	tests := []struct {
		t    Target
		id   Identity
		want bool
	}{
		{Target{Sel: Selector{Kind: SelService, Name: "svc:db"}}, tagged("tag:pg"), true},
		{Target{Sel: Selector{Kind: SelTag, Name: "tag:db"}}, tagged("tag:db"), true},
		{Target{Sel: Selector{Kind: SelTag, Name: "tag:db"}}, tagged("tag:pg"), false},
		{Target{Sel: Selector{Kind: SelGroup, Name: "group:dba"}}, owned("alice@example.com"), false},
		{Target{Sel: Selector{Kind: SelUser, Name: "alice@example.com"}}, owned("alice@example.com"), false},
		{Target{Sel: Selector{Kind: SelNode, Name: "node:db-1"}}, Identity{Name: "db-1"}, false},
	}
	for _, tt := range tests {
		if got := p.TargetSelects(tt.t, tt.id); got != tt.want {
			t.Errorf("TargetSelects(%q, %+v) = %v, want %v", tt.t.Sel.Name, tt.id, got, tt.want)
		}
	}
}

func TestCovers(t *testing.T) {
	target := func(s string) Target {
		tg, err := ParseTarget(s)
		if err != nil {
			t.Fatal(err)
		}
		return tg
	}
	const sctp wire.Proto = 132
	tests := []struct {
		target string
		proto  wire.Proto
		port   uint16
		want   bool
	}{
		{"tag:db:5432/tcp", wire.ProtoTCP, 5432, true},
		{"tag:db:5432/tcp", wire.ProtoTCP, 5433, false},
		{"tag:db:5432/tcp", wire.ProtoUDP, 5432, false},
		{"tag:db:5432/tcp", wire.ProtoICMP, 0, false},
		{"tag:db:5432/tcp", wire.ProtoTCP, 0, false},
		{"tag:db:8000-8100/udp", wire.ProtoUDP, 8000, true},
		{"tag:db:8000-8100/udp", wire.ProtoUDP, 8100, true},
		{"tag:db:8000-8100/udp", wire.ProtoUDP, 7999, false},
		{"tag:db:8000-8100/udp", wire.ProtoUDP, 8101, false},
		// A bare port means TCP and UDP, nothing else.
		{"tag:db:53", wire.ProtoTCP, 53, true},
		{"tag:db:53", wire.ProtoUDP, 53, true},
		{"tag:db:53", wire.ProtoICMP, 53, false},
		{"tag:db:53", sctp, 53, false},
		// ICMP covers ICMP and ICMPv6 only.
		{"tag:db:icmp", wire.ProtoICMP, 0, true},
		{"tag:db:icmp", wire.ProtoICMPv6, 0, true},
		{"tag:db:icmp", wire.ProtoICMP, 8, true},
		{"tag:db:icmp", wire.ProtoTCP, 0, false},
		{"tag:db:icmp", wire.ProtoTCP, 22, false},
		{"tag:db:icmp", wire.ProtoUDP, 53, false},
		{"tag:db:1-65535/tcp", wire.ProtoTCP, 65535, true},
		{"tag:db:1-65535/tcp", wire.ProtoUDP, 1, false},
	}
	for _, tt := range tests {
		if got := target(tt.target).Covers(tt.proto, tt.port); got != tt.want {
			t.Errorf("%s Covers(%d, %d) = %v, want %v", tt.target, tt.proto, tt.port, got, tt.want)
		}
	}
	if (Target{}).Covers(wire.ProtoTCP, 1) {
		t.Error("a target without ports covers something")
	}
}

// meshPolicy is the policy of the e2e scenario.
const meshPolicy = `{
  "groups": {"group:dev": ["dana@example.com"]},
  "tagOwners": {"tag:web": [], "tag:api": [], "tag:db": [], "tag:ci": []},
  "services": {
    "svc:api": {"tags": ["tag:api"], "ports": ["8080/tcp"]},
    "svc:db":  {"tags": ["tag:db"],  "ports": ["5432/tcp"]},
  },
  "rules": [
    {"src": ["tag:web"], "dst": ["svc:api"]},
    {"src": ["svc:api"], "dst": ["svc:db"]},
  ],
}`

var meshNodes = map[string]Identity{
	"web":    tagged("tag:web"),
	"api":    tagged("tag:api"),
	"db":     tagged("tag:db"),
	"ci":     tagged("tag:ci"),
	"laptop": {Name: "laptop", Owner: "dana@example.com"},
}

var allProtos = []wire.Proto{wire.ProtoTCP, wire.ProtoUDP, wire.ProtoICMP, wire.ProtoICMPv6, 132}

func TestAllowsExactlyTheNamedPairs(t *testing.T) {
	p := mustParse(t, meshPolicy)
	type flow struct {
		src, dst string
		proto    wire.Proto
		port     uint16
	}
	allowed := map[flow]bool{
		{"web", "api", wire.ProtoTCP, 8080}: true,
		{"api", "db", wire.ProtoTCP, 5432}:  true,
	}
	n := 0
	for sn, src := range meshNodes {
		for dn, dst := range meshNodes {
			for _, proto := range allProtos {
				for port := 0; port <= 65535; port++ {
					f := flow{sn, dn, proto, uint16(port)}
					if got := p.Allows(src, dst, proto, uint16(port)); got != allowed[f] {
						t.Errorf("Allows(%s -> %s, proto %d, port %d) = %v, want %v", sn, dn, proto, port, got, allowed[f])
						if n++; n > 20 {
							t.Fatal("too many failures")
						}
					}
				}
			}
		}
	}
}

func TestAllowsICMPOnlyWhereNamed(t *testing.T) {
	p := mustParse(t, `{
  "groups": {"group:dba": ["alice@example.com"]},
  "tagOwners": {"tag:db": []},
  "rules": [{"src": ["group:dba"], "dst": ["tag:db:22/tcp", "tag:db:icmp"]}],
}`)
	alice, db := owned("alice@example.com"), tagged("tag:db")
	for _, tt := range []struct {
		src, dst Identity
		proto    wire.Proto
		port     uint16
		want     bool
	}{
		{alice, db, wire.ProtoICMP, 0, true},
		{alice, db, wire.ProtoICMPv6, 0, true},
		{alice, db, wire.ProtoTCP, 22, true},
		{alice, db, wire.ProtoUDP, 22, false},
		{alice, db, wire.ProtoTCP, 23, false},
		{db, alice, wire.ProtoICMP, 0, false},
		{Identity{Owner: "alice@example.com", Tags: []wire.Tag{"tag:db"}}, db, wire.ProtoICMP, 0, false},
	} {
		if got := p.Allows(tt.src, tt.dst, tt.proto, tt.port); got != tt.want {
			t.Errorf("Allows(%+v -> %+v, %d/%d) = %v, want %v", tt.src, tt.dst, tt.port, tt.proto, got, tt.want)
		}
	}
}

func TestEmptyPolicyAdmitsNothing(t *testing.T) {
	var nilPolicy *Policy
	for _, p := range []*Policy{nilPolicy, mustParse(t, ""), mustParse(t, "{}"), mustParse(t, `{"tagOwners": {"tag:web": [], "tag:api": []}}`)} {
		ids := []Identity{tagged("tag:web"), tagged("tag:api"), owned("dana@example.com"), {Name: "laptop"}, {}}
		for _, src := range ids {
			for _, dst := range ids {
				for _, proto := range allProtos {
					for _, port := range []uint16{0, 1, 22, 443, 5432, 8080, 65535} {
						if p.Allows(src, dst, proto, port) {
							t.Errorf("empty policy allows %+v -> %+v on %d/%d", src, dst, port, proto)
						}
					}
				}
			}
		}
		if r, err := p.AccessRuleFor(tagged("tag:web"), "svc:api", 0, time.Minute); err == nil {
			t.Errorf("empty policy grants access by %+v", r)
		}
		if err := p.RunTests(); err != nil {
			t.Errorf("empty policy fails its (no) tests: %v", err)
		}
	}
}

const accessPolicy = `{
  "groups": {"group:dba": ["alice@example.com"], "group:sre": ["bob@example.com"]},
  "tagOwners": {"tag:ci": [], "tag:db": [], "tag:pg": [], "tag:staging": [], "tag:dev": []},
  "services": {
    "svc:db":      {"tags": ["tag:db"], "ports": ["5432/tcp", "9187/tcp"]},
    "svc:pgpool":  {"tags": ["tag:db", "tag:pg"], "ports": ["5432/tcp"]},
    "svc:staging": {"tags": ["tag:staging"], "ports": ["443/tcp", "8000-8100", "icmp"]},
  },
  "access": [
    {"src": ["tag:ci"], "dst": ["svc:db"], "approvers": ["group:dba"], "maxDuration": "8h"},
    {"src": ["tag:ci"], "dst": ["svc:staging"], "autoApprove": true, "maxDuration": "1h"},
    {"src": ["tag:ci"], "dst": ["svc:staging"], "approvers": ["group:sre"], "maxDuration": "4h"},
    {"src": ["group:dba"], "dst": ["tag:db:5432/tcp"], "autoApprove": true, "maxDuration": "30m"},
    {"src": ["tag:dev"], "dst": ["tag:db:5432/tcp"], "approvers": ["bob@example.com"], "maxDuration": "1h"},
  ],
}`

func TestAccessRuleFor(t *testing.T) {
	p := mustParse(t, accessPolicy)
	alice := owned("alice@example.com")
	tests := []struct {
		name    string
		src     Identity
		service string
		port    uint16
		d       time.Duration
		rule    int    // index into p.Access, or -1
		msg     string // error substring
		denied  bool   // the error wraps ErrNotAllowed
	}{
		{"approval needed", tagged("tag:ci"), "svc:db", 0, time.Hour, 0, "", false},
		{"one port", tagged("tag:ci"), "svc:db", 9187, 8 * time.Hour, 0, "", false},
		{"over the maximum", tagged("tag:ci"), "svc:db", 5432, 9 * time.Hour, -1, "9h0m0s is longer than the 8h0m0s the policy allows for svc:db port 5432", true},
		{"auto-approve preferred", tagged("tag:ci"), "svc:staging", 0, 30 * time.Minute, 1, "", false},
		{"longer needs approval", tagged("tag:ci"), "svc:staging", 8050, 2 * time.Hour, 2, "", false},
		{"longest allowed is named", tagged("tag:ci"), "svc:staging", 0, 5 * time.Hour, -1, "the 4h0m0s the policy allows", true},
		{"tag target covers its single-tag service", alice, "svc:db", 5432, 10 * time.Minute, 3, "", false},
		{"tag target does not cover other ports", alice, "svc:db", 0, 10 * time.Minute, -1, "no access rule lets this node request svc:db", true},
		{"tagged node is not its owner's group", Identity{Owner: "alice@example.com", Tags: []wire.Tag{"tag:staging"}}, "svc:db", 5432, time.Minute, -1, "no access rule", true},
		{"tag target does not cover a multi-tag service", tagged("tag:dev"), "svc:pgpool", 5432, time.Minute, -1, "no access rule lets this node request svc:pgpool port 5432", true},
		{"tag target by approval", tagged("tag:dev"), "svc:db", 5432, time.Minute, 4, "", false},
		{"unknown node", Identity{Name: "x"}, "svc:db", 0, time.Minute, -1, "no access rule", true},
		{"unknown service", tagged("tag:ci"), "svc:cache", 0, time.Minute, -1, `unknown service "svc:cache"`, false},
		{"port not in service", tagged("tag:ci"), "svc:db", 22, time.Minute, -1, "svc:db has no port 22 (its ports: 5432/tcp, 9187/tcp)", false},
		{"zero duration", tagged("tag:ci"), "svc:db", 0, 0, -1, "must be above zero", false},
		{"negative duration", tagged("tag:ci"), "svc:db", 0, -time.Minute, -1, "must be above zero", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := p.AccessRuleFor(tt.src, tt.service, tt.port, tt.d)
			if tt.rule >= 0 {
				if err != nil {
					t.Fatalf("AccessRuleFor = %v, want rule %d", err, tt.rule)
				}
				if r != p.Access[tt.rule] {
					t.Fatalf("AccessRuleFor = the rule at line %d, want the one at line %d", r.Pos.Line, p.Access[tt.rule].Pos.Line)
				}
				return
			}
			if err == nil {
				t.Fatalf("AccessRuleFor = the rule at line %d, want an error", r.Pos.Line)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q, want it to contain %q", err, tt.msg)
			}
			if got := errors.Is(err, ErrNotAllowed); got != tt.denied {
				t.Errorf("errors.Is(%v, ErrNotAllowed) = %v, want %v", err, got, tt.denied)
			}
		})
	}
}

func TestCanApprove(t *testing.T) {
	p := mustParse(t, accessPolicy)
	tests := []struct {
		rule int
		user string
		want bool
	}{
		{0, "alice@example.com", true}, // member of group:dba
		{0, "bob@example.com", false},
		{0, "", false},
		{0, "group:dba", false}, // a user named like the group is not the group
		{0, "Alice@example.com", false},
		{4, "bob@example.com", true}, // named directly
		{4, "alice@example.com", false},
		{1, "alice@example.com", false}, // auto-approved: no approvers
		{3, "alice@example.com", false},
	}
	for _, tt := range tests {
		if got := p.CanApprove(p.Access[tt.rule], tt.user); got != tt.want {
			t.Errorf("CanApprove(access rule %d, %q) = %v, want %v", tt.rule, tt.user, got, tt.want)
		}
	}
	if p.CanApprove(nil, "alice@example.com") {
		t.Error("CanApprove(nil rule) = true")
	}
}

func TestGrantPorts(t *testing.T) {
	p := mustParse(t, accessPolicy)
	tests := []struct {
		service string
		port    uint16
		want    string
	}{
		{"svc:staging", 0, "443/tcp 8000-8100/tcp 8000-8100/udp icmp"},
		{"svc:staging", 8050, "8050/tcp 8050/udp"},
		{"svc:staging", 443, "443/tcp"},
		{"svc:staging", 22, "error: svc:staging has no port 22"},
		{"svc:nope", 0, `error: unknown service "svc:nope"`},
	}
	for _, tt := range tests {
		specs, err := p.GrantPorts(tt.service, tt.port)
		got := fmt.Sprint(specs)
		got = strings.Trim(got, "[]")
		if err != nil {
			got = "error: " + err.Error()
		}
		if !strings.HasPrefix(got, tt.want) {
			t.Errorf("GrantPorts(%s, %d) = %q, want %q", tt.service, tt.port, got, tt.want)
		}
	}
	// The result is a copy: changing it leaves the policy alone.
	specs, _ := p.GrantPorts("svc:staging", 0)
	specs[0].Ports.Last = 65535
	if p.Services["svc:staging"].Ports[0].Ports.Last != 443 {
		t.Error("GrantPorts returned the policy's own slice")
	}
}

func TestRuleIDs(t *testing.T) {
	const head = `{"tagOwners": {"tag:web": [], "tag:api": [], "tag:db": [], "tag:ci": []},
 "services": {"svc:api": {"tags": ["tag:api"], "ports": ["8080/tcp"]}, "svc:db": {"tags": ["tag:db"], "ports": ["5432/tcp"]}},
 "rules": [`
	const (
		r1 = `{"src": ["tag:web"], "dst": ["svc:api"]}`
		r2 = `{"src": ["svc:api", "tag:ci"], "dst": ["svc:db", "tag:db:22,icmp"]}`
		r3 = `{"src": ["tag:ci"], "dst": ["tag:api:8080/tcp"]}`
	)
	ids := func(rules ...string) map[string]string {
		p := mustParse(t, head+strings.Join(rules, ",\n")+"]}")
		out := map[string]string{}
		for _, r := range p.Rules {
			out[ruleKey(r.Src, r.SrcPosture, r.Dst)] = r.ID
		}
		if len(out) != len(rules) {
			t.Fatalf("%d rules, %d distinct", len(rules), len(out))
		}
		return out
	}
	id := func(rules ...string) string {
		p := mustParse(t, head+strings.Join(rules, ",\n")+"]}")
		return p.Rules[0].ID
	}
	base := ids(r1, r2, r3)
	t.Run("golden", func(t *testing.T) {
		// Pinned: a changed canonical form would change every rule's ID
		// and churn every node's rules on upgrade.
		if got := id(r1); got != "r-1773bf561e" {
			t.Errorf("ID of %s = %s, want r-1773bf561e", r1, got)
		}
	})
	t.Run("reordering rules keeps IDs", func(t *testing.T) {
		if got := ids(r3, r1, r2); fmt.Sprint(got) != fmt.Sprint(base) {
			t.Errorf("IDs changed: %v, was %v", got, base)
		}
	})
	t.Run("editing other rules keeps IDs", func(t *testing.T) {
		edited := `{"src": ["svc:api", "tag:ci"], "dst": ["svc:db", "tag:db:23,icmp"]}`
		got := ids(r1, edited, r3, `{"src": ["tag:web"], "dst": ["svc:db"]}`)
		p := mustParse(t, head+r1+","+r2+","+r3+"]}")
		for i, r := range p.Rules {
			k := ruleKey(r.Src, r.SrcPosture, r.Dst)
			if i == 1 {
				if got[k] != "" {
					t.Errorf("the edited rule kept its ID %s", got[k])
				}
				continue
			}
			if got[k] != r.ID {
				t.Errorf("rule %d changed ID from %s to %s", i, r.ID, got[k])
			}
		}
	})
	t.Run("comments, spacing and order inside a rule keep the ID", func(t *testing.T) {
		same := []string{
			`{"dst": ["tag:db:icmp,22", "svc:db"], "src": ["tag:ci", "svc:api"]}`,
			`{ /* db access */ "src": ["svc:api", "tag:ci",], "dst": ["svc:db", "tag:db:22/udp, icmp, 22/tcp",], }`,
		}
		for _, r := range same {
			if got, want := id(r), id(r2); got != want {
				t.Errorf("ID of %s = %s, want %s (same as %s)", r, got, want, r2)
			}
		}
	})
	t.Run("different rules get different IDs", func(t *testing.T) {
		variants := []string{
			r1, r2, r3,
			`{"src": ["tag:web"], "dst": ["svc:db"]}`,
			`{"src": ["tag:api"], "dst": ["svc:api"]}`,
			`{"src": ["tag:web"], "dst": ["tag:api:8080/tcp"]}`,
			`{"src": ["tag:web"], "dst": ["tag:api:8080/udp"]}`,
			`{"src": ["tag:web"], "dst": ["tag:api:8080"]}`,
			`{"src": ["tag:web"], "dst": ["tag:api:8081/tcp"]}`,
			`{"src": ["tag:web"], "dst": ["tag:api:8080-8081/tcp"]}`,
			`{"src": ["tag:web", "tag:ci"], "dst": ["svc:api"]}`,
			`{"src": ["tag:web"], "dst": ["svc:api", "tag:db:icmp"]}`,
		}
		seen := map[string]string{}
		for _, v := range variants {
			i := id(v)
			if o, dup := seen[i]; dup {
				t.Errorf("%s and %s share ID %s", o, v, i)
			}
			seen[i] = v
		}
		var many []string
		for port := 1; port <= 500; port++ {
			many = append(many, fmt.Sprintf(`{"src": ["tag:web"], "dst": ["tag:db:%d/tcp"]}`, port))
		}
		if got := ids(many...); len(got) != 500 {
			t.Errorf("500 rules, %d IDs", len(got))
		}
	})
}
