// Package netmap computes what each node is told about the network and
// fans it out to the nodes' streams.
//
// A Computer turns one consistent Snapshot of the network into one node's
// wire.Netmap; the Hub holds one Subscription per connected node, and on
// every change recomputes each subscriber's map, diffs it against what
// that subscriber last received and sends the wire.Delta, or nothing if
// the map did not change. A new subscription starts with the full map.
//
// The Hub never blocks on a subscriber: each has a bounded queue, and a
// subscriber that lets it overflow is dropped (its stream ends, the agent
// reconnects and starts over from a full map). Output is deterministic:
// peers are sorted by ID, rules by ID, addresses in order.
package netmap

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/latchnet/latch/wire"
)

// Snapshot is the whole network at one version, as the Computer sees it.
// It is immutable once built.
type Snapshot struct {
	// Version increases with every change; equal versions mean equal content.
	Version uint64
	// Nodes are sorted by ID.
	Nodes []wire.Node
	byID  map[wire.NodeID]int
}

// NewSnapshot returns a snapshot of nodes at version. It sorts nodes by ID
// and takes ownership of the slice.
func NewSnapshot(version uint64, nodes []wire.Node) *Snapshot {
	wire.SortNodes(nodes)
	s := &Snapshot{Version: version, Nodes: nodes, byID: make(map[wire.NodeID]int, len(nodes))}
	for i, n := range nodes {
		s.byID[n.ID] = i
	}
	return s
}

// Node returns the node with the given ID.
func (s *Snapshot) Node(id wire.NodeID) (wire.Node, bool) {
	i, ok := s.byID[id]
	if !ok {
		return wire.Node{}, false
	}
	return s.Nodes[i], true
}

// Computer computes one node's netmap from a snapshot. It is the seam
// where policy decides visibility and rules; the Hub's fan-out does not
// care how. Implementations must be deterministic, must not modify the
// snapshot, and are called with the Hub's lock held, so they must not
// block.
type Computer interface {
	// Compute returns the netmap of node self at s.Version, or false if
	// self is not in s (it was deleted).
	Compute(s *Snapshot, self wire.NodeID) (*wire.Netmap, bool)
}

// InterimRuleID names the one rule of the interim all-peers netmap.
const InterimRuleID = "interim-allow-peers"

// InterimAllPeers is the netmap until policy exists: every other node is
// a peer, and one rule admits TCP, UDP, ICMP and ICMPv6 on every port from
// every peer's overlay addresses.
type InterimAllPeers struct{}

// Compute implements Computer.
func (InterimAllPeers) Compute(s *Snapshot, self wire.NodeID) (*wire.Netmap, bool) {
	me, ok := s.Node(self)
	if !ok {
		return nil, false
	}
	nm := &wire.Netmap{Version: s.Version, Self: me, Peers: make([]wire.Peer, 0, len(s.Nodes)), Rules: []wire.FilterRule{}}
	for _, n := range s.Nodes {
		if n.ID == self {
			continue
		}
		nm.Peers = append(nm.Peers, wire.Peer{Node: n, Rules: []string{InterimRuleID}})
	}
	if len(nm.Peers) > 0 {
		nm.Rules = append(nm.Rules, wire.FilterRule{
			ID:        InterimRuleID,
			Protocols: []wire.Proto{wire.ProtoICMP, wire.ProtoTCP, wire.ProtoUDP, wire.ProtoICMPv6},
			Ports:     []wire.PortRange{{First: 1, Last: 65535}},
		})
	}
	return nm, true
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// SortRules orders rules by ID, the canonical order of a Netmap.
func SortRules(rules []wire.FilterRule) {
	slices.SortStableFunc(rules, func(a, b wire.FilterRule) int { return strings.Compare(a.ID, b.ID) })
}
