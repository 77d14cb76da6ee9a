// Package netmap computes what each node is told about the network and
// fans it out to the nodes' streams.
//
// A Snapshot is the whole network at one version: nodes, the current
// policy and the active grants. A Computer follows the snapshots and says
// which nodes' netmaps each one may have changed; PolicyComputer does so
// with the incremental policy compiler (acl/compile), so a node joining
// touches only the nodes that may see it. The Hub holds one Subscription
// per connected node, and on every new snapshot brings only the affected
// subscribers up to date (recomputing a whole map where policy or grants
// changed it, else just the changed peer entries), compares with what
// that subscriber last received and sends the wire.Delta, or nothing if
// the map did not change. A new subscription starts with the full map.
//
// The Hub never blocks on a subscriber: each has a bounded queue, and a
// subscriber that lets it overflow is dropped (its stream ends, the agent
// reconnects and starts over from a full map). Output is deterministic:
// peers are sorted by ID, rules by ID, addresses in order.
package netmap

import (
	"cmp"
	"maps"
	"slices"
	"strings"

	"github.com/latchnet/latch/acl/compile"
	"github.com/latchnet/latch/acl/policy"
	"github.com/latchnet/latch/wire"
)

// Node is a node as netmaps are computed from it.
type Node struct {
	wire.Node
	// Owner is the node's owner for policy purposes: the enrolling user of
	// an untagged node, empty for a tagged one.
	Owner string
	// Posture is the node's reported posture as attributes
	// (wire.Posture.Attrs); nil if it never reported one.
	Posture map[string]string
	// Quarantined nodes are selected only by "status:quarantined".
	Quarantined bool
	// Expired nodes are absent to the compiler: nobody sees them and they
	// see nobody. Their own netmap still comes, with no peers and no
	// rules, and with Self.KeyExpiry telling the agent why.
	Expired bool
}

// Snapshot is the whole network at one version, as the Computer sees it.
// It is immutable once built.
type Snapshot struct {
	// Version increases with every change; equal versions mean equal content.
	Version uint64
	// Nodes are sorted by ID.
	Nodes []Node
	// PolicyVersion is the stored version of Policy; 0 if none was saved.
	PolicyVersion int
	// Policy is the current policy; nil admits nothing.
	Policy *policy.Policy
	// Grants are the active just-in-time grants, sorted by ID.
	Grants []compile.Grant

	byID map[wire.NodeID]int
}

// NewSnapshot indexes s and returns it. It sorts Nodes and Grants and
// takes ownership of them.
func NewSnapshot(s Snapshot) *Snapshot {
	slices.SortFunc(s.Nodes, func(a, b Node) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortFunc(s.Grants, func(a, b compile.Grant) int { return strings.Compare(a.ID, b.ID) })
	s.byID = make(map[wire.NodeID]int, len(s.Nodes))
	for i, n := range s.Nodes {
		s.byID[n.ID] = i
	}
	return &s
}

// Node returns the node with the given ID.
func (s *Snapshot) Node(id wire.NodeID) (Node, bool) {
	if s == nil {
		return Node{}, false
	}
	i, ok := s.byID[id]
	if !ok {
		return Node{}, false
	}
	return s.Nodes[i], true
}

// Change says how one node's netmap may differ from its netmap at the
// previous snapshot.
type Change struct {
	Node wire.NodeID
	// Full means anything may have changed: self, rules, any peer. If
	// false, Node's self and rules are unchanged and only its entries for
	// Peers may have changed: each is now what Computer.Peer says, or
	// absent if it says false.
	Full bool
	// Peers are sorted and never hold Node.
	Peers []wire.NodeID
}

// Computer follows snapshots and computes nodes' netmaps. It is the seam
// where policy decides visibility and rules; the Hub's fan-out does not
// care how. The Hub calls it with its lock held, from one goroutine at a
// time, so implementations need no locking of their own and must not
// block. Output must be deterministic.
type Computer interface {
	// Update makes s current and returns, sorted by node, a Change for
	// every node whose netmap may differ from its netmap at the previous
	// snapshot (at least for those whose netmap does), including nodes
	// that left (Full). s is newer than any snapshot before.
	Update(s *Snapshot) []Change
	// Netmap returns the netmap of node id at the current snapshot, or
	// false if id is not in it (it was deleted).
	Netmap(id wire.NodeID) (*wire.Netmap, bool)
	// Peer returns viewer's entry for peer at the current snapshot, or
	// false if viewer does not see peer.
	Peer(viewer, peer wire.NodeID) (wire.Peer, bool)
}

// PolicyComputer is the Computer of Latch's identity-based policy: it
// keeps one compile.Compiler in sync with the snapshots and builds each
// netmap from the node's compiled View and the inventory's node details.
//
// A node sees exactly the peers its View lists, each with the IDs of the
// rules that admit it, and gets the inbound rules of its View; without a
// policy that is nothing. Changes are incremental: the compiler reports
// whose views a policy, node or grant change altered. A node N joining,
// leaving or changing alters other nodes' views only in their entry for
// N, so they get a Change for that one entry; a change of N's details
// alone (endpoints, key) reaches the nodes that see N (SeenBy). Only N
// itself, and the nodes a policy or grant change touched, are recomputed
// in full.
type PolicyComputer struct {
	comp *compile.Compiler
	snap *Snapshot // the current snapshot; nil before the first Update
}

// NewPolicyComputer returns a computer with no snapshot yet.
func NewPolicyComputer() *PolicyComputer {
	return &PolicyComputer{comp: compile.New(nil)}
}

// changes collects Changes by node.
type changes map[wire.NodeID]*Change

func (cs changes) full(ids ...wire.NodeID) {
	for _, id := range ids {
		if c := cs[id]; c != nil {
			c.Full, c.Peers = true, nil
		} else {
			cs[id] = &Change{Node: id, Full: true}
		}
	}
}

// entry records that peer's entry may have changed at each of viewers.
func (cs changes) entry(peer wire.NodeID, viewers []wire.NodeID) {
	for _, id := range viewers {
		switch c := cs[id]; {
		case id == peer:
			cs.full(id)
		case c == nil:
			cs[id] = &Change{Node: id, Peers: []wire.NodeID{peer}}
		case !c.Full:
			c.Peers = append(c.Peers, peer)
		}
	}
}

func (cs changes) sorted() []Change {
	out := make([]Change, 0, len(cs))
	for _, c := range cs {
		slices.Sort(c.Peers)
		c.Peers = slices.Compact(c.Peers)
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b Change) int { return cmp.Compare(a.Node, b.Node) })
	return out
}

// Update implements Computer.
func (c *PolicyComputer) Update(s *Snapshot) []Change {
	cs := make(changes)
	prev := c.snap
	if prev == nil || prev.PolicyVersion != s.PolicyVersion || prev.Policy != s.Policy {
		cs.full(c.comp.SetPolicy(s.Policy)...)
	}
	if prev != nil {
		for _, n := range prev.Nodes {
			if _, ok := s.Node(n.ID); !ok {
				cs.full(n.ID) // its own stream ends
				cs.entry(n.ID, c.comp.Remove(n.ID))
			}
		}
	}
	for _, n := range s.Nodes {
		old, existed := prev.Node(n.ID)
		if existed && nodeEqual(old, n) {
			continue
		}
		cs.full(n.ID)
		switch {
		case n.Expired:
			// An expired node leaves the compiler like a deleted one
			// (Remove of a node it does not hold reports nobody).
			cs.entry(n.ID, c.comp.Remove(n.ID))
		case !existed || old.Expired || !identityEqual(old, n):
			// Those who stopped seeing n are among the changed.
			cs.entry(n.ID, c.comp.Upsert(compileNode(n)))
		}
		if existed && !n.Expired {
			// Whoever sees n now gets its new details.
			cs.entry(n.ID, c.comp.SeenBy(n.ID))
		}
	}
	if prev == nil || !slices.EqualFunc(prev.Grants, s.Grants, grantEqual) {
		cs.full(c.comp.SetGrants(s.Grants)...)
	}
	c.snap = s
	return cs.sorted()
}

// Netmap implements Computer.
func (c *PolicyComputer) Netmap(id wire.NodeID) (*wire.Netmap, bool) {
	self, ok := c.snap.Node(id)
	if !ok {
		return nil, false
	}
	nm := &wire.Netmap{Version: c.snap.Version, Self: self.Node, Peers: []wire.Peer{}, Rules: []wire.FilterRule{}}
	view, ok := c.comp.View(id)
	if !ok {
		return nm, true // an expired node: it sees nobody
	}
	for _, pv := range view.Peers {
		if p, ok := c.peer(pv); ok {
			nm.Peers = append(nm.Peers, p)
		}
	}
	wire.SortPeers(nm.Peers)
	nm.Rules = append(nm.Rules, view.Rules...)
	SortRules(nm.Rules)
	return nm, true
}

// Peer implements Computer.
func (c *PolicyComputer) Peer(viewer, peer wire.NodeID) (wire.Peer, bool) {
	pv, ok := c.comp.Peer(viewer, peer)
	if !ok {
		return wire.Peer{}, false
	}
	return c.peer(pv)
}

// peer fills in a peer entry's node details.
func (c *PolicyComputer) peer(pv compile.PeerView) (wire.Peer, bool) {
	n, ok := c.snap.Node(pv.ID)
	if !ok {
		return wire.Peer{}, false
	}
	return wire.Peer{Node: n.Node, Rules: slices.Clone(pv.Rules)}, true
}

// compileNode returns what the compiler knows of n.
func compileNode(n Node) compile.Node {
	return compile.Node{ID: n.ID, Name: n.Name, Tags: slices.Clone(n.Tags), Owner: n.Owner, Addresses: slices.Clone(n.Addresses),
		Posture: maps.Clone(n.Posture), Quarantined: n.Quarantined}
}

// identityEqual reports whether a and b are the same to the compiler.
func identityEqual(a, b Node) bool {
	return a.Name == b.Name && a.Owner == b.Owner && slices.Equal(a.Tags, b.Tags) && slices.Equal(a.Addresses, b.Addresses) &&
		a.Quarantined == b.Quarantined && a.Expired == b.Expired && maps.Equal(a.Posture, b.Posture)
}

func nodeEqual(a, b Node) bool { return identityEqual(a, b) && NodeEqual(a.Node, b.Node) }

func grantEqual(a, b compile.Grant) bool {
	return a.ID == b.ID && a.Src == b.Src && a.Service == b.Service && a.Expires.Equal(b.Expires) && slices.Equal(a.Ports, b.Ports) &&
		slices.Equal(a.SrcPosture, b.SrcPosture)
}

// SortRules orders rules by ID, the canonical order of a Netmap.
func SortRules(rules []wire.FilterRule) {
	slices.SortStableFunc(rules, func(a, b wire.FilterRule) int { return strings.Compare(a.ID, b.ID) })
}
