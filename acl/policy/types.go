// Package policy parses and validates Latch's access policy, a HuJSON
// document (JSON with comments and trailing commas), and runs the tests it
// carries. It does no I/O.
//
// A policy names identities, never addresses:
//
//	{
//	  "groups":    {"group:dba": ["alice@example.com"], "group:sre": ["bob@example.com"]},
//	  "tagOwners": {"tag:web": ["group:sre"], "tag:api": [], "tag:db": ["group:dba"],
//	                "tag:ci": ["group:sre"], "tag:staging": []},
//	  "services":  {"svc:api": {"tags": ["tag:api"], "ports": ["8080/tcp"]},
//	                "svc:db":  {"tags": ["tag:db"],  "ports": ["5432/tcp"]},
//	                "svc:staging": {"tags": ["tag:staging"], "ports": ["443/tcp"]}},
//	  "postures":  {"posture:modern": ["os == linux", "agent_version >= 0.4", "firewall == true"]},
//	  "rules": [
//	    {"src": ["tag:web"], "dst": ["svc:api"]},
//	    {"src": ["svc:api"], "dst": ["svc:db"]},
//	    {"src": ["group:dba"], "srcPosture": ["posture:modern"], "dst": ["tag:db:22/tcp", "tag:db:icmp"]},
//	    {"src": ["status:quarantined"], "dst": ["svc:staging"]},
//	  ],
//	  "access": [
//	    {"src": ["tag:ci"], "dst": ["svc:db"], "approvers": ["group:dba"], "maxDuration": "1h"},
//	    {"src": ["tag:ci"], "dst": ["svc:staging"], "autoApprove": true, "maxDuration": "1h"},
//	  ],
//	  "tests": [
//	    {"src": "tag:web", "accept": ["svc:api"], "deny": ["svc:db", "tag:db:22"]},
//	    {"src": "tag:web", "quarantined": true, "accept": ["svc:staging"], "deny": ["svc:api"]},
//	  ],
//	}
//
// There is no wildcard and no default: an empty or missing policy admits
// nothing, and a rule admits exactly what it names. Every error carries
// the line and column of the text it is about.
//
// Postures are conditions on what a node's agent reports about its host
// (wire.PostureAttributes). A rule's "srcPosture" makes its sources select
// only nodes that satisfy every named posture; a condition on an attribute
// the node did not report is false, whatever the operator (see
// Condition.Holds).
//
// Quarantine: the selector "status:quarantined" (a source, or the target
// "status:quarantined:PORTS") selects quarantined nodes, and no other
// selector does: a quarantined node keeps only what rules naming
// status:quarantined give it, which is the remediation path.
package policy

import (
	"time"

	"github.com/latchnet/latch/wire"
)

// Policy is a parsed, validated policy. It is immutable.
type Policy struct {
	// Groups maps "group:<name>" to user names.
	Groups map[string][]string
	// TagOwners maps every tag the policy knows to the users and groups
	// who may assign it. A tag not listed here cannot be used anywhere.
	TagOwners map[wire.Tag][]string
	// Services maps "svc:<name>" to its definition.
	Services map[string]*Service
	// Postures maps "posture:<name>" to its conditions.
	Postures map[string]*Posture
	Rules    []*Rule
	Access   []*AccessRule
	Tests    []*Test
	// Source is the text the policy was parsed from, comments included.
	Source []byte
}

// Pos is a 1-based place in the policy text.
type Pos struct{ Line, Col int }

// Error is a refused policy: what is wrong and where. Error() reads
// "line 12, column 5: unknown tag \"tag:wbe\"".
type Error struct {
	Pos
	Msg string
}

// Service is a name for "these tags on these ports".
type Service struct {
	Name  string     // "svc:db"
	Tags  []wire.Tag // a node carrying any of them provides the service
	Ports []PortSpec
	Pos   Pos
}

// PortSpec is a protocol and, for TCP and UDP, a port range. For ICMP the
// range is zero and the spec means ICMP and ICMPv6 echo and errors.
//
// Text forms: "5432/tcp", "8000-8100/udp", "icmp"; a bare "22" or "22-25"
// means that port on both TCP and UDP (it parses into two specs).
type PortSpec struct {
	Proto wire.Proto // ProtoTCP, ProtoUDP or ProtoICMP
	Ports wire.PortRange
}

// SelectorKind says what a Selector names.
type SelectorKind uint8

const (
	// SelTag selects nodes carrying the tag ("tag:web").
	SelTag SelectorKind = iota + 1
	// SelGroup selects untagged nodes owned by a member ("group:dba").
	SelGroup
	// SelUser selects untagged nodes owned by the user ("alice@example.com").
	SelUser
	// SelService selects nodes carrying any of the service's tags ("svc:api").
	SelService
	// SelNode selects one node by name ("node:build-1").
	SelNode
	// SelQuarantined selects quarantined nodes, and only them
	// ("status:quarantined"). Every other kind skips quarantined nodes.
	SelQuarantined
)

// QuarantinedName is the text of the SelQuarantined selector.
const QuarantinedName = "status:quarantined"

// Selector names a set of nodes by identity.
type Selector struct {
	Kind SelectorKind
	// Name is the text as written: "tag:web", "group:dba", "svc:api",
	// "node:build-1", "alice@example.com".
	Name string
	Pos  Pos
}

// Identity is what selectors are matched against: who a node is.
type Identity struct {
	Name string
	Tags []wire.Tag
	// Owner is the user who enrolled an untagged node; tagged nodes have
	// no owner for policy purposes.
	Owner string
	// Posture is the node's reported posture attributes
	// (wire.Posture.Attrs); nil satisfies no posture condition.
	Posture map[string]string
	// Quarantined nodes are selected only by "status:quarantined", and
	// "status:quarantined" selects only them.
	Quarantined bool
}

// Target is a destination of a rule: the nodes Sel names, on Ports. For a
// service Sel is the service and Ports its ports; for "tag:db:22/tcp" Sel
// is the tag and Ports what follows it.
type Target struct {
	Sel   Selector
	Ports []PortSpec
	Pos   Pos
}

// Rule admits new flows from any node Src selects to any node a Target
// selects, on that target's ports.
type Rule struct {
	// ID is stable across edits that leave the rule itself unchanged (a
	// hash of its content, "r-" + 10 hex), so unchanged rules keep their
	// IDs from one policy version to the next.
	ID  string
	Src []Selector
	// SrcPosture names postures ("posture:NAME"); when set, Src selects
	// only nodes that satisfy every one of them.
	SrcPosture []string
	Dst        []Target
	Pos        Pos
}

// AccessRule says who may request just-in-time access to what, who
// approves it, and for how long at most.
type AccessRule struct {
	Src []Selector
	// SrcPosture names postures a requester must satisfy, each of them,
	// to request access, and a grant's source to use it (see
	// compile.Grant.SrcPosture).
	SrcPosture []string
	// Dst holds services or tag:port targets a request may name.
	Dst []Target
	// Approvers are users and groups; empty only with AutoApprove.
	Approvers   []string
	AutoApprove bool
	MaxDuration time.Duration
	Pos         Pos
}

// Test is a policy test: a node with identity Src must reach every
// target in Accept (on all of its ports) and none in Deny (on any).
type Test struct {
	Src Selector
	// Posture is the hypothetical source's posture attributes; nil means
	// it reported none, so posture-gated rules do not admit it.
	Posture map[string]string
	// Quarantined makes the hypothetical source quarantined.
	Quarantined bool
	Accept      []Target
	Deny        []Target
	Pos         Pos
}
