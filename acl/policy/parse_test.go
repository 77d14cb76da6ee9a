package policy

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/latchnet/latch/wire"
)

// mark, written into a test source, is where a refusal must point. It is
// removed before parsing.
const mark = "‸"

// unmark removes the mark from src and returns the place it marked,
// counted independently of the parser (columns in runes).
func unmark(t *testing.T, src string) (string, Pos) {
	t.Helper()
	i := strings.Index(src, mark)
	if i < 0 || strings.Count(src, mark) != 1 {
		t.Fatalf("source needs exactly one %s mark:\n%s", mark, src)
	}
	clean := src[:i] + src[i+len(mark):]
	line := 1 + strings.Count(clean[:i], "\n")
	col := 1 + utf8.RuneCountInString(clean[strings.LastIndex(clean[:i], "\n")+1:i])
	return clean, Pos{Line: line, Col: col}
}

// defs are the definitions most cases build on.
const defs = `{
  // groups, tags and services the cases name
  "groups": {
    "group:dba": ["alice@example.com"],
    "group:sre": ["bob@example.com", "carol@example.com"],
    "group:empty": [],
  },
  "tagOwners": {"tag:web": ["group:sre"], "tag:api": [], "tag:db": ["group:dba"], "tag:ci": [], "tag:pg": []},
`

const svcs = `  "services": {
    "svc:api": {"tags": ["tag:api"], "ports": ["8080/tcp"]},
    "svc:db": {"tags": ["tag:db"], "ports": ["5432/tcp"]},
  },
`

// withSvcs is a policy with defs, services and body.
func withSvcs(body string) string { return defs + svcs + "  " + body + "\n}\n" }

// noSvcs is a policy with defs and body, for cases about services.
func noSvcs(body string) string { return defs + "  " + body + "\n}\n" }

func TestParseRefusesWithPlace(t *testing.T) {
	const okRule = `{"src": ["tag:web"], "dst": ["svc:api"]}`
	tests := []struct {
		name string
		src  string
		msg  string // a substring of the message
	}{
		// Syntax.
		{"missing comma", "{\n  \"rules\": []\n  ‸\"tests\": []\n}", "syntax error: invalid character '\"' after object value"},
		{"unterminated string", "{\"rules\": [\"abc‸", "syntax error: unterminated string"},
		{"unterminated comment", "{} ‸/* never closed", "syntax error: unterminated comment"},
		{"bare word", "{\"rules\": ‸nope}", `syntax error: invalid value "nope"`},
		{"two documents", "{} ‸{}", "syntax error"},
		{"single quotes", "{‸'rules': []}", "syntax error"},
		{"invalid UTF-8", "{\"rules\": [] /* caf‸\xe9 */}", "invalid UTF-8"},
		{"nested too deep", "{\"rules\": [[[[[[[‸[]]]]]]]]}", "nested more than 8 levels deep"},

		// Wrong JSON types.
		{"document is an array", "‸[]", "the policy must be an object, not an array"},
		{"document is null", "‸null", "the policy must be an object, not null"},
		{"rules is an object", withSvcs(`"rules": ‸{}`), `"rules" must be an array, not an object`},
		{"rule is a string", withSvcs(`"rules": [‸"tag:web"]`), "rule must be an object, not a string"},
		{"src is a string", withSvcs(`"rules": [{"src": ‸"tag:web", "dst": ["svc:api"]}]`), `"src" must be an array of strings, not a string`},
		{"src holds a number", withSvcs(`"rules": [{"src": [‸1], "dst": ["svc:api"]}]`), `"src" must be an array of strings, found a number`},
		{"groups is an array", `{"groups": ‸[]}`, `"groups" must be an object, not an array`},
		{"group members is a string", `{"groups": {"group:a": ‸"alice@example.com"}}`, "members of group:a must be an array of strings, not a string"},
		{"service is an array", noSvcs(`"services": {"svc:db": ‸["tag:db"]}`), "service svc:db must be an object, not an array"},
		{"port is a number", noSvcs(`"services": {"svc:db": {"tags": ["tag:db"], "ports": [‸5432]}}`), "ports of svc:db must be an array of strings, found a number"},
		{"autoApprove is a string", withSvcs(`"access": [{"src": ["tag:ci"], "dst": ["svc:db"], "autoApprove": ‸"yes", "maxDuration": "1h"}]`), `"autoApprove" must be true or false, not a string`},
		{"maxDuration is a number", withSvcs(`"access": [{"src": ["tag:ci"], "dst": ["svc:db"], "approvers": ["group:dba"], "maxDuration": ‸3600}]`), `"maxDuration" must be a string, not a number`},
		{"test src is an array", withSvcs(`"tests": [{"src": ‸["tag:web"], "accept": ["svc:api"]}]`), `test "src" must be a string, not an array`},

		// Unknown keys.
		{"unknown top-level key", withSvcs(`"‸acls": []`), `unknown key "acls" in the policy (want groups, tagOwners, services, postures, rules, access, tests)`},
		{"unknown rule key", withSvcs(`"rules": [{"src": ["tag:web"], "dst": ["svc:api"], "‸action": "deny"}]`), `unknown key "action" in rule (want src, srcPosture, dst)`},
		{"unknown service key", noSvcs(`"services": {"svc:db": {"tags": ["tag:db"], "ports": ["5432/tcp"], "‸proto": "tcp"}}`), `unknown key "proto" in service svc:db`},
		{"unknown access key", withSvcs(`"access": [{"src": ["tag:ci"], "dst": ["svc:db"], "approvers": ["group:dba"], "maxDuration": "1h", "‸ttl": "1h"}]`), `unknown key "ttl" in access rule`},
		{"unknown test key", withSvcs(`"tests": [{"src": "tag:web", "accept": ["svc:api"], "‸allow": []}]`), `unknown key "allow" in test`},

		// Duplicates.
		{"top-level key twice", withSvcs(`"rules": [], "‸rules": []`), `"rules" defined twice (first at line 13, column 4)`},
		{"service twice", noSvcs(`"services": {"svc:db": {"tags": ["tag:db"], "ports": ["5432/tcp"]}, "‸svc:db": {"tags": ["tag:pg"], "ports": ["5433/tcp"]}}`), `"svc:db" defined twice (first at line 9, column 17)`},
		{"group twice", `{"groups": {"group:a": [], "‸group:a": []}}`, `"group:a" defined twice`},
		{"tag owner twice", `{"tagOwners": {"tag:a": [], "‸tag:a": []}}`, `"tag:a" defined twice`},
		{"key twice after escape", `{"groups": {"group:a": [], "‸group:\u0061": []}}`, `"group:a" defined twice`},
		{"src key twice", withSvcs(`"rules": [{"src": ["tag:web"], "‸src": ["tag:ci"], "dst": ["svc:api"]}]`), `"src" defined twice`},
		{"selector twice", withSvcs(`"rules": [{"src": ["tag:web", "‸tag:web"], "dst": ["svc:api"]}]`), `"tag:web" listed twice in "src"`},
		{"target twice", withSvcs(`"rules": [{"src": ["tag:web"], "dst": ["svc:api", "‸svc:api"]}]`), `"svc:api" listed twice in "dst"`},
		{"target twice in another spelling", withSvcs(`"rules": [{"src": ["tag:web"], "dst": ["tag:db:22", "‸tag:db:22/udp,22/tcp"]}]`), `listed twice in "dst"`},
		{"member twice", `{"groups": {"group:a": ["alice@example.com", "‸alice@example.com"]}}`, `"alice@example.com" listed twice in members of group:a`},
		{"owner twice", `{"groups": {"group:a": []}, "tagOwners": {"tag:a": ["group:a", "‸group:a"]}}`, `"group:a" listed twice in owners of tag:a`},
		{"service tag twice", noSvcs(`"services": {"svc:db": {"tags": ["tag:db", "‸tag:db"], "ports": ["5432/tcp"]}}`), `"tag:db" listed twice in tags of svc:db`},
		{"service port twice", noSvcs(`"services": {"svc:db": {"tags": ["tag:db"], "ports": ["5432/tcp", "‸5432/tcp"]}}`), "5432/tcp is listed twice"},
		{"service ports overlap", noSvcs(`"services": {"svc:db": {"tags": ["tag:db"], "ports": ["5000-6000/tcp", "‸5432"]}}`), "5432/tcp overlaps 5000-6000/tcp listed before"},
		{"target ports overlap", withSvcs(`"rules": [{"src": ["tag:web"], "dst": ["tag:db:22/tcp,‸20-30/tcp"]}]`), "20-30/tcp overlaps 22/tcp listed before"},
		{"icmp twice", withSvcs(`"rules": [{"src": ["tag:web"], "dst": ["tag:db:icmp, ‸icmp"]}]`), "icmp is listed twice"},
		{"duplicate rule", withSvcs(`"rules": [` + okRule + `, ‸` + okRule + `]`), "duplicate rule: the rule at line 13 has the same sources and destinations"},
		{"duplicate rule reordered", withSvcs(`"rules": [{"src": ["tag:web", "tag:ci"], "dst": ["svc:api", "tag:db:22"]},
    ‸{"src": ["tag:ci", "tag:web"], "dst": ["tag:db:22/udp,22/tcp", "svc:api"]}]`), "duplicate rule"},

		// Unknown and malformed names.
		{"unknown tag in src", withSvcs(`"rules": [{"src": ["‸tag:wbe"], "dst": ["svc:api"]}]`), `unknown tag "tag:wbe": a tag must be listed in tagOwners`},
		{"unknown tag in target", withSvcs(`"rules": [{"src": ["tag:web"], "dst": ["‸tag:dbb:22/tcp"]}]`), `unknown tag "tag:dbb"`},
		{"unknown tag in service", noSvcs(`"services": {"svc:db": {"tags": ["‸tag:dbb"], "ports": ["5432/tcp"]}}`), `unknown tag "tag:dbb"`},
		{"unknown group in src", withSvcs(`"rules": [{"src": ["‸group:ops"], "dst": ["svc:api"]}]`), `unknown group "group:ops"`},
		{"unknown group owning a tag", `{"tagOwners": {"tag:a": ["‸group:ops"]}}`, `unknown group "group:ops"`},
		{"unknown group approving", withSvcs(`"access": [{"src": ["tag:ci"], "dst": ["svc:db"], "approvers": ["‸group:ops"], "maxDuration": "1h"}]`), `unknown group "group:ops"`},
		{"unknown service in dst", withSvcs(`"rules": [{"src": ["tag:web"], "dst": ["‸svc:cache"]}]`), `unknown service "svc:cache"`},
		{"unknown service in src", withSvcs(`"rules": [{"src": ["‸svc:cache"], "dst": ["svc:api"]}]`), `unknown service "svc:cache"`},
		{"unknown service in access", withSvcs(`"access": [{"src": ["tag:ci"], "dst": ["‸svc:cache"], "autoApprove": true, "maxDuration": "1h"}]`), `unknown service "svc:cache"`},
		{"unknown tag in test src", withSvcs(`"tests": [{"src": "‸tag:wbe", "accept": ["svc:api"]}]`), `unknown tag "tag:wbe"`},
		{"unknown service in test accept", withSvcs(`"tests": [{"src": "tag:web", "accept": ["‸svc:cache"]}]`), `unknown service "svc:cache"`},
		{"unknown tag in test deny", withSvcs(`"tests": [{"src": "tag:web", "deny": ["‸tag:dbb:22"]}]`), `unknown tag "tag:dbb"`},
		{"node name not a label", withSvcs(`"rules": [{"src": ["‸node:Build_1"], "dst": ["svc:api"]}]`), `invalid node name "node:Build_1"`},
		{"node name ends with dash", withSvcs(`"rules": [{"src": ["‸node:build-"], "dst": ["svc:api"]}]`), `invalid node name`},
		{"tag name uppercase", `{"tagOwners": {"‸tag:Web": []}}`, `invalid tag "tag:Web"`},
		{"group key without prefix", `{"groups": {"‸admins": []}}`, `group names look like group:NAME, not "admins"`},
		{"tagOwners key without prefix", `{"tagOwners": {"‸web": []}}`, `tagOwners lists tags (tag:NAME), not "web"`},
		{"service key without prefix", noSvcs(`"services": {"‸db": {"tags": ["tag:db"], "ports": ["5432/tcp"]}}`), `service names look like svc:NAME, not "db"`},
		{"bare word selector", withSvcs(`"rules": [{"src": ["‸web"], "dst": ["svc:api"]}]`), `unknown name "web"`},
		{"unknown prefix", withSvcs(`"rules": [{"src": ["‸autogroup:member"], "dst": ["svc:api"]}]`), `unknown name "autogroup:member"`},
		{"user with a space", withSvcs(`"rules": [{"src": ["‸alice smith@example.com"], "dst": ["svc:api"]}]`), `invalid user "alice smith@example.com"`},
		{"group holds a group", `{"groups": {"group:a": [], "group:b": ["‸group:a"]}}`, `groups hold users, not "group:a"`},
		{"tag owned by a tag", `{"tagOwners": {"tag:a": [], "tag:b": ["‸tag:a"]}}`, `tag owners are users or groups, not "tag:a"`},
		{"approver is a tag", withSvcs(`"access": [{"src": ["tag:ci"], "dst": ["svc:db"], "approvers": ["‸tag:ci"], "maxDuration": "1h"}]`), `approvers are users or groups, not "tag:ci"`},
		{"service provided by a group", noSvcs(`"services": {"svc:db": {"tags": ["‸group:dba"], "ports": ["5432/tcp"]}}`), `a service is provided by tags (tag:NAME), not "group:dba"`},
		{"source with ports", withSvcs(`"rules": [{"src": ["‸tag:web:80"], "dst": ["svc:api"]}]`), `"tag:web:80": this names nodes and takes no ports`},
		{"group as destination", withSvcs(`"rules": [{"src": ["tag:web"], "dst": ["‸group:dba"]}]`), `"group:dba" cannot be a destination: destinations are svc:NAME, tag:NAME:PORTS or status:quarantined:PORTS`},
		{"node as destination", withSvcs(`"rules": [{"src": ["tag:web"], "dst": ["‸node:db-1"]}]`), `cannot be a destination`},
		{"user as destination", withSvcs(`"rules": [{"src": ["tag:web"], "dst": ["‸alice@example.com"]}]`), `cannot be a destination`},
		{"tag target without ports", withSvcs(`"rules": [{"src": ["tag:web"], "dst": ["‸tag:db"]}]`), `"tag:db" needs ports: write tag:db:PORTS`},
		{"service target with ports", withSvcs(`"rules": [{"src": ["tag:web"], "dst": ["‸svc:db:5432/tcp"]}]`), `a service target takes no ports`},
		{"unknown destination", withSvcs(`"rules": [{"src": ["tag:web"], "dst": ["‸10.0.0.1:22"]}]`), `unknown destination "10.0.0.1:22"`},

		// Ports and protocols.
		{"port zero", withSvcs(`"rules": [{"src": ["tag:web"], "dst": ["tag:db:‸0/tcp"]}]`), "port 0 out of range 1-65535"},
		{"port 65536", withSvcs(`"rules": [{"src": ["tag:web"], "dst": ["tag:db:22/tcp,‸65536/tcp"]}]`), "port 65536 out of range 1-65535"},
		{"huge port", noSvcs(`"services": {"svc:db": {"tags": ["tag:db"], "ports": ["‸4294967296/tcp"]}}`), "port 4294967296 out of range 1-65535"},
		{"range end out of range", withSvcs(`"rules": [{"src": ["tag:web"], "dst": ["tag:db:1-‸70000"]}]`), "port 70000 out of range"},
		{"reversed range", withSvcs(`"rules": [{"src": ["tag:web"], "dst": ["tag:db:‸8100-8000/tcp"]}]`), "reversed port range 8100-8000"},
		{"reversed range in service", noSvcs(`"services": {"svc:db": {"tags": ["tag:db"], "ports": ["‸30-20/udp"]}}`), "reversed port range 30-20"},
		{"negative port", withSvcs(`"rules": [{"src": ["tag:web"], "dst": ["tag:db:‸-22/tcp"]}]`), "missing port number"},
		{"unknown protocol", withSvcs(`"rules": [{"src": ["tag:web"], "dst": ["tag:db:22/‸sctp"]}]`), `unknown protocol "sctp": want tcp, udp or icmp`},
		{"uppercase protocol", noSvcs(`"services": {"svc:db": {"tags": ["tag:db"], "ports": ["5432/‸TCP"]}}`), `unknown protocol "TCP"`},
		{"bare protocol name", withSvcs(`"rules": [{"src": ["tag:web"], "dst": ["tag:db:‸icmpv6"]}]`), `unknown protocol "icmpv6"`},
		{"icmp with a port", withSvcs(`"rules": [{"src": ["tag:web"], "dst": ["tag:db:‸8/icmp"]}]`), "icmp takes no port"},
		{"tcp without a port", withSvcs(`"rules": [{"src": ["tag:web"], "dst": ["tag:db:22/udp,‸tcp"]}]`), "tcp needs a port, e.g. 22/tcp"},
		{"port not a number", withSvcs(`"rules": [{"src": ["tag:web"], "dst": ["tag:db:‸ssh/tcp"]}]`), `invalid port "ssh"`},
		{"empty port in list", withSvcs(`"rules": [{"src": ["tag:web"], "dst": ["tag:db:22/tcp,‸"]}]`), "empty port in list"},
		{"empty ports", withSvcs(`"rules": [{"src": ["tag:web"], "dst": ["tag:db:‸"]}]`), "missing ports"},

		// "*" wherever it would widen.
		{"* source", withSvcs(`"rules": [{"src": ["‸*"], "dst": ["svc:api"]}]`), wildcardMsg},
		{"* destination", withSvcs(`"rules": [{"src": ["tag:web"], "dst": ["‸*"]}]`), wildcardMsg},
		{"*:* destination", withSvcs(`"rules": [{"src": ["tag:web"], "dst": ["‸*:*"]}]`), wildcardMsg},
		{"* tag", withSvcs(`"rules": [{"src": ["tag:‸*"], "dst": ["svc:api"]}]`), wildcardMsg},
		{"* target tag", withSvcs(`"rules": [{"src": ["tag:web"], "dst": ["tag:‸*:22"]}]`), wildcardMsg},
		{"* port", withSvcs(`"rules": [{"src": ["tag:web"], "dst": ["tag:db:‸*"]}]`), wildcardMsg},
		{"* port with proto", withSvcs(`"rules": [{"src": ["tag:web"], "dst": ["tag:db:22/tcp,‸*/udp"]}]`), wildcardMsg},
		{"* range end", withSvcs(`"rules": [{"src": ["tag:web"], "dst": ["tag:db:1-‸*/tcp"]}]`), wildcardMsg},
		{"* service", withSvcs(`"rules": [{"src": ["tag:web"], "dst": ["svc:‸*"]}]`), wildcardMsg},
		{"* group member", `{"groups": {"group:a": ["‸*"]}}`, wildcardMsg},
		{"* user domain", `{"groups": {"group:a": ["‸*@example.com"]}}`, wildcardMsg},
		{"* group name", `{"groups": {"group:‸*": []}}`, wildcardMsg},
		{"* group key", `{"groups": {"‸*": []}}`, wildcardMsg},
		{"* tag owner", `{"tagOwners": {"tag:a": ["‸*"]}}`, wildcardMsg},
		{"* tagOwners key", `{"tagOwners": {"‸*": []}}`, wildcardMsg},
		{"* service tag", noSvcs(`"services": {"svc:db": {"tags": ["‸*"], "ports": ["5432/tcp"]}}`), wildcardMsg},
		{"* service port", noSvcs(`"services": {"svc:db": {"tags": ["tag:db"], "ports": ["‸*"]}}`), wildcardMsg},
		{"* access source", withSvcs(`"access": [{"src": ["‸*"], "dst": ["svc:db"], "autoApprove": true, "maxDuration": "1h"}]`), wildcardMsg},
		{"* access destination", withSvcs(`"access": [{"src": ["tag:ci"], "dst": ["‸*"], "autoApprove": true, "maxDuration": "1h"}]`), wildcardMsg},
		{"* approver", withSvcs(`"access": [{"src": ["tag:ci"], "dst": ["svc:db"], "approvers": ["‸*"], "maxDuration": "1h"}]`), wildcardMsg},
		{"* test source", withSvcs(`"tests": [{"src": "‸*", "deny": ["svc:db"]}]`), wildcardMsg},
		{"* test target", withSvcs(`"tests": [{"src": "tag:web", "deny": ["‸*"]}]`), wildcardMsg},

		// Missing and empty parts.
		{"rule without src", withSvcs(`"rules": [‸{"dst": ["svc:api"]}]`), `rule has no "src"`},
		{"rule without dst", withSvcs(`"rules": [‸{"src": ["tag:web"]}]`), `rule has no "dst"`},
		{"empty src", withSvcs(`"rules": [{"src": ‸[], "dst": ["svc:api"]}]`), `empty "src": a rule needs at least one source`},
		{"empty dst", withSvcs(`"rules": [{"src": ["tag:web"], "dst": ‸[]}]`), `empty "dst": a rule needs at least one destination`},
		{"service without tags", noSvcs(`"services": {"svc:db": ‸{"ports": ["5432/tcp"]}}`), `service svc:db has no "tags"`},
		{"service with empty tags", noSvcs(`"services": {"svc:db": {"tags": ‸[], "ports": ["5432/tcp"]}}`), "service svc:db has no tags"},
		{"service without ports", noSvcs(`"services": {"svc:db": ‸{"tags": ["tag:db"]}}`), `service svc:db has no "ports"`},
		{"service with empty ports", noSvcs(`"services": {"svc:db": {"tags": ["tag:db"], "ports": ‸[]}}`), "service svc:db has no ports"},
		{"access without approvers", withSvcs(`"access": [‸{"src": ["tag:ci"], "dst": ["svc:db"], "maxDuration": "1h"}]`), `access rule needs "approvers" or "autoApprove": true`},
		{"access with empty approvers", withSvcs(`"access": [{"src": ["tag:ci"], "dst": ["svc:db"], "approvers": ‸[], "maxDuration": "1h"}]`), `access rule needs "approvers" or "autoApprove": true`},
		{"access with autoApprove false", withSvcs(`"access": [‸{"src": ["tag:ci"], "dst": ["svc:db"], "autoApprove": false, "maxDuration": "1h"}]`), `access rule needs "approvers"`},
		{"access without src", withSvcs(`"access": [‸{"dst": ["svc:db"], "autoApprove": true, "maxDuration": "1h"}]`), `access rule has no "src"`},
		{"access with empty dst", withSvcs(`"access": [{"src": ["tag:ci"], "dst": ‸[], "autoApprove": true, "maxDuration": "1h"}]`), `empty "dst"`},
		{"maxDuration missing", withSvcs(`"access": [‸{"src": ["tag:ci"], "dst": ["svc:db"], "approvers": ["group:dba"]}]`), `access rule has no "maxDuration"`},
		{"maxDuration zero", withSvcs(`"access": [{"src": ["tag:ci"], "dst": ["svc:db"], "approvers": ["group:dba"], "maxDuration": "‸0s"}]`), `maxDuration "0s" must be above zero`},
		{"maxDuration negative", withSvcs(`"access": [{"src": ["tag:ci"], "dst": ["svc:db"], "approvers": ["group:dba"], "maxDuration": "‸-1h"}]`), "must be above zero"},
		{"maxDuration over 30 days", withSvcs(`"access": [{"src": ["tag:ci"], "dst": ["svc:db"], "approvers": ["group:dba"], "maxDuration": "‸720h1s"}]`), "over the limit of 30 days"},
		{"maxDuration in words", withSvcs(`"access": [{"src": ["tag:ci"], "dst": ["svc:db"], "approvers": ["group:dba"], "maxDuration": "‸1 hour"}]`), `invalid maxDuration "1 hour"`},
		{"test without src", withSvcs(`"tests": [‸{"accept": ["svc:api"]}]`), `test has no "src"`},
		{"test checks nothing", withSvcs(`"tests": [‸{"src": "tag:web", "accept": [], "deny": []}]`), "test checks nothing"},
		{"test of an empty group", withSvcs(`"tests": [{"src": "‸group:empty", "deny": ["svc:db"]}]`), `"group:empty" has no members to test with`},
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
			if strings.Contains(pe.Msg, "\n") {
				t.Errorf("message spans lines: %q", pe.Msg)
			}
		})
	}
}

func TestParseColumnsCountCharacters(t *testing.T) {
	// "é" is two bytes and "→" three; each is one column. Tabs are one.
	src := "{\n\t\"groups\": {\"group:a\": [/* é → */ \"tag:x\"]}}"
	_, err := Parse([]byte(src))
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("Parse = %v, want an *Error", err)
	}
	if want := (Pos{Line: 2, Col: 36}); pe.Pos != want {
		t.Errorf("error at %+v, want %+v (%v)", pe.Pos, want, err)
	}
	if got, want := err.Error(), `line 2, column 36: groups hold users, not "tag:x"`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got, want := Format("policy.hujson", err), `policy.hujson:2:36: groups hold users, not "tag:x"`; got != want {
		t.Errorf("Format = %q, want %q", got, want)
	}
}

func TestParseSyntaxErrorColumnsCountCharacters(t *testing.T) {
	// hujson reports byte columns (24 here); Parse converts them to characters.
	src := "{\"groups\": {/* éé */ x}}"
	_, err := Parse([]byte(src))
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("Parse = %v, want an *Error", err)
	}
	if want := (Pos{Line: 1, Col: 22}); pe.Pos != want {
		t.Errorf("error at %+v, want %+v (%v)", pe.Pos, want, err)
	}
}

func TestParseRefusesOversizedInput(t *testing.T) {
	src := "{}" + strings.Repeat(" ", MaxSize)
	_, err := Parse([]byte(src))
	var pe *Error
	if !errors.As(err, &pe) || !strings.Contains(pe.Msg, "larger than") || pe.Line != 1 {
		t.Errorf("Parse of %d bytes = %v, want a size refusal", len(src), err)
	}
}

func TestParseRefusesDeepNestingQuickly(t *testing.T) {
	// Deeper than any stack should go; refused before hujson recurses.
	src := strings.Repeat("[", MaxSize/2) + strings.Repeat("]", MaxSize/2)
	_, err := Parse([]byte(src))
	var pe *Error
	if !errors.As(err, &pe) || !strings.Contains(pe.Msg, "nested more than") || pe.Pos != (Pos{1, 9}) {
		t.Errorf("Parse = %v, want a nesting refusal at column 9", err)
	}
}

func TestParseAcceptsEmptyPolicies(t *testing.T) {
	for _, src := range []string{"", "  \n\t", "// nothing yet", "/* nothing */\n// yet\n", "{}", "{ /* empty */ }\n",
		`{"groups": {}, "tagOwners": {}, "services": {}, "rules": [], "access": [], "tests": []}`} {
		p, err := Parse([]byte(src))
		if err != nil {
			t.Errorf("Parse(%q) = %v", src, err)
			continue
		}
		if len(p.Groups)+len(p.TagOwners)+len(p.Services)+len(p.Rules)+len(p.Access)+len(p.Tests) != 0 {
			t.Errorf("Parse(%q) = %+v, want an empty policy", src, p)
		}
		if string(p.Source) != src {
			t.Errorf("Source = %q, want %q", p.Source, src)
		}
		if err := p.RunTests(); err != nil {
			t.Errorf("RunTests on %q = %v", src, err)
		}
	}
}

// docExample returns the policy in the package documentation.
func docExample(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("types.go")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	in := false
	for line := range strings.SplitSeq(string(b), "\n") {
		if line == "//\t{" {
			in = true
		}
		if in {
			out = append(out, strings.TrimPrefix(line, "//\t"))
		}
		if in && line == "//\t}" {
			break
		}
	}
	if len(out) < 3 {
		t.Fatal("no example in the package doc")
	}
	return strings.Join(out, "\n")
}

func TestParsePackageDocExample(t *testing.T) {
	src := docExample(t)
	p, err := Parse([]byte(src))
	if err != nil {
		t.Fatalf("the documented example is refused: %v\n%s", err, src)
	}
	if err := p.RunTests(); err != nil {
		t.Errorf("the documented example fails its tests: %v", err)
	}
}

func TestParseReadsEverything(t *testing.T) {
	src := `// Latch policy, with comments and trailing commas everywhere.
{
  "groups": {
    "group:dba": ["alice@example.com",],  // DBAs
  },
  "tagOwners": {"tag:db": ["group:dba", "bob@example.com",], "tag:web": [], "tag:ci": [],},
  "services": {
    /* the database */
    "svc:db": {"tags": ["tag:db"], "ports": ["5432/tcp", "9000-9010", "icmp",],},
  },
  "rules": [
    {"src": ["tag:web", "node:build-1", "group:dba", "bob@example.com",], "dst": ["svc:db", "tag:db:22/tcp, 60000-61000/udp",],},
  ],
  "access": [
    {"src": ["tag:ci"], "dst": ["svc:db"], "approvers": ["group:dba", "carol@example.com"], "maxDuration": "1h30m",},
    {"src": ["tag:ci"], "dst": ["tag:db:5432/tcp"], "autoApprove": true, "maxDuration": "10m"},
  ],
  "tests": [
    {"src": "tag:web", "accept": ["svc:db"], "deny": ["tag:db:22"],},
  ],
}
`
	p, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	tcp := func(a, b uint16) PortSpec {
		return PortSpec{Proto: wire.ProtoTCP, Ports: wire.PortRange{First: a, Last: b}}
	}
	udp := func(a, b uint16) PortSpec {
		return PortSpec{Proto: wire.ProtoUDP, Ports: wire.PortRange{First: a, Last: b}}
	}
	icmp := PortSpec{Proto: wire.ProtoICMP}
	dbPorts := []PortSpec{tcp(5432, 5432), tcp(9000, 9010), udp(9000, 9010), icmp}
	want := &Policy{
		Groups:    map[string][]string{"group:dba": {"alice@example.com"}},
		TagOwners: map[wire.Tag][]string{"tag:db": {"group:dba", "bob@example.com"}, "tag:web": {}, "tag:ci": {}},
		Services: map[string]*Service{"svc:db": {
			Name: "svc:db", Tags: []wire.Tag{"tag:db"}, Ports: dbPorts, Pos: Pos{9, 6},
		}},
		Rules: []*Rule{{
			ID: p.Rules[0].ID,
			Src: []Selector{
				{Kind: SelTag, Name: "tag:web", Pos: Pos{12, 15}},
				{Kind: SelNode, Name: "node:build-1", Pos: Pos{12, 26}},
				{Kind: SelGroup, Name: "group:dba", Pos: Pos{12, 42}},
				{Kind: SelUser, Name: "bob@example.com", Pos: Pos{12, 55}},
			},
			Dst: []Target{
				{Sel: Selector{Kind: SelService, Name: "svc:db", Pos: Pos{12, 84}}, Ports: dbPorts, Pos: Pos{12, 84}},
				{Sel: Selector{Kind: SelTag, Name: "tag:db", Pos: Pos{12, 94}}, Ports: []PortSpec{tcp(22, 22), udp(60000, 61000)}, Pos: Pos{12, 94}},
			},
			Pos: Pos{12, 5},
		}},
		Access: []*AccessRule{
			{
				Src:         []Selector{{Kind: SelTag, Name: "tag:ci", Pos: Pos{15, 15}}},
				Dst:         []Target{{Sel: Selector{Kind: SelService, Name: "svc:db", Pos: Pos{15, 34}}, Ports: dbPorts, Pos: Pos{15, 34}}},
				Approvers:   []string{"group:dba", "carol@example.com"},
				MaxDuration: 90 * time.Minute,
				Pos:         Pos{15, 5},
			},
			{
				Src:         []Selector{{Kind: SelTag, Name: "tag:ci", Pos: Pos{16, 15}}},
				Dst:         []Target{{Sel: Selector{Kind: SelTag, Name: "tag:db", Pos: Pos{16, 34}}, Ports: []PortSpec{tcp(5432, 5432)}, Pos: Pos{16, 34}}},
				AutoApprove: true,
				MaxDuration: 10 * time.Minute,
				Pos:         Pos{16, 5},
			},
		},
		Tests: []*Test{{
			Src:    Selector{Kind: SelTag, Name: "tag:web", Pos: Pos{19, 14}},
			Accept: []Target{{Sel: Selector{Kind: SelService, Name: "svc:db", Pos: Pos{19, 36}}, Ports: dbPorts, Pos: Pos{19, 36}}},
			Deny:   []Target{{Sel: Selector{Kind: SelTag, Name: "tag:db", Pos: Pos{19, 56}}, Ports: []PortSpec{tcp(22, 22), udp(22, 22)}, Pos: Pos{19, 56}}},
			Pos:    Pos{19, 5},
		}},
		Source: []byte(src),
	}
	if diff := cmp.Diff(want, p); diff != "" {
		t.Errorf("Parse mismatch (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(p.Rules[0].ID, "r-") || len(p.Rules[0].ID) != 12 {
		t.Errorf("rule ID %q, want r- and 10 hex digits", p.Rules[0].ID)
	}
}

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in   string
		want string // Target.String(), or "" for an error
		msg  string
	}{
		{"svc:db", "svc:db", ""},
		{"tag:db:5432/tcp", "tag:db:5432/tcp", ""},
		{"tag:db:22", "tag:db:22/tcp,22/udp", ""},
		{"tag:db:443/tcp,icmp", "tag:db:icmp,443/tcp", ""}, // sorted by protocol number
		{"*", "", wildcardMsg},
		{"svc:*", "", wildcardMsg},
		{"tag:db:*", "", wildcardMsg},
		{"tag:db", "", "needs ports"},
		{"group:dba", "", "cannot be a destination"},
		{"db", "", "unknown destination"},
		{"tag:db:0", "", "out of range"},
	}
	for _, tt := range tests {
		got, err := ParseTarget(tt.in)
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("ParseTarget(%q) = %v, want an error", tt.in, got)
		case tt.want == "" && !strings.Contains(err.Error(), tt.msg):
			t.Errorf("ParseTarget(%q) error %q, want it to contain %q", tt.in, err, tt.msg)
		case tt.want != "" && err != nil:
			t.Errorf("ParseTarget(%q) = %v", tt.in, err)
		case tt.want != "" && got.String() != tt.want:
			t.Errorf("ParseTarget(%q) = %q, want %q", tt.in, got.String(), tt.want)
		}
	}
}
