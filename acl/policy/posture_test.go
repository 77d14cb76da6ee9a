package policy

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/latchnet/latch/wire"
)

// withPostures is a policy with defs, services, a posture section and body.
func withPostures(postures, body string) string {
	return defs + svcs + "  \"postures\": {" + postures + "},\n  " + body + "\n}\n"
}

const okPostures = `"posture:linux": ["os == linux", "agent_version >= 0.4"], "posture:fw": ["firewall == true"]`

// posturePolicy gates web -> svc:api on posture:linux, and lets
// quarantined nodes reach svc:db (the remediation path) and group:dba
// reach quarantined nodes on 22/tcp.
const posturePolicy = `{
  "groups": {"group:dba": ["alice@example.com"]},
  "tagOwners": {"tag:web": [], "tag:api": [], "tag:db": [], "tag:ci": []},
  "services": {
    "svc:api": {"tags": ["tag:api"], "ports": ["8080/tcp"]},
    "svc:db":  {"tags": ["tag:db"], "ports": ["5432/tcp"]},
  },
  "postures": {
    "posture:linux": ["os == linux", "agent_version >= 0.4"],
    "posture:fw":    ["firewall == true"],
  },
  "rules": [
    {"src": ["tag:web"], "srcPosture": ["posture:linux"], "dst": ["svc:api"]},
    {"src": ["status:quarantined"], "dst": ["svc:db"]},
    {"src": ["group:dba"], "dst": ["status:quarantined:22/tcp"]},
    {"src": ["tag:ci"], "dst": ["tag:db:22/tcp"]},
  ],
  "access": [
    {"src": ["tag:ci"], "srcPosture": ["posture:fw"], "dst": ["svc:db"], "autoApprove": true, "maxDuration": "1h"},
  ],
`

func TestParsePosturesRefuseWithPlace(t *testing.T) {
	const okRule = `"rules": [{"src": ["tag:web"], "dst": ["svc:api"]}]`
	tests := []struct {
		name string
		src  string
		msg  string
	}{
		{"unknown attribute", withPostures(`"posture:a": ["‸colour == red"]`, okRule), `unknown posture attribute "colour"`},
		{"uppercase attribute", withPostures(`"posture:a": ["‸OS == linux"]`, okRule), `invalid posture condition "OS == linux"`},
		{"unknown operator", withPostures(`"posture:a": ["os ‸=~ linux"]`, okRule), `unknown operator "=~"`},
		{"single equals", withPostures(`"posture:a": ["os ‸= linux"]`, okRule), `unknown operator "="`},
		{"missing operator", withPostures(`"posture:a": ["os ‸linux"]`, okRule), "missing operator after os"},
		{"missing value", withPostures(`"posture:a": ["agent_version >= ‸"]`, okRule), "missing value after agent_version >="},
		{"bad bare value", withPostures(`"posture:a": ["hostname == ‸a b"]`, okRule), `bad value "a b"`},
		{"unterminated quote", withPostures(`"posture:a": ["os == ‸'linux"]`, okRule), "unterminated quoted value"},
		{"text after quote", withPostures(`"posture:a": ["os == 'linux'‸x"]`, okRule), `unexpected "x" after the value`},
		{"empty quoted value", withPostures(`"posture:a": ["os == ‸''"]`, okRule), "empty value"},
		{"wildcard value", withPostures(`"posture:a": ["os == ‸*"]`, okRule), `"*" is not allowed`},
		{"ordered boolean", withPostures(`"posture:a": ["firewall ‸>= true"]`, okRule), "firewall is true or false: use == or !=, not >="},
		{"boolean value", withPostures(`"posture:a": ["disk_encryption == ‸yes"]`, okRule), `bad value "yes" for disk_encryption`},
		{"ordered os", withPostures(`"posture:a": ["os ‸< linux"]`, okRule), "os compares as text"},
		{"ordered hostname", withPostures(`"posture:a": ["hostname ‸> h"]`, okRule), "hostname compares as text"},
		{"empty condition list", withPostures(`"posture:a": ‸[]`, okRule), "empty posture posture:a"},
		{"condition twice", withPostures(`"posture:a": ["os == linux", "‸os==linux"]`, okRule), "listed twice"},
		{"duplicate posture", withPostures(`"posture:a": ["os == linux"], "‸posture:a": ["os == linux"]`, okRule), `"posture:a" defined twice`},
		{"bad posture name", withPostures(`"‸linux": ["os == linux"]`, okRule), `invalid posture name "linux"`},
		{"posture not a list", withPostures(`"posture:a": ‸"os == linux"`, okRule), "must be an array of strings"},
		{"unknown srcPosture", withPostures(okPostures, `"rules": [{"src": ["tag:web"], "srcPosture": ["‸posture:nope"], "dst": ["svc:api"]}]`), `unknown posture "posture:nope"`},
		{"srcPosture without prefix", withPostures(okPostures, `"rules": [{"src": ["tag:web"], "srcPosture": ["‸linux"], "dst": ["svc:api"]}]`), `invalid posture name "linux"`},
		{"empty srcPosture", withPostures(okPostures, `"rules": [{"src": ["tag:web"], "srcPosture": ‸[], "dst": ["svc:api"]}]`), `empty "srcPosture"`},
		{"srcPosture twice", withPostures(okPostures, `"rules": [{"src": ["tag:web"], "srcPosture": ["posture:fw", "‸posture:fw"], "dst": ["svc:api"]}]`), "listed twice"},
		{"srcPosture with no postures section", withSvcs(`"rules": [{"src": ["tag:web"], "srcPosture": ["‸posture:fw"], "dst": ["svc:api"]}]`), `unknown posture "posture:fw"`},
		{"unknown access srcPosture", withPostures(okPostures, `"access": [{"src": ["tag:ci"], "srcPosture": ["‸posture:x"], "dst": ["svc:db"], "autoApprove": true, "maxDuration": "1h"}]`), `unknown posture "posture:x"`},

		// status:quarantined.
		{"unknown status", withSvcs(`"rules": [{"src": ["‸status:sick"], "dst": ["svc:api"]}]`), `unknown status "status:sick"`},
		{"quarantined source with ports", withSvcs(`"rules": [{"src": ["‸status:quarantined:22"], "dst": ["svc:api"]}]`), "takes no ports"},
		{"quarantined target without ports", withSvcs(`"rules": [{"src": ["tag:web"], "dst": ["‸status:quarantined"]}]`), "needs ports"},
		{"quarantined target bad port", withSvcs(`"rules": [{"src": ["tag:web"], "dst": ["status:quarantined:‸0"]}]`), "out of range"},
		{"quarantined in access src", withSvcs(`"access": [{"src": ["‸status:quarantined"], "dst": ["svc:db"], "autoApprove": true, "maxDuration": "1h"}]`), "has no place in an access rule"},
		{"quarantined in access dst", withSvcs(`"access": [{"src": ["tag:ci"], "dst": ["‸status:quarantined:22/tcp"], "autoApprove": true, "maxDuration": "1h"}]`), "has no place in an access rule"},
		{"quarantined providing a service", noSvcs(`"services": {"svc:x": {"tags": ["‸status:quarantined"], "ports": ["1"]}}`), "a service is provided by tags"},
		{"quarantined in a group", `{"groups": {"group:a": ["‸status:quarantined"]}}`, "groups hold users"},

		// Tests.
		{"test posture unknown attribute", withPostures(okPostures, `"tests": [{"src": "tag:web", "posture": {"‸colour": "red"}, "deny": ["svc:api"]}]`), `unknown posture attribute "colour"`},
		{"test posture not an object", withPostures(okPostures, `"tests": [{"src": "tag:web", "posture": ‸["os"], "deny": ["svc:api"]}]`), "must be an object"},
		{"test posture number", withPostures(okPostures, `"tests": [{"src": "tag:web", "posture": {"os_version": ‸12}, "deny": ["svc:api"]}]`), "os_version must be a string, not a number"},
		{"test posture boolean for text", withPostures(okPostures, `"tests": [{"src": "tag:web", "posture": {"os": ‸true}, "deny": ["svc:api"]}]`), "os takes a string, not a boolean"},
		{"test posture bad boolean", withPostures(okPostures, `"tests": [{"src": "tag:web", "posture": {"firewall": "‸on"}, "deny": ["svc:api"]}]`), `bad value "on" for firewall`},
		{"test posture empty value", withPostures(okPostures, `"tests": [{"src": "tag:web", "posture": {"os": "‸"}, "deny": ["svc:api"]}]`), "empty value for os"},
		{"test quarantined not boolean", withPostures(okPostures, `"tests": [{"src": "tag:web", "quarantined": ‸"yes", "deny": ["svc:api"]}]`), `"quarantined" must be true or false`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, want := unmark(t, tt.src)
			p, err := Parse([]byte(src))
			if err == nil {
				t.Fatalf("Parse accepted:\n%s", src)
			}
			if p != nil {
				t.Errorf("Parse returned a policy with its error")
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %T %v is not an *Error", err, err)
			}
			if pe.Pos != want {
				t.Errorf("error at line %d, column %d, want line %d, column %d: %v", pe.Line, pe.Col, want.Line, want.Col, err)
			}
			if !strings.Contains(pe.Msg, tt.msg) {
				t.Errorf("message %q does not contain %q", pe.Msg, tt.msg)
			}
		})
	}
}

func TestParsePostureConditions(t *testing.T) {
	tests := []struct {
		text string
		want Condition
	}{
		{"os == linux", Condition{Attr: "os", Op: OpEq, Value: "linux"}},
		{"os == 'linux'", Condition{Attr: "os", Op: OpEq, Value: "linux"}},
		{"agent_version>=0.4", Condition{Attr: "agent_version", Op: OpGe, Value: "0.4"}},
		{"  kernel != 5.10.0  ", Condition{Attr: "kernel", Op: OpNe, Value: "5.10.0"}},
		{"os_version < 12", Condition{Attr: "os_version", Op: OpLt, Value: "12"}},
		{"os_version <= 12.1", Condition{Attr: "os_version", Op: OpLe, Value: "12.1"}},
		{"kernel > 6.1.0-18-amd64", Condition{Attr: "kernel", Op: OpGt, Value: "6.1.0-18-amd64"}},
		{"firewall == true", Condition{Attr: "firewall", Op: OpEq, Value: "true"}},
		{"disk_encryption != false", Condition{Attr: "disk_encryption", Op: OpNe, Value: "false"}},
		{"hostname == 'build host 1'", Condition{Attr: "hostname", Op: OpEq, Value: "build host 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			c, e := parseCondition(tt.text)
			if e != nil {
				t.Fatalf("refused: %s", e.msg)
			}
			if c != tt.want {
				t.Errorf("got %+v, want %+v", c, tt.want)
			}
			// The canonical text parses back to the same condition.
			again, e := parseCondition(c.String())
			if e != nil || again != c {
				t.Errorf("String() %q re-parses to %+v, %v", c.String(), again, e)
			}
		})
	}
}

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"1.10", "1.9", 1},
		{"0.4", "0.4.0", 0},
		{"0.4.0.0", "0.4", 0},
		{"0.4.1", "0.4", 1},
		{"0.3.99", "0.4", -1},
		{"12", "9", 1},
		{"010", "9", 1},
		{"99999999999999999999999", "99999999999999999999998", 1},
		{"6.1.0-18-amd64", "6.1.0", 1}, // digits first, then the rest as text
		{"6.1.0-18-amd64", "6.2", -1},
		{"6.10.0", "6.9.5", 1},
		{"1.0-rc1", "1.0-rc2", -1},
		{"bookworm", "bullseye", -1}, // not numeric: text
		{"1.a", "1.b", -1},
		{"1.a", "1.1", 1}, // text against a number: as text, "a" > "1"
	}
	for _, tt := range tests {
		if got := compareVersions(tt.a, tt.b); got != tt.want {
			t.Errorf("compareVersions(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := compareVersions(tt.b, tt.a); got != -tt.want {
			t.Errorf("compareVersions(%q, %q) = %d, want %d", tt.b, tt.a, got, -tt.want)
		}
	}
}

func TestConditionHoldsFailsClosed(t *testing.T) {
	attrs := map[string]string{"os": "linux", "agent_version": "0.4.0", "firewall": "true", "kernel": "6.1.0-18-amd64", "hostname": ""}
	tests := []struct {
		c    Condition
		want bool
	}{
		{Condition{Attr: "os", Op: OpEq, Value: "linux"}, true},
		{Condition{Attr: "os", Op: OpNe, Value: "linux"}, false},
		{Condition{Attr: "os", Op: OpNe, Value: "darwin"}, true},
		{Condition{Attr: "agent_version", Op: OpEq, Value: "0.4"}, true},
		{Condition{Attr: "agent_version", Op: OpGe, Value: "0.4"}, true},
		{Condition{Attr: "agent_version", Op: OpGt, Value: "0.4"}, false},
		{Condition{Attr: "agent_version", Op: OpLt, Value: "0.10"}, true},
		{Condition{Attr: "agent_version", Op: OpLe, Value: "0.3"}, false},
		{Condition{Attr: "kernel", Op: OpNe, Value: "5.10.0"}, true},
		{Condition{Attr: "firewall", Op: OpEq, Value: "true"}, true},
		{Condition{Attr: "firewall", Op: OpNe, Value: "false"}, true},
		// Not reported: false whatever the operator, != included.
		{Condition{Attr: "os_version", Op: OpNe, Value: "12"}, false},
		{Condition{Attr: "disk_encryption", Op: OpNe, Value: "true"}, false},
		{Condition{Attr: "hostname", Op: OpNe, Value: "h"}, false}, // empty counts as not reported
		// What the parser refuses never holds.
		{Condition{Attr: "firewall", Op: OpGe, Value: "true"}, false},
		{Condition{Attr: "firewall", Op: OpNe, Value: "yes"}, false},
		{Condition{Attr: "os", Op: OpGe, Value: "a"}, false},
		{Condition{Attr: "colour", Op: OpNe, Value: "red"}, false},
		{Condition{Attr: "os", Op: 0, Value: "linux"}, false},
	}
	for _, tt := range tests {
		if got := tt.c.Holds(attrs); got != tt.want {
			t.Errorf("%v holds = %v, want %v", tt.c, got, tt.want)
		}
		if tt.c.Holds(nil) {
			t.Errorf("%v holds with no posture", tt.c)
		}
	}
}

func TestQuarantinedNodeSelectedOnlyByStatus(t *testing.T) {
	p := mustParse(t, posturePolicy+"}")
	quarantined := Identity{Name: "web", Tags: []wire.Tag{"tag:web", "tag:api"}, Quarantined: true}
	owned := Identity{Name: "lap", Owner: "alice@example.com", Quarantined: true}
	for _, s := range []string{"tag:web", "svc:api", "node:web", "group:dba", "alice@example.com"} {
		sel, e := parseSelector(s)
		if e != nil {
			t.Fatal(e.msg)
		}
		if p.Selects(sel, quarantined) || p.Selects(sel, owned) {
			t.Errorf("%s selects a quarantined node", s)
		}
	}
	status := Selector{Kind: SelQuarantined, Name: QuarantinedName}
	if !p.Selects(status, quarantined) || !p.Selects(status, owned) {
		t.Error("status:quarantined does not select quarantined nodes")
	}
	if p.Selects(status, Identity{Tags: []wire.Tag{"tag:web"}}) {
		t.Error("status:quarantined selects a node that is not quarantined")
	}
	api := Identity{Tags: []wire.Tag{"tag:api"}}
	db := Identity{Tags: []wire.Tag{"tag:db"}}
	linux := map[string]string{"os": "linux", "agent_version": "0.4"}
	web := Identity{Tags: []wire.Tag{"tag:web"}, Posture: linux}
	qweb := web
	qweb.Quarantined = true
	dba := Identity{Owner: "alice@example.com"}
	tests := []struct {
		name     string
		src, dst Identity
		port     uint16
		want     bool
	}{
		{"healthy web to api", web, api, 8080, true},
		{"quarantined web to api", qweb, api, 8080, false},
		{"quarantined web to the remediation service", qweb, db, 5432, true},
		{"healthy web to the remediation service", web, db, 5432, false},
		{"dba into a quarantined node", dba, qweb, 22, true},
		{"dba into a healthy node", dba, web, 22, false},
		{"web to a quarantined api", web, Identity{Tags: []wire.Tag{"tag:api"}, Quarantined: true}, 8080, false},
		{"ci to a quarantined db", Identity{Tags: []wire.Tag{"tag:ci"}}, Identity{Tags: []wire.Tag{"tag:db"}, Quarantined: true}, 22, false},
	}
	for _, tt := range tests {
		if got := p.Allows(tt.src, tt.dst, wire.ProtoTCP, tt.port); got != tt.want {
			t.Errorf("%s: Allows = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestPostureGatesRuleSources(t *testing.T) {
	p := mustParse(t, posturePolicy+"}")
	api := Identity{Tags: []wire.Tag{"tag:api"}}
	tests := []struct {
		name    string
		posture map[string]string
		want    bool
	}{
		{"no posture reported", nil, false},
		{"satisfied", map[string]string{"os": "linux", "agent_version": "0.4.0"}, true},
		{"newer", map[string]string{"os": "linux", "agent_version": "0.10"}, true},
		{"older", map[string]string{"os": "linux", "agent_version": "0.3.9"}, false},
		{"other os", map[string]string{"os": "darwin", "agent_version": "1"}, false},
		{"version not reported", map[string]string{"os": "linux"}, false},
	}
	for _, tt := range tests {
		web := Identity{Tags: []wire.Tag{"tag:web"}, Posture: tt.posture}
		if got := p.Allows(web, api, wire.ProtoTCP, 8080); got != tt.want {
			t.Errorf("%s: Allows = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestAccessRuleRequiresPosture(t *testing.T) {
	p := mustParse(t, posturePolicy+"}")
	ci := Identity{Tags: []wire.Tag{"tag:ci"}}
	if _, err := p.AccessRuleFor(ci, "svc:db", 0, time.Hour); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("ci without posture: err = %v, want ErrNotAllowed", err)
	}
	ci.Posture = map[string]string{"firewall": "true"}
	r, err := p.AccessRuleFor(ci, "svc:db", 0, time.Hour)
	if err != nil || !cmp.Equal(r.SrcPosture, []string{"posture:fw"}) {
		t.Errorf("ci with posture: %+v, %v", r, err)
	}
	ci.Quarantined = true
	if _, err := p.AccessRuleFor(ci, "svc:db", 0, time.Hour); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("quarantined ci: err = %v, want ErrNotAllowed", err)
	}
}

func TestRunTestsWithPostureAndQuarantine(t *testing.T) {
	tests := []struct {
		test string
		want string // the failure after "test 1 (line N): ", or "" for a pass
	}{
		{`{"src": "tag:web", "deny": ["svc:api"]}`, ""}, // no posture: the gated rule does not admit it
		{`{"src": "tag:web", "posture": {"os": "linux", "agent_version": "0.4.0"}, "accept": ["svc:api"]}`, ""},
		{`{"src": "tag:web", "posture": {"os": "linux", "agent_version": "0.3"}, "deny": ["svc:api"]}`, ""},
		{`{"src": "tag:web", "posture": {"os": "linux", "agent_version": "0.4"}, "quarantined": true, "deny": ["svc:api"], "accept": ["svc:db"]}`, ""},
		{`{"src": "status:quarantined", "accept": ["svc:db"], "deny": ["svc:api"]}`, ""},
		{`{"src": "group:dba", "accept": ["status:quarantined:22/tcp"], "deny": ["tag:db:22/tcp"]}`, ""},
		{`{"src": "tag:ci", "quarantined": true, "deny": ["tag:db:22/tcp"]}`, ""},
		{`{"src": "tag:ci", "deny": ["status:quarantined:22/tcp"]}`, ""},

		{`{"src": "tag:web", "accept": ["svc:api"]}`,
			"tag:web should reach svc:api on 8080/tcp but no rule allows it"},
		{`{"src": "tag:web", "posture": {"os": "linux", "agent_version": "1"}, "deny": ["svc:api"]}`,
			"tag:web should not reach svc:api on 8080/tcp but the rule at line 13 allows 8080/tcp"},
		{`{"src": "tag:web", "posture": {"os": "linux", "agent_version": "1"}, "quarantined": true, "accept": ["svc:api"]}`,
			"tag:web should reach svc:api on 8080/tcp but no rule allows it"},
		{`{"src": "status:quarantined", "deny": ["svc:db"]}`,
			"status:quarantined should not reach svc:db on 5432/tcp but the rule at line 14 allows 5432/tcp"},
		{`{"src": "tag:ci", "quarantined": true, "accept": ["tag:db:22/tcp"]}`,
			"tag:ci should reach tag:db on 22/tcp but no rule allows it"},
	}
	line := strings.Count(posturePolicy, "\n") + 2
	for _, tt := range tests {
		t.Run(tt.test, func(t *testing.T) {
			p := mustParse(t, posturePolicy+`  "tests": [`+"\n"+tt.test+"\n]}")
			err := p.RunTests()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("failed: %v", err)
				}
				return
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("RunTests = %v, want a failure", err)
			}
			want := fmt.Sprintf("test 1 (line %d): %s", line, tt.want)
			if pe.Msg != want {
				t.Errorf("got  %q\nwant %q", pe.Msg, want)
			}
		})
	}
}

func TestParseReadsPosturesAndQuarantine(t *testing.T) {
	p := mustParse(t, posturePolicy+`  "tests": [{"src": "tag:web", "posture": {"os": "linux", "firewall": true}, "quarantined": true, "deny": ["svc:api"]}],
}`)
	wantPostures := map[string]*Posture{
		"posture:linux": {Name: "posture:linux", Conds: []Condition{
			{Attr: "os", Op: OpEq, Value: "linux"}, {Attr: "agent_version", Op: OpGe, Value: "0.4"},
		}},
		"posture:fw": {Name: "posture:fw", Conds: []Condition{{Attr: "firewall", Op: OpEq, Value: "true"}}},
	}
	ignorePos := cmpopts.IgnoreTypes(Pos{})
	if d := cmp.Diff(wantPostures, p.Postures, ignorePos); d != "" {
		t.Errorf("postures (-want +got):\n%s", d)
	}
	if got := p.Rules[0].SrcPosture; !cmp.Equal(got, []string{"posture:linux"}) {
		t.Errorf("rule srcPosture = %v", got)
	}
	if got := p.Rules[1].Src[0]; got.Kind != SelQuarantined || got.Name != QuarantinedName {
		t.Errorf("quarantine source = %+v", got)
	}
	if got := p.Rules[2].Dst[0]; got.Sel.Kind != SelQuarantined || got.String() != "status:quarantined:22/tcp" {
		t.Errorf("quarantine target = %+v (%s)", got, got.String())
	}
	if got := p.Access[0].SrcPosture; !cmp.Equal(got, []string{"posture:fw"}) {
		t.Errorf("access srcPosture = %v", got)
	}
	tst := p.Tests[0]
	if !tst.Quarantined || !cmp.Equal(tst.Posture, map[string]string{"os": "linux", "firewall": "true"}) {
		t.Errorf("test = %+v", tst)
	}
}

func TestRuleIDsCoverPostures(t *testing.T) {
	head := withPostures(okPostures, `"rules": [`)
	head = strings.TrimSuffix(head, "\n}\n")
	p := mustParse(t, head+`
    {"src": ["tag:web"], "dst": ["svc:api"]},
    {"src": ["tag:web"], "srcPosture": ["posture:linux"], "dst": ["svc:api"]},
    {"src": ["tag:web"], "srcPosture": ["posture:linux", "posture:fw"], "dst": ["svc:api"]},
  ]}`)
	seen := map[string]bool{}
	for _, r := range p.Rules {
		if seen[r.ID] {
			t.Fatalf("rules differing only in srcPosture share ID %s", r.ID)
		}
		seen[r.ID] = true
	}
	q := mustParse(t, head+`{"src": ["tag:web"], "srcPosture": ["posture:fw", "posture:linux"], "dst": ["svc:api"]}]}`)
	if q.Rules[0].ID != p.Rules[2].ID {
		t.Errorf("the order of srcPosture changed the ID: %s != %s", q.Rules[0].ID, p.Rules[2].ID)
	}
	if _, err := Parse([]byte(head + `{"src": ["tag:web"], "srcPosture": ["posture:fw"], "dst": ["svc:api"]}, {"src": ["tag:web"], "srcPosture": ["posture:fw"], "dst": ["svc:api"]}]}`)); err == nil || !strings.Contains(err.Error(), "duplicate rule") {
		t.Errorf("duplicate posture rule: %v", err)
	}
}

// FuzzPostureCondition checks that parseCondition never panics, that an
// accepted condition fits the grammar (a known attribute, no ordered
// operator on text or booleans, booleans true or false) and re-parses
// from its canonical text, and that comparing versions is antisymmetric.
func FuzzPostureCondition(f *testing.F) {
	for _, s := range []string{"os == linux", "agent_version>=0.4", "kernel != '5.10.0'", "firewall == true", "os_version < 12.1", "hostname == 'a b'", "os =", "x", ""} {
		f.Add(s, "0.4.0")
	}
	f.Fuzz(func(t *testing.T, s, v string) {
		c, e := parseCondition(s)
		if e != nil {
			if e.i < 0 || e.i > len(s) || e.msg == "" {
				t.Fatalf("bad error %+v for %q", e, s)
			}
			return
		}
		kind := kindOfAttr(c.Attr)
		if kind == 0 || c.Value == "" || kind != attrVersion && c.Op.ordered() ||
			kind == attrBool && c.Value != "true" && c.Value != "false" {
			t.Fatalf("accepted %q as %+v", s, c)
		}
		if again, e := parseCondition(c.String()); e != nil || again != c {
			t.Fatalf("%q: canonical %q re-parses to %+v, %v", s, c.String(), again, e)
		}
		if v != "" && c.Holds(nil) {
			t.Fatalf("%q holds with no posture", s)
		}
		_ = c.Holds(map[string]string{c.Attr: v})
		if a, b := compareVersions(v, c.Value), compareVersions(c.Value, v); a != -b {
			t.Fatalf("compareVersions(%q, %q) = %d but reversed %d", v, c.Value, a, b)
		}
	})
}
