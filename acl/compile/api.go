// Package compile turns a policy, the node inventory and the active grants
// into what each node is told: the peers it may see and the inbound rules
// that protect it. It does no I/O.
//
// Need to know: node X sees peer P only if some rule or grant lets X open
// flows to P or P open flows to X. Rules are per node and name identities:
// X's inbound rules are the (rule, target) pairs whose target selects X,
// rendered with that target's ports; P's entry in X's view lists the IDs of
// those of X's rules whose source selects P.
//
// A quarantined node (Node.Quarantined) is selected only by the selector
// status:quarantined, in rule sources and targets; every other selector
// skips it, it provides no service, and grants from it are inert. A rule
// with srcPosture selects as sources only nodes whose Node.Posture
// satisfies every named posture.
//
// The Compiler is incremental: a node joining, leaving or changing (tags,
// owner, name, posture, quarantine) recomputes only the views it touches
// and reports which nodes' views changed. Output is deterministic.
package compile

import (
	"net/netip"
	"time"

	"github.com/latchnet/latch/acl/policy"
	"github.com/latchnet/latch/wire"
)

// Node is what the compiler knows of one node.
type Node struct {
	ID   wire.NodeID
	Name string
	Tags []wire.Tag
	// Owner is the enrolling user of an untagged node.
	Owner string
	// Addresses are carried through for Pairs; they never decide access.
	Addresses []netip.Prefix
	// Posture is the node's reported posture (wire.Posture.Attrs); nil if
	// it never reported one, which satisfies no posture condition.
	Posture map[string]string
	// Quarantined nodes are selected only by "status:quarantined".
	Quarantined bool
}

// Grant is an approved just-in-time session: Src may open flows to the
// nodes providing Service on Ports until Expires.
//
// A grant is inert (its source neither sees nor is admitted by the
// service's nodes; the rule stays at the destinations, admitting no one)
// while its source is quarantined, or while the source does not satisfy
// every posture in SrcPosture as the current policy defines them (an
// undefined name is never satisfied).
type Grant struct {
	ID      string // rule ID at the destination: "grant-" + ID
	Src     wire.NodeID
	Service string
	Ports   []policy.PortSpec
	Expires time.Time
	// SrcPosture are the postures ("posture:NAME") of the access rule
	// that allowed the grant (policy.AccessRule.SrcPosture), copied at
	// approval; nil for none.
	SrcPosture []string
}

// PeerView is one visible peer in a node's view.
type PeerView struct {
	ID wire.NodeID
	// Rules are the IDs of the viewing node's rules that admit flows from
	// this peer, sorted; empty if the peer may only be reached.
	Rules []string
}

// View is everything one node is told, apart from node details the caller
// fills in from its inventory.
type View struct {
	Peers []PeerView        // sorted by ID
	Rules []wire.FilterRule // sorted by ID; Sources empty
}

// Pair is one permission on the inventory (wire.Pair with node names).
type Pair = wire.Pair
