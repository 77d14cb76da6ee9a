package policy

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/latchnet/latch/wire"
)

// testedPolicy is the policy RunTests cases run against; the rules sit
// on lines 10 to 15.
const testedPolicy = `{
  "groups": {"group:dev": ["dana@example.com", "erin@example.com"], "group:dba": ["alice@example.com"]},
  "tagOwners": {"tag:web": [], "tag:api": [], "tag:api-canary": [], "tag:db": [], "tag:ci": [], "tag:mon": []},
  "services": {
    "svc:api":     {"tags": ["tag:api", "tag:api-canary"], "ports": ["8080/tcp"]},
    "svc:db":      {"tags": ["tag:db"], "ports": ["5432/tcp"]},
    "svc:metrics": {"tags": ["tag:web", "tag:api"], "ports": ["9000-9100/tcp"]},
  },
  "rules": [
    {"src": ["tag:web"], "dst": ["svc:api"]},
    {"src": ["tag:api"], "dst": ["svc:db"]},
    {"src": ["tag:mon"], "dst": ["tag:web:9000-9050/tcp", "tag:api:9000-9100/tcp", "tag:db:icmp"]},
    {"src": ["group:dba"], "dst": ["tag:db:22/tcp"]},
    {"src": ["dana@example.com"], "dst": ["tag:web:22/tcp"]},
    {"src": ["node:build-1"], "dst": ["tag:ci:22/tcp"]},
  ],
  "tests": [
`

// testLine is the line of the first test in testedPolicy.
var testLine = strings.Count(testedPolicy, "\n") + 1

func TestRunTests(t *testing.T) {
	tests := []struct {
		test string
		want string // the failure after "test 1 (line N): ", or "" for a pass
	}{
		{`{"src": "tag:web", "accept": ["svc:api"], "deny": ["svc:db", "tag:db:22", "tag:api:22", "tag:api:icmp"]}`, ""},
		{`{"src": "tag:api", "accept": ["svc:db", "tag:db:5432/tcp"], "deny": ["tag:db:5432/udp", "tag:db:5431-5433/udp"]}`, ""},
		{`{"src": "group:dba", "accept": ["tag:db:22/tcp"], "deny": ["tag:db:22/udp", "svc:db", "tag:db:icmp"]}`, ""},
		{`{"src": "node:build-1", "accept": ["tag:ci:22/tcp"], "deny": ["tag:web:22/tcp", "tag:ci:23"]}`, ""},
		{`{"src": "tag:mon", "accept": ["tag:db:icmp", "tag:web:9000-9050/tcp", "tag:api:9000/tcp"], "deny": ["tag:web:9051-9100/tcp", "tag:db:1-65535"]}`, ""},
		{`{"src": "dana@example.com", "accept": ["tag:web:22/tcp"], "deny": ["tag:db:22"]}`, ""},
		// A tagged node owned by dana is not dana: tag:web nodes get nothing from her rule.
		{`{"src": "tag:web", "deny": ["tag:web:22"]}`, ""},

		{`{"src": "tag:web", "accept": ["svc:db"]}`,
			"tag:web should reach svc:db on 5432/tcp but no rule allows it"},
		{`{"src": "tag:web", "deny": ["svc:api"]}`,
			"tag:web should not reach svc:api (a node tagged tag:api) on 8080/tcp but the rule at line 10 allows 8080/tcp"},
		{`{"src": "svc:api", "accept": ["svc:db"]}`,
			"svc:api (a node tagged tag:api-canary) should reach svc:db on 5432/tcp but no rule allows it"},
		{`{"src": "tag:mon", "accept": ["svc:metrics"]}`,
			"tag:mon should reach svc:metrics (a node tagged tag:web) on 9000-9100/tcp but no rule allows port 9051"},
		{`{"src": "tag:mon", "deny": ["tag:web:9040-9060/tcp"]}`,
			"tag:mon should not reach tag:web on 9040-9060/tcp but the rule at line 12 allows 9040-9050/tcp"},
		{`{"src": "group:dev", "accept": ["tag:web:22/tcp"]}`,
			"group:dev (member erin@example.com) should reach tag:web on 22/tcp but no rule allows it"},
		{`{"src": "group:dev", "deny": ["tag:web:22"]}`,
			"group:dev (member dana@example.com) should not reach tag:web on 22/tcp but the rule at line 14 allows 22/tcp"},
		{`{"src": "tag:mon", "deny": ["tag:db:icmp"]}`,
			"tag:mon should not reach tag:db on icmp but the rule at line 12 allows icmp"},
		{`{"src": "tag:web", "accept": ["tag:api:icmp"]}`,
			"tag:web should reach tag:api on icmp but no rule allows it"},
		{`{"src": "tag:web", "accept": ["svc:api"], "deny": ["tag:api:8080/tcp"]}`,
			"tag:web should not reach tag:api on 8080/tcp but the rule at line 10 allows 8080/tcp"},
		{`{"src": "tag:api", "accept": ["tag:db:5432"]}`,
			"tag:api should reach tag:db on 5432/udp but no rule allows it"},
		{`{"src": "node:build-2", "accept": ["tag:ci:22/tcp"]}`,
			"node:build-2 should reach tag:ci on 22/tcp but no rule allows it"},
	}
	for _, tt := range tests {
		t.Run(tt.test, func(t *testing.T) {
			p := mustParse(t, testedPolicy+"    "+tt.test+",\n  ],\n}\n")
			err := p.RunTests()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("RunTests = %v, want a pass", err)
				}
				return
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("RunTests = %v, want an *Error", err)
			}
			if want := fmt.Sprintf("test 1 (line %d): %s", testLine, tt.want); pe.Msg != want {
				t.Errorf("RunTests message\n got %q\nwant %q", pe.Msg, want)
			}
			if want := (Pos{Line: testLine, Col: 5}); pe.Pos != want {
				t.Errorf("RunTests error at %+v, want %+v", pe.Pos, want)
			}
		})
	}
}

func TestRunTestsNamesTheFailingTest(t *testing.T) {
	p := mustParse(t, testedPolicy+`    {"src": "tag:web", "accept": ["svc:api"]},
    {"src": "tag:api", "accept": ["svc:db"]},
    {"src": "tag:ci",  "accept": ["svc:db"]},
    {"src": "tag:db",  "accept": ["svc:db"]},
  ],
}`)
	err := p.RunTests()
	want := fmt.Sprintf("line %d, column 5: test 3 (line %d): tag:ci should reach svc:db on 5432/tcp but no rule allows it", testLine+2, testLine+2)
	if err == nil || err.Error() != want {
		t.Errorf("RunTests = %v\nwant %s", err, want)
	}
}

func TestParseDoesNotRunTests(t *testing.T) {
	p, err := Parse([]byte(testedPolicy + `{"src": "tag:web", "accept": ["svc:db"]}]}`))
	if err != nil {
		t.Fatalf("Parse refused a policy whose test fails: %v", err)
	}
	if p.RunTests() == nil {
		t.Fatal("the failing test passed")
	}
}

// TestRunTestsMatchesAllows checks RunTests' range arithmetic against a
// brute-force reference: every port of every spec, asked of Allows.
func TestRunTestsMatchesAllows(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	port := func() string {
		a := 1 + rng.IntN(30)
		switch rng.IntN(6) {
		case 0:
			return "icmp"
		case 1:
			return fmt.Sprint(a)
		case 2:
			return fmt.Sprintf("%d-%d", a, a+rng.IntN(10))
		case 3:
			return fmt.Sprintf("%d/udp", a)
		}
		return fmt.Sprintf("%d-%d/tcp", a, a+rng.IntN(10))
	}
	target := func() string {
		if rng.IntN(3) == 0 {
			return pick("svc:one", "svc:two")
		}
		return pick("tag:a", "tag:b", "tag:c", "status:quarantined") + ":" + port()
	}
	// Postures gate some rules; the test's source has one or none.
	gate := func() string {
		return pick("", "", `"srcPosture": ["posture:l"], `, `"srcPosture": ["posture:old"], `)
	}
	testExtra := func() string {
		return pick("", `"posture": {"os": "linux", "agent_version": "0.4"}, `, `"posture": {"os": "linux"}, `, `"quarantined": true, `)
	}
	var passed, failed int
	for range 3000 {
		var rules []string
		for range rng.IntN(5) {
			rules = append(rules, fmt.Sprintf(`{"src": [%q], %s"dst": [%q, %q]}`,
				pick("tag:a", "tag:b", "tag:c", "svc:one", "svc:two", "group:g", "node:n1", "status:quarantined"), gate(), target(), target()))
		}
		list := "accept"
		if rng.IntN(2) == 0 {
			list = "deny"
		}
		src := fmt.Sprintf(`{
  "groups": {"group:g": ["u1@example.com", "u2@example.com"]},
  "tagOwners": {"tag:a": [], "tag:b": [], "tag:c": []},
  "services": {"svc:one": {"tags": ["tag:a"], "ports": ["5-9/tcp", "icmp"]}, "svc:two": {"tags": ["tag:b", "tag:c"], "ports": ["7", "20-25/udp"]}},
  "postures": {"posture:l": ["os == linux", "agent_version >= 0.4.0"], "posture:old": ["agent_version < 0.4"]},
  "rules": [%s],
  "tests": [{"src": %q, %s%q: [%q]}],
}`, strings.Join(rules, ",\n"), pick("tag:a", "tag:b", "svc:two", "group:g", "node:n1", "status:quarantined"), testExtra(), list, target())
		p, err := Parse([]byte(src))
		if err != nil {
			continue // a duplicate rule or overlapping ports; not what this checks
		}
		want := referenceTest(p, p.Tests[0])
		err = p.RunTests()
		if (err == nil) != want {
			t.Fatalf("RunTests = %v, reference says pass=%v, for\n%s", err, want, src)
		}
		if want {
			passed++
		} else {
			failed++
		}
	}
	t.Logf("%d passing and %d failing generated tests agree with the reference", passed, failed)
	if passed < 100 || failed < 100 {
		t.Errorf("only %d passing and %d failing cases: the generator needs work", passed, failed)
	}
}

// referenceTest decides a test by asking Allows about every port.
func referenceTest(p *Policy, t *Test) bool {
	for _, src := range p.testSources(t) {
		for _, lists := range []struct {
			targets []Target
			accept  bool
		}{{t.Accept, true}, {t.Deny, false}} {
			for _, tg := range lists.targets {
				for _, dst := range p.targetProbes(tg) {
					for _, s := range tg.Ports {
						first, last := int(s.Ports.First), int(s.Ports.Last)
						if s.Proto == wire.ProtoICMP {
							first, last = 0, 0
						}
						for port := first; port <= last; port++ {
							if p.Allows(src.id, dst.id, s.Proto, uint16(port)) != lists.accept {
								return false
							}
						}
					}
				}
			}
		}
	}
	return true
}
